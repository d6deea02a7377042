//! Passkeys over HTTP: sign-in with a passkey (discoverable or not) from the login page, and
//! registration of a passkey by a signed-in user, either on the page that follows a pass
//! sign-in or on `/passkey/register`. The browser fetches options as JSON, runs the ceremony
//! and posts an ordinary form; everything is decided on the server.

use crate::accounts::{Account, BrowserSession};
use crate::passkeys::{Ceremony, Passkey};
use crate::provider::{
    AuthRequest, GENERIC_FAILURE, Provider, SIGN_IN_ATTEMPTS, SIGN_IN_WINDOW_SECONDS, TOO_MANY_FROM_ADDRESS,
    address_allowed, continue_as, cookie, escape, hidden, invalid, login_page, page, register_page, server_error,
    start_session,
};
use crate::recovery::Peer;
use crate::store::{digest, now, random_hex};
use crate::webauthn::{self, RelyingParty, UserEntity};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use regain_core::jose::{b64url_decode, b64url_encode};
use serde::Deserialize;
use serde_json::json;

/// How long a ceremony's challenge is accepted, in seconds.
const CHALLENGE_SECONDS: i64 = 300;
/// Failed sign-ins accepted per credential id in one rate-limit window.
const CREDENTIAL_FAILURES: i64 = 10;
/// The authentication method reference of a passkey sign-in (RFC 8176).
const AMR: &str = "hwk";
/// What a user sees when a passkey could not be registered; the cause goes to the log.
const NOT_REGISTERED: &str = "The passkey could not be registered; try again.";
const TOO_MANY: &str = "Too many attempts for this login; wait a few minutes.";
/// The longest passkey label kept.
const MAX_LABEL: usize = 64;

/// The passkey routes, merged into the provider's router.
pub(crate) fn routes() -> Router<Provider> {
    Router::new()
        .route("/passkey/sign-in/options", post(sign_in_options))
        .route("/passkey/sign-in", post(sign_in))
        .route("/passkey/register", get(add_page))
        .route("/passkey/register/options", post(register_options))
        .route("/register-passkey", post(register))
}

/// Turns the options into what `navigator.credentials` takes, runs the ceremony and posts
/// the form with the results in base64url; a page without script still shows every form.
const SCRIPT: &str = r#"<script>(() => {
const enc = (buf) => { let s = ''; for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''); };
const dec = (t) => Uint8Array.from(atob(t.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
for (const button of document.querySelectorAll('button[data-passkey]')) {
  if (!window.PublicKeyCredential) continue;
  button.hidden = false;
  button.addEventListener('click', async () => {
    const form = button.form, register = button.dataset.passkey === 'register';
    const say = (text) => { form.querySelector('output').textContent = text; };
    const set = (name, value) => { form.elements[name].value = value; };
    try {
      const answer = await fetch(register ? '/passkey/register/options' : '/passkey/sign-in/options', {
        method: 'POST', headers: { 'content-type': 'application/json' }, credentials: 'same-origin',
        body: JSON.stringify(Object.fromEntries(new FormData(form))) });
      if (!answer.ok) { say((await answer.json()).message || 'Try again.'); return; }
      const { challenge_id, publicKey } = await answer.json();
      publicKey.challenge = dec(publicKey.challenge);
      for (const c of [...(publicKey.allowCredentials || []), ...(publicKey.excludeCredentials || [])]) c.id = dec(c.id);
      if (publicKey.user) publicKey.user.id = dec(publicKey.user.id);
      const credential = register ? await navigator.credentials.create({ publicKey })
        : await navigator.credentials.get({ publicKey });
      const r = credential.response;
      set('challenge_id', challenge_id);
      set('client_data_json', enc(r.clientDataJSON));
      if (register) { set('attestation_object', enc(r.attestationObject)); } else {
        set('credential_id', enc(credential.rawId));
        set('authenticator_data', enc(r.authenticatorData));
        set('signature', enc(r.signature));
        if (r.userHandle) set('user_handle', enc(r.userHandle));
      }
      form.submit();
    } catch (e) { say('The passkey was not used. Try again or choose another way.'); }
  });
}
})();</script>"#;

fn empty_fields(names: &[&str]) -> String {
    names.iter().map(|name| format!("<input type=\"hidden\" name=\"{name}\">")).collect()
}

/// The login page's passkey form. The button appears only where the browser has WebAuthn.
pub(crate) fn sign_in_section(req: &AuthRequest) -> String {
    format!(
        "<form id=\"passkey-sign-in\" method=\"post\" action=\"/passkey/sign-in\">{h}{fields}\
         <button type=\"button\" data-passkey=\"sign-in\" hidden>Sign in with a passkey</button>\
         <output></output></form>{SCRIPT}",
        h = hidden(req),
        fields = empty_fields(&[
            "challenge_id",
            "credential_id",
            "client_data_json",
            "authenticator_data",
            "signature",
            "user_handle"
        ]),
    )
}

