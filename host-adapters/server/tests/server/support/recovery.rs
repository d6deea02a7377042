//! A reference server with its recovery pages on a loopback port, a simulated IDV (the dev
//! IDV's keys and credentials) and a simulated wallet, for tests that drive a recovery over
//! HTTP the way a browser and a wallet do.

use regain_core::policy::DEFAULT_POLICIES;
use regain_dev_idv::keys::SigningKey;
use regain_dev_idv::sdjwt::{IdentityCredential, Issued, issue_identity};
use regain_host::reload::DeploymentStore;
use regain_host::wit::deployment::Bundle;
use regain_host::wit::face_check::{FaceCheckError, FaceComparison};
use regain_host::wit::types::SourceFile;
use regain_host::{ComponentSource, PluginHost, SandboxConfig};
use regain_server::accounts::Account;
use regain_server::adapter::{BoxFuture, FaceService, ServerAdapter};
use regain_server::provider::{Client, Provider};
use regain_server::recovery::{Limits, Recovery};
use regain_server::store::{Store, now};
use regain_server::trust::{TrustMaterial, TrustSource};
use reqwest::redirect::Policy;
use serde_json::json;
use std::sync::Arc;

/// The simulated IDV's issuer identifier.
pub const ISSUER: &str = "https://idv.example";
/// The credential type it issues.
pub const VCT: &str = "https://idv.example/credentials/identity";
/// Its status list.
pub const STATUS_URI: &str = "https://idv.example/status/1";
/// Status list index of a revoked credential.
pub const REVOKED: u64 = 2;
/// The relying party's redirect URI.
pub const RP: &str = "https://rp.example/cb";

/// TEST DOUBLE for a face comparison service (none exists on this machine): a selfie whose
/// bytes read `face:<score>` scores that; anything else is not a face.
pub struct FaceDouble;

impl FaceService for FaceDouble {
    fn compare<'a>(&'a self, _: &'a [u8], selfie: &'a [u8]) -> BoxFuture<'a, Result<FaceComparison, FaceCheckError>> {
        Box::pin(async move {
            let text = std::str::from_utf8(selfie).map_err(|_| FaceCheckError::UnknownSelfie)?;
            // `face:SCORE`, optionally followed by `;` and anything (a marker to look for).
            let text = text.split(';').next().unwrap_or_default();
            let score = text.strip_prefix("face:").and_then(|s| s.parse().ok()).ok_or(FaceCheckError::UnknownSelfie)?;
            Ok(FaceComparison { score, live: true })
        })
    }
}

/// The deployment file for a server whose wallet endpoint is `base`/recover/response.
pub fn deployment(base: &str, extra: &str) -> String {
    format!(
        "scope_group = \"recovery\"\n{extra}\n\n[verifier]\nresponse_uri = \"{base}/recover/response\"\n\n\
         [[idv]]\nid = \"dev-idv\"\nissuer = \"{ISSUER}\"\nvct = [\"{VCT}\"]\ncountries = [\"*\"]\n"
    )
}

/// The IDV's pinned trust material: its key set and a status list in which `REVOKED` is set.
pub fn trust() -> TrustMaterial {
    let issuer = SigningKey::p256(1);
    let mut trust = TrustMaterial::default();
    trust.issuers.insert(ISSUER.into(), issuer.jwks(Some("k1")).to_string());
    let list = regain_dev_idv::status::token(
        &issuer,
        Some("k1"),
        STATUS_URI,
        &[0, 0, 1, 0],
        1,
        u64::try_from(now()).unwrap_or(0) - 60,
        None,
    );
    trust.status_lists.insert(STATUS_URI.into(), list);
    trust
}

/// A credential the IDV issued to the wallet's key.
pub fn credential(given: &str, family: &str, status_index: u64) -> Issued {
    credential_listed_at(STATUS_URI, given, family, status_index)
}

