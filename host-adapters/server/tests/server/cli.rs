//! The `regain` command, run as a real process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use std::path::Path;
use std::process::{Command, Output};

fn regain(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regain"))
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("REGAIN_LOG")
        .output()
        .expect("regain runs")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn component_info_reports_the_cache_and_the_imports() {
    let dir = tempfile::tempdir().unwrap();
    let first = json(&regain(dir.path(), &["component", "info"]));
    assert_eq!(first["origin"], "compiled");
    let second = json(&regain(dir.path(), &["component", "info"]));
    assert_eq!(second["origin"], "cached");
    assert_eq!(first["sha256"], second["sha256"]);
    assert!(second["cache_file"].as_str().unwrap().starts_with(dir.path().join("regain").to_str().unwrap()));
    let imports: Vec<&str> = second["imports"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(imports.contains(&"regain:recovery/directory@0.1.0"), "{imports:?}");
    assert!(!imports.iter().any(|i| i.starts_with("wasi:filesystem") || i.starts_with("wasi:sockets")));
}

#[test]
fn the_demo_runs_the_plugin_and_shows_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = regain(dir.path(), &["demo"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("flow.start(\"ana.silva@example.org\") -> present-request"), "{text}");
    assert!(text.contains("flow.start(\"nobody@example.org\") -> present-request"), "{text}");
    assert!(text.contains("\"reason\":\"unknown-login\""), "{text}");
    assert!(text.contains("\"reason\":\"ok\""), "{text}");
    assert!(text.contains("\"kind\":\"recovery-started\""), "{text}");
    assert!(text.contains("\"error\":\"invalid-login\""), "{text}");
    assert!(text.contains("checks     no findings"), "the demo deployment passes the safety checks: {text}");
}
