//! The reference server's storage against a real SQLite file and a real PostgreSQL server
//! (`REGAIN_TEST_POSTGRES_URL`, set by `scripts/test`, which starts one).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use regain_core::env::{AuditKind, AuditRecord};
use regain_server::accounts::{Account, BrowserSession, Methods, Window};
use regain_server::store::{Dialect, NewTap, Redemption, SessionWrite, Store, TapKey, now, random_hex};
use std::sync::Arc;

/// A fresh SQLite file, kept alive by the returned directory.
async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("regain.db").display());
    (Store::open(&url).await.unwrap(), dir)
}

/// Two pools on one fresh PostgreSQL database: two server processes sharing it.
async fn postgres() -> Vec<Store> {
    let url = crate::support::fresh_postgres_url().await;
    let a = Store::open(&url).await.unwrap();
    let b = Store::open(&url).await.unwrap();
    assert_eq!(a.dialect(), Dialect::Postgres);
    vec![a, b]
}

/// Ana: enabled, with a password.
fn ana() -> Account {
    Account {
        id: "u-ana".into(),
        login: "ana@example.org".into(),
        enabled: true,
        password_hash: Some("$argon2id$placeholder".into()),
        ..Account::default()
    }
}

async fn both() -> Vec<(Vec<Store>, Option<tempfile::TempDir>)> {
    let (lite, dir) = sqlite().await;
    let lite2 = Store::open(&format!("sqlite://{}", dir.path().join("regain.db").display())).await.unwrap();
    vec![(vec![lite, lite2], Some(dir)), (postgres().await, None)]
}

fn tap(key: &TapKey, secret: &str, one_time: bool, not_before: i64, expires_at: i64) -> NewTap {
    NewTap {
        id: format!("tap-{}", random_hex(8).unwrap()),
        user_id: "u-ana".into(),
        secret_mac: key.mac(secret),
        created_at: now(),
        not_before,
        expires_at,
        one_time,
    }
}

/// Runs a hundred racers at once, alternating between the stores (racer `i` gets its number
/// and a store); answers how many won.
async fn race<F, Fut>(stores: &[Store], racer: F) -> usize
where
    F: Fn(usize, Store) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let racers: Vec<_> = (0..100).map(|i| tokio::spawn(racer(i, stores[i % stores.len()].clone()))).collect();
    let mut winners = 0;
    for racer in racers {
        winners += usize::from(racer.await.unwrap());
    }
    winners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_time_pass_is_redeemed_exactly_once_under_a_hundred_racing_redemptions() {
    for (stores, _dir) in both().await {
        let key = TapKey::new(&stores[0].server_key("tap").await.unwrap());
        assert_eq!(stores[0].server_key("tap").await.unwrap(), stores[1].server_key("tap").await.unwrap());
        let t = now();
        stores[0].insert_tap(&tap(&key, "ONE-TIME-SECRET", true, t - 1, t + 600)).await.unwrap();
        let mac = Arc::new(key.mac("ONE-TIME-SECRET"));
        let winners = race(&stores, |_, store| {
            let mac = Arc::clone(&mac);
            async move { matches!(store.redeem_tap(&mac, now()).await.unwrap(), Redemption::Redeemed { .. }) }
        })
        .await;
        assert_eq!(winners, 1, "{:?}", stores[0].dialect());

        // The same race through the sign-in's statement, which redeems with its counts.
        stores[0].create_user(&ana(), t).await.unwrap();
        stores[0].insert_tap(&tap(&key, "SIGN-IN-SECRET", true, t - 1, t + 600)).await.unwrap();
        let mac = Arc::new(key.mac("SIGN-IN-SECRET"));
        let winners = race(&stores, |i, store| {
            let mac = Arc::clone(&mac);
            async move {
                let address = format!("addr:{i}");
                let found = store
                    .sign_in_redeeming((&address, "login:ana"), 1000, "ana@example.org", (200, 10), &mac, now())
                    .await
                    .unwrap();
                found.tap_id.is_some()
            }
        })
        .await;
        assert_eq!(winners, 1, "{:?}", stores[0].dialect());
    }
}

