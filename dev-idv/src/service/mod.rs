//! The dev IDV as an HTTP service (DEV ONLY): document and face checks on fixture data, an
//! OpenID4VCI issuer of SD-JWT VCs with a pre-authorized code, a Token Status List, an
//! OIDC4IDA provider, and the face comparison the reference server calls.
//!
//! Everything is kept in memory: codes, tokens and nonces are single-use and short-lived,
//! and a restart forgets them (the status list starts again from the fixtures).

mod ida;
mod pages;
mod vci;

use crate::fixtures::Fixtures;
use crate::html::{escape, page};
use crate::keys::SigningKey;
use axum::Router;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use regain_core::jose::b64url_encode;
use regain_core::openid4vp::form_decode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The key id of the issuer key (credentials, status lists, ID tokens).
pub const KID: &str = "dev-idv-es256-1";
/// The credential configuration the issuer offers.
pub const CONFIGURATION_ID: &str = "identity";
/// Entries in the status list.
pub const STATUS_ENTRIES: usize = 1024;
/// The OIDC4IDA trust framework the provider asserts.
pub const TRUST_FRAMEWORK: &str = "regain_dev_only";
/// The lowest face score that counts as a match at the IDV (Regain's default threshold).
pub const FACE_THRESHOLD: u8 = 70;
/// Seconds a pre-authorized code, an authorization code, an access token or a nonce lives.
pub const CODE_SECONDS: u64 = 600;
const TOKEN_SECONDS: u64 = 300;
const NONCE_SECONDS: u64 = 300;
/// Seconds a credential is valid after issuance.
const CREDENTIAL_SECONDS: u64 = 365 * 86_400;

/// The issuer key: fixed, so that a deployment may pin it in a `jwks_file`.
pub fn issuer_key() -> SigningKey {
    SigningKey::p256(0x1D)
}

/// The `vct` of the credentials issued by `issuer`.
pub fn vct(issuer: &str) -> String {
    format!("{issuer}/credentials/identity")
}

/// How the service is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The public base URL: the credential issuer, the OIDC issuer (an origin, no path).
    pub issuer: String,
    /// The fixture people and selfies.
    pub fixtures: Fixtures,
    /// Registered OIDC4IDA clients: `(client_id, redirect_uri)`.
    pub clients: Vec<(String, String)>,
    /// The dev wallet's base URL, for the "open in the dev wallet" link of an offer.
    pub wallet_url: String,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The HTTP edge's error: an OAuth-style `error` code (RFC 6749 §5.2) and a description;
/// internal causes go to the log only.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self { status, code, description: description.into() }
    }

    fn bad(code: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description)
    }

    fn internal(cause: &str) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the dev IDV failed; see its log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.code, "error_description": self.description });
        let mut response = (self.status, [(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED
            && let Ok(value) = format!("Bearer error=\"{}\"", self.code).parse()
        {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// A pre-authorized code's grant.
struct Grant {
    person: String,
    expires: u64,
}

/// An authorization code of the OIDC4IDA provider.
struct AuthorizationCode {
    person: String,
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: String,
    claims: Vec<String>,
    face_matched: bool,
    expires: u64,
}

#[derive(Default)]
struct Memory {
    /// Keyed by the SHA-256 of the secret, so that lookups do not compare secrets.
    pre_authorized: HashMap<String, Grant>,
    access_tokens: HashMap<String, Grant>,
    nonces: HashMap<String, u64>,
    codes: HashMap<String, AuthorizationCode>,
    statuses: Vec<u8>,
}

impl Memory {
    fn prune(&mut self, now: u64) {
        self.pre_authorized.retain(|_, g| g.expires > now);
        self.access_tokens.retain(|_, g| g.expires > now);
        self.nonces.retain(|_, expires| *expires > now);
        self.codes.retain(|_, c| c.expires > now);
    }
}

/// The running service; cheap to clone.
#[derive(Clone)]
pub struct Service {
    config: Arc<Config>,
    key: SigningKey,
    memory: Arc<Mutex<Memory>>,
}

/// The lookup key of a secret.
fn digest(secret: &str) -> String {
    b64url_encode(&Sha256::digest(secret.as_bytes()))
}

/// A fresh random value of `bytes` bytes, base64url.
fn random(bytes: usize) -> Result<String, ApiError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| ApiError::internal(&format!("no random source: {e}")))?;
    Ok(b64url_encode(&buffer))
}

/// An `application/x-www-form-urlencoded` body; a repeated or badly encoded parameter is
/// refused.
fn form(body: &str) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for pair in body.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(key), Some(value)) = (form_decode(key), form_decode(value)) else {
            return Err(ApiError::bad("invalid_request", "the form is not properly encoded"));
        };
        if out.insert(key.clone(), value).is_some() {
            return Err(ApiError::bad("invalid_request", format!("`{key}` is given twice")));
        }
    }
    Ok(out)
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(page("Regain dev IDV", title, body))).into_response()
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/json"))
}

