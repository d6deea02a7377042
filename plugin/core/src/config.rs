//! The deployment configuration: one TOML file per deployment.
//!
//! Unknown keys and wrong types are refused with the position of the offending key; values
//! are then checked against each other ([`Deployment::check`]).

use crate::matching::{Binding, MatchLevel};
use serde::Deserialize;

/// A parsed and checked deployment configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// `production` issues passes; `evaluation` runs everything for real and issues nothing.
    #[serde(default)]
    pub mode: Mode,
    /// The directory group of users who may recover.
    pub scope_group: String,
    /// The directory group of users to whom passes may be issued; defaults to `scope_group`.
    #[serde(default)]
    pub tap_scope_group: Option<String>,
    /// The OpenID4VP verifier.
    pub verifier: Verifier,
    /// Account matching.
    #[serde(default)]
    pub matching: Matching,
    /// Face comparison.
    #[serde(default)]
    pub face_check: FaceCheck,
    /// Bounds on the passes policies may ask for.
    #[serde(default)]
    pub tap: TapBounds,
    /// Attempt counting.
    #[serde(default)]
    pub limits: Limits,
    /// How the user's other channels are told that access was restored.
    #[serde(default)]
    pub notifications: Notifications,
    /// Identity verification provider profiles.
    #[serde(rename = "idv")]
    pub idvs: Vec<IdvProfile>,
}

/// Production or evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Passes are issued.
    #[default]
    Production,
    /// Every step runs and is audited; nothing is issued or revoked.
    Evaluation,
}

/// The verifier side of OpenID4VP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Verifier {
    /// Where wallets post presentations (`response_uri`); also the client identifier.
    pub response_uri: String,
    /// The wallet endpoint requests are addressed to.
    #[serde(default = "default_wallet")]
    pub wallet: String,
    /// Clock skew tolerated on time claims, in seconds.
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    /// Oldest key binding JWT accepted, in seconds.
    #[serde(default = "default_kb_age")]
    pub key_binding_max_age_seconds: u64,
    /// Whether a credential without status is refused.
    #[serde(default = "yes")]
    pub require_status: bool,
}

fn default_wallet() -> String {
    "openid4vp://".into()
}
fn default_skew() -> u64 {
    60
}
fn default_kb_age() -> u64 {
    300
}
fn yes() -> bool {
    true
}

/// Account matching settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Matching {
    /// `exact` or `relaxed`.
    #[serde(default = "relaxed")]
    pub level: Level,
    /// Claims bound to directory attributes.
    #[serde(default)]
    pub bind: Vec<BindingSetting>,
}

impl Default for Matching {
    fn default() -> Self {
        Self { level: Level::Relaxed, bind: Vec::new() }
    }
}

fn relaxed() -> Level {
    Level::Relaxed
}

/// The matching level, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// See [`MatchLevel::Exact`].
    Exact,
    /// See [`MatchLevel::Relaxed`].
    Relaxed,
}

impl From<Level> for MatchLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Exact => Self::Exact,
            Level::Relaxed => Self::Relaxed,
        }
    }
}

/// `{ claim = "birthdate", attribute = "birthdate" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BindingSetting {
    /// Claim of the credential.
    pub claim: String,
    /// Attribute of the directory user.
    pub attribute: String,
}

impl From<&BindingSetting> for Binding {
    fn from(b: &BindingSetting) -> Self {
        Self { claim: b.claim.clone(), attribute: b.attribute.clone() }
    }
}

/// Face comparison settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FaceCheck {
    /// Lowest accepted score, 50-100 (Entra's default is 70); policies may demand more.
    #[serde(default = "default_threshold")]
    pub threshold: u8,
    /// The credential claim holding the portrait (base64 or base64url of a JPEG or PNG).
    #[serde(default = "default_portrait")]
    pub portrait_claim: String,
}

impl Default for FaceCheck {
    fn default() -> Self {
        Self { threshold: default_threshold(), portrait_claim: default_portrait() }
    }
}

fn default_threshold() -> u8 {
    70
}
fn default_portrait() -> String {
    "portrait".into()
}

/// The operator's bounds on passes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TapBounds {
    /// Shortest lifetime, in minutes.
    #[serde(default = "default_min_lifetime")]
    pub min_lifetime_minutes: u32,
    /// Longest lifetime, in minutes.
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_minutes: u32,
    /// Characters in the secret; 24 characters of a 32-letter alphabet carry 120 bits.
    #[serde(default = "default_length")]
    pub length: u8,
}

impl Default for TapBounds {
    fn default() -> Self {
        Self {
            min_lifetime_minutes: default_min_lifetime(),
            max_lifetime_minutes: default_max_lifetime(),
            length: default_length(),
        }
    }
}

