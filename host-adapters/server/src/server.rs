//! The server as `regain serve` runs it: its configuration file (`regain-server.toml`), the
//! wiring of the provider, the recovery pages, the notification sender and the operations
//! endpoints, and the listener with its graceful shutdown.

use crate::adapter::{FaceService, HttpFaceService, NoFaceService, ServerAdapter};
use crate::provider::{Client, Provider};
use crate::recovery::{Limits, Recovery};
use crate::store::Store;
use crate::trust::TrustSource;
use anyhow::{Context as _, bail};
use regain_host::reload::{DeploymentStore, FileDeployment};
use regain_host::{ComponentSource, PluginHost, SandboxConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};
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
    pub mail: Option<crate::mail::MailConfig>,
    /// Keycloak as the directory: the recovery service behind the Regain provider installed
    /// in Keycloak. Needs `[recovery]`.
    #[serde(default)]
    pub keycloak: Option<crate::keycloak::KeycloakConfig>,
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
    crate::recovery::Limits::default().per_address
}
fn default_per_login() -> i64 {
    crate::recovery::Limits::default().per_login
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

/// The recovery service of `[recovery]`: the deployment files (watched), the plugin, trust
/// material from the deployment's providers and the face service.
fn recovery(
    settings: &RecoveryConfig,
    keycloak: Option<&Arc<crate::keycloak::Keycloak>>,
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
    let mut adapter =
        ServerAdapter::new(provider.store.clone(), provider.passes.clone(), deployments.clone(), Arc::new(trust), face);
    if let Some(keycloak) = keycloak {
        adapter = adapter.with_keycloak(keycloak.clone());
    }
    let source = component.map_or(ComponentSource::Bundled, ComponentSource::File);
    let host = PluginHost::new(SandboxConfig::default(), source).context("cannot load the plugin component")?;
    let limits = Limits { per_address: settings.starts_per_address, per_login: settings.starts_per_login };
    let service =
        Recovery::new(provider.clone(), host, adapter, deployments, DEPLOYMENT, limits).map_err(anyhow::Error::msg)?;
    Ok(match keycloak {
        Some(keycloak) => service.with_keycloak(keycloak.clone()),
        None => service,
    })
}

/// Resolves at SIGINT (Ctrl-C) or SIGTERM (service managers, containers).
pub async fn stop_signal() {
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

/// Runs the server of the configuration file at `config_path` until `shutdown` resolves;
/// requests in flight finish first. `component` replaces the bundled plugin.
pub async fn run(
    config_path: &Path,
    component: Option<&Path>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = ServerConfig::read(config_path)?;
    let store = Store::open(&config.database(config_path)).await.context("cannot open the database")?;
    let mut provider =
        Provider::new(&config.issuer, config.clients.clone(), store).await.map_err(anyhow::Error::msg)?;
    let keycloak = match &config.keycloak {
        Some(settings) => {
            let base = config_path.parent().unwrap_or(Path::new("."));
            Some(Arc::new(crate::keycloak::Keycloak::new(settings.clone(), base).map_err(anyhow::Error::msg)?))
        }
        None => None,
    };
    provider.keycloak = keycloak.clone();
    let mut router = provider.clone().router();
    match (&config.recovery, &keycloak) {
        (Some(settings), keycloak) => {
            router = router.merge(recovery(settings, keycloak.as_ref(), config_path, &provider, component)?.router());
        }
        (None, Some(_)) => bail!("{}: [keycloak] needs a [recovery] table", config_path.display()),
        (None, None) => {}
    }
    let _sender = match &config.mail {
        Some(mail) => {
            let mut mailer = crate::mail::Mailer::new(mail.clone())
                .map_err(|e| anyhow::anyhow!("{}: [mail]: {e}", config_path.display()))?;
            if let Some(keycloak) = &keycloak {
                mailer = mailer.with_keycloak(keycloak.clone());
            }
            let every = mail.send_interval();
            println!("sending notifications every {}s", every.as_secs());
            Some(crate::mail::spawn_sender(provider.store.clone(), mailer, provider.issuer.clone(), every))
        }
        None => None,
    };
    let router = crate::ops::instrument(router);
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    println!("listening on http://{} (issuer {})", listener.local_addr()?, config.issuer);
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
