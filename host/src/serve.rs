//! `bindery serve`: load the plugins, start the HTTP service, stop cleanly.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bindery_runtime::PluginHost;
use tokio_util::sync::CancellationToken;

use crate::api::router;
use crate::app::App;
use crate::config::Config;
use crate::edge::Edge;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// One or more plugins failed to load; each line names one.
    #[error("plugins failed to load:\n  {}", .0.join("\n  "))]
    Plugins(Vec<String>),
    /// The listen address is unusable.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is inconsistent.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The server failed while running.
    #[error("server error: {0}")]
    Server(std::io::Error),
}

/// Runs the service until SIGINT or SIGTERM. With `file` (the configuration
/// it was read from) and `plugin_runtime.reload_interval_ms`, the plugin
/// entries of the file are followed: a changed entry (e.g. a new `oci`
/// digest) is loaded without a restart.
pub async fn serve(config: Config, file: Option<PathBuf>) -> Result<(), ServeError> {
    let started = Instant::now();
    let plugin_errors = |errors: Vec<bindery_runtime::LoadError>| {
        ServeError::Plugins(errors.iter().map(ToString::to_string).collect())
    };
    // Plugins from files and OCI load while the service answers.
    let (plugins, loading) = PluginHost::start_serving(&config)
        .await
        .map_err(plugin_errors)?;
    // Everything that can reject the configuration runs before the port is taken.
    let App {
        state, mut tasks, ..
    } = App::new(config, plugins)?;
    let reload = state.config.plugin_runtime.reload_interval_ms;
    if let Some(file) = file.filter(|_| reload > 0) {
        let current = Config::clone(&state.config);
        let follow = follow_config(
            file,
            current,
            state.plugins.clone(),
            Duration::from_millis(reload),
        );
        tasks.spawn("config file watch", follow);
    }
    let listen = state.config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    tracing::info!(
        plugins = state.plugins.list().len(),
        startup_ms = started.elapsed().as_secs_f64() * 1e3,
        data_dir = %state.config.data_dir.display(),
        tasks = %tasks.names().join(", "),
        "Bindery {} listening on http://{addr}/",
        crate::VERSION
    );
    let stopping = CancellationToken::new();
    tokio::spawn({
        let stop = stopping.clone();
        async move {
            shutdown().await;
            stop.cancel();
        }
    });
    let edge = Edge::new(&state.config.web);
    // A plugin that fails to load stops the service, as it would have stopped its start.
    let loaded = {
        let (config, plugins) = (state.config.clone(), state.plugins.clone());
        async move {
            loading.await.map_err(plugin_errors)?;
            crate::app::check_pool_policy(&config, &plugins)?;
            tracing::info!(
                plugins = plugins.list().len(),
                startup_ms = started.elapsed().as_secs_f64() * 1e3,
                "all plugins loaded"
            );
            std::future::pending::<()>().await;
            Ok::<(), ServeError>(())
        }
    };
    let serving = edge.serve(listener, router(state), stopping.clone().cancelled_owned());
    // Event streams last as long as their builds: they are not waited for
    // beyond the grace period. Their builds go on where they run (a build
    // pod), and a client that comes back to the next process finds them.
    let grace = async {
        stopping.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let outcome = tokio::select! {
        () = serving => Ok(()),
        () = grace => {
            tracing::warn!("connections still open {} s after the signal (event streams); closing them", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
        Err(e) = loaded => Err(e),
    };
    tasks.shutdown().await;
    outcome
}

/// How long a stopping service waits for open connections to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Re-reads `file` when it changes and hands its plugin entries to the
/// plugin host. Other settings take a restart; a file that no longer parses
/// is reported and changes nothing.
async fn follow_config(
    file: PathBuf,
    mut current: Config,
    plugins: std::sync::Arc<PluginHost>,
    interval: Duration,
) {
    let modified = |f: &PathBuf| std::fs::metadata(f).and_then(|m| m.modified()).ok();
    let mut seen = modified(&file);
    loop {
        tokio::time::sleep(interval).await;
        let now = modified(&file);
        if now == seen {
            continue;
        }
        seen = now;
        let mut config = match Config::load(Some(&file)) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(file = %file.display(), "the changed configuration is not used: {e}");
                continue;
            }
        };
        // The command line's overrides stay.
        (config.listen, config.data_dir) = (current.listen, current.data_dir.clone());
        for (name, result) in plugins.reconfigure(&config).await {
            match result {
                Ok(outcome) => {
                    tracing::info!(plugin = %name, ?outcome, "plugin configuration applied");
                }
                Err(e) => tracing::error!(plugin = %name, "plugin configuration not applied: {e}"),
            }
        }
        let mut unchanged = config.clone();
        unchanged.plugins = current.plugins.clone();
        if serde_json::to_value(&unchanged).ok() != serde_json::to_value(&current).ok() {
            tracing::warn!(file = %file.display(), "settings other than [plugins.*] changed; they take effect at the next start");
        }
        current = config;
    }
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
