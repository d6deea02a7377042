//! OpenID for Verifiable Credential Issuance 1.0, issuer side, with the pre-authorized code
//! flow: metadata, token, nonce and credential endpoints.

use super::{
    ApiError, CONFIGURATION_ID, CREDENTIAL_SECONDS, Grant, KID, NONCE_SECONDS, Service, TOKEN_SECONDS, digest, now,
    random, vct,
};
use crate::sdjwt::{IdentityCredential, SaltFor, issue_identity_with};
use crate::wallet::{PRE_AUTHORIZED_GRANT, PROOF_TYP};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use regain_core::jose::{Alg, Jwk, Jws, PublicKey};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Oldest proof accepted, in seconds; and the tolerated clock difference.
const PROOF_MAX_AGE: u64 = 300;
const SKEW: u64 = 60;

pub(super) async fn issuer_metadata(State(s): State<Service>) -> Response {
    let i = s.issuer();
    let claims: Vec<Value> = ["given_name", "family_name", "birthdate", "nationality", "portrait"]
        .iter()
        .map(|name| json!({ "path": [name] }))
        .collect();
    axum::Json(json!({
        "credential_issuer": i,
        "credential_endpoint": format!("{i}/credential"),
        "nonce_endpoint": format!("{i}/nonce"),
        "display": [{ "name": "Regain dev IDV (DEV ONLY)", "locale": "en" }],
        "credential_configurations_supported": {
            CONFIGURATION_ID: {
                "format": "dc+sd-jwt",
                "vct": vct(i),
                "scope": "identity",
                "cryptographic_binding_methods_supported": ["jwk"],
                "credential_signing_alg_values_supported": ["ES256"],
                "proof_types_supported": { "jwt": { "proof_signing_alg_values_supported": ["ES256"] } },
                "credential_metadata": {
                    "display": [{ "name": "Identity (DEV ONLY)", "locale": "en" }],
                    "claims": claims,
                },
            }
        },
    }))
    .into_response()
}

pub(super) async fn server_metadata(State(s): State<Service>) -> Response {
    let i = s.issuer();
    axum::Json(json!({
        "issuer": i,
        "token_endpoint": format!("{i}/token"),
        "authorization_endpoint": format!("{i}/authorize"),
        "jwks_uri": format!("{i}/.well-known/jwks.json"),
        "grant_types_supported": [PRE_AUTHORIZED_GRANT, "authorization_code"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "pre-authorized_grant_anonymous_access_supported": true,
    }))
    .into_response()
}

fn fresh_nonce(s: &Service) -> Result<String, ApiError> {
    let nonce = random(32)?;
    let mut memory = s.memory();
    let t = now();
    memory.prune(t);
    memory.nonces.insert(digest(&nonce), t + NONCE_SECONDS);
    Ok(nonce)
}

/// `POST /nonce`: a fresh `c_nonce` for a proof (OpenID4VCI 1.0 §7).
pub(super) async fn nonce(State(s): State<Service>) -> Result<Response, ApiError> {
    let nonce = fresh_nonce(&s)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(json!({ "c_nonce": nonce }))).into_response())
}

/// The token request of the pre-authorized code grant: the code is accepted once.
pub(super) fn token(s: &Service, params: &HashMap<String, String>) -> Result<Response, ApiError> {
    let code = params
        .get("pre-authorized_code")
        .ok_or_else(|| ApiError::bad("invalid_request", "`pre-authorized_code` is missing"))?;
    let grant = {
        let mut memory = s.memory();
        memory.prune(now());
        memory.pre_authorized.remove(&digest(code))
    };
    let grant =
        grant.ok_or_else(|| ApiError::bad("invalid_grant", "the pre-authorized code is unknown, used or expired"))?;
    let access_token = random(32)?;
    let c_nonce = fresh_nonce(s)?;
    s.memory()
        .access_tokens
        .insert(digest(&access_token), Grant { person: grant.person, expires: now() + TOKEN_SECONDS });
    tracing::info!("pre-authorized code exchanged");
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_SECONDS,
            "c_nonce": c_nonce,
            "c_nonce_expires_in": NONCE_SECONDS,
        })),
    )
        .into_response())
}

