//! The reference server's library: storage, the OpenID Provider, the recovery pages and the
//! server's implementation of the plugin's imports. The `regain` command is the binary of this
//! package.

pub mod accounts;
pub mod adapter;
pub mod admin;
pub mod auth;
pub mod keycloak;
pub mod keycloak_setup;
pub mod mail;
pub mod not_me;
pub mod oidc;
pub mod ops;
mod passkey_routes;
pub mod passkeys;
pub mod provider;
pub mod recovery;
pub mod server;
pub mod store;
pub mod trust;
pub mod webauthn;
