//! Recovery through a real Keycloak 26 with the Regain provider installed: the browser goes
//! through Keycloak's own login pages (HTML forms and cookies), "Try another way" → "Recover
//! your account" → the recovery service (`regain serve` with `[keycloak]`, a separate process)
//! → the dev IDV and dev wallet → back to Keycloak with the signed result → the Temporary
//! Access Pass → forced registration of a new authenticator app → Keycloak issues tokens to a
//! test client. Negative cases: name mismatch, replayed result, expired pass, pass reuse.
//!
//! `bash scripts/test` starts Keycloak (`scripts/keycloak start`) and passes its URL and
//! administrator password in `REGAIN_TEST_KEYCLOAK_URL` and
//! `REGAIN_TEST_KEYCLOAK_ADMIN_PASSWORD`; each run creates its own realm.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

mod support;

use base64::Engine as _;
use regain_core::AuditKind;
use regain_dev_idv::wallet::client::Wallet;
use regain_server::auth::Totp;
use regain_server::store::{Store, now};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{element, free_port, selfie_data, unescape, wait_until_up};

/// The test client's redirect URI; the browser never follows it, the test reads the code.
const CALLBACK: &str = "http://127.0.0.1:9/callback";
const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a new password after recovery";
const SHARED_SECRET: &str = "test shared secret between Keycloak and the recovery service";
/// The PKCE verifier of every authorization request, and its S256 challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// The test Keycloak and an administrator's access to it.
struct Keycloak {
    url: String,
    password: String,
    http: reqwest::Client,
}

impl Keycloak {
    fn from_env() -> Self {
        let url = std::env::var("REGAIN_TEST_KEYCLOAK_URL").expect(
            "REGAIN_TEST_KEYCLOAK_URL is not set: run the suite with `bash scripts/test`, which starts Keycloak",
        );
        let password =
            std::env::var("REGAIN_TEST_KEYCLOAK_ADMIN_PASSWORD").expect("REGAIN_TEST_KEYCLOAK_ADMIN_PASSWORD");
        Self { url, password, http: reqwest::Client::new() }
    }

    async fn token(&self) -> String {
        let answer: Value = self
            .http
            .post(format!("{}/realms/master/protocol/openid-connect/token", self.url))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", "admin"),
                ("password", self.password.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["access_token"].as_str().unwrap().to_owned()
    }

    /// An Admin REST call under `/admin/realms`; answers the JSON body (or null).
    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}/admin/realms{path}", self.url))
            .bearer_auth(self.token().await);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
    }

    async fn user_id(&self, realm: &str, login: &str) -> String {
        let users =
            self.admin(reqwest::Method::GET, &format!("/{realm}/users?username={login}&exact=true"), None).await;
        users[0]["id"].as_str().unwrap().to_owned()
    }

    async fn credential_types(&self, realm: &str, login: &str) -> Vec<String> {
        let id = self.user_id(realm, login).await;
        let list = self.admin(reqwest::Method::GET, &format!("/{realm}/users/{id}/credentials"), None).await;
        let mut types: Vec<String> =
            list.as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap().to_owned()).collect();
        types.sort();
        types
    }

    /// The id of the execution of `provider` in the realm's Regain browser flow.
    async fn execution(&self, realm: &str, provider: &str) -> String {
        let list = self
            .admin(reqwest::Method::GET, &format!("/{realm}/authentication/flows/regain-browser/executions"), None)
            .await;
        let found = list.as_array().unwrap().iter().find(|e| e["providerId"] == provider);
        found.unwrap_or_else(|| panic!("no {provider} in {list}"))["id"].as_str().unwrap().to_owned()
    }
}

/// A test user: a dev IDV fixture person (or someone else) with a password and the
/// authenticator app they are about to lose.
struct Person {
    login: &'static str,
    given_name: &'static str,
    family_name: &'static str,
    birthdate: &'static str,
    totp: &'static str,
}

