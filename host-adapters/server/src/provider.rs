//! The OpenID Provider over HTTP: discovery, JWKS, the authorization endpoint with its
//! sign-in page (password, TOTP, Temporary Access Pass), forced registration of a new method
//! after a pass sign-in, the token endpoint (authorization code + PKCE S256), userinfo and
//! RP-initiated logout. Errors follow RFC 6749 §4.1.2.1 / §5.2 and OIDC Core §3.1.2.6.

use crate::accounts::{Account, BrowserSession, CodeGrant};
use crate::auth::{Totp, verify_password};
use crate::oidc::{IdTokenClaims, SigningKey, check_challenge, redirect_uri_registered, verify_pkce};
use crate::recovery::Peer;
use crate::store::{Passes, Store, now, random_hex};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Lifetime of an authorization code, in seconds.
pub(crate) const CODE_SECONDS: i64 = 60;
/// Lifetime of ID and access tokens, in seconds.
const TOKEN_SECONDS: i64 = 300;
/// Lifetime of a browser session, in seconds.
pub(crate) const SESSION_SECONDS: i64 = 8 * 3600;
/// Sign-in attempts accepted per login in one window.
pub(crate) const SIGN_IN_ATTEMPTS: i64 = 10;
/// The rate-limit window, in seconds.
pub(crate) const SIGN_IN_WINDOW_SECONDS: i64 = 15 * 60;
/// The session cookie.
pub(crate) const COOKIE: &str = "regain_sid";

/// A relying party registered in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    /// `client_id`.
    pub client_id: String,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Where the RP may send the browser after logout.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Confidential clients authenticate with this secret (`client_secret_post` or
    /// `client_secret_basic`); public clients have none and rely on PKCE.
    #[serde(default)]
    pub client_secret: Option<String>,
}

/// What the provider needs to run.
#[derive(Clone)]
pub struct Provider {
    /// The issuer identifier: the base URL of every endpoint.
    pub issuer: String,
    /// Registered clients.
    pub clients: Arc<Vec<Client>>,
    /// Storage.
    pub store: Store,
    /// Temporary Access Passes.
    pub passes: Passes,
    /// The ID token signing key.
    pub key: Arc<SigningKey>,
    /// Keycloak, when its users recover here: "this wasn't me" locks them there.
    pub keycloak: Option<Arc<crate::keycloak::Keycloak>>,
}

impl Provider {
    /// The same provider over a request's own handle of the database ([`Store::scoped`]).
    #[must_use]
    pub fn scoped(&self) -> Self {
        let store = self.store.scoped();
        Self { passes: self.passes.on(&store), store, ..self.clone() }
    }

    /// The provider over `store`, with its signing key from the store (created on first
    /// start, shared by every process).
    pub async fn new(issuer: &str, clients: Vec<Client>, store: Store) -> Result<Self, String> {
        let material =
            store.server_key_with("oidc-signing", SigningKey::generate_pkcs8).await.map_err(|e| e.to_string())?;
        let key = SigningKey::from_pkcs8(&material)?;
        let passes = Passes::open(store.clone()).await.map_err(|e| e.to_string())?;
        Ok(Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            clients: Arc::new(clients),
            store,
            passes,
            key: Arc::new(key),
            keycloak: None,
        })
    }

    fn client(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.client_id == id)
    }

    /// The routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize).post(sign_in))
            .route("/register-totp", axum::routing::post(register_totp))
            .route("/token", axum::routing::post(token))
            .route("/userinfo", get(userinfo))
            .route("/logout", get(logout))
            .merge(crate::passkey_routes::routes())
            .merge(crate::not_me::routes())
            .with_state(self)
    }
}

async fn discovery(State(p): State<Provider>) -> Json<serde_json::Value> {
    let i = &p.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "jwks_uri": format!("{i}/jwks"),
        "end_session_endpoint": format!("{i}/logout"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        "scopes_supported": ["openid", "profile", "email"],
        "claims_supported": ["sub", "given_name", "family_name", "email", "amr", "auth_time", "nonce"],
    }))
}

async fn jwks(State(p): State<Provider>) -> Json<serde_json::Value> {
    Json(p.key.jwks())
}

