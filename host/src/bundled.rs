//! Plugins compiled into the binary: the crates under `plugins/`, built for
//! `wasm32-wasip2` by `build.rs`.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
