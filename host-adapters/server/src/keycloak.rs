//! Keycloak as the directory: `regain serve` with a `[keycloak]` table is the recovery
//! service behind the Regain provider installed in Keycloak (`host-adapters/keycloak`).
//!
//! Keycloak's "Recover your account" authenticator sends the browser here with a signed,
//! single-use request naming the user and the authentication session to return to; the
//! recovery runs on this server's pages; the browser goes back with a signed, single-use
//! result. Users, their credentials and sessions are read and changed through Keycloak's
//! Admin REST API with a service account (realm-management roles `view-users`,
//! `query-users`, `manage-users`, `view-events`); passes are created by the provider's own
//! endpoint, so the pass is hashed with a key that never leaves Keycloak.
//!
//! Both tokens are compact JWS with HMAC-SHA-256 over a secret shared with the authenticator,
//! each with its own `typ` so that neither can stand in for the other.

use base64::Engine as _;
use regain_host::wit::credentials::{CredentialError, IssuedTap, MethodKind, TapRequest};
use regain_host::wit::directory::DirectoryError;
use regain_host::wit::types::User;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::Mutex;

/// The `typ` of the request Keycloak signs.
pub const REQUEST_TYP: &str = "regain-request+jwt";
/// The `typ` of the result this server signs.
pub const RESULT_TYP: &str = "regain-result+jwt";
/// Accepted clock difference between Keycloak and this server, in seconds.
const SKEW_SECONDS: i64 = 60;
/// How long a result may take to travel back through the browser, in seconds.
const RESULT_SECONDS: i64 = 300;
/// Shortest shared secret accepted.
const MIN_SECRET: usize = 32;
/// Largest token accepted from a browser.
const MAX_TOKEN: usize = 8 * 1024;

/// `[keycloak]` of `regain-server.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeycloakConfig {
    /// Keycloak's base URL, without `/realms/...`.
    pub url: String,
    /// The realm whose users recover here.
    pub realm: String,
    /// The confidential client whose service account calls the Admin REST API.
    pub client_id: String,
    /// A file holding that client's secret, relative to the server configuration;
    /// `REGAIN_KEYCLOAK_CLIENT_SECRET` overrides it.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// A file holding the secret shared with the Recover authenticator (its `shared-secret`),
    /// at least 32 characters; `REGAIN_KEYCLOAK_SHARED_SECRET` overrides it.
    #[serde(default)]
    pub shared_secret_file: Option<PathBuf>,
    /// The required action recovery puts on the user: `CONFIGURE_TOTP` or `webauthn-register`.
    #[serde(default = "default_required_action")]
    pub required_action: String,
}

/// Refuses a required action other than the two that register a new method.
pub fn check_required_action(action: &str) -> Result<(), String> {
    match action {
        "CONFIGURE_TOTP" | "webauthn-register" => Ok(()),
        other => Err(format!("must be `CONFIGURE_TOTP` or `webauthn-register`, not `{other}`")),
    }
}

fn default_required_action() -> String {
    "CONFIGURE_TOTP".into()
}

