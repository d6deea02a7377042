//! The OpenID Provider over real HTTP on a loopback port, on SQLite and on PostgreSQL:
//! discovery, sign-in with password + TOTP, the code flow with PKCE, tokens and userinfo,
//! sign-in with a Temporary Access Pass and the forced registration that follows, and the
//! refusals (PKCE downgrade, redirect URI mismatch, code replay, pass reuse and expiry).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use crate::support::databases;
use regain_core::jose::{Alg, Jws, b64url_encode, parse_jwks};
use regain_server::accounts::Account;
use regain_server::auth::{Totp, hash_password};
use regain_server::provider::{Client, Provider};
use regain_server::store::{Store, now, random_hex};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::Value;

const RP: &str = "https://rp.example/cb";

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
        post_logout_redirect_uris: vec!["https://rp.example/bye".into()],
        client_secret: None,
    };
    let provider = Provider::new(&base, vec![client], store).await.unwrap();
    let router = provider.clone().router();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap()
    });
    let http = reqwest::Client::builder().redirect(Policy::none()).cookie_store(true).build().unwrap();
    Server { base, provider, http, _dir: dir }
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

fn auth_params(p: &Pkce) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", "rp".into()),
        ("redirect_uri", RP.into()),
        ("response_type", "code".into()),
        ("scope", "openid profile".into()),
        ("state", "st-1".into()),
        ("nonce", "nonce-1".into()),
        ("code_challenge", p.challenge.clone()),
        ("code_challenge_method", "S256".into()),
    ]
}

/// The query parameter `name` of a redirect's Location.
fn location_param(response: &reqwest::Response, name: &str) -> Option<String> {
    let location = response.headers().get("location")?.to_str().ok()?;
    let query = location.split_once('?')?.1;
    query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).and_then(regain_core::openid4vp::form_decode)
}

async fn user(s: &Server, login: &str, password: Option<&str>, totp: Option<&[u8]>) -> Account {
    let account = Account {
        id: format!("u-{}", random_hex(4).unwrap()),
        login: login.into(),
        given_name: Some("Ana".into()),
        family_name: Some("Silva".into()),
        enabled: true,
        password_hash: password.map(|p| hash_password(p).unwrap()),
        totp_secret: totp.map(<[u8]>::to_vec),
        attributes: [("email".to_owned(), format!("{login}.home"))].into(),
        ..Account::default()
    };
    s.provider.store.create_user(&account, now()).await.unwrap();
    account
}

async fn sign_in(s: &Server, p: &Pkce, fields: &[(&str, &str)]) -> reqwest::Response {
    let mut form: Vec<(String, String)> = auth_params(p).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    form.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    s.http.post(format!("{}/authorize", s.base)).form(&form).send().await.unwrap()
}

