//! The composition root: every part of the service is built here from the
//! configuration, and every background task is started here and stopped
//! through one path ([`Tasks::shutdown`]). The HTTP layer receives only what
//! it serves.

use std::sync::Arc;
use std::time::Duration;

use bindery_runtime::PluginHost;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::build::{BuildExecutor, Builder};
use crate::config::{Config, ConfigError};
use crate::federation::Federation;
use crate::jupyterhub::Hub;
use crate::launch::Launcher;
use crate::launch::hub::HubLauncher;
use crate::launch::pool::{Pooled, WarmPool};
use crate::metrics::Metrics;
use crate::pipeline::{Flights, Pipeline, Resolver, UserCredentials};
use crate::registry::Registry;

/// Which build executor a service runs.
pub enum Builds {
    /// None: a launch of an image not yet built fails, saying so.
    Off,
    /// The host's own: `[build] strategy` plans, the local, layer or
    /// Kubernetes executor builds.
    Planned,
    /// This one (an embedder's, or a test's).
    With(Arc<dyn BuildExecutor>),
}

/// A service, assembled: the state its routes serve and the background tasks
/// that keep it current. Dropping it stops the tasks.
pub struct App {
    /// What the HTTP layer serves.
    pub state: AppState,
    /// The background tasks.
    pub tasks: Tasks,
    /// Whether this replica leads (`cull.leader`): it culls and tends the
    /// warm pool.
    pub leading: watch::Receiver<bool>,
}

impl App {
    /// The service `bindery serve` runs: builds as `[build]` configures them,
    /// launches on the `[hub]`, culling as `[cull]` says, and plugin files
    /// watched every `plugin_runtime.reload_interval_ms`. Needs a tokio runtime.
    pub fn new(config: Config, plugins: Arc<PluginHost>) -> Result<App, ConfigError> {
        let hub = Hub::new(&config.hub)?.map(Arc::new);
        let launcher = match hub.clone() {
            Some(hub) => Some(Arc::new(HubLauncher::new(hub, &config)?) as Arc<dyn Launcher>),
            None => None,
        };
        let mut app = App::with(config, plugins, Builds::Planned, launcher)?;
        let config = app.state.config.clone();
        if let Some(hub) = hub.filter(|_| config.cull.enabled) {
            let culler = crate::cull::task(
                hub,
                app.state.plugins.clone(),
                &config.cull,
                crate::cull::CullScope {
                    pool_group: (config.warm_pool.max_servers > 0)
                        .then(|| config.warm_pool.group.clone()),
                    ..crate::cull::CullScope::of(&config.hub)
                },
                app.state.metrics.clone(),
                app.leading.clone(),
            );
            app.tasks.spawn("culler", culler);
        }
        if config.plugin_runtime.reload_interval_ms > 0 {
            let interval = Duration::from_millis(config.plugin_runtime.reload_interval_ms);
            let watch = app.state.plugins.watch(interval);
            app.tasks.spawn("plugin watch", watch);
        }
        Ok(app)
    }

    /// A service with this build executor and launcher, and no culler or
    /// plugin watch. Builds recorded as running by a previous process are
    /// watched again where the executor can. Contends for `cull.leader`'s
    /// Lease when it is set. Needs a tokio runtime.
    pub fn with(
        config: Config,
        plugins: Arc<PluginHost>,
        builds: Builds,
        launcher: Option<Arc<dyn Launcher>>,
    ) -> Result<App, ConfigError> {
        let mut tasks = Tasks::default();
        let trees = crate::cache::open(&config).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        tasks.spawn(
            "cache janitor",
            crate::cache::janitor::Janitor::new(&trees, &config).run(),
        );
        let metrics = Arc::new(Metrics::default());
        let (leading, contender) = crate::cull::leader::elect(config.cull.leader.as_ref())?;
        if let Some(contender) =
            contender.filter(|_| config.cull.enabled || config.warm_pool.max_servers > 0)
        {
            tasks.spawn("lease", contender);
        }
        let resolver = Arc::new(Resolver::new(
            &config,
            plugins.clone(),
            trees.refs,
            metrics.clone(),
        )?);
        let registry = Arc::new(Registry::new(&config.registry, trees.images)?);
        let executor: Option<Arc<dyn BuildExecutor>> = match builds {
            Builds::Off => None,
            Builds::Planned => {
                let builder = Builder::new(
                    &config,
                    plugins.clone(),
                    registry.clone(),
                    trees.environments,
                    metrics.clone(),
                )?;
                if let Some(cleaner) = builder.cleaner() {
                    tasks.spawn("build pod cleaner", cleaner);
                }
                Some(Arc::new(builder))
            }
            Builds::With(executor) => Some(executor),
        };
        let launcher = match (launcher, trees.demand) {
            (Some(inner), Some(demand)) if config.warm_pool.max_servers > 0 => {
                let pool = Arc::new(warm_pool(&config, &plugins, demand, metrics.clone())?);
                tasks.spawn("warm pool", pool.clone().run(leading.clone()));
                Some(Arc::new(Pooled { inner, pool }) as Arc<dyn Launcher>)
            }
            (Some(inner), None) if config.warm_pool.max_servers > 0 => {
                tracing::error!(
                    "warm pool off: it counts launches in the cache, which could not be opened"
                );
                Some(inner)
            }
            (launcher, _) => launcher,
        };
        let abandon = config
            .build
            .cancel_abandoned_after_secs
            .map(Duration::from_secs);
        let flights = Arc::new(Flights::new(
            trees.builds,
            registry.clone(),
            abandon,
            config.build.max_concurrent,
        ));
        tasks.spawn("build recovery", flights.recover(executor.as_ref()));
        let hub_auth = match config.hub.auth_enabled {
            false => None,
            true => Some(Arc::new(Hub::new(&config.hub)?.ok_or_else(|| {
                ConfigError::Invalid("hub.auth_enabled needs hub.url".into())
            })?)),
        };
        let credentials = hub_auth
            .as_ref()
            .and_then(|hub| UserCredentials::new(&config, hub.clone()))
            .map(Arc::new);
        let event_log = crate::event_log::EventLog::new(&config.event_log).map(|(log, writer)| {
            tasks.spawn("launch event log", writer);
            Arc::new(log)
        });
        let pipeline = Arc::new(Pipeline {
            resolver,
            registry,
            flights,
            executor,
            launcher,
            credentials,
            event_log,
            metrics,
        });
        let (health, refresh) = crate::health::monitor(&pipeline);
        tasks.spawn("health checks", refresh);
        let federation = Federation::new(&config.federation, pipeline.metrics.clone());
        if let Some(f) = &federation {
            tasks.spawn("federation checks", f.checks());
        }
        let state = AppState::new(
            Arc::new(config),
            plugins,
            pipeline,
            health,
            hub_auth,
            federation,
        )?;
        Ok(App {
            state,
            tasks,
            leading,
        })
    }
}

