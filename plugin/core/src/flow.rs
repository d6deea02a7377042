//! The recovery flow as a state machine driven by the host (DESIGN §1 steps 1-8).
//!
//! ```text
//! start ──► eligibility (Cedar) ──► routing (Cedar + priority) ──► present-request | redirect
//! resume(presentation) ──► verify SD-JWT VC ──► match ──► capture-selfie
//! resume(selfie) ──► face check ──► pass decision (Cedar) ──► completed | evaluation-completed
//! resume(id-token) ──► verify OIDC4IDA ID token ──► match ──► pass decision (the provider
//!                      compared the face; its evidence must say so) ──► completed | ...
//! any failure ──► failed(recovery-failed, helpdesk ref)   (details in the audit log only)
//! ```
//!
//! INVARIANT: an unknown login and an ineligible one go through the same outward steps as an
//! eligible one (a real-looking presentation request, the same generic failure); the reason
//! is kept in the state and the audit log. No input sequence reaches `completed` without a
//! verified presentation, an account match, a face check at the threshold and a permit.

use crate::config::{Deployment, IdvMode, IdvProfile, Mode};
use crate::env::{AuditEvent, AuditKind, Environment, HostError, TapRequest, User};
use crate::ida::{self, IdTokenExpectations};
use crate::jose::{Alg, PublicKey, SignatureVerifier};
use crate::login::{InvalidLogin, Login};
use crate::matching::{Binding, MatchInput, match_account};
use crate::openid4vp::{self, RequestParams};
use crate::policy::{Decision, Facts, Policies};
use crate::sdjwt::{self, Expectations, TrustFailure, TrustSource};
use crate::state::{FlowId, FlowState, Stage, StateError};
use base64::Engine as _;
use serde_json::{Value, json};
use std::fmt;

/// The outward reason of every failure: the user learns nothing beyond the helpdesk code.
pub const FAILED: &str = "recovery-failed";

/// A deployment ready to run flows: configuration and policies, both validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The name the host knows the deployment by (`config-ref`); flows record it.
    pub reference: String,
    /// The configuration.
    pub deployment: Deployment,
    /// The policies.
    pub policies: Policies,
    /// The facts every question shares while no provider is reported unavailable (the
    /// deployment and its providers, the schema's actions), built and checked once.
    shared: Facts,
}

impl Loaded {
    /// Parses and validates a configuration file and policy files; every problem is reported
    /// as `file:line:col: message`.
    pub fn load(config: (&str, &str), policies: &[(&str, &str)]) -> Result<Self, FlowError> {
        Self::check(config, policies).map_err(|problems| {
            FlowError::Config(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        })
    }

    /// [`Loaded::load`] with every problem as a structured diagnostic.
    pub fn check(config: (&str, &str), policies: &[(&str, &str)]) -> Result<Self, Vec<crate::policy::Diagnostic>> {
        let deployment = Deployment::parse(config.0, config.1).map_err(|e| {
            vec![crate::policy::Diagnostic { file: e.file, line: e.line, column: e.column, message: e.message }]
        })?;
        let policies = Policies::load(policies)?;
        let shared = policies.facts(Value::Array(deployment_entities(&deployment, &[]))).map_err(|message| {
            vec![crate::policy::Diagnostic { file: config.0.to_owned(), line: 0, column: 0, message }]
        })?;
        Ok(Self { reference: config.0.to_owned(), deployment, policies, shared })
    }
}

/// What the host knows about the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// ISO 3166-1 alpha-2 country of the request, if the host derived one.
    pub country: Option<String>,
    /// Recoveries the host saw started from this client's address in the attempt window.
    pub recent_attempts: u32,
    /// The wallet runs on another device (QR code): no response code redirect.
    pub cross_device: bool,
}

/// What the host must do next. Exhaustive on purpose: a new step breaks every host until
/// it handles it.
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    /// Send the browser to an OIDC4IDA provider (authorization code flow with PKCE).
    Redirect {
        /// The authorization request URL.
        url: String,
        /// Its `state`: the callback carrying it belongs to this flow, once.
        state: String,
        /// The PKCE code verifier the host sends with the token request (the URL carries its
        /// S256 challenge). A secret: never logged.
        code_verifier: String,
    },
    /// Show this OpenID4VP request (redirect same-device, QR code cross-device).
    PresentRequest {
        /// The request URL.
        url: String,
        /// Its nonce.
        nonce: String,
    },
    /// Same-device: the presentation was verified. Answer the wallet's post with a
    /// `redirect_uri` carrying this `response_code`, and resume with the code the browser
    /// brings back (OpenID4VP §8.2: the session that started the flow finishes it).
    PresentationReceived {
        /// The single-use response code. A secret: never logged.
        response_code: String,
    },
    /// Take a selfie and resume with its reference.
    CaptureSelfie,
    /// Access restored: show the pass once.
    Completed {
        /// The secret.
        secret: String,
        /// When the host starts refusing it.
        expires_at: u64,
        /// Whether it dies at first use.
        one_time: bool,
    },
    /// Evaluation mode: the flow ran for real and issued nothing.
    EvaluationCompleted {
        /// Whether a pass would have been issued.
        would_issue: bool,
        /// The reason code of the outcome.
        reason: String,
    },
    /// The flow ended without restoring access.
    Failed {
        /// Always [`FAILED`].
        reason: &'static str,
        /// The code the user quotes to the helpdesk.
        helpdesk_ref: String,
    },
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redirect { .. } => f.write_str("Redirect"),
            Self::PresentRequest { .. } => f.write_str("PresentRequest"),
            Self::PresentationReceived { .. } => f.write_str("PresentationReceived"),
            Self::CaptureSelfie => f.write_str("CaptureSelfie"),
            Self::Completed { expires_at, one_time, .. } => {
                write!(f, "Completed {{ expires_at: {expires_at}, one_time: {one_time}, .. }}")
            }
            Self::EvaluationCompleted { would_issue, reason } => {
                write!(f, "EvaluationCompleted {{ would_issue: {would_issue}, reason: {reason:?} }}")
            }
            Self::Failed { reason, helpdesk_ref } => write!(f, "Failed {{ {reason}, {helpdesk_ref} }}"),
        }
    }
}

