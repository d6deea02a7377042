//! Passkeys in the store: the users' WebAuthn credentials, and the challenges of ceremonies
//! in progress. A challenge lives in the database, not in a process, so that a ceremony
//! started on one server process can finish on another; it is taken once, by one
//! statement, and expires.

use crate::store::{Store, StoreError, digest};
use sqlx::Row as _;
use sqlx::any::AnyRow;

/// A stored passkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passkey {
    /// The credential id, base64url.
    pub credential_id: String,
    /// The user.
    pub user_id: String,
    /// The public key, an uncompressed SEC1 P-256 point.
    pub public_key: Vec<u8>,
    /// The last signature counter seen.
    pub sign_count: u32,
    /// A name for the user's list of methods.
    pub label: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// The last sign-in with it.
    pub last_used_at: Option<i64>,
}

/// What a challenge was issued for; one kind is never accepted for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceremony {
    /// `navigator.credentials.create`, for a signed-in user.
    Register,
    /// `navigator.credentials.get`.
    SignIn,
}

impl Ceremony {
    fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::SignIn => "sign-in",
        }
    }
}

/// A challenge taken from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedChallenge {
    /// The challenge bytes.
    pub challenge: Vec<u8>,
    /// For a registration, the user it was issued to.
    pub user_id: Option<String>,
}

const PASSKEY_COLUMNS: &str = "credential_id, user_id, public_key, sign_count, label, created_at, last_used_at";

fn passkey(row: &AnyRow) -> Result<Passkey, StoreError> {
    let count: i64 = row.try_get(3)?;
    Ok(Passkey {
        credential_id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        public_key: row.try_get(2)?,
        sign_count: u32::try_from(count).map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))?,
        label: row.try_get(4)?,
        created_at: row.try_get(5)?,
        last_used_at: row.try_get(6)?,
    })
}

impl Store {
    /// Stores a passkey; `false` when a passkey with this credential id exists already
    /// (for this user or another), which is then left as it was.
    pub async fn insert_passkey(&self, p: &Passkey) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO passkeys (credential_id, user_id, public_key, sign_count, label, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (credential_id) DO NOTHING",
        )
        .bind(&p.credential_id)
        .bind(&p.user_id)
        .bind(p.public_key.clone())
        .bind(i64::from(p.sign_count))
        .bind(&p.label)
        .bind(p.created_at)
        .bind(p.last_used_at)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A user's passkeys, oldest first.
    pub async fn passkeys_of(&self, user_id: &str) -> Result<Vec<Passkey>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, credential_id"
        ))
        .bind(user_id)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(passkey).collect()
    }

    /// The passkey with this credential id (base64url).
    pub async fn passkey(&self, credential_id: &str) -> Result<Option<Passkey>, StoreError> {
        let row = sqlx::query(&format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1"))
            .bind(credential_id)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.as_ref().map(passkey).transpose()
    }

    /// Records a sign-in with the passkey and its new signature counter, only if the counter
    /// grew (or the authenticator keeps none, and both are 0): `false` means another sign-in
    /// got there first with the same or a later counter, and nothing changed.
    pub async fn use_passkey(&self, credential_id: &str, sign_count: u32, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE passkeys SET sign_count = $1, last_used_at = $2 \
             WHERE credential_id = $3 AND (sign_count < $1 OR ($1 = 0 AND sign_count = 0))",
        )
        .bind(i64::from(sign_count))
        .bind(now)
        .bind(credential_id)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes every passkey of a user; answers how many there were.
    pub async fn delete_passkeys(&self, user_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM passkeys WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected())
    }

    /// Keeps a challenge under `id` (stored as its SHA-256) until `expires_at`, and drops
    /// the challenges that expired before `now`.
    pub async fn put_webauthn_challenge(
        &self,
        id: &str,
        ceremony: Ceremony,
        challenge: &[u8],
        user_id: Option<&str>,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM webauthn_challenges WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *self.write_conn().await?)
            .await?;
        sqlx::query(
            "INSERT INTO webauthn_challenges (digest, purpose, challenge, user_id, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(digest(id))
        .bind(ceremony.name())
        .bind(challenge.to_vec())
        .bind(user_id)
        .bind(expires_at)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(())
    }

    /// Takes the challenge kept under `id` for `ceremony`: the first caller gets it if it
    /// has not expired, and it is gone for every caller after, in this process or another.
    pub async fn take_webauthn_challenge(
        &self,
        id: &str,
        ceremony: Ceremony,
        now: i64,
    ) -> Result<Option<IssuedChallenge>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM webauthn_challenges WHERE digest = $1 AND purpose = $2 \
             RETURNING challenge, user_id, expires_at",
        )
        .bind(digest(id))
        .bind(ceremony.name())
        .fetch_optional(&mut *self.write_conn().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        if row.try_get::<i64, _>(2)? <= now {
            return Ok(None);
        }
        Ok(Some(IssuedChallenge { challenge: row.try_get(0)?, user_id: row.try_get(1)? }))
    }
}
