//! Cedar policies: loading (strict validation against the built-in schema, `@id` required
//! and unique) and deciding.
//!
//! The schema is part of the plugin: it is the vocabulary of the facts the plugin computes,
//! so it ships with the code that computes them. Policies come from the deployment.

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, PrincipalConstraint, Request, ResourceConstraint, RestrictedExpression, Schema,
    ValidationMode, Validator,
};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::str::FromStr as _;

/// The schema policies are validated against (`policies/regain.cedarschema`).
pub const SCHEMA: &str = include_str!("../../../policies/regain.cedarschema");

/// The default policy pack, as shipped in `policies/`.
pub const DEFAULT_POLICIES: [(&str, &str); 4] = [
    ("eligibility.cedar", include_str!("../../../policies/eligibility.cedar")),
    ("routing.cedar", include_str!("../../../policies/routing.cedar")),
    ("tap.cedar", include_str!("../../../policies/tap.cedar")),
    ("scope.cedar", include_str!("../../../policies/scope.cedar")),
];

/// A problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: String,
    /// 1-based line, 0 when the problem has no position.
    pub line: u32,
    /// 1-based column, 0 when the problem has no position.
    pub column: u32,
    /// One line, lowercase.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// Line and column (1-based) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (u32, u32) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX))
}

fn diagnostic(file: &str, text: &str, offset: Option<usize>, message: impl Into<String>) -> Diagnostic {
    let (line, column) = offset.map_or((0, 0), |o| position(text, o));
    Diagnostic { file: file.to_owned(), line, column, message: message.into() }
}

/// First labelled offset of a miette diagnostic, if any.
fn first_offset(d: &dyn miette::Diagnostic) -> Option<usize> {
    d.labels().and_then(|mut labels| labels.next()).map(|l| l.offset())
}

/// Byte offsets where each policy statement (annotations included) starts: the first
/// token after the start of the text or after a `;`, skipping comments and white space.
fn statement_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut expecting = true;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '/' if chars.peek().is_some_and(|(_, n)| *n == '/') => {
                for (_, n) in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                if expecting {
                    starts.push(i);
                    expecting = false;
                }
                while let Some((_, n)) = chars.next() {
                    match n {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            ';' => expecting = true,
            c if c.is_whitespace() => {}
            _ => {
                if expecting {
                    starts.push(i);
                    expecting = false;
                }
            }
        }
    }
    starts
}

/// A validated policy set and the schema.
#[derive(Debug, Clone)]
pub struct Policies {
    set: PolicySet,
    schema: Schema,
    /// Entity type names parsed once: Cedar parses a name with its full grammar, which
    /// costs more than the decision itself.
    types: HashMap<String, EntityTypeName>,
    /// For each action, the policies that can apply to it: evaluation skips the others.
    by_action: HashMap<EntityUid, PolicySet>,
    /// Each policy's annotations by its `@id`: Cedar parses an annotation key with its
    /// full grammar (a lexer built per call) on every look-up.
    annotations: HashMap<String, HashMap<String, String>>,
    /// What validation accepted but an author should see, such as a policy that can never
    /// apply.
    warnings: Vec<Diagnostic>,
}

/// Entities checked against the schema, ready for several decisions.
#[derive(Debug, Clone)]
pub struct Facts(Entities);

impl Facts {
    /// The same entities with the same attributes and ancestors (Cedar's own equality on
    /// entities compares their uids only).
    pub fn same_as(&self, other: &Self) -> bool {
        self.0.deep_eq(&other.0)
    }
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Permitted (some permit applied, no forbid did).
    pub allowed: bool,
    /// The `@id`s of the policies that determined the answer, sorted.
    pub determining: Vec<String>,
    /// Evaluation errors (a policy that failed to evaluate is skipped).
    pub errors: Vec<String>,
}

