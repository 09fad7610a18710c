//! The policy author's toolkit behind `clawbutler policy test [DIR]` and
//! `clawbutler policy eval --input F [--bundle DIR]`. Tests work like `opa test`: every rule
//! named `test_*` in a `*_test.rego` file passes when it evaluates to `true`.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bundle::{self, BundleFile};
use crate::engine::{timer_config, BundleSource, EngineOptions, PolicyEngine, PolicyError};
use decision::Decision;

/// Time one test may run before it fails.
const TEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Outcome of one `test_*` rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestResult {
    /// Test file, relative to the bundle root.
    pub file: String,
    /// Rego package of the test, e.g. `clawbutler_test`.
    pub package: String,
    /// Rule name, e.g. `test_sudo_is_held`.
    pub name: String,
    pub passed: bool,
    /// Why it failed: `undefined`, the value it produced, or the evaluation error.
    pub error: Option<String>,
    #[serde(serialize_with = "ser_duration_us")]
    pub duration: Duration,
}

fn ser_duration_us<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_micros())
}

/// Every test of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestReport {
    pub results: Vec<TestResult>,
}

impl TestReport {
    /// Number of passing tests.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
    }

    /// Number of failing tests.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// True when there is at least one test and all pass (the CLI exits non-zero otherwise).
    pub fn ok(&self) -> bool {
        !self.results.is_empty() && self.failed() == 0
    }
}

impl fmt::Display for TestReport {
    /// One line per test (`PASS`/`FAIL`, `file: package.name`, time, error), then a summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            let tag = if r.passed { "PASS" } else { "FAIL" };
            write!(f, "{tag} {}: data.{}.{} ({:.1?})", r.file, r.package, r.name, r.duration)?;
            if let Some(e) = &r.error {
                write!(f, "\n     {}", e.replace('\n', "\n     "))?;
            }
            writeln!(f)?;
        }
        if self.results.is_empty() {
            return writeln!(f, "no tests found (rules named test_* in *_test.rego files)");
        }
        writeln!(f, "{}", "-".repeat(60))?;
        if self.failed() == 0 {
            writeln!(f, "PASS: {}/{}", self.passed(), self.results.len())
        } else {
            writeln!(f, "PASS: {}/{}", self.passed(), self.results.len())?;
            writeln!(f, "FAIL: {}/{}", self.failed(), self.results.len())
        }
    }
}

/// Run every `test_*` rule of the bundle's `*_test.rego` files. `data` is the policy data put at
/// `data.clawbutler.config` (`null` tests the bundle as shipped; tests set config with `with`).
/// A Rego syntax or compile error is returned as [`PolicyError::Compile`] naming `file:line`.
pub fn run_tests(source: &BundleSource, data: &serde_json::Value) -> Result<TestReport, PolicyError> {
    let files = bundle::read_files(source)?;
    let mut base = bundle::build_engine(&files, data, true)?;
    base.set_execution_timer_config(timer_config(TEST_TIMEOUT));
    let mut results = Vec::new();
    for file in files.iter().filter(|f| f.is_test()) {
        let package = package_of(file)?;
        for name in test_names(file) {
            let mut engine = base.clone();
            engine.set_gather_prints(true);
            let start = Instant::now();
            let path = format!("data.{package}.{name}");
            let (passed, error) = match engine.eval_rule(path) {
                Ok(regorus::Value::Bool(true)) => (true, None),
                Ok(regorus::Value::Undefined) => {
                    (false, Some("undefined: a condition of the test did not hold".to_string()))
                }
                Ok(other) => (false, Some(format!("evaluated to {other}, expected true"))),
                Err(e) => (false, Some(format!("error: {e}"))),
            };
            let error = match (error, engine.take_prints()) {
                (Some(e), Ok(prints)) if !prints.is_empty() => Some(format!("{e}\nprints:\n{}", prints.join("\n"))),
                (e, _) => e,
            };
            results.push(TestResult {
                file: file.path.clone(),
                package: package.clone(),
                name,
                passed,
                error,
                duration: start.elapsed(),
            });
        }
    }
    Ok(TestReport { results })
}

/// Evaluate one input document (JSON text) against a bundle, as `policy eval` does. Invalid
/// JSON is an error; anything the policy cannot decide comes back as a `policy_error` deny.
/// Pass the configured [`EngineOptions`] so the dry run has the production time limit.
pub fn eval_input(
    source: &BundleSource,
    data: serde_json::Value,
    opts: EngineOptions,
    input_json: &str,
) -> Result<Decision, PolicyError> {
    let input: serde_json::Value = serde_json::from_str(input_json)
        .map_err(|e| PolicyError::Input(format!("line {} column {}: {e}", e.line(), e.column())))?;
    if !input.is_object() {
        return Err(PolicyError::Input("the input document must be a JSON object".into()));
    }
    let engine = PolicyEngine::new(source.clone(), data, opts, &prometheus::Registry::new())?;
    Ok(engine.evaluate_value(&input))
}

fn package_of(file: &BundleFile) -> Result<String, PolicyError> {
    file.contents
        .lines()
        .find_map(|l| l.trim().strip_prefix("package ").map(|p| p.trim().to_string()))
        .ok_or_else(|| PolicyError::Compile(format!("{}: no package declaration", file.path)))
}

/// Names of rules whose head starts a line with `test_`, in file order, without repeats
/// (incremental definitions of one test count once, as in `opa test`).
fn test_names(file: &BundleFile) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in file.contents.lines() {
        if !line.starts_with("test_") {
            continue;
        }
        let name: String = line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}
