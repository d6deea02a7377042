//! Verification of SD-JWT VC presentations (`dc+sd-jwt`): RFC 9901 §7.1 and §7.3, the
//! SD-JWT VC draft, and the Token Status List for revocation.
//!
//! Every failure is a [`Rejection`] with a stable reason code ([`Rejection::code`]); the
//! codes are listed in the README and never change meaning.

use crate::jose::{self, Alg, Jwk, Jws, JwsError, SignatureVerifier, b64url_encode};
use crate::status::{ListError, TokenStatus, TokenStatusList};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

/// Largest presentation accepted, in bytes (room for a portrait claim).
pub const MAX_PRESENTATION_BYTES: usize = 256 * 1024;
/// Most disclosures accepted in one presentation.
pub const MAX_DISCLOSURES: usize = 128;
/// Largest status list token accepted, in bytes.
pub const MAX_STATUS_LIST_TOKEN_BYTES: usize = 4 << 20;
/// Deepest nesting of disclosed structures.
const MAX_UNPACK_DEPTH: usize = 64;

/// Claims that SD-JWT VC forbids to disclose selectively: they must be in the signed payload.
const NEVER_DISCLOSED: [&str; 8] = ["iss", "nbf", "exp", "cnf", "vct", "vct#integrity", "status", "credentialStatus"];

/// Why a presentation was rejected. [`Rejection::code`] gives the stable reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The presentation is larger than [`MAX_PRESENTATION_BYTES`] or has too many disclosures.
    #[error("presentation exceeds the size limits")]
    TooLarge,
    /// The presentation or its issuer-signed JWT is not well formed.
    #[error("malformed presentation: {0}")]
    Malformed(String),
    /// The issuer-signed JWT's `typ` is not `dc+sd-jwt`.
    #[error("issuer-signed JWT has `typ` other than `dc+sd-jwt`")]
    TypInvalid,
    /// The issuer-signed JWT's algorithm is not allowed.
    #[error("issuer-signed JWT uses algorithm `{0}`, which is not allowed")]
    AlgNotAllowed(String),
    /// A JWS header lists a critical extension.
    #[error("JWS header has unsupported critical extension `{0}`")]
    CritUnsupported(String),
    /// A claim the verifier requires is missing or has the wrong type.
    #[error("required claim `{0}` is missing or malformed")]
    MissingClaim(&'static str),
    /// `iss` is not a trusted issuer.
    #[error("issuer is not trusted")]
    IssuerUntrusted,
    /// The trusted issuer's keys could not be obtained or read.
    #[error("issuer keys are unavailable: {0}")]
    IssuerKeysUnavailable(String),
    /// None of the issuer's keys fits the JWT (`kid` and key type).
    #[error("no key of the issuer fits the credential")]
    IssuerKeyNotFound,
    /// The issuer's signature does not verify.
    #[error("issuer signature is invalid")]
    SignatureInvalid,
    /// `vct` is not an accepted credential type.
    #[error("credential type is not accepted")]
    VctNotAccepted,
    /// `nbf` is in the future.
    #[error("credential is not valid yet")]
    NotYetValid,
    /// `exp` has passed.
    #[error("credential has expired")]
    Expired,
    /// `iat` is in the future.
    #[error("credential was issued in the future")]
    IssuedInFuture,
    /// `_sd_alg` names a hash other than `sha-256`.
    #[error("`_sd_alg` is not supported")]
    SdAlgUnsupported,
    /// A disclosure is not base64url JSON `[salt, name, value]` or `[salt, value]`, or is used
    /// where its shape does not fit.
    #[error("malformed disclosure: {0}")]
    DisclosureMalformed(String),
    /// The same disclosure appears twice.
    #[error("a disclosure appears twice")]
    DisclosureDuplicate,
    /// The same digest appears twice in the payload.
    #[error("a digest appears twice")]
    DigestDuplicate,
    /// A disclosure is not referenced by any digest.
    #[error("a disclosure is not referenced by the credential")]
    DisclosureUnreferenced,
    /// A disclosed name already exists at its level.
    #[error("a disclosed claim name already exists")]
    DisclosureNameConflict,
    /// A claim that must never be disclosed selectively was.
    #[error("claim `{0}` must not be selectively disclosed")]
    DisclosureReservedClaim(String),
    /// Holder binding is required and the presentation has no KB-JWT.
    #[error("holder binding is required and no key binding JWT was presented")]
    HolderBindingMissing,
    /// `cnf` is missing, not a `jwk`, or the key is unusable.
    #[error("confirmation key is missing or unusable")]
    CnfInvalid,
    /// The KB-JWT is not a well-formed compact JWS.
    #[error("malformed key binding JWT: {0}")]
    KbMalformed(String),
    /// The KB-JWT's `typ` is not `kb+jwt`.
    #[error("key binding JWT has `typ` other than `kb+jwt`")]
    KbTypInvalid,
    /// The KB-JWT's algorithm is not allowed or does not fit the holder key.
    #[error("key binding JWT uses algorithm `{0}`, which is not allowed")]
    KbAlgNotAllowed(String),
    /// The KB-JWT's signature does not verify with the `cnf` key.
    #[error("key binding signature is invalid")]
    KbSignatureInvalid,
    /// The KB-JWT's `iat` is outside the accepted window.
    #[error("key binding JWT was not issued within the accepted window")]
    KbIatOutOfWindow,
    /// The KB-JWT's `nonce` is not this transaction's.
    #[error("key binding nonce does not match")]
    KbNonceMismatch,
    /// The KB-JWT's `aud` is not this verifier.
    #[error("key binding audience does not match")]
    KbAudienceMismatch,
    /// The KB-JWT's `sd_hash` does not cover the presented SD-JWT.
    #[error("key binding `sd_hash` does not match the presentation")]
    KbSdHashMismatch,
    /// Revocation checking is required and the credential has no `status`.
    #[error("credential has no status and status is required")]
    StatusMissing,
    /// The credential's `status` uses a mechanism other than `status_list`.
    #[error("credential status mechanism is not supported")]
    StatusUnsupported,
    /// The status list token could not be obtained.
    #[error("status list is unavailable: {0}")]
    StatusUnavailable(String),
    /// The status list token is not valid.
    #[error("status list token is invalid: {0}")]
    StatusListInvalid(String),
    /// The status list token has expired.
    #[error("status list token has expired")]
    StatusListExpired,
    /// The credential's index is past the end of the list.
    #[error("status index is out of range")]
    StatusIndexOutOfRange,
    /// The credential is revoked.
    #[error("credential is revoked")]
    Revoked,
    /// The credential is suspended.
    #[error("credential is suspended")]
    Suspended,
    /// The list holds an application-specific value for the credential.
    #[error("credential status has the unrecognised value {0}")]
    StatusUnknownValue(u8),
    /// The signature verifier could not run.
    #[error("signature verifier failed: {0}")]
    VerifierFailed(String),
    /// An ID token's `aud` does not contain this client, or `azp` names another.
    #[error("ID token audience does not match")]
    AudienceMismatch,
    /// An ID token's `nonce` is missing or not this flow's.
    #[error("ID token nonce does not match")]
    NonceMismatch,
    /// An ID token's `iat` is older than the accepted age.
    #[error("ID token was issued too long ago")]
    IssuedTooLongAgo,
    /// An ID token has no usable `verified_claims` (with `verification.trust_framework` and
    /// `claims`).
    #[error("ID token has no verified claims")]
    VerifiedClaimsMissing,
    /// No `verified_claims` element is under an accepted trust framework.
    #[error("trust framework is not accepted")]
    TrustFrameworkNotAccepted,
    /// The evidence does not state a face comparison by an accepted `check_method`.
    #[error("evidence does not include a face comparison")]
    FaceEvidenceMissing,
}