#[tokio::test]
async fn expiry_cooldown_revocation_and_multi_use_are_enforced_by_the_store() {
    for (stores, _dir) in both().await {
        let store = &stores[0];
        let key = TapKey::new(&store.server_key("tap").await.unwrap());
        let t = now();
        store.insert_tap(&tap(&key, "EXPIRED", true, t - 100, t - 1)).await.unwrap();
        assert_eq!(store.redeem_tap(&key.mac("EXPIRED"), t).await.unwrap(), Redemption::Refused);
        store.insert_tap(&tap(&key, "COOLING", true, t + 3600, t + 7200)).await.unwrap();
        assert_eq!(store.redeem_tap(&key.mac("COOLING"), t).await.unwrap(), Redemption::Refused);
        assert!(matches!(store.redeem_tap(&key.mac("COOLING"), t + 3600).await.unwrap(), Redemption::Redeemed { .. }));

        let multi = tap(&key, "MULTI", false, t - 1, t + 600);
        store.insert_tap(&multi).await.unwrap();
        for _ in 0..3 {
            assert!(matches!(store.redeem_tap(&key.mac("MULTI"), t).await.unwrap(), Redemption::Redeemed { .. }));
        }
        assert!(store.revoke_tap(&multi.id, t).await.unwrap());
        assert!(!store.revoke_tap(&multi.id, t).await.unwrap(), "revoked once");
        assert_eq!(store.redeem_tap(&key.mac("MULTI"), t).await.unwrap(), Redemption::Refused);
        assert_eq!(store.redeem_tap(&key.mac("NEVER-ISSUED"), t).await.unwrap(), Redemption::Refused);
        // Another server key never redeems these passes.
        let other = TapKey::new(b"another key");
        store.insert_tap(&tap(&key, "KEYED", true, t - 1, t + 600)).await.unwrap();
        assert_eq!(store.redeem_tap(&other.mac("KEYED"), t).await.unwrap(), Redemption::Refused);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nonces_and_codes_are_accepted_once_across_processes() {
    for (stores, _dir) in both().await {
        let racers: Vec<_> = (0..50)
            .map(|i| {
                let store = stores[i % 2].clone();
                tokio::spawn(async move { store.consume_once("nonce", "n-123", now() + 600).await.unwrap() })
            })
            .collect();
        let mut accepted = 0;
        for racer in racers {
            accepted += usize::from(racer.await.unwrap());
        }
        assert_eq!(accepted, 1);
        assert!(stores[1].consume_once("response-code", "n-123", now() + 600).await.unwrap(), "kinds are separate");
    }
}

#[tokio::test]
async fn sessions_rate_limits_and_audit_events_are_shared() {
    for (stores, _dir) in both().await {
        let (a, b) = (&stores[0], &stores[1]);
        let t = now();
        a.put_session("flow-1", b"RGN\0state-1", t, t + 900).await.unwrap();
        assert_eq!(b.session("flow-1", t).await.unwrap().as_deref(), Some(&b"RGN\0state-1"[..]));
        b.put_session("flow-1", b"RGN\0state-2", t + 1, t + 900).await.unwrap();
        assert_eq!(a.session("flow-1", t).await.unwrap().as_deref(), Some(&b"RGN\0state-2"[..]));
        assert_eq!(a.session("flow-1", t + 900).await.unwrap(), None, "expired sessions are gone");
        // A key (the wallet's `state`) leads to its flow, leased in the same statement, once.
        let flow = br#"{"login":"ana@example.org"}"#;
        a.put_session("flow-k", flow, t, t + 900).await.unwrap();
        a.put_session("vp:key-1", b"flow-k", t, t + 900).await.unwrap();
        let leased = b.lease_flow_by_key("vp:key-1", t, 30).await.unwrap().map(|l| (l.id, l.state));
        assert_eq!(leased, Some(("flow-k".to_owned(), flow.to_vec())));
        assert!(a.lease_flow_by_key("vp:key-1", t, 30).await.unwrap().is_none(), "leased by the other process");
        let again = a.lease_flow_by_key("vp:key-1", t + 31, 30).await.unwrap().map(|l| l.id);
        assert_eq!(again.as_deref(), Some("flow-k"));
        assert!(a.lease_flow_by_key("vp:unknown", t, 30).await.unwrap().is_none());
        assert!(a.lease_flow_by_key("vp:key-1", t + 900, 30).await.unwrap().is_none(), "expired keys lead nowhere");

        assert_eq!(a.hit("login:ana", 1000).await.unwrap(), 1);
        assert_eq!(b.hit("login:ana", 1000).await.unwrap(), 2);
        assert_eq!(a.hit("login:ana", 2000).await.unwrap(), 1, "a new window starts at one");
        assert_eq!(b.hit_both("addr:192.0.2.1", "login:ana", 1000).await.unwrap(), (1, 3), "both counted at once");
        assert_eq!(a.hit_both("login:ana", "addr:192.0.2.1", 1000).await.unwrap(), (4, 2), "in the order asked");

        let event = |kind, reason: &str, helpdesk: Option<&str>| AuditRecord {
            at: u64::try_from(t).unwrap(),
            kind,
            flow_id: "f".repeat(32),
            user_id: Some("u-ana".into()),
            reason: reason.into(),
            helpdesk_ref: helpdesk.map(str::to_owned),
        };
        a.record_audit(&event(AuditKind::RecoveryStarted, "ok", None)).await.unwrap();
        b.record_audit(&event(AuditKind::AccountNotMatched, "name-mismatch", Some("RG-ABCD2345"))).await.unwrap();
        assert_eq!(b.count_recent(AuditKind::RecoveryStarted, "u-ana", t - 10).await.unwrap(), 1);
        assert_eq!(b.count_recent(AuditKind::RecoveryStarted, "u-ana", t + 10).await.unwrap(), 0);
        let trail = a.audit_by_helpdesk_ref("RG-ABCD2345").await.unwrap();
        let kinds: Vec<AuditKind> = trail.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [AuditKind::RecoveryStarted, AuditKind::AccountNotMatched]);
        assert_eq!(trail[1].reason, "name-mismatch");
    }
}

#[tokio::test]
async fn a_sqlite_file_is_created_on_first_start_and_reopened_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    let first = Store::open(&url).await.unwrap();
    let key = first.server_key("tap").await.unwrap();
    first.consume_once("state", "s-1", now() + 60).await.unwrap();
    drop(first);
    assert!(dir.path().join("fresh.db").exists());
    let again = Store::open(&url).await.unwrap();
    assert_eq!(again.server_key("tap").await.unwrap(), key, "the server key survives a restart");
    assert!(!again.consume_once("state", "s-1", now() + 60).await.unwrap(), "and so do consumed values");
    assert!(matches!(Store::open("mysql://x").await, Err(regain_server::store::StoreError::UnsupportedUrl)));
}

