//! The parts of JOSE that Regain accepts: compact JWS with ES256 or EdDSA, and public JWKs
//! of type EC P-256 and OKP Ed25519.
//!
//! INVARIANT: an algorithm is accepted only from a closed list, and only with a key of its
//! own type; `none`, HMAC and RSA never verify. A key comes from the trusted issuer's key set
//! (or from the credential's `cnf` for holder binding), never from the token's own header.

use crate::json::{self, JsonError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use std::fmt;

/// Decodes unpadded base64url (RFC 7515 §2), refusing padding and other alphabets.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Encodes as unpadded base64url.
pub fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signature algorithm Regain can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// ECDSA with P-256 and SHA-256; signature `r || s`, 64 bytes.
    Es256,
    /// EdDSA with Ed25519 (`EdDSA`, or the fully specified `Ed25519` of RFC 9864).
    EdDsa,
}

impl Alg {
    /// Parses a JOSE `alg` value; anything outside the closed list is `None`.
    pub fn from_jose(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::Es256),
            "EdDSA" | "Ed25519" => Some(Self::EdDsa),
            _ => None,
        }
    }

    /// The JOSE name.
    pub fn as_jose(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// A public key, decoded from a JWK.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// An uncompressed P-256 point.
    P256 {
        /// X coordinate, big-endian.
        x: [u8; 32],
        /// Y coordinate, big-endian.
        y: [u8; 32],
    },
    /// An Ed25519 public key.
    Ed25519([u8; 32]),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::P256 { x, .. } => write!(f, "P256({}…)", b64url_encode(x.get(..6).unwrap_or(x))),
            Self::Ed25519(k) => write!(f, "Ed25519({}…)", b64url_encode(k.get(..6).unwrap_or(k))),
        }
    }
}

impl PublicKey {
    /// Whether `alg` signs with keys of this type.
    pub fn fits(&self, alg: Alg) -> bool {
        matches!((self, alg), (Self::P256 { .. }, Alg::Es256) | (Self::Ed25519(_), Alg::EdDsa))
    }
}

/// A public JWK with its optional `kid` and `alg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// Key id, for selection.
    pub kid: Option<String>,
    /// The algorithm the key is restricted to, if the JWK names one.
    pub alg: Option<Alg>,
    /// The key.
    pub key: PublicKey,
}

/// Why a JWK was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// The key type or curve is not one Regain verifies with.
    #[error("unsupported key type or curve")]
    Unsupported,
    /// The JWK carries private key material.
    #[error("the key contains private material (`d`)")]
    PrivateKey,
    /// A member is missing or malformed; the text names it.
    #[error("malformed JWK: {0}")]
    Malformed(&'static str),
}

fn coordinate(jwk: &Map<String, Value>, name: &'static str) -> Result<[u8; 32], JwkError> {
    let text = jwk.get(name).and_then(Value::as_str).ok_or(JwkError::Malformed(name))?;
    let bytes = b64url_decode(text).ok_or(JwkError::Malformed(name))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| JwkError::Malformed(name))
}

impl Jwk {
    /// Parses a public JWK (RFC 7517) of type EC P-256 or OKP Ed25519.
    pub fn from_json(jwk: &Map<String, Value>) -> Result<Self, JwkError> {
        if jwk.contains_key("d") {
            return Err(JwkError::PrivateKey);
        }
        if let Some(usage) = jwk.get("use")
            && usage.as_str() != Some("sig")
        {
            return Err(JwkError::Malformed("use"));
        }
        let kty = jwk.get("kty").and_then(Value::as_str).ok_or(JwkError::Malformed("kty"))?;
        let crv = jwk.get("crv").and_then(Value::as_str);
        let key = match (kty, crv) {
            ("EC", Some("P-256")) => PublicKey::P256 { x: coordinate(jwk, "x")?, y: coordinate(jwk, "y")? },
            ("OKP", Some("Ed25519")) => PublicKey::Ed25519(coordinate(jwk, "x")?),
            _ => return Err(JwkError::Unsupported),
        };
        let kid = match jwk.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(JwkError::Malformed("kid")),
        };
        let alg = match jwk.get("alg") {
            None => None,
            Some(Value::String(name)) => {
                let alg = Alg::from_jose(name).ok_or(JwkError::Unsupported)?;
                if !key.fits(alg) {
                    return Err(JwkError::Malformed("alg"));
                }
                Some(alg)
            }
            Some(_) => return Err(JwkError::Malformed("alg")),
        };
        Ok(Self { kid, alg, key })
    }
}

