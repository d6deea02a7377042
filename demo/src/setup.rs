//! The demo's files: the server configuration, the deployment, the policies and a SQLite
//! database seeded with the demo people, written to a fresh directory on every start.

use anyhow::Context as _;
use regain_server::accounts::Account;
use regain_server::auth::hash_password;
use regain_server::store::{Store, now};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The password every demo user had before losing it.
pub const PASSWORD: &str = "demo password 1";

/// Where each part listens (all on loopback, addressed as `localhost` so that passkeys work).
#[derive(Debug, Clone, clap::Args)]
pub struct Ports {
    /// The reference server.
    #[arg(long, default_value_t = 8080)]
    pub server: u16,
    /// The dev IDV.
    #[arg(long, default_value_t = 8081)]
    pub idv: u16,
    /// The dev wallet's page.
    #[arg(long, default_value_t = 8082)]
    pub wallet: u16,
    /// The demo application.
    #[arg(long, default_value_t = 8083)]
    pub app: u16,
    /// The demo's files; default `regain-demo` in the temporary directory, emptied first.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

impl Default for Ports {
    fn default() -> Self {
        Self { server: 8080, idv: 8081, wallet: 8082, app: 8083, dir: None }
    }
}

impl Ports {
    /// The server's issuer.
    pub fn server_url(&self) -> String {
        format!("http://localhost:{}", self.server)
    }
    /// The dev IDV's issuer.
    pub fn idv_url(&self) -> String {
        format!("http://localhost:{}", self.idv)
    }
    /// The dev wallet's page.
    pub fn wallet_url(&self) -> String {
        format!("http://localhost:{}", self.wallet)
    }
    /// The demo application.
    pub fn app_url(&self) -> String {
        format!("http://localhost:{}", self.app)
    }
}

fn server_config(p: &Ports) -> String {
    format!(
        "# DEV ONLY: the demo's reference server.\n\
         issuer = \"{server}\"\nlisten = \"127.0.0.1:{port}\"\n\n\
         [[client]]\nclient_id = \"{client}\"\nredirect_uris = [\"{app}/callback\"]\n\
         post_logout_redirect_uris = [\"{app}/\"]\n\n\
         [recovery]\ndeployment = \"regain.toml\"\npolicies = \"policies\"\nreload_seconds = 2\n\
         face_service = \"{idv}/face/compare\"\nstarts_per_address = 1000\nstarts_per_login = 20\n",
        server = p.server_url(),
        port = p.server,
        client = crate::app::CLIENT_ID,
        app = p.app_url(),
        idv = p.idv_url(),
    )
}

fn deployment(p: &Ports) -> String {
    format!(
        "# DEV ONLY: the demo deployment. Everyone in `recovery-enabled` may recover through the\n\
         # dev IDV: by presenting its credential from the dev wallet (OpenID4VP), or, when that\n\
         # provider is marked unavailable, through its OIDC4IDA side.\n\
         scope_group = \"recovery-enabled\"\n\n\
         [verifier]\nresponse_uri = \"{server}/recover/response\"\nwallet = \"{wallet}/present\"\n\n\
         [[matching.bind]]\nclaim = \"birthdate\"\nattribute = \"birthdate\"\n\n\
         [[idv]]\nid = \"dev-idv\"\nissuer = \"{idv}\"\nvct = [\"{idv}/credentials/identity\"]\ncountries = [\"*\"]\npriority = 1\n\n\
         [[idv]]\nid = \"dev-idv-ida\"\nissuer = \"{idv}\"\nmode = \"oidc4ida\"\ncountries = [\"*\"]\npriority = 2\n\n\
         [idv.oidc4ida]\nauthorization_endpoint = \"{idv}/authorize\"\ntoken_endpoint = \"{idv}/token\"\n\
         client_id = \"regain-recovery\"\nredirect_uri = \"{server}/recover/provider-callback\"\n",
        server = p.server_url(),
        wallet = p.wallet_url(),
        idv = p.idv_url(),
    )
}

/// The demo people, as the dev IDV's fixtures describe them.
fn people() -> anyhow::Result<Vec<Account>> {
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&regain_dev_idv::fixtures::directory())?;
    let text = |e: &serde_json::Value, k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let password = hash_password(PASSWORD).map_err(anyhow::Error::msg)?;
    entries
        .iter()
        .map(|e| {
            Ok(Account {
                id: text(e, "id").context("an entry without id")?,
                login: text(e, "login").context("an entry without login")?,
                given_name: text(e, "given_name"),
                family_name: text(e, "family_name"),
                enabled: e.get("enabled").and_then(serde_json::Value::as_bool).unwrap_or(true),
                last_sign_in: e.get("last_sign_in").and_then(serde_json::Value::as_i64).or(Some(now() - 86_400)),
                country: text(e, "country"),
                privileged: e.get("privileged").and_then(serde_json::Value::as_bool).unwrap_or(false),
                groups: e
                    .get("groups")
                    .and_then(|g| g.as_array())
                    .map(|g| g.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default(),
                attributes: e
                    .get("attributes")
                    .and_then(|a| a.as_object())
                    .map(|a| a.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
                    .unwrap_or_default(),
                password_hash: Some(password.clone()),
                // The authenticator app they lost with their phone.
                totp_secret: Some(b"a lost authenticator".to_vec()),
                ..Account::default()
            })
        })
        .collect()
}

/// Writes the demo's files into a fresh directory and seeds its database.
pub async fn prepare(p: &Ports) -> anyhow::Result<PathBuf> {
    let dir = p.dir.clone().unwrap_or_else(|| std::env::temp_dir().join("regain-demo"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot empty `{}`", dir.display()))?;
    }
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).with_context(|| format!("cannot create `{}`", policies.display()))?;
    for (name, text) in regain_core::policy::DEFAULT_POLICIES {
        let file = Path::new(name).file_name().context("a policy without a name")?;
        std::fs::write(policies.join(file), text)?;
    }
    std::fs::write(dir.join("regain-server.toml"), server_config(p))?;
    std::fs::write(dir.join("regain.toml"), deployment(p))?;
    let store = Store::open(&format!("sqlite://{}", dir.join("regain.db").display())).await?;
    for account in people()? {
        store.create_user(&account, now()).await.with_context(|| format!("cannot seed `{}`", account.login))?;
    }
    Ok(dir)
}

/// The argument lists of the dev IDV and dev wallet processes.
pub fn idv_roles(p: &Ports, dir: &Path) -> Vec<Vec<String>> {
    let args = |list: &[&str]| list.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    vec![
        args(&[
            "idv",
            "--listen",
            &format!("127.0.0.1:{}", p.idv),
            "--issuer",
            &p.idv_url(),
            "--callback",
            &format!("{}/recover/provider-callback", p.server_url()),
            "--wallet",
            &p.wallet_url(),
        ]),
        args(&[
            "wallet",
            "--listen",
            &format!("127.0.0.1:{}", p.wallet),
            "--store",
            &dir.join("wallet.json").display().to_string(),
        ]),
    ]
}

/// Waits until every part answers (a start-up guard, not a speed assertion).
pub async fn wait_until_up(p: &Ports) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for url in [
        format!("{}/healthz", p.server_url()),
        format!("{}/", p.app_url()),
        format!("{}/healthz", p.idv_url()),
        format!("{}/", p.wallet_url()),
    ] {
        let mut up = false;
        for _ in 0..600 {
            if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(up, "`{url}` did not come up");
    }
    Ok(())
}

/// What to do next, printed once everything is up.
pub fn walkthrough(p: &Ports, dir: &Path) -> String {
    let (app, server, idv, wallet) = (p.app_url(), p.server_url(), p.idv_url(), p.wallet_url());
    let config = dir.join("regain-server.toml");
    [
        String::new(),
        "Regain demo (DEV ONLY: simulated identity provider and wallet; nothing here checks real people)".into(),
        String::new(),
        format!("  demo application    {app}"),
        format!("  reference server    {server}   (metrics at {server}/metrics)"),
        format!("  dev IDV             {idv}/verify"),
        format!("  dev wallet          {wallet}/"),
        format!("  files and database  {}", dir.display()),
        String::new(),
        "Walkthrough: you lost your phone (and your authenticator app with it) and forgot your password.".into(),
        format!("  1. Get verified: open {idv}/verify, choose José García Márquez's passport and his selfie,"),
        "     and add the credential it offers to the dev wallet.".into(),
        format!("  2. Open {app}, click Sign in, then \"Sign in another way\" > \"Recover your account\"."),
        "     Login: jose.garcia@example.org, wallet on this device.".into(),
        "  3. \"Open my wallet\" shows what the server asks for; share it. Back on the server, take the".into(),
        format!("     selfie: upload {idv}/fixtures/selfies/jose-garcia-marquez.pgm (download it first)."),
        "  4. Your Temporary Access Pass is shown once: sign in with it.".into(),
        "  5. Register a new authenticator app (`cargo run -p regain-demo -- totp KEY` prints the code".into(),
        "     for the key on the page) and a new password, or a passkey. The demo application then".into(),
        "     shows the ID token.".into(),
        "  Also try: the same-name pair, the revoked credential, the expired passport, someone else's".into(),
        "  selfie (see the dev IDV's page).".into(),
        format!("  Audit trail: cargo run -p regain-server -- audit query --server-config {}", config.display()),
        String::new(),
        "Ctrl-C stops everything.".into(),
    ]
    .join("\n")
}
