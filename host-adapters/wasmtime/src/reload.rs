//! Deployments read from files and swapped atomically while the host runs.
//!
//! A [`DeploymentStore`] holds the bundle each deployment name serves. [`FileDeployment`]
//! reads a configuration file and a policy directory, validates them natively with the same
//! core the plugin runs (configuration, strict policy validation, operator safety checks
//! without a directory), and publishes the bundle only when it is valid: an invalid change
//! is refused with its diagnostics, logged, and the previous bundle keeps serving.
//! [`FileDeployment::watch`] polls the files and reloads on change.

use crate::wit::deployment::Bundle;
use crate::wit::types::SourceFile;
use regain_core::checks::Severity;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// The bundles being served, by deployment name, each with its revision. Clones share the
/// same store.
#[derive(Clone, Default)]
pub struct DeploymentStore {
    bundles: Arc<RwLock<HashMap<String, Revision>>>,
}

/// A bundle and its revision number.
type Revision = (u64, Arc<Bundle>);

/// The last revision published by any store of the process. Revisions are numbered across
/// stores, so that two stores never give one number to different bundles (a plugin host's
/// instances may serve adapters over different stores).
static PUBLISHED: AtomicU64 = AtomicU64::new(0);

impl DeploymentStore {
    /// The bundle `name` serves now.
    pub fn get(&self, name: &str) -> Option<Arc<Bundle>> {
        self.bundles.read().unwrap_or_else(PoisonError::into_inner).get(name).map(|(_, bundle)| Arc::clone(bundle))
    }

    /// The revision of the bundle `name` serves now: a number of its own for each
    /// [`DeploymentStore::publish`], below 2^63 (digests, [`digest_revision`], are above).
    pub fn revision(&self, name: &str) -> Option<u64> {
        self.bundles.read().unwrap_or_else(PoisonError::into_inner).get(name).map(|(revision, _)| *revision)
    }

    /// Serves `bundle` as `name` from the next call on; calls in flight keep the one they
    /// fetched.
    pub fn publish(&self, name: &str, bundle: Bundle) {
        let mut bundles = self.bundles.write().unwrap_or_else(PoisonError::into_inner);
        // Numbered under the lock, so that a later revision of `name` is a later bundle.
        let revision = PUBLISHED.fetch_add(1, Ordering::SeqCst).wrapping_add(1) & !DIGEST_BIT;
        bundles.insert(name.to_owned(), (revision, Arc::new(bundle)));
    }
}

/// Set in a revision that is a digest of its bundle, clear in a published number.
const DIGEST_BIT: u64 = 1 << 63;

/// A revision for `bundle` drawn from its contents: the first eight bytes of the SHA-256 of
/// its texts, each preceded by its length, with the top bit set.
#[must_use]
pub fn digest_revision(bundle: &Bundle) -> u64 {
    let mut hash = Sha256::new();
    for file in std::iter::once(&bundle.config).chain(&bundle.policies) {
        for part in [&file.name, &file.text] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or_default());
    u64::from_le_bytes(first) | DIGEST_BIT
}

/// Why a reload was refused; the previous bundle keeps serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A file could not be read.
    #[error("cannot read {0}")]
    Unreadable(String),
    /// The configuration or policies are invalid, or a safety check failed; one diagnostic
    /// per line, `file:line:col: message`.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The files changed and the new bundle is served.
    Swapped,
    /// The files are the ones already served.
    Unchanged,
}

/// One deployment read from a configuration file and a directory of `*.cedar` files.
pub struct FileDeployment {
    name: String,
    config: PathBuf,
    policies: PathBuf,
    store: DeploymentStore,
}

impl FileDeployment {
    /// A deployment named `name`, published into `store`.
    pub fn new(name: &str, config: &Path, policies: &Path, store: DeploymentStore) -> Self {
        Self { name: name.to_owned(), config: config.to_owned(), policies: policies.to_owned(), store }
    }

