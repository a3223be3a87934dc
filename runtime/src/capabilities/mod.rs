//! Host imports, one capability each. A capability adds its imports to a
//! plugin's linker only when the operator's grant includes it, so a component
//! that imports something it was not granted fails to load instead of failing
//! later at a call.

mod basic;
mod git;
mod http;
mod repo_files;
mod secrets;
mod wasi;

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::PluginKind;
use super::bindings::provider::bindery::plugin as host;
use super::limits::CallLimits;
use crate::config::{PluginConfig, RuntimeConfig, SecretSource};
use crate::gitwire::GitWire;
use crate::plugin::WitVersion;

pub use crate::egress::{EgressDenied, EgressPolicy};
pub use repo_files::{DirRepo, RepoFiles};
pub use secrets::UserSecret;
pub(crate) use wasi::{OutputCapture, WasiInterface};

/// One host interface of `bindery:plugin`, with what granting it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    /// `log`: always granted.
    Log,
    /// `clock`: always granted.
    Clock,
    /// `config`: always granted; a plugin reads only its own table.
    Config,
    /// `secrets`: always linked, so optional credentials need no grant; each
    /// secret is granted by name, and any other name reads as `not-granted`.
    Secrets,
    /// `http`: granted when the plugin's `hosts` list is not empty.
    Http,
    /// `git`: granted with `http`, under the same host and address rules.
    Git,
    /// `repo-files`: given to build strategies, scoped to the repository being planned.
    RepoFiles,
}

impl Capability {
    /// Every capability, in WIT order.
    pub const ALL: [Capability; 7] = [
        Capability::Log,
        Capability::Clock,
        Capability::Config,
        Capability::Secrets,
        Capability::Http,
        Capability::Git,
        Capability::RepoFiles,
    ];

    /// The WIT interface name (without package and version).
    pub fn interface(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Clock => "clock",
            Capability::Config => "config",
            Capability::Secrets => "secrets",
            Capability::Http => "http",
            Capability::Git => "git",
            Capability::RepoFiles => "repo-files",
        }
    }

    /// The capability behind a WIT interface name.
    pub fn from_interface(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.interface() == name)
    }

    /// Whether the world of `kind` offers this import at all.
    pub fn offered_to(self, kind: PluginKind) -> bool {
        match self {
            Capability::Log | Capability::Clock | Capability::Config => true,
            Capability::Secrets | Capability::Http | Capability::Git => {
                kind == PluginKind::Provider
            }
            Capability::RepoFiles => kind == PluginKind::BuildStrategy,
        }
    }

    /// What the operator writes to grant it.
    pub fn grant_hint(self) -> &'static str {
        match self {
            Capability::Http | Capability::Git => {
                "list the hosts it may reach under `hosts`, e.g. `hosts = [\"api.example.org\"]`"
            }
            _ => "nothing: it is always granted where the world offers it",
        }
    }
}

/// What the operator granted one plugin, ready for calls.
pub struct Grants {
    config: BTreeMap<String, String>,
    secrets: BTreeMap<String, SecretSource>,
    egress: Arc<EgressPolicy>,
    http: http::HttpClient,
    git: git::GitClient,
    wire: Arc<GitWire>,
}

impl Grants {
    /// The grants of `plugin` as configured.
    pub fn new(name: &str, plugin: &PluginConfig, runtime: &RuntimeConfig) -> Self {
        let egress = Arc::new(EgressPolicy::new(&plugin.hosts, &plugin.private_networks));
        let wire = GitWire::new(egress.clone());
        Grants {
            config: plugin.config_strings(),
            secrets: plugin.secrets.clone(),
            http: http::HttpClient::new(name, egress.clone(), &runtime.http),
            git: git::GitClient::new(wire.clone(), runtime.git_timeout_ms),
            wire,
            egress,
        }
    }

    /// Whether `cap` is granted (before asking whether the world offers it).
    pub fn grants(&self, cap: Capability) -> bool {
        match cap {
            Capability::Log
            | Capability::Clock
            | Capability::Config
            | Capability::Secrets
            | Capability::RepoFiles => true,
            Capability::Http | Capability::Git => !self.egress.is_empty(),
        }
    }

    /// The config keys the operator set.
    pub fn config_keys(&self) -> impl Iterator<Item = &str> {
        self.config.keys().map(String::as_str)
    }

