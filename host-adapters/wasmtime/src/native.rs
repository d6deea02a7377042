//! The same core, run natively over a host's adapter: for operator tools that need the
//! flow's decisions outside the sandbox, and for measuring what the sandbox costs on the same
//! inputs (`benches/recovery.rs`).
//!
//! The adapter's methods are awaited to completion on the calling thread, as the component's
//! synchronous imports are; call this from a blocking context, not from inside an async task.

use crate::bindings::regain::recovery::credentials::{self as wit_credentials, MethodKind};
use crate::bindings::regain::recovery::events::{self, NotificationKind};
use crate::bindings::regain::recovery::{directory, face_check, trust};
use crate::crypto::RememberingVerifier;
use crate::imports::Adapter;
use regain_core::env::{
    Audit, Clock, Credentials, Directory, Entropy, FaceMatcher, FaceResult, HostError, IssuedTap, TapRequest,
};
use regain_core::jose::{Alg, PublicKey, SignatureVerifier};
use regain_core::sdjwt::{TrustFailure, TrustSource};
use regain_core::{AuditEvent, AuditKind, FlowError, Loaded, Login, User};
use ring::rand::SecureRandom as _;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Wakes the blocked thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread.
fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// The core's environment over an adapter: what the component's imports give the plugin,
/// given natively.
pub struct NativeEnvironment<A> {
    adapter: A,
    random: ring::rand::SystemRandom,
}

impl<A: Adapter> NativeEnvironment<A> {
    /// An environment over `adapter`.
    pub fn new(adapter: A) -> Self {
        Self { adapter, random: ring::rand::SystemRandom::new() }
    }

    /// Fetches and validates the deployment named `config_ref`, as the plugin does.
    pub fn load(&self, config_ref: &str) -> Result<Loaded, FlowError> {
        let bundle = block_on(crate::imports::Deployments::bundle(&self.adapter, config_ref.to_owned()))
            .map_err(|e| FlowError::Host(HostError(format!("deployment unavailable: {e:?}"))))?;
        let policies: Vec<(&str, &str)> = bundle.policies.iter().map(|p| (p.name.as_str(), p.text.as_str())).collect();
        let mut loaded = Loaded::load((&bundle.config.name, &bundle.config.text), &policies)?;
        config_ref.clone_into(&mut loaded.reference);
        Ok(loaded)
    }
}

impl<A> Clock for NativeEnvironment<A> {
    fn now_unix(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}

impl<A> Entropy for NativeEnvironment<A> {
    fn fill(&mut self, out: &mut [u8]) {
        // INVARIANT: as in the component, a failed system generator must never yield a
        // predictable nonce; stopping the process is the only safe answer.
        if self.random.fill(out).is_err() {
            std::process::abort();
        }
    }
}

/// The core's view of a directory user as the WIT `types.user` carries it.
impl From<crate::wit::types::User> for User {
    fn from(u: crate::wit::types::User) -> Self {
        Self {
            id: u.id,
            login: u.login,
            given_name: u.given_name,
            family_name: u.family_name,
            enabled: u.enabled,
            last_sign_in: u.last_sign_in,
            groups: u.groups,
            country: u.country,
            privileged: u.privileged,
            attributes: u.attributes,
        }
    }
}

fn host_error(what: &str, e: impl std::fmt::Debug) -> HostError {
    HostError(format!("{what}: {e:?}"))
}

impl<A: Adapter> Directory for NativeEnvironment<A> {
    fn find_user_by_login(&mut self, login: &Login) -> Result<Option<User>, HostError> {
        let found = block_on(crate::imports::Directory::find_user_by_login(&self.adapter, login.as_str().to_owned()))
            .map_err(|e: directory::DirectoryError| host_error("directory", e))?;
        Ok(found.map(User::from))
    }

    fn count_users_by_name(&mut self, given_name: &str, family_name: &str) -> Result<u32, HostError> {
        block_on(crate::imports::Directory::count_users_by_name(
            &self.adapter,
            given_name.to_owned(),
            family_name.to_owned(),
        ))
        .map_err(|e| host_error("directory", e))
    }
}

/// The WIT audit kind of a core audit kind.
fn audit_kind(kind: AuditKind) -> events::AuditKind {
    use events::AuditKind as W;
    match kind {
        AuditKind::RecoveryStarted => W::RecoveryStarted,
        AuditKind::IssuanceStarted => W::IssuanceStarted,
        AuditKind::IssuanceCompleted => W::IssuanceCompleted,
        AuditKind::DocumentFailed => W::DocumentFailed,
        AuditKind::PresentationCompleted => W::PresentationCompleted,
        AuditKind::FaceCheckFailed => W::FaceCheckFailed,
        AuditKind::AccountMatched => W::AccountMatched,
        AuditKind::AccountNotMatched => W::AccountNotMatched,
        AuditKind::SecurityInfoRegistered => W::SecurityInfoRegistered,
        AuditKind::RecoveryCompleted => W::RecoveryCompleted,
        AuditKind::RecoveryFailed => W::RecoveryFailed,
        AuditKind::EvaluationCompleted => W::EvaluationCompleted,
        AuditKind::FaceCheckPassed => W::FaceCheckPassed,
    }
}

impl<A: Adapter> Audit for NativeEnvironment<A> {
    fn record(&mut self, event: &AuditEvent) -> Result<(), HostError> {
        let event = events::AuditEvent {
            kind: audit_kind(event.kind),
            flow_id: event.flow_id.to_string(),
            user_id: event.user_id.clone(),
            reason: event.reason.clone(),
            helpdesk_ref: event.helpdesk_ref.clone(),
        };
        block_on(crate::imports::Events::record_audit(&self.adapter, event)).map_err(|e| host_error("audit log", e))
    }

