//! The dev IDV's integration tests, in one test binary: documents, the face matcher stand-in,
//! fixtures, the service (OpenID4VCI, status list, OIDC4IDA) and the wallet.

mod support;

mod documents;
mod face;
mod fixtures;
mod ida;
mod service;
mod wallet;