/// What the host hands to [`resume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The body the wallet posted to the response URI.
    Presentation(String),
    /// The reference of the selfie the host captured.
    Selfie(String),
    /// The provider the user was sent to is unavailable.
    ProviderUnavailable(String),
    /// An ID token from an OIDC4IDA provider.
    IdToken(String),
    /// The response code the browser brought back from the wallet's redirect.
    ResponseCode(String),
}

/// The new state blob and the next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Opaque state for the host to store and hand back.
    pub state: Vec<u8>,
    /// What the host must do next.
    pub step: Step,
}

/// Why a flow call produced no transition. The stored state stays valid: the host may
/// retry with correct input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The login was refused before any lookup.
    #[error("invalid login: {0}")]
    InvalidLogin(#[from] InvalidLogin),
    /// The state blob was refused.
    #[error("invalid state: {0}")]
    InvalidState(#[from] StateError),
    /// The input does not fit the current step, or is malformed.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The host failed behind one of the environment traits.
    #[error("host failure: {0}")]
    Host(#[from] HostError),
    /// The configuration or the policies are invalid.
    #[error("invalid deployment: {0}")]
    Config(String),
    /// The operation is not implemented yet.
    #[error("`{0}` is not implemented by this plugin build")]
    Unsupported(&'static str),
}

fn policy_error(e: String) -> FlowError {
    FlowError::Config(format!("policy evaluation failed: {e}"))
}

fn audit(
    env: &mut impl Environment,
    state: &FlowState,
    kind: AuditKind,
    reason: &str,
    helpdesk: bool,
) -> Result<(), FlowError> {
    let flow_id = state.flow_id();
    env.record(&AuditEvent {
        kind,
        flow_id,
        user_id: state.user_id.clone(),
        reason: reason.to_owned(),
        helpdesk_ref: helpdesk.then(|| flow_id.helpdesk_ref()),
    })?;
    Ok(())
}

/// Cedar entities for one user and the deployment.
fn entities(user: &User, deployment: &Deployment, now: u64, unavailable: &[String]) -> Value {
    let mut list = user_entities(user, now);
    list.extend(deployment_entities(deployment, unavailable));
    Value::Array(list)
}

/// The user and the user's groups.
fn user_entities(user: &User, now: u64) -> Vec<Value> {
    let group = |id: &str| json!({ "uid": { "type": "Regain::Group", "id": id }, "attrs": {}, "parents": [] });
    let mut list: Vec<Value> = user.groups.iter().map(|g| group(g)).collect();
    let mut attrs = serde_json::Map::new();
    attrs.insert("enabled".into(), json!(user.enabled));
    attrs.insert("privileged".into(), json!(user.privileged));
    attrs.insert("has_signed_in".into(), json!(user.last_sign_in.is_some()));
    if let Some(country) = &user.country {
        attrs.insert("country".into(), json!(country));
    }
    if let Some(last) = user.last_sign_in {
        attrs.insert("days_since_sign_in".into(), json!(now.saturating_sub(last) / 86_400));
    }
    let parents: Vec<Value> = user.groups.iter().map(|g| json!({ "type": "Regain::Group", "id": g })).collect();
    list.push(json!({ "uid": { "type": "Regain::User", "id": user.id }, "attrs": attrs, "parents": parents }));
    list
}

/// The deployment and its providers, `unavailable` ones marked so.
fn deployment_entities(deployment: &Deployment, unavailable: &[String]) -> Vec<Value> {
    let mut list = vec![json!({
        "uid": { "type": "Regain::Deployment", "id": "default" },
        "attrs": {
            "scope": { "__entity": { "type": "Regain::Group", "id": deployment.scope_group } },
            "tap_scope": { "__entity": { "type": "Regain::Group", "id": deployment.tap_scope() } },
            "evaluation": deployment.mode == Mode::Evaluation,
        },
        "parents": [],
    })];
    for idv in &deployment.idvs {
        list.push(json!({
            "uid": { "type": "Regain::Idv", "id": idv.id },
            "attrs": {
                "countries": idv.countries,
                "priority": idv.priority,
                "available": idv.available && !unavailable.contains(&idv.id),
                "mode": idv.mode.as_str(),
            },
            "parents": [],
        }));
    }
    list
}

/// The facts about one user that every question of a call shares.
fn facts(loaded: &Loaded, user: &User, now: u64, unavailable: &[String]) -> Result<Facts, FlowError> {
    if unavailable.is_empty() {
        return loaded
            .policies
            .facts_with(&loaded.shared, Value::Array(user_entities(user, now)))
            .map_err(policy_error);
    }
    loaded.policies.facts(entities(user, &loaded.deployment, now, unavailable)).map_err(policy_error)
}

fn ask(
    loaded: &Loaded,
    user: &User,
    facts: &Facts,
    action: &str,
    resource: (&str, &str),
    context: Value,
) -> Result<Decision, FlowError> {
    loaded.policies.decide_with(("Regain::User", &user.id), action, resource, context, facts).map_err(policy_error)
}

/// The provider to send the user to: the first in priority order that policy permits. A
/// doomed flow gets the first available one, so that it looks like any other.
fn route(
    loaded: &Loaded,
    user: Option<(&User, &Facts)>,
    client: &Client,
    unavailable: &[String],
) -> Result<Option<String>, FlowError> {
    let candidates: Vec<_> = loaded
        .deployment
        .idvs_by_priority()
        .into_iter()
        .filter(|idv| idv.available && !unavailable.contains(&idv.id))
        .collect();
    let Some((user, facts)) = user else { return Ok(candidates.first().map(|idv| idv.id.clone())) };
    let country = user.country.clone().or_else(|| client.country.clone()).unwrap_or_default();
    for idv in candidates {
        let d = ask(loaded, user, facts, "useIdv", ("Regain::Idv", &idv.id), json!({ "country": country }))?;
        if d.allowed {
            return Ok(Some(idv.id.clone()));
        }
    }
    Ok(None)
}

fn profile<'d>(deployment: &'d Deployment, id: &str) -> Result<&'d IdvProfile, FlowError> {
    deployment
        .idvs
        .iter()
        .find(|i| i.id == id)
        .ok_or_else(|| FlowError::Config(format!("provider `{id}` is not configured")))
}

/// The claims the flow asks the provider for, under the provider's names.
fn wanted_claims<'d>(d: &'d Deployment, idv: &'d IdvProfile, portrait: bool) -> Vec<&'d str> {
    let mut claims = vec!["given_name", "family_name"];
    if portrait {
        claims.push(d.face_check.portrait_claim.as_str());
    }
    claims.extend(d.matching.bind.iter().map(|b| b.claim.as_str()));
    claims.into_iter().map(|ours| idv.claims.get(ours).map_or(ours, String::as_str)).collect()
}

/// The verified claims under Regain's names: the provider's bound names are renamed
/// (`[idv.claims] given_name = "first_name"`).
fn our_names(idv: &IdvProfile, mut claims: serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    for (ours, theirs) in &idv.claims {
        if let Some(value) = claims.remove(theirs) {
            claims.insert(ours.clone(), value);
        }
    }
    claims
}

fn request_step(env: &mut impl Environment, loaded: &Loaded, state: &mut FlowState) -> Result<Step, FlowError> {
    let d = &loaded.deployment;
    let idv = profile(d, &state.idv)?;
    if let (IdvMode::Oidc4ida, Some(oidc)) = (idv.mode, &idv.oidc4ida) {
        let nonce = openid4vp::random_token(env);
        let oauth_state = openid4vp::random_token(env);
        let code_verifier = openid4vp::random_token(env);
        let challenge = crate::jose::b64url_encode(&<sha2::Sha256 as sha2::Digest>::digest(code_verifier.as_bytes()));
        let claims = ida::claims_request(&wanted_claims(d, idv, false), &oidc.trust_frameworks).to_string();
        let separator = if oidc.authorization_endpoint.contains('?') { '&' } else { '?' };
        let enc = openid4vp::percent_encode;
        let url = format!(
            "{}{separator}response_type=code&client_id={}&redirect_uri={}&scope=openid&state={}&nonce={}\
             &code_challenge={challenge}&code_challenge_method=S256&claims={}",
            oidc.authorization_endpoint,
            enc(&oidc.client_id),
            enc(&oidc.redirect_uri),
            enc(&oauth_state),
            enc(&nonce),
            enc(&claims),
        );
        state.nonce = nonce;
        state.vp_state = oauth_state.clone();
        state.client_id = oidc.client_id.clone();
        return Ok(Step::Redirect { url, state: oauth_state, code_verifier });
    }
    let claims = wanted_claims(d, idv, true);
    let request = openid4vp::build_request(
        env,
        &RequestParams {
            response_uri: &d.verifier.response_uri,
            vcts: &idv.vct,
            claims: &claims,
            wallet: &d.verifier.wallet,
        },
    );
    state.nonce = request.nonce.clone();
    state.vp_state = request.state;
    state.client_id = request.client_id;
    Ok(Step::PresentRequest { url: request.url, nonce: request.nonce })
}

fn finish(mut state: FlowState, step: Step) -> Result<Transition, FlowError> {
    if matches!(step, Step::Completed { .. } | Step::EvaluationCompleted { .. } | Step::Failed { .. }) {
        state.stage = Stage::Done;
        state.portrait = None;
        state.response_code_sha256 = None;
    }
    Ok(Transition { state: state.encode()?, step })
}

/// Ends the flow without access: the generic failure, or in evaluation mode the outcome.
fn fail(loaded: &Loaded, state: FlowState, reason: &str) -> Result<Transition, FlowError> {
    let step = match loaded.deployment.mode {
        Mode::Evaluation => Step::EvaluationCompleted { would_issue: false, reason: reason.to_owned() },
        Mode::Production => Step::Failed { reason: FAILED, helpdesk_ref: state.flow_id().helpdesk_ref() },
    };
    finish(state, step)
}

/// Starts a recovery for the login typed by the user.
pub fn start(
    env: &mut impl Environment,
    loaded: &Loaded,
    login: &str,
    client: &Client,
) -> Result<Transition, FlowError> {
    let login = Login::parse(login)?;
    let flow_id = FlowId::random(env);
    let now = env.now_unix();
    let d = &loaded.deployment;
    let user = env.find_user_by_login(&login)?;
    let facts = user.as_ref().map(|u| facts(loaded, u, now, &[])).transpose()?;

    let (doomed, reason) = match (&user, &facts) {
        (Some(u), Some(facts)) => {
            let window = u64::from(d.limits.attempt_window_hours) * 3600;
            let windows = [(AuditKind::RecoveryStarted, window), (AuditKind::RecoveryCompleted, 86_400)];
            let (attempts, recovered) = match env.count_recent(&u.id, &windows)?.as_slice() {
                [attempts, completed] => (*attempts, *completed > 0),
                counts => {
                    let e = format!("audit log: {} counts for {} windows", counts.len(), windows.len());
                    return Err(HostError(e).into());
                }
            };
            let context = json!({
                "attempts_in_window": attempts,
                "attempts_from_address": client.recent_attempts,
                "recovered_in_last_day": recovered,
            });
            let decision = ask(loaded, u, facts, "startRecovery", ("Regain::Deployment", "default"), context)?;
            if decision.allowed {
                (None, "ok".to_owned())
            } else if decision.determining.is_empty() {
                (Some("not-eligible"), "not-eligible".to_owned())
            } else {
                (Some("not-eligible"), format!("not-eligible:{}", decision.determining.join(",")))
            }
        }
        _ => (Some("unknown-login"), "unknown-login".to_owned()),
    };

    let mut state = FlowState {
        flow: flow_id.to_string(),
        deployment: loaded.reference.clone(),
        started_at: now,
        stage: Stage::AwaitingPresentation,
        login: login.as_str().to_owned(),
        user_id: user.as_ref().map(|u| u.id.clone()),
        doomed: doomed.map(str::to_owned),
        idv: String::new(),
        unavailable: Vec::new(),
        nonce: String::new(),
        vp_state: String::new(),
        client_id: String::new(),
        portrait: None,
        match_reason: None,
        holder_bound: false,
        issuer: None,
        vct: None,
        cross_device: client.cross_device,
        response_code_sha256: None,
    };
    audit(env, &state, AuditKind::RecoveryStarted, &reason, false)?;

    let known = user.as_ref().zip(facts.as_ref()).filter(|_| doomed.is_none());
    let routed = route(loaded, known, client, &[])?;
    let idv = match routed {
        Some(idv) => idv,
        None => {
            // No provider for this user: doomed, but it still looks like everyone else.
            state.doomed = Some("no-idv-available".into());
            d.idvs_by_priority().first().map(|idv| idv.id.clone()).unwrap_or_default()
        }
    };
    state.idv = idv.clone();
    let step = request_step(env, loaded, &mut state)?;
    let detail = state.doomed.clone().unwrap_or_else(|| format!("idv:{idv}"));
    audit(env, &state, AuditKind::IssuanceStarted, &detail, false)?;
    finish(state, step)
}

/// Continues a flow from its stored state.
pub fn resume(env: &mut impl Environment, loaded: &Loaded, blob: &[u8], input: Input) -> Result<Transition, FlowError> {
    let state = FlowState::decode(blob)?;
    if state.deployment != loaded.reference {
        return Err(FlowError::InvalidState(StateError::Malformed(format!(
            "the flow runs under deployment `{}`, not `{}`",
            state.deployment, loaded.reference
        ))));
    }
    match (state.stage, input) {
        (Stage::Done, _) => Err(FlowError::InvalidInput("the flow has already ended".into())),
        (Stage::AwaitingPresentation, Input::ProviderUnavailable(id)) => reroute(env, loaded, state, id),
        (Stage::AwaitingPresentation, input) => match (profile(&loaded.deployment, &state.idv)?.mode, input) {
            (IdvMode::Openid4vp, Input::Presentation(body)) => on_presentation(env, loaded, state, &body),
            (IdvMode::Oidc4ida, Input::IdToken(token)) => on_id_token(env, loaded, state, &token),
            (IdvMode::Openid4vp, _) => Err(FlowError::InvalidInput("a presentation is expected".into())),
            (IdvMode::Oidc4ida, _) => Err(FlowError::InvalidInput("an ID token is expected".into())),
        },
        (Stage::AwaitingResponseCode, Input::ResponseCode(code)) => on_response_code(state, &code),
        (Stage::AwaitingResponseCode, _) => Err(FlowError::InvalidInput("a response code is expected".into())),
        (Stage::AwaitingSelfie, Input::Selfie(selfie)) => on_selfie(env, loaded, state, &selfie),
        (Stage::AwaitingSelfie, _) => Err(FlowError::InvalidInput("a selfie is expected".into())),
    }
}

fn reroute(
    env: &mut impl Environment,
    loaded: &Loaded,
    mut state: FlowState,
    id: String,
) -> Result<Transition, FlowError> {
    if id != state.idv {
        return Err(FlowError::InvalidInput(format!("the flow was not sent to provider `{id}`")));
    }
    state.unavailable.push(id);
    let now = env.now_unix();
    let user = match (&state.doomed, &state.user_id) {
        (None, Some(_)) => env.find_user_by_login(&Login::parse(&state.login)?)?,
        _ => None,
    };
    let facts = user.as_ref().map(|u| facts(loaded, u, now, &state.unavailable)).transpose()?;
    match route(loaded, user.as_ref().zip(facts.as_ref()), &Client::default(), &state.unavailable)? {
        Some(next) => {
            state.idv = next.clone();
            let step = request_step(env, loaded, &mut state)?;
            audit(env, &state, AuditKind::IssuanceStarted, &format!("fallback:{next}"), false)?;
            finish(state, step)
        }
        None => {
            audit(env, &state, AuditKind::RecoveryFailed, "no-idv-available", true)?;
            fail(loaded, state, "no-idv-available")
        }
    }
}

/// Only the routed provider's issuer is trusted for this flow.
struct Scoped<'a, E> {
    env: &'a mut E,
    issuer: &'a str,
}

