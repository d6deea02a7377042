//! Users to import, read from a CSV file (a header row naming the columns) or a JSON
//! directory file (the format of `demo/directory.json`). Every row is checked before anything
//! is written, and every error names the file and the line.

use anyhow::bail;
use regain_server::accounts::Account;
use regain_server::admin::{AttributeUpdate, ImportRow, Provided};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// The format of a users file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values (RFC 4180) with a header row.
    Csv,
    /// A JSON array of users.
    Json,
}

/// Where a row comes from: `users.csv:7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file as the operator named it.
    pub file: String,
    /// The line the row starts on, from 1.
    pub line: usize,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The CSV columns besides `attr:NAME`.
const COLUMNS: [&str; 10] =
    ["id", "login", "given_name", "family_name", "country", "groups", "enabled", "privileged", "last_sign_in", "email"];

/// Reads the users of a file; the format comes from `format` or else the extension.
pub fn read(path: &Path, format: Option<Format>) -> anyhow::Result<Vec<(Place, ImportRow)>> {
    let name = path.display().to_string();
    let format = match format {
        Some(format) => format,
        None => match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Format::Csv,
            Some("json") => Format::Json,
            _ => bail!("cannot tell the format of `{name}` from its extension (add --format csv or --format json)"),
        },
    };
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read `{name}`: {e}"))?;
    let text = utf8(&name, &bytes)?;
    let rows = match format {
        Format::Csv => csv_rows(&name, text)?,
        Format::Json => json_rows(&name, text)?,
    };
    check_unique(&rows)?;
    Ok(rows)
}

/// The text of a file in UTF-8, without a byte order mark.
fn utf8<'a>(name: &str, bytes: &'a [u8]) -> anyhow::Result<&'a str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes.iter().take(e.valid_up_to()).filter(|b| **b == b'\n').count();
        anyhow::anyhow!("{name}:{line}: not UTF-8")
    })
}

/// One record of a CSV text.
#[derive(Debug, PartialEq, Eq)]
struct Record {
    /// The line it starts on.
    line: usize,
    fields: Vec<String>,
}

/// Splits a CSV text into records (RFC 4180: quoted fields may hold commas, line breaks
/// and doubled quotes; records end with CRLF or LF). Blank lines are skipped. An error is
/// `(line, message)`.
fn records(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    loop {
        let start = line;
        let mut fields = Vec::new();
        let mut quoted_any = false;
        // One field per turn; `more` says whether another field of this record follows.
        let finished = loop {
            let mut field = String::new();
            let end = if chars.peek() == Some(&'"') {
                chars.next();
                quoted_any = true;
                let opened = line;
                loop {
                    match chars.next() {
                        None => return Err((opened, "a quoted field is not closed".into())),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                    }
                }
                match chars.next() {
                    None => End::File,
                    Some(',') => End::Field,
                    Some('\n') => End::Record,
                    Some('\r') if chars.peek() == Some(&'\n') => {
                        chars.next();
                        End::Record
                    }
                    Some(c) => return Err((line, format!("`{}` after a closing quote", c.escape_debug()))),
                }
            } else {
                loop {
                    match chars.next() {
                        None => break End::File,
                        Some(',') => break End::Field,
                        Some('\n') => break End::Record,
                        Some('\r') if chars.peek() == Some(&'\n') => {
                            chars.next();
                            break End::Record;
                        }
                        Some('"') => {
                            return Err((
                                line,
                                "a quote inside an unquoted field (quote the field, double the quote)".into(),
                            ));
                        }
                        Some(c) => field.push(c),
                    }
                }
            };
            fields.push(field);
            match end {
                End::Field => {}
                End::Record => {
                    line += 1;
                    break false;
                }
                End::File => break true,
            }
        };
        let blank = !quoted_any && fields.len() == 1 && fields.first().is_some_and(String::is_empty);
        if !blank {
            out.push(Record { line: start, fields });
        }
        if finished {
            return Ok(out);
        }
    }
}

/// What ended a field.
enum End {
    Field,
    Record,
    File,
}

/// A CSV column.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Known(&'static str),
    Attribute(String),
}

