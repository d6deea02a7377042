//! What the operator's commands need from the store beyond the provider's own queries:
//! importing users all-or-nothing, changing an account, showing one without its secrets, and
//! querying the audit log with filters.

use crate::accounts::{ACCOUNT_COLUMNS, Account, account, end_sessions_on, insert_user_on, json};
use crate::store::{Store, StoreError};
use regain_core::env::{AuditKind, AuditRecord};
use sqlx::Row as _;
use std::collections::{BTreeMap, BTreeSet};

/// Which of a row's fields its source gave, so that updating an existing user changes those
/// and keeps the others. A new user gets every field of the row (defaults where not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provided {
    /// First name.
    pub given_name: bool,
    /// Last name.
    pub family_name: bool,
    /// Whether the account may sign in.
    pub enabled: bool,
    /// Last sign-in.
    pub last_sign_in: bool,
    /// Country.
    pub country: bool,
    /// The privileged mark.
    pub privileged: bool,
    /// Groups (replaced as a whole).
    pub groups: bool,
    /// Attributes.
    pub attributes: AttributeUpdate,
}

/// How an update treats the stored attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeUpdate {
    /// Only these names: each is set to the row's value, or removed when the row has none.
    Names(BTreeSet<String>),
    /// The row's attributes replace the stored ones.
    Replace,
}

impl Default for AttributeUpdate {
    fn default() -> Self {
        Self::Names(BTreeSet::new())
    }
}

/// One user to import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportRow {
    /// The account as the source describes it; secrets are never imported.
    pub account: Account,
    /// The fields the source gave.
    pub provided: Provided,
}

impl ImportRow {
    /// The stored account with this row's given fields applied.
    pub fn applied_to(&self, stored: &Account) -> Account {
        let (row, given) = (&self.account, &self.provided);
        let mut merged = stored.clone();
        if given.given_name {
            merged.given_name.clone_from(&row.given_name);
        }
        if given.family_name {
            merged.family_name.clone_from(&row.family_name);
        }
        if given.enabled {
            merged.enabled = row.enabled;
        }
        if given.last_sign_in {
            merged.last_sign_in = row.last_sign_in;
        }
        if given.country {
            merged.country.clone_from(&row.country);
        }
        if given.privileged {
            merged.privileged = row.privileged;
        }
        if given.groups {
            merged.groups.clone_from(&row.groups);
        }
        match &given.attributes {
            AttributeUpdate::Replace => merged.attributes.clone_from(&row.attributes),
            AttributeUpdate::Names(names) => {
                for name in names {
                    match row.attributes.get(name) {
                        Some(value) => merged.attributes.insert(name.clone(), value.clone()),
                        None => merged.attributes.remove(name),
                    };
                }
            }
        }
        merged
    }
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    /// New users.
    pub created: usize,
    /// Existing users whose fields changed.
    pub updated: usize,
    /// Existing users the rows left as they were.
    pub unchanged: usize,
}

/// Why an import wrote nothing. `row` is the index of the offending row.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The login exists and the import creates users only.
    #[error("login `{login}` exists already")]
    Exists {
        /// The row.
        row: usize,
        /// Its login.
        login: String,
    },
    /// The login exists with another id; ids never change.
    #[error("login `{login}` belongs to the user `{stored}`, not `{given}`")]
    OtherId {
        /// The row.
        row: usize,
        /// Its login.
        login: String,
        /// The stored user's id.
        stored: String,
        /// The row's id.
        given: String,
    },
    /// The id belongs to a user with another login.
    #[error("id `{id}` belongs to the login `{login}`")]
    IdTaken {
        /// The row.
        row: usize,
        /// Its id.
        id: String,
        /// The login of the user who has it.
        login: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    /// The offending row, unless the database failed.
    pub fn row(&self) -> Option<usize> {
        match self {
            Self::Exists { row, .. } | Self::OtherId { row, .. } | Self::IdTaken { row, .. } => Some(*row),
            Self::Store(_) => None,
        }
    }
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// An account as an operator may see it: no password hash, no TOTP secret, no passkey key,
/// only whether they exist.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserView {
    /// Stable identifier.
    pub id: String,
    /// Login.
    pub login: String,
    /// First name.
    pub given_name: Option<String>,
    /// Last name.
    pub family_name: Option<String>,
    /// Whether the account may sign in.
    pub enabled: bool,
    /// ISO 3166-1 alpha-2 country.
    pub country: Option<String>,
    /// Marked privileged.
    pub privileged: bool,
    /// Directory groups.
    pub groups: Vec<String>,
    /// Other attributes.
    pub attributes: BTreeMap<String, String>,
    /// Last successful sign-in, seconds since the Unix epoch.
    pub last_sign_in: Option<i64>,
    /// Whether a password is set.
    pub password: bool,
    /// Whether an authenticator app is enrolled.
    pub totp: bool,
    /// How many passkeys the user has.
    pub passkeys: i64,
    /// Whether the user must register a new method before any client gets tokens.
    pub must_register: bool,
}

