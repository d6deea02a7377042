//! Notifications by mail: the `[mail]` settings, a small SMTP client (RFC 5321) and the
//! sender that drains the outbox.
//!
//! The client submits to a relay without TLS and without authentication: an MTA on the same
//! host or the organisation's internal relay, which takes it from there. That is the
//! supported deployment; a relay on the internet that demands STARTTLS or AUTH is not.
//!
//! Every process sharing the database may run a sender: a row is claimed by one conditional
//! `UPDATE` before it is sent, so two processes never send the same row. A failed delivery
//! is retried with backoff and given up after [`MAX_ATTEMPTS`]; a user without a usable
//! address is marked undeliverable at once. Logs name rows and outcomes, never addresses.

use crate::not_me::{LINK_SECONDS, NotMeLinks};
use crate::store::{Store, StoreError, random_hex};
use serde::Deserialize;
use sqlx::Row as _;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Seconds between two passes over the outbox when `send_interval_seconds` is not set.
pub const DEFAULT_SEND_INTERVAL_SECONDS: u64 = 30;
/// Delivery attempts before a notification is given up.
pub const MAX_ATTEMPTS: i64 = 8;
/// How long a claim keeps other senders off a row. Longer than the slowest delivery the
/// timeouts allow, so a row is never sent twice; a sender that dies leaves its rows to the
/// others once the claim runs out.
const CLAIM_SECONDS: i64 = 1800;
/// The first retry waits this long; each one after waits twice as long as the one before.
const FIRST_RETRY_SECONDS: i64 = 60;
/// The longest wait between two attempts.
const MAX_RETRY_SECONDS: i64 = 6 * 3600;
/// Rows claimed in one pass.
const BATCH: i64 = 50;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// A relay may take a while to accept the data (RFC 5321 §4.5.3.2.6 allows 10 minutes);
/// a local relay answers in far less.
const DATA_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest reply line read; RFC 5321 §4.5.3.1.5 allows 512 octets.
const MAX_REPLY_LINE: u64 = 2048;
/// Most lines of one multi-line reply.
const MAX_REPLY_LINES: usize = 100;
/// Longest line of a message body sent as is (RFC 5322 §2.1.1 allows 998 octets).
const MAX_LINE: usize = 998;

/// `[mail]` of `regain-server.toml`: where notifications are submitted and who is alerted.
///
/// ```toml
/// [mail]
/// smtp = "127.0.0.1:25"
/// from = "regain@example.org"
/// admins = ["security@example.org"]
/// ```
///
/// The relay is spoken to in plain SMTP, without TLS and without authentication: use an MTA
/// on the same host or the internal relay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The relay, `host:port`.
    pub smtp: String,
    /// The sender address, in `From` and in the envelope.
    pub from: String,
    /// Addresses alerted when a user reports that a restoration of access was not them.
    #[serde(default)]
    pub admins: Vec<String>,
    /// The name the server gives in `EHLO`; default `localhost`.
    #[serde(default)]
    pub helo: Option<String>,
    /// Seconds between two passes over the outbox; default 30.
    #[serde(default)]
    pub send_interval_seconds: Option<u64>,
}

impl MailConfig {
    /// The time between two passes over the outbox (at least a second).
    pub fn send_interval(&self) -> Duration {
        Duration::from_secs(self.send_interval_seconds.unwrap_or(DEFAULT_SEND_INTERVAL_SECONDS).max(1))
    }

    /// Checks the addresses and names; the error names the setting, not its value.
    pub fn check(&self) -> Result<(), MailError> {
        let relay_ok = self
            .smtp
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
        if !relay_ok {
            return Err(MailError::BadRelay);
        }
        if !usable_address(&self.from) {
            return Err(MailError::BadAddress("the `from` address"));
        }
        if !self.admins.iter().all(|a| usable_address(a)) {
            return Err(MailError::BadAddress("an `admins` address"));
        }
        if let Some(helo) = &self.helo
            && !usable_domain(helo)
        {
            return Err(MailError::BadHelo);
        }
        Ok(())
    }
}