fn csv_rows(name: &str, text: &str) -> anyhow::Result<Vec<(Place, ImportRow)>> {
    let records = records(text).map_err(|(line, message)| anyhow::anyhow!("{name}:{line}: {message}"))?;
    let mut records = records.into_iter();
    let Some(header) = records.next() else {
        bail!("{name}: the file is empty; the first row names the columns ({})", COLUMNS.join(","));
    };
    let at = |line: usize| Place { file: name.to_owned(), line };
    let mut columns = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, raw) in header.fields.iter().enumerate() {
        let title = raw.trim();
        if title.is_empty() {
            bail!("{}: column {} has no name", at(header.line), index + 1);
        }
        let column = if let Some(attribute) = title.strip_prefix("attr:") {
            let attribute = attribute.trim();
            if attribute.is_empty() || attribute.chars().any(char::is_control) {
                bail!("{}: column `{title}` names no attribute", at(header.line));
            }
            if attribute == "email" { Column::Known("email") } else { Column::Attribute(attribute.to_owned()) }
        } else if let Some(known) = COLUMNS.iter().find(|c| **c == title) {
            Column::Known(known)
        } else {
            bail!(
                "{}: unknown column `{}` (known: {}, and attr:NAME for other attributes)",
                at(header.line),
                raw.escape_debug(),
                COLUMNS.join(", ")
            );
        };
        let key = match &column {
            Column::Known(known) => (*known).to_owned(),
            Column::Attribute(attribute) => format!("attr:{attribute}"),
        };
        if !seen.insert(key.clone()) {
            bail!("{}: column `{key}` appears twice", at(header.line));
        }
        columns.push(column);
    }
    for required in ["id", "login"] {
        if !seen.contains(required) {
            bail!("{}: no `{required}` column", at(header.line));
        }
    }
    let mut rows = Vec::new();
    for record in records {
        let place = at(record.line);
        if record.fields.len() != columns.len() {
            bail!("{place}: {} field(s), but the header names {} column(s)", record.fields.len(), columns.len());
        }
        let row = csv_row(&columns, &record.fields).map_err(|message| anyhow::anyhow!("{place}: {message}"))?;
        rows.push((place, row));
    }
    Ok(rows)
}

/// One CSV record as a user. A non-empty cell gives its field; an empty one gives nothing
/// (the default for a new user, the stored value for an update).
fn csv_row(columns: &[Column], fields: &[String]) -> Result<ImportRow, String> {
    let mut account = Account { enabled: true, ..Account::default() };
    let mut given = Provided::default();
    let mut attributes = BTreeSet::new();
    for (column, raw) in columns.iter().zip(fields) {
        let (name, value) = match column {
            Column::Attribute(name) => {
                if !raw.is_empty() {
                    account.attributes.insert(name.clone(), raw.clone());
                    attributes.insert(name.clone());
                }
                continue;
            }
            Column::Known(name) => (*name, raw.trim()),
        };
        if value.is_empty() {
            continue;
        }
        match name {
            "id" => account.id = value.to_owned(),
            "login" => account.login = value.to_owned(),
            "given_name" => {
                account.given_name = Some(value.to_owned());
                given.given_name = true;
            }
            "family_name" => {
                account.family_name = Some(value.to_owned());
                given.family_name = true;
            }
            "country" => {
                account.country = Some(value.to_owned());
                given.country = true;
            }
            "groups" => {
                account.groups = value.split(';').map(str::trim).filter(|g| !g.is_empty()).map(str::to_owned).collect();
                given.groups = true;
            }
            "enabled" => {
                account.enabled = boolean("enabled", value)?;
                given.enabled = true;
            }
            "privileged" => {
                account.privileged = boolean("privileged", value)?;
                given.privileged = true;
            }
            "last_sign_in" => {
                account.last_sign_in = Some(time(value).map_err(|e| format!("last_sign_in: {e}"))?);
                given.last_sign_in = true;
            }
            _ => {
                account.attributes.insert(name.to_owned(), value.to_owned());
                attributes.insert(name.to_owned());
            }
        }
    }
    given.attributes = AttributeUpdate::Names(attributes);
    check_account(&account)?;
    Ok(ImportRow { account, provided: given })
}

fn boolean(column: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!("{column} must be true or false, not `{}`", value.escape_debug())),
    }
}

/// Seconds since the Unix epoch, or an RFC 3339 date-time.
pub fn time(value: &str) -> Result<i64, String> {
    let seconds = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse::<u64>().ok()
    } else {
        regain_core::json::rfc3339_seconds(value)
    };
    seconds.and_then(|s| i64::try_from(s).ok()).ok_or_else(|| {
        format!(
            "`{}` is neither seconds since the Unix epoch nor an RFC 3339 date-time (2026-01-31T09:00:00Z)",
            value.escape_debug()
        )
    })
}

