//! The reference server's library: storage today; the OpenID Provider grows here. The
//! `regain` command is the binary of this package.

pub mod accounts;
pub mod adapter;
pub mod auth;
pub mod oidc;
pub mod provider;
pub mod store;