/// The proof JWT: `openid4vci-proof+jwt`, ES256, the holder's public key in `jwk`, `aud`
/// the issuer, a fresh `iat`, and a `c_nonce` the issuer handed out (consumed here).
/// Returns the holder's public JWK.
fn check_proof(s: &Service, proof: &str) -> Result<Value, ApiError> {
    let invalid = |why: &str| ApiError::bad("invalid_proof", why.to_owned());
    let jws = Jws::parse(proof, &[Alg::Es256]).map_err(|e| invalid(&e.to_string()))?;
    if jws.typ() != Some(PROOF_TYP) {
        return Err(invalid("the proof's `typ` must be `openid4vci-proof+jwt`"));
    }
    if jws.header.contains_key("kid") || jws.header.contains_key("x5c") {
        return Err(invalid("the proof must name its key by `jwk` only"));
    }
    let jwk = jws.header.get("jwk").and_then(Value::as_object).ok_or_else(|| invalid("the proof has no `jwk`"))?;
    let key = Jwk::from_json(jwk).map_err(|e| invalid(&e.to_string()))?;
    let PublicKey::P256 { .. } = key.key else { return Err(invalid("the holder key must be P-256")) };
    if !jws.verify_key(&key.key, &crate::keys::Verifier).map_err(|e| invalid(&e.to_string()))? {
        return Err(invalid("the proof's signature does not verify"));
    }
    let audience_ok = match jws.claims.get("aud") {
        Some(Value::String(aud)) => aud == s.issuer(),
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(s.issuer())),
        _ => false,
    };
    if !audience_ok {
        return Err(invalid("the proof's `aud` is not this issuer"));
    }
    let t = now();
    let iat = jws.claims.get("iat").and_then(Value::as_u64).ok_or_else(|| invalid("the proof has no `iat`"))?;
    if iat > t + SKEW || iat + PROOF_MAX_AGE < t {
        return Err(invalid("the proof's `iat` is not recent"));
    }
    let nonce = jws.claims.get("nonce").and_then(Value::as_str).unwrap_or_default();
    let known = {
        let mut memory = s.memory();
        memory.prune(t);
        memory.nonces.remove(&digest(nonce)).is_some()
    };
    if !known {
        return Err(ApiError::bad(
            "invalid_nonce",
            "the proof's `nonce` is not a fresh `c_nonce`; get one from the nonce endpoint",
        ));
    }
    let public = json!({ "kty": "EC", "crv": "P-256", "x": jwk.get("x"), "y": jwk.get("y") });
    Ok(public)
}

/// `POST /credential`: the SD-JWT VC of the verified person, bound to the proof's key,
/// with a status list entry. One credential per access token.
pub(super) async fn credential(
    State(s): State<Service>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "a valid access token is required");
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?
        .trim()
        .to_owned();
    let person = {
        let mut memory = s.memory();
        memory.prune(now());
        memory.access_tokens.get(&digest(&token)).map(|g| g.person.clone())
    };
    let person = person.ok_or_else(unauthorized)?;

    let request: Value = serde_json::from_str(&body)
        .map_err(|_| ApiError::bad("invalid_credential_request", "the request is not JSON"))?;
    let configuration = request.get("credential_configuration_id").and_then(Value::as_str);
    if configuration != Some(CONFIGURATION_ID) {
        return Err(ApiError::bad("unknown_credential_configuration", format!("only `{CONFIGURATION_ID}` is offered")));
    }
    let proofs: Vec<&str> = match (request.pointer("/proofs/jwt"), request.pointer("/proof/jwt")) {
        (Some(Value::Array(list)), None) => list.iter().filter_map(Value::as_str).collect(),
        (None, Some(Value::String(one))) => vec![one.as_str()],
        _ => Vec::new(),
    };
    let [proof] = proofs.as_slice() else {
        return Err(ApiError::bad("invalid_proof", "exactly one `jwt` proof is required"));
    };
    let holder = check_proof(&s, proof)?;
    // The token is spent only now: a wallet may retry a refused proof with a fresh nonce.
    if s.memory().access_tokens.remove(&digest(&token)).is_none() {
        return Err(unauthorized());
    }

    let entry = s.config.fixtures.person(&person).ok_or_else(|| ApiError::internal("the verified person is gone"))?;
    let t = now();
    let report = entry.document.check(&entry.portrait, t, &crate::documents::document_issuer());
    let document = report.result().map_err(|e| ApiError::internal(&format!("the document no longer passes: {e}")))?;
    let expiry_day_end = u64::try_from(document.expiry_date.days_since_epoch() + 1).unwrap_or(0) * 86_400;
    let portrait = base64::engine::general_purpose::STANDARD.encode(&entry.portrait);
    let issuer = s.issuer().to_owned();
    let status_uri = s.status_uri();
    let vct = vct(&issuer);
    let credential = IdentityCredential {
        issuer: &issuer,
        kid: KID,
        vct: &vct,
        iat: t,
        exp: (t + CREDENTIAL_SECONDS).min(expiry_day_end),
        status: Some((&status_uri, entry.status_index)),
        claims: vec![
            ("given_name", json!(document.given_name)),
            ("family_name", json!(document.family_name)),
            ("birthdate", json!(document.birth_date.iso())),
            ("nationality", json!(document.nationality)),
            ("portrait", json!(portrait)),
        ],
    };
    let mut salt_error = None;
    let mut salt = |_: SaltFor<'_>| match random(16) {
        Ok(salt) => salt,
        Err(e) => {
            salt_error = Some(e);
            String::new()
        }
    };
    let issued = issue_identity_with(&credential, &s.key, &holder, &mut salt);
    if let Some(e) = salt_error {
        return Err(e);
    }
    tracing::info!(status_index = entry.status_index, "credential issued");
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "credentials": [{ "credential": issued.sd_jwt(&issued.all()) }] })),
    )
        .into_response())
}
