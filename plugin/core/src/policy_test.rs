//! Data-driven policy tests (`policies/tests/*.json`), run by `regain policy test`.
//!
//! A file holds entities in Cedar's JSON entity format and cases; each case names principal,
//! action and resource as Cedar uids (`Regain::User::"u-1"`), a context, the expected
//! decision and, optionally, the exact set of determining policy ids.

use crate::policy::Policies;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

/// One test file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// What the file covers.
    #[serde(default)]
    pub description: Option<String>,
    /// Entities in Cedar's JSON entity format (`uid`, `attrs`, `parents`).
    pub entities: Vec<Value>,
    /// The cases.
    pub cases: Vec<TestCase>,
}

/// One question and its expected answer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What the case shows.
    pub name: String,
    /// `Regain::User::"<id>"`.
    pub principal: String,
    /// `Regain::Action::"<name>"`.
    pub action: String,
    /// `Regain::Deployment::"default"` or `Regain::Idv::"<id>"`.
    pub resource: String,
    /// The context record of the action.
    #[serde(default = "empty_object")]
    pub context: Value,
    /// `allow` or `deny`.
    pub decision: Expected,
    /// The exact set of determining policy ids, when the case pins them.
    #[serde(default)]
    pub determining: Option<Vec<String>>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// The expected decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    /// Permitted.
    Allow,
    /// Denied.
    Deny,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The case's name.
    pub name: String,
    /// Whether decision and determining policies were as expected.
    pub passed: bool,
    /// What was wrong, when it failed.
    pub message: Option<String>,
    /// The determining policy ids.
    pub determining: Vec<String>,
}

/// `Type::"id"` split into its type and id.
fn split_uid(uid: &str) -> Option<(&str, &str)> {
    let (kind, id) = uid.split_once("::\"").map(|_| uid.rsplit_once("::\""))??;
    Some((kind, id.strip_suffix('"')?))
}

/// Runs every case of `file`.
pub fn run(policies: &Policies, file: &TestFile) -> Vec<Outcome> {
    let facts = policies.facts(Value::Array(file.entities.clone()));
    file.cases
        .iter()
        .map(|case| {
            let fail = |message: String| Outcome {
                name: case.name.clone(),
                passed: false,
                message: Some(message),
                determining: Vec::new(),
            };
            let facts = match &facts {
                Ok(facts) => facts,
                Err(e) => return fail(format!("the file's entities are invalid: {e}")),
            };
            let (Some(principal), Some(action), Some(resource)) =
                (split_uid(&case.principal), split_uid(&case.action), split_uid(&case.resource))
            else {
                return fail("principal, action and resource must be written `Type::\"id\"`".into());
            };
            if action.0 != "Regain::Action" {
                return fail(format!("`{}` is not a `Regain::Action`", case.action));
            }
            let decision = match policies.decide_with(principal, action.1, resource, case.context.clone(), facts) {
                Ok(decision) => decision,
                Err(e) => return fail(e),
            };
            let got = if decision.allowed { Expected::Allow } else { Expected::Deny };
            let mut problems = Vec::new();
            if got != case.decision {
                problems.push(format!("expected {:?}, got {got:?}", case.decision).to_lowercase());
            }
            if let Some(expected) = &case.determining {
                let mut expected = expected.clone();
                expected.sort();
                if expected != decision.determining {
                    problems
                        .push(format!("expected determining policies {expected:?}, got {:?}", decision.determining));
                }
            }
            if !decision.errors.is_empty() {
                problems.push(format!("policies failed to evaluate: {}", decision.errors.join("; ")));
            }
            Outcome {
                name: case.name.clone(),
                passed: problems.is_empty(),
                message: (!problems.is_empty()).then(|| problems.join("; ")),
                determining: decision.determining,
            }
        })
        .collect()
}

/// The policies that determined no case: the ones the tests do not exercise.
pub fn uncovered<'a>(policies: &Policies, outcomes: impl IntoIterator<Item = &'a Outcome>) -> Vec<String> {
    let covered: BTreeSet<&str> = outcomes.into_iter().flat_map(|o| o.determining.iter().map(String::as_str)).collect();
    policies.ids().into_iter().filter(|id| !covered.contains(id.as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::split_uid;

    #[test]
    fn uids_split_at_the_last_separator() {
        assert_eq!(split_uid(r#"Regain::User::"u-1""#), Some(("Regain::User", "u-1")));
        assert_eq!(split_uid(r#"Regain::Action::"startRecovery""#), Some(("Regain::Action", "startRecovery")));
        assert_eq!(split_uid("Regain::User"), None);
        assert_eq!(split_uid(r#"Regain::User::"u-1"#), None);
    }
}
