//! Commands for policy authors and operators: `policy validate|test|explain`, `readiness`,
//! `cost` and `schemas`. They run the core natively on files; nothing is recorded or issued.

use crate::directory_file;
use anyhow::{Context as _, bail};
use regain_core::checks::{self, Severity};
use regain_core::flow::{Assumptions, Loaded};
use regain_core::policy::{DEFAULT_POLICIES, Policies};
use regain_core::policy_test::{self, TestFile};
use regain_core::{Login, User};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where a deployment's files are.
#[derive(clap::Args, Clone)]
pub struct DeploymentFiles {
    /// The deployment configuration (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// A directory of `*.cedar` policy files; the shipped default pack when absent.
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// The user directory (JSON, as `demo/directory.json`).
    #[arg(long, value_name = "FILE")]
    pub directory: PathBuf,
}

/// The `*.cedar` files of `dir`, sorted by name, as `(path, text)`.
pub fn policy_files(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read `{}`", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "cedar") {
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
            files.push((path.display().to_string(), text));
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no `*.cedar` file in `{}`", dir.display());
    }
    Ok(files)
}

fn borrowed(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files.iter().map(|(name, text)| (name.as_str(), text.as_str())).collect()
}

/// The deployment and the directory's users; configuration or policy problems are an error
/// listing every diagnostic.
pub fn load(files: &DeploymentFiles) -> anyhow::Result<(Loaded, Vec<User>)> {
    let config =
        std::fs::read_to_string(&files.config).with_context(|| format!("cannot read `{}`", files.config.display()))?;
    let owned = match &files.policies {
        Some(dir) => policy_files(dir)?,
        None => DEFAULT_POLICIES.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())).collect(),
    };
    let loaded = Loaded::load((&files.config.display().to_string(), &config), &borrowed(&owned))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let users = directory_file::load(&files.directory)?.into_iter().map(directory_file::to_core).collect();
    Ok((loaded, users))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `regain policy validate [DIR] [--config FILE --directory FILE]`.
#[derive(clap::Args)]
pub struct ValidateArgs {
    /// The policy directory.
    #[arg(default_value = "policies")]
    dir: PathBuf,
    /// Also check this deployment configuration against the policies.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Also run the operator safety checks against this user directory (needs `--config`).
    #[arg(long, value_name = "FILE", requires = "config")]
    directory: Option<PathBuf>,
}

/// Prints diagnostics as `file:line:col: message`; exit 1 on any error.
pub fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let files = policy_files(&args.dir)?;
    let policies = match Policies::load(&borrowed(&files)) {
        Ok(policies) => policies,
        Err(problems) => {
            for problem in &problems {
                println!("{problem}");
            }
            println!("{} error(s)", problems.len());
            return Ok(ExitCode::from(crate::EXIT_REFUSED));
        }
    };
    let mut errors = 0;
    let findings = match &args.config {
        None => policies.warnings().iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        Some(config) => {
            let text =
                std::fs::read_to_string(config).with_context(|| format!("cannot read `{}`", config.display()))?;
            let deployment = match regain_core::config::Deployment::parse(&config.display().to_string(), &text) {
                Ok(deployment) => deployment,
                Err(e) => {
                    println!("{e}");
                    return Ok(ExitCode::from(crate::EXIT_REFUSED));
                }
            };
            let users: Option<Vec<User>> = args
                .directory
                .as_deref()
                .map(|d| directory_file::load(d).map(|u| u.into_iter().map(directory_file::to_core).collect()))
                .transpose()?;
            let findings = checks::run(&deployment, &policies, users.as_deref());
            errors += findings.iter().filter(|f| f.severity == Severity::Error).count();
            findings.iter().map(ToString::to_string).collect()
        }
    };
    for line in &findings {
        println!("{line}");
    }
    println!(
        "{} policies in {} file(s): {errors} error(s), {} other finding(s)",
        policies.ids().len(),
        files.len(),
        findings.len() - errors
    );
    Ok(if errors == 0 { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_REFUSED) })
}

/// `regain policy test [DIR]`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// The policy directory; cases are read from its `tests/*.json`.
    #[arg(default_value = "policies")]
    dir: PathBuf,
}

