//! Trust material for the plugin: each trusted issuer's JWK Set (from the deployment's
//! `jwks_file` or `jwks_uri`) and the status list tokens credentials point at, fetched over
//! HTTP and cached. Material pinned in code (tests, offline set-ups) is served first.

use regain_core::config::Deployment;
use regain_host::reload::DeploymentStore;
use regain_host::wit::deployment::Bundle;
use regain_host::wit::trust::TrustError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How long fetched material is served before it is fetched again.
const FRESH: Duration = Duration::from_secs(300);
/// How long stale material may still be served when the source cannot be reached: a short
/// outage of an IDV's key endpoint does not stop recoveries.
const STALE_IF_ERROR: Duration = Duration::from_secs(3600);
/// Largest document accepted from an issuer.
const MAX_DOCUMENT: usize = 2 * 1024 * 1024;
/// Time allowed for one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The deployment of the bundle served now, parsed once per published bundle rather than on
/// every presentation.
#[derive(Default)]
pub(crate) struct ParsedDeployment(Mutex<Option<(Arc<Bundle>, Arc<Deployment>)>>);

impl ParsedDeployment {
    /// `bundle`'s deployment, parsed now if it is not the one parsed last.
    pub(crate) fn of(&self, bundle: &Arc<Bundle>) -> Result<Arc<Deployment>, String> {
        let mut last = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen, parsed)) = last.as_ref()
            && Arc::ptr_eq(seen, bundle)
        {
            return Ok(parsed.clone());
        }
        let parsed = Arc::new(Deployment::parse(&bundle.config.name, &bundle.config.text).map_err(|e| e.to_string())?);
        *last = Some((bundle.clone(), parsed.clone()));
        Ok(parsed)
    }
}

/// Key files as last read, with the modification time and length they had then: a file is
/// read again when either changed, so an edited key set is served from the next
/// presentation on, and an unchanged one costs a `stat` rather than a read.
#[derive(Default)]
struct KeyFiles(Mutex<HashMap<PathBuf, (Stamp, String)>>);

/// A file's modification time and length.
type Stamp = (SystemTime, u64);

impl KeyFiles {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        let meta = std::fs::metadata(path)?;
        // Taken before the read: a change during the read leaves a stamp older than the file,
        // so the next call reads it again.
        let stamp = (meta.modified()?, meta.len());
        if let Some((seen, text)) = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(path)
            && *seen == stamp
        {
            return Ok(text.clone());
        }
        let text = std::fs::read_to_string(path)?;
        let mut files = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        files.insert(path.to_owned(), (stamp, text.clone()));
        Ok(text)
    }
}

/// Trust material given in code: issuers' key sets and status list tokens, by issuer and by
/// URI.
#[derive(Default)]
pub struct TrustMaterial {
    /// JWK Set documents by issuer.
    pub issuers: HashMap<String, String>,
    /// Status list tokens by URI.
    pub status_lists: HashMap<String, String>,
}

/// Where the adapter's trust material comes from.
pub struct TrustSource {
    pinned: RwLock<TrustMaterial>,
    deployments: Option<(DeploymentStore, String)>,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, (Instant, String)>>,
    files: KeyFiles,
    parsed: ParsedDeployment,
}

impl TrustSource {
    /// Only the given material; nothing is fetched.
    pub fn pinned(material: TrustMaterial) -> Self {
        Self {
            pinned: RwLock::new(material),
            deployments: None,
            http: reqwest::Client::new(),
            cache: Mutex::default(),
            files: KeyFiles::default(),
            parsed: ParsedDeployment::default(),
        }
    }

