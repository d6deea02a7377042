//! The recovery pages: "Recover your account" on the sign-in page runs the plugin's flow
//! through `regain-host`, with this server's implementation of every import.
//!
//! Each step is one HTTP request: the plugin's opaque state lives in the database, bound to
//! the browser by a cookie, so any process on the same database continues a flow another one
//! started. A lease on the session makes each step run once even when a form is posted
//! twice. The wallet posts its presentation to `/recover/response` (OpenID4VP `direct_post`);
//! the same-device browser comes back with the response code, the cross-device page polls.

use crate::adapter::ServerAdapter;
use crate::keycloak::{Keycloak, Outcome, RecoveryRequest};
use crate::provider::{AuthRequest, Provider, escape, hidden, invalid, page, server_error};
use crate::store::{SessionWrite, Store, digest, now, random_hex};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use regain_host::PluginHost;
use regain_host::reload::DeploymentStore;
use regain_host::wit::flow::{FlowError, FlowInput, Step, Transition};
use regain_host::wit::types::ClientInfo;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The recovery cookie, scoped to the recovery pages.
const COOKIE: &str = "regain_rid";
/// Lifetime of a recovery flow, in seconds.
const FLOW_SECONDS: i64 = 15 * 60;
/// How long one step may hold a flow, in seconds; a crashed process frees it after this.
const LEASE_SECONDS: i64 = 30;
/// The rate-limit window of recovery starts, in seconds.
const WINDOW_SECONDS: i64 = 3600;
/// Largest presentation a wallet may post.
const MAX_PRESENTATION: usize = 1024 * 1024;
/// Largest selfie upload (base64 text).
const MAX_SELFIE: usize = 8 * 1024 * 1024;

/// Limits on recovery starts, counted in the database across processes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Starts per client address per hour.
    pub per_address: i64,
    /// Starts per login per hour; the plugin also sees the count.
    pub per_login: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { per_address: 30, per_login: 5 }
    }
}

/// The recovery service: the plugin host, the adapter and the deployment in use.
#[derive(Clone)]
pub struct Recovery {
    provider: Provider,
    host: PluginHost<ServerAdapter>,
    adapter: ServerAdapter,
    deployments: DeploymentStore,
    deployment: Arc<str>,
    limits: Limits,
    http: reqwest::Client,
    /// Keycloak, when recoveries begin and end at its authentication flow.
    keycloak: Option<Arc<Keycloak>>,
    /// The deployment in use, parsed once per published bundle.
    parsed: Arc<crate::trust::ParsedDeployment>,
}

/// The client's address, when the server was started with connection information.
pub(crate) struct Peer(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

/// What the browser sees while a flow waits.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum View {
    /// The presentation request; cross-device pages poll.
    Present { url: String, cross_device: bool },
    /// The selfie form.
    Selfie,
    /// The browser is at the identity provider (OIDC4IDA).
    Provider { url: String },
    /// The flow failed while the browser was away (the wallet's post ended it).
    Failed { reference: String },
    /// Evaluation mode finished while the browser was away.
    Evaluated { would_issue: bool },
}

/// A flow as stored: the plugin's state and what the host needs around it.
#[derive(Serialize, Deserialize)]
struct Flow {
    /// The plugin's opaque state, base64.
    state: String,
    /// The client request to return to after recovery.
    auth: AuthRequest,
    /// The login the flow is for (prefilled in the pass sign-in form).
    login: String,
    /// OIDC4IDA: the PKCE verifier of the redirect in progress.
    code_verifier: Option<String>,
    view: View,
    /// The Keycloak request the flow answers, when it began at Keycloak.
    #[serde(default)]
    keycloak: Option<RecoveryRequest>,
}

impl Flow {
    fn state(&self) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD.decode(&self.state).map_err(|e| format!("stored state: {e}"))
    }
}

/// Where the flow's row stands when a step ends.
#[derive(Clone, Copy)]
enum Row<'a> {
    /// Not stored yet: the flow has just started.
    New,
    /// Stored and leased by this step; `spent` is a key (the wallet's `state`) that the step
    /// used up, removed with the step's outcome.
    Leased { spent: Option<&'a str> },
}

/// Who asked for the step: the browser gets pages, the wallet gets JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    Browser,
    Wallet,
}

