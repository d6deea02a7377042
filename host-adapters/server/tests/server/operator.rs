//! The policy-author and operator commands, run as a real process on real files.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root, where `policies/` and `schemas/` live.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).display().to_string()
}

fn demo(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("demo").join(name).display().to_string()
}

fn regain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regain")).args(args).current_dir(root()).output().expect("regain runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_shipped_policies_validate_and_every_case_passes_touching_every_policy() {
    let validate = regain(&["policy", "validate"]);
    assert_eq!(validate.status.code(), Some(0), "{}", stdout(&validate));
    assert!(stdout(&validate).contains("13 policies in 4 file(s): 0 error(s)"), "{}", stdout(&validate));

    let test = regain(&["policy", "test"]);
    let out = stdout(&test);
    assert_eq!(test.status.code(), Some(0), "{out}");
    let cases = out.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(cases >= 30, "{cases} cases");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(!out.contains("determine no case"), "a policy is not exercised: {out}");
}

#[test]
fn a_broken_policy_is_caught_with_its_position() {
    let out = regain(&["policy", "validate", &fixture("broken-policies")]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let line = text.lines().next().unwrap();
    assert!(line.ends_with("attribute `enabeld` on entity type `Regain::User` not found"), "{text}");
    assert!(line.contains("broken-policies/eligibility.cedar:7:39: "), "{text}");
}

#[test]
fn a_failing_case_fails_the_run_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["eligibility.cedar", "routing.cedar", "tap.cedar", "scope.cedar"] {
        std::fs::copy(root().join("policies").join(file), dir.path().join(file)).unwrap();
    }
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    let mut cases: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("policies/tests/eligibility.json")).unwrap())
            .unwrap();
    cases["cases"][6]["decision"] = "allow".into(); // the fifth attempt is refused, not allowed
    std::fs::write(dir.path().join("tests/eligibility.json"), cases.to_string()).unwrap();
    let out = regain(&["policy", "test", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("FAIL") && text.contains("the fifth attempt in the window is refused: expected allow, got deny"),
        "{text}"
    );
    assert!(text.contains("determine no case: "), "only eligibility is tested here: {text}");
}

#[test]
fn safety_checks_find_the_tap_scope_gap_unserved_countries_and_dead_policies() {
    let config = fixture("split-scope.toml");
    let directory = fixture("readiness-directory.json");
    let out = regain(&["policy", "validate", "policies", "--config", &config, "--directory", &directory]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(
            "error[tap-scope]: 1 user(s) in the recovery scope `recovery-enabled` are outside the TAP scope `staff`"
        ),
        "{text}"
    );
    assert!(text.contains("error[country-unserved]: users in the recovery scope live in `KR`"), "{text}");

    let out = regain(&[
        "policy",
        "validate",
        &fixture("impossible-policy"),
        "--config",
        &demo("regain.toml"),
        "--directory",
        &demo("directory.json"),
    ]);
    assert_eq!(out.status.code(), Some(0), "warnings do not fail validation");
    let text = stdout(&out);
    for policy in ["routing-disabled", "routing-helpdesk-team", "routing-old-provider"] {
        let line = text.lines().find(|l| l.contains(&format!("`{policy}`"))).unwrap_or_default();
        assert!(line.starts_with("warning[policy-never-applies]: "), "{policy}: {text}");
    }
    assert!(!text.contains("routing-fallback"), "{text}");
}

#[test]
fn explain_shows_each_stage_with_its_determining_policies_and_facts() {
    let args = ["--config", &demo("regain.toml"), "--directory", &demo("directory.json")];
    let out = regain(&[&["policy", "explain", "--login", "ana.silva@example.org"][..], &args].concat());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let explained: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(explained["would_recover"], true);
    assert_eq!(explained["routed_to"], "dev-idv");
    let stages = explained["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["action"].as_str().unwrap()).collect();
    assert_eq!(names, ["startRecovery", "useIdv", "issueTap", "revokeMethods", "revokeSessions"]);
    assert_eq!(stages[0]["determining"], serde_json::json!(["eligibility-scope"]));
    assert_eq!(stages[2]["pass"]["lifetime_minutes"], 60);
    assert!(explained["entities"].as_array().unwrap().iter().any(|e| e["uid"]["id"] == "u-1001"));

    // A privileged user at the default threshold: the pass stage says which forbid denies.
    let out = regain(&[&["policy", "explain", "--login", "admin.kim@example.org"][..], &args].concat());
    let explained: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(explained["would_recover"], false);
    assert_eq!(explained["stages"][2]["decision"], "deny");
    assert_eq!(explained["stages"][2]["determining"], serde_json::json!(["tap-privileged-face"]));

    let unknown = regain(&[&["policy", "explain", "--login", "nobody@example.org"][..], &args].concat());
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user with login `nobody@example.org`"));
}

#[test]
fn readiness_lists_who_could_not_recover_in_text_and_json() {
    let args = ["--config", &fixture("split-scope.toml"), "--directory", &fixture("readiness-directory.json")];
    let out = regain(&[&["readiness", "--json"][..], &args].concat());
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["users_in_scope"], 4);
    assert_eq!(report["empty_given_name"], serde_json::json!(["u-3"]));
    assert_eq!(
        report["duplicate_names"],
        serde_json::json!([["u-1", "u-2"]]),
        "case and spaces do not hide a duplicate"
    );
    assert_eq!(report["never_signed_in"], serde_json::json!(["u-3"]));
    assert_eq!(report["outside_tap_scope"], serde_json::json!(["u-3"]));
    assert_eq!(report["no_notification_channel"], serde_json::json!(["u-3"]));
    assert_eq!(report["checks"][0]["code"], "tap-scope");

    let text = stdout(&regain(&[&["readiness"][..], &args].concat()));
    assert!(text.starts_with("4 user(s) in the recovery scope `recovery-enabled` (TAP scope `staff`)"), "{text}");
    assert!(
        text.contains("   1  groups sharing a name: blocked unless a bound attribute disambiguates: u-1 = u-2"),
        "{text}"
    );
}

#[test]
fn cost_follows_the_documented_formula() {
    let out = regain(&["cost", "--users", "10000", "--monthly-recovery-percent", "2", "--idv-price", "1.5", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let f: Value = serde_json::from_slice(&out.stdout).unwrap();
    // 10 000 users × 2 % = 200 recoveries; × 60 helpdesk; × 1.5 IDV; × 55 min saved.
    assert_eq!(f["recoveries_per_month"], 200.0);
    assert_eq!(f["helpdesk_cost_per_month"], 12000.0);
    assert_eq!(f["regain_cost_per_month"], 300.0);
    assert_eq!(f["savings_per_month"], 11700.0);
    assert_eq!(f["hours_regained_per_month"], 183.33);
    let bad = regain(&["cost", "--users", "10", "--idv-price", "-1"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_committed_schemas_match_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let out = regain(&["schemas", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    for name in ["config.schema.json", "audit-event.schema.json", "policy-test.schema.json"] {
        let fresh = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let committed = std::fs::read_to_string(root().join("schemas").join(name)).unwrap_or_default();
        assert!(fresh == committed, "schemas/{name} is stale: run `regain schemas --out schemas`");
    }
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("schemas/config.schema.json")).unwrap()).unwrap();
    assert_eq!(config["additionalProperties"], false, "unknown keys are refused");
}
