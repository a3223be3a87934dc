//! The wasmtime engine, its epoch ticker, the on-disk cache of compiled
//! components, and how one call runs.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::Component;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::capabilities::{CallState, RepoFiles, UserSecret};
use super::error::CallError;
use super::limits::{CallLimits, MemoryBudget, Refused};
use super::plugin::{CompileOutcome, LoadedPlugin};
use crate::config::RuntimeConfig;
use crate::engine_config::{engine_key, wasm_config};

/// A component's code compiled ahead of time, when the embedding binary was
/// built: loaded instead of compiling when the running engine is configured
/// as the one that compiled it (same wasmtime, settings and CPU features).
#[derive(Debug, Clone, Copy)]
pub struct Precompiled {
    /// The engine key ([`Runtime::engine_key`]) the code is valid for.
    pub engine_key: &'static str,
    /// The serialized component.
    pub code: &'static [u8],
}

/// The engine and everything shared by all plugins.
pub struct Runtime {
    engine: Engine,
    cache_dir: PathBuf,
    engine_key: String,
    slots: Semaphore,
    memory: Arc<MemoryBudget>,
    fuel_metering: bool,
    ticker: Arc<AtomicBool>,
    clock: crate::Clock,
}

impl Runtime {
    /// An engine for `config`. `fuel_metering` must be true when any plugin has
    /// a fuel budget: it changes the generated code, hence the cache key.
    pub fn new(
        config: &RuntimeConfig,
        data_dir: &Path,
        fuel_metering: bool,
    ) -> Result<Self, String> {
        let engine = Engine::new(&wasm_config(fuel_metering))
            .map_err(|e| format!("cannot create the wasm engine: {e}"))?;
        let engine_key = engine_key(&engine);

        let cache_dir = config
            .compile_cache_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("plugin-cache"));
        std::fs::create_dir_all(&cache_dir).map_err(|e| {
            format!(
                "cannot create the plugin cache {}: {e}",
                cache_dir.display()
            )
        })?;
        prune_other_engines(&cache_dir, &engine_key);