#[tokio::test]
async fn passes_are_shown_once_stored_as_a_mac_and_redeemed_as_typed() {
    use regain_server::store::Passes;
    for (stores, _dir) in both().await {
        let (a, b) = (Passes::open(stores[0].clone()).await.unwrap(), Passes::open(stores[1].clone()).await.unwrap());
        let t = now();
        let issued = a.issue("u-ana", 3600, 0, true, 24, t).await.unwrap();
        assert_eq!(issued.secret.len(), 24);
        assert!(!format!("{issued:?}").contains(&issued.secret), "debug output hides the secret");
        let typed = format!(" {}-{} ", &issued.secret[..12].to_lowercase(), &issued.secret[12..]);
        // Redeemed through the other process, as a load balancer would send it.
        assert_eq!(
            b.redeem(&typed, t + 10).await.unwrap(),
            Redemption::Redeemed { tap_id: issued.tap_id.clone(), user_id: "u-ana".into() }
        );
        assert_eq!(a.redeem(&issued.secret, t + 11).await.unwrap(), Redemption::Refused, "one-time");
        let late = a.issue("u-ana", 60, 0, false, 24, t).await.unwrap();
        assert_eq!(a.redeem(&late.secret, t + 60).await.unwrap(), Redemption::Refused, "expired at its expiry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_codes_tokens_and_sessions() {
    use regain_server::accounts::CodeGrant;
    for (stores, _dir) in both().await {
        let (a, b) = (&stores[0], &stores[1]);
        let t = now();
        let ana = Account {
            given_name: Some("Ana".into()),
            family_name: Some("Silva".into()),
            groups: vec!["recovery".into()],
            attributes: [("email".to_owned(), "ana@home.example".to_owned())].into(),
            ..ana()
        };
        a.create_user(&ana, t).await.unwrap();
        assert!(a.create_user(&ana, t).await.is_err(), "a login is unique");
        let found = b.user_by_login("ana@example.org").await.unwrap().unwrap();
        assert_eq!(found, ana);
        assert_eq!(b.count_users_by_name("ANA", "silva").await.unwrap(), 1);
        assert!(b.user_by_login("nobody@example.org").await.unwrap().is_none());
        // A recovery's start counts its two limits and reads the user in one round trip.
        let (hits, user) = b.hit_both_with_user(("addr:x", "login:y"), 1000, "ana@example.org", &[], t).await.unwrap();
        assert_eq!((hits, user.map(|read| read.account)), ((1, 1), Some(ana.clone())));
        let (hits, user) =
            a.hit_both_with_user(("login:y", "addr:x"), 1000, "nobody@example.org", &[], t).await.unwrap();
        assert_eq!((hits, user.is_none()), ((2, 2), true));
        let (hits, user) = a.hit_both_with_user(("addr:x", "login:y"), 1000, "ana@example.org", &[], t).await.unwrap();
        assert_eq!((hits, user.map(|read| read.account.id)), ((3, 3), Some("u-ana".to_owned())));

        // A TOTP step is accepted once, and never an older one after it.
        a.set_totp("u-ana", Some(b"secret")).await.unwrap();
        assert!(a.use_totp_step("u-ana", 100).await.unwrap());
        assert!(!b.use_totp_step("u-ana", 100).await.unwrap());
        assert!(!b.use_totp_step("u-ana", 99).await.unwrap());
        assert!(b.use_totp_step("u-ana", 101).await.unwrap());

        let grant = CodeGrant {
            client_id: "rp".into(),
            redirect_uri: "https://rp.example/cb".into(),
            code_challenge: "c".repeat(43),
            nonce: Some("n".into()),
            user_id: "u-ana".into(),
            auth_time: t,
            amr: "pwd otp".into(),
        };
        a.insert_code("code-1", &grant, t + 60).await.unwrap();
        let racers: Vec<_> = (0..20)
            .map(|i| {
                let store = stores[i % 2].clone();
                tokio::spawn(async move { store.take_code("code-1", now()).await.unwrap() })
            })
            .collect();
        let mut taken = Vec::new();
        for racer in racers {
            taken.extend(racer.await.unwrap());
        }
        assert_eq!(taken, vec![grant.clone()], "a code is redeemed once");
        a.insert_code("code-2", &grant, t - 1).await.unwrap();
        assert!(a.take_code("code-2", t).await.unwrap().is_none(), "expired code");

        a.insert_access_token("at-1", "u-ana", "rp", t + 300).await.unwrap();
        assert_eq!(b.access_token_user("at-1", t).await.unwrap().as_deref(), Some("u-ana"));
        assert!(b.access_token_user("at-1", t + 300).await.unwrap().is_none());

        let session = BrowserSession { user_id: "u-ana".into(), auth_time: t, amr: "tap".into() };
        a.insert_browser_session("sid-1", &session, t + 3600).await.unwrap();
        assert_eq!(b.browser_session("sid-1", t).await.unwrap(), Some(session));
        assert_eq!(b.revoke_browser_sessions("u-ana", t).await.unwrap(), 1);
        assert!(a.browser_session("sid-1", t).await.unwrap().is_none());

        a.set_must_register("u-ana", true).await.unwrap();
        assert!(b.user_by_id("u-ana").await.unwrap().unwrap().must_register);
    }
}

#[tokio::test]
async fn a_request_stores_its_audit_events_and_notifications_with_its_outcome() {
    for (stores, _dir) in both().await {
        let (a, b) = (&stores[0], &stores[1]);
        let t = now();
        let event = |kind, reason: &str| AuditRecord {
            at: u64::try_from(t).unwrap(),
            kind,
            flow_id: "f".repeat(32),
            user_id: Some("u-ana".into()),
            reason: reason.into(),
            helpdesk_ref: None,
        };
        let step = a.scoped();
        step.record_audit(&event(AuditKind::RecoveryStarted, "ok")).await.unwrap();
        step.record_audit(&event(AuditKind::AccountMatched, "exact")).await.unwrap();
        step.queue_notification("u-ana", "access-restored", t).await.unwrap();
        // Held by the request: counted by it, not stored yet.
        assert_eq!(step.count_recent(AuditKind::RecoveryStarted, "u-ana", t - 10).await.unwrap(), 1);
        assert_eq!(b.count_recent(AuditKind::RecoveryStarted, "u-ana", t - 10).await.unwrap(), 0);
        assert!(b.pending_notifications().await.unwrap().is_empty());

        // A failing write stores none of it, and keeps it for the next attempt.
        sqlx::query("ALTER TABLE outbox RENAME TO outbox_away").execute(b.pool()).await.unwrap();
        let failed = step
            .write_sessions(&[SessionWrite::Put { id: "flow-9", state: b"RGN\0one", now: t, expires_at: t + 900 }])
            .await;
        assert!(failed.is_err());
        sqlx::query("ALTER TABLE outbox_away RENAME TO outbox").execute(b.pool()).await.unwrap();
        assert_eq!(b.session("flow-9", t).await.unwrap(), None);
        assert_eq!(b.count_recent(AuditKind::RecoveryStarted, "u-ana", t - 10).await.unwrap(), 0);

        // The next write stores the events, the notification and the session together.
        step.write_sessions(&[SessionWrite::Put { id: "flow-9", state: b"RGN\0two", now: t, expires_at: t + 900 }])
            .await
            .unwrap();
        assert_eq!(b.session("flow-9", t).await.unwrap().as_deref(), Some(&b"RGN\0two"[..]));
        let trail: Vec<AuditKind> =
            b.audit_since(t - 10, Some("u-ana")).await.unwrap().iter().map(|e| e.kind).collect();
        assert_eq!(trail, [AuditKind::RecoveryStarted, AuditKind::AccountMatched]);
        let outbox = b.pending_notifications().await.unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!((outbox[0].1.as_str(), outbox[0].2.as_str()), ("u-ana", "access-restored"));
        // A pass issued in a request is held with its events and stored by the request's
        // next write, before the request can show it.
        let key = TapKey::new(b"0123456789abcdef0123456789abcdef");
        step.insert_tap(&tap(&key, "HELD-SECRET", true, t - 1, t + 600)).await.unwrap();
        step.record_audit(&event(AuditKind::RecoveryCompleted, "ok")).await.unwrap();
        assert_eq!(b.redeem_tap(&key.mac("HELD-SECRET"), t).await.unwrap(), Redemption::Refused, "not stored yet");
        step.flush().await.unwrap();
        assert!(matches!(b.redeem_tap(&key.mac("HELD-SECRET"), t).await.unwrap(), Redemption::Redeemed { .. }));
        assert_eq!(b.count_recent(AuditKind::RecoveryCompleted, "u-ana", t - 10).await.unwrap(), 1);

        // Nothing is held any more: a flush writes nothing twice.
        step.flush().await.unwrap();
        assert_eq!(b.count_recent(AuditKind::RecoveryStarted, "u-ana", t - 10).await.unwrap(), 1);

        // The lease is taken once and answers the state in one statement.
        assert_eq!(b.lease_session("flow-9", t, 30).await.unwrap().as_deref(), Some(&b"RGN\0two"[..]));
        assert_eq!(a.lease_session("flow-9", t, 30).await.unwrap(), None, "leased by the other process");
        step.write_sessions(&[SessionWrite::Release { id: "flow-9", state: b"RGN\0three", now: t }]).await.unwrap();
        assert_eq!(a.lease_session("flow-9", t, 30).await.unwrap().as_deref(), Some(&b"RGN\0three"[..]));
        step.write_sessions(&[SessionWrite::Delete { id: "flow-9" }]).await.unwrap();
        assert_eq!(b.session("flow-9", t).await.unwrap(), None);
    }
}

/// A request that goes away while its batch waits for SQLite's write lock (the client closed
/// the connection) leaves no transaction behind: its connection is closed, not given back to
/// the pool holding the lock, and nothing of the batch is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_dropped_during_its_batch_leaves_no_open_transaction() {
    let (store, dir) = sqlite().await;
    let other = Store::open(&format!("sqlite://{}", dir.path().join("regain.db").display())).await.unwrap();
    let t = now();
    // Another process holds the write lock.
    let mut blocker = other.pool().acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *blocker).await.unwrap();

    let step = store.scoped();
    let event = AuditRecord {
        at: u64::try_from(t).unwrap(),
        kind: AuditKind::RecoveryStarted,
        flow_id: "g".repeat(32),
        user_id: Some("u-gone".into()),
        reason: "ok".into(),
        helpdesk_ref: None,
    };
    step.record_audit(&event).await.unwrap();
    let writes = [SessionWrite::Put { id: "flow-gone", state: b"RGN\0gone", now: t, expires_at: t + 900 }];
    let write = step.write_sessions(&writes);
    let waited = tokio::time::timeout(std::time::Duration::from_millis(300), write).await;
    assert!(waited.is_err(), "the batch waits for the lock");
    drop(step);

    // The lock is released; the abandoned batch's thread gets it, and its connection closes.
    sqlx::query("COMMIT").execute(&mut *blocker).await.unwrap();
    drop(blocker);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // No transaction was left open holding the lock: every connection of the pool and the
    // other process write at once.
    let soon = std::time::Duration::from_secs(5);
    for i in 0..20 {
        let id = format!("flow-{i}");
        let put = store.put_session(&id, b"RGN\0x", t, t + 900);
        tokio::time::timeout(soon, put).await.expect("no lock left behind").unwrap();
    }
    let put = other.put_session("flow-other", b"RGN\0y", t, t + 900);
    tokio::time::timeout(soon, put).await.expect("no lock left behind").unwrap();
    assert_eq!(other.session("flow-19", t).await.unwrap().as_deref(), Some(&b"RGN\0x"[..]), "committed");
    assert_eq!(other.session("flow-gone", t).await.unwrap(), None, "the abandoned batch stored nothing");
    assert_eq!(other.count_recent(AuditKind::RecoveryStarted, "u-gone", t - 10).await.unwrap(), 0);
}

