//! The dev wallet against the dev IDV and a verifier that speaks like Regain's recovery
//! pages (`direct_post`, same-device redirect or cross-device): the library, the web page
//! and the command line.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use crate::support::{Random, http, serve, start_idv, verify, verify_presentation};
use axum::extract::State;
use axum::routing::post;
use regain_core::openid4vp::{PresentationRequest as Request, RequestParams, build_request, parse_direct_post};
use regain_dev_idv::service::vct;
use regain_dev_idv::wallet::client::Wallet;
use regain_dev_idv::wallet::{CredentialOffer, PresentationRequest, WalletError};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// What the verifier saw: the request it made and the presentation it received.
#[derive(Default)]
struct Seen {
    state: String,
    cross_device: bool,
    presentation: Option<String>,
}

/// A verifier in the shape of Regain's `direct_post` endpoint.
async fn start_verifier() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    let base = serve(move |base| {
        let back = format!("{base}/recover/continue?response_code=rc-1");
        axum::Router::new()
            .route(
                "/recover/response",
                post(move |State(seen): State<Arc<Mutex<Seen>>>, body: String| async move {
                    let mut seen = seen.lock().unwrap();
                    match parse_direct_post(&body, &seen.state) {
                        Ok(presentation) => {
                            seen.presentation = Some(presentation);
                            let answer = if seen.cross_device { json!({}) } else { json!({ "redirect_uri": back }) };
                            (StatusCode::OK, axum::Json(answer))
                        }
                        Err(e) => (
                            StatusCode::BAD_REQUEST,
                            axum::Json(json!({ "error": "invalid_request", "error_description": e.to_string() })),
                        ),
                    }
                }),
            )
            .with_state(shared)
    })
    .await;
    (base, seen)
}

/// A request as the plugin builds it, addressed to `wallet`.
fn request(verifier: &str, idv: &str, wallet: &str, seen: &Mutex<Seen>, cross_device: bool) -> Request {
    let vcts = [vct(idv)];
    let response_uri = format!("{verifier}/recover/response");
    let request = build_request(
        &mut Random,
        &RequestParams {
            response_uri: &response_uri,
            vcts: &vcts,
            claims: &["given_name", "family_name", "portrait"],
            wallet,
        },
    );
    let mut seen = seen.lock().unwrap();
    seen.state = request.state.clone();
    seen.cross_device = cross_device;
    seen.presentation = None;
    request
}