/// Parses a JWK Set document, keeping the keys Regain can use and skipping others (an
/// issuer may also publish RSA or encryption keys). A set with private material is refused.
pub fn parse_jwks(document: &[u8]) -> Result<Vec<Jwk>, JwkError> {
    let set = json::parse_object(document).map_err(|_| JwkError::Malformed("keys"))?;
    let keys = set.get("keys").and_then(Value::as_array).ok_or(JwkError::Malformed("keys"))?;
    let mut usable = Vec::new();
    for key in keys {
        let key = key.as_object().ok_or(JwkError::Malformed("keys"))?;
        match Jwk::from_json(key) {
            Ok(jwk) => usable.push(jwk),
            Err(JwkError::PrivateKey) => return Err(JwkError::PrivateKey),
            Err(_) => {}
        }
    }
    Ok(usable)
}

/// Verifies raw signatures. The core never implements cryptography itself: natively the
/// host's implementation is used, and inside the component it is reached through an import.
pub trait SignatureVerifier {
    /// Whether `signature` is valid for `message` under `key` with `alg`. The caller has
    /// already checked that `key` fits `alg`. An error means the verifier could not run.
    fn verify(&self, alg: Alg, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, String>;
}

/// A compact JWS, parsed but not yet verified.
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The algorithm from the header, checked against the closed list.
    pub alg: Alg,
    /// The payload as a JSON object.
    pub claims: Map<String, Value>,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`.
    pub signing_input: &'a str,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Why a compact JWS was refused before or during signature verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Not three base64url parts, or header or payload not a JSON object.
    #[error("malformed JWS: {0}")]
    Malformed(String),
    /// `alg` is missing, `none`, HMAC, RSA or anything else outside the closed list.
    #[error("algorithm `{0}` is not allowed")]
    AlgNotAllowed(String),
    /// The header lists a critical extension Regain does not understand.
    #[error("unknown critical header `{0}`")]
    UnknownCrit(String),
    /// No key fits: none with the header's `kid`, or none of the algorithm's type.
    #[error("no key fits the token")]
    NoKey,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The verifier failed to run.
    #[error("signature verifier failed: {0}")]
    Verifier(String),
}

impl<'a> Jws<'a> {
    /// Splits and decodes a compact JWS; checks `alg` against `allowed` and refuses `crit`.
    pub fn parse(token: &'a str, allowed: &[Alg]) -> Result<Self, JwsError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(JwsError::Malformed("not three dot-separated parts".into()));
        };
        let decode = |part: &str, what: &str| {
            b64url_decode(part).ok_or_else(|| JwsError::Malformed(format!("{what} is not base64url")))
        };
        let object = |bytes: Vec<u8>, what: &str| {
            json::parse_object(&bytes).map_err(|e: JsonError| JwsError::Malformed(format!("{what}: {e}")))
        };
        let header = object(decode(h, "header")?, "header")?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let alg = Alg::from_jose(alg_name)
            .filter(|alg| allowed.contains(alg))
            .ok_or_else(|| JwsError::AlgNotAllowed(alg_name.to_owned()))?;
        if let Some(crit) = header.get("crit") {
            // RFC 7515 §4.1.11: every listed extension must be understood; Regain
            // understands none, so any `crit` is refused (an empty list is malformed).
            let first = crit.as_array().and_then(|list| list.first()).and_then(Value::as_str);
            return Err(match first {
                Some(name) => JwsError::UnknownCrit(name.to_owned()),
                None => JwsError::Malformed("`crit` must be a non-empty list of names".into()),
            });
        }
        let claims = object(decode(p, "payload")?, "payload")?;
        let signature = decode(s, "signature")?;
        let signing_input = token.get(..h.len() + 1 + p.len()).unwrap_or_default();
        Ok(Self { header, alg, claims, signing_input, signature })
    }

    /// The header's `typ`, if any.
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }

    /// Verifies the signature with the first key that fits: the key whose `kid` equals the
    /// header's, or, when the header has no `kid`, any key of the algorithm's type.
    pub fn verify_with<V: SignatureVerifier + ?Sized>(&self, keys: &[Jwk], verifier: &V) -> Result<(), JwsError> {
        let kid = self.header.get("kid").and_then(Value::as_str);
        let mut candidates = keys
            .iter()
            .filter(|jwk| jwk.key.fits(self.alg))
            .filter(|jwk| jwk.alg.is_none_or(|a| a == self.alg))
            .filter(|jwk| kid.is_none() || jwk.kid.as_deref() == kid)
            .peekable();
        if candidates.peek().is_none() {
            return Err(JwsError::NoKey);
        }
        for jwk in candidates {
            if self.verify_key(&jwk.key, verifier)? {
                return Ok(());
            }
        }
        Err(JwsError::BadSignature)
    }

    /// Verifies the signature with one key.
    pub fn verify_key<V: SignatureVerifier + ?Sized>(&self, key: &PublicKey, verifier: &V) -> Result<bool, JwsError> {
        if !key.fits(self.alg) {
            return Err(JwsError::NoKey);
        }
        if self.signature.len() != 64 {
            // Both algorithms have 64-byte signatures (ES256 as raw r || s, never DER).
            return Ok(false);
        }
        verifier.verify(self.alg, key, self.signing_input.as_bytes(), &self.signature).map_err(JwsError::Verifier)
    }
}
