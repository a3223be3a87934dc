//! The wasmtime configuration plugins are compiled for. Shared, as source, by
//! the runtime and by `bindery-precompile` (which compiles the bundled
//! plugins when the host is built): compiled code loads only into an engine
//! configured exactly as the one that compiled it.

use std::hash::{Hash, Hasher};

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, OptLevel};

/// The engine configuration. `fuel_metering` changes the generated code.
pub fn wasm_config(fuel_metering: bool) -> Config {
    let mut wc = Config::new();
    wc.epoch_interruption(true)
        // The component-model-async call path costs ~1 µs per call and we
        // do not use WASIp3.
        .concurrency_support(false)
        .cranelift_opt_level(OptLevel::Speed)
        .consume_fuel(fuel_metering);
    wc
}

/// What compiled code for `engine` is filed under: wasmtime's compatibility
/// hash (its version, these settings, the CPU's features), shortened.
pub fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..12])
}

struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
    }
}