fn default_min_lifetime() -> u32 {
    10
}
fn default_max_lifetime() -> u32 {
    480
}
fn default_length() -> u8 {
    24
}

/// Attempt counting.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The window attempts are counted over, in hours.
    #[serde(default = "default_window")]
    pub attempt_window_hours: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { attempt_window_hours: default_window() }
    }
}

fn default_window() -> u32 {
    6
}

/// Notification settings; the host sends the messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    /// Directory attributes that hold the user's other channels (an address or a number).
    #[serde(default = "default_channels")]
    pub channels: Vec<String>,
    /// The sender of notification mail, e.g. `Regain <recovery@example.org>`.
    #[serde(default)]
    pub from: Option<String>,
    /// The page of the "this wasn't me" link, which locks the account again.
    #[serde(default)]
    pub report_url: Option<String>,
}

impl Default for Notifications {
    fn default() -> Self {
        Self { channels: default_channels(), from: None, report_url: None }
    }
}

fn default_channels() -> Vec<String> {
    vec!["email".into(), "phone".into()]
}

/// How a provider delivers its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum IdvMode {
    /// The provider issues an SD-JWT VC to the wallet, presented over OpenID4VP.
    #[default]
    Openid4vp,
    /// The provider returns `verified_claims` in an ID token (OIDC code flow with PKCE); the
    /// host exchanges the code and hands the plugin the ID token.
    Oidc4ida,
}

impl IdvMode {
    /// The name used in the file and in policies (`Regain::Idv` attribute `mode`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openid4vp => "openid4vp",
            Self::Oidc4ida => "oidc4ida",
        }
    }
}

/// The OpenID Connect side of an OIDC4IDA provider.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Oidc4idaSettings {
    /// The provider's authorization endpoint; the user's browser is sent there.
    pub authorization_endpoint: String,
    /// The provider's token endpoint; the host exchanges the code there.
    pub token_endpoint: String,
    /// Regain's client identifier at the provider; the ID token's `aud`.
    pub client_id: String,
    /// Where the provider sends the browser back with the code (a host endpoint).
    pub redirect_uri: String,
    /// Accepted `verification.trust_framework` values; empty accepts any.
    #[serde(default)]
    pub trust_frameworks: Vec<String>,
    /// Evidence `check_method` values accepted as a face comparison by the provider.
    #[serde(default = "default_face_methods")]
    pub face_methods: Vec<String>,
    /// Oldest ID token accepted, in seconds after its `iat`.
    #[serde(default = "default_id_token_age")]
    pub max_age_seconds: u64,
}

fn default_face_methods() -> Vec<String> {
    crate::ida::FACE_METHODS.iter().map(|m| (*m).to_owned()).collect()
}
fn default_id_token_age() -> u64 {
    600
}

/// An identity verification provider.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct IdvProfile {
    /// Identifier, used in policies (`Regain::Idv::"<id>"`) and audit records.
    pub id: String,
    /// The credential issuer (`iss`) this provider signs as.
    pub issuer: String,
    /// How results are delivered.
    #[serde(default)]
    pub mode: IdvMode,
    /// Accepted credential types (OpenID4VP mode).
    #[serde(default)]
    pub vct: Vec<String>,
    /// A JWK Set file with the issuer's public keys, relative to the configuration file; read
    /// by the host, which serves it through `trust.issuer-keys`.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// Where the host fetches the issuer's JWK Set instead.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Claim bindings: Regain's claim name to the provider's, for providers that name them
    /// differently (`given_name = "first_name"`). Keys: `given_name`, `family_name`, the
    /// portrait claim and the `matching.bind` claims.
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, String>,
    /// The OpenID Connect settings (OIDC4IDA mode).
    #[serde(default)]
    pub oidc4ida: Option<Oidc4idaSettings>,
    /// ISO 3166-1 alpha-2 countries served; `*` for all.
    pub countries: Vec<String>,
    /// Lower numbers are tried first.
    #[serde(default)]
    pub priority: i64,
    /// `false` marks the provider unavailable, so routing falls back to the next.
    #[serde(default = "yes")]
    pub available: bool,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: u32,
    /// 1-based column; 0 when the problem concerns the whole file.
    pub column: u32,
    /// What is wrong, naming the key.
    pub message: String,
}

/// The dotted path of the key at byte `offset` (`verifier.response_uri`), from the key on
/// that line and the table header above it; `None` when the offset is not on a key line.
fn key_path(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = before.get(..line_start)?.lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[').then(|| l.trim_start_matches('[').trim_end_matches(']').trim().to_owned())
    });
    Some(table.map_or_else(|| key.to_owned(), |t| format!("{t}.{key}")))
}