    fn count_recent(&mut self, user_id: &str, windows: &[(AuditKind, u64)]) -> Result<Vec<u32>, HostError> {
        let windows = windows
            .iter()
            .map(|(kind, window_seconds)| crate::wit::events::RecentWindow {
                kind: audit_kind(*kind),
                window_seconds: *window_seconds,
            })
            .collect();
        block_on(crate::imports::Events::count_recent(&self.adapter, user_id.to_owned(), windows))
            .map_err(|e| host_error("audit log", e))
    }

    fn notify_access_restored(&mut self, user_id: &str) -> Result<(), HostError> {
        block_on(crate::imports::Events::notify_user(
            &self.adapter,
            user_id.to_owned(),
            NotificationKind::AccessRestored,
        ))
        .map_err(|e| host_error("notifications", e))
    }
}

impl<A: Adapter> Credentials for NativeEnvironment<A> {
    fn issue_tap(&mut self, request: &TapRequest) -> Result<IssuedTap, HostError> {
        let request = wit_credentials::TapRequest {
            user_id: request.user_id.clone(),
            lifetime_seconds: request.lifetime_seconds,
            one_time: request.one_time,
            length: request.length,
            not_before_seconds: request.not_before_seconds,
        };
        let issued = block_on(crate::imports::Credentials::issue_tap(&self.adapter, request))
            .map_err(|e| host_error("credential store", e))?;
        Ok(IssuedTap { secret: issued.secret, expires_at: issued.expires_at })
    }

    fn revoke_methods(&mut self, user_id: &str) -> Result<u32, HostError> {
        use MethodKind as M;
        let kinds = vec![M::Password, M::Totp, M::Passkey, M::Phone, M::Email];
        block_on(crate::imports::Credentials::revoke_methods(&self.adapter, user_id.to_owned(), kinds))
            .map_err(|e| host_error("credential store", e))
    }

    fn require_registration(&mut self, user_id: &str) -> Result<(), HostError> {
        block_on(crate::imports::Credentials::require_registration(&self.adapter, user_id.to_owned()))
            .map_err(|e| host_error("credential store", e))
    }

    fn revoke_sessions(&mut self, user_id: &str) -> Result<u32, HostError> {
        block_on(crate::imports::Credentials::revoke_sessions(&self.adapter, user_id.to_owned()))
            .map_err(|e| host_error("credential store", e))
    }
}

impl<A: Adapter> FaceMatcher for NativeEnvironment<A> {
    fn compare(&mut self, portrait: &[u8], selfie_ref: &str) -> Result<FaceResult, &'static str> {
        match block_on(crate::imports::FaceCheck::compare(&self.adapter, portrait.to_vec(), selfie_ref.to_owned())) {
            Ok(r) => Ok(FaceResult { score: r.score.min(100), live: r.live }),
            Err(face_check::FaceCheckError::NoFace) => Err("no-face"),
            Err(face_check::FaceCheckError::InvalidImage(_)) => Err("invalid-image"),
            Err(face_check::FaceCheckError::UnknownSelfie) => Err("unknown-selfie"),
            Err(face_check::FaceCheckError::Unavailable(_)) => Err("face-service-unavailable"),
        }
    }
}

fn trust_failure(e: trust::TrustError) -> TrustFailure {
    match e {
        trust::TrustError::UnknownIssuer => TrustFailure::UnknownIssuer,
        trust::TrustError::Unavailable(t) | trust::TrustError::Invalid(t) => TrustFailure::Unavailable(t),
    }
}

impl<A: Adapter> TrustSource for NativeEnvironment<A> {
    fn issuer_keys(&mut self, issuer: &str) -> Result<String, TrustFailure> {
        block_on(crate::imports::Trust::issuer_keys(&self.adapter, issuer.to_owned())).map_err(trust_failure)
    }

    fn status_list_token(&mut self, uri: &str) -> Result<String, TrustFailure> {
        block_on(crate::imports::Trust::status_list_token(&self.adapter, uri.to_owned())).map_err(trust_failure)
    }
}

impl<A> SignatureVerifier for NativeEnvironment<A> {
    fn verify(&self, alg: Alg, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, String> {
        RememberingVerifier.verify(alg, key, message, signature)
    }
}