/// What went wrong with a token; the reason goes to the log, the browser sees one message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Another algorithm than HS256, a `crit` header, or another `typ`.
    #[error("token header refused: {0}")]
    Header(&'static str),
    /// The MAC does not verify.
    #[error("token signature does not verify")]
    Signature,
    /// A claim is missing or has another value than expected.
    #[error("token claim `{0}` refused")]
    Claim(&'static str),
    /// Past `exp`, or issued in the future.
    #[error("token expired or not yet valid")]
    Expired,
}

/// The secret shared with the Recover authenticator.
#[derive(Clone)]
pub struct SharedSecret(ring::hmac::Key);

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

impl SharedSecret {
    /// The secret from its text; shorter than 32 characters is refused.
    pub fn new(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.chars().count() < MIN_SECRET {
            return Err(format!("the shared secret must be at least {MIN_SECRET} characters"));
        }
        Ok(Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, text.as_bytes())))
    }

    /// A compact JWS of `claims` with header `typ`.
    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(json!({ "alg": "HS256", "typ": typ }).to_string());
        let payload = b64.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let tag = ring::hmac::sign(&self.0, input.as_bytes());
        format!("{input}.{}", b64.encode(tag.as_ref()))
    }

    /// The claims of `token` when its header is `HS256` with `typ` and its MAC verifies;
    /// claims are not checked here.
    pub fn verify(&self, typ: &str, token: &str) -> Result<Map<String, Value>, TokenError> {
        if token.len() > MAX_TOKEN {
            return Err(TokenError::Malformed("too long"));
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(mac), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three parts"));
        };
        let header: Map<String, Value> = b64
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(TokenError::Malformed("header"))?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(TokenError::Header("alg"));
        }
        if header.contains_key("crit") {
            return Err(TokenError::Header("crit"));
        }
        if header.get("typ").and_then(Value::as_str) != Some(typ) {
            return Err(TokenError::Header("typ"));
        }
        let mac = b64.decode(mac).map_err(|_| TokenError::Malformed("signature"))?;
        let (input, _) = token.rsplit_once('.').ok_or(TokenError::Malformed("signature"))?;
        ring::hmac::verify(&self.0, input.as_bytes(), &mac).map_err(|_| TokenError::Signature)?;
        b64.decode(payload).ok().and_then(|p| serde_json::from_slice(&p).ok()).ok_or(TokenError::Malformed("payload"))
    }
}

/// A verified request from Keycloak.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct RecoveryRequest {
    /// The request's id; the result names it.
    pub jti: String,
    /// The login typed at Keycloak.
    pub login: String,
    /// The Keycloak user id.
    pub sub: String,
    /// Where the browser posts the result.
    pub return_url: String,
    /// When the request expires.
    pub exp: i64,
}

fn text_claim(claims: &Map<String, Value>, name: &'static str) -> Result<String, TokenError> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty() && v.len() <= 2048)
        .map(str::to_owned)
        .ok_or(TokenError::Claim(name))
}

fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<i64, TokenError> {
    claims.get(name).and_then(Value::as_i64).ok_or(TokenError::Claim(name))
}

/// Checks a request token's claims: issued by the realm, for this server, in its lifetime.
/// Single use is the caller's part (the store).
pub fn check_request(
    secret: &SharedSecret,
    token: &str,
    realm_issuer: &str,
    audience: &str,
    now: i64,
) -> Result<RecoveryRequest, TokenError> {
    let claims = secret.verify(REQUEST_TYP, token)?;
    if text_claim(&claims, "iss")? != realm_issuer {
        return Err(TokenError::Claim("iss"));
    }
    if text_claim(&claims, "aud")? != audience {
        return Err(TokenError::Claim("aud"));
    }
    let exp = time_claim(&claims, "exp")?;
    let iat = time_claim(&claims, "iat")?;
    if exp <= now - SKEW_SECONDS || iat > now + SKEW_SECONDS {
        return Err(TokenError::Expired);
    }
    let return_url = text_claim(&claims, "return")?;
    // The browser is sent back to Keycloak only, never to a place the token names elsewhere.
    if !return_url.starts_with(&format!("{realm_issuer}/")) {
        return Err(TokenError::Claim("return"));
    }
    Ok(RecoveryRequest {
        jti: text_claim(&claims, "jti")?,
        login: text_claim(&claims, "login")?,
        sub: text_claim(&claims, "sub")?,
        return_url,
        exp,
    })
}

/// How the recovery ended, as the result tells Keycloak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A pass was issued and shown.
    Completed,
    /// Recovery failed; the helpdesk reference goes along.
    Failed,
    /// Evaluation mode: nothing was issued.
    EvaluationCompleted,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::EvaluationCompleted => "evaluation-completed",
        }
    }
}