impl Service {
    /// A service for `config`, with the fixture people's revoked entries set.
    pub fn new(config: Config) -> Self {
        let mut memory = Memory { statuses: vec![0; STATUS_ENTRIES], ..Memory::default() };
        for person in config.fixtures.people.iter().filter(|p| p.revoked) {
            if let Some(entry) = usize::try_from(person.status_index).ok().and_then(|i| memory.statuses.get_mut(i)) {
                *entry = 1;
            }
        }
        Self { config: Arc::new(config), key: issuer_key(), memory: Arc::new(Mutex::new(memory)) }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn issuer(&self) -> &str {
        &self.config.issuer
    }

    fn status_uri(&self) -> String {
        format!("{}/status/1", self.issuer())
    }

    /// Every route of the service.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(index))
            .route("/healthz", get(|| async { "ok" }))
            .route("/.well-known/openid-credential-issuer", get(vci::issuer_metadata))
            .route("/.well-known/oauth-authorization-server", get(vci::server_metadata))
            .route("/.well-known/openid-configuration", get(ida::discovery))
            .route("/.well-known/jwks.json", get(jwks))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .route("/nonce", post(vci::nonce))
            .route("/credential", post(vci::credential))
            .route("/verify", get(pages::verify_form).post(pages::verify))
            .route("/authorize", get(ida::authorize_form).post(ida::authorize))
            .route("/status/1", get(status_list))
            .route("/admin/revoke", post(revoke))
            .route("/face/compare", post(face_compare))
            .route("/fixtures/{kind}/{file}", get(fixture_file))
            .layer(axum::middleware::from_fn(log_request))
            .with_state(self)
    }
}

/// One log line per request: method, route and status; never the query or the body.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    tracing::info!(%method, %route, status = response.status().as_u16(), "request");
    response
}

async fn index(State(s): State<Service>) -> Response {
    let issuer = escape(s.issuer());
    let mut people = String::new();
    for person in &s.config.fixtures.people {
        people.push_str(&format!(
            "<tr><td><img class=\"face\" alt=\"portrait\" src=\"/fixtures/portraits/{id}.bmp\"></td>\
             <td><code>{id}</code></td><td>{case}</td><td>{index}</td></tr>",
            id = escape(&person.id),
            case = escape(&person.case),
            index = person.status_index,
        ));
    }
    let mut selfies = String::new();
    for selfie in &s.config.fixtures.selfies {
        selfies.push_str(&format!(
            "<tr><td><img class=\"face\" alt=\"selfie\" src=\"/fixtures/selfies/{name}.bmp\"></td>\
             <td><a href=\"/fixtures/selfies/{name}.pgm\" download>{name}.pgm</a></td><td>{case}</td></tr>",
            name = escape(&selfie.name),
            case = escape(&selfie.case),
        ));
    }
    let body = format!(
        "<p>A simulated identity verification provider. Issuer <code>{issuer}</code>.</p>\
         <ul><li><a href=\"/verify\">Verify your identity and get a credential</a> (OpenID4VCI)</li>\
         <li><a href=\"/.well-known/openid-credential-issuer\">Credential issuer metadata</a>, \
         <a href=\"/.well-known/openid-configuration\">OpenID Connect discovery</a> (OIDC4IDA), \
         <a href=\"/.well-known/jwks.json\">keys</a>, <a href=\"/status/1\">status list</a></li></ul>\
         <h2>Fixture people</h2><table><tr><th></th><th>id</th><th>case</th><th>status index</th></tr>{people}</table>\
         <h2>Selfies</h2><p>Download one to upload it on the recovery page's selfie step.</p>\
         <table><tr><th></th><th>file</th><th>what it shows</th></tr>{selfies}</table>"
    );
    html(StatusCode::OK, "Regain dev IDV", &body)
}