    /// The secret names the operator granted.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.secrets.keys().map(String::as_str)
    }

    /// The egress policy.
    pub fn egress(&self) -> &EgressPolicy {
        &self.egress
    }

    /// The egress policy, shared.
    pub(crate) fn egress_arc(&self) -> Arc<EgressPolicy> {
        self.egress.clone()
    }

    /// The latest `x-ratelimit-remaining` the plugin's upstream answered
    /// `http` requests with, if any did.
    pub fn rate_limit_remaining(&self) -> Option<u64> {
        self.http.rate_limit_remaining()
    }

    /// The git network under the egress policy.
    pub fn git_wire(&self) -> &Arc<GitWire> {
        &self.wire
    }
}

/// Everything one call's store holds. Built fresh for every call.
pub struct CallState {
    pub(crate) plugin: Arc<str>,
    pub(crate) grants: Arc<Grants>,
    pub(crate) repo: Option<Arc<dyn RepoFiles>>,
    /// The launching user's credential, for a provider's calls on their behalf.
    pub(crate) user: Option<Arc<UserSecret>>,
    pub(crate) limits: CallLimits,
    pub(crate) output: OutputCapture,
    /// What `clock` answers.
    pub(crate) clock: crate::Clock,
    log_lines: u32,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl CallState {
    pub(crate) fn new(
        plugin: Arc<str>,
        grants: Arc<Grants>,
        repo: Option<Arc<dyn RepoFiles>>,
        user: Option<Arc<UserSecret>>,
        limits: CallLimits,
        clock: crate::Clock,
    ) -> Self {
        let output = OutputCapture::new(plugin.clone());
        let wasi = output.wasi_ctx();
        CallState {
            plugin,
            grants,
            repo,
            user,
            limits,
            output,
            clock,
            log_lines: 0,
            wasi,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Adds the WASI subset and every capability that `kind`'s world offers and
/// `grants` grants, under `wit`'s interface names. Returns the capabilities
/// linked.
///
/// Linked by hand rather than through bindgen's `add_to_linker`, which names
/// only the current version: the host interfaces have not changed since
/// 0.1.0, so one implementation serves every version's names.
pub(crate) fn link(
    linker: &mut Linker<CallState>,
    kind: PluginKind,
    grants: &Grants,
    wit: WitVersion,
) -> wasmtime::Result<Vec<Capability>> {
    wasi::add_to_linker(linker)?;
    // Types only: nothing to define, but components import the instance.
    linker.instance(&wit.interface("types"))?;
    let mut linked = Vec::new();
    for cap in Capability::ALL {
        if !cap.offered_to(kind) || !grants.grants(cap) {
            continue;
        }
        let mut instance = linker.instance(&wit.interface(cap.interface()))?;
        match cap {
            Capability::Log => instance.func_wrap(
                "log",
                |mut s: Store<'_>, (level, message): (host::types::LogLevel, String)| {
                    host::log::Host::log(s.data_mut(), level, message);
                    Ok(())
                },
            )?,
            Capability::Clock => instance.func_wrap("now-ms", |mut s: Store<'_>, (): ()| {
                Ok((host::clock::Host::now_ms(s.data_mut()),))
            })?,
            Capability::Config => {
                instance.func_wrap("get", |mut s: Store<'_>, (key,): (String,)| {
                    Ok((host::config::Host::get(s.data_mut(), key),))
                })?;
            }
            Capability::Secrets => {
                instance.func_wrap("get", |mut s: Store<'_>, (name,): (String,)| {
                    Ok((host::secrets::Host::get(s.data_mut(), name),))
                })?;
            }
            Capability::Http => instance.func_wrap_async(
                "fetch",
                |mut s: Store<'_>, (request,): (host::http::Request,)| {
                    Box::new(
                        async move { Ok((host::http::Host::fetch(s.data_mut(), request).await,)) },
                    )
                },
            )?,
            Capability::Git => {
                instance.func_wrap_async(
                    "ls-remote-authenticated",
                    |mut s: Store<'_>, (url, user, secret): (String, String, String)| {
                        Box::new(async move {
                            Ok((host::git::Host::ls_remote_authenticated(
                                s.data_mut(),
                                url,
                                user,
                                secret,
                            )
                            .await,))
                        })
                    },
                )?;
                instance.func_wrap_async("ls-remote", |mut s: Store<'_>, (url,): (String,)| {
                    Box::new(
                        async move { Ok((host::git::Host::ls_remote(s.data_mut(), url).await,)) },
                    )
                })?;
            }
            Capability::RepoFiles => {
                instance.func_wrap("read", |mut s: Store<'_>, (path,): (String,)| {
                    Ok((
                        crate::bindings::build_strategy::bindery::plugin::repo_files::Host::read(
                            s.data_mut(),
                            path,
                        ),
                    ))
                })?;
            }
        }
        linked.push(cap);
    }
    Ok(linked)
}

type Store<'a> = wasmtime::StoreContextMut<'a, CallState>;

impl host::types::Host for CallState {}
