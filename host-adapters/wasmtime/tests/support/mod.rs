//! Shared fixtures of the regain-host tests.

#![allow(dead_code, reason = "each test file uses part of the support module")]

use regain_host::memory::MemoryAdapter;
use regain_host::wit::directory::DirectoryError;
use regain_host::wit::types::{ClientInfo, User};
use regain_host::{Directory, SandboxConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Path of the misbehaving test guest, built by regain-host's build script.
pub const TEST_GUEST: &str = env!("REGAIN_TEST_GUEST_WASM");

/// Sandbox limits small enough for tests to hit quickly, with a cache shared by the tests.
pub fn config() -> SandboxConfig {
    SandboxConfig {
        memory_limit: 16 << 20,
        deadline: Duration::from_millis(300),
        max_instances: 8,
        queue_timeout: Duration::from_secs(10),
        epoch_tick: Duration::from_millis(10),
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("regain-cache")),
    }
}

pub fn user(id: &str, login: &str) -> User {
    User {
        id: id.into(),
        login: login.into(),
        given_name: Some("Ana".into()),
        family_name: Some("Silva".into()),
        enabled: true,
        last_sign_in: Some(1_790_000_000),
        groups: vec!["recovery".into()],
        country: Some("PT".into()),
        privileged: false,
        attributes: vec![],
    }
}

pub fn directory() -> MemoryAdapter {
    MemoryAdapter::new(vec![user("u-ana", "ana@example.org"), user("u-bo", "bo@example.org")])
}

pub fn client() -> ClientInfo {
    ClientInfo { address: Some("192.0.2.7".into()), country: None, cross_device: false, recent_attempts: 0 }
}

/// Counts directory calls in flight and remembers the highest count.
#[derive(Default)]
pub struct Gauge {
    now: AtomicUsize,
    pub max: AtomicUsize,
    pub total: AtomicUsize,
}

/// The in-memory adapter with a slow, gauged directory: lets tests see how many calls the
/// host runs at the same time.
#[derive(Clone)]
pub struct Slow(pub MemoryAdapter, pub Duration, pub Arc<Gauge>);

impl Directory for Slow {
    async fn find_user_by_login(&self, login: String) -> Result<Option<User>, DirectoryError> {
        let now = self.2.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.2.max.fetch_max(now, Ordering::SeqCst);
        self.2.total.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.1).await;
        self.2.now.fetch_sub(1, Ordering::SeqCst);
        self.0.find_user_by_login(login).await
    }

    async fn count_users_by_name(&self, given_name: String, family_name: String) -> Result<u32, DirectoryError> {
        self.0.count_users_by_name(given_name, family_name).await
    }
}

/// Implements every import but the directory by delegating to the `MemoryAdapter` in
/// field `.0`.
macro_rules! delegate_all_but_directory {
    ($t:ty) => {
        crate::support::delegate_all_but_directory_and_deployments!($t);
        impl regain_host::Deployments for $t {
            async fn bundle(
                &self,
                c: String,
            ) -> Result<regain_host::wit::deployment::Bundle, regain_host::wit::deployment::DeploymentError> {
                self.0.bundle(c).await
            }
            async fn revision(&self, c: String) -> Result<u64, regain_host::wit::deployment::DeploymentError> {
                self.0.revision(c).await
            }
        }
    };
}
#[allow(unused_imports, reason = "used by some of the test files only")]
pub(crate) use delegate_all_but_directory;

/// Implements every import but the directory and the deployments by delegating to the
/// `MemoryAdapter` in field `.0`.
macro_rules! delegate_all_but_directory_and_deployments {
    ($t:ty) => {
        impl regain_host::Credentials for $t {
            async fn issue_tap(
                &self,
                r: regain_host::wit::credentials::TapRequest,
            ) -> Result<regain_host::wit::credentials::IssuedTap, regain_host::wit::credentials::CredentialError> {
                self.0.issue_tap(r).await
            }
            async fn revoke_methods(
                &self,
                u: String,
                k: Vec<regain_host::wit::credentials::MethodKind>,
            ) -> Result<u32, regain_host::wit::credentials::CredentialError> {
                self.0.revoke_methods(u, k).await
            }
            async fn require_registration(
                &self,
                u: String,
            ) -> Result<(), regain_host::wit::credentials::CredentialError> {
                self.0.require_registration(u).await
            }
            async fn revoke_sessions(&self, u: String) -> Result<u32, regain_host::wit::credentials::CredentialError> {
                self.0.revoke_sessions(u).await
            }
        }
        impl regain_host::Trust for $t {
            async fn issuer_keys(&self, i: String) -> Result<String, regain_host::wit::trust::TrustError> {
                self.0.issuer_keys(i).await
            }
            async fn status_list_token(&self, u: String) -> Result<String, regain_host::wit::trust::TrustError> {
                self.0.status_list_token(u).await
            }
        }
        impl regain_host::FaceCheck for $t {
            async fn compare(
                &self,
                p: Vec<u8>,
                s: String,
            ) -> Result<regain_host::wit::face_check::FaceComparison, regain_host::wit::face_check::FaceCheckError>
            {
                self.0.compare(p, s).await
            }
        }
        impl regain_host::Events for $t {
            async fn record_audit(
                &self,
                e: regain_host::wit::events::AuditEvent,
            ) -> Result<(), regain_host::wit::events::EventsError> {
                self.0.record_audit(e).await
            }
            async fn count_recent(
                &self,
                u: String,
                w: Vec<regain_host::wit::events::RecentWindow>,
            ) -> Result<Vec<u32>, regain_host::wit::events::EventsError> {
                self.0.count_recent(u, w).await
            }
            async fn notify_user(
                &self,
                u: String,
                k: regain_host::wit::events::NotificationKind,
            ) -> Result<(), regain_host::wit::events::EventsError> {
                self.0.notify_user(u, k).await
            }
        }
    };
}
#[allow(unused_imports, reason = "used by some of the test files only")]
pub(crate) use delegate_all_but_directory_and_deployments;

delegate_all_but_directory!(Slow);

/// A minimal deployment: everyone in `recovery` may recover through one provider.
pub const CONFIG: &str = r#"
scope_group = "recovery"

[verifier]
response_uri = "https://recovery.example.org/vp/response"

[[idv]]
id = "dev-idv"
issuer = "https://idv.example"
vct = ["https://idv.example/credentials/identity"]
countries = ["*"]
"#;
