//! Native cost of verifying one SD-JWT VC presentation (issuer signature, disclosures,
//! key binding JWT, status list token: three ES256 signatures), with the host's `ring`
//! verifier and with the pure-Rust RustCrypto verifier a guest could embed instead.
//!
//! `cargo bench -p regain-host --bench verify`; figures in `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark that cannot set up may panic")]

use criterion::{Criterion, criterion_group, criterion_main};
use p256::ecdsa::signature::Verifier as _;
use regain_core::jose::{Alg, PublicKey, SignatureVerifier};
use regain_core::sdjwt::{self, Expectations, TrustFailure, TrustSource};
use regain_dev_idv::keys::SigningKey;
use regain_dev_idv::sdjwt::{IdentityCredential, issue_identity, present};
use regain_host::NativeVerifier;
use serde_json::json;
use std::hint::black_box;

const NOW: u64 = 1_790_000_000;
const URI: &str = "https://idv.example/status/1";

struct RustCrypto;

impl SignatureVerifier for RustCrypto {
    fn verify(&self, alg: Alg, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, String> {
        Ok(match (alg, key) {
            (Alg::Es256, PublicKey::P256 { x, y }) => {
                let point = p256::EncodedPoint::from_affine_coordinates(x.into(), y.into(), false);
                let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point).map_err(|e| e.to_string())?;
                let sig = p256::ecdsa::Signature::from_slice(signature).map_err(|e| e.to_string())?;
                key.verify(message, &sig).is_ok()
            }
            (Alg::EdDsa, PublicKey::Ed25519(k)) => {
                let key = ed25519_dalek::VerifyingKey::from_bytes(k).map_err(|e| e.to_string())?;
                let sig = <[u8; 64]>::try_from(signature).map_err(|_| "length")?;
                key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig)).is_ok()
            }
            _ => false,
        })
    }
}

struct Trust {
    jwks: String,
    list: String,
}

impl TrustSource for Trust {
    fn issuer_keys(&mut self, _issuer: &str) -> Result<String, TrustFailure> {
        Ok(self.jwks.clone())
    }

    fn status_list_token(&mut self, _uri: &str) -> Result<String, TrustFailure> {
        Ok(self.list.clone())
    }
}

fn benches(c: &mut Criterion) {
    let issuer = SigningKey::p256(1);
    let holder = SigningKey::p256(2);
    let credential = IdentityCredential {
        issuer: "https://idv.example",
        kid: "k1",
        vct: "https://idv.example/credentials/identity",
        iat: NOW - 600,
        exp: NOW + 86_400,
        status: Some((URI, 42)),
        claims: vec![
            ("given_name", json!("José")),
            ("family_name", json!("García Márquez")),
            ("birthdate", json!("1980-02-29")),
        ],
    };
    let issued = issue_identity(&credential, &issuer, &holder);
    let presentation = present(&issued, &issued.all(), &holder, "nonce", "aud", NOW - 5);
    let statuses = vec![0u8; 1 << 16];
    let list = regain_dev_idv::status::token(&issuer, Some("k1"), URI, &statuses, 1, NOW - 60, None);
    let mut trust = Trust { jwks: issuer.jwks(Some("k1")).to_string(), list };
    let vcts = vec![credential.vct.to_owned()];
    let expect = Expectations {
        nonce: "nonce",
        audience: "aud",
        vcts: &vcts,
        algs: &[Alg::Es256, Alg::EdDsa],
        now: NOW,
        skew: 60,
        kb_max_age: 300,
        holder_binding: true,
        require_status: true,
        require_expiry: true,
    };
    assert!(sdjwt::verify(&presentation, &expect, &mut trust, &NativeVerifier).is_ok());

    let mut group = c.benchmark_group("sd-jwt vc + kb + status list");
    group.bench_function("native core, ring verifier", |b| {
        b.iter(|| sdjwt::verify(black_box(&presentation), &expect, &mut trust, &NativeVerifier).unwrap())
    });
    group.bench_function("native core, RustCrypto verifier", |b| {
        b.iter(|| sdjwt::verify(black_box(&presentation), &expect, &mut trust, &RustCrypto).unwrap())
    });
    group.finish();
}

criterion_group!(verify, benches);
criterion_main!(verify);
