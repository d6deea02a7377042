//! Operator safety checks: configurations that validate but cannot work, found before a user
//! meets them. Run by `regain policy validate` and when a host loads a deployment.

use crate::config::Deployment;
use crate::env::User;
use crate::policy::Policies;
use std::collections::BTreeSet;
use std::fmt;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look; recoveries still work.
    Warning,
    /// Some users can never recover.
    Error,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// Stable code: `tap-scope`, `country-unserved`, `no-idv-available`, `policy-never-applies`.
    pub code: &'static str,
    /// What is wrong and what to do, naming the keys, groups or policies involved.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{severity}[{}]: {}", self.code, self.message)
    }
}

fn finding(severity: Severity, code: &'static str, message: String) -> Finding {
    Finding { severity, code, message }
}

/// Checks a deployment, its policies and, when given, the directory's users.
pub fn run(deployment: &Deployment, policies: &Policies, users: Option<&[User]>) -> Vec<Finding> {
    let mut out = Vec::new();
    let scope = deployment.scope_group.as_str();
    let tap_scope = deployment.tap_scope();

    // Entra's most common failure: the recovery scope is not inside the pass policy's scope.
    match users {
        Some(users) if scope != tap_scope => {
            let outside: Vec<&str> = users
                .iter()
                .filter(|u| u.groups.iter().any(|g| g == scope) && !u.groups.iter().any(|g| g == tap_scope))
                .map(|u| u.id.as_str())
                .collect();
            if !outside.is_empty() {
                out.push(finding(
                    Severity::Error,
                    "tap-scope",
                    format!(
                        "{} user(s) in the recovery scope `{scope}` are outside the TAP scope `{tap_scope}` and can \
                         never finish a recovery (e.g. {}); add them to `{tap_scope}` or narrow `scope_group`",
                        outside.len(),
                        outside.iter().take(3).copied().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        None if scope != tap_scope => out.push(finding(
            Severity::Warning,
            "tap-scope",
            format!(
                "`scope_group` `{scope}` differs from `tap_scope_group` `{tap_scope}`: every member of `{scope}` must \
                 also be in `{tap_scope}` (give the directory to check)"
            ),
        )),
        _ => {}
    }

    let available: Vec<_> = deployment.idvs.iter().filter(|idv| idv.available).collect();
    if available.is_empty() {
        out.push(finding(
            Severity::Error,
            "no-idv-available",
            "every `[[idv]]` profile is marked `available = false`: no recovery can start".into(),
        ));
    }

    if let Some(users) = users {
        let serves = |country: &str| {
            available.iter().any(|idv| idv.countries.iter().any(|c| c == "*" || c.eq_ignore_ascii_case(country)))
        };
        let unserved: BTreeSet<&str> = users
            .iter()
            .filter(|u| u.groups.iter().any(|g| g == scope))
            .filter_map(|u| u.country.as_deref())
            .filter(|country| !serves(country))
            .collect();
        for country in unserved {
            out.push(finding(
                Severity::Error,
                "country-unserved",
                format!("users in the recovery scope live in `{country}`, which no available `[[idv]]` profile serves"),
            ));
        }
    }

    for (policy, kind, id) in policies.scope_references() {
        let exists = match kind.as_str() {
            "Regain::Idv" => Some(deployment.idvs.iter().any(|idv| idv.id == id)),
            "Regain::Deployment" => Some(id == "default"),
            "Regain::Group" => {
                users.map(|users| id == scope || id == tap_scope || users.iter().any(|u| u.groups.contains(&id)))
            }
            "Regain::User" => users.map(|users| users.iter().any(|u| u.id == id)),
            _ => None,
        };
        if exists == Some(false) {
            out.push(finding(
                Severity::Warning,
                "policy-never-applies",
                format!("policy `{policy}` is scoped to {kind}::\"{id}\", which does not exist, so it can never apply"),
            ));
        }
    }
    for warning in policies.warnings() {
        out.push(finding(Severity::Warning, "policy-never-applies", warning.to_string()));
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}
