//! The real plugin component, built by the build script, running in the host.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

mod support;

use regain_core::policy::DEFAULT_POLICIES;
use regain_dev_idv::keys::SigningKey;
use regain_dev_idv::sdjwt::{IdentityCredential, issue_identity};
use regain_dev_idv::wallet;
use regain_host::memory::MemoryAdapter;
use regain_host::wit::admin::AdminError;
use regain_host::wit::directory::DirectoryError;
use regain_host::wit::events::AuditKind;
use regain_host::wit::flow::{FlowError, FlowInput, Step};
use regain_host::wit::types::SourceFile;
use regain_host::{ComponentSource, LoadError, Origin, PluginHost, SandboxConfig};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::{CONFIG, client, config, directory};

fn plugin() -> PluginHost<MemoryAdapter> {
    PluginHost::new(config(), ComponentSource::Bundled).expect("the bundled plugin loads")
}

const ISSUER: &str = "https://idv.example";
const STATUS_URI: &str = "https://idv.example/status/1";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn world(config: &str) -> MemoryAdapter {
    let issuer = SigningKey::p256(1);
    let list = regain_dev_idv::status::token(&issuer, Some("k1"), STATUS_URI, &[0, 0, 1], 1, now() - 60, None);
    let mut ana = support::user("u-ana", "ana@example.org");
    ana.given_name = Some("Ana".into());
    ana.family_name = Some("Silva".into());
    let mut bo = support::user("u-bo", "bo@example.org");
    bo.given_name = Some("Bo".into());
    MemoryAdapter::builder()
        .users(vec![ana, bo])
        .deployment("default", config, &DEFAULT_POLICIES)
        .issuer(ISSUER, &issuer.jwks(Some("k1")).to_string())
        .status_list(STATUS_URI, &list)
        .build()
}

/// The dev wallet's answer to a presentation request: a `direct_post` body.
fn wallet(step: &Step, given: &str, family: &str, index: u64) -> String {
    let Step::PresentRequest(request) = step else { panic!("expected a presentation request, got {step:?}") };
    assert_eq!(wallet::read_request(&request.url).unwrap().nonce, request.nonce);
    let holder = SigningKey::ed25519(5);
    let credential = IdentityCredential {
        issuer: ISSUER,
        kid: "k1",
        vct: "https://idv.example/credentials/identity",
        iat: now() - 600,
        exp: now() + 86_400,
        status: Some((STATUS_URI, index)),
        claims: vec![
            ("given_name", json!(given)),
            ("family_name", json!(family)),
            ("portrait", json!("aGVsbG8gcG9ydHJhaXQ")),
        ],
    };
    let issued = issue_identity(&credential, &SigningKey::p256(1), &holder);
    wallet::answer(&request.url, &issued, &holder, now() - 2).unwrap()
}