/// A message or a setting that cannot be used; the text names no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// An address is not a plain `local@domain` in ASCII.
    #[error("{0} is not a usable mail address")]
    BadAddress(&'static str),
    /// A header value holds a line break or another control character, which could add
    /// headers of its own.
    #[error("the `{0}` header contains a line break or a control character")]
    HeaderInjection(&'static str),
    /// `smtp` is not `host:port`.
    #[error("`smtp` must be `host:port`")]
    BadRelay,
    /// `helo` is not a host name.
    #[error("`helo` must be a host name")]
    BadHelo,
    /// Nobody to send to.
    #[error("the message has no recipient")]
    NoRecipient,
}

/// A delivery that failed; the text names no address and repeats nothing the relay said
/// beyond its reply code.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The relay could not be reached.
    #[error("cannot connect to the relay: {0}")]
    Connect(std::io::Error),
    /// The relay did not answer in time.
    #[error("the relay did not answer {0} in time")]
    Timeout(&'static str),
    /// Reading or writing failed.
    #[error("the connection to the relay failed: {0}")]
    Io(std::io::Error),
    /// The relay closed the connection.
    #[error("the relay closed the connection during {0}")]
    Closed(&'static str),
    /// The reply is not SMTP.
    #[error("the relay sent a malformed reply to {0}")]
    Malformed(&'static str),
    /// The relay refused.
    #[error("the relay answered {code} to {stage}")]
    Rejected {
        /// The command (or the greeting) refused.
        stage: &'static str,
        /// The reply code.
        code: u16,
    },
    /// The message cannot be sent as it is.
    #[error(transparent)]
    Message(#[from] MailError),
    /// No Message-ID could be made.
    #[error("no random source")]
    Random,
}

impl SendError {
    /// Whether trying again cannot help: the relay refused for good (a 5xx reply) or the
    /// message itself is unusable.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Rejected { code, .. } => (500..600).contains(code),
            Self::Message(_) => true,
            Self::Connect(_) | Self::Timeout(_) | Self::Io(_) | Self::Closed(_) | Self::Malformed(_) | Self::Random => {
                false
            }
        }
    }
}

/// A plain-text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Recipients, in `To` and in the envelope.
    pub to: Vec<String>,
    /// The subject.
    pub subject: String,
    /// The text; line endings may be `\n` or `\r\n`.
    pub body: String,
}

impl Message {
    /// The message in RFC 5322 form with CRLF line endings, before dot-stuffing. `eight_bit`:
    /// the relay announced 8BITMIME, so the body may go as it is.
    pub fn render(&self, from: &str, date: i64, message_id: &str, eight_bit: bool) -> Result<String, MailError> {
        self.check()?;
        header_value("From", from)?;
        header_value("Message-ID", message_id)?;
        let lines: Vec<String> = self.body.split('\n').map(|l| l.trim_end_matches('\r').replace('\r', "")).collect();
        let fits = lines.iter().all(|l| l.len() <= MAX_LINE);
        let (encoding, body) = if fits && eight_bit {
            ("8bit", lines.join("\r\n"))
        } else if fits && self.body.is_ascii() {
            ("7bit", lines.join("\r\n"))
        } else {
            ("quoted-printable", lines.iter().map(|l| quoted_printable(l)).collect::<Vec<_>>().join("\r\n"))
        };
        let mut out = String::with_capacity(body.len() + 512);
        for (name, value) in [
            ("Date", rfc5322_date(date)),
            ("Message-ID", message_id.to_owned()),
            ("From", from.to_owned()),
            ("To", self.to.join(",\r\n ")),
            ("Subject", encoded_words(&self.subject)),
            ("MIME-Version", "1.0".to_owned()),
            ("Content-Type", "text/plain; charset=utf-8".to_owned()),
            ("Content-Transfer-Encoding", encoding.to_owned()),
            ("Auto-Submitted", "auto-generated".to_owned()),
        ] {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(&value);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&body);
        out.push_str("\r\n");
        Ok(out)
    }

    /// Refuses unusable recipients and header values before anything is sent.
    fn check(&self) -> Result<(), MailError> {
        if self.to.is_empty() {
            return Err(MailError::NoRecipient);
        }
        for to in &self.to {
            header_value("To", to)?;
            if !usable_address(to) {
                return Err(MailError::BadAddress("a recipient"));
            }
        }
        header_value("Subject", &self.subject)
    }
}

/// Refuses a header value with a line break or another control character: it could end the
/// header and start one of its own.
fn header_value(name: &'static str, value: &str) -> Result<(), MailError> {
    if value.chars().any(char::is_control) {
        return Err(MailError::HeaderInjection(name));
    }
    Ok(())
}

/// A plain `local@domain` in printable ASCII, without the characters that would need quoting
/// or could break out of `<...>` in the envelope.
fn usable_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else { return false };
    address.len() <= 254
        && !local.is_empty()
        && local.bytes().all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"@".contains(&b))
        && usable_domain(domain)
}

