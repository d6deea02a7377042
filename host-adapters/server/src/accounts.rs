//! The provider's accounts and OAuth artefacts in the store: users with their sign-in
//! methods, single-use authorization codes, access tokens and browser sessions. Codes,
//! tokens and session ids are stored as their SHA-256 only.

use crate::store::{Batch, Dialect, Store, StoreError, UserChange, Value, digest, kind_name};
use regain_core::env::AuditKind;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

/// A user of the provider's directory.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Account {
    /// Stable identifier (`sub`).
    pub id: String,
    /// The login (an email address or a user name).
    pub login: String,
    /// First name.
    pub given_name: Option<String>,
    /// Last name.
    pub family_name: Option<String>,
    /// Whether the account may sign in.
    pub enabled: bool,
    /// Last successful sign-in, seconds since the Unix epoch.
    pub last_sign_in: Option<i64>,
    /// ISO 3166-1 alpha-2 country.
    pub country: Option<String>,
    /// Marked privileged (administrators).
    pub privileged: bool,
    /// Directory groups.
    pub groups: Vec<String>,
    /// Other attributes (`email`, `phone`, `birthdate`...).
    pub attributes: BTreeMap<String, String>,
    /// Argon2id PHC hash of the password, if the user has one.
    pub password_hash: Option<String>,
    /// TOTP shared secret, if enrolled.
    pub totp_secret: Option<Vec<u8>>,
    /// After a pass sign-in: no tokens until a new method is registered.
    pub must_register: bool,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account").field("id", &self.id).finish_non_exhaustive()
    }
}

pub(crate) const ACCOUNT_COLUMNS: &str = "id, login, given_name, family_name, enabled, last_sign_in, country, \
                                          privileged, groups_json, attributes_json, password_hash, totp_secret, \
                                          must_register";

pub(crate) fn account(row: &AnyRow) -> Result<Account, StoreError> {
    account_at(row, 0)
}

/// The account in a row's columns from `at` on ([`ACCOUNT_COLUMNS`] in order).
fn account_at(row: &AnyRow, at: usize) -> Result<Account, StoreError> {
    let json_err = |e: serde_json::Error| StoreError::Database(sqlx::Error::Decode(Box::new(e)));
    Ok(Account {
        id: row.try_get(at)?,
        login: row.try_get(at + 1)?,
        given_name: row.try_get(at + 2)?,
        family_name: row.try_get(at + 3)?,
        enabled: row.try_get::<i64, _>(at + 4)? != 0,
        last_sign_in: row.try_get(at + 5)?,
        country: row.try_get(at + 6)?,
        privileged: row.try_get::<i64, _>(at + 7)? != 0,
        groups: serde_json::from_str(&row.try_get::<String, _>(at + 8)?).map_err(json_err)?,
        attributes: serde_json::from_str(&row.try_get::<String, _>(at + 9)?).map_err(json_err)?,
        password_hash: row.try_get(at + 10)?,
        totp_secret: row.try_get(at + 11)?,
        must_register: row.try_get::<i64, _>(at + 12)? != 0,
    })
}

/// The user from `at` on: the account, then the columns [`read_with_user`] adds for `read`.
fn user_read(row: &AnyRow, at: usize, read: ReadWith<'_>) -> Result<UserRead, StoreError> {
    let account = account_at(row, at)?;
    let methods = Methods {
        password: account.password_hash.is_some(),
        totp: account.totp_secret.is_some(),
        passkeys: row.try_get(at + 13)?,
        sessions: row.try_get(at + 14)?,
    };
    let namesakes = read.namesakes.then(|| row.try_get(at + 15)).transpose()?;
    let next = at + 15 + usize::from(read.namesakes);
    let mut recent = Vec::with_capacity(read.windows.len());
    for (i, window) in read.windows.iter().enumerate() {
        recent.push((*window, row.try_get(next + i)?));
    }
    Ok(UserRead { account, methods, namesakes, recent })
}