async fn redeem(s: &Server, code: &str, verifier: &str) -> (StatusCode, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", RP),
        ("client_id", "rp"),
        ("code_verifier", verifier),
    ];
    let response = s.http.post(format!("{}/token", s.base)).form(&form).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn verified_claims(s: &Server, id_token: &str) -> serde_json::Map<String, Value> {
    let jwks = s.http.get(format!("{}/jwks", s.base)).send().await.unwrap().text().await.unwrap();
    let keys = parse_jwks(jwks.as_bytes()).unwrap();
    let jws = Jws::parse(id_token, &[Alg::Es256]).unwrap();
    jws.verify_with(&keys, &regain_host::NativeVerifier).unwrap();
    jws.claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_totp_sign_in_through_the_code_flow() {
    for (store, dir) in databases().await {
        let s = serve(store, dir).await;
        let config: Value = s
            .http
            .get(format!("{}/.well-known/openid-configuration", s.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(config["issuer"], s.base);
        assert_eq!(config["code_challenge_methods_supported"], serde_json::json!(["S256"]));

        let secret = b"12345678901234567890";
        let ana = user(&s, "ana@example.org", Some("correct horse"), Some(secret)).await;
        let p = pkce();
        let page = s.http.get(format!("{}/authorize", s.base)).query(&auth_params(&p)).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.unwrap().contains("Recover your account"));

        let wrong =
            sign_in(&s, &p, &[("method", "password"), ("login", "ana@example.org"), ("password", "nope")]).await;
        assert!(wrong.text().await.unwrap().contains("The login or the credentials are not correct."));
        let code = Totp::new(secret).code_at_step(u64::try_from(now() / 30).unwrap(), 6);
        let fields =
            [("method", "password"), ("login", "ana@example.org"), ("password", "correct horse"), ("totp", &code)];
        let ok = sign_in(&s, &p, &fields).await;
        assert_eq!(ok.status(), StatusCode::SEE_OTHER);
        assert_eq!(location_param(&ok, "state").as_deref(), Some("st-1"));
        let auth_code = location_param(&ok, "code").unwrap();

        let (status, tokens) = redeem(&s, &auth_code, &p.verifier).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let claims = verified_claims(&s, tokens["id_token"].as_str().unwrap()).await;
        assert_eq!(
            (claims["sub"].as_str(), claims["aud"].as_str(), claims["nonce"].as_str()),
            (Some(ana.id.as_str()), Some("rp"), Some("nonce-1"))
        );
        assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp"]));
        let me: Value = s
            .http
            .get(format!("{}/userinfo", s.base))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["sub"], ana.id.as_str());

        // The same code again, and the same TOTP code again, are refused.
        let (status, replay) = redeem(&s, &auth_code, &p.verifier).await;
        assert_eq!((status, replay["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
        let other = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        let mut form: Vec<(String, String)> = auth_params(&p).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        form.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let reused = other.post(format!("{}/authorize", s.base)).form(&form).send().await.unwrap();
        assert_eq!(reused.status(), StatusCode::OK, "a TOTP code is accepted once");

        // Signed in: a new authorization goes straight back with a code, until logout.
        let again = s.http.get(format!("{}/authorize", s.base)).query(&auth_params(&p)).send().await.unwrap();
        assert!(location_param(&again, "code").is_some());
        let bye = s
            .http
            .get(format!("{}/logout", s.base))
            .query(&[("client_id", "rp"), ("post_logout_redirect_uri", "https://rp.example/bye")])
            .send()
            .await
            .unwrap();
        assert_eq!(bye.headers()["location"], "https://rp.example/bye");
        let after = s.http.get(format!("{}/authorize", s.base)).query(&auth_params(&p)).send().await.unwrap();
        assert_eq!(after.status(), StatusCode::OK, "the login page again");
        let ended = s
            .http
            .get(format!("{}/userinfo", s.base))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(ended.status(), StatusCode::UNAUTHORIZED, "logout ends the access tokens too");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrades_mismatches_and_wrong_verifiers_are_refused() {
    for (store, dir) in databases().await {
        let s = serve(store, dir).await;
        user(&s, "ana@example.org", Some("pw"), None).await;
        let p = pkce();
        let mut plain = auth_params(&p);
        plain[7].1 = "plain".into();
        let refused = s.http.get(format!("{}/authorize", s.base)).query(&plain).send().await.unwrap();
        assert_eq!(location_param(&refused, "error").as_deref(), Some("invalid_request"));
        assert_eq!(location_param(&refused, "state").as_deref(), Some("st-1"));

        let mut elsewhere = auth_params(&p);
        elsewhere[1].1 = "https://rp.example/cb/".into();
        let page = s.http.get(format!("{}/authorize", s.base)).query(&elsewhere).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::BAD_REQUEST, "never redirected to an unregistered URI");
        assert!(page.headers().get("location").is_none());

        let ok = sign_in(&s, &p, &[("method", "password"), ("login", "ana@example.org"), ("password", "pw")]).await;
        let code = location_param(&ok, "code").unwrap();
        let (status, error) = redeem(&s, &code, &pkce().verifier).await;
        assert_eq!((status, error["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
        let (status, _) = redeem(&s, &code, &p.verifier).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "a code tried with a wrong verifier is spent");

        let form = [("grant_type", "password"), ("username", "ana"), ("password", "pw")];
        let response = s.http.post(format!("{}/token", s.base)).form(&form).send().await.unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unsupported_grant_type");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_sign_in_gets_no_tokens_until_a_new_method_is_registered() {
    for (store, dir) in databases().await {
        let s = serve(store, dir).await;
        let bob = user(&s, "bob@example.org", None, None).await;
        let pass = s.provider.passes.issue(&bob.id, 3600, 0, true, 24, now()).await.unwrap();
        let p = pkce();
        let signed = sign_in(&s, &p, &[("method", "tap"), ("login", "bob@example.org"), ("tap", &pass.secret)]).await;
        assert_eq!(signed.status(), StatusCode::OK, "no code yet");
        let page = signed.text().await.unwrap();
        assert!(page.contains("Register a new sign-in method"));
        let secret = page.split("<code id=\"totp-secret\">").nth(1).unwrap().split('<').next().unwrap().to_owned();

        // Another authorization while registration is pending: still no code.
        let pending = s.http.get(format!("{}/authorize", s.base)).query(&auth_params(&p)).send().await.unwrap();
        assert!(location_param(&pending, "code").is_none());

        let key = base32(&secret);
        let code = Totp::new(&key).code_at_step(u64::try_from(now() / 30).unwrap(), 6);
        let mut form: Vec<(String, String)> = auth_params(&p).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        form.push(("secret".into(), secret.clone()));
        form.push(("code".into(), code));
        // Without a password left, the user chooses one with the authenticator app.
        form.push(("new_password".into(), "short".into()));
        let refused = s.http.post(format!("{}/register-totp", s.base)).form(&form).send().await.unwrap();
        assert!(refused.text().await.unwrap().contains("Choose a password of at least 12 characters"));
        form.pop();
        form.push(("new_password".into(), "a long new passphrase".into()));
        let registered = s.http.post(format!("{}/register-totp", s.base)).form(&form).send().await.unwrap();
        let auth_code = location_param(&registered, "code").expect("a code once registered");
        let (_, tokens) = redeem(&s, &auth_code, &p.verifier).await;
        let claims = verified_claims(&s, tokens["id_token"].as_str().unwrap()).await;
        assert_eq!(claims["amr"], serde_json::json!(["tap"]));
        let stored = s.provider.store.user_by_id(&bob.id).await.unwrap().unwrap();
        assert!(stored.totp_secret.is_some() && !stored.must_register);

        // The pass is spent; an expired one never worked.
        let fresh = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        let mut form: Vec<(String, String)> = auth_params(&p).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        form.extend(
            [("method", "tap"), ("login", "bob@example.org"), ("tap", pass.secret.as_str())]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let reuse = fresh.post(format!("{}/authorize", s.base)).form(&form).send().await.unwrap();
        assert!(reuse.text().await.unwrap().contains("This pass is not valid, has expired or was already used."));
        let expired = s.provider.passes.issue(&bob.id, 60, 0, true, 24, now() - 120).await.unwrap();
        let mut form: Vec<(String, String)> = auth_params(&p).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        form.extend(
            [("method", "tap"), ("login", "bob@example.org"), ("tap", expired.secret.as_str())]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let late = fresh.post(format!("{}/authorize", s.base)).form(&form).send().await.unwrap();
        assert!(late.text().await.unwrap().contains("has expired"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_the_login_for_the_window() {
    for (store, dir) in databases().await {
        let s = serve(store, dir).await;
        user(&s, "ana@example.org", Some("right"), None).await;
        let p = pkce();
        for _ in 0..10 {
            let wrong =
                sign_in(&s, &p, &[("method", "password"), ("login", "ana@example.org"), ("password", "wrong")]).await;
            assert!(wrong.text().await.unwrap().contains("The login or the credentials are not correct."));
        }
        let locked =
            sign_in(&s, &p, &[("method", "password"), ("login", "ANA@example.org"), ("password", "right")]).await;
        assert_eq!(locked.status(), StatusCode::OK, "no code while the login is locked");
        assert!(locked.text().await.unwrap().contains("Too many attempts for this login"));
        // An unknown login is limited the same way, so the answer reveals nothing.
        for _ in 0..11 {
            sign_in(&s, &p, &[("method", "password"), ("login", "nobody@example.org"), ("password", "x")]).await;
        }
        let unknown =
            sign_in(&s, &p, &[("method", "password"), ("login", "nobody@example.org"), ("password", "x")]).await;
        assert!(unknown.text().await.unwrap().contains("Too many attempts for this login"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_trying_many_logins_is_stopped() {
    for (store, dir) in databases().await {
        let s = serve(store, dir).await;
        user(&s, "ana@example.org", Some("right"), None).await;
        let p = pkce();
        for i in 0..200 {
            let login = format!("guess-{i}@example.org");
            let wrong = sign_in(&s, &p, &[("method", "password"), ("login", &login), ("password", "x")]).await;
            assert!(wrong.text().await.unwrap().contains("The login or the credentials are not correct."), "{i}");
        }
        // Even the right password is refused from this address for the rest of the window.
        let blocked =
            sign_in(&s, &p, &[("method", "password"), ("login", "ana@example.org"), ("password", "right")]).await;
        assert_eq!(blocked.status(), StatusCode::OK, "no code");
        assert!(blocked.text().await.unwrap().contains("Too many sign-in attempts from your network"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_gets_no_tokens_and_its_token_stops_working() {
    for (store, dir) in databases().await {
        let s = serve(store, dir).await;
        let ana = user(&s, "ana@example.org", Some("right"), None).await;
        let p = pkce();
        let fields = [("method", "password"), ("login", "ana@example.org"), ("password", "right")];
        let first = location_param(&sign_in(&s, &p, &fields).await, "code").unwrap();
        let (_, tokens) = redeem(&s, &first, &p.verifier).await;
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        let pending = location_param(&sign_in(&s, &p, &fields).await, "code").unwrap();

        assert!(s.provider.store.set_enabled(&ana.id, false).await.unwrap());
        let (status, refused) = redeem(&s, &pending, &p.verifier).await;
        assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
        let me = s.http.get(format!("{}/userinfo", s.base)).bearer_auth(&access).send().await.unwrap();
        assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    }
}

fn base32(text: &str) -> Vec<u8> {
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes() {
        let value = if c.is_ascii_uppercase() { c - b'A' } else { c - b'2' + 26 };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).unwrap());
        }
    }
    out
}