async fn jwks(State(s): State<Service>) -> Response {
    axum::Json(s.key.jwks(Some(KID))).into_response()
}

/// The token endpoint of both protocols: the pre-authorized code (OpenID4VCI) and the
/// authorization code (OIDC4IDA).
async fn token(State(s): State<Service>, body: String) -> Result<Response, ApiError> {
    let params = form(&body)?;
    match params.get("grant_type").map(String::as_str) {
        Some(crate::wallet::PRE_AUTHORIZED_GRANT) => vci::token(&s, &params),
        Some("authorization_code") => ida::token(&s, &params),
        _ => Err(ApiError::bad("unsupported_grant_type", "the grant type is not supported")),
    }
}

async fn status_list(State(s): State<Service>) -> Response {
    let statuses = s.memory().statuses.clone();
    let t = now();
    let token = crate::status::token(&s.key, Some(KID), &s.status_uri(), &statuses, 1, t, Some(t + 86_400));
    ([(header::CONTENT_TYPE, "application/statuslist+jwt"), (header::CACHE_CONTROL, "max-age=60")], token)
        .into_response()
}

/// `POST /admin/revoke` with `index` or `person`, as JSON or as a form.
async fn revoke(State(s): State<Service>, headers: HeaderMap, body: String) -> Result<Response, ApiError> {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (index, person) = if json_body {
        let value: Value = serde_json::from_str(&body).map_err(|_| ApiError::bad("invalid_request", "not JSON"))?;
        (value.get("index").and_then(Value::as_u64), value.get("person").and_then(Value::as_str).map(str::to_owned))
    } else {
        let params = form(&body)?;
        (params.get("index").and_then(|i| i.parse().ok()), params.get("person").cloned())
    };
    let index = match (index, person) {
        (Some(index), None) => index,
        (None, Some(person)) => {
            s.config
                .fixtures
                .person(&person)
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_person", "no such fixture person"))?
                .status_index
        }
        _ => return Err(ApiError::bad("invalid_request", "give either `index` or `person`")),
    };
    let mut memory = s.memory();
    let entry = usize::try_from(index)
        .ok()
        .and_then(|i| memory.statuses.get_mut(i))
        .ok_or_else(|| ApiError::bad("invalid_request", format!("the list has {STATUS_ENTRIES} entries")))?;
    *entry = 1;
    tracing::info!(index, "status list entry revoked");
    Ok(axum::Json(json!({ "revoked": index })).into_response())
}

fn base64_image(value: Option<&Value>, name: &str) -> Result<Vec<u8>, ApiError> {
    let text = value
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad("invalid_request", format!("`{name}` is missing")))?;
    let text = text.split_once(";base64,").map_or(text, |(_, data)| data).trim().trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
        .map_err(|_| ApiError::bad("invalid_request", format!("`{name}` is not base64")))
}

/// `POST /face/compare` `{"portrait": b64, "selfie": b64}` → `{"score": n, "live": bool}`.
async fn face_compare(body: String) -> Result<Response, ApiError> {
    let value: Value = serde_json::from_str(&body).map_err(|_| ApiError::bad("invalid_request", "not JSON"))?;
    let portrait = base64_image(value.get("portrait"), "portrait")?;
    let selfie = base64_image(value.get("selfie"), "selfie")?;
    let comparison = crate::face::compare(&portrait, &selfie).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_image",
            format!("{e} (the dev IDV compares PGM images only)"),
        )
    })?;
    tracing::info!(score = comparison.score, live = comparison.live, "faces compared");
    Ok(axum::Json(json!({ "score": comparison.score, "live": comparison.live })).into_response())
}

