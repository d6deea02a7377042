//! The verification page: choose a fixture document and a selfie, see every check, and get
//! a credential offer when all pass.

use super::{
    ApiError, CODE_SECONDS, CONFIGURATION_ID, Grant, Service, chosen_selfie, digest, form, html, now, random,
    wants_json,
};
use crate::html::escape;
use crate::wallet::{CredentialOffer, OFFER_SCHEME};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The form that picks a document and a selfie (or uploads a PGM selfie), posting to
/// `action` with `hidden` fields carried along.
pub(super) fn choice_form(s: &Service, action: &str, hidden: &[(&str, &str)], submit: &str) -> String {
    let mut out = format!("<form method=\"post\" action=\"{}\" id=\"verify-form\">", escape(action));
    for (name, value) in hidden {
        out.push_str(&format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(name), escape(value)));
    }
    out.push_str("<h2>1. Scan your document</h2><p>Choose a fixture passport.</p>");
    for (i, person) in s.config.fixtures.people.iter().enumerate() {
        out.push_str(&format!(
            "<label class=\"choice\"><input type=\"radio\" name=\"document\" value=\"{id}\"{checked}> \
             <img class=\"face\" alt=\"\" src=\"/fixtures/portraits/{id}.bmp\"> <code>{id}</code><br><small>{case}</small></label>",
            id = escape(&person.id),
            case = escape(&person.case),
            checked = if i == 0 { " checked" } else { "" },
        ));
    }
    out.push_str("<h2>2. Take a selfie</h2><p>Choose a fixture selfie, or upload a PGM image.</p>");
    for (i, selfie) in s.config.fixtures.selfies.iter().enumerate() {
        out.push_str(&format!(
            "<label class=\"choice\"><input type=\"radio\" name=\"selfie\" value=\"{name}\"{checked}> \
             <img class=\"face\" alt=\"\" src=\"/fixtures/selfies/{name}.bmp\"> <code>{name}</code></label>",
            name = escape(&selfie.name),
            checked = if i == 0 { " checked" } else { "" },
        ));
    }
    out.push_str(
        "<p><label>Or upload a selfie (PGM) <input type=\"file\" id=\"selfie-file\" accept=\".pgm,image/x-portable-graymap\"></label>\
         <input type=\"hidden\" name=\"selfie_upload\" id=\"selfie-upload\"></p>\
         <script>document.getElementById('selfie-file').addEventListener('change',function(e){\
         var f=e.target.files[0];if(!f)return;var r=new FileReader();\
         r.onload=function(){document.getElementById('selfie-upload').value=r.result;};r.readAsDataURL(f);});</script>",
    );
    out.push_str(&format!("<p><button type=\"submit\" id=\"verify\">{}</button></p></form>", escape(submit)));
    out
}

pub(super) async fn verify_form(State(s): State<Service>) -> Response {
    let body = format!(
        "<p>Prove who you are the way an identity verification provider would ask: a document scan and a selfie. \
         Everything here is simulated with fixture data.</p>{}",
        choice_form(&s, "/verify", &[], "Verify")
    );
    html(StatusCode::OK, "Verify your identity", &body)
}

/// Runs the checks; on success creates a single-use pre-authorized code and shows the
/// credential offer (as JSON with `Accept: application/json`).
pub(super) async fn verify(State(s): State<Service>, headers: HeaderMap, body: String) -> Result<Response, ApiError> {
    let params = form(&body)?;
    let json_wanted = wants_json(&headers);
    let refuse = |message: String| -> Result<Response, ApiError> {
        if json_wanted {
            return Err(ApiError::bad("invalid_request", message));
        }
        let body = format!("<p role=\"alert\">{}</p>{}", escape(&message), choice_form(&s, "/verify", &[], "Verify"));
        Ok(html(StatusCode::BAD_REQUEST, "Verify your identity", &body))
    };
    let selfie = match chosen_selfie(&params) {
        Ok(selfie) => selfie,
        Err(message) => return refuse(message),
    };
    let document = params.get("document").map(String::as_str).unwrap_or_default();
    let verification = match s.verify(document, &selfie) {
        Ok(verification) => verification,
        Err(message) => return refuse(message),
    };
    if !verification.passed() {
        if json_wanted {
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::Json(verification.json())).into_response());
        }
        let body = format!(
            "<p id=\"outcome\" class=\"fail\">Verification failed: no credential is issued.</p>{}\
             <p><a href=\"/verify\">Try again</a></p>",
            verification.table()
        );
        return Ok(html(StatusCode::OK, "Verification failed", &body));
    }

    let code = random(32)?;
    {
        let mut memory = s.memory();
        let t = now();
        memory.prune(t);
        memory
            .pre_authorized
            .insert(digest(&code), Grant { person: verification.person.clone(), expires: t + CODE_SECONDS });
    }
    let offer = CredentialOffer {
        credential_issuer: s.issuer().to_owned(),
        configuration_ids: vec![CONFIGURATION_ID.into()],
        pre_authorized_code: code,
    };
    let offer_url = offer.url(OFFER_SCHEME);
    let wallet_url = offer.url(&format!("{}/offer", s.config.wallet_url.trim_end_matches('/')));
    if json_wanted {
        let mut answer = verification.json();
        if let Some(map) = answer.as_object_mut() {
            map.insert("credential_offer".into(), offer.to_json());
            map.insert("credential_offer_url".into(), json!(offer_url));
            map.insert("dev_wallet_url".into(), json!(wallet_url));
        }
        return Ok(axum::Json(answer).into_response());
    }
    let body = format!(
        "<p id=\"outcome\" class=\"pass\">Verified. Your identity credential is ready.</p>{table}\
         <h2>Get your credential</h2>\
         <p><a id=\"wallet-offer-link\" href=\"{wallet}\">Open in the dev wallet</a> \
         or <a id=\"offer-link\" href=\"{offer}\">open in a wallet app</a> (the offer works once and for {minutes} minutes).</p>\
         <p>With the command-line wallet:</p><pre id=\"offer-url\">regain-dev-wallet receive '{offer}'</pre>",
        table = verification.table(),
        wallet = escape(&wallet_url),
        offer = escape(&offer_url),
        minutes = CODE_SECONDS / 60,
    );
    Ok(html(StatusCode::OK, "Verified", &body))
}
