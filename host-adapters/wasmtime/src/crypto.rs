//! Native signature verification: the host side of `regain:recovery/crypto`, and the
//! verifier the native tools hand to `regain-core`.

use crate::bindings::regain::recovery::crypto::{self, CryptoError, PublicKey as WitKey, SignatureAlgorithm};
use regain_core::jose::{Alg, PublicKey, SignatureVerifier};
use ring::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

/// How many verified signatures [`Verified`] remembers before it starts over.
const REMEMBERED: usize = 1024;

/// The digests of the signatures [`RememberingVerifier`] found valid (see there).
struct Verified(Mutex<HashSet<[u8; 32]>>);

impl Verified {
    fn digest(alg: Alg, key: &PublicKey, message: &[u8], signature: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        let alg = match alg {
            Alg::Es256 => 1,
            Alg::EdDsa => 2,
        };
        // The key's type and coordinates have fixed lengths; the message and the signature
        // are framed by their lengths, so no two different inputs hash the same bytes.
        match key {
            PublicKey::P256 { x, y } => {
                h.update([alg, 1]);
                h.update(x);
                h.update(y);
            }
            PublicKey::Ed25519(k) => {
                h.update([alg, 2]);
                h.update(k);
            }
        }
        for part in [message, signature] {
            h.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    fn contains(&self, digest: &[u8; 32]) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).contains(digest)
    }

    fn insert(&self, digest: [u8; 32]) {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if set.len() >= REMEMBERED {
            set.clear();
        }
        set.insert(digest);
    }
}

static VERIFIED: std::sync::LazyLock<Verified> = std::sync::LazyLock::new(|| Verified(Mutex::new(HashSet::new())));

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

/// [`NativeVerifier`] that remembers the signatures it found valid: what the plugin's
/// `crypto` import and [`crate::native::NativeEnvironment`] use, so that the component and
/// the native core do the same work.
///
/// Some tokens come back unchanged in every recovery, above all an issuer's status list,
/// which the host caches and the plugin checks at each presentation. A signature check is a
/// pure function of the algorithm, key, message and signature, so a success is remembered
/// by the SHA-256 of those (up to 1 024; a full memory starts over, a miss only costs the
/// check again). A failure never is (it costs an attacker nothing to repeat), and anything
/// differing in one byte is checked afresh.
#[derive(Debug, Clone, Copy, Default)]
pub struct RememberingVerifier;

impl SignatureVerifier for RememberingVerifier {
    fn verify(&self, alg: Alg, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, String> {
        let digest = Verified::digest(alg, key, message, signature);
        if VERIFIED.contains(&digest) {
            return Ok(true);
        }
        let valid = NativeVerifier.verify(alg, key, message, signature)?;
        if valid {
            VERIFIED.insert(digest);
        }
        Ok(valid)
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
    RememberingVerifier.verify(alg, &key, message, signature).map_err(|_| CryptoError::KeyMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};

    /// The verifying key of `signing`, as the guest hands it in and as the host parses it.
    fn keys_of(signing: &SigningKey) -> (WitKey, PublicKey) {
        let point = signing.verifying_key().to_encoded_point(false);
        let (x, y) = (point.x().unwrap().to_vec(), point.y().unwrap().to_vec());
        let parsed = PublicKey::P256 { x: x.clone().try_into().unwrap(), y: y.clone().try_into().unwrap() };
        (WitKey::P256(crypto::P256Point { x, y }), parsed)
    }

    #[test]
    fn a_remembered_success_vouches_for_those_exact_bytes_only() {
        let signing = SigningKey::from_slice(&[7; 32]).unwrap();
        let other = SigningKey::from_slice(&[8; 32]).unwrap();
        let message = b"status list token";
        let signature: Signature = signing.sign(message);
        let sig = signature.to_bytes().to_vec();
        let check = |key: &SigningKey, message: &[u8], sig: &[u8]| {
            verify_import(SignatureAlgorithm::Es256, keys_of(key).0, message, sig).unwrap()
        };
        // Checked, then answered from memory: both true.
        assert!(check(&signing, message, &sig));
        assert!(VERIFIED.contains(&Verified::digest(Alg::Es256, &keys_of(&signing).1, message, &sig)));
        assert!(check(&signing, message, &sig));
        // Anything else is checked afresh and fails.
        assert!(!check(&signing, b"status list tokeN", &sig));
        assert!(!check(&other, message, &sig));
        let mut flipped = sig.clone();
        flipped[63] ^= 1;
        assert!(!check(&signing, message, &flipped));
        // A failure is not remembered: the same bad input fails again.
        assert!(!check(&signing, message, &flipped));
    }

    #[test]
    fn the_memory_starts_over_when_full() {
        let memory = Verified(Mutex::new(HashSet::new()));
        for i in 0..REMEMBERED {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&(i as u64).to_be_bytes());
            memory.insert(d);
        }
        assert!(memory.contains(&[0; 32]));
        memory.insert([0xff; 32]);
        assert!(memory.contains(&[0xff; 32]));
        assert!(!memory.contains(&[0; 32]), "a full memory starts over");
    }
}