#[tokio::test]
async fn a_whole_recovery_runs_through_the_component() {
    let host = plugin();
    let adapter = world(CONFIG);
    let t1 = host.start(adapter.clone(), "default", "  ana@example.org ", &client()).await.unwrap().unwrap();
    assert!(matches!(&t1.step, Step::PresentRequest(r) if r.url.starts_with("openid4vp://?client_id=redirect_uri%3A")));
    assert_eq!(&t1.state[..4], b"RGN\0", "state blob carries the regain magic");

    let body = wallet(&t1.step, "ANA", "SILVA", 0);
    let t2 = host.resume(adapter.clone(), &t1.state, &FlowInput::Presentation(body)).await.unwrap().unwrap();
    // Same device: the browser must come back with the response code handed to the wallet.
    let Step::PresentationReceived(code) = &t2.step else { panic!("{:?} {:?}", t2.step, adapter.audit_events()) };
    let stolen = host.resume(adapter.clone(), &t2.state, &FlowInput::ResponseCode("guess".into())).await.unwrap();
    assert!(matches!(stolen, Err(FlowError::InvalidInput(_))));
    let t2 = host.resume(adapter.clone(), &t2.state, &FlowInput::ResponseCode(code.clone())).await.unwrap().unwrap();
    assert_eq!(t2.step, Step::CaptureSelfie);
    let t3 = host.resume(adapter.clone(), &t2.state, &FlowInput::Selfie("face:88".into())).await.unwrap().unwrap();
    let Step::Completed(pass) = &t3.step else { panic!("{:?}", t3.step) };
    assert_eq!(pass.secret.len(), 24);
    assert!(pass.one_time);
    assert!(pass.expires_at > now() + 3500 && pass.expires_at <= now() + 3600);

    let taps = adapter.taps();
    assert_eq!(taps.len(), 1);
    assert_eq!(taps[0].user_id, "u-ana");
    assert_ne!(taps[0].secret_sha256, pass.secret, "stored hashed");
    assert_eq!(adapter.revoked_sessions(), vec!["u-ana"]);
    assert_eq!(adapter.revoked_methods()[0].0, "u-ana");
    assert_eq!(adapter.registration_required(), vec!["u-ana"]);
    assert_eq!(adapter.notifications().len(), 1);
    let kinds: Vec<(AuditKind, String)> = adapter.audit_events().into_iter().map(|e| (e.kind, e.reason)).collect();
    assert_eq!(
        kinds,
        vec![
            (AuditKind::RecoveryStarted, "ok".into()),
            (AuditKind::IssuanceStarted, "idv:dev-idv".into()),
            (AuditKind::IssuanceCompleted, "ok".into()),
            (AuditKind::PresentationCompleted, "ok".into()),
            (AuditKind::AccountMatched, "matched-relaxed".into()),
            (AuditKind::FaceCheckPassed, "ok".into()),
            (AuditKind::RecoveryCompleted, "ok".into()),
        ]
    );
    let ids: Vec<String> = adapter.audit_events().into_iter().map(|e| e.flow_id).collect();
    assert!(ids.iter().all(|id| id.len() == 32 && *id == ids[0]));

    let again = host.resume(adapter.clone(), &t3.state, &FlowInput::Selfie("face:99".into())).await.unwrap();
    assert_eq!(again.unwrap_err(), FlowError::InvalidInput("invalid input: the flow has already ended".into()));
}

#[tokio::test]
async fn an_oidc4ida_recovery_runs_through_the_component() {
    let config = r#"
scope_group = "recovery"

[verifier]
response_uri = "https://recovery.example.org/vp/response"

[[idv]]
id = "ida"
issuer = "https://idv.example"
mode = "oidc4ida"
countries = ["*"]

[idv.oidc4ida]
authorization_endpoint = "https://idv.example/authorize"
token_endpoint = "https://idv.example/token"
client_id = "regain-recovery"
redirect_uri = "https://recovery.example.org/idv/callback"
"#;
    let host = plugin();
    let adapter = world(config);
    let t1 = host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    let Step::Redirect(redirect) = &t1.step else { panic!("{:?}", t1.step) };
    assert!(redirect.url.starts_with("https://idv.example/authorize?response_type=code&"));
    assert!(redirect.url.contains(&format!("state={}&", redirect.state)));
    let nonce = redirect.url.split("nonce=").nth(1).unwrap().split('&').next().unwrap();
    let assertion = regain_dev_idv::ida::Assertion {
        issuer: ISSUER,
        kid: "k1",
        client_id: "regain-recovery",
        nonce,
        subject: "s-1",
        iat: now() - 5,
        trust_framework: "eidas",
        face_method: Some("bvr"),
        claims: vec![("given_name", json!("Ana")), ("family_name", json!("Silva"))],
    };
    let token = assertion.id_token(&SigningKey::p256(1));

    let presentation = host.resume(adapter.clone(), &t1.state, &FlowInput::Presentation("x".into())).await.unwrap();
    assert_eq!(presentation.unwrap_err(), FlowError::InvalidInput("invalid input: an ID token is expected".into()));
    let t2 = host.resume(adapter.clone(), &t1.state, &FlowInput::IdToken(token)).await.unwrap().unwrap();
    assert!(matches!(&t2.step, Step::Completed(pass) if pass.one_time), "{:?}", adapter.audit_events());
    assert_eq!(adapter.taps().len(), 1);
    let last: Vec<(AuditKind, String)> =
        adapter.audit_events().into_iter().rev().take(2).map(|e| (e.kind, e.reason)).collect();
    assert_eq!(
        last,
        vec![(AuditKind::RecoveryCompleted, "ok".into()), (AuditKind::FaceCheckPassed, "idv-evidence:bvr".into())]
    );
}

