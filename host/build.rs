//! Builds the crates under `plugins/` for wasm32-wasip2 and embeds them, so the
//! binary carries its bundled plugins and needs no files beside it.

#[path = "src/authoring/cargo.rs"]
#[allow(dead_code, reason = "the CLI's progress display is not needed here")]
mod cargo;

use std::path::{Path, PathBuf};

use sha2::Digest;

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();
    for watched in [
        "plugins",
        "sdk",
        "runtime/precompile",
        "runtime/src/engine_config.rs",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    let mut names: Vec<String> = std::fs::read_dir(root.join("plugins"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("Cargo.toml").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();

    let mut entries = String::new();
    if !names.is_empty() {
        let packages: Vec<String> = names
            .iter()
            .map(|n| format!("bindery-plugin-{n}"))
            .collect();
        let package_refs: Vec<&str> = packages.iter().map(String::as_str).collect();
        // <target>/<profile>/build/<crate>/out: share one plugin build across profiles.
        let target_dir = out_dir
            .ancestors()
            .nth(4)
            .map_or_else(|| out_dir.clone(), Path::to_path_buf);
        let wasm = cargo::build_plugins(
            &root.join("Cargo.toml"),
            &package_refs,
            &target_dir.join("bundled-plugins"),
            "plugin",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let precompiled = precompile(&root, &target_dir, &out_dir, &names, &wasm);
        for (name, path) in names.iter().zip(&wasm) {
            let code = match &precompiled {
                Some((dir, key)) => format!(
                    "Some(Precompiled {{ engine_key: {key:?}, code: include_bytes!({:?}) }})",
                    dir.join(format!("{name}.cwasm")).display().to_string()
                ),
                None => "None".into(),
            };
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let sha256: String = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            entries.push_str(&format!(
                "    BundledPlugin {{ name: {name:?}, wasm: include_bytes!({:?}), sha256: {sha256:?}, precompiled: {code} }},\n",
                path.display().to_string()
            ));
        }
    }
    let code = format!(
        "/// Every bundled plugin.\npub static BUNDLED: &[BundledPlugin] = &[\n{entries}];\n"
    );
    std::fs::write(out_dir.join("bundled.rs"), code).expect("write bundled.rs");
}

/// Compiles the bundled plugins for the runtime's engine on this machine with
/// `bindery-precompile` (built once per target directory, shared by every
/// profile), so a new process loads them without compiling: returns the
/// directory of `<name>.cwasm` files and the engine key they are valid for.
/// A cross-compiled host compiles its plugins when it first runs instead.
fn precompile(
    root: &Path,
    target_dir: &Path,
    out_dir: &Path,
    names: &[String],
    wasm: &[PathBuf],
) -> Option<(PathBuf, String)> {
    if std::env::var("TARGET").ok() != std::env::var("HOST").ok() {
        return None;
    }
    let nested = target_dir.join("bundled-plugins");
    let built = cargo::cargo_command()
        .arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["-p", "bindery-precompile", "--profile", "precompile"])
        .arg("--target-dir")
        .arg(&nested)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    assert!(
        built.status.success(),
        "building bindery-precompile failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let dir = out_dir.join("precompiled");
    let run = std::process::Command::new(nested.join("precompile").join("bindery-precompile"))
        .arg(&dir)
        .args(
            names
                .iter()
                .zip(wasm)
                .map(|(name, path)| format!("{name}={}", path.display())),
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot run bindery-precompile: {e}"));
    assert!(
        run.status.success(),
        "precompiling the bundled plugins failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let key = String::from_utf8_lossy(&run.stdout).trim().to_string();
    Some((dir, key))
}