/// A host name: ASCII letters, digits, `-` and `.`, no empty label.
fn usable_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain
            .split('.')
            .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// A subject as is when it is short ASCII, otherwise as RFC 2047 encoded words, folded.
fn encoded_words(text: &str) -> String {
    use base64::Engine as _;
    if text.is_ascii() && text.len() <= 900 {
        return text.to_owned();
    }
    // 45 bytes of UTF-8 make 60 characters of base64: each word stays under 75 characters.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| format!("=?utf-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(w)))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// One line in quoted-printable (RFC 2045 §6.7), with soft breaks keeping lines within 76.
fn quoted_printable(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out = String::with_capacity(bytes.len() * 3 / 2);
    let mut width = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let last = i + 1 == bytes.len();
        let plain = (b.is_ascii_graphic() && b != b'=') || ((b == b' ' || b == b'\t') && !last);
        let token = if plain { char::from(b).to_string() } else { format!("={b:02X}") };
        if width + token.len() > 75 {
            out.push_str("=\r\n");
            width = 0;
        }
        width += token.len();
        out.push_str(&token);
    }
    out
}

/// Year, month and day of a day counted from 1970-01-01 (proleptic Gregorian calendar).
fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `Tue, 04 Mar 2025 13:45:00 +0000` (RFC 5322 §3.3).
pub fn rfc5322_date(t: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = t.div_euclid(86_400);
    let seconds = t.rem_euclid(86_400);
    let (year, month, day) = civil_date(days);
    let weekday = usize::try_from(days.rem_euclid(7)).ok().and_then(|i| DAYS.get(i)).unwrap_or(&"Thu");
    let month_name = usize::try_from(month - 1).ok().and_then(|i| MONTHS.get(i)).unwrap_or(&"Jan");
    format!(
        "{weekday}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} +0000",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

/// `2025-03-04 13:45 UTC`, for the text of a message.
pub fn utc_minute(t: i64) -> String {
    let seconds = t.rem_euclid(86_400);
    let (year, month, day) = civil_date(t.div_euclid(86_400));
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", seconds / 3600, seconds % 3600 / 60)
}

/// Submits messages to the relay of a [`MailConfig`].
#[derive(Debug, Clone)]
pub struct Mailer {
    config: MailConfig,
    helo: String,
    connect_timeout: Duration,
    reply_timeout: Duration,
    data_timeout: Duration,
    /// Keycloak, whose users' addresses the local user table does not hold.
    keycloak: Option<std::sync::Arc<crate::keycloak::Keycloak>>,
}

impl Mailer {
    /// A mailer for checked settings.
    pub fn new(config: MailConfig) -> Result<Self, MailError> {
        config.check()?;
        let helo = config.helo.clone().unwrap_or_else(|| "localhost".to_owned());
        Ok(Self {
            config,
            helo,
            connect_timeout: CONNECT_TIMEOUT,
            reply_timeout: REPLY_TIMEOUT,
            data_timeout: DATA_TIMEOUT,
            keycloak: None,
        })
    }

    /// The same mailer, looking users up in Keycloak when they are not local.
    #[must_use]
    pub fn with_keycloak(mut self, keycloak: std::sync::Arc<crate::keycloak::Keycloak>) -> Self {
        self.keycloak = Some(keycloak);
        self
    }

    /// The same mailer with other limits on connecting and on waiting for each reply.
    #[must_use]
    pub fn with_timeouts(mut self, connect: Duration, reply: Duration) -> Self {
        self.connect_timeout = connect;
        self.reply_timeout = reply;
        self.data_timeout = reply;
        self
    }

    /// The settings.
    pub fn config(&self) -> &MailConfig {
        &self.config
    }

    /// Submits one message in one SMTP session. A message that cannot be sent safely is
    /// refused before any connection is made.
    pub async fn send(&self, message: &Message, now: i64) -> Result<(), SendError> {
        message.check()?;
        let domain = self.config.from.rsplit_once('@').map_or("localhost", |(_, d)| d);
        let message_id = format!("<{}.{now}@{domain}>", random_hex(12).map_err(|_| SendError::Random)?);
        // Rendering checks every header: a message it would refuse never opens a session.
        message.render(&self.config.from, now, &message_id, false)?;
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.config.smtp))
            .await
            .map_err(|_| SendError::Timeout("the connection"))?
            .map_err(SendError::Connect)?;
        let (read, write) = stream.into_split();
        let mut session = Session { reader: BufReader::new(read), writer: write, timeout: self.reply_timeout };
        let outcome = self.transaction(&mut session, message, now, &message_id).await;
        if matches!(outcome, Err(SendError::Rejected { .. })) {
            // The relay is still talking: end the session politely; the outcome stands.
            let _ = session.command("QUIT", "QUIT").await;
        }
        outcome
    }

    async fn transaction(
        &self,
        s: &mut Session,
        message: &Message,
        now: i64,
        message_id: &str,
    ) -> Result<(), SendError> {
        s.read_reply("the greeting", s.timeout).await?.require("the greeting", &[220])?;
        let ehlo = s.command(&format!("EHLO {}", self.helo), "EHLO").await?;
        let eight_bit =
            match ehlo.code {
                250 => ehlo.lines.iter().skip(1).any(|l| {
                    l.split_whitespace().next().is_some_and(|keyword| keyword.eq_ignore_ascii_case("8BITMIME"))
                }),
                // A relay that predates ESMTP does not know EHLO (RFC 5321 §3.2).
                500 | 501 | 502 | 504 | 550 => {
                    s.command(&format!("HELO {}", self.helo), "HELO").await?.require("HELO", &[250])?;
                    false
                }
                code => return Err(SendError::Rejected { stage: "EHLO", code }),
            };
        let data = message.render(&self.config.from, now, message_id, eight_bit)?;
        let body = if eight_bit { " BODY=8BITMIME" } else { "" };
        s.command(&format!("MAIL FROM:<{}>{body}", self.config.from), "MAIL FROM")
            .await?
            .require("MAIL FROM", &[250])?;
        for to in &message.to {
            s.command(&format!("RCPT TO:<{to}>"), "RCPT TO").await?.require("RCPT TO", &[250, 251])?;
        }
        s.command("DATA", "DATA").await?.require("DATA", &[354])?;
        s.write(&dot_stuffed(&data), "the message").await?;
        s.read_reply("the end of the message", self.data_timeout).await?.require("the end of the message", &[250])?;
        // The message is accepted; a relay that hangs up before answering QUIT changes nothing.
        let _ = s.command("QUIT", "QUIT").await;
        Ok(())
    }
}