/// The parameters of an authorization request, carried through the sign-in pages.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct AuthRequest {
    #[serde(default)]
    pub(crate) client_id: String,
    #[serde(default)]
    pub(crate) redirect_uri: String,
    #[serde(default)]
    pub(crate) response_type: String,
    #[serde(default)]
    pub(crate) scope: String,
    #[serde(default)]
    pub(crate) state: Option<String>,
    #[serde(default)]
    pub(crate) nonce: Option<String>,
    #[serde(default)]
    pub(crate) code_challenge: Option<String>,
    #[serde(default)]
    pub(crate) code_challenge_method: Option<String>,
}

impl AuthRequest {
    /// The parameters by name, `None` when absent.
    pub(crate) fn fields(&self) -> [(&'static str, Option<&str>); 8] {
        [
            ("client_id", Some(self.client_id.as_str())),
            ("redirect_uri", Some(self.redirect_uri.as_str())),
            ("response_type", Some(self.response_type.as_str())),
            ("scope", Some(self.scope.as_str())),
            ("state", self.state.as_deref()),
            ("nonce", self.nonce.as_deref()),
            ("code_challenge", self.code_challenge.as_deref()),
            ("code_challenge_method", self.code_challenge_method.as_deref()),
        ]
    }
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    )
}

/// The request's parameters as hidden form fields.
pub(crate) fn hidden(req: &AuthRequest) -> String {
    let field =
        |name: &str, value: &str| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(value));
    let mut out = String::new();
    for (name, value) in req.fields() {
        if let Some(value) = value {
            out.push_str(&field(name, value));
        }
    }
    out
}

/// An error shown on the page: the redirect URI cannot be trusted (OIDC Core §3.1.2.6).
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    (status, Html(page("Sign-in request refused", &format!("<p role=\"alert\">{}</p>", escape(message)))))
        .into_response()
}

/// An error returned to the client at its redirect URI.
pub(crate) fn error_redirect(req: &AuthRequest, error: &str, description: &str) -> Response {
    let enc = regain_core::openid4vp::percent_encode;
    let mut url = format!("{}?error={error}&error_description={}", req.redirect_uri, enc(description));
    if let Some(state) = &req.state {
        url.push_str(&format!("&state={}", enc(state)));
    }
    Redirect::to(&url).into_response()
}

/// Validates a request; `Some` is the error response to send.
pub(crate) fn invalid(p: &Provider, req: &AuthRequest) -> Option<Response> {
    let Some(client) = p.client(&req.client_id) else {
        return Some(error_page(StatusCode::BAD_REQUEST, "unknown client_id"));
    };
    if !redirect_uri_registered(&req.redirect_uri, &client.redirect_uris) {
        return Some(error_page(StatusCode::BAD_REQUEST, "redirect_uri is not registered for this client"));
    }
    if req.response_type != "code" {
        return Some(error_redirect(req, "unsupported_response_type", "only response_type=code is supported"));
    }
    if !req.scope.split(' ').any(|s| s == "openid") {
        return Some(error_redirect(req, "invalid_scope", "scope must include openid"));
    }
    check_challenge(req.code_challenge.as_deref(), req.code_challenge_method.as_deref())
        .err()
        .map(|e| error_redirect(req, "invalid_request", &e.to_string()))
}

pub(crate) fn cookie(headers: &HeaderMap) -> Option<String> {
    named_cookie(headers, COOKIE)
}

/// The value of the cookie `name`.
pub(crate) fn named_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('=').map(str::to_owned))
}

pub(crate) fn login_page(req: &AuthRequest, message: Option<&str>) -> Response {
    let alert = message.map(|m| format!("<p role=\"alert\">{}</p>", escape(m))).unwrap_or_default();
    let body = format!(
        "{alert}<form method=\"post\" action=\"/authorize\">{h}\
         <label>Login <input name=\"login\" autocomplete=\"username\"></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\
         <label>Authenticator code <input name=\"totp\" inputmode=\"numeric\" autocomplete=\"one-time-code\"></label>\
         <button name=\"method\" value=\"password\">Sign in</button></form>{pk}\
         <details><summary>Sign in another way</summary>\
         <form method=\"post\" action=\"/authorize\">{h}\
         <label>Login <input name=\"login\"></label>\
         <label>Temporary Access Pass <input name=\"tap\" autocomplete=\"off\"></label>\
         <button name=\"method\" value=\"tap\">Sign in with a pass</button></form>\
         <p><a id=\"recover\" href=\"{r}\">Recover your account</a></p></details>",
        h = hidden(req),
        r = escape(&crate::recovery::recover_link(req)),
        pk = crate::passkey_routes::sign_in_section(req),
    );
    (StatusCode::OK, Html(page("Sign in", &body))).into_response()
}