impl Rejection {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge => "too-large",
            Self::Malformed(_) => "malformed",
            Self::TypInvalid => "typ-invalid",
            Self::AlgNotAllowed(_) => "alg-not-allowed",
            Self::CritUnsupported(_) => "crit-unsupported",
            Self::MissingClaim(_) => "missing-claim",
            Self::IssuerUntrusted => "issuer-untrusted",
            Self::IssuerKeysUnavailable(_) => "issuer-keys-unavailable",
            Self::IssuerKeyNotFound => "issuer-key-not-found",
            Self::SignatureInvalid => "signature-invalid",
            Self::VctNotAccepted => "vct-not-accepted",
            Self::NotYetValid => "not-yet-valid",
            Self::Expired => "expired",
            Self::IssuedInFuture => "issued-in-future",
            Self::SdAlgUnsupported => "sd-alg-unsupported",
            Self::DisclosureMalformed(_) => "disclosure-malformed",
            Self::DisclosureDuplicate => "disclosure-duplicate",
            Self::DigestDuplicate => "digest-duplicate",
            Self::DisclosureUnreferenced => "disclosure-unreferenced",
            Self::DisclosureNameConflict => "disclosure-name-conflict",
            Self::DisclosureReservedClaim(_) => "disclosure-reserved-claim",
            Self::HolderBindingMissing => "holder-binding-missing",
            Self::CnfInvalid => "cnf-invalid",
            Self::KbMalformed(_) => "kb-malformed",
            Self::KbTypInvalid => "kb-typ-invalid",
            Self::KbAlgNotAllowed(_) => "kb-alg-not-allowed",
            Self::KbSignatureInvalid => "kb-signature-invalid",
            Self::KbIatOutOfWindow => "kb-iat-out-of-window",
            Self::KbNonceMismatch => "kb-nonce-mismatch",
            Self::KbAudienceMismatch => "kb-aud-mismatch",
            Self::KbSdHashMismatch => "kb-sd-hash-mismatch",
            Self::StatusMissing => "status-missing",
            Self::StatusUnsupported => "status-unsupported",
            Self::StatusUnavailable(_) => "status-unavailable",
            Self::StatusListInvalid(_) => "status-list-invalid",
            Self::StatusListExpired => "status-list-expired",
            Self::StatusIndexOutOfRange => "status-index-out-of-range",
            Self::Revoked => "revoked",
            Self::Suspended => "suspended",
            Self::StatusUnknownValue(_) => "status-unknown-value",
            Self::VerifierFailed(_) => "verifier-failed",
            Self::AudienceMismatch => "aud-mismatch",
            Self::NonceMismatch => "nonce-mismatch",
            Self::IssuedTooLongAgo => "issued-too-long-ago",
            Self::VerifiedClaimsMissing => "verified-claims-missing",
            Self::TrustFrameworkNotAccepted => "trust-framework-not-accepted",
            Self::FaceEvidenceMissing => "face-evidence-missing",
        }
    }
}

