//! `regain serve` and the admin commands over the server's database.

use anyhow::{Context as _, bail};
use regain_server::accounts::Account;
use regain_server::server::ServerConfig;
use regain_server::store::{Store, now};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

/// Runs the OpenID Provider until SIGTERM or SIGINT; in-flight requests finish first.
pub async fn serve(args: &ServerArgs, component: Option<&Path>) -> anyhow::Result<ExitCode> {
    regain_server::server::run(&args.server_config, component, regain_server::server::stop_signal()).await?;
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
