//! `regain-dev-wallet`: DEV ONLY. A wallet for Regain's demo and tests: receives identity
//! credentials from credential offers, answers OpenID4VP requests, and serves a small web
//! page that does the same in a browser.

use clap::{Parser, Subcommand};
use regain_dev_idv::wallet::client::Wallet;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// DEV ONLY: a wallet for Regain's demo and tests.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The wallet file (holder key and credentials); created on first use. Default:
    /// `regain-dev-wallet.json` in the temporary directory.
    #[arg(long, global = true, value_name = "FILE")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive the credential of an offer (`openid-credential-offer://?credential_offer=...`).
    Receive {
        /// The offer URL, or the offer's JSON.
        offer: String,
    },
    /// Answer an OpenID4VP request URL: post the presentation to its `response_uri`.
    Present {
        /// The request URL (`openid4vp://?...` or any URL with the request's query).
        request: String,
        /// The id of the credential to present (default: the newest that matches).
        #[arg(long)]
        credential: Option<String>,
    },
    /// List the held credentials.
    List,
    /// Serve the wallet's web page.
    Serve {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8082")]
        listen: String,
    },
}

#[expect(clippy::print_stderr, reason = "the command's error channel")]
fn fail(message: &str) -> ExitCode {
    eprintln!("regain-dev-wallet: {message}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("REGAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colours).with_writer(std::io::stderr).init();
    let path = args.store.clone().unwrap_or_else(|| std::env::temp_dir().join("regain-dev-wallet.json"));
    let wallet = match Wallet::open(&path) {
        Ok(wallet) => Arc::new(wallet),
        Err(e) => return fail(&e.to_string()),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        match args.command {
            Command::Receive { offer } => match wallet.receive(&offer).await {
                Ok(credential) => {
                    println!("received credential {} ({}) from {}", credential.id, credential.vct, credential.issuer);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            },
            Command::Present { request, credential } => match wallet.present(&request, credential.as_deref()).await {
                Ok(answer) => {
                    println!("{answer}");
                    if let Some(back) = answer.get("redirect_uri").and_then(Value::as_str) {
                        println!("open {back} in the browser that started the recovery");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            },
            Command::List => match wallet.store() {
                Ok(store) => {
                    println!("wallet {} (DEV ONLY), {} credential(s)", path.display(), store.credentials.len());
                    for credential in &store.credentials {
                        println!("{} {} from {}", credential.id, credential.vct, credential.issuer);
                        for (name, value) in credential.claims() {
                            let shown = match (&*name, &value) {
                                ("portrait", _) => "(image)".to_owned(),
                                (_, Value::String(text)) => text.clone(),
                                _ => value.to_string(),
                            };
                            println!("  {name}: {shown}");
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            },
            Command::Serve { listen } => {
                let listener = match tokio::net::TcpListener::bind(&listen).await {
                    Ok(listener) => listener,
                    Err(e) => return fail(&format!("cannot listen on {listen}: {e}")),
                };
                let address = listener.local_addr().map_or_else(|_| listen.clone(), |a| a.to_string());
                tracing::warn!("DEV ONLY: the wallet keeps its private key in the clear in its file");
                println!("DEV ONLY regain-dev-wallet listening on http://{address} (wallet file {})", path.display());
                let router = regain_dev_idv::wallet::web::router(wallet);
                match axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await
                {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(&e.to_string()),
                }
            }
        }
    })
}
