//! The reference server's storage: one SQL database, a SQLite file by default (created on
//! first start with no set-up) or PostgreSQL when the URL says so. Recovery sessions, passes,
//! single-use values, rate-limit counters and audit events live here, so that several server
//! processes on one PostgreSQL behave as one.
//!
//! Queries are written once with `$n` parameters, which both drivers accept; the schema has a
//! migration file per dialect (`migrations/<dialect>/NNNN_*.sql`), applied in order and
//! recorded in `schema_migrations`.
//!
//! INVARIANT: secrets never reach the database in the clear. A pass is stored as its
//! HMAC-SHA-256 under a server key ([`TapKey`]); single-use values as their SHA-256.

use regain_core::env::{AuditKind, AuditRecord};
use ring::rand::SecureRandom as _;
use sqlx::any::AnyPoolOptions;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Row as _};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

/// The migrations of each dialect, in order: `(version, sql)`.
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_provider.sql")),
    (3, include_str!("../migrations/sqlite/0003_outbox.sql")),
    (4, include_str!("../migrations/sqlite/0004_passkeys.sql")),
    (5, include_str!("../migrations/sqlite/0005_outbox_delivery.sql")),
    (6, include_str!("../migrations/sqlite/0006_session_lease.sql")),
    (7, include_str!("../migrations/sqlite/0007_name_lookup.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_provider.sql")),
    (3, include_str!("../migrations/postgres/0003_outbox.sql")),
    (4, include_str!("../migrations/postgres/0004_passkeys.sql")),
    (5, include_str!("../migrations/postgres/0005_outbox_delivery.sql")),
    (6, include_str!("../migrations/postgres/0006_session_lease.sql")),
    (7, include_str!("../migrations/postgres/0007_name_lookup.sql")),
];

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A storage failure; the text is for the log and names no secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("unsupported database URL (use `sqlite://FILE` or `postgres://...`)")]
    UnsupportedUrl,
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// The system random generator failed.
    #[error("no random source")]
    Random,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if breaks_connections(&e) {
            // Connections kept warm may be as broken as this one: none of them is reused.
            GENERATION.fetch_add(1, Ordering::SeqCst);
        }
        Self::Database(e)
    }
}

/// Whether an error says that a connection (and maybe the database) went away, rather than
/// that a statement was refused.
fn breaks_connections(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::PoolClosed => true,
        // PostgreSQL's "connection exception" and "operator intervention" classes (a server
        // shutting down or ending backends).
        sqlx::Error::Database(d) => d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57")),
        _ => false,
    }
}

/// Bumped by every error that may have broken connections; a warm connection taken before the
/// last bump is not reused.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// At most this many connections are kept warm (half the pool), so that statements outside
/// requests always find one in the pool.
const WARM_MAX: usize = 8;

/// Connections that requests gave back, kept for the next request. sqlx checks a connection
/// with a round trip when it goes back to its pool; a request's connection whose statements
/// succeeded does not need that, so it is kept here instead. One that may be broken, or was
/// idle too long, goes back to sqlx's pool, which checks it.
#[derive(Default)]
struct Warm(std::sync::Mutex<Vec<(PoolConnection<Any>, u64, std::time::Instant)>>);

impl Warm {
    /// A warm connection, if one is fit for use.
    fn take(&self) -> Option<(PoolConnection<Any>, u64)> {
        let mut warm = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((conn, generation, at)) = warm.pop() {
            if generation == GENERATION.load(Ordering::SeqCst) && at.elapsed() < IDLE_BEFORE_PING {
                return Some((conn, generation));
            }
            drop(conn);
        }
        None
    }

    /// Keeps a connection taken in `generation`, or gives it back to sqlx's pool.
    fn park(&self, conn: PoolConnection<Any>, generation: u64) {
        let mut warm = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if generation == GENERATION.load(Ordering::SeqCst) && warm.len() < WARM_MAX {
            warm.push((conn, generation, std::time::Instant::now()));
        }
    }
}

/// The database.
///
/// A store made by [`Store::scoped`] serves one request: its statements share one pooled
/// connection (taken at the first statement, kept warm for the next request when the last
/// clone is dropped), and the audit events and notifications it records are held until the
/// request's next write, which stores them in the same transaction.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    dialect: Dialect,
    warm: Arc<Warm>,
    step: Option<Arc<Step>>,
    /// On SQLite, the process's writers take turns here ([`Store::write_conn`]).
    turns: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// What a request-scoped store shares among its clones.
struct Step {
    /// The request's connection and the generation it was taken in.
    conn: tokio::sync::Mutex<Option<(PoolConnection<Any>, u64)>>,
    held: std::sync::Mutex<Held>,
    /// A text is running on the connection that leaves it unfit for another request until
    /// it ends ([`Store::write_guarded`]).
    unfinished: AtomicBool,
    warm: Arc<Warm>,
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some((conn, generation)) = self.conn.get_mut().take() {
            if *self.unfinished.get_mut() {
                tracing::warn!("a request ended during a database write; its connection is closed");
                drop(conn.detach());
            } else {
                self.warm.park(conn, generation);
            }
        }
        let held = self.held.get_mut().unwrap_or_else(PoisonError::into_inner);
        if !held.is_empty() {
            tracing::error!(
                events = held.audit.len(),
                notifications = held.outbox.len(),
                "a request ended with audit events or notifications not stored"
            );
        }
    }
}

