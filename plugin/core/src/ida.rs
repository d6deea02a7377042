//! OpenID Connect for Identity Assurance: the ID token an OIDC4IDA provider returns after
//! checking the user's document and face, verified per OpenID Connect Core §3.1.3.7 with the
//! `verified_claims` of OpenID Identity Assurance 1.0.
//!
//! Only the claims inside the chosen `verified_claims` element are returned: a name outside
//! it is unverified and never reaches account matching. Failures use the reason codes of
//! [`Rejection`], shared with SD-JWT VC verification.

use crate::jose::{Alg, Jws};
use crate::sdjwt::{self, Rejection, Verification, Window};
use serde_json::{Map, Value};

/// Largest ID token accepted, in bytes.
pub const MAX_ID_TOKEN_BYTES: usize = 64 * 1024;

/// The `check_method` values of OIDC4IDA evidence that compare the applicant's face with the
/// document: biometric or by a person, remote or in person.
pub const FACE_METHODS: [&str; 4] = ["bvr", "bvp", "pvr", "pvp"];

/// What the verifier demands of an ID token.
#[derive(Debug, Clone)]
pub struct IdTokenExpectations<'a> {
    /// The provider's issuer identifier; `iss` must equal it.
    pub issuer: &'a str,
    /// Regain's client identifier at the provider; `aud` must contain it.
    pub client_id: &'a str,
    /// The nonce of the authorization request.
    pub nonce: &'a str,
    /// Accepted signature algorithms.
    pub algs: &'a [Alg],
    /// Seconds since the Unix epoch, from the injected clock.
    pub now: u64,
    /// Tolerated clock difference, in seconds.
    pub skew: u64,
    /// Oldest accepted `iat`, in seconds before `now`.
    pub max_age: u64,
    /// Accepted `trust_framework` values; empty accepts any.
    pub trust_frameworks: &'a [String],
    /// `check_method` values that prove a face comparison; one must appear in the evidence.
    pub face_methods: &'a [String],
}

/// A verified identity assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedIdentity {
    /// The provider.
    pub issuer: String,
    /// The trust framework the provider verified under.
    pub trust_framework: String,
    /// The verified claims (`given_name`, `family_name`, `birthdate`...), nothing else.
    pub claims: Map<String, Value>,
    /// The evidence `check_method` that proves the face comparison.
    pub face_method: String,
}

/// Verifies an ID token carrying `verified_claims`.
pub fn verify_id_token<V: Verification + ?Sized>(
    token: &str,
    expect: &IdTokenExpectations<'_>,
    env: &mut V,
) -> Result<VerifiedIdentity, Rejection> {
    if token.len() > MAX_ID_TOKEN_BYTES {
        return Err(Rejection::TooLarge);
    }
    let jws = Jws::parse(token.trim(), expect.algs).map_err(sdjwt::jws_rejection)?;
    // OIDC Core does not define a `typ` for ID tokens; RFC 7519's `JWT` is the only one
    // accepted, so that no other kind of signed token from the same issuer passes as one.
    if jws.typ().is_some_and(|typ| !typ.eq_ignore_ascii_case("JWT")) {
        return Err(Rejection::TypInvalid);
    }
    let issuer = sdjwt::string_claim(&jws.claims, "iss")?;
    if issuer != expect.issuer {
        return Err(Rejection::IssuerUntrusted);
    }
    let keys = sdjwt::issuer_keys(env, issuer)?;
    jws.verify_with(&keys, &*env).map_err(sdjwt::jws_rejection)?;

    check_audience(&jws.claims, expect.client_id)?;
    let window = Window { now: expect.now, skew: expect.skew, require_expiry: true };
    sdjwt::check_validity(&jws.claims, &window)?;
    let iat = sdjwt::numeric_date(&jws.claims, "iat")?.ok_or(Rejection::MissingClaim("iat"))?;
    if iat.saturating_add(expect.max_age) < expect.now {
        return Err(Rejection::IssuedTooLongAgo);
    }
    let nonce = jws.claims.get("nonce").and_then(Value::as_str).ok_or(Rejection::NonceMismatch)?;
    if !crate::secret::constant_time_eq(nonce.as_bytes(), expect.nonce.as_bytes()) {
        return Err(Rejection::NonceMismatch);
    }

    let (trust_framework, verification, claims) = choose_verified_claims(&jws.claims, expect.trust_frameworks)?;
    let face_method = face_evidence(verification, expect.face_methods).ok_or(Rejection::FaceEvidenceMissing)?;
    Ok(VerifiedIdentity { issuer: issuer.to_owned(), trust_framework, claims, face_method })
}

/// OIDC Core §3.1.3.7 steps 3-5: `aud` contains the client; with several audiences `azp`
/// must be present and be the client.
fn check_audience(claims: &Map<String, Value>, client_id: &str) -> Result<(), Rejection> {
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => return Err(Rejection::MissingClaim("aud")),
    };
    if !audiences.contains(&client_id) {
        return Err(Rejection::AudienceMismatch);
    }
    let azp = claims.get("azp").and_then(Value::as_str);
    if (audiences.len() > 1 && azp.is_none()) || azp.is_some_and(|azp| azp != client_id) {
        return Err(Rejection::AudienceMismatch);
    }
    Ok(())
}

/// One `verified_claims` element: its trust framework, its `verification` and its claims.
type Chosen<'c> = (String, &'c Map<String, Value>, Map<String, Value>);

/// The first `verified_claims` element under an accepted trust framework with a `claims`
/// object.
fn choose_verified_claims<'c>(claims: &'c Map<String, Value>, accepted: &[String]) -> Result<Chosen<'c>, Rejection> {
    let elements: Vec<&Value> = match claims.get("verified_claims") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => return Err(Rejection::VerifiedClaimsMissing),
    };
    let mut saw_any = false;
    for element in elements {
        let Some(verification) = element.get("verification").and_then(Value::as_object) else { continue };
        let Some(framework) = verification.get("trust_framework").and_then(Value::as_str) else { continue };
        let Some(verified) = element.get("claims").and_then(Value::as_object) else { continue };
        saw_any = true;
        if accepted.is_empty() || accepted.iter().any(|a| a == framework) {
            return Ok((framework.to_owned(), verification, verified.clone()));
        }
    }
    Err(if saw_any { Rejection::TrustFrameworkNotAccepted } else { Rejection::VerifiedClaimsMissing })
}

/// The first `check_details[].check_method` of the evidence that is a face comparison.
fn face_evidence(verification: &Map<String, Value>, methods: &[String]) -> Option<String> {
    let evidence = verification.get("evidence")?.as_array()?;
    evidence
        .iter()
        .filter_map(|e| e.get("check_details").and_then(Value::as_array))
        .flatten()
        .filter_map(|check| check.get("check_method").and_then(Value::as_str))
        .find(|method| methods.iter().any(|m| m == method))
        .map(str::to_owned)
}

/// The OIDC `claims` request parameter asking for `verified_claims` with the given claims
/// and the evidence's check details.
pub fn claims_request(claims: &[&str], trust_frameworks: &[String]) -> Value {
    let wanted: Map<String, Value> = claims.iter().map(|c| ((*c).to_owned(), Value::Null)).collect();
    let framework = match trust_frameworks {
        [] => Value::Null,
        list => serde_json::json!({ "values": list }),
    };
    serde_json::json!({
        "id_token": {
            "verified_claims": {
                "verification": {
                    "trust_framework": framework,
                    "evidence": [{ "type": null, "check_details": null }],
                },
                "claims": wanted,
            }
        }
    })
}