impl Recovery {
    /// The service for deployment `deployment` (published in `deployments`).
    pub fn new(
        provider: Provider,
        host: PluginHost<ServerAdapter>,
        adapter: ServerAdapter,
        deployments: DeploymentStore,
        deployment: &str,
        limits: Limits,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            provider,
            host,
            adapter,
            deployments,
            deployment: deployment.into(),
            limits,
            http,
            keycloak: None,
            parsed: Arc::default(),
        })
    }

    /// The same service with recoveries that begin and end at Keycloak's authentication
    /// flow (`/recover/keycloak`); the adapter should have Keycloak as its directory too.
    #[must_use]
    pub fn with_keycloak(mut self, keycloak: Arc<Keycloak>) -> Self {
        self.keycloak = Some(keycloak);
        self
    }

    /// The recovery routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/recover", get(start_page))
            .route("/recover/start", post(start))
            .route("/recover/continue", get(resume_page))
            .route("/recover/response", post(wallet_response).layer(DefaultBodyLimit::max(MAX_PRESENTATION)))
            .route("/recover/selfie", post(selfie).layer(DefaultBodyLimit::max(MAX_SELFIE + 4096)))
            .route("/recover/provider-callback", get(provider_callback))
            .route("/recover/keycloak", get(keycloak_page).post(keycloak_start))
            .with_state(self)
    }

    fn store(&self) -> &Store {
        &self.provider.store
    }

    /// The same service for one request: its statements share a connection and its audit
    /// events are stored with the step's outcome ([`Store::scoped`]).
    fn scoped(&self) -> Self {
        let provider = self.provider.scoped();
        Self { adapter: self.adapter.on(&provider.store), provider, ..self.clone() }
    }

    /// Stores the flow under `rid` and answers what the caller sees next. The flow, the keys
    /// that lead to it, the spent key and the step's audit events are written in one
    /// transaction.
    async fn advance(&self, rid: &str, mut flow: Flow, t: Transition, caller: Caller, at: Row<'_>) -> Response {
        let b64 = base64::engine::general_purpose::STANDARD;
        flow.state = b64.encode(&t.state);
        // Keys (of the wallet's or the identity provider's `state`) that lead to the flow.
        let mut keys = Vec::new();
        let ending = match t.step {
            Step::PresentRequest(request) => {
                // The wallet posts the request's `state` back; it finds the flow.
                if let Some(state) = query_value(&request.url, "state") {
                    keys.push(wallet_key(&state));
                }
                let cross_device = matches!(flow.view, View::Present { cross_device: true, .. });
                flow.view = View::Present { url: request.url, cross_device };
                None
            }
            Step::PresentationReceived(code) => {
                if let Err(e) = self.store_flow(rid, &flow, at, &keys).await {
                    return server_error(&e);
                }
                let target = format!(
                    "{}/recover/continue?response_code={}",
                    self.provider.issuer,
                    regain_core::openid4vp::percent_encode(&code)
                );
                return Json(json!({ "redirect_uri": target })).into_response();
            }
            Step::CaptureSelfie => {
                flow.view = View::Selfie;
                None
            }
            Step::Redirect(redirect) => {
                keys.push(provider_key(&redirect.state));
                flow.code_verifier = Some(redirect.code_verifier);
                flow.view = View::Provider { url: redirect.url };
                None
            }
            Step::Completed(pass) => {
                crate::ops::metrics().count("recovery", "completed");
                // Shown once: the flow ends with this page and the pass is not stored in clear.
                if let Err(e) = self.end_flow(rid, at).await {
                    return server_error(&e);
                }
                if caller == Caller::Wallet {
                    tracing::error!("a pass was issued on a wallet request; it is not shown");
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                let back = self.back_to_keycloak(&flow, Outcome::Completed, None);
                return no_store(pass_page(&flow, &pass.secret, pass.expires_at, pass.one_time, &back));
            }
            Step::EvaluationCompleted(outcome) => {
                crate::ops::metrics().count("recovery", "evaluated");
                Some(View::Evaluated { would_issue: outcome.would_issue })
            }
            Step::Failed(failure) => {
                crate::ops::metrics().count("recovery", "failed");
                Some(View::Failed { reference: failure.helpdesk_ref })
            }
        };
        match (ending, caller) {
            (Some(view), Caller::Browser) => {
                if let Err(e) = self.end_flow(rid, at).await {
                    return server_error(&e);
                }
                ending_page(&view, &self.ending_back(&flow, &view))
            }
            (Some(view), Caller::Wallet) => {
                // The browser learns the outcome at its next visit.
                flow.view = view;
                if let Err(e) = self.store_flow(rid, &flow, at, &keys).await {
                    return server_error(&e);
                }
                Json(json!({ "redirect_uri": format!("{}/recover/continue", self.provider.issuer) })).into_response()
            }
            (None, caller) => {
                if let Err(e) = self.store_flow(rid, &flow, at, &keys).await {
                    return server_error(&e);
                }
                match (caller, &flow.view) {
                    (Caller::Wallet, _) => Json(json!({})).into_response(),
                    (Caller::Browser, View::Provider { url }) => Redirect::to(url).into_response(),
                    (Caller::Browser, view) => view_page(view, None),
                }
            }
        }
    }

    /// Stores the flow at the end of a step with the keys that lead to it, the spent key
    /// and the step's held audit events, in one transaction.
    async fn store_flow(&self, rid: &str, flow: &Flow, at: Row<'_>, keys: &[String]) -> Result<(), String> {
        let bytes = serde_json::to_vec(flow).map_err(|e| e.to_string())?;
        let t = now();
        let mut writes: Vec<SessionWrite<'_>> = keys
            .iter()
            .map(|id| SessionWrite::Put { id, state: rid.as_bytes(), now: t, expires_at: t + FLOW_SECONDS })
            .collect();
        match at {
            Row::New => writes.push(SessionWrite::Put { id: rid, state: &bytes, now: t, expires_at: t + FLOW_SECONDS }),
            Row::Leased { spent } => {
                writes.extend(spent.map(|id| SessionWrite::Delete { id }));
                writes.push(SessionWrite::Release { id: rid, state: &bytes, now: t });
            }
        }
        self.store().write_sessions(&writes).await.map_err(|e| e.to_string())
    }

    /// Ends the flow (and spends the key), with the step's held audit events.
    async fn end_flow(&self, rid: &str, at: Row<'_>) -> Result<(), String> {
        let writes = match at {
            Row::New => vec![],
            Row::Leased { spent } => {
                let mut writes = vec![SessionWrite::Delete { id: rid }];
                writes.extend(spent.map(|id| SessionWrite::Delete { id }));
                writes
            }
        };
        self.store().write_sessions(&writes).await.map_err(|e| e.to_string())
    }

    async fn save(&self, rid: &str, flow: &Flow) -> Result<(), String> {
        self.store_flow(rid, flow, Row::Leased { spent: None }, &[]).await
    }

    /// Takes the flow for one step; `Err` is the page to show instead.
    async fn lease(&self, rid: &str) -> Result<Flow, Response> {
        let t = now();
        match self.store().lease_flow(rid, t, LEASE_SECONDS).await {
            Ok(Some(leased)) => {
                // The user the flow is for, read with the lease: the step's lookup needs no
                // statement of its own.
                self.adapter.knows(leased.user);
                serde_json::from_slice(&leased.state).map_err(|e| server_error(&format!("stored flow: {e}")))
            }
            Ok(None) => match self.store().session(rid, t).await {
                Ok(Some(_)) => Err(message_page(
                    StatusCode::CONFLICT,
                    "Please wait",
                    "This step is already being processed. Reload the page in a moment.",
                )),
                Ok(None) => Err(expired_page()),
                Err(e) => Err(server_error(&e.to_string())),
            },
            Err(e) => Err(server_error(&e.to_string())),
        }
    }

    /// Resumes a leased flow with `input`; a refused input keeps the flow where it was.
    /// `spent` is the key the input came by (the wallet's `state`): it is removed when the
    /// input is taken.
    async fn resume(&self, rid: &str, flow: Flow, input: FlowInput, caller: Caller, spent: Option<&str>) -> Response {
        let response = self.resume_flow(rid, flow, input, caller, spent).await;
        self.flushed(response).await
    }

    /// The response, once the request's held audit events are stored (they normally are
    /// with the step's outcome; this catches the paths that failed before it).
    async fn flushed(&self, response: Response) -> Response {
        match self.store().flush().await {
            Ok(()) => response,
            Err(e) => server_error(&e.to_string()),
        }
    }

    async fn resume_flow(
        &self,
        rid: &str,
        flow: Flow,
        input: FlowInput,
        caller: Caller,
        spent: Option<&str>,
    ) -> Response {
        let state = match flow.state() {
            Ok(state) => state,
            Err(e) => return server_error(&e),
        };
        match self.host.resume(self.adapter.clone(), &state, &input).await {
            Ok(Ok(t)) => self.advance(rid, flow, t, caller, Row::Leased { spent }).await,
            Ok(Err(FlowError::InvalidInput(reason))) => {
                if let Err(e) = self.save(rid, &flow).await {
                    return server_error(&e);
                }
                tracing::info!(%reason, "recovery input refused");
                match caller {
                    Caller::Wallet => wallet_error("invalid_request", "the presentation was not accepted"),
                    Caller::Browser => view_page(&flow.view, Some("That did not work; please try again.")),
                }
            }
            Ok(Err(FlowError::InvalidState(reason))) => {
                tracing::warn!(%reason, "stored recovery state refused");
                let _ = self.store().delete_session(rid).await;
                expired_page()
            }
            Ok(Err(e)) => {
                let _ = self.save(rid, &flow).await;
                server_error(&format!("plugin: {e:?}"))
            }
            Err(e) => {
                let _ = self.save(rid, &flow).await;
                server_error(&format!("plugin call: {e}"))
            }
        }
    }

    /// The OIDC4IDA profile whose authorization endpoint the browser was sent to.
    fn provider_profile(&self, url: &str) -> Option<regain_core::config::IdvProfile> {
        let bundle = self.deployments.get(&self.deployment)?;
        let deployment = self.parsed.of(&bundle).ok()?;
        deployment
            .idvs
            .iter()
            .find(|p| p.oidc4ida.as_ref().is_some_and(|o| url.starts_with(&o.authorization_endpoint)))
            .cloned()
    }
}