/// `https://`, or `http://` on the loopback host.
fn is_https_or_loopback(url: &str) -> bool {
    url.starts_with("https://")
        || ["http://localhost", "http://127.0.0.1", "http://[::1]"].iter().any(|loopback| {
            url.strip_prefix(loopback).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        })
}

impl Deployment {
    /// Parses and checks a configuration file.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let deployment: Self = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |span| {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX))
            });
            let message = e.message().trim();
            let message = match e.span().and_then(|span| key_path(text, span.start)) {
                Some(path) => format!("`{path}`: {message}"),
                None => message.to_owned(),
            };
            ConfigError { file: file.into(), line, column, message }
        })?;
        deployment.check().map_err(|message| ConfigError { file: file.into(), line: 0, column: 0, message })?;
        Ok(deployment)
    }

    /// Checks values against each other; the text names the key.
    pub fn check(&self) -> Result<(), String> {
        if !(50..=100).contains(&self.face_check.threshold) {
            return Err("`face_check.threshold` must be between 50 and 100".into());
        }
        if self.tap.min_lifetime_minutes == 0 || self.tap.min_lifetime_minutes > self.tap.max_lifetime_minutes {
            return Err("`tap.min_lifetime_minutes` must be at least 1 and at most `tap.max_lifetime_minutes`".into());
        }
        if self.tap.length < 8 {
            return Err("`tap.length` must be at least 8".into());
        }
        if self.idvs.is_empty() {
            return Err("at least one `[[idv]]` profile is required".into());
        }
        for (i, idv) in self.idvs.iter().enumerate() {
            if self.idvs.iter().skip(i + 1).any(|other| other.id == idv.id) {
                return Err(format!("`idv.id` `{}` is used twice", idv.id));
            }
            match (idv.mode, &idv.oidc4ida) {
                (IdvMode::Openid4vp, None) if idv.vct.is_empty() => {
                    return Err(format!("`idv.vct` of `{}` is empty", idv.id));
                }
                (IdvMode::Openid4vp, None) => {}
                (IdvMode::Openid4vp, Some(_)) => {
                    return Err(format!("`idv.oidc4ida` of `{}` needs `mode = \"oidc4ida\"`", idv.id));
                }
                (IdvMode::Oidc4ida, None) => {
                    return Err(format!("`idv.oidc4ida` is required for `{}` (mode `oidc4ida`)", idv.id));
                }
                (IdvMode::Oidc4ida, Some(oidc)) => {
                    if oidc.face_methods.is_empty() {
                        return Err(format!("`idv.oidc4ida.face_methods` of `{}` is empty", idv.id));
                    }
                    for (key, url) in [
                        ("authorization_endpoint", &oidc.authorization_endpoint),
                        ("token_endpoint", &oidc.token_endpoint),
                        ("redirect_uri", &oidc.redirect_uri),
                    ] {
                        if !is_https_or_loopback(url) {
                            return Err(format!(
                                "`idv.oidc4ida.{key}` of `{}` must be an https URL (http only on localhost)",
                                idv.id
                            ));
                        }
                    }
                }
            }
            for ours in idv.claims.keys() {
                let known = ["given_name", "family_name"].contains(&ours.as_str())
                    || *ours == self.face_check.portrait_claim
                    || self.matching.bind.iter().any(|b| b.claim == *ours);
                if !known {
                    return Err(format!(
                        "`idv.claims.{ours}` of `{}` binds a claim Regain does not use (given_name, family_name, \
                         the portrait claim or a `matching.bind` claim)",
                        idv.id
                    ));
                }
            }
            if idv.jwks_file.is_some() && idv.jwks_uri.is_some() {
                return Err(format!("`idv.jwks_file` and `idv.jwks_uri` of `{}` exclude each other", idv.id));
            }
        }
        if self.scope_group.trim().is_empty() {
            return Err("`scope_group` is empty".into());
        }
        if !is_https_or_loopback(&self.verifier.response_uri) {
            return Err("`verifier.response_uri` must be an https URL (http only on localhost)".into());
        }
        Ok(())
    }

    /// The pass scope group.
    pub fn tap_scope(&self) -> &str {
        self.tap_scope_group.as_deref().unwrap_or(&self.scope_group)
    }

    /// Profiles in the order routing tries them.
    pub fn idvs_by_priority(&self) -> Vec<&IdvProfile> {
        let mut idvs: Vec<&IdvProfile> = self.idvs.iter().collect();
        idvs.sort_by_key(|idv| idv.priority);
        idvs
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The smallest valid deployment: one provider, every default.
    pub(crate) const MINIMAL: &str = r#"
scope_group = "recovery-enabled"

[verifier]
response_uri = "https://recovery.example.org/vp/response"

[[idv]]
id = "dev-idv"
issuer = "https://idv.example"
vct = ["https://idv.example/credentials/identity"]
countries = ["*"]
"#;

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let d = Deployment::parse("regain.toml", MINIMAL).unwrap();
        assert_eq!(d.mode, Mode::Production);
        assert_eq!(d.face_check.threshold, 70);
        assert_eq!(d.tap.length, 24);
        assert_eq!(d.matching.level, Level::Relaxed);
        assert_eq!(d.tap_scope(), "recovery-enabled");
        assert!(d.idvs[0].available);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key_and_its_position() {
        let typo = MINIMAL.replace("[verifier]", "[verifier]\nresponse_url = \"x\"");
        let err = Deployment::parse("regain.toml", &typo).unwrap_err();
        assert!(err.message.starts_with("`verifier.response_url`: unknown field `response_url`"), "{err}");
        assert_eq!((err.line, err.column), (5, 1), "{err}");

        let wrong = MINIMAL.replace("countries = [\"*\"]", "countries = [\"*\"]\npriority = \"high\"");
        let err = Deployment::parse("regain.toml", &wrong).unwrap_err();
        assert!(err.to_string().starts_with("regain.toml:12:"), "{err}");
        assert!(err.message.starts_with("`idv.priority`: invalid type"), "{err}");
        let top = format!("mode = 3\n{MINIMAL}");
        assert!(Deployment::parse("r", &top).unwrap_err().message.starts_with("`mode`: "));
    }

    #[test]
    fn inconsistent_values_are_refused() {
        let low = format!("{MINIMAL}\n[face_check]\nthreshold = 40\n");
        assert_eq!(
            Deployment::parse("r", &low).unwrap_err().message,
            "`face_check.threshold` must be between 50 and 100"
        );
        let tap = format!("{MINIMAL}\n[tap]\nmin_lifetime_minutes = 600\n");
        assert!(Deployment::parse("r", &tap).unwrap_err().message.contains("tap.min_lifetime_minutes"));
        let http = MINIMAL.replace("https://recovery.example.org", "http://recovery.example.org");
        assert!(Deployment::parse("r", &http).unwrap_err().message.contains("https"));
        let twice = format!("{MINIMAL}\n[[idv]]\nid = \"dev-idv\"\nissuer = \"x\"\nvct = [\"v\"]\ncountries = []\n");
        assert!(Deployment::parse("r", &twice).unwrap_err().message.contains("used twice"));
    }

    #[test]
    fn oidc4ida_profiles_need_their_endpoints_on_https() {
        let ida = |extra: &str| {
            format!(
                "{MINIMAL}\n[[idv]]\nid = \"ida\"\nissuer = \"https://ida.example\"\nmode = \"oidc4ida\"\n\
                 countries = [\"*\"]\n{extra}"
            )
        };
        let table = "[idv.oidc4ida]\nauthorization_endpoint = \"https://ida.example/authorize\"\n\
                     token_endpoint = \"https://ida.example/token\"\nclient_id = \"regain\"\n\
                     redirect_uri = \"https://recovery.example.org/idv/callback\"\n";
        let d = Deployment::parse("r", &ida(table)).unwrap();
        let oidc = d.idvs[1].oidc4ida.as_ref().unwrap();
        assert_eq!((oidc.max_age_seconds, oidc.face_methods.len()), (600, 4));
        assert_eq!(d.idvs[1].mode.as_str(), "oidc4ida");

        assert!(Deployment::parse("r", &ida("")).unwrap_err().message.contains("`idv.oidc4ida` is required"));
        let http = table.replace("https://ida.example/token", "http://ida.example/token");
        assert!(Deployment::parse("r", &ida(&http)).unwrap_err().message.contains("`idv.oidc4ida.token_endpoint`"));
        let lookalike = table.replace("https://ida.example/token", "http://localhost.evil.example/token");
        assert!(Deployment::parse("r", &ida(&lookalike)).is_err());
        let loopback = table.replace("https://ida.example/token", "http://127.0.0.1:8081/token");
        assert!(Deployment::parse("r", &ida(&loopback)).is_ok());
        let no_methods = format!("{table}face_methods = []\n");
        assert!(Deployment::parse("r", &ida(&no_methods)).unwrap_err().message.contains("face_methods"));
        let misplaced = MINIMAL.replace("countries = [\"*\"]", &format!("countries = [\"*\"]\n{table}"));
        assert!(Deployment::parse("r", &misplaced).unwrap_err().message.contains("needs `mode = \"oidc4ida\"`"));
    }
}
