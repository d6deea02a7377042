//! Passkeys over real HTTP on a loopback port, on SQLite and on PostgreSQL, with a software
//! authenticator making real P-256 signatures: registration after a pass sign-in and by a
//! signed-in user, sign-in with a discoverable passkey alone (`amr` `hwk`), and the
//! refusals (challenge, origin, RP ID, flags, signature, counter, algorithm, CBOR, format,
//! session), each leaving the stored credentials and the account as they were.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use crate::support::authenticator::{Assertion, Authenticator, Ceremony, Format, Registration, UP, UV};
use crate::support::databases;
use regain_core::jose::{Alg, Jws, b64url_encode, parse_jwks};
use regain_server::accounts::Account;
use regain_server::auth::hash_password;
use regain_server::passkeys::{Ceremony as StoredCeremony, Passkey};
use regain_server::provider::{Client, Provider};
use regain_server::store::{Store, digest, now, random_hex};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::Value;

const RP: &str = "https://rp.example/cb";
const GENERIC_FAILURE: &str = "The login or the credentials are not correct.";
const NOT_REGISTERED: &str = "The passkey could not be registered; try again.";

struct Server {
    base: String,
    provider: Provider,
    http: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

async fn serve(store: Store, dir: Option<tempfile::TempDir>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let client = Client {
        client_id: "rp".into(),
        redirect_uris: vec![RP.into()],
        post_logout_redirect_uris: vec![],
        client_secret: None,
    };
    let provider = Provider::new(&base, vec![client], store).await.unwrap();
    let router = provider.clone().router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Server { base, provider, http: browser(), _dir: dir }
}

/// A browser of its own: a cookie jar, redirects not followed.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).cookie_store(true).build().unwrap()
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = random_hex(32).unwrap();
    let challenge = b64url_encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    Pkce { verifier, challenge }
}

