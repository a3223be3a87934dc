//! Builds the crates under `plugins/` for wasm32-wasip2 and embeds them, so the
//! binary carries its bundled plugins and needs no files beside it.

#[path = "src/authoring/cargo.rs"]
mod cargo;

use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();
    for watched in ["plugins", "sdk", "wit"] {
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
        for (name, path) in names.iter().zip(wasm) {
            entries.push_str(&format!(
                "    ({name:?}, include_bytes!({:?})),\n",
                path.display().to_string()
            ));
        }
    }
    let code = format!(
        "/// (name, component) of every bundled plugin.\npub static BUNDLED: &[(&str, &[u8])] = &[\n{entries}];\n"
    );
    std::fs::write(out_dir.join("bundled.rs"), code).expect("write bundled.rs");
}
