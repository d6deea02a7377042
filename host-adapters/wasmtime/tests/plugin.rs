//! The real plugin component, built by the build script, running in the host.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

mod support;

use regain_host::memory::MemoryAdapter;
use regain_host::wit::admin::{AdminError, SourceFile};
use regain_host::wit::directory::DirectoryError;
use regain_host::wit::events::AuditKind;
use regain_host::wit::flow::{AccountLookup, FlowError, FlowInput, Step};
use regain_host::{ComponentSource, LoadError, Origin, PluginHost, SandboxConfig};
use support::{client, config, directory};

fn plugin() -> PluginHost<MemoryAdapter> {
    PluginHost::new(config(), ComponentSource::Bundled).expect("the bundled plugin loads")
}

#[tokio::test]
async fn start_finds_a_known_login_and_records_the_audit_event() {
    let host = plugin();
    let adapter = directory();
    let t = host.start(adapter.clone(), "default", "  ana@example.org ", &client()).await.unwrap().unwrap();
    assert_eq!(t.step, Step::AccountLookup(AccountLookup::Found));
    assert_eq!(&t.state[..4], b"RGN\0", "state blob carries the regain magic");

    let events = adapter.audit_events();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.kind, AuditKind::RecoveryStarted);
    assert_eq!(event.reason, "user-found");
    assert_eq!(event.user_id.as_deref(), Some("u-ana"));
    assert_eq!(event.flow_id.len(), 32);
    assert!(event.flow_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(event.helpdesk_ref, None);
}

#[tokio::test]
async fn start_reports_an_unknown_login_as_not_found() {
    let host = plugin();
    let adapter = directory();
    let t = host.start(adapter.clone(), "default", "mallory@example.org", &client()).await.unwrap().unwrap();
    assert_eq!(t.step, Step::AccountLookup(AccountLookup::NotFound));
    let events = adapter.audit_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, "unknown-login");
    assert_eq!(events[0].user_id, None);
}

#[tokio::test]
async fn every_flow_gets_its_own_identifier() {
    let host = plugin();
    let adapter = directory();
    for _ in 0..3 {
        host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    }
    let mut ids: Vec<String> = adapter.audit_events().into_iter().map(|e| e.flow_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "flow ids repeat: {ids:?}");
}

#[tokio::test]
async fn a_bad_login_is_refused_before_any_lookup() {
    let host = plugin();
    let adapter = directory();
    let err = host.start(adapter.clone(), "default", "   ", &client()).await.unwrap().unwrap_err();
    assert_eq!(err, FlowError::InvalidLogin("invalid login: login is empty".into()));
    let err = host.start(adapter.clone(), "default", "ana\n@example.org", &client()).await.unwrap().unwrap_err();
    assert_eq!(err, FlowError::InvalidLogin("invalid login: login contains a control character".into()));
    assert!(adapter.audit_events().is_empty());
}

/// A directory that is down: the flow must stop with a host error and record nothing.
#[derive(Clone, Default)]
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
    let adapter = DownDirectory::default();
    let err = host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap_err();
    assert_eq!(err, FlowError::Host("host failure: directory unavailable: ldap timeout".into()));
    assert!(adapter.0.audit_events().is_empty());
}

#[tokio::test]
async fn resume_checks_its_state_and_is_not_implemented_yet() {
    let host = plugin();
    let adapter = directory();
    let t = host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    let input = FlowInput::Selfie("selfie-1".into());
    let err = host.resume(adapter.clone(), &t.state, &input).await.unwrap().unwrap_err();
    assert_eq!(err, FlowError::Unsupported("`flow.resume` is not implemented by this plugin build".into()));

    let err = host.resume(adapter.clone(), b"{\"forged\":1}", &input).await.unwrap().unwrap_err();
    assert_eq!(err, FlowError::InvalidState("invalid state: state is not a regain flow state".into()));
    let mut truncated = t.state.clone();
    truncated.pop();
    let err = host.resume(adapter, &truncated, &input).await.unwrap().unwrap_err();
    assert!(matches!(err, FlowError::InvalidState(_)), "{err:?}");
}

#[tokio::test]
async fn admin_exports_answer_unsupported() {
    let host = plugin();
    let config = SourceFile { name: "regain.toml".into(), text: String::new() };
    let err = host.validate(directory(), &config, &[]).await.unwrap().unwrap_err();
    assert!(matches!(err, AdminError::Unsupported(ref t) if t.contains("admin.validate")), "{err:?}");
    let err = host.explain(directory(), &config, &[], "ana@example.org").await.unwrap().unwrap_err();
    assert!(matches!(err, AdminError::Unsupported(ref t) if t.contains("admin.explain")), "{err:?}");
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
    let known = ["types", "directory", "credentials", "trust", "face-check", "events"]
        .map(|name| format!("regain:recovery/{name}@0.1.0"));
    let regain: Vec<&String> = host.component_imports().iter().filter(|n| n.starts_with("regain:")).collect();
    assert!(regain.iter().all(|name| known.contains(name)), "{regain:?}");
    for used in ["directory", "events"] {
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
    let t = second.start(directory(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    assert_eq!(t.step, Step::AccountLookup(AccountLookup::Found));
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