#[tokio::test]
async fn a_revoked_credential_fails_with_a_helpdesk_code() {
    let host = plugin();
    let adapter = world(CONFIG);
    let t1 = host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    let body = wallet(&t1.step, "Ana", "Silva", 2);
    let t2 = host.resume(adapter.clone(), &t1.state, &FlowInput::Presentation(body)).await.unwrap().unwrap();
    let Step::Failed(failure) = &t2.step else { panic!("{:?}", t2.step) };
    assert_eq!(failure.reason, "recovery-failed");
    let last = adapter.audit_events().pop().unwrap();
    assert_eq!((last.kind, last.reason.as_str()), (AuditKind::DocumentFailed, "revoked"));
    assert_eq!(last.helpdesk_ref.as_deref(), Some(failure.helpdesk_ref.as_str()));
    assert!(adapter.taps().is_empty());
}

#[tokio::test]
async fn an_unknown_login_gets_the_same_step_as_a_known_one() {
    let host = plugin();
    let adapter = world(CONFIG);
    let known = host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    let unknown = host.start(adapter.clone(), "default", "mallory@example.org", &client()).await.unwrap().unwrap();
    let (Step::PresentRequest(a), Step::PresentRequest(b)) = (&known.step, &unknown.step) else { panic!() };
    assert_eq!(a.url.len(), b.url.len());
    assert_ne!(a.nonce, b.nonce);
    let events = adapter.audit_events();
    assert_eq!(events[2].reason, "unknown-login");
    assert_eq!(events[2].user_id, None);
}

#[tokio::test]
async fn a_bad_login_is_refused_before_any_lookup() {
    let host = plugin();
    let adapter = world(CONFIG);
    let err = host.start(adapter.clone(), "default", "   ", &client()).await.unwrap().unwrap_err();
    assert_eq!(err, FlowError::InvalidLogin("invalid login: login is empty".into()));
    let err = host.start(adapter.clone(), "default", "ana\n@example.org", &client()).await.unwrap().unwrap_err();
    assert_eq!(err, FlowError::InvalidLogin("invalid login: login contains a control character".into()));
    assert!(adapter.audit_events().is_empty());
}

#[tokio::test]
async fn a_broken_deployment_is_reported_with_its_position() {
    let host = plugin();
    let adapter = world(&CONFIG.replace("[verifier]", "[verifier]\nrespones_uri = 1"));
    let err = host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap_err();
    let FlowError::Config(text) = err else { panic!("{err:?}") };
    assert!(text.contains("regain.toml") || text.contains("default:"), "{text}");
    assert!(text.contains("unknown field `respones_uri`"), "{text}");
    let err = host.start(adapter.clone(), "nope", "ana@example.org", &client()).await.unwrap().unwrap_err();
    assert_eq!(err, FlowError::Host("host failure: unknown deployment: nope".into()));
    assert!(adapter.audit_events().is_empty());
}

/// A directory that is down: the flow must stop with a host error and record nothing.
#[derive(Clone)]
struct DownDirectory(MemoryAdapter);

impl regain_host::Directory for DownDirectory {
    async fn find_user_by_login(
        &self,
        _login: String,
    ) -> Result<Option<regain_host::wit::types::User>, DirectoryError> {
        Err(DirectoryError::Unavailable("ldap timeout".into()))
    }

    async fn count_users_by_name(&self, _given: String, _family: String) -> Result<u32, DirectoryError> {
        Err(DirectoryError::Unavailable("ldap timeout".into()))
    }
}

support::delegate_all_but_directory!(DownDirectory);

#[tokio::test]
async fn a_directory_failure_stops_the_flow_with_a_host_error() {
    let host = PluginHost::<DownDirectory>::new(config(), ComponentSource::Bundled).unwrap();
    let adapter = DownDirectory(world(CONFIG));
    let err = host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap_err();
    assert_eq!(err, FlowError::Host("host failure: directory unavailable: ldap timeout".into()));
    assert!(adapter.0.audit_events().is_empty());
}

#[tokio::test]
async fn resume_refuses_foreign_state() {
    let host = plugin();
    let adapter = world(CONFIG);
    let input = FlowInput::Selfie("face:90".into());
    let err = host.resume(adapter.clone(), b"{\"forged\":1}", &input).await.unwrap().unwrap_err();
    assert_eq!(err, FlowError::InvalidState("invalid state: state is not a regain flow state".into()));
    let t = host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    let mut truncated = t.state.clone();
    truncated.pop();
    let err = host.resume(adapter, &truncated, &input).await.unwrap().unwrap_err();
    assert!(matches!(err, FlowError::InvalidState(_)), "{err:?}");
}

