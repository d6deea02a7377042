//! Signing keys from fixed seeds, so that fixtures are reproducible.

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use regain_core::jose::{Alg, PublicKey, SignatureVerifier, b64url_decode, b64url_encode};
use serde_json::{Value, json};

/// A private key of one of the two algorithms Regain verifies.
#[derive(Clone)]
pub enum SigningKey {
    /// ES256.
    P256(p256::ecdsa::SigningKey),
    /// EdDSA (Ed25519).
    Ed25519(ed25519_dalek::SigningKey),
}

impl SigningKey {
    /// A P-256 key derived from `seed` (any seed gives a valid key).
    pub fn p256(seed: u8) -> Self {
        let mut counter = 0u8;
        loop {
            let mut bytes = [seed; 32];
            bytes[0] = 0x5a;
            bytes[31] = counter;
            if let Ok(key) = p256::ecdsa::SigningKey::from_bytes(&bytes.into()) {
                return Self::P256(key);
            }
            counter = counter.wrapping_add(1);
        }
    }

    /// A P-256 key from its 32-byte scalar; `None` if the bytes are not a valid scalar.
    pub fn p256_from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        p256::ecdsa::SigningKey::from_bytes(&bytes.into()).ok().map(Self::P256)
    }

    /// The private JWK of a P-256 key (`d` included), for a holder key kept in a file;
    /// `None` for other keys.
    pub fn private_jwk(&self) -> Option<Value> {
        let Self::P256(key) = self else { return None };
        let mut jwk = self.public_jwk(None);
        if let Some(map) = jwk.as_object_mut() {
            map.insert("d".into(), Value::String(b64url_encode(&key.to_bytes())));
        }
        Some(jwk)
    }

    /// A P-256 key from a private JWK written by [`SigningKey::private_jwk`]; the public
    /// coordinates must belong to `d`.
    pub fn from_private_jwk(jwk: &Value) -> Option<Self> {
        if jwk.get("kty")?.as_str()? != "EC" || jwk.get("crv")?.as_str()? != "P-256" {
            return None;
        }
        let key = Self::p256_from_bytes(&b64url_decode(jwk.get("d")?.as_str()?)?)?;
        let public = key.public_jwk(None);
        (public.get("x") == jwk.get("x") && public.get("y") == jwk.get("y")).then_some(key)
    }

    /// An Ed25519 key derived from `seed`.
    pub fn ed25519(seed: u8) -> Self {
        Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }

    /// The JOSE `alg` of signatures made with this key.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::P256(_) => "ES256",
            Self::Ed25519(_) => "EdDSA",
        }
    }

    /// Signs `message`: ES256 as raw `r || s` (64 bytes), EdDSA as the 64-byte signature.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_bytes().to_vec()
            }
            Self::Ed25519(key) => ed25519_dalek::Signer::sign(key, message).to_bytes().to_vec(),
        }
    }

    /// The public JWK, with `kid` when given.
    pub fn public_jwk(&self, kid: Option<&str>) -> Value {
        let mut jwk = match self {
            Self::P256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": b64url_encode(point.x().map(|x| x.as_slice()).unwrap_or_default()),
                    "y": b64url_encode(point.y().map(|y| y.as_slice()).unwrap_or_default()),
                })
            }
            Self::Ed25519(key) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64url_encode(key.verifying_key().as_bytes()),
            }),
        };
        if let (Some(kid), Some(map)) = (kid, jwk.as_object_mut()) {
            map.insert("kid".into(), Value::String(kid.to_owned()));
        }
        jwk
    }

    /// A JWK Set with this key's public JWK.
    pub fn jwks(&self, kid: Option<&str>) -> Value {
        json!({ "keys": [self.public_jwk(kid)] })
    }
}

/// Signature verification with the same primitives, for the dev IDV's own checks (proof
/// JWTs, document signatures) and for tests that verify with `regain-core`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Verifier;

impl SignatureVerifier for Verifier {
    fn verify(&self, alg: Alg, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, String> {
        match (alg, key) {
            (Alg::Es256, PublicKey::P256 { x, y }) => {
                let point = p256::EncodedPoint::from_affine_coordinates(&(*x).into(), &(*y).into(), false);
                let Ok(key) = p256::ecdsa::VerifyingKey::from_encoded_point(&point) else { return Ok(false) };
                let Ok(signature) = p256::ecdsa::Signature::from_slice(signature) else { return Ok(false) };
                Ok(key.verify(message, &signature).is_ok())
            }
            (Alg::EdDsa, PublicKey::Ed25519(bytes)) => {
                let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(bytes) else { return Ok(false) };
                let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else { return Ok(false) };
                Ok(key.verify_strict(message, &signature).is_ok())
            }
            _ => Err("the key does not fit the algorithm".into()),
        }
    }
}

/// Verifies a raw ES256 or EdDSA signature made by `key` (the dev IDV's own keys).
pub fn verify_own(key: &SigningKey, message: &[u8], signature: &[u8]) -> bool {
    match key {
        SigningKey::P256(key) => p256::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|signature| key.verifying_key().verify(message, &signature).is_ok()),
        SigningKey::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|signature| key.verifying_key().verify_strict(message, &signature).is_ok()),
    }
}
