//! Building plugin crates for `wasm32-wasip2` with cargo. Shared by `build.rs`
//! (the bundled plugins), `bindery plugin build` and the tests, so it uses
//! only the standard library.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target every plugin is built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// A `cargo` command free of the environment of any build it runs inside.
pub fn cargo_command() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // A build script's (or test's) environment describes the outer build: its
    // target, flags, profile and jobserver. None of it applies here.
    const PREFIXES: [&str; 6] = [
        "CARGO_CFG_",
        "CARGO_PKG_",
        "CARGO_FEATURE_",
        "CARGO_MANIFEST_",
        "CARGO_BUILD_",
        "DEP_",
    ];
    const EXACT: [&str; 15] = [
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_CRATE_NAME",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "PROFILE",
        "OPT_LEVEL",
        "NUM_JOBS",
        "DEBUG",
    ];
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if PREFIXES.iter().any(|p| key.starts_with(p)) || EXACT.contains(&&*key) {
            cmd.env_remove(&*key);
        }
    }
    cmd
}

/// Builds the crates `packages` of the workspace or crate at `manifest` for
/// `wasm32-wasip2` in `target_dir`, and returns each one's component path.
/// Cargo's output is kept for the error.
pub fn build_plugins(
    manifest: &Path,
    packages: &[&str],
    target_dir: &Path,
    profile: &str,
) -> Result<Vec<PathBuf>, String> {
    build(manifest, packages, target_dir, profile, false)
}

/// [`build_plugins`], showing cargo's progress on stderr as it comes: a
/// first build compiles for minutes.
pub fn build_plugins_showing_progress(
    manifest: &Path,
    packages: &[&str],
    target_dir: &Path,
    profile: &str,
) -> Result<Vec<PathBuf>, String> {
    build(manifest, packages, target_dir, profile, true)
}

fn build(
    manifest: &Path,
    packages: &[&str],
    target_dir: &Path,
    profile: &str,
    show: bool,
) -> Result<Vec<PathBuf>, String> {
    let mut cmd = cargo_command();
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .args(["--target", WASM_TARGET, "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for p in packages {
        cmd.args(["-p", p]);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot run cargo: {e}"))?;
    let mut stderr = String::new();
    let lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    for line in lines.map_while(Result::ok) {
        if show {
            eprintln!("{line}");
        }
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let status = child.wait().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        let hint =
            if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
                "\nhint: run `rustup target add wasm32-wasip2`"
            } else {
                ""
            };
        return Err(format!(
            "building plugins {packages:?} for {WASM_TARGET} failed:\n{stderr}{hint}"
        ));
    }
    let dir_profile = if profile == "dev" { "debug" } else { profile };
    Ok(packages
        .iter()
        .map(|p| {
            target_dir
                .join(WASM_TARGET)
                .join(dir_profile)
                .join(format!("{}.wasm", p.replace('-', "_")))
        })
        .collect())
}