async fn authorize(State(p): State<Provider>, headers: HeaderMap, Query(req): Query<AuthRequest>) -> Response {
    if let Some(response) = invalid(&p, &req) {
        return response;
    }
    let session = match cookie(&headers) {
        Some(sid) => p.store.browser_session(&sid, now()).await.ok().flatten(),
        None => None,
    };
    match session {
        Some(session) => continue_as(&p, &req, &session, None).await,
        None => login_page(&req, None),
    }
}

/// What the sign-in form posts.
#[derive(Deserialize)]
pub struct SignIn {
    #[serde(flatten)]
    req: AuthRequest,
    #[serde(default)]
    method: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp: String,
    #[serde(default)]
    tap: String,
}

pub(crate) const GENERIC_FAILURE: &str = "The login or the credentials are not correct.";
/// Sign-in attempts accepted from one client address in one window (offices share one).
pub(crate) const SIGN_IN_ATTEMPTS_PER_ADDRESS: i64 = 200;
/// The answer once an address has made too many attempts.
pub(crate) const TOO_MANY_FROM_ADDRESS: &str = "Too many sign-in attempts from your network; wait a few minutes.";

async fn sign_in(State(p): State<Provider>, Peer(peer): Peer, Form(form): Form<SignIn>) -> Response {
    let p = p.scoped();
    if let Some(response) = invalid(&p, &form.req) {
        return response;
    }
    let t = now();
    // Attempts per address, and failed attempts per login in a 15-minute window, counted in
    // the database so that every process sees the same counts; the answer does not say
    // whether the login exists. Successes are not counted per login, so that a burst of
    // honest attempts (or a race on one pass) all reach the check.
    let window = t - t.rem_euclid(SIGN_IN_WINDOW_SECONDS);
    let login_key = format!("sign-in:{}", form.login.trim().to_lowercase());
    // The user is read in the same round trip, and a pass redeemed in it when the attempt is
    // within the limits and the pass belongs to that user (the same checks as below).
    let address = address_key(peer);
    let keys = (address.as_str(), login_key.as_str());
    let login = form.login.trim();
    let limits = (SIGN_IN_ATTEMPTS_PER_ADDRESS, SIGN_IN_ATTEMPTS);
    let counted = match form.method.as_str() {
        "tap" => {
            let mac = p.passes.mac_of(&form.tap);
            p.store.sign_in_redeeming(keys, window, login, limits, &mac, t).await.map(|found| {
                let redeemed = found.tap_id.is_some();
                (found.from_address, found.failures, found.user, redeemed)
            })
        }
        _ => p.store.sign_in_counts(keys.0, keys.1, window, login).await.map(|(a, f, user)| (a, f, user, false)),
    };
    let (found, redeemed) = match counted {
        Ok((from_address, _, _, _)) if from_address > limits.0 => {
            return login_page(&form.req, Some(TOO_MANY_FROM_ADDRESS));
        }
        Ok((_, failures, _, _)) if failures >= limits.1 => {
            return login_page(&form.req, Some("Too many attempts for this login; wait a few minutes."));
        }
        Ok((_, _, found, redeemed)) => (found, redeemed),
        Err(e) => return server_error(&e.to_string()),
    };
    let refuse = |message: &'static str| {
        let (p, req, key) = (&p, &form.req, &login_key);
        async move {
            match p.store.hit(key, window).await {
                Ok(_) => login_page(req, Some(message)),
                Err(e) => server_error(&e.to_string()),
            }
        }
    };
    let account = match found {
        Some(a) if a.enabled => a,
        _ => return refuse(GENERIC_FAILURE).await,
    };
    let amr = match form.method.as_str() {
        "password" => match check_password(&p, &account, &form, t).await {
            Ok(Some(amr)) => amr,
            Ok(None) => return refuse(GENERIC_FAILURE).await,
            Err(e) => return server_error(&e),
        },
        // Redeemed above, for this user. The user must register a new method before anything
        // else (stored with the sign-in).
        "tap" if redeemed => "tap".to_owned(),
        "tap" => return refuse("This pass is not valid, has expired or was already used.").await,
        _ => return login_page(&form.req, Some("Choose a way to sign in.")),
    };
    start_session(&p, &form.req, account, &amr, t).await
}