/// The passkey form of a registration page.
pub(crate) fn register_section(req: &AuthRequest) -> String {
    format!(
        "<form id=\"passkey-register\" method=\"post\" action=\"/register-passkey\">{h}{fields}\
         <label>Passkey name <input name=\"label\" value=\"Passkey\" maxlength=\"{MAX_LABEL}\"></label>\
         <button type=\"button\" data-passkey=\"register\" hidden>Register a passkey</button>\
         <output></output></form>{SCRIPT}",
        h = hidden(req),
        fields = empty_fields(&["challenge_id", "client_data_json", "attestation_object"]),
    )
}

/// A JSON error: a machine code and a human message.
fn json_error(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({ "error": error, "message": message }))).into_response()
}

fn json_server_error(detail: &str) -> Response {
    tracing::error!(error = %detail, "passkey request failed");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "The server could not complete the request.")
}

/// Options and the id of the challenge kept for them, never cached.
fn options_response(challenge_id: &str, options: serde_json::Value) -> Response {
    let mut response = Json(json!({ "challenge_id": challenge_id, "publicKey": options })).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

/// A fresh challenge, kept in the store under a new id.
async fn issue_challenge(
    p: &Provider,
    ceremony: Ceremony,
    user_id: Option<&str>,
    t: i64,
) -> Result<(String, [u8; 32]), String> {
    let challenge = webauthn::new_challenge().map_err(|e| e.to_string())?;
    let id = random_hex(16).map_err(|e| e.to_string())?;
    p.store
        .put_webauthn_challenge(&id, ceremony, &challenge, user_id, t, t + CHALLENGE_SECONDS)
        .await
        .map_err(|e| e.to_string())?;
    Ok((id, challenge))
}

async fn browser_session(p: &Provider, headers: &HeaderMap, t: i64) -> Option<BrowserSession> {
    let sid = cookie(headers)?;
    p.store.browser_session(&sid, t).await.ok().flatten()
}

async fn sign_in_options(State(p): State<Provider>, Json(req): Json<AuthRequest>) -> Response {
    if invalid(&p, &req).is_some() {
        return json_error(StatusCode::BAD_REQUEST, "invalid_request", "The sign-in request is not valid.");
    }
    let rp = match RelyingParty::from_issuer(&p.issuer) {
        Ok(rp) => rp,
        Err(e) => return json_server_error(&e.to_string()),
    };
    match issue_challenge(&p, Ceremony::SignIn, None, now()).await {
        // No allow list: the authenticator offers its discoverable credentials for this
        // RP, so the user types nothing.
        Ok((id, challenge)) => options_response(&id, webauthn::request_options(&rp, &challenge, &[])),
        Err(e) => json_server_error(&e),
    }
}

/// What the passkey sign-in form posts; binary fields in base64url.
#[derive(Deserialize)]
struct PasskeySignIn {
    #[serde(flatten)]
    req: AuthRequest,
    #[serde(default)]
    challenge_id: String,
    #[serde(default)]
    credential_id: String,
    #[serde(default)]
    client_data_json: String,
    #[serde(default)]
    authenticator_data: String,
    #[serde(default)]
    signature: String,
    #[serde(default)]
    user_handle: String,
}

/// A refused sign-in: counted against the credential, logged with its reason, answered
/// with the same message as every other failure.
async fn refuse_sign_in(p: &Provider, req: &AuthRequest, failures_key: &str, window: i64, reason: &str) -> Response {
    tracing::info!(reason = %reason, "passkey sign-in refused");
    if let Err(e) = p.store.hit(failures_key, window).await {
        return server_error(&e.to_string());
    }
    login_page(req, Some(GENERIC_FAILURE))
}

async fn sign_in(State(p): State<Provider>, Peer(peer): Peer, Form(form): Form<PasskeySignIn>) -> Response {
    if let Some(response) = invalid(&p, &form.req) {
        return response;
    }
    let req = &form.req;
    let t = now();
    match address_allowed(&p, peer, t).await {
        Ok(true) => {}
        Ok(false) => return login_page(req, Some(TOO_MANY_FROM_ADDRESS)),
        Err(e) => return server_error(&e),
    }
    let window = t - t.rem_euclid(SIGN_IN_WINDOW_SECONDS);
    // Keyed by a digest so that a hostile id cannot make a long key.
    let failures_key = format!("passkey-failures:{}", digest(&form.credential_id));
    // The challenge is spent first, so that whatever fails next it is not accepted again.
    let challenge = match p.store.take_webauthn_challenge(&form.challenge_id, Ceremony::SignIn, t).await {
        Ok(Some(challenge)) => challenge.challenge,
        Ok(None) => return refuse_sign_in(&p, req, &failures_key, window, "unknown, used or expired challenge").await,
        Err(e) => return server_error(&e.to_string()),
    };
    match p.store.hits(&failures_key, window).await {
        Ok(failures) if failures >= CREDENTIAL_FAILURES => return login_page(req, Some(TOO_MANY)),
        Ok(_) => {}
        Err(e) => return server_error(&e.to_string()),
    }
    let passkey = match p.store.passkey(&form.credential_id).await {
        Ok(Some(passkey)) => passkey,
        Ok(None) => return refuse_sign_in(&p, req, &failures_key, window, "unknown credential").await,
        Err(e) => return server_error(&e.to_string()),
    };
    let account = match p.store.user_by_id(&passkey.user_id).await {
        Ok(Some(account)) if account.enabled => account,
        Ok(_) => return refuse_sign_in(&p, req, &failures_key, window, "account unknown or disabled").await,
        Err(e) => return server_error(&e.to_string()),
    };
    // The same per-login counter as the password form: a passkey is one more way to try.
    match p.store.hit(&format!("sign-in:{}", account.login.trim().to_lowercase()), window).await {
        Ok(hits) if hits > SIGN_IN_ATTEMPTS => return login_page(req, Some(TOO_MANY)),
        Ok(_) => {}
        Err(e) => return server_error(&e.to_string()),
    }
    if !form.user_handle.is_empty() && b64url_decode(&form.user_handle).as_deref() != Some(account.id.as_bytes()) {
        return refuse_sign_in(&p, req, &failures_key, window, "user handle of another user").await;
    }
    let (Some(client_data), Some(auth_data), Some(signature)) = (
        b64url_decode(&form.client_data_json),
        b64url_decode(&form.authenticator_data),
        b64url_decode(&form.signature),
    ) else {
        return refuse_sign_in(&p, req, &failures_key, window, "a field is not base64url").await;
    };
    let rp = match RelyingParty::from_issuer(&p.issuer) {
        Ok(rp) => rp,
        Err(e) => return server_error(&e.to_string()),
    };
    let verified = webauthn::verify_assertion(
        &rp,
        &challenge,
        &passkey.public_key,
        passkey.sign_count,
        &client_data,
        &auth_data,
        &signature,
    );
    let sign_count = match verified {
        Ok(count) => count,
        Err(e) => return refuse_sign_in(&p, req, &failures_key, window, &e.to_string()).await,
    };
    match p.store.use_passkey(&passkey.credential_id, sign_count, t).await {
        Ok(true) => {}
        // Another sign-in stored this counter or a later one in the meantime.
        Ok(false) => return refuse_sign_in(&p, req, &failures_key, window, "signature counter raced").await,
        Err(e) => return server_error(&e.to_string()),
    }
    start_session(&p, req, account, AMR, t).await
}

/// For a signed-in user: a page to add a passkey, then continue to the client.
async fn add_page(State(p): State<Provider>, headers: HeaderMap, Query(req): Query<AuthRequest>) -> Response {
    if let Some(response) = invalid(&p, &req) {
        return response;
    }
    let t = now();
    let Some(session) = browser_session(&p, &headers, t).await else {
        return login_page(&req, Some("Sign in again to continue."));
    };
    match p.store.user_by_id(&session.user_id).await {
        Ok(Some(account)) if account.enabled => not_registered(&req, &account, None),
        Ok(_) => login_page(&req, Some(GENERIC_FAILURE)),
        Err(e) => server_error(&e.to_string()),
    }
}

/// The registration page again, with `message`: the forced one after a pass sign-in, or
/// the page to add a passkey.
fn not_registered(req: &AuthRequest, account: &Account, message: Option<&str>) -> Response {
    if account.must_register {
        return register_page(req, account, message);
    }
    let alert = message.map(|m| format!("<p role=\"alert\">{}</p>", escape(m))).unwrap_or_default();
    let query: Vec<String> = req
        .fields()
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| format!("{name}={}", regain_core::openid4vp::percent_encode(v))))
        .collect();
    let body = format!(
        "{alert}<p>Add a passkey to sign in with this device or security key.</p>{section}\
         <p><a id=\"continue\" href=\"/authorize?{query}\">Continue without adding a passkey</a></p>",
        section = register_section(req),
        query = escape(&query.join("&")),
    );
    (StatusCode::OK, Html(page("Add a passkey", &body))).into_response()
}