impl<E: Environment> TrustSource for Scoped<'_, E> {
    fn issuer_keys(&mut self, issuer: &str) -> Result<String, TrustFailure> {
        if issuer == self.issuer { self.env.issuer_keys(issuer) } else { Err(TrustFailure::UnknownIssuer) }
    }

    fn status_list_token(&mut self, uri: &str) -> Result<String, TrustFailure> {
        self.env.status_list_token(uri)
    }
}

impl<E: Environment> SignatureVerifier for Scoped<'_, E> {
    fn verify(&self, alg: Alg, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, String> {
        self.env.verify(alg, key, message, signature)
    }
}

fn on_presentation(
    env: &mut impl Environment,
    loaded: &Loaded,
    mut state: FlowState,
    body: &str,
) -> Result<Transition, FlowError> {
    // A malformed post or a foreign `state` leaves the flow as it was: anyone can post.
    let presentation =
        openid4vp::parse_direct_post(body, &state.vp_state).map_err(|e| FlowError::InvalidInput(e.to_string()))?;
    let d = &loaded.deployment;
    let idv = profile(d, &state.idv)?;
    let now = env.now_unix();
    let expect = Expectations {
        nonce: &state.nonce,
        audience: &state.client_id,
        vcts: &idv.vct,
        algs: &[Alg::Es256, Alg::EdDsa],
        now,
        skew: d.verifier.clock_skew_seconds,
        kb_max_age: d.verifier.key_binding_max_age_seconds,
        holder_binding: true,
        require_status: d.verifier.require_status,
        require_expiry: true,
    };
    let verified = sdjwt::verify_with(&presentation, &expect, &mut Scoped { env: &mut *env, issuer: &idv.issuer });
    let vc = match verified {
        Ok(vc) => vc,
        Err(rejection) => {
            audit(env, &state, AuditKind::DocumentFailed, rejection.code(), true)?;
            return fail(loaded, state, rejection.code());
        }
    };
    let claims = our_names(idv, vc.claims);
    let matched = match match_verified(env, loaded, &state, &claims)? {
        Ok(reason) => reason,
        Err(reason) => return fail(loaded, state, &reason),
    };
    let Some(portrait) = claims.get(&d.face_check.portrait_claim).and_then(Value::as_str) else {
        audit(env, &state, AuditKind::DocumentFailed, "portrait-missing", true)?;
        return fail(loaded, state, "portrait-missing");
    };
    state.portrait = Some(portrait.to_owned());
    state.match_reason = Some(matched.to_owned());
    state.holder_bound = vc.holder_bound;
    state.issuer = Some(vc.issuer);
    state.vct = Some(vc.vct);
    if state.cross_device {
        state.stage = Stage::AwaitingSelfie;
        return finish(state, Step::CaptureSelfie);
    }
    let response_code = openid4vp::random_token(env);
    state.response_code_sha256 = Some(code_digest(&response_code));
    state.stage = Stage::AwaitingResponseCode;
    finish(state, Step::PresentationReceived { response_code })
}