fn wallet_key(state: &str) -> String {
    format!("vp:{}", digest(state))
}

fn provider_key(state: &str) -> String {
    format!("ida:{}", digest(state))
}

/// A query parameter of a URL, decoded.
fn query_value(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_value(query, name)
}

/// A field of a form-encoded body, decoded.
fn form_value(body: &str, name: &str) -> Option<String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| regain_core::openid4vp::form_decode(v))
}

fn recovery_cookie(headers: &HeaderMap) -> Option<String> {
    crate::provider::named_cookie(headers, COOKIE)
}

/// The link from the sign-in page, carrying the client's request.
pub(crate) fn recover_link(req: &AuthRequest) -> String {
    let enc = regain_core::openid4vp::percent_encode;
    let mut query = Vec::new();
    for (name, value) in req.fields() {
        if let Some(value) = value {
            query.push(format!("{name}={}", enc(value)));
        }
    }
    if req.client_id.is_empty() { "/recover".into() } else { format!("/recover?{}", query.join("&")) }
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    no_store((status, Html(page(title, &format!("<p role=\"alert\">{}</p>", escape(text))))).into_response())
}

fn expired_page() -> Response {
    no_store(
        (
            StatusCode::GONE,
            Html(page(
                "Recovery expired",
                "<p role=\"alert\">This recovery has ended or expired.</p><p><a href=\"/recover\">Start again</a></p>",
            )),
        )
            .into_response(),
    )
}

