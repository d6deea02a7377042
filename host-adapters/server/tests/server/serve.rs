//! `regain serve` and the admin commands as real processes: a SQLite file created on first
//! start next to the configuration, and two server processes sharing one PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config(dir: &Path, port: u16) -> String {
    let path = dir.join(format!("server-{port}.toml"));
    let text = format!(
        "issuer = \"http://127.0.0.1:{port}\"\nlisten = \"127.0.0.1:{port}\"\n\n\
         [[client]]\nclient_id = \"rp\"\nredirect_uris = [\"https://rp.example/cb\"]\n"
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn regain(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_regain"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// A running server, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &str, env: &[(&str, &str)]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_regain"))
        .args(["serve", "--server-config", config])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

/// Waits until `/healthz` answers (a hang guard, not a speed assertion).
async fn healthy(port: u16) {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server on port {port} never became healthy");
}

async fn jwks(port: u16) -> serde_json::Value {
    reqwest::get(format!("http://127.0.0.1:{port}/jwks")).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn a_first_start_creates_the_sqlite_file_and_the_admin_commands_work() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port);
    let created = regain(
        &[
            "user",
            "create",
            "--server-config",
            &cfg,
            "--id",
            "u-1",
            "--login",
            "ana@example.org",
            "--given-name",
            "Ana",
            "--password-stdin",
        ],
        &[],
        "correct horse\n",
    );
    assert_eq!(created.status.code(), Some(0), "{}", String::from_utf8_lossy(&created.stderr));
    assert!(dir.path().join("regain.db").exists(), "the SQLite file is created next to the configuration");
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/directory.json");
    let imported = regain(&["user", "import", "--server-config", &cfg, directory.to_str().unwrap()], &[], "");
    assert_eq!(String::from_utf8_lossy(&imported.stdout).trim(), "imported 3 user(s)");
    let twice = regain(&["user", "import", "--server-config", &cfg, directory.to_str().unwrap()], &[], "");
    assert_eq!(twice.status.code(), Some(2), "a login is imported once");

    let unknown = regain(&["helpdesk", "--server-config", &cfg, "RG-NOPE0000"], &[], "");
    assert_eq!(unknown.status.code(), Some(1));
    let revoke = regain(&["tap", "revoke", "--server-config", &cfg, "tap-nope"], &[], "");
    assert_eq!(
        (revoke.status.code(), String::from_utf8_lossy(&revoke.stdout).trim()),
        (Some(1), "no live pass has the id tap-nope")
    );

    // Events recorded by the server appear in the export, filtered by user and time.
    let store = regain_server::store::Store::open(&format!("sqlite://{}", dir.path().join("regain.db").display()))
        .await
        .unwrap();
    for (user, reason) in [("u-1", "ok"), ("u-2", "name-mismatch")] {
        let event = regain_core::env::AuditRecord {
            at: 1_790_000_000,
            kind: regain_core::AuditKind::RecoveryStarted,
            flow_id: "a".repeat(32),
            user_id: Some(user.into()),
            reason: reason.into(),
            helpdesk_ref: None,
        };
        store.record_audit(&event).await.unwrap();
    }
    let all = regain(&["audit", "export", "--server-config", &cfg], &[], "");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&all.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["kind"], "recovery-started");
    let one = regain(&["audit", "export", "--server-config", &cfg, "--user", "u-2"], &[], "");
    assert_eq!(String::from_utf8_lossy(&one.stdout).lines().count(), 1);
    let later = regain(&["audit", "export", "--server-config", &cfg, "--since", "1790000001"], &[], "");
    assert!(later.stdout.is_empty());

    let _server = start(&cfg, &[]);
    healthy(port).await;
    let discovery: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{port}/.well-known/openid-configuration"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(discovery["issuer"], format!("http://127.0.0.1:{port}"));

    std::fs::write(dir.path().join("typo.toml"), "issuer = \"http://x\"\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let typo = regain(&["serve", "--server-config", dir.path().join("typo.toml").to_str().unwrap()], &[], "");
    assert_eq!(typo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("unknown field `lisen`"));
}

#[tokio::test]
async fn two_processes_on_one_postgresql_share_their_keys() {
    let database = crate::support::fresh_postgres_url().await;

    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_port(), free_port());
    let env = [("DATABASE_URL", database.as_str())];
    let _first = start(&config(dir.path(), a), &env);
    let _second = start(&config(dir.path(), b), &env);
    healthy(a).await;
    healthy(b).await;
    assert_eq!(jwks(a).await, jwks(b).await, "one signing key, created once, for both processes");
    assert!(!dir.path().join("regain.db").exists(), "DATABASE_URL wins over the default SQLite file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_raced_by_a_hundred_sign_ins_on_two_processes_signs_in_once() {
    use regain_server::store::{Passes, Redemption, Store, now};
    let database = crate::support::fresh_postgres_url().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_port(), free_port());
    let env = [("DATABASE_URL", database.as_str())];
    let _first = start(&config(dir.path(), a), &env);
    let _second = start(&config(dir.path(), b), &env);
    healthy(a).await;
    healthy(b).await;

    let store = Store::open(&database).await.unwrap();
    let account = regain_server::accounts::Account {
        id: "u-race".into(),
        login: "race@example.org".into(),
        enabled: true,
        ..Default::default()
    };
    store.create_user(&account, now()).await.unwrap();
    let pass = Passes::open(store.clone()).await.unwrap().issue("u-race", 3600, 0, true, 24, now()).await.unwrap();

    let form: Vec<(&str, String)> = vec![
        ("client_id", "rp".into()),
        ("redirect_uri", "https://rp.example/cb".into()),
        ("response_type", "code".into()),
        ("scope", "openid".into()),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuIojdkuwOQ".into()),
        ("code_challenge_method", "S256".into()),
        ("method", "tap".into()),
        ("login", "race@example.org".into()),
        ("tap", pass.secret.clone()),
    ];
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(100));
    let racers: Vec<_> = (0..100)
        .map(|i| {
            let (gate, form) = (gate.clone(), form.clone());
            let port = if i % 2 == 0 { a } else { b };
            tokio::spawn(async move {
                let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
                let request = client.post(format!("http://127.0.0.1:{port}/authorize")).form(&form);
                gate.wait().await;
                request.send().await.unwrap().text().await.unwrap()
            })
        })
        .collect();
    let mut pages = Vec::new();
    for racer in racers {
        pages.push(racer.await.unwrap());
    }
    let signed = |p: &String| p.contains("Register a new sign-in method");
    // The losers see the pass refused; on a loaded machine the late ones may instead meet the
    // per-login limit on failed attempts, which the early losers have filled by then.
    let refused = |p: &String| {
        p.contains("This pass is not valid, has expired or was already used.")
            || p.contains("Too many attempts for this login; wait a few minutes.")
    };
    let others: Vec<_> = pages.iter().filter(|p| !signed(p) && !refused(p)).collect();
    assert!(others.is_empty(), "{others:?}");
    assert_eq!(pages.iter().filter(|p| signed(p)).count(), 1);
    let passes = Passes::open(store.clone()).await.unwrap();
    assert_eq!(passes.redeem(&pass.secret, now()).await.unwrap(), Redemption::Refused);
}
