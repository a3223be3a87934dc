//! A loaded plugin: what the loader produces and every call runs against.
//! Its own module so that the engine, the loader and the typed calls depend
//! on it, and not on each other.

use std::sync::Arc;
use std::time::Duration;

use super::bindings::{
    DisplayConfig, PluginKind, PluginMetadata, build_strategy, cull_policy, provider,
};
use super::capabilities::{CallState, Capability, Grants};
use super::limits::Limits;
use crate::config::PluginSource;

/// How a component was obtained at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileOutcome {
    /// Deserialized from the on-disk cache: no compilation.
    FromCache,
    /// Compiled, and written to the cache for the next start.
    Compiled,
    /// Compiled, but the cache could not be written (the reason was logged).
    CompiledUncached,
}

/// A pre-linked component of one world.
pub(crate) enum WorldPre {
    Provider(provider::ProviderPre<CallState>),
    BuildStrategy(build_strategy::BuildStrategyPre<CallState>),
    CullPolicy(cull_policy::CullPolicyPre<CallState>),
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

    /// Its git network: the host fetches the plugin's repositories over it.
    pub fn git_wire(&self) -> &Arc<crate::gitwire::GitWire> {
        self.grants.git_wire()
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
    }
}
