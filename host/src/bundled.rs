//! Plugins compiled into the binary: the crates under `plugins/`, built for
//! `wasm32-wasip2` by `build.rs`.

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