/// The signed result for `request`, valid for five minutes, with a fresh `jti`.
pub fn result_token(
    secret: &SharedSecret,
    issuer: &str,
    realm_issuer: &str,
    request: &RecoveryRequest,
    outcome: Outcome,
    helpdesk_ref: Option<&str>,
    now: i64,
) -> Result<String, crate::store::StoreError> {
    let jti = crate::store::random_hex(16)?;
    let mut claims = json!({
        "iss": issuer,
        "aud": realm_issuer,
        "jti": jti,
        "iat": now,
        "exp": now + RESULT_SECONDS,
        "request": request.jti,
        "sub": request.sub,
        "outcome": outcome.as_str(),
    });
    if let (Some(reference), Some(map)) = (helpdesk_ref, claims.as_object_mut()) {
        map.insert("helpdesk_ref".into(), Value::String(reference.into()));
    }
    Ok(secret.sign(RESULT_TYP, &claims))
}

/// A cached service-account token.
struct Token {
    value: String,
    refresh_at: std::time::Instant,
}

/// Keycloak's Admin REST API for one realm, as the recovery service's directory.
pub struct Keycloak {
    config: KeycloakConfig,
    client_secret: String,
    shared: SharedSecret,
    http: reqwest::Client,
    token: Mutex<Option<Token>>,
}

impl std::fmt::Debug for Keycloak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keycloak").field("url", &self.config.url).field("realm", &self.config.realm).finish()
    }
}