/// The built-in schema; it is compiled in, and a test proves it parses.
fn schema() -> Result<Schema, Diagnostic> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _warnings)| schema)
        .map_err(|e| diagnostic("regain.cedarschema", SCHEMA, first_offset(&e), e.to_string()))
}

impl Policies {
    /// Parses, names and strictly validates policy files; all problems are reported.
    pub fn load(files: &[(&str, &str)]) -> Result<Self, Vec<Diagnostic>> {
        let schema = schema().map_err(|d| vec![d])?;
        let mut set = PolicySet::new();
        let mut problems = Vec::new();
        // Where each policy came from, to place validation errors.
        let mut origin: Vec<(String, &str, &str)> = Vec::new();
        for (file, text) in files {
            let parsed = match PolicySet::from_str(text) {
                Ok(parsed) => parsed,
                Err(errors) => {
                    for e in errors.iter() {
                        problems.push(diagnostic(file, text, first_offset(e), e.to_string()));
                    }
                    continue;
                }
            };
            // Policies parsed from one text get the ids `policy0`, `policy1`... in order.
            let starts = statement_starts(text);
            let mut in_order: Vec<_> = parsed.policies().collect();
            in_order.sort_by_key(|p| {
                p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX)
            });
            for (index, policy) in in_order.into_iter().enumerate() {
                let offset = starts.get(index).copied();
                let Some(id) = policy.annotation("id") else {
                    problems.push(diagnostic(file, text, offset, "policy has no `@id` annotation"));
                    continue;
                };
                let named = policy.new_id(PolicyId::new(id));
                if let Err(e) = set.add(named) {
                    problems.push(diagnostic(file, text, offset, format!("`@id(\"{id}\")` is used twice: {e}")));
                    continue;
                }
                origin.push((id.to_owned(), file, text));
            }
        }
        let mut warnings = Vec::new();
        if problems.is_empty() {
            let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
            let place = |id: &str| {
                origin.iter().find(|(pid, _, _)| pid == id).map_or(("", ""), |(_, file, text)| (*file, *text))
            };
            for e in result.validation_errors() {
                let id = e.policy_id().to_string();
                let (file, text) = place(&id);
                problems.push(diagnostic(file, text, first_offset(e), format!("policy `{id}`: {e}")));
            }
            // Warnings include policies that can never apply (Cedar's impossible-policy check).
            for w in result.validation_warnings() {
                let id = w.policy_id().to_string();
                let (file, text) = place(&id);
                warnings.push(diagnostic(file, text, first_offset(w), format!("warning: policy `{id}`: {w}")));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut types = HashMap::new();
        for name in schema.entity_types().chain(schema.actions().map(EntityUid::type_name)) {
            types.insert(name.to_string(), name.clone());
        }
        let mut by_action = HashMap::new();
        for action in schema.actions() {
            let mut subset = PolicySet::new();
            for policy in set.policies() {
                let applies = match policy.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(a) => a == *action,
                    ActionConstraint::In(list) => list.contains(action),
                };
                if applies {
                    // Ids are unique in `set`, so adding to the subset cannot clash.
                    subset.add(policy.clone()).map_err(|e| vec![diagnostic("", "", None, e.to_string())])?;
                }
            }
            by_action.insert(action.clone(), subset);
        }
        let annotations = set
            .policies()
            .map(|p| {
                let pairs = p.annotations().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
                (p.id().to_string(), pairs)
            })
            .collect();
        Ok(Self { set, schema, types, by_action, annotations, warnings })
    }