fn auth_params(p: &Pkce) -> Vec<(String, String)> {
    [
        ("client_id", "rp"),
        ("redirect_uri", RP),
        ("response_type", "code"),
        ("scope", "openid profile"),
        ("state", "st-1"),
        ("nonce", "nonce-1"),
        ("code_challenge", &p.challenge),
        ("code_challenge_method", "S256"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec()
}

/// The authorization request's parameters and `fields`, as a form.
fn form(p: &Pkce, fields: &[(&str, String)]) -> Vec<(String, String)> {
    let mut form = auth_params(p);
    form.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    form
}

fn location_param(response: &reqwest::Response, name: &str) -> Option<String> {
    let location = response.headers().get("location")?.to_str().ok()?;
    let query = location.split_once('?')?.1;
    query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).and_then(regain_core::openid4vp::form_decode)
}

async fn user(s: &Server, login: &str, password: Option<&str>) -> Account {
    let account = Account {
        id: format!("u-{}", random_hex(4).unwrap()),
        login: login.into(),
        given_name: Some("Bob".into()),
        family_name: Some("Costa".into()),
        enabled: true,
        password_hash: password.map(|p| hash_password(p).unwrap()),
        ..Account::default()
    };
    s.provider.store.create_user(&account, now()).await.unwrap();
    account
}

/// Signs `login` in with a fresh pass in `http`: the forced registration page.
async fn tap_sign_in(s: &Server, http: &reqwest::Client, account: &Account, p: &Pkce) -> String {
    let pass = s.provider.passes.issue(&account.id, 3600, 0, true, 24, now()).await.unwrap();
    let fields = [("method", "tap".to_owned()), ("login", account.login.clone()), ("tap", pass.secret.clone())];
    let page = http.post(format!("{}/authorize", s.base)).form(&form(p, &fields)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    page.text().await.unwrap()
}

/// POSTs JSON options requests; the status and the JSON answered.
async fn options(s: &Server, http: &reqwest::Client, path: &str, p: &Pkce) -> (StatusCode, Value) {
    let body: serde_json::Map<String, Value> = auth_params(p).into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    let response = http.post(format!("{}{path}", s.base)).json(&body).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn post_registration(
    s: &Server,
    http: &reqwest::Client,
    p: &Pkce,
    challenge_id: &str,
    r: &Registration,
) -> reqwest::Response {
    let fields = [
        ("challenge_id", challenge_id.to_owned()),
        ("client_data_json", b64url_encode(&r.client_data_json)),
        ("attestation_object", b64url_encode(&r.attestation_object)),
        ("label", "Security key".to_owned()),
    ];
    http.post(format!("{}/register-passkey", s.base)).form(&form(p, &fields)).send().await.unwrap()
}

async fn post_assertion(
    s: &Server,
    http: &reqwest::Client,
    p: &Pkce,
    challenge_id: &str,
    a: &Assertion,
) -> reqwest::Response {
    let mut fields = vec![
        ("challenge_id", challenge_id.to_owned()),
        ("credential_id", b64url_encode(&a.credential_id)),
        ("client_data_json", b64url_encode(&a.client_data_json)),
        ("authenticator_data", b64url_encode(&a.authenticator_data)),
        ("signature", b64url_encode(&a.signature)),
    ];
    if let Some(handle) = &a.user_handle {
        fields.push(("user_handle", b64url_encode(handle)));
    }
    http.post(format!("{}/passkey/sign-in", s.base)).form(&form(p, &fields)).send().await.unwrap()
}

async fn id_token_claims(s: &Server, code: &str, verifier: &str) -> serde_json::Map<String, Value> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", RP),
        ("client_id", "rp"),
        ("code_verifier", verifier),
    ];
    let tokens: Value =
        s.http.post(format!("{}/token", s.base)).form(&form).send().await.unwrap().json().await.unwrap();
    let jwks = s.http.get(format!("{}/jwks", s.base)).send().await.unwrap().text().await.unwrap();
    let jws = Jws::parse(tokens["id_token"].as_str().unwrap(), &[Alg::Es256]).unwrap();
    jws.verify_with(&parse_jwks(jwks.as_bytes()).unwrap(), &regain_host::NativeVerifier).unwrap();
    jws.claims
}

/// An authenticator whose credential is stored for `account` with counter `count`.
async fn enrolled(s: &Server, account: &Account, count: u32) -> Authenticator {
    let mut key = Authenticator::new();
    key.sign_count = count;
    key.user_handle = Some(account.id.as_bytes().to_vec());
    let stored = Passkey {
        credential_id: key.credential_id_b64(),
        user_id: account.id.clone(),
        public_key: key.public_key(),
        sign_count: count,
        label: "Security key".into(),
        created_at: now(),
        last_used_at: None,
    };
    assert!(s.provider.store.insert_passkey(&stored).await.unwrap());
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_sign_in_registers_a_passkey_then_the_passkey_alone_signs_in() {
    for (store, dir) in databases().await {
        let s = serve(store, dir).await;
        let bob = user(&s, "bob@example.org", None).await;
        let p = pkce();
        let page = tap_sign_in(&s, &s.http, &bob, &p).await;
        assert!(page.contains("Register a new sign-in method") && page.contains("Register a passkey"));
        assert!(page.contains("action=\"/register-passkey\""));

        let (status, answer) = options(&s, &s.http, "/passkey/register/options", &p).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let creation = &answer["publicKey"];
        assert_eq!(creation["rp"]["id"], "127.0.0.1");
        assert_eq!(creation["user"]["id"], b64url_encode(bob.id.as_bytes()));
        assert_eq!(creation["user"]["name"], "bob@example.org");
        assert_eq!(creation["pubKeyCredParams"], serde_json::json!([{ "type": "public-key", "alg": -7 }]));
        assert_eq!(
            (creation["attestation"].as_str(), creation["excludeCredentials"].as_array().map(Vec::len)),
            (Some("none"), Some(0))
        );
        assert_eq!(creation["authenticatorSelection"]["residentKey"], "preferred");

        let mut key = Authenticator::new();
        let registration = key.register(creation, &s.base);
        let done = post_registration(&s, &s.http, &p, answer["challenge_id"].as_str().unwrap(), &registration).await;
        assert_eq!(done.status(), StatusCode::SEE_OTHER, "{}", done.text().await.unwrap());
        let code = location_param(&done, "code").expect("a code once a passkey is registered");
        assert_eq!(location_param(&done, "state").as_deref(), Some("st-1"));
        let claims = id_token_claims(&s, &code, &p.verifier).await;
        assert_eq!(claims["amr"], serde_json::json!(["tap"]), "this session began with the pass");

        let stored = s.provider.store.passkeys_of(&bob.id).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(
            (stored[0].credential_id.as_str(), stored[0].label.as_str()),
            (key.credential_id_b64().as_str(), "Security key")
        );
        assert_eq!((stored[0].public_key.clone(), stored[0].sign_count), (key.public_key(), 0));
        assert!(!s.provider.store.user_by_id(&bob.id).await.unwrap().unwrap().must_register);

        // Later, another browser: no login typed, the authenticator offers the passkey.
        let later = browser();
        let p = pkce();
        let login = later.get(format!("{}/authorize", s.base)).query(&auth_params(&p)).send().await.unwrap();
        let login = login.text().await.unwrap();
        assert!(login.contains("Sign in with a passkey") && login.contains("action=\"/passkey/sign-in\""));
        let (status, answer) = options(&s, &later, "/passkey/sign-in/options", &p).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let request = &answer["publicKey"];
        assert_eq!(
            (request["rpId"].as_str(), request["userVerification"].as_str()),
            (Some("127.0.0.1"), Some("preferred"))
        );
        assert!(request.get("allowCredentials").is_none(), "discoverable: no allow list");
        let assertion = key.assert(request, &s.base);
        let signed = post_assertion(&s, &later, &p, answer["challenge_id"].as_str().unwrap(), &assertion).await;
        assert_eq!(signed.status(), StatusCode::SEE_OTHER);
        assert!(signed.headers().get("set-cookie").is_some(), "a browser session");
        let code = location_param(&signed, "code").unwrap();
        let claims = id_token_claims(&s, &code, &p.verifier).await;
        assert_eq!((claims["sub"].as_str(), claims["nonce"].as_str()), (Some(bob.id.as_str()), Some("nonce-1")));
        assert_eq!(claims["amr"], serde_json::json!(["hwk"]));

        let stored = s.provider.store.passkey(&key.credential_id_b64()).await.unwrap().unwrap();
        assert_eq!(stored.sign_count, 1);
        assert!(stored.last_used_at.is_some());
        assert!(s.provider.store.user_by_id(&bob.id).await.unwrap().unwrap().last_sign_in.is_some());
        // The session works like any other: a new authorization answers a code at once.
        let again = later.get(format!("{}/authorize", s.base)).query(&auth_params(&p)).send().await.unwrap();
        assert!(location_param(&again, "code").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_user_adds_a_packed_self_attested_passkey() {
    for (store, dir) in databases().await {
        let s = serve(store, dir).await;
        let ana = user(&s, "ana@example.org", Some("correct horse")).await;
        let p = pkce();
        let fields =
            [("method", "password".to_owned()), ("login", ana.login.clone()), ("password", "correct horse".to_owned())];
        let signed = s.http.post(format!("{}/authorize", s.base)).form(&form(&p, &fields)).send().await.unwrap();
        assert!(location_param(&signed, "code").is_some());

        let add = s.http.get(format!("{}/passkey/register", s.base)).query(&auth_params(&p)).send().await.unwrap();
        let add = add.text().await.unwrap();
        assert!(add.contains("Add a passkey") && add.contains("Register a passkey"));
        assert!(add.contains("Continue without adding a passkey"));

        let (_, answer) = options(&s, &s.http, "/passkey/register/options", &p).await;
        let key = Authenticator::new();
        let ceremony = Ceremony::create(&answer["publicKey"], &s.base);
        let packed = key.register_with(&ceremony, Format::PackedSelf, -7);
        let done = post_registration(&s, &s.http, &p, answer["challenge_id"].as_str().unwrap(), &packed).await;
        assert!(location_param(&done, "code").is_some());
        assert_eq!(s.provider.store.passkeys_of(&ana.id).await.unwrap().len(), 1);

        // The next options exclude it, and registering the same credential again is refused.
        let (_, answer) = options(&s, &s.http, "/passkey/register/options", &p).await;
        assert_eq!(answer["publicKey"]["excludeCredentials"][0]["id"], key.credential_id_b64());
        let ceremony = Ceremony::create(&answer["publicKey"], &s.base);
        let again = key.register_with(&ceremony, Format::None, -7);
        let refused = post_registration(&s, &s.http, &p, answer["challenge_id"].as_str().unwrap(), &again).await;
        assert_eq!(refused.status(), StatusCode::OK);
        assert!(refused.text().await.unwrap().contains("This passkey is already registered"));
        assert_eq!(s.provider.store.passkeys_of(&ana.id).await.unwrap().len(), 1);

        // Removing the user's passkeys (what a recovery does) makes it useless.
        assert_eq!(s.provider.store.delete_passkeys(&ana.id).await.unwrap(), 1);
        let mut key = key;
        key.user_handle = Some(ana.id.as_bytes().to_vec());
        let other = browser();
        let (_, answer) = options(&s, &other, "/passkey/sign-in/options", &p).await;
        let assertion = key.assert(&answer["publicKey"], &s.base);
        let refused = post_assertion(&s, &other, &p, answer["challenge_id"].as_str().unwrap(), &assertion).await;
        assert!(refused.text().await.unwrap().contains(GENERIC_FAILURE));
    }
}

/// What a refused sign-in must look like: the login page with the generic message, no
/// session, no code.
async fn assert_refused_sign_in(response: reqwest::Response, case: &str) {
    assert_eq!(response.status(), StatusCode::OK, "{case}");
    assert!(response.headers().get("set-cookie").is_none(), "{case}: no session");
    assert!(response.headers().get("location").is_none(), "{case}: no code");
    let body = response.text().await.unwrap();
    assert!(body.contains(GENERIC_FAILURE), "{case}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_passkey_sign_ins_change_nothing() {
    for (store, dir) in databases().await {
        let s = serve(store, dir).await;
        let bob = user(&s, "bob@example.org", None).await;
        let carl = user(&s, "carl@example.org", None).await;
        let eve = user(&s, "eve@example.org", None).await;
        // Two credentials, so that no case reaches the failure limits of one of them.
        let mut key = enrolled(&s, &bob, 5).await;
        let mut other = enrolled(&s, &carl, 5).await;
        let p = pkce();

        // A good assertion works once; the same challenge again is refused.
        let http = browser();
        let (_, answer) = options(&s, &http, "/passkey/sign-in/options", &p).await;
        let good = key.assert(&answer["publicKey"], &s.base);
        let id = answer["challenge_id"].as_str().unwrap();
        let ok = post_assertion(&s, &http, &p, id, &good).await;
        assert!(location_param(&ok, "code").is_some());
        let replay = post_assertion(&s, &browser(), &p, id, &good).await;
        assert_refused_sign_in(replay, "replayed challenge").await;
        let before = s.provider.store.passkey(&key.credential_id_b64()).await.unwrap().unwrap();
        assert_eq!(before.sign_count, 6);
        let other_before = s.provider.store.passkey(&other.credential_id_b64()).await.unwrap().unwrap();

        type Tamper = fn(&mut Ceremony, &mut Authenticator);
        let cases: [(&str, Tamper); 6] = [
            ("wrong challenge", |c, _| c.challenge = vec![9; 32]),
            ("wrong origin", |c, _| c.origin = "https://evil.example".into()),
            ("wrong rp id", |c, _| c.rp_id = "evil.example".into()),
            ("user not present", |c, _| c.flags = UV),
            ("registration type", |c, _| c.kind = "webauthn.create".into()),
            ("counter regression", |_, k| k.sign_count = 1),
        ];
        for (case, tamper) in cases {
            let http = browser();
            let (_, answer) = options(&s, &http, "/passkey/sign-in/options", &p).await;
            let mut ceremony = Ceremony::get(&answer["publicKey"], &s.base);
            let saved = key.sign_count;
            tamper(&mut ceremony, &mut key);
            let assertion = key.assert_with(&ceremony);
            key.sign_count = saved;
            let response = post_assertion(&s, &http, &p, answer["challenge_id"].as_str().unwrap(), &assertion).await;
            assert_refused_sign_in(response, case).await;
        }

        let (_, answer) = options(&s, &browser(), "/passkey/sign-in/options", &p).await;
        let mut tampered = other.assert(&answer["publicKey"], &s.base);
        *tampered.signature.last_mut().unwrap() ^= 0x01;
        let response = post_assertion(&s, &browser(), &p, answer["challenge_id"].as_str().unwrap(), &tampered).await;
        assert_refused_sign_in(response, "tampered signature").await;

        let (_, answer) = options(&s, &browser(), "/passkey/sign-in/options", &p).await;
        let mut data = other.assert(&answer["publicKey"], &s.base);
        data.authenticator_data[36] ^= 0x7f;
        let response = post_assertion(&s, &browser(), &p, answer["challenge_id"].as_str().unwrap(), &data).await;
        assert_refused_sign_in(response, "tampered authenticator data").await;

        let (_, answer) = options(&s, &browser(), "/passkey/sign-in/options", &p).await;
        let mut foreign = other.assert(&answer["publicKey"], &s.base);
        foreign.user_handle = Some(eve.id.as_bytes().to_vec());
        let response = post_assertion(&s, &browser(), &p, answer["challenge_id"].as_str().unwrap(), &foreign).await;
        assert_refused_sign_in(response, "user handle of another user").await;

        let (_, answer) = options(&s, &browser(), "/passkey/sign-in/options", &p).await;
        let mut truncated = other.assert(&answer["publicKey"], &s.base);
        truncated.authenticator_data.truncate(20);
        let response = post_assertion(&s, &browser(), &p, answer["challenge_id"].as_str().unwrap(), &truncated).await;
        assert_refused_sign_in(response, "truncated authenticator data").await;

        let (_, answer) = options(&s, &browser(), "/passkey/sign-in/options", &p).await;
        let assertion = Authenticator::new().assert(&answer["publicKey"], &s.base);
        let response = post_assertion(&s, &browser(), &p, answer["challenge_id"].as_str().unwrap(), &assertion).await;
        assert_refused_sign_in(response, "unknown credential").await;

        let (_, answer) = options(&s, &browser(), "/passkey/sign-in/options", &p).await;
        let mut garbled = other.assert(&answer["publicKey"], &s.base);
        garbled.signature.clear();
        let mut response = post_assertion(&s, &browser(), &p, answer["challenge_id"].as_str().unwrap(), &garbled).await;
        assert_refused_sign_in(response, "empty signature").await;
        let (_, answer) = options(&s, &browser(), "/passkey/sign-in/options", &p).await;
        let fields = [
            ("challenge_id", answer["challenge_id"].as_str().unwrap().to_owned()),
            ("credential_id", other.credential_id_b64()),
            ("client_data_json", "not base64url!".to_owned()),
        ];
        response = browser().post(format!("{}/passkey/sign-in", s.base)).form(&form(&p, &fields)).send().await.unwrap();
        assert_refused_sign_in(response, "not base64url").await;

        // A challenge that expired, and one issued for a registration.
        let t = now();
        let store = &s.provider.store;
        store
            .put_webauthn_challenge("expired-1", StoredCeremony::SignIn, &[4; 32], None, t - 400, t - 100)
            .await
            .unwrap();
        store
            .put_webauthn_challenge("for-register", StoredCeremony::Register, &[4; 32], Some(&carl.id), t, t + 300)
            .await
            .unwrap();
        let ceremony = Ceremony {
            kind: "webauthn.get".into(),
            challenge: vec![4; 32],
            origin: s.base.clone(),
            rp_id: "127.0.0.1".into(),
            flags: UP,
        };
        for (case, id) in [("expired challenge", "expired-1"), ("registration challenge", "for-register")] {
            let assertion = other.assert_with(&ceremony);
            assert_refused_sign_in(post_assertion(&s, &browser(), &p, id, &assertion).await, case).await;
        }

        assert_eq!(store.passkey(&key.credential_id_b64()).await.unwrap().unwrap(), before, "unchanged");
        assert_eq!(store.passkey(&other.credential_id_b64()).await.unwrap().unwrap(), other_before, "unchanged");
        for account in [&carl, &eve] {
            assert!(store.user_by_id(&account.id).await.unwrap().unwrap().last_sign_in.is_none());
        }

        // Options are only handed out for a valid authorization request.
        let mut bad = auth_params(&p);
        bad[0].1 = "nobody".into();
        let body: serde_json::Map<String, Value> = bad.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        let refused = s.http.post(format!("{}/passkey/sign-in/options", s.base)).json(&body).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert_eq!(refused.json::<Value>().await.unwrap()["error"], "invalid_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_registrations_store_nothing() {
    for (store, dir) in databases().await {
        let s = serve(store, dir).await;
        let bob = user(&s, "bob@example.org", None).await;
        let p = pkce();
        tap_sign_in(&s, &s.http, &bob, &p).await;
        let key = Authenticator::new();

        type Make = fn(&Authenticator, &mut Ceremony) -> Registration;
        let cases: [(&str, Make); 13] = [
            ("wrong challenge", |k, c| {
                c.challenge = vec![1; 32];
                k.register_with(c, Format::None, -7)
            }),
            ("wrong origin", |k, c| {
                c.origin = "https://evil.example".into();
                k.register_with(c, Format::None, -7)
            }),
            ("wrong rp id", |k, c| {
                c.rp_id = "evil.example".into();
                k.register_with(c, Format::None, -7)
            }),
            ("user not present", |k, c| {
                c.flags = UV;
                k.register_with(c, Format::None, -7)
            }),
            ("sign-in type", |k, c| {
                c.kind = "webauthn.get".into();
                k.register_with(c, Format::None, -7)
            }),
            ("unsupported algorithm", |k, c| k.register_with(c, Format::None, -257)),
            ("unknown attestation format", |k, c| k.register_with(c, Format::Named("fido-u2f"), -7)),
            ("packed with a bad signature", |k, c| k.register_with(c, Format::PackedBadSignature, -7)),
            ("packed with a certificate chain", |k, c| k.register_with(c, Format::PackedWithChain, -7)),
            ("malformed cbor", |k, c| {
                let mut r = k.register_with(c, Format::None, -7);
                r.attestation_object = vec![0xa3, 0x63, b'f', b'm'];
                r
            }),
            ("trailing cbor", |k, c| {
                let mut r = k.register_with(c, Format::None, -7);
                r.attestation_object.push(0x00);
                r
            }),
            ("truncated authenticator data", |k, c| {
                let r = k.register_with(c, Format::None, -7);
                let auth_data = k.auth_data(&c.rp_id, c.flags | 0x40, 0, Some(&k.cose_key(-7)));
                let cut = &auth_data[..auth_data.len() - 10];
                let object =
                    Authenticator::attestation_object("none", crate::support::authenticator::Cbor::Map(vec![]), cut);
                Registration { attestation_object: object, ..r }
            }),
            ("client data not json", |k, c| {
                let mut r = k.register_with(c, Format::None, -7);
                r.client_data_json = b"{\"type\":".to_vec();
                r
            }),
        ];
        for (case, make) in cases {
            let (status, answer) = options(&s, &s.http, "/passkey/register/options", &p).await;
            assert_eq!(status, StatusCode::OK);
            let mut ceremony = Ceremony::create(&answer["publicKey"], &s.base);
            let registration = make(&key, &mut ceremony);
            let response =
                post_registration(&s, &s.http, &p, answer["challenge_id"].as_str().unwrap(), &registration).await;
            assert_eq!(response.status(), StatusCode::OK, "{case}");
            assert!(response.headers().get("location").is_none(), "{case}: no code");
            let body = response.text().await.unwrap();
            assert!(body.contains(NOT_REGISTERED) && body.contains("Register a new sign-in method"), "{case}: {body}");
        }

        // A challenge used once (by a failure) is spent, even for a good registration.
        let (_, answer) = options(&s, &s.http, "/passkey/register/options", &p).await;
        let id = answer["challenge_id"].as_str().unwrap();
        let mut ceremony = Ceremony::create(&answer["publicKey"], &s.base);
        let good = key.register_with(&ceremony, Format::None, -7);
        ceremony.origin = "https://evil.example".into();
        post_registration(&s, &s.http, &p, id, &key.register_with(&ceremony, Format::None, -7)).await;
        let replay = post_registration(&s, &s.http, &p, id, &good).await;
        assert!(replay.text().await.unwrap().contains(NOT_REGISTERED), "replayed challenge");

        // Expired, and issued to another user.
        let t = now();
        let store = &s.provider.store;
        store
            .put_webauthn_challenge("expired-1", StoredCeremony::Register, &[3; 32], Some(&bob.id), t - 400, t - 1)
            .await
            .unwrap();
        store
            .put_webauthn_challenge("eves-1", StoredCeremony::Register, &[3; 32], Some("u-eve"), t, t + 300)
            .await
            .unwrap();
        let ceremony = Ceremony { challenge: vec![3; 32], ..ceremony };
        let ceremony = Ceremony { origin: s.base.clone(), ..ceremony };
        for (case, id) in [("expired challenge", "expired-1"), ("another user's challenge", "eves-1")] {
            let response =
                post_registration(&s, &s.http, &p, id, &key.register_with(&ceremony, Format::None, -7)).await;
            assert!(response.text().await.unwrap().contains(NOT_REGISTERED), "{case}");
        }

        // Without a session: no options, and the form is refused.
        let stranger = browser();
        let (status, answer) = options(&s, &stranger, "/passkey/register/options", &p).await;
        assert_eq!((status, answer["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("login_required")));
        let (_, answer) = options(&s, &s.http, "/passkey/register/options", &p).await;
        let registration = key.register_with(&Ceremony::create(&answer["publicKey"], &s.base), Format::None, -7);
        let response =
            post_registration(&s, &stranger, &p, answer["challenge_id"].as_str().unwrap(), &registration).await;
        assert!(response.text().await.unwrap().contains("Sign in again to continue."));

        assert!(store.passkeys_of(&bob.id).await.unwrap().is_empty(), "nothing stored");
        assert!(store.user_by_id(&bob.id).await.unwrap().unwrap().must_register, "still must register");

        // The ceremony the stranger could not finish is still good for its owner.
        let response =
            post_registration(&s, &s.http, &p, answer["challenge_id"].as_str().unwrap(), &registration).await;
        assert!(location_param(&response, "code").is_some());
        assert_eq!(store.passkeys_of(&bob.id).await.unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_the_credential() {
    for (store, dir) in databases().await {
        let s = serve(store, dir).await;
        let bob = user(&s, "bob@example.org", None).await;
        let mut key = enrolled(&s, &bob, 0).await;
        let p = pkce();
        for _ in 0..10 {
            let (_, answer) = options(&s, &browser(), "/passkey/sign-in/options", &p).await;
            let mut bad = key.assert(&answer["publicKey"], &s.base);
            *bad.signature.last_mut().unwrap() ^= 0x01;
            let response = post_assertion(&s, &browser(), &p, answer["challenge_id"].as_str().unwrap(), &bad).await;
            assert_refused_sign_in(response, "bad signature").await;
        }
        let t = now();
        let window = t - t.rem_euclid(15 * 60);
        let key_name = format!("passkey-failures:{}", digest(&key.credential_id_b64()));
        assert_eq!(s.provider.store.hits(&key_name, window).await.unwrap(), 10);
        let (_, answer) = options(&s, &browser(), "/passkey/sign-in/options", &p).await;
        let good = key.assert(&answer["publicKey"], &s.base);
        let locked = post_assertion(&s, &browser(), &p, answer["challenge_id"].as_str().unwrap(), &good).await;
        assert!(location_param(&locked, "code").is_none());
        assert!(locked.text().await.unwrap().contains("Too many attempts"));
        assert_eq!(s.provider.store.passkey(&key.credential_id_b64()).await.unwrap().unwrap().sign_count, 0);
    }
}
