//! One Rust trait per WIT import, for host adapters to implement, and the store data that
//! connects them to the generated bindings.

use crate::bindings::regain::recovery::{credentials, crypto, deployment, directory, events, face_check, trust, types};
use crate::limits::MemoryLimiter;
use std::future::Future;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use credentials::{CredentialError, IssuedTap, MethodKind, TapRequest};
use deployment::{Bundle, DeploymentError};
use directory::DirectoryError;
use events::{AuditEvent, EventsError, NotificationKind, RecentWindow};
use face_check::{FaceCheckError, FaceComparison};
use trust::TrustError;
use types::User;

/// `regain:recovery/directory`: read-only lookups in the host's user directory.
pub trait Directory: Send + Sync {
    /// The user who signs in with `login`; `None` when there is no such user.
    fn find_user_by_login(&self, login: String) -> impl Future<Output = Result<Option<User>, DirectoryError>> + Send;

    /// How many users have this first and last name (host's case-insensitive comparison).
    fn count_users_by_name(
        &self,
        given_name: String,
        family_name: String,
    ) -> impl Future<Output = Result<u32, DirectoryError>> + Send;
}

/// `regain:recovery/credentials`: changes to a user's sign-in methods.
pub trait Credentials: Send + Sync {
    /// Creates and stores (hashed) a Temporary Access Pass; returns the secret once.
    fn issue_tap(&self, request: TapRequest) -> impl Future<Output = Result<IssuedTap, CredentialError>> + Send;

    /// Removes every method of the given kinds; returns how many were removed.
    fn revoke_methods(
        &self,
        user_id: String,
        kinds: Vec<MethodKind>,
    ) -> impl Future<Output = Result<u32, CredentialError>> + Send;

    /// Forces registration of a new method at the next sign-in.
    fn require_registration(&self, user_id: String) -> impl Future<Output = Result<(), CredentialError>> + Send;

    /// Ends every session of the user; returns how many were ended.
    fn revoke_sessions(&self, user_id: String) -> impl Future<Output = Result<u32, CredentialError>> + Send;
}

/// `regain:recovery/trust`: trust material the host fetched and cached.
pub trait Trust: Send + Sync {
    /// The issuer's JSON Web Key Set document.
    fn issuer_keys(&self, issuer: String) -> impl Future<Output = Result<String, TrustError>> + Send;

    /// The status list token published at `uri`.
    fn status_list_token(&self, uri: String) -> impl Future<Output = Result<String, TrustError>> + Send;
}

/// `regain:recovery/face-check`: the host's face comparison service.
pub trait FaceCheck: Send + Sync {
    /// Compares the credential portrait with a captured selfie.
    fn compare(
        &self,
        portrait: Vec<u8>,
        selfie_ref: String,
    ) -> impl Future<Output = Result<FaceComparison, FaceCheckError>> + Send;
}

/// `regain:recovery/events`: the audit log and user notifications.
pub trait Events: Send + Sync {
    /// Records the event durably before returning.
    fn record_audit(&self, event: AuditEvent) -> impl Future<Output = Result<(), EventsError>> + Send;

    /// Counts the user's events in each window (a kind and a number of seconds back), in
    /// the same order.
    fn count_recent(
        &self,
        user_id: String,
        windows: Vec<RecentWindow>,
    ) -> impl Future<Output = Result<Vec<u32>, EventsError>> + Send;

    /// Queues a notification to the user's other channels.
    fn notify_user(
        &self,
        user_id: String,
        kind: NotificationKind,
    ) -> impl Future<Output = Result<(), EventsError>> + Send;
}

/// `regain:recovery/deployment`: the configuration and policies flows run under.
pub trait Deployments: Send + Sync {
    /// The deployment named `config_ref`.
    fn bundle(&self, config_ref: String) -> impl Future<Output = Result<Bundle, DeploymentError>> + Send;

    /// The revision of the deployment named `config_ref`: it must change whenever
    /// [`Deployments::bundle`] would answer another bundle, and never name another bundle.
    /// By default a digest of the bundle (which fetches it); an adapter that knows when its
    /// deployments change answers a number instead ([`crate::reload::DeploymentStore::revision`]).
    fn revision(&self, config_ref: String) -> impl Future<Output = Result<u64, DeploymentError>> + Send {
        async move { Ok(crate::reload::digest_revision(&self.bundle(config_ref).await?)) }
    }
}

/// Everything a host adapter provides: one value per call, moved into the instance's store.
/// Adapters usually hold `Arc`s to shared services plus per-request context.
pub trait Adapter: Directory + Credentials + Trust + FaceCheck + Events + Deployments + Send + 'static {}

impl<T: Directory + Credentials + Trust + FaceCheck + Events + Deployments + Send + 'static> Adapter for T {}

/// The data of one store: the sandboxed WASI context, the memory limiter and the adapter.
pub(crate) struct Ctx<A> {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    /// The adapter of the call in progress; none while the instance waits for its next call,
    /// so that nothing of a finished request (its database connection, its data) stays
    /// alive in an idle instance.
    adapter: Option<A>,
}

