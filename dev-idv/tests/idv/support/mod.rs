//! The dev IDV on a loopback port, and verification of what it issues with `regain-core`,
//! with trust material fetched over HTTP as the reference server fetches it.

#![allow(dead_code, reason = "each test binary uses part of the support")]

use regain_core::jose::Alg;
use regain_core::sdjwt::{Expectations, Rejection, TrustFailure, TrustSource, VerifiedCredential};
use regain_dev_idv::fixtures::Fixtures;
use regain_dev_idv::keys::Verifier;
use regain_dev_idv::service::{Config, Service, now, vct};
use std::collections::HashMap;

/// The registered OIDC4IDA client.
pub const CLIENT_ID: &str = "regain-recovery";
/// Its redirect URI.
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/recover/provider-callback";

/// Serves `router` on a fresh loopback port; answers its base URL.
pub async fn serve(router: impl FnOnce(&str) -> axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = router(&base);
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// Starts the dev IDV with the built-in fixtures and one registered client.
pub async fn start_idv() -> String {
    serve(|base| {
        Service::new(Config {
            issuer: base.to_owned(),
            fixtures: Fixtures::generate(),
            clients: vec![(CLIENT_ID.into(), REDIRECT_URI.into())],
            wallet_url: "http://127.0.0.1:9".into(),
        })
        .router()
    })
    .await
}

/// A client that does not follow redirects (tests look at them).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Verifies at `/verify` with a fixture document and selfie; answers the JSON outcome.
pub async fn verify(base: &str, document: &str, selfie: &str) -> (reqwest::StatusCode, serde_json::Value) {
    let response = http()
        .post(format!("{base}/verify"))
        .header("accept", "application/json")
        .form(&[("document", document), ("selfie", selfie)])
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// The issuer's keys and status lists, fetched once over HTTP.
pub struct HttpTrust {
    issuer: String,
    jwks: String,
    lists: HashMap<String, String>,
}

impl HttpTrust {
    /// Fetches the JWK Set (at the reference server's default location) and the status list.
    pub async fn fetch(base: &str) -> Self {
        let jwks = reqwest::get(format!("{base}/.well-known/jwks.json")).await.unwrap().text().await.unwrap();
        let list = reqwest::get(format!("{base}/status/1")).await.unwrap();
        assert_eq!(list.headers()["content-type"], "application/statuslist+jwt");
        let lists = [(format!("{base}/status/1"), list.text().await.unwrap())].into();
        Self { issuer: base.to_owned(), jwks, lists }
    }
}

impl TrustSource for HttpTrust {
    fn issuer_keys(&mut self, issuer: &str) -> Result<String, TrustFailure> {
        if issuer == self.issuer { Ok(self.jwks.clone()) } else { Err(TrustFailure::UnknownIssuer) }
    }

    fn status_list_token(&mut self, uri: &str) -> Result<String, TrustFailure> {
        self.lists.get(uri).cloned().ok_or_else(|| TrustFailure::Unavailable(format!("no list at `{uri}`")))
    }
}

/// Verifies a presentation as Regain's verifier does.
pub async fn verify_presentation(
    base: &str,
    presentation: &str,
    nonce: &str,
    audience: &str,
) -> Result<VerifiedCredential, Rejection> {
    let mut trust = HttpTrust::fetch(base).await;
    let vcts = [vct(base)];
    let expect = Expectations {
        nonce,
        audience,
        vcts: &vcts,
        algs: &[Alg::Es256],
        now: now(),
        skew: 60,
        kb_max_age: 300,
        holder_binding: true,
        require_status: true,
        require_expiry: true,
    };
    regain_core::sdjwt::verify(presentation, &expect, &mut trust, &Verifier)
}

/// Randomness for `regain_core::openid4vp::build_request`.
pub struct Random;

impl regain_core::Entropy for Random {
    fn fill(&mut self, out: &mut [u8]) {
        getrandom::fill(out).unwrap();
    }
}
