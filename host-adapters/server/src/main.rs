#![doc = include_str!("../README.md")]

mod admin_cli;
mod directory_file;
mod operator;
mod presentation;
mod serve;
mod users_file;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use regain_host::memory::MemoryAdapter;
use regain_host::wit::events::AuditEvent;
use regain_host::wit::flow::{FlowError, Step};
use regain_host::wit::types::ClientInfo;
use regain_host::{ComponentSource, PluginHost, SandboxConfig};
use std::path::PathBuf;
use std::process::ExitCode;

// glibc's allocator took about a twentieth of the server's CPU per recovery (its locks and
// free-list upkeep); mimalloc's per-thread pages do the same work for less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Regain: self-service account recovery for the identity provider you already run.
#[derive(Parser)]
#[command(name = "regain", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A plugin component to load instead of the one built into this binary.
    #[arg(long, global = true, value_name = "FILE")]
    component: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the plugin against a built-in demo directory and show what happens.
    Demo,
    /// Work with credential presentations.
    Presentation {
        #[command(subcommand)]
        command: PresentationCommand,
    },
    /// Inspect the plugin component.
    Component {
        #[command(subcommand)]
        command: ComponentCommand,
    },
    /// Validate, test and explain Cedar policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Report users in the recovery scope who could not recover, and why.
    Readiness(operator::ReadinessArgs),
    /// Compare the monthly cost of helpdesk recoveries with self-service ones.
    Cost(operator::CostArgs),
    /// Run the reference OpenID Provider.
    Serve(serve::ServerArgs),
    /// Manage the server's users.
    User {
        #[command(subcommand)]
        command: serve::UserCommand,
    },
    /// Show the audit trail of the recovery a helpdesk reference code belongs to.
    Helpdesk {
        #[command(flatten)]
        server: serve::ServerArgs,
        /// The reference the user quotes (`RG-XXXXXXXX`).
        reference: String,
    },
    /// Query the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage Temporary Access Passes.
    Tap {
        #[command(subcommand)]
        command: TapCommand,
    },
    /// Install Regain into a Keycloak realm.
    Keycloak {
        #[command(subcommand)]
        command: KeycloakCommand,
    },
    /// Write the JSON Schemas of the configuration, audit events and policy test files.
    Schemas {
        /// The directory to write them to.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print audit events as JSON lines (schemas/audit-event.schema.json), oldest first.
    Export {
        #[command(flatten)]
        server: serve::ServerArgs,
        /// Only events at or after this time (seconds since the Unix epoch).
        #[arg(long, default_value_t = 0)]
        since: i64,
        /// Only events of this user.
        #[arg(long)]
        user: Option<String>,
    },
    /// Show audit events matching filters, oldest first: a table, or JSON lines with `--json`.
    Query(admin_cli::AuditQueryArgs),
}

#[derive(Subcommand)]
enum KeycloakCommand {
    /// Set up a realm through the Admin REST API (again to update it): the service client
    /// and its roles, the `regain-browser` flow with "Recover your account", the
    /// authenticator's configuration; writes the service client's secret to a file.
    Setup(KeycloakSetupArgs),
}

/// Arguments of `regain keycloak setup`.
#[derive(clap::Args)]
struct KeycloakSetupArgs {
    /// Keycloak's base URL.
    #[arg(long)]
    url: String,
    /// The realm.
    #[arg(long)]
    realm: String,
    /// An administrator of the `master` realm; the password comes from `KEYCLOAK_ADMIN_PASSWORD`.
    #[arg(long, default_value = "admin")]
    admin_user: String,
    /// The recovery service's public URL (the `issuer` of its `regain-server.toml`).
    #[arg(long)]
    service_url: String,
    /// A file holding the secret shared by the authenticator and the service (32 characters
    /// or more).
    #[arg(long)]
    shared_secret_file: PathBuf,
    /// Where to write the service client's secret (the service's `client_secret_file`).
    #[arg(long)]
    client_secret_out: PathBuf,
    /// What users register after signing in with a pass.
    #[arg(long, default_value = "CONFIGURE_TOTP", value_parser = ["CONFIGURE_TOTP", "webauthn-register"])]
    required_action: String,
}

