//! `regain serve` and the admin commands over the server's database.

use anyhow::{Context as _, bail};
use regain_host::reload::{DeploymentStore, FileDeployment};
use regain_host::{ComponentSource, PluginHost, SandboxConfig};
use regain_server::accounts::Account;
use regain_server::adapter::{FaceService, HttpFaceService, NoFaceService, ServerAdapter};
use regain_server::provider::{Client, Provider};
use regain_server::recovery::{Limits, Recovery};
use regain_server::store::{Store, now};
use regain_server::trust::TrustSource;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The server's own configuration file (`regain-server.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The issuer identifier: the public base URL.
    pub issuer: String,
    /// The address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The database; `DATABASE_URL` overrides it. Default: a SQLite file next to the config.
    #[serde(default)]
    pub database_url: Option<String>,
    /// Registered relying parties.
    #[serde(default, rename = "client")]
    pub clients: Vec<Client>,
    /// The recovery pages; without this table the server offers no recovery.
    #[serde(default)]
    pub recovery: Option<RecoveryConfig>,
    /// Notifications by mail, through a relay without TLS or authentication; without this
    /// table they stay queued in the outbox.
    #[serde(default)]
    pub mail: Option<regain_server::mail::MailConfig>,
}

/// `[recovery]` of `regain-server.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryConfig {
    /// The deployment configuration (`regain.toml`), relative to the server configuration.
    pub deployment: PathBuf,
    /// The directory of Cedar policies, relative to the server configuration.
    pub policies: PathBuf,
    /// Seconds between checks for changed deployment files; a broken change is refused and
    /// the previous deployment keeps serving.
    #[serde(default = "default_reload")]
    pub reload_seconds: u64,
    /// A face comparison service (`POST` of JSON); without one, every face check fails closed.
    #[serde(default)]
    pub face_service: Option<String>,
    /// Recovery starts accepted per client address per hour.
    #[serde(default = "default_per_address")]
    pub starts_per_address: i64,
    /// Recovery starts accepted per login per hour.
    #[serde(default = "default_per_login")]
    pub starts_per_login: i64,
}

fn default_reload() -> u64 {
    5
}
fn default_per_address() -> i64 {
    regain_server::recovery::Limits::default().per_address
}
fn default_per_login() -> i64 {
    regain_server::recovery::Limits::default().per_login
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

impl ServerConfig {
    /// Reads and checks the file; unknown keys are refused with their position.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let config: Self = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for client in &config.clients {
            if client.redirect_uris.is_empty() {
                bail!("{}: client `{}` has no redirect_uris", path.display(), client.client_id);
            }
        }
        Ok(config)
    }

    /// The database URL: `DATABASE_URL`, the file's `database_url`, or `regain.db` next to
    /// the configuration file.
    pub fn database(&self, config_path: &Path) -> String {
        std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| self.database_url.clone())
            .unwrap_or_else(|| {
                let dir = config_path.parent().unwrap_or(Path::new("."));
                format!("sqlite://{}", dir.join("regain.db").display())
            })
    }
}

/// Arguments naming the server configuration.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// The server configuration file.
    #[arg(long, default_value = "regain-server.toml")]
    pub server_config: PathBuf,
}

/// Reads the server configuration and opens its database.
pub async fn open(args: &ServerArgs) -> anyhow::Result<(ServerConfig, Store)> {
    let config = ServerConfig::read(&args.server_config)?;
    let store = Store::open(&config.database(&args.server_config)).await.context("cannot open the database")?;
    Ok((config, store))
}

/// The recovery service of `[recovery]`: the deployment files (watched), the plugin, trust
/// material from the deployment's providers and the face service.
fn recovery(
    settings: &RecoveryConfig,
    config_path: &Path,
    provider: &Provider,
    component: Option<&Path>,
) -> anyhow::Result<Recovery> {
    let base = config_path.parent().unwrap_or(Path::new("."));
    let deployments = DeploymentStore::default();
    let files = FileDeployment::new(
        DEPLOYMENT,
        &base.join(&settings.deployment),
        &base.join(&settings.policies),
        deployments.clone(),
    );
    files.reload().map_err(|refused| anyhow::anyhow!("the recovery deployment is refused:\n{refused}"))?;
    files.watch(std::time::Duration::from_secs(settings.reload_seconds.max(1)));
    let trust = TrustSource::from_deployment(deployments.clone(), DEPLOYMENT).map_err(anyhow::Error::msg)?;
    let face: Arc<dyn FaceService> = match &settings.face_service {
        Some(url) => Arc::new(HttpFaceService::new(url).map_err(anyhow::Error::msg)?),
        None => Arc::new(NoFaceService),
    };
    let adapter =
        ServerAdapter::new(provider.store.clone(), provider.passes.clone(), deployments.clone(), Arc::new(trust), face);
    let source = component.map_or(ComponentSource::Bundled, ComponentSource::File);
    let host = PluginHost::new(SandboxConfig::default(), source).context("cannot load the plugin component")?;
    let limits = Limits { per_address: settings.starts_per_address, per_login: settings.starts_per_login };
    Recovery::new(provider.clone(), host, adapter, deployments, DEPLOYMENT, limits).map_err(anyhow::Error::msg)
}