/// A request's connection is kept for the next request instead of checked on its way back to
/// the pool; when the database ends connections (a restart, an operator), one request fails
/// and the following ones get new connections.
#[tokio::test]
async fn after_the_database_ends_connections_one_request_fails_and_the_next_ones_work() {
    let url = crate::support::fresh_postgres_url().await;
    let store = Store::open(&url).await.unwrap();
    let operator = Store::open(&url).await.unwrap();
    for _ in 0..3 {
        let request = store.scoped();
        request.hit("k", 1).await.unwrap();
    }
    // The database ends every connection of this database but the operator's own.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(operator.pool())
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let request = store.scoped();
        outcomes.push(request.hit("k", 1).await.is_ok());
    }
    assert!(outcomes.iter().filter(|ok| !**ok).count() <= 1, "{outcomes:?}");
    assert!(outcomes[1..].iter().all(|ok| *ok), "{outcomes:?}");
}

/// SQLite lets one connection write at a time. The server's own writers take turns in the
/// process instead of meeting the lock: with SQLite's busy wait turned off on every pooled
/// connection, two hundred concurrent requests that each write three times still all succeed
/// (without turns, a writer that finds the database locked fails at once here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_servers_writers_take_turns_on_sqlite_instead_of_meeting_the_lock() {
    let (store, _dir) = sqlite().await;
    // Every connection the pool may open (16), each told not to wait for a lock.
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut conn = store.pool().acquire().await.unwrap();
        sqlx::query("PRAGMA busy_timeout = 0").execute(&mut *conn).await.unwrap();
        held.push(conn);
    }
    drop(held);

    let t = now();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = store.clone();
        requests.spawn(async move {
            let request = store.scoped();
            request.hit("turns", t).await?;
            request.consume_once("turns", &format!("value-{i}"), t + 60).await?;
            let state = i.to_string();
            let put =
                SessionWrite::Put { id: &format!("flow-{i}"), state: state.as_bytes(), now: t, expires_at: t + 60 };
            request.write_sessions(&[put]).await
        });
    }
    while let Some(done) = requests.join_next().await {
        done.unwrap().unwrap();
    }
    assert_eq!(store.hits("turns", t).await.unwrap(), 200);
    assert_eq!(store.session("flow-199", t).await.unwrap().as_deref(), Some(&b"199"[..]));
}