/// What is read with the user row named `users` ([`UserRead`]): their passkeys and their
/// live browser sessions; with `read`, the users whose names fold to theirs (the query of
/// [`Store::count_users_by_name`] for their names, on the same index) and their audit
/// events of each window, whose kind and start are bound from `$first` on (two parameters
/// each).
fn read_with_user(users: &str, read: ReadWith<'_>, first: usize) -> String {
    let mut columns = format!(
        "(SELECT COUNT(*) FROM passkeys p WHERE p.user_id = {users}.id), \
         (SELECT COUNT(*) FROM browser_sessions s WHERE s.user_id = {users}.id AND s.revoked_at IS NULL)"
    );
    if read.namesakes {
        columns.push_str(&format!(
            ", (SELECT COUNT(*) FROM users n WHERE LOWER(n.given_name) = LOWER({users}.given_name) \
             AND LOWER(n.family_name) = LOWER({users}.family_name))"
        ));
    }
    for i in 0..read.windows.len() {
        let (kind, since) = (first + 2 * i, first + 2 * i + 1);
        columns.push_str(&format!(
            ", (SELECT COUNT(*) FROM audit_events a WHERE a.user_id = {users}.id AND a.kind = ${kind} AND a.at >= ${since})"
        ));
    }
    columns
}

/// One hit on `$1` in the window starting at `$3`; returns its hits and those of `$2`.
const SIGN_IN_HIT: &str = "INSERT INTO rate_limits (key, window_start, hits) VALUES ($1, $3, 1) \
     ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limits.hits + 1 \
     RETURNING hits, COALESCE((SELECT r.hits FROM rate_limits r WHERE r.key = $2 AND r.window_start = $3), 0) AS failures";

/// What else to read with a user: how many users share their name, and their audit events
/// in each of `windows` up to `now`.
#[derive(Clone, Copy, Default)]
struct ReadWith<'a> {
    namesakes: bool,
    windows: &'a [Window],
    now: i64,
}

impl ReadWith<'_> {
    /// The columns read with the account's.
    fn columns(&self) -> usize {
        2 + usize::from(self.namesakes) + self.windows.len()
    }
}

/// Where the login of the user to read comes from, per dialect (SQL expressions).
struct UserOf {
    /// On PostgreSQL, in terms of the write's returned row `w`.
    postgres: String,
    /// On SQLite, on its own (the write has run).
    sqlite: String,
}

/// A second write that runs after the first and before the user is read, per dialect: on
/// PostgreSQL a data-modifying `WITH` part named `t` that may refer to the first one's row
/// `w` and returns one column; on SQLite a statement of its own, with a `RETURNING` clause of
/// one column.
struct Then {
    postgres: String,
    sqlite: String,
}

/// What a sign-in with a Temporary Access Pass found ([`Store::sign_in_redeeming`]).
#[derive(Debug)]
pub struct PassSignIn {
    /// The attempts from the client's address in this window, this one included.
    pub from_address: i64,
    /// The failed attempts for the login in this window.
    pub failures: i64,
    /// The user of the login.
    pub user: Option<Account>,
    /// The pass redeemed, when it was.
    pub tap_id: Option<String>,
}

/// A flow of the recovery pages, leased for one step, with the user it is for.
#[derive(Debug)]
pub struct LeasedFlow {
    /// The flow's id.
    pub id: String,
    /// The flow as stored.
    pub state: Vec<u8>,
    /// The user the flow's `login` names, if any, with what a recovery would remove.
    pub user: Option<UserRead>,
}

/// An authorization code's grant, stored until the client redeems it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    /// The client.
    pub client_id: String,
    /// The redirect URI of the authorization request.
    pub redirect_uri: String,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// The request's nonce.
    pub nonce: Option<String>,
    /// The user.
    pub user_id: String,
    /// When the user authenticated.
    pub auth_time: i64,
    /// Authentication methods, space-separated.
    pub amr: String,
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSession {
    /// The user.
    pub user_id: String,
    /// When they authenticated.
    pub auth_time: i64,
    /// How, space-separated (`pwd otp`, `tap`).
    pub amr: String,
}

impl Store {
    /// Creates a user; the login must be new.
    pub async fn create_user(&self, a: &Account, now: i64) -> Result<(), StoreError> {
        let mut conn = self.write_conn().await?;
        insert_user_on(&mut conn, a, now).await
    }

