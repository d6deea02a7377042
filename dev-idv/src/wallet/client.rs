//! The dev wallet over HTTP: receiving a credential from an OpenID4VCI credential offer
//! (pre-authorized code), and answering an OpenID4VP request by posting to its
//! `response_uri`.

use super::{
    CredentialOffer, PRE_AUTHORIZED_GRANT, PresentationRequest, Store, StoredCredential, WalletError, answer_request,
    proof_jwt, well_known,
};
use crate::keys::SigningKey;
use regain_core::openid4vp::percent_encode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest response read from an issuer or verifier, in bytes.
const MAX_RESPONSE: usize = 1024 * 1024;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `bytes` random bytes, base64url.
pub fn random_token(bytes: usize) -> Result<String, WalletError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| WalletError::Remote(format!("no random source: {e}")))?;
    Ok(regain_core::jose::b64url_encode(&buffer))
}

/// A fresh P-256 holder key.
pub fn new_holder_key() -> Result<SigningKey, WalletError> {
    for _ in 0..16 {
        let mut scalar = [0u8; 32];
        getrandom::fill(&mut scalar).map_err(|e| WalletError::Remote(format!("no random source: {e}")))?;
        if let Some(key) = SigningKey::p256_from_bytes(&scalar) {
            return Ok(key);
        }
    }
    Err(WalletError::Remote("cannot draw a P-256 key".into()))
}

/// A wallet backed by its file.
pub struct Wallet {
    path: PathBuf,
    http: reqwest::Client,
    /// Serialises changes to the file within this process.
    lock: tokio::sync::Mutex<()>,
}

