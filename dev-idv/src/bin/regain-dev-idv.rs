//! `regain-dev-idv`: DEV ONLY. The simulated identity verification provider as a service on
//! a loopback port: document and face checks on fixtures, OpenID4VCI issuance, a status
//! list, an OIDC4IDA provider and a face comparison endpoint.

use clap::Parser;
use regain_dev_idv::fixtures::Fixtures;
use regain_dev_idv::service::{Config, Service};
use std::path::PathBuf;
use std::process::ExitCode;

/// DEV ONLY: a simulated identity verification provider for Regain's demo and tests.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// The public base URL (credential issuer and OIDC issuer; an origin, no path). Default:
    /// `http://` and the listen address.
    #[arg(long)]
    issuer: Option<String>,
    /// A fixture directory (the layout of `dev-idv/fixtures`) instead of the built-in set.
    #[arg(long, value_name = "DIR")]
    fixtures: Option<PathBuf>,
    /// A registered OIDC4IDA client and its redirect URI; repeat for several.
    #[arg(long = "client", value_name = "CLIENT_ID=REDIRECT_URI")]
    clients: Vec<String>,
    /// The dev wallet's base URL, for the offer's "open in the dev wallet" link.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    wallet_url: String,
    /// Write the built-in fixture set into DIR and exit.
    #[arg(long, value_name = "DIR")]
    write_fixtures: Option<PathBuf>,
}

#[expect(clippy::print_stderr, reason = "the command's error channel")]
fn fail(message: &str) -> ExitCode {
    eprintln!("regain-dev-idv: {message}");
    ExitCode::FAILURE
}

/// Resolves at SIGINT or SIGTERM.
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

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("REGAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colours).with_writer(std::io::stderr).init();

    if let Some(dir) = &args.write_fixtures {
        return match Fixtures::generate().write(dir) {
            Ok(()) => {
                println!("wrote the DEV ONLY fixture set to {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("cannot write `{}`: {e}", dir.display())),
        };
    }
    let fixtures = match &args.fixtures {
        Some(dir) => match Fixtures::load(dir) {
            Ok(fixtures) => fixtures,
            Err(e) => return fail(&e.to_string()),
        },
        None => Fixtures::generate(),
    };
    let mut clients = Vec::new();
    for client in &args.clients {
        match client.split_once('=') {
            Some((id, uri)) if !id.is_empty() && (uri.starts_with("http://") || uri.starts_with("https://")) => {
                clients.push((id.to_owned(), uri.to_owned()));
            }
            _ => return fail(&format!("`--client {client}` must be CLIENT_ID=REDIRECT_URI (an HTTP(S) URL)")),
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&args.listen).await {
            Ok(listener) => listener,
            Err(e) => return fail(&format!("cannot listen on {}: {e}", args.listen)),
        };
        let address = listener.local_addr().map_or_else(|_| args.listen.clone(), |a| a.to_string());
        // Without `--issuer`, the address actually bound (`--listen 127.0.0.1:0` picks a port).
        let issuer = args.issuer.clone().unwrap_or_else(|| format!("http://{address}"));
        let issuer = issuer.trim_end_matches('/').to_owned();
        if !(issuer.starts_with("http://") || issuer.starts_with("https://"))
            || regain_dev_idv::wallet::origin(&issuer) != issuer
        {
            return fail(&format!("`--issuer {issuer}` must be an HTTP(S) origin without a path"));
        }
        let config = Config { issuer: issuer.clone(), fixtures, clients, wallet_url: args.wallet_url.clone() };
        tracing::warn!("DEV ONLY: simulated identity verification provider; never use it with real people");
        println!("DEV ONLY regain-dev-idv listening on http://{address} (issuer {issuer})");
        let router = Service::new(config).router();
        match axum::serve(listener, router).with_graceful_shutdown(stop_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e.to_string()),
        }
    })
}
