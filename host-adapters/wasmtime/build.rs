//! Builds the plugin component (and the sandbox test guest) for `wasm32-wasip2`, so that a
//! plain `cargo build` of the workspace produces everything, and tells the host crate where
//! the results are.
//!
//! The nested cargo uses its own target directory: the outer cargo holds the lock on the
//! workspace's, and a nested build in the same directory would wait for it forever.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

/// The crates built for the wasm target, with the environment variable that carries the
/// path of each result into the host crate.
const GUESTS: [(&str, &str); 2] =
    [("regain-plugin", "REGAIN_PLUGIN_WASM"), ("regain-test-guest", "REGAIN_TEST_GUEST_WASM")];

fn main() -> ExitCode {
    match build() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            println!("cargo::error={message}");
            ExitCode::FAILURE
        }
    }
}

fn build() -> Result<(), String> {
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.ancestors().nth(2).ok_or("cannot find the workspace root above regain-host")?.to_path_buf();
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    let target_dir = cargo_target_dir(&out_dir).join("regain-wasm");

    for watched in
        ["wit", "plugin/core", "plugin/component", "host-adapters/wasmtime/test-guest", "Cargo.lock", "Cargo.toml"]
    {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }

    ensure_wasm_target()?;

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--locked", "--target", WASM_TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in GUESTS {
        cmd.args(["--package", package]);
    }
    // The outer build's flags and wrappers are for the host target (and, under clippy,
    // would lint the guests a second time); the nested build must not inherit them.
    for name in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(name);
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo to build the plugin component: {e}"))?;
    if !status.success() {
        return Err(format!("building the plugin component for {WASM_TARGET} failed ({status})"));
    }

    for (package, variable) in GUESTS {
        let file = target_dir.join(WASM_TARGET).join(PROFILE).join(format!("{}.wasm", package.replace('-', "_")));
        if !file.is_file() {
            return Err(format!("the build of `{package}` did not produce {}", file.display()));
        }
        println!("cargo::rustc-env={variable}={}", file.display());
    }
    Ok(())
}

fn var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set `{name}` for the build script"))
}

/// The target directory of the outer build: the nearest ancestor of `OUT_DIR` that cargo
/// marked with `CACHEDIR.TAG`.
fn cargo_target_dir(out_dir: &Path) -> PathBuf {
    out_dir.ancestors().find(|dir| dir.join("CACHEDIR.TAG").is_file()).unwrap_or(out_dir).to_path_buf()
}

/// Installs the wasm target through rustup when the active toolchain lacks it, so that a
/// fresh clone builds with one command.
fn ensure_wasm_target() -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot =
        Command::new(&rustc).args(["--print", "sysroot"]).output().map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(WASM_TARGET).is_dir() {
        return Ok(());
    }
    println!("cargo::warning=installing the {WASM_TARGET} target with rustup");
    let installed =
        Command::new("rustup").args(["target", "add", WASM_TARGET]).status().map(|s| s.success()).unwrap_or(false);
    if installed {
        Ok(())
    } else {
        Err(format!("the {WASM_TARGET} target is missing: run `rustup target add {WASM_TARGET}`"))
    }
}
