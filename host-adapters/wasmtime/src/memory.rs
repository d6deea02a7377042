//! An adapter that keeps a directory and an audit log in memory.
//!
//! It serves the operator tools that run the plugin against a directory file, and the tests.
//! It stores no credentials and knows no identity verification provider: the credential,
//! trust and face-check imports answer `unavailable`, which the plugin treats as a host
//! failure.

use crate::imports::{Credentials, Directory, Events, FaceCheck, Trust};
use crate::wit::credentials::{CredentialError, IssuedTap, MethodKind, TapRequest};
use crate::wit::directory::DirectoryError;
use crate::wit::events::{AuditEvent, EventsError, NotificationKind};
use crate::wit::face_check::{FaceCheckError, FaceComparison};
use crate::wit::trust::TrustError;
use crate::wit::types::User;
use std::sync::{Arc, Mutex, PoisonError};

const NO_CREDENTIALS: &str = "the in-memory adapter stores no credentials";

/// A user directory and an audit log in memory. Clones share the same log.
#[derive(Clone, Default)]
pub struct MemoryAdapter {
    users: Arc<Vec<User>>,
    log: Arc<Mutex<Log>>,
}

#[derive(Default)]
struct Log {
    audit: Vec<AuditEvent>,
    notifications: Vec<(String, NotificationKind)>,
}

impl MemoryAdapter {
    /// An adapter whose directory holds `users`.
    pub fn new(users: Vec<User>) -> Self {
        Self { users: Arc::new(users), log: Arc::default() }
    }

    /// An adapter over the same directory with an empty audit log of its own.
    pub fn with_fresh_log(&self) -> Self {
        Self { users: Arc::clone(&self.users), log: Arc::default() }
    }

    /// The audit events recorded so far, oldest first.
    pub fn audit_events(&self) -> Vec<AuditEvent> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).audit.clone()
    }

    /// The notifications queued so far, oldest first.
    pub fn notifications(&self) -> Vec<(String, NotificationKind)> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).notifications.clone()
    }
}

fn same_name(stored: Option<&String>, wanted: &str) -> bool {
    stored.is_some_and(|s| s.trim().to_lowercase() == wanted.trim().to_lowercase())
}

impl Directory for MemoryAdapter {
    async fn find_user_by_login(&self, login: String) -> Result<Option<User>, DirectoryError> {
        Ok(self.users.iter().find(|u| u.login.eq_ignore_ascii_case(&login)).cloned())
    }

    async fn count_users_by_name(&self, given_name: String, family_name: String) -> Result<u32, DirectoryError> {
        let count = self
            .users
            .iter()
            .filter(|u| {
                same_name(u.given_name.as_ref(), &given_name) && same_name(u.family_name.as_ref(), &family_name)
            })
            .count();
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }
}

impl Credentials for MemoryAdapter {
    async fn issue_tap(&self, _request: TapRequest) -> Result<IssuedTap, CredentialError> {
        Err(CredentialError::Unavailable(NO_CREDENTIALS.into()))
    }

    async fn revoke_methods(&self, _user_id: String, _kinds: Vec<MethodKind>) -> Result<u32, CredentialError> {
        Err(CredentialError::Unavailable(NO_CREDENTIALS.into()))
    }

    async fn require_registration(&self, _user_id: String) -> Result<(), CredentialError> {
        Err(CredentialError::Unavailable(NO_CREDENTIALS.into()))
    }

    async fn revoke_sessions(&self, _user_id: String) -> Result<u32, CredentialError> {
        Err(CredentialError::Unavailable(NO_CREDENTIALS.into()))
    }
}

impl Trust for MemoryAdapter {
    async fn issuer_keys(&self, _issuer: String) -> Result<String, TrustError> {
        Err(TrustError::UnknownIssuer)
    }

    async fn status_list_token(&self, _uri: String) -> Result<String, TrustError> {
        Err(TrustError::Unavailable("the in-memory adapter fetches no status lists".into()))
    }
}

impl FaceCheck for MemoryAdapter {
    async fn compare(&self, _portrait: Vec<u8>, _selfie_ref: String) -> Result<FaceComparison, FaceCheckError> {
        Err(FaceCheckError::Unavailable("the in-memory adapter has no face comparison service".into()))
    }
}

impl Events for MemoryAdapter {
    async fn record_audit(&self, event: AuditEvent) -> Result<(), EventsError> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).audit.push(event);
        Ok(())
    }

    async fn notify_user(&self, user_id: String, kind: NotificationKind) -> Result<(), EventsError> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).notifications.push((user_id, kind));
        Ok(())
    }
}
