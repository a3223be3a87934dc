//! Write Bindery plugins in Rust.
//!
//! A plugin is a WebAssembly component built for `wasm32-wasip2` that implements
//! one of the worlds of the `bindery:plugin` WIT package:
//!
//! | world            | trait              | macro                     |
//! |------------------|--------------------|---------------------------|
//! | `provider`       | [`Provider`]       | [`export_provider!`]      |
//! | `build-strategy` | [`BuildStrategy`]  | [`export_build_strategy!`]|
//! | `cull-policy`    | [`CullPolicy`]     | [`export_cull_policy!`]   |
//! | `pool-policy`    | [`PoolPolicy`]     | [`export_pool_policy!`]   |
//!
//! Plugin code reaches the host only through the context it is handed
//! ([`Context`] and its per-world extensions), so the same code runs natively
//! under `cargo test` with [`testing::MockContext`].
//!
//! Each call runs in a fresh instance: keep no state between calls.
#![deny(missing_docs)]

pub mod config;
mod context;
pub mod doi;
pub mod idle;
mod plugin;
pub mod repo2docker;
pub mod spec;
pub mod testing;
pub mod upstream;

pub use context::{BuildStrategyContext, Context, HostContext, ProviderContext};
pub use plugin::{BuildStrategy, CullPolicy, Package, PoolPolicy, Provider};
#[doc(hidden)]
pub use plugin::{
    BuildStrategyAdapter, CullPolicyAdapter, PackageInfo, PoolPolicyAdapter, ProviderAdapter,
};

/// Generated bindings; plugin authors use the re-exports below instead.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    /// The provider world; the shared types and host interfaces are generated here once.
    pub mod provider {
        wit_bindgen::generate!({
            world: "provider",
            path: "wit",
            additional_derives: [PartialEq, Eq],
            pub_export_macro: true,
            default_bindings_module: "bindery_sdk::bindings::provider",
            export_macro_name: "__export_provider",
        });
    }

    /// A world that reuses the provider world's shared types and host interfaces.
    macro_rules! world_sharing_types {
        ($world:literal, $module:literal, $export:literal) => {
            world_sharing_types!($world, $module, $export, [PartialEq, Eq]);
        };
        ($world:literal, $module:literal, $export:literal, [$($derive:path),*]) => {
            wit_bindgen::generate!({
                world: $world,
                path: "wit",
                additional_derives: [$($derive),*],
                pub_export_macro: true,
                default_bindings_module: $module,
                export_macro_name: $export,
                with: {
                    "bindery:plugin/types@0.2.0": crate::bindings::provider::bindery::plugin::types,
                    "bindery:plugin/log@0.2.0": crate::bindings::provider::bindery::plugin::log,
                    "bindery:plugin/clock@0.2.0": crate::bindings::provider::bindery::plugin::clock,
                    "bindery:plugin/config@0.2.0": crate::bindings::provider::bindery::plugin::config,
                },
            });
        };
    }

    /// The build-strategy world.
    pub mod build_strategy {
        world_sharing_types!(
            "build-strategy",
            "bindery_sdk::bindings::build_strategy",
            "__export_build_strategy"
        );
    }

    /// The cull-policy world.
    pub mod cull_policy {
        world_sharing_types!(
            "cull-policy",
            "bindery_sdk::bindings::cull_policy",
            "__export_cull_policy"
        );
    }

    /// The pool-policy world (its records hold an `f64`: no `Eq`).
    pub mod pool_policy {
        world_sharing_types!(
            "pool-policy",
            "bindery_sdk::bindings::pool_policy",
            "__export_pool_policy",
            [PartialEq]
        );
    }
}

/// Types every plugin uses: metadata, capability requests, errors, log levels.
pub mod types {
    pub use crate::bindings::provider::bindery::plugin::types::{
        CapabilityRequests, ConfigKey, LogLevel, PluginError, PluginKind, PluginMetadata,
        RateLimit, UpstreamFailure,
    };
}

/// The provider world's records.
pub mod provider {
    pub use crate::bindings::provider::exports::bindery::plugin::repo_provider::{
        BasicAuth, ContentSource, Credential, DisplayConfig, Download, FilesContent, GitContent,
        HeaderAuth, Notice, RefFallback, RefLifetime, Resolution, SwhVaultContent, Unpack,
    };

    impl Resolution {
        /// A git remote's branch or tag resolved to `sha`: `url` names the
        /// repository, its build slug and where a person sees it;
        /// `resolved_spec` is the spec pinned to `sha`.
        pub fn git(url: String, sha: String, resolved_spec: String) -> Resolution {
            Resolution {
                resolved_ref: sha,
                build_slug: url.clone(),
                ref_url: url.clone(),
                repo_url: url,
                resolved_spec,
                lifetime: RefLifetime::Moving,
                notices: Vec::new(),
            }
        }
    }