#[derive(Subcommand)]
enum TapCommand {
    /// Revoke a pass by its id.
    Revoke {
        #[command(flatten)]
        server: serve::ServerArgs,
        /// The pass id (`tap-...`).
        id: String,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policy files against the schema (`file:line:col: message`; exit 1 on error);
    /// with `--config` and `--directory`, run the operator safety checks too.
    Validate(operator::ValidateArgs),
    /// Run the data-driven cases of `DIR/tests/*.json`; exit 1 when one fails.
    Test(operator::TestArgs),
    /// Show every decision a recovery of one user would meet, with the facts that went in.
    Explain(operator::ExplainArgs),
}

#[derive(Subcommand)]
enum PresentationCommand {
    /// Verify an SD-JWT VC presentation read from standard input; print
    /// `{"valid", "reason", "claims"}`; exit 0 valid, 1 invalid, 2 usage error.
    Verify(presentation::VerifyArgs),
}

#[derive(Subcommand)]
enum ComponentCommand {
    /// Show the component's path, hash, load origin and imports.
    Info,
}

/// Exit status when the plugin refused the input.
const EXIT_REFUSED: u8 = 1;
/// Exit status for usage, configuration and sandbox errors.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs a line per request; one-shot commands only warnings.
    let default = if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("REGAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colours).with_writer(std::io::stderr);
    if std::env::var("REGAIN_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    // The command runs as a task on the runtime's workers, not on this thread: the server's
    // accept loop then runs where the connections it accepts are served, instead of waking
    // this thread for every new connection and handing each one over to a worker.
    match runtime.block_on(async move { tokio::spawn(run(cli)).await }) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => fail(&e),
        Err(e) => fail(&anyhow::Error::new(e).context("the command stopped unexpectedly")),
    }
}

#[expect(clippy::print_stderr, reason = "the command's error channel")]
fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("regain: {error:#}");
    ExitCode::from(EXIT_ERROR)
}

fn load(component: Option<&PathBuf>) -> anyhow::Result<PluginHost<MemoryAdapter>> {
    let source = component.map_or(ComponentSource::Bundled, |path| ComponentSource::File(path));
    Ok(PluginHost::new(SandboxConfig::default(), source)?)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo => demo(cli.component.as_ref()).await,
        Command::Component { command: ComponentCommand::Info } => info(cli.component.as_ref()),
        Command::Presentation { command: PresentationCommand::Verify(args) } => presentation::verify(&args),
        Command::Policy { command: PolicyCommand::Validate(args) } => operator::validate(&args),
        Command::Policy { command: PolicyCommand::Test(args) } => operator::test(&args),
        Command::Policy { command: PolicyCommand::Explain(args) } => operator::explain(&args),
        Command::Readiness(args) => operator::readiness(&args),
        Command::Cost(args) => operator::cost(&args),
        Command::Schemas { out } => operator::write_schemas(&out),
        Command::Serve(args) => serve::serve(&args, cli.component.as_deref()).await,
        Command::User { command } => serve::user(&command).await,
        Command::Helpdesk { server, reference } => serve::helpdesk(&server, &reference).await,
        Command::Tap { command: TapCommand::Revoke { server, id } } => serve::revoke_tap(&server, &id).await,
        Command::Audit { command: AuditCommand::Export { server, since, user } } => {
            serve::export_audit(&server, since, user.as_deref()).await
        }
        Command::Audit { command: AuditCommand::Query(args) } => admin_cli::query(&args).await,
        Command::Keycloak { command: KeycloakCommand::Setup(args) } => keycloak_setup(&args).await,
    }
}

