//! `[registry]` and `[cache]`: where images are named, looked up and pushed, and how long resolutions are kept.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::SecretSource;

/// The image registry.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Put in front of every image name, e.g. `registry.example.org/binder/i-`
    /// (upstream's `image_prefix`).
    pub image_prefix: String,
    /// The registry's API, e.g. `https://registry.example.org`. Unset: no
    /// registry is asked, and only builds this host recorded count as present.
    pub url: Option<url::Url>,
    /// Basic-auth user; with `password`.
    pub username: Option<String>,
    /// Basic-auth password, also offered to a bearer-token service.
    pub password: Option<SecretSource>,
    /// A Docker `config.json` whose `auths` entry for the registry is used
    /// when no username is set (the build pods' push secret, mounted).
    pub docker_config: Option<PathBuf>,
    /// Tries per look-up when the registry fails or is unreachable.
    pub retries: u32,
    /// Deadline of one request.
    pub timeout_ms: u64,
    /// How long a found image is believed without asking again.
    pub found_ttl_secs: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            image_prefix: String::new(),
            url: None,
            username: None,
            password: None,
            docker_config: None,
            retries: 3,
            timeout_ms: 10_000,
            found_ttl_secs: 600,
        }
    }
}

/// The sled cache of resolved refs.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// A branch, tag, `HEAD` or unversioned record resolved longer ago than
    /// this is asked again on the next request (requests at once share one
    /// call, conditional where the forge has ETags), so a push shows on the
    /// next click. Immutable refs (a sha, a versioned DOI) stay until evicted.
    pub moving_ref_revalidate_ms: u64,
    /// How long a moving ref's last resolution stands in when asking again
    /// fails (the forge is down or limits the rate).
    pub moving_ref_ttl_secs: u64,
    /// How long "not found" is remembered (upstream: 300 s).
    pub not_found_ttl_secs: u64,
    /// Resolutions kept; the oldest are evicted past this.
    pub max_refs: usize,
    /// Repositories whose environment images are remembered for layer
    /// builds; those built least recently are forgotten past this.
    pub max_environment_repos: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            moving_ref_revalidate_ms: 1000,
            moving_ref_ttl_secs: 600,
            not_found_ttl_secs: 300,
            max_refs: 100_000,
            max_environment_repos: 10_000,
        }
    }
}
