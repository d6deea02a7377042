//! Signing keys from fixed seeds, so that fixtures are reproducible.

use p256::ecdsa::signature::Signer as _;
use regain_core::jose::b64url_encode;
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