/// Runs every case; exit 1 when one fails.
pub fn test(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let files = policy_files(&args.dir)?;
    let policies = Policies::load(&borrowed(&files)).map_err(|problems| {
        anyhow::anyhow!("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    })?;
    let tests = args.dir.join("tests");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&tests)
        .with_context(|| format!("cannot read `{}`", tests.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut outcomes = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let file: TestFile =
            serde_json::from_str(&text).with_context(|| format!("`{}` is not a policy test file", path.display()))?;
        for outcome in policy_test::run(&policies, &file) {
            match &outcome.message {
                None => println!("ok    {}: {}", path.display(), outcome.name),
                Some(why) => println!("FAIL  {}: {}: {why}", path.display(), outcome.name),
            }
            outcomes.push(outcome);
        }
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    let uncovered = policy_test::uncovered(&policies, &outcomes);
    if !uncovered.is_empty() {
        println!("policies that determine no case: {}", uncovered.join(", "));
    }
    println!(
        "{} case(s) in {} file(s): {} passed, {failed} failed",
        outcomes.len(),
        paths.len(),
        outcomes.len() - failed
    );
    Ok(if failed == 0 && !outcomes.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_REFUSED) })
}

/// `regain policy explain --login L`.
#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The login of the user to explain.
    #[arg(long)]
    login: String,
    #[command(flatten)]
    files: DeploymentFiles,
    /// Recoveries the user started in the attempt window.
    #[arg(long, default_value_t = 0)]
    attempts: u32,
    /// The face score to assume (default: the configured threshold).
    #[arg(long)]
    face_score: Option<u8>,
    /// The account match to assume: `matched-exact`, `matched-relaxed`, `matched-cross-field`.
    #[arg(long, default_value = "matched-exact")]
    match_reason: String,
}

/// Prints, as JSON, every decision a recovery of the user would meet.
pub fn explain(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let (loaded, users) = load(&args.files)?;
    let login = Login::parse(&args.login).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(user) = users.iter().find(|u| u.login == login.as_str()) else {
        bail!("no user with login `{}` in `{}`", login.as_str(), args.files.directory.display());
    };
    let assume = Assumptions {
        attempts_in_window: args.attempts,
        face_score: args.face_score,
        match_reason: args.match_reason.clone(),
        ..Assumptions::default()
    };
    let explained = regain_core::flow::explain(&loaded, user, now(), &assume).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::to_string_pretty(&explained)?);
    Ok(ExitCode::SUCCESS)
}

/// `regain readiness`.
#[derive(clap::Args)]
pub struct ReadinessArgs {
    #[command(flatten)]
    files: DeploymentFiles,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Who in the recovery scope could not recover, and why (user ids only).
#[derive(serde::Serialize)]
pub struct Readiness {
    scope_group: String,
    tap_scope_group: String,
    users_in_scope: usize,
    empty_given_name: Vec<String>,
    empty_family_name: Vec<String>,
    duplicate_names: Vec<Vec<String>>,
    never_signed_in: Vec<String>,
    outside_tap_scope: Vec<String>,
    no_notification_channel: Vec<String>,
    checks: Vec<checks::Finding>,
}

/// Builds the readiness report.
pub fn readiness_report(loaded: &Loaded, users: &[User]) -> Readiness {
    let d = &loaded.deployment;
    let in_scope: Vec<&User> = users.iter().filter(|u| u.groups.contains(&d.scope_group)).collect();
    let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
    let mut by_name: HashMap<(String, String), Vec<String>> = HashMap::new();
    for u in &in_scope {
        if let (Some(g), Some(f)) = (&u.given_name, &u.family_name) {
            by_name.entry((g.trim().to_lowercase(), f.trim().to_lowercase())).or_default().push(u.id.clone());
        }
    }
    let ids = |pred: &dyn Fn(&User) -> bool| -> Vec<String> {
        in_scope.iter().filter(|u| pred(u)).map(|u| u.id.clone()).collect()
    };
    let mut duplicate_names: Vec<Vec<String>> = by_name.into_values().filter(|ids| ids.len() > 1).collect();
    duplicate_names.sort();
    let channels = &d.notifications.channels;
    let has_channel = |u: &User| u.attributes.iter().any(|(k, v)| channels.contains(k) && !v.trim().is_empty());
    Readiness {
        scope_group: d.scope_group.clone(),
        tap_scope_group: d.tap_scope().to_owned(),
        users_in_scope: in_scope.len(),
        empty_given_name: ids(&|u| blank(&u.given_name)),
        empty_family_name: ids(&|u| blank(&u.family_name)),
        duplicate_names,
        never_signed_in: ids(&|u| u.last_sign_in.is_none()),
        outside_tap_scope: ids(&|u| !u.groups.iter().any(|g| g == d.tap_scope())),
        no_notification_channel: ids(&|u| !has_channel(u)),
        checks: checks::run(d, &loaded.policies, Some(users)),
    }
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} user(s) in the recovery scope `{}` (TAP scope `{}`)",
            self.users_in_scope, self.scope_group, self.tap_scope_group
        )?;
        let rows = [
            (&self.empty_given_name, "empty first name: cannot be matched"),
            (&self.empty_family_name, "empty last name: cannot be matched"),
            (&self.never_signed_in, "never signed in: not eligible by default"),
            (&self.outside_tap_scope, "outside the TAP scope: can never finish a recovery"),
            (&self.no_notification_channel, "no notification channel: a recovery would go unnoticed"),
        ];
        for (list, label) in rows {
            let names = if list.is_empty() { String::new() } else { format!(": {}", list.join(", ")) };
            writeln!(f, "{:>4}  {label}{names}", list.len())?;
        }
        let groups: Vec<String> = self.duplicate_names.iter().map(|g| g.join(" = ")).collect();
        let names = if groups.is_empty() { String::new() } else { format!(": {}", groups.join("; ")) };
        writeln!(
            f,
            "{:>4}  groups sharing a name: blocked unless a bound attribute disambiguates{names}",
            groups.len()
        )?;
        for finding in &self.checks {
            writeln!(f, "{finding}")?;
        }
        Ok(())
    }
}