    /// The user who signs in with `login`.
    pub async fn user_by_login(&self, login: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE login = $1"))
            .bind(login)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.as_ref().map(account).transpose()
    }

    /// The user who signs in with `login`, with what a recovery would remove from them: in
    /// one statement, so that the removal can be held for the step's last write and still
    /// answer how many it removes ([`Store::hold_revocations`]).
    pub async fn user_by_login_with_methods(&self, login: &str) -> Result<Option<UserRead>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS}, {} FROM users WHERE login = $1",
            read_with_user("users", ReadWith::default(), 2)
        ))
        .bind(login)
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        row.map(|row| user_read(&row, 0, ReadWith::default())).transpose()
    }

    /// Takes the lease of the recovery flow `id` for one step ([`Store::lease_session`]),
    /// and reads the user the flow is for in the same round trip: the flows of the recovery
    /// pages are JSON with the user's `login` at the top. `None` when the flow is unknown,
    /// expired or leased.
    pub async fn lease_flow(&self, id: &str, now: i64, seconds: i64) -> Result<Option<LeasedFlow>, StoreError> {
        self.lease_flow_at("$1", id, now, seconds, false).await
    }

    /// Takes the lease of the recovery flow that the value under `key` names (the wallet's
    /// `state` leads to its flow: the value is the flow's id), with the user it is for and
    /// how many users share their name (the presentation's account match asks it).
    pub async fn lease_flow_by_key(&self, key: &str, now: i64, seconds: i64) -> Result<Option<LeasedFlow>, StoreError> {
        // The key's value is the flow's id as UTF-8 bytes.
        let id = match self.dialect() {
            Dialect::Sqlite => "(SELECT CAST(state AS TEXT) FROM recovery_sessions WHERE id = $1 AND expires_at > $2)",
            Dialect::Postgres => {
                "(SELECT convert_from(state, 'UTF8') FROM recovery_sessions WHERE id = $1 AND expires_at > $2)"
            }
        };
        self.lease_flow_at(id, key, now, seconds, true).await
    }

    /// The lease of the flow whose id `id_sql` gives (from `$1`, bound to `value`), and its
    /// user, with their namesakes when `namesakes`.
    async fn lease_flow_at(
        &self,
        id_sql: &str,
        value: &str,
        now: i64,
        seconds: i64,
        namesakes: bool,
    ) -> Result<Option<LeasedFlow>, StoreError> {
        let lease = format!(
            "UPDATE recovery_sessions SET lease_until = $3 WHERE id = {id_sql} AND expires_at > $2 \
             AND (lease_until IS NULL OR lease_until <= $2) RETURNING id, state"
        );
        let login = UserOf {
            postgres: "convert_from(w.state, 'UTF8')::json->>'login'".into(),
            sqlite: format!(
                "(SELECT json_extract(CAST(state AS TEXT), '$.login') FROM recovery_sessions WHERE id = {id_sql})"
            ),
        };
        let values = [Value::text(value), Value::Int(now), Value::Int(now + seconds)];
        let read = ReadWith { namesakes, ..ReadWith::default() };
        let (rows, user) = self.returning_rows_with_user(&lease, login, None, values, read).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        Ok(Some(LeasedFlow { id: row.try_get(0)?, state: row.try_get(1)?, user }))
    }

    /// Counts one hit on `counted` and reads the hits counted on `read` (another key), both
    /// in the window starting at `window_start`, and reads the user who signs in with
    /// `login`, in one round trip: (hits of `counted`, this one included; hits of `read`;
    /// the user).
    pub async fn sign_in_counts(
        &self,
        counted: &str,
        read: &str,
        window_start: i64,
        login: &str,
    ) -> Result<(i64, i64, Option<Account>), StoreError> {
        let user = UserOf { postgres: "$4".into(), sqlite: "$4".into() };
        let values = [Value::text(counted), Value::text(read), Value::Int(window_start), Value::text(login)];
        let (row, user) = self.returning_with_user(SIGN_IN_HIT, user, values).await?.ok_or(sqlx::Error::RowNotFound)?;
        Ok((row.try_get(0)?, row.try_get(1)?, user.map(|read| read.account)))
    }

    /// [`Store::sign_in_counts`] for a sign-in with a Temporary Access Pass, which it redeems
    /// in the same round trip ([`Store::redeem_tap`]), only when the attempt is within both
    /// limits (at most `limits.0` hits of `counted`, this one included; fewer than `limits.1`
    /// of `read`) and the pass is live and belongs to the enabled user of `login`: a pass is
    /// never spent on an attempt that is refused.
    pub async fn sign_in_redeeming(
        &self,
        (counted, read): (&str, &str),
        window_start: i64,
        login: &str,
        limits: (i64, i64),
        secret_mac: &str,
        now: i64,
    ) -> Result<PassSignIn, StoreError> {
        let redeem = |hits: &str, failures: &str| {
            format!(
                "UPDATE taps SET uses = uses + 1, last_used_at = $6 \
                 WHERE secret_mac = $5 AND revoked_at IS NULL AND not_before <= $6 AND expires_at > $6 \
                 AND (one_time = 0 OR uses = 0) \
                 AND user_id = (SELECT id FROM users WHERE login = $4 AND enabled = 1) \
                 AND {hits} <= $7 AND {failures} < $8 RETURNING id"
            )
        };
        let then = Then {
            postgres: redeem("(SELECT hits FROM w)", "(SELECT failures FROM w)"),
            sqlite: redeem(
                "(SELECT hits FROM rate_limits WHERE key = $1 AND window_start = $3)",
                "COALESCE((SELECT hits FROM rate_limits WHERE key = $2 AND window_start = $3), 0)",
            ),
        };
        let values = [
            Value::text(counted),
            Value::text(read),
            Value::Int(window_start),
            Value::text(login),
            Value::text(secret_mac),
            Value::Int(now),
            Value::Int(limits.0),
            Value::Int(limits.1),
        ];
        let user = UserOf { postgres: "$4".into(), sqlite: "$4".into() };
        let (rows, user) =
            self.returning_rows_with_user(SIGN_IN_HIT, user, Some(then), values, ReadWith::default()).await?;
        let user = user.map(|read| read.account);
        let (Some(first), rest) = (rows.first(), rows.get(1..).unwrap_or_default()) else {
            return Err(sqlx::Error::RowNotFound.into());
        };
        let (from_address, failures) = (first.try_get(0)?, first.try_get(1)?);
        let tap_id = match self.dialect() {
            // One row: the counts, then the pass (empty when none was redeemed).
            Dialect::Postgres => first.try_get::<Option<String>, _>(2)?,
            // A row of its own when a pass was redeemed.
            Dialect::Sqlite => rest.first().map(|row| row.try_get(0)).transpose()?,
        };
        Ok(PassSignIn { from_address, failures, user, tap_id })
    }

    /// Counts a hit on each of two keys ([`Store::hit_both`]) and reads the user who signs in
    /// with `login`, with what a recovery would remove from them and their audit events in
    /// each of `recent` up to `now`, in one round trip: a recovery's start counts its attempts
    /// before anything else, and then looks the user up and counts their recent recoveries.
    pub async fn hit_both_with_user(
        &self,
        (first, second): (&str, &str),
        window_start: i64,
        login: &str,
        recent: &[Window],
        now: i64,
    ) -> Result<((i64, i64), Option<UserRead>), StoreError> {
        let user = UserOf { postgres: "$4".into(), sqlite: "$4".into() };
        let values = [Value::text(first), Value::text(second), Value::Int(window_start), Value::text(login)];
        let read = ReadWith { windows: recent, now, ..ReadWith::default() };
        let (rows, user) = self.returning_rows_with_user(crate::store::HIT_BOTH, user, None, values, read).await?;
        Ok((crate::store::hits_of(&rows, first, second)?, user))
    }

    /// [`Store::returning_rows_with_user`] for a write that returns one row; `None` when it
    /// returned none.
    async fn returning_with_user(
        &self,
        write: &str,
        login: UserOf,
        values: impl IntoIterator<Item = Value>,
    ) -> Result<Option<(AnyRow, Option<UserRead>)>, StoreError> {
        let (rows, user) = self.returning_rows_with_user(write, login, None, values, ReadWith::default()).await?;
        Ok(rows.into_iter().next().map(|row| (row, user)))
    }

    /// Runs `write` (one statement with a `RETURNING` clause) and reads the user whose login
    /// `login` gives, with what a recovery would remove from them, in one round trip: on
    /// PostgreSQL one statement (the write is a data-modifying `WITH` part named `w`, joined
    /// to the user); on SQLite one text of two statements, which the connection's thread runs
    /// in one go (the write, then the user), told apart by their columns. A second write
    /// `then` runs between them: on PostgreSQL its one column follows the write's in each row,
    /// on SQLite its rows follow the write's. `read` adds the user's audit events of some
    /// windows. Answers the rows the writes returned; on PostgreSQL the user is known only
    /// when the first returned at least one.
    async fn returning_rows_with_user(
        &self,
        write: &str,
        login: UserOf,
        then: Option<Then>,
        values: impl IntoIterator<Item = Value>,
        read: ReadWith<'_>,
    ) -> Result<(Vec<AnyRow>, Option<UserRead>), StoreError> {
        let mut values: Vec<Value> = values.into_iter().collect();
        let first = values.len() + 1;
        for window in read.windows {
            let seconds = i64::try_from(window.seconds).unwrap_or(i64::MAX);
            values.extend([Value::Text(Some(kind_name(window.kind))), Value::Int(read.now.saturating_sub(seconds))]);
        }
        let sql = match self.dialect() {
            Dialect::Postgres => {
                let columns: Vec<String> = ACCOUNT_COLUMNS.split(',').map(|c| format!("u.{}", c.trim())).collect();
                let (then, then_column) = match &then {
                    Some(then) => (format!(", t AS ({})", then.postgres), ", (SELECT * FROM t)"),
                    None => (String::new(), ""),
                };
                format!(
                    "WITH w AS ({write}){then} SELECT w.*{then_column}, {}, {} FROM w LEFT JOIN users u ON u.login = {}",
                    columns.join(", "),
                    read_with_user("u", read, first),
                    login.postgres
                )
            }
            // The writes here are leases and counters (and a pass's redemption before the
            // sign-in's own write): on SQLite they commit without waiting for the disk. A
            // step writes its outcome after them with `synchronous = FULL`, and that flush
            // of the write-ahead log stores them too; a power loss before it loses nothing
            // anyone was shown. The connection is put back to FULL by the same text, or by
            // `write_guarded` when the text fails.
            Dialect::Sqlite => format!(
                "PRAGMA synchronous = NORMAL; {write}; {}SELECT {ACCOUNT_COLUMNS}, {} FROM users WHERE login = {}; \
                 PRAGMA synchronous = FULL",
                then.map(|then| format!("{}; ", then.sqlite)).unwrap_or_default(),
                read_with_user("users", read, first),
                login.sqlite
            ),
        };
        let restore = (self.dialect() == Dialect::Sqlite).then_some("PRAGMA synchronous = FULL");
        let rows = self.write_guarded(&sql, values, restore).await?;
        let user_columns = ACCOUNT_COLUMNS.split(',').count() + read.columns();
        match self.dialect() {
            Dialect::Postgres => {
                let Some(row) = rows.first() else { return Ok((rows, None)) };
                let at = row.len().saturating_sub(user_columns);
                // No user of that login: the joined columns are empty.
                let user = match row.try_get::<Option<String>, _>(at)? {
                    Some(_) => Some(user_read(row, at, read)?),
                    None => None,
                };
                Ok((rows, user))
            }
            Dialect::Sqlite => {
                let mut written = Vec::new();
                let mut user = None;
                for row in rows {
                    if row.len() == user_columns {
                        user = Some(user_read(&row, 0, read)?);
                    } else {
                        written.push(row);
                    }
                }
                Ok((written, user))
            }
        }
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.as_ref().map(account).transpose()
    }

    /// How many users carry this first and last name (case-insensitive).
    pub async fn count_users_by_name(&self, given: &str, family: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM users WHERE LOWER(given_name) = LOWER($1) AND LOWER(family_name) = LOWER($2)",
        )
        .bind(given)
        .bind(family)
        .fetch_one(&mut *self.conn().await?)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Sets or replaces the password hash.
    pub async fn set_password(&self, user_id: &str, phc: Option<&str>) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(phc)
            .bind(user_id)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    /// Enrols (or removes) a TOTP secret.
    pub async fn set_totp(&self, user_id: &str, secret: Option<&[u8]>) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET totp_secret = $1, totp_last_step = NULL WHERE id = $2")
            .bind(secret.map(<[u8]>::to_vec))
            .bind(user_id)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    /// Removes the password, the TOTP secret and the passkeys (those asked for) with the
    /// audit events held so far, in one batch; answers how many methods were removed.
    pub async fn remove_methods(
        &self,
        user_id: &str,
        password: bool,
        totp: bool,
        passkeys: bool,
    ) -> Result<u64, StoreError> {
        let change = UserChange { clear_password: password, clear_totp: totp, ..UserChange::default() };
        self.change_user(user_id, change).await?;
        let removed = self.with_held(passkeys_removal(user_id, passkeys)).await?.len();
        Ok(u64::from(password) + u64::from(totp) + u64::try_from(removed).unwrap_or(u64::MAX))
    }

    /// Holds the removal of the methods of the given kinds and, with `sessions`, the end of
    /// every session and access token, for the request's next write: a recovery's pass, its
    /// events, the old methods and sessions are then stored together or not at all. Answers
    /// how many methods and sessions that write removes, counted from `had` (read in this
    /// request by [`Store::user_by_login_with_methods`]). Elsewhere than on a request's
    /// store, runs at once.
    pub async fn hold_revocations(
        &self,
        user_id: &str,
        had: &Methods,
        kinds: Revoked,
        now: i64,
    ) -> Result<(u64, u64), StoreError> {
        if kinds.password || kinds.totp {
            let change = UserChange { clear_password: kinds.password, clear_totp: kinds.totp, ..UserChange::default() };
            self.change_user(user_id, change).await?;
        }
        let mut batch = passkeys_removal(user_id, kinds.passkeys);
        if kinds.sessions {
            batch.append(sessions_end(user_id, now));
        }
        if !batch.is_empty() {
            self.hold(batch).await?;
        }
        let methods = u64::from(kinds.password && had.password)
            + u64::from(kinds.totp && had.totp)
            + if kinds.passkeys { u64::try_from(had.passkeys).unwrap_or(0) } else { 0 };
        let sessions = if kinds.sessions { u64::try_from(had.sessions).unwrap_or(0) } else { 0 };
        Ok((methods, sessions))
    }

    /// Records the TOTP time step just used; `false` when it (or a later one) was used
    /// already, so a code is accepted once.
    pub async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(user_id)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets whether the user must register a new method before any client gets tokens
    /// (with the audit events held so far).
    pub async fn set_must_register(&self, user_id: &str, must: bool) -> Result<(), StoreError> {
        let change = UserChange { must_register: Some(must), ..UserChange::default() };
        self.with_held_user(Batch::default(), Some((user_id, change))).await.map(drop)
    }

    /// Makes the user register a new method before any client gets tokens; a scoped store
    /// holds the change for the request's next write (the recovery that requires it ends
    /// with that write).
    pub async fn require_registration(&self, user_id: &str) -> Result<(), StoreError> {
        self.change_user(user_id, UserChange { must_register: Some(true), ..UserChange::default() }).await
    }

    /// Stores an authorization code's grant.
    pub async fn insert_code(&self, code: &str, grant: &CodeGrant, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO auth_codes (digest, client_id, redirect_uri, code_challenge, nonce, user_id, auth_time, amr, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(digest(code))
        .bind(&grant.client_id)
        .bind(&grant.redirect_uri)
        .bind(&grant.code_challenge)
        .bind(grant.nonce.as_deref())
        .bind(&grant.user_id)
        .bind(grant.auth_time)
        .bind(&grant.amr)
        .bind(expires_at)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(())
    }

    /// Redeems a code once: its grant the first time before expiry, `None` ever after.
    pub async fn take_code(&self, code: &str, now: i64) -> Result<Option<CodeGrant>, StoreError> {
        let row = sqlx::query(
            "UPDATE auth_codes SET used = 1 WHERE digest = $1 AND used = 0 AND expires_at > $2 \
             RETURNING client_id, redirect_uri, code_challenge, nonce, user_id, auth_time, amr",
        )
        .bind(digest(code))
        .bind(now)
        .fetch_optional(&mut *self.write_conn().await?)
        .await?;
        row.map(|r| {
            Ok(CodeGrant {
                client_id: r.try_get(0)?,
                redirect_uri: r.try_get(1)?,
                code_challenge: r.try_get(2)?,
                nonce: r.try_get(3)?,
                user_id: r.try_get(4)?,
                auth_time: r.try_get(5)?,
                amr: r.try_get(6)?,
            })
        })
        .transpose()
    }

    /// Stores an access token.
    pub async fn insert_access_token(
        &self,
        token: &str,
        user_id: &str,
        client_id: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO access_tokens (digest, user_id, client_id, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(digest(token))
            .bind(user_id)
            .bind(client_id)
            .bind(expires_at)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    /// The user of a live access token.
    pub async fn access_token_user(&self, token: &str, now: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT user_id FROM access_tokens WHERE digest = $1 AND expires_at > $2")
            .bind(digest(token))
            .bind(now)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Stores a browser session.
    pub async fn insert_browser_session(
        &self,
        id: &str,
        s: &BrowserSession,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.with_held(session_insert(id, s, expires_at)).await.map(drop)
    }

    /// A sign-in: the new browser session and the user's sign-in time, in one batch;
    /// `must_register` (after a pass sign-in) also makes the user register a new method
    /// before anything else.
    pub async fn record_sign_in(
        &self,
        id: &str,
        s: &BrowserSession,
        expires_at: i64,
        must_register: bool,
    ) -> Result<(), StoreError> {
        let change = UserChange {
            must_register: must_register.then_some(true),
            signed_in_at: Some(s.auth_time),
            ..UserChange::default()
        };
        self.with_held_user(session_insert(id, s, expires_at), Some((&s.user_id, change))).await.map(drop)
    }

    /// A live browser session.
    pub async fn browser_session(&self, id: &str, now: i64) -> Result<Option<BrowserSession>, StoreError> {
        let row = sqlx::query(
            "SELECT user_id, auth_time, amr FROM browser_sessions WHERE digest = $1 AND expires_at > $2 AND revoked_at IS NULL",
        )
        .bind(digest(id))
        .bind(now)
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        row.map(|r| Ok(BrowserSession { user_id: r.try_get(0)?, auth_time: r.try_get(1)?, amr: r.try_get(2)? }))
            .transpose()
    }

    /// Ends every session of a user and the access tokens issued to them (sign-out everywhere,
    /// or after a recovery), with the audit events held so far, in one batch.
    pub async fn revoke_browser_sessions(&self, user_id: &str, now: i64) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.with_held(sessions_end(user_id, now)).await?.len()).unwrap_or(u64::MAX))
    }
}

