//! Notifications by mail, on SQLite and on PostgreSQL, through a small SMTP relay run by the
//! test: delivery once with the "this wasn't me" link, exactly-once under two senders,
//! retries with backoff, undeliverable rows, dot-stuffing, refused header injection, and the
//! link over real HTTP (a GET changes nothing, a POST locks the account once and alerts the
//! administrators, forged and expired links get 400).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use crate::support::databases;
use regain_server::accounts::{Account, BrowserSession};
use regain_server::auth::hash_password;
use regain_server::mail::{
    DeliveryState, Drained, MAX_ATTEMPTS, MailConfig, MailError, Mailer, Message, SendError, send_pending,
};
use regain_server::not_me::{LINK_SECONDS, NotMeLinks, RECOVERY_DISPUTED};
use regain_server::provider::{Client, Provider};
use regain_server::store::{Redemption, Store, now, random_hex};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

const BASE: &str = "https://idp.example";
const FROM: &str = "regain@idp.example";
const ADMINS: [&str; 2] = ["security@idp.example", "helpdesk@idp.example"];
const RP: &str = "https://rp.example/cb";

/// One message as the relay took it.
#[derive(Debug, Clone, Default)]
struct Received {
    from: String,
    to: Vec<String>,
    /// The data after un-stuffing, CRLF line endings.
    data: String,
    /// The data as it came over the wire.
    wire: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap();
        head.split("\r\n").find_map(|l| l.strip_prefix(&format!("{name}: "))).map(str::to_owned)
    }

    fn body(&self) -> String {
        self.data.split_once("\r\n\r\n").unwrap().1.to_owned()
    }

    /// The token of the "this wasn't me" link in the body.
    fn token(&self) -> String {
        let body = self.body();
        let start = body.find("/not-me?token=").expect("a link in the message") + "/not-me?token=".len();
        body[start..].split_whitespace().next().unwrap().to_owned()
    }
}

/// A relay speaking enough SMTP to take messages, recording envelope and data; it can be
/// told to answer 451 to `MAIL FROM` like a relay in trouble, or to not know `EHLO`.
#[derive(Clone)]
struct Relay {
    addr: String,
    received: Arc<Mutex<Vec<Received>>>,
    refuse: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    knows_ehlo: bool,
}

impl Relay {
    async fn start(knows_ehlo: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Self {
            addr: listener.local_addr().unwrap().to_string(),
            received: Arc::default(),
            refuse: Arc::default(),
            connections: Arc::default(),
            knows_ehlo,
        };
        let serving = relay.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                tokio::spawn(serving.clone().session(socket));
            }
        });
        relay
    }

    fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn mailer(&self) -> Mailer {
        Mailer::new(MailConfig {
            smtp: self.addr.clone(),
            from: FROM.into(),
            admins: ADMINS.map(str::to_owned).to_vec(),
            helo: Some("idp.example".into()),
            send_interval_seconds: None,
        })
        .unwrap()
    }

    async fn session(self, socket: TcpStream) {
        self.connections.fetch_add(1, Ordering::SeqCst);
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read);
        write.write_all(b"220 relay.test ESMTP ready\r\n").await.unwrap();
        let mut envelope = Received::default();
        let angle = |command: &str| command.split_once('<').unwrap().1.split_once('>').unwrap().0.to_owned();
        loop {
            let mut line = String::new();
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            assert!(line.ends_with("\r\n"), "commands end with CRLF: {line:?}");
            let command = line.trim_end_matches("\r\n").to_owned();
            let verb = command.split([' ', ':']).next().unwrap().to_ascii_uppercase();
            let answer = match verb.as_str() {
                "EHLO" if self.knows_ehlo => "250-relay.test greets you\r\n250-8BITMIME\r\n250 SIZE 10240000\r\n",
                "EHLO" => "502 5.5.1 command not recognised\r\n",
                "HELO" => "250 relay.test\r\n",
                "MAIL" if self.refuse.load(Ordering::SeqCst) => "451 4.3.0 try again later\r\n",
                "MAIL" => {
                    envelope = Received { from: angle(&command), ..Received::default() };
                    "250 2.1.0 ok\r\n"
                }
                "RCPT" => {
                    envelope.to.push(angle(&command));
                    "250 2.1.5 ok\r\n"
                }
                "DATA" => {
                    write.write_all(b"354 go ahead\r\n").await.unwrap();
                    loop {
                        let mut data_line = String::new();
                        assert!(lines.read_line(&mut data_line).await.unwrap() > 0, "data ends with a dot line");
                        if data_line == ".\r\n" {
                            break;
                        }
                        envelope.wire.push_str(&data_line);
                        envelope.data.push_str(data_line.strip_prefix('.').unwrap_or(&data_line));
                    }
                    self.received.lock().unwrap().push(std::mem::take(&mut envelope));
                    "250 2.0.0 queued\r\n"
                }
                "RSET" => "250 2.0.0 ok\r\n",
                "QUIT" => {
                    write.write_all(b"221 2.0.0 bye\r\n").await.unwrap();
                    return;
                }
                _ => "500 5.5.2 what?\r\n",
            };
            write.write_all(answer.as_bytes()).await.unwrap();
        }
    }
}

