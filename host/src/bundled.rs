//! Plugins compiled into the binary: the crates under `plugins/`, built for
//! `wasm32-wasip2` by `build.rs`, with their code compiled for this machine.

use bindery_runtime::engine::Precompiled;
use bindery_runtime::host::BundledPlugin;

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The bundled providers of data records (not git repositories).
pub const DATA_PROVIDERS: [&str; 6] = [
    "zenodo",
    "figshare",
    "dataverse",
    "hydroshare",
    "ckan",
    "swh",
];