    impl ContentSource {
        /// The resolution's `repo-url` fetched with git at its `resolved-ref`:
        /// what a provider of git repositories returns, and the default.
        pub fn git_at(resolution: &Resolution) -> ContentSource {
            ContentSource::git_with(resolution, None)
        }

        /// [`ContentSource::git_at`], authenticated with `auth` (see
        /// [`crate::upstream::basic_auth`]).
        pub fn git_with(resolution: &Resolution, auth: Option<BasicAuth>) -> ContentSource {
            ContentSource::Git(GitContent {
                url: resolution.repo_url.clone(),
                revision: resolution.resolved_ref.clone(),
                auth,
            })
        }
    }
}

/// The build-strategy world's records.
pub mod build_strategy {
    pub use crate::bindings::build_strategy::exports::bindery::plugin::build_strategy_plugin::{
        BuildPlan, ContainerEngine, EnvironmentImage, Executor, LayerPlan, Repo2dockerPlan,
        RepoFacts, ResourceLimits,
    };
}

/// The cull-policy world's records.
pub mod cull_policy {
    pub use crate::bindings::cull_policy::exports::bindery::plugin::cull_policy_plugin::{
        Decision, Server, ServerState,
    };
}

/// The pool-policy world's records.
pub mod pool_policy {
    pub use crate::bindings::pool_policy::exports::bindery::plugin::pool_policy_plugin::{
        ImageDemand, PoolBounds,
    };
}

/// Outbound HTTP through the host (`http` capability).
pub mod http {
    pub use crate::bindings::provider::bindery::plugin::http::{
        HttpError, Method, Request, Response,
    };

    impl Request {
        /// A GET of `url` that follows redirects, with no extra headers.
        pub fn get(url: impl Into<String>) -> Self {
            Request {
                method: Method::Get,
                url: url.into(),
                headers: Vec::new(),
                body: None,
                timeout_ms: None,
                follow_redirects: true,
            }
        }

        /// Adds a request header.
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.headers.push((name.into(), value.into()));
            self
        }
    }

    impl Response {
        /// The first header called `name` (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }
}

/// `git ls-remote` through the host (`git` capability).
pub mod git {
    use crate::ProviderContext;
    pub use crate::bindings::provider::bindery::plugin::git::{GitError, RemoteRef};
    use crate::types::PluginError;

    /// The commit `wanted` names on the remote at `url` (by
    /// [`find_ref`]), asked with `git ls-remote`: a remote that cannot be
    /// listed is an upstream failure, a ref it lacks is `not-found`.
    pub fn resolve_ref(
        ctx: &impl ProviderContext,
        url: &str,
        wanted: &str,
    ) -> Result<String, PluginError> {
        let refs = ctx
            .ls_remote(url)
            .map_err(|e| crate::upstream::failure("git", None, format!("{e:?}")))?;
        find_ref(&refs, wanted)
            .map(|r| r.oid.clone())
            .ok_or_else(|| {
                PluginError::NotFound(format!("The remote advertises no ref named {wanted:?}."))
            })
    }

    /// The ref `wanted` names, by git's tail match: `main` matches `HEAD`-less
    /// `main`, `refs/heads/main` or `refs/tags/main`, but not `refs/heads/domain`.
    /// The first match in the listing wins, as with `git ls-remote <url> <pattern>`.
    pub fn find_ref<'a>(refs: &'a [RemoteRef], wanted: &str) -> Option<&'a RemoteRef> {
        refs.iter().find(|r| {
            r.name == wanted
                || r.name
                    .strip_suffix(wanted)
                    .is_some_and(|head| head.ends_with('/'))
        })
    }
}

/// The launch form most providers have: a repository and a ref (default
/// `HEAD`), the repository not URL-encoded, no detection regex. A provider
/// sets its names, spec regex and labels, and takes the rest with
/// `..DisplayConfig::default()`.
impl Default for provider::DisplayConfig {
    fn default() -> Self {
        provider::DisplayConfig {
            display_name: String::new(),
            id: String::new(),
            spec_validate_regex: String::new(),
            detect_regex: None,
            repo_label: String::new(),
            repo_placeholder: String::new(),
            repo_url_encode: false,
            ref_enabled: true,
            ref_default: Some("HEAD".into()),
        }
    }
}

/// Secrets by name (`secrets` capability).
pub mod secrets {
    pub use crate::bindings::provider::bindery::plugin::secrets::SecretError;
}

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::build_strategy::*;
    pub use crate::config::PluginConfig;
    pub use crate::cull_policy::*;
    pub use crate::pool_policy::*;
    pub use crate::provider::*;
    pub use crate::types::*;
    pub use crate::{
        BuildStrategy, BuildStrategyContext, Context, CullPolicy, PoolPolicy, Provider,
        ProviderContext,
    };
}
