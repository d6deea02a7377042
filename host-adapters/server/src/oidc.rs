//! OpenID Provider primitives of the reference server: PKCE (RFC 7636, S256 only), exact
//! redirect URI matching, and ES256 ID tokens with their published JWK Set.

use regain_core::jose::b64url_encode;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

/// Why a PKCE check failed; each maps to OAuth `invalid_request` or `invalid_grant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    /// The authorization request used a method other than `S256` (`plain` is refused).
    #[error("code_challenge_method must be S256")]
    MethodNotAllowed,
    /// The challenge is not 43 base64url characters.
    #[error("code_challenge is malformed")]
    MalformedChallenge,
    /// The verifier is not 43-128 unreserved characters.
    #[error("code_verifier is malformed")]
    MalformedVerifier,
    /// The verifier does not hash to the challenge.
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

/// Checks an authorization request's PKCE parameters.
pub fn check_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<(), PkceError> {
    if method != Some("S256") {
        return Err(PkceError::MethodNotAllowed);
    }
    let challenge = challenge.ok_or(PkceError::MalformedChallenge)?;
    if challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(PkceError::MalformedChallenge);
    }
    Ok(())
}

/// Checks a token request's verifier against the stored S256 challenge.
pub fn verify_pkce(verifier: &str, challenge: &str) -> Result<(), PkceError> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if !(43..=128).contains(&verifier.len()) || !verifier.bytes().all(unreserved) {
        return Err(PkceError::MalformedVerifier);
    }
    let computed = b64url_encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    if regain_core::secret::constant_time_eq(computed.as_bytes(), challenge.as_bytes()) {
        Ok(())
    } else {
        Err(PkceError::Mismatch)
    }
}

/// Whether `requested` is one of the client's registered redirect URIs, byte for byte (no
/// prefix, case or trailing-slash leniency).
pub fn redirect_uri_registered(requested: &str, registered: &[String]) -> bool {
    registered.iter().any(|r| r == requested)
}

/// The provider's ES256 signing key.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    kid: String,
}

impl SigningKey {
    /// A new key as PKCS#8 bytes, for the store to keep.
    pub fn generate_pkcs8() -> Result<Vec<u8>, String> {
        let rng = ring::rand::SystemRandom::new();
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| "cannot generate a P-256 key".to_owned())
    }

    /// The key from PKCS#8 bytes; its `kid` is derived from the public key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, String> {
        let rng = ring::rand::SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|_| "the stored signing key is not a P-256 PKCS#8 key".to_owned())?;
        let digest = ring::digest::digest(&ring::digest::SHA256, pair.public_key().as_ref());
        let kid = b64url_encode(digest.as_ref().get(..12).unwrap_or_default());
        Ok(Self { pair, kid })
    }

    /// The public key as a JWK Set document.
    pub fn jwks(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        let (x, y) = (point.get(1..33).unwrap_or_default(), point.get(33..65).unwrap_or_default());
        json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": b64url_encode(x), "y": b64url_encode(y),
        }] })
    }

    /// Signs `claims` as a compact JWS (`typ` `JWT`, ES256).
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let header = json!({ "alg": "ES256", "typ": "JWT", "kid": self.kid });
        let input = format!(
            "{}.{}",
            b64url_encode(header.to_string().as_bytes()),
            b64url_encode(claims.to_string().as_bytes())
        );
        let rng = ring::rand::SystemRandom::new();
        let signature = self.pair.sign(&rng, input.as_bytes()).map_err(|_| "signing failed".to_owned())?;
        Ok(format!("{input}.{}", b64url_encode(signature.as_ref())))
    }
}

/// The claims of an ID token (OIDC Core §2).
#[derive(Debug, Clone)]
pub struct IdTokenClaims<'a> {
    /// The provider's issuer identifier.
    pub issuer: &'a str,
    /// The user.
    pub subject: &'a str,
    /// The client.
    pub audience: &'a str,
    /// The authorization request's nonce, when it had one.
    pub nonce: Option<&'a str>,
    /// When the user authenticated.
    pub auth_time: i64,
    /// Issued at.
    pub now: i64,
    /// Lifetime in seconds.
    pub lifetime: i64,
    /// Authentication methods (`pwd`, `otp`, `hwk`, and `tap` for a Temporary Access Pass).
    pub amr: &'a [&'a str],
}

impl IdTokenClaims<'_> {
    /// The JSON payload.
    pub fn to_json(&self) -> Value {
        let mut claims = json!({
            "iss": self.issuer, "sub": self.subject, "aud": self.audience,
            "iat": self.now, "exp": self.now + self.lifetime, "auth_time": self.auth_time, "amr": self.amr,
        });
        if let (Some(nonce), Some(map)) = (self.nonce, claims.as_object_mut()) {
            map.insert("nonce".into(), nonce.into());
        }
        claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regain_core::jose::{Alg, Jws, parse_jwks};

    #[test]
    fn pkce_follows_rfc_7636_and_refuses_plain() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(check_challenge(Some(challenge), Some("S256")), Ok(()));
        assert_eq!(verify_pkce(verifier, challenge), Ok(()));
        assert_eq!(check_challenge(Some(verifier), Some("plain")), Err(PkceError::MethodNotAllowed));
        assert_eq!(check_challenge(Some(challenge), None), Err(PkceError::MethodNotAllowed));
        assert_eq!(check_challenge(Some("short"), Some("S256")), Err(PkceError::MalformedChallenge));
        assert_eq!(verify_pkce(&verifier.replace('d', "e"), challenge), Err(PkceError::Mismatch));
        assert_eq!(verify_pkce("too-short", challenge), Err(PkceError::MalformedVerifier));
        assert_eq!(verify_pkce(challenge, challenge), Err(PkceError::Mismatch), "the challenge is not a verifier");
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let registered = vec!["https://rp.example/cb".to_owned()];
        assert!(redirect_uri_registered("https://rp.example/cb", &registered));
        for near in
            ["https://rp.example/cb/", "https://rp.example/cb?x=1", "https://RP.example/cb", "https://rp.example/c"]
        {
            assert!(!redirect_uri_registered(near, &registered), "{near}");
        }
    }

    #[test]
    fn id_tokens_verify_with_the_published_keys() {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let claims = IdTokenClaims {
            issuer: "https://idp.example",
            subject: "u-1",
            audience: "rp",
            nonce: Some("n-1"),
            auth_time: 1_790_000_000,
            now: 1_790_000_010,
            lifetime: 300,
            amr: &["tap"],
        };
        let token = key.sign(&claims.to_json()).unwrap();
        let jws = Jws::parse(&token, &[Alg::Es256]).unwrap();
        let keys = parse_jwks(key.jwks().to_string().as_bytes()).unwrap();
        jws.verify_with(&keys, &regain_host::NativeVerifier).unwrap();
        assert_eq!(jws.claims["nonce"], "n-1");
        assert_eq!(jws.claims["exp"], 1_790_000_310);
        assert_eq!(jws.typ(), Some("JWT"));
        let other = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let other_keys = parse_jwks(other.jwks().to_string().as_bytes()).unwrap();
        assert!(jws.verify_with(&other_keys, &regain_host::NativeVerifier).is_err());
    }
}