/// The warm pool `[warm_pool]` configures, on the `[hub]`.
fn warm_pool(
    config: &Config,
    plugins: &Arc<PluginHost>,
    demand: crate::cache::LaunchDemand,
    metrics: Arc<Metrics>,
) -> Result<WarmPool, ConfigError> {
    let pool = &config.warm_pool;
    let hub = Hub::new(&config.hub)?
        .ok_or_else(|| ConfigError::Invalid("warm_pool needs a hub (hub.url)".into()))?;
    // One still loading is checked once it is (`serve`).
    if !plugins.is_loading(&pool.policy) {
        check_pool_policy(config, plugins)?;
    }
    Ok(WarmPool::new(
        Arc::new(hub),
        plugins.clone(),
        demand,
        pool,
        config.quota.total,
        &config.hub.users_group,
        metrics,
    ))
}

/// `warm_pool.policy`, when the pool is on, names a loaded pool-policy plugin.
pub fn check_pool_policy(config: &Config, plugins: &PluginHost) -> Result<(), ConfigError> {
    let policy = &config.warm_pool.policy;
    match plugins.get(policy).map(|p| p.kind()) {
        _ if config.warm_pool.max_servers == 0 => Ok(()),
        Some(bindery_runtime::bindings::PluginKind::PoolPolicy) => Ok(()),
        _ => Err(ConfigError::Invalid(format!(
            "warm_pool.policy: no pool-policy plugin `{policy}` is loaded"
        ))),
    }
}

/// How long [`Tasks::shutdown`] waits for a task to end after it is told to.
const TASK_STOP_GRACE: Duration = Duration::from_secs(5);

/// The background tasks of one service, each named, stopped together. A
/// task is told to stop at its next await point; dropping the set stops
/// them too, without waiting.
#[derive(Default)]
pub struct Tasks {
    stop: CancellationToken,
    running: Vec<(&'static str, JoinHandle<()>)>,
}

impl Tasks {
    /// Runs `task` in the background until it ends or the set stops.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        let handle = tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {}
            }
        });
        self.running.push((name, handle));
    }

    /// The names of the tasks started, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.running.iter().map(|(name, _)| *name).collect()
    }

    /// Stops every task and waits for each to end; the names of those that
    /// did not end within the grace period (none, unless a task blocks a
    /// runtime thread).
    pub async fn shutdown(mut self) -> Vec<&'static str> {
        self.stop.cancel();
        let mut stuck = Vec::new();
        let mut ended = Vec::new();
        for (name, handle) in std::mem::take(&mut self.running) {
            match tokio::time::timeout(TASK_STOP_GRACE, handle).await {
                Ok(_) => ended.push(name),
                Err(_) => stuck.push(name),
            }
        }
        if stuck.is_empty() {
            tracing::info!("background tasks ended: {}", ended.join(", "));
        } else {
            tracing::warn!(
                "background tasks still running {} s after the stop: {}",
                TASK_STOP_GRACE.as_secs(),
                stuck.join(", ")
            );
        }
        stuck
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
