//! OIDC4IDA ID tokens: every forged, expired, mis-addressed or replayed token is refused with
//! its reason code, and the OIDC4IDA mode of the flow runs end to end.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

mod support;

use regain_core::flow::{self, Client, FAILED, Input, Loaded, Step};
use regain_core::ida::{IdTokenExpectations, verify_id_token};
use regain_core::jose::b64url_encode;
use regain_core::policy::DEFAULT_POLICIES;
use regain_core::sdjwt::Parts;
use regain_core::{AuditKind, User};
use regain_dev_idv::ida::Assertion;
use regain_dev_idv::keys::SigningKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::*;

const CLIENT_ID: &str = "regain-recovery";

fn assertion() -> Assertion<'static> {
    Assertion {
        issuer: ISSUER,
        kid: "k1",
        client_id: CLIENT_ID,
        nonce: NONCE,
        subject: "idv-subject-7",
        iat: NOW - 30,
        trust_framework: "eidas",
        face_method: Some("bvr"),
        claims: vec![("given_name", json!("Ana")), ("family_name", json!("Silva")), ("birthdate", json!("1990-04-01"))],
    }
}

fn frameworks() -> Vec<String> {
    vec!["eidas".into(), "de_aml".into()]
}

fn face_methods() -> Vec<String> {
    regain_core::ida::FACE_METHODS.iter().map(|m| (*m).to_owned()).collect()
}

fn check(token: &str) -> Result<regain_core::ida::VerifiedIdentity, &'static str> {
    check_with(token, &mut trust())
}

fn check_with(token: &str, trust: &mut Trust) -> Result<regain_core::ida::VerifiedIdentity, &'static str> {
    let frameworks = frameworks();
    let methods = face_methods();
    let expect = IdTokenExpectations {
        issuer: ISSUER,
        client_id: CLIENT_ID,
        nonce: NONCE,
        algs: &ALGS,
        now: NOW,
        skew: 60,
        max_age: 600,
        trust_frameworks: &frameworks,
        face_methods: &methods,
    };
    verify_id_token(token, &expect, &mut Parts { trust, verifier: &RustCrypto }).map_err(|r| r.code())
}

/// The payload of the default assertion, edited.
fn edited(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let a = assertion();
    let mut payload = a.payload();
    edit(payload.as_object_mut().unwrap());
    a.sign(&payload, &issuer_key())
}

/// A token with this header and the default payload, signed by the issuer key.
fn with_header(header: Value) -> String {
    regain_dev_idv::sign_jws(&header, &assertion().payload(), &issuer_key())
}

#[test]
fn a_valid_id_token_yields_only_the_verified_claims() {
    let token = edited(|p| {
        // An unverified name next to the verified ones must not be used.
        p.insert("given_name".into(), json!("Mallory"));
    });
    let identity = check(&token).unwrap();
    assert_eq!(identity.issuer, ISSUER);
    assert_eq!(identity.trust_framework, "eidas");
    assert_eq!(identity.face_method, "bvr");
    assert_eq!(identity.claims["given_name"], "Ana");
    assert_eq!(identity.claims.len(), 3);
}

