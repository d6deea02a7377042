//! The per-store memory cap.

/// Refuses memory growth past the cap and remembers that it did, so that the resulting trap
/// is reported as a memory-limit error rather than as an anonymous crash.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) exceeded: bool,
}

/// Most table elements one instance may have; the plugin needs a few hundred.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, exceeded: false }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            // An error (rather than `Ok(false)`) traps at once: a Rust guest whose allocation
            // fails would abort anyway, and the error says why.
            wasmtime::bail!("memory limit of {} bytes reached", self.limit);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
