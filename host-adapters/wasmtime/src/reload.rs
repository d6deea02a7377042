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
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// The bundles being served, by deployment name. Clones share the same store.
#[derive(Clone, Default)]
pub struct DeploymentStore {
    bundles: Arc<RwLock<HashMap<String, Arc<Bundle>>>>,
}

impl DeploymentStore {
    /// The bundle `name` serves now.
    pub fn get(&self, name: &str) -> Option<Arc<Bundle>> {
        self.bundles.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// Serves `bundle` as `name` from the next call on; calls in flight keep the one they
    /// fetched.
    pub fn publish(&self, name: &str, bundle: Bundle) {
        self.bundles.write().unwrap_or_else(PoisonError::into_inner).insert(name.to_owned(), Arc::new(bundle));
    }
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