#[test]
fn every_forged_or_misbound_id_token_is_refused_with_its_reason() {
    let a = assertion();
    let unsigned = {
        let token = a.id_token(&issuer_key());
        let (input, _) = token.rsplit_once('.').unwrap();
        format!("{input}.")
    };
    let hs256 = {
        let header = b64url_encode(br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#);
        let payload = b64url_encode(a.payload().to_string().as_bytes());
        format!("{header}.{payload}.{}", b64url_encode(&[7u8; 32]))
    };
    let duplicate_member = {
        let header = b64url_encode(br#"{"alg":"ES256","alg":"none","kid":"k1"}"#);
        let payload = b64url_encode(a.payload().to_string().as_bytes());
        let input = format!("{header}.{payload}");
        format!("{input}.{}", b64url_encode(&issuer_key().sign(input.as_bytes())))
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("signed by another key under the issuer's kid", a.id_token(&attacker_key()), "signature-invalid"),
        ("empty signature", unsigned, "signature-invalid"),
        ("alg none", with_header(json!({ "alg": "none", "kid": "k1" })), "alg-not-allowed"),
        ("HMAC with the public key as secret", hs256, "alg-not-allowed"),
        ("RS256", with_header(json!({ "alg": "RS256", "kid": "k1" })), "alg-not-allowed"),
        (
            "critical extension",
            with_header(json!({ "alg": "ES256", "kid": "k1", "crit": ["b64"] })),
            "crit-unsupported",
        ),
        ("credential typ", with_header(json!({ "alg": "ES256", "kid": "k1", "typ": "dc+sd-jwt" })), "typ-invalid"),
        ("unknown kid", with_header(json!({ "alg": "ES256", "kid": "k9" })), "issuer-key-not-found"),
        ("duplicate header member", duplicate_member, "malformed"),
        ("another issuer", edited(|p| drop(p.insert("iss".into(), json!("https://evil.example")))), "issuer-untrusted"),
        ("no iss", edited(|p| drop(p.remove("iss"))), "missing-claim"),
        ("another audience", edited(|p| drop(p.insert("aud".into(), json!("other-rp")))), "aud-mismatch"),
        (
            "several audiences, no azp",
            edited(|p| drop(p.insert("aud".into(), json!([CLIENT_ID, "other-rp"])))),
            "aud-mismatch",
        ),
        ("azp of another client", edited(|p| drop(p.insert("azp".into(), json!("other-rp")))), "aud-mismatch"),
        ("no aud", edited(|p| drop(p.remove("aud"))), "missing-claim"),
        ("expired", edited(|p| drop(p.insert("exp".into(), json!(NOW - 61)))), "expired"),
        ("no exp", edited(|p| drop(p.remove("exp"))), "missing-claim"),
        ("not yet valid", edited(|p| drop(p.insert("nbf".into(), json!(NOW + 600)))), "not-yet-valid"),
        ("issued in the future", edited(|p| drop(p.insert("iat".into(), json!(NOW + 120)))), "issued-in-future"),
        ("issued too long ago", edited(|p| drop(p.insert("iat".into(), json!(NOW - 601)))), "issued-too-long-ago"),
        ("no iat", edited(|p| drop(p.remove("iat"))), "missing-claim"),
        ("nonce of another flow", edited(|p| drop(p.insert("nonce".into(), json!("replayed")))), "nonce-mismatch"),
        ("no nonce", edited(|p| drop(p.remove("nonce"))), "nonce-mismatch"),
        ("no verified_claims", edited(|p| drop(p.remove("verified_claims"))), "verified-claims-missing"),
        (
            "verified_claims without trust_framework",
            edited(|p| drop(p["verified_claims"]["verification"].as_object_mut().unwrap().remove("trust_framework"))),
            "verified-claims-missing",
        ),
        (
            "verified_claims without claims",
            edited(|p| drop(p["verified_claims"].as_object_mut().unwrap().remove("claims"))),
            "verified-claims-missing",
        ),
        (
            "unaccepted trust framework",
            edited(|p| p["verified_claims"]["verification"]["trust_framework"] = json!("self_asserted")),
            "trust-framework-not-accepted",
        ),
        (
            "no face comparison in the evidence",
            Assertion { face_method: None, ..assertion() }.id_token(&issuer_key()),
            "face-evidence-missing",
        ),
        (
            "face comparison method not accepted",
            Assertion { face_method: Some("kbv"), ..assertion() }.id_token(&issuer_key()),
            "face-evidence-missing",
        ),
        ("two parts", "eyJhbGciOiJFUzI1NiJ9.e30".to_owned(), "malformed"),
        ("oversized", "a".repeat(regain_core::ida::MAX_ID_TOKEN_BYTES + 1), "too-large"),
    ];
    assert!(cases.len() >= 30);
    for (name, token, expected) in cases {
        assert_eq!(check(&token).err(), Some(expected), "{name}");
    }
}

#[test]
fn keys_of_the_issuer_only_and_fail_closed_when_unavailable() {
    let token = assertion().id_token(&issuer_key());
    let mut down = trust();
    down.issuers.insert(ISSUER.into(), None);
    assert_eq!(check_with(&token, &mut down).err(), Some("issuer-keys-unavailable"));

    // The attacker's key set, published for another issuer, never verifies this issuer's token.
    let mut other = trust();
    other.issuers.insert("https://evil.example".into(), Some(attacker_key().jwks(Some("k1")).to_string()));
    assert_eq!(check_with(&assertion().id_token(&attacker_key()), &mut other).err(), Some("signature-invalid"));

    // EdDSA keys work as well as ES256.
    let ed = SigningKey::ed25519(5);
    let mut eddsa = trust();
    eddsa.issuers.insert(ISSUER.into(), Some(ed.jwks(Some("k1")).to_string()));
    assert!(check_with(&assertion().id_token(&ed), &mut eddsa).is_ok());
}

#[test]
fn several_verified_claims_elements_pick_an_accepted_framework() {
    let token = edited(|p| {
        let accepted = p["verified_claims"].clone();
        let mut other = accepted.clone();
        other["verification"]["trust_framework"] = json!("self_asserted");
        other["claims"]["given_name"] = json!("Mallory");
        p.insert("verified_claims".into(), json!([other, accepted]));
    });
    let identity = check(&token).unwrap();
    assert_eq!(identity.claims["given_name"], "Ana");
    // One audience with a matching azp is fine too.
    let token = edited(|p| {
        p.insert("aud".into(), json!([CLIENT_ID, "other-rp"]));
        p.insert("azp".into(), json!(CLIENT_ID));
    });
    assert!(check(&token).is_ok());
}

const CONFIG: &str = r#"
scope_group = "recovery"

[verifier]
response_uri = "https://recovery.example.org/vp/response"

[[idv]]
id = "ida"
issuer = "https://idv.example"
mode = "oidc4ida"
countries = ["*"]

[idv.oidc4ida]
authorization_endpoint = "https://idv.example/authorize"
token_endpoint = "https://idv.example/token"
client_id = "regain-recovery"
redirect_uri = "https://recovery.example.org/idv/callback"
trust_frameworks = ["eidas"]
"#;

fn loaded() -> Loaded {
    Loaded::load(("regain.toml", CONFIG), &DEFAULT_POLICIES).unwrap()
}

fn user(id: &str, login: &str, given: &str, family: &str, privileged: bool) -> User {
    User {
        id: id.into(),
        login: login.into(),
        given_name: Some(given.into()),
        family_name: Some(family.into()),
        enabled: true,
        last_sign_in: Some(NOW - 86_400),
        groups: vec!["recovery".into()],
        country: Some("PT".into()),
        privileged,
        attributes: vec![],
    }
}

fn world() -> World {
    World::new(vec![
        user("u-ana", "ana@example.org", "Ana", "Silva", false),
        user("u-adm", "admin@example.org", "Ana", "Silva-Admin", true),
    ])
}

/// The query parameter `name` of `url`, decoded.
fn param(url: &str, name: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    let value = query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).unwrap();
    regain_core::openid4vp::form_decode(value).unwrap()
}

/// The provider's answer to the redirect: an ID token bound to the request's nonce.
fn provider_answer(step: &Step, given: &str, family: &str) -> String {
    let Step::Redirect { url, .. } = step else { panic!("expected a redirect, got {step:?}") };
    let nonce = param(url, "nonce");
    Assertion {
        nonce: &nonce,
        claims: vec![("given_name", json!(given)), ("family_name", json!(family))],
        ..assertion()
    }
    .id_token(&issuer_key())
}

#[test]
fn an_oidc4ida_recovery_redirects_verifies_and_issues() {
    let l = loaded();
    let mut w = world();
    let t1 = flow::start(&mut w, &l, "ana@example.org", &Client::default()).unwrap();
    let Step::Redirect { url, state, code_verifier } = &t1.step else { panic!("{:?}", t1.step) };
    assert!(url.starts_with("https://idv.example/authorize?response_type=code&client_id=regain-recovery&"));
    assert_eq!(param(url, "redirect_uri"), "https://recovery.example.org/idv/callback");
    assert_eq!(&param(url, "state"), state);
    assert_eq!(param(url, "code_challenge_method"), "S256");
    assert_eq!(param(url, "code_challenge"), b64url_encode(&Sha256::digest(code_verifier.as_bytes())));
    assert!(code_verifier.len() >= 43, "RFC 7636 asks for 43-128 characters");
    let claims: Value = serde_json::from_str(&param(url, "claims")).unwrap();
    assert_eq!(claims["id_token"]["verified_claims"]["verification"]["trust_framework"]["values"], json!(["eidas"]));
    assert!(claims["id_token"]["verified_claims"]["claims"].get("given_name").is_some());
    assert!(!format!("{:?}", t1.step).contains(code_verifier.as_str()), "the verifier is a secret");

    let token = provider_answer(&t1.step, "Ana", "Silva");
    let t2 = flow::resume(&mut w, &l, &t1.state, Input::IdToken(token.clone())).unwrap();
    let Step::Completed { one_time, .. } = &t2.step else { panic!("{:?}", t2.step) };
    assert!(one_time);
    assert_eq!(w.taps.len(), 1);
    assert_eq!(
        w.kinds(),
        vec![
            (AuditKind::RecoveryStarted, "ok".into()),
            (AuditKind::IssuanceStarted, "idv:ida".into()),
            (AuditKind::IssuanceCompleted, "ok".into()),
            (AuditKind::PresentationCompleted, "ok".into()),
            (AuditKind::AccountMatched, "matched-exact".into()),
            (AuditKind::FaceCheckPassed, "idv-evidence:bvr".into()),
            (AuditKind::RecoveryCompleted, "ok".into()),
        ]
    );

    // The same token again: the flow has ended; in a new flow its nonce is another's.
    let again = flow::resume(&mut w, &l, &t2.state, Input::IdToken(token.clone()));
    assert_eq!(again.unwrap_err().to_string(), "invalid input: the flow has already ended");
    let fresh = flow::start(&mut w, &l, "ana@example.org", &Client::default()).unwrap();
    let replay = flow::resume(&mut w, &l, &fresh.state, Input::IdToken(token)).unwrap();
    assert!(matches!(replay.step, Step::Failed { reason: FAILED, .. }));
    assert_eq!(
        w.audit.last().map(|e| (e.kind, e.reason.as_str())),
        Some((AuditKind::DocumentFailed, "nonce-mismatch"))
    );
    assert_eq!(w.taps.len(), 1);
}

#[test]
fn oidc4ida_flows_refuse_the_wrong_input_and_mismatches() {
    let l = loaded();
    let mut w = world();
    let t1 = flow::start(&mut w, &l, "ana@example.org", &Client::default()).unwrap();
    let wrong = flow::resume(&mut w, &l, &t1.state, Input::Presentation("vp_token=x&state=y".into()));
    assert_eq!(wrong.unwrap_err().to_string(), "invalid input: an ID token is expected");
    let selfie = flow::resume(&mut w, &l, &t1.state, Input::Selfie("face:90".into()));
    assert!(selfie.is_err());

    let t2 = flow::resume(&mut w, &l, &t1.state, Input::IdToken(provider_answer(&t1.step, "Joana", "Silva"))).unwrap();
    assert!(matches!(t2.step, Step::Failed { reason: FAILED, .. }));
    assert_eq!(w.audit.last().map(|e| e.kind), Some(AuditKind::AccountNotMatched));
    assert!(w.taps.is_empty());
}

#[test]
fn privileged_accounts_need_regains_own_face_score() {
    // The default policies demand a face score of 85 from privileged accounts; a provider's
    // evidence carries no score, so an OIDC4IDA recovery of an admin is denied.
    let l = loaded();
    let mut w = world();
    let t1 = flow::start(&mut w, &l, "admin@example.org", &Client::default()).unwrap();
    let t2 =
        flow::resume(&mut w, &l, &t1.state, Input::IdToken(provider_answer(&t1.step, "Ana", "Silva-Admin"))).unwrap();
    assert!(matches!(t2.step, Step::Failed { reason: FAILED, .. }));
    let last = w.audit.last().unwrap();
    assert_eq!(last.kind, AuditKind::RecoveryFailed);
    assert!(
        last.reason.starts_with("policy-denied:") && last.reason.contains("tap-privileged-face"),
        "{}",
        last.reason
    );
    assert!(w.taps.is_empty());
}

#[test]
fn unknown_logins_are_redirected_like_known_ones() {
    let l = loaded();
    let mut w = world();
    let known = flow::start(&mut w, &l, "ana@example.org", &Client::default()).unwrap();
    let unknown = flow::start(&mut w, &l, "nobody@example.org", &Client::default()).unwrap();
    let (Step::Redirect { url: a, .. }, Step::Redirect { url: b, .. }) = (&known.step, &unknown.step) else {
        panic!("{:?} / {:?}", known.step, unknown.step)
    };
    assert_eq!(a.len(), b.len());
    let t = flow::resume(&mut w, &l, &unknown.state, Input::IdToken(provider_answer(&unknown.step, "Ana", "Silva")))
        .unwrap();
    assert!(matches!(t.step, Step::Failed { reason: FAILED, .. }));
    assert!(w.taps.is_empty());
}

#[test]
fn claim_bindings_rename_a_providers_claims() {
    let config = CONFIG.replace(
        "[idv.oidc4ida]",
        "[idv.claims]\ngiven_name = \"first_name\"\nfamily_name = \"last_name\"\n\n[idv.oidc4ida]",
    );
    let l = Loaded::load(("regain.toml", &config), &DEFAULT_POLICIES).unwrap();
    let mut w = world();
    let t1 = flow::start(&mut w, &l, "ana@example.org", &Client::default()).unwrap();
    let Step::Redirect { url, .. } = &t1.step else { panic!("{:?}", t1.step) };
    let asked: Value = serde_json::from_str(&param(url, "claims")).unwrap();
    let asked = &asked["id_token"]["verified_claims"]["claims"];
    assert!(asked.get("first_name").is_some() && asked.get("given_name").is_none(), "{asked}");

    let nonce = param(url, "nonce");
    let token = Assertion {
        nonce: &nonce,
        claims: vec![("first_name", json!("Ana")), ("last_name", json!("Silva"))],
        ..assertion()
    }
    .id_token(&issuer_key());
    let t2 = flow::resume(&mut w, &l, &t1.state, Input::IdToken(token)).unwrap();
    assert!(matches!(t2.step, Step::Completed { .. }), "{:?} {:?}", t2.step, w.kinds());

    let unknown = CONFIG.replace("[idv.oidc4ida]", "[idv.claims]\nshoe_size = \"size\"\n\n[idv.oidc4ida]");
    let err = Loaded::load(("regain.toml", &unknown), &DEFAULT_POLICIES).unwrap_err().to_string();
    assert!(err.contains("`idv.claims.shoe_size` of `ida` binds a claim Regain does not use"), "{err}");
}