fn wallet_error(error: &str, description: &str) -> Response {
    no_store(
        (StatusCode::BAD_REQUEST, Json(json!({ "error": error, "error_description": description }))).into_response(),
    )
}

fn start_form(req: &AuthRequest, message: Option<&str>) -> Response {
    let alert = message.map(|m| format!("<p role=\"alert\">{}</p>", escape(m))).unwrap_or_default();
    let body = format!(
        "{alert}<p>Lost every way to sign in? Prove who you are with an identity document and a selfie, \
         and get a Temporary Access Pass to register a new sign-in method.</p>\
         <form method=\"post\" action=\"/recover/start\">{h}\
         <label>Login <input name=\"login\" autocomplete=\"username\" required></label>\
         <fieldset><legend>Where is your wallet app?</legend>\
         <label><input type=\"radio\" name=\"device\" value=\"same\" checked> On this device</label>\
         <label><input type=\"radio\" name=\"device\" value=\"other\"> On another device (show a code to scan)</label>\
         </fieldset><button>Start recovery</button></form>",
        h = hidden(req)
    );
    no_store((StatusCode::OK, Html(page("Recover your account", &body))).into_response())
}

async fn start_page(State(r): State<Recovery>, Query(req): Query<AuthRequest>) -> Response {
    if !req.client_id.is_empty()
        && let Some(response) = invalid(&r.provider, &req)
    {
        return response;
    }
    start_form(&req, None)
}

/// What the start form posts.
#[derive(Deserialize)]
struct Start {
    #[serde(flatten)]
    req: AuthRequest,
    #[serde(default)]
    login: String,
    #[serde(default)]
    device: String,
}

async fn start(State(r): State<Recovery>, Peer(peer): Peer, Form(form): Form<Start>) -> Response {
    let r = r.scoped();
    if !form.req.client_id.is_empty()
        && let Some(response) = invalid(&r.provider, &form.req)
    {
        return response;
    }
    let login = form.login.trim().to_owned();
    let req = form.req.clone();
    let response = r
        .begin(peer, login, form.device == "other", form.req, None, move || {
            start_form(&req, Some("Enter the login you use to sign in."))
        })
        .await;
    r.flushed(response).await
}