/// Why the trust source could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustFailure {
    /// The issuer is not configured as trusted.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The material could not be obtained; the text is for the log.
    #[error("{0}")]
    Unavailable(String),
}

/// Trust material, fetched and cached by the host.
pub trait TrustSource {
    /// The JWK Set document of a trusted issuer.
    fn issuer_keys(&mut self, issuer: &str) -> Result<String, TrustFailure>;
    /// The status list token published at `uri`.
    fn status_list_token(&mut self, uri: &str) -> Result<String, TrustFailure>;
}

/// Trust material and a signature verifier together, as the verification needs both.
pub trait Verification: TrustSource + SignatureVerifier {}

impl<T: TrustSource + SignatureVerifier + ?Sized> Verification for T {}

/// A trust source and a verifier given separately.
pub struct Parts<'a> {
    /// Trust material.
    pub trust: &'a mut dyn TrustSource,
    /// The signature verifier.
    pub verifier: &'a dyn SignatureVerifier,
}

impl TrustSource for Parts<'_> {
    fn issuer_keys(&mut self, issuer: &str) -> Result<String, TrustFailure> {
        self.trust.issuer_keys(issuer)
    }

    fn status_list_token(&mut self, uri: &str) -> Result<String, TrustFailure> {
        self.trust.status_list_token(uri)
    }
}

impl SignatureVerifier for Parts<'_> {
    fn verify(&self, alg: Alg, key: &jose::PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, String> {
        self.verifier.verify(alg, key, message, signature)
    }
}

/// What the verifier demands of a presentation.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The nonce of this transaction (OpenID4VP request `nonce`).
    pub nonce: &'a str,
    /// This verifier's client identifier, with its prefix.
    pub audience: &'a str,
    /// Accepted `vct` values.
    pub vcts: &'a [String],
    /// Accepted signature algorithms, for the credential and the KB-JWT.
    pub algs: &'a [Alg],
    /// Seconds since the Unix epoch, from the injected clock.
    pub now: u64,
    /// Tolerated clock difference, in seconds.
    pub skew: u64,
    /// Oldest accepted KB-JWT, in seconds before `now`.
    pub kb_max_age: u64,
    /// Whether a KB-JWT is required (by policy, never by its presence).
    pub holder_binding: bool,
    /// Whether a credential without `status` is refused.
    pub require_status: bool,
    /// Whether a credential without `exp` is refused.
    pub require_expiry: bool,
}

/// How the credential's status was established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusCheck {
    /// The credential carries no status and none was required.
    NotListed,
    /// The list says valid.
    Valid {
        /// The status list URI.
        uri: String,
        /// The index in the list.
        index: u64,
    },
}

/// A verified credential.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCredential {
    /// The trusted issuer.
    pub issuer: String,
    /// The credential type.
    pub vct: String,
    /// Every claim of the payload with the presented disclosures applied and the SD-JWT
    /// machinery (`_sd`, `_sd_alg`) removed.
    pub claims: Map<String, Value>,
    /// Whether a valid KB-JWT bound the presentation to this transaction.
    pub holder_bound: bool,
    /// The revocation check.
    pub status: StatusCheck,
}

pub(crate) fn jws_rejection(e: JwsError) -> Rejection {
    match e {
        JwsError::Malformed(m) => Rejection::Malformed(m),
        JwsError::AlgNotAllowed(a) => Rejection::AlgNotAllowed(a),
        JwsError::UnknownCrit(c) => Rejection::CritUnsupported(c),
        JwsError::NoKey => Rejection::IssuerKeyNotFound,
        JwsError::BadSignature => Rejection::SignatureInvalid,
        JwsError::Verifier(v) => Rejection::VerifierFailed(v),
    }
}

/// Reads a NumericDate claim (RFC 7519 §2): a non-negative number of seconds.
pub(crate) fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or(Rejection::MissingClaim(name)),
    }
}

pub(crate) fn string_claim<'c>(claims: &'c Map<String, Value>, name: &'static str) -> Result<&'c str, Rejection> {
    claims.get(name).and_then(Value::as_str).ok_or(Rejection::MissingClaim(name))
}

/// A verified SD-JWT of any profile (RFC 9901 §7.1 and §7.3).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedSdJwt {
    /// The trusted issuer.
    pub issuer: String,
    /// The payload with the presented disclosures applied and `_sd`/`_sd_alg` removed.
    pub claims: Map<String, Value>,
    /// Whether a valid KB-JWT bound the presentation to this transaction.
    pub holder_bound: bool,
}