    /// The entities named in policy scopes (`principal in Regain::Group::"x"`,
    /// `resource == Regain::Idv::"y"`), as `(policy id, type, id)`: a policy whose scope names
    /// an entity that does not exist can never apply.
    pub fn scope_references(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for policy in self.set.policies() {
            let mut push = |uid: &EntityUid| {
                out.push((policy.id().to_string(), uid.type_name().to_string(), uid.id().unescaped().to_owned()));
            };
            match policy.principal_constraint() {
                PrincipalConstraint::In(uid) | PrincipalConstraint::Eq(uid) | PrincipalConstraint::IsIn(_, uid) => {
                    push(&uid);
                }
                PrincipalConstraint::Any | PrincipalConstraint::Is(_) => {}
            }
            match policy.resource_constraint() {
                ResourceConstraint::In(uid) | ResourceConstraint::Eq(uid) | ResourceConstraint::IsIn(_, uid) => {
                    push(&uid)
                }
                ResourceConstraint::Any | ResourceConstraint::Is(_) => {}
            }
        }
        out.sort();
        out
    }

    /// Validation warnings, each as `file:line:col: warning: ...`.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The shipped default pack.
    pub fn defaults() -> Result<Self, Vec<Diagnostic>> {
        Self::load(&DEFAULT_POLICIES)
    }

    /// The `@id`s of every policy, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.set.policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        ids
    }

    /// An annotation of a policy.
    pub fn annotation(&self, id: &str, key: &str) -> Option<&str> {
        self.annotations.get(id)?.get(key).map(String::as_str)
    }

    /// Asks whether `principal` may do `action` on `resource` given `entities` (JSON, in
    /// Cedar's entity format) and `context`. Malformed facts are an error, never a permit.
    /// Entities are named `(type, id)`, e.g. `("Regain::User", "u-1")`; actions by name.
    pub fn decide(
        &self,
        principal: (&str, &str),
        action: &str,
        resource: (&str, &str),
        context: Value,
        entities: Value,
    ) -> Result<Decision, String> {
        let entities = self.facts(entities)?;
        self.decide_with(principal, action, resource, context, &entities)
    }

    /// [`Policies::decide`] with entities built once by [`Policies::facts`], for several
    /// questions about the same facts.
    pub fn decide_with(
        &self,
        principal: (&str, &str),
        action: &str,
        resource: (&str, &str),
        context: Value,
        entities: &Facts,
    ) -> Result<Decision, String> {
        let (principal, action, resource) =
            (self.uid(principal)?, self.uid(("Regain::Action", action))?, self.uid(resource)?);
        let Value::Object(context) = context else { return Err("context is not a JSON object".into()) };
        let context = Context::from_pairs(
            context.into_iter().map(|(k, v)| expression(v).map(|e| (k, e))).collect::<Result<Vec<_>, _>>()?,
        )
        .map_err(|e| format!("bad context for {action}: {e}"))?;
        let request = Request::new(principal, action, resource, context, Some(&self.schema))
            .map_err(|e| format!("request does not fit the schema: {e}"))?;
        let set = request.action().and_then(|a| self.by_action.get(a)).unwrap_or(&self.set);
        let response = Authorizer::new().is_authorized(&request, set, &entities.0);
        let mut determining: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
        determining.sort();
        Ok(Decision {
            allowed: response.decision() == CedarDecision::Allow,
            determining,
            errors: response.diagnostics().errors().map(ToString::to_string).collect(),
        })
    }
}

impl Policies {
    /// `(type, id)` as an entity uid, with the type name parsed once.
    fn uid(&self, (kind, id): (&str, &str)) -> Result<EntityUid, String> {
        let kind = match self.types.get(kind) {
            Some(kind) => kind.clone(),
            None => EntityTypeName::from_str(kind).map_err(|e| format!("bad entity type `{kind}`: {e}"))?,
        };
        Ok(EntityUid::from_type_name_and_id(kind, EntityId::new(id)))
    }

    /// `{"type": T, "id": I}` as an entity uid.
    fn uid_of(&self, value: &Value) -> Result<EntityUid, String> {
        match (value.get("type").and_then(Value::as_str), value.get("id").and_then(Value::as_str)) {
            (Some(kind), Some(id)) => self.uid((kind, id)),
            _ => Err(format!("`{value}` is not an entity reference")),
        }
    }