#[tokio::test]
async fn admin_validate_reports_every_problem_with_its_position() {
    let host = plugin();
    let source = |name: &str, text: &str| SourceFile { name: name.into(), text: text.into() };
    let defaults: Vec<SourceFile> = DEFAULT_POLICIES.iter().map(|(n, t)| source(n, t)).collect();
    let config = source("regain.toml", CONFIG);
    assert_eq!(host.validate(directory(), &config, &defaults).await.unwrap(), Ok(()));

    let typo = source("regain.toml", &CONFIG.replace("scope_group", "scope_grup"));
    let Err(AdminError::Invalid(found)) = host.validate(directory(), &typo, &defaults).await.unwrap() else {
        panic!("a config typo was accepted")
    };
    assert_eq!((found[0].file.as_str(), found[0].line, found[0].column), ("regain.toml", 2, 1));
    assert!(found[0].message.starts_with("`scope_grup`: unknown field"), "{found:?}");

    let broken =
        source("eligibility.cedar", "@id(\"x\")\npermit (principal, action, resource) when { principal.enabeld };");
    let Err(AdminError::Invalid(found)) = host.validate(directory(), &config, &[broken]).await.unwrap() else {
        panic!("a broken policy was accepted")
    };
    assert_eq!((found[0].file.as_str(), found[0].line), ("eligibility.cedar", 2), "{found:?}");
    assert!(found[0].message.contains("enabeld"), "{found:?}");
}

#[tokio::test]
async fn admin_explain_runs_the_decisions_for_a_directory_user() {
    let host = plugin();
    let source = |name: &str, text: &str| SourceFile { name: name.into(), text: text.into() };
    let defaults: Vec<SourceFile> = DEFAULT_POLICIES.iter().map(|(n, t)| source(n, t)).collect();
    let config = source("regain.toml", CONFIG);
    let adapter = world(CONFIG);
    let text = host.explain(adapter.clone(), &config, &defaults, "ana@example.org").await.unwrap().unwrap();
    let explained: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(explained["user"], "u-ana");
    assert_eq!(explained["would_recover"], true);
    assert_eq!(explained["stages"][0]["determining"], json!(["eligibility-scope"]));
    assert!(adapter.audit_events().is_empty(), "explaining records nothing");
    assert!(adapter.taps().is_empty());

    let unknown = host.explain(adapter, &config, &defaults, "nobody@example.org").await.unwrap();
    assert!(matches!(unknown, Err(AdminError::Invalid(ref d)) if d[0].message.contains("no user")), "{unknown:?}");
}

/// The imports section of the root README, between its markers.
fn documented_imports() -> Vec<String> {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("<!-- component-imports:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- component-imports:end -->").next())
        .expect("README has the component-imports section");
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_component_imports_exactly_what_the_readme_lists() {
    let host = plugin();
    let imports: Vec<String> = host
        .component_imports()
        .iter()
        .filter(|name| !name.starts_with("regain:recovery/"))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect();
    let mut documented = documented_imports();
    documented.sort();
    assert_eq!(imports, documented, "update the README's list of component imports");
    for forbidden in ["wasi:filesystem", "wasi:sockets", "wasi:http"] {
        assert!(!imports.iter().any(|i| i.starts_with(forbidden)), "the plugin imports {forbidden}");
    }
    // The component imports the Regain interfaces its code calls; the host links all six.
    let known = ["types", "directory", "credentials", "trust", "face-check", "events", "crypto", "deployment"]
        .map(|name| format!("regain:recovery/{name}@0.1.0"));
    let regain: Vec<&String> = host.component_imports().iter().filter(|n| n.starts_with("regain:")).collect();
    assert!(regain.iter().all(|name| known.contains(name)), "{regain:?}");
    for used in ["directory", "events", "credentials", "trust", "face-check", "crypto", "deployment"] {
        assert!(regain.contains(&&format!("regain:recovery/{used}@0.1.0")), "{regain:?}");
    }
}

