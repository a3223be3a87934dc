//! `bindery simulate`: a day of launches replayed against a configuration
//! before it is deployed. The cull and pool policies are the real
//! components the configuration names, loaded with the same grants and
//! limits as in service and told the time by a virtual clock; the rest of
//! the world (builds, spawns, how long people work) is the model of
//! `[simulate]`.

pub mod chart;
mod engine;
mod model;
pub mod report;
pub mod trace;

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bindery_runtime::bindings::PluginKind;
use bindery_runtime::host::Bundled;
use bindery_runtime::{Clock, PluginHost, PluginSettings};

use crate::config::{Config, PluginConfig, RuntimeConfig};
pub use report::Report;
pub use trace::Launch;

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The trace cannot be read.
    #[error("the trace: {0}")]
    Trace(String),
    /// The configuration cannot be replayed.
    #[error("the configuration: {0}")]
    Config(String),
    /// A report or trace cannot be written.
    #[error("cannot write: {0}")]
    Output(String),
}

/// Writes `path` through a temporary file beside it, renamed over `path`
/// once `write` has succeeded: an error or a full disk half-way leaves what
/// was there (a day of launches that took a while to gather, say).
pub fn write_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(), SimulateError>,
) -> Result<(), SimulateError> {
    let failed = |e: std::io::Error| SimulateError::Output(format!("{}: {e}", path.display()));
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".bindery-simulate-")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(failed)?;
    let mut out = BufWriter::new(file.as_file_mut());
    write(&mut out).map_err(|e| match e {
        SimulateError::Output(why) => SimulateError::Output(format!("{}: {why}", path.display())),
        other => other,
    })?;
    out.flush().map_err(failed)?;
    drop(out);
    file.persist(path).map_err(|e| failed(e.error))?;
    Ok(())
}

/// The configuration's plugin settings with a virtual clock.
struct Virtual<'a> {
    config: &'a Config,
    clock: Arc<AtomicU64>,
}

impl PluginSettings for Virtual<'_> {
    fn runtime(&self) -> &RuntimeConfig {
        self.config.runtime()
    }
    fn plugins(&self) -> &BTreeMap<String, PluginConfig> {
        self.config.plugins()
    }
    fn data_dir(&self) -> &Path {
        self.config.data_dir()
    }
    fn bundled(&self) -> Bundled {
        self.config.bundled()
    }
    fn clock(&self) -> Clock {
        Clock::Virtual(self.clock.clone())
    }
}

/// Replays `launches` against `config`: its plugins loaded as `serve`
/// loads them, on a virtual clock.
pub async fn run(config: &Config, launches: &[Launch]) -> Result<Report, SimulateError> {
    let first = launches
        .first()
        .ok_or_else(|| SimulateError::Trace("it holds no successful launch".into()))?;
    let clock = Arc::new(AtomicU64::new(first.at_ms));
    let plugins = PluginHost::start(&Virtual {
        config,
        clock: clock.clone(),
    })
    .await
    .map_err(|errors| {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        SimulateError::Config(all.join("; "))
    })?;
    check_policies(config, &plugins)?;
    engine::Replay::new(config, &plugins, clock, launches)?
        .run()
        .await
}

/// The policies the configuration names are loaded, and of their kinds:
/// a replay whose policy is missing would say nothing of that policy.
fn check_policies(config: &Config, plugins: &PluginHost) -> Result<(), SimulateError> {
    if config.cull.enabled {
        for policy in &config.cull.policies {
            if plugins.get(policy).map(|p| p.kind()) != Some(PluginKind::CullPolicy) {
                return Err(SimulateError::Config(format!(
                    "cull.policies: no cull-policy plugin `{policy}` is loaded"
                )));
            }
        }
    }
    crate::app::check_pool_policy(config, plugins).map_err(|e| SimulateError::Config(e.to_string()))
}
