//! The shipped Prometheus rules: promtool accepts them, every alert has unit tests that make
//! it fire and keep it silent, and every alert's runbook exists in docs/operations.md.

use std::collections::BTreeMap;
use std::process::Command;

use serde_yaml_ng::Value as Yaml;

use super::{repo, rules_dir, run, tool};

const RULE_FILES: [&str; 2] = ["clawbutler.rules.yml", "clawbutler-features.rules.yml"];
const TEST_FILES: [&str; 2] = ["tests/alerts_test.yml", "tests/features_test.yml"];

fn yaml(rel: &str) -> Yaml {
    let text = std::fs::read_to_string(rules_dir().join(rel)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every alert rule in the shipped files, by name.
pub fn alerts() -> BTreeMap<String, Yaml> {
    let mut out = BTreeMap::new();
    for f in RULE_FILES {
        for g in yaml(f)["groups"].as_sequence().unwrap() {
            for r in g["rules"].as_sequence().unwrap() {
                if let Some(name) = r["alert"].as_str() {
                    assert!(out.insert(name.to_string(), r.clone()).is_none(), "alert {name} defined twice");
                }
            }
        }
    }
    out
}

/// Every recording rule name in the shipped files.
pub fn recorded() -> Vec<String> {
    let mut out = Vec::new();
    for f in RULE_FILES {
        for g in yaml(f)["groups"].as_sequence().unwrap() {
            for r in g["rules"].as_sequence().unwrap() {
                if let Some(name) = r["record"].as_str() {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn promtool_checks_the_rules_and_passes_their_unit_tests() {
    let Some(promtool) = tool("promtool_checks_the_rules_and_passes_their_unit_tests", "promtool") else { return };
    let (ok, out) = run(Command::new(&promtool).current_dir(rules_dir()).arg("check").arg("rules").args(RULE_FILES));
    assert!(ok, "promtool check rules:\n{out}");
    assert_eq!(out.matches("SUCCESS").count(), RULE_FILES.len(), "{out}");
    let (ok, out) = run(Command::new(&promtool).current_dir(rules_dir()).arg("test").arg("rules").args(TEST_FILES));
    assert!(ok, "promtool test rules:\n{out}");
    assert_eq!(out.matches("SUCCESS").count(), TEST_FILES.len(), "{out}");
}

#[test]
fn every_alert_has_a_firing_and_a_silent_unit_test_and_a_runbook() {
    let alerts = alerts();
    assert!(alerts.len() >= 18, "{:?}", alerts.keys());
    // (alert, fires?) pairs the unit tests check.
    let mut checked: Vec<(String, bool)> = Vec::new();
    for f in TEST_FILES {
        for t in yaml(f)["tests"].as_sequence().unwrap() {
            for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = a["alertname"].as_str().unwrap().to_string();
                let fires = a["exp_alerts"].as_sequence().is_some_and(|s| !s.is_empty());
                checked.push((name, fires));
            }
        }
    }
    let ops = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let headings: Vec<String> =
        ops.lines().filter_map(|l| l.strip_prefix("### ")).map(|h| h.trim().to_lowercase()).collect();
    for (name, rule) in &alerts {
        assert!(checked.contains(&(name.clone(), true)), "no unit test makes {name} fire");
        assert!(checked.contains(&(name.clone(), false)), "no unit test keeps {name} silent");
        let sev = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(["critical", "warning", "info"].contains(&sev), "{name}: severity {sev:?}");
        assert!(rule["annotations"]["summary"].as_str().is_some(), "{name}: no summary");
        let url = rule["annotations"]["runbook_url"].as_str().unwrap_or_default();
        let anchor = url.strip_prefix("docs/operations.md#").unwrap_or_else(|| panic!("{name}: runbook_url {url:?}"));
        assert_eq!(anchor, name.to_lowercase(), "{name}: runbook anchor");
        assert!(headings.contains(&anchor.to_string()), "docs/operations.md has no `### {name}` runbook section");
    }
    // The runbook sections are all for shipped alerts (none left behind by a rename).
    let alert_names: Vec<String> = alerts.keys().map(|k| k.to_lowercase()).collect();
    for h in headings.iter().filter(|h| h.starts_with("clawbutler")) {
        assert!(alert_names.contains(h), "docs/operations.md has a runbook for {h}, which no rule defines");
    }
}