/// What a user has that a recovery may remove, as read with the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Methods {
    /// A password is set.
    pub password: bool,
    /// A TOTP secret is enrolled.
    pub totp: bool,
    /// Passkeys registered.
    pub passkeys: i64,
    /// Browser sessions not ended.
    pub sessions: i64,
}

/// A user as a statement reads them with their row: the account, what a recovery would
/// remove from them, and how many users have their name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRead {
    /// The account.
    pub account: Account,
    /// What a recovery would remove.
    pub methods: Methods,
    /// Users whose given and family names fold (`LOWER`) to this user's, this one included:
    /// what [`Store::count_users_by_name`] answers for their names at the time of the read
    /// (read with the presentation's lease only).
    pub namesakes: Option<i64>,
    /// The user's stored audit events in each window asked for with the read (none for most
    /// reads): what [`Store::count_recent_each`] answers, held events apart.
    pub recent: Vec<(Window, i64)>,
}

/// Audit events of a kind in the last so many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The kind counted.
    pub kind: AuditKind,
    /// How far back, in seconds.
    pub seconds: u64,
}

/// What [`Store::hold_revocations`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Revoked {
    /// The password.
    pub password: bool,
    /// The TOTP secret.
    pub totp: bool,
    /// Every passkey.
    pub passkeys: bool,
    /// Every browser session and access token.
    pub sessions: bool,
}

