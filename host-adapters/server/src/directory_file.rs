//! A user directory written as JSON: the demo directory.

use regain_host::wit::types::User;
use serde::Deserialize;

/// One user as written in the file. Unknown keys are refused, so a typo never silently drops
/// an attribute.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    login: String,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    last_sign_in: Option<u64>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    privileged: bool,
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

impl From<Entry> for User {
    fn from(e: Entry) -> Self {
        User {
            id: e.id,
            login: e.login,
            given_name: e.given_name,
            family_name: e.family_name,
            enabled: e.enabled,
            last_sign_in: e.last_sign_in,
            groups: e.groups,
            country: e.country,
            privileged: e.privileged,
            attributes: e.attributes.into_iter().collect(),
        }
    }
}

/// Parses a directory's text; errors name the offending key.
pub fn parse(text: &str) -> anyhow::Result<Vec<User>> {
    let entries: Vec<Entry> = serde_json::from_str(text)?;
    Ok(entries.into_iter().map(User::from).collect())
}

/// Reads a directory file; errors name the file and the offending key.
pub fn load(path: &std::path::Path) -> anyhow::Result<Vec<User>> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    parse(&text).with_context(|| format!("`{}` is not a user directory", path.display()))
}

/// The core's view of a directory user.
pub fn to_core(u: User) -> regain_core::User {
    regain_core::User::from(u)
}

/// The directory of `regain demo`.
pub fn demo_users() -> Vec<User> {
    let text = include_str!("../demo/directory.json");
    parse(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_directory_parses() {
        let users = parse(include_str!("../demo/directory.json")).unwrap();
        assert!(users.len() >= 3);
        assert!(users.iter().any(|u| u.login == "ana.silva@example.org"));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = parse(r#"[{"id":"1","login":"a","grups":[]}]"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `grups`"), "{err}");
    }

    #[test]
    fn defaults_fill_optional_fields() {
        let users = parse(r#"[{"id":"1","login":"a"}]"#).unwrap();
        assert!(users[0].enabled);
        assert!(users[0].groups.is_empty());
    }
}
