//! A loaded plugin: what the loader produces and every call runs against.
//! Its own module so that the engine, the loader and the typed calls depend
//! on it, and not on each other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{ComponentExportIndex, InstancePre};

use super::bindings::{DisplayConfig, PluginKind, PluginMetadata};
use super::capabilities::{CallState, Capability, Grants};
use super::limits::Limits;
use crate::config::PluginSource;

/// How a component was obtained at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileOutcome {
    /// Deserialized from the on-disk cache: no compilation.
    FromCache,
    /// Compiled when the embedding binary was built, for this engine, and
    /// written to the cache.
    Precompiled,
    /// Compiled, and written to the cache for the next start.
    Compiled,
    /// Compiled, but the cache could not be written (the reason was logged).
    CompiledUncached,
}

/// The versions of `bindery:plugin` this host links. A component names one
/// in every import and export; its calls go through that version's names,
/// with the current version's Rust types, which are structurally the same
/// for everything an older version has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WitVersion {
    /// The first release: providers have no `content` export.
    V0_1,
    /// Providers say how their content is fetched (`content`); the
    /// `pool-policy` world.
    V0_2,
}

impl WitVersion {
    /// The version this host's WIT files and the SDK define.
    pub const CURRENT: WitVersion = WitVersion::V0_2;

    /// Every version this host loads, oldest first.
    pub const ALL: [WitVersion; 2] = [WitVersion::V0_1, WitVersion::V0_2];

    /// The version as it appears in interface names.
    pub const fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_1 => "0.1.0",
            WitVersion::V0_2 => "0.2.0",
        }
    }

    /// The version a component's `version` is compatible with, under
    /// semver's 0.x rule (same minor while the major is 0), if any.
    pub fn matching(version: &str) -> Option<WitVersion> {
        let parse = |v: &str| -> Option<(u64, u64)> {
            let mut it = v.split(['.', '-', '+']);
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        };
        let wanted = parse(version)?;
        WitVersion::ALL
            .into_iter()
            .find(|v| parse(v.as_str()) == Some(wanted))
    }

    /// `bindery:plugin/<interface>@<version>`.
    pub fn interface(self, interface: &str) -> String {
        format!("bindery:plugin/{interface}@{}", self.as_str())
    }
}

/// A pre-linked component and the exports its calls use, found once at load.
pub(crate) struct WorldPre {
    pub(crate) instance: InstancePre<CallState>,
    pub(crate) wit: WitVersion,
    /// The world's exported functions by WIT name.
    pub(crate) funcs: BTreeMap<&'static str, ComponentExportIndex>,
}

/// A plugin ready for calls. Replacing a plugin swaps the `Arc`; calls in
/// flight keep the old one until they finish.
pub struct LoadedPlugin {
    /// The name it is configured under.
    pub name: Arc<str>,
    /// Where it came from.
    pub source: PluginSource,
    /// sha256 of the component.
    pub sha256: String,
    /// What it says about itself.
    pub metadata: PluginMetadata,
    /// A provider's launch-form configuration, asked once at load.
    pub display: Option<DisplayConfig>,
    /// The capabilities linked for it.
    pub linked: Vec<Capability>,
    /// Capability requests in its metadata the operator did not grant.
    pub ungranted: Vec<String>,
    /// Its per-call limits.
    pub limits: Limits,
    /// How the compiled code was obtained.
    pub compiled: CompileOutcome,
    /// Time from bytes to ready (compile or cache load, link, metadata call).
    pub load_time: Duration,
    pub(crate) grants: Arc<Grants>,
    pub(crate) pre: WorldPre,
    /// One permit per call allowed into this plugin at once.
    pub(crate) slots: tokio::sync::Semaphore,
}

impl LoadedPlugin {
    /// The hosts and networks this plugin may reach, as its grants say: the
    /// host checks its own fetches for the plugin's repositories against it too.
    pub fn egress(&self) -> &crate::egress::EgressPolicy {
        self.grants.egress()
    }

    /// The latest `x-ratelimit-remaining` its upstream answered with.
    pub fn rate_limit_remaining(&self) -> Option<u64> {
        self.grants.rate_limit_remaining()
    }

    /// Its git network: the host fetches the plugin's repositories over it.
    pub fn git_wire(&self) -> &Arc<crate::gitwire::GitWire> {
        self.grants.git_wire()
    }

    /// The value of a secret granted to it, or `user`'s own in its place,
    /// for the host's fetches it authenticates (never for anything the
    /// plugin or a user sees).
    pub fn secret(
        &self,
        name: &str,
        user: Option<&crate::capabilities::UserSecret>,
    ) -> Result<String, crate::bindings::secrets::SecretError> {
        self.grants.secret(&self.name, name, user)
    }

    /// `git ls-remote` of `url` under its grants, authenticated as `auth`
    /// says (with `user`'s secret in place of the granted one): the host
    /// asks this to learn whether a user's credential reads a repository.
    pub async fn ls_remote_authenticated(
        &self,
        url: &str,
        auth: &crate::bindings::BasicAuth,
        user: Option<&crate::capabilities::UserSecret>,
    ) -> Result<Vec<crate::bindings::git::RemoteRef>, crate::bindings::git::GitError> {
        self.grants
            .ls_remote_authenticated(
                &self.name,
                url,
                auth.username.clone(),
                &auth.password_secret,
                user,
            )
            .await
    }

    /// The `bindery:plugin` version it was built against.
    pub fn wit_version(&self) -> WitVersion {
        self.pre.wit
    }

    /// Its kind.
    pub fn kind(&self) -> PluginKind {
        self.metadata.kind
    }

    /// What `/admin/plugins` and `bindery plugin list` show.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "name": &*self.name,
            "kind": kind_name(self.kind()),
            "plugin_name": self.metadata.name,
            "version": self.metadata.version,
            "description": self.metadata.description,
            "source": self.source.to_string(),
            "sha256": self.sha256,
            "wit": self.pre.wit.as_str(),
            "capabilities": self.linked.iter().map(|c| c.interface()).collect::<Vec<_>>(),
            "requests": {
                "hosts": self.metadata.requests.hosts,
                "config_keys": self.metadata.requests.config_keys.iter().map(|k| &k.name).collect::<Vec<_>>(),
                "secrets": self.metadata.requests.secrets,
            },
            "ungranted_requests": self.ungranted,
            "limits": {
                "memory_bytes": self.limits.memory_bytes,
                "timeout_ms": self.limits.timeout.as_millis() as u64,
                "fuel": self.limits.fuel,
            },
        })
    }
}

/// Human name of a kind, as in the WIT world names.
pub fn kind_name(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Provider => "provider",
        PluginKind::BuildStrategy => "build-strategy",
        PluginKind::CullPolicy => "cull-policy",
        PluginKind::PoolPolicy => "pool-policy",
    }
}
