//! The operator's commands over the users and the audit log: `regain user import|set|show`
//! and `regain audit query`.

use crate::serve::{ServerArgs, open};
use crate::users_file::{self, Format};
use anyhow::bail;
use regain_core::env::{AuditKind, AuditRecord};
use regain_server::admin::{AuditFilter, ImportError, kind_name, kind_names, parse_kind};
use regain_server::store::now;
use std::path::Path;
use std::process::ExitCode;

/// `regain user import`: every row is checked, then all are written in one transaction.
pub async fn import(
    server: &ServerArgs,
    file: &Path,
    format: Option<Format>,
    update: bool,
) -> anyhow::Result<ExitCode> {
    let (places, rows): (Vec<_>, Vec<_>) = users_file::read(file, format)?.into_iter().unzip();
    let (_, store) = open(server).await?;
    match store.import_users(&rows, update, now()).await {
        Ok(done) if update => println!(
            "imported {} user(s): {} created, {} updated, {} unchanged",
            rows.len(),
            done.created,
            done.updated,
            done.unchanged
        ),
        Ok(_) => println!("imported {} user(s)", rows.len()),
        Err(e) => {
            let hint =
                if matches!(e, ImportError::Exists { .. }) { " (add --update to change existing users)" } else { "" };
            match e.row().and_then(|row| places.get(row)) {
                Some(place) => bail!("{place}: {e}{hint}; nothing was imported"),
                None => bail!("{}: {e}; nothing was imported", file.display()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `regain user set LOGIN ...`.
#[derive(clap::Args)]
pub struct SetArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The user's login.
    login: String,
    /// New first name.
    #[arg(long)]
    given_name: Option<String>,
    /// New last name.
    #[arg(long)]
    family_name: Option<String>,
    /// New country, ISO 3166-1 alpha-2 (`PT`).
    #[arg(long)]
    country: Option<String>,
    /// Add a group; repeat for several.
    #[arg(long = "add-group", value_name = "GROUP")]
    add_groups: Vec<String>,
    /// Remove a group; repeat for several.
    #[arg(long = "remove-group", value_name = "GROUP")]
    remove_groups: Vec<String>,
    /// Let the user sign in.
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    /// Stop the user from signing in; their browser sessions end.
    #[arg(long)]
    disable: bool,
    /// Mark the user privileged (administrators) or not.
    #[arg(long, value_name = "true|false")]
    privileged: Option<bool>,
    /// Set an attribute (`email=ana@example.org`); an empty value removes it. Repeat for several.
    #[arg(long = "attribute", value_name = "NAME=VALUE", value_parser = attribute)]
    attributes: Vec<(String, String)>,
}

fn attribute(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() && !name.chars().any(char::is_control) => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{}` is not NAME=VALUE", text.escape_debug())),
    }
}

/// The JSON text of an optional value, for the list of changes.
fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| serde_json::Value::from(v).to_string())
}

/// `regain user set`: checks every option, changes the account, prints what changed.
pub async fn set(args: &SetArgs) -> anyhow::Result<ExitCode> {
    let nothing = args.given_name.is_none()
        && args.family_name.is_none()
        && args.country.is_none()
        && args.add_groups.is_empty()
        && args.remove_groups.is_empty()
        && !args.enable
        && !args.disable
        && args.privileged.is_none()
        && args.attributes.is_empty();
    if nothing {
        bail!("nothing to change (see `regain user set --help`)");
    }
    let given_name = args.given_name.as_deref().map(str::trim);
    let family_name = args.family_name.as_deref().map(str::trim);
    if let Some(name) = given_name {
        users_file::check_name("the given name", name).map_err(anyhow::Error::msg)?;
    }
    if let Some(name) = family_name {
        users_file::check_name("the family name", name).map_err(anyhow::Error::msg)?;
    }
    if let Some(country) = &args.country {
        users_file::check_country(country).map_err(anyhow::Error::msg)?;
    }
    for group in args.add_groups.iter().chain(&args.remove_groups) {
        users_file::check_group(group).map_err(anyhow::Error::msg)?;
    }
    if let Some(group) = args.add_groups.iter().find(|g| args.remove_groups.contains(g)) {
        bail!("group `{group}` is both added and removed");
    }

    let (_, store) = open(&args.server).await?;
    let Some(stored) = store.user_by_login(&args.login).await? else {
        return Ok(refused(&format!("no user has the login `{}`", args.login)));
    };
    let mut account = stored.clone();
    let mut changes = Vec::new();
    for (what, field, value) in
        [("given_name", &mut account.given_name, given_name), ("family_name", &mut account.family_name, family_name)]
    {
        if let Some(value) = value
            && field.as_deref() != Some(value)
        {
            changes.push(format!("{what}: {} -> {}", shown(field.as_deref()), shown(Some(value))));
            *field = Some(value.to_owned());
        }
    }
    if let Some(country) = &args.country
        && account.country.as_ref() != Some(country)
    {
        changes.push(format!("country: {} -> {}", shown(account.country.as_deref()), shown(Some(country))));
        account.country = Some(country.clone());
    }
    for group in &args.add_groups {
        if !account.groups.contains(group) {
            changes.push(format!("groups: added {}", shown(Some(group))));
            account.groups.push(group.clone());
        }
    }
    for group in &args.remove_groups {
        if account.groups.contains(group) {
            changes.push(format!("groups: removed {}", shown(Some(group))));
            account.groups.retain(|g| g != group);
        }
    }
    let enabled = if args.enable { Some(true) } else { args.disable.then_some(false) };
    for (what, field, value) in
        [("enabled", &mut account.enabled, enabled), ("privileged", &mut account.privileged, args.privileged)]
    {
        if let Some(value) = value
            && *field != value
        {
            changes.push(format!("{what}: {field} -> {value}"));
            *field = value;
        }
    }
    for (name, value) in &args.attributes {
        let before = account.attributes.get(name).cloned();
        let after = (!value.is_empty()).then(|| value.clone());
        if before != after {
            changes.push(format!("attribute {name}: {} -> {}", shown(before.as_deref()), shown(after.as_deref())));
            match after {
                Some(value) => account.attributes.insert(name.clone(), value),
                None => account.attributes.remove(name),
            };
        }
    }

    if changes.is_empty() {
        println!("no change to {} ({})", account.id, account.login);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(ended) = store.update_account(&account, now()).await? else {
        return Ok(refused(&format!("no user has the login `{}`", args.login)));
    };
    for change in &changes {
        println!("{change}");
    }
    println!("updated {} ({})", account.id, account.login);
    if ended > 0 {
        println!("ended {ended} browser session(s)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `regain user show LOGIN`: the account as JSON, without secrets.
pub async fn show(server: &ServerArgs, login: &str) -> anyhow::Result<ExitCode> {
    let (_, store) = open(server).await?;
    match store.user_view(login).await? {
        Some(view) => {
            println!("{}", serde_json::to_string_pretty(&view)?);
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(refused(&format!("no user has the login `{login}`"))),
    }
}

/// Says why the command refused, on the error channel, and exits 1.
#[expect(clippy::print_stderr, reason = "the command's error channel")]
fn refused(message: &str) -> ExitCode {
    eprintln!("regain: {message}");
    ExitCode::from(crate::EXIT_REFUSED)
}

/// `regain audit query`.
#[derive(clap::Args)]
pub struct AuditQueryArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Only events of this user id.
    #[arg(long)]
    user: Option<String>,
    /// Only events of this kind (`recovery-failed`); repeat for several.
    #[arg(long = "kind", value_name = "KIND", value_parser = kind)]
    kinds: Vec<AuditKind>,
    /// Only events at or after this time: seconds since the Unix epoch or RFC 3339.
    #[arg(long, value_name = "TIME", value_parser = users_file::time)]
    since: Option<i64>,
    /// Only events at or before this time: seconds since the Unix epoch or RFC 3339.
    #[arg(long, value_name = "TIME", value_parser = users_file::time)]
    until: Option<i64>,
    /// Only the recovery a helpdesk reference belongs to (`RG-XXXXXXXX`): all its events.
    #[arg(long)]
    reference: Option<String>,
    /// Only the most recent N matching events.
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// JSON lines (schemas/audit-event.schema.json) instead of a table.
    #[arg(long)]
    json: bool,
}

fn kind(name: &str) -> Result<AuditKind, String> {
    parse_kind(name)
        .ok_or_else(|| format!("unknown audit kind `{}` (one of: {})", name.escape_debug(), kind_names().join(", ")))
}

/// `regain audit query`: matching events, oldest first, as a table or JSON lines.
pub async fn query(args: &AuditQueryArgs) -> anyhow::Result<ExitCode> {
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since > until
    {
        bail!("--since `{since}` is after --until `{until}`");
    }
    let (_, store) = open(&args.server).await?;
    let filter = AuditFilter {
        user_id: args.user.clone(),
        kinds: args.kinds.clone(),
        since: args.since,
        until: args.until,
        helpdesk_ref: args.reference.clone(),
        limit: args.limit.map(i64::from),
    };
    let events = store.audit_query(&filter).await?;
    if args.json {
        for event in &events {
            println!("{}", serde_json::to_string(event)?);
        }
    } else if events.is_empty() {
        println!("no audit event matches");
    } else {
        for line in table(&events) {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The events as aligned columns under a header; control characters are escaped so that a
/// stored value cannot move the terminal's cursor.
fn table(events: &[AuditRecord]) -> Vec<String> {
    let cell = |value: Option<&str>| match value {
        Some(v) if !v.is_empty() => v.chars().flat_map(char::escape_debug).collect::<String>(),
        _ => "-".to_owned(),
    };
    let header = ["TIME", "KIND", "USER", "REASON", "HELPDESK REF", "FLOW"].map(str::to_owned);
    let rows: Vec<[String; 6]> = events
        .iter()
        .map(|e| {
            [
                regain_core::json::rfc3339(e.at),
                kind_name(e.kind),
                cell(e.user_id.as_deref()),
                cell(Some(&e.reason)),
                cell(e.helpdesk_ref.as_deref()),
                cell(Some(&e.flow_id.chars().take(8).collect::<String>())),
            ]
        })
        .collect();
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(value.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let line: Vec<String> = row.iter().zip(widths).map(|(value, width)| format!("{value:width$}")).collect();
            line.join("  ").trim_end().to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_and_escapes() {
        let event = |user: Option<&str>, reason: &str| AuditRecord {
            at: 1_790_000_000,
            kind: AuditKind::RecoveryFailed,
            flow_id: "0123456789abcdef0123456789abcdef".into(),
            user_id: user.map(str::to_owned),
            reason: reason.into(),
            helpdesk_ref: None,
        };
        let lines = table(&[event(Some("u-1"), "ok"), event(None, "bad\x1b[2J")]);
        assert_eq!(lines[0], "TIME                  KIND             USER  REASON        HELPDESK REF  FLOW");
        assert_eq!(lines[1], "2026-09-21T14:13:20Z  recovery-failed  u-1   ok            -             01234567");
        assert_eq!(lines[2], "2026-09-21T14:13:20Z  recovery-failed  -     bad\\u{1b}[2J  -             01234567");
    }

    #[test]
    fn attributes_are_name_equals_value() {
        assert_eq!(attribute("email=a=b"), Ok(("email".into(), "a=b".into())));
        assert_eq!(attribute("phone="), Ok(("phone".into(), String::new())));
        assert!(attribute("=x").is_err());
        assert!(attribute("novalue").is_err());
    }
}