const ANA: Person = Person {
    login: "ana",
    given_name: "Ana",
    family_name: "Silva",
    birthdate: "1985-02-11",
    totp: "ana-phone-otp-secret",
};
const BJORN: Person = Person {
    login: "bjorn",
    given_name: "Bjorn",
    family_name: "Odegard",
    birthdate: "1988-01-21",
    totp: "bjorn-phone-otp-secret",
};
/// Someone whose name is on no credential in the test.
const CARL: Person = Person {
    login: "carl",
    given_name: "Carl",
    family_name: "Berg",
    birthdate: "1985-02-11",
    totp: "carl-phone-otp-secret",
};

fn user(p: &Person) -> Value {
    json!({
        "username": p.login,
        "enabled": true,
        "firstName": p.given_name,
        "lastName": p.family_name,
        "email": format!("{}@example.org", p.login),
        "emailVerified": true,
        "attributes": { "birthdate": [p.birthdate], "country": ["PT"] },
        "groups": ["/recovery-enabled"],
        "credentials": [
            { "type": "password", "value": PASSWORD, "temporary": false },
            { "type": "otp", "userLabel": "phone",
              "secretData": json!({ "value": p.totp }).to_string(),
              "credentialData": json!({ "subType": "totp", "digits": 6, "counter": 0, "period": 30,
                                        "algorithm": "HmacSHA1" }).to_string() }
        ]
    })
}

/// The current code of an authenticator app whose key is `secret`'s bytes (Keycloak's form).
fn otp(secret: &str) -> String {
    let step = u64::try_from(now() / 30).unwrap();
    Totp::new(secret.as_bytes()).code_at_step(step, 6)
}

