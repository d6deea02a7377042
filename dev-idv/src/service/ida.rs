//! The OIDC4IDA provider: the authorization code flow with PKCE (S256 required) for the
//! registered clients, and ID tokens carrying `verified_claims`.

use super::pages::choice_form;
use super::{
    ApiError, AuthorizationCode, CODE_SECONDS, KID, Service, TRUST_FRAMEWORK, chosen_selfie, digest, html, now, random,
};
use crate::html::escape;
use crate::ida::Assertion;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use regain_core::jose::b64url_encode;
use regain_core::openid4vp::percent_encode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;

/// The claims the provider can verify.
const CLAIMS: [&str; 4] = ["given_name", "family_name", "birthdate", "nationalities"];

pub(super) async fn discovery(State(s): State<Service>) -> Response {
    let i = s.issuer();
    axum::Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["openid"],
        "token_endpoint_auth_methods_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_parameter_supported": true,
        "verified_claims_supported": true,
        "trust_frameworks_supported": [TRUST_FRAMEWORK],
        "evidence_supported": ["document"],
        "documents_supported": ["passport"],
        "documents_check_methods_supported": ["vri", "bvr"],
        "claims_in_verified_claims_supported": CLAIMS,
    }))
    .into_response()
}

/// A checked authorization request.
struct AuthorizationRequest {
    client_id: String,
    redirect_uri: String,
    state: String,
    nonce: String,
    code_challenge: String,
    claims: Vec<String>,
    /// The original parameters, carried through the form.
    params: Vec<(String, String)>,
}

/// Why an authorization request is refused: before the client and redirect URI are known
/// good the user sees a page; after, the client gets an error redirect.
enum Refusal {
    Page(String),
    Redirect { redirect_uri: String, state: String, error: &'static str, description: String },
}

impl Refusal {
    fn respond(self) -> Response {
        match self {
            Self::Page(message) => html(
                StatusCode::BAD_REQUEST,
                "This request cannot be served",
                &format!("<p role=\"alert\" id=\"error\">{}</p>", escape(&message)),
            ),
            Self::Redirect { redirect_uri, state, error, description } => {
                Redirect::to(&error_redirect(&redirect_uri, &state, error, &description)).into_response()
            }
        }
    }
}

fn error_redirect(redirect_uri: &str, state: &str, error: &str, description: &str) -> String {
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let mut url = format!("{redirect_uri}{separator}error={error}&error_description={}", percent_encode(description));
    if !state.is_empty() {
        url.push_str(&format!("&state={}", percent_encode(state)));
    }
    url
}

/// The `claims` asked for inside `id_token.verified_claims.claims` (every claim the
/// provider verifies when the request names none).
fn requested_claims(claims: Option<&str>) -> Result<Vec<String>, String> {
    let Some(text) = claims else { return Ok(CLAIMS.iter().map(|c| (*c).to_owned()).collect()) };
    let value: Value = serde_json::from_str(text).map_err(|_| "`claims` is not JSON".to_owned())?;
    let wanted = value.pointer("/id_token/verified_claims/claims").and_then(Value::as_object);
    Ok(match wanted {
        Some(wanted) => CLAIMS.iter().filter(|c| wanted.contains_key(**c)).map(|c| (*c).to_owned()).collect(),
        None => CLAIMS.iter().map(|c| (*c).to_owned()).collect(),
    })
}

impl Service {
    fn authorization_request(&self, params: Vec<(String, String)>) -> Result<AuthorizationRequest, Refusal> {
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let client_id = get("client_id").unwrap_or_default();
        let redirect_uri = get("redirect_uri").unwrap_or_default();
        let registered = self.config.clients.iter().any(|(id, uri)| *id == client_id && *uri == redirect_uri);
        if !registered {
            return Err(Refusal::Page(
                "unknown client or redirect URI: only the clients given with `--client` are served".into(),
            ));
        }
        let state = get("state").unwrap_or_default();
        let refuse = |description: &str| Refusal::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error: "invalid_request",
            description: description.to_owned(),
        };
        if get("response_type").as_deref() != Some("code") {
            return Err(Refusal::Redirect {
                redirect_uri: redirect_uri.clone(),
                state: state.clone(),
                error: "unsupported_response_type",
                description: "only `code` is supported".into(),
            });
        }
        if !get("scope").is_some_and(|s| s.split(' ').any(|s| s == "openid")) {
            return Err(refuse("the scope must include `openid`"));
        }
        let nonce = get("nonce").filter(|n| !n.is_empty()).ok_or_else(|| refuse("`nonce` is required"))?;
        if get("code_challenge_method").as_deref() != Some("S256") {
            return Err(refuse("PKCE with `code_challenge_method=S256` is required"));
        }
        let code_challenge = get("code_challenge")
            .filter(|c| (43..=128).contains(&c.len()))
            .ok_or_else(|| refuse("`code_challenge` is missing or malformed"))?;
        let claims = requested_claims(get("claims").as_deref()).map_err(|e| refuse(&e))?;
        Ok(AuthorizationRequest { client_id, redirect_uri, state, nonce, code_challenge, claims, params })
    }
}