/// A credential whose status entry is in the list at `status_uri`.
pub fn credential_listed_at(status_uri: &str, given: &str, family: &str, status_index: u64) -> Issued {
    let t = u64::try_from(now()).unwrap_or(0);
    let credential = IdentityCredential {
        issuer: ISSUER,
        kid: "k1",
        vct: VCT,
        iat: t - 600,
        exp: t + 86_400,
        status: Some((status_uri, status_index)),
        claims: vec![("given_name", json!(given)), ("family_name", json!(family)), ("portrait", json!("cG9ydHJhaXQ"))],
    };
    issue_identity(&credential, &SigningKey::p256(1), &SigningKey::p256(5))
}

/// The wallet's `direct_post` body answering the request at `url` with `issued`.
pub fn wallet_answer(url: &str, issued: &Issued) -> String {
    regain_dev_idv::wallet::answer(url, issued, &SigningKey::p256(5), u64::try_from(now()).unwrap_or(0) - 2)
        .unwrap_or_default()
}

/// A user in the recovery scope.
pub fn member(id: &str, login: &str, given: &str, family: &str) -> Account {
    Account {
        id: id.into(),
        login: login.into(),
        given_name: Some(given.into()),
        family_name: Some(family.into()),
        enabled: true,
        last_sign_in: Some(now() - 86_400),
        groups: vec!["recovery".into()],
        attributes: [("email".to_owned(), format!("{id}@home.example"))].into(),
        ..Account::default()
    }
}

/// A running server with recovery pages.
pub struct RecoveryServer {
    /// Its base URL (the issuer).
    pub base: String,
    /// Where this process listens (differs from `base` for a second process).
    pub local: String,
    /// The provider behind it.
    pub provider: Provider,
    /// Its deployments (tests publish changes here).
    pub deployments: DeploymentStore,
}

/// Starts a server on `store` with the deployment `extra` lines added to the standard one;
/// `base` reuses another server's issuer (two processes behind one name).
pub async fn start(store: Store, extra: &str, base: Option<&str>) -> RecoveryServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let own = format!("http://{}", listener.local_addr().expect("an address"));
    let base = base.map_or_else(|| own.clone(), str::to_owned);
    let client = Client {
        client_id: "rp".into(),
        redirect_uris: vec![RP.into()],
        post_logout_redirect_uris: vec![],
        client_secret: None,
    };
    let provider = Provider::new(&base, vec![client], store.clone()).await.expect("the provider starts");
    let deployments = DeploymentStore::default();
    let source = |name: &str, text: &str| SourceFile { name: name.into(), text: text.into() };
    deployments.publish(
        "default",
        Bundle {
            config: source("regain.toml", &deployment(&base, extra)),
            policies: DEFAULT_POLICIES.iter().map(|(n, t)| source(n, t)).collect(),
        },
    );
    let adapter = ServerAdapter::new(
        store,
        provider.passes.clone(),
        deployments.clone(),
        Arc::new(TrustSource::pinned(trust())),
        Arc::new(FaceDouble),
    );
    let config =
        SandboxConfig { cache_dir: Some(std::env::temp_dir().join("regain-test-cache")), ..SandboxConfig::default() };
    let host = PluginHost::new(config, ComponentSource::Bundled).expect("the component loads");
    let recovery = Recovery::new(provider.clone(), host, adapter, deployments.clone(), "default", Limits::default())
        .expect("the recovery service starts");
    let router = provider.clone().router().merge(recovery.router());
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
    });
    RecoveryServer { base, local: own, provider, deployments }
}

/// A browser: keeps cookies, does not follow redirects (tests look at them).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).cookie_store(true).build().expect("an HTTP client")
}

/// The text of the element with `id` in a page (attribute `href` for links).
pub fn element(page: &str, id: &str) -> Option<String> {
    let at = page.find(&format!("id=\"{id}\""))?;
    let tag_start = page.get(..at)?.rfind('<')?;
    let tag = page.get(tag_start..)?;
    if tag.starts_with("<a") {
        let href = tag.split_once("href=\"")?.1;
        return Some(unescape(href.split_once('"')?.0));
    }
    let content = tag.split_once('>')?.1;
    Some(unescape(content.split_once('<')?.0))
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}