/// A new browser session for `account` signed in by `amr`, then on to the client. After a
/// pass sign-in (`amr` is `tap`) the user must first register a new method.
pub(crate) async fn start_session(
    p: &Provider,
    req: &AuthRequest,
    mut account: Account,
    amr: &str,
    t: i64,
) -> Response {
    account.must_register |= amr == "tap";
    let sid = match random_hex(32) {
        Ok(sid) => sid,
        Err(e) => return server_error(&e.to_string()),
    };
    crate::ops::metrics().count("sign_in", amr);
    let session = BrowserSession { user_id: account.id.clone(), auth_time: t, amr: amr.to_owned() };
    if let Err(e) = p.store.record_sign_in(&sid, &session, t + SESSION_SECONDS, account.must_register).await {
        return server_error(&e.to_string());
    }
    let set_cookie = format!("{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_SECONDS}");
    let mut response = continue_with(p, req, &session, &account, None).await;
    if let Ok(value) = set_cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Counts a sign-in attempt from `peer`; `Ok(false)` when the address has made too many in
/// this window. Counted in the database, so every process sees the same number.
pub(crate) async fn address_allowed(p: &Provider, peer: Option<std::net::IpAddr>, t: i64) -> Result<bool, String> {
    let window = t - t.rem_euclid(SIGN_IN_WINDOW_SECONDS);
    let hits = p.store.hit(&address_key(peer), window).await.map_err(|e| e.to_string())?;
    Ok(hits <= SIGN_IN_ATTEMPTS_PER_ADDRESS)
}

/// The rate-limit key of sign-in attempts from `peer`.
fn address_key(peer: Option<std::net::IpAddr>) -> String {
    format!("sign-in-addr:{}", peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()))
}

/// Password, and the TOTP code when the user enrolled one; `Ok(None)` is a failed attempt.
async fn check_password(p: &Provider, account: &Account, form: &SignIn, t: i64) -> Result<Option<String>, String> {
    let Some(phc) = &account.password_hash else { return Ok(None) };
    if !verify_password(&form.password, phc) {
        return Ok(None);
    }
    let Some(secret) = &account.totp_secret else { return Ok(Some("pwd".into())) };
    let Some(step) = Totp::new(secret).verify(&form.totp, t) else { return Ok(None) };
    let step = i64::try_from(step).map_err(|e| e.to_string())?;
    // A code is accepted once.
    if p.store.use_totp_step(&account.id, step).await.map_err(|e| e.to_string())? {
        Ok(Some("pwd otp".into()))
    } else {
        Ok(None)
    }
}

pub(crate) fn server_error(detail: &str) -> Response {
    tracing::error!(error = %detail, "request failed");
    error_page(StatusCode::INTERNAL_SERVER_ERROR, "The server could not complete the request; try again.")
}

/// Signed in: issue the code, unless the user must first register a new method.
pub(crate) async fn continue_as(
    p: &Provider,
    req: &AuthRequest,
    session: &BrowserSession,
    message: Option<&str>,
) -> Response {
    let account = match p.store.user_by_id(&session.user_id).await {
        Ok(Some(a)) if a.enabled => a,
        Ok(_) => return login_page(req, Some(GENERIC_FAILURE)),
        Err(e) => return server_error(&e.to_string()),
    };
    continue_with(p, req, session, &account, message).await
}

/// Signed in as `account` (enabled, as just read): issue the code, unless the user must
/// first register a new method.
async fn continue_with(
    p: &Provider,
    req: &AuthRequest,
    session: &BrowserSession,
    account: &Account,
    message: Option<&str>,
) -> Response {
    if account.must_register {
        return register_page(req, account, message);
    }
    let code = match random_hex(32) {
        Ok(code) => code,
        Err(e) => return server_error(&e.to_string()),
    };
    let grant = CodeGrant {
        client_id: req.client_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        code_challenge: req.code_challenge.clone().unwrap_or_default(),
        nonce: req.nonce.clone(),
        user_id: account.id.clone(),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
    };
    if let Err(e) = p.store.insert_code(&code, &grant, now() + CODE_SECONDS).await {
        return server_error(&e.to_string());
    }
    let enc = regain_core::openid4vp::percent_encode;
    let mut url = format!("{}?code={code}", req.redirect_uri);
    if let Some(state) = &req.state {
        url.push_str(&format!("&state={}", enc(state)));
    }
    Redirect::to(&url).into_response()
}

