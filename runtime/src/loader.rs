//! Loading one plugin: read, compile (or take from the cache), check what it
//! imports and exports against what it was granted, pre-link, ask its metadata.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};

use super::bindings::{PluginKind, PluginMetadata};
use super::capabilities::{self, CallState, Capability, Grants, WasiInterface};
use super::engine::{Precompiled, Runtime, sha256_hex};
use super::error::LoadError;
use super::limits::Limits;
use super::plugin::{LoadedPlugin, WitVersion, WorldPre, kind_name};
use crate::config::{PluginConfig, PluginSource, RuntimeConfig};

/// The `bindery:plugin` version this host implements (it loads older ones too).
pub const WIT_VERSION: &str = WitVersion::CURRENT.as_str();
const WIT_PACKAGE: &str = "bindery:plugin";

/// The exported interface that marks each world, and the functions the host
/// calls in it: (name, required in `since` and later).
fn world_exports(kind: PluginKind) -> (&'static str, &'static [(&'static str, WitVersion)]) {
    use WitVersion::V0_1;
    match kind {
        PluginKind::Provider => (
            "repo-provider",
            &[
                ("metadata", V0_1),
                ("display", V0_1),
                ("resolve", V0_1),
                ("content", WitVersion::V0_2),
            ],
        ),
        PluginKind::BuildStrategy => (
            "build-strategy-plugin",
            &[("metadata", V0_1), ("plan", V0_1)],
        ),
        PluginKind::CullPolicy => (
            "cull-policy-plugin",
            &[("metadata", V0_1), ("decide", V0_1)],
        ),
        PluginKind::PoolPolicy => ("pool-policy-plugin", &[("metadata", V0_1), ("sizes", V0_1)]),
    }
}

/// `ns:pkg/iface@ver` split into package, interface and version.
fn split_name(name: &str) -> Option<(&str, &str, Option<&str>)> {
    let (pkg, rest) = name.split_once('/')?;
    Some(match rest.split_once('@') {
        Some((iface, ver)) => (pkg, iface, Some(ver)),
        None => (pkg, rest, None),
    })
}

/// The one `bindery:plugin` version all of a component's imports and
/// exports name; a version this host does not load, or a mix, is refused,
/// naming the first import (else export) that shows it.
fn check_wit_version(
    plugin: &str,
    component: &Component,
    runtime: &Runtime,
) -> Result<WitVersion, LoadError> {
    let ty = component.component_type();
    let imports = ty.imports(runtime.engine()).map(|(n, _)| n.to_string());
    let exports = ty.exports(runtime.engine()).map(|(n, _)| n.to_string());
    let mut found = None;
    for name in imports.chain(exports) {
        let Some((WIT_PACKAGE, _, version)) = split_name(&name) else {
            continue;
        };
        match (version.and_then(WitVersion::matching), found) {
            (Some(v), None) => found = Some(v),
            (Some(v), Some(first)) if v == first => {}
            _ => {
                return Err(LoadError::IncompatibleWit {
                    plugin: plugin.into(),
                    item: name,
                    host_version: WIT_VERSION,
                });
            }
        }
    }
    Ok(found.unwrap_or(WitVersion::CURRENT))
}

/// Which world the component implements, from its exports.
fn detect_kind(
    plugin: &str,
    component: &Component,
    runtime: &Runtime,
) -> Result<PluginKind, LoadError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(runtime.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    for name in &exports {
        let Some((WIT_PACKAGE, iface, _)) = split_name(name) else {
            continue;
        };
        let kind = [
            PluginKind::Provider,
            PluginKind::BuildStrategy,
            PluginKind::CullPolicy,
            PluginKind::PoolPolicy,
        ]
        .into_iter()
        .find(|k| world_exports(*k).0 == iface);
        if let Some(kind) = kind {
            return Ok(kind);
        }
    }
    Err(LoadError::NoWorld {
        plugin: plugin.into(),
        exports: if exports.is_empty() {
            "nothing".into()
        } else {
            exports.join(", ")
        },
    })
}

/// Refuses any import that is not linked for this plugin, with a reason.
fn check_imports(
    plugin: &str,
    component: &Component,
    runtime: &Runtime,
    kind: PluginKind,
    linked: &[Capability],
) -> Result<(), LoadError> {
    let refuse = |import: &str, hint: String| LoadError::ImportNotGranted {
        plugin: plugin.into(),
        import: import.into(),
        hint,
    };
    for (name, _) in component.component_type().imports(runtime.engine()) {
        let Some((pkg, iface, _)) = split_name(name) else {
            return Err(refuse(
                name,
                "not an interface of bindery:plugin or WASI".into(),
            ));
        };
        if pkg == WIT_PACKAGE {
            if iface == "types" {
                continue;
            }
            match Capability::from_interface(iface) {
                None => {
                    return Err(refuse(
                        name,
                        format!("bindery:plugin has no host interface `{iface}`"),
                    ));
                }
                Some(cap) if !cap.offered_to(kind) => {
                    return Err(refuse(
                        name,
                        format!("{} plugins are not offered `{iface}`", kind_name(kind)),
                    ));
                }
                Some(cap) if !linked.contains(&cap) => {
                    return Err(refuse(
                        name,
                        format!("in [plugins.{plugin}], {}", cap.grant_hint()),
                    ));
                }
                Some(_) => {}
            }
        } else if let Some(wasi) = pkg.strip_prefix("wasi:") {
            if let WasiInterface::Refused(why) = WasiInterface::classify(wasi) {
                return Err(refuse(name, why.into()));
            }
        } else {
            return Err(refuse(
                name,
                "not an interface of bindery:plugin or WASI".into(),
            ));
        }
    }
    Ok(())
}

/// Which of bindery:plugin's worlds `wasm` implements, after the checks that
/// need no deployment (a valid component, a compatible WIT version): what
/// `bindery plugin push` asks before pushing.
pub async fn inspect(runtime: &Runtime, name: &str, wasm: &[u8]) -> Result<PluginKind, LoadError> {
    let (component, _) = runtime
        .component(&sha256_hex(wasm), wasm, None)
        .await
        .map_err(|e| LoadError::Invalid {
            plugin: name.into(),
            reason: format!("{e:#}"),
        })?;
    check_wit_version(name, &component, runtime)?;
    detect_kind(name, &component, runtime)
}

/// A component's bytes, and its code compiled ahead of time if the binary
/// carries it.
pub(crate) struct ComponentBytes {
    pub(crate) wasm: Cow<'static, [u8]>,
    pub(crate) sha256: Cow<'static, str>,
    pub(crate) precompiled: Option<Precompiled>,
}

impl ComponentBytes {
    pub(crate) fn new(wasm: Vec<u8>) -> Self {
        ComponentBytes {
            sha256: sha256_hex(&wasm).into(),
            wasm: Cow::Owned(wasm),
            precompiled: None,
        }
    }
}

/// Loads `bytes` as plugin `name`.
pub(crate) async fn load(
    runtime: &Runtime,
    name: &str,
    source: PluginSource,
    bytes: &ComponentBytes,
    config: &PluginConfig,
    runtime_config: &RuntimeConfig,
) -> Result<LoadedPlugin, LoadError> {
    let started = Instant::now();
    let (component, compiled) = runtime
        .component(&bytes.sha256, &bytes.wasm, bytes.precompiled)
        .await
        .map_err(|e| LoadError::Invalid {
            plugin: name.into(),
            reason: format!("{e:#}"),
        })?;
    let wit = check_wit_version(name, &component, runtime)?;
    let kind = detect_kind(name, &component, runtime)?;

    let grants = Arc::new(Grants::new(name, config, runtime_config));
    let mut linker = Linker::<CallState>::new(runtime.engine());
    let linked =
        capabilities::link(&mut linker, kind, &grants, wit).map_err(|e| LoadError::Rejected {
            plugin: name.into(),
            reason: format!("linking host imports: {e:#}"),
        })?;
    check_imports(name, &component, runtime, kind, &linked)?;
    let mismatch = |why: String| LoadError::Rejected {
        plugin: name.into(),
        reason: format!(
            "does not match the {} world of bindery:plugin@{}: {why}",
            kind_name(kind),
            wit.as_str()
        ),
    };
    let instance = linker
        .instantiate_pre(&component)
        .map_err(|e| mismatch(format!("{e:#}")))?;
    let (interface, functions) = world_exports(kind);
    let interface_name = wit.interface(interface);
    let exported = component
        .get_export_index(None, &interface_name)
        .ok_or_else(|| mismatch(format!("it does not export `{interface_name}`")))?;
    let mut funcs = BTreeMap::new();
    for &(func, since) in functions {
        match component.get_export_index(Some(&exported), func) {
            Some(index) => {
                funcs.insert(func, index);
            }
            None if since > wit => {}
            None => return Err(mismatch(format!("`{interface_name}` has no `{func}`"))),
        }
    }
    let pre = WorldPre {
        instance,
        wit,
        funcs,
    };

    let limits = Limits::for_plugin(runtime_config, config);
    let mut plugin = LoadedPlugin {
        name: name.into(),
        source,
        sha256: bytes.sha256.to_string(),
        // Replaced by the real metadata below, before anyone can see it.
        metadata: PluginMetadata {
            name: String::new(),
            version: String::new(),
            kind,
            description: String::new(),
            requests: super::bindings::CapabilityRequests {
                hosts: vec![],
                config_keys: vec![],
                secrets: vec![],
            },
        },
        display: None,
        linked,
        ungranted: Vec::new(),
        limits,
        compiled,
        load_time: Duration::ZERO,
        grants,
        pre,
        slots: tokio::sync::Semaphore::new(limits.calls),
    };
    let metadata = super::calls::metadata(runtime, &plugin)
        .await
        .map_err(|source| LoadError::Metadata {
            plugin: name.into(),
            source,
        })?;
    if metadata.kind != kind {
        return Err(LoadError::Rejected {
            plugin: name.into(),
            reason: format!(
                "its metadata says it is a {} plugin, but it exports the {} world",
                kind_name(metadata.kind),
                kind_name(kind)
            ),
        });
    }
    let set: Vec<&str> = plugin.grants.config_keys().collect();
    let missing: Vec<&str> = metadata
        .requests
        .config_keys
        .iter()
        .filter(|k| k.required && !set.contains(&k.name.as_str()))
        .map(|k| k.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(LoadError::Rejected {
            plugin: name.into(),
            reason: format!(
                "required config keys are not set: {} (add them under [plugins.{name}.config])",
                missing.join(", ")
            ),
        });
    }
    plugin.ungranted = ungranted_requests(&metadata, &plugin.grants);
    for u in &plugin.ungranted {
        tracing::warn!(
            plugin = name,
            "requests {u}, which is not granted; calls that need it will fail"
        );
    }
    plugin.metadata = metadata;
    if kind == PluginKind::Provider {
        let display = super::calls::display(runtime, &plugin)
            .await
            .map_err(|source| LoadError::Metadata {
                plugin: name.into(),
                source,
            })?;
        plugin.display = Some(display);
    }
    plugin.load_time = started.elapsed();
    Ok(plugin)
}

/// Requests the operator has not granted, in words for `plugin check` and the log.
fn ungranted_requests(metadata: &PluginMetadata, grants: &Grants) -> Vec<String> {
    let mut out = Vec::new();
    for host in &metadata.requests.hosts {
        if !grants.egress().covers(host) {
            out.push(format!("host `{host}`"));
        }
    }
    let secrets: Vec<&str> = grants.secret_names().collect();
    for s in &metadata.requests.secrets {
        if !secrets.contains(&s.as_str()) {
            out.push(format!("secret `{s}`"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_versions() {
        assert_eq!(WitVersion::matching("0.1.0"), Some(WitVersion::V0_1));
        assert_eq!(WitVersion::matching("0.1.7"), Some(WitVersion::V0_1));
        assert_eq!(WitVersion::matching("0.2.0"), Some(WitVersion::V0_2));
        assert_eq!(WitVersion::matching("0.2.3-rc1"), Some(WitVersion::V0_2));
        assert_eq!(WitVersion::matching("0.3.0"), None);
        assert_eq!(WitVersion::matching("1.0.0"), None);
        assert_eq!(WitVersion::matching("garbage"), None);
        assert_eq!(WIT_VERSION, "0.2.0");
        assert_eq!(
            split_name("bindery:plugin/http@0.1.0"),
            Some(("bindery:plugin", "http", Some("0.1.0")))
        );
        assert_eq!(
            split_name("wasi:io/streams@0.2.6"),
            Some(("wasi:io", "streams", Some("0.2.6")))
        );
    }
}