fn code_digest(code: &str) -> String {
    crate::jose::b64url_encode(&<sha2::Sha256 as sha2::Digest>::digest(code.as_bytes()))
}

/// The browser is back with the response code: only the session holding it continues. A
/// wrong code changes nothing (the flow's own browser may still arrive); the right one is
/// consumed.
fn on_response_code(mut state: FlowState, code: &str) -> Result<Transition, FlowError> {
    let expected = state.response_code_sha256.take().unwrap_or_default();
    if expected.is_empty() || !crate::secret::constant_time_eq(code_digest(code).as_bytes(), expected.as_bytes()) {
        return Err(FlowError::InvalidInput("the response code does not belong to this flow".into()));
    }
    state.stage = Stage::AwaitingSelfie;
    finish(state, Step::CaptureSelfie)
}

fn on_id_token(
    env: &mut impl Environment,
    loaded: &Loaded,
    mut state: FlowState,
    token: &str,
) -> Result<Transition, FlowError> {
    let d = &loaded.deployment;
    let idv = profile(d, &state.idv)?;
    let Some(oidc) = &idv.oidc4ida else {
        return Err(FlowError::Config(format!("provider `{}` has no `oidc4ida` settings", idv.id)));
    };
    let expect = IdTokenExpectations {
        issuer: &idv.issuer,
        client_id: &state.client_id,
        nonce: &state.nonce,
        algs: &[Alg::Es256, Alg::EdDsa],
        now: env.now_unix(),
        skew: d.verifier.clock_skew_seconds,
        max_age: oidc.max_age_seconds,
        trust_frameworks: &oidc.trust_frameworks,
        face_methods: &oidc.face_methods,
    };
    let verified = ida::verify_id_token(token, &expect, &mut Scoped { env: &mut *env, issuer: &idv.issuer });
    let identity = match verified {
        Ok(identity) => identity,
        Err(rejection) => {
            audit(env, &state, AuditKind::DocumentFailed, rejection.code(), true)?;
            return fail(loaded, state, rejection.code());
        }
    };
    let claims = our_names(idv, identity.claims);
    let matched = match match_verified(env, loaded, &state, &claims)? {
        Ok(reason) => reason,
        Err(reason) => return fail(loaded, state, &reason),
    };
    // The provider compared the face with the document; its evidence says how.
    audit(env, &state, AuditKind::FaceCheckPassed, &format!("idv-evidence:{}", identity.face_method), false)?;
    state.match_reason = Some(matched.to_owned());
    // The ID token came back through this flow's code exchange (PKCE) with its nonce.
    state.holder_bound = true;
    state.issuer = Some(identity.issuer);
    state.vct = Some(String::new());
    grant(env, loaded, state, &FaceOutcome { score: 0, live: true, source: "idv" })
}

