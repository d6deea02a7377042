//! `regain presentation verify`, run as a real process on presentations issued by the dev IDV.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use regain_dev_idv::keys::SigningKey;
use regain_dev_idv::sdjwt::{IdentityCredential, issue_identity, present};
use regain_dev_idv::status;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const NOW: u64 = 1_790_000_000;
const ISSUER: &str = "https://idv.example";
const VCT: &str = "https://idv.example/credentials/identity";
const STATUS_URI: &str = "https://idv.example/status/7";
const AUDIENCE: &str = "x509_san_dns:recovery.example.org";

fn presentation(index: u64, nonce: &str) -> String {
    let credential = IdentityCredential {
        issuer: ISSUER,
        kid: "k1",
        vct: VCT,
        iat: NOW - 600,
        exp: NOW + 86_400,
        status: Some((STATUS_URI, index)),
        claims: vec![("given_name", json!("José")), ("family_name", json!("García Márquez"))],
    };
    let holder = SigningKey::ed25519(7);
    let issued = issue_identity(&credential, &SigningKey::p256(1), &holder);
    present(&issued, &issued.all(), &holder, nonce, AUDIENCE, NOW - 10)
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jwks.json"), SigningKey::p256(1).jwks(Some("k1")).to_string()).unwrap();
        let list = status::token(&SigningKey::p256(1), Some("k1"), STATUS_URI, &[0, 0, 1, 0], 1, NOW - 60, None);
        std::fs::write(dir.path().join("list.jwt"), list).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
}

fn verify(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_regain"))
        .args(["presentation", "verify"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn standard_args(files: &Files, nonce: &str) -> Vec<String> {
    vec![
        "--nonce".into(),
        nonce.into(),
        "--audience".into(),
        AUDIENCE.into(),
        "--issuer".into(),
        format!("{ISSUER}={}", files.path("jwks.json")),
        "--vct".into(),
        VCT.into(),
        "--at".into(),
        NOW.to_string(),
        "--status-list".into(),
        format!("{STATUS_URI}={}", files.path("list.jwt")),
    ]
}

fn run(files: &Files, nonce: &str, token: &str) -> (Option<i32>, Value) {
    let args = standard_args(files, nonce);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = verify(&args, token);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), json)
}

#[test]
fn a_valid_presentation_prints_its_claims_and_exits_zero() {
    let files = Files::new();
    let (code, out) = run(&files, "nonce-1", &presentation(0, "nonce-1"));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out["valid"], true);
    assert_eq!(out["reason"], "ok");
    assert_eq!(out["claims"]["given_name"], "José");
    assert_eq!(out["claims"]["family_name"], "García Márquez");
    assert_eq!(out["claims"]["iss"], ISSUER);
}

#[test]
fn invalid_presentations_exit_one_with_their_reason() {
    let files = Files::new();
    let cases = [
        ("revoked", run(&files, "nonce-1", &presentation(2, "nonce-1"))),
        ("kb-nonce-mismatch", run(&files, "nonce-2", &presentation(0, "nonce-1"))),
        ("status-index-out-of-range", run(&files, "nonce-1", &presentation(64, "nonce-1"))),
        ("malformed", run(&files, "nonce-1", "this is not a presentation")),
    ];
    for (reason, (code, out)) in cases {
        assert_eq!(code, Some(1), "{reason}: {out}");
        assert_eq!(out["valid"], false);
        assert_eq!(out["reason"], reason);
        assert_eq!(out["claims"], json!({}));
    }
}

#[test]
fn without_the_status_list_file_the_credential_fails_closed() {
    let files = Files::new();
    let args = standard_args(&files, "n");
    let args: Vec<&str> = args.iter().take(10).map(String::as_str).collect();
    let out = verify(&args, &presentation(0, "n"));
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["reason"], "status-unavailable");
}

#[test]
fn usage_errors_exit_two() {
    let files = Files::new();
    let jwks = format!("{ISSUER}={}", files.path("jwks.json"));
    let missing =
        verify(&["--nonce", "n", "--audience", "a", "--issuer", "https://x=/nonexistent/jwks.json", "--vct", VCT], "x");
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read `/nonexistent/jwks.json`"));
    let no_equals = verify(&["--nonce", "n", "--audience", "a", "--issuer", "https://x", "--vct", VCT], "x");
    assert_eq!(no_equals.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_equals.stderr).contains("must have the form KEY=FILE"));
    let empty = verify(&["--nonce", "n", "--audience", "a", "--issuer", &jwks, "--vct", VCT], "  \n");
    assert_eq!(empty.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no presentation on standard input"));
    let no_vct = verify(&["--nonce", "n", "--audience", "a", "--issuer", &jwks], "x");
    assert_eq!(no_vct.status.code(), Some(2));
    let no_nonce = verify(&["--audience", "a"], "x");
    assert_eq!(no_nonce.status.code(), Some(2), "clap usage errors also exit 2");
    assert!(Path::new(&files.path("jwks.json")).exists());
}

#[test]
fn a_deployment_file_supplies_issuers_types_and_time_rules() {
    let files = Files::new();
    let config = format!(
        r#"
scope_group = "recovery"

[verifier]
response_uri = "https://recovery.example.org/vp/response"

[[idv]]
id = "dev-idv"
issuer = "{ISSUER}"
vct = ["{VCT}"]
countries = ["*"]
jwks_file = "jwks.json"

[[idv]]
id = "remote-idv"
issuer = "https://remote.example"
vct = ["https://remote.example/pid"]
countries = ["*"]
jwks_uri = "https://remote.example/jwks"
"#
    );
    std::fs::write(files.path("regain.toml"), config).unwrap();
    let config_path = files.path("regain.toml");
    let list = format!("{STATUS_URI}={}", files.path("list.jwt"));
    let now = NOW.to_string();
    let base = ["--nonce", "n-1", "--audience", AUDIENCE, "--config", &config_path, "--at", &now];

    let ok = verify(&[&base[..], &["--status-list", &list]].concat(), &presentation(0, "n-1"));
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    let out: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(out["claims"]["given_name"], "José");
    assert!(String::from_utf8_lossy(&ok.stderr).contains("`remote-idv` has no `jwks_file`"));

    // The file's `require_status = true` (the default) still fails closed without the list.
    let closed = verify(&base, &presentation(0, "n-1"));
    assert_eq!(closed.status.code(), Some(1));
    assert_eq!(serde_json::from_slice::<Value>(&closed.stdout).unwrap()["reason"], "status-unavailable");

    // A broken file is a configuration error with its position.
    std::fs::write(files.path("bad.toml"), "scope_group = 3\n").unwrap();
    let bad_path = files.path("bad.toml");
    let bad = verify(&["--nonce", "n", "--audience", "a", "--config", &bad_path], "x");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad.toml:1:15"), "{}", String::from_utf8_lossy(&bad.stderr));
}