/// Writes held for the request's next transaction.
#[derive(Default)]
struct Held {
    audit: Vec<AuditRecord>,
    /// `(user_id, kind, created_at)`.
    outbox: Vec<(String, String, i64)>,
    /// Changes to users' rows, one entry per user: a batch is one statement on PostgreSQL,
    /// which updates a row at most once per statement, so the changes to one row are merged.
    users: Vec<(String, UserChange)>,
    /// Changes whose outcome the request does not need before its next write (a new pass,
    /// removed passkeys, ended sessions), in the order they were made.
    changes: Batch,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.audit.is_empty() && self.outbox.is_empty() && self.users.is_empty() && self.changes.parts.is_empty()
    }

    /// `later`'s writes after these.
    fn extend(&mut self, later: Self) {
        self.audit.extend(later.audit);
        self.outbox.extend(later.outbox);
        for (user, change) in later.users {
            self.change_user(user, change);
        }
        self.changes.append(later.changes);
    }

    fn change_user(&mut self, user_id: String, change: UserChange) {
        match self.users.iter_mut().find(|(id, _)| *id == user_id) {
            Some((_, held)) => held.merge(change),
            None => self.users.push((user_id, change)),
        }
    }
}

/// A change to a user's row: what a recovery does to the account.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserChange {
    /// Whether the user must register a new method before any client gets tokens; `None`
    /// leaves it as it is.
    pub(crate) must_register: Option<bool>,
    /// The password is removed.
    pub(crate) clear_password: bool,
    /// The TOTP secret is removed.
    pub(crate) clear_totp: bool,
    /// A successful sign-in at this time (seconds since the Unix epoch).
    pub(crate) signed_in_at: Option<i64>,
}

impl UserChange {
    /// `later` after this change: removals add up, settings of the later change win.
    fn merge(&mut self, later: Self) {
        self.must_register = later.must_register.or(self.must_register);
        self.clear_password |= later.clear_password;
        self.clear_totp |= later.clear_totp;
        self.signed_in_at = later.signed_in_at.or(self.signed_in_at);
    }

    /// The one statement that makes the change (a negative value leaves a column as it is).
    fn batch(self, user_id: &str) -> Batch {
        Batch::of(
            "UPDATE users SET must_register = CASE WHEN $2 < 0 THEN must_register ELSE $2 END, \
             password_hash = CASE WHEN $3 = 1 THEN NULL ELSE password_hash END, \
             totp_secret = CASE WHEN $4 = 1 THEN NULL ELSE totp_secret END, \
             totp_last_step = CASE WHEN $4 = 1 THEN NULL ELSE totp_last_step END, \
             last_sign_in = CASE WHEN $5 < 0 THEN last_sign_in ELSE $5 END WHERE id = $1",
            [
                Value::text(user_id),
                Value::Int(self.must_register.map_or(-1, i64::from)),
                Value::Int(i64::from(self.clear_password)),
                Value::Int(i64::from(self.clear_totp)),
                Value::Int(self.signed_in_at.unwrap_or(-1)),
            ],
        )
    }
}

/// A connection for some statements: the request's own, or one from the pool.
pub(crate) enum Conn<'a> {
    Pooled(PoolConnection<Any>),
    Shared(tokio::sync::MappedMutexGuard<'a, PoolConnection<Any>>),
}

impl std::ops::Deref for Conn<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Self::Pooled(c) => c,
            Self::Shared(c) => c,
        }
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Self::Pooled(c) => c,
            Self::Shared(c) => c,
        }
    }
}

/// A connection for a write, with the process's turn to write on SQLite.
pub(crate) struct WriteConn<'a> {
    conn: Conn<'a>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for WriteConn<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteConn<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

/// A write to the session table, stored with the request's held writes.
#[derive(Debug, Clone, Copy)]
pub enum SessionWrite<'a> {
    /// Creates or replaces a value.
    Put {
        /// Key.
        id: &'a str,
        /// Value.
        state: &'a [u8],
        /// Seconds since the Unix epoch.
        now: i64,
        /// Gone from.
        expires_at: i64,
    },
    /// Stores a leased session's new state and gives the lease back.
    Release {
        /// Key.
        id: &'a str,
        /// Value.
        state: &'a [u8],
        /// Seconds since the Unix epoch.
        now: i64,
    },
    /// Removes a value.
    Delete {
        /// Key.
        id: &'a str,
    },
}

/// A pass to store: the secret itself never is, only its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTap {
    /// Identifier, for revocation and the audit log.
    pub id: String,
    /// The user.
    pub user_id: String,
    /// HMAC-SHA-256 of the secret under the server key, hex.
    pub secret_mac: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// Not usable before.
    pub not_before: i64,
    /// Not usable from.
    pub expires_at: i64,
    /// Dies at first use.
    pub one_time: bool,
}

/// The outcome of a redemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// The pass was valid and is now used.
    Redeemed {
        /// The pass.
        tap_id: String,
        /// Its user.
        user_id: String,
    },
    /// No valid pass has this secret: unknown, expired, not yet valid, revoked or used.
    Refused,
}