/// Parameters of a query or form; a repeated parameter is refused.
fn params_of(text: &str) -> Result<Vec<(String, String)>, Refusal> {
    crate::wallet::query_params(text).map_err(|e| Refusal::Page(e.to_string()))
}

/// The fields of the request carried through the verification form.
const CARRIED: [&str; 9] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "claims",
];

/// `GET /authorize`: checks the request and shows the document and selfie choice.
pub(super) async fn authorize_form(State(s): State<Service>, RawQuery(query): RawQuery) -> Response {
    let request = match params_of(&format!("?{}", query.unwrap_or_default())).and_then(|p| s.authorization_request(p)) {
        Ok(request) => request,
        Err(refusal) => return refusal.respond(),
    };
    let hidden: Vec<(&str, &str)> = request
        .params
        .iter()
        .filter(|(k, _)| CARRIED.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let asked = request.claims.iter().map(|c| format!("<code>{}</code>", escape(c))).collect::<Vec<_>>().join(", ");
    let body = format!(
        "<p><strong id=\"client\">{}</strong> asks this provider to verify your identity and tell it: {asked}.</p>{}\
         <form method=\"post\" action=\"/authorize\">{}<input type=\"hidden\" name=\"cancel\" value=\"1\">\
         <button type=\"submit\" id=\"cancel\">Cancel</button></form>",
        escape(&request.client_id),
        choice_form(&s, "/authorize", &hidden, "Verify and continue"),
        hidden
            .iter()
            .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(k), escape(v)))
            .collect::<String>(),
    );
    html(StatusCode::OK, "Verify your identity", &body)
}

/// `POST /authorize`: runs the checks and sends the browser back with a code, or with
/// `access_denied` when the document fails (or the user cancels). A selfie that does not
/// match still gets a code, but the ID token's evidence then holds no face comparison.
pub(super) async fn authorize(State(s): State<Service>, body: String) -> Response {
    let params = match params_of(&format!("?{body}")) {
        Ok(params) => params,
        Err(refusal) => return refusal.respond(),
    };
    let fields: HashMap<String, String> = params.iter().cloned().collect();
    let carried: Vec<(String, String)> = params.into_iter().filter(|(k, _)| CARRIED.contains(&k.as_str())).collect();
    let request = match s.authorization_request(carried) {
        Ok(request) => request,
        Err(refusal) => return refusal.respond(),
    };
    let denied = |description: &str| {
        Redirect::to(&error_redirect(&request.redirect_uri, &request.state, "access_denied", description))
            .into_response()
    };
    if fields.contains_key("cancel") {
        return denied("the user cancelled");
    }
    let selfie = match chosen_selfie(&fields) {
        Ok(selfie) => selfie,
        Err(message) => {
            return html(
                StatusCode::BAD_REQUEST,
                "Verify your identity",
                &format!("<p role=\"alert\">{}</p>", escape(&message)),
            );
        }
    };
    let document = fields.get("document").map(String::as_str).unwrap_or_default();
    let verification = match s.verify(document, &selfie) {
        Ok(verification) => verification,
        Err(message) => {
            return html(
                StatusCode::BAD_REQUEST,
                "Verify your identity",
                &format!("<p role=\"alert\">{}</p>", escape(&message)),
            );
        }
    };
    if !verification.document_passed {
        return denied("the identity document did not pass the checks");
    }
    let code = match random(32) {
        Ok(code) => code,
        Err(e) => return e.into_response(),
    };
    {
        let mut memory = s.memory();
        let t = now();
        memory.prune(t);
        memory.codes.insert(
            digest(&code),
            AuthorizationCode {
                person: verification.person.clone(),
                client_id: request.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                code_challenge: request.code_challenge.clone(),
                nonce: request.nonce.clone(),
                claims: request.claims.clone(),
                face_matched: verification.face_matched,
                expires: t + CODE_SECONDS,
            },
        );
    }
    let separator = if request.redirect_uri.contains('?') { '&' } else { '?' };
    let mut back = format!("{}{separator}code={}", request.redirect_uri, percent_encode(&code));
    if !request.state.is_empty() {
        back.push_str(&format!("&state={}", percent_encode(&request.state)));
    }
    Redirect::to(&back).into_response()
}

