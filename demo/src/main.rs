#![doc = include_str!("../README.md")]

mod app;
mod setup;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::{Child, Command};

/// DEV ONLY: the Regain demo on localhost.
#[derive(Parser)]
#[command(name = "regain-demo", version, about)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
}

#[derive(Subcommand)]
enum Role {
    /// Start everything (the default): server, dev IDV, dev wallet and the demo application.
    Up(setup::Ports),
    /// The reference server of a configuration file.
    Server {
        /// `regain-server.toml`.
        #[arg(long)]
        config: PathBuf,
    },
    /// The demo application.
    App {
        /// Where to listen.
        #[arg(long)]
        listen: String,
        /// Its own base URL.
        #[arg(long)]
        base: String,
        /// The reference server's issuer.
        #[arg(long)]
        issuer: String,
    },
    /// DEV ONLY: the simulated identity verification provider.
    Idv {
        /// Where to listen.
        #[arg(long)]
        listen: String,
        /// Its issuer (an origin).
        #[arg(long)]
        issuer: String,
        /// The reference server's OIDC4IDA callback, registered as client `regain-recovery`.
        #[arg(long)]
        callback: String,
        /// The dev wallet's page.
        #[arg(long)]
        wallet: String,
    },
    /// DEV ONLY: the dev wallet's page.
    Wallet {
        /// Where to listen.
        #[arg(long)]
        listen: String,
        /// The wallet's file (key and credentials).
        #[arg(long)]
        store: PathBuf,
    },
    /// The current code of an authenticator app key (base32), for the walkthrough.
    Totp {
        /// The key the registration page shows.
        secret: String,
    },
}

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REGAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&anyhow::Error::new(e)),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

#[expect(clippy::print_stderr, reason = "the command's error channel")]
fn fail(error: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("regain-demo: {error:#}");
    std::process::ExitCode::from(2)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.role.unwrap_or(Role::Up(setup::Ports::default())) {
        Role::Up(ports) => up(&ports).await,
        Role::Server { config } => {
            regain_server::server::run(&config, None, regain_server::server::stop_signal()).await
        }
        Role::App { listen, base, issuer } => {
            let router = app::router(&base, &issuer)?;
            let listener =
                tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            axum::serve(listener, router).with_graceful_shutdown(regain_server::server::stop_signal()).await?;
            Ok(())
        }
        Role::Idv { listen, issuer, callback, wallet } => {
            let config = regain_dev_idv::service::Config {
                issuer,
                fixtures: regain_dev_idv::fixtures::Fixtures::generate(),
                clients: vec![("regain-recovery".into(), callback)],
                wallet_url: wallet,
            };
            tracing::warn!("DEV ONLY: simulated identity verification provider; never use it with real people");
            serve(&listen, regain_dev_idv::service::Service::new(config).router()).await
        }
        Role::Wallet { listen, store } => {
            let wallet = regain_dev_idv::wallet::client::Wallet::open(&store)?;
            serve(&listen, regain_dev_idv::wallet::web::router(std::sync::Arc::new(wallet))).await
        }
        Role::Totp { secret } => {
            let key = regain_server::auth::base32_decode(&secret)
                .ok_or_else(|| anyhow::anyhow!("`{secret}` is not a base32 key"))?;
            let step = u64::try_from(regain_server::store::now() / 30).unwrap_or(0);
            say(&regain_server::auth::Totp::new(&key).code_at_step(step, 6));
            Ok(())
        }
    }
}

/// SIGTERM or SIGINT, listened for from now on.
fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Serves `router` on `listen` until SIGTERM or SIGINT.
async fn serve(listen: &str, router: axum::Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    axum::serve(listener, router).with_graceful_shutdown(regain_server::server::stop_signal()).await?;
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the demo talks to the person running it")]
fn say(text: &str) {
    println!("{text}");
}

/// The children, stopped when the demo stops.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn up(ports: &setup::Ports) -> anyhow::Result<()> {
    // Listen for the stop signals before any child exists, so that a stop at any moment
    // stops the children too.
    let stop = stop_signals()?;
    let dir = setup::prepare(ports).await?;
    let me = std::env::current_exe().context("cannot find this program")?;
    let spawn = |args: Vec<String>| -> anyhow::Result<Child> {
        Command::new(&me).args(&args).spawn().with_context(|| format!("cannot start `{}`", args.join(" ")))
    };
    let mut children = Children(Vec::new());
    children.0.push(spawn(vec![
        "server".into(),
        "--config".into(),
        dir.join("regain-server.toml").display().to_string(),
    ])?);
    children.0.push(spawn(vec![
        "app".into(),
        "--listen".into(),
        format!("127.0.0.1:{}", ports.app),
        "--base".into(),
        ports.app_url(),
        "--issuer".into(),
        ports.server_url(),
    ])?);
    for child in setup::idv_roles(ports, &dir) {
        children.0.push(spawn(child)?);
    }
    setup::wait_until_up(ports).await?;
    say(&setup::walkthrough(ports, &dir));
    stop.await;
    say("stopping the demo");
    Ok(())
}
