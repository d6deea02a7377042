//! `regain serve` and the admin commands over the server's database.

use anyhow::{Context as _, bail};
use regain_server::accounts::Account;
use regain_server::provider::{Client, Provider};
use regain_server::store::{Store, now};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

async fn open(args: &ServerArgs) -> anyhow::Result<(ServerConfig, Store)> {
    let config = ServerConfig::read(&args.server_config)?;
    let store = Store::open(&config.database(&args.server_config)).await.context("cannot open the database")?;
    Ok((config, store))
}

/// Runs the OpenID Provider until interrupted; in-flight requests finish first.
pub async fn serve(args: &ServerArgs) -> anyhow::Result<ExitCode> {
    let (config, store) = open(args).await?;
    let provider = Provider::new(&config.issuer, config.clients.clone(), store).await.map_err(anyhow::Error::msg)?;
    let router = provider.router().route("/healthz", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    println!("listening on http://{} (issuer {})", listener.local_addr()?, config.issuer);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
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
    /// Import users from a JSON directory file (the format of `demo/directory.json`).
    Import {
        #[command(flatten)]
        server: ServerArgs,
        /// The file.
        file: PathBuf,
    },
}

/// Runs a user command.
pub async fn user(command: &UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Create { server, id, login, given_name, family_name, groups, country, password_stdin } => {
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
        UserCommand::Import { server, file } => {
            let (_, store) = open(server).await?;
            let users = crate::directory_file::load(file)?;
            let count = users.len();
            for u in users {
                let account = Account {
                    id: u.id,
                    login: u.login,
                    given_name: u.given_name,
                    family_name: u.family_name,
                    enabled: u.enabled,
                    last_sign_in: u.last_sign_in.and_then(|t| i64::try_from(t).ok()),
                    country: u.country,
                    privileged: u.privileged,
                    groups: u.groups,
                    attributes: u.attributes.into_iter().collect(),
                    ..Account::default()
                };
                let login = account.login.clone();
                store.create_user(&account, now()).await.with_context(|| format!("cannot import `{login}`"))?;
            }
            println!("imported {count} user(s)");
        }
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
