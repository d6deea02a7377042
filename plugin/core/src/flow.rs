//! The recovery flow as a state machine driven by the host.
//!
//! Today the flow goes as far as the directory lookup: [`start`] parses the login, looks it
//! up, records `recovery-started` and answers with the preliminary
//! [`Step::AccountLookup`]. Eligibility, routing, presentation, verification, face check,
//! account match and pass issuance come next; until then [`resume`] checks its state and
//! answers [`FlowError::Unsupported`].

use crate::env::{AuditEvent, AuditKind, Environment, HostError};
use crate::login::{InvalidLogin, Login};
use crate::state::{FlowId, FlowState, Stage, StateError};

/// Outcome of the directory lookup (preliminary step, never shown to users).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountLookup {
    /// The login belongs to a directory user.
    Found,
    /// No directory user signs in with the login.
    NotFound,
}

/// What the host must do next.
///
/// Exhaustive on purpose: when a step is added, every host stops compiling until it handles
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// See [`AccountLookup`].
    AccountLookup(AccountLookup),
}

/// The new state blob and the next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Opaque state for the host to store and hand back.
    pub state: Vec<u8>,
    /// What the host must do next.
    pub step: Step,
}

/// Why a flow call produced no transition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The login was refused before any lookup.
    #[error("invalid login: {0}")]
    InvalidLogin(#[from] InvalidLogin),
    /// The state blob was refused.
    #[error("invalid state: {0}")]
    InvalidState(#[from] StateError),
    /// The host failed behind one of the environment traits.
    #[error("host failure: {0}")]
    Host(#[from] HostError),
    /// The operation is not implemented yet.
    #[error("`{0}` is not implemented by this plugin build")]
    Unsupported(&'static str),
}

/// Reason code of `recovery-started` when the login belongs to a user.
pub const REASON_USER_FOUND: &str = "user-found";
/// Reason code of `recovery-started` when no user signs in with the login.
pub const REASON_UNKNOWN_LOGIN: &str = "unknown-login";

/// Starts a recovery for the login typed by the user.
pub fn start(env: &mut impl Environment, login: &str) -> Result<Transition, FlowError> {
    let login = Login::parse(login)?;
    let flow_id = FlowId::random(env);
    let started_at = env.now_unix();
    let user = env.find_user_by_login(&login)?;
    let user_id = user.map(|u| u.id);
    let (lookup, reason) = match user_id {
        Some(_) => (AccountLookup::Found, REASON_USER_FOUND),
        None => (AccountLookup::NotFound, REASON_UNKNOWN_LOGIN),
    };
    env.record(&AuditEvent {
        kind: AuditKind::RecoveryStarted,
        flow_id,
        user_id: user_id.clone(),
        reason,
        helpdesk_ref: None,
    })?;
    let state = FlowState { flow_id, started_at, stage: Stage::AccountLookedUp, user_id }.encode()?;
    Ok(Transition { state, step: Step::AccountLookup(lookup) })
}

/// Continues a flow from its stored state.
pub fn resume(_env: &mut impl Environment, state: &[u8]) -> Result<Transition, FlowError> {
    let _state = FlowState::decode(state)?;
    Err(FlowError::Unsupported("flow.resume"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{Audit, Clock, Directory, Entropy, User};

    #[derive(Default)]
    struct Memory {
        users: Vec<User>,
        audit: Vec<AuditEvent>,
        directory_down: bool,
    }

    impl Clock for Memory {
        fn now_unix(&self) -> u64 {
            1_790_000_000
        }
    }

    impl Entropy for Memory {
        fn fill(&mut self, out: &mut [u8]) {
            out.fill(0x42);
        }
    }

    impl Directory for Memory {
        fn find_user_by_login(&mut self, login: &Login) -> Result<Option<User>, HostError> {
            if self.directory_down {
                return Err(HostError("directory timed out".into()));
            }
            Ok(self.users.iter().find(|u| u.login == login.as_str()).cloned())
        }
    }

    impl Audit for Memory {
        fn record(&mut self, event: &AuditEvent) -> Result<(), HostError> {
            self.audit.push(event.clone());
            Ok(())
        }
    }

    fn with_ana() -> Memory {
        Memory {
            users: vec![User { id: "u-ana".into(), login: "ana@example.org".into(), ..User::default() }],
            ..Memory::default()
        }
    }

    #[test]
    fn known_login_is_found_and_audited() {
        let mut env = with_ana();
        let t = start(&mut env, " ana@example.org ").unwrap();
        assert_eq!(t.step, Step::AccountLookup(AccountLookup::Found));
        let state = FlowState::decode(&t.state).unwrap();
        assert_eq!(state.user_id.as_deref(), Some("u-ana"));
        assert_eq!(state.started_at, 1_790_000_000);
        assert_eq!(env.audit.len(), 1);
        assert_eq!(env.audit[0].kind, AuditKind::RecoveryStarted);
        assert_eq!(env.audit[0].reason, REASON_USER_FOUND);
        assert_eq!(env.audit[0].flow_id, state.flow_id);
    }

    #[test]
    fn unknown_login_is_not_found_and_audited() {
        let mut env = with_ana();
        let t = start(&mut env, "bob@example.org").unwrap();
        assert_eq!(t.step, Step::AccountLookup(AccountLookup::NotFound));
        assert_eq!(env.audit[0].reason, REASON_UNKNOWN_LOGIN);
        assert_eq!(env.audit[0].user_id, None);
    }

    #[test]
    fn invalid_login_touches_nothing() {
        let mut env = with_ana();
        assert_eq!(start(&mut env, "  "), Err(FlowError::InvalidLogin(InvalidLogin::Empty)));
        assert!(env.audit.is_empty());
    }

    #[test]
    fn directory_failure_stops_the_flow_without_audit() {
        let mut env = Memory { directory_down: true, ..with_ana() };
        assert!(matches!(start(&mut env, "ana@example.org"), Err(FlowError::Host(_))));
        assert!(env.audit.is_empty());
    }

    #[test]
    fn resume_checks_state_then_reports_unsupported() {
        let mut env = with_ana();
        let t = start(&mut env, "ana@example.org").unwrap();
        assert_eq!(resume(&mut env, &t.state), Err(FlowError::Unsupported("flow.resume")));
        assert_eq!(resume(&mut env, b"garbage"), Err(FlowError::InvalidState(StateError::NotAState)));
    }
}
