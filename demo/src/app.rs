//! The demo application: a relying party of the reference server, so that a person can see
//! the whole journey end with a sign-in. Authorization code flow with PKCE; the ID token's
//! signature is checked against the server's key set before its claims are shown.

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use regain_core::jose::{Alg, Jws, b64url_encode, parse_jwks};
use regain_core::openid4vp::percent_encode;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The client id the demo application is registered under.
pub const CLIENT_ID: &str = "demo-app";

#[derive(Clone)]
struct App {
    base: String,
    issuer: String,
    http: reqwest::Client,
    /// Sign-ins in progress by `state`: (PKCE verifier, nonce).
    pending: Arc<Mutex<HashMap<String, (String, String)>>>,
}

/// The application's routes: `/`, `/login`, `/callback`.
pub fn router(base: &str, issuer: &str) -> anyhow::Result<axum::Router> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let app = App { base: base.to_owned(), issuer: issuer.to_owned(), http, pending: Arc::default() };
    Ok(axum::Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .with_state(app))
}

fn page(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Demo application</title></head>\
         <body><main><p><strong>DEV ONLY</strong>: the Regain demo application.</p><h1>Demo application</h1>\
         {body}</main></body></html>"
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn home() -> Html<String> {
    page(
        "<p>This application signs you in with the reference OpenID Provider.</p><p><a id=\"sign-in\" href=\"/login\">Sign in</a></p>",
    )
}

fn random() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(b64url_encode(&bytes))
}

async fn login(State(app): State<App>) -> Response {
    let (Ok(state), Ok(nonce), Ok(verifier)) = (random(), random(), random()) else {
        return page("<p>No randomness available.</p>").into_response();
    };
    let challenge = b64url_encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    app.pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(state.clone(), (verifier, nonce.clone()));
    let url = format!(
        "{}/authorize?response_type=code&client_id={CLIENT_ID}&redirect_uri={}&scope=openid%20profile\
         &state={state}&nonce={nonce}&code_challenge={challenge}&code_challenge_method=S256",
        app.issuer,
        percent_encode(&format!("{}/callback", app.base)),
    );
    Redirect::to(&url).into_response()
}

#[derive(Deserialize)]
struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: Option<String>,
}

async fn callback(State(app): State<App>, Query(q): Query<Callback>) -> Response {
    let pending = app.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&q.state);
    let (Some((verifier, nonce)), Some(code)) = (pending, q.code) else {
        let error = q.error.unwrap_or_else(|| "unknown sign-in".into());
        return page(&format!("<p role=\"alert\">Sign-in failed: {}</p>", escape(&error))).into_response();
    };
    match redeem(&app, &code, &verifier, &nonce).await {
        Ok(claims) => {
            let rows: String = claims
                .iter()
                .map(|(k, v)| format!("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v.to_string())))
                .collect();
            page(&format!(
                "<p id=\"signed-in\">You are signed in. The ID token's signature and claims were checked.</p>\
                 <table>{rows}</table><p><a href=\"/login\">Sign in again</a></p>"
            ))
            .into_response()
        }
        Err(e) => page(&format!("<p role=\"alert\">Sign-in failed: {}</p>", escape(&e.to_string()))).into_response(),
    }
}

/// The code exchange and the ID token checks: signature, issuer, audience, nonce.
async fn redeem(
    app: &App,
    code: &str,
    verifier: &str,
    nonce: &str,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let redirect_uri = format!("{}/callback", app.base);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("client_id", CLIENT_ID),
        ("code_verifier", verifier),
    ];
    let tokens: serde_json::Value =
        app.http.post(format!("{}/token", app.issuer)).form(&form).send().await?.json().await?;
    let id_token =
        tokens.get("id_token").and_then(|t| t.as_str()).ok_or_else(|| anyhow::anyhow!("no ID token: {tokens}"))?;
    let jwks = app.http.get(format!("{}/jwks", app.issuer)).send().await?.text().await?;
    let keys = parse_jwks(jwks.as_bytes()).map_err(|e| anyhow::anyhow!("key set: {e}"))?;
    let jws = Jws::parse(id_token, &[Alg::Es256]).map_err(|e| anyhow::anyhow!("ID token: {e}"))?;
    jws.verify_with(&keys, &regain_host::NativeVerifier).map_err(|e| anyhow::anyhow!("ID token signature: {e}"))?;
    let claim = |name: &str| jws.claims.get(name).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    if claim("iss") != app.issuer || claim("aud") != CLIENT_ID || claim("nonce") != nonce {
        anyhow::bail!("the ID token is not for this sign-in");
    }
    Ok(jws.claims)
}