    /// Entities in Cedar's JSON entity format (`uid`, `attrs`, `parents`), built through the
    /// typed API and checked against the schema.
    pub fn facts(&self, entities: Value) -> Result<Facts, String> {
        Entities::from_entities(self.entity_list(entities)?, Some(&self.schema))
            .map(Facts)
            .map_err(|e| format!("bad entities: {e}"))
    }

    /// `base` with more entities: only the added ones are checked against the schema (the
    /// base was checked when it was built), so facts shared by every call, such as the
    /// deployment's, are built and checked once.
    pub fn facts_with(&self, base: &Facts, entities: Value) -> Result<Facts, String> {
        base.0
            .clone()
            .add_entities(self.entity_list(entities)?, Some(&self.schema))
            .map(Facts)
            .map_err(|e| format!("bad entities: {e}"))
    }

    /// Entities from Cedar's JSON entity format, not yet checked against the schema.
    fn entity_list(&self, entities: Value) -> Result<Vec<Entity>, String> {
        let Value::Array(list) = entities else { return Err("entities are not a JSON array".into()) };
        let mut built = Vec::with_capacity(list.len());
        for mut entity in list {
            let uid = self.uid_of(entity.get("uid").unwrap_or(&Value::Null))?;
            let attrs = match entity.get_mut("attrs").map(Value::take) {
                None | Some(Value::Null) => HashMap::new(),
                Some(Value::Object(attrs)) => {
                    attrs.into_iter().map(|(k, v)| self.attribute(v).map(|e| (k, e))).collect::<Result<_, _>>()?
                }
                Some(_) => return Err(format!("attributes of {uid} are not an object")),
            };
            let parents = match entity.get("parents") {
                None => HashSet::new(),
                Some(Value::Array(parents)) => parents.iter().map(|p| self.uid_of(p)).collect::<Result<_, _>>()?,
                Some(_) => return Err(format!("parents of {uid} are not a list")),
            };
            built.push(Entity::new(uid, attrs, parents).map_err(|e| format!("bad entity: {e}"))?);
        }
        Ok(built)
    }

    /// An attribute value; `{"__entity": {...}}` is an entity reference.
    fn attribute(&self, value: Value) -> Result<RestrictedExpression, String> {
        match value {
            Value::Object(mut map) if map.len() == 1 && map.contains_key("__entity") => {
                let target = map.remove("__entity").unwrap_or(Value::Null);
                Ok(RestrictedExpression::new_entity_uid(self.uid_of(&target)?))
            }
            Value::Array(items) => Ok(RestrictedExpression::new_set(
                items.into_iter().map(|v| self.attribute(v)).collect::<Result<Vec<_>, _>>()?,
            )),
            other => expression(other),
        }
    }
}

/// A JSON value as a Cedar value: booleans, integers, strings, sets and records.
fn expression(value: Value) -> Result<RestrictedExpression, String> {
    match value {
        Value::Bool(b) => Ok(RestrictedExpression::new_bool(b)),
        Value::Number(n) => {
            n.as_i64().map(RestrictedExpression::new_long).ok_or_else(|| format!("`{n}` is not a Long"))
        }
        Value::String(s) => Ok(RestrictedExpression::new_string(s)),
        Value::Array(items) => {
            Ok(RestrictedExpression::new_set(items.into_iter().map(expression).collect::<Result<Vec<_>, _>>()?))
        }
        Value::Object(map) => record(map),
        Value::Null => Err("null is not a Cedar value".into()),
    }
}