/// The message as sent after `DATA`: every line that starts with a dot gets another one
/// (RFC 5321 §4.5.2), then the terminating `.` line.
fn dot_stuffed(data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 16);
    for line in data.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

/// One SMTP reply: its code and the text of each line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn require(self, stage: &'static str, codes: &[u16]) -> Result<Self, SendError> {
        if codes.contains(&self.code) { Ok(self) } else { Err(SendError::Rejected { stage, code: self.code }) }
    }
}

/// A reply line: its code, whether more lines follow, and its text.
fn parse_reply_line(line: &str) -> Option<(u16, bool, &str)> {
    let code = line.get(..3).filter(|c| c.bytes().all(|b| b.is_ascii_digit()))?;
    let code: u16 = code.parse().ok()?;
    if !(200..600).contains(&code) {
        return None;
    }
    let rest = line.get(3..)?;
    match rest.chars().next() {
        None => Some((code, false, "")),
        Some(' ') => Some((code, false, rest.get(1..).unwrap_or(""))),
        Some('-') => Some((code, true, rest.get(1..).unwrap_or(""))),
        Some(_) => None,
    }
}

struct Session {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    timeout: Duration,
}

impl Session {
    async fn write(&mut self, text: &str, stage: &'static str) -> Result<(), SendError> {
        tokio::time::timeout(self.timeout, self.writer.write_all(text.as_bytes()))
            .await
            .map_err(|_| SendError::Timeout(stage))?
            .map_err(SendError::Io)
    }