/// After verification: audits it, ends doomed flows, and matches the verified claims to the
/// account. `Ok(Err(reason))` means the flow must fail with that reason (already audited).
fn match_verified(
    env: &mut impl Environment,
    loaded: &Loaded,
    state: &FlowState,
    claims: &serde_json::Map<String, Value>,
) -> Result<Result<&'static str, String>, FlowError> {
    audit(env, state, AuditKind::IssuanceCompleted, "ok", false)?;
    audit(env, state, AuditKind::PresentationCompleted, "ok", false)?;
    if let Some(doomed) = state.doomed.clone() {
        audit(env, state, AuditKind::RecoveryFailed, &doomed, true)?;
        return Ok(Err(doomed));
    }
    let Some(user) = env.find_user_by_login(&Login::parse(&state.login)?)? else {
        audit(env, state, AuditKind::RecoveryFailed, "user-gone", true)?;
        return Ok(Err("user-gone".into()));
    };
    let same_name = match (&user.given_name, &user.family_name) {
        (Some(g), Some(f)) => env.count_users_by_name(g, f)?,
        _ => 0,
    };
    let d = &loaded.deployment;
    let bindings: Vec<Binding> = d.matching.bind.iter().map(Binding::from).collect();
    let matched = match_account(&MatchInput {
        claims,
        user: &user,
        same_name_users: same_name,
        bindings: &bindings,
        level: d.matching.level.into(),
    });
    if !matched.matched {
        audit(env, state, AuditKind::AccountNotMatched, matched.reason, true)?;
        return Ok(Err(matched.reason.to_owned()));
    }
    audit(env, state, AuditKind::AccountMatched, matched.reason, false)?;
    Ok(Ok(matched.reason))
}

