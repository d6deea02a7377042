//! The dev IDV as an OIDC4IDA provider over real HTTP: the authorization code flow with
//! PKCE, as the reference server's recovery pages drive it, and ID tokens whose
//! `verified_claims` verify with `regain-core`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use crate::support::{CLIENT_ID, HttpTrust, REDIRECT_URI, http, start_idv};
use regain_core::ida::{FACE_METHODS, IdTokenExpectations, VerifiedIdentity, verify_id_token};
use regain_core::jose::{Alg, b64url_encode};
use regain_core::openid4vp::percent_encode;
use regain_core::sdjwt::{Parts, Rejection};
use regain_dev_idv::keys::Verifier;
use regain_dev_idv::service::now;
use regain_dev_idv::wallet::query_params;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const VERIFIER: &str = "a-code-verifier-of-enough-length-0123456789abcdef";

/// The request parameters the plugin sends (see `regain_core::flow`): PKCE S256, a nonce, a
/// state and a `claims` request for `verified_claims`.
fn request(overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let challenge = b64url_encode(&Sha256::digest(VERIFIER.as_bytes()));
    let claims = regain_core::ida::claims_request(&["given_name", "family_name", "birthdate"], &[]).to_string();
    let mut params: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid"),
        ("state", "st-1"),
        ("nonce", "no-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("claims", claims.as_str()),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (key, value) in overrides {
        params.retain(|(k, _)| k != key);
        if !value.is_empty() {
            params.push(((*key).to_owned(), (*value).to_owned()));
        }
    }
    params
}

fn query(params: &[(String, String)]) -> String {
    params.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect::<Vec<_>>().join("&")
}

/// Posts the verification form; answers the redirect's parameters.
async fn authorize(base: &str, params: &[(String, String)], document: &str, selfie: &str) -> Vec<(String, String)> {
    let mut form = params.to_vec();
    form.push(("document".into(), document.into()));
    form.push(("selfie".into(), selfie.into()));
    let response = http().post(format!("{base}/authorize")).form(&form).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{REDIRECT_URI}?")), "{location}");
    query_params(&location).unwrap()
}

fn get<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn exchange(base: &str, code: &str, verifier: &str) -> (StatusCode, Value) {
    let response = http()
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", CLIENT_ID),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn verify(base: &str, id_token: &str) -> Result<VerifiedIdentity, Rejection> {
    let mut trust = HttpTrust::fetch(base).await;
    let methods: Vec<String> = FACE_METHODS.iter().map(|m| (*m).to_owned()).collect();
    let expect = IdTokenExpectations {
        issuer: base,
        client_id: CLIENT_ID,
        nonce: "no-1",
        algs: &[Alg::Es256],
        now: now(),
        skew: 60,
        max_age: 600,
        trust_frameworks: &[],
        face_methods: &methods,
    };
    verify_id_token(id_token, &expect, &mut Parts { trust: &mut trust, verifier: &Verifier })
}

#[tokio::test]
async fn the_code_flow_with_pkce_returns_verified_claims_once() {
    let base = start_idv().await;
    let discovery: Value =
        reqwest::get(format!("{base}/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(discovery["authorization_endpoint"], format!("{base}/authorize"));
    assert_eq!(discovery["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(discovery["verified_claims_supported"], true);

    let params = request(&[]);
    let page = http().get(format!("{base}/authorize?{}", query(&params))).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("DEV ONLY") && page.contains("id=\"verify-form\""), "{page}");
    assert!(page.contains("name=\"code_challenge\""), "the request travels with the form");

    let back = authorize(&base, &params, "jose-garcia-marquez", "jose-garcia-marquez").await;
    assert_eq!(get(&back, "state"), Some("st-1"));
    let code = get(&back, "code").unwrap().to_owned();

    let (status, answer) = exchange(&base, &code, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let identity = verify(&base, answer["id_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(identity.face_method, "bvr");
    assert_eq!(identity.trust_framework, "regain_dev_only");
    assert_eq!(identity.claims["given_name"], "José");
    assert_eq!(identity.claims["family_name"], "García Márquez");
    assert_eq!(identity.claims["birthdate"], "1975-06-30");
    assert!(identity.claims.get("nationalities").is_none(), "only the claims asked for");

    // The code is accepted once.
    let (status, answer) = exchange(&base, &code, VERIFIER).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "invalid_grant");

    // A wrong verifier gets nothing.
    let back = authorize(&base, &params, "ana-silva", "ana-silva").await;
    let (status, answer) =
        exchange(&base, get(&back, "code").unwrap(), "another-verifier-of-enough-length-0123456789abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "invalid_grant");
}

#[tokio::test]
async fn failed_checks_deny_or_leave_the_face_out() {
    let base = start_idv().await;
    let params = request(&[]);

    // An expired passport: access denied, back at the client with its state.
    let back = authorize(&base, &params, "erik-lindqvist", "erik-lindqvist").await;
    assert_eq!(get(&back, "error"), Some("access_denied"));
    assert_eq!(get(&back, "state"), Some("st-1"));
    assert!(get(&back, "code").is_none());

    // Someone else's selfie: the document is verified, the face is not; Regain refuses the
    // token for want of face evidence.
    let back = authorize(&base, &params, "maria-santos-1980", "someone-else").await;
    let (_, answer) = exchange(&base, get(&back, "code").unwrap(), VERIFIER).await;
    let refused = verify(&base, answer["id_token"].as_str().unwrap()).await.unwrap_err();
    assert_eq!(refused, Rejection::FaceEvidenceMissing);

    // Cancelling.
    let mut form = params.clone();
    form.push(("cancel".into(), "1".into()));
    let response = http().post(format!("{base}/authorize")).form(&form).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("error=access_denied"), "{location}");
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let base = start_idv().await;
    // An unregistered client or redirect URI gets a page, never a redirect.
    for overrides in [[("client_id", "intruder")], [("redirect_uri", "https://evil.example/cb")]] {
        let response = http().get(format!("{base}/authorize?{}", query(&request(&overrides)))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get("location").is_none());
    }
    // Without PKCE, or with the plain method, or without a nonce: an error redirect.
    for overrides in [
        vec![("code_challenge_method", "plain")],
        vec![("code_challenge_method", ""), ("code_challenge", "")],
        vec![("nonce", "")],
        vec![("scope", "profile")],
    ] {
        let response = http().get(format!("{base}/authorize?{}", query(&request(&overrides)))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{overrides:?}");
        let location = response.headers()["location"].to_str().unwrap();
        assert!(location.starts_with(&format!("{REDIRECT_URI}?error=invalid_request")), "{location}");
    }
    let response = http()
        .get(format!("{base}/authorize?{}", query(&request(&[("response_type", "token")]))))
        .send()
        .await
        .unwrap();
    assert!(response.headers()["location"].to_str().unwrap().contains("error=unsupported_response_type"));

    // Another client's code, or a code with another redirect URI, is refused.
    let back = authorize(&base, &request(&[]), "ana-silva", "ana-silva").await;
    let response = http()
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", get(&back, "code").unwrap()),
            ("redirect_uri", "https://evil.example/cb"),
            ("client_id", CLIENT_ID),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = http().post(format!("{base}/token")).form(&[("grant_type", "password")]).send().await.unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");
}
