//! A real OpenID Connect relying party (the `openidconnect` crate: discovery, PKCE, state,
//! nonce, ID token signature and claims checks) drives the whole journey against the
//! reference server over HTTP, on SQLite and on PostgreSQL: password + TOTP sign-in; every
//! method lost; recovery with a wallet and a selfie; pass sign-in; a new authenticator app and
//! password; an ID token; the next normal sign-in.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use crate::support::databases;
use crate::support::recovery::{RP, RecoveryServer, browser, credential, element, member, start, wallet_answer};
use base64::Engine as _;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use regain_server::auth::{Totp, hash_password};
use regain_server::store::now;

type Rp = CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

struct Login {
    url: String,
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

async fn relying_party(s: &RecoveryServer, http: &reqwest::Client) -> Rp {
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(s.base.clone()).unwrap(), http).await.unwrap();
    CoreClient::from_provider_metadata(metadata, ClientId::new("rp".into()), None)
        .set_redirect_uri(RedirectUrl::new(RP.into()).unwrap())
}

fn login(rp: &Rp) -> Login {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    Login { url: url.to_string(), state, nonce, verifier }
}

/// The hidden fields of the first form on a page.
fn hidden_fields(page: &str) -> Vec<(String, String)> {
    let form = page.split("</form>").next().unwrap();
    form.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|field| {
            let name = field.split("name=\"").nth(1).unwrap().split('"').next().unwrap();
            let value = field.split("value=\"").nth(1).unwrap().split('"').next().unwrap();
            (name.to_owned(), value.replace("&amp;", "&").replace("&quot;", "\"").replace("&#39;", "'"))
        })
        .collect()
}

fn with(mut fields: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    fields.retain(|(name, _)| !extra.iter().any(|(n, _)| n == name));
    fields.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    fields
}

/// The authorization code and state of a redirect to the relying party.
fn code_of(response: &reqwest::Response) -> (String, String) {
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(RP), "{location}");
    let param = |name: &str| {
        location.split(['?', '&']).find_map(|kv| kv.strip_prefix(&format!("{name}="))).map(str::to_owned).unwrap()
    };
    (param("code"), regain_core::openid4vp::form_decode(&param("state")).unwrap())
}

/// Redeems the code with the relying party, which checks the ID token; answers its `amr`.
async fn finish(rp: &Rp, http: &reqwest::Client, login: Login, code: String, state: &str) -> Vec<String> {
    assert_eq!(state, login.state.secret(), "the state comes back unchanged");
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(login.verifier)
        .request_async(http)
        .await
        .unwrap();
    assert_eq!(tokens.token_type().as_ref(), "bearer");
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token.claims(&rp.id_token_verifier(), &login.nonce).expect("a valid ID token");
    assert_eq!(claims.subject().as_str(), "u-ana");
    claims.auth_method_refs().unwrap().iter().map(|m| m.to_string()).collect()
}

fn totp_now(key: &[u8], steps_ahead: u64) -> String {
    Totp::new(key).code_at_step(u64::try_from(now() / 30).unwrap() + steps_ahead, 6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_journey_through_a_real_relying_party() {
    for (store, _dir) in databases().await {
        let old_key = b"old authenticator key";
        let mut ana = member("u-ana", "ana@example.org", "Ana", "Silva");
        ana.password_hash = Some(hash_password("correct horse battery").unwrap());
        ana.totp_secret = Some(old_key.to_vec());
        store.create_user(&ana, now()).await.unwrap();
        let s = start(store.clone(), "", None).await;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let rp = relying_party(&s, &http).await;

        // 1. A normal sign-in: password + TOTP.
        let first = login(&rp);
        let b = browser();
        let page = b.get(&first.url).send().await.unwrap().text().await.unwrap();
        let fields = with(
            hidden_fields(&page),
            &[
                ("method", "password"),
                ("login", "ana@example.org"),
                ("password", "correct horse battery"),
                ("totp", &totp_now(old_key, 0)),
            ],
        );
        let signed = b.post(format!("{}/authorize", s.base)).form(&fields).send().await.unwrap();
        let (code, state) = code_of(&signed);
        assert_eq!(finish(&rp, &http, first, code, &state).await, ["pwd", "otp"]);

        // 2. Every method lost (new device, no authenticator, password forgotten): recover.
        let second = login(&rp);
        let b = browser();
        let page = b.get(&second.url).send().await.unwrap().text().await.unwrap();
        let link = element(&page, "recover").unwrap();
        let page = b.get(format!("{}{link}", s.base)).send().await.unwrap().text().await.unwrap();
        let fields = with(hidden_fields(&page), &[("login", "ana@example.org"), ("device", "same")]);
        let page =
            b.post(format!("{}/recover/start", s.base)).form(&fields).send().await.unwrap().text().await.unwrap();
        let request = element(&page, "wallet-link").unwrap();
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/recover/response", s.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(wallet_answer(&request, &credential("Ana", "Silva", 0)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = b.get(answer["redirect_uri"].as_str().unwrap()).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("selfie-form"), "{page}");
        let selfie = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode("face:95"));
        let page = b
            .post(format!("{}/recover/selfie", s.base))
            .form(&[("selfie", selfie)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let pass = element(&page, "tap").unwrap_or_else(|| panic!("{page}"));

        // 3. The pass signs in; no code until a new method (and password) is registered.
        let fields = with(hidden_fields(&page), &[("method", "tap"), ("tap", &pass)]);
        let signed = b.post(format!("{}/authorize", s.base)).form(&fields).send().await.unwrap();
        assert_eq!(signed.status(), 200);
        let page = signed.text().await.unwrap();
        assert!(page.contains("Register a new sign-in method"), "{page}");
        let secret = element(&page, "totp-secret").unwrap();
        let key = base32(&secret);
        let register = with(
            hidden_fields(
                page.split("action=\"/register-totp\"").nth(1).map(|f| format!("<form {f}")).as_deref().unwrap(),
            ),
            &[("secret", &secret), ("code", &totp_now(&key, 0)), ("new_password", "a new long passphrase")],
        );
        let registered = b.post(format!("{}/register-totp", s.base)).form(&register).send().await.unwrap();
        let (code, state) = code_of(&registered);
        assert_eq!(finish(&rp, &http, second, code, &state).await, ["tap"]);

        // 4. The old methods are gone; the new ones sign in.
        let third = login(&rp);
        let b = browser();
        let page = b.get(&third.url).send().await.unwrap().text().await.unwrap();
        let old = with(
            hidden_fields(&page),
            &[
                ("method", "password"),
                ("login", "ana@example.org"),
                ("password", "correct horse battery"),
                ("totp", &totp_now(old_key, 1)),
            ],
        );
        let refused = b.post(format!("{}/authorize", s.base)).form(&old).send().await.unwrap();
        assert!(refused.text().await.unwrap().contains("The login or the credentials are not correct."));
        let new = with(
            hidden_fields(&page),
            &[
                ("method", "password"),
                ("login", "ana@example.org"),
                ("password", "a new long passphrase"),
                ("totp", &totp_now(&key, 1)),
            ],
        );
        let signed = b.post(format!("{}/authorize", s.base)).form(&new).send().await.unwrap();
        let (code, state) = code_of(&signed);
        assert_eq!(finish(&rp, &http, third, code.clone(), &state).await, ["pwd", "otp"]);

        // The relying party cannot redeem a code twice.
        let replay = rp.exchange_code(AuthorizationCode::new(code)).unwrap().request_async(&http).await;
        assert!(replay.is_err());
    }
}

fn base32(text: &str) -> Vec<u8> {
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => continue,
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).unwrap());
        }
    }
    out
}