    /// Sends one command line and reads its reply.
    async fn command(&mut self, line: &str, stage: &'static str) -> Result<Reply, SendError> {
        self.write(&format!("{line}\r\n"), stage).await?;
        self.read_reply(stage, self.timeout).await
    }

    /// Reads one reply, all its lines within `limit`.
    async fn read_reply(&mut self, stage: &'static str, limit: Duration) -> Result<Reply, SendError> {
        tokio::time::timeout(limit, self.reply_lines(stage)).await.map_err(|_| SendError::Timeout(stage))?
    }

    async fn reply_lines(&mut self, stage: &'static str) -> Result<Reply, SendError> {
        let mut reply = Reply { code: 0, lines: Vec::new() };
        loop {
            let mut raw = Vec::new();
            let read =
                (&mut self.reader).take(MAX_REPLY_LINE).read_until(b'\n', &mut raw).await.map_err(SendError::Io)?;
            if read == 0 {
                return Err(SendError::Closed(stage));
            }
            if !raw.ends_with(b"\n") || reply.lines.len() >= MAX_REPLY_LINES {
                return Err(SendError::Malformed(stage));
            }
            let text = String::from_utf8_lossy(&raw);
            let (code, more, rest) =
                parse_reply_line(text.trim_end_matches(['\r', '\n'])).ok_or(SendError::Malformed(stage))?;
            if !reply.lines.is_empty() && code != reply.code {
                return Err(SendError::Malformed(stage));
            }
            reply.code = code;
            reply.lines.push(rest.to_owned());
            if !more {
                return Ok(reply);
            }
        }
    }
}

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// The relay accepted it.
    Sent,
    /// There is nothing to send it to (no user, no address, no admins); never retried.
    Undeliverable,
    /// Given up: the relay refused it for good or every attempt failed.
    Failed,
}

impl DeliveryState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Undeliverable => "undeliverable",
            Self::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Undeliverable, Self::Failed].into_iter().find(|s| s.as_str() == text)
    }
}

/// A queued notification and its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The outbox row.
    pub seq: i64,
    /// The user it is about.
    pub user_id: String,
    /// `access-restored`, `recovery-attempted` or `admin-alert`.
    pub kind: String,
    /// When it was queued.
    pub created_at: i64,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: i64,
    /// Not tried again before.
    pub next_attempt_at: i64,
    /// When the relay accepted it.
    pub sent_at: Option<i64>,
    /// Why the last attempt failed or why it cannot be delivered (no address in it).
    pub last_error: Option<String>,
}

/// A row this sender holds for a while.
#[derive(Debug, Clone)]
struct Claimed {
    seq: i64,
    user_id: String,
    kind: String,
    created_at: i64,
    attempts: i64,
    claim: String,
}

impl Store {
    /// A queued notification, whatever its state.
    pub async fn notification(&self, seq: i64) -> Result<Option<Notification>, StoreError> {
        let row = sqlx::query(
            "SELECT seq, user_id, kind, created_at, state, attempts, next_attempt_at, sent_at, last_error \
             FROM outbox WHERE seq = $1",
        )
        .bind(seq)
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let state: String = row.try_get(4)?;
        Ok(Some(Notification {
            seq: row.try_get(0)?,
            user_id: row.try_get(1)?,
            kind: row.try_get(2)?,
            created_at: row.try_get(3)?,
            state: DeliveryState::parse(&state)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown delivery state `{state}`").into()))?,
            attempts: row.try_get(5)?,
            next_attempt_at: row.try_get(6)?,
            sent_at: row.try_get(7)?,
            last_error: row.try_get(8)?,
        }))
    }

