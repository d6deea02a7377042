//! The dev wallet's web page (DEV ONLY): the held credentials, receiving an offer, and
//! showing a presentation request with a "Share" button.
//!
//! A deployment whose `[verifier] wallet` is this page's `/present` URL sends the recovery
//! page's wallet link here: the request's query is exactly what `/present` reads.

use super::client::Wallet;
use super::{PresentationRequest, StoredCredential, WalletError, query_params};
use crate::face::Image;
use crate::html::{escape, page};
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine as _;
use serde_json::Value;
use std::sync::Arc;

const SERVICE: &str = "Regain dev wallet";

/// The wallet's pages.
pub fn router(wallet: Arc<Wallet>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/offer", get(offer))
        .route("/present", get(request).post(share))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(wallet)
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(page(SERVICE, title, body))).into_response()
}

fn failure(error: &WalletError) -> Response {
    let status = match error {
        WalletError::Remote(_) => StatusCode::BAD_GATEWAY,
        WalletError::Store { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    tracing::warn!(error = %error, "wallet request failed");
    html(
        status,
        "That did not work",
        &format!("<p role=\"alert\" id=\"error\">{}</p><p><a href=\"/\">Back</a></p>", escape(&error.to_string())),
    )
}

/// A credential's claims as table rows; the portrait as an image.
fn claims_table(credential: &StoredCredential) -> String {
    let mut rows = String::new();
    for (name, value) in credential.claims() {
        let shown = match (name.as_str(), &value) {
            ("portrait", Value::String(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .and_then(|pgm| Image::parse_pgm(&pgm).ok())
                .map(|image| {
                    let bmp = base64::engine::general_purpose::STANDARD.encode(image.to_bmp());
                    format!("<img class=\"face\" alt=\"portrait\" src=\"data:image/bmp;base64,{bmp}\">")
                })
                .unwrap_or_else(|| "(an image)".into()),
            (_, Value::String(text)) => escape(text),
            _ => escape(&value.to_string()),
        };
        rows.push_str(&format!("<tr><th>{}</th><td>{shown}</td></tr>", escape(&name)));
    }
    format!("<table>{rows}</table>")
}

async fn home(State(wallet): State<Arc<Wallet>>) -> Response {
    let store = match wallet.store() {
        Ok(store) => store,
        Err(e) => return failure(&e),
    };
    let mut body = String::from(
        "<p>This wallet holds identity credentials from the dev IDV and shares them with Regain's recovery pages.</p>",
    );
    if store.credentials.is_empty() {
        body.push_str("<p id=\"empty\">No credentials yet. Verify at the dev IDV and open its offer link here.</p>");
    }
    for credential in store.credentials.iter().rev() {
        body.push_str(&format!(
            "<section class=\"credential\" id=\"credential-{id}\"><h2>Credential {id}</h2>\
             <p>Type <code>{vct}</code> from <code>{issuer}</code></p>{claims}</section>",
            id = escape(&credential.id),
            vct = escape(&credential.vct),
            issuer = escape(&credential.issuer),
            claims = claims_table(credential),
        ));
    }
    html(StatusCode::OK, "Your credentials", &body)
}

async fn offer(State(wallet): State<Arc<Wallet>>, RawQuery(query): RawQuery) -> Response {
    match wallet.receive(query.as_deref().unwrap_or_default()).await {
        Ok(credential) => {
            tracing::info!(credential = %credential.id, "credential received");
            html(
                StatusCode::OK,
                "Credential received",
                &format!(
                    "<p id=\"received\">Added credential <strong>{}</strong> to the wallet.</p>{}<p><a href=\"/\">All credentials</a></p>",
                    escape(&credential.id),
                    claims_table(&credential)
                ),
            )
        }
        Err(e) => failure(&e),
    }
}

async fn request(State(wallet): State<Arc<Wallet>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let request = match PresentationRequest::parse(&query) {
        Ok(request) => request,
        Err(e) => return failure(&e),
    };
    let store = match wallet.store() {
        Ok(store) => store,
        Err(e) => return failure(&e),
    };
    let matching: Vec<&StoredCredential> =
        store.credentials.iter().rev().filter(|c| request.vcts.is_empty() || request.vcts.contains(&c.vct)).collect();
    let asked = if request.claims.is_empty() {
        "every claim of the credential".to_owned()
    } else {
        request.claims.iter().map(|c| format!("<code>{}</code>", escape(c))).collect::<Vec<_>>().join(", ")
    };
    let mut body = format!(
        "<p><strong id=\"verifier\">{}</strong> asks for an identity credential of type {} and these claims: \
         <span id=\"claims\">{asked}</span>.</p>",
        escape(request.verifier()),
        request.vcts.iter().map(|v| format!("<code>{}</code>", escape(v))).collect::<Vec<_>>().join(" or "),
    );
    if matching.is_empty() {
        body.push_str("<p role=\"alert\" id=\"no-credential\">This wallet holds no such credential.</p>");
        return html(StatusCode::OK, "Share your credential?", &body);
    }
    body.push_str("<form method=\"post\" action=\"/present\" id=\"share-form\">");
    body.push_str(&format!("<input type=\"hidden\" name=\"request\" value=\"{}\">", escape(&query)));
    for (i, credential) in matching.iter().enumerate() {
        let shared: Vec<String> = credential
            .claims()
            .into_iter()
            .filter(|(name, _)| request.claims.is_empty() || request.claims.contains(name))
            .map(|(name, value)| match value {
                Value::String(text) if name != "portrait" => format!("{}: {}", escape(&name), escape(&text)),
                _ => escape(&name),
            })
            .collect();
        body.push_str(&format!(
            "<p><label><input type=\"radio\" name=\"credential\" value=\"{id}\"{checked}> credential {id} \
             (shares {shared})</label></p>",
            id = escape(&credential.id),
            checked = if i == 0 { " checked" } else { "" },
            shared = shared.join("; "),
        ));
    }
    body.push_str("<button type=\"submit\" id=\"share\">Share</button></form>");
    html(StatusCode::OK, "Share your credential?", &body)
}

async fn share(State(wallet): State<Arc<Wallet>>, body: String) -> Response {
    let params = match query_params(&body) {
        Ok(params) => params,
        Err(e) => return failure(&e),
    };
    let field = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let Some(request) = field("request") else {
        return failure(&WalletError::Malformed("form: `request` is missing".into()));
    };
    match wallet.present(request, field("credential")).await {
        Ok(answer) => match answer.get("redirect_uri").and_then(Value::as_str) {
            // Same device: the verifier wants the browser back, with its response code.
            Some(back) if back.starts_with("https://") || back.starts_with("http://") => {
                tracing::info!("presentation shared; back to the verifier");
                Redirect::to(back).into_response()
            }
            _ => {
                tracing::info!("presentation shared");
                html(
                    StatusCode::OK,
                    "Shared",
                    "<p id=\"done\">Done. Go back to the other device: the recovery page continues there.</p>",
                )
            }
        },
        Err(e) => failure(&e),
    }
}