    /// Keys from the deployment `name`'s IDV profiles (`jwks_file` relative to the deployment
    /// file, `jwks_uri` fetched), status lists fetched from the URIs credentials carry.
    pub fn from_deployment(deployments: DeploymentStore, name: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            pinned: RwLock::default(),
            deployments: Some((deployments, name.to_owned())),
            http,
            cache: Mutex::default(),
            files: KeyFiles::default(),
            parsed: ParsedDeployment::default(),
        })
    }

    /// Pins an issuer's key set.
    pub fn pin_issuer(&self, issuer: &str, jwks: &str) {
        let mut pinned = self.pinned.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        pinned.issuers.insert(issuer.to_owned(), jwks.to_owned());
    }

    /// The JWK Set of `issuer`, which must be a provider of the current deployment;
    /// `before_fetch` runs before it is fetched over the network (a slow call), not when a
    /// pinned, file or cached copy answers.
    pub async fn issuer_keys(&self, issuer: &str, before_fetch: impl AsyncFnOnce()) -> Result<String, TrustError> {
        if let Some(jwks) = self.pinned.read().unwrap_or_else(std::sync::PoisonError::into_inner).issuers.get(issuer) {
            return Ok(jwks.clone());
        }
        let Some((deployments, name)) = &self.deployments else { return Err(TrustError::UnknownIssuer) };
        let bundle = deployments.get(name).ok_or(TrustError::UnknownIssuer)?;
        let deployment = self.parsed.of(&bundle).map_err(TrustError::Unavailable)?;
        let profile = deployment.idvs.iter().find(|p| p.issuer == issuer).ok_or(TrustError::UnknownIssuer)?;
        if let Some(file) = &profile.jwks_file {
            let base = Path::new(&bundle.config.name).parent().unwrap_or(Path::new("."));
            return self
                .files
                .read(&base.join(file))
                .map_err(|e| TrustError::Unavailable(format!("cannot read the key set of `{}`: {e}", profile.id)));
        }
        let uri = match &profile.jwks_uri {
            Some(uri) => uri.clone(),
            None => format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')),
        };
        self.fetch(&uri, before_fetch).await
    }

    /// The status list token at `uri`; `before_fetch` as for [`TrustSource::issuer_keys`].
    pub async fn status_list_token(&self, uri: &str, before_fetch: impl AsyncFnOnce()) -> Result<String, TrustError> {
        if let Some(token) = self.pinned.read().unwrap_or_else(std::sync::PoisonError::into_inner).status_lists.get(uri)
        {
            return Ok(token.clone());
        }
        if self.deployments.is_none() {
            return Err(TrustError::Unavailable(format!("no status list for `{uri}`")));
        }
        self.fetch(uri, before_fetch).await
    }

    /// A document from the cache, or fetched; stale copies cover a failing source for a while.
    async fn fetch(&self, uri: &str, before_fetch: impl AsyncFnOnce()) -> Result<String, TrustError> {
        if !(uri.starts_with("https://") || uri.starts_with("http://")) {
            return Err(TrustError::Unavailable(format!("`{uri}` is not an HTTP(S) URL")));
        }
        let cached = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(uri).cloned();
        if let Some((at, text)) = &cached
            && at.elapsed() < FRESH
        {
            return Ok(text.clone());
        }
        before_fetch().await;
        match self.get(uri).await {
            Ok(text) => {
                let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                cache.insert(uri.to_owned(), (Instant::now(), text.clone()));
                Ok(text)
            }
            Err(e) => match cached {
                Some((at, text)) if at.elapsed() < STALE_IF_ERROR => {
                    tracing::warn!(error = %e, "trust material fetch failed; serving the cached copy");
                    Ok(text)
                }
                _ => Err(TrustError::Unavailable(e)),
            },
        }
    }

    async fn get(&self, uri: &str) -> Result<String, String> {
        let mut response = self.http.get(uri).send().await.map_err(|e| format!("cannot fetch `{uri}`: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("`{uri}` answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("cannot read `{uri}`: {e}"))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT {
                return Err(format!("`{uri}` is larger than {MAX_DOCUMENT} bytes"));
            }
        }
        String::from_utf8(body).map_err(|_| format!("`{uri}` is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failing test panics with the reason")]

    use super::*;
    use regain_host::wit::types::SourceFile;

    fn bundle(issuer: &str) -> Arc<Bundle> {
        let text = format!(
            "scope_group = \"staff\"\n[verifier]\nresponse_uri = \"https://r.example/vp\"\n\
             [[idv]]\nid = \"idv\"\nissuer = \"{issuer}\"\nvct = [\"{issuer}/id\"]\ncountries = [\"*\"]\n"
        );
        Arc::new(Bundle { config: SourceFile { name: "regain.toml".into(), text }, policies: Vec::new() })
    }

    #[test]
    fn a_bundle_is_parsed_once_and_a_new_one_again() {
        let parsed = ParsedDeployment::default();
        let first = bundle("https://a.example");
        let one = parsed.of(&first).unwrap();
        assert!(Arc::ptr_eq(&one, &parsed.of(&first).unwrap()));
        let reloaded = parsed.of(&bundle("https://b.example")).unwrap();
        assert_eq!(reloaded.idvs.first().map(|p| p.issuer.as_str()), Some("https://b.example"));
        assert!(!Arc::ptr_eq(&one, &reloaded));
        let broken = Arc::new(Bundle {
            config: SourceFile { name: "regain.toml".into(), text: "scope_group = 1".into() },
            policies: Vec::new(),
        });
        assert!(parsed.of(&broken).is_err());
    }

    #[test]
    fn a_key_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let files = KeyFiles::default();
        std::fs::write(&path, r#"{"keys":[]}"#).unwrap();
        assert_eq!(files.read(&path).unwrap(), r#"{"keys":[]}"#);
        // An unchanged file is served from memory: the same length and modification time
        // with other bytes (which an edit never leaves) still answer the text read first.
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, r#"{"KEYS":[]}"#).unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(modified).unwrap();
        assert_eq!(files.read(&path).unwrap(), r#"{"keys":[]}"#);
        std::fs::write(&path, r#"{"keys":[{"kty":"EC"}]}"#).unwrap();
        assert_eq!(files.read(&path).unwrap(), r#"{"keys":[{"kty":"EC"}]}"#);
        std::fs::remove_file(&path).unwrap();
        assert!(files.read(&path).is_err(), "a removed file is an error, not its last text");
    }
}