#[test]
fn the_second_load_comes_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig { cache_dir: Some(dir.path().join("cache")), ..config() };
    let first = PluginHost::<MemoryAdapter>::new(config.clone(), ComponentSource::Bundled).unwrap();
    assert_eq!(first.load_report().origin, Origin::Compiled);
    let file = first.load_report().cache_file.clone().expect("artefact written");
    assert!(file.starts_with(dir.path()));
    assert!(file.file_name().unwrap().to_string_lossy().starts_with(&first.load_report().component_sha256));

    let second = PluginHost::<MemoryAdapter>::new(config.clone(), ComponentSource::Bundled).unwrap();
    assert_eq!(second.load_report().origin, Origin::Cached);
    assert_eq!(second.load_report().cache_file.as_deref(), Some(file.as_path()));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("cache")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "cache directory must be private");
    }
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_replaced_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig { cache_dir: Some(dir.path().to_path_buf()), ..config() };
    let first = PluginHost::<MemoryAdapter>::new(config.clone(), ComponentSource::Bundled).unwrap();
    let file = first.load_report().cache_file.clone().unwrap();
    std::fs::write(&file, b"not an artefact").unwrap();

    let second = PluginHost::<MemoryAdapter>::new(config.clone(), ComponentSource::Bundled).unwrap();
    assert_eq!(second.load_report().origin, Origin::Compiled);
    let t = second.start(world(CONFIG), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    assert!(matches!(t.step, Step::PresentRequest(_)));
    let third = PluginHost::<MemoryAdapter>::new(config, ComponentSource::Bundled).unwrap();
    assert_eq!(third.load_report().origin, Origin::Cached);
}

#[test]
fn an_unwritable_cache_only_costs_a_compile() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let config = SandboxConfig { cache_dir: Some(blocker.join("cache")), ..config() };
    let host = PluginHost::<MemoryAdapter>::new(config, ComponentSource::Bundled).unwrap();
    assert_eq!(host.load_report().origin, Origin::Compiled);
    assert_eq!(host.load_report().cache_file, None);
}

#[test]
fn what_is_not_a_plugin_is_refused_with_a_clear_error() {
    let err = PluginHost::<MemoryAdapter>::new(config(), ComponentSource::Bytes(b"\0asm garbage")).err().unwrap();
    assert!(matches!(err, LoadError::Compile(_)), "{err:?}");
    assert!(err.to_string().starts_with("cannot compile the component: "), "{err}");

    let missing = std::path::Path::new("/nonexistent/regain.wasm");
    let err = PluginHost::<MemoryAdapter>::new(config(), ComponentSource::File(missing)).err().unwrap();
    assert!(err.to_string().starts_with("cannot read the component `/nonexistent/regain.wasm`: "), "{err}");

    let err =
        PluginHost::<MemoryAdapter>::new(SandboxConfig { max_instances: 0, ..config() }, ComponentSource::Bundled)
            .err()
            .unwrap();
    assert_eq!(err.to_string(), "invalid sandbox configuration: `max_instances` must be at least 1");
}

