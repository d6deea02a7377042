//! The server's integration tests, in one test binary: each module is one area (the OpenID
//! Provider, recovery pages, passkeys, mail, operations, ...), and `support` holds their
//! shared set-up. One binary links the server once instead of once per area.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

mod support;

mod admin;
mod cli;
mod mail;
mod operations;
mod operator;
mod passkeys;
mod presentation;
mod provider;
mod recovery;
mod recovery_pages;
mod relying_party;
mod serve;
mod store;
mod trust;
