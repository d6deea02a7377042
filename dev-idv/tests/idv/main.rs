//! The dev IDV's integration tests, in one test binary: documents, the face matcher stand-in,
//! fixtures, the service (OpenID4VCI, status list, OIDC4IDA) and the wallet.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

mod support;

mod documents;
mod face;
mod fixtures;
mod ida;
mod service;
mod wallet;