fn json_rows(name: &str, text: &str) -> anyhow::Result<Vec<(Place, ImportRow)>> {
    let users = crate::directory_file::parse(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let keys: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let lines = entry_lines(text);
    let mut rows = Vec::new();
    for (index, (user, keys)) in users.into_iter().zip(keys).enumerate() {
        let place = Place { file: name.to_owned(), line: lines.get(index).copied().unwrap_or(1) };
        let last_sign_in = match user.last_sign_in {
            Some(t) => Some(i64::try_from(t).map_err(|_| anyhow::anyhow!("{place}: last_sign_in `{t}` is too large"))?),
            None => None,
        };
        let account = Account {
            id: user.id,
            login: user.login,
            given_name: user.given_name,
            family_name: user.family_name,
            enabled: user.enabled,
            last_sign_in,
            country: user.country,
            privileged: user.privileged,
            groups: user.groups,
            attributes: user.attributes.into_iter().collect(),
            ..Account::default()
        };
        let has = |key: &str| keys.contains_key(key);
        let provided = Provided {
            given_name: has("given_name"),
            family_name: has("family_name"),
            enabled: has("enabled"),
            last_sign_in: has("last_sign_in"),
            country: has("country"),
            privileged: has("privileged"),
            groups: has("groups"),
            attributes: if has("attributes") { AttributeUpdate::Replace } else { AttributeUpdate::default() },
        };
        check_account(&account).map_err(|message| anyhow::anyhow!("{place}: {message}"))?;
        rows.push((place, ImportRow { account, provided }));
    }
    Ok(rows)
}

/// The line each element of a JSON array starts on (the text is valid JSON already).
fn entry_lines(text: &str) -> Vec<usize> {
    let (mut lines, mut line, mut depth) = (Vec::new(), 1, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => {
                if depth == 1 {
                    lines.push(line);
                }
                depth += 1;
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    lines
}

/// The checks every imported user passes, whatever the file's format.
fn check_account(a: &Account) -> Result<(), String> {
    for (what, value) in [("id", &a.id), ("login", &a.login)] {
        if value.trim().is_empty() {
            return Err(format!("missing {what}"));
        }
        if value.chars().any(char::is_control) {
            return Err(format!("the {what} `{}` has a control character", value.escape_debug()));
        }
    }
    for (what, value) in [("given_name", &a.given_name), ("family_name", &a.family_name)] {
        if let Some(value) = value {
            check_name(what, value)?;
        }
    }
    if let Some(country) = &a.country {
        check_country(country)?;
    }
    for group in &a.groups {
        check_group(group)?;
    }
    if a.attributes.keys().any(|k| k.trim().is_empty()) {
        return Err("an attribute has no name".into());
    }
    Ok(())
}

/// A first or last name: not empty, no control characters.
pub fn check_name(what: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} `{}` has a control character", value.escape_debug()));
    }
    Ok(())
}

/// An ISO 3166-1 alpha-2 code: two capital letters.
pub fn check_country(value: &str) -> Result<(), String> {
    if value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!(
            "country `{}` is not an ISO 3166-1 alpha-2 code (two capital letters, as `PT`)",
            value.escape_debug()
        ))
    }
}

/// A group name: not empty, no `;` (the separator of the CSV `groups` column), no control
/// characters.
pub fn check_group(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("a group name is empty".into());
    }
    if value.contains(';') || value.chars().any(char::is_control) {
        return Err(format!("group `{}` has a `;` or a control character", value.escape_debug()));
    }
    Ok(())
}

