#![doc = include_str!("../README.md")]

mod bindings;
mod cache;
mod config;
mod crypto;
mod error;
mod host;
mod imports;
mod limits;
pub mod memory;
pub mod native;
pub mod reload;

pub use cache::{LoadReport, Origin};
pub use config::{MIN_MEMORY_LIMIT, SandboxConfig};
pub use crypto::{NativeVerifier, RememberingVerifier};
pub use error::{CallError, LoadError};
pub use host::{BUNDLED_PLUGIN_PATH, ComponentSource, Instance, PluginHost, bundled_plugin};
pub use imports::{Adapter, Credentials, Deployments, Directory, Events, FaceCheck, Trust};

/// The WIT types of the `regain:recovery` package, as the generated bindings define them.
pub mod wit {
    pub use crate::bindings::exports::regain::recovery::{admin, flow};
    pub use crate::bindings::regain::recovery::{
        credentials, crypto, deployment, directory, events, face_check, trust, types,
    };
}
