//! Errors of loading the component and of calling it.

use std::path::PathBuf;
use std::time::Duration;

/// Why the plugin component could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The sandbox configuration is inconsistent.
    #[error("invalid sandbox configuration: {0}")]
    InvalidConfig(String),
    /// The wasmtime engine refused the configuration.
    #[error("cannot create the wasmtime engine: {0}")]
    Engine(String),
    /// The component file could not be read.
    #[error("cannot read the component `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The bytes are not a valid component, or compiling them failed.
    #[error("cannot compile the component: {0}")]
    Compile(String),
    /// The component does not fit the `regain:recovery/plugin` world: it lacks an export
    /// or imports something the host does not provide.
    #[error("the component does not fit the regain plugin world: {0}")]
    Link(String),
}

/// Why a call into the plugin produced no answer. Every variant leaves the host able to
/// serve the next call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Every instance slot stayed taken for the whole queue timeout.
    #[error("no plugin instance became free within {0:?}")]
    Busy(Duration),
    /// The call ran past its deadline and was stopped.
    #[error("the plugin call ran past its deadline of {0:?} and was stopped")]
    Timeout(Duration),
    /// The plugin tried to grow its memory past the cap.
    #[error("the plugin tried to use more than {0} bytes of memory and was stopped")]
    MemoryLimit(usize),
    /// The plugin trapped (a crash inside the sandbox); the text is for the host log.
    #[error("the plugin trapped: {0}")]
    Trap(String),
    /// An instance could not be created.
    #[error("cannot instantiate the plugin: {0}")]
    Instantiate(String),
    /// The instance failed in an earlier call and cannot be entered again.
    #[error("this plugin instance failed earlier and cannot be used again")]
    Poisoned,
}