async fn keycloak_setup(args: &KeycloakSetupArgs) -> anyhow::Result<ExitCode> {
    let admin_password = std::env::var("KEYCLOAK_ADMIN_PASSWORD")
        .context("set KEYCLOAK_ADMIN_PASSWORD to the administrator's password")?;
    let shared_secret = std::fs::read_to_string(&args.shared_secret_file)
        .with_context(|| format!("cannot read `{}`", args.shared_secret_file.display()))?;
    let setup = regain_server::keycloak_setup::Setup {
        url: args.url.clone(),
        realm: args.realm.clone(),
        admin_user: args.admin_user.clone(),
        admin_password,
        service_url: args.service_url.clone(),
        shared_secret: shared_secret.trim().to_owned(),
        required_action: args.required_action.clone(),
    };
    let report = regain_server::keycloak_setup::setup(&setup).await.map_err(anyhow::Error::msg)?;
    write_secret(&args.client_secret_out, &report.client_secret)
        .with_context(|| format!("cannot write `{}`", args.client_secret_out.display()))?;
    let flow = if report.flow_created { "created" } else { "kept (configuration updated)" };
    println!(
        "realm `{}`: client `{}` ready (secret in {}); flow `{}` {flow} and bound as the browser flow",
        args.realm,
        regain_server::keycloak_setup::SERVICE_CLIENT,
        args.client_secret_out.display(),
        regain_server::keycloak_setup::FLOW
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes a secret to a file only its owner can read.
fn write_secret(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(secret.as_bytes())
}

fn info(component: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    let host = load(component)?;
    let report = host.load_report();
    let path = component.map_or_else(|| regain_host::BUNDLED_PLUGIN_PATH.to_owned(), |p| p.display().to_string());
    let out = serde_json::json!({
        "path": path,
        "sha256": report.component_sha256,
        "origin": format!("{:?}", report.origin).to_lowercase(),
        "load_ms": report.elapsed.as_secs_f64() * 1e3,
        "cache_file": report.cache_file.as_ref().map(|f| f.display().to_string()),
        "imports": host.component_imports(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

fn step_name(step: &Step) -> String {
    match step {
        Step::Redirect(_) => "redirect".into(),
        Step::PresentRequest(_) => "present-request".into(),
        Step::PresentationReceived(_) => "presentation-received".into(),
        Step::CaptureSelfie => "capture-selfie".into(),
        Step::Completed(_) => "completed".into(),
        Step::EvaluationCompleted(_) => "evaluation-completed".into(),
        Step::Failed(f) => format!("failed ({}, helpdesk {})", f.reason, f.helpdesk_ref),
    }
}

fn flow_error_json(error: &FlowError) -> serde_json::Value {
    let (code, message) = match error {
        FlowError::InvalidLogin(m) => ("invalid-login", m),
        FlowError::InvalidState(m) => ("invalid-state", m),
        FlowError::InvalidInput(m) => ("invalid-input", m),
        FlowError::Host(m) => ("host", m),
        FlowError::Config(m) => ("config", m),
        FlowError::Unsupported(m) => ("unsupported", m),
    };
    serde_json::json!({ "error": code, "message": message })
}

fn audit_json(event: &AuditEvent) -> serde_json::Value {
    serde_json::json!({
        "kind": event.kind.as_str(),
        "flow_id": event.flow_id,
        "user_id": event.user_id,
        "reason": event.reason,
    })
}

fn local_client() -> ClientInfo {
    ClientInfo { address: Some("127.0.0.1".into()), country: None, cross_device: false, recent_attempts: 0 }
}

async fn demo(component: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    let host = load(component)?;
    let report = host.load_report();
    println!("Regain demo: the plugin component running sandboxed in wasmtime");
    println!();
    println!(
        "component  {}\nsha256     {}\nloaded     {:?} in {:.1} ms{}",
        component.map_or_else(|| regain_host::BUNDLED_PLUGIN_PATH.to_owned(), |p| p.display().to_string()),
        report.component_sha256,
        report.origin,
        report.elapsed.as_secs_f64() * 1e3,
        report.cache_file.as_ref().map(|f| format!(" (cache {})", f.display())).unwrap_or_default(),
    );
    let config = host.config();
    println!(
        "sandbox    {} MiB memory, {:?} deadline, {} calls in flight at most",
        config.memory_limit >> 20,
        config.deadline,
        config.max_instances
    );
    println!("imports    {}", host.component_imports().join("\n           "));
    println!();

    let config = include_str!("../demo/regain.toml");
    // The safety checks every host runs when it loads a deployment.
    let loaded = regain_core::Loaded::load(("demo/regain.toml", config), &regain_core::policy::DEFAULT_POLICIES)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let users: Vec<regain_core::User> = directory_file::demo_users().into_iter().map(directory_file::to_core).collect();
    let findings = regain_core::checks::run(&loaded.deployment, &loaded.policies, Some(&users));
    println!("checks     {}", if findings.is_empty() { "no findings".to_owned() } else { findings.len().to_string() });
    for finding in &findings {
        println!("           {finding}");
    }
    println!();

    let adapter = MemoryAdapter::builder()
        .users(directory_file::demo_users())
        .deployment("default", config, &regain_core::policy::DEFAULT_POLICIES)
        .build();
    for login in ["ana.silva@example.org", "nobody@example.org", "   "] {
        let outcome = host.start(adapter.clone(), "default", login, &local_client()).await.context("plugin call")?;
        match outcome {
            Ok(t) => println!("flow.start({login:?}) -> {}", step_name(&t.step)),
            Err(e) => println!("flow.start({login:?}) -> refused: {}", flow_error_json(&e)),
        }
    }
    println!();
    println!("audit log:");
    for event in adapter.audit_events() {
        println!("  {}", audit_json(&event));
    }
    println!();
    println!("Both logins get the same kind of step (an OpenID4VP request for the wallet); the");
    println!("audit log alone tells them apart. The reference server with its pages, the dev");
    println!("identity provider and the wallet that complete the flow in a browser are not built");
    println!("yet; see README.md.");
    Ok(ExitCode::SUCCESS)
}
