//! Shared set-up of the server tests: a fresh SQLite file and a fresh database on the test
//! PostgreSQL server, so that every storage-backed test runs on both.

#![allow(dead_code, reason = "each test file uses part of the support module")]

pub mod authenticator;
pub mod recovery;

use regain_server::store::{Store, random_hex};

/// The URL of a fresh database on the test PostgreSQL server. The suite runs against both
/// databases, so a missing server is a failure, not a skip.
pub async fn fresh_postgres_url() -> String {
    let url = std::env::var("REGAIN_TEST_POSTGRES_URL")
        .expect("REGAIN_TEST_POSTGRES_URL is not set: run the suite with `bash scripts/test`, which starts PostgreSQL");
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&url).await.expect("the test PostgreSQL server answers");
    let name = format!("regain_{}", random_hex(6).expect("randomness"));
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("CREATE DATABASE");
    admin.close().await;
    format!("{}/{name}", url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base))
}

/// A store on a fresh SQLite file (kept alive by the directory) and one on a fresh
/// PostgreSQL database.
pub async fn databases() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lite =
        Store::open(&format!("sqlite://{}", dir.path().join("regain.db").display())).await.expect("SQLite opens");
    let pg = Store::open(&fresh_postgres_url().await).await.expect("PostgreSQL opens");
    vec![(lite, Some(dir)), (pg, None)]
}

/// A registered passkey of `user_id` (its key is never checked by the tests that store it).
pub fn passkey(credential_id: &str, user_id: &str) -> regain_server::passkeys::Passkey {
    regain_server::passkeys::Passkey {
        credential_id: credential_id.into(),
        user_id: user_id.into(),
        public_key: vec![4; 65],
        sign_count: 0,
        label: "laptop".into(),
        created_at: regain_server::store::now(),
        last_used_at: None,
    }
}
