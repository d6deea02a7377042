//! SD-JWT VC verification against presentations forged with real keys and signatures.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

mod support;

use regain_core::jose::{Alg, b64url_encode};
use regain_core::sdjwt::{self, Expectations, MAX_DISCLOSURES, MAX_PRESENTATION_BYTES, StatusCheck};
use regain_dev_idv::keys::SigningKey;
use regain_dev_idv::sdjwt::Disclosure;
use regain_dev_idv::sign_jws;
use serde_json::{Value, json};
use support::*;

fn run(
    presentation: &str,
    trust: &mut Trust,
    edit: impl FnOnce(&mut Expectations<'_>),
) -> Result<sdjwt::VerifiedCredential, String> {
    let vcts = vcts();
    let mut expect = expectations(&vcts);
    edit(&mut expect);
    sdjwt::verify(presentation, &expect, trust, &RustCrypto).map_err(|r| r.code().to_owned())
}

fn check(presentation: &str) -> Result<sdjwt::VerifiedCredential, String> {
    run(presentation, &mut trust(), |_| {})
}

fn forged(edit: impl FnOnce(&mut Forge)) -> String {
    let mut forge = Forge::new();
    edit(&mut forge);
    forge.build()
}

#[test]
fn the_honest_presentation_verifies_with_every_claim_restored() {
    let mut trust = trust();
    let vc = run(&Forge::new().build(), &mut trust, |_| {}).unwrap();
    assert_eq!(vc.issuer, ISSUER);
    assert_eq!(vc.vct, VCT);
    assert!(vc.holder_bound);
    assert_eq!(vc.status, StatusCheck::Valid { uri: STATUS_URI.into(), index: STATUS_INDEX });
    assert_eq!(vc.claims["given_name"], "Ana");
    assert_eq!(vc.claims["family_name"], "Silva");
    assert_eq!(vc.claims["birthdate"], "1990-01-01");
    assert_eq!(
        vc.claims["address"],
        json!({ "street_address": "Rua Augusta 1", "locality": "Lisboa", "country": "PT" })
    );
    assert_eq!(vc.claims["nationalities"], json!(["PT", "BR"]), "decoy element dropped");
    assert!(!vc.claims.contains_key("_sd") && !vc.claims.contains_key("_sd_alg"));
    assert_eq!(trust.status_lookups, 1);
}

#[test]
fn undisclosed_claims_stay_hidden() {
    let d = disclosures();
    let presentation = forged(|f| f.presented.retain(|p| *p != d["birthdate"] && *p != d["nat_br"]));
    let vc = check(&presentation).unwrap();
    assert!(!vc.claims.contains_key("birthdate"));
    assert_eq!(vc.claims["nationalities"], json!(["PT"]));
}

#[test]
fn ed25519_issuers_and_holders_verify() {
    let issuer = SigningKey::ed25519(9);
    let holder = SigningKey::ed25519(10);
    let mut trust = trust();
    trust.issuers.insert(ISSUER.into(), Some(issuer.jwks(Some("ed")).to_string()));
    trust.lists.insert(
        STATUS_URI.into(),
        Some(regain_dev_idv::status::token(&issuer, Some("ed"), STATUS_URI, &statuses(), 2, NOW - 60, None)),
    );
    let presentation = forged(|f| {
        f.issuer = issuer.clone();
        f.header = json!({ "typ": "dc+sd-jwt", "alg": "EdDSA", "kid": "ed" });
        f.claims_mut().insert("cnf".into(), json!({ "jwk": holder.public_jwk(None) }));
        f.holder = holder.clone();
        f.kb_header = json!({ "typ": "kb+jwt", "alg": "EdDSA" });
    });
    let vc = run(&presentation, &mut trust, |_| {}).unwrap();
    assert!(vc.holder_bound);
}

#[test]
fn skew_is_tolerated_within_its_bound() {
    let presentation = forged(|f| {
        f.claims_mut().insert("exp".into(), (NOW - 30).into());
        f.claims_mut().insert("nbf".into(), (NOW + 30).into());
    });
    assert!(check(&presentation).is_ok());
}

#[test]
fn without_required_binding_or_status_a_bare_credential_verifies() {
    let presentation = forged(|f| {
        f.with_kb = false;
        f.claims_mut().remove("status");
    });
    let vc = run(&presentation, &mut trust(), |e| {
        e.holder_binding = false;
        e.require_status = false;
    })
    .unwrap();
    assert!(!vc.holder_bound);
    assert_eq!(vc.status, StatusCheck::NotListed);
}

/// A presentation built by `forge`, checked with `trust` and `edit`, must fail with `code`.
struct Case {
    name: &'static str,
    code: &'static str,
    presentation: String,
    trust: Trust,
    edit: fn(&mut Expectations<'_>),
}

fn case(name: &'static str, code: &'static str, presentation: String) -> Case {
    Case { name, code, presentation, trust: trust(), edit: |_| {} }
}

fn jwt_parts(presentation: &str) -> (String, String) {
    let (jwt, rest) = presentation.split_once('~').unwrap();
    (jwt.to_owned(), rest.to_owned())
}

fn cases() -> Vec<Case> {
    let d = disclosures();
    let honest = Forge::new().build();
    let mut cases = vec![
        // Shape and size.
        case("no separator", "malformed", Forge::new().sd_jwt().replace('~', "")),
        case("jwt with two parts", "malformed", {
            let (jwt, rest) = jwt_parts(&honest);
            format!("{}~{rest}", jwt.rsplit_once('.').unwrap().0)
        }),
        case("empty disclosure between separators", "malformed", honest.replacen('~', "~~", 1)),
        case("oversized", "too-large", format!("{honest}{}", "A".repeat(MAX_PRESENTATION_BYTES))),
        case("too many disclosures", "too-large", {
            let (jwt, _) = jwt_parts(&honest);
            format!("{jwt}~{}", "WyJhIiwiYiJd~".repeat(MAX_DISCLOSURES + 1))
        }),
        case("duplicate header member", "malformed", {
            let header = r#"{"typ":"dc+sd-jwt","alg":"ES256","alg":"none","kid":"k1"}"#;
            let claims = Forge::new().claims;
            let input =
                format!("{}.{}", b64url_encode(header.as_bytes()), b64url_encode(claims.to_string().as_bytes()));
            format!("{input}.{}~", b64url_encode(&issuer_key().sign(input.as_bytes())))
        }),
        // Algorithms and headers.
        case("alg none, unsigned", "alg-not-allowed", {
            let (jwt, rest) = jwt_parts(&honest);
            let mut parts = jwt.split('.');
            let _ = parts.next();
            let payload = parts.next().unwrap();
            let header = b64url_encode(br#"{"typ":"dc+sd-jwt","alg":"none"}"#);
            format!("{header}.{payload}.~{rest}")
        }),
        case("alg HS256", "alg-not-allowed", forged(|f| drop(f.header_mut().insert("alg".into(), "HS256".into())))),
        case("alg RS256", "alg-not-allowed", forged(|f| drop(f.header_mut().insert("alg".into(), "RS256".into())))),
        case("alg missing", "alg-not-allowed", forged(|f| drop(f.header_mut().remove("alg")))),
        case(
            "EdDSA header against a P-256 issuer",
            "issuer-key-not-found",
            forged(|f| {
                f.header_mut().insert("alg".into(), "EdDSA".into());
                f.issuer = SigningKey::ed25519(9);
            }),
        ),
        case("typ missing", "typ-invalid", forged(|f| drop(f.header_mut().remove("typ")))),
        case("typ vc+sd-jwt", "typ-invalid", forged(|f| drop(f.header_mut().insert("typ".into(), "vc+sd-jwt".into())))),
        case(
            "critical extension",
            "crit-unsupported",
            forged(|f| drop(f.header_mut().insert("crit".into(), json!(["exp"])))),
        ),
        // Issuer and signature.
        case("payload altered after signing", "signature-invalid", {
            let (jwt, rest) = jwt_parts(&honest);
            let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
            let mut claims = Forge::new().claims;
            claims["vct"] = json!(VCT);
            claims["exp"] = json!(NOW + 999_999);
            parts[1] = b64url_encode(claims.to_string().as_bytes());
            format!("{}~{rest}", parts.join("."))
        }),
        case(
            "signed by an attacker under the issuer's kid",
            "signature-invalid",
            forged(|f| f.issuer = attacker_key()),
        ),
        case(
            "attacker key embedded in the header",
            "signature-invalid",
            forged(|f| {
                f.issuer = attacker_key();
                f.header_mut().insert("jwk".into(), attacker_key().public_jwk(None));
            }),
        ),
        case("unknown kid", "issuer-key-not-found", forged(|f| drop(f.header_mut().insert("kid".into(), "k9".into())))),
        case(
            "untrusted issuer",
            "issuer-untrusted",
            forged(|f| drop(f.claims_mut().insert("iss".into(), "https://evil.example".into()))),
        ),
        case("issuer missing", "missing-claim", forged(|f| drop(f.claims_mut().remove("iss")))),
        case(
            "vct not accepted",
            "vct-not-accepted",
            forged(|f| drop(f.claims_mut().insert("vct".into(), "https://evil.example/id".into()))),
        ),
        case("vct missing", "missing-claim", forged(|f| drop(f.claims_mut().remove("vct")))),
        // Validity.
        case("expired", "expired", forged(|f| drop(f.claims_mut().insert("exp".into(), (NOW - 61).into())))),
        case(
            "not yet valid",
            "not-yet-valid",
            forged(|f| drop(f.claims_mut().insert("nbf".into(), (NOW + 61).into()))),
        ),
        case(
            "issued in the future",
            "issued-in-future",
            forged(|f| drop(f.claims_mut().insert("iat".into(), (NOW + 3600).into()))),
        ),
        case("no expiry", "missing-claim", forged(|f| drop(f.claims_mut().remove("exp")))),
        case(
            "expiry as text",
            "missing-claim",
            forged(|f| drop(f.claims_mut().insert("exp".into(), "tomorrow".into()))),
        ),
        // Disclosures.
        case(
            "sd_alg sha-512",
            "sd-alg-unsupported",
            forged(|f| drop(f.claims_mut().insert("_sd_alg".into(), "sha-512".into()))),
        ),
        case(
            "disclosure not base64url",
            "disclosure-malformed",
            forged(|f| f.presented.push(Disclosure::from_encoded("%%%".into()))),
        ),
        case(
            "disclosure is an object",
            "disclosure-malformed",
            forged(|f| f.presented.push(Disclosure::from_json(&json!({"salt": "s"})))),
        ),
        case(
            "disclosure of four elements",
            "disclosure-malformed",
            forged(|f| f.presented.push(Disclosure::from_json(&json!(["s", "n", 1, 2])))),
        ),
        case(
            "disclosure salt not a string",
            "disclosure-malformed",
            forged(|f| f.presented.push(Disclosure::from_json(&json!([7, "n", 1])))),
        ),
        case("same disclosure twice", "disclosure-duplicate", forged(|f| f.presented.push(d["given_name"].clone()))),
        case(
            "digest twice in _sd",
            "digest-duplicate",
            forged(|f| {
                let sd = f.claims_mut()["_sd"].as_array_mut().unwrap();
                sd.push(json!(d["given_name"].digest));
            }),
        ),
        case(
            "unreferenced disclosure",
            "disclosure-unreferenced",
            forged(|f| f.presented.push(Disclosure::property("salt-x", "role", &json!("admin")))),
        ),
        case(
            "disclosed name already in the payload",
            "disclosure-name-conflict",
            forged(|f| drop(f.claims_mut().insert("given_name".into(), "Eve".into()))),
        ),
        case("validity start disclosed selectively", "disclosure-reserved-claim", {
            let iss = Disclosure::property("salt-nbf", "nbf", &json!(NOW - 100));
            forged(|f| {
                f.claims_mut()["_sd"].as_array_mut().unwrap().push(json!(iss.digest));
                f.presented.push(iss.clone());
            })
        }),
        case("disclosure named _sd", "disclosure-malformed", {
            let bad = Disclosure::property("salt-sd", "_sd", &json!(["x"]));
            forged(|f| {
                f.claims_mut()["_sd"].as_array_mut().unwrap().push(json!(bad.digest));
                f.presented.push(bad.clone());
            })
        }),
        case("array element referenced from an object", "disclosure-malformed", {
            let bad = Disclosure::element("salt-el", &json!("x"));
            forged(|f| {
                f.claims_mut()["_sd"].as_array_mut().unwrap().push(json!(bad.digest));
                f.presented.push(bad.clone());
            })
        }),
        case("property referenced from an array", "disclosure-malformed", {
            let bad = Disclosure::property("salt-pr", "x", &json!("y"));
            forged(|f| {
                f.claims_mut().insert("tags".into(), json!([{ "...": bad.digest }]));
                f.presented.push(bad.clone());
            })
        }),
        case("_sd is not an array", "malformed", forged(|f| drop(f.claims_mut().insert("_sd".into(), json!("abc"))))),
        // Holder binding.
        case("no key binding JWT", "holder-binding-missing", forged(|f| f.with_kb = false)),
        case("no cnf", "cnf-invalid", forged(|f| drop(f.claims_mut().remove("cnf")))),
        case(
            "cnf with a private key",
            "cnf-invalid",
            forged(|f| {
                let mut jwk = holder_key().public_jwk(None);
                jwk["d"] = json!("c2VjcmV0");
                f.claims_mut().insert("cnf".into(), json!({ "jwk": jwk }));
            }),
        ),
        case("kb typ JWT", "kb-typ-invalid", forged(|f| f.kb_header["typ"] = json!("JWT"))),
        case("kb alg none", "kb-alg-not-allowed", forged(|f| f.kb_header["alg"] = json!("none"))),
        case(
            "kb EdDSA against a P-256 holder key",
            "kb-alg-not-allowed",
            forged(|f| {
                f.kb_header["alg"] = json!("EdDSA");
                f.holder = SigningKey::ed25519(10);
            }),
        ),
        case("kb signed by someone else", "kb-signature-invalid", forged(|f| f.holder = attacker_key())),
        case(
            "kb nonce of another transaction (replay)",
            "kb-nonce-mismatch",
            forged(|f| drop(f.kb_claims.insert("nonce".into(), "old-nonce".into()))),
        ),
        case(
            "kb for another verifier",
            "kb-aud-mismatch",
            forged(|f| drop(f.kb_claims.insert("aud".into(), "x509_san_dns:evil.example".into()))),
        ),
        case("kb aud as a list", "kb-malformed", forged(|f| drop(f.kb_claims.insert("aud".into(), json!([AUDIENCE]))))),
        case(
            "kb too old",
            "kb-iat-out-of-window",
            forged(|f| drop(f.kb_claims.insert("iat".into(), (NOW - 3600).into()))),
        ),
        case(
            "kb from the future",
            "kb-iat-out-of-window",
            forged(|f| drop(f.kb_claims.insert("iat".into(), (NOW + 3600).into()))),
        ),
        case("kb without nonce", "kb-malformed", forged(|f| drop(f.kb_claims.insert("nonce".into(), Value::Null)))),
        case("kb over other disclosures", "kb-sd-hash-mismatch", {
            let forge = Forge::new();
            let full = forge.sd_jwt();
            let kb = forge.kb_jwt(&full);
            let mut fewer = Forge::new();
            fewer.presented.retain(|p| *p != d["birthdate"]);
            format!("{}{kb}", fewer.sd_jwt())
        }),
        case("kb is not a JWS", "kb-malformed", format!("{}not-a-jwt", Forge::new().sd_jwt())),
    ];

    // Revocation.
    let status_edits: [(&'static str, &'static str, u64); 4] = [
        ("revoked", "revoked", 5),
        ("suspended", "suspended", 6),
        ("application-specific status", "status-unknown-value", 7),
        ("index past the end", "status-index-out-of-range", 4000),
    ];
    for (name, code, idx) in status_edits {
        cases.push(case(name, code, forged(|f| f.claims_mut()["status"]["status_list"]["idx"] = json!(idx))));
    }
    cases.push(case(
        "status by another mechanism",
        "status-unsupported",
        forged(|f| {
            f.claims_mut().insert("status".into(), json!({ "identifier_list": { "id": "1", "uri": "https://x" } }));
        }),
    ));
    cases.push(case("no status", "status-missing", forged(|f| drop(f.claims_mut().remove("status")))));

    let mut unavailable = case("status list unreachable", "status-unavailable", honest.clone());
    unavailable.trust.lists.insert(STATUS_URI.into(), None);
    cases.push(unavailable);
    let lists: [(&'static str, &'static str, String); 5] = [
        (
            "status list signed by an attacker",
            "status-list-invalid",
            regain_dev_idv::status::token(&attacker_key(), Some("k1"), STATUS_URI, &statuses(), 2, NOW, None),
        ),
        (
            "status list for another uri",
            "status-list-invalid",
            regain_dev_idv::status::token(
                &issuer_key(),
                Some("k1"),
                "https://idv.example/status/2",
                &statuses(),
                2,
                NOW,
                None,
            ),
        ),
        (
            "status list expired",
            "status-list-expired",
            regain_dev_idv::status::token(
                &issuer_key(),
                Some("k1"),
                STATUS_URI,
                &statuses(),
                2,
                NOW - 7200,
                Some(NOW - 3600),
            ),
        ),
        ("status list with typ JWT", "status-list-invalid", {
            let token = status_token(&statuses());
            let payload = token.split('.').nth(1).unwrap();
            let claims: Value = serde_json::from_slice(&regain_core::jose::b64url_decode(payload).unwrap()).unwrap();
            sign_jws(&json!({ "typ": "JWT", "alg": "ES256", "kid": "k1" }), &claims, &issuer_key())
        }),
        ("status list with three-bit entries", "status-list-invalid", {
            let claims =
                json!({ "sub": STATUS_URI, "iat": NOW, "status_list": { "bits": 3, "lst": "eNrbuRgAAhcBXQ" } });
            sign_jws(&json!({ "typ": "statuslist+jwt", "alg": "ES256", "kid": "k1" }), &claims, &issuer_key())
        }),
    ];
    for (name, code, token) in lists {
        let mut c = case(name, code, honest.clone());
        c.trust.lists.insert(STATUS_URI.into(), Some(token));
        cases.push(c);
    }

    // Trust material.
    let mut keys_down = case("issuer keys unreachable", "issuer-keys-unavailable", honest.clone());
    keys_down.trust.issuers.insert(ISSUER.into(), None);
    cases.push(keys_down);
    let mut private = case("issuer key set with private material", "issuer-keys-unavailable", honest.clone());
    let mut jwks = issuer_key().jwks(Some("k1"));
    jwks["keys"][0]["d"] = json!("c2VjcmV0");
    private.trust.issuers.insert(ISSUER.into(), Some(jwks.to_string()));
    cases.push(private);
    let mut other_issuer = case(
        "kid of another trusted issuer",
        "issuer-key-not-found",
        forged(|f| {
            f.issuer = attacker_key();
            f.header_mut().insert("kid".into(), "evil-1".into());
        }),
    );
    other_issuer
        .trust
        .issuers
        .insert("https://other-idv.example".into(), Some(attacker_key().jwks(Some("evil-1")).to_string()));
    cases.push(other_issuer);
    let mut only_es = case(
        "EdDSA not in the profile's algorithms",
        "alg-not-allowed",
        forged(|f| {
            f.issuer = SigningKey::ed25519(9);
            f.header_mut().insert("alg".into(), "EdDSA".into());
        }),
    );
    only_es.edit = |e| e.algs = &[Alg::Es256];
    cases.push(only_es);
    cases
}

#[test]
fn every_forged_presentation_is_rejected_with_its_reason() {
    let cases = cases();
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();
    for mut c in cases {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
        match run(&c.presentation, &mut c.trust, c.edit) {
            Err(code) if code == c.code => {}
            Err(code) => failures.push(format!("{}: expected {}, got {code}", c.name, c.code)),
            Ok(_) => failures.push(format!("{}: expected {}, but it verified", c.name, c.code)),
        }
    }
    assert!(failures.is_empty(), "{} cases wrong:\n{}", failures.len(), failures.join("\n"));
    assert!(names.len() >= 40, "only {} distinct forged presentations", names.len());
}

#[test]
fn status_is_checked_after_everything_else() {
    // A forged credential must not make the host fetch anything beyond the issuer's keys.
    let mut trust = trust();
    let presentation = forged(|f| f.holder = attacker_key());
    assert_eq!(run(&presentation, &mut trust, |_| {}).unwrap_err(), "kb-signature-invalid");
    assert_eq!(trust.status_lookups, 0);
}

const BITSTRING_URI: &str = "https://idv.example/credentials/status/3";

/// A credential whose status is a W3C Bitstring Status List entry instead of a Token Status
/// List reference, and a trust source serving `list` for it.
fn bitstring_case(purpose: &str, index: &str, list: Option<String>) -> (String, Trust) {
    let presentation = forged(|f| {
        let claims = f.claims_mut();
        claims.remove("status");
        claims.insert(
            "credentialStatus".into(),
            json!({
                "id": format!("{BITSTRING_URI}#{index}"),
                "type": "BitstringStatusListEntry",
                "statusPurpose": purpose,
                "statusListIndex": index,
                "statusListCredential": BITSTRING_URI,
            }),
        );
    });
    let mut trust = trust();
    trust.lists.insert(BITSTRING_URI.into(), list);
    (presentation, trust)
}

fn bitstring_list(purpose: &str, set: &[u64], until: Option<&str>) -> Option<String> {
    Some(regain_dev_idv::status::bitstring_credential(&issuer_key(), "k1", ISSUER, BITSTRING_URI, purpose, set, until))
}

#[test]
fn w3c_bitstring_status_lists_are_checked() {
    let (ok, mut trust) = bitstring_case("revocation", "94567", bitstring_list("revocation", &[3, 7], None));
    let vc = run(&ok, &mut trust, |_| {}).unwrap();
    assert_eq!(vc.status, StatusCheck::Valid { uri: BITSTRING_URI.into(), index: 94_567 });

    let attacker_list = regain_dev_idv::status::bitstring_credential(
        &attacker_key(),
        "k1",
        ISSUER,
        BITSTRING_URI,
        "revocation",
        &[],
        None,
    );
    let cases: Vec<(&str, &str, (String, Trust))> = vec![
        ("revoked entry", "revoked", bitstring_case("revocation", "7", bitstring_list("revocation", &[7], None))),
        ("suspended entry", "suspended", bitstring_case("suspension", "3", bitstring_list("suspension", &[3], None))),
        (
            "index past the list",
            "status-index-out-of-range",
            bitstring_case("revocation", "131072", bitstring_list("revocation", &[], None)),
        ),
        (
            "list expired",
            "status-list-expired",
            bitstring_case("revocation", "1", bitstring_list("revocation", &[], Some("2026-01-02T00:00:00Z"))),
        ),
        (
            "list for another purpose",
            "status-list-invalid",
            bitstring_case("revocation", "1", bitstring_list("suspension", &[], None)),
        ),
        ("list signed by another key", "status-list-invalid", bitstring_case("revocation", "1", Some(attacker_list))),
        ("list unavailable", "status-unavailable", bitstring_case("revocation", "1", None)),
        ("message purpose", "status-unsupported", bitstring_case("message", "1", bitstring_list("message", &[], None))),
        (
            "index not a decimal string",
            "missing-claim",
            bitstring_case("revocation", "0x10", bitstring_list("revocation", &[], None)),
        ),
    ];
    for (name, code, (presentation, mut trust)) in cases {
        assert_eq!(run(&presentation, &mut trust, |_| {}).err().as_deref(), Some(code), "{name}");
    }
}