fn secret_from(env: &str, file: Option<&PathBuf>, base: &Path, what: &str) -> Result<String, String> {
    if let Ok(value) = std::env::var(env)
        && !value.trim().is_empty()
    {
        return Ok(value.trim().to_owned());
    }
    let file = file.ok_or_else(|| format!("[keycloak]: {what} is not set (`{env}` or its `_file` key)"))?;
    let path = base.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// A failure of Keycloak's API, as the plugin's imports report it.
fn unavailable(e: impl std::fmt::Display) -> String {
    tracing::error!(error = %e, "Keycloak Admin REST API call failed");
    "the directory (Keycloak) is unavailable".into()
}

impl Keycloak {
    /// The client for `config`, with secrets read from the environment or files next to the
    /// server configuration (`base`).
    pub fn new(config: KeycloakConfig, base: &Path) -> Result<Self, String> {
        check_required_action(&config.required_action).map_err(|e| format!("[keycloak]: `required_action`: {e}"))?;
        let client_secret = secret_from(
            "REGAIN_KEYCLOAK_CLIENT_SECRET",
            config.client_secret_file.as_ref(),
            base,
            "the client secret",
        )?;
        let shared = SharedSecret::new(&secret_from(
            "REGAIN_KEYCLOAK_SHARED_SECRET",
            config.shared_secret_file.as_ref(),
            base,
            "the shared secret",
        )?)
        .map_err(|e| format!("[keycloak]: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { config, client_secret, shared, http, token: Mutex::new(None) })
    }

    /// The secret shared with the Recover authenticator.
    pub fn shared_secret(&self) -> &SharedSecret {
        &self.shared
    }

    /// The realm's issuer URL: requests come from it, results go to it.
    pub fn realm_issuer(&self) -> String {
        format!("{}/realms/{}", self.config.url.trim_end_matches('/'), self.config.realm)
    }

    fn admin(&self, path: &str) -> String {
        format!("{}/admin/realms/{}{path}", self.config.url.trim_end_matches('/'), self.config.realm)
    }

    /// A service-account access token, fetched again shortly before it expires.
    async fn bearer(&self) -> Result<String, String> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && token.refresh_at > std::time::Instant::now()
        {
            return Ok(token.value.clone());
        }
        let response = self
            .http
            .post(format!("{}/protocol/openid-connect/token", self.realm_issuer()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.config.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
            ])
            .send()
            .await
            .map_err(|e| format!("token request: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("token request answered {status}"));
        }
        let body: Value = response.json().await.map_err(|e| format!("token response: {e}"))?;
        let value = body.get("access_token").and_then(Value::as_str).ok_or("token response without access_token")?;
        let lifetime = body.get("expires_in").and_then(Value::as_u64).unwrap_or(60);
        *cached = Some(Token {
            value: value.to_owned(),
            refresh_at: std::time::Instant::now() + Duration::from_secs(lifetime.saturating_sub(30).max(1)),
        });
        Ok(value.to_owned())
    }

    /// `GET` of an Admin REST path as JSON; `None` for 404.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Option<Value>, String> {
        let response = self
            .http
            .get(self.admin(path))
            .query(query)
            .bearer_auth(self.bearer().await?)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => response.json().await.map(Some).map_err(|e| format!("GET {path}: {e}")),
            s => Err(format!("GET {path} answered {s}")),
        }
    }

    /// A request with a JSON body or none; success or an error naming the status.
    async fn send(&self, method: reqwest::Method, url: String, body: Option<&Value>) -> Result<Value, String> {
        let mut request = self.http.request(method.clone(), &url).bearer_auth(self.bearer().await?);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err("not found".into());
        }
        if !status.is_success() {
            return Err(format!("{method} {url} answered {status}"));
        }
        let bytes = response.bytes().await.map_err(|e| format!("{method} {url}: {e}"))?;
        if bytes.is_empty() { Ok(Value::Null) } else { serde_json::from_slice(&bytes).map_err(|e| e.to_string()) }
    }

    /// The user with this login, as the plugin sees users.
    pub async fn find_user_by_login(&self, login: &str) -> Result<Option<User>, DirectoryError> {
        let found = self
            .get("/users", &[("username", login), ("exact", "true"), ("briefRepresentation", "false")])
            .await
            .map_err(|e| DirectoryError::Unavailable(unavailable(e)))?;
        let Some(rep) = found
            .as_ref()
            .and_then(Value::as_array)
            .and_then(|users| {
                users.iter().find(|u| {
                    u.get("username").and_then(Value::as_str).is_some_and(|name| name.eq_ignore_ascii_case(login))
                })
            })
            .cloned()
        else {
            return Ok(None);
        };
        let id = rep.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let groups = self
            .get(&format!("/users/{id}/groups"), &[("briefRepresentation", "true")])
            .await
            .map_err(|e| DirectoryError::Unavailable(unavailable(e)))?
            .and_then(|g| g.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|g| g.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let last_sign_in = self
            .get("/events", &[("user", id.as_str()), ("type", "LOGIN"), ("max", "1")])
            .await
            .map_err(|e| DirectoryError::Unavailable(unavailable(e)))?
            .and_then(|events| events.as_array().and_then(|e| e.first().cloned()))
            .and_then(|event| event.get("time").and_then(Value::as_u64))
            .map(|ms| ms / 1000);
        Ok(Some(user_from(&rep, groups, last_sign_in)))
    }

    /// How many users have exactly these names.
    pub async fn count_users_by_name(&self, given_name: &str, family_name: &str) -> Result<u32, DirectoryError> {
        let found = self
            .get(
                "/users",
                &[
                    ("firstName", given_name),
                    ("lastName", family_name),
                    ("exact", "true"),
                    ("briefRepresentation", "true"),
                    ("max", "1000"),
                ],
            )
            .await
            .map_err(|e| DirectoryError::Unavailable(unavailable(e)))?;
        let count = found.as_ref().and_then(Value::as_array).map_or(0, |users| {
            users
                .iter()
                .filter(|u| {
                    u.get("firstName").and_then(Value::as_str) == Some(given_name)
                        && u.get("lastName").and_then(Value::as_str) == Some(family_name)
                })
                .count()
        });
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// A pass, created and hashed by the provider's endpoint inside Keycloak.
    pub async fn issue_tap(&self, request: &TapRequest) -> Result<IssuedTap, CredentialError> {
        let url = format!("{}/regain/users/{}/tap", self.realm_issuer(), request.user_id);
        let body = json!({
            "lifetime_seconds": request.lifetime_seconds,
            "one_time": request.one_time,
            "length": request.length,
            "not_before_seconds": request.not_before_seconds,
        });
        let issued = self.send(reqwest::Method::POST, url, Some(&body)).await.map_err(|e| match e.as_str() {
            "not found" => CredentialError::UserNotFound,
            _ => CredentialError::Unavailable(unavailable(e)),
        })?;
        let text = |name: &str| issued.get(name).and_then(Value::as_str).map(str::to_owned);
        match (text("tap_id"), text("secret"), issued.get("expires_at").and_then(Value::as_u64)) {
            (Some(tap_id), Some(secret), Some(expires_at)) => Ok(IssuedTap { tap_id, secret, expires_at }),
            _ => Err(CredentialError::Unavailable(unavailable("the pass endpoint answered an unexpected body"))),
        }
    }

    /// Removes the user's credentials of these kinds; answers how many were removed.
    pub async fn revoke_methods(&self, user_id: &str, kinds: &[MethodKind]) -> Result<u32, CredentialError> {
        let types: Vec<&str> = kinds
            .iter()
            .flat_map(|kind| match kind {
                MethodKind::Password => &["password"][..],
                MethodKind::Totp => &["otp"][..],
                MethodKind::Passkey => &["webauthn", "webauthn-passwordless"][..],
                // Keycloak keeps no phone or e-mail factor as a credential, and the pass just
                // issued is the way back in.
                MethodKind::Phone | MethodKind::Email | MethodKind::TemporaryAccessPass => &[][..],
            })
            .copied()
            .collect();
        let removed = self
            .delete_credentials(user_id, &types)
            .await
            .map_err(|e| CredentialError::Unavailable(unavailable(e)))?
            .ok_or(CredentialError::UserNotFound)?;
        // Without a password the username-and-password step cannot be passed again: the user
        // chooses a new one after signing in with the pass.
        if removed.iter().any(|kind| kind == "password") {
            self.add_required_actions(user_id, &["UPDATE_PASSWORD"]).await?;
        }
        Ok(u32::try_from(removed.len()).unwrap_or(u32::MAX))
    }

    /// Deletes the user's credentials of these types; answers the type of each one deleted,
    /// or `None` when the user does not exist.
    async fn delete_credentials(&self, user_id: &str, types: &[&str]) -> Result<Option<Vec<String>>, String> {
        let Some(credentials) = self.get(&format!("/users/{user_id}/credentials"), &[]).await? else {
            return Ok(None);
        };
        let mut removed = Vec::new();
        for credential in credentials.as_array().map(Vec::as_slice).unwrap_or_default() {
            let kind = credential.get("type").and_then(Value::as_str).unwrap_or_default();
            if let Some(id) = credential.get("id").and_then(Value::as_str)
                && types.contains(&kind)
            {
                self.send(reqwest::Method::DELETE, self.admin(&format!("/users/{user_id}/credentials/{id}")), None)
                    .await?;
                removed.push(kind.to_owned());
            }
        }
        Ok(Some(removed))
    }

    /// Changes the user's representation with `change` and writes it back whole (a partial
    /// one may drop attributes); `None` when the user does not exist.
    async fn update_user(
        &self,
        user_id: &str,
        change: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<Option<()>, String> {
        let Some(mut rep) = self.get(&format!("/users/{user_id}"), &[]).await? else { return Ok(None) };
        if let Some(map) = rep.as_object_mut() {
            change(map);
        }
        self.send(reqwest::Method::PUT, self.admin(&format!("/users/{user_id}")), Some(&rep)).await.map(|_| Some(()))
    }

    /// Puts the configured required action on the user: the next sign-in registers a method.
    pub async fn require_registration(&self, user_id: &str) -> Result<(), CredentialError> {
        self.add_required_actions(user_id, &[self.config.required_action.as_str()]).await
    }

    /// Adds required actions to the user (those already there stay).
    async fn add_required_actions(&self, user_id: &str, actions: &[&str]) -> Result<(), CredentialError> {
        self.update_user(user_id, |map| {
            let required = map.entry("requiredActions").or_insert_with(|| Value::Array(Vec::new()));
            if let Some(list) = required.as_array_mut() {
                for action in actions {
                    let action = Value::String((*action).to_owned());
                    if !list.contains(&action) {
                        list.push(action);
                    }
                }
            }
        })
        .await
        .map_err(|e| CredentialError::Unavailable(unavailable(e)))?
        .ok_or(CredentialError::UserNotFound)
    }

    /// Where and how to write to the user: their e-mail address and first name; `None` when
    /// the user is gone or has no address.
    pub async fn contact(&self, user_id: &str) -> Result<Option<(String, Option<String>)>, String> {
        let Some(rep) = self.get(&format!("/users/{user_id}"), &[]).await? else { return Ok(None) };
        let text = |name: &str| rep.get(name).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty());
        Ok(text("email").map(|email| (email.to_owned(), text("firstName").map(str::to_owned))))
    }

    /// Locks the user after a "this wasn't me" report: sign-in disabled, sessions ended,
    /// passes removed. Safe to repeat.
    pub async fn lock(&self, user_id: &str) -> Result<(), String> {
        self.update_user(user_id, |map| {
            map.insert("enabled".into(), Value::Bool(false));
        })
        .await?
        .ok_or("the user no longer exists")?;
        self.send(reqwest::Method::POST, self.admin(&format!("/users/{user_id}/logout")), None).await?;
        self.delete_credentials(user_id, &["regain-tap"]).await.map(|_| ())
    }

    /// Ends the user's sessions; answers how many there were.
    pub async fn revoke_sessions(&self, user_id: &str) -> Result<u32, CredentialError> {
        let sessions = self
            .get(&format!("/users/{user_id}/sessions"), &[])
            .await
            .map_err(|e| CredentialError::Unavailable(unavailable(e)))?
            .ok_or(CredentialError::UserNotFound)?;
        let count = sessions.as_array().map_or(0, Vec::len);
        self.send(reqwest::Method::POST, self.admin(&format!("/users/{user_id}/logout")), None)
            .await
            .map_err(|e| CredentialError::Unavailable(unavailable(e)))?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }
}

/// A Keycloak user representation as the plugin's user: `country` and `privileged` come
/// from the user's attributes of those names; every single-valued attribute is passed on
/// for bound-attribute matching.
fn user_from(rep: &Value, groups: Vec<String>, last_sign_in: Option<u64>) -> User {
    let text = |name: &str| rep.get(name).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_owned);
    let attributes: Vec<(String, String)> = rep
        .get("attributes")
        .and_then(Value::as_object)
        .map(|attrs| {
            attrs
                .iter()
                .filter_map(|(name, values)| {
                    let values = values.as_array()?;
                    match values.as_slice() {
                        [Value::String(one)] => Some((name.clone(), one.clone())),
                        _ => None,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let attribute = |name: &str| attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    User {
        id: text("id").unwrap_or_default(),
        login: text("username").unwrap_or_default(),
        given_name: text("firstName"),
        family_name: text("lastName"),
        enabled: rep.get("enabled").and_then(Value::as_bool).unwrap_or(false),
        last_sign_in,
        groups,
        country: attribute("country").map(|c| c.to_uppercase()),
        privileged: attribute("privileged").is_some_and(|p| p.eq_ignore_ascii_case("true")),
        attributes: attributes.into_iter().filter(|(n, _)| n != "country" && n != "privileged").collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a failing test panics with the reason")]

    use super::*;

    const SECRET: &str = "a shared secret of at least thirty-two characters";
    const REALM: &str = "http://kc.test/realms/r";
    const SERVICE: &str = "http://regain.test";

    fn request(claims: Value) -> String {
        SharedSecret::new(SECRET).unwrap().sign(REQUEST_TYP, &claims)
    }

    fn good() -> Value {
        json!({"iss": REALM, "aud": SERVICE, "jti": "j1", "iat": 1000, "exp": 1600, "login": "ada",
               "sub": "u-1", "return": format!("{REALM}/login-actions/authenticate?x=1")})
    }

    #[test]
    fn a_good_request_is_accepted() {
        let s = SharedSecret::new(SECRET).unwrap();
        let r = check_request(&s, &request(good()), REALM, SERVICE, 1100).unwrap();
        assert_eq!((r.jti.as_str(), r.login.as_str(), r.sub.as_str(), r.exp), ("j1", "ada", "u-1", 1600));
    }

    #[test]
    fn bad_requests_are_refused_with_their_reason() {
        let s = SharedSecret::new(SECRET).unwrap();
        let with = |name: &str, value: Value| {
            let mut c = good();
            c[name] = value;
            request(c)
        };
        let cases = [
            (with("iss", json!("http://other/realms/r")), TokenError::Claim("iss")),
            (with("aud", json!("http://other")), TokenError::Claim("aud")),
            (with("exp", json!(1000)), TokenError::Expired),
            (with("return", json!("http://evil.test/steal")), TokenError::Claim("return")),
            (with("login", json!("")), TokenError::Claim("login")),
            (with("sub", json!(7)), TokenError::Claim("sub")),
        ];
        for (token, expected) in cases {
            assert_eq!(check_request(&s, &token, REALM, SERVICE, 1100).unwrap_err(), expected);
        }
        let other = SharedSecret::new("another shared secret of thirty-two chars!").unwrap();
        assert_eq!(check_request(&other, &request(good()), REALM, SERVICE, 1100).unwrap_err(), TokenError::Signature);
    }

    #[test]
    fn headers_other_than_hs256_with_the_typ_are_refused() {
        let s = SharedSecret::new(SECRET).unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = request(good());
        let (_, rest) = token.split_once('.').unwrap();
        for (header, expected) in [
            (json!({"alg": "none", "typ": REQUEST_TYP}), TokenError::Header("alg")),
            (json!({"alg": "HS512", "typ": REQUEST_TYP}), TokenError::Header("alg")),
            (json!({"alg": "HS256", "typ": REQUEST_TYP, "crit": ["exp"]}), TokenError::Header("crit")),
            (json!({"alg": "HS256", "typ": RESULT_TYP}), TokenError::Header("typ")),
        ] {
            let forged = format!("{}.{rest}", b64.encode(header.to_string()));
            assert_eq!(s.verify(REQUEST_TYP, &forged).unwrap_err(), expected);
        }
        // A result token cannot be used as a request.
        assert_eq!(s.verify(REQUEST_TYP, &s.sign(RESULT_TYP, &good())).unwrap_err(), TokenError::Header("typ"));
        for malformed in ["", "a.b", "a.b.c.d", "!!.e30.AA", &"x".repeat(MAX_TOKEN + 1)] {
            assert!(matches!(s.verify(REQUEST_TYP, malformed).unwrap_err(), TokenError::Malformed(_)));
        }
        // A changed payload does not verify.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims = good();
        claims["login"] = json!("mallory");
        parts[1] = b64.encode(claims.to_string());
        assert_eq!(s.verify(REQUEST_TYP, &parts.join(".")).unwrap_err(), TokenError::Signature);
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(SharedSecret::new("too short").unwrap_err().contains("at least 32"));
    }

    #[test]
    fn results_carry_the_binding_and_the_reference() {
        let s = SharedSecret::new(SECRET).unwrap();
        let r = check_request(&s, &request(good()), REALM, SERVICE, 1100).unwrap();
        let token = result_token(&s, SERVICE, REALM, &r, Outcome::Failed, Some("ABCD-1234"), 1200).unwrap();
        let claims = s.verify(RESULT_TYP, &token).unwrap();
        assert_eq!(claims["request"], "j1");
        assert_eq!(claims["sub"], "u-1");
        assert_eq!(claims["aud"], REALM);
        assert_eq!(claims["outcome"], "failed");
        assert_eq!(claims["helpdesk_ref"], "ABCD-1234");
        assert_eq!(claims["exp"], 1500);
    }

    #[test]
    fn users_come_from_keycloak_representations() {
        let rep = json!({"id": "u-1", "username": "ada", "firstName": "Ada", "lastName": "Lovelace",
            "enabled": true, "attributes": {"country": ["gb"], "birthdate": ["1815-12-10"],
            "privileged": ["true"], "multi": ["a", "b"]}});
        let user = user_from(&rep, vec!["staff".into()], Some(5));
        assert_eq!(user.country.as_deref(), Some("GB"));
        assert!(user.privileged && user.enabled);
        assert_eq!(user.attributes, vec![("birthdate".to_owned(), "1815-12-10".to_owned())]);
        assert_eq!((user.groups.len(), user.last_sign_in), (1, Some(5)));
    }
}