impl Recovery {
    /// Starts a flow for `login` (rate limits first, counted before the login is looked up,
    /// so the answer says nothing about it) and sets the browser's recovery cookie. The caller
    /// stores what the request still holds ([`Recovery::flushed`]).
    async fn begin(
        &self,
        peer: Option<IpAddr>,
        login: String,
        cross_device: bool,
        auth: AuthRequest,
        keycloak: Option<RecoveryRequest>,
        invalid_login: impl FnOnce() -> Response,
    ) -> Response {
        let r = self;
        let t = now();
        let window = t - t.rem_euclid(WINDOW_SECONDS);
        let address = peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let login_key = format!("recover-login:{}", digest(&login.to_lowercase()));
        let address_key = format!("recover-addr:{address}");
        // The plugin looks the user up next and counts their recent recoveries: read in the
        // same round trip, unless the directory is Keycloak.
        let counted = if self.keycloak.is_some() {
            r.store().hit_both(&address_key, &login_key, window).await
        } else {
            let recent = r.adapter.recent_windows();
            let keys = (address_key.as_str(), login_key.as_str());
            r.store().hit_both_with_user(keys, window, login.trim(), &recent, t).await.map(|(hits, user)| {
                r.adapter.remember(login.trim(), user);
                hits
            })
        };
        let (by_address, by_login) = match counted {
            Ok(hits) => hits,
            Err(e) => return server_error(&e.to_string()),
        };
        if by_address > r.limits.per_address || by_login > r.limits.per_login {
            return message_page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "Too many recovery attempts; try again in an hour.",
            );
        }
        let client = ClientInfo {
            address: peer.map(|ip| ip.to_string()),
            country: None,
            cross_device,
            recent_attempts: u32::try_from(by_login.saturating_sub(1)).unwrap_or(u32::MAX),
        };
        let t1 = match r.host.start(r.adapter.clone(), &r.deployment, &login, &client).await {
            Ok(Ok(t1)) => t1,
            Ok(Err(FlowError::InvalidLogin(_))) => return invalid_login(),
            Ok(Err(e)) => return server_error(&format!("plugin: {e:?}")),
            Err(e) => return server_error(&format!("plugin call: {e}")),
        };
        let rid = match random_hex(32) {
            Ok(rid) => rid,
            Err(e) => return server_error(&e.to_string()),
        };
        let flow = Flow {
            state: String::new(),
            auth,
            login,
            code_verifier: None,
            view: View::Present { url: String::new(), cross_device },
            keycloak,
        };
        // The row is created with the first step's outcome: until the cookie is sent, no one
        // else knows `rid`.
        let mut response = r.advance(&rid, flow, t1, Caller::Browser, Row::New).await;
        let cookie = format!("{COOKIE}={rid}; Path=/recover; HttpOnly; SameSite=Lax; Max-Age={FLOW_SECONDS}");
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }
}

/// The Keycloak request the recovery start page carries.
#[derive(Deserialize)]
struct KeycloakStart {
    #[serde(default)]
    request: String,
    #[serde(default)]
    device: String,
}

impl Recovery {
    /// The request token, verified against the shared secret, the realm and this server.
    #[expect(clippy::result_large_err, reason = "the error is the page to answer, built once per refused request")]
    fn keycloak_request(&self, token: &str) -> Result<RecoveryRequest, Response> {
        let Some(keycloak) = self.keycloak.as_deref() else {
            return Err(message_page(StatusCode::NOT_FOUND, "Not available", "Recovery from Keycloak is not set up."));
        };
        crate::keycloak::check_request(
            keycloak.shared_secret(),
            token,
            &keycloak.realm_issuer(),
            &self.provider.issuer,
            now(),
        )
        .map_err(|e| {
            tracing::warn!(reason = %e, "Keycloak recovery request refused");
            message_page(
                StatusCode::BAD_REQUEST,
                "Recovery link not valid",
                "This recovery link is not valid or has expired. Go back to the sign-in page and choose \"Recover your account\" again.",
            )
        })
    }

    /// The form that takes the browser back to Keycloak with the signed result; empty for
    /// flows that did not begin at Keycloak.
    fn back_to_keycloak(&self, flow: &Flow, outcome: Outcome, reference: Option<&str>) -> String {
        let (Some(keycloak), Some(request)) = (self.keycloak.as_deref(), flow.keycloak.as_ref()) else {
            return String::new();
        };
        let token = match crate::keycloak::result_token(
            keycloak.shared_secret(),
            &self.provider.issuer,
            &keycloak.realm_issuer(),
            request,
            outcome,
            reference,
            now(),
        ) {
            Ok(token) => token,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign the recovery result");
                return String::new();
            }
        };
        format!(
            "<form method=\"post\" action=\"{}\" id=\"back-to-sign-in\">\
             <input type=\"hidden\" name=\"regain_result\" value=\"{}\">\
             <button>Continue to sign in</button></form>",
            escape(&request.return_url),
            escape(&token)
        )
    }

    /// The way back to Keycloak after a flow ended without a pass.
    fn ending_back(&self, flow: &Flow, view: &View) -> String {
        match view {
            View::Failed { reference } => self.back_to_keycloak(flow, Outcome::Failed, Some(reference)),
            View::Evaluated { .. } => self.back_to_keycloak(flow, Outcome::EvaluationCompleted, None),
            _ => String::new(),
        }
    }
}

