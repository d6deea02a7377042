//! Keycloak for the end-to-end tests and the overhead benchmark: an administrator's access
//! to the test Keycloak, a realm with Regain set up in it, the recovery service and the dev
//! IDV as processes, and a browser that follows Keycloak's forms.

use super::{MailCatcher, element, free_port, selfie_data, unescape, wait_until_up};
use base64::Engine as _;
use regain_core::AuditKind;
use regain_dev_idv::wallet::client::Wallet;
use regain_server::auth::Totp;
use regain_server::store::{Store, now};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};

/// The test client's redirect URI; the browser never follows it, the test reads the code.
pub const CALLBACK: &str = "http://127.0.0.1:9/callback";
pub const PASSWORD: &str = "correct horse battery staple";
pub const SHARED_SECRET: &str = "test shared secret between Keycloak and the recovery service";
/// The PKCE verifier of every authorization request, and its S256 challenge.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// The test Keycloak and an administrator's access to it.
pub struct Keycloak {
    pub url: String,
    pub password: String,
    pub http: reqwest::Client,
}

impl Keycloak {
    pub fn from_env() -> Self {
        let url = std::env::var("REGAIN_TEST_KEYCLOAK_URL").expect(
            "REGAIN_TEST_KEYCLOAK_URL is not set: run the suite with `bash scripts/test`, which starts Keycloak",
        );
        let password =
            std::env::var("REGAIN_TEST_KEYCLOAK_ADMIN_PASSWORD").expect("REGAIN_TEST_KEYCLOAK_ADMIN_PASSWORD");
        Self { url, password, http: reqwest::Client::new() }
    }

    pub async fn token(&self) -> String {
        let form = [
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", "admin"),
            ("password", &self.password),
        ];
        token(&self.http, &format!("{}/realms/master", self.url), &form).await
    }

    /// An Admin REST call under `/admin/realms`; answers the JSON body (or null).
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
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

    pub async fn user_id(&self, realm: &str, login: &str) -> String {
        let users =
            self.admin(reqwest::Method::GET, &format!("/{realm}/users?username={login}&exact=true"), None).await;
        users[0]["id"].as_str().unwrap().to_owned()
    }

    pub async fn credential_types(&self, realm: &str, login: &str) -> Vec<String> {
        let id = self.user_id(realm, login).await;
        let list = self.admin(reqwest::Method::GET, &format!("/{realm}/users/{id}/credentials"), None).await;
        let mut types: Vec<String> =
            list.as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap().to_owned()).collect();
        types.sort();
        types
    }

    /// The id of the execution of `provider` in the realm's Regain browser flow.
    pub async fn execution(&self, realm: &str, provider: &str) -> String {
        let list = self
            .admin(reqwest::Method::GET, &format!("/{realm}/authentication/flows/regain-browser/executions"), None)
            .await;
        let found = list.as_array().unwrap().iter().find(|e| e["providerId"] == provider);
        found.unwrap_or_else(|| panic!("no {provider} in {list}"))["id"].as_str().unwrap().to_owned()
    }
}

/// A test user: a dev IDV fixture person (or someone else) with a password and the
/// authenticator app they are about to lose.
pub struct Person {
    pub login: &'static str,
    pub given_name: &'static str,
    pub family_name: &'static str,
    pub birthdate: &'static str,
    pub totp: &'static str,
}

