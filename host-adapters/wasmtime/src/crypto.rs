//! Native signature verification: the host side of `regain:recovery/crypto`, and the
//! verifier the native tools hand to `regain-core`.

use crate::bindings::regain::recovery::crypto::{self, CryptoError, PublicKey as WitKey, SignatureAlgorithm};
use regain_core::jose::{Alg, PublicKey, SignatureVerifier};
use ring::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};

/// Verifies ES256 and EdDSA signatures with `ring`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeVerifier;

impl SignatureVerifier for NativeVerifier {
    fn verify(&self, alg: Alg, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, String> {
        Ok(match (alg, key) {
            (Alg::Es256, PublicKey::P256 { x, y }) => {
                let mut point = Vec::with_capacity(65);
                point.push(0x04); // uncompressed (SEC 1)
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(message, signature).is_ok()
            }
            (Alg::EdDsa, PublicKey::Ed25519(k)) => {
                UnparsedPublicKey::new(&ED25519, k).verify(message, signature).is_ok()
            }
            _ => return Err("key does not fit the algorithm".into()),
        })
    }
}

/// The import, for the guest: wrong-length coordinates are an invalid key, hence `false`.
pub(crate) fn verify_import(
    algorithm: SignatureAlgorithm,
    key: WitKey,
    message: &[u8],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    let key = match key {
        WitKey::P256(crypto::P256Point { x, y }) => match (<[u8; 32]>::try_from(x), <[u8; 32]>::try_from(y)) {
            (Ok(x), Ok(y)) => PublicKey::P256 { x, y },
            _ => return Ok(false),
        },
        WitKey::Ed25519(k) => match <[u8; 32]>::try_from(k) {
            Ok(k) => PublicKey::Ed25519(k),
            Err(_) => return Ok(false),
        },
    };
    let alg = match algorithm {
        SignatureAlgorithm::Es256 => Alg::Es256,
        SignatureAlgorithm::Eddsa => Alg::EdDsa,
    };
    if !key.fits(alg) {
        return Err(CryptoError::KeyMismatch);
    }
    NativeVerifier.verify(alg, &key, message, signature).map_err(|_| CryptoError::KeyMismatch)
}
