#![doc = include_str!("../README.md")]

pub mod checks;
pub mod config;
pub mod env;
pub mod flow;
pub mod ida;
pub mod jose;
pub mod json;
mod login;
pub mod matching;
pub mod openid4vp;
pub mod policy;
pub mod policy_test;
pub mod sdjwt;
pub mod secret;
pub mod state;
pub mod status;

pub use env::{AuditEvent, AuditKind, Clock, Directory, Entropy, Environment, User};
pub use flow::{Client, FlowError, Input, Loaded, Step, Transition};
pub use login::{InvalidLogin, Login, MAX_LOGIN_BYTES};
pub use state::{FlowId, FlowState, StateError};