/// The whole set-up: a realm, Regain installed in it, the recovery service and the dev IDV.
struct World {
    kc: Keycloak,
    realm: String,
    service: String,
    idv: String,
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Drop for World {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl World {
    async fn start() -> Self {
        let kc = Keycloak::from_env();
        let realm = format!("regain-{}", regain_server::store::random_hex(4).unwrap());
        let realm_rep = json!({
            "realm": realm,
            "enabled": true,
            "eventsEnabled": true,
            "groups": [{ "name": "recovery-enabled" }],
            "clients": [{
                "clientId": "test-app",
                "publicClient": true,
                "standardFlowEnabled": true,
                "directAccessGrantsEnabled": false,
                "redirectUris": [CALLBACK],
                "attributes": { "pkce.code.challenge.method": "S256" }
            }],
            "users": [user(&ANA), user(&BJORN), user(&CARL)],
        });
        kc.admin(reqwest::Method::POST, "", Some(realm_rep)).await;
        // Birth date and country are attributes outside Keycloak's default user profile.
        let mut profile = kc.admin(reqwest::Method::GET, &format!("/{realm}/users/profile"), None).await;
        profile["unmanagedAttributePolicy"] = json!("ENABLED");
        kc.admin(reqwest::Method::PUT, &format!("/{realm}/users/profile"), Some(profile)).await;

        let (service_port, idv_port) = (free_port(), free_port());
        let service = format!("http://127.0.0.1:{service_port}");
        let idv = format!("http://127.0.0.1:{idv_port}");
        let dir = tempfile::tempdir().unwrap();
        let report = regain_server::keycloak_setup::setup(&regain_server::keycloak_setup::Setup {
            url: kc.url.clone(),
            realm: realm.clone(),
            admin_user: "admin".into(),
            admin_password: kc.password.clone(),
            service_url: service.clone(),
            shared_secret: SHARED_SECRET.into(),
            required_action: "CONFIGURE_TOTP".into(),
        })
        .await
        .unwrap();
        assert!(report.flow_created);
        write_service_files(dir.path(), &service, service_port, &idv, &kc.url, &realm, &report.client_secret);

        let demo = env!("CARGO_BIN_EXE_regain-demo");
        let idv_process = Command::new(demo)
            .args(["idv", "--listen", &format!("127.0.0.1:{idv_port}"), "--issuer", &idv])
            .args(["--callback", &format!("{service}/recover/provider-callback"), "--wallet", "http://127.0.0.1:9"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server_process = Command::new(demo)
            .args(["server", "--config"])
            .arg(dir.path().join("regain-server.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let world = Self { kc, realm, service, idv, dir, children: vec![idv_process, server_process] };
        wait_until_up(&[format!("{}/healthz", world.service), format!("{}/healthz", world.idv)]).await;
        world
    }

    /// The test client's authorization request (code flow, PKCE S256).
    fn authorize_url(&self) -> String {
        format!(
            "{}/protocol/openid-connect/auth?client_id=test-app&response_type=code&scope=openid&state=st&nonce=no\
             &redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256",
            self.realm_url(),
            regain_core::openid4vp::percent_encode(CALLBACK)
        )
    }

    fn realm_url(&self) -> String {
        format!("{}/realms/{}", self.kc.url, self.realm)
    }

    async fn audit(&self, login: &str) -> Vec<AuditKind> {
        let id = self.kc.user_id(&self.realm, login).await;
        let url = format!("sqlite://{}", self.dir.path().join("regain.db").display());
        let store = Store::open(&url).await.unwrap();
        store.audit_since(0, Some(&id)).await.unwrap().into_iter().map(|e| e.kind).collect()
    }

    /// `document`'s holder verified at the dev IDV, the credential in a new wallet.
    async fn verified(&self, document: &str) -> Wallet {
        support::verified(&self.idv, document, document, &self.dir.path().join(format!("wallet-{document}.json"))).await
    }

    /// A new browser at Keycloak's login page for the test client, signed in as far as the
    /// username: answers the browser and the password page.
    async fn login_page(&self, login: &str) -> (reqwest::Client, Page) {
        let browser =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
        let page = get(&browser, &self.authorize_url()).await;
        let page = post(&browser, &page, "kc-form-login", &[("username", login)]).await;
        assert!(page.body.contains("name=\"password\""), "no password form: {}", page.body);
        (browser, page)
    }

    /// Signs in with password and authenticator app; answers the tokens.
    async fn sign_in(&self, person: &Person) -> Value {
        let (browser, page) = self.login_page(person.login).await;
        let page = post(&browser, &page, "kc-form-login", &[("password", PASSWORD)]).await;
        let page = post(&browser, &page, "kc-otp-login-form", &[("otp", &otp(person.totp))]).await;
        self.tokens(&page).await
    }

    /// From the password page, "Try another way" → "Recover your account": answers the
    /// recovery service's start page.
    async fn choose_recovery(&self, browser: &reqwest::Client, page: &Page) -> Page {
        let page = post(browser, page, "kc-select-try-another-way-form", &[("tryAnotherWay", "on")]).await;
        assert!(page.body.contains("Recover your account"), "not offered: {}", page.body);
        let execution = self.kc.execution(&self.realm, "regain-recover").await;
        let page = post(browser, &page, "kc-select-credential-form", &[("authenticationExecution", &execution)]).await;
        assert!(page.url.starts_with(&format!("{}/recover/keycloak?request=", self.service)), "{}", page.url);
        page
    }

    /// The recovery at the service with `wallet` and the selfie `selfie`: answers the last
    /// page (the pass, or the helpdesk reference).
    async fn recover(&self, browser: &reqwest::Client, start: &Page, wallet: &Wallet, selfie: &str) -> Page {
        let page = post(browser, start, "", &[("device", "same")]).await;
        let link = element(&page.body, "wallet-link").unwrap_or_else(|| panic!("no wallet link: {}", page.body));
        let answer = wallet.present(&link, None).await.unwrap();
        let back = answer["redirect_uri"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned();
        let page = get(browser, &back).await;
        if !page.body.contains("selfie-form") {
            return page;
        }
        let data = selfie_data(selfie);
        post(browser, &page, "selfie-form", &[("selfie", &data)]).await
    }

    /// The code at the callback exchanged for tokens.
    async fn tokens(&self, page: &Page) -> Value {
        let code = page
            .callback
            .as_deref()
            .and_then(|to| to.split_once("code="))
            .map(|(_, code)| code.split('&').next().unwrap_or_default().to_owned())
            .unwrap_or_else(|| panic!("no code at the callback: {} {}", page.url, page.body));
        reqwest::Client::new()
            .post(format!("{}/protocol/openid-connect/token", self.realm_url()))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", CALLBACK),
                ("client_id", "test-app"),
                ("code_verifier", VERIFIER),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn write_service_files(
    dir: &std::path::Path,
    service: &str,
    port: u16,
    idv: &str,
    keycloak: &str,
    realm: &str,
    client_secret: &str,
) {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for (name, text) in regain_core::policy::DEFAULT_POLICIES {
        std::fs::write(policies.join(std::path::Path::new(name).file_name().unwrap()), text).unwrap();
    }
    std::fs::write(dir.join("client-secret"), client_secret).unwrap();
    std::fs::write(dir.join("shared-secret"), SHARED_SECRET).unwrap();
    std::fs::write(
        dir.join("regain-server.toml"),
        format!(
            "issuer = \"{service}\"\nlisten = \"127.0.0.1:{port}\"\n\n\
             [recovery]\ndeployment = \"regain.toml\"\npolicies = \"policies\"\n\
             face_service = \"{idv}/face/compare\"\nstarts_per_address = 1000\nstarts_per_login = 20\n\n\
             [keycloak]\nurl = \"{keycloak}\"\nrealm = \"{realm}\"\nclient_id = \"regain-service\"\n\
             client_secret_file = \"client-secret\"\nshared_secret_file = \"shared-secret\"\n"
        ),
    )
    .unwrap();
    // Passes live one minute here, so that the expired-pass case waits only that long.
    std::fs::write(
        dir.join("regain.toml"),
        format!(
            "scope_group = \"recovery-enabled\"\n\n\
             [verifier]\nresponse_uri = \"{service}/recover/response\"\nwallet = \"http://127.0.0.1:9/present\"\n\n\
             [tap]\nmin_lifetime_minutes = 1\nmax_lifetime_minutes = 1\n\n\
             [[matching.bind]]\nclaim = \"birthdate\"\nattribute = \"birthdate\"\n\n\
             [[idv]]\nid = \"dev-idv\"\nissuer = \"{idv}\"\nvct = [\"{idv}/credentials/identity\"]\n\
             countries = [\"*\"]\npriority = 1\n"
        ),
    )
    .unwrap();
}

/// A page the browser ended on after following redirects within Keycloak and the service.
struct Page {
    status: StatusCode,
    url: String,
    body: String,
    /// Where the browser was sent at the test client's callback, if it got there.
    callback: Option<String>,
}

async fn follow(browser: &reqwest::Client, mut response: reqwest::Response) -> Page {
    let mut url = response.url().to_string();
    for _ in 0..10 {
        if !response.status().is_redirection() {
            break;
        }
        let to = response.headers()["location"].to_str().unwrap().to_owned();
        let to = if to.starts_with('/') {
            let origin: String = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
            format!("{origin}{to}")
        } else {
            to
        };
        if to.starts_with(CALLBACK) {
            return Page { status: response.status(), url, body: String::new(), callback: Some(to) };
        }
        url = to.clone();
        response = browser.get(&to).send().await.unwrap();
    }
    let status = response.status();
    Page { status, url, body: response.text().await.unwrap(), callback: None }
}

async fn get(browser: &reqwest::Client, url: &str) -> Page {
    follow(browser, browser.get(url).send().await.unwrap()).await
}

/// Posts `fields` (and the form's hidden fields) to the action of the form with `id` (the
/// first form when `id` is empty).
async fn post(browser: &reqwest::Client, page: &Page, id: &str, fields: &[(&str, &str)]) -> Page {
    let form = form(&page.body, id)
        .unwrap_or_else(|| panic!("no form `{id}` on {} ({}): {}", page.url, page.status, page.body));
    let action = attribute(&form, "action").unwrap_or_default();
    let action = if action.starts_with('/') {
        let origin: String = page.url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        format!("{origin}{action}")
    } else {
        action
    };
    let mut values: Vec<(String, String)> = hidden_fields(&form);
    for (name, value) in fields {
        values.retain(|(n, _)| n != name);
        values.push(((*name).to_owned(), (*value).to_owned()));
    }
    follow(browser, browser.post(&action).form(&values).send().await.unwrap()).await
}

/// The HTML of the form with `id` (or the first form).
fn form(page: &str, id: &str) -> Option<String> {
    let start = if id.is_empty() {
        page.find("<form")?
    } else {
        let at = page.find(&format!("id=\"{id}\""))?;
        page.get(..at)?.rfind("<form")?
    };
    let rest = page.get(start..)?;
    let end = rest.find("</form>")?;
    Some(rest.get(..end)?.to_owned())
}

/// An attribute of the first tag in `html`, unescaped.
fn attribute(html: &str, name: &str) -> Option<String> {
    let tag = html.get(..html.find('>')?)?;
    let value = tag.split_once(&format!("{name}=\""))?.1.split_once('"')?.0;
    Some(unescape(value))
}

/// The hidden inputs of a form, as name and value.
fn hidden_fields(form: &str) -> Vec<(String, String)> {
    form.split("<input")
        .skip(1)
        .filter(|input| input.split('>').next().is_some_and(|tag| tag.contains("type=\"hidden\"")))
        .filter_map(|input| {
            let tag = format!("<input{}", input.split('>').next()?);
            let name = attribute(&format!("{tag}>"), "name")?;
            let value = attribute(&format!("{tag}>"), "value").unwrap_or_default();
            Some((name, value))
        })
        .collect()
}

/// The claims of a JWT, unverified (the test reads what Keycloak issued to it).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_through_keycloak_login_pages() {
    let world = World::start().await;
    // Ana has used her account before (eligibility asks for a past sign-in).
    let tokens = world.sign_in(&ANA).await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap_or_else(|| panic!("{tokens}")))["preferred_username"], "ana");

    // Her phone is gone: "Try another way" → "Recover your account".
    let ana = world.verified("ana-silva").await;
    let (browser, page) = world.login_page(ANA.login).await;
    let start = world.choose_recovery(&browser, &page).await;
    assert!(start.body.contains("ana"), "{}", start.body);
    let done = world.recover(&browser, &start, &ana, "ana-silva").await;
    let pass = element(&done.body, "tap").unwrap_or_else(|| panic!("no pass: {}", done.body));
    // Policy (scope-revoke-methods) removed the lost methods in Keycloak; a pass is there.
    assert_eq!(world.kc.credential_types(&world.realm, ANA.login).await, vec!["regain-tap"]);

    // Back at Keycloak with the signed result; Keycloak asks for the pass.
    let page = post(&browser, &done, "back-to-sign-in", &[]).await;
    assert!(page.body.contains("kc-tap-login-form"), "{}", page.body);
    let wrong = post(&browser, &page, "kc-tap-login-form", &[("tap", "AAAA-BBBB-CCCC-DDDD")]).await;
    assert!(wrong.body.contains("not valid"), "{}", wrong.body);
    let page = post(&browser, &wrong, "kc-tap-login-form", &[("tap", &pass)]).await;

    // Keycloak makes her register a new authenticator app, and choose a new password (policy
    // removed the old one), before the login completes.
    let mut page = page;
    let mut actions = Vec::new();
    while page.callback.is_none() {
        if page.body.contains("kc-totp-settings-form") {
            let secret = hidden_fields(&form(&page.body, "kc-totp-settings-form").unwrap())
                .into_iter()
                .find(|(n, _)| n == "totpSecret")
                .map(|(_, v)| v)
                .unwrap();
            let code = otp(&secret);
            page = post(&browser, &page, "kc-totp-settings-form", &[("totp", &code), ("userLabel", "new phone")]).await;
            actions.push("CONFIGURE_TOTP");
        } else if page.body.contains("kc-passwd-update-form") {
            let fields = [("password-new", NEW_PASSWORD), ("password-confirm", NEW_PASSWORD)];
            page = post(&browser, &page, "kc-passwd-update-form", &fields).await;
            actions.push("UPDATE_PASSWORD");
        } else {
            panic!("after {actions:?}, neither a required action nor the callback: {}", page.body);
        }
        assert!(actions.len() <= 2, "{actions:?}");
    }
    actions.sort_unstable();
    assert_eq!(actions, ["CONFIGURE_TOTP", "UPDATE_PASSWORD"]);
    let tokens = world.tokens(&page).await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["preferred_username"], "ana", "{tokens}");
    // The pass is spent; the new app and password are her methods.
    assert_eq!(world.kc.credential_types(&world.realm, ANA.login).await, vec!["otp", "password"]);
    let trail = world.audit(ANA.login).await;
    for kind in [AuditKind::RecoveryStarted, AuditKind::PresentationCompleted, AuditKind::AccountMatched] {
        assert!(trail.contains(&kind), "{kind:?} missing from {trail:?}");
    }
    assert!(trail.contains(&AuditKind::RecoveryCompleted), "{trail:?}");

    // Pass reuse: a new login is no longer offered a pass.
    let (browser, page) = world.login_page(ANA.login).await;
    let page = post(&browser, &page, "kc-select-try-another-way-form", &[("tryAnotherWay", "on")]).await;
    let recover = world.kc.execution(&world.realm, "regain-recover").await;
    let pass = world.kc.execution(&world.realm, "regain-tap-authenticator").await;
    assert!(page.body.contains(&recover) && !page.body.contains(&pass), "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_recoveries_through_keycloak() {
    let world = World::start().await;
    world.sign_in(&BJORN).await;
    world.sign_in(&CARL).await;

    // Name mismatch: Carl presents Ana's credential. The service shows a helpdesk reference
    // and Keycloak, given the signed result, refuses with the same reference.
    let ana = world.verified("ana-silva").await;
    let (browser, page) = world.login_page(CARL.login).await;
    let start = world.choose_recovery(&browser, &page).await;
    let failed = world.recover(&browser, &start, &ana, "ana-silva").await;
    let reference = element(&failed.body, "helpdesk-ref").unwrap_or_else(|| panic!("{}", failed.body));
    let page = post(&browser, &failed, "back-to-sign-in", &[]).await;
    assert!(page.body.contains(&reference), "{}", page.body);
    assert!(!page.body.contains("kc-tap-login-form"));
    assert!(world.audit(CARL.login).await.contains(&AuditKind::AccountNotMatched));
    assert_eq!(world.kc.credential_types(&world.realm, CARL.login).await, vec!["otp", "password"]);

    // Bjorn recovers; his pass expires before he uses it.
    let bjorn = world.verified("bjorn-odegard").await;
    let (browser, page) = world.login_page(BJORN.login).await;
    let start = world.choose_recovery(&browser, &page).await;
    let done = world.recover(&browser, &start, &bjorn, "bjorn-odegard").await;
    let pass = element(&done.body, "tap").unwrap_or_else(|| panic!("no pass: {}", done.body));
    let page = post(&browser, &done, "back-to-sign-in", &[]).await;
    assert!(page.body.contains("kc-tap-login-form"), "{}", page.body);

    // Past its one-minute lifetime, the pass no longer signs in.
    tokio::time::sleep(Duration::from_secs(62)).await;
    let expired = post(&browser, &page, "kc-tap-login-form", &[("tap", &pass)]).await;
    assert!(expired.body.contains("not valid"), "{}", expired.body);
    assert!(expired.callback.is_none() && !expired.body.contains("kc-totp-settings-form"));

    // The same result posted again is refused: a result is accepted once.
    let result = hidden_fields(&form(&done.body, "back-to-sign-in").unwrap());
    let replay = post(&browser, &expired, "kc-tap-login-form", &[("regain_result", &result[0].1)]).await;
    assert!(!replay.body.contains("kc-totp-settings-form") && replay.callback.is_none(), "{}", replay.body);
    assert!(replay.body.contains("already used"), "{}", replay.body);

    // The expired pass is gone: with every method revoked, a new login goes straight to
    // recovery instead of asking for the pass.
    let browser =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    let page = get(&browser, &world.authorize_url()).await;
    let page = post(&browser, &page, "kc-form-login", &[("username", BJORN.login)]).await;
    assert!(!page.body.contains("kc-tap-login-form"), "{}", page.body);
    assert!(page.url.starts_with(&format!("{}/recover/keycloak?request=", world.service)), "{}", page.url);
    assert!(!world.kc.credential_types(&world.realm, BJORN.login).await.contains(&"regain-tap".to_owned()));
}
