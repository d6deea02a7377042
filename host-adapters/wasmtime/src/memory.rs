//! An adapter that keeps everything in memory: directory, deployment, trust material,
//! credentials and the audit log.
//!
//! It serves the operator tools and the tests. Its face check is a **test double**, not face
//! recognition: it reads the result from the selfie reference (`face:<score>` for a live
//! face with that score, `face:<score>:spoof` for one that fails liveness). Passes are
//! generated from the operating system's random source and kept only as SHA-256 digests.

use crate::imports::{Credentials, Deployments, Directory, Events, FaceCheck, Trust};
use crate::reload::DeploymentStore;
use crate::wit::credentials::{CredentialError, IssuedTap, MethodKind, TapRequest};
use crate::wit::deployment::{Bundle, DeploymentError};
use crate::wit::directory::DirectoryError;
use crate::wit::events::{AuditEvent, AuditKind, EventsError, NotificationKind, RecentWindow};
use crate::wit::face_check::{FaceCheckError, FaceComparison};
use crate::wit::trust::TrustError;
use crate::wit::types::{SourceFile, User};
use ring::rand::SecureRandom as _;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The alphabet of pass secrets (Crockford base32: no I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A pass as the in-memory store keeps it: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTap {
    /// The user.
    pub user_id: String,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// What was asked for.
    pub lifetime_seconds: u32,
    /// One-time.
    pub one_time: bool,
    /// Cooldown.
    pub not_before_seconds: u32,
}

#[derive(Default)]
struct Log {
    audit: Vec<AuditEvent>,
    notifications: Vec<(String, NotificationKind)>,
    taps: Vec<StoredTap>,
    revoked_methods: Vec<(String, Vec<MethodKind>)>,
    revoked_sessions: Vec<String>,
    registration_required: Vec<String>,
}

#[derive(Default)]
struct Setup {
    users: Vec<User>,
    deployments: DeploymentStore,
    issuers: HashMap<String, String>,
    status_lists: HashMap<String, String>,
}

/// Everything in memory. Clones share the same directory and the same log.
#[derive(Clone, Default)]
pub struct MemoryAdapter {
    setup: Arc<Setup>,
    log: Arc<Mutex<Log>>,
}

/// Builds a [`MemoryAdapter`].
#[derive(Default)]
pub struct MemoryBuilder {
    setup: Setup,
}

impl MemoryBuilder {
    /// The directory's users.
    pub fn users(mut self, users: Vec<User>) -> Self {
        self.setup.users = users;
        self
    }

    /// A deployment: configuration text and policy files.
    pub fn deployment(self, name: &str, config: &str, policies: &[(&str, &str)]) -> Self {
        let source = |(name, text): (&str, &str)| SourceFile { name: name.to_owned(), text: text.to_owned() };
        let bundle =
            Bundle { config: source((name, config)), policies: policies.iter().copied().map(source).collect() };
        self.setup.deployments.publish(name, bundle);
        self
    }

    /// A trusted issuer and its JWK Set document.
    pub fn issuer(mut self, issuer: &str, jwks: &str) -> Self {
        self.setup.issuers.insert(issuer.to_owned(), jwks.to_owned());
        self
    }

    /// A status list token served for `uri`.
    pub fn status_list(mut self, uri: &str, token: &str) -> Self {
        self.setup.status_lists.insert(uri.to_owned(), token.to_owned());
        self
    }

    /// The adapter.
    pub fn build(self) -> MemoryAdapter {
        MemoryAdapter { setup: Arc::new(self.setup), log: Arc::default() }
    }
}

impl MemoryAdapter {
    /// An adapter whose directory holds `users`, and nothing else.
    pub fn new(users: Vec<User>) -> Self {
        MemoryBuilder::default().users(users).build()
    }

    /// Starts building an adapter.
    pub fn builder() -> MemoryBuilder {
        MemoryBuilder::default()
    }

    /// The deployments this adapter serves; publishing into it (for instance from a
    /// [`crate::reload::FileDeployment`]) changes what the next call gets.
    pub fn deployments(&self) -> DeploymentStore {
        self.setup.deployments.clone()
    }

    /// An adapter with the same setup and an empty log of its own.
    pub fn with_fresh_log(&self) -> Self {
        Self { setup: Arc::clone(&self.setup), log: Arc::default() }
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The audit events recorded so far, oldest first.
    pub fn audit_events(&self) -> Vec<AuditEvent> {
        self.log().audit.clone()
    }

    /// The notifications queued so far, oldest first.
    pub fn notifications(&self) -> Vec<(String, NotificationKind)> {
        self.log().notifications.clone()
    }

    /// The passes issued so far.
    pub fn taps(&self) -> Vec<StoredTap> {
        self.log().taps.clone()
    }

    /// Users whose methods were revoked, with the kinds.
    pub fn revoked_methods(&self) -> Vec<(String, Vec<MethodKind>)> {
        self.log().revoked_methods.clone()
    }

    /// Users whose sessions were revoked.
    pub fn revoked_sessions(&self) -> Vec<String> {
        self.log().revoked_sessions.clone()
    }

    /// Users who must register a new method.
    pub fn registration_required(&self) -> Vec<String> {
        self.log().registration_required.clone()
    }
}

fn same_name(stored: Option<&String>, wanted: &str) -> bool {
    stored.is_some_and(|s| s.trim().to_lowercase() == wanted.trim().to_lowercase())
}

impl Directory for MemoryAdapter {
    async fn find_user_by_login(&self, login: String) -> Result<Option<User>, DirectoryError> {
        Ok(self.setup.users.iter().find(|u| u.login.eq_ignore_ascii_case(&login)).cloned())
    }

    async fn count_users_by_name(&self, given_name: String, family_name: String) -> Result<u32, DirectoryError> {
        let count = self
            .setup
            .users
            .iter()
            .filter(|u| {
                same_name(u.given_name.as_ref(), &given_name) && same_name(u.family_name.as_ref(), &family_name)
            })
            .count();
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }
}

impl Deployments for MemoryAdapter {
    async fn bundle(&self, config_ref: String) -> Result<Bundle, DeploymentError> {
        self.setup.deployments.get(&config_ref).map(|b| (*b).clone()).ok_or(DeploymentError::Unknown(config_ref))
    }

    async fn revision(&self, config_ref: String) -> Result<u64, DeploymentError> {
        self.setup.deployments.revision(&config_ref).ok_or(DeploymentError::Unknown(config_ref))
    }
}

impl Credentials for MemoryAdapter {
    async fn issue_tap(&self, request: TapRequest) -> Result<IssuedTap, CredentialError> {
        let mut random = vec![0u8; usize::from(request.length)];
        ring::rand::SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| CredentialError::Unavailable("no random source".into()))?;
        let secret: String =
            random.iter().filter_map(|b| ALPHABET.get(usize::from(b & 31))).map(|c| char::from(*c)).collect();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let digest = Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let mut log = self.log();
        log.taps.push(StoredTap {
            user_id: request.user_id,
            secret_sha256: digest,
            lifetime_seconds: request.lifetime_seconds,
            one_time: request.one_time,
            not_before_seconds: request.not_before_seconds,
        });
        let tap_id = format!("tap-{}", log.taps.len());
        Ok(IssuedTap { tap_id, secret, expires_at: now + u64::from(request.lifetime_seconds) })
    }

    async fn revoke_methods(&self, user_id: String, kinds: Vec<MethodKind>) -> Result<u32, CredentialError> {
        let count = u32::try_from(kinds.len()).unwrap_or(u32::MAX);
        self.log().revoked_methods.push((user_id, kinds));
        Ok(count)
    }

    async fn require_registration(&self, user_id: String) -> Result<(), CredentialError> {
        self.log().registration_required.push(user_id);
        Ok(())
    }

    async fn revoke_sessions(&self, user_id: String) -> Result<u32, CredentialError> {
        self.log().revoked_sessions.push(user_id);
        Ok(1)
    }
}

impl Trust for MemoryAdapter {
    async fn issuer_keys(&self, issuer: String) -> Result<String, TrustError> {
        self.setup.issuers.get(&issuer).cloned().ok_or(TrustError::UnknownIssuer)
    }

    async fn status_list_token(&self, uri: String) -> Result<String, TrustError> {
        self.setup
            .status_lists
            .get(&uri)
            .cloned()
            .ok_or_else(|| TrustError::Unavailable(format!("no status list for `{uri}`")))
    }
}

impl FaceCheck for MemoryAdapter {
    async fn compare(&self, portrait: Vec<u8>, selfie_ref: String) -> Result<FaceComparison, FaceCheckError> {
        if portrait.is_empty() {
            return Err(FaceCheckError::InvalidImage("empty portrait".into()));
        }
        let mut parts = selfie_ref.split(':');
        match (parts.next(), parts.next().and_then(|s| s.parse::<u8>().ok()), parts.next()) {
            (Some("face"), Some(score), spoof) => Ok(FaceComparison { score, live: spoof != Some("spoof") }),
            _ => Err(FaceCheckError::UnknownSelfie),
        }
    }
}

impl Events for MemoryAdapter {
    async fn record_audit(&self, event: AuditEvent) -> Result<(), EventsError> {
        self.log().audit.push(event);
        Ok(())
    }

    // The in-memory log keeps no timestamps: every event counts, whatever the window.
    async fn count_recent(&self, user_id: String, windows: Vec<RecentWindow>) -> Result<Vec<u32>, EventsError> {
        let log = self.log();
        let count = |kind: AuditKind| {
            let n = log.audit.iter().filter(|e| e.kind == kind && e.user_id.as_deref() == Some(&user_id)).count();
            u32::try_from(n).unwrap_or(u32::MAX)
        };
        Ok(windows.iter().map(|w| count(w.kind)).collect())
    }

    async fn notify_user(&self, user_id: String, kind: NotificationKind) -> Result<(), EventsError> {
        self.log().notifications.push((user_id, kind));
        Ok(())
    }
}
