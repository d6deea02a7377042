//! The dev IDV over real HTTP on a loopback port: the verification page, OpenID4VCI with a
//! pre-authorized code (received by the dev wallet, verified with `regain-core`), the status
//! list and revocation, the face comparison endpoint, and the binary's start-up.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use crate::support::{http, start_idv, verify, verify_presentation};
use base64::Engine as _;
use regain_core::jose::b64url_decode;
use regain_core::sdjwt::{Rejection, StatusCheck};
use regain_core::status::{TokenStatus, TokenStatusList};
use regain_dev_idv::fixtures::Fixtures;
use regain_dev_idv::keys::SigningKey;
use regain_dev_idv::sdjwt::present;
use regain_dev_idv::service::{now, vct};
use regain_dev_idv::wallet::client::Wallet;
use regain_dev_idv::wallet::{PRE_AUTHORIZED_GRANT, PROOF_TYP, WalletError, proof_jwt};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn wallet(dir: &tempfile::TempDir) -> Wallet {
    Wallet::open(&dir.path().join("wallet.json")).unwrap()
}

/// The offer URL of a successful verification.
async fn offer(base: &str, person: &str) -> String {
    let (status, answer) = verify(base, person, person).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["passed"], true);
    let url = answer["credential_offer_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("openid-credential-offer://?credential_offer="), "{url}");
    assert!(answer["dev_wallet_url"].as_str().unwrap().starts_with("http://127.0.0.1:9/offer?credential_offer="));
    url
}

