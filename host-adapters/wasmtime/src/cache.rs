//! The on-disk cache of compiled components.
//!
//! Compiling the plugin with Cranelift takes seconds (4.4 s on two cores); loading a compiled
//! artefact takes milliseconds. An artefact is keyed by the SHA-256 of the component and by
//! the engine's compatibility hash (wasmtime version, compiler settings, CPU features), so a
//! new plugin or a new engine never loads a stale artefact.

use crate::LoadError;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a loaded component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled from the component's bytes (and written to the cache, if one is set).
    Compiled,
    /// Loaded from a compiled artefact in the cache.
    Cached,
}

/// What loading the component did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Compiled or loaded from the cache.
    pub origin: Origin,
    /// How long loading took.
    pub elapsed: Duration,
    /// SHA-256 of the component, lowercase hex.
    pub component_sha256: String,
    /// The cache file used or written, if any.
    pub cache_file: Option<PathBuf>,
}

/// Feeds `Hash` output into SHA-256, which, unlike `DefaultHasher`, is stable across
/// processes and Rust versions.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Compiles `bytes`, or loads the artefact cached for them.
pub(crate) fn load(
    engine: &Engine,
    bytes: &[u8],
    cache_dir: Option<&Path>,
) -> Result<(Component, LoadReport), LoadError> {
    let started = Instant::now();
    let component_sha256 = hex(&Sha256::digest(bytes));
    let Some(dir) = cache_dir else {
        let component = compile(engine, bytes)?;
        let report =
            LoadReport { origin: Origin::Compiled, elapsed: started.elapsed(), component_sha256, cache_file: None };
        return Ok((component, report));
    };

    let mut engine_hash = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    let engine_hash = hex(&engine_hash.0.finalize());
    let file = dir.join(format!("{component_sha256}-{}.cwasm", engine_hash.get(..16).unwrap_or(&engine_hash)));

    if file.is_file() {
        match deserialize(engine, &file) {
            Ok(component) => {
                let report = LoadReport {
                    origin: Origin::Cached,
                    elapsed: started.elapsed(),
                    component_sha256,
                    cache_file: Some(file),
                };
                return Ok((component, report));
            }
            Err(e) => tracing::warn!(file = %file.display(), error = %e, "cached component unusable, compiling again"),
        }
    }

    let component = compile(engine, bytes)?;
    let cache_file = match store(&component, dir, &file) {
        Ok(()) => Some(file),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the component cache; the next start compiles again");
            None
        }
    };
    let report = LoadReport { origin: Origin::Compiled, elapsed: started.elapsed(), component_sha256, cache_file };
    Ok((component, report))
}

fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, LoadError> {
    Component::new(engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))
}

#[expect(unsafe_code, reason = "wasmtime trusts compiled artefacts; see the safety comment")]
fn deserialize(engine: &Engine, file: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file is machine code that wasmtime will run, so it must come from
    // `Component::serialize`. Only `store` below writes into the cache directory, which it
    // creates readable and writable by the service user alone, and it renames complete files
    // into place, so a crash never leaves a half-written artefact under a final name.
    // wasmtime itself refuses artefacts from another version or engine configuration.
    unsafe { Component::deserialize_file(engine, file) }
}

fn store(component: &Component, dir: &Path, file: &Path) -> std::io::Result<()> {
    let artefact = component.serialize().map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    create_private_dir(dir)?;
    // Unique per process and per call: two loads racing in one process must not share a file.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let temporary = dir.join(format!(".{}-{unique}.tmp", std::process::id()));
    std::fs::write(&temporary, artefact)?;
    std::fs::rename(&temporary, file).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
    }
}