/// The authorization code exchange: code accepted once, same client and redirect URI, and
/// the PKCE verifier; answers the ID token.
pub(super) fn token(s: &Service, params: &HashMap<String, String>) -> Result<Response, ApiError> {
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| ApiError::bad("invalid_request", format!("`{name}` is missing")))
    };
    let (code, redirect_uri, client_id, verifier) =
        (get("code")?, get("redirect_uri")?, get("client_id")?, get("code_verifier")?);
    let grant = {
        let mut memory = s.memory();
        memory.prune(now());
        memory.codes.remove(&digest(code))
    };
    let invalid = || ApiError::bad("invalid_grant", "the code is unknown, used, expired or not this client's");
    let grant = grant.ok_or_else(invalid)?;
    if grant.client_id != client_id || grant.redirect_uri != redirect_uri {
        return Err(invalid());
    }
    let challenge = b64url_encode(&Sha256::digest(verifier.as_bytes()));
    if !(43..=128).contains(&verifier.len())
        || !regain_core::secret::constant_time_eq(challenge.as_bytes(), grant.code_challenge.as_bytes())
    {
        return Err(ApiError::bad("invalid_grant", "the code verifier does not match the code challenge"));
    }
    let entry =
        s.config.fixtures.person(&grant.person).ok_or_else(|| ApiError::internal("the verified person is gone"))?;
    let report = entry.document.check(&entry.portrait, now(), &crate::documents::document_issuer());
    let document = report.result().map_err(|e| ApiError::internal(&format!("the document no longer passes: {e}")))?;
    let available: [(&str, Value); 4] = [
        ("given_name", json!(document.given_name)),
        ("family_name", json!(document.family_name)),
        ("birthdate", json!(document.birth_date.iso())),
        ("nationalities", json!([document.nationality])),
    ];
    let claims: Vec<(&str, Value)> =
        available.into_iter().filter(|(name, _)| grant.claims.iter().any(|c| c == name)).collect();
    // A pairwise subject: the same person looks different to different clients.
    let subject = b64url_encode(
        Sha256::digest(format!("{}|{}", grant.client_id, grant.person).as_bytes()).get(..16).unwrap_or_default(),
    );
    let issuer = s.issuer().to_owned();
    let assertion = Assertion {
        issuer: &issuer,
        kid: KID,
        client_id: &grant.client_id,
        nonce: &grant.nonce,
        subject: &subject,
        iat: now(),
        trust_framework: TRUST_FRAMEWORK,
        face_method: grant.face_matched.then_some("bvr"),
        claims,
    };
    let id_token = assertion.id_token(&s.key);
    let access_token = random(32)?;
    tracing::info!(face_evidence = grant.face_matched, "ID token issued");
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(
            json!({ "access_token": access_token, "token_type": "Bearer", "expires_in": 300, "id_token": id_token }),
        ),
    )
        .into_response())
}
