//! The set of loaded plugins: start-up, typed calls by name, and replacement
//! without a restart (a changed file, a changed configuration, or an admin call).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use super::bindings::{
    BuildPlan, ContentSource, Decision, DisplayConfig, ImageDemand, PluginError, PluginKind,
    PoolBounds, RepoFacts, Resolution, Server,
};
use super::calls;
use super::capabilities::{RepoFiles, UserSecret};
use super::engine::{Precompiled, Runtime};
use super::error::{CallError, LoadError};
use super::loader::{self, ComponentBytes};
use super::oci::OciPlugins;
use super::plugin::{LoadedPlugin, kind_name};
use crate::config::{PluginConfig, PluginSource, RuntimeConfig};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The component is byte-for-byte the one loaded.
    Unchanged,
    /// A new version replaced the old; calls in flight finish on the old one.
    Replaced {
        /// sha256 of the old component.
        old: String,
        /// sha256 of the new one.
        new: String,
    },
}

/// A file's identity for change detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
    })
}

/// A component compiled into the embedding binary, loaded by `bundled = "<name>"`.
#[derive(Debug, Clone, Copy)]
pub struct BundledPlugin {
    /// The name `bundled = "<name>"` loads it by.
    pub name: &'static str,
    /// The component.
    pub wasm: &'static [u8],
    /// Its hex sha256: a start whose compile cache holds it reads neither
    /// the component nor its precompiled code.
    pub sha256: &'static str,
    /// Its code, compiled when the binary was built, where it was.
    pub precompiled: Option<Precompiled>,
}

/// The components compiled into the embedding binary.
pub type Bundled = &'static [BundledPlugin];

/// What a plugin host is started from: the embedder's configuration.
pub trait PluginSettings {
    /// The runtime's limits.
    fn runtime(&self) -> &RuntimeConfig;
    /// Every configured plugin, by the name it is loaded under (disabled ones too).
    fn plugins(&self) -> &BTreeMap<String, PluginConfig>;
    /// Where the compile cache and pulled OCI components live unless the
    /// runtime's configuration says otherwise.
    fn data_dir(&self) -> &Path;
    /// The components the embedder carries; none by default.
    fn bundled(&self) -> Bundled {
        &[]
    }
    /// What the `clock` capability tells plugins: the wall clock by default.
    fn clock(&self) -> crate::Clock {
        crate::Clock::System
    }
}

/// A plugin on the loading list until this is dropped: however its load
/// ends (loaded, failed, panicked, aborted), nobody waits for it forever.
struct Loading<'a> {
    host: &'a PluginHost,
    name: &'a str,
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        self.host.loading.send_modify(|names| {
            names.remove(self.name);
        });
    }
}

/// The enabled plugins of `settings`, by name.
fn enabled(settings: &impl PluginSettings) -> BTreeMap<String, PluginConfig> {
    settings
        .plugins()
        .iter()
        .filter(|(_, p)| p.enabled)
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect()
}

/// The loaded plugins and the runtime they run in.
pub struct PluginHost {
    runtime: Runtime,
    runtime_config: RuntimeConfig,
    configs: RwLock<BTreeMap<String, PluginConfig>>,
    oci: OciPlugins,
    bundled: Bundled,
    plugins: RwLock<BTreeMap<String, Arc<LoadedPlugin>>>,
    /// Plugins still loading in the background since the start.
    loading: tokio::sync::watch::Sender<BTreeSet<String>>,
    stamps: Mutex<HashMap<String, Stamp>>,
    /// Bumped whenever a plugin is replaced, so answers derived from the set can be cached.
    generation: AtomicU64,
}

impl PluginHost {
    /// Bytes the live plugin calls hold (guest memory and host buffers), and
    /// the shared budget (`plugin_runtime.memory_budget_mib`).
    pub fn memory_in_use(&self) -> (usize, usize) {
        let memory = self.runtime.memory();
        (memory.used(), memory.limit())
    }

    /// Starts the runtime and loads every enabled plugin. All failures are
    /// reported together, so an operator fixes a config in one pass.
    pub async fn start(settings: &impl PluginSettings) -> Result<Arc<Self>, Vec<LoadError>> {
        let (host, loading) = Self::start_serving(settings).await?;
        loading.await.map(|()| host)
    }