/// `GET /recover/keycloak?request=...`: where Keycloak's "Recover your account" sends the
/// browser. The request is checked here and consumed when the user starts.
async fn keycloak_page(State(r): State<Recovery>, Query(q): Query<KeycloakStart>) -> Response {
    let request = match r.keycloak_request(&q.request) {
        Ok(found) => found,
        Err(page) => return page,
    };
    let body = format!(
        "<p>Lost every way to sign in? Prove who you are with an identity document and a selfie, \
         and get a Temporary Access Pass to register a new sign-in method.</p>\
         <p>Recovering the account <strong>{login}</strong>.</p>\
         <form method=\"post\" action=\"/recover/keycloak\">\
         <input type=\"hidden\" name=\"request\" value=\"{token}\">\
         <fieldset><legend>Where is your wallet app?</legend>\
         <label><input type=\"radio\" name=\"device\" value=\"same\" checked> On this device</label>\
         <label><input type=\"radio\" name=\"device\" value=\"other\"> On another device (show a code to scan)</label>\
         </fieldset><button>Start recovery</button></form>",
        login = escape(&request.login),
        token = escape(&q.request)
    );
    no_store((StatusCode::OK, Html(page("Recover your account", &body))).into_response())
}

/// `POST /recover/keycloak`: the request is accepted once, then the flow starts for the
/// user Keycloak named.
async fn keycloak_start(State(r): State<Recovery>, Peer(peer): Peer, Form(form): Form<KeycloakStart>) -> Response {
    let r = r.scoped();
    let request = match r.keycloak_request(&form.request) {
        Ok(request) => request,
        Err(page) => return page,
    };
    match r.store().consume_once("keycloak-request", &request.jti, request.exp).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("Keycloak recovery request used twice");
            return message_page(
                StatusCode::BAD_REQUEST,
                "Recovery link already used",
                "This recovery link was already used. Go back to the sign-in page and choose \"Recover your account\" again.",
            );
        }
        Err(e) => return server_error(&e.to_string()),
    }
    let login = request.login.clone();
    let response = r
        .begin(peer, login, form.device == "other", AuthRequest::default(), Some(request), || {
            message_page(StatusCode::BAD_REQUEST, "Recovery not possible", "This account cannot be recovered here.")
        })
        .await;
    r.flushed(response).await
}

/// The continue page's query: the response code a same-device wallet redirect brings.
#[derive(Deserialize)]
struct Continue {
    #[serde(default)]
    response_code: Option<String>,
}

async fn resume_page(State(r): State<Recovery>, headers: HeaderMap, Query(q): Query<Continue>) -> Response {
    let r = r.scoped();
    let Some(rid) = recovery_cookie(&headers) else { return expired_page() };
    if let Some(code) = q.response_code {
        let flow = match r.lease(&rid).await {
            Ok(flow) => flow,
            Err(page) => return page,
        };
        return r.resume(&rid, flow, FlowInput::ResponseCode(code), Caller::Browser, None).await;
    }
    let flow: Flow = match r.store().session(&rid, now()).await {
        Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(flow) => flow,
            Err(e) => return server_error(&format!("stored flow: {e}")),
        },
        Ok(None) => return expired_page(),
        Err(e) => return server_error(&e.to_string()),
    };
    match &flow.view {
        ending @ (View::Failed { .. } | View::Evaluated { .. }) => {
            if let Err(e) = r.store().delete_session(&rid).await {
                return server_error(&e.to_string());
            }
            ending_page(ending, &r.ending_back(&flow, ending))
        }
        view => view_page(view, None),
    }
}