/// A pass sign-in counts the attempt, reads the user and redeems the pass in one round trip,
/// and spends the pass only on an attempt it lets through.
#[tokio::test]
async fn a_pass_sign_in_spends_the_pass_only_on_an_attempt_it_lets_through() {
    for (stores, _dir) in both().await {
        let (a, b) = (&stores[0], &stores[1]);
        let t = now();
        a.create_user(&ana(), t).await.unwrap();
        let bob = Account { id: "u-bob".into(), login: "bob@example.org".into(), ..ana() };
        a.create_user(&bob, t).await.unwrap();
        let key = TapKey::new(&a.server_key("tap").await.unwrap());
        a.insert_tap(&tap(&key, "ANA-PASS", true, t - 1, t + 600)).await.unwrap();
        let mac = key.mac("ANA-PASS");
        let attempt = |store: &Store, address: &str, login: &str, limits: (i64, i64)| {
            let (store, address, login, mac) =
                (store.clone(), format!("addr:{address}"), login.to_owned(), mac.clone());
            async move {
                let found = store
                    .sign_in_redeeming((&address, &format!("login:{login}")), 1000, &login, limits, &mac, t)
                    .await
                    .unwrap();
                (found.from_address, found.failures, found.user.map(|u| u.id), found.tap_id.is_some())
            }
        };
        let dialect = format!("{:?}", a.dialect());
        // Another user's login: not spent.
        assert_eq!(
            attempt(a, "1", "bob@example.org", (200, 10)).await,
            (1, 0, Some("u-bob".into()), false),
            "{dialect}"
        );
        // Too many attempts from the address, or failures for the login: not spent.
        assert_eq!(attempt(b, "1", "ana@example.org", (1, 10)).await, (2, 0, Some("u-ana".into()), false));
        a.hit("login:ana@example.org", 1000).await.unwrap();
        assert_eq!(attempt(a, "2", "ana@example.org", (200, 1)).await, (1, 1, Some("u-ana".into()), false));
        // A disabled user: not spent.
        a.set_enabled("u-ana", false).await.unwrap();
        assert!(!attempt(b, "3", "ana@example.org", (200, 10)).await.3);
        a.set_enabled("u-ana", true).await.unwrap();
        // Its user, within the limits: spent, once.
        assert_eq!(attempt(b, "4", "ana@example.org", (200, 10)).await, (1, 1, Some("u-ana".into()), true));
        assert!(!attempt(a, "5", "ana@example.org", (200, 10)).await.3, "a one-time pass");
        // A login no user has: counted, nothing spent.
        assert_eq!(attempt(a, "6", "nobody", (200, 10)).await, (1, 0, None, false));
    }
}