async fn register_options(State(p): State<Provider>, headers: HeaderMap) -> Response {
    let t = now();
    let Some(session) = browser_session(&p, &headers, t).await else {
        return json_error(StatusCode::UNAUTHORIZED, "login_required", "Sign in again to continue.");
    };
    let account = match p.store.user_by_id(&session.user_id).await {
        Ok(Some(account)) if account.enabled => account,
        Ok(_) => return json_error(StatusCode::UNAUTHORIZED, "login_required", "Sign in again to continue."),
        Err(e) => return json_server_error(&e.to_string()),
    };
    let existing = match p.store.passkeys_of(&account.id).await {
        Ok(passkeys) => passkeys.into_iter().map(|k| k.credential_id).collect::<Vec<_>>(),
        Err(e) => return json_server_error(&e.to_string()),
    };
    let rp = match RelyingParty::from_issuer(&p.issuer) {
        Ok(rp) => rp,
        Err(e) => return json_server_error(&e.to_string()),
    };
    let display = match (&account.given_name, &account.family_name) {
        (Some(given), Some(family)) => format!("{given} {family}"),
        (Some(name), None) | (None, Some(name)) => name.clone(),
        (None, None) => account.login.clone(),
    };
    let user = UserEntity { id: &account.id, name: &account.login, display_name: &display };
    // Refused before a challenge is stored for options that cannot be made.
    if account.id.len() > webauthn::MAX_USER_HANDLE {
        tracing::warn!("passkey options refused: the user id is too long to be a user handle");
        return json_error(StatusCode::CONFLICT, "unsupported_user", "This account cannot register a passkey.");
    }
    match issue_challenge(&p, Ceremony::Register, Some(&account.id), t).await {
        Ok((id, challenge)) => match webauthn::creation_options(&rp, &challenge, user, &existing) {
            Ok(options) => options_response(&id, options),
            Err(e) => json_server_error(&e.to_string()),
        },
        Err(e) => json_server_error(&e),
    }
}