fn record(map: Map<String, Value>) -> Result<RestrictedExpression, String> {
    let fields = map.into_iter().map(|(k, v)| expression(v).map(|e| (k, e))).collect::<Result<Vec<_>, _>>()?;
    RestrictedExpression::new_record(fields).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_shipped_policy_states_its_intent_above_its_id() {
        for (file, text) in DEFAULT_POLICIES {
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.starts_with("@id(")) {
                // The comment block right above the policy's annotations.
                let above = lines[..i].iter().rev().skip_while(|l| l.starts_with('@'));
                let mut block = above.take_while(|l| l.starts_with("//"));
                assert!(block.any(|c| c.starts_with("// Intent:")), "{file}: `{line}` has no `// Intent:` comment");
            }
        }
    }

    #[test]
    fn the_default_pack_validates_and_every_policy_is_named() {
        let policies = Policies::defaults().unwrap_or_else(|d| panic!("{d:#?}"));
        let ids = policies.ids();
        assert!(ids.contains(&"eligibility-scope".to_owned()));
        assert!(ids.contains(&"tap-privileged-face".to_owned()));
        assert_eq!(policies.annotation("tap-standard", "lifetime_minutes"), Some("60"));
    }

    #[test]
    fn broken_policies_are_reported_with_file_line_and_column() {
        let text = "@id(\"a\")\npermit (principal, action == Regain::Action::\"startRecovery\", resource)\nwhen { principal.no_such_attribute };\n";
        let errors = Policies::load(&[("bad.cedar", text)]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].file, "bad.cedar");
        assert_eq!(errors[0].line, 3, "{}", errors[0]);
        assert!(errors[0].to_string().starts_with("bad.cedar:3:"), "{}", errors[0]);

        let syntax = Policies::load(&[("syntax.cedar", "permit (principal, action, resource) when {")]).unwrap_err();
        assert_eq!(syntax[0].line, 1);

        let unnamed = Policies::load(&[("u.cedar", "\n\npermit (principal, action, resource);")]).unwrap_err();
        assert_eq!(unnamed[0].message, "policy has no `@id` annotation");
        assert_eq!((unnamed[0].line, unnamed[0].column), (3, 1));

        let twice =
            "@id(\"x\") permit (principal, action, resource);\n@id(\"x\") forbid (principal, action, resource);";
        let dup = Policies::load(&[("d.cedar", twice)]).unwrap_err();
        assert!(dup[0].message.contains("used twice"), "{dup:?}");
    }

    #[test]
    fn a_decision_names_its_determining_policies() {
        let policies = Policies::defaults().unwrap();
        let entities = json!([
            { "uid": { "type": "Regain::Group", "id": "recovery" }, "attrs": {}, "parents": [] },
            { "uid": { "type": "Regain::User", "id": "u-1" }, "parents": [{ "type": "Regain::Group", "id": "recovery" }],
              "attrs": { "enabled": true, "privileged": false, "has_signed_in": true } },
            { "uid": { "type": "Regain::Deployment", "id": "default" }, "parents": [],
              "attrs": { "scope": { "__entity": { "type": "Regain::Group", "id": "recovery" } },
                         "tap_scope": { "__entity": { "type": "Regain::Group", "id": "recovery" } }, "evaluation": false } }
        ]);
        let context = json!({ "attempts_in_window": 0, "attempts_from_address": 0, "recovered_in_last_day": false });
        let d = policies
            .decide(
                ("Regain::User", "u-1"),
                "startRecovery",
                ("Regain::Deployment", "default"),
                context,
                entities.clone(),
            )
            .unwrap();
        assert!(d.allowed);
        assert_eq!(d.determining, vec!["eligibility-scope"]);

        let context = json!({ "attempts_in_window": 5, "attempts_from_address": 0, "recovered_in_last_day": false });
        let d = policies
            .decide(
                ("Regain::User", "u-1"),
                "startRecovery",
                ("Regain::Deployment", "default"),
                context,
                entities.clone(),
            )
            .unwrap();
        assert!(!d.allowed);
        assert_eq!(d.determining, vec!["eligibility-attempt-limit"]);

        let bad = policies.decide(
            ("Regain::User", "u-1"),
            "startRecovery",
            ("Regain::Deployment", "default"),
            json!({ "attempts_in_window": "many" }),
            entities,
        );
        assert!(bad.is_err());
    }
}