    /// Claims up to `limit` notifications due at `now`. Each row is taken by one conditional
    /// `UPDATE`: of several senders, in this process or another, one wins it and the others
    /// see no row.
    async fn claim_notifications(&self, now: i64, limit: i64) -> Result<Vec<Claimed>, StoreError> {
        let due = sqlx::query(
            "SELECT seq FROM outbox WHERE state = 'pending' AND next_attempt_at <= $1 AND claimed_until <= $1 \
             ORDER BY seq LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        let claim = random_hex(16)?;
        let mut claimed = Vec::with_capacity(due.len());
        for row in due {
            let seq: i64 = row.try_get(0)?;
            let won = sqlx::query(
                "UPDATE outbox SET claimed_until = $1, claim_id = $2 \
                 WHERE seq = $3 AND state = 'pending' AND next_attempt_at <= $4 AND claimed_until <= $4 \
                 RETURNING user_id, kind, created_at, attempts",
            )
            .bind(now + CLAIM_SECONDS)
            .bind(&claim)
            .bind(seq)
            .bind(now)
            .fetch_optional(&mut *self.write_conn().await?)
            .await?;
            if let Some(row) = won {
                claimed.push(Claimed {
                    seq,
                    user_id: row.try_get(0)?,
                    kind: row.try_get(1)?,
                    created_at: row.try_get(2)?,
                    attempts: row.try_get(3)?,
                    claim: claim.clone(),
                });
            }
        }
        Ok(claimed)
    }

    /// Ends a claimed row in `state` after `attempts` attempts.
    async fn settle(
        &self,
        row: &Claimed,
        state: DeliveryState,
        attempts: i64,
        next_attempt_at: i64,
        sent_at: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET state = $1, attempts = $2, next_attempt_at = $3, sent_at = $4, last_error = $5, \
             claimed_until = 0, claim_id = NULL WHERE seq = $6 AND claim_id = $7",
        )
        .bind(state.as_str())
        .bind(attempts)
        .bind(next_attempt_at)
        .bind(sent_at)
        .bind(error)
        .bind(row.seq)
        .bind(&row.claim)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(())
    }
}

/// The wait before attempt `attempts + 1`.
fn backoff(attempts: i64) -> i64 {
    let doublings = u32::try_from((attempts - 1).clamp(0, 20)).unwrap_or(20);
    FIRST_RETRY_SECONDS.saturating_mul(1 << doublings).min(MAX_RETRY_SECONDS)
}

/// What one pass over the outbox did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Accepted by the relay.
    pub sent: usize,
    /// Failed for now, tried again later.
    pub retrying: usize,
    /// Given up.
    pub failed: usize,
    /// Nothing to send them to.
    pub undeliverable: usize,
}

