//! The recovery pages over real HTTP, with a simulated wallet posting to the server's
//! `direct_post` endpoint, on SQLite and on PostgreSQL: from "Recover your account" on the
//! sign-in page to a pass that signs in once, plus the ways a recovery must not succeed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use crate::support::databases;
use crate::support::recovery::{
    REVOKED, RP, RecoveryServer, browser, credential, element, member, start, wallet_answer,
};
use base64::Engine as _;
use regain_core::env::AuditKind;
use regain_server::store::{Store, now};
use reqwest::StatusCode;
use serde_json::Value;

fn auth_query() -> String {
    format!(
        "client_id=rp&redirect_uri={}&response_type=code&scope=openid&state=s1&nonce=n1\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuIojdkuwOQ&code_challenge_method=S256",
        regain_core::openid4vp::percent_encode(RP)
    )
}

fn auth_form() -> Vec<(&'static str, String)> {
    vec![
        ("client_id", "rp".into()),
        ("redirect_uri", RP.into()),
        ("response_type", "code".into()),
        ("scope", "openid".into()),
        ("state", "s1".into()),
        ("nonce", "n1".into()),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuIojdkuwOQ".into()),
        ("code_challenge_method", "S256".into()),
    ]
}

/// Starts a recovery for `login`; answers the page.
async fn begin(s: &RecoveryServer, browser: &reqwest::Client, login: &str, device: &str) -> (StatusCode, String) {
    let mut form = auth_form();
    form.push(("login", login.into()));
    form.push(("device", device.into()));
    let response = browser.post(format!("{}/recover/start", s.local)).form(&form).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The wallet posts its answer to the request on `page`; answers the status and JSON.
async fn present(page: &str, given: &str, family: &str, status: u64) -> (StatusCode, Value, String) {
    let url = element(page, "wallet-link").or_else(|| element(page, "wallet-request")).expect("a request on the page");
    let body = wallet_answer(&url, &credential(given, family, status));
    let response_uri = regain_dev_idv::wallet::read_request(&url).unwrap().client_id;
    let target = response_uri.strip_prefix("redirect_uri:").unwrap().to_owned();
    let response = reqwest::Client::new()
        .post(target)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null), body)
}