impl Wallet {
    /// The wallet in the file at `path`, created with a fresh holder key if there is none.
    pub fn open(path: &Path) -> Result<Self, WalletError> {
        if Store::read(path)?.is_none() {
            Store::new(&new_holder_key()?).write(path)?;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WalletError::Remote(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { path: path.to_owned(), http, lock: tokio::sync::Mutex::new(()) })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The wallet's content.
    pub fn store(&self) -> Result<Store, WalletError> {
        Store::read(&self.path)?
            .ok_or_else(|| WalletError::Store { path: self.path.display().to_string(), message: "missing".into() })
    }

    async fn json(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Value, WalletError> {
        let response = request.send().await.map_err(|e| WalletError::Remote(format!("{what}: {e}")))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| WalletError::Remote(format!("{what}: {e}")))?;
        if bytes.len() > MAX_RESPONSE {
            return Err(WalletError::Remote(format!("{what}: the response is too large")));
        }
        let body: Value =
            if bytes.is_empty() { json!({}) } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        if !status.is_success() {
            let error = body.get("error").and_then(Value::as_str).unwrap_or("no error code");
            let description = body
                .get("error_description")
                .or_else(|| body.get("message"))
                .and_then(Value::as_str)
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return Err(WalletError::Remote(format!("{what} answered {status} `{error}`{description}")));
        }
        if body.is_null() {
            return Err(WalletError::Remote(format!("{what}: the response is not JSON")));
        }
        Ok(body)
    }

    /// Receives the credential of an offer (`openid-credential-offer://?credential_offer=...`,
    /// any URL with that parameter, or the offer's JSON): issuer metadata, token request
    /// with the pre-authorized code, a fresh nonce, and the credential request with a proof
    /// of possession of the holder key. The credential is stored and returned.
    pub async fn receive(&self, offer: &str) -> Result<StoredCredential, WalletError> {
        let offer = CredentialOffer::parse(offer)?;
        let issuer = offer.credential_issuer.trim_end_matches('/');
        let metadata =
            self.json(self.http.get(well_known(issuer, "openid-credential-issuer")), "the issuer's metadata").await?;
        if metadata.get("credential_issuer").and_then(Value::as_str).map(|i| i.trim_end_matches('/')) != Some(issuer) {
            return Err(WalletError::Remote("the issuer's metadata names another issuer".into()));
        }
        let configuration = offer.configuration_ids.first().ok_or(WalletError::NoCredential)?;
        let format = metadata
            .pointer(&format!("/credential_configurations_supported/{configuration}/format"))
            .and_then(Value::as_str);
        if format != Some("dc+sd-jwt") {
            return Err(WalletError::Unsupported(format!("configuration `{configuration}` is not a `dc+sd-jwt`")));
        }
        let text = |value: &Value, name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
        let credential_endpoint = text(&metadata, "credential_endpoint")
            .ok_or_else(|| WalletError::Remote("the issuer's metadata has no `credential_endpoint`".into()))?;
        let server = metadata
            .get("authorization_servers")
            .and_then(Value::as_array)
            .and_then(|list| list.first())
            .and_then(Value::as_str)
            .unwrap_or(issuer)
            .to_owned();
        let server_metadata = self
            .json(
                self.http.get(well_known(&server, "oauth-authorization-server")),
                "the authorization server's metadata",
            )
            .await?;
        let token_endpoint = text(&server_metadata, "token_endpoint")
            .ok_or_else(|| WalletError::Remote("the authorization server has no `token_endpoint`".into()))?;

        let form = format!(
            "grant_type={}&pre-authorized_code={}",
            percent_encode(PRE_AUTHORIZED_GRANT),
            percent_encode(&offer.pre_authorized_code)
        );
        let token = self
            .json(
                self.http.post(&token_endpoint).header("content-type", "application/x-www-form-urlencoded").body(form),
                "the token endpoint",
            )
            .await?;
        let access_token = text(&token, "access_token")
            .ok_or_else(|| WalletError::Remote("the token response has no token".into()))?;
        let mut nonce = text(&token, "c_nonce");
        if let Some(nonce_endpoint) = text(&metadata, "nonce_endpoint") {
            let fresh = self.json(self.http.post(&nonce_endpoint), "the nonce endpoint").await?;
            nonce = text(&fresh, "c_nonce").or(nonce);
        }

        let store = self.store()?;
        let holder = store.holder()?;
        let proof = proof_jwt(&holder, issuer, nonce.as_deref(), now());
        let request = json!({ "credential_configuration_id": configuration, "proofs": { "jwt": [proof] } });
        let answer = self
            .json(
                self.http.post(&credential_endpoint).bearer_auth(&access_token).json(&request),
                "the credential endpoint",
            )
            .await?;
        let sd_jwt = answer
            .pointer("/credentials/0/credential")
            .or_else(|| answer.get("credential"))
            .and_then(Value::as_str)
            .ok_or_else(|| WalletError::Remote("the credential response holds no credential".into()))?;

        let _guard = self.lock.lock().await;
        let mut store = self.store()?;
        let credential = StoredCredential::new(format!("c{}", store.credentials.len() + 1), sd_jwt, now())?;
        let ours = holder.public_jwk(None);
        let bound = credential.holder_jwk();
        if bound.as_ref().and_then(|j| j.get("x")) != ours.get("x")
            || bound.as_ref().and_then(|j| j.get("y")) != ours.get("y")
        {
            return Err(WalletError::Remote("the credential is not bound to this wallet's key".into()));
        }
        store.credentials.push(credential.clone());
        store.write(&self.path)?;
        Ok(credential)
    }

    /// Answers the OpenID4VP request at `url` with the newest matching credential (or the
    /// one with id `credential`): posts the `direct_post` body to the request's
    /// `response_uri` and returns the verifier's JSON answer (with `redirect_uri` for a
    /// same-device flow).
    pub async fn present(&self, url: &str, credential: Option<&str>) -> Result<Value, WalletError> {
        let request = PresentationRequest::parse(url)?;
        let store = self.store()?;
        let chosen = store.choose(&request, credential)?;
        let body = answer_request(&request, &chosen.issued()?, &store.holder()?, now());
        self.json(
            self.http
                .post(&request.response_uri)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
            "the verifier",
        )
        .await
    }
}