/// The server key passes are MACed with.
pub struct TapKey(ring::hmac::Key);

impl TapKey {
    /// The key from its material.
    pub fn new(material: &[u8]) -> Self {
        Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, material))
    }

    /// HMAC-SHA-256 of a pass secret, hex.
    pub fn mac(&self, secret: &str) -> String {
        hex(ring::hmac::sign(&self.0, secret.as_bytes()).as_ref())
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    out
}

/// SHA-256 of a single-use value, hex.
pub fn digest(value: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, value.as_bytes()).as_ref())
}

/// `count` random bytes, hex.
pub fn random_hex(count: usize) -> Result<String, StoreError> {
    let mut bytes = vec![0u8; count];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| StoreError::Random)?;
    Ok(hex(&bytes))
}

/// A pooled connection idle for longer than this is pinged before use.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(30);

/// One hit on each of two keys (`$1`, `$2`) in the window starting at `$3`; returns each
/// key with its hits.
pub(crate) const HIT_BOTH: &str = "INSERT INTO rate_limits (key, window_start, hits) VALUES ($1, $3, 1), ($2, $3, 1) \
     ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limits.hits + 1 RETURNING key, hits";

/// The hits of `first` and of `second` in the rows [`HIT_BOTH`] returned.
pub(crate) fn hits_of(rows: &[sqlx::any::AnyRow], first: &str, second: &str) -> Result<(i64, i64), StoreError> {
    let mut hits = (0, 0);
    for row in rows {
        let key: String = row.try_get(0)?;
        let count: i64 = row.try_get(1)?;
        if key == first {
            hits.0 = count;
        }
        if key == second {
            hits.1 = count;
        }
    }
    Ok(hits)
}

