//! The reference server's library: storage today; the OpenID Provider grows here. The
//! `regain` command is the binary of this package.

pub mod auth;
pub mod oidc;
pub mod store;
