//! Trust material as the server gets it for the plugin: an issuer's key set from its
//! `jwks_uri` (fetched once, then cached) or `jwks_file`, status lists fetched by URI, and
//! clear errors for everything else.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use axum::routing::get;
use regain_host::reload::DeploymentStore;
use regain_host::wit::deployment::Bundle;
use regain_host::wit::trust::TrustError;
use regain_host::wit::types::SourceFile;
use regain_server::trust::TrustSource;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An IDV's endpoints: a key set (counting fetches), a status list, a failing and a huge one.
async fn idv(fetches: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .route(
            "/jwks",
            get(move || {
                fetches.fetch_add(1, Ordering::SeqCst);
                async { r#"{"keys":[]}"# }
            }),
        )
        .route("/status/7", get(|| async { "eyJ.status.list" }))
        .route("/broken", get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no") }))
        .route("/huge", get(|| async { "x".repeat(3 * 1024 * 1024) }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

fn deployment(dir: &std::path::Path, idvs: &str) -> DeploymentStore {
    let store = DeploymentStore::default();
    let config = format!("scope_group = \"recovery\"\n\n[verifier]\nresponse_uri = \"https://idp.example/r\"\n{idvs}");
    let name = dir.join("regain.toml").display().to_string();
    store.publish("default", Bundle { config: SourceFile { name, text: config }, policies: vec![] });
    store
}

fn profile(id: &str, issuer: &str, keys: &str) -> String {
    format!("\n[[idv]]\nid = \"{id}\"\nissuer = \"{issuer}\"\nvct = [\"{issuer}/id\"]\ncountries = [\"*\"]\n{keys}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_the_deployments_providers_and_are_cached() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let base = idv(fetches.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file-idv.json"), r#"{"keys":["from-file"]}"#).unwrap();
    let idvs = [
        profile("remote", "https://remote.example", &format!("jwks_uri = \"{base}/jwks\"")),
        profile("local", "https://local.example", "jwks_file = \"file-idv.json\""),
        profile("down", "https://down.example", &format!("jwks_uri = \"{base}/broken\"")),
        profile("huge", "https://huge.example", &format!("jwks_uri = \"{base}/huge\"")),
    ]
    .concat();
    let trust = TrustSource::from_deployment(deployment(dir.path(), &idvs), "default").unwrap();

    // The server gives its database connection back before a fetch over the network, and only then.
    let slow_calls = AtomicUsize::new(0);
    let before_fetch = async || {
        slow_calls.fetch_add(1, Ordering::SeqCst);
    };
    assert_eq!(trust.issuer_keys("https://remote.example", before_fetch).await.unwrap(), r#"{"keys":[]}"#);
    assert_eq!(trust.issuer_keys("https://remote.example", before_fetch).await.unwrap(), r#"{"keys":[]}"#);
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "the second answer comes from the cache");
    assert_eq!(trust.issuer_keys("https://local.example", before_fetch).await.unwrap(), r#"{"keys":["from-file"]}"#);
    assert_eq!(slow_calls.load(Ordering::SeqCst), 1, "neither the cache nor a file is a slow call");

    // An issuer the deployment does not trust gets no keys, whatever it claims.
    assert!(matches!(trust.issuer_keys("https://stranger.example", async || {}).await, Err(TrustError::UnknownIssuer)));
    match trust.issuer_keys("https://down.example", async || {}).await {
        Err(TrustError::Unavailable(text)) => assert!(text.contains("500"), "{text}"),
        other => panic!("{other:?}"),
    }
    match trust.issuer_keys("https://huge.example", async || {}).await {
        Err(TrustError::Unavailable(text)) => assert!(text.contains("larger than"), "{text}"),
        other => panic!("{other:?}"),
    }

    assert_eq!(trust.status_list_token(&format!("{base}/status/7"), async || {}).await.unwrap(), "eyJ.status.list");
    match trust.status_list_token("file:///etc/passwd", async || {}).await {
        Err(TrustError::Unavailable(text)) => assert!(text.contains("is not an HTTP(S) URL"), "{text}"),
        other => panic!("{other:?}"),
    }
}