async fn wallet_response(State(r): State<Recovery>, body: axum::body::Bytes) -> Response {
    let r = r.scoped();
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return wallet_error("invalid_request", "the body is not UTF-8");
    };
    let Some(state) = form_value(&body, "state") else {
        return wallet_error("invalid_request", "`state` is missing");
    };
    let key = wallet_key(&state);
    // The key leads to the flow, which is leased in the same statement.
    let unknown = || wallet_error("invalid_request", "the request is unknown, expired or already answered");
    let (rid, flow) = match r.store().lease_flow_by_key(&key, now(), LEASE_SECONDS).await {
        Ok(Some(leased)) => match serde_json::from_slice::<Flow>(&leased.state) {
            Ok(flow) => {
                r.adapter.knows(leased.user);
                (leased.id, flow)
            }
            Err(e) => {
                tracing::error!(error = %e, "stored flow refused");
                return unknown();
            }
        },
        Ok(None) => return unknown(),
        Err(e) => return server_error(&e.to_string()),
    };
    // A request is answered once (its key goes with the step's outcome); the plugin refuses
    // a replay too.
    no_store(r.resume(&rid, flow, FlowInput::Presentation(body), Caller::Wallet, Some(&key)).await)
}

/// What the selfie form posts: the image, base64 or as a `data:` URL.
#[derive(Deserialize)]
struct Selfie {
    #[serde(default)]
    selfie: String,
}

async fn selfie(State(r): State<Recovery>, headers: HeaderMap, Form(form): Form<Selfie>) -> Response {
    let r = r.scoped();
    let Some(rid) = recovery_cookie(&headers) else { return expired_page() };
    let text = form.selfie.trim();
    let text = text.split_once(";base64,").map_or(text, |(_, data)| data);
    let image = match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(image) if !image.is_empty() && text.len() <= MAX_SELFIE => image,
        _ => {
            return match r.store().session(&rid, now()).await {
                Ok(Some(bytes)) => match serde_json::from_slice::<Flow>(&bytes) {
                    Ok(_) => view_page(&View::Selfie, Some("Take or choose a photo of your face.")),
                    Err(e) => server_error(&format!("stored flow: {e}")),
                },
                Ok(None) => expired_page(),
                Err(e) => server_error(&e.to_string()),
            };
        }
    };
    let flow = match r.lease(&rid).await {
        Ok(flow) => flow,
        Err(page) => return page,
    };
    let reference = match r.adapter.keep_selfie(image) {
        Ok(reference) => reference,
        Err(e) => {
            let _ = r.save(&rid, &flow).await;
            return server_error(&e.to_string());
        }
    };
    r.resume(&rid, flow, FlowInput::Selfie(reference), Caller::Browser, None).await
}

/// What the identity provider sends the browser back with (OIDC4IDA).
#[derive(Deserialize)]
struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: Option<String>,
}

async fn provider_callback(State(r): State<Recovery>, headers: HeaderMap, Query(q): Query<Callback>) -> Response {
    let r = r.scoped();
    let Some(rid) = recovery_cookie(&headers) else { return expired_page() };
    let key = provider_key(&q.state);
    // The `state` must belong to this browser's flow, and is accepted once.
    match r.store().session(&key, now()).await {
        Ok(Some(owner)) if regain_core::secret::constant_time_eq(&owner, rid.as_bytes()) => {}
        Ok(_) => return expired_page(),
        Err(e) => return server_error(&e.to_string()),
    }
    if let Err(e) = r.store().delete_session(&key).await {
        return server_error(&e.to_string());
    }
    let flow = match r.lease(&rid).await {
        Ok(flow) => flow,
        Err(page) => return page,
    };
    let url = match &flow.view {
        View::Provider { url } => url.clone(),
        _ => String::new(),
    };
    let Some(profile) = r.provider_profile(&url) else {
        let _ = r.save(&rid, &flow).await;
        return server_error("the provider of this flow is no longer configured");
    };
    let input = match (q.code, q.error) {
        (Some(code), None) => match exchange(&r, &profile, &code, flow.code_verifier.as_deref().unwrap_or("")).await {
            Ok(id_token) => FlowInput::IdToken(id_token),
            Err(e) => {
                tracing::warn!(provider = %profile.id, error = %e, "code exchange failed");
                FlowInput::ProviderUnavailable(profile.id.clone())
            }
        },
        _ => FlowInput::ProviderUnavailable(profile.id.clone()),
    };
    r.resume(&rid, flow, input, Caller::Browser, None).await
}

/// The authorization code exchange at the provider's token endpoint (PKCE, public client).
async fn exchange(
    r: &Recovery,
    profile: &regain_core::config::IdvProfile,
    code: &str,
    verifier: &str,
) -> Result<String, String> {
    let settings = profile.oidc4ida.as_ref().ok_or("not an OIDC4IDA provider")?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", settings.redirect_uri.as_str()),
        ("client_id", settings.client_id.as_str()),
        ("code_verifier", verifier),
    ];
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", regain_core::openid4vp::percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let response = r
        .http
        .post(&settings.token_endpoint)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("token endpoint answered {}", response.status()));
    }
    let answer: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    answer.get("id_token").and_then(|t| t.as_str()).map(str::to_owned).ok_or_else(|| "no id_token".into())
}