pub fn user(p: &Person) -> Value {
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
pub fn otp(secret: &str) -> String {
    let step = u64::try_from(now() / 30).unwrap();
    Totp::new(secret.as_bytes()).code_at_step(step, 6)
}

/// The whole set-up: a realm, Regain installed in it, the recovery service and the dev IDV.
pub struct World {
    pub kc: Keycloak,
    pub realm: String,
    pub service: String,
    pub idv: String,
    pub dir: tempfile::TempDir,
    pub children: Vec<Child>,
    /// The service's mail relay.
    pub mail: MailCatcher,
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
    /// A new realm with `people`, Regain set up in it, and the service and the dev IDV started.
    pub async fn start(people: &[&Person]) -> Self {
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
            "users": people.iter().map(|p| user(p)).collect::<Vec<_>>(),
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
        let mail = MailCatcher::start().await;
        write_service_files(dir.path(), &service, service_port, &idv, &kc.url, &realm, &report.client_secret);
        let config = dir.path().join("regain-server.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "\n[mail]\nsmtp = \"{}\"\nfrom = \"regain@example.org\"\nadmins = [\"admins@example.org\"]\n\
             send_interval_seconds = 1\n",
            mail.relay
        ));
        std::fs::write(&config, text).unwrap();

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
        let world = Self { kc, realm, service, idv, dir, children: vec![idv_process, server_process], mail };
        wait_until_up(&[format!("{}/healthz", world.service), format!("{}/healthz", world.idv)]).await;
        world
    }

    /// The test client's authorization request (code flow, PKCE S256).
    pub fn authorize_url(&self) -> String {
        format!(
            "{}/protocol/openid-connect/auth?client_id=test-app&response_type=code&scope=openid&state=st&nonce=no\
             &redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256",
            self.realm_url(),
            regain_core::openid4vp::percent_encode(CALLBACK)
        )
    }

    pub fn realm_url(&self) -> String {
        format!("{}/realms/{}", self.kc.url, self.realm)
    }

    pub async fn audit(&self, login: &str) -> Vec<AuditKind> {
        let id = self.kc.user_id(&self.realm, login).await;
        let url = format!("sqlite://{}", self.dir.path().join("regain.db").display());
        let store = Store::open(&url).await.unwrap();
        store.audit_since(0, Some(&id)).await.unwrap().into_iter().map(|e| e.kind).collect()
    }

    /// `document`'s holder verified at the dev IDV, the credential in a new wallet.
    pub async fn verified(&self, document: &str) -> Wallet {
        super::verified(&self.idv, document, document, &self.dir.path().join(format!("wallet-{document}.json"))).await
    }

    /// A new browser at Keycloak's login page for the test client, signed in as far as the
    /// username: answers the browser and the password page.
    pub async fn login_page(&self, login: &str) -> (reqwest::Client, Page) {
        let browser = super::browser();
        let page = get(&browser, &self.authorize_url()).await;
        let page = post(&browser, &page, "kc-form-login", &[("username", login)]).await;
        assert!(page.body.contains("name=\"password\""), "no password form: {}", page.body);
        (browser, page)
    }

    /// Signs in with password and authenticator app; answers the tokens.
    pub async fn sign_in(&self, person: &Person) -> Value {
        let (browser, page) = self.login_page(person.login).await;
        let page = post(&browser, &page, "kc-form-login", &[("password", PASSWORD)]).await;
        let page = post(&browser, &page, "kc-otp-login-form", &[("otp", &otp(person.totp))]).await;
        self.tokens(&page).await
    }

    /// From the password page, "Try another way" → "Recover your account": answers the
    /// recovery service's start page.
    pub async fn choose_recovery(&self, browser: &reqwest::Client, page: &Page) -> Page {
        let page = post(browser, page, "kc-select-try-another-way-form", &[("tryAnotherWay", "on")]).await;
        assert!(page.body.contains("Recover your account"), "not offered: {}", page.body);
        let execution = self.kc.execution(&self.realm, "regain-recover").await;
        let page = post(browser, &page, "kc-select-credential-form", &[("authenticationExecution", &execution)]).await;
        assert!(page.url.starts_with(&format!("{}/recover/keycloak?request=", self.service)), "{}", page.url);
        page
    }

    /// The recovery at the service with `wallet` and the selfie `selfie`: answers the last
    /// page (the pass, or the helpdesk reference).
    pub async fn recover(&self, browser: &reqwest::Client, start: &Page, wallet: &Wallet, selfie: &str) -> Page {
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
    pub async fn tokens(&self, page: &Page) -> Value {
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

pub fn write_service_files(
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
pub struct Page {
    pub status: StatusCode,
    pub url: String,
    pub body: String,
    /// Where the browser was sent at the test client's callback, if it got there.
    pub callback: Option<String>,
}

pub async fn follow(browser: &reqwest::Client, mut response: reqwest::Response) -> Page {
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

pub async fn get(browser: &reqwest::Client, url: &str) -> Page {
    follow(browser, browser.get(url).send().await.unwrap()).await
}

/// Posts `fields` (and the form's hidden fields) to the action of the form with `id` (the
/// first form when `id` is empty).
pub async fn post(browser: &reqwest::Client, page: &Page, id: &str, fields: &[(&str, &str)]) -> Page {
    follow(browser, post_once(browser, page, id, fields).await).await
}

/// Like `post`, without following a redirect.
pub async fn post_once(browser: &reqwest::Client, page: &Page, id: &str, fields: &[(&str, &str)]) -> reqwest::Response {
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
    browser.post(&action).form(&values).send().await.unwrap()
}

/// The HTML of the form with `id` (or the first form).
pub fn form(page: &str, id: &str) -> Option<String> {
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
pub fn attribute(html: &str, name: &str) -> Option<String> {
    let tag = html.get(..html.find('>')?)?;
    let value = tag.split_once(&format!("{name}=\""))?.1.split_once('"')?.0;
    Some(unescape(value))
}

/// The hidden inputs of a form, as name and value.
pub fn hidden_fields(form: &str) -> Vec<(String, String)> {
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
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// An access token from the token endpoint of the realm at `realm_url`, for the grant `form`.
pub async fn token(http: &reqwest::Client, realm_url: &str, form: &[(&str, &str)]) -> String {
    let answer: Value = http
        .post(format!("{realm_url}/protocol/openid-connect/token"))
        .form(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap_or_else(|| panic!("no access token: {answer}")).to_owned()
}