async fn get(browser: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let response = browser.get(url).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn selfie(s: &RecoveryServer, browser: &reqwest::Client, text: &str) -> (StatusCode, String) {
    let data = format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode(text));
    let response = browser.post(format!("{}/recover/selfie", s.local)).form(&[("selfie", data)]).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn audit_kinds(store: &Store, user: &str) -> Vec<AuditKind> {
    store.audit_since(0, Some(user)).await.unwrap().into_iter().map(|e| e.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_device_recovery_ends_with_a_pass_that_signs_in_once() {
    for (store, _dir) in databases().await {
        store.create_user(&member("u-ana", "ana@example.org", "Ana", "Silva"), now()).await.unwrap();
        let s = start(store.clone(), "", None).await;
        let browser = browser();

        // The sign-in page links to the recovery pages with the client's request.
        let (_, login) = get(&browser, &format!("{}/authorize?{}", s.base, auth_query())).await;
        let link = element(&login, "recover").unwrap();
        assert!(link.starts_with("/recover?client_id=rp&"), "{link}");
        let (status, form) = get(&browser, &format!("{}{link}", s.base)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(form.contains("action=\"/recover/start\""));

        let (status, page) = begin(&s, &browser, "ana@example.org", "same").await;
        assert_eq!(status, StatusCode::OK);
        assert!(element(&page, "wallet-link").unwrap().starts_with("openid4vp://?client_id="));

        // The wallet posts; the server answers where to send the browser back.
        let (status, answer, body) = present(&page, "Ana", "Silva", 0).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let back = answer["redirect_uri"].as_str().unwrap().to_owned();
        assert!(back.starts_with(&format!("{}/recover/continue?response_code=", s.base)));

        // The same presentation again is refused and changes nothing.
        let replay = reqwest::Client::new()
            .post(format!("{}/recover/response", s.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(replay.status(), StatusCode::BAD_REQUEST);

        // Another browser cannot use the response code: the flow is bound to the cookie.
        let (status, _) = get(&crate::support::recovery::browser(), &back).await;
        assert_eq!(status, StatusCode::GONE);

        let (status, page) = get(&browser, &back).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("id=\"selfie-form\""), "{page}");

        // The selfie is biometric data: compared in memory, never written to the database.
        let marker = format!("selfie-marker-{}", regain_server::store::random_hex(16).unwrap());
        let (status, page) = selfie(&s, &browser, &format!("face:91;{marker}")).await;
        assert_eq!(status, StatusCode::OK);
        if let Some(dir) = &_dir {
            for file in std::fs::read_dir(dir.path()).unwrap() {
                let bytes = std::fs::read(file.unwrap().path()).unwrap();
                assert!(!bytes.windows(marker.len()).any(|w| w == marker.as_bytes()), "the selfie reached the disk");
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("face:91;{marker}"));
                assert!(!bytes.windows(encoded.len()).any(|w| w == encoded.as_bytes()), "the selfie reached the disk");
            }
        }
        let pass = element(&page, "tap").unwrap();
        assert!(pass.len() >= 16, "{pass}");
        assert!(page.contains("shown only once"));

        // Shown once: coming back shows no pass.
        let (status, again) = get(&browser, &format!("{}/recover/continue", s.base)).await;
        assert_eq!(status, StatusCode::GONE);
        assert!(!again.contains(&pass));

        // The pass signs in once, and the user must register a new method first.
        let mut form = auth_form();
        form.extend([("method", "tap".to_owned()), ("login", "ana@example.org".into()), ("tap", pass.clone())]);
        let signed_in = browser.post(format!("{}/authorize", s.base)).form(&form).send().await.unwrap();
        assert_eq!(signed_in.status(), StatusCode::OK);
        assert!(signed_in.text().await.unwrap().contains("Register a new sign-in method"));
        let again =
            crate::support::recovery::browser().post(format!("{}/authorize", s.base)).form(&form).send().await.unwrap();
        assert!(again.text().await.unwrap().contains("This pass is not valid"));

        let kinds = audit_kinds(&store, "u-ana").await;
        for kind in [
            AuditKind::RecoveryStarted,
            AuditKind::PresentationCompleted,
            AuditKind::FaceCheckPassed,
            AuditKind::AccountMatched,
            AuditKind::RecoveryCompleted,
        ] {
            assert!(kinds.contains(&kind), "{kind:?} missing from {kinds:?}");
        }
        let outbox = store.pending_notifications().await.unwrap();
        assert!(outbox.iter().any(|(_, user, kind)| user == "u-ana" && kind == "access-restored"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_device_flow_started_on_one_process_finishes_on_another() {
    let url = crate::support::fresh_postgres_url().await;
    let store = Store::open(&url).await.unwrap();
    store.create_user(&member("u-bo", "bo@example.org", "Bo", "Lind"), now()).await.unwrap();
    let a = start(store.clone(), "", None).await;
    // "Process" B: its own connection pool, plugin host and pages on its own port, the same
    // database and public name (a load balancer in front of both).
    let b = start(Store::open(&url).await.unwrap(), "", Some(&a.base)).await;
    assert_ne!(a.local, b.local);

    let browser = browser();
    let (status, page) = begin(&a, &browser, "bo@example.org", "other").await;
    assert_eq!(status, StatusCode::OK);
    let request = element(&page, "wallet-request").unwrap();
    assert!(page.contains("http-equiv=\"refresh\""));
    let (status, answer, _) = present(&page, "Bo", "Lind", 1).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, serde_json::json!({}), "cross-device answers carry no redirect");
    assert!(!request.is_empty());

    // The browser's next poll lands on process B (cookies are per host, not per port).
    let (status, page) = get(&browser, &format!("{}/recover/continue", b.local)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"selfie-form\""), "{page}");
    let (status, page) = selfie(&b, &browser, "face:88").await;
    assert_eq!(status, StatusCode::OK);
    assert!(element(&page, "tap").is_some(), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatches_revoked_credentials_and_weak_faces_end_with_a_helpdesk_reference() {
    for (store, _dir) in databases().await {
        store.create_user(&member("u-cy", "cy@example.org", "Cy", "Moreau"), now()).await.unwrap();
        store.create_user(&member("u-di", "di@example.org", "Di", "Okafor"), now()).await.unwrap();
        store.create_user(&member("u-ed", "ed@example.org", "Ed", "Quist"), now()).await.unwrap();
        store.create_user(&member("u-fay", "fay@example.org", "Fay", "Nakamura"), now()).await.unwrap();
        store.create_user(&member("u-fay2", "fay2@example.org", "FAY", "NAKAMURA"), now()).await.unwrap();
        let s = start(store.clone(), "", None).await;

        // Someone else's credential: the name does not match.
        let browser = browser();
        let (_, page) = begin(&s, &browser, "cy@example.org", "same").await;
        let (status, answer, _) = present(&page, "Mallory", "Moreau", 0).await;
        assert_eq!(status, StatusCode::OK);
        let (status, page) = get(&browser, answer["redirect_uri"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let reference = element(&page, "helpdesk-ref").expect("a helpdesk reference");
        assert!(!page.contains("Mallory"), "the page does not say why");
        let trail = store.audit_by_helpdesk_ref(&reference).await.unwrap();
        assert!(trail.iter().any(|e| e.kind == AuditKind::AccountNotMatched), "{trail:?}");

        // A revoked credential.
        let browser = crate::support::recovery::browser();
        let (_, page) = begin(&s, &browser, "di@example.org", "same").await;
        let (status, answer, _) = present(&page, "Di", "Okafor", REVOKED).await;
        assert_eq!(status, StatusCode::OK);
        let (_, page) = get(&browser, answer["redirect_uri"].as_str().unwrap()).await;
        assert!(element(&page, "helpdesk-ref").is_some(), "{page}");
        assert!(element(&page, "tap").is_none());

        // The right credential, but another user has the same name (in other letter case)
        // and nothing in the deployment tells them apart: neither is matched.
        let browser = crate::support::recovery::browser();
        let (_, page) = begin(&s, &browser, "fay@example.org", "same").await;
        let (status, answer, _) = present(&page, "Fay", "Nakamura", 0).await;
        assert_eq!(status, StatusCode::OK);
        let (_, page) = get(&browser, answer["redirect_uri"].as_str().unwrap()).await;
        let reference = element(&page, "helpdesk-ref").expect("a helpdesk reference");
        let trail = store.audit_by_helpdesk_ref(&reference).await.unwrap();
        assert!(
            trail.iter().any(|e| e.kind == AuditKind::AccountNotMatched && e.reason == "same-name-ambiguous"),
            "{trail:?}"
        );

        // A selfie of someone else.
        let browser = crate::support::recovery::browser();
        let (_, page) = begin(&s, &browser, "ed@example.org", "same").await;
        let (_, answer, _) = present(&page, "Ed", "Quist", 0).await;
        let _ = get(&browser, answer["redirect_uri"].as_str().unwrap()).await;
        let (status, page) = selfie(&s, &browser, "face:20").await;
        assert_eq!(status, StatusCode::OK);
        assert!(element(&page, "helpdesk-ref").is_some(), "{page}");
        assert!(audit_kinds(&store, "u-ed").await.contains(&AuditKind::FaceCheckFailed));

        for user in ["u-cy", "u-di", "u-ed", "u-fay"] {
            assert_eq!(store.count_recent(AuditKind::RecoveryCompleted, user, 0).await.unwrap(), 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_out_of_scope_logins_get_the_same_page() {
    for (store, _dir) in databases().await {
        let mut outsider = member("u-out", "out@example.org", "Out", "Sider");
        outsider.groups = vec!["staff".into()];
        store.create_user(&outsider, now()).await.unwrap();
        let s = start(store.clone(), "", None).await;
        let strip = |page: &str| {
            let url = element(page, "wallet-link").unwrap();
            page.replace(&url.replace('&', "&amp;"), "")
        };
        let (status_a, unknown) = begin(&s, &browser(), "nobody@example.org", "same").await;
        let (status_b, outside) = begin(&s, &browser(), "out@example.org", "same").await;
        assert_eq!(status_a, status_b);
        assert_eq!(strip(&unknown), strip(&outside));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_selfie_posts_at_once_issue_at_most_one_pass() {
    for (store, _dir) in databases().await {
        store.create_user(&member("u-fa", "fa@example.org", "Fa", "Ng"), now()).await.unwrap();
        let s = start(store.clone(), "", None).await;
        let browser = browser();
        let (_, page) = begin(&s, &browser, "fa@example.org", "same").await;
        let (_, answer, _) = present(&page, "Fa", "Ng", 0).await;
        let _ = get(&browser, answer["redirect_uri"].as_str().unwrap()).await;
        let (one, two) = tokio::join!(selfie(&s, &browser, "face:90"), selfie(&s, &browser, "face:90"));
        let passes = [&one.1, &two.1].iter().filter(|p| element(p, "tap").is_some()).count();
        assert_eq!(passes, 1, "{} / {}", one.0, two.0);
        assert_eq!(store.count_recent(AuditKind::RecoveryCompleted, "u-fa", 0).await.unwrap(), 1);
    }
}

/// The reason the latest recovery start of `user` was recorded with.
async fn last_start(store: &Store, user: &str) -> String {
    let trail = store.audit_since(0, Some(user)).await.unwrap();
    trail.into_iter().rev().find(|e| e.kind == AuditKind::RecoveryStarted).unwrap().reason
}

/// The eligibility policies see the user's recent recoveries in the audit log: attempts in
/// the window, and a privileged account's recovery in the last day. The first start asks
/// the database for them; later starts read them with the user in their first statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoveries_in_the_audit_log_make_a_start_ineligible() {
    for (store, _dir) in databases().await {
        store.create_user(&member("u-gi", "gi@example.org", "Gi", "Park"), now()).await.unwrap();
        let hu = regain_server::accounts::Account { privileged: true, ..member("u-hu", "hu@example.org", "Hu", "Lin") };
        store.create_user(&hu, now()).await.unwrap();
        let s = start(store.clone(), "", None).await;
        let earlier = |kind, user: &str| regain_core::env::AuditRecord {
            at: u64::try_from(now() - 600).unwrap(),
            kind,
            flow_id: "earlier".into(),
            user_id: Some(user.into()),
            reason: "ok".into(),
            helpdesk_ref: None,
        };

        let _ = begin(&s, &browser(), "gi@example.org", "same").await;
        assert_eq!(last_start(&store, "u-gi").await, "ok");
        for _ in 0..3 {
            store.record_audit(&earlier(AuditKind::RecoveryStarted, "u-gi")).await.unwrap();
        }
        let _ = begin(&s, &browser(), "gi@example.org", "same").await;
        assert_eq!(last_start(&store, "u-gi").await, "ok", "four attempts in the window");
        let _ = begin(&s, &browser(), "gi@example.org", "same").await;
        assert_eq!(last_start(&store, "u-gi").await, "not-eligible:eligibility-attempt-limit", "the sixth");

        let _ = begin(&s, &browser(), "hu@example.org", "same").await;
        assert_eq!(last_start(&store, "u-hu").await, "ok");
        store.record_audit(&earlier(AuditKind::RecoveryCompleted, "u-hu")).await.unwrap();
        let _ = begin(&s, &browser(), "hu@example.org", "same").await;
        assert_eq!(last_start(&store, "u-hu").await, "not-eligible:eligibility-privileged-cooldown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_starts_are_limited_per_login_without_saying_whether_it_exists() {
    for (store, _dir) in databases().await {
        let s = start(store.clone(), "", None).await;
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(begin(&s, &browser(), "ghost@example.org", "same").await.0);
        }
        assert_eq!(&statuses[..5], &[StatusCode::OK; 5]);
        assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    }
}

/// An OIDC4IDA provider's token endpoint (the authorization step is the test itself): it
/// checks PKCE and answers an ID token with `verified_claims` for the registered code.
async fn ida_provider(codes: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>) -> String {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = crate::support::recovery::ISSUER;
    let router = axum::Router::new().route(
        "/token",
        post(move |axum::Form(form): axum::Form<std::collections::HashMap<String, String>>| {
            let codes = codes.clone();
            async move {
                let (code, verifier) = (form["code"].clone(), form["code_verifier"].clone());
                let found = codes.lock().unwrap().iter().find(|(c, _, _)| *c == code).cloned();
                let Some((_, challenge, nonce)) = found else {
                    return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": "invalid_grant"})));
                };
                let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
                if base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()) != challenge {
                    return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": "invalid_grant"})));
                }
                let assertion = regain_dev_idv::ida::Assertion {
                    issuer,
                    kid: "k1",
                    client_id: "regain-recovery",
                    nonce: &nonce,
                    subject: "idv-subject-1",
                    iat: u64::try_from(now()).unwrap() - 2,
                    trust_framework: "eidas",
                    face_method: Some("bvr"),
                    claims: vec![
                        ("given_name", serde_json::json!("Gil")),
                        ("family_name", serde_json::json!("Brandão")),
                    ],
                };
                let token = assertion.id_token(&regain_dev_idv::keys::SigningKey::p256(1));
                (StatusCode::OK, axum::Json(serde_json::json!({ "id_token": token, "token_type": "Bearer" })))
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oidc4ida_recovery_goes_to_the_provider_and_back() {
    use regain_host::wit::deployment::Bundle;
    use regain_host::wit::types::SourceFile;
    for (store, _dir) in databases().await {
        store.create_user(&member("u-gil", "gil@example.org", "Gil", "Brandão"), now()).await.unwrap();
        let s = start(store.clone(), "", None).await;
        let codes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let idv = ida_provider(codes.clone()).await;
        let config = format!(
            "scope_group = \"recovery\"\n\n[verifier]\nresponse_uri = \"{base}/recover/response\"\n\n\
             [[idv]]\nid = \"ida\"\nissuer = \"{iss}\"\nmode = \"oidc4ida\"\ncountries = [\"*\"]\n\n\
             [idv.oidc4ida]\nauthorization_endpoint = \"{idv}/authorize\"\ntoken_endpoint = \"{idv}/token\"\n\
             client_id = \"regain-recovery\"\nredirect_uri = \"{base}/recover/provider-callback\"\n",
            base = s.base,
            iss = crate::support::recovery::ISSUER
        );
        let source = |name: &str, text: &str| SourceFile { name: name.into(), text: text.into() };
        s.deployments.publish(
            "default",
            Bundle {
                config: source("regain.toml", &config),
                policies: regain_core::policy::DEFAULT_POLICIES.iter().map(|(n, t)| source(n, t)).collect(),
            },
        );

        let browser = browser();
        let mut form = auth_form();
        form.extend([("login", "gil@example.org".to_owned()), ("device", "same".to_owned())]);
        let sent = browser.post(format!("{}/recover/start", s.base)).form(&form).send().await.unwrap();
        assert_eq!(sent.status(), StatusCode::SEE_OTHER);
        let to = sent.headers()["location"].to_str().unwrap().to_owned();
        assert!(to.starts_with(&format!("{idv}/authorize?")), "{to}");
        let param = |name: &str| {
            let v = to.split(['?', '&']).find_map(|kv| kv.strip_prefix(&format!("{name}="))).unwrap();
            regain_core::openid4vp::form_decode(v).unwrap()
        };
        let (state, nonce, challenge) = (param("state"), param("nonce"), param("code_challenge"));
        codes.lock().unwrap().push(("code-1".into(), challenge, nonce));

        // A forged state, or another browser, gets nowhere.
        let (status, _) =
            get(&browser, &format!("{}/recover/provider-callback?code=code-1&state=forged", s.base)).await;
        assert_eq!(status, StatusCode::GONE);
        let (status, _) = get(
            &crate::support::recovery::browser(),
            &format!("{}/recover/provider-callback?code=code-1&state={state}", s.base),
        )
        .await;
        assert_eq!(status, StatusCode::GONE);

        // The provider compared the face itself: no selfie step, the pass comes straight back.
        let (status, page) =
            get(&browser, &format!("{}/recover/provider-callback?code=code-1&state={state}", s.base)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(element(&page, "tap").is_some(), "{page}");
        let kinds = audit_kinds(&store, "u-gil").await;
        assert!(kinds.contains(&AuditKind::FaceCheckPassed), "{kinds:?}");
        assert!(kinds.contains(&AuditKind::RecoveryCompleted), "{kinds:?}");

        // The state is accepted once.
        let (status, _) =
            get(&browser, &format!("{}/recover/provider-callback?code=code-1&state={state}", s.base)).await;
        assert_eq!(status, StatusCode::GONE);
    }
}
