//! `regain keycloak setup`: puts Regain into an existing Keycloak realm through the Admin
//! REST API, so an operator does not click through the admin console. It is safe to run
//! again: what exists is kept and brought up to date.
//!
//! What it does:
//! - the confidential client `regain-service` with a service account holding only
//!   `realm-management` roles `view-users`, `query-users`, `manage-users` and `view-events`;
//! - the browser flow `regain-browser`: cookie, or username, then one of password + OTP,
//!   a Temporary Access Pass, or "Recover your account" (offered under "Try another way");
//! - the Recover authenticator's configuration (service URL, shared secret, required action);
//! - events on, so the recovery service sees when a user last signed in;
//! - the realm's browser flow bound to `regain-browser`.

use serde_json::{Value, json};
use std::time::Duration;

/// The service account's client.
pub const SERVICE_CLIENT: &str = "regain-service";
/// The browser flow this sets up.
pub const FLOW: &str = "regain-browser";
/// Roles of `realm-management` the service account gets, and no others.
pub const SERVICE_ROLES: [&str; 4] = ["view-users", "query-users", "manage-users", "view-events"];

/// What `setup` needs.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Keycloak's base URL.
    pub url: String,
    /// The realm to set up.
    pub realm: String,
    /// An administrator of the `master` realm (or a realm admin of `realm` in `master`).
    pub admin_user: String,
    /// That administrator's password.
    pub admin_password: String,
    /// The recovery service's public URL (its `issuer`).
    pub service_url: String,
    /// The secret shared between the Recover authenticator and the service.
    pub shared_secret: String,
    /// `CONFIGURE_TOTP` or `webauthn-register`.
    pub required_action: String,
}

/// What `setup` did, for the operator.
#[derive(Debug, Clone)]
pub struct Report {
    /// The service client's secret, for the service's `client_secret_file`.
    pub client_secret: String,
    /// Whether the flow was created now (otherwise it existed and was kept).
    pub flow_created: bool,
}

struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    async fn sign_in(setup: &Setup) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let url = setup.url.trim_end_matches('/');
        let response = http
            .post(format!("{url}/realms/master/protocol/openid-connect/token"))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", setup.admin_user.as_str()),
                ("password", setup.admin_password.as_str()),
            ])
            .send()
            .await
            .map_err(|e| format!("cannot reach Keycloak at `{url}`: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("Keycloak refused the administrator sign-in ({})", response.status()));
        }
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        let token = body.get("access_token").and_then(Value::as_str).ok_or("no access token")?.to_owned();
        Ok(Self { http, base: format!("{url}/admin/realms/{}", setup.realm), token })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("{method} {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{method} {path} answered {status}: {}", text.chars().take(300).collect::<String>()));
        }
        if text.is_empty() { Ok(Value::Null) } else { serde_json::from_str(&text).map_err(|e| e.to_string()) }
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// The internal id of the client `client_id`, if it exists.
    async fn client(&self, client_id: &str) -> Result<Option<String>, String> {
        let found = self.get(&format!("/clients?clientId={}", encode(client_id))).await?;
        Ok(found.as_array().and_then(|c| c.first()).and_then(|c| c.get("id")).and_then(Value::as_str).map(Into::into))
    }

    /// The executions of flow `alias`, nested ones included, in order.
    async fn executions(&self, alias: &str) -> Result<Vec<Value>, String> {
        let list = self.get(&format!("/authentication/flows/{}/executions", encode(alias))).await?;
        Ok(list.as_array().cloned().unwrap_or_default())
    }

    /// Adds execution `provider` (or sub-flow `subflow`) to flow `alias` with `requirement`;
    /// answers the new execution's id.
    async fn add(&self, alias: &str, step: Step<'_>, requirement: &str) -> Result<String, String> {
        let path = encode(alias);
        let (name, added) = match step {
            Step::Authenticator(provider) => {
                self.post(
                    &format!("/authentication/flows/{path}/executions/execution"),
                    &json!({ "provider": provider }),
                )
                .await?;
                (provider, "providerId")
            }
            Step::Subflow(subflow) => {
                let body = json!({ "alias": subflow, "type": "basic-flow", "provider": "registration-page-form",
                                   "description": "" });
                self.post(&format!("/authentication/flows/{path}/executions/flow"), &body).await?;
                (subflow, "displayName")
            }
        };
        // The new execution is the last direct child with that provider or sub-flow name.
        let mut execution = self
            .executions(alias)
            .await?
            .into_iter()
            .filter(|e| e.get("level").and_then(Value::as_u64) == Some(0))
            .rfind(|e| e.get(added).and_then(Value::as_str) == Some(name))
            .ok_or_else(|| format!("the execution `{name}` was not added to `{alias}`"))?;
        let id = execution.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        if let Some(map) = execution.as_object_mut() {
            map.insert("requirement".into(), Value::String(requirement.into()));
        }
        self.put(&format!("/authentication/flows/{path}/executions"), &execution).await?;
        Ok(id)
    }
}