async fn user(store: &Store, email: Option<&str>, password: Option<&str>) -> Account {
    let id = format!("u-{}", random_hex(4).unwrap());
    let account = Account {
        id: id.clone(),
        login: format!("{id}@corp.example"),
        given_name: Some("Ana".into()),
        family_name: Some("Silva".into()),
        enabled: true,
        password_hash: password.map(|p| hash_password(p).unwrap()),
        attributes: email.map(|e| [("email".to_owned(), e.to_owned())].into()).unwrap_or_default(),
        ..Account::default()
    };
    store.create_user(&account, now()).await.unwrap();
    account
}

/// Queues a notification and answers its outbox row.
async fn queue(store: &Store, user_id: &str, kind: &str, at: i64) -> i64 {
    store.queue_notification(user_id, kind, at).await.unwrap();
    let pending = store.pending_notifications().await.unwrap();
    pending.iter().rev().find(|(_, u, k)| u == user_id && k == kind).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_is_delivered_once_to_the_users_address_with_the_link() {
    for (store, _dir) in databases().await {
        let relay = Relay::start(true).await;
        let ana = user(&store, Some("ana@home.example"), None).await;
        let t = now();
        let seq = queue(&store, &ana.id, "access-restored", t - 5).await;

        let drained = send_pending(&store, &relay.mailer(), BASE, t).await.unwrap();
        assert_eq!(drained, Drained { sent: 1, ..Drained::default() });
        let messages = relay.messages();
        assert_eq!(messages.len(), 1);
        let mail = &messages[0];
        assert_eq!((mail.from.as_str(), mail.to.clone()), (FROM, vec!["ana@home.example".to_owned()]));
        assert_eq!(mail.header("To").as_deref(), Some("ana@home.example"));
        assert_eq!(mail.header("From").as_deref(), Some(FROM));
        assert_eq!(mail.header("Subject").as_deref(), Some("Access to your account was restored"));
        assert_eq!(mail.header("MIME-Version").as_deref(), Some("1.0"));
        assert_eq!(mail.header("Content-Type").as_deref(), Some("text/plain; charset=utf-8"));
        assert_eq!(mail.header("Content-Transfer-Encoding").as_deref(), Some("8bit"));
        assert!(mail.header("Date").unwrap().ends_with("+0000"));
        assert!(mail.header("Message-ID").unwrap().ends_with("@idp.example>"));
        let body = mail.body();
        assert!(body.starts_with("Hello Ana,\r\n"), "{body}");
        assert!(body.contains("Temporary Access Pass"));
        assert!(body.contains(&format!("{BASE}/not-me?token=")));
        assert!(!mail.data.contains("Silva") && !mail.data.contains(&ana.login), "no other personal data");
        assert!(mail.data.split("\r\n").all(|l| !l.contains('\n') && !l.contains('\r')), "CRLF only");

        let link = NotMeLinks::open(&store).await.unwrap().verify(&store, &mail.token(), t).await.unwrap().unwrap();
        assert_eq!((link.seq, link.user_id.as_str(), link.expires_at), (seq, ana.id.as_str(), t - 5 + LINK_SECONDS));

        let row = store.notification(seq).await.unwrap().unwrap();
        assert_eq!((row.state, row.attempts, row.sent_at, row.last_error), (DeliveryState::Sent, 1, Some(t), None));
        assert!(send_pending(&store, &relay.mailer(), BASE, t + 3600).await.unwrap().is_empty(), "sent once");
        assert_eq!(relay.messages().len(), 1);

        // A failed attempt: the same kind of message, without a link (nothing to lock).
        queue(&store, &ana.id, "recovery-attempted", t).await;
        assert_eq!(send_pending(&store, &relay.mailer(), BASE, t).await.unwrap().sent, 1);
        let attempted = &relay.messages()[1];
        assert_eq!(attempted.header("Subject").as_deref(), Some("Someone tried to recover your account"));
        assert!(!attempted.body().contains("not-me"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_at_once_deliver_each_row_exactly_once() {
    for (store, dir) in databases().await {
        let relay = Relay::start(true).await;
        // A second process on the same database: its own pool on SQLite.
        let other = match &dir {
            Some(dir) => Store::open(&format!("sqlite://{}", dir.path().join("regain.db").display())).await.unwrap(),
            None => store.clone(),
        };
        let ana = user(&store, Some("ana@home.example"), None).await;
        let t = now();
        let mut rows = Vec::new();
        for _ in 0..12 {
            rows.push(queue(&store, &ana.id, "access-restored", t).await);
        }
        let (mailer_a, mailer_b) = (relay.mailer(), relay.mailer());
        let (a, b) = tokio::join!(send_pending(&store, &mailer_a, BASE, t), send_pending(&other, &mailer_b, BASE, t));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.sent + b.sent, 12, "{a:?} {b:?}");
        let mut delivered: Vec<i64> =
            relay.messages().iter().map(|m| m.token().split('.').next().unwrap().parse().unwrap()).collect();
        delivered.sort_unstable();
        assert_eq!(delivered, rows, "every row once");
        for seq in rows {
            let row = store.notification(seq).await.unwrap().unwrap();
            assert_eq!((row.state, row.attempts), (DeliveryState::Sent, 1));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_relay_is_retried_with_backoff_and_given_up_after_the_last_attempt() {
    for (store, _dir) in databases().await {
        let relay = Relay::start(true).await;
        let ana = user(&store, Some("ana@home.example"), None).await;
        let t = now();
        let seq = queue(&store, &ana.id, "access-restored", t).await;

        relay.refuse.store(true, Ordering::SeqCst);
        let drained = send_pending(&store, &relay.mailer(), BASE, t).await.unwrap();
        assert_eq!(drained, Drained { retrying: 1, ..Drained::default() });
        let row = store.notification(seq).await.unwrap().unwrap();
        assert_eq!(row.state, DeliveryState::Pending);
        assert_eq!(row.attempts, 1);
        assert_eq!(row.last_error.as_deref(), Some("the relay answered 451 to MAIL FROM"));
        assert_eq!(row.next_attempt_at, t + 60);

        let connections = relay.connections.load(Ordering::SeqCst);
        assert!(send_pending(&store, &relay.mailer(), BASE, t + 30).await.unwrap().is_empty(), "not due yet");
        assert_eq!(relay.connections.load(Ordering::SeqCst), connections);

        relay.refuse.store(false, Ordering::SeqCst);
        assert_eq!(send_pending(&store, &relay.mailer(), BASE, t + 60).await.unwrap().sent, 1);
        let row = store.notification(seq).await.unwrap().unwrap();
        assert_eq!((row.state, row.attempts, row.last_error), (DeliveryState::Sent, 2, None));
        assert_eq!(relay.messages().len(), 1);

        // A relay that keeps failing: each attempt waits longer, the last one gives up.
        relay.refuse.store(true, Ordering::SeqCst);
        let seq = queue(&store, &ana.id, "access-restored", t).await;
        let (mut at, mut waits) = (t, Vec::new());
        for _ in 0..MAX_ATTEMPTS {
            send_pending(&store, &relay.mailer(), BASE, at).await.unwrap();
            let row = store.notification(seq).await.unwrap().unwrap();
            waits.push(row.next_attempt_at - at);
            at = row.next_attempt_at;
        }
        assert!(waits.windows(2).take(6).all(|w| w[1] == 2 * w[0]), "{waits:?}");
        let row = store.notification(seq).await.unwrap().unwrap();
        assert_eq!((row.state, row.attempts), (DeliveryState::Failed, MAX_ATTEMPTS));
        assert!(send_pending(&store, &relay.mailer(), BASE, at + 86_400).await.unwrap().is_empty(), "given up");

        // A relay that cannot be reached is a failure for now, not for good.
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
        let down = Mailer::new(MailConfig { smtp: gone, ..relay.mailer().config().clone() }).unwrap();
        let seq = queue(&store, &ana.id, "access-restored", t).await;
        assert_eq!(send_pending(&store, &down, BASE, t).await.unwrap().retrying, 1);
        let row = store.notification(seq).await.unwrap().unwrap();
        assert!(row.last_error.unwrap().starts_with("cannot connect to the relay"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_with_nothing_to_send_to_are_undeliverable_and_never_retried() {
    for (store, _dir) in databases().await {
        let relay = Relay::start(true).await;
        let t = now();
        let no_email = user(&store, None, None).await;
        let bad_email = user(&store, Some("ana@home.example\r\nBcc: eve@evil.example"), None).await;
        let first = queue(&store, &no_email.id, "access-restored", t).await;
        let second = queue(&store, &bad_email.id, "access-restored", t).await;
        let third = queue(&store, "u-gone", "access-restored", t).await;
        let fourth = queue(&store, &no_email.id, "admin-alert", t).await;
        let no_admins = Mailer::new(MailConfig { admins: Vec::new(), ..relay.mailer().config().clone() }).unwrap();

        let drained = send_pending(&store, &no_admins, BASE, t).await.unwrap();
        assert_eq!(drained, Drained { undeliverable: 4, ..Drained::default() });
        for (seq, why) in [
            (first, "the user has no email address"),
            (second, "the user's email address is not usable"),
            (third, "the user no longer exists"),
            (fourth, "no admin addresses are configured"),
        ] {
            let row = store.notification(seq).await.unwrap().unwrap();
            assert_eq!(
                (row.state, row.attempts, row.last_error.as_deref()),
                (DeliveryState::Undeliverable, 0, Some(why))
            );
        }
        assert!(send_pending(&store, &relay.mailer(), BASE, t + 86_400).await.unwrap().is_empty(), "never retried");
        assert_eq!(relay.connections.load(Ordering::SeqCst), 0, "the relay never heard of them");
    }
}

#[tokio::test]
async fn lines_starting_with_a_dot_survive_dot_stuffing() {
    let relay = Relay::start(true).await;
    let message = Message {
        to: vec!["ana@home.example".into()],
        subject: "Dots".into(),
        body: "first\n.\n..two\r\n.hidden\nlast".into(),
    };
    relay.mailer().send(&message, now()).await.unwrap();
    let mail = &relay.messages()[0];
    assert_eq!(mail.body(), "first\r\n.\r\n..two\r\n.hidden\r\nlast\r\n", "the receiver sees the text unchanged");
    assert!(mail.wire.contains("\r\n..\r\n...two\r\n..hidden\r\n"), "each leading dot doubled on the wire");
}

#[tokio::test]
async fn a_relay_without_ehlo_gets_helo_and_a_seven_bit_body() {
    let relay = Relay::start(false).await;
    let message = Message { to: vec!["ana@home.example".into()], subject: "Accès".into(), body: "Olá, José".into() };
    relay.mailer().send(&message, now()).await.unwrap();
    let mail = &relay.messages()[0];
    assert_eq!(mail.header("Content-Transfer-Encoding").as_deref(), Some("quoted-printable"));
    assert_eq!(mail.body(), "Ol=C3=A1, Jos=C3=A9\r\n");
    assert_eq!(mail.header("Subject").as_deref(), Some("=?utf-8?B?QWNjw6hz?="));
    assert!(mail.data.is_ascii());
}

#[tokio::test]
async fn header_injection_is_refused_before_any_connection() {
    let relay = Relay::start(true).await;
    let mailer = relay.mailer();
    let ok = Message { to: vec!["ana@home.example".into()], subject: "Hi".into(), body: "text".into() };
    let subject = Message { subject: "Hi\r\nBcc: eve@evil.example".into(), ..ok.clone() };
    let to = Message { to: vec!["ana@home.example\r\nBcc: eve@evil.example".into()], ..ok.clone() };
    let lone_lf = Message { subject: "Hi\nX-Evil: 1".into(), ..ok.clone() };
    for (message, header) in [(subject, "Subject"), (to, "To"), (lone_lf, "Subject")] {
        match mailer.send(&message, now()).await {
            Err(SendError::Message(MailError::HeaderInjection(name))) => assert_eq!(name, header),
            other => panic!("{other:?}"),
        }
    }
    let nobody = Message { to: Vec::new(), ..ok };
    assert!(matches!(mailer.send(&nobody, now()).await, Err(SendError::Message(MailError::NoRecipient))));
    assert_eq!(relay.connections.load(Ordering::SeqCst), 0);

    let bad_from = MailConfig { from: "regain@idp.example\r\nBcc: eve@evil.example".into(), ..mailer.config().clone() };
    assert_eq!(Mailer::new(bad_from).unwrap_err().to_string(), "the `from` address is not a usable mail address");
}

#[tokio::test]
async fn silent_and_refusing_relays_fail_with_clear_errors() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            held.push(silent.accept().await.unwrap().0);
        }
    });
    let refusing = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refusing_addr = refusing.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = refusing.accept().await.unwrap();
            socket.write_all(b"554-relay.test\r\n554 5.7.1 no service for you\r\n").await.unwrap();
        }
    });
    let message = Message { to: vec!["ana@home.example".into()], subject: "Hi".into(), body: "text".into() };
    let config = |smtp: String| MailConfig {
        smtp,
        from: FROM.into(),
        admins: Vec::new(),
        helo: None,
        send_interval_seconds: None,
    };
    let timeouts = (Duration::from_secs(2), Duration::from_millis(300));
    let mailer = Mailer::new(config(silent_addr)).unwrap().with_timeouts(timeouts.0, timeouts.1);
    let error = mailer.send(&message, now()).await.unwrap_err();
    assert_eq!(error.to_string(), "the relay did not answer the greeting in time");
    assert!(!error.is_permanent());
    let mailer = Mailer::new(config(refusing_addr)).unwrap().with_timeouts(timeouts.0, timeouts.1);
    let error = mailer.send(&message, now()).await.unwrap_err();
    assert_eq!(error.to_string(), "the relay answered 554 to the greeting");
    assert!(error.is_permanent());
}

struct Server {
    base: String,
    provider: Provider,
    http: reqwest::Client,
}

async fn serve(store: Store) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let client = Client {
        client_id: "rp".into(),
        redirect_uris: vec![RP.into()],
        post_logout_redirect_uris: Vec::new(),
        client_secret: None,
    };
    let provider = Provider::new(&base, vec![client], store).await.unwrap();
    let router = provider.clone().router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::builder().redirect(Policy::none()).cookie_store(true).build().unwrap();
    Server { base, provider, http }
}

fn auth_params() -> Vec<(String, String)> {
    [
        ("client_id", "rp"),
        ("redirect_uri", RP),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "st"),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        ("code_challenge_method", "S256"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec()
}

/// Signs in through the page; answers the page's text, or `None` for a redirect with a code.
async fn sign_in(s: &Server, http: &reqwest::Client, fields: &[(&str, &str)]) -> Option<String> {
    let mut form = auth_params();
    form.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let response = http.post(format!("{}/authorize", s.base)).form(&form).send().await.unwrap();
    if response.status() == StatusCode::SEE_OTHER {
        let location = response.headers()["location"].to_str().unwrap();
        assert!(location.contains("code="), "{location}");
        return None;
    }
    Some(response.text().await.unwrap())
}

/// A browser without cookies that does not follow redirects.
fn fresh_browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

async fn post_report(s: &Server, token: &str) -> (StatusCode, String) {
    let response = s.http.post(format!("{}/not-me", s.base)).form(&[("token", token)]).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn open_link(s: &Server, token: &str) -> (StatusCode, String) {
    let response = s.http.get(format!("{}/not-me", s.base)).query(&[("token", token)]).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn admin_alerts(store: &Store) -> usize {
    let mut count = 0;
    for seq in 1..=50 {
        if store.notification(seq).await.unwrap().is_some_and(|n| n.kind == "admin-alert") {
            count += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_locks_the_account_once_and_alerts_the_admins() {
    for (store, _dir) in databases().await {
        let s = serve(store.clone()).await;
        let relay = Relay::start(true).await;
        let ana = user(&store, Some("ana@home.example"), Some("correct horse")).await;
        let pass = s.provider.passes.issue(&ana.id, 3600, 0, false, 24, now()).await.unwrap();
        let browser = reqwest::Client::builder().redirect(Policy::none()).cookie_store(true).build().unwrap();
        let with_password = [("method", "password"), ("login", ana.login.as_str()), ("password", "correct horse")];
        assert!(sign_in(&s, &browser, &with_password).await.is_none(), "signed in before the report");
        let sid = random_hex(32).unwrap();
        let session = BrowserSession { user_id: ana.id.clone(), auth_time: now(), amr: "pwd".into() };
        store.insert_browser_session(&sid, &session, now() + 3600).await.unwrap();

        queue(&store, &ana.id, "access-restored", now()).await;
        send_pending(&store, &relay.mailer(), &s.base, now()).await.unwrap();
        let mail = relay.messages()[0].clone();
        assert!(mail.body().contains(&format!("{}/not-me?token=", s.base)));
        let token = mail.token();

        // Opening the link (as a mail scanner would) changes nothing.
        let (status, page) = open_link(&s, &token).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("<form method=\"post\"") && page.contains("It was not me"), "{page}");
        assert!(store.user_by_id(&ana.id).await.unwrap().unwrap().enabled);
        assert!(store.browser_session(&sid, now()).await.unwrap().is_some());
        assert!(store.admin_events(0).await.unwrap().is_empty());
        assert_eq!(admin_alerts(&store).await, 0);

        let (status, page) = post_report(&s, &token).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("Your account is locked"), "{page}");
        assert!(!store.user_by_id(&ana.id).await.unwrap().unwrap().enabled);
        assert!(store.browser_session(&sid, now()).await.unwrap().is_none(), "sessions ended");
        let generic = "The login or the credentials are not correct.";
        assert!(sign_in(&s, &fresh_browser(), &with_password).await.unwrap().contains(generic));
        let with_pass = [("method", "tap"), ("login", ana.login.as_str()), ("tap", pass.secret.as_str())];
        assert!(sign_in(&s, &fresh_browser(), &with_pass).await.unwrap().contains(generic));
        assert_eq!(s.provider.passes.redeem(&pass.secret, now()).await.unwrap(), Redemption::Refused, "pass revoked");
        let cookie = browser.get(format!("{}/authorize", s.base)).query(&auth_params()).send().await.unwrap();
        assert_eq!(cookie.status(), StatusCode::OK, "the browser's session no longer signs in");
        assert!(cookie.headers().get("location").is_none());

        let events = store.admin_events(0).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].kind.as_str(), events[0].user_id.as_str()), (RECOVERY_DISPUTED, ana.id.as_str()));
        assert_eq!(send_pending(&store, &relay.mailer(), &s.base, now()).await.unwrap().sent, 1);
        let alert = relay.messages()[1].clone();
        assert_eq!(alert.to, ADMINS.map(str::to_owned).to_vec());
        assert!(alert.body().contains(&ana.id));
        for personal in ["Ana", "Silva", "ana@home.example", ana.login.as_str()] {
            assert!(!alert.data.contains(personal), "the alert names the user id only: {personal}");
        }

        // The same link again: already reported, and nothing more changes, even once an
        // administrator has enabled the account again.
        store.set_enabled(&ana.id, true).await.unwrap();
        let fresh = random_hex(32).unwrap();
        store.insert_browser_session(&fresh, &session, now() + 3600).await.unwrap();
        let (status, page) = post_report(&s, &token).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("Already reported"), "{page}");
        assert!(open_link(&s, &token).await.1.contains("Already reported"));
        assert!(store.user_by_id(&ana.id).await.unwrap().unwrap().enabled);
        assert!(store.browser_session(&fresh, now()).await.unwrap().is_some());
        assert_eq!(store.admin_events(0).await.unwrap().len(), 1);
        assert_eq!(admin_alerts(&store).await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_expired_links_get_400_and_change_nothing() {
    for (store, _dir) in databases().await {
        let s = serve(store.clone()).await;
        let ana = user(&store, Some("ana@home.example"), None).await;
        let t = now();
        let seq = queue(&store, &ana.id, "access-restored", t).await;
        let attempted = queue(&store, &ana.id, "recovery-attempted", t).await;
        let links = NotMeLinks::open(&store).await.unwrap();
        let good = links.token(seq, &ana.id, t + LINK_SECONDS);
        // Another MAC of the right length: its first character changed.
        let (signed, mac) = good.rsplit_once('.').unwrap();
        let swapped = if mac.starts_with('A') { 'B' } else { 'A' };
        let forged = format!("{signed}.{swapped}{}", &mac[1..]);
        let huge = "1".repeat(10_000);
        for token in [
            forged,
            links.token(seq, &ana.id, t - 1),
            links.token(seq, "u-someone-else", t + LINK_SECONDS),
            links.token(attempted, &ana.id, t + LINK_SECONDS),
            links.token(9_999, &ana.id, t + LINK_SECONDS),
            format!("{seq}.{}", t + LINK_SECONDS),
            "not-a-token".to_owned(),
            String::new(),
            huge,
        ] {
            for (status, page) in [open_link(&s, &token).await, post_report(&s, &token).await] {
                assert_eq!(status, StatusCode::BAD_REQUEST, "{token}");
                assert!(page.contains("Nothing was changed"));
            }
        }
        let missing = s.http.get(format!("{}/not-me", s.base)).send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
        assert!(store.user_by_id(&ana.id).await.unwrap().unwrap().enabled);
        assert!(store.admin_events(0).await.unwrap().is_empty());
        assert_eq!(admin_alerts(&store).await, 0);
        // The genuine link was not spent by any of that.
        assert!(post_report(&s, &good).await.1.contains("Your account is locked"));
    }
}
