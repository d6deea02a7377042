#![doc = include_str!("../README.md")]

pub mod env;
pub mod flow;
mod login;
pub mod state;

pub use env::{AuditEvent, AuditKind, Clock, Directory, Entropy, Environment, User};
pub use flow::{AccountLookup, FlowError, Step, Transition};
pub use login::{InvalidLogin, Login, MAX_LOGIN_BYTES};
pub use state::{FlowId, FlowState, StateError};