/// Verifies an SD-JWT VC presentation `<jwt>~<disclosure>~...~[<kb-jwt>]`: the SD-JWT rules,
/// then `typ` `dc+sd-jwt`, an accepted `vct`, and the credential's status.
pub fn verify(
    presentation: &str,
    expect: &Expectations<'_>,
    trust: &mut dyn TrustSource,
    verifier: &dyn SignatureVerifier,
) -> Result<VerifiedCredential, Rejection> {
    verify_with(presentation, expect, &mut Parts { trust, verifier })
}

/// [`verify`], with trust material and verifier from one value.
pub fn verify_with<V: Verification + ?Sized>(
    presentation: &str,
    expect: &Expectations<'_>,
    env: &mut V,
) -> Result<VerifiedCredential, Rejection> {
    let (sd, keys) = verify_inner(presentation, "dc+sd-jwt", expect, env)?;
    let status = check_status(&sd.claims, &keys, expect, env)?;
    let vct = string_claim(&sd.claims, "vct")?.to_owned();
    Ok(VerifiedCredential { issuer: sd.issuer, vct, claims: sd.claims, holder_bound: sd.holder_bound, status })
}

/// Verifies an SD-JWT of another profile, whose issuer-signed JWT has header `typ`; `vct`
/// and status are not looked at.
pub fn verify_sd_jwt(
    presentation: &str,
    typ: &str,
    expect: &Expectations<'_>,
    trust: &mut dyn TrustSource,
    verifier: &dyn SignatureVerifier,
) -> Result<VerifiedSdJwt, Rejection> {
    verify_inner(presentation, typ, expect, &mut Parts { trust, verifier }).map(|(sd, _)| sd)
}

fn verify_inner<V: Verification + ?Sized>(
    presentation: &str,
    typ: &str,
    expect: &Expectations<'_>,
    env: &mut V,
) -> Result<(VerifiedSdJwt, Vec<Jwk>), Rejection> {
    if presentation.len() > MAX_PRESENTATION_BYTES {
        return Err(Rejection::TooLarge);
    }
    let presentation = presentation.trim();
    let last_tilde = presentation.rfind('~').ok_or_else(|| Rejection::Malformed("no `~` separator".into()))?;
    let (sd_jwt, kb_jwt) = presentation.split_at(last_tilde + 1);
    let mut parts: Vec<&str> = sd_jwt.split('~').collect();
    parts.pop(); // the empty string after the final `~`
    let (issuer_jwt, disclosures) =
        parts.split_first().ok_or_else(|| Rejection::Malformed("no issuer-signed JWT".into()))?;
    if disclosures.len() > MAX_DISCLOSURES {
        return Err(Rejection::TooLarge);
    }

    // Issuer-signed JWT.
    let jws = Jws::parse(issuer_jwt, expect.algs).map_err(jws_rejection)?;
    if jws.typ() != Some(typ) {
        return Err(Rejection::TypInvalid);
    }
    let issuer = string_claim(&jws.claims, "iss")?.to_owned();
    let keys = issuer_keys(env, &issuer)?;
    jws.verify_with(&keys, &*env).map_err(jws_rejection)?;

    if typ == "dc+sd-jwt" {
        let vct = string_claim(&jws.claims, "vct")?;
        if !expect.vcts.iter().any(|accepted| accepted == vct) {
            return Err(Rejection::VctNotAccepted);
        }
    }
    check_validity(&jws.claims, &Window { now: expect.now, skew: expect.skew, require_expiry: expect.require_expiry })?;
    match jws.claims.get("_sd_alg") {
        None => {}
        Some(Value::String(alg)) if alg == "sha-256" => {}
        Some(_) => return Err(Rejection::SdAlgUnsupported),
    }

    // Disclosures (RFC 9901 §7.1 steps 3-5).
    let claims = unpack(jws.claims.clone(), disclosures)?;

    // Holder binding (RFC 9901 §7.3), required by policy, never by presence.
    let holder_bound = if kb_jwt.is_empty() {
        if expect.holder_binding {
            return Err(Rejection::HolderBindingMissing);
        }
        false
    } else {
        verify_key_binding(kb_jwt, sd_jwt, &jws.claims, expect, &*env)?;
        true
    };
    Ok((VerifiedSdJwt { issuer, claims, holder_bound }, keys))
}

pub(crate) fn issuer_keys<V: Verification + ?Sized>(trust: &mut V, issuer: &str) -> Result<Vec<Jwk>, Rejection> {
    let document = trust.issuer_keys(issuer).map_err(|e| match e {
        TrustFailure::UnknownIssuer => Rejection::IssuerUntrusted,
        TrustFailure::Unavailable(text) => Rejection::IssuerKeysUnavailable(text),
    })?;
    jose::parse_jwks(document.as_bytes()).map_err(|e| Rejection::IssuerKeysUnavailable(e.to_string()))
}

/// The time rules of a signed token.
pub(crate) struct Window {
    pub(crate) now: u64,
    pub(crate) skew: u64,
    pub(crate) require_expiry: bool,
}