/// Resolves at SIGINT (Ctrl-C) or SIGTERM (service managers, containers).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The name the server's deployment is published under.
const DEPLOYMENT: &str = "default";

/// Runs the OpenID Provider until interrupted; in-flight requests finish first.
pub async fn serve(args: &ServerArgs, component: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (config, store) = open(args).await?;
    let provider = Provider::new(&config.issuer, config.clients.clone(), store).await.map_err(anyhow::Error::msg)?;
    let mut router = provider.clone().router();
    if let Some(settings) = &config.recovery {
        router = router.merge(recovery(settings, &args.server_config, &provider, component)?.router());
    }
    let _sender = match &config.mail {
        Some(mail) => {
            let mailer = regain_server::mail::Mailer::new(mail.clone())
                .map_err(|e| anyhow::anyhow!("{}: [mail]: {e}", args.server_config.display()))?;
            let every = mail.send_interval();
            println!("sending notifications every {}s", every.as_secs());
            Some(regain_server::mail::spawn_sender(provider.store.clone(), mailer, provider.issuer.clone(), every))
        }
        None => None,
    };
    let router = regain_server::ops::instrument(router);
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    println!("listening on http://{} (issuer {})", listener.local_addr()?, config.issuer);
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(stop_signal())
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// `regain user ...`.
#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// Stable identifier.
        #[arg(long)]
        id: String,
        /// Login.
        #[arg(long)]
        login: String,
        /// First name.
        #[arg(long)]
        given_name: Option<String>,
        /// Last name.
        #[arg(long)]
        family_name: Option<String>,
        /// A group; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// ISO 3166-1 alpha-2 country.
        #[arg(long)]
        country: Option<String>,
        /// Read a password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Import users from a CSV file (a header row naming the columns) or a JSON directory file
    /// (the format of `demo/directory.json`): all rows or none.
    Import {
        #[command(flatten)]
        server: ServerArgs,
        /// The file; `.csv` or `.json` tells its format.
        file: PathBuf,
        /// The file's format, whatever its extension.
        #[arg(long, value_enum)]
        format: Option<crate::users_file::Format>,
        /// Update the users whose login exists (the fields the file gives) instead of
        /// refusing the file.
        #[arg(long)]
        update: bool,
    },
    /// Change a user's names, country, groups, attributes, or whether they may sign in.
    Set(crate::admin_cli::SetArgs),
    /// Show a user as JSON, without secrets.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// The user's login.
        login: String,
    },
}

/// Runs a user command.
pub async fn user(command: &UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Create { server, id, login, given_name, family_name, groups, country, password_stdin } => {
            if let Some(country) = country {
                crate::users_file::check_country(country).map_err(anyhow::Error::msg)?;
            }
            let (_, store) = open(server).await?;
            let password_hash = if *password_stdin {
                let mut password = String::new();
                std::io::stdin().read_line(&mut password).context("cannot read the password")?;
                let password = password.trim_end_matches(['\r', '\n']);
                if password.is_empty() {
                    bail!("the password is empty");
                }
                Some(regain_server::auth::hash_password(password).map_err(anyhow::Error::msg)?)
            } else {
                None
            };
            let account = Account {
                id: id.clone(),
                login: login.clone(),
                given_name: given_name.clone(),
                family_name: family_name.clone(),
                enabled: true,
                country: country.clone(),
                groups: groups.clone(),
                password_hash,
                ..Account::default()
            };
            store.create_user(&account, now()).await.with_context(|| format!("cannot create `{login}`"))?;
            println!("created {id} ({login})");
        }
        UserCommand::Import { server, file, format, update } => {
            return crate::admin_cli::import(server, file, *format, *update).await;
        }
        UserCommand::Set(args) => return crate::admin_cli::set(args).await,
        UserCommand::Show { server, login } => return crate::admin_cli::show(server, login).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// `regain helpdesk REF`: the audit trail of the recovery a reference code belongs to.
pub async fn helpdesk(server: &ServerArgs, reference: &str) -> anyhow::Result<ExitCode> {
    let (_, store) = open(server).await?;
    let trail = store.audit_by_helpdesk_ref(reference).await?;
    if trail.is_empty() {
        println!("no recovery has the reference {reference}");
        return Ok(ExitCode::from(crate::EXIT_REFUSED));
    }
    for event in trail {
        println!("{}", serde_json::to_string(&event)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `regain tap revoke ID`.
pub async fn revoke_tap(server: &ServerArgs, tap_id: &str) -> anyhow::Result<ExitCode> {
    let (_, store) = open(server).await?;
    if store.revoke_tap(tap_id, now()).await? {
        println!("revoked {tap_id}");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("no live pass has the id {tap_id}");
        Ok(ExitCode::from(crate::EXIT_REFUSED))
    }
}

/// `regain audit export`: audit events as JSON lines, oldest first.
pub async fn export_audit(server: &ServerArgs, since: i64, user: Option<&str>) -> anyhow::Result<ExitCode> {
    let (_, store) = open(server).await?;
    for event in store.audit_since(since, user).await? {
        println!("{}", serde_json::to_string(&event)?);
    }
    Ok(ExitCode::SUCCESS)
}
