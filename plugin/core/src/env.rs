//! What the core needs from the outside world, as traits.
//!
//! INVARIANT: the core reaches time, randomness, the directory and the audit log only
//! through these traits, so every decision can be replayed in a test with a fixed clock and
//! fixed bytes.

use crate::jose::SignatureVerifier;
use crate::sdjwt::TrustSource;
use crate::{FlowId, Login};
use std::fmt;

/// A directory user, as much of it as the recovery flow needs.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct User {
    /// Stable, opaque identifier inside the host's directory.
    pub id: String,
    /// The login the user signs in with.
    pub login: String,
    /// First name, if the directory has one.
    pub given_name: Option<String>,
    /// Last name, if the directory has one.
    pub family_name: Option<String>,
    /// Whether the account may sign in.
    pub enabled: bool,
    /// Seconds since the Unix epoch of the last successful sign-in.
    pub last_sign_in: Option<u64>,
    /// Groups the user belongs to.
    pub groups: Vec<String>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// Whether the directory marks the account as privileged.
    pub privileged: bool,
    /// Extra attributes bound for disambiguation.
    pub attributes: Vec<(String, String)>,
}

// Names, logins and attributes are personal data: debug output names the user by id only.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A failure reported by the host behind one of the traits; the text is for the host log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

/// Wall-clock time.
pub trait Clock {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> u64;
}

/// A cryptographically secure random number generator.
pub trait Entropy {
    /// Fills `out` with random bytes.
    fn fill(&mut self, out: &mut [u8]);
}

/// Lookups in the host's user directory.
pub trait Directory {
    /// The user who signs in with `login`, if any.
    fn find_user_by_login(&mut self, login: &Login) -> Result<Option<User>, HostError>;
    /// How many users carry this first and last name.
    fn count_users_by_name(&mut self, given_name: &str, family_name: &str) -> Result<u32, HostError>;
}

/// The durable audit log, and the notifications that go with it.
pub trait Audit {
    /// Records `event` before returning; an error means the flow must stop.
    fn record(&mut self, event: &AuditEvent) -> Result<(), HostError>;
    /// How many events the user has in each of `windows` (a kind and a number of seconds
    /// back), in the same order.
    fn count_recent(&mut self, user_id: &str, windows: &[(AuditKind, u64)]) -> Result<Vec<u32>, HostError>;
    /// Tells the user, on every channel but the recovered one, that access was restored.
    fn notify_access_restored(&mut self, user_id: &str) -> Result<(), HostError>;
}

/// The pass the flow asks the host to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapRequest {
    /// The user.
    pub user_id: String,
    /// Lifetime after issuance, in seconds.
    pub lifetime_seconds: u32,
    /// Dies at first use.
    pub one_time: bool,
    /// Characters in the secret.
    pub length: u8,
    /// Seconds before the pass may be used.
    pub not_before_seconds: u32,
}

/// A pass the host created.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedTap {
    /// The secret, shown once.
    pub secret: String,
    /// When the host starts refusing it.
    pub expires_at: u64,
}

impl fmt::Debug for IssuedTap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTap").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// Changes to the user's sign-in methods.
pub trait Credentials {
    /// Creates a pass.
    fn issue_tap(&mut self, request: &TapRequest) -> Result<IssuedTap, HostError>;
    /// Removes every earlier sign-in method; returns how many.
    fn revoke_methods(&mut self, user_id: &str) -> Result<u32, HostError>;
    /// Forces registration of a new method at the next sign-in.
    fn require_registration(&mut self, user_id: &str) -> Result<(), HostError>;
    /// Ends every session; returns how many.
    fn revoke_sessions(&mut self, user_id: &str) -> Result<u32, HostError>;
}

/// One face comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaceResult {
    /// Similarity, 0-100.
    pub score: u8,
    /// Liveness passed.
    pub live: bool,
}

/// The host's face comparison service.
pub trait FaceMatcher {
    /// Compares the credential portrait with the captured selfie; `Err` carries a reason
    /// code (`no-face`, `invalid-image`, `unknown-selfie`, `face-service-unavailable`).
    fn compare(&mut self, portrait: &[u8], selfie_ref: &str) -> Result<FaceResult, &'static str>;
}

/// Everything the flow needs, in one bound.
pub trait Environment:
    Clock + Entropy + Directory + Audit + Credentials + FaceMatcher + TrustSource + SignatureVerifier
{
}

impl<T: Clock + Entropy + Directory + Audit + Credentials + FaceMatcher + TrustSource + SignatureVerifier> Environment
    for T
{
}

/// What happened, in the vocabulary of the WIT `events` interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    /// A user asked to recover an account.
    RecoveryStarted,
    /// The user was sent to an identity verification provider.
    IssuanceStarted,
    /// The provider reported a completed verification.
    IssuanceCompleted,
    /// The identity document or the credential was rejected.
    DocumentFailed,
    /// A presentation was received and verified.
    PresentationCompleted,
    /// The selfie did not match the portrait or failed liveness.
    FaceCheckFailed,
    /// The verified identity matched the directory account.
    AccountMatched,
    /// The verified identity did not match the directory account.
    AccountNotMatched,
    /// The user registered a new sign-in method after recovery.
    SecurityInfoRegistered,
    /// A Temporary Access Pass was issued.
    RecoveryCompleted,
    /// The flow ended without restoring access for another reason.
    RecoveryFailed,
    /// An evaluation-mode flow ran to its end and issued nothing.
    EvaluationCompleted,
    /// The face comparison passed (Regain's own, or the provider's evidence).
    FaceCheckPassed,
}

/// An audit event as hosts store and export it (one JSON object per line): what the plugin
/// recorded, with the time the host recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// What happened.
    pub kind: AuditKind,
    /// The attempt, as 32 hex digits; every event of one recovery shares it.
    pub flow_id: String,
    /// Directory identifier of the user, once known.
    pub user_id: Option<String>,
    /// Stable, documented reason code (`ok`, `name-mismatch`, `revoked`...).
    pub reason: String,
    /// The reference code shown to the user when the flow failed.
    pub helpdesk_ref: Option<String>,
}

/// One audit record: reason codes, never documents, photos or secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// What happened.
    pub kind: AuditKind,
    /// The attempt this event belongs to.
    pub flow_id: FlowId,
    /// Directory identifier of the user, once known.
    pub user_id: Option<String>,
    /// Stable, documented reason code.
    pub reason: String,
    /// Reference code shown to the user when the flow failed.
    pub helpdesk_ref: Option<String>,
}
