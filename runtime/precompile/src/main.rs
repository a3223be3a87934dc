//! `bindery-precompile OUT NAME=COMPONENT.wasm...`: compiles each component
//! for this machine with the runtime's engine configuration, writes
//! `OUT/NAME.cwasm`, and prints the engine key the code is valid for. The
//! host's `build.rs` runs it, so a new Bindery process loads its bundled
//! plugins without compiling them.

#[path = "../../src/engine_config.rs"]
mod engine_config;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(key) => {
            println!("{key}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bindery-precompile: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<String, String> {
    let mut args = std::env::args_os().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or("usage: bindery-precompile OUT NAME=PATH...")?,
    );
    let engine = wasmtime::Engine::new(&engine_config::wasm_config(false))
        .map_err(|e| format!("cannot create the wasm engine: {e}"))?;
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for arg in args {
        let arg = arg.to_string_lossy();
        let (name, path) = arg
            .split_once('=')
            .ok_or_else(|| format!("`{arg}` is not NAME=PATH"))?;
        let wasm = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        let compiled = engine
            .precompile_component(&wasm)
            .map_err(|e| format!("compiling {name} ({path}): {e:#}"))?;
        let target = out.join(format!("{name}.cwasm"));
        std::fs::write(&target, compiled).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    Ok(engine_config::engine_key(&engine))
}