pub(crate) fn check_validity(claims: &Map<String, Value>, expect: &Window) -> Result<(), Rejection> {
    let now = expect.now;
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && nbf > now.saturating_add(expect.skew)
    {
        return Err(Rejection::NotYetValid);
    }
    match numeric_date(claims, "exp")? {
        Some(exp) if exp.saturating_add(expect.skew) <= now => return Err(Rejection::Expired),
        None if expect.require_expiry => return Err(Rejection::MissingClaim("exp")),
        _ => {}
    }
    if let Some(iat) = numeric_date(claims, "iat")?
        && iat > now.saturating_add(expect.skew)
    {
        return Err(Rejection::IssuedInFuture);
    }
    Ok(())
}

struct Disclosure {
    name: Option<String>,
    value: Value,
}

fn disclosure_digest(encoded: &str) -> String {
    b64url_encode(&Sha256::digest(encoded.as_bytes()))
}

fn parse_disclosure(encoded: &str) -> Result<Disclosure, Rejection> {
    let malformed = |why: &str| Rejection::DisclosureMalformed(why.to_owned());
    let bytes = jose::b64url_decode(encoded).ok_or_else(|| malformed("not base64url"))?;
    let Value::Array(mut items) = crate::json::parse(&bytes).map_err(|e| malformed(&e.to_string()))? else {
        return Err(malformed("not a JSON array"));
    };
    if !matches!(items.first(), Some(Value::String(_))) {
        return Err(malformed("salt is not a string"));
    }
    match items.len() {
        2 => Ok(Disclosure { name: None, value: items.pop().unwrap_or(Value::Null) }),
        3 => {
            let value = items.pop().unwrap_or(Value::Null);
            match items.pop() {
                Some(Value::String(name)) => Ok(Disclosure { name: Some(name), value }),
                _ => Err(malformed("claim name is not a string")),
            }
        }
        _ => Err(malformed("not 2 or 3 elements")),
    }
}

struct Unpacker {
    disclosures: Vec<Option<Disclosure>>,
    by_digest: HashMap<String, usize>,
    seen: HashSet<String>,
}

fn unpack(payload: Map<String, Value>, encoded: &[&str]) -> Result<Map<String, Value>, Rejection> {
    let mut unpacker =
        Unpacker { disclosures: Vec::with_capacity(encoded.len()), by_digest: HashMap::new(), seen: HashSet::new() };
    for (i, e) in encoded.iter().enumerate() {
        if e.is_empty() {
            return Err(Rejection::Malformed("empty disclosure".into()));
        }
        if unpacker.by_digest.insert(disclosure_digest(e), i).is_some() {
            return Err(Rejection::DisclosureDuplicate);
        }
        unpacker.disclosures.push(Some(parse_disclosure(e)?));
    }
    let mut claims = unpacker.object(payload, 0)?;
    if unpacker.disclosures.iter().any(Option::is_some) {
        return Err(Rejection::DisclosureUnreferenced);
    }
    claims.remove("_sd_alg");
    Ok(claims)
}

impl Unpacker {
    /// Takes the disclosure for `digest`, if one was presented; every digest counts once.
    fn take(&mut self, digest: &Value) -> Result<Option<Disclosure>, Rejection> {
        let digest = digest.as_str().ok_or_else(|| Rejection::Malformed("digest is not a string".into()))?;
        if !self.seen.insert(digest.to_owned()) {
            return Err(Rejection::DigestDuplicate);
        }
        Ok(match self.by_digest.get(digest) {
            Some(&i) => self.disclosures.get_mut(i).and_then(Option::take),
            None => None,
        })
    }

    fn value(&mut self, value: Value, depth: usize) -> Result<Value, Rejection> {
        if depth > MAX_UNPACK_DEPTH {
            return Err(Rejection::Malformed("disclosed structure nests too deep".into()));
        }
        Ok(match value {
            Value::Object(map) => Value::Object(self.object(map, depth + 1)?),
            Value::Array(items) => Value::Array(self.array(items, depth + 1)?),
            other => other,
        })
    }

    fn object(&mut self, mut map: Map<String, Value>, depth: usize) -> Result<Map<String, Value>, Rejection> {
        let digests = match map.remove("_sd") {
            None => Vec::new(),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(Rejection::Malformed("`_sd` is not an array".into())),
        };
        let mut out = Map::new();
        for (name, value) in map {
            let value = self.value(value, depth)?;
            out.insert(name, value);
        }
        for digest in digests {
            let Some(disclosure) = self.take(&digest)? else { continue };
            let Some(name) = disclosure.name else {
                return Err(Rejection::DisclosureMalformed("array element disclosed as an object property".into()));
            };
            if name == "_sd" || name == "..." {
                return Err(Rejection::DisclosureMalformed(format!("reserved claim name `{name}`")));
            }
            if depth == 0 && NEVER_DISCLOSED.contains(&name.as_str()) {
                return Err(Rejection::DisclosureReservedClaim(name));
            }
            if out.contains_key(&name) {
                return Err(Rejection::DisclosureNameConflict);
            }
            let value = self.value(disclosure.value, depth)?;
            out.insert(name, value);
        }
        Ok(out)
    }

