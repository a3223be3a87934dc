//! Plugins compiled into the binary: the crates under `plugins/`, built for
//! `wasm32-wasip2` by `build.rs`.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The component of bundled plugin `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUNDLED.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
}

/// Names of the bundled plugins.
pub fn names() -> Vec<&'static str> {
    BUNDLED.iter().map(|(n, _)| *n).collect()
}
