//! End to end over real HTTP between separate processes on loopback ports: `regain-demo up`
//! starts the reference server, the dev IDV, the dev wallet's page and the demo application,
//! each its own process; the test plays the person (a browser with cookies) and their wallet
//! (the dev wallet library), and reads the audit trail from the server's database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

mod support;

use regain_core::env::AuditKind;
use regain_dev_idv::wallet::client::Wallet;
use regain_server::store::{Store, now};
use reqwest::StatusCode;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{browser, element, free_port, selfie_data, wait_until_up};

/// The demo's processes, stopped (SIGTERM, so the launcher stops its children) on drop.
struct Demo {
    server: String,
    idv: String,
    app: String,
    dir: tempfile::TempDir,
    launcher: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.launcher.id().to_string()]).status();
        for _ in 0..50 {
            if self.launcher.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.launcher.kill();
        let _ = self.launcher.wait();
    }
}

impl Demo {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (server, idv, wallet, app) = (free_port(), free_port(), free_port(), free_port());
        let launcher = Command::new(env!("CARGO_BIN_EXE_regain-demo"))
            .args(["up", "--server", &server.to_string(), "--idv", &idv.to_string()])
            .args(["--wallet", &wallet.to_string(), "--app", &app.to_string()])
            .arg("--dir")
            .arg(dir.path().join("demo"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let demo = Self {
            server: format!("http://localhost:{server}"),
            idv: format!("http://localhost:{idv}"),
            app: format!("http://localhost:{app}"),
            dir,
            launcher,
        };
        let urls =
            [format!("{}/healthz", demo.server), format!("{}/healthz", demo.idv), format!("http://localhost:{app}/")];
        wait_until_up(&urls).await;
        demo
    }

    async fn store(&self) -> Store {
        Store::open(&format!("sqlite://{}", self.dir.path().join("demo/regain.db").display())).await.unwrap()
    }

    /// Rewrites the deployment file; the server picks it up (reload every 2 s).
    async fn edit_deployment(&self, edit: impl Fn(String) -> String) {
        let path = self.dir.path().join("demo/regain.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(text)).unwrap();
        tokio::time::sleep(Duration::from_millis(4500)).await;
    }

    async fn audit(&self, user: &str) -> Vec<AuditKind> {
        self.store().await.audit_since(0, Some(user)).await.unwrap().into_iter().map(|e| e.kind).collect()
    }

    /// A person verified at the dev IDV with `selfie`, their credential in a new wallet.
    async fn verified(&self, document: &str, selfie: &str) -> Wallet {
        let path = self.dir.path().join(format!("wallet-{document}-{}.json", now()));
        support::verified(&self.idv, document, selfie, &path).await
    }

    /// Starts a recovery in a new browser; answers the browser and the page.
    async fn begin(&self, login: &str) -> (reqwest::Client, StatusCode, String) {
        let browser = browser();
        let response = browser
            .post(format!("{}/recover/start", self.server))
            .form(&[("login", login), ("device", "same")])
            .send()
            .await
            .unwrap();
        let status = response.status();
        (browser, status, response.text().await.unwrap())
    }

    /// Starts a recovery that goes to an OIDC4IDA provider; answers the browser and where it
    /// is sent.
    async fn to_provider(&self, login: &str) -> (reqwest::Client, String) {
        let browser = browser();
        let response = browser
            .post(format!("{}/recover/start", self.server))
            .form(&[("login", login), ("device", "same")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let to = response.headers()["location"].to_str().unwrap().to_owned();
        (browser, to)
    }

    /// The whole same-device recovery: wallet, response code, selfie; answers the last page.
    async fn recover(&self, login: &str, wallet: &Wallet, selfie: &str) -> String {
        let (browser, status, page) = self.begin(login).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let answer = wallet.present(&element(&page, "wallet-link").unwrap(), None).await.unwrap();
        let back = match answer["redirect_uri"].as_str() {
            Some(back) => back.to_owned(),
            None => panic!("{answer}"),
        };
        let page = browser.get(back).send().await.unwrap().text().await.unwrap();
        if !page.contains("selfie-form") {
            return page;
        }
        let data = selfie_data(selfie);
        let response = browser.post(format!("{}/recover/selfie", self.server)).form(&[("selfie", data)]).send().await;
        let page = response.unwrap().text().await.unwrap();
        if let Some(pass) = element(&page, "tap") {
            // The pass signs in (here without a client request) and is then spent.
            let signed = sign_in_with_pass(self, login, &pass).await;
            assert!(signed.contains("Register a new sign-in method"), "{signed}");
        }
        page
    }
}

async fn sign_in_with_pass(demo: &Demo, login: &str, pass: &str) -> String {
    let server = &demo.server;
    let form = [
        ("client_id", "demo-app"),
        ("redirect_uri", &format!("{}/callback", demo.app)),
        ("response_type", "code"),
        ("scope", "openid"),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuIojdkuwOQ"),
        ("code_challenge_method", "S256"),
        ("method", "tap"),
        ("login", login),
        ("tap", pass),
    ];
    let browser = browser();
    let response = browser.post(format!("{server}/authorize")).form(&form).send().await.unwrap();
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoveries_with_the_dev_wallet_end_as_the_policies_say() {
    let demo = Demo::start().await;

    // The happy path: José (diacritics and a two-part surname, written the same).
    let jose = demo.verified("jose-garcia-marquez", "jose-garcia-marquez").await;
    let page = demo.recover("jose.garcia@example.org", &jose, "jose-garcia-marquez").await;
    assert!(element(&page, "tap").is_some(), "{page}");
    let trail = demo.audit("u-2004").await;
    for kind in [
        AuditKind::RecoveryStarted,
        AuditKind::PresentationCompleted,
        AuditKind::AccountMatched,
        AuditKind::FaceCheckPassed,
        AuditKind::RecoveryCompleted,
    ] {
        assert!(trail.contains(&kind), "{kind:?} missing from {trail:?}");
    }

    // The same presentation again is refused by the server.
    let (_, _, page) = demo.begin("jose.garcia@example.org").await;
    let request = element(&page, "wallet-link").unwrap();
    jose.present(&request, None).await.unwrap();
    let replay = jose.present(&request, None).await;
    assert!(replay.is_err(), "{replay:?}");

    // Relaxed matching: the directory dropped Bjørn Ødegård's diacritics.
    let bjorn = demo.verified("bjorn-odegard", "bjorn-odegard").await;
    let page = demo.recover("bjorn.odegard@example.org", &bjorn, "bjorn-odegard").await;
    assert!(element(&page, "tap").is_some(), "{page}");
    assert!(demo.audit("u-2005").await.contains(&AuditKind::AccountMatched));

    // The same-name pair: the birth date tells them apart...
    let maria_1980 = demo.verified("maria-santos-1980", "maria-santos-1980").await;
    let page = demo.recover("maria.santos@example.org", &maria_1980, "maria-santos-1980").await;
    assert!(element(&page, "tap").is_some(), "{page}");
    // ...so the other Maria's credential does not open this account.
    let maria_1992 = demo.verified("maria-santos-1992", "maria-santos-1992").await;
    let page = demo.recover("maria.santos@example.org", &maria_1992, "maria-santos-1992").await;
    let reference = element(&page, "helpdesk-ref").unwrap_or_else(|| panic!("{page}"));
    let trail = demo.store().await.audit_by_helpdesk_ref(&reference).await.unwrap();
    assert!(trail.iter().any(|e| e.kind == AuditKind::AccountNotMatched && e.reason == "bound-attribute-mismatch"));

    // Someone else's credential: the names differ; the page shows only a reference.
    let page = demo.recover("ana.silva@example.org", &jose, "jose-garcia-marquez").await;
    assert!(element(&page, "helpdesk-ref").is_some() && !page.contains("José"), "{page}");
    assert!(demo.audit("u-2001").await.contains(&AuditKind::AccountNotMatched));

    // The passport that puts the whole name in one field.
    let an = demo.verified("nguyen-van-an", "nguyen-van-an").await;
    let page = demo.recover("an.nguyen@example.org", &an, "nguyen-van-an").await;
    assert!(element(&page, "tap").is_some(), "{page}");

    // A revoked credential.
    let tomas = demo.verified("tomas-novak", "tomas-novak").await;
    let page = demo.recover("tomas.novak@example.org", &tomas, "tomas-novak").await;
    assert!(element(&page, "helpdesk-ref").is_some(), "{page}");
    assert!(!demo.audit("u-2006").await.contains(&AuditKind::RecoveryCompleted));

    // The right credential, someone else's face at the selfie step.
    let ana = demo.verified("ana-silva", "ana-silva").await;
    let page = demo.recover("ana.silva@example.org", &ana, "someone-else").await;
    assert!(element(&page, "helpdesk-ref").is_some(), "{page}");
    assert!(demo.audit("u-2001").await.contains(&AuditKind::FaceCheckFailed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_pass_and_unknown_logins_tell_nothing() {
    let demo = Demo::start().await;
    let ana = demo.verified("ana-silva", "ana-silva").await;
    let (browser, _, page) = demo.begin("ana.silva@example.org").await;
    let answer = ana.present(&element(&page, "wallet-link").unwrap(), None).await.unwrap();
    browser.get(answer["redirect_uri"].as_str().unwrap()).send().await.unwrap();
    let data = selfie_data("ana-silva");
    let page = browser
        .post(format!("{}/recover/selfie", demo.server))
        .form(&[("selfie", data)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pass = element(&page, "tap").unwrap_or_else(|| panic!("{page}"));
    // The pass's time runs out (its expiry moved to the past, as the clock would).
    let store = demo.store().await;
    sqlx_expire(&demo).await;
    let refused = sign_in_with_pass(&demo, "ana.silva@example.org", &pass).await;
    assert!(refused.contains("This pass is not valid, has expired or was already used."), "{refused}");
    assert!(store.user_by_login("ana.silva@example.org").await.unwrap().is_some());

    // Unknown and out-of-scope logins: the same status and page, the same kind of time.
    let mut outsider = regain_server::accounts::Account {
        id: "u-out".into(),
        login: "outsider@example.org".into(),
        given_name: Some("Out".into()),
        family_name: Some("Sider".into()),
        enabled: true,
        groups: vec!["staff".into()],
        ..Default::default()
    };
    outsider.last_sign_in = Some(now() - 3600);
    store.create_user(&outsider, now()).await.unwrap();
    let strip = |page: &str| {
        let url = element(page, "wallet-link").unwrap();
        page.replace(&url.replace('&', "&amp;"), "")
    };
    let mut times = [Duration::ZERO; 2];
    let mut pages = [String::new(), String::new()];
    for round in 0..3 {
        for (i, login) in ["nobody@example.org", "outsider@example.org"].iter().enumerate() {
            let started = Instant::now();
            let (_, status, page) = demo.begin(login).await;
            times[i] += started.elapsed();
            assert_eq!(status, StatusCode::OK);
            if round == 0 {
                pages[i] = strip(&page);
            }
        }
    }
    assert_eq!(pages[0], pages[1]);
    // The timing class: neither answer takes a path the other does not (no slow lookup or
    // hashing for one of them); a loose bound, since both do the same work.
    let (a, b) = (times[0].as_secs_f64(), times[1].as_secs_f64());
    assert!(a.max(b) < 4.0 * a.min(b) + 0.2, "{times:?}");
    let trail = store.audit_since(0, Some("u-out")).await.unwrap();
    assert!(trail.iter().any(|e| e.kind == AuditKind::RecoveryStarted), "{trail:?}");
}

/// Moves every pass's expiry into the past.
async fn sqlx_expire(demo: &Demo) {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", demo.dir.path().join("demo/regain.db").display());
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("UPDATE taps SET expires_at = $1").bind(now() - 1).execute(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_changes_reach_the_running_server() {
    let demo = Demo::start().await;

    // Without the birth date binding, the same-name pair is blocked.
    demo.edit_deployment(|t| t.replace("[[matching.bind]]\nclaim = \"birthdate\"\nattribute = \"birthdate\"\n", ""))
        .await;
    let maria = demo.verified("maria-santos-1980", "maria-santos-1980").await;
    let page = demo.recover("maria.santos@example.org", &maria, "maria-santos-1980").await;
    let reference = element(&page, "helpdesk-ref").unwrap_or_else(|| panic!("{page}"));
    let trail = demo.store().await.audit_by_helpdesk_ref(&reference).await.unwrap();
    assert!(trail.iter().any(|e| e.reason == "same-name-ambiguous"), "{trail:?}");

    // The wallet provider marked unavailable: the OIDC4IDA side of the dev IDV takes over.
    demo.edit_deployment(|t| t.replace("priority = 1\n", "priority = 1\navailable = false\n")).await;
    let (browser, to) = demo.to_provider("erik.lindqvist@example.org").await;
    assert!(to.starts_with(&format!("{}/authorize?", demo.idv)), "{to}");
    let query = to.split_once('?').unwrap().1.to_owned();
    // Erik's passport has expired: the provider refuses, the flow ends with a reference.
    let refused = browser
        .post(format!("{}/authorize", demo.idv))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("{query}&document=erik-lindqvist&selfie=erik-lindqvist"))
        .send()
        .await
        .unwrap();
    let back = refused.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.contains("error="), "{back}");
    let page = browser.get(&back).send().await.unwrap().text().await.unwrap();
    assert!(element(&page, "tap").is_none(), "{page}");

    let (browser, to) = demo.to_provider("jose.garcia@example.org").await;
    let query = to.split_once('?').unwrap().1.to_owned();
    let approved = browser
        .post(format!("{}/authorize", demo.idv))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("{query}&document=jose-garcia-marquez&selfie=jose-garcia-marquez"))
        .send()
        .await
        .unwrap();
    let back = approved.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.starts_with(&format!("{}/recover/provider-callback?", demo.server)), "{back}");
    let page = browser.get(&back).send().await.unwrap().text().await.unwrap();
    assert!(element(&page, "tap").is_some(), "{page}");

    // Evaluation mode: every step runs, nothing is issued.
    demo.edit_deployment(|t| format!("mode = \"evaluation\"\n{}", t.replace("available = false\n", ""))).await;
    let bjorn = demo.verified("bjorn-odegard", "bjorn-odegard").await;
    let page = demo.recover("bjorn.odegard@example.org", &bjorn, "bjorn-odegard").await;
    assert!(page.contains("Recovery checked") && element(&page, "tap").is_none(), "{page}");
    let trail = demo.audit("u-2005").await;
    assert!(trail.contains(&AuditKind::FaceCheckPassed) && !trail.contains(&AuditKind::RecoveryCompleted), "{trail:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_idv_refuses_expired_passports_and_other_faces() {
    let demo = Demo::start().await;
    for (document, selfie) in [("erik-lindqvist", "erik-lindqvist"), ("ana-silva", "someone-else")] {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/verify", demo.idv))
            .header("accept", "application/json")
            .form(&[("document", document), ("selfie", selfie)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["passed"], false, "{answer}");
        assert!(answer.get("credential_offer_url").is_none(), "{answer}");
    }
    // Nothing reached the server: no recovery was started for these people.
    for user in ["u-2007", "u-2001"] {
        assert!(demo.audit(user).await.is_empty());
    }
}