/// Users in the recovery scope who would fail, and why, plus the safety checks.
pub fn readiness(args: &ReadinessArgs) -> anyhow::Result<ExitCode> {
    let (loaded, users) = load(&args.files)?;
    let report = readiness_report(&loaded, &users);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `regain cost`: Entra's calculator inputs.
#[derive(clap::Args)]
pub struct CostArgs {
    /// Users in the recovery scope.
    #[arg(long)]
    users: u64,
    /// Share of users who lose every method in a month, in percent.
    #[arg(long, default_value_t = 2.0)]
    monthly_recovery_percent: f64,
    /// What one helpdesk recovery costs.
    #[arg(long, default_value_t = 60.0)]
    helpdesk_cost: f64,
    /// Price of one identity verification at the IDV.
    #[arg(long)]
    idv_price: f64,
    /// Minutes a user loses with the helpdesk.
    #[arg(long, default_value_t = 60.0)]
    helpdesk_minutes: f64,
    /// Minutes a user loses with self-service recovery.
    #[arg(long, default_value_t = 5.0)]
    self_service_minutes: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// The monthly figures of the cost calculator (formula in `docs/cost.md`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CostFigures {
    recoveries_per_month: f64,
    helpdesk_cost_per_month: f64,
    regain_cost_per_month: f64,
    savings_per_month: f64,
    hours_regained_per_month: f64,
}

/// Computes the figures; negative or non-finite inputs are refused.
pub fn cost_figures(a: &CostArgs) -> anyhow::Result<CostFigures> {
    let values = [a.monthly_recovery_percent, a.helpdesk_cost, a.idv_price, a.helpdesk_minutes, a.self_service_minutes];
    if values.iter().any(|v| !v.is_finite() || *v < 0.0) || a.monthly_recovery_percent > 100.0 {
        bail!("every figure must be a non-negative number, and the recovery percentage at most 100");
    }
    #[expect(clippy::cast_precision_loss, reason = "user counts far below 2^52")]
    let recoveries = a.users as f64 * a.monthly_recovery_percent / 100.0;
    let helpdesk = recoveries * a.helpdesk_cost;
    let regain = recoveries * a.idv_price;
    let round = |v: f64| (v * 100.0).round() / 100.0;
    Ok(CostFigures {
        recoveries_per_month: round(recoveries),
        helpdesk_cost_per_month: round(helpdesk),
        regain_cost_per_month: round(regain),
        savings_per_month: round(helpdesk - regain),
        hours_regained_per_month: round(recoveries * (a.helpdesk_minutes - a.self_service_minutes) / 60.0),
    })
}

/// Prints the cost comparison.
pub fn cost(args: &CostArgs) -> anyhow::Result<ExitCode> {
    let f = cost_figures(args)?;
    if args.json {
        println!("{}", serde_json::to_string(&f)?);
    } else {
        println!("recoveries per month      {}", f.recoveries_per_month);
        println!("helpdesk cost per month   {}", f.helpdesk_cost_per_month);
        println!("Regain cost per month     {}", f.regain_cost_per_month);
        println!("savings per month         {}", f.savings_per_month);
        println!("user hours regained       {}", f.hours_regained_per_month);
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON Schemas Regain publishes, by file name.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("config.schema.json", schemars::schema_for!(regain_core::config::Deployment).to_value()),
        ("audit-event.schema.json", schemars::schema_for!(regain_core::env::AuditRecord).to_value()),
        ("policy-test.schema.json", schemars::schema_for!(regain_core::policy_test::TestFile).to_value()),
    ]
}

/// Writes [`schemas`] into `out`.
pub fn write_schemas(out: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create `{}`", out.display()))?;
    for (name, schema) in schemas() {
        let path = out.join(name);
        std::fs::write(&path, format!("{}\n", serde_json::to_string_pretty(&schema)?))
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