/// Removes a user's passkeys (none without `passkeys`); each one removed returns a row.
fn passkeys_removal(user_id: &str, passkeys: bool) -> Batch {
    if passkeys {
        Batch::of("DELETE FROM passkeys WHERE user_id = $1 RETURNING 1", [Value::text(user_id)])
    } else {
        Batch::default()
    }
}

/// Ends a user's browser sessions and deletes their access tokens; each session ended
/// returns a row.
fn sessions_end(user_id: &str, now: i64) -> Batch {
    let mut batch = Batch::of(END_TOKENS, [Value::text(user_id)]);
    batch.add(&format!("{END_SESSIONS} RETURNING 1"), [Value::Int(now), Value::text(user_id)]);
    batch
}

/// Stores a browser session (as the digest of its id).
fn session_insert(id: &str, s: &BrowserSession, expires_at: i64) -> Batch {
    Batch::of(
        "INSERT INTO browser_sessions (digest, user_id, auth_time, amr, expires_at) VALUES ($1, $2, $3, $4, $5)",
        [
            Value::text(&digest(id)),
            Value::text(&s.user_id),
            Value::Int(s.auth_time),
            Value::text(&s.amr),
            Value::Int(expires_at),
        ],
    )
}

/// Ends a user's browser sessions (`$1` the time, `$2` the user).
const END_SESSIONS: &str = "UPDATE browser_sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL";
/// Deletes the access tokens issued to a user (`$1`): they end with the sessions.
const END_TOKENS: &str = "DELETE FROM access_tokens WHERE user_id = $1";

