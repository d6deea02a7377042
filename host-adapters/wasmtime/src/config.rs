//! Limits and locations of the sandbox.

use std::path::PathBuf;
use std::time::Duration;

/// How the plugin is sandboxed and where compiled artefacts are cached.
///
/// The defaults suit a recovery service on a small machine: every call may use 64 MiB of
/// linear memory and one second of wall-clock time, and 32 calls may run at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Largest linear memory one instance may grow to, in bytes.
    pub memory_limit: usize,
    /// Longest time one call may run, host imports included.
    pub deadline: Duration,
    /// Most calls in flight at the same time; further calls wait for a free slot. As many
    /// idle instances are kept warm between calls.
    pub max_instances: u32,
    /// Longest time a call waits for a free slot before it fails as busy.
    pub queue_timeout: Duration,
    /// Granularity of the deadline: how often the engine's epoch advances.
    pub epoch_tick: Duration,
    /// Where compiled components are cached; `None` compiles at every start.
    pub cache_dir: Option<PathBuf>,
}

/// Smallest accepted memory limit: what the plugin needs to start.
pub const MIN_MEMORY_LIMIT: usize = 4 << 20;

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            memory_limit: 64 << 20,
            deadline: Duration::from_secs(1),
            max_instances: 32,
            queue_timeout: Duration::from_secs(5),
            epoch_tick: Duration::from_millis(10),
            cache_dir: default_cache_dir(),
        }
    }
}

impl SandboxConfig {
    /// Checks that the limits make sense together; the text names the offending field.
    pub fn check(&self) -> Result<(), String> {
        if self.memory_limit < MIN_MEMORY_LIMIT {
            return Err(format!("`memory_limit` must be at least {MIN_MEMORY_LIMIT} bytes"));
        }
        if self.max_instances == 0 {
            return Err("`max_instances` must be at least 1".into());
        }
        if self.epoch_tick.is_zero() {
            return Err("`epoch_tick` must be longer than zero".into());
        }
        if self.deadline < self.epoch_tick {
            return Err("`deadline` must be at least one `epoch_tick`".into());
        }
        Ok(())
    }

    /// The deadline in epoch ticks. The epoch may advance right after the deadline is set,
    /// so one tick is added: the call then runs at least `deadline` and at most one tick more.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        let ticks = self.deadline.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX - 1).saturating_add(1)
    }
}

/// `$XDG_CACHE_HOME/regain`, else `$HOME/.cache/regain`.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("regain"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(SandboxConfig::default().check(), Ok(()));
    }

    #[test]
    fn deadline_ticks_round_up_and_add_one() {
        let config = SandboxConfig {
            deadline: Duration::from_millis(25),
            epoch_tick: Duration::from_millis(10),
            ..SandboxConfig::default()
        };
        assert_eq!(config.deadline_ticks(), 4);
    }

    #[test]
    fn nonsense_is_refused_with_the_field_name() {
        let base = SandboxConfig::default();
        let cases = [
            (SandboxConfig { memory_limit: 1024, ..base.clone() }, "memory_limit"),
            (SandboxConfig { max_instances: 0, ..base.clone() }, "max_instances"),
            (SandboxConfig { epoch_tick: Duration::ZERO, ..base.clone() }, "epoch_tick"),
            (SandboxConfig { deadline: Duration::from_millis(1), ..base.clone() }, "deadline"),
        ];
        for (config, field) in cases {
            let err = config.check().unwrap_err();
            assert!(err.contains(field), "{err} should name {field}");
        }
    }
}