        let ticker = Arc::new(AtomicBool::new(true));
        let tick = Duration::from_millis(config.epoch_tick_ms);
        let (alive, ticking) = (ticker.clone(), engine.clone());
        std::thread::Builder::new()
            .name("bindery-epoch".into())
            .spawn(move || {
                while alive.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| format!("cannot start the epoch thread: {e}"))?;

        Ok(Runtime {
            engine,
            cache_dir,
            engine_key,
            slots: Semaphore::new(config.max_concurrent_calls),
            memory: MemoryBudget::new(
                usize::try_from(config.memory_budget_mib.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
            ),
            fuel_metering,
            ticker,
            clock: crate::Clock::System,
        })
    }

    /// This runtime with plugins told the time by `clock`.
    pub fn with_clock(mut self, clock: crate::Clock) -> Runtime {
        self.clock = clock;
        self
    }

    /// The memory every live call shares.
    pub fn memory(&self) -> &MemoryBudget {
        &self.memory
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Where the compiled form of a component with this sha256 is cached.
    pub fn cache_path(&self, sha256: &str) -> PathBuf {
        self.cache_dir
            .join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// What compiled code for this engine is filed under.
    pub fn engine_key(&self) -> &str {
        &self.engine_key
    }

    /// The component, from the cache when it holds this exact component for
    /// this exact engine configuration, else from `precompiled` when that
    /// was made for this engine, else compiled (off the async workers); what
    /// was not in the cache is written there for the next start.
    pub(crate) async fn component(
        &self,
        sha256: &str,
        wasm: &[u8],
        precompiled: Option<Precompiled>,
    ) -> wasmtime::Result<(Component, CompileOutcome)> {
        let path = self.cache_path(sha256);
        if path.is_file() {
            // SAFETY: the file is one this process family wrote under a key
            // that includes the engine's compatibility hash; the data
            // directory is trusted like the binary itself.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok((c, CompileOutcome::FromCache)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "discarding an unreadable compiled plugin: {e}");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let (compiled, outcome) = match precompiled.filter(|p| p.engine_key == self.engine_key) {
            Some(p) => (Cow::Borrowed(p.code), CompileOutcome::Precompiled),
            None => {
                let (engine, wasm) = (self.engine.clone(), wasm.to_vec());
                let compiled =
                    tokio::task::spawn_blocking(move || engine.precompile_component(&wasm))
                        .await??;
                (Cow::Owned(compiled), CompileOutcome::Compiled)
            }
        };
        match write_atomically(&path, &compiled) {
            Ok(()) => {
                // SAFETY: as above; we just wrote it from `precompile_component`
                // (here or when the binary was built, for this engine key), and
                // fall back to those same bytes if another writer replaced it.
                // Loading the file maps it rather than copying the code.
                let component = unsafe {
                    Component::deserialize_file(&self.engine, &path)
                        .or_else(|_| Component::deserialize(&self.engine, &compiled))?
                };
                if let Cow::Borrowed(embedded) = compiled {
                    release(embedded);
                }
                Ok((component, outcome))
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot cache the compiled plugin (it will be compiled again at the next start): {e}");
                // SAFETY: bytes from `precompile_component` for this engine.
                Ok((
                    unsafe { Component::deserialize(&self.engine, &compiled)? },
                    CompileOutcome::CompiledUncached,
                ))
            }
        }
    }

    /// Runs `f` in a fresh store for `plugin`, under its limits. The store, and
    /// any instance `f` made in it, is dropped afterwards, trapped or not.
    pub(crate) async fn call<R>(
        &self,
        plugin: &LoadedPlugin,
        repo: Option<Arc<dyn RepoFiles>>,
        user: Option<Arc<UserSecret>>,
        f: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let limits = plugin.limits;
        // The plugin's own slot first, so its queue holds none of the shared ones.
        let slots = async {
            let own = plugin.slots.acquire().await;
            (own, self.slots.acquire().await)
        };
        let _slots = tokio::time::timeout(limits.timeout, slots)
            .await
            .map_err(|_| CallError::Busy {
                plugin: plugin.name.to_string(),
                waited: limits.timeout,
            })?;
        let state = CallState::new(
            plugin.name.clone(),
            plugin.grants.clone(),
            repo,
            user,
            CallLimits::new(&limits, self.memory.clone()),
            self.clock.clone(),
        );
        let output = state.output.clone();
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        if let (true, Some(fuel)) = (self.fuel_metering, limits.fuel) {
            store.set_fuel(fuel).expect("fuel metering is on");
        }
        // Guest code yields to the executor every tick, so a busy plugin shares
        // the worker thread, and traps once the deadline has passed.
        let deadline = Instant::now() + limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });

        // The outer timeout also covers host imports, which epochs cannot interrupt.
        let outcome = tokio::time::timeout(limits.timeout, f(&mut store)).await;
        output.flush();
        let name = plugin.name.to_string();
        match outcome {
            Err(_) => Err(CallError::Timeout {
                plugin: name,
                after: limits.timeout,
            }),
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                let err = if let Some(refused) = store.data().limits.memory_refused {
                    match refused {
                        Refused::Own => CallError::OutOfMemory {
                            plugin: name,
                            limit_bytes: limits.memory_bytes,
                        },
                        Refused::Shared => CallError::MemoryBudget {
                            plugin: name,
                            budget_bytes: self.memory.limit(),
                        },
                    }
                } else {
                    match e.downcast_ref::<Trap>() {
                        Some(Trap::Interrupt) => CallError::Timeout {
                            plugin: name,
                            after: limits.timeout,
                        },
                        Some(Trap::OutOfFuel) => CallError::OutOfFuel {
                            plugin: name,
                            budget: limits.fuel.unwrap_or(0),
                        },
                        _ => {
                            let stderr = output.stderr_tail();
                            let message = panic_message(&stderr).unwrap_or_else(|| format!("{e}"));
                            CallError::Trap {
                                plugin: name,
                                message,
                            }
                        }
                    }
                };
                tracing::warn!(plugin = %plugin.name, "plugin call failed: {err}; its instance is discarded");
                Err(err)
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.store(false, Ordering::Relaxed);
    }
}

/// The message of a Rust panic as the guest's std prints it to stderr.
fn panic_message(stderr: &str) -> Option<String> {
    let at = stderr.rfind("panicked at ")?;
    let rest = &stderr[at + "panicked at ".len()..];
    let (location, msg) = rest.split_once(":\n").or_else(|| rest.split_once('\n'))?;
    let msg = msg.lines().next().unwrap_or("").trim();
    Some(format!("panicked at {location}: {msg}"))
}

/// Writes through a temporary file so a crash, a full disk or a concurrent
/// writer (another load, another replica sharing the cache) never leaves a
/// truncated artifact under the final name.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Drops this process's pages of `bytes`, code embedded in the binary: once
/// it is in the cache it is mapped from there, and the embedded copy would
/// otherwise stay resident (7 MiB for the bundled plugins) for good.
fn release(bytes: &'static [u8]) {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let start = (bytes.as_ptr() as usize).next_multiple_of(page);
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end > start {
        // SAFETY: whole pages inside `bytes`, which is read-only data mapped
        // privately from the binary's file and never written: dropping them
        // only means a later read faults them in from the file again.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// Artifacts of other engine versions or settings can never load again.
fn prune_other_engines(dir: &Path, engine_key: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".cwasm") && !name.ends_with(&format!("-{engine_key}.cwasm")) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_extracted() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:70:24:\nhostile plugin panics on purpose\nnote: run with `RUST_BACKTRACE=1`";
        assert_eq!(
            panic_message(stderr).unwrap(),
            "panicked at src/lib.rs:70:24: hostile plugin panics on purpose"
        );
        assert!(panic_message("just noise").is_none());
    }
}