impl<A> Ctx<A> {
    pub(crate) fn new(adapter: A, memory_limit: usize) -> Self {
        Self {
            wasi: sandboxed_wasi(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            adapter: Some(adapter),
        }
    }

    /// Hands a reused instance the adapter of its new call.
    pub(crate) fn set_adapter(&mut self, adapter: A) {
        self.adapter = Some(adapter);
    }

    /// Drops the finished call's adapter before the instance waits for its next call.
    pub(crate) fn clear_adapter(&mut self) {
        self.adapter = None;
    }

    /// The call's adapter; `unavailable` makes the import's error when there is none (an
    /// import called outside a call cannot happen, but is refused rather than trusted).
    fn adapter<E>(&self, unavailable: impl FnOnce(String) -> E) -> Result<&A, E> {
        self.adapter.as_ref().ok_or_else(|| unavailable("the instance has no call in progress".into()))
    }
}

/// The WASI context every instance gets: nothing to read, nowhere to connect.
///
/// INVARIANT: no preopened directory, no environment variable, no argument, a closed stdin,
/// stdout and stderr that discard (guest output could carry personal data), every socket
/// address refused and name lookup off. Clocks and random numbers are the host's.
fn sandboxed_wasi() -> WasiCtx {
    WasiCtx::builder()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build()
}

impl<A: Send> WasiView for Ctx<A> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl<A: Adapter> types::Host for Ctx<A> {}

// The host verifies signatures itself; adapters never see this import.
impl<A: Adapter> crypto::Host for Ctx<A> {
    async fn verify_signature(
        &mut self,
        algorithm: crypto::SignatureAlgorithm,
        key: crypto::PublicKey,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<bool, crypto::CryptoError> {
        crate::crypto::verify_import(algorithm, key, &message, &signature)
    }
}

impl<A: Adapter> directory::Host for Ctx<A> {
    async fn find_user_by_login(&mut self, login: String) -> Result<Option<User>, DirectoryError> {
        self.adapter(DirectoryError::Unavailable)?.find_user_by_login(login).await
    }

    async fn count_users_by_name(&mut self, given_name: String, family_name: String) -> Result<u32, DirectoryError> {
        self.adapter(DirectoryError::Unavailable)?.count_users_by_name(given_name, family_name).await
    }
}

impl<A: Adapter> credentials::Host for Ctx<A> {
    async fn issue_tap(&mut self, request: TapRequest) -> Result<IssuedTap, CredentialError> {
        self.adapter(CredentialError::Unavailable)?.issue_tap(request).await
    }

    async fn revoke_methods(&mut self, user_id: String, kinds: Vec<MethodKind>) -> Result<u32, CredentialError> {
        self.adapter(CredentialError::Unavailable)?.revoke_methods(user_id, kinds).await
    }

    async fn require_registration(&mut self, user_id: String) -> Result<(), CredentialError> {
        self.adapter(CredentialError::Unavailable)?.require_registration(user_id).await
    }

    async fn revoke_sessions(&mut self, user_id: String) -> Result<u32, CredentialError> {
        self.adapter(CredentialError::Unavailable)?.revoke_sessions(user_id).await
    }
}

impl<A: Adapter> trust::Host for Ctx<A> {
    async fn issuer_keys(&mut self, issuer: String) -> Result<String, TrustError> {
        self.adapter(TrustError::Unavailable)?.issuer_keys(issuer).await
    }

    async fn status_list_token(&mut self, uri: String) -> Result<String, TrustError> {
        self.adapter(TrustError::Unavailable)?.status_list_token(uri).await
    }
}

impl<A: Adapter> face_check::Host for Ctx<A> {
    async fn compare(&mut self, portrait: Vec<u8>, selfie_ref: String) -> Result<FaceComparison, FaceCheckError> {
        self.adapter(FaceCheckError::Unavailable)?.compare(portrait, selfie_ref).await
    }
}

impl<A: Adapter> events::Host for Ctx<A> {
    async fn record_audit(&mut self, event: AuditEvent) -> Result<(), EventsError> {
        self.adapter(EventsError::Unavailable)?.record_audit(event).await
    }

    async fn count_recent(&mut self, user_id: String, windows: Vec<RecentWindow>) -> Result<Vec<u32>, EventsError> {
        self.adapter(EventsError::Unavailable)?.count_recent(user_id, windows).await
    }

    async fn notify_user(&mut self, user_id: String, kind: NotificationKind) -> Result<(), EventsError> {
        self.adapter(EventsError::Unavailable)?.notify_user(user_id, kind).await
    }
}

impl<A: Adapter> deployment::Host for Ctx<A> {
    async fn get(&mut self, config_ref: String) -> Result<Bundle, DeploymentError> {
        self.adapter(DeploymentError::Unavailable)?.bundle(config_ref).await
    }

    async fn revision(&mut self, config_ref: String) -> Result<u64, DeploymentError> {
        self.adapter(DeploymentError::Unavailable)?.revision(config_ref).await
    }
}

impl events::AuditKind {
    /// The kind's WIT name, e.g. `recovery-started`: the spelling for logs, storage and APIs.
    pub fn as_str(self) -> &'static str {
        use events::AuditKind as K;
        match self {
            K::RecoveryStarted => "recovery-started",
            K::IssuanceStarted => "issuance-started",
            K::IssuanceCompleted => "issuance-completed",
            K::DocumentFailed => "document-failed",
            K::PresentationCompleted => "presentation-completed",
            K::FaceCheckFailed => "face-check-failed",
            K::AccountMatched => "account-matched",
            K::AccountNotMatched => "account-not-matched",
            K::SecurityInfoRegistered => "security-info-registered",
            K::RecoveryCompleted => "recovery-completed",
            K::RecoveryFailed => "recovery-failed",
            K::EvaluationCompleted => "evaluation-completed",
            K::FaceCheckPassed => "face-check-passed",
        }
    }
}
