//! Reading a bundle (embedded or a directory) and compiling it into a prepared regorus engine.
//! A bundle is every `.rego` file plus every `data.json` (mounted at its directory's path, as
//! `opa` does). Test files (`*_test.rego`) are left out of the serving engine and only loaded by
//! the test runner, so a broken test cannot block a policy reload.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::engine::{BundleSource, PolicyError};

include!(concat!(env!("OUT_DIR"), "/embedded_policies.rs"));

/// Rule every bundle must define.
pub(crate) const DECISION_RULE: &str = "data.clawbutler.decision";

/// One file of a bundle: path relative to the bundle root, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BundleFile {
    pub path: String,
    pub contents: String,
}

impl BundleFile {
    pub fn is_test(&self) -> bool {
        self.path.ends_with("_test.rego")
    }
    pub fn is_rego(&self) -> bool {
        self.path.ends_with(".rego")
    }
}

/// Human label of a source, for status and errors.
pub(crate) fn source_label(source: &BundleSource) -> String {
    match source {
        BundleSource::Embedded => "embedded".to_string(),
        BundleSource::Dir(dir) => dir.display().to_string(),
        BundleSource::Published(p) => p.label().to_string(),
    }
}

/// Read every bundle file, sorted by path so the revision does not depend on directory order.
pub(crate) fn read_files(source: &BundleSource) -> Result<Vec<BundleFile>, PolicyError> {
    let mut files = match source {
        BundleSource::Embedded => {
            EMBEDDED.iter().map(|(p, c)| BundleFile { path: (*p).to_string(), contents: (*c).to_string() }).collect()
        }
        BundleSource::Dir(dir) => {
            let mut out = Vec::new();
            walk(dir, dir, &mut out)?;
            out
        }
        BundleSource::Published(p) => p.files().to_vec(),
    };
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<BundleFile>) -> Result<(), PolicyError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| PolicyError::Load(format!("cannot read bundle directory {}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| PolicyError::Load(format!("{}: {e}", dir.display())))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        // Editors and VCS keep hidden files (swap files, .git) next to policies: never load them.
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, root, out)?;
        } else if name.ends_with(".rego") || name == "data.json" {
            let contents = std::fs::read_to_string(&path)
                .map_err(|e| PolicyError::Load(format!("cannot read {}: {e}", path.display())))?;
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            out.push(BundleFile { path: rel, contents });
        }
    }
    Ok(())
}

/// Content hash (short hex) of the serving files and the policy data: two engines with the same
/// revision decide every input the same way.
pub(crate) fn revision(files: &[BundleFile], config: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    for f in files.iter().filter(|f| !f.is_test()) {
        h.update((f.path.len() as u64).to_le_bytes());
        h.update(f.path.as_bytes());
        h.update((f.contents.len() as u64).to_le_bytes());
        h.update(f.contents.as_bytes());
    }
    h.update(config.to_string().as_bytes());
    hex::encode(&h.finalize()[..6])
}

/// Build a regorus engine holding the bundle's policies (tests too when `with_tests`), its
/// `data.json` documents and the config data at `data.clawbutler.config`.
pub(crate) fn build_engine(
    files: &[BundleFile],
    config: &serde_json::Value,
    with_tests: bool,
) -> Result<regorus::Engine, PolicyError> {
    let mut engine = regorus::Engine::new();
    // OPA semantics: a builtin error (bad glob, wrong type) makes its expression undefined
    // instead of aborting the whole evaluation, so one odd grant or argument cannot turn every
    // call into a policy_error. Resource limits (the timer) still abort.
    engine.set_strict_builtin_errors(false);
    let mut rego_count = 0usize;
    for f in files.iter().filter(|f| f.is_rego() && (with_tests || !f.is_test())) {
        engine
            .add_policy(f.path.clone(), f.contents.clone())
            .map_err(|e| PolicyError::Compile(located(&format!("{e}"))))?;
        rego_count += 1;
    }
    if rego_count == 0 {
        return Err(PolicyError::Load("bundle has no .rego policy files".into()));
    }
    for f in files.iter().filter(|f| !f.is_rego()) {
        let value: serde_json::Value = serde_json::from_str(&f.contents)
            .map_err(|e| PolicyError::Load(format!("{}:{}: invalid JSON: {e}", f.path, e.line())))?;
        engine
            .add_data(regorus::Value::from(mount(&f.path, value)))
            .map_err(|e| PolicyError::Load(format!("{}: {e}", f.path)))?;
    }
    if !config.is_null() {
        let doc = serde_json::json!({"clawbutler": {"config": config}});
        engine
            .add_data(regorus::Value::from(doc))
            .map_err(|e| PolicyError::Load(format!("policy config data: {e}")))?;
    }
    Ok(engine)
}

/// Prepare `engine` for repeated evaluation of the decision rule (analysis, scheduling) so
/// clones start warm, make sure the rule exists, and return the compiled policy (the input of
/// the bytecode compiler).
pub(crate) fn prepare(engine: &mut regorus::Engine) -> Result<regorus::CompiledPolicy, PolicyError> {
    engine.compile_with_entrypoint(&regorus::Rc::from(DECISION_RULE)).map_err(|e| {
        let text = format!("{e}");
        if text.contains("not a valid rule path") {
            PolicyError::Compile(format!("bundle does not define {DECISION_RULE}"))
        } else {
            PolicyError::Compile(located(&text))
        }
    })
}

/// regorus reports `--> file:line:col`, a source excerpt, then `error: message`; lead with
/// `file:line:col: message` so the first line says where and what.
pub(crate) fn located(text: &str) -> String {
    let loc = text.lines().find_map(|l| l.trim().strip_prefix("--> "));
    let msg = text.lines().find_map(|l| l.trim().strip_prefix("error: "));
    match (loc, msg) {
        (Some(loc), Some(msg)) => format!("{loc}: {msg}\n{}", text.trim_matches('\n')),
        _ => text.trim().to_string(),
    }
}

/// `a/b/data.json` is mounted at `data.a.b`.
fn mount(path: &str, value: serde_json::Value) -> serde_json::Value {
    let dir: Vec<&str> = path.split('/').collect();
    let mut v = value;
    for part in dir[..dir.len().saturating_sub(1)].iter().rev() {
        let mut m = serde_json::Map::new();
        m.insert((*part).to_string(), v);
        v = serde_json::Value::Object(m);
    }
    v
}
