//! The admin commands as real processes over a SQLite file and a PostgreSQL database: users
//! imported from CSV and JSON (all or nothing), changed with `user set`, shown without
//! secrets, and the audit log queried with filters.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use regain_core::AuditKind;
use regain_core::env::AuditRecord;
use regain_server::accounts::{Account, BrowserSession};
use regain_server::admin::{AttributeUpdate, ImportRow, Provided, kind_name, kind_names, parse_kind};
use regain_server::store::{Store, now};
use serde_json::Value;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};

/// A server configuration and its database, on SQLite or PostgreSQL.
struct Db {
    dir: tempfile::TempDir,
    config: String,
    url: String,
    postgres: bool,
}

impl Db {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("regain.db").display());
        Self::with(dir, url, false)
    }

    async fn postgres() -> Self {
        Self::with(tempfile::tempdir().unwrap(), crate::support::fresh_postgres_url().await, true)
    }

    fn with(dir: tempfile::TempDir, url: String, postgres: bool) -> Self {
        let config = dir.path().join("regain-server.toml");
        std::fs::write(&config, "issuer = \"http://127.0.0.1:1\"\n").unwrap();
        Self { config: config.display().to_string(), dir, url, postgres }
    }

    /// Runs `regain ARGS --server-config FILE` with `stdin`.
    fn run_with(&self, args: &[&str], stdin: &str) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_regain"));
        command.args(args).args(["--server-config", &self.config]).env_remove("DATABASE_URL");
        if self.postgres {
            command.env("DATABASE_URL", &self.url);
        }
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, "")
    }

    /// A file in the test's directory, by its name.
    fn file(&self, name: &str, content: &[u8]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    async fn store(&self) -> Store {
        Store::open(&self.url).await.unwrap()
    }

    /// `user show LOGIN` as JSON; `None` when the command says there is no such user.
    fn show(&self, login: &str) -> Option<Value> {
        let out = self.run(&["user", "show", login]);
        match out.status.code() {
            Some(0) => Some(serde_json::from_slice(&out.stdout).unwrap()),
            Some(1) => {
                assert_eq!(stderr(&out).trim(), format!("regain: no user has the login `{login}`"));
                None
            }
            other => panic!("user show exited with {other:?}: {}", stderr(&out)),
        }
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Asserts success and answers stdout.
fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", stdout(out), stderr(out));
    stdout(out)
}

/// Asserts a usage or input error (exit 2) and answers stderr.
fn error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "stdout: {}\nstderr: {}", stdout(out), stderr(out));
    stderr(out)
}

/// A CSV with a byte order mark, CRLF line ends, quoted commas, doubled quotes, a line break
/// inside a field and diacritics.
const USERS_CSV: &str = concat!(
    "\u{feff}id,login,given_name,family_name,country,groups,enabled,privileged,last_sign_in,email,attr:address\r\n",
    "u-1,ana@example.org,Ana,\"Silva, Costa\",PT,staff;recovery-enabled,true,false,2026-01-31T09:00:00Z,",
    "ana@home.example,\"Rua \"\"Nova\"\", 12\r\n1000-001 Lisboa\"\r\n",
    "u-2,jose@example.org,José,García Márquez,ES,staff,,,1790000000,,\r\n",
);

fn event(at: u64, kind: AuditKind, flow: char, user: &str, reason: &str, reference: Option<&str>) -> AuditRecord {
    AuditRecord {
        at,
        kind,
        flow_id: flow.to_string().repeat(32),
        user_id: Some(user.into()),
        reason: reason.into(),
        helpdesk_ref: reference.map(str::to_owned),
    }
}