#[tokio::test]
async fn warm_instances_serve_each_call_with_its_own_adapter_and_deployment() {
    let host = PluginHost::new(SandboxConfig { max_instances: 1, ..config() }, ComponentSource::Bundled).unwrap();
    let first = world(CONFIG);
    let second = world(CONFIG);
    host.start(first.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    host.start(second.clone(), "default", "bo@example.org", &client()).await.unwrap().unwrap();
    // One slot: the second call ran on the first call's instance, with its own adapter.
    assert!(first.audit_events().iter().all(|e| e.user_id.as_deref() == Some("u-ana")));
    assert!(second.audit_events().iter().all(|e| e.user_id.as_deref() == Some("u-bo")));
    assert_eq!((first.audit_events().len(), second.audit_events().len()), (2, 2));

    // A changed deployment takes effect at the next call on the same warm instance.
    let broken = world(&CONFIG.replace("countries = [\"*\"]", "countries = [\"*\"]\nprioritty = 1"));
    let err = host.start(broken, "default", "ana@example.org", &client()).await.unwrap().unwrap_err();
    assert!(matches!(err, FlowError::Config(ref t) if t.contains("unknown field `prioritty`")), "{err:?}");
    let again = host.start(world(CONFIG), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    assert!(matches!(again.step, Step::PresentRequest(_)));
}

/// An adapter that counts the bundles the plugin fetches.
#[derive(Clone)]
struct CountingBundles(MemoryAdapter, Arc<AtomicUsize>);

impl regain_host::Directory for CountingBundles {
    async fn find_user_by_login(&self, login: String) -> Result<Option<regain_host::wit::types::User>, DirectoryError> {
        self.0.find_user_by_login(login).await
    }

    async fn count_users_by_name(&self, given: String, family: String) -> Result<u32, DirectoryError> {
        self.0.count_users_by_name(given, family).await
    }
}

impl regain_host::Deployments for CountingBundles {
    async fn bundle(
        &self,
        c: String,
    ) -> Result<regain_host::wit::deployment::Bundle, regain_host::wit::deployment::DeploymentError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.bundle(c).await
    }

    async fn revision(&self, c: String) -> Result<u64, regain_host::wit::deployment::DeploymentError> {
        self.0.revision(c).await
    }
}

support::delegate_all_but_directory_and_deployments!(CountingBundles);

#[tokio::test]
async fn a_warm_instance_fetches_the_deployment_again_only_when_its_revision_changes() {
    let host = PluginHost::new(SandboxConfig { max_instances: 1, ..config() }, ComponentSource::Bundled).unwrap();
    let adapter = CountingBundles(world(CONFIG), Arc::default());
    let fetched = || adapter.1.load(Ordering::SeqCst);
    for _ in 0..3 {
        host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    }
    assert_eq!(fetched(), 1, "parsed once, then reused while the revision stays");

    // A change is published: the next call fetches it and runs under it.
    let broken = CONFIG.replace("countries = [\"*\"]", "countries = [\"*\"]\nprioritty = 1");
    let bundle = |config: &str| regain_host::wit::deployment::Bundle {
        config: SourceFile { name: "default".into(), text: config.into() },
        policies: DEFAULT_POLICIES
            .iter()
            .map(|(name, text)| SourceFile { name: (*name).into(), text: (*text).into() })
            .collect(),
    };
    adapter.0.deployments().publish("default", bundle(&broken));
    let err = host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap_err();
    assert!(matches!(err, FlowError::Config(ref t) if t.contains("unknown field `prioritty`")), "{err:?}");
    assert_eq!(fetched(), 2);
    // The same texts published again are a new revision too: fetched again, and they work.
    adapter.0.deployments().publish("default", bundle(CONFIG));
    host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    assert_eq!(fetched(), 3);
}

#[test]
fn the_core_run_natively_over_the_same_adapter_agrees_with_the_component() {
    use regain_host::native::NativeEnvironment;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let host = plugin();
    let kinds = |a: &MemoryAdapter| a.audit_events().into_iter().map(|e| (e.kind, e.reason)).collect::<Vec<_>>();

    let through_component = world(CONFIG);
    let t1 = runtime.block_on(host.start(through_component.clone(), "default", "ana@example.org", &client()));
    let t1 = t1.unwrap().unwrap();
    let body = wallet(&t1.step, "Ana", "Silva", 0);
    let t2 = runtime.block_on(host.resume(through_component.clone(), &t1.state, &FlowInput::Presentation(body)));
    let t2 = t2.unwrap().unwrap();
    let Step::PresentationReceived(code) = t2.step else { panic!("{:?}", t2.step) };
    let t2 = runtime.block_on(host.resume(through_component.clone(), &t2.state, &FlowInput::ResponseCode(code)));
    let t3 = runtime.block_on(host.resume(
        through_component.clone(),
        &t2.unwrap().unwrap().state,
        &FlowInput::Selfie("face:88".into()),
    ));
    assert!(matches!(t3.unwrap().unwrap().step, Step::Completed(_)));

    let natively = world(CONFIG);
    let mut env = NativeEnvironment::new(natively.clone());
    let loaded = env.load("default").unwrap();
    let n1 = regain_core::flow::start(&mut env, &loaded, "ana@example.org", &regain_core::Client::default()).unwrap();
    let regain_core::Step::PresentRequest { url, nonce } = n1.step.clone() else { panic!("{:?}", n1.step) };
    let as_wit = Step::PresentRequest(regain_host::wit::flow::PresentationRequest { url, nonce });
    let body = wallet(&as_wit, "Ana", "Silva", 0);
    let n2 = regain_core::flow::resume(&mut env, &loaded, &n1.state, regain_core::Input::Presentation(body)).unwrap();
    let regain_core::Step::PresentationReceived { response_code } = n2.step else { panic!("{:?}", n2.step) };
    let n2 = regain_core::flow::resume(&mut env, &loaded, &n2.state, regain_core::Input::ResponseCode(response_code));
    let n2 = n2.unwrap();
    let n3 = regain_core::flow::resume(&mut env, &loaded, &n2.state, regain_core::Input::Selfie("face:88".into()));
    assert!(matches!(n3.unwrap().step, regain_core::Step::Completed { .. }));

    assert_eq!(kinds(&natively), kinds(&through_component));
    assert_eq!(natively.taps().len(), 1);
    assert_eq!(natively.revoked_sessions(), through_component.revoked_sessions());
}