enum Step<'a> {
    Authenticator(&'a str),
    Subflow(&'a str),
}

fn encode(text: &str) -> String {
    regain_core::openid4vp::percent_encode(text)
}

/// The Recover authenticator's configuration.
fn recover_config(setup: &Setup) -> Value {
    json!({
        "alias": "regain-recover",
        "config": {
            "service-url": setup.service_url.trim_end_matches('/'),
            "shared-secret": setup.shared_secret,
            "required-action": setup.required_action,
        }
    })
}

/// Sets up (or brings up to date) Regain in the realm.
pub async fn setup(setup: &Setup) -> Result<Report, String> {
    crate::keycloak::SharedSecret::new(&setup.shared_secret)?;
    crate::keycloak::check_required_action(&setup.required_action).map_err(|e| format!("the required action {e}"))?;
    let admin = Admin::sign_in(setup).await?;
    admin.get("").await.map_err(|e| format!("the realm `{}` cannot be read: {e}", setup.realm))?;
    let client_secret = service_client(&admin).await?;
    let flow_created = browser_flow(&admin, setup).await?;
    admin.put("", &json!({ "browserFlow": FLOW, "eventsEnabled": true })).await?;
    Ok(Report { client_secret, flow_created })
}

/// The service client and its roles; answers its secret.
async fn service_client(admin: &Admin) -> Result<String, String> {
    let id = match admin.client(SERVICE_CLIENT).await? {
        Some(id) => id,
        None => {
            let client = json!({
                "clientId": SERVICE_CLIENT,
                "name": "Regain recovery service",
                "protocol": "openid-connect",
                "publicClient": false,
                "clientAuthenticatorType": "client-secret",
                "serviceAccountsEnabled": true,
                "standardFlowEnabled": false,
                "implicitFlowEnabled": false,
                "directAccessGrantsEnabled": false,
            });
            admin.post("/clients", &client).await?;
            admin.client(SERVICE_CLIENT).await?.ok_or("the service client was not created")?
        }
    };
    let account = admin.get(&format!("/clients/{id}/service-account-user")).await?;
    let account = account.get("id").and_then(Value::as_str).ok_or("the service client has no service account")?;
    let management = admin.client("realm-management").await?.ok_or("the realm has no `realm-management` client")?;
    let mut roles = Vec::new();
    for name in SERVICE_ROLES {
        roles.push(admin.get(&format!("/clients/{management}/roles/{name}")).await?);
    }
    admin.post(&format!("/users/{account}/role-mappings/clients/{management}"), &Value::Array(roles)).await?;
    let secret = admin.get(&format!("/clients/{id}/client-secret")).await?;
    secret
        .get("value")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "the service client has no secret".into())
}

/// The browser flow; `true` when it was created now.
async fn browser_flow(admin: &Admin, setup: &Setup) -> Result<bool, String> {
    let flows = admin.get("/authentication/flows").await?;
    let exists =
        flows.as_array().is_some_and(|f| f.iter().any(|f| f.get("alias").and_then(Value::as_str) == Some(FLOW)));
    if !exists {
        let flow = json!({ "alias": FLOW, "description": "Browser sign-in with Regain account recovery",
                           "providerId": "basic-flow", "topLevel": true, "builtIn": false });
        admin.post("/authentication/flows", &flow).await?;
        admin.add(FLOW, Step::Authenticator("auth-cookie"), "ALTERNATIVE").await?;
        admin.add(FLOW, Step::Subflow("regain-forms"), "ALTERNATIVE").await?;
        admin.add("regain-forms", Step::Authenticator("auth-username-form"), "REQUIRED").await?;
        admin.add("regain-forms", Step::Subflow("regain-methods"), "REQUIRED").await?;
        admin.add("regain-methods", Step::Subflow("regain-password-otp"), "ALTERNATIVE").await?;
        admin.add("regain-password-otp", Step::Authenticator("auth-password-form"), "REQUIRED").await?;
        admin.add("regain-password-otp", Step::Authenticator("auth-otp-form"), "REQUIRED").await?;
        admin.add("regain-methods", Step::Authenticator("regain-tap-authenticator"), "ALTERNATIVE").await?;
        admin.add("regain-methods", Step::Authenticator("regain-recover"), "ALTERNATIVE").await?;
    }
    // The Recover execution's configuration: created, or replaced with the current values.
    let recover = admin
        .executions(FLOW)
        .await?
        .into_iter()
        .find(|e| e.get("providerId").and_then(Value::as_str) == Some("regain-recover"))
        .ok_or("the flow has no `regain-recover` execution")?;
    let execution = recover.get("id").and_then(Value::as_str).unwrap_or_default();
    match recover.get("authenticationConfig").and_then(Value::as_str) {
        Some(config) => {
            let mut body = recover_config(setup);
            if let Some(map) = body.as_object_mut() {
                map.insert("id".into(), Value::String(config.into()));
            }
            admin.put(&format!("/authentication/config/{config}"), &body).await?;
        }
        None => {
            admin.post(&format!("/authentication/executions/{execution}/config"), &recover_config(setup)).await?;
        }
    }
    Ok(!exists)
}