    fn array(&mut self, items: Vec<Value>, depth: usize) -> Result<Vec<Value>, Rejection> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let digest = match &item {
                Value::Object(map) if map.len() == 1 => map.get("..."),
                _ => None,
            };
            match digest {
                Some(digest) => {
                    if let Some(disclosure) = self.take(digest)? {
                        if disclosure.name.is_some() {
                            return Err(Rejection::DisclosureMalformed(
                                "object property disclosed as an array element".into(),
                            ));
                        }
                        out.push(self.value(disclosure.value, depth)?);
                    }
                }
                None => out.push(self.value(item, depth)?),
            }
        }
        Ok(out)
    }
}

fn verify_key_binding<V: SignatureVerifier + ?Sized>(
    kb_jwt: &str,
    sd_jwt: &str,
    claims: &Map<String, Value>,
    expect: &Expectations<'_>,
    verifier: &V,
) -> Result<(), Rejection> {
    let holder = claims
        .get("cnf")
        .and_then(|cnf| cnf.get("jwk"))
        .and_then(Value::as_object)
        .and_then(|jwk| Jwk::from_json(jwk).ok())
        .ok_or(Rejection::CnfInvalid)?;
    let kb = Jws::parse(kb_jwt, expect.algs).map_err(|e| match e {
        JwsError::AlgNotAllowed(a) => Rejection::KbAlgNotAllowed(a),
        JwsError::UnknownCrit(c) => Rejection::CritUnsupported(c),
        other => Rejection::KbMalformed(other.to_string()),
    })?;
    if kb.typ() != Some("kb+jwt") {
        return Err(Rejection::KbTypInvalid);
    }
    if !holder.key.fits(kb.alg) || holder.alg.is_some_and(|a| a != kb.alg) {
        return Err(Rejection::KbAlgNotAllowed(kb.alg.as_jose().to_owned()));
    }
    match kb.verify_key(&holder.key, verifier) {
        Ok(true) => {}
        Ok(false) => return Err(Rejection::KbSignatureInvalid),
        Err(JwsError::Verifier(v)) => return Err(Rejection::VerifierFailed(v)),
        Err(_) => return Err(Rejection::KbSignatureInvalid),
    }
    let iat = numeric_date(&kb.claims, "iat").map_err(|_| Rejection::KbMalformed("`iat` is malformed".into()))?;
    let iat = iat.ok_or_else(|| Rejection::KbMalformed("`iat` is missing".into()))?;
    let oldest = expect.now.saturating_sub(expect.kb_max_age.saturating_add(expect.skew));
    if iat < oldest || iat > expect.now.saturating_add(expect.skew) {
        return Err(Rejection::KbIatOutOfWindow);
    }
    match kb.claims.get("nonce").and_then(Value::as_str) {
        Some(nonce) if crate::secret::constant_time_eq(nonce.as_bytes(), expect.nonce.as_bytes()) => {}
        Some(_) => return Err(Rejection::KbNonceMismatch),
        None => return Err(Rejection::KbMalformed("`nonce` is missing".into())),
    }
    match kb.claims.get("aud") {
        Some(Value::String(aud)) if aud == expect.audience => {}
        Some(Value::String(_)) => return Err(Rejection::KbAudienceMismatch),
        _ => return Err(Rejection::KbMalformed("`aud` is not a single string".into())),
    }
    let expected_hash = b64url_encode(&Sha256::digest(sd_jwt.as_bytes()));
    match kb.claims.get("sd_hash").and_then(Value::as_str) {
        Some(hash) if hash == expected_hash => Ok(()),
        Some(_) => Err(Rejection::KbSdHashMismatch),
        None => Err(Rejection::KbMalformed("`sd_hash` is missing".into())),
    }
}

fn check_status<V: Verification + ?Sized>(
    claims: &Map<String, Value>,
    issuer_keys: &[Jwk],
    expect: &Expectations<'_>,
    env: &mut V,
) -> Result<StatusCheck, Rejection> {
    let Some(status) = claims.get("status") else {
        if let Some(entry) = claims.get("credentialStatus") {
            return check_bitstring_status(claims, entry, issuer_keys, expect, env);
        }
        return if expect.require_status { Err(Rejection::StatusMissing) } else { Ok(StatusCheck::NotListed) };
    };
    let reference = status.get("status_list").ok_or(Rejection::StatusUnsupported)?;
    let index =
        reference.get("idx").and_then(Value::as_u64).ok_or(Rejection::MissingClaim("status.status_list.idx"))?;
    let uri = reference.get("uri").and_then(Value::as_str).ok_or(Rejection::MissingClaim("status.status_list.uri"))?;

    let list = signed_list(env, uri, "statuslist+jwt", issuer_keys, expect)?;
    let invalid = |why: &str| Rejection::StatusListInvalid(why.to_owned());
    if list.get("sub").and_then(Value::as_str) != Some(uri) {
        return Err(invalid("`sub` does not match the referenced URI"));
    }
    numeric_date(&list, "iat").ok().flatten().ok_or_else(|| invalid("`iat` is missing"))?;
    if let Some(exp) = numeric_date(&list, "exp").map_err(|_| invalid("`exp` is malformed"))?
        && exp.saturating_add(expect.skew) <= expect.now
    {
        return Err(Rejection::StatusListExpired);
    }
    let list = list.get("status_list").ok_or_else(|| invalid("`status_list` is missing"))?;
    let bits = list.get("bits").and_then(Value::as_u64).ok_or_else(|| invalid("`bits` is missing"))?;
    let lst = list.get("lst").and_then(Value::as_str).ok_or_else(|| invalid("`lst` is missing"))?;
    let list = TokenStatusList::decode(bits, lst).map_err(|e| invalid(&e.to_string()))?;
    match list.get(index) {
        Ok(TokenStatus::Valid) => Ok(StatusCheck::Valid { uri: uri.to_owned(), index }),
        Ok(TokenStatus::Invalid) => Err(Rejection::Revoked),
        Ok(TokenStatus::Suspended) => Err(Rejection::Suspended),
        Ok(TokenStatus::Other(value)) => Err(Rejection::StatusUnknownValue(value)),
        Err(ListError::OutOfRange(_)) => Err(Rejection::StatusIndexOutOfRange),
        Err(e) => Err(invalid(&e.to_string())),
    }
}