/// After a pass sign-in: enrol an authenticator app before any client gets tokens.
pub(crate) fn register_page(req: &AuthRequest, account: &Account, message: Option<&str>) -> Response {
    let totp = match Totp::generate() {
        Ok(totp) => totp,
        Err(e) => return server_error(&e.to_string()),
    };
    let alert = message.map(|m| format!("<p role=\"alert\">{}</p>", escape(m))).unwrap_or_default();
    let body = format!(
        "{alert}<p>You signed in with a Temporary Access Pass. Register a new sign-in method to continue.</p>\
         <p>Add this key to your authenticator app: <code id=\"totp-secret\">{secret}</code></p>\
         <p><a id=\"totp-uri\" href=\"{uri}\">Open in an authenticator app</a></p>\
         <form method=\"post\" action=\"/register-totp\">{h}\
         <input type=\"hidden\" name=\"secret\" value=\"{secret}\">\
         <label>Code from the app <input name=\"code\" inputmode=\"numeric\"></label>{pw}\
         <button>Register</button></form>{pk}",
        pw = if account.password_hash.is_none() {
            "<label>New password (at least 12 characters) <input name=\"new_password\" type=\"password\" \
             autocomplete=\"new-password\" minlength=\"12\"></label>"
        } else {
            ""
        },
        secret = totp.secret_base32(),
        uri = escape(&totp.uri("Regain", &account.login)),
        h = hidden(req),
        pk = crate::passkey_routes::register_section(req),
    );
    (StatusCode::OK, Html(page("Register a new sign-in method", &body))).into_response()
}

/// What the registration form posts.
#[derive(Deserialize)]
pub struct RegisterTotp {
    #[serde(flatten)]
    req: AuthRequest,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    code: String,
    /// Required when recovery removed the password: an authenticator app is a second factor.
    #[serde(default)]
    new_password: String,
}

/// Shortest password accepted at registration.
const MIN_PASSWORD: usize = 12;

async fn register_totp(State(p): State<Provider>, headers: HeaderMap, Form(form): Form<RegisterTotp>) -> Response {
    if let Some(response) = invalid(&p, &form.req) {
        return response;
    }
    let t = now();
    let session = match cookie(&headers) {
        Some(sid) => p.store.browser_session(&sid, t).await.ok().flatten(),
        None => None,
    };
    let Some(session) = session else { return login_page(&form.req, Some("Sign in again to continue.")) };
    let Some(key) = crate::auth::base32_decode(&form.secret) else {
        return continue_as(&p, &form.req, &session, Some("That key is not valid; use this new one.")).await;
    };
    let totp = Totp::new(&key);
    let Some(step) = totp.verify(&form.code, t).and_then(|s| i64::try_from(s).ok()) else {
        return continue_as(
            &p,
            &form.req,
            &session,
            Some("That code does not match; scan this new key and try again."),
        )
        .await;
    };
    let password = match p.store.user_by_id(&session.user_id).await {
        Ok(Some(account)) if account.password_hash.is_none() => {
            if form.new_password.chars().count() < MIN_PASSWORD {
                return continue_as(
                    &p,
                    &form.req,
                    &session,
                    Some("Choose a password of at least 12 characters, and scan this new key."),
                )
                .await;
            }
            match crate::auth::hash_password(&form.new_password) {
                Ok(hash) => Some(hash),
                Err(e) => return server_error(&e),
            }
        }
        Ok(_) => None,
        Err(e) => return server_error(&e.to_string()),
    };
    let enrolled = async {
        if let Some(hash) = &password {
            p.store.set_password(&session.user_id, Some(hash.as_str())).await?;
        }
        p.store.set_totp(&session.user_id, Some(&key)).await?;
        p.store.use_totp_step(&session.user_id, step).await?;
        p.store.set_must_register(&session.user_id, false).await
    };
    if let Err(e) = enrolled.await {
        return server_error(&e.to_string());
    }
    continue_as(&p, &form.req, &session, None).await
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (status, Json(json!({ "error": error, "error_description": description }))).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

async fn token(State(p): State<Provider>, headers: HeaderMap, Form(form): Form<BTreeMap<String, String>>) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    if field("grant_type") != Some("authorization_code") {
        return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only authorization_code is supported");
    }
    let (Some(code), Some(redirect_uri), Some(verifier)) =
        (field("code"), field("redirect_uri"), field("code_verifier"))
    else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code, redirect_uri and code_verifier are required",
        );
    };
    let basic = basic_credentials(&headers);
    let client_id = basic.as_ref().map(|(id, _)| id.as_str()).or(field("client_id")).unwrap_or_default();
    let Some(client) = p.client(client_id) else {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client");
    };
    if let Some(secret) = &client.client_secret {
        let given = basic.as_ref().map(|(_, s)| s.as_str()).or(field("client_secret")).unwrap_or_default();
        if !regain_core::secret::constant_time_eq(given.as_bytes(), secret.as_bytes()) {
            return token_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
        }
    }
    let t = now();
    let grant = match p.store.take_code(code, t).await {
        Ok(Some(grant)) => grant,
        Ok(None) => {
            return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "the code is unknown, expired or used");
        }
        Err(e) => return token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e.to_string()),
    };
    if grant.client_id != client.client_id || grant.redirect_uri != redirect_uri {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code was issued to another client or redirect_uri",
        );
    }
    if let Err(e) = verify_pkce(verifier, &grant.code_challenge) {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant", &e.to_string());
    }
    // An account disabled since the code was issued (an admin, "this wasn't me") gets nothing.
    match p.store.user_by_id(&grant.user_id).await {
        Ok(Some(account)) if account.enabled => {}
        Ok(_) => return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "the account is disabled"),
        Err(e) => return token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e.to_string()),
    }
    let amr: Vec<&str> = grant.amr.split(' ').collect();
    let claims = IdTokenClaims {
        issuer: &p.issuer,
        subject: &grant.user_id,
        audience: &client.client_id,
        nonce: grant.nonce.as_deref(),
        auth_time: grant.auth_time,
        now: t,
        lifetime: TOKEN_SECONDS,
        amr: &amr,
    };
    let (id_token, access) = match (p.key.sign(&claims.to_json()), random_hex(32)) {
        (Ok(id_token), Ok(access)) => (id_token, access),
        _ => return token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "cannot issue tokens"),
    };
    if let Err(e) = p.store.insert_access_token(&access, &grant.user_id, &client.client_id, t + TOKEN_SECONDS).await {
        return token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e.to_string());
    }
    let mut response = Json(json!({
        "access_token": access, "token_type": "Bearer", "expires_in": TOKEN_SECONDS, "id_token": id_token,
    }))
    .into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