/// The list's status of `index`.
async fn status_of(base: &str, index: u64) -> TokenStatus {
    let token = reqwest::get(format!("{base}/status/1")).await.unwrap().text().await.unwrap();
    let payload: Value = serde_json::from_slice(&b64url_decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(payload["sub"], format!("{base}/status/1"));
    let list = &payload["status_list"];
    TokenStatusList::decode(list["bits"].as_u64().unwrap(), list["lst"].as_str().unwrap()).unwrap().get(index).unwrap()
}

#[tokio::test]
async fn a_verified_person_receives_a_holder_bound_credential_that_verifies() {
    let base = start_idv().await;
    let dir = tempfile::tempdir().unwrap();
    let wallet = wallet(&dir);

    // The metadata the wallet reads.
    let metadata: Value =
        reqwest::get(format!("{base}/.well-known/openid-credential-issuer")).await.unwrap().json().await.unwrap();
    assert_eq!(metadata["credential_issuer"], base);
    let configuration = &metadata["credential_configurations_supported"]["identity"];
    assert_eq!(configuration["format"], "dc+sd-jwt");
    assert_eq!(configuration["vct"], format!("{base}/credentials/identity"));
    assert_eq!(configuration["proof_types_supported"]["jwt"]["proof_signing_alg_values_supported"], json!(["ES256"]));
    let server: Value =
        reqwest::get(format!("{base}/.well-known/oauth-authorization-server")).await.unwrap().json().await.unwrap();
    assert_eq!(server["token_endpoint"], format!("{base}/token"));
    assert!(server["grant_types_supported"].as_array().unwrap().contains(&json!(PRE_AUTHORIZED_GRANT)));

    let url = offer(&base, "ana-silva").await;
    let credential = wallet.receive(&url).await.unwrap();
    assert_eq!(credential.issuer, base);
    assert_eq!(credential.vct, vct(&base));
    let store = wallet.store().unwrap();
    assert_eq!(store.credentials.len(), 1, "kept in the wallet file");
    let holder = store.holder().unwrap();
    assert_eq!(credential.holder_jwk().unwrap(), holder.public_jwk(None));

    // Presented with a key binding JWT, it verifies as Regain's verifier checks it.
    let issued = credential.issued().unwrap();
    let audience = "redirect_uri:https://recovery.example/response";
    let presentation = present(&issued, &issued.all(), &holder, "n-1", audience, now());
    let verified = verify_presentation(&base, &presentation, "n-1", audience).await.unwrap();
    assert!(verified.holder_bound);
    assert_eq!(verified.status, StatusCheck::Valid { uri: format!("{base}/status/1"), index: 100 });
    let claims = &verified.claims;
    assert_eq!(claims["given_name"], "Ana");
    assert_eq!(claims["family_name"], "Silva");
    assert_eq!(claims["birthdate"], "1985-02-11");
    assert_eq!(claims["nationality"], "PRT");
    let portrait = base64::engine::general_purpose::STANDARD.decode(claims["portrait"].as_str().unwrap()).unwrap();
    assert_eq!(portrait, Fixtures::generate().person("ana-silva").unwrap().portrait, "the document portrait");
    // Salts are random: the same person's second credential has other digests.
    let again = wallet.receive(&offer(&base, "ana-silva").await).await.unwrap();
    assert_ne!(again.issued().unwrap().disclosures, issued.disclosures);

    // Diacritics travel as UTF-8 from the visual zone.
    let jose = wallet.receive(&offer(&base, "jose-garcia-marquez").await).await.unwrap();
    let names: Vec<(String, Value)> = jose.claims();
    assert!(names.contains(&("family_name".into(), json!("García Márquez"))), "{names:?}");
    assert!(names.contains(&("given_name".into(), json!("José"))));
}

#[tokio::test]
async fn a_pre_authorized_code_works_once() {
    let base = start_idv().await;
    let dir = tempfile::tempdir().unwrap();
    let wallet = wallet(&dir);
    let url = offer(&base, "maria-santos-1980").await;
    wallet.receive(&url).await.unwrap();
    let again = wallet.receive(&url).await.unwrap_err();
    assert!(matches!(&again, WalletError::Remote(m) if m.contains("invalid_grant")), "{again}");
    let unknown = http()
        .post(format!("{base}/token"))
        .form(&[("grant_type", PRE_AUTHORIZED_GRANT), ("pre-authorized_code", "guessed")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(wallet.store().unwrap().credentials.len(), 1);
}

/// Exchanges a fresh offer's code; answers the access token and its `c_nonce`.
async fn access(base: &str, person: &str) -> (String, String) {
    let url = offer(base, person).await;
    let offer = regain_dev_idv::wallet::CredentialOffer::parse(&url).unwrap();
    let token: Value = http()
        .post(format!("{base}/token"))
        .form(&[("grant_type", PRE_AUTHORIZED_GRANT), ("pre-authorized_code", &offer.pre_authorized_code)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["token_type"], "Bearer");
    (token["access_token"].as_str().unwrap().to_owned(), token["c_nonce"].as_str().unwrap().to_owned())
}

async fn credential_request(base: &str, token: Option<&str>, proof: &str) -> (StatusCode, Value) {
    let mut request = http()
        .post(format!("{base}/credential"))
        .json(&json!({ "credential_configuration_id": "identity", "proofs": { "jwt": [proof] } }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn bad_proofs_are_refused_and_do_not_spend_the_token() {
    let base = start_idv().await;
    let holder = SigningKey::p256(42);
    let (token, nonce) = access(&base, "bjorn-odegard").await;
    let t = now();

    let cases: Vec<(String, &str)> = vec![
        (proof_jwt(&holder, "https://other-issuer.example", Some(&nonce), t), "invalid_proof"),
        (proof_jwt(&holder, &base, Some("a-nonce-never-given"), t), "invalid_nonce"),
        (proof_jwt(&holder, &base, None, t), "invalid_nonce"),
        (proof_jwt(&holder, &base, Some(&nonce), t - 3600), "invalid_proof"),
        // Another `typ`.
        (
            regain_dev_idv::sign_jws(
                &json!({ "typ": "JWT", "alg": "ES256", "jwk": holder.public_jwk(None) }),
                &json!({ "aud": base, "iat": t, "nonce": nonce }),
                &holder,
            ),
            "invalid_proof",
        ),
        // Signed by a key other than the one in `jwk`.
        (
            regain_dev_idv::sign_jws(
                &json!({ "typ": PROOF_TYP, "alg": "ES256", "jwk": holder.public_jwk(None) }),
                &json!({ "aud": base, "iat": t, "nonce": nonce }),
                &SigningKey::p256(43),
            ),
            "invalid_proof",
        ),
        // EdDSA is not among the proof algorithms offered.
        (proof_jwt(&SigningKey::ed25519(7), &base, Some(&nonce), t), "invalid_proof"),
    ];
    for (proof, error) in &cases {
        let (status, answer) = credential_request(&base, Some(&token), proof).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"], *error, "{answer}");
    }
    let (status, answer) = credential_request(&base, None, &cases[0].0).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"], "invalid_token");

    // The nonce was not consumed by the refused proofs above; the token still works once.
    let fresh: Value = http().post(format!("{base}/nonce")).send().await.unwrap().json().await.unwrap();
    let good = proof_jwt(&holder, &base, fresh["c_nonce"].as_str(), now());
    let (status, answer) = credential_request(&base, Some(&token), &good).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["credentials"][0]["credential"].as_str().unwrap().contains('~'));
    // A nonce is accepted once, and the token is spent.
    let (status, answer) = credential_request(&base, Some(&token), &good).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let (other_token, _) = access(&base, "bjorn-odegard").await;
    let (_, answer) = credential_request(&base, Some(&other_token), &good).await;
    assert_eq!(answer["error"], "invalid_nonce", "{answer}");
}

#[tokio::test]
async fn failed_checks_issue_nothing_and_say_why() {
    let base = start_idv().await;
    let failed = |answer: &Value, check: &str| {
        answer["checks"].as_array().unwrap().iter().any(|c| c["check"] == check && c["passed"] == false)
    };
    let (status, answer) = verify(&base, "erik-lindqvist", "erik-lindqvist").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(failed(&answer, "not expired"), "{answer}");
    assert!(answer.get("credential_offer").is_none());

    let (_, answer) = verify(&base, "maria-santos-1992", "someone-else").await;
    assert_eq!(answer["passed"], false);
    assert_eq!(answer["document_passed"], true);
    assert!(failed(&answer, "face match"), "{answer}");

    let (_, answer) = verify(&base, "ana-silva", "ana-silva-printed").await;
    assert!(failed(&answer, "liveness"), "{answer}");
    assert!(!failed(&answer, "face match"), "the right face, not live: {answer}");

    let (status, _) = verify(&base, "nobody", "ana-silva").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The page shows the same outcome to a person.
    let page = http()
        .post(format!("{base}/verify"))
        .form(&[("document", "erik-lindqvist"), ("selfie", "erik-lindqvist")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("DEV ONLY"));
    assert!(page.contains("the document expired on 2024-05-31"), "{page}");
    assert!(!page.contains("offer-link"));

    // An uploaded PGM selfie is compared like a fixture one.
    let selfie = Fixtures::generate().selfie("ana-silva").unwrap().image.clone();
    let upload =
        format!("data:image/x-portable-graymap;base64,{}", base64::engine::general_purpose::STANDARD.encode(selfie));
    let answer: Value = http()
        .post(format!("{base}/verify"))
        .header("accept", "application/json")
        .form(&[("document", "ana-silva"), ("selfie_upload", upload.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["passed"], true, "{answer}");
}

#[tokio::test]
async fn revocation_shows_in_the_status_list_and_fails_verification() {
    let base = start_idv().await;
    assert_eq!(status_of(&base, 105).await, TokenStatus::Invalid, "the revoked fixture is revoked at start");
    assert_eq!(status_of(&base, 100).await, TokenStatus::Valid);

    let dir = tempfile::tempdir().unwrap();
    let wallet = wallet(&dir);
    let holder = wallet.store().unwrap().holder().unwrap();
    let audience = "redirect_uri:https://recovery.example/response";
    let check = async |person: &str| {
        let credential = wallet.receive(&offer(&base, person).await).await.unwrap();
        let issued = credential.issued().unwrap();
        let presentation = present(&issued, &issued.all(), &holder, "n", audience, now());
        let verified = verify_presentation(&base, &presentation, "n", audience).await;
        (presentation, verified)
    };
    let (_, tomas) = check("tomas-novak").await;
    assert_eq!(tomas.unwrap_err(), Rejection::Revoked);
    let (ana, verified) = check("ana-silva").await;
    assert!(verified.is_ok());

    let revoked =
        http().post(format!("{base}/admin/revoke")).json(&json!({ "person": "ana-silva" })).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(revoked.json::<Value>().await.unwrap(), json!({ "revoked": 100 }));
    assert_eq!(status_of(&base, 100).await, TokenStatus::Invalid);
    assert_eq!(verify_presentation(&base, &ana, "n", audience).await.unwrap_err(), Rejection::Revoked);

    let by_index = http().post(format!("{base}/admin/revoke")).form(&[("index", "7")]).send().await.unwrap();
    assert_eq!(by_index.status(), StatusCode::OK);
    assert_eq!(status_of(&base, 7).await, TokenStatus::Invalid);
    let bad = http().post(format!("{base}/admin/revoke")).json(&json!({ "index": 99_999 })).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let unknown =
        http().post(format!("{base}/admin/revoke")).json(&json!({ "person": "nobody" })).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_face_service_scores_the_fixture_images() {
    let base = start_idv().await;
    let fixtures = Fixtures::generate();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let compare = async |portrait: &[u8], selfie: &[u8]| {
        let response = http()
            .post(format!("{base}/face/compare"))
            .json(&json!({ "portrait": b64(portrait), "selfie": b64(selfie) }))
            .send()
            .await
            .unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    let portrait = &fixtures.person("jose-garcia-marquez").unwrap().portrait;
    let (status, same) = compare(portrait, &fixtures.selfie("jose-garcia-marquez").unwrap().image).await;
    assert_eq!(status, StatusCode::OK);
    assert!(same["score"].as_u64().unwrap() >= 85, "{same}");
    assert_eq!(same["live"], true);
    let (_, other) = compare(portrait, &fixtures.selfie("someone-else").unwrap().image).await;
    assert!(other["score"].as_u64().unwrap() <= 40, "{other}");
    let (_, copy) = compare(portrait, portrait).await;
    assert_eq!(copy["live"], false, "the document's own photo is not a live selfie");
    let (status, error) = compare(portrait, b"face:91").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["error"], "invalid_image");
}

#[tokio::test]
async fn the_binary_says_dev_only_and_serves_its_keys() {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_regain-dev-idv"))
        .args(["--listen", "127.0.0.1:0"])
        .args(["--client", "regain-recovery=http://127.0.0.1:8080/recover/provider-callback"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(std::time::Duration::from_secs(60), line).await.unwrap().unwrap().unwrap();
    assert!(line.starts_with("DEV ONLY regain-dev-idv listening on"), "{line}");
    // Port 0 picks a free port; the issuer defaults to the address bound.
    let base = line.split_whitespace().nth(5).unwrap().to_owned();
    assert!(line.trim_end().ends_with(&format!("(issuer {base})")), "{line}");
    let metadata: Value =
        reqwest::get(format!("{base}/.well-known/openid-credential-issuer")).await.unwrap().json().await.unwrap();
    assert_eq!(metadata["credential_issuer"], base);
    let keys: Value = reqwest::get(format!("{base}/jwks")).await.unwrap().json().await.unwrap();
    assert_eq!(keys["keys"][0]["kid"], "dev-idv-es256-1");
    assert!(keys["keys"][0].get("d").is_none());
    let page = reqwest::get(format!("{base}/verify")).await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"dev-only\""));
    child.kill().unwrap();
    child.wait().unwrap();
}
