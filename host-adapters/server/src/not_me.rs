//! The "this wasn't me" link of an access-restored notification.
//!
//! The link carries the outbox row, an expiry and an HMAC-SHA-256 over the row, its user and
//! the expiry, under the `not-me-links` server key shared by every process. Opening it
//! (`GET`) only shows a confirmation form: mail scanners fetch links, and a fetch must change
//! nothing. Confirming (`POST`) locks the account again, once: the account is disabled, its
//! sessions end, its passes are revoked, an administrators' event is recorded and the
//! administrators are alerted through the outbox.
//!
//! The report is an administrators' event (`admin_events`), not a recovery audit event: the
//! recovery audit kinds are the WIT contract's, which a host cannot extend on its own.

use crate::provider::{Provider, escape, page, server_error};
use crate::store::{Store, StoreError, digest, now};
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse as _, Response};
use axum::routing::get;
use serde::Deserialize;
use sqlx::Row as _;

/// How long a link works after the restoration it reports, in seconds.
pub const LINK_SECONDS: i64 = 30 * 24 * 3600;
/// The kind of the administrators' event a report records.
pub const RECOVERY_DISPUTED: &str = "recovery-disputed";
/// The server key links are signed with.
const KEY_NAME: &str = "not-me-links";
/// The single-use kind that makes a link work once.
const SINGLE_USE_KIND: &str = "not-me";
/// Longer tokens are not ours; refused before any work.
const MAX_TOKEN: usize = 200;

/// Signs and checks "this wasn't me" links.
pub struct NotMeLinks {
    key: ring::hmac::Key,
}

/// A link that checked out: signed by this server, not expired, about an access-restored
/// notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLink {
    /// The notification's outbox row.
    pub seq: i64,
    /// Its user.
    pub user_id: String,
    /// When access was restored.
    pub restored_at: i64,
    /// When the link stops working.
    pub expires_at: i64,
}

impl NotMeLinks {
    /// The links of the store's `not-me-links` key (created on first use, shared by every
    /// process).
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        let material = store.server_key(KEY_NAME).await?;
        Ok(Self { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &material) })
    }

    /// The token of the link for outbox row `seq` of `user_id`, working until `expires_at`:
    /// `SEQ.EXPIRES.MAC`, the MAC in base64url.
    pub fn token(&self, seq: i64, user_id: &str, expires_at: i64) -> String {
        use base64::Engine as _;
        let mac = self.tag(seq, user_id, expires_at);
        format!("{seq}.{expires_at}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.as_ref()))
    }

    fn tag(&self, seq: i64, user_id: &str, expires_at: i64) -> ring::hmac::Tag {
        // The numbers hold digits only, so the separators keep every field apart whatever the
        // user id holds.
        ring::hmac::sign(&self.key, format!("not-me\0{seq}\0{user_id}\0{expires_at}").as_bytes())
    }

    /// The link of `token` at `now`, or `None` when it is malformed, forged, expired or about
    /// no access-restored notification.
    pub async fn verify(&self, store: &Store, token: &str, now: i64) -> Result<Option<VerifiedLink>, StoreError> {
        let Some((seq, expires_at, mac)) = parse_token(token) else { return Ok(None) };
        if expires_at <= now {
            return Ok(None);
        }
        let Some(row) = store.notification(seq).await? else { return Ok(None) };
        if row.kind != "access-restored" {
            return Ok(None);
        }
        let expected = self.tag(seq, &row.user_id, expires_at);
        if !regain_core::secret::constant_time_eq(expected.as_ref(), &mac) {
            return Ok(None);
        }
        Ok(Some(VerifiedLink { seq, user_id: row.user_id, restored_at: row.created_at, expires_at }))
    }
}

/// `SEQ.EXPIRES.MAC` split and decoded.
fn parse_token(token: &str) -> Option<(i64, i64, Vec<u8>)> {
    use base64::Engine as _;
    if token.len() > MAX_TOKEN {
        return None;
    }
    let mut parts = token.split('.');
    let (seq, expires, mac) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let number = |text: &str| {
        (!text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<i64>().ok())
            .flatten()
    };
    let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(mac).ok()?;
    Some((number(seq)?, number(expires)?, mac))
}

/// An administrators' event: something the administrators must look at that is not a step
/// of a recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminEvent {
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// What happened (`recovery-disputed`).
    pub kind: String,
    /// The user concerned.
    pub user_id: String,
    /// A stable reason code.
    pub reason: String,
    /// The notification it came from, if any.
    pub outbox_seq: Option<i64>,
}