/// Refuses a second row with a login or an id seen before.
fn check_unique(rows: &[(Place, ImportRow)]) -> anyhow::Result<()> {
    let mut logins: HashMap<&str, usize> = HashMap::new();
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (place, row) in rows {
        if let Some(first) = logins.insert(&row.account.login, place.line) {
            bail!("{place}: login `{}` is also on line {first}", row.account.login);
        }
        if let Some(first) = ids.insert(&row.account.id, place.line) {
            bail!("{place}: id `{}` is also on line {first}", row.account.id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<Vec<String>> {
        records(text).unwrap().into_iter().map(|r| r.fields).collect()
    }

    #[test]
    fn rfc_4180_quoting() {
        let text = "a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\"two\nlines\"\r\nplain,,\"\"\n";
        assert_eq!(
            fields(text),
            vec![vec!["a", "b", "c"], vec!["x, y", "say \"hi\"", "two\nlines"], vec!["plain", "", ""]]
        );
        let lines: Vec<usize> = records(text).unwrap().iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 2, 4], "a record's line is where it starts");
    }

    #[test]
    fn blank_lines_and_a_missing_final_newline() {
        assert_eq!(fields("a,b\n\n1,2"), vec![vec!["a", "b"], vec!["1", "2"]]);
        assert_eq!(records("a\n\n\nb\n").unwrap().last().unwrap().line, 4);
        assert!(fields("").is_empty());
    }

    #[test]
    fn malformed_quoting_names_the_line() {
        assert_eq!(records("a\nb,\"open\n\nstill").unwrap_err().0, 2);
        let (line, message) = records("a\nb\"c\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(message.contains("quote inside an unquoted field"), "{message}");
        assert!(records("\"a\"b\n").unwrap_err().1.contains("after a closing quote"));
    }

    #[test]
    fn rows_become_accounts() {
        let text = "id,login,groups,enabled,last_sign_in,attr:phone,email\n\
                    u-1,ana, staff ; admins ;,no,2026-01-31T09:00:00Z,+351,ana@home\n\
                    u-2,bo,,,,,\n";
        let rows = csv_rows("users.csv", text).unwrap();
        let (place, ana) = &rows[0];
        assert_eq!(place.to_string(), "users.csv:2");
        assert_eq!(ana.account.groups, ["staff", "admins"]);
        assert!(!ana.account.enabled);
        assert_eq!(ana.account.last_sign_in, Some(1_769_850_000));
        assert_eq!(ana.account.attributes.get("phone").map(String::as_str), Some("+351"));
        assert_eq!(ana.account.attributes.get("email").map(String::as_str), Some("ana@home"));
        let bo = &rows[1].1;
        assert!(bo.account.enabled, "an empty cell gives the default");
        assert_eq!(bo.provided, Provided::default(), "and nothing to update");
    }

    #[test]
    fn refusals_name_the_line() {
        let err = |text: &str| csv_rows("u.csv", text).unwrap_err().to_string();
        assert!(err("id,login,grups\n").starts_with("u.csv:1: unknown column `grups`"), "{}", err("id,login,grups\n"));
        assert_eq!(err("id\n"), "u.csv:1: no `login` column");
        assert_eq!(err("id,login,\n"), "u.csv:1: column 3 has no name");
        assert!(err("id,login,prénom\n").starts_with("u.csv:1: unknown column `prénom`"));
        assert_eq!(err("id,login,login\n"), "u.csv:1: column `login` appears twice");
        assert_eq!(err("id,login\nu-1,a\nu-2\n"), "u.csv:3: 1 field(s), but the header names 2 column(s)");
        assert_eq!(err("id,login\nu-1,\n"), "u.csv:2: missing login");
        assert!(err("id,login,country\nu-1,a,pt\n").starts_with("u.csv:2: country `pt` is not"));
        assert!(err("id,login,enabled\nu-1,a,maybe\n").starts_with("u.csv:2: enabled must be true or false"));
        assert!(err("id,login,last_sign_in\nu-1,a,yesterday\n").starts_with("u.csv:2: last_sign_in: `yesterday`"));
        assert_eq!(
            err(""),
            "u.csv: the file is empty; the first row names the columns \
             (id,login,given_name,family_name,country,groups,enabled,privileged,last_sign_in,email)"
        );
    }

    #[test]
    fn json_entries_know_their_lines_and_their_keys() {
        let text = r#"[
  {"id": "u-1", "login": "a", "attributes": {"x": "{[\""}},
  {
    "id": "u-2", "login": "b", "country": "ES"
  }
]
"#;
        let rows = json_rows("d.json", text).unwrap();
        assert_eq!(rows[0].0.line, 2);
        assert_eq!(rows[1].0.line, 3);
        assert_eq!(rows[0].1.provided.attributes, AttributeUpdate::Replace);
        assert!(rows[1].1.provided.country && !rows[1].1.provided.enabled);
        let bad = json_rows(
            "d.json",
            "[{\"id\":\"u-1\",\"login\":\"a\"},\n{\"id\":\"u-2\",\"login\":\"b\",\"country\":\"Spain\"}]",
        );
        assert!(bad.unwrap_err().to_string().starts_with("d.json:2: country `Spain`"));
    }

    #[test]
    fn utf8_with_or_without_a_byte_order_mark() {
        assert_eq!(utf8("f", b"\xEF\xBB\xBFid").unwrap(), "id");
        assert_eq!(utf8("f", "José".as_bytes()).unwrap(), "José");
        assert_eq!(utf8("f", b"a\nb\n\xFF").unwrap_err().to_string(), "f:3: not UTF-8");
    }

    #[test]
    fn times_in_seconds_or_rfc_3339() {
        assert_eq!(time("1790000000"), Ok(1_790_000_000));
        assert_eq!(time("2026-01-31T09:00:00Z"), Ok(1_769_850_000));
        assert_eq!(time("2026-01-31T10:00:00+01:00"), Ok(1_769_850_000));
        assert!(time("").is_err());
        assert!(time("-5").is_err());
    }
}