/// What the passkey registration form posts; binary fields in base64url.
#[derive(Deserialize)]
struct RegisterPasskey {
    #[serde(flatten)]
    req: AuthRequest,
    #[serde(default)]
    challenge_id: String,
    #[serde(default)]
    client_data_json: String,
    #[serde(default)]
    attestation_object: String,
    #[serde(default)]
    label: String,
}

async fn register(State(p): State<Provider>, headers: HeaderMap, Form(form): Form<RegisterPasskey>) -> Response {
    if let Some(response) = invalid(&p, &form.req) {
        return response;
    }
    let req = &form.req;
    let t = now();
    let Some(session) = browser_session(&p, &headers, t).await else {
        return login_page(req, Some("Sign in again to continue."));
    };
    let account = match p.store.user_by_id(&session.user_id).await {
        Ok(Some(account)) if account.enabled => account,
        Ok(_) => return login_page(req, Some(GENERIC_FAILURE)),
        Err(e) => return server_error(&e.to_string()),
    };
    let refuse = |reason: &str| {
        tracing::info!(reason = %reason, "passkey registration refused");
        not_registered(req, &account, Some(NOT_REGISTERED))
    };
    let challenge = match p.store.take_webauthn_challenge(&form.challenge_id, Ceremony::Register, t).await {
        // INVARIANT: a registration challenge is good only for the session's user, so a
        // challenge fetched by one account cannot enrol a key into another.
        Ok(Some(issued)) if issued.user_id.as_deref() == Some(account.id.as_str()) => issued.challenge,
        Ok(_) => return refuse("unknown, used, expired or foreign challenge"),
        Err(e) => return server_error(&e.to_string()),
    };
    let (Some(client_data), Some(attestation)) =
        (b64url_decode(&form.client_data_json), b64url_decode(&form.attestation_object))
    else {
        return refuse("a field is not base64url");
    };
    let rp = match RelyingParty::from_issuer(&p.issuer) {
        Ok(rp) => rp,
        Err(e) => return server_error(&e.to_string()),
    };
    let created = match webauthn::verify_registration(&rp, &challenge, &client_data, &attestation) {
        Ok(created) => created,
        Err(e) => return refuse(&e.to_string()),
    };
    let label: String = form.label.trim().chars().filter(|c| !c.is_control()).take(MAX_LABEL).collect();
    let passkey = Passkey {
        credential_id: b64url_encode(&created.credential_id),
        user_id: account.id.clone(),
        public_key: created.public_key,
        sign_count: created.sign_count,
        label: if label.is_empty() { "Passkey".to_owned() } else { label },
        created_at: t,
        last_used_at: None,
    };
    match p.store.insert_passkey(&passkey).await {
        Ok(true) => {}
        Ok(false) => {
            return not_registered(req, &account, Some("This passkey is already registered; use another one."));
        }
        Err(e) => return server_error(&e.to_string()),
    }
    if account.must_register
        && let Err(e) = p.store.set_must_register(&account.id, false).await
    {
        return server_error(&e.to_string());
    }
    continue_as(&p, req, &session, None).await
}