/// Decodes a portrait claim: base64 or base64url, optionally as a `data:` URL.
fn decode_portrait(text: &str) -> Option<Vec<u8>> {
    let data = text.split_once(";base64,").map_or(text, |(_, data)| data).trim();
    let data = data.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(data)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(data))
        .ok()
}

/// The pass the permitting policies ask for: shortest lifetime, longest cooldown, one-time if
/// any says so; clamped to the operator's bounds.
fn pass_from(loaded: &Loaded, decision: &Decision) -> (u32, bool, u32) {
    let bounds = &loaded.deployment.tap;
    let number = |id: &str, key: &str| loaded.policies.annotation(id, key).and_then(|v| v.parse::<u32>().ok());
    let lifetime = decision.determining.iter().filter_map(|id| number(id, "lifetime_minutes")).min();
    let cooldown = decision.determining.iter().filter_map(|id| number(id, "cooldown_minutes")).max().unwrap_or(0);
    let one_time = decision.determining.iter().all(|id| loaded.policies.annotation(id, "one_time") != Some("false"));
    let lifetime =
        lifetime.unwrap_or(bounds.min_lifetime_minutes).clamp(bounds.min_lifetime_minutes, bounds.max_lifetime_minutes);
    (lifetime, one_time, cooldown)
}