async fn set_enabled_on(conn: &mut sqlx::AnyConnection, user_id: &str, enabled: bool) -> Result<u64, StoreError> {
    let done = sqlx::query("UPDATE users SET enabled = $1 WHERE id = $2")
        .bind(i64::from(enabled))
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

async fn revoke_user_taps_on(conn: &mut sqlx::AnyConnection, user_id: &str, now: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("UPDATE taps SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

impl Store {
    /// Enables or disables an account; `false` when no user has this id.
    pub async fn set_enabled(&self, user_id: &str, enabled: bool) -> Result<bool, StoreError> {
        let mut conn = self.write_conn().await?;
        Ok(set_enabled_on(&mut conn, user_id, enabled).await? == 1)
    }

    /// Revokes every pass of a user not revoked yet; answers how many.
    pub async fn revoke_user_taps(&self, user_id: &str, now: i64) -> Result<u64, StoreError> {
        let mut conn = self.write_conn().await?;
        revoke_user_taps_on(&mut conn, user_id, now).await
    }

    /// Locks the account of a reported restoration, once per link: `false` when the link was
    /// used already, and then nothing changes. One transaction accepts the link (as
    /// `consume_once("not-me", token, ...)` would), disables the account, ends its browser
    /// sessions, access tokens and unredeemed codes, revokes its passes, records the
    /// administrators' event and queues their alert; a failure leaves everything as it was,
    /// so the user can try again.
    pub async fn lock_disputed_account(&self, token: &str, link: &VerifiedLink, now: i64) -> Result<bool, StoreError> {
        let user = link.user_id.as_str();
        let mut tx = self.pool.begin().await?;
        let first = sqlx::query(
            "INSERT INTO single_use (kind, digest, expires_at) VALUES ($1, $2, $3) ON CONFLICT (kind, digest) DO NOTHING",
        )
        .bind(SINGLE_USE_KIND)
        .bind(digest(token))
        .bind(link.expires_at)
        .execute(&mut *tx)
        .await?;
        if first.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        set_enabled_on(&mut tx, user, false).await?;
        revoke_user_taps_on(&mut tx, user, now).await?;
        crate::accounts::end_sessions_on(&mut tx, user, now).await?;
        sqlx::query("UPDATE auth_codes SET used = 1 WHERE user_id = $1 AND used = 0")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO admin_events (at, kind, user_id, reason, outbox_seq) VALUES ($1, $2, $3, $4, $5)")
            .bind(now)
            .bind(RECOVERY_DISPUTED)
            .bind(user)
            .bind("not-me-link")
            .bind(link.seq)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO outbox (user_id, kind, created_at) VALUES ($1, 'admin-alert', $2)")
            .bind(user)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Whether the link of `token` was used already.
    async fn not_me_link_used(&self, token: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM single_use WHERE kind = $1 AND digest = $2")
            .bind(SINGLE_USE_KIND)
            .bind(digest(token))
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        Ok(row.is_some())
    }

    /// Administrators' events at or after `since`, oldest first.
    pub async fn admin_events(&self, since: i64) -> Result<Vec<AdminEvent>, StoreError> {
        let rows =
            sqlx::query("SELECT at, kind, user_id, reason, outbox_seq FROM admin_events WHERE at >= $1 ORDER BY seq")
                .bind(since)
                .fetch_all(&mut *self.conn().await?)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(AdminEvent {
                    at: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    user_id: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    outbox_seq: r.try_get(4)?,
                })
            })
            .collect()
    }
}

/// The routes of the link.
pub(crate) fn routes() -> Router<Provider> {
    Router::new().route("/not-me", get(confirm).post(report))
}

/// The link's query, and the confirmation form.
#[derive(Deserialize)]
pub(crate) struct LinkToken {
    #[serde(default)]
    token: String,
}

/// A page that is never cached and never leaks the link's token to another site.
fn respond(status: StatusCode, title: &str, body: &str) -> Response {
    let mut response = (status, Html(page(title, body))).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    response
}

fn invalid_link() -> Response {
    respond(
        StatusCode::BAD_REQUEST,
        "This link cannot be used",
        "<p role=\"alert\">The link is not valid or has expired. Nothing was changed.</p>\
         <p>If someone else restored access to your account, contact your administrators.</p>",
    )
}

fn already_reported() -> Response {
    respond(
        StatusCode::OK,
        "Already reported",
        "<p>This was already reported: the account was locked and your administrators were alerted. \
         Nothing more was changed.</p>",
    )
}

async fn verified(p: &Provider, token: &str) -> Result<Option<VerifiedLink>, StoreError> {
    NotMeLinks::open(&p.store).await?.verify(&p.store, token, now()).await
}

async fn confirm(State(p): State<Provider>, Query(q): Query<LinkToken>) -> Response {
    let link = match verified(&p, &q.token).await {
        Ok(Some(link)) => link,
        Ok(None) => return invalid_link(),
        Err(e) => return server_error(&e.to_string()),
    };
    match p.store.not_me_link_used(&q.token).await {
        Ok(true) => return already_reported(),
        Ok(false) => {}
        Err(e) => return server_error(&e.to_string()),
    }
    let body = format!(
        "<p>Access to your account was restored with a Temporary Access Pass on {at}.</p>\
         <p>If it was not you, lock the account: sign-in will be disabled, every session ended, every \
         pass revoked, and your administrators alerted. They will help you get back in.</p>\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <button>It was not me: lock my account</button></form>",
        at = escape(&crate::mail::utc_minute(link.restored_at)),
        action = escape(&format!("{}/not-me", p.issuer)),
        token = escape(&q.token),
    );
    respond(StatusCode::OK, "Was this not you?", &body)
}

async fn report(State(p): State<Provider>, Form(form): Form<LinkToken>) -> Response {
    let link = match verified(&p, &form.token).await {
        Ok(Some(link)) => link,
        Ok(None) => return invalid_link(),
        Err(e) => return server_error(&e.to_string()),
    };
    // Keycloak's user first: it can be repeated, and a failure leaves the link usable.
    if let Some(keycloak) = &p.keycloak {
        match p.store.not_me_link_used(&form.token).await {
            Ok(true) => return already_reported(),
            Ok(false) => {}
            Err(e) => return server_error(&e.to_string()),
        }
        if let Err(e) = keycloak.lock(&link.user_id).await {
            return server_error(&format!("cannot lock the user in Keycloak: {e}"));
        }
    }
    match p.store.lock_disputed_account(&form.token, &link, now()).await {
        Ok(true) => {
            tracing::warn!(outbox_seq = link.seq, "restoration reported as not the user's; account locked");
            respond(
                StatusCode::OK,
                "Your account is locked",
                "<p>Sign-in to your account is disabled, every session has ended and every Temporary Access \
                 Pass is revoked. Your administrators were alerted and will help you get back in.</p>",
            )
        }
        Ok(false) => already_reported(),
        Err(e) => server_error(&e.to_string()),
    }
}
