//! The native verifier against signatures made by an independent implementation (the
//! RustCrypto crates, through the dev IDV's keys).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a failing test panics with the reason")]

use regain_core::jose::{Alg, Jwk, SignatureVerifier};
use regain_dev_idv::keys::SigningKey;
use regain_host::NativeVerifier;

fn public(key: &SigningKey) -> regain_core::jose::PublicKey {
    Jwk::from_json(key.public_jwk(None).as_object().unwrap()).unwrap().key
}

#[test]
fn verifies_es256_and_eddsa_and_refuses_tampering() {
    for (key, alg) in [(SigningKey::p256(1), Alg::Es256), (SigningKey::ed25519(1), Alg::EdDsa)] {
        let message = b"eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lkdi5leGFtcGxlIn0";
        let signature = key.sign(message);
        assert_eq!(NativeVerifier.verify(alg, &public(&key), message, &signature), Ok(true), "{alg:?}");

        let mut tampered = signature.clone();
        tampered[10] ^= 1;
        assert_eq!(NativeVerifier.verify(alg, &public(&key), message, &tampered), Ok(false));
        assert_eq!(NativeVerifier.verify(alg, &public(&key), b"other message", &signature), Ok(false));
        let other = match alg {
            Alg::Es256 => SigningKey::p256(2),
            Alg::EdDsa => SigningKey::ed25519(2),
        };
        assert_eq!(NativeVerifier.verify(alg, &public(&other), message, &signature), Ok(false));
        assert_eq!(NativeVerifier.verify(alg, &public(&key), message, &signature[..63]), Ok(false));
    }
}

#[test]
fn a_key_of_the_wrong_type_is_an_error_not_a_verdict() {
    let key = SigningKey::ed25519(1);
    let signature = key.sign(b"m");
    assert!(NativeVerifier.verify(Alg::Es256, &public(&key), b"m", &signature).is_err());
}