impl Store {
    /// Connects to `url` (`sqlite://FILE`, created if missing, or `postgres://...`) and
    /// applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (dialect, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let query = if path.contains('?') { "&" } else { "?" };
            (Dialect::Sqlite, format!("sqlite://{path}{query}mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Dialect::Postgres, url.to_owned())
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        // sqlx pings a pooled connection before handing it out and again when it comes back:
        // with a statement per acquire, three round trips per statement. Pinging only a
        // connection that sat idle for a while (the one a restart or a firewall may have cut)
        // saves a third of the round trips and 10-15 % of the server's CPU per recovery
        // (docs/benchmarks-server.md); a connection broken by an error is still caught by the
        // ping on release and not reused.
        let options = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > IDLE_BEFORE_PING {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            });
        let options = if dialect == Dialect::Sqlite {
            options.after_connect(|conn, _| {
                Box::pin(async move {
                    // Concurrent writers wait for each other instead of failing; WAL lets
                    // readers proceed during a write.
                    sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    // Every commit reaches the disk before its request answers (SQLite's default,
                    // stated here because the leases and counters relax it for their own writes).
                    sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options.connect(&url).await?;
        let turns = (dialect == Dialect::Sqlite).then(Arc::default);
        let store = Self { pool, dialect, warm: Arc::default(), step: None, turns };
        store.migrate().await?;
        Ok(store)
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The connection pool, for statements this type does not offer.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The same database for one request: one connection for all its statements, and its
    /// audit events and notifications written with its next write (or by [`Store::flush`]).
    /// Each statement on a pooled connection costs a second round trip when the connection
    /// goes back (the pool checks it); a request's connection skips that check altogether
    /// and goes to the next request.
    #[must_use]
    pub fn scoped(&self) -> Self {
        let step = Step {
            conn: tokio::sync::Mutex::default(),
            held: std::sync::Mutex::default(),
            unfinished: AtomicBool::new(false),
            warm: self.warm.clone(),
        };
        Self { step: Some(Arc::new(step)), ..self.clone() }
    }

    /// A connection: the request's own on a scoped store, else one from the pool.
    pub(crate) async fn conn(&self) -> Result<Conn<'_>, StoreError> {
        let Some(step) = &self.step else {
            return Ok(Conn::Pooled(match self.warm.take() {
                Some((conn, _)) => conn,
                None => self.pool.acquire().await?,
            }));
        };
        let mut slot = step.conn.lock().await;
        let taken = match slot.take() {
            Some(taken) => taken,
            None => match self.warm.take() {
                Some(warm) => warm,
                None => {
                    let generation = GENERATION.load(Ordering::SeqCst);
                    (self.pool.acquire().await?, generation)
                }
            },
        };
        Ok(Conn::Shared(tokio::sync::MutexGuard::map(slot, |s| &mut s.insert(taken).0)))
    }

    /// A connection for a write. On SQLite, once the connection is there, the write waits
    /// for its turn among the process's writers: SQLite lets one connection write at a time,
    /// and a writer that finds the database locked sleeps in SQLite's busy handler (1, 2,
    /// 5... ms, growing), which under load made writes wait for tens of milliseconds while the
    /// CPU idled. Turns queue writers in order without sleeping. The turn is held until the
    /// returned guard is dropped, so a statement keeps it while it runs. The connection is
    /// taken before the turn: a writer never waits for a connection while holding the turn.
    /// Other processes on the same file (the admin commands) still meet the busy handler.
    pub(crate) async fn write_conn(&self) -> Result<WriteConn<'_>, StoreError> {
        let conn = self.conn().await?;
        let turn = match &self.turns {
            Some(turns) => Some(turns.clone().lock_owned().await),
            None => None,
        };
        Ok(WriteConn { conn, _turn: turn })
    }

    /// Gives the request's connection back before a slow call elsewhere (a remote service),
    /// so that waiting requests do not hold connections; the next statement takes one again.
    pub async fn let_go(&self) {
        if let Some(step) = &self.step
            && let Some((conn, generation)) = step.conn.lock().await.take()
        {
            self.warm.park(conn, generation);
        }
    }

    fn held(&self) -> Option<std::sync::MutexGuard<'_, Held>> {
        self.step.as_ref().map(|s| s.held.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Writes the held audit events and notifications now (nothing to do on a store that
    /// holds none).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write_sessions(&[]).await
    }

    /// The session writes, with the held audit events and notifications, in one
    /// transaction. Held writes that fail are kept for the next attempt.
    pub async fn write_sessions(&self, writes: &[SessionWrite<'_>]) -> Result<(), StoreError> {
        self.with_held(batch_of(&Held::default(), None, writes)).await.map(drop)
    }

    /// Runs `batch` after the held audit events and notifications, as one: so that a change
    /// is never stored without the events that led to it. Answers the rows the batch's
    /// statements return (`RETURNING`). Held writes that fail are kept for the next attempt.
    pub(crate) async fn with_held(&self, batch: Batch) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        self.with_held_user(batch, None).await
    }

    /// [`Store::with_held`], with a change to a user's row made now in the same batch, merged
    /// with the changes to that row held already (PostgreSQL updates a row once per
    /// statement). A batch that fails keeps the held writes, not `user`'s change.
    pub(crate) async fn with_held_user(
        &self,
        batch: Batch,
        user: Option<(&str, UserChange)>,
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let held = self.held().map(|mut h| std::mem::take(&mut *h)).unwrap_or_default();
        let mut all = batch_of(&held, user, &[]);
        all.append(batch);
        let result = self.run(all).await;
        if result.is_err()
            && let Some(mut h) = self.held()
        {
            let later = std::mem::take(&mut *h);
            *h = held;
            h.extend(later);
        }
        result
    }

    /// On a scoped store, holds `batch` for the request's next write (a change whose outcome
    /// the request does not need before then); elsewhere, runs it now.
    pub(crate) async fn hold(&self, batch: Batch) -> Result<(), StoreError> {
        if let Some(mut held) = self.held() {
            held.changes.append(batch);
            return Ok(());
        }
        self.with_held(batch).await.map(drop)
    }

    /// On a scoped store, holds a change to a user's row for the request's next write
    /// (merged with the changes to that row held already); elsewhere, makes it now.
    pub(crate) async fn change_user(&self, user_id: &str, change: UserChange) -> Result<(), StoreError> {
        if let Some(mut held) = self.held() {
            held.change_user(user_id.to_owned(), change);
            return Ok(());
        }
        self.with_held_user(Batch::default(), Some((user_id, change))).await.map(drop)
    }

    /// Runs a batch: one round trip, all or nothing. A request dropped while a SQLite batch
    /// runs (the client went away) closes its connection instead of giving it back, so that
    /// SQLite rolls the unfinished transaction back and no later request inherits it.
    async fn run(&self, batch: Batch) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        if batch.parts.is_empty() {
            return Ok(Vec::new());
        }
        let sql = batch.sql(self.dialect);
        // On SQLite a batch of several parts is a transaction its text opens and closes.
        let open = self.dialect == Dialect::Sqlite && batch.parts.len() > 1;
        self.write_guarded(&sql, batch.args, open.then_some("ROLLBACK")).await
    }

    /// Runs the write `sql` with `values` on the request's connection (a store of its own
    /// when this one serves no request). With `restore`, the text leaves the connection in a
    /// state no other request may inherit until the text has run to its end (a transaction
    /// open, durability relaxed): when it fails, `restore` runs on the same connection, and
    /// a request dropped meanwhile closes the connection instead of giving it back.
    pub(crate) async fn write_guarded(
        &self,
        sql: &str,
        values: impl IntoIterator<Item = Value>,
        restore: Option<&str>,
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let scoped;
        let store = if self.step.is_some() {
            self
        } else {
            scoped = self.scoped();
            &scoped
        };
        let step = store.step.as_deref();
        let query = query_with(sql, values);
        let mut conn = store.write_conn().await?;
        if let Some(step) = step {
            step.unfinished.store(restore.is_some(), Ordering::SeqCst);
        }
        let result = query.fetch_all(&mut *conn).await;
        if let (Err(_), Some(restore)) = (&result, restore) {
            // An error here means the connection is broken, and it is not reused.
            let _ = sqlx::query(restore).execute(&mut *conn).await;
        }
        if let Some(step) = step {
            step.unfinished.store(false, Ordering::SeqCst);
        }
        Ok(result?)
    }

    /// Applies pending migrations in one transaction. On PostgreSQL an advisory lock held
    /// by that transaction makes processes starting at once take turns: the second waits,
    /// then finds every version applied.
    async fn migrate(&self) -> Result<(), StoreError> {
        let migrations: &[(i64, &str)] = match self.dialect {
            Dialect::Sqlite => SQLITE_MIGRATIONS,
            Dialect::Postgres => POSTGRES_MIGRATIONS,
        };
        let mut tx = self.pool.begin().await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7420001)").execute(&mut *tx).await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        for (version, sql) in migrations {
            let done = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(*version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_some() {
                continue;
            }
            let without_comments: String =
                sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
            for statement in without_comments.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(now())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The server key named `name`, created with 32 random bytes on first use; every
    /// process sharing the database gets the same one.
    pub async fn server_key(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.server_key_with(name, || {
            let mut fresh = vec![0u8; 32];
            ring::rand::SystemRandom::new().fill(&mut fresh).map_err(|_| "no random source".to_owned())?;
            Ok(fresh)
        })
        .await
    }

    /// The server key named `name`, made by `generate` on first use; every process sharing
    /// the database gets the same one.
    pub async fn server_key_with(
        &self,
        name: &str,
        generate: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<Vec<u8>, StoreError> {
        if let Some(row) = sqlx::query("SELECT material FROM server_keys WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.conn().await?)
            .await?
        {
            return Ok(row.try_get::<Vec<u8>, _>(0)?);
        }
        let fresh = generate().map_err(|_| StoreError::Random)?;
        sqlx::query(
            "INSERT INTO server_keys (name, material, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .bind(now())
        .execute(&mut *self.write_conn().await?)
        .await?;
        let row = sqlx::query("SELECT material FROM server_keys WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *self.conn().await?)
            .await?;
        Ok(row.try_get::<Vec<u8>, _>(0)?)
    }

    /// Stores a pass; a scoped store holds it for the request's next write (the pass is shown
    /// only after that write), with the audit events held so far.
    pub async fn insert_tap(&self, tap: &NewTap) -> Result<(), StoreError> {
        let batch = Batch::of(
            "INSERT INTO taps (id, user_id, secret_mac, created_at, not_before, expires_at, one_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                Value::text(&tap.id),
                Value::text(&tap.user_id),
                Value::text(&tap.secret_mac),
                Value::Int(tap.created_at),
                Value::Int(tap.not_before),
                Value::Int(tap.expires_at),
                Value::Int(i64::from(tap.one_time)),
            ],
        );
        self.hold(batch).await
    }

    /// Redeems the pass whose secret has this MAC, at `now`. One statement decides: a
    /// one-time pass is redeemed by exactly one caller however many race, in this process
    /// or another on the same database.
    pub async fn redeem_tap(&self, secret_mac: &str, now: i64) -> Result<Redemption, StoreError> {
        let row = sqlx::query(
            "UPDATE taps SET uses = uses + 1, last_used_at = $1 \
             WHERE secret_mac = $2 AND revoked_at IS NULL AND not_before <= $1 AND expires_at > $1 \
             AND (one_time = 0 OR uses = 0) \
             RETURNING id, user_id",
        )
        .bind(now)
        .bind(secret_mac)
        .fetch_optional(&mut *self.write_conn().await?)
        .await?;
        Ok(match row {
            Some(row) => Redemption::Redeemed { tap_id: row.try_get(0)?, user_id: row.try_get(1)? },
            None => Redemption::Refused,
        })
    }

    /// Revokes a pass; `false` when no live pass has this id.
    pub async fn revoke_tap(&self, tap_id: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE taps SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(tap_id)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Accepts `value` of `kind` (a nonce, an OIDC `state`, a response code) once: `true`
    /// the first time, `false` ever after until it expires.
    pub async fn consume_once(&self, kind: &str, value: &str, expires_at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO single_use (kind, digest, expires_at) VALUES ($1, $2, $3) ON CONFLICT (kind, digest) DO NOTHING",
        )
        .bind(kind)
        .bind(digest(value))
        .bind(expires_at)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Counts one hit on `key` in the window starting at `window_start`; returns the hits so
    /// far, this one included.
    pub async fn hit(&self, key: &str, window_start: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO rate_limits (key, window_start, hits) VALUES ($1, $2, 1) \
             ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limits.hits + 1 RETURNING hits",
        )
        .bind(key)
        .bind(window_start)
        .fetch_one(&mut *self.write_conn().await?)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Counts one hit on each of two different keys in the window starting at
    /// `window_start`, in one statement; returns the hits so far of each, this one included.
    pub async fn hit_both(&self, first: &str, second: &str, window_start: i64) -> Result<(i64, i64), StoreError> {
        let rows = sqlx::query(HIT_BOTH)
            .bind(first)
            .bind(second)
            .bind(window_start)
            .fetch_all(&mut *self.write_conn().await?)
            .await?;
        hits_of(&rows, first, second)
    }

    /// The hits counted on `key` in the window starting at `window_start`, without adding
    /// one.
    pub async fn hits(&self, key: &str, window_start: i64) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT hits FROM rate_limits WHERE key = $1 AND window_start = $2")
            .bind(key)
            .bind(window_start)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
    }

    /// Stores a recovery session's state.
    pub async fn put_session(&self, id: &str, state: &[u8], now: i64, expires_at: i64) -> Result<(), StoreError> {
        self.write_sessions(&[SessionWrite::Put { id, state, now, expires_at }]).await
    }

    /// A live recovery session's state.
    pub async fn session(&self, id: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT state FROM recovery_sessions WHERE id = $1 AND expires_at > $2")
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        Ok(row.map(|r| r.try_get::<Vec<u8>, _>(0)).transpose()?)
    }

    /// Ends a recovery session (or any value kept in the session table).
    pub async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        self.write_sessions(&[SessionWrite::Delete { id }]).await
    }

    /// Takes the lease of a live recovery session for `seconds` and answers its state; `None`
    /// when the session is unknown, expired or leased by another request (which may be on
    /// another process). The lease makes every step of a flow run once, so a double-posted
    /// form cannot issue two passes.
    pub async fn lease_session(&self, id: &str, now: i64, seconds: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query(
            "UPDATE recovery_sessions SET lease_until = $3 \
             WHERE id = $1 AND expires_at > $2 AND (lease_until IS NULL OR lease_until <= $2) RETURNING state",
        )
        .bind(id)
        .bind(now)
        .bind(now + seconds)
        .fetch_optional(&mut *self.write_conn().await?)
        .await?;
        Ok(row.map(|r| r.try_get::<Vec<u8>, _>(0)).transpose()?)
    }

    /// Stores a leased session's new state and gives the lease back.
    pub async fn release_session(&self, id: &str, state: &[u8], now: i64) -> Result<(), StoreError> {
        self.write_sessions(&[SessionWrite::Release { id, state, now }]).await
    }

    /// Appends an audit event; a scoped store holds it for the request's next write.
    pub async fn record_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        if let Some(mut held) = self.held() {
            held.audit.push(record.clone());
            return Ok(());
        }
        self.run(batch_of(&Held { audit: vec![record.clone()], ..Held::default() }, None, &[])).await.map(drop)
    }

    /// Events of `kind` for `user_id` at or after `since`, those held by a scoped store
    /// included.
    pub async fn count_recent(&self, kind: AuditKind, user_id: &str, since: i64) -> Result<i64, StoreError> {
        Ok(self.count_recent_each(user_id, &[(kind, since)]).await?.first().copied().unwrap_or(0))
    }

    /// How many events of each `(kind, since)` the user has, held ones included, in one
    /// statement; answered in the same order.
    pub async fn count_recent_each(&self, user_id: &str, windows: &[(AuditKind, i64)]) -> Result<Vec<i64>, StoreError> {
        let Some(earliest) = windows.iter().map(|(_, since)| *since).min() else { return Ok(Vec::new()) };
        let mut columns = Vec::with_capacity(windows.len());
        let mut values = vec![Value::text(user_id), Value::Int(earliest)];
        for (i, (kind, since)) in windows.iter().enumerate() {
            let (k, t) = (3 + 2 * i, 4 + 2 * i);
            columns.push(format!("COALESCE(SUM(CASE WHEN kind = ${k} AND at >= ${t} THEN 1 ELSE 0 END), 0)"));
            values.extend([Value::Text(Some(kind_name(*kind))), Value::Int(*since)]);
        }
        let sql = format!("SELECT {} FROM audit_events WHERE user_id = $1 AND at >= $2", columns.join(", "));
        let row = query_with(&sql, values).fetch_one(&mut *self.conn().await?).await?;
        let mut counts = Vec::with_capacity(windows.len());
        for (i, (kind, since)) in windows.iter().enumerate() {
            let stored: i64 = row.try_get(i)?;
            counts.push(stored.saturating_add(self.held_events(user_id, *kind, *since)));
        }
        Ok(counts)
    }

    /// Audit events of `kind` for `user_id` at or after `since` that this request holds for
    /// its next write (none on a store that holds none).
    pub(crate) fn held_events(&self, user_id: &str, kind: AuditKind, since: i64) -> i64 {
        let held = self.held();
        let pending = held.as_ref().map_or(0, |h| {
            h.audit
                .iter()
                .filter(|r| {
                    r.kind == kind
                        && r.user_id.as_deref() == Some(user_id)
                        && i64::try_from(r.at).unwrap_or(i64::MAX) >= since
                })
                .count()
        });
        i64::try_from(pending).unwrap_or(i64::MAX)
    }

    /// Queues a notification for the user's other channels; a scoped store holds it for the
    /// request's next write.
    pub async fn queue_notification(&self, user_id: &str, kind: &str, now: i64) -> Result<(), StoreError> {
        if let Some(mut held) = self.held() {
            held.outbox.push((user_id.to_owned(), kind.to_owned(), now));
            return Ok(());
        }
        let held = Held { outbox: vec![(user_id.to_owned(), kind.to_owned(), now)], ..Held::default() };
        self.run(batch_of(&held, None, &[])).await.map(drop)
    }

    /// Notifications not sent yet, oldest first, as `(seq, user_id, kind)`.
    pub async fn pending_notifications(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        let rows = sqlx::query("SELECT seq, user_id, kind FROM outbox WHERE sent_at IS NULL ORDER BY seq")
            .fetch_all(&mut *self.conn().await?)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
    }

    /// Audit events at or after `since`, oldest first, optionally of one user only.
    pub async fn audit_since(&self, since: i64, user_id: Option<&str>) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, kind, flow_id, user_id, reason, helpdesk_ref FROM audit_events \
             WHERE at >= $1 AND ($2 = '' OR user_id = $2) ORDER BY seq",
        )
        .bind(since)
        .bind(user_id.unwrap_or(""))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(audit_record).collect()
    }

    /// Every event of the recovery a helpdesk reference code belongs to, oldest first.
    pub async fn audit_by_helpdesk_ref(&self, reference: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, kind, flow_id, user_id, reason, helpdesk_ref FROM audit_events \
             WHERE flow_id IN (SELECT flow_id FROM audit_events WHERE helpdesk_ref = $1) ORDER BY seq",
        )
        .bind(reference)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(audit_record).collect()
    }
}

/// Held writes (with `user`'s change merged into those held for that user), then session
/// writes, as one batch.
fn batch_of(held: &Held, user: Option<(&str, UserChange)>, writes: &[SessionWrite<'_>]) -> Batch {
    let mut batch = Batch::default();
    if !held.audit.is_empty() {
        let values = held.audit.iter().flat_map(|r| {
            [
                Value::Int(i64::try_from(r.at).unwrap_or(i64::MAX)),
                Value::Text(Some(kind_name(r.kind))),
                Value::text(&r.flow_id),
                Value::Text(r.user_id.clone()),
                Value::text(&r.reason),
                Value::Text(r.helpdesk_ref.clone()),
            ]
        });
        batch.add(
            &format!(
                "INSERT INTO audit_events (at, kind, flow_id, user_id, reason, helpdesk_ref) VALUES {}",
                placeholders(6, held.audit.len())
            ),
            values,
        );
    }
    if !held.outbox.is_empty() {
        let values = held
            .outbox
            .iter()
            .flat_map(|(user_id, kind, at)| [Value::text(user_id), Value::text(kind), Value::Int(*at)]);
        batch.add(
            &format!("INSERT INTO outbox (user_id, kind, created_at) VALUES {}", placeholders(3, held.outbox.len())),
            values,
        );
    }
    let mut extra = user;
    for (user_id, held_change) in &held.users {
        let mut change = *held_change;
        if let Some((_, now)) = extra.filter(|(id, _)| id == user_id) {
            change.merge(now);
            extra = None;
        }
        batch.append(change.batch(user_id));
    }
    if let Some((user_id, change)) = extra {
        batch.append(change.batch(user_id));
    }
    batch.append(held.changes.clone());
    for write in writes {
        match *write {
            SessionWrite::Put { id, state, now, expires_at } => batch.add(
                "INSERT INTO recovery_sessions (id, state, created_at, updated_at, expires_at) \
                 VALUES ($1, $2, $3, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                [Value::text(id), Value::Blob(state.to_vec()), Value::Int(now), Value::Int(expires_at)],
            ),
            SessionWrite::Release { id, state, now } => batch.add(
                "UPDATE recovery_sessions SET state = $2, updated_at = $3, lease_until = NULL WHERE id = $1",
                [Value::text(id), Value::Blob(state.to_vec()), Value::Int(now)],
            ),
            SessionWrite::Delete { id } => {
                batch.add("DELETE FROM recovery_sessions WHERE id = $1", [Value::text(id)]);
            }
        }
    }
    batch
}

/// `sql` with `values` bound to `$1`, `$2`... in order.
pub(crate) fn query_with(
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments<'_>> {
    let mut query = sqlx::query(sql);
    for value in values {
        query = match value {
            Value::Int(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Blob(v) => query.bind(v),
        };
    }
    query
}

/// A value bound to a batch.
#[derive(Clone)]
pub(crate) enum Value {
    Int(i64),
    Text(Option<String>),
    Blob(Vec<u8>),
}

/// Writes that run as one: one round trip, all or nothing. On PostgreSQL they are one
/// statement (each write but the last a data-modifying `WITH` part; they touch different
/// rows, so it does not matter that the parts see one snapshot; a row is updated at most once
/// per statement, which is why changes to a user's row are merged, see `UserChange`); on SQLite one text of
/// statements between `BEGIN IMMEDIATE` and `COMMIT`, which the connection's thread runs
/// in one go.
#[derive(Default, Clone)]
pub(crate) struct Batch {
    parts: Vec<String>,
    args: Vec<Value>,
}

impl Value {
    /// A text value.
    pub(crate) fn text(value: &str) -> Self {
        Self::Text(Some(value.to_owned()))
    }
}

impl Batch {
    /// A batch of one statement.
    pub(crate) fn of(sql: &str, values: impl IntoIterator<Item = Value>) -> Self {
        let mut batch = Self::default();
        batch.add(sql, values);
        batch
    }

    /// Adds a statement written with its own `$1`, `$2`... and their values.
    pub(crate) fn add(&mut self, sql: &str, values: impl IntoIterator<Item = Value>) {
        self.parts.push(renumber(sql, self.args.len()));
        self.args.extend(values);
    }

    /// No statement.
    pub(crate) fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Adds another batch's statements after these.
    pub(crate) fn append(&mut self, other: Self) {
        let offset = self.args.len();
        self.parts.extend(other.parts.iter().map(|p| renumber(p, offset)));
        self.args.extend(other.args);
    }

    fn sql(&self, dialect: Dialect) -> String {
        match (dialect, self.parts.as_slice()) {
            (_, []) => String::new(),
            (_, [one]) => one.clone(),
            (Dialect::Postgres, [init @ .., last]) => {
                let parts: Vec<String> = init.iter().enumerate().map(|(i, p)| format!("w{i} AS ({p})")).collect();
                format!("WITH {} {last}", parts.join(", "))
            }
            (Dialect::Sqlite, parts) => format!("BEGIN IMMEDIATE; {}; COMMIT", parts.join("; ")),
        }
    }
}

/// `sql` with every parameter `$n` moved to `$(n + offset)`.
fn renumber(sql: &str, offset: usize) -> String {
    // Every write of a step goes through here: copy the text between parameters in slices
    // rather than character by character.
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut rest = sql;
    while let Some((head, tail)) = rest.find('$').and_then(|at| rest.split_at_checked(at + 1)) {
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = tail.split_at_checked(digits).unwrap_or((tail, ""));
        match number.parse::<usize>() {
            Ok(n) => {
                let _ = write!(out, "{}", n + offset);
            }
            Err(_) => out.push_str(number),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` values.
fn placeholders(columns: usize, rows: usize) -> String {
    let mut out = String::with_capacity(rows * (columns * 5 + 4));
    for row in 0..rows {
        out.push_str(if row == 0 { "(" } else { ", (" });
        for column in 1..=columns {
            let _ = write!(out, "{}${}", if column == 1 { "" } else { ", " }, row * columns + column);
        }
        out.push(')');
    }
    out
}

fn audit_record(row: &sqlx::any::AnyRow) -> Result<AuditRecord, StoreError> {
    let kind: String = row.try_get(1)?;
    Ok(AuditRecord {
        at: u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0),
        kind: serde_json::from_value(serde_json::Value::String(kind)).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        flow_id: row.try_get(2)?,
        user_id: row.try_get(3)?,
        reason: row.try_get(4)?,
        helpdesk_ref: row.try_get(5)?,
    })
}

/// The stored spelling of an audit kind (`recovery-started`).
pub(crate) fn kind_name(kind: AuditKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Temporary Access Passes over the store: issued with a fresh secret shown once, kept as
/// its MAC, redeemed by what the user types.
#[derive(Clone)]
pub struct Passes {
    store: Store,
    key: std::sync::Arc<TapKey>,
}

/// A pass just issued: the secret is shown once and exists nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The pass id.
    pub tap_id: String,
    /// The secret.
    pub secret: String,
    /// Not usable from.
    pub expires_at: i64,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("tap_id", &self.tap_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Passes {
    /// Passes MACed with the store's `tap` server key (shared by every process).
    pub async fn open(store: Store) -> Result<Self, StoreError> {
        let key = TapKey::new(&store.server_key("tap").await?);
        Ok(Self { store, key: std::sync::Arc::new(key) })
    }

    /// Issues a pass of `length` characters for `user_id`.
    pub async fn issue(
        &self,
        user_id: &str,
        lifetime_seconds: i64,
        not_before_seconds: i64,
        one_time: bool,
        length: u8,
        now: i64,
    ) -> Result<Issued, StoreError> {
        let secret = crate::auth::tap_secret(length)?;
        let tap = NewTap {
            id: format!("tap-{}", random_hex(8)?),
            user_id: user_id.to_owned(),
            secret_mac: self.key.mac(&secret),
            created_at: now,
            not_before: now + not_before_seconds,
            expires_at: now + lifetime_seconds,
            one_time,
        };
        self.store.insert_tap(&tap).await?;
        Ok(Issued { tap_id: tap.id, secret, expires_at: tap.expires_at })
    }

    /// The same passes over another handle of the database (a request's own).
    #[must_use]
    pub fn on(&self, store: &Store) -> Self {
        Self { store: store.clone(), key: self.key.clone() }
    }

    /// Redeems what the user typed (case, spaces and dashes do not matter).
    pub async fn redeem(&self, typed: &str, now: i64) -> Result<Redemption, StoreError> {
        self.store.redeem_tap(&self.mac_of(typed), now).await
    }

    /// The MAC a pass is stored and found under, of what the user typed.
    pub(crate) fn mac_of(&self, typed: &str) -> String {
        self.key.mac(&crate::auth::normalise_tap(typed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_texts_number_their_parameters_in_order() {
        let sql = "UPDATE t SET a = $1, b = $12 WHERE c = '$' AND d = $2";
        assert_eq!(renumber(sql, 0), sql);
        assert_eq!(renumber(sql, 3), "UPDATE t SET a = $4, b = $15 WHERE c = '$' AND d = $5");
        assert_eq!(renumber("$1$2 $", 10), "$11$12 $");
        assert_eq!(renumber("", 5), "");
        let mut batch = Batch::of("INSERT INTO a VALUES ($1, $2)", [Value::Int(1), Value::Int(2)]);
        batch.add("DELETE FROM b WHERE x = $1", [Value::Int(3)]);
        assert_eq!(
            batch.sql(Dialect::Postgres),
            "WITH w0 AS (INSERT INTO a VALUES ($1, $2)) DELETE FROM b WHERE x = $3"
        );
        assert_eq!(placeholders(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(placeholders(3, 1), "($1, $2, $3)");
        assert_eq!(placeholders(1, 0), "");
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }
}