fn on_selfie(
    env: &mut impl Environment,
    loaded: &Loaded,
    mut state: FlowState,
    selfie: &str,
) -> Result<Transition, FlowError> {
    let d = &loaded.deployment;
    let Some(portrait) = state.portrait.as_deref().and_then(decode_portrait) else {
        audit(env, &state, AuditKind::DocumentFailed, "portrait-undecodable", true)?;
        return fail(loaded, state, "portrait-undecodable");
    };
    let face = match env.compare(&portrait, selfie) {
        Ok(face) => face,
        Err(code) => {
            audit(env, &state, AuditKind::FaceCheckFailed, code, true)?;
            return fail(loaded, state, code);
        }
    };
    state.portrait = None;
    if !face.live || face.score < d.face_check.threshold {
        let code = if face.live { "face-below-threshold" } else { "face-not-live" };
        audit(env, &state, AuditKind::FaceCheckFailed, code, true)?;
        return fail(loaded, state, code);
    }
    audit(env, &state, AuditKind::FaceCheckPassed, "ok", false)?;
    grant(env, loaded, state, &FaceOutcome { score: face.score, live: face.live, source: "regain" })
}

/// The face comparison that went into the pass decision.
struct FaceOutcome {
    /// 0-100; 0 when the provider compared and gave no score.
    score: u8,
    live: bool,
    /// `regain` (selfie against the credential portrait) or `idv` (the provider's evidence).
    source: &'static str,
}

/// The pass decision and, when permitted, the pass.
fn grant(
    env: &mut impl Environment,
    loaded: &Loaded,
    state: FlowState,
    face: &FaceOutcome,
) -> Result<Transition, FlowError> {
    let d = &loaded.deployment;
    let now = env.now_unix();
    let user = env.find_user_by_login(&Login::parse(&state.login)?)?;
    let Some(user) = user.filter(|u| Some(&u.id) == state.user_id.as_ref()) else {
        audit(env, &state, AuditKind::RecoveryFailed, "user-gone", true)?;
        return fail(loaded, state, "user-gone");
    };
    let context = json!({
        "match_reason": state.match_reason.clone().unwrap_or_default(),
        "face_score": face.score,
        "face_source": face.source,
        "live": face.live,
        "holder_bound": state.holder_bound,
        "issuer": state.issuer.clone().unwrap_or_default(),
        "vct": state.vct.clone().unwrap_or_default(),
    });
    let facts = facts(loaded, &user, now, &[])?;
    let decision = ask(loaded, &user, &facts, "issueTap", ("Regain::Deployment", "default"), context)?;
    if !decision.allowed {
        let reason = format!("policy-denied:{}", decision.determining.join(","));
        audit(env, &state, AuditKind::RecoveryFailed, &reason, true)?;
        return fail(loaded, state, "policy-denied");
    }
    let (lifetime_minutes, one_time, cooldown_minutes) = pass_from(loaded, &decision);

    if d.mode == Mode::Evaluation {
        audit(env, &state, AuditKind::EvaluationCompleted, "would-issue", false)?;
        return finish(state, Step::EvaluationCompleted { would_issue: true, reason: "would-issue".into() });
    }
    let pass = env.issue_tap(&TapRequest {
        user_id: user.id.clone(),
        lifetime_seconds: lifetime_minutes.saturating_mul(60),
        one_time,
        length: d.tap.length,
        not_before_seconds: cooldown_minutes.saturating_mul(60),
    })?;
    env.require_registration(&user.id)?;
    let deployment = ("Regain::Deployment", "default");
    if ask(loaded, &user, &facts, "revokeMethods", deployment, json!({}))?.allowed {
        env.revoke_methods(&user.id)?;
    }
    if ask(loaded, &user, &facts, "revokeSessions", deployment, json!({}))?.allowed {
        env.revoke_sessions(&user.id)?;
    }
    audit(env, &state, AuditKind::RecoveryCompleted, "ok", false)?;
    env.notify_access_restored(&user.id)?;
    finish(state, Step::Completed { secret: pass.secret, expires_at: pass.expires_at, one_time })
}

/// What `explain` assumes where a real flow would measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assumptions {
    /// Recoveries the user started in the attempt window.
    pub attempts_in_window: u32,
    /// Recoveries started from the client's address in the window.
    pub attempts_from_address: u32,
    /// Whether the user completed a recovery in the last 24 hours.
    pub recovered_in_last_day: bool,
    /// The country of the request, used when the directory has none.
    pub client_country: Option<String>,
    /// The account match a verified credential would give.
    pub match_reason: String,
    /// The face score; `None` takes the configured threshold.
    pub face_score: Option<u8>,
}

impl Default for Assumptions {
    fn default() -> Self {
        Self {
            attempts_in_window: 0,
            attempts_from_address: 0,
            recovered_in_last_day: false,
            client_country: None,
            match_reason: "matched-exact".into(),
            face_score: None,
        }
    }
}

fn stage(name: &str, action: &str, resource: (&str, &str), context: &Value, d: &Decision) -> Value {
    json!({
        "stage": name,
        "action": action,
        "resource": format!("{}::\"{}\"", resource.0, resource.1),
        "context": context,
        "decision": if d.allowed { "allow" } else { "deny" },
        "determining": d.determining,
        "errors": d.errors,
    })
}

