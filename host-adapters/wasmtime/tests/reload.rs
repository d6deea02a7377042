//! Hot reload: a changed policy or configuration is validated and swapped while the host
//! runs the real component; an invalid one is refused and the previous set keeps serving.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

mod support;

use regain_core::policy::DEFAULT_POLICIES;
use regain_host::memory::MemoryAdapter;
use regain_host::reload::{FileDeployment, Refused, Reloaded};
use regain_host::wit::events::AuditKind;
use regain_host::{ComponentSource, PluginHost};
use std::path::Path;
use std::time::Duration;
use support::{CONFIG, client, config};

const FREEZE: &str = r#"
// Intent: stop every recovery while an incident is handled.
@id("incident-freeze")
forbid (principal, action == Regain::Action::"startRecovery", resource);
"#;

fn files(dir: &Path) {
    std::fs::write(dir.join("regain.toml"), CONFIG).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    for (name, text) in DEFAULT_POLICIES {
        std::fs::write(dir.join("policies").join(name), text).unwrap();
    }
}

/// The eligibility reason the plugin recorded for a new flow of a known user.
async fn eligibility(host: &PluginHost<MemoryAdapter>, adapter: &MemoryAdapter) -> String {
    let adapter = adapter.with_fresh_log();
    host.start(adapter.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
    let started = adapter.audit_events().into_iter().find(|e| e.kind == AuditKind::RecoveryStarted).unwrap();
    started.reason
}

#[tokio::test]
async fn valid_changes_swap_and_invalid_ones_keep_the_previous_set() {
    let dir = tempfile::tempdir().unwrap();
    files(dir.path());
    let mut ana = support::user("u-ana", "ana@example.org");
    ana.groups = vec!["recovery".into()];
    let adapter = MemoryAdapter::builder().users(vec![ana]).build();
    let deployment = FileDeployment::new(
        "default",
        &dir.path().join("regain.toml"),
        &dir.path().join("policies"),
        adapter.deployments(),
    );
    assert_eq!(deployment.reload(), Ok(Reloaded::Swapped));
    assert_eq!(deployment.reload(), Ok(Reloaded::Unchanged));
    let host = PluginHost::new(config(), ComponentSource::Bundled).unwrap();
    assert_eq!(eligibility(&host, &adapter).await, "ok");

    // A broken policy: refused with its position, and the old policies keep deciding.
    let broken = dir.path().join("policies/freeze.cedar");
    std::fs::write(&broken, FREEZE.replace("forbid (principal,", "forbid (principl,")).unwrap();
    let Err(Refused::Invalid(diagnostics)) = deployment.reload() else { panic!("a broken policy was accepted") };
    assert!(diagnostics[0].starts_with(&format!("{}:4:", broken.display())), "{diagnostics:?}");
    assert_eq!(eligibility(&host, &adapter).await, "ok");

    // A broken configuration: refused with the key's path.
    std::fs::write(&broken, FREEZE).unwrap();
    std::fs::write(dir.path().join("regain.toml"), CONFIG.replace("scope_group", "scope_grup")).unwrap();
    let Err(Refused::Invalid(diagnostics)) = deployment.reload() else { panic!("a broken config was accepted") };
    assert!(diagnostics.join("\n").contains("`scope_grup`: unknown field"), "{diagnostics:?}");
    assert_eq!(eligibility(&host, &adapter).await, "ok");

    // Both fixed: the new policy decides from the next call on.
    std::fs::write(dir.path().join("regain.toml"), CONFIG).unwrap();
    assert_eq!(deployment.reload(), Ok(Reloaded::Swapped));
    assert_eq!(eligibility(&host, &adapter).await, "not-eligible:incident-freeze");
}

#[tokio::test]
async fn the_watcher_picks_up_changes_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    files(dir.path());
    let mut ana = support::user("u-ana", "ana@example.org");
    ana.groups = vec!["recovery".into()];
    let adapter = MemoryAdapter::builder().users(vec![ana]).build();
    let store = adapter.deployments();
    let deployment =
        FileDeployment::new("default", &dir.path().join("regain.toml"), &dir.path().join("policies"), store.clone());
    deployment.reload().unwrap();
    let first = store.get("default").unwrap();
    let watcher = deployment.watch(Duration::from_millis(20));

    std::fs::write(dir.path().join("policies/freeze.cedar"), FREEZE).unwrap();
    // A hang guard, not a speed assertion.
    let swapped = tokio::time::timeout(Duration::from_secs(60), async {
        while store.get("default").unwrap() == first {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    watcher.abort();
    assert!(swapped.is_ok(), "the watcher never reloaded");
    let host = PluginHost::new(config(), ComponentSource::Bundled).unwrap();
    assert_eq!(eligibility(&host, &adapter).await, "not-eligible:incident-freeze");
}