/// Fetches the status list at `uri` and checks its `typ` and its signature; returns its
/// payload. The list must be signed by the credential's own issuer: a configured IDV vouches
/// for the status of its own credentials, and no other key is trusted for it.
fn signed_list<V: Verification + ?Sized>(
    env: &mut V,
    uri: &str,
    typ: &str,
    issuer_keys: &[Jwk],
    expect: &Expectations<'_>,
) -> Result<Map<String, Value>, Rejection> {
    let token = env.status_list_token(uri).map_err(|e| Rejection::StatusUnavailable(e.to_string()))?;
    if token.len() > MAX_STATUS_LIST_TOKEN_BYTES {
        return Err(Rejection::StatusListInvalid("status list too large".into()));
    }
    let invalid = |why: String| Rejection::StatusListInvalid(why);
    let jws = Jws::parse(token.trim(), expect.algs).map_err(|e| invalid(e.to_string()))?;
    if jws.typ() != Some(typ) {
        return Err(invalid(format!("`typ` is not `{typ}`")));
    }
    jws.verify_with(issuer_keys, &*env).map_err(|e| match e {
        JwsError::Verifier(v) => Rejection::VerifierFailed(v),
        other => invalid(other.to_string()),
    })?;
    Ok(jws.claims)
}

/// W3C Bitstring Status List: a `credentialStatus` entry of type `BitstringStatusListEntry`
/// whose list is a JOSE-secured credential (`vc+jwt`) of the same issuer. Purposes
/// `revocation` and `suspension` with one bit per entry are understood; anything else is
/// refused as unsupported (fail closed).
fn check_bitstring_status<V: Verification + ?Sized>(
    claims: &Map<String, Value>,
    entry: &Value,
    issuer_keys: &[Jwk],
    expect: &Expectations<'_>,
    env: &mut V,
) -> Result<StatusCheck, Rejection> {
    let field = |name: &'static str| entry.get(name).and_then(Value::as_str);
    if field("type") != Some("BitstringStatusListEntry") {
        return Err(Rejection::StatusUnsupported);
    }
    let purpose = field("statusPurpose").ok_or(Rejection::MissingClaim("credentialStatus.statusPurpose"))?;
    if !matches!(purpose, "revocation" | "suspension") || entry.get("statusSize").is_some_and(|s| s.as_u64() != Some(1))
    {
        return Err(Rejection::StatusUnsupported);
    }
    let index = field("statusListIndex")
        .filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|i| i.parse::<u64>().ok())
        .ok_or(Rejection::MissingClaim("credentialStatus.statusListIndex"))?;
    let uri = field("statusListCredential").ok_or(Rejection::MissingClaim("credentialStatus.statusListCredential"))?;

    let list = &signed_list(env, uri, "vc+jwt", issuer_keys, expect)?;
    let invalid = |why: &str| Rejection::StatusListInvalid(why.to_owned());
    let list_issuer = match list.get("issuer") {
        Some(Value::String(id)) => Some(id.as_str()),
        Some(Value::Object(issuer)) => issuer.get("id").and_then(Value::as_str),
        _ => None,
    };
    if list_issuer.is_none() || list_issuer != claims.get("iss").and_then(Value::as_str) {
        return Err(invalid("the list's `issuer` is not the credential's issuer"));
    }
    if list.get("id").and_then(Value::as_str).is_some_and(|id| id != uri) {
        return Err(invalid("the list's `id` does not match the referenced URL"));
    }
    let types = list.get("type").and_then(Value::as_array);
    if !types.is_some_and(|t| t.iter().any(|t| t == "BitstringStatusListCredential")) {
        return Err(invalid("the list is not a `BitstringStatusListCredential`"));
    }
    let until = match list.get("validUntil") {
        None => None,
        Some(v) => Some(v.as_str().and_then(crate::json::rfc3339_seconds).ok_or_else(|| invalid("bad `validUntil`"))?),
    };
    let exp = numeric_date(list, "exp").map_err(|_| invalid("`exp` is malformed"))?;
    if until.into_iter().chain(exp).any(|end| end.saturating_add(expect.skew) <= expect.now) {
        return Err(Rejection::StatusListExpired);
    }
    let subject = list.get("credentialSubject").ok_or_else(|| invalid("`credentialSubject` is missing"))?;
    if subject.get("statusPurpose").and_then(Value::as_str) != Some(purpose) {
        return Err(invalid("the list's `statusPurpose` is not the entry's"));
    }
    let encoded =
        subject.get("encodedList").and_then(Value::as_str).ok_or_else(|| invalid("`encodedList` is missing"))?;
    match crate::status::bitstring_status(encoded, index, 1) {
        Ok(0) => Ok(StatusCheck::Valid { uri: uri.to_owned(), index }),
        Ok(_) if purpose == "revocation" => Err(Rejection::Revoked),
        Ok(_) => Err(Rejection::Suspended),
        Err(ListError::OutOfRange(_)) => Err(Rejection::StatusIndexOutOfRange),
        Err(e) => Err(invalid(&e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::Rejection;

    /// One of each rejection. The match below has no wildcard, so a new variant does not
    /// compile until it is added here, and then must be documented in the README.
    fn every_rejection() -> Vec<Rejection> {
        use Rejection as R;
        let all = vec![
            R::TooLarge,
            R::Malformed(String::new()),
            R::TypInvalid,
            R::AlgNotAllowed(String::new()),
            R::CritUnsupported(String::new()),
            R::MissingClaim("x"),
            R::IssuerUntrusted,
            R::IssuerKeysUnavailable(String::new()),
            R::IssuerKeyNotFound,
            R::SignatureInvalid,
            R::VctNotAccepted,
            R::NotYetValid,
            R::Expired,
            R::IssuedInFuture,
            R::SdAlgUnsupported,
            R::DisclosureMalformed(String::new()),
            R::DisclosureDuplicate,
            R::DigestDuplicate,
            R::DisclosureUnreferenced,
            R::DisclosureNameConflict,
            R::DisclosureReservedClaim(String::new()),
            R::HolderBindingMissing,
            R::CnfInvalid,
            R::KbMalformed(String::new()),
            R::KbTypInvalid,
            R::KbAlgNotAllowed(String::new()),
            R::KbSignatureInvalid,
            R::KbIatOutOfWindow,
            R::KbNonceMismatch,
            R::KbAudienceMismatch,
            R::KbSdHashMismatch,
            R::StatusMissing,
            R::StatusUnsupported,
            R::StatusUnavailable(String::new()),
            R::StatusListInvalid(String::new()),
            R::StatusListExpired,
            R::StatusIndexOutOfRange,
            R::Revoked,
            R::Suspended,
            R::StatusUnknownValue(3),
            R::VerifierFailed(String::new()),
            R::AudienceMismatch,
            R::NonceMismatch,
            R::IssuedTooLongAgo,
            R::VerifiedClaimsMissing,
            R::TrustFrameworkNotAccepted,
            R::FaceEvidenceMissing,
        ];
        for r in &all {
            match r {
                R::TooLarge
                | R::Malformed(_)
                | R::TypInvalid
                | R::AlgNotAllowed(_)
                | R::CritUnsupported(_)
                | R::MissingClaim(_)
                | R::IssuerUntrusted
                | R::IssuerKeysUnavailable(_)
                | R::IssuerKeyNotFound
                | R::SignatureInvalid
                | R::VctNotAccepted
                | R::NotYetValid
                | R::Expired
                | R::IssuedInFuture
                | R::SdAlgUnsupported
                | R::DisclosureMalformed(_)
                | R::DisclosureDuplicate
                | R::DigestDuplicate
                | R::DisclosureUnreferenced
                | R::DisclosureNameConflict
                | R::DisclosureReservedClaim(_)
                | R::HolderBindingMissing
                | R::CnfInvalid
                | R::KbMalformed(_)
                | R::KbTypInvalid
                | R::KbAlgNotAllowed(_)
                | R::KbSignatureInvalid
                | R::KbIatOutOfWindow
                | R::KbNonceMismatch
                | R::KbAudienceMismatch
                | R::KbSdHashMismatch
                | R::StatusMissing
                | R::StatusUnsupported
                | R::StatusUnavailable(_)
                | R::StatusListInvalid(_)
                | R::StatusListExpired
                | R::StatusIndexOutOfRange
                | R::Revoked
                | R::Suspended
                | R::StatusUnknownValue(_)
                | R::VerifierFailed(_)
                | R::AudienceMismatch
                | R::NonceMismatch
                | R::IssuedTooLongAgo
                | R::VerifiedClaimsMissing
                | R::TrustFrameworkNotAccepted
                | R::FaceEvidenceMissing => {}
            }
        }
        all
    }

    #[test]
    fn every_reason_code_is_distinct_and_in_the_readme() {
        let readme = include_str!("../../../README.md");
        let mut codes = std::collections::HashSet::new();
        for rejection in every_rejection() {
            let code = rejection.code();
            assert!(codes.insert(code), "`{code}` is used twice");
            assert!(readme.contains(&format!("| `{code}` |")), "README does not list `{code}`");
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "`{code}` is not kebab-case");
        }
        assert!(readme.contains("| `ok` |"));
    }
}