/// Filters of an audit query; every given filter must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Events of this user.
    pub user_id: Option<String>,
    /// Events of one of these kinds; empty for any kind.
    pub kinds: Vec<AuditKind>,
    /// Events at or after this time (seconds since the Unix epoch).
    pub since: Option<i64>,
    /// Events at or before this time.
    pub until: Option<i64>,
    /// Events of the recovery this helpdesk reference belongs to.
    pub helpdesk_ref: Option<String>,
    /// The most recent matching events only, at most this many.
    pub limit: Option<i64>,
}

/// A value bound to a query built from a filter.
enum Param {
    Text(String),
    Int(i64),
}

async fn update_profile_on(conn: &mut sqlx::AnyConnection, a: &Account) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE users SET given_name = $1, family_name = $2, enabled = $3, last_sign_in = $4, country = $5, \
         privileged = $6, groups_json = $7, attributes_json = $8 WHERE id = $9",
    )
    .bind(a.given_name.as_deref())
    .bind(a.family_name.as_deref())
    .bind(i64::from(a.enabled))
    .bind(a.last_sign_in)
    .bind(a.country.as_deref())
    .bind(i64::from(a.privileged))
    .bind(json(&a.groups))
    .bind(json(&a.attributes))
    .bind(&a.id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

impl Store {
    /// Imports users in one transaction: every row is written or none is. A row whose login
    /// exists is refused, or with `update` changes that user's given fields (never the id,
    /// the login or a sign-in method). A user left disabled loses their browser sessions.
    pub async fn import_users(&self, rows: &[ImportRow], update: bool, now: i64) -> Result<Imported, ImportError> {
        let mut tx = self.pool.begin().await?;
        let mut done = Imported::default();
        for (index, row) in rows.iter().enumerate() {
            let new = &row.account;
            let stored = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE login = $1"))
                .bind(&new.login)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(account)
                .transpose()?;
            match stored {
                Some(stored) if !update => return Err(ImportError::Exists { row: index, login: stored.login }),
                Some(stored) if stored.id != new.id => {
                    return Err(ImportError::OtherId {
                        row: index,
                        login: stored.login,
                        stored: stored.id,
                        given: new.id.clone(),
                    });
                }
                Some(stored) => {
                    let merged = row.applied_to(&stored);
                    if merged == stored {
                        done.unchanged += 1;
                    } else {
                        update_profile_on(&mut tx, &merged).await?;
                        if !merged.enabled {
                            end_sessions_on(&mut tx, &merged.id, now).await?;
                        }
                        done.updated += 1;
                    }
                }
                None => {
                    let holder = sqlx::query("SELECT login FROM users WHERE id = $1")
                        .bind(&new.id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|r| r.try_get::<String, _>(0))
                        .transpose()?;
                    if let Some(login) = holder {
                        return Err(ImportError::IdTaken { row: index, id: new.id.clone(), login });
                    }
                    insert_user_on(&mut tx, new, now).await?;
                    done.created += 1;
                }
            }
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Stores an account's profile (names, country, groups, attributes, enabled, privileged,
    /// last sign-in) under its id; sign-in methods are not touched. A disabled account's
    /// browser sessions end in the same transaction. `None` when no user has the id, else
    /// how many sessions ended.
    pub async fn update_account(&self, a: &Account, now: i64) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if update_profile_on(&mut tx, a).await? != 1 {
            return Ok(None);
        }
        let ended = if a.enabled { 0 } else { end_sessions_on(&mut tx, &a.id, now).await? };
        tx.commit().await?;
        Ok(Some(ended))
    }

    /// The user who signs in with `login`, without secrets.
    pub async fn user_view(&self, login: &str) -> Result<Option<UserView>, StoreError> {
        let Some(a) = self.user_by_login(login).await? else {
            return Ok(None);
        };
        let passkeys: i64 = sqlx::query("SELECT COUNT(*) FROM passkeys WHERE user_id = $1")
            .bind(&a.id)
            .fetch_one(&mut *self.conn().await?)
            .await?
            .try_get(0)?;
        Ok(Some(UserView {
            password: a.password_hash.is_some(),
            totp: a.totp_secret.is_some(),
            passkeys,
            must_register: a.must_register,
            id: a.id,
            login: a.login,
            given_name: a.given_name,
            family_name: a.family_name,
            enabled: a.enabled,
            country: a.country,
            privileged: a.privileged,
            groups: a.groups,
            attributes: a.attributes,
            last_sign_in: a.last_sign_in,
        }))
    }

    /// Audit events matching every given filter, oldest first; with a limit, the most recent
    /// ones.
    pub async fn audit_query(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut sql =
            String::from("SELECT at, kind, flow_id, user_id, reason, helpdesk_ref FROM audit_events WHERE 1 = 1");
        let mut params = Vec::new();
        let mut param = |sql: &mut String, value: Param| {
            params.push(value);
            sql.push_str(&format!("${}", params.len()));
        };
        if let Some(user) = &filter.user_id {
            sql.push_str(" AND user_id = ");
            param(&mut sql, Param::Text(user.clone()));
        }
        if !filter.kinds.is_empty() {
            sql.push_str(" AND kind IN (");
            for (i, kind) in filter.kinds.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                param(&mut sql, Param::Text(kind_name(*kind)));
            }
            sql.push(')');
        }
        if let Some(since) = filter.since {
            sql.push_str(" AND at >= ");
            param(&mut sql, Param::Int(since));
        }
        if let Some(until) = filter.until {
            sql.push_str(" AND at <= ");
            param(&mut sql, Param::Int(until));
        }
        if let Some(reference) = &filter.helpdesk_ref {
            sql.push_str(" AND flow_id IN (SELECT flow_id FROM audit_events WHERE helpdesk_ref = ");
            param(&mut sql, Param::Text(reference.clone()));
            sql.push(')');
        }
        if let Some(limit) = filter.limit {
            sql.push_str(" ORDER BY seq DESC LIMIT ");
            param(&mut sql, Param::Int(limit.max(0)));
        } else {
            sql.push_str(" ORDER BY seq");
        }
        let query = params.into_iter().fold(sqlx::query(&sql), |q, p| match p {
            Param::Text(text) => q.bind(text),
            Param::Int(n) => q.bind(n),
        });
        let rows = query.fetch_all(&mut *self.conn().await?).await?;
        let mut events = rows.iter().map(audit_record).collect::<Result<Vec<_>, _>>()?;
        if filter.limit.is_some() {
            events.reverse();
        }
        Ok(events)
    }
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
pub fn kind_name(kind: AuditKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Every audit kind's spelling, from the kind's JSON Schema so that a new kind is listed
/// without a change here.
pub fn kind_names() -> Vec<String> {
    let schema = schemars::schema_for!(AuditKind);
    let mut names = Vec::new();
    collect_consts(schema.as_value(), &mut names);
    names
}

fn collect_consts(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("const", serde_json::Value::String(name)) => out.push(name.clone()),
                    ("enum", serde_json::Value::Array(names)) => {
                        out.extend(names.iter().filter_map(|n| n.as_str().map(str::to_owned)));
                    }
                    _ => collect_consts(item, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_consts(item, out)),
        _ => {}
    }
}

/// Parses an audit kind's spelling.
pub fn parse_kind(name: &str) -> Option<AuditKind> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}