async fn offer(idv: &str, person: &str) -> CredentialOffer {
    let (_, answer) = verify(idv, person, person).await;
    CredentialOffer::parse(answer["credential_offer_url"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn the_library_presents_only_what_is_asked_and_returns_the_redirect() {
    let idv = start_idv().await;
    let (verifier, seen) = start_verifier().await;
    let dir = tempfile::tempdir().unwrap();
    let wallet = Wallet::open(&dir.path().join("w.json")).unwrap();
    wallet.receive(&offer(&idv, "maria-santos-1992").await.url("openid-credential-offer://")).await.unwrap();

    let request = request(&verifier, &idv, "openid4vp://", &seen, false);
    let answer = wallet.present(&request.url, None).await.unwrap();
    assert_eq!(answer["redirect_uri"], format!("{verifier}/recover/continue?response_code=rc-1"));

    let presentation = seen.lock().unwrap().presentation.clone().unwrap();
    let verified = verify_presentation(&idv, &presentation, &request.nonce, &request.client_id).await.unwrap();
    assert_eq!(verified.claims["given_name"], "Maria");
    assert!(verified.claims.contains_key("portrait"));
    assert!(!verified.claims.contains_key("birthdate"), "not asked for, not disclosed");
    assert!(!verified.claims.contains_key("nationality"));

    // A request for another credential type finds nothing in the wallet.
    let vcts = ["https://other.example/credentials/identity".to_owned()];
    let response_uri = format!("{verifier}/recover/response");
    let other = build_request(
        &mut Random,
        &RequestParams { response_uri: &response_uri, vcts: &vcts, claims: &["given_name"], wallet: "openid4vp://" },
    );
    assert_eq!(wallet.present(&other.url, None).await.unwrap_err(), WalletError::NoCredential);
    // A response URI that is not the client identifier's is refused before anything is sent.
    let forged = request.url.replace("response_uri=http", "response_uri=https");
    assert!(matches!(PresentationRequest::parse(&forged), Err(WalletError::Unsupported(_))));
    // The verifier refuses a replay of the same state once it moved on.
    seen.lock().unwrap().state = "another".into();
    let refused = wallet.present(&request.url, None).await.unwrap_err();
    assert!(matches!(&refused, WalletError::Remote(m) if m.contains("400")), "{refused}");
}

#[tokio::test]
async fn the_web_page_receives_shows_the_request_and_shares() {
    let idv = start_idv().await;
    let (verifier, seen) = start_verifier().await;
    let dir = tempfile::tempdir().unwrap();
    let wallet = Arc::new(Wallet::open(&dir.path().join("w.json")).unwrap());
    let web = serve(|_| regain_dev_idv::wallet::web::router(wallet.clone())).await;
    let browser = http();

    let empty = browser.get(format!("{web}/")).send().await.unwrap().text().await.unwrap();
    assert!(empty.contains("DEV ONLY") && empty.contains("id=\"empty\""));

    // The IDV's "open in the dev wallet" link.
    let link = offer(&idv, "bjorn-odegard").await.url(&format!("{web}/offer"));
    let received = browser.get(&link).send().await.unwrap();
    assert_eq!(received.status(), StatusCode::OK);
    let received = received.text().await.unwrap();
    assert!(received.contains("id=\"received\""), "{received}");
    assert!(received.contains("Ødegård"));
    let again = browser.get(&link).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_GATEWAY, "the offer's code works once");
    let home = browser.get(format!("{web}/")).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("id=\"credential-c1\"") && home.contains("data:image/bmp;base64,"), "{home}");

    // The recovery page's wallet link, with `[verifier] wallet` set to this page.
    let request = request(&verifier, &idv, &format!("{web}/present"), &seen, false);
    assert!(request.url.starts_with(&format!("{web}/present?client_id=")));
    let page = browser.get(&request.url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("<strong id=\"verifier\">{verifier}</strong>")), "{page}");
    assert!(page.contains("<code>given_name</code>, <code>family_name</code>, <code>portrait</code>"), "{page}");
    assert!(page.contains("given_name: Bjørn"));
    let query = request.url.split_once('?').unwrap().1.to_owned();
    let shared = browser
        .post(format!("{web}/present"))
        .form(&[("request", query.as_str()), ("credential", "c1")])
        .send()
        .await
        .unwrap();
    assert_eq!(shared.status(), StatusCode::SEE_OTHER, "same device: back to the verifier");
    assert_eq!(shared.headers()["location"], format!("{verifier}/recover/continue?response_code=rc-1"));
    let presentation = seen.lock().unwrap().presentation.clone().unwrap();
    let verified = verify_presentation(&idv, &presentation, &request.nonce, &request.client_id).await.unwrap();
    assert_eq!(verified.claims["family_name"], "Ødegård");

    // Cross device: the verifier answers no redirect; the page says to go back.
    let request = request_cross(&verifier, &idv, &web, &seen);
    let query = request.url.split_once('?').unwrap().1.to_owned();
    let shared = browser.post(format!("{web}/present")).form(&[("request", query.as_str())]).send().await.unwrap();
    assert_eq!(shared.status(), StatusCode::OK);
    assert!(shared.text().await.unwrap().contains("id=\"done\""));

    let broken = browser.get(format!("{web}/present?client_id=x")).send().await.unwrap();
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
}

fn request_cross(verifier: &str, idv: &str, web: &str, seen: &Mutex<Seen>) -> Request {
    request(verifier, idv, &format!("{web}/present"), seen, true)
}

/// Runs the command-line wallet; answers its exit status and standard output.
async fn cli(args: Vec<String>) -> (bool, String) {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_regain-dev-wallet")).args(args).env("REGAIN_LOG", "off").output()
    })
    .await
    .unwrap()
    .unwrap();
    (output.status.success(), String::from_utf8(output.stdout).unwrap())
}

#[tokio::test]
async fn the_command_line_receives_lists_and_presents() {
    let idv = start_idv().await;
    let (verifier, seen) = start_verifier().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("cli.json").display().to_string();
    let args = |rest: &[&str]| {
        let mut args = vec!["--store".to_owned(), store.clone()];
        args.extend(rest.iter().map(|a| (*a).to_owned()));
        args
    };
    let offer_url = offer(&idv, "tomas-novak").await.url("openid-credential-offer://");
    let (ok, out) = cli(args(&["receive", &offer_url])).await;
    assert!(ok, "{out}");
    assert!(out.starts_with("received credential c1"), "{out}");
    let (ok, out) = cli(args(&["list"])).await;
    assert!(ok);
    assert!(out.contains("given_name: Tomáš") && out.contains("portrait: (image)"), "{out}");

    let request = request(&verifier, &idv, "openid4vp://", &seen, false);
    let (ok, out) = cli(args(&["present", &request.url])).await;
    assert!(ok, "{out}");
    let answer: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(answer["redirect_uri"].as_str().unwrap().ends_with("response_code=rc-1"));
    assert!(seen.lock().unwrap().presentation.is_some());
    // The wallet file keeps the key: a second run presents with the same binding.
    let (ok, _) = cli(args(&["receive", &offer_url])).await;
    assert!(!ok, "the offer was used");
}
