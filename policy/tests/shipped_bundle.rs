//! The shipped bundle's Rego tests (`policies/*_test.rego`) run through the same runner as
//! `clawbutler policy test`, so `cargo test` fails when a shipped rule regresses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

use std::path::PathBuf;

use policy::{run_tests, BundleSource};

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("policies")
}

#[test]
fn shipped_rego_tests_pass_from_directory() {
    let report = run_tests(&BundleSource::Dir(policies_dir()), &serde_json::Value::Null).unwrap();
    println!("{report}");
    assert!(report.results.len() >= 40, "expected the shipped suite, found {} tests", report.results.len());
    assert!(report.ok(), "failing shipped policy tests:\n{report}");
}

#[test]
fn embedded_bundle_carries_the_same_tests() {
    let embedded = run_tests(&BundleSource::Embedded, &serde_json::Value::Null).unwrap();
    let dir = run_tests(&BundleSource::Dir(policies_dir()), &serde_json::Value::Null).unwrap();
    assert_eq!(embedded.results.len(), dir.results.len());
    assert!(embedded.ok(), "{embedded}");
}
