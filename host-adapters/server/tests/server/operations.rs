//! `regain serve` as an operator runs it: recovery configured from files (deployment,
//! policies, the IDV's key file), status lists and face comparisons fetched over HTTP, hot
//! reload, request logs without secrets or personal data, `/metrics`, and a graceful shutdown
//! that finishes the request in flight.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use crate::support::recovery::{VCT, browser, credential_listed_at, element, member};
use axum::routing::{get, post};
use base64::Engine as _;
use regain_dev_idv::keys::SigningKey;
use regain_server::store::{Store, now};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running server, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &Path, log: &Path) -> Running {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_regain"))
        .args(["serve", "--server-config", config.to_str().unwrap()])
        .env_remove("DATABASE_URL")
        .env("REGAIN_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    Running(child)
}

/// Waits until `/healthz` answers (a hang guard, not a speed assertion).
async fn healthy(port: u16) {
    for _ in 0..600 {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server on port {port} never became healthy");
}

/// The IDV side the server reaches over HTTP: its status list and (TEST DOUBLE) a face
/// comparison service scoring selfies that read `face:<score>`.
async fn idv_services() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let uri = format!("{base}/status/1");
    let list = regain_dev_idv::status::token(
        &SigningKey::p256(1),
        Some("k1"),
        &uri,
        &[0, 0, 1, 0],
        1,
        u64::try_from(now()).unwrap() - 60,
        None,
    );
    let router = axum::Router::new()
        .route("/status/1", get(move || async move { ([("content-type", "application/statuslist+jwt")], list) }))
        .route(
            "/compare",
            post(|axum::Json(body): axum::Json<serde_json::Value>| async move {
                let selfie =
                    base64::engine::general_purpose::STANDARD.decode(body["selfie"].as_str().unwrap()).unwrap();
                let score: u8 = String::from_utf8(selfie).unwrap().strip_prefix("face:").unwrap().parse().unwrap();
                axum::Json(serde_json::json!({ "score": score, "live": true }))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

fn deployment(port: u16, mode: &str) -> String {
    format!(
        "mode = \"{mode}\"\nscope_group = \"recovery\"\n\n[verifier]\nresponse_uri = \"http://127.0.0.1:{port}/recover/response\"\n\n\
         [[idv]]\nid = \"dev-idv\"\nissuer = \"https://idv.example\"\nvct = [\"{VCT}\"]\ncountries = [\"*\"]\n\
         jwks_file = \"idv-jwks.json\"\n"
    )
}

/// Writes the server configuration, the deployment, the policies and the IDV's key file.
fn files(dir: &Path, port: u16, idv: &str) -> std::path::PathBuf {
    let config = dir.join("regain-server.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = \"http://127.0.0.1:{port}\"\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[client]]\nclient_id = \"rp\"\nredirect_uris = [\"https://rp.example/cb\"]\n\n\
             [recovery]\ndeployment = \"regain.toml\"\npolicies = \"policies\"\nreload_seconds = 1\n\
             face_service = \"{idv}/compare\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("regain.toml"), deployment(port, "production")).unwrap();
    std::fs::write(dir.join("idv-jwks.json"), SigningKey::p256(1).jwks(Some("k1")).to_string()).unwrap();
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cedar") {
            std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
        }
    }
    config
}

/// One recovery by browser and wallet; answers the final page.
async fn recover(port: u16, login: &str, given: &str, family: &str, idv: &str) -> String {
    let base = format!("http://127.0.0.1:{port}");
    let browser = browser();
    let response = browser
        .post(format!("{base}/recover/start"))
        .form(&[("login", login), ("device", "same")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    let url = element(&page, "wallet-link").expect("a presentation request");
    let issued = credential_listed_at(&format!("{idv}/status/1"), given, family, 0);
    let body = crate::support::recovery::wallet_answer(&url, &issued);
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/recover/response"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let back = answer["redirect_uri"].as_str().unwrap_or_else(|| panic!("{answer}"));
    let page = browser.get(back).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("selfie-form"), "{page}");
    let selfie = format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode("face:93"));
    browser
        .post(format!("{base}/recover/selfie"))
        .form(&[("selfie", selfie)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_server_recovers_reloads_and_logs_nothing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let idv = idv_services().await;
    let config = files(dir.path(), port, &idv);
    let store = Store::open(&format!("sqlite://{}", dir.path().join("regain.db").display())).await.unwrap();
    store.create_user(&member("u-ana", "ana.secret-login@example.org", "Anaïs", "Silvaé"), now()).await.unwrap();
    store.create_user(&member("u-bo", "bo@example.org", "Bo", "Lind"), now()).await.unwrap();
    let log = dir.path().join("server.log");
    let _server = serve(&config, &log);
    healthy(port).await;

    let page = recover(port, "ana.secret-login@example.org", "Anaïs", "Silvaé", &idv).await;
    let pass = element(&page, "tap").unwrap_or_else(|| panic!("{page}"));

    // Evaluation mode by editing the file: the running server picks it up.
    std::fs::write(dir.path().join("regain.toml"), deployment(port, "evaluation")).unwrap();
    let mut evaluated = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        evaluated = recover(port, "bo@example.org", "Bo", "Lind", &idv).await;
        if evaluated.contains("Recovery checked") {
            break;
        }
    }
    assert!(evaluated.contains("Recovery checked"), "{evaluated}");
    assert!(element(&evaluated, "tap").is_none());
    // A broken policy is refused and the previous deployment keeps serving.
    std::fs::write(dir.path().join("policies/zz_broken.cedar"), "permit(principal,").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let healthy_page = reqwest::get(format!("http://127.0.0.1:{port}/recover")).await.unwrap();
    assert_eq!(healthy_page.status(), 200);

    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap();
    assert_eq!(metrics.headers()["content-type"], "text/plain; version=0.0.4");
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("regain_recovery_outcomes_total{outcome=\"completed\"} "), "{metrics}");
    assert!(metrics.contains("regain_recovery_outcomes_total{outcome=\"evaluated\"}"), "{metrics}");
    assert!(metrics.contains("regain_http_requests_total{method=\"POST\",route=\"/recover/start\",status=\"200\"}"));
    assert!(metrics.contains("regain_http_request_duration_seconds_bucket{route=\"/recover/selfie\",le=\"+Inf\"}"));

    // Every request is logged with its id and route, without secrets or personal data.
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("trace-me-42"), "{logs}");
    assert!(logs.contains("route=/recover/response"), "{logs}");
    for secret in [pass.as_str(), "ana.secret-login", "Anaïs", "Silvaé", "response_code", "vp_token", "face:93"] {
        assert!(!logs.contains(secret), "`{secret}` appears in the log:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_signal_lets_the_requests_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("regain-server.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = \"http://127.0.0.1:{port}\"\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[client]]\nclient_id = \"rp\"\nredirect_uris = [\"https://rp.example/cb\"]\n"
        ),
    )
    .unwrap();
    let mut server = serve(&config, &dir.path().join("server.log"));
    healthy(port).await;

    // Sign-ins on three connections whose bodies are still arriving when the interrupt comes.
    let body = "client_id=rp&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid\
                &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuIojdkuwOQ&code_challenge_method=S256\
                &method=password&login=nobody&password=x";
    let (first, rest) = body.split_at(40);
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let head = format!(
            "POST /authorize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{first}",
            body.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let interrupted = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for mut socket in sockets {
        socket.write_all(rest.as_bytes()).await.unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("The login or the credentials are not correct."));
    }
    // No new connection is taken once the signal has come.
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err());

    // Then the process exits cleanly.
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = server.0.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
