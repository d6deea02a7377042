//! `regain presentation verify`: the plugin's verifier, run natively on one presentation,
//! with trust material from files (the command fetches nothing).

use anyhow::{Context as _, bail};
use regain_core::config::{Deployment, IdvMode};
use regain_core::jose::Alg;
use regain_core::sdjwt::{self, Expectations, MAX_PRESENTATION_BYTES, TrustFailure, TrustSource};
use regain_host::NativeVerifier;
use serde_json::json;
use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Clock skew tolerated on every time claim, in seconds.
pub const SKEW_SECONDS: u64 = 60;
/// Oldest key binding JWT accepted, in seconds.
pub const KB_MAX_AGE_SECONDS: u64 = 300;

/// Arguments of `regain presentation verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The nonce the presentation must be bound to (the request's `nonce`).
    #[arg(long)]
    nonce: String,
    /// This verifier's client identifier, with its prefix (the KB-JWT `aud`).
    #[arg(long)]
    audience: String,
    /// Trust ISSUER with the keys of a JWK Set file: `--issuer https://idv.example=keys.json`.
    #[arg(long = "issuer", value_name = "ISS=JWKS_FILE")]
    issuers: Vec<String>,
    /// An accepted credential type (`vct`); repeat for several.
    #[arg(long = "vct", value_name = "VCT")]
    vcts: Vec<String>,
    /// Take trusted issuers (with their `jwks_file`), accepted types and the verifier's time
    /// rules from a deployment configuration file; `--issuer` and `--vct` add to them.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Verify as of this time (seconds since the Unix epoch) instead of now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<u64>,
    /// Serve the Token Status List JWT in FILE for URI: `--status-list https://idv/status/1=list.jwt`.
    #[arg(long = "status-list", value_name = "URI=FILE")]
    status_lists: Vec<String>,
    /// Accept a presentation without key binding JWT (holder binding is required by default).
    #[arg(long)]
    no_holder_binding: bool,
    /// Accept a credential that carries no status (revocation is required by default).
    #[arg(long)]
    allow_no_status: bool,
}

struct FileTrust {
    issuers: HashMap<String, String>,
    lists: HashMap<String, String>,
}

impl TrustSource for FileTrust {
    fn issuer_keys(&mut self, issuer: &str) -> Result<String, TrustFailure> {
        self.issuers.get(issuer).cloned().ok_or(TrustFailure::UnknownIssuer)
    }

    fn status_list_token(&mut self, uri: &str) -> Result<String, TrustFailure> {
        self.lists
            .get(uri)
            .cloned()
            .ok_or_else(|| TrustFailure::Unavailable(format!("no `--status-list` given for `{uri}`")))
    }
}

/// Reads `KEY=FILE` pairs into a map of file contents.
fn read_pairs(pairs: &[String], flag: &str) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for pair in pairs {
        let Some((key, file)) = pair.rsplit_once('=') else {
            bail!("`--{flag} {pair}` must have the form KEY=FILE");
        };
        let text = std::fs::read_to_string(PathBuf::from(file)).with_context(|| format!("cannot read `{file}`"))?;
        if out.insert(key.to_owned(), text).is_some() {
            bail!("`--{flag}` names `{key}` twice");
        }
    }
    Ok(out)
}

/// What a deployment file contributes: issuers with their key sets, types, time rules.
struct FromConfig {
    issuers: HashMap<String, String>,
    vcts: Vec<String>,
    skew: u64,
    kb_max_age: u64,
    require_status: bool,
}

/// Reads the OpenID4VP profiles of a deployment file; `jwks_file` is relative to the file.
#[expect(clippy::print_stderr, reason = "notes about skipped providers go to the command's error channel")]
fn from_config(path: &Path) -> anyhow::Result<FromConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let deployment = Deployment::parse(&path.display().to_string(), &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = FromConfig {
        issuers: HashMap::new(),
        vcts: Vec::new(),
        skew: deployment.verifier.clock_skew_seconds,
        kb_max_age: deployment.verifier.key_binding_max_age_seconds,
        require_status: deployment.verifier.require_status,
    };
    for idv in deployment.idvs.iter().filter(|idv| idv.mode == IdvMode::Openid4vp) {
        let Some(file) = &idv.jwks_file else {
            eprintln!("note: provider `{}` has no `jwks_file`; this command fetches nothing, so it is skipped", idv.id);
            continue;
        };
        let file = base.join(file);
        let jwks = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read `{}` (`jwks_file` of `{}`)", file.display(), idv.id))?;
        out.issuers.insert(idv.issuer.clone(), jwks);
        out.vcts.extend(idv.vct.iter().filter(|v| !out.vcts.contains(v)).cloned().collect::<Vec<_>>());
    }
    Ok(out)
}

/// Runs the command; `Err` is a usage or configuration error (exit 2).
pub fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.as_deref().map(from_config).transpose()?;
    let mut issuers = config.as_ref().map(|c| c.issuers.clone()).unwrap_or_default();
    for (issuer, jwks) in read_pairs(&args.issuers, "issuer")? {
        if issuers.insert(issuer.clone(), jwks).is_some() {
            bail!("`--issuer` names `{issuer}`, which the configuration already trusts");
        }
    }
    let mut vcts = config.as_ref().map(|c| c.vcts.clone()).unwrap_or_default();
    vcts.extend(args.vcts.iter().cloned());
    if issuers.is_empty() {
        bail!("no trusted issuer: give `--issuer ISS=JWKS_FILE` or a `--config` whose providers have `jwks_file`");
    }
    if vcts.is_empty() {
        bail!("no accepted credential type: give at least one `--vct VCT` or a `--config`");
    }
    let mut trust = FileTrust { issuers, lists: read_pairs(&args.status_lists, "status-list")? };

    let mut token = String::new();
    std::io::stdin()
        .take(u64::try_from(MAX_PRESENTATION_BYTES).unwrap_or(u64::MAX) + 1)
        .read_to_string(&mut token)
        .context("cannot read the presentation from standard input")?;
    if token.trim().is_empty() {
        bail!("no presentation on standard input");
    }

    let now = match args.at {
        Some(at) => at,
        None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    };
    let expect = Expectations {
        nonce: &args.nonce,
        audience: &args.audience,
        vcts: &vcts,
        algs: &[Alg::Es256, Alg::EdDsa],
        now,
        skew: config.as_ref().map_or(SKEW_SECONDS, |c| c.skew),
        kb_max_age: config.as_ref().map_or(KB_MAX_AGE_SECONDS, |c| c.kb_max_age),
        holder_binding: !args.no_holder_binding,
        require_status: !args.allow_no_status && config.as_ref().is_none_or(|c| c.require_status),
        require_expiry: true,
    };
    let (out, code) = match sdjwt::verify(&token, &expect, &mut trust, &NativeVerifier) {
        Ok(vc) => (json!({ "valid": true, "reason": "ok", "claims": vc.claims }), ExitCode::SUCCESS),
        Err(rejection) => (
            json!({ "valid": false, "reason": rejection.code(), "message": rejection.to_string(), "claims": {} }),
            ExitCode::from(crate::EXIT_REFUSED),
        ),
    };
    println!("{out}");
    Ok(code)
}