    fn read(&self) -> Result<Bundle, Refused> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|e| Refused::Unreadable(format!("`{}`: {e}", path.display())))
        };
        let config = SourceFile { name: self.config.display().to_string(), text: read(&self.config)? };
        let entries = std::fs::read_dir(&self.policies)
            .map_err(|e| Refused::Unreadable(format!("`{}`: {e}", self.policies.display())))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "cedar"))
            .collect();
        paths.sort();
        let policies = paths
            .iter()
            .map(|p| Ok(SourceFile { name: p.display().to_string(), text: read(p)? }))
            .collect::<Result<Vec<_>, Refused>>()?;
        Ok(Bundle { config, policies })
    }

    /// Reads, validates and, when valid and changed, publishes the files.
    pub fn reload(&self) -> Result<Reloaded, Refused> {
        let bundle = self.read()?;
        if self.store.get(&self.name).is_some_and(|current| *current == bundle) {
            return Ok(Reloaded::Unchanged);
        }
        let result = validate(&bundle);
        match result {
            Ok(()) => {
                self.store.publish(&self.name, bundle);
                tracing::info!(deployment = %self.name, "deployment reloaded");
                Ok(Reloaded::Swapped)
            }
            Err(refused) => {
                tracing::warn!(deployment = %self.name, diagnostics = %refused, "deployment change refused; the previous one keeps serving");
                Err(refused)
            }
        }
    }

    /// Reloads every `interval` until the returned task is aborted. The first load must
    /// have succeeded (call [`FileDeployment::reload`] first).
    pub fn watch(self, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticker.tick().await;
                // Refusals are logged by `reload`; the previous bundle keeps serving.
                let _ = self.reload();
            }
        })
    }
}

/// Validates a bundle as the plugin would, plus the safety checks that need no directory.
pub fn validate(bundle: &Bundle) -> Result<(), Refused> {
    let policies: Vec<(&str, &str)> = bundle.policies.iter().map(|p| (p.name.as_str(), p.text.as_str())).collect();
    let loaded = regain_core::Loaded::load((&bundle.config.name, &bundle.config.text), &policies).map_err(|e| {
        let text = match e {
            regain_core::FlowError::Config(text) => text,
            other => other.to_string(),
        };
        Refused::Invalid(text.lines().map(str::to_owned).collect())
    })?;
    let errors: Vec<String> = regain_core::checks::run(&loaded.deployment, &loaded.policies, None)
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.to_string())
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(Refused::Invalid(errors)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(config: &str, policies: &[(&str, &str)]) -> Bundle {
        let file = |(name, text): (&str, &str)| SourceFile { name: name.into(), text: text.into() };
        Bundle { config: file(("regain.toml", config)), policies: policies.iter().copied().map(file).collect() }
    }

    #[test]
    fn every_publication_is_a_revision_of_its_own_across_stores() {
        let (one, other) = (DeploymentStore::default(), DeploymentStore::default());
        assert_eq!(one.revision("default"), None);
        one.publish("default", bundle("a", &[]));
        other.publish("default", bundle("a", &[]));
        let (first, theirs) = (one.revision("default").unwrap(), other.revision("default").unwrap());
        one.publish("default", bundle("a", &[]));
        let second = one.revision("default").unwrap();
        assert!(first != theirs && second > first, "{first} {theirs} {second}");
        assert_eq!(second & DIGEST_BIT, 0, "published numbers never look like digests");
    }

    #[test]
    fn a_digest_revision_changes_with_any_byte_and_with_where_the_bytes_are() {
        let base = digest_revision(&bundle("a = 1", &[("p.cedar", "permit(principal, action, resource);")]));
        assert_eq!(base, digest_revision(&bundle("a = 1", &[("p.cedar", "permit(principal, action, resource);")])));
        assert_ne!(base & DIGEST_BIT, 0);
        for changed in [
            bundle("a = 2", &[("p.cedar", "permit(principal, action, resource);")]),
            bundle("a = 1", &[("q.cedar", "permit(principal, action, resource);")]),
            bundle("a = 1", &[("p.cedar", "forbid(principal, action, resource);")]),
            bundle("a = 1", &[]),
            // The same bytes split differently between name and text.
            bundle("a = 1", &[("p.cedarp", "ermit(principal, action, resource);")]),
        ] {
            assert_ne!(digest_revision(&changed), base);
        }
    }
}