impl Drained {
    /// Whether the pass found nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What a row becomes.
enum Composed {
    Message(Message),
    Undeliverable(&'static str),
    /// The directory cannot be asked now; tried again later.
    Later(String),
}

/// One pass over the outbox at `now`: claims the due rows, sends each and records the
/// outcome. `base_url` is the issuer, where the "this wasn't me" links point.
pub async fn send_pending(store: &Store, mailer: &Mailer, base_url: &str, now: i64) -> Result<Drained, StoreError> {
    let links = NotMeLinks::open(store).await?;
    let mut drained = Drained::default();
    for row in store.claim_notifications(now, BATCH).await? {
        let message = match compose(store, mailer, &links, base_url, &row).await? {
            Composed::Message(message) => message,
            Composed::Later(error) => {
                tracing::warn!(seq = row.seq, kind = %row.kind, error = %error, "recipient lookup failed; retrying later");
                store
                    .settle(&row, DeliveryState::Pending, row.attempts, now + FIRST_RETRY_SECONDS, None, Some(&error))
                    .await?;
                drained.retrying += 1;
                continue;
            }
            Composed::Undeliverable(reason) => {
                tracing::warn!(seq = row.seq, kind = %row.kind, reason, "notification undeliverable");
                store.settle(&row, DeliveryState::Undeliverable, row.attempts, now, None, Some(reason)).await?;
                drained.undeliverable += 1;
                continue;
            }
        };
        let attempts = row.attempts + 1;
        match mailer.send(&message, now).await {
            Ok(()) => {
                store.settle(&row, DeliveryState::Sent, attempts, now, Some(now), None).await?;
                drained.sent += 1;
            }
            Err(e) => {
                let give_up = e.is_permanent() || attempts >= MAX_ATTEMPTS;
                let state = if give_up { DeliveryState::Failed } else { DeliveryState::Pending };
                tracing::warn!(seq = row.seq, kind = %row.kind, attempts, error = %e, gave_up = give_up, "notification not sent");
                store.settle(&row, state, attempts, now + backoff(attempts), None, Some(&e.to_string())).await?;
                if give_up {
                    drained.failed += 1;
                } else {
                    drained.retrying += 1;
                }
            }
        }
    }
    Ok(drained)
}

/// Runs [`send_pending`] every `interval` until the process stops, logging what each pass
/// did (counts only).
pub fn spawn_sender(store: Store, mailer: Mailer, base_url: String, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval.max(Duration::from_secs(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match send_pending(&store, &mailer, &base_url, crate::store::now()).await {
                Ok(d) if d.is_empty() => {}
                Ok(d) => tracing::info!(
                    sent = d.sent,
                    retrying = d.retrying,
                    failed = d.failed,
                    undeliverable = d.undeliverable,
                    "notifications processed"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot process the outbox"),
            }
        }
    })
}

/// A name fit for a greeting line: no control characters, bounded.
fn greeting_name(name: Option<&str>) -> String {
    let clean: String = name.unwrap_or("").chars().map(|c| if c.is_control() { ' ' } else { c }).take(100).collect();
    let clean = clean.trim();
    if clean.is_empty() { "Hello,".to_owned() } else { format!("Hello {clean},") }
}

/// The message for a row, or why there is none.
async fn compose(
    store: &Store,
    mailer: &Mailer,
    links: &NotMeLinks,
    base_url: &str,
    row: &Claimed,
) -> Result<Composed, StoreError> {
    let config = mailer.config();
    if row.kind == "admin-alert" {
        if config.admins.is_empty() {
            return Ok(Composed::Undeliverable("no admin addresses are configured"));
        }
        let user: String = row.user_id.chars().filter(|c| !c.is_control()).collect();
        let body = format!(
            "The user with the id {user} reported on {at} that a restoration of access to their account \
             was not them.\n\n\
             The account was disabled, its sessions ended and its Temporary Access Passes revoked.\n\
             Check the account's audit trail and contact the user through a known channel before you \
             enable it again.\n",
            at = utc_minute(row.created_at),
        );
        return Ok(Composed::Message(Message {
            to: config.admins.clone(),
            subject: "A user reported an access restoration that was not them".to_owned(),
            body,
        }));
    }
    let (address, given_name) = match (store.user_by_id(&row.user_id).await?, &mailer.keycloak) {
        (Some(account), _) => (account.attributes.get("email").cloned(), account.given_name),
        (None, Some(keycloak)) => match keycloak.contact(&row.user_id).await {
            Ok(Some((address, given_name))) => (Some(address), given_name),
            Ok(None) => (None, None),
            Err(e) => return Ok(Composed::Later(e)),
        },
        (None, None) => return Ok(Composed::Undeliverable("the user no longer exists")),
    };
    let Some(address) = address.as_deref().map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(Composed::Undeliverable("the user has no email address"));
    };
    if !usable_address(address) {
        return Ok(Composed::Undeliverable("the user's email address is not usable"));
    }
    let hello = greeting_name(given_name.as_deref());
    let (subject, body) = match row.kind.as_str() {
        "access-restored" => {
            let expires_at = row.created_at + LINK_SECONDS;
            let link = format!(
                "{}/not-me?token={}",
                base_url.trim_end_matches('/'),
                links.token(row.seq, &row.user_id, expires_at)
            );
            (
                "Access to your account was restored",
                format!(
                    "{hello}\n\n\
                     Access to your account was restored with a Temporary Access Pass on {at}.\n\n\
                     If that was you, there is nothing more to do.\n\n\
                     If it was not you, open this link to lock your account and alert your administrators:\n\n\
                     {link}\n\n\
                     The link works until {until}.\n",
                    at = utc_minute(row.created_at),
                    until = utc_minute(expires_at),
                ),
            )
        }
        "recovery-attempted" => (
            "Someone tried to recover your account",
            format!(
                "{hello}\n\n\
                 Someone tried to recover access to your account on {at}. It did not succeed and nothing \
                 was changed.\n\n\
                 If it was not you, tell your administrators.\n",
                at = utc_minute(row.created_at),
            ),
        ),
        _ => return Ok(Composed::Undeliverable("unknown notification kind")),
    };
    Ok(Composed::Message(Message { to: vec![address.to_owned()], subject: subject.to_owned(), body }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_follow_rfc_5322() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_741_095_900), "Tue, 04 Mar 2025 13:45:00 +0000");
        assert_eq!(utc_minute(1_741_095_959), "2025-03-04 13:45 UTC");
        assert_eq!(rfc5322_date(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
    }

    #[test]
    fn quoted_printable_keeps_lines_short_and_ascii() {
        let long = "é".repeat(40);
        let encoded = quoted_printable(&long);
        assert!(encoded.is_ascii());
        assert!(encoded.split("\r\n").all(|l| l.len() <= 76), "{encoded}");
        assert!(encoded.starts_with("=C3=A9"));
        assert_eq!(quoted_printable("a=b "), "a=3Db=20");
        assert_eq!(quoted_printable("tab\there"), "tab\there");
    }

    #[test]
    fn subjects_outside_ascii_become_encoded_words() {
        assert_eq!(encoded_words("Plain subject"), "Plain subject");
        let encoded = encoded_words("Accès rétabli");
        assert_eq!(encoded, "=?utf-8?B?QWNjw6hzIHLDqXRhYmxp?=");
        let long = encoded_words(&"ü".repeat(60));
        assert!(long.split("\r\n ").all(|w| w.len() <= 75 && w.starts_with("=?utf-8?B?")));
    }

    #[test]
    fn reply_lines_parse_and_reject_garbage() {
        assert_eq!(parse_reply_line("250-relay.example"), Some((250, true, "relay.example")));
        assert_eq!(parse_reply_line("250 8BITMIME"), Some((250, false, "8BITMIME")));
        assert_eq!(parse_reply_line("354"), Some((354, false, "")));
        assert_eq!(parse_reply_line("25"), None);
        assert_eq!(parse_reply_line("abc hello"), None);
        assert_eq!(parse_reply_line("250x"), None);
        assert_eq!(parse_reply_line("999 no"), None);
    }

    #[test]
    fn dot_stuffing_doubles_leading_dots_only() {
        assert_eq!(dot_stuffed("a\r\n.\r\n..b\r\nc.d\r\n"), "a\r\n..\r\n...b\r\nc.d\r\n.\r\n");
        assert_eq!(dot_stuffed("no final break"), "no final break\r\n.\r\n");
    }

    #[test]
    fn addresses_and_settings_are_checked() {
        assert!(usable_address("ana.silva+x@mail.example.org"));
        for bad in
            ["", "ana", "@example.org", "ana@", "ana@exa mple.org", "a<b>@example.org", "ana@ex..org", "añа@x.org"]
        {
            assert!(!usable_address(bad), "{bad}");
        }
        let config: MailConfig =
            toml::from_str("smtp = \"127.0.0.1:25\"\nfrom = \"regain@example.org\"\nadmins = [\"sec@example.org\"]\n")
                .unwrap();
        assert!(config.check().is_ok());
        assert_eq!(config.send_interval(), Duration::from_secs(DEFAULT_SEND_INTERVAL_SECONDS));
        let unknown = toml::from_str::<MailConfig>("smtp = \"h:25\"\nfrom = \"a@b.c\"\ntls = true\n");
        assert!(unknown.unwrap_err().to_string().contains("unknown field `tls`"));
        let no_port = MailConfig { smtp: "relay".into(), ..config.clone() };
        assert_eq!(no_port.check(), Err(MailError::BadRelay));
        let bad_admin = MailConfig { admins: vec!["x\r\nBcc: y@z".into()], ..config };
        assert_eq!(bad_admin.check(), Err(MailError::BadAddress("an `admins` address")));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), 60);
        assert_eq!(backoff(2), 120);
        assert_eq!(backoff(4), 480);
        assert_eq!(backoff(30), MAX_RETRY_SECONDS);
    }

    #[test]
    fn rendering_refuses_header_injection() {
        let message = Message {
            to: vec!["ana@example.org".into()],
            subject: "Hi\r\nBcc: eve@example.org".into(),
            body: "text".into(),
        };
        assert_eq!(
            message.render("r@example.org", 0, "<1@example.org>", true),
            Err(MailError::HeaderInjection("Subject"))
        );
        let message = Message { to: vec!["ana@example.org\r\nBcc: eve@example.org".into()], ..message };
        assert_eq!(message.render("r@example.org", 0, "<1@example.org>", true), Err(MailError::HeaderInjection("To")));
    }
}