fn view_page(view: &View, message: Option<&str>) -> Response {
    let alert = message.map(|m| format!("<p role=\"alert\">{}</p>", escape(m))).unwrap_or_default();
    let (title, body) = match view {
        View::Present { url, cross_device: false } => (
            "Share your identity credential",
            format!(
                "{alert}<p>Open your wallet to share the identity credential your verification provider issued.</p>\
                 <p><a id=\"wallet-link\" href=\"{u}\">Open my wallet</a></p>\
                 <p><a href=\"/recover/continue\">I have shared it</a></p>",
                u = escape(url)
            ),
        ),
        View::Present { url, cross_device: true } => (
            "Share your identity credential",
            format!(
                "{alert}<meta http-equiv=\"refresh\" content=\"5\">\
                 <p>On the device with your wallet, open this request (or scan it):</p>\
                 <p><code id=\"wallet-request\">{u}</code></p>\
                 <p>This page moves on by itself once your wallet has answered.</p>",
                u = escape(url)
            ),
        ),
        View::Selfie => (
            "Take a selfie",
            format!(
                "{alert}<p>We compare a photo of your face with the portrait in your credential. \
                 The photo is used once and not kept.</p>\
                 <form method=\"post\" action=\"/recover/selfie\" id=\"selfie-form\">\
                 <label>Photo <input type=\"file\" accept=\"image/*\" capture=\"user\" id=\"selfie-file\"></label>\
                 <input type=\"hidden\" name=\"selfie\" id=\"selfie-data\">\
                 <button>Continue</button></form>\
                 <script>document.getElementById('selfie-file').addEventListener('change',function(e){{\
                 var f=e.target.files[0];if(!f)return;var r=new FileReader();\
                 r.onload=function(){{document.getElementById('selfie-data').value=r.result;}};r.readAsDataURL(f);}});</script>"
            ),
        ),
        View::Provider { url } => (
            "Continue at your verification provider",
            format!("{alert}<p><a href=\"{}\">Continue to your verification provider</a></p>", escape(url)),
        ),
        ending @ (View::Failed { .. } | View::Evaluated { .. }) => return ending_page(ending, ""),
    };
    no_store((StatusCode::OK, Html(page(title, &body))).into_response())
}

fn ending_page(view: &View, back: &str) -> Response {
    let (title, body) = match view {
        View::Failed { reference } => (
            "We could not restore your access",
            format!(
                "<p>Your access could not be restored online. Contact your helpdesk and give them this reference:</p>\
                 <p><code id=\"helpdesk-ref\">{}</code></p>",
                escape(reference)
            ),
        ),
        View::Evaluated { .. } => (
            "Recovery checked",
            "<p>Recovery is being evaluated by your organisation: your identity was checked, but no pass is \
             issued yet. Contact your helpdesk to regain access.</p>"
                .to_owned(),
        ),
        _ => ("Recovery", String::new()),
    };
    no_store((StatusCode::OK, Html(page(title, &format!("{body}{back}")))).into_response())
}

fn pass_page(flow: &Flow, secret: &str, expires_at: u64, one_time: bool, back: &str) -> Response {
    let expires = regain_core::json::rfc3339(expires_at);
    let uses = if one_time { "It works once." } else { "It works until it expires." };
    let sign_in = if !back.is_empty() {
        format!("<p>Go back to sign in, and enter the pass when you are asked for it.</p>{back}")
    } else if flow.auth.client_id.is_empty() {
        "<p>Use it at your application's sign-in page under \"Sign in another way\".</p>".to_owned()
    } else {
        format!(
            "<form method=\"post\" action=\"/authorize\">{h}\
             <input type=\"hidden\" name=\"login\" value=\"{login}\">\
             <label>Temporary Access Pass <input name=\"tap\" value=\"{s}\" autocomplete=\"off\"></label>\
             <button name=\"method\" value=\"tap\">Sign in with the pass</button></form>",
            h = hidden(&flow.auth),
            login = escape(&flow.login),
            s = escape(secret)
        )
    };
    let body = format!(
        "<p>Your identity was verified. This is your Temporary Access Pass; it is shown only once.</p>\
         <p><code id=\"tap\">{s}</code></p><p>Valid until <time id=\"tap-expiry\">{expires}</time>. {uses} \
         After signing in you register a new sign-in method.</p>{sign_in}",
        s = escape(secret)
    );
    (StatusCode::OK, Html(page("Access restored", &body))).into_response()
}