/// `Authorization: Basic` client credentials (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| regain_core::openid4vp::form_decode(s);
    Some((decode(id)?, decode(secret)?))
}

async fn userinfo(State(p): State<Provider>, headers: HeaderMap) -> Response {
    let token =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let unauthorized = || {
        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")], "").into_response()
    };
    let Some(token) = token else { return unauthorized() };
    let user = match p.store.access_token_user(token.trim(), now()).await {
        Ok(Some(user)) => user,
        Ok(None) => return unauthorized(),
        Err(e) => return server_error(&e.to_string()),
    };
    match p.store.user_by_id(&user).await {
        Ok(Some(a)) if a.enabled => Json(json!({
            "sub": a.id,
            "given_name": a.given_name,
            "family_name": a.family_name,
            "email": a.attributes.get("email"),
        }))
        .into_response(),
        Ok(_) => unauthorized(),
        Err(e) => server_error(&e.to_string()),
    }
}

/// RP-initiated logout parameters.
#[derive(Deserialize)]
pub struct Logout {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    post_logout_redirect_uri: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

async fn logout(State(p): State<Provider>, headers: HeaderMap, Query(q): Query<Logout>) -> Response {
    let t = now();
    if let Some(sid) = cookie(&headers)
        && let Ok(Some(session)) = p.store.browser_session(&sid, t).await
        && let Err(e) = p.store.revoke_browser_sessions(&session.user_id, t).await
    {
        return server_error(&e.to_string());
    }
    let target = q.post_logout_redirect_uri.filter(|uri| {
        q.client_id.as_deref().and_then(|id| p.client(id)).is_some_and(|c| c.post_logout_redirect_uris.contains(uri))
    });
    let mut response = match target {
        Some(uri) => {
            let state =
                q.state.map(|s| format!("?state={}", regain_core::openid4vp::percent_encode(&s))).unwrap_or_default();
            Redirect::to(&format!("{uri}{state}")).into_response()
        }
        None => Html(page("Signed out", "<p>You are signed out.</p>")).into_response(),
    };
    if let Ok(value) = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0").parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