    /// Starts the runtime and loads the bundled plugins, which the binary
    /// carries compiled; plugins from files and OCI, which may need
    /// pulling and compiling, load in the background, and a call to one of
    /// them waits until it is loaded. The returned future ends when they
    /// all are, with every failure; dropping it lets them load all the same.
    /// When a bundled plugin fails, the start waits for the others and
    /// fails with every failure.
    pub async fn start_serving(
        settings: &impl PluginSettings,
    ) -> Result<
        (
            Arc<Self>,
            impl Future<Output = Result<(), Vec<LoadError>>> + Send + 'static,
        ),
        Vec<LoadError>,
    > {
        let config = settings.runtime();
        let fuel = config.fuel.is_some() || settings.plugins().values().any(|p| p.fuel.is_some());
        let runtime = Runtime::new(config, settings.data_dir(), fuel)
            .map_err(|reason| {
                vec![LoadError::Rejected {
                    plugin: "(runtime)".into(),
                    reason,
                }]
            })?
            .with_clock(settings.clock());
        let configs = enabled(settings);
        let (bundled, later): (BTreeSet<String>, BTreeSet<String>) = configs
            .keys()
            .cloned()
            .partition(|name| matches!(configs[name].source(name), Ok(PluginSource::Bundled(_))));
        let host = Arc::new(PluginHost {
            runtime,
            runtime_config: config.clone(),
            configs: RwLock::new(configs),
            oci: OciPlugins::new(&config.oci, &settings.data_dir().join("plugin-oci")),
            bundled: settings.bundled(),
            plugins: RwLock::default(),
            loading: tokio::sync::watch::Sender::new(later.clone()),
            stamps: Mutex::default(),
            generation: AtomicU64::new(0),
        });
        let mut errors = Vec::new();
        for name in &bundled {
            if let Err(e) = host.load_at_start(name).await {
                errors.push(e);
            }
        }
        let failed_bundled = !errors.is_empty();
        let background: Vec<_> = later
            .into_iter()
            .map(|name| {
                let host = host.clone();
                tokio::spawn(async move {
                    let _listed = Loading {
                        host: &host,
                        name: &name,
                    };
                    host.load_at_start(&name).await
                })
            })
            .collect();
        let mut loading = Box::pin(async move {
            for task in background {
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errors.push(e),
                    Err(e) => errors.push(LoadError::Rejected {
                        plugin: "(runtime)".into(),
                        reason: format!("a plugin's load ended early: {e}"),
                    }),
                }
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors)
            }
        });
        if !failed_bundled {
            return Ok((host, loading));
        }
        Err(loading.as_mut().await.expect_err("a bundled plugin failed"))
    }

    /// Loads `name` as configured at start and adds it to the set.
    async fn load_at_start(&self, name: &str) -> Result<(), LoadError> {
        let p = self.load_named(name).await?;
        tracing::info!(
            plugin = %name, kind = kind_name(p.kind()), version = %p.metadata.version,
            compiled = ?p.compiled, load_ms = p.load_time.as_secs_f64() * 1e3, "plugin loaded"
        );
        self.plugins
            .write()
            .expect("plugins lock")
            .insert(name.to_string(), Arc::new(p));
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Whether `name` is still loading in the background.
    pub fn is_loading(&self, name: &str) -> bool {
        self.loading.borrow().contains(name)
    }

    async fn read_source(
        &self,
        name: &str,
        source: &PluginSource,
    ) -> Result<ComponentBytes, LoadError> {
        let read_err = |reason: String| LoadError::Read {
            plugin: name.into(),
            source_desc: source.to_string(),
            reason,
        };
        match source {
            PluginSource::Path(path) => {
                // Stamp before reading: a write that lands in between is seen next poll.
                let before = stamp(path);
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| read_err(e.to_string()))?;
                if let Some(s) = before {
                    self.stamps
                        .lock()
                        .expect("stamps lock")
                        .insert(name.to_string(), s);
                }
                Ok(ComponentBytes::new(bytes))
            }
            PluginSource::Bundled(b) => self
                .bundled
                .iter()
                .find(|p| p.name == b)
                .map(|p| ComponentBytes {
                    wasm: Cow::Borrowed(p.wasm),
                    sha256: Cow::Borrowed(p.sha256),
                    precompiled: p.precompiled,
                })
                .ok_or_else(|| {
                    let names: Vec<&str> = self.bundled.iter().map(|p| p.name).collect();
                    read_err(format!(
                        "this binary bundles no plugin `{b}` (it bundles: {})",
                        names.join(", ")
                    ))
                }),
            PluginSource::Oci(reference) => self
                .oci
                .pull(reference)
                .await
                .map(ComponentBytes::new)
                .map_err(read_err),
        }
    }

    /// The configured source of `name` and its component.
    async fn fetch(
        &self,
        name: &str,
    ) -> Result<(PluginSource, PluginConfig, ComponentBytes), LoadError> {
        let config = self
            .configs
            .read()
            .expect("configs lock")
            .get(name)
            .cloned()
            .ok_or_else(|| LoadError::Rejected {
                plugin: name.into(),
                reason: "no such plugin in the configuration".into(),
            })?;
        let source = config.source(name).map_err(|e| LoadError::Rejected {
            plugin: name.into(),
            reason: e.to_string(),
        })?;
        let component = self.read_source(name, &source).await?;
        Ok((source, config, component))
    }

    async fn load_named(&self, name: &str) -> Result<LoadedPlugin, LoadError> {
        let (source, config, component) = self.fetch(name).await?;
        self.load(name, source, &component, &config).await
    }

    async fn load(
        &self,
        name: &str,
        source: PluginSource,
        component: &ComponentBytes,
        config: &PluginConfig,
    ) -> Result<LoadedPlugin, LoadError> {
        loader::load(
            &self.runtime,
            name,
            source,
            component,
            config,
            &self.runtime_config,
        )
        .await
    }

    /// Loads `name` again from its source and swaps it in if it changed. On
    /// failure the loaded version stays.
    pub async fn reload(&self, name: &str) -> Result<Reloaded, LoadError> {
        self.load_again(name, false).await
    }

    /// [`Self::reload`]; `relink` loads even the same component again, for new grants or config.
    async fn load_again(&self, name: &str, relink: bool) -> Result<Reloaded, LoadError> {
        let (source, config, component) = self.fetch(name).await?;
        let old = self.get(name);
        if !relink && old.as_ref().is_some_and(|o| o.sha256 == component.sha256) {
            return Ok(Reloaded::Unchanged);
        }
        let new = Arc::new(self.load(name, source, &component, &config).await?);
        let outcome = Reloaded::Replaced {
            old: old.map(|o| o.sha256.clone()).unwrap_or_default(),
            new: new.sha256.clone(),
        };
        tracing::info!(plugin = name, version = %new.metadata.version, sha256 = %new.sha256, "plugin replaced");
        self.plugins
            .write()
            .expect("plugins lock")
            .insert(name.to_string(), new);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(outcome)
    }

    /// Reloads every file-backed plugin whose file changed since it was read.
    pub async fn reload_changed(&self) -> Vec<(String, Result<Reloaded, LoadError>)> {
        let changed: Vec<String> = {
            let stamps = self.stamps.lock().expect("stamps lock");
            let configs = self.configs.read().expect("configs lock");
            configs
                .iter()
                .filter_map(|(name, c)| match c.source(name) {
                    Ok(PluginSource::Path(p)) => {
                        let now = stamp(&p);
                        (now.is_some() && now != stamps.get(name).copied()).then(|| name.clone())
                    }
                    _ => None,
                })
                .collect()
        };
        let mut out = Vec::new();
        for name in changed {
            let result = self.reload(&name).await;
            if let Err(e) = &result {
                tracing::error!(plugin = %name, "reload failed, keeping the loaded version: {e}");
            }
            out.push((name, result));
        }
        out
    }

    /// Takes the plugin entries of a re-read configuration: entries that
    /// changed (a new `oci` digest, path, grants or config) are loaded again,
    /// new ones loaded, removed or disabled ones unloaded. A plugin that fails
    /// to load keeps its old version and its old entry.
    pub async fn reconfigure(
        &self,
        settings: &impl PluginSettings,
    ) -> Vec<(String, Result<Reloaded, LoadError>)> {
        let wanted = enabled(settings);
        let old = self.configs.read().expect("configs lock").clone();
        let mut out = Vec::new();
        for (name, entry) in &wanted {
            if old.get(name) == Some(entry) {
                continue;
            }
            let previous = self
                .configs
                .write()
                .expect("configs lock")
                .insert(name.clone(), entry.clone());
            let result = self.load_again(name, true).await;
            if let Err(e) = &result {
                tracing::error!(plugin = %name, "the changed configuration cannot be loaded, keeping the loaded version: {e}");
                let mut configs = self.configs.write().expect("configs lock");
                match previous {
                    Some(previous) => configs.insert(name.clone(), previous),
                    None => configs.remove(name),
                };
            }
            out.push((name.clone(), result));
        }
        for name in old.keys().filter(|n| !wanted.contains_key(*n)) {
            tracing::info!(plugin = %name, "plugin removed from the configuration: unloaded");
            self.configs.write().expect("configs lock").remove(name);
            self.plugins.write().expect("plugins lock").remove(name);
            self.generation.fetch_add(1, Ordering::Release);
        }
        out
    }

    /// Polls plugin files every `interval` and reloads changed ones, while
    /// the host lives. The caller runs it.
    pub fn watch(
        self: &Arc<Self>,
        interval: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        let host = Arc::downgrade(self);
        async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(host) = host.upgrade() else { return };
                host.reload_changed().await;
            }
        }
    }

    /// Changes whenever a loaded plugin is replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The plugin loaded as `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins
            .read()
            .expect("plugins lock")
            .get(name)
            .cloned()
    }

    /// All loaded plugins, by name.
    pub fn list(&self) -> Vec<Arc<LoadedPlugin>> {
        self.plugins
            .read()
            .expect("plugins lock")
            .values()
            .cloned()
            .collect()
    }

    /// The plugin loaded as `name`, once it is loaded if it is still loading.
    pub async fn loaded(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        // Every launch asks: a loaded plugin is answered without the channel.
        if let Some(plugin) = self.get(name) {
            return Some(plugin);
        }
        let mut loading = self.loading.subscribe();
        // Ends at once unless it is loading; its sender lives as long as `self`.
        let _ = loading.wait_for(|names| !names.contains(name)).await;
        self.get(name)
    }

    async fn expect(&self, name: &str, kind: PluginKind) -> Result<Arc<LoadedPlugin>, CallError> {
        self.loaded(name)
            .await
            .filter(|p| p.kind() == kind)
            .ok_or_else(|| CallError::NotLoaded {
                plugin: name.into(),
                kind: kind_name(kind),
            })
    }

    /// Resolves `spec` with provider `name`.
    pub async fn resolve(
        &self,
        name: &str,
        spec: &str,
    ) -> Result<Result<Resolution, PluginError>, CallError> {
        self.resolve_with(name, spec, None).await
    }

    /// [`PluginHost::resolve`] with `user`'s credential, when given.
    pub async fn resolve_with(
        &self,
        name: &str,
        spec: &str,
        user: Option<&Arc<UserSecret>>,
    ) -> Result<Result<Resolution, PluginError>, CallError> {
        let p = self.expect(name, PluginKind::Provider).await?;
        calls::resolve(&self.runtime, &p, spec, user.cloned()).await
    }

    /// How provider `name` fetches `resolution`'s content for a build.
    pub async fn content(
        &self,
        name: &str,
        resolution: &Resolution,
    ) -> Result<Result<ContentSource, PluginError>, CallError> {
        self.content_with(name, resolution, None).await
    }

    /// [`PluginHost::content`] with `user`'s credential, when given.
    pub async fn content_with(
        &self,
        name: &str,
        resolution: &Resolution,
        user: Option<&Arc<UserSecret>>,
    ) -> Result<Result<ContentSource, PluginError>, CallError> {
        let p = self.expect(name, PluginKind::Provider).await?;
        calls::content(&self.runtime, &p, resolution, user.cloned()).await
    }

    /// Provider `name`'s form configuration.
    pub async fn display(&self, name: &str) -> Result<DisplayConfig, CallError> {
        let p = self.expect(name, PluginKind::Provider).await?;
        calls::display(&self.runtime, &p).await
    }

    /// Plans a build with strategy `name`; it may read files of `repo`.
    pub async fn plan(
        &self,
        name: &str,
        facts: &RepoFacts,
        repo: Arc<dyn RepoFiles>,
    ) -> Result<Result<BuildPlan, PluginError>, CallError> {
        let p = self.expect(name, PluginKind::BuildStrategy).await?;
        calls::plan(&self.runtime, &p, facts, repo).await
    }

    /// Cull decisions of policy `name`.
    pub async fn decide(
        &self,
        name: &str,
        now_ms: u64,
        servers: &[Server],
    ) -> Result<Result<Vec<Decision>, PluginError>, CallError> {
        let p = self.expect(name, PluginKind::CullPolicy).await?;
        calls::decide(&self.runtime, &p, now_ms, servers).await
    }

    /// How many servers pool policy `name` keeps ready for each image.
    pub async fn pool_sizes(
        &self,
        name: &str,
        now_ms: u64,
        bounds: PoolBounds,
        images: &[ImageDemand],
    ) -> Result<Result<Vec<u32>, PluginError>, CallError> {
        let p = self.expect(name, PluginKind::PoolPolicy).await?;
        calls::sizes(&self.runtime, &p, now_ms, bounds, images).await
    }

    /// The runtime (engine and compile cache).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }
}
