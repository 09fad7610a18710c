//! Embeds the shipped bundle (`../policies`) into the crate: writes `embedded_policies.rs`, a
//! list of `(relative path, contents)` pairs, so the binary needs no files on disk to run the
//! default policy. Only `.rego` and `data.json` files are embedded, `*_test.rego` included, so
//! `policy test` can run the shipped tests against the embedded copy too.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, root, out);
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".rego") || name == "data.json" {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let rel = rel.to_string_lossy().replace('\\', "/");
            out.push((rel, path.clone()));
        }
    }
}

fn main() -> std::io::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.join("..").join("policies");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    let mut src = String::from("/// Shipped bundle: (path relative to `policies/`, contents).\n");
    src.push_str("pub(crate) static EMBEDDED: &[(&str, &str)] = &[\n");
    for (rel, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let abs = fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        src.push_str(&format!("    ({rel:?}, include_str!({:?})),\n", abs.display().to_string()));
    }
    src.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("embedded_policies.rs");
    // A failed write fails the build with the io error (and its path, via the error text).
    let mut f = fs::File::create(&out)?;
    f.write_all(src.as_bytes())
}