/// Ends a user's browser sessions and deletes their access tokens, in a transaction;
/// answers how many sessions ended.
pub(crate) async fn end_sessions_on(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let done = sqlx::query(END_SESSIONS).bind(now).bind(user_id).execute(&mut *conn).await?;
    sqlx::query(END_TOKENS).bind(user_id).execute(&mut *conn).await?;
    Ok(done.rows_affected())
}

/// Inserts a user on a connection (or in a transaction); the login must be new.
pub(crate) async fn insert_user_on(conn: &mut sqlx::AnyConnection, a: &Account, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO users (id, login, given_name, family_name, enabled, last_sign_in, country, privileged, \
         groups_json, attributes_json, password_hash, totp_secret, must_register, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&a.id)
    .bind(&a.login)
    .bind(a.given_name.as_deref())
    .bind(a.family_name.as_deref())
    .bind(i64::from(a.enabled))
    .bind(a.last_sign_in)
    .bind(a.country.as_deref())
    .bind(i64::from(a.privileged))
    .bind(json(&a.groups))
    .bind(json(&a.attributes))
    .bind(a.password_hash.as_deref())
    .bind(a.totp_secret.clone())
    .bind(i64::from(a.must_register))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// JSON text of a value kept in a column.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failing test panics with the reason")]

    use super::*;

    /// `PRAGMA synchronous` of the request's connection (2 is FULL).
    async fn synchronous(request: &Store) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *request.conn().await.unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn a_lease_or_a_counter_relaxes_durability_for_its_own_text_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("regain.db").display())).await.unwrap();
        let request = store.scoped();
        assert_eq!(synchronous(&request).await, 2);
        let (hits, user) = request.hit_both_with_user(("addr:x", "login:y"), 1000, "nobody", &[], 0).await.unwrap();
        assert_eq!((hits, user.is_none()), ((1, 1), true));
        assert_eq!(synchronous(&request).await, 2, "the text ends by putting FULL back");

        // A text that fails after its write (the user cannot be read): FULL is put back too.
        let away = "ALTER TABLE users RENAME TO users_away";
        sqlx::query(away).execute(&mut *request.conn().await.unwrap()).await.unwrap();
        let failed = request.hit_both_with_user(("addr:x", "login:y"), 1000, "nobody", &[], 0).await.unwrap_err();
        assert!(failed.to_string().contains("users"), "{failed}");
        assert_eq!(request.hits("addr:x", 1000).await.unwrap(), 2, "the write ran, relaxed, before the failure");
        assert_eq!(synchronous(&request).await, 2, "put back after the failure");
    }
}