/// JSON lines of `audit query ... --json`, as `(at, kind)`.
fn query(db: &Db, filters: &[&str]) -> Vec<(u64, String)> {
    let mut args = vec!["audit", "query", "--json"];
    args.extend_from_slice(filters);
    ok(&db.run(&args))
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["at"].as_u64().unwrap(), v["kind"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// Import, update, `user set` and the audit query, on either database.
async fn import_set_and_query(db: &Db) {
    let csv = db.file("users.csv", USERS_CSV.as_bytes());
    assert_eq!(ok(&db.run(&["user", "import", &csv])).trim(), "imported 2 user(s)");
    let ana = db.show("ana@example.org").unwrap();
    assert_eq!(ana["id"], "u-1");
    assert_eq!(ana["family_name"], "Silva, Costa");
    assert_eq!(ana["groups"], serde_json::json!(["staff", "recovery-enabled"]));
    assert_eq!(ana["attributes"]["address"], "Rua \"Nova\", 12\r\n1000-001 Lisboa");
    assert_eq!(ana["attributes"]["email"], "ana@home.example");
    assert_eq!(ana["last_sign_in"], 1_769_850_000);
    assert_eq!((&ana["enabled"], &ana["privileged"]), (&Value::Bool(true), &Value::Bool(false)));
    let jose = db.show("jose@example.org").unwrap();
    assert_eq!((jose["given_name"].as_str(), jose["family_name"].as_str()), (Some("José"), Some("García Márquez")));
    assert_eq!(jose["enabled"], true, "an empty cell gives the default");
    assert_eq!(jose["attributes"], serde_json::json!({}));

    // A row whose login exists fails the whole file: the new row before it is not kept.
    let again = db.file("again.csv", b"id,login\nu-3,rui@example.org\nu-1,ana@example.org\n");
    let refused = error(&db.run(&["user", "import", &again]));
    assert!(refused.contains("again.csv:3: login `ana@example.org` exists already (add --update"), "{refused}");
    assert!(db.show("rui@example.org").is_none(), "nothing was imported");

    // --update changes the given fields of existing users and creates the new ones.
    let update = db.file(
        "update.csv",
        "id,login,given_name,family_name,attr:phone\n\
         u-3,rui@example.org,Rui,,\n\
         u-1,ana@example.org,,Souza,+351 1\n\
         u-2,jose@example.org,José,,\n"
            .as_bytes(),
    );
    assert_eq!(
        ok(&db.run(&["user", "import", "--update", &update])).trim(),
        "imported 3 user(s): 1 created, 1 updated, 1 unchanged"
    );
    let ana = db.show("ana@example.org").unwrap();
    assert_eq!((ana["given_name"].as_str(), ana["family_name"].as_str()), (Some("Ana"), Some("Souza")));
    assert_eq!(ana["attributes"]["phone"], "+351 1");
    assert_eq!(ana["attributes"]["email"], "ana@home.example", "attributes the file does not name stay");
    assert_eq!(ana["country"], "PT");
    assert_eq!(db.show("rui@example.org").unwrap()["given_name"], "Rui");
    let other_id = db.file("other.csv", b"id,login\nu-9,ana@example.org\n");
    assert!(
        error(&db.run(&["user", "import", "--update", &other_id]))
            .contains("other.csv:2: login `ana@example.org` belongs to the user `u-1`, not `u-9`")
    );

    // user set: what changed is printed, and shows in the account.
    let set = ok(&db.run(&[
        "user",
        "set",
        "ana@example.org",
        "--given-name",
        "Anna",
        "--country",
        "BR",
        "--add-group",
        "admins",
        "--remove-group",
        "staff",
        "--privileged",
        "true",
        "--attribute",
        "phone=",
        "--attribute",
        "employee=E-7",
    ]));
    assert_eq!(
        set.lines().collect::<Vec<_>>(),
        [
            "given_name: \"Ana\" -> \"Anna\"",
            "country: \"PT\" -> \"BR\"",
            "groups: added \"admins\"",
            "groups: removed \"staff\"",
            "privileged: false -> true",
            "attribute phone: \"+351 1\" -> none",
            "attribute employee: none -> \"E-7\"",
            "updated u-1 (ana@example.org)",
        ]
    );
    let ana = db.show("ana@example.org").unwrap();
    assert_eq!(ana["given_name"], "Anna");
    assert_eq!(ana["groups"], serde_json::json!(["recovery-enabled", "admins"]));
    assert_eq!(ana["privileged"], true);
    assert_eq!(
        ana["attributes"],
        serde_json::json!({
            "address": "Rua \"Nova\", 12\r\n1000-001 Lisboa",
            "email": "ana@home.example",
            "employee": "E-7",
        })
    );
    assert_eq!(
        ok(&db.run(&["user", "set", "ana@example.org", "--country", "BR"])).trim(),
        "no change to u-1 (ana@example.org)"
    );

    // Disabling ends the user's browser sessions.
    let store = db.store().await;
    let session = BrowserSession { user_id: "u-1".into(), auth_time: now(), amr: "pwd otp".into() };
    store.insert_browser_session("browser-1", &session, now() + 3600).await.unwrap();
    let disabled = ok(&db.run(&["user", "set", "ana@example.org", "--disable"]));
    assert_eq!(
        disabled.lines().collect::<Vec<_>>(),
        ["enabled: true -> false", "updated u-1 (ana@example.org)", "ended 1 browser session(s)"]
    );
    assert_eq!(store.browser_session("browser-1", now()).await.unwrap(), None);
    assert!(!store.user_by_login("ana@example.org").await.unwrap().unwrap().enabled);

    // The audit query.
    for e in [
        event(1_790_000_000, AuditKind::RecoveryStarted, 'a', "u-1", "ok", None),
        event(1_790_000_100, AuditKind::DocumentFailed, 'a', "u-1", "revoked", None),
        event(1_790_000_200, AuditKind::RecoveryFailed, 'a', "u-1", "revoked", Some("RG-AAAA1111")),
        event(1_790_003_600, AuditKind::RecoveryStarted, 'b', "u-2", "ok", None),
        event(1_790_003_700, AuditKind::RecoveryCompleted, 'b', "u-2", "ok", None),
    ] {
        store.record_audit(&e).await.unwrap();
    }
    let at = |events: Vec<(u64, String)>| events.into_iter().map(|(at, _)| at - 1_790_000_000).collect::<Vec<_>>();
    assert_eq!(at(query(db, &[])), [0, 100, 200, 3600, 3700]);
    assert_eq!(at(query(db, &["--user", "u-2"])), [3600, 3700]);
    assert_eq!(
        query(db, &["--kind", "recovery-started"]),
        [(1_790_000_000, "recovery-started".into()), (1_790_003_600, "recovery-started".into())]
    );
    assert_eq!(at(query(db, &["--kind", "recovery-started", "--kind", "recovery-completed"])), [0, 3600, 3700]);
    assert_eq!(at(query(db, &["--since", "1790000100", "--until", "1790003600"])), [100, 200, 3600]);
    assert_eq!(
        at(query(db, &["--since", "2026-09-21T14:15:00Z", "--until", "2026-09-21T16:13:20+01:00"])),
        [100, 200, 3600]
    );
    assert_eq!(at(query(db, &["--reference", "RG-AAAA1111"])), [0, 100, 200], "the whole recovery of the reference");
    assert_eq!(at(query(db, &["--limit", "2"])), [3600, 3700], "the most recent, oldest first");
    assert_eq!(at(query(db, &["--user", "u-1", "--kind", "recovery-started", "--since", "1790000000"])), [0]);
    assert!(query(db, &["--user", "u-nobody"]).is_empty());

    let table = ok(&db.run(&["audit", "query", "--user", "u-1"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert_eq!(lines[0], "TIME                  KIND              USER  REASON   HELPDESK REF  FLOW");
    assert_eq!(lines[1], "2026-09-21T14:13:20Z  recovery-started  u-1   ok       -             aaaaaaaa");
    assert_eq!(lines[3], "2026-09-21T14:16:40Z  recovery-failed   u-1   revoked  RG-AAAA1111   aaaaaaaa");
    assert_eq!(ok(&db.run(&["audit", "query", "--user", "u-nobody"])).trim(), "no audit event matches");
    // The export is unchanged.
    assert_eq!(ok(&db.run(&["audit", "export", "--since", "1790003600"])).lines().count(), 2);
}

#[tokio::test]
async fn import_set_and_query_on_sqlite() {
    import_set_and_query(&Db::sqlite()).await;
}

#[tokio::test]
async fn import_set_and_query_on_postgresql() {
    import_set_and_query(&Db::postgres().await).await;
}

#[tokio::test]
async fn a_bad_row_imports_nothing_and_names_its_line() {
    let db = Db::sqlite();
    let header = "id,login,given_name,country\n";
    let good = "u-1,ana@example.org,Ana,PT\n";
    for (name, rows, expected) in [
        ("column.csv", b"id,login,grups\nu-1,a,x\n".to_vec(), "column.csv:1: unknown column `grups`"),
        ("login.csv", format!("{header}{good}u-2,,Bo,PT\n").into_bytes(), "login.csv:3: missing login"),
        (
            "country.csv",
            format!("{header}{good}u-2,bo@example.org,Bo,Portugal\n").into_bytes(),
            "country.csv:3: country `Portugal` is not an ISO 3166-1 alpha-2 code",
        ),
        ("lower.csv", format!("{header}{good}u-2,bo@example.org,Bo,pt\n").into_bytes(), "lower.csv:3: country `pt`"),
        (
            "twice.csv",
            format!("{header}{good}u-2,\"bo@example.org\",Bo,ES\n\"u-3\",\"ana@example.org\",Ana,PT\n").into_bytes(),
            "twice.csv:4: login `ana@example.org` is also on line 2",
        ),
        (
            "fields.csv",
            format!("{header}{good}u-2,bo@example.org,\"Bo, Jr\"\n").into_bytes(),
            "fields.csv:3: 3 field(s), but the header names 4 column(s)",
        ),
        (
            "quote.csv",
            format!("{header}{good}u-2,bo@example.org,\"Bo\n").into_bytes(),
            "quote.csv:3: a quoted field is not closed",
        ),
        // José in ISO 8859-1.
        (
            "latin1.csv",
            [format!("{header}{good}").as_bytes(), b"u-2,bo@example.org,Jos\xe9,ES\n"].concat(),
            "latin1.csv:3: not UTF-8",
        ),
        ("format.txt", format!("{header}{good}").into_bytes(), "cannot tell the format of"),
    ] {
        let file = db.file(name, &rows);
        let message = error(&db.run(&["user", "import", &file]));
        assert!(message.contains(expected), "{name}: {message}");
        assert!(db.show("ana@example.org").is_none(), "{name} imported nothing");
    }

    // --format names the format whatever the extension; JSON errors name the entry's line.
    let json = db.file(
        "users.txt",
        br#"[
  {"id": "u-1", "login": "ana@example.org"},
  {"id": "u-2", "login": "bo@example.org",
   "country": "es"}
]
"#,
    );
    let message = error(&db.run(&["user", "import", "--format", "json", &json]));
    assert!(message.contains("users.txt:3: country `es`"), "{message}");
    let typo = db.file("typo.json", br#"[{"id": "u-1", "login": "a", "grups": []}]"#);
    assert!(error(&db.run(&["user", "import", &typo])).contains("unknown field `grups`"));
    assert!(db.show("ana@example.org").is_none());
    let csv = db.file("users.data", format!("{header}{good}").as_bytes());
    assert_eq!(ok(&db.run(&["user", "import", "--format", "csv", &csv])).trim(), "imported 1 user(s)");
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/directory.json");
    assert_eq!(ok(&db.run(&["user", "import", demo.to_str().unwrap()])).trim(), "imported 3 user(s)");
    // JSON with --update: keys an entry has replace, absent keys stay.
    let json = db.file("names.json", br#"[{"id": "u-1", "login": "ana@example.org", "family_name": "Silva"}]"#);
    assert_eq!(
        ok(&db.run(&["user", "import", "--update", &json])).trim(),
        "imported 1 user(s): 0 created, 1 updated, 0 unchanged"
    );
    let ana = db.show("ana@example.org").unwrap();
    assert_eq!(
        (ana["given_name"].as_str(), ana["family_name"].as_str(), ana["country"].as_str()),
        (Some("Ana"), Some("Silva"), Some("PT"))
    );
}

#[tokio::test]
async fn user_set_refuses_bad_input_and_unknown_logins() {
    let db = Db::sqlite();
    ok(&db.run(&["user", "create", "--id", "u-1", "--login", "ana@example.org", "--country", "PT"]));
    let unknown = db.run(&["user", "set", "nobody@example.org", "--country", "PT"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(stderr(&unknown).trim(), "regain: no user has the login `nobody@example.org`");
    for (args, expected) in [
        (&["--country", "pt"][..], "country `pt` is not an ISO 3166-1 alpha-2 code"),
        (&["--country", "PRT"][..], "country `PRT`"),
        (&["--given-name", "  "][..], "the given name is empty"),
        (&["--family-name", ""][..], "the family name is empty"),
        (&["--add-group", "a;b"][..], "group `a;b` has a `;`"),
        (&["--add-group", "x", "--remove-group", "x"][..], "group `x` is both added and removed"),
        (&["--attribute", "novalue"][..], "`novalue` is not NAME=VALUE"),
        (&["--privileged", "maybe"][..], "invalid value 'maybe'"),
        (&["--enable", "--disable"][..], "cannot be used with"),
        (&[][..], "nothing to change"),
    ] {
        let mut command = vec!["user", "set", "ana@example.org"];
        command.extend_from_slice(args);
        let message = error(&db.run(&command));
        assert!(message.contains(expected), "{args:?}: {message}");
    }
    let unchanged = db.show("ana@example.org").unwrap();
    assert_eq!((unchanged["country"].as_str(), unchanged["given_name"].as_str()), (Some("PT"), None));
    assert!(
        error(&db.run(&["user", "create", "--id", "u-2", "--login", "bo", "--country", "pt"])).contains("country `pt`")
    );
    assert!(db.show("bo").is_none());
}

#[tokio::test]
async fn user_show_tells_which_methods_exist_and_never_their_secrets() {
    let db = Db::sqlite();
    ok(&db.run_with(
        &["user", "create", "--id", "u-1", "--login", "ana@example.org", "--password-stdin"],
        "correct horse\n",
    ));
    let fresh = db.show("ana@example.org").unwrap();
    assert_eq!(
        (&fresh["password"], &fresh["totp"], &fresh["passkeys"]),
        (&Value::Bool(true), &Value::Bool(false), &Value::from(0))
    );

    let store = db.store().await;
    let secret = b"twenty bytes secret!";
    store.set_totp("u-1", Some(secret)).await.unwrap();
    store.set_must_register("u-1", true).await.unwrap();
    let passkey = crate::support::passkey("cred-1", "u-1");
    assert!(store.insert_passkey(&passkey).await.unwrap());
    let hash = store.user_by_id("u-1").await.unwrap().unwrap().password_hash.unwrap();

    let out = ok(&db.run(&["user", "show", "ana@example.org"]));
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["password"], true);
    assert_eq!(shown["totp"], true);
    assert_eq!(shown["passkeys"], 1);
    assert_eq!(shown["must_register"], true);
    let mut keys: Vec<&str> = shown.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "attributes",
            "country",
            "enabled",
            "family_name",
            "given_name",
            "groups",
            "id",
            "last_sign_in",
            "login",
            "must_register",
            "passkeys",
            "password",
            "privileged",
            "totp"
        ]
    );
    for leak in [hash.as_str(), "argon2", "cred-1", "twenty bytes", "dHdlbnR5", "7477656e7479"] {
        assert!(!out.contains(leak), "`user show` prints `{leak}`: {out}");
    }
    assert!(db.show("nobody@example.org").is_none());
}

#[tokio::test]
async fn audit_query_refuses_unknown_kinds_and_times() {
    let db = Db::sqlite();
    let kind = error(&db.run(&["audit", "query", "--kind", "recovery-begun"]));
    assert!(kind.contains("unknown audit kind `recovery-begun` (one of: recovery-started, "), "{kind}");
    let time = error(&db.run(&["audit", "query", "--since", "yesterday"]));
    assert!(time.contains("`yesterday` is neither seconds since the Unix epoch nor an RFC 3339 date-time"), "{time}");
    let order = error(&db.run(&["audit", "query", "--since", "2", "--until", "1"]));
    assert!(order.contains("--since `2` is after --until `1`"), "{order}");
}

#[test]
fn every_audit_kind_is_listed_and_parses_back() {
    let names = kind_names();
    assert!(names.len() >= 13, "{names:?}");
    for name in &names {
        assert_eq!(&kind_name(parse_kind(name).unwrap()), name);
    }
    assert_eq!(names.first().map(String::as_str), Some("recovery-started"));
    assert_eq!(parse_kind("recovery-begun"), None);
}

#[test]
fn an_update_changes_the_fields_the_row_gives() {
    let stored = Account {
        id: "u-1".into(),
        login: "ana".into(),
        given_name: Some("Ana".into()),
        family_name: Some("Silva".into()),
        enabled: true,
        last_sign_in: Some(5),
        country: Some("PT".into()),
        groups: vec!["staff".into()],
        attributes: [("email".into(), "a@x".into()), ("phone".into(), "1".into())].into(),
        password_hash: Some("$argon2id$...".into()),
        ..Account::default()
    };
    let row = ImportRow {
        account: Account {
            id: "u-1".into(),
            login: "ana".into(),
            family_name: Some("Souza".into()),
            country: Some("BR".into()),
            attributes: [("email".into(), "b@x".into())].into(),
            ..Account::default()
        },
        provided: Provided {
            family_name: true,
            enabled: false,
            attributes: AttributeUpdate::Names(["email".into(), "phone".into()].into()),
            ..Provided::default()
        },
    };
    let merged = row.applied_to(&stored);
    assert_eq!(merged.given_name.as_deref(), Some("Ana"));
    assert_eq!(merged.family_name.as_deref(), Some("Souza"));
    assert_eq!(merged.country.as_deref(), Some("PT"), "the row does not give the country");
    assert!(merged.enabled, "nor whether the account is enabled");
    assert_eq!(merged.attributes, [("email".into(), "b@x".into())].into(), "a named attribute without a value goes");
    assert_eq!(merged.password_hash, stored.password_hash);
    assert_eq!(merged.last_sign_in, Some(5));
}