/// Every policy decision a recovery of `user` would meet, with the determining policy ids
/// and the facts that went in: eligibility, routing for each provider, the pass (as if the
/// credential verified and matched with `assume`), and the recovery scope. For operators
/// and policy authors; nothing is recorded or issued.
pub fn explain(loaded: &Loaded, user: &User, now: u64, assume: &Assumptions) -> Result<Value, FlowError> {
    let d = &loaded.deployment;
    let entities = entities(user, d, now, &[]);
    let facts = loaded.policies.facts(entities.clone()).map_err(policy_error)?;
    let deployment = ("Regain::Deployment", "default");
    let mut stages = Vec::new();

    let context = json!({
        "attempts_in_window": assume.attempts_in_window,
        "attempts_from_address": assume.attempts_from_address,
        "recovered_in_last_day": assume.recovered_in_last_day,
    });
    let eligible = ask(loaded, user, &facts, "startRecovery", deployment, context.clone())?;
    stages.push(stage("eligibility", "startRecovery", deployment, &context, &eligible));

    let country = user.country.clone().or_else(|| assume.client_country.clone()).unwrap_or_default();
    let mut routed = None;
    for idv in d.idvs_by_priority() {
        let context = json!({ "country": country });
        let decision = ask(loaded, user, &facts, "useIdv", ("Regain::Idv", &idv.id), context.clone())?;
        if decision.allowed && routed.is_none() {
            routed = Some(idv);
        }
        stages.push(stage("routing", "useIdv", ("Regain::Idv", &idv.id), &context, &decision));
    }

    let (face_source, face_score, vct) = match routed {
        Some(idv) if idv.mode == IdvMode::Oidc4ida => ("idv", 0, String::new()),
        Some(idv) => (
            "regain",
            assume.face_score.unwrap_or(d.face_check.threshold),
            idv.vct.first().cloned().unwrap_or_default(),
        ),
        None => ("regain", assume.face_score.unwrap_or(d.face_check.threshold), String::new()),
    };
    let context = json!({
        "match_reason": assume.match_reason,
        "face_score": face_score,
        "face_source": face_source,
        "live": true,
        "holder_bound": true,
        "issuer": routed.map(|idv| idv.issuer.clone()).unwrap_or_default(),
        "vct": vct,
    });
    let pass = ask(loaded, user, &facts, "issueTap", deployment, context.clone())?;
    let mut pass_stage = stage("pass", "issueTap", deployment, &context, &pass);
    if pass.allowed {
        let (lifetime, one_time, cooldown) = pass_from(loaded, &pass);
        if let Some(fields) = pass_stage.as_object_mut() {
            fields.insert(
                "pass".into(),
                json!({ "lifetime_minutes": lifetime, "one_time": one_time, "cooldown_minutes": cooldown }),
            );
        }
    }
    stages.push(pass_stage);
    for action in ["revokeMethods", "revokeSessions"] {
        let decision = ask(loaded, user, &facts, action, deployment, json!({}))?;
        stages.push(stage("scope", action, deployment, &json!({}), &decision));
    }

    let would_recover = eligible.allowed && routed.is_some() && pass.allowed;
    Ok(json!({
        "user": user.id,
        "mode": if d.mode == Mode::Evaluation { "evaluation" } else { "production" },
        "would_recover": would_recover,
        "routed_to": routed.map(|idv| idv.id.clone()),
        "entities": entities,
        "stages": stages,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::MINIMAL;
    use crate::policy::DEFAULT_POLICIES;

    const NOW: u64 = 1_800_000_000;

    fn ana() -> User {
        User {
            id: "u-1".into(),
            login: "ana@example.com".into(),
            given_name: Some("Ana".into()),
            family_name: Some("Silva".into()),
            enabled: true,
            last_sign_in: Some(NOW - 86_400 * 3),
            groups: vec!["recovery-enabled".into(), "staff".into()],
            country: Some("PT".into()),
            privileged: false,
            attributes: Vec::new(),
        }
    }

    #[test]
    fn the_shared_facts_with_the_users_added_are_the_facts_built_whole() {
        let loaded = Loaded::load(("regain.toml", MINIMAL), &DEFAULT_POLICIES).unwrap();
        let whole = loaded.policies.facts(entities(&ana(), &loaded.deployment, NOW, &[])).unwrap();
        assert!(facts(&loaded, &ana(), NOW, &[]).unwrap().same_as(&whole));

        // A provider reported unavailable changes the shared part: those facts are built whole.
        let down = facts(&loaded, &ana(), NOW, &["dev-idv".into()]).unwrap();
        assert!(!down.same_as(&whole));
        let rebuilt = loaded.policies.facts(entities(&ana(), &loaded.deployment, NOW, &["dev-idv".into()])).unwrap();
        assert!(down.same_as(&rebuilt));
        // The comparison sees attributes, not only names.
        let mut older = ana();
        older.last_sign_in = Some(NOW - 86_400 * 30);
        assert!(!facts(&loaded, &older, NOW, &[]).unwrap().same_as(&whole));

        // What is added is still checked against the schema.
        let bad =
            json!([{ "uid": { "type": "Regain::User", "id": "u-2" }, "attrs": { "enabled": "yes" }, "parents": [] }]);
        let refused = loaded.policies.facts_with(&loaded.shared, bad).unwrap_err();
        assert!(refused.contains("does not conform to the schema"), "{refused}");
    }
}