/// `/fixtures/{portraits,selfies}/<name>.{pgm,bmp}` and `/fixtures/documents/<id>.json`.
async fn fixture_file(State(s): State<Service>, UrlPath((kind, file)): UrlPath<(String, String)>) -> Response {
    let fixtures = &s.config.fixtures;
    let (name, extension) = file.rsplit_once('.').unwrap_or((&file, ""));
    let image = match kind.as_str() {
        "portraits" => fixtures.person(name).map(|p| p.portrait.clone()),
        "selfies" => fixtures.selfie(name).map(|s| s.image.clone()),
        "documents" if extension == "json" => {
            return match fixtures.person(name).and_then(|p| serde_json::to_vec_pretty(&p.document).ok()) {
                Some(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            };
        }
        _ => None,
    };
    let Some(pgm) = image else { return StatusCode::NOT_FOUND.into_response() };
    match extension {
        "pgm" => ([(header::CONTENT_TYPE, "image/x-portable-graymap")], pgm).into_response(),
        "bmp" => match crate::face::Image::parse_pgm(&pgm) {
            Ok(image) => ([(header::CONTENT_TYPE, "image/bmp")], image.to_bmp()).into_response(),
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        },
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The outcome of the checks on a chosen document and selfie, for both protocols' pages.
pub(crate) struct Verification {
    /// The person whose document it is.
    person: String,
    /// Document checks, then the face checks: `(what, passed, detail)`.
    checks: Vec<(String, bool, String)>,
    /// Whether the document passed every check.
    document_passed: bool,
    /// Whether the selfie matched the portrait and was live.
    face_matched: bool,
}

impl Verification {
    fn passed(&self) -> bool {
        self.document_passed && self.face_matched
    }

    fn table(&self) -> String {
        let mut rows = String::new();
        for (what, passed, detail) in &self.checks {
            rows.push_str(&format!(
                "<tr><td>{}</td><td class=\"{class}\">{mark}</td><td>{}</td></tr>",
                escape(what),
                escape(detail),
                class = if *passed { "pass" } else { "fail" },
                mark = if *passed { "passed" } else { "failed" },
            ));
        }
        format!("<table id=\"checks\"><tr><th>check</th><th>result</th><th>detail</th></tr>{rows}</table>")
    }

    fn json(&self) -> Value {
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|(what, passed, detail)| json!({ "check": what, "passed": passed, "detail": detail }))
            .collect();
        json!({ "passed": self.passed(), "document_passed": self.document_passed, "face_matched": self.face_matched, "checks": checks })
    }
}

impl Service {
    /// Runs the document checks on fixture `document` and compares `selfie` (a fixture
    /// selfie's name, or an uploaded PGM) with its portrait.
    fn verify(&self, document: &str, selfie: &Selfie) -> Result<Verification, String> {
        let person = self.config.fixtures.person(document).ok_or("choose one of the listed documents")?;
        let selfie = match selfie {
            Selfie::Fixture(name) => {
                self.config.fixtures.selfie(name).ok_or("choose one of the listed selfies")?.image.clone()
            }
            Selfie::Upload(bytes) => bytes.clone(),
        };
        let report = person.document.check(&person.portrait, now(), &crate::documents::document_issuer());
        let mut checks: Vec<(String, bool, String)> = report
            .checks
            .iter()
            .map(|c| {
                let detail = c.outcome.as_ref().err().map(ToString::to_string).unwrap_or_default();
                (c.name.to_owned(), c.outcome.is_ok(), detail)
            })
            .collect();
        let document_passed = report.result().is_ok();
        let face_matched = match crate::face::compare(&person.portrait, &selfie) {
            Ok(c) => {
                let matched = c.score >= FACE_THRESHOLD;
                checks.push(("face match".into(), matched, format!("score {} (at least {FACE_THRESHOLD})", c.score)));
                let live_detail = if c.live { String::new() } else { "the selfie was not taken live".into() };
                checks.push(("liveness".into(), c.live, live_detail));
                matched && c.live
            }
            Err(e) => {
                checks.push(("face match".into(), false, e.to_string()));
                false
            }
        };
        tracing::info!(document_passed, face_matched, "identity verification ran");
        Ok(Verification { person: person.id.clone(), checks, document_passed, face_matched })
    }
}

/// The selfie a verification uses.
pub(crate) enum Selfie {
    /// A fixture selfie by name.
    Fixture(String),
    /// An uploaded PGM.
    Upload(Vec<u8>),
}

/// Reads the `selfie` choice or the `selfie_upload` data URL of a verification form.
fn chosen_selfie(params: &HashMap<String, String>) -> Result<Selfie, String> {
    match params.get("selfie_upload").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(upload) => base64_image(Some(&Value::String(upload.to_owned())), "selfie_upload")
            .map(Selfie::Upload)
            .map_err(|_| "the uploaded selfie is not readable".to_owned()),
        None => params.get("selfie").map(|s| Selfie::Fixture(s.clone())).ok_or_else(|| "choose a selfie".to_owned()),
    }
}