/// A user read with a lease or a start's counters comes with how many users share their
/// name, folded as `count_users_by_name` folds it (the account match asks that next), and a
/// start's read with the user's audit events in the windows asked (eligibility asks those).
#[tokio::test]
async fn a_read_user_comes_with_their_namesakes_and_their_recent_events() {
    for (stores, _dir) in both().await {
        let (a, b) = (&stores[0], &stores[1]);
        let t = now();
        let named = |id: &str, given: &str, family: &str| Account {
            id: id.into(),
            login: format!("{id}@example.org"),
            given_name: Some(given.into()),
            family_name: Some(family.into()),
            enabled: true,
            ..Account::default()
        };
        a.create_user(&named("a1", "Ana", "Silva"), t).await.unwrap();
        a.create_user(&named("a2", "ANA", "SILVA"), t).await.unwrap();
        a.create_user(&named("a3", "Ana", "Souza"), t).await.unwrap();
        // The presentation's lease (the wallet's key leads to the flow) reads them.
        let lease = |id: &str| {
            let flow = format!(r#"{{"state":"","login":"{id}@example.org","view":"Selfie"}}"#);
            let (key, flow_id) = (format!("vp:{id}"), format!("flow-{id}"));
            async move {
                a.put_session(&flow_id, flow.as_bytes(), t, t + 900).await.unwrap();
                a.put_session(&key, flow_id.as_bytes(), t, t + 900).await.unwrap();
                b.lease_flow_by_key(&key, t, 30).await.unwrap().unwrap().user.unwrap()
            }
        };
        for (id, namesakes) in [("a1", 2), ("a3", 1)] {
            let read = lease(id).await;
            assert_eq!((read.account.id.as_str(), read.namesakes), (id, Some(namesakes)));
            let (given, family) = (read.account.given_name.unwrap(), read.account.family_name.unwrap());
            assert_eq!(b.count_users_by_name(&given, &family).await.unwrap(), namesakes, "what the query answers");
        }
        // A third Ana Silva: the next read counts her.
        a.create_user(&named("a4", "ana", "silva"), t).await.unwrap();
        assert_eq!(lease("a2").await.namesakes, Some(3));
        // Other reads do not ask.
        a.put_session("flow-a4", br#"{"state":"","login":"a4@example.org","view":"Selfie"}"#, t, t + 900)
            .await
            .unwrap();
        assert_eq!(b.lease_flow("flow-a4", t, 30).await.unwrap().unwrap().user.unwrap().namesakes, None);
        let (_, read) = b.hit_both_with_user(("addr:x", "login:a2"), 1000, "a2@example.org", &[], t).await.unwrap();
        assert_eq!(read.map(|r| r.namesakes), Some(None));

        // A start's read also counts the user's audit events in the windows asked, as
        // `count_recent_each` does.
        let event = |kind, at: i64| AuditRecord {
            at: u64::try_from(at).unwrap(),
            kind,
            flow_id: "f".into(),
            user_id: Some("a2".into()),
            reason: "ok".into(),
            helpdesk_ref: None,
        };
        for (kind, at) in [
            (AuditKind::RecoveryStarted, t - 10),
            (AuditKind::RecoveryStarted, t - 5_000),
            (AuditKind::RecoveryCompleted, t - 100),
            (AuditKind::RecoveryCompleted, t - 90_000),
        ] {
            a.record_audit(&event(kind, at)).await.unwrap();
        }
        let windows = [
            Window { kind: AuditKind::RecoveryStarted, seconds: 3_600 },
            Window { kind: AuditKind::RecoveryCompleted, seconds: 86_400 },
            Window { kind: AuditKind::RecoveryStarted, seconds: 86_400 },
        ];
        let (_, read) =
            b.hit_both_with_user(("addr:x", "login:a2"), 1000, "a2@example.org", &windows, t).await.unwrap();
        let read = read.unwrap();
        assert_eq!(read.recent, windows.iter().copied().zip([1, 1, 2]).collect::<Vec<_>>());
        let since: Vec<_> = windows.iter().map(|w| (w.kind, t - i64::try_from(w.seconds).unwrap())).collect();
        assert_eq!(b.count_recent_each("a2", &since).await.unwrap(), [1, 1, 2]);
        assert_eq!(read.account.id, "a2", "with the rest of the read");
    }
}

/// The round trips a recovery step saves: the lease of a flow reads the user the flow is
/// for, the sign-in's counters read the user who signs in, and a start's counts of audit
/// events are one query.
#[tokio::test]
async fn a_lease_and_the_sign_in_counters_read_the_user_in_the_same_round_trip() {
    for (stores, _dir) in both().await {
        let (a, b) = (&stores[0], &stores[1]);
        let t = now();
        a.create_user(&ana(), t).await.unwrap();
        a.insert_passkey(&crate::support::passkey("cred-ana", "u-ana")).await.unwrap();
        let session = BrowserSession { user_id: "u-ana".into(), auth_time: t, amr: "pwd".into() };
        a.insert_browser_session("sid-1", &session, t + 60).await.unwrap();
        a.insert_browser_session("sid-2", &session, t + 60).await.unwrap();

        // A flow of the recovery pages is JSON with the login at the top.
        let flow = br#"{"state":"","login":"ana@example.org","view":"Selfie"}"#;
        a.put_session("flow-ana", flow, t, t + 900).await.unwrap();
        a.put_session("vp:key-ana", b"flow-ana", t, t + 900).await.unwrap();
        let leased = b.lease_flow_by_key("vp:key-ana", t, 30).await.unwrap().expect("leased");
        assert_eq!((leased.id.as_str(), leased.state.as_slice()), ("flow-ana", &flow[..]));
        let read = leased.user.expect("the flow's user");
        assert_eq!(read.account.id, "u-ana");
        assert_eq!(read.methods, Methods { password: true, totp: false, passkeys: 1, sessions: 2 });
        assert_eq!(read.namesakes, Some(0), "a user without names has no namesakes");
        assert!(a.lease_flow("flow-ana", t, 30).await.unwrap().is_none(), "leased already");
        let again = a.lease_flow("flow-ana", t + 31, 30).await.unwrap().expect("lease ran out");
        assert_eq!(again.user.map(|read| read.account.login).as_deref(), Some("ana@example.org"));
        // A flow for a login no user has: the lease, without a user.
        let nobody = br#"{"state":"","login":"nobody@example.org","view":"Selfie"}"#;
        a.put_session("flow-x", nobody, t, t + 900).await.unwrap();
        let leased = b.lease_flow("flow-x", t, 30).await.unwrap().expect("leased");
        assert!(leased.user.is_none());
        assert!(a.lease_flow("flow-unknown", t, 30).await.unwrap().is_none());

        // The sign-in: one more attempt from the address, the login's failures, the user.
        a.hit("sign-in:ana@example.org", 1000).await.unwrap();
        let (from_address, failures, user) = b
            .sign_in_counts("sign-in-addr:192.0.2.9", "sign-in:ana@example.org", 1000, "ana@example.org")
            .await
            .unwrap();
        assert_eq!((from_address, failures, user.map(|u| u.id).as_deref()), (1, 1, Some("u-ana")));
        let (from_address, failures, user) =
            a.sign_in_counts("sign-in-addr:192.0.2.9", "sign-in:nobody", 1000, "nobody").await.unwrap();
        assert_eq!((from_address, failures, user), (2, 0, None));

        // Counts of several kinds and windows in one query, held events included.
        let event = |kind, at: i64| AuditRecord {
            at: u64::try_from(at).unwrap(),
            kind,
            flow_id: "f".repeat(32),
            user_id: Some("u-ana".into()),
            reason: "ok".into(),
            helpdesk_ref: None,
        };
        a.record_audit(&event(AuditKind::RecoveryStarted, t - 100)).await.unwrap();
        a.record_audit(&event(AuditKind::RecoveryStarted, t - 5)).await.unwrap();
        a.record_audit(&event(AuditKind::RecoveryCompleted, t - 50)).await.unwrap();
        let step = b.scoped();
        step.record_audit(&event(AuditKind::RecoveryStarted, t)).await.unwrap();
        let windows = [
            (AuditKind::RecoveryStarted, t - 10),
            (AuditKind::RecoveryCompleted, t - 60),
            (AuditKind::RecoveryStarted, 0),
        ];
        assert_eq!(step.count_recent_each("u-ana", &windows).await.unwrap(), [2, 1, 3]);
        assert_eq!(a.count_recent_each("u-ana", &windows).await.unwrap(), [1, 1, 2], "held events are the step's own");
        assert_eq!(a.count_recent_each("u-bob", &windows).await.unwrap(), [0, 0, 0]);
        step.flush().await.unwrap();
    }
}

/// PostgreSQL updates a row at most once per statement, and a request's writes are one
/// statement there: the changes a request makes to a user's row (a registration required,
/// held, then written with a sign-in; a password removed) must all land.
#[tokio::test]
async fn every_change_a_request_makes_to_a_users_row_lands() {
    for (stores, _dir) in both().await {
        let a = &stores[0];
        let t = now();
        a.create_user(&ana(), t).await.unwrap();
        // Held, then written with the sign-in's own change to the row, in one batch.
        let step = a.scoped();
        step.require_registration("u-ana").await.unwrap();
        let session = BrowserSession { user_id: "u-ana".into(), auth_time: t, amr: "tap".into() };
        step.record_sign_in("sid-ana", &session, t + 60, false).await.unwrap();
        assert_eq!(step.remove_methods("u-ana", true, false, false).await.unwrap(), 1);
        drop(step);
        let after = a.user_by_id("u-ana").await.unwrap().unwrap();
        assert!(after.must_register, "registration required");
        assert!(after.password_hash.is_none(), "password removed");
        assert_eq!(after.last_sign_in, Some(t), "sign-in recorded");
        assert!(a.browser_session("sid-ana", t).await.unwrap().is_some());
        // A later setting wins over a held one: registered, then signed in again.
        let step = a.scoped();
        step.set_must_register("u-ana", false).await.unwrap();
        step.record_sign_in("sid-ana-2", &session, t + 60, false).await.unwrap();
        drop(step);
        assert!(!a.user_by_id("u-ana").await.unwrap().unwrap().must_register);
    }
}
