//! Resolution: provider prefix and spec → an immutable revision. The host
//! applies the operator's spec rules, answers from the ref cache when it can,
//! and otherwise asks the provider plugin; the plugin decides everything about
//! the spec itself.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bindery_runtime::bindings::{self, ContentSource, GitContent, PluginError, RefLifetime};
use bindery_runtime::capabilities::UserSecret;
use bindery_runtime::{CallError, PluginHost};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::policy::SpecPolicy;
use crate::cache::{Freshness, RefCache};
use crate::config::{Config, ConfigError, QuotaConfig};
use crate::metrics::Metrics;
use crate::now_ms;

/// A spec resolved to an immutable revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// The provider prefix it was resolved with.
    pub provider: String,
    /// The spec as resolved (trailing `/` removed).
    pub spec: String,
    /// The immutable revision: a commit sha, a record version.
    pub resolved_ref: String,
    /// What the builder fetches.
    pub repo_url: String,
    /// Stable per repository; image names derive from it.
    pub build_slug: String,
    /// The spec pinned to `resolved_ref`.
    pub resolved_spec: String,
    /// Where a person can see this revision.
    pub ref_url: String,
    /// Whether the spec itself named an immutable revision.
    pub immutable: bool,
    /// What the user should read before the launch goes on.
    pub notices: Vec<Notice>,
    /// Resolved with the launching user's own credential: its image is
    /// named apart from the one anyone may launch, built with that
    /// credential, and handed only to users whose own credential reads the
    /// repository.
    #[serde(default)]
    pub private: bool,
}

impl Resolved {
    /// What its image and build are named from: the build slug, under
    /// `private/` for a private resolution.
    pub fn image_slug(&self) -> Cow<'_, str> {
        if self.private {
            Cow::Owned(format!("private/{}", self.build_slug))
        } else {
            Cow::Borrowed(&self.build_slug)
        }
    }
}

/// A message for the event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// The requested ref was missing and `used` was resolved instead.
    RefFallback {
        /// The ref in the spec.
        requested: String,
        /// The ref resolved instead.
        used: String,
        /// Why the requested ref may be gone.
        hint: String,
    },
    /// A plain message.
    Info(String),
}

/// How long upstream BinderHub holds a launch after a ref fallback, so the user reads it.
const FALLBACK_PAUSE: Duration = Duration::from_secs(10);

impl Notice {
    /// The event-stream message, in upstream's words; `key` is `<provider>:<spec>`.
    pub fn message(&self, key: &str) -> String {
        match self {
            Notice::RefFallback {
                requested,
                used,
                hint,
            } => format!(
                "{} {hint}\nTrying again with {used} instead of {requested}. Please update your links.\n",
                not_found_sentence(key)
            ),
            Notice::Info(m) => format!("{m}\n"),
        }
    }

    /// How long the launch waits after showing it.
    pub fn pause(&self) -> Duration {
        match self {
            Notice::RefFallback { .. } => FALLBACK_PAUSE,
            Notice::Info(_) => Duration::ZERO,
        }
    }
}

fn not_found_sentence(key: &str) -> String {
    format!("Could not resolve ref for {key}. Double check your URL and that your repo is public.")
}

/// Why a spec did not resolve. The messages are upstream BinderHub's, for the
/// event stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No provider is loaded under this prefix.
    #[error("No provider found for prefix {0}")]
    UnknownProvider(String),
    /// The operator's spec rules refuse it.
    #[error("Sorry, {spec} is not allowed to launch. Please contact admins for more info!")]
    Banned {
        /// The spec.
        spec: String,
    },
    /// The repository or ref does not exist, or is not public.
    #[error("{}{}", not_found_sentence(.key), if .hint.is_empty() { String::new() } else { format!(" {}", .hint) })]
    NotFound {
        /// `<provider>:<spec>`.
        key: String,
        /// The provider's hint, possibly empty.
        hint: String,
    },
    /// The upstream asks us to wait.
    #[error("Error resolving ref for {key}: {message}")]
    RateLimited {
        /// `<provider>:<spec>`.
        key: String,
        /// When to try again.
        retry_after: Duration,
        /// The provider's message.
        message: String,
    },
    /// The spec is malformed, the upstream failed, or the plugin did.
    #[error("Error resolving ref for {key}: {message}")]
    Failed {
        /// `<provider>:<spec>`.
        key: String,
        /// What went wrong, for the user.
        message: String,
    },
}

/// A cached outcome: resolutions and "not found" are remembered, failures are not.
#[derive(Serialize, Deserialize)]
enum Outcome {
    Found(Resolved),
    NotFound(String),
}

/// Resolves specs with the loaded providers, the operator's rules and the cache.
pub struct Resolver {
    plugins: Arc<PluginHost>,
    policies: HashMap<String, SpecPolicy>,
    quota: QuotaConfig,
    asker: Arc<Asker>,
}

/// A resolution every request for the same spec awaits.
type Pending = Shared<BoxFuture<'static, Result<Resolved, ResolveError>>>;

/// A resolution under way and the requests waiting for it.
struct InFlight {
    id: u64,
    pending: Pending,
    waiters: usize,
    task: tokio::task::AbortHandle,
}

/// What asks providers: the cache, and the resolutions under way, so that
/// concurrent first requests for one spec make one plugin call (single flight).
struct Asker {
    plugins: Arc<PluginHost>,
    cache: Option<RefCache>,
    metrics: Arc<Metrics>,
    pending: Mutex<HashMap<(String, String), InFlight>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// One request's claim on a resolution: the last one dropped before the
/// resolution ends stops it, so specs nobody waits for any more hold no
/// plugin slot (a client can open and drop requests far faster than
/// providers answer).
struct Waiting {
    asker: Arc<Asker>,
    key: (String, String),
    id: u64,
    pending: Pending,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut pending = self.asker.pending.lock().expect("pending resolutions");
        if let Some(flight) = pending.get_mut(&self.key)
            && flight.id == self.id
        {
            flight.waiters -= 1;
            if flight.waiters == 0 {
                flight.task.abort();
                pending.remove(&self.key);
            }
        }
    }
}

impl Resolver {
    /// A resolver over `plugins`. Without a cache every resolve asks the plugin.
    pub fn new(
        config: &Config,
        plugins: Arc<PluginHost>,
        cache: Option<RefCache>,
        metrics: Arc<Metrics>,
    ) -> Result<Resolver, ConfigError> {
        let policies = config
            .enabled_plugins()
            .map(|(name, p)| Ok((name.to_string(), SpecPolicy::new(name, p)?)))
            .collect::<Result<_, ConfigError>>()?;
        let asker = Arc::new(Asker {
            plugins: plugins.clone(),
            cache,
            metrics,
            pending: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
        });
        Ok(Resolver {
            plugins,
            policies,
            quota: config.quota.clone(),
            asker,
        })
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> &Arc<PluginHost> {
        &self.plugins
    }

    /// Whether a provider is loaded under `prefix` (once it is, if it is loading).
    pub async fn knows(&self, prefix: &str) -> bool {
        self.plugins
            .loaded(prefix)
            .await
            .is_some_and(|p| p.display.is_some())
    }

    /// Upstream's order of checks: prefix, trailing `/`, rules, then the
    /// cache or the provider.
    pub async fn resolve(&self, provider: &str, spec: &str) -> Result<Resolved, ResolveError> {
        let spec = self.admit(provider, spec).await?;
        let key = format!("{provider}:{spec}");
        let cached = self.asker.cached(provider, spec);
        self.asker.metrics.cache_lookup("refs", cached.is_some());
        if let Some(outcome) = cached {
            return match outcome {
                Outcome::Found(r) => Ok(r),
                Outcome::NotFound(hint) => Err(ResolveError::NotFound { key, hint }),
            };
        }
        let waiting = self.asker.join(provider, spec);
        waiting.pending.clone().await
    }

    /// [`Resolver::resolve`] for a user with a credential of their own for
    /// the provider, on every launch: the provider is asked afresh with it,
    /// never the cache that every user shares (nor is the answer kept
    /// there), and a git remote the provider did not need to ask (a commit
    /// sha) is asked with it too, so only a user whose credential reads
    /// the repository gets past here.
    pub async fn resolve_as(
        &self,
        provider: &str,
        spec: &str,
        user: &Arc<UserSecret>,
    ) -> Result<Resolved, ResolveError> {
        let spec = self.admit(provider, spec).await?;
        let key = format!("{provider}:{spec}");
        let resolution = self.asker.call_provider(provider, spec, Some(user)).await?;
        let content = self
            .plugins
            .content_with(provider, &resolution, Some(user))
            .await
            .map_err(|e| call_failed(&key, e))?
            .map_err(|e| plugin_failed(provider, key.clone(), e))?;
        if let ContentSource::Git(GitContent {
            url,
            auth: Some(auth),
            ..
        }) = &content
        {
            let plugin = self
                .plugins
                .get(provider)
                .ok_or_else(|| ResolveError::UnknownProvider(provider.into()))?;
            if let Err(e) = plugin.ls_remote_authenticated(url, auth, Some(user)).await {
                tracing::info!(
                    provider,
                    "a user's own credential does not read {key}: {e:?}"
                );
                return Err(ResolveError::NotFound {
                    key,
                    hint: "The credential your login holds for it was refused.".into(),
                });
            }
        }
        let mut resolved = resolved(provider, spec, resolution);
        resolved.private = true;
        Ok(resolved)
    }

    /// The checks before any resolution: a known prefix, then the
    /// operator's rules; the spec without its trailing `/`.
    async fn admit<'s>(&self, provider: &str, spec: &'s str) -> Result<&'s str, ResolveError> {
        if !self.knows(provider).await {
            return Err(ResolveError::UnknownProvider(provider.into()));
        }
        let spec = spec.trim_end_matches('/');
        if self
            .policies
            .get(provider)
            .is_some_and(|p| p.is_banned(spec))
        {
            return Err(ResolveError::Banned { spec: spec.into() });
        }
        Ok(spec)
    }

    /// Upstream's `repo_config`: the quota that applies to this spec, plus any
    /// matching `spec_config` settings.
    pub fn repo_config(&self, provider: &str, spec: &str) -> Map<String, Value> {
        self.policies
            .get(provider)
            .map(|p| p.repo_config(spec, &self.quota))
            .unwrap_or_default()
    }
}

impl Asker {
    /// The resolution of (provider, spec) under way, or a new one. It runs as
    /// its own task, so one waiter leaving does not stop it for the others.
    fn join(self: &Arc<Self>, provider: &str, spec: &str) -> Waiting {
        let mut pending = self.pending.lock().expect("pending resolutions");
        let key = (provider.to_string(), spec.to_string());
        if let Some(flight) = pending.get_mut(&key) {
            flight.waiters += 1;
            return Waiting {
                asker: self.clone(),
                key,
                id: flight.id,
                pending: flight.pending.clone(),
            };
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (asker, task_key) = (self.clone(), key.clone());
        let task = tokio::spawn(async move {
            let result = asker.ask(&task_key.0, &task_key.1).await;
            let mut pending = asker.pending.lock().expect("pending resolutions");
            if pending.get(&task_key).is_some_and(|f| f.id == id) {
                pending.remove(&task_key);
            }
            result
        });
        let abort = task.abort_handle();
        let shared_key = format!("{provider}:{spec}");
        let p = async move {
            task.await.unwrap_or_else(|e| {
                Err(ResolveError::Failed {
                    key: shared_key,
                    message: format!("the resolution stopped: {e}"),
                })
            })
        }
        .boxed()
        .shared();
        pending.insert(
            key.clone(),
            InFlight {
                id,
                pending: p.clone(),
                waiters: 1,
                task: abort,
            },
        );
        Waiting {
            asker: self.clone(),
            key,
            id,
            pending: p,
        }
    }

    /// One plugin call, its outcome stored in the cache.
    async fn ask(&self, provider: &str, spec: &str) -> Result<Resolved, ResolveError> {
        match self.ask_provider(provider, spec).await {
            Err(e @ (ResolveError::Failed { .. } | ResolveError::RateLimited { .. })) => {
                match self.stand_in(provider, spec) {
                    Some(last) => {
                        tracing::warn!(
                            provider,
                            spec,
                            "the provider failed; its last resolution stands in: {e}"
                        );
                        Ok(last)
                    }
                    None => Err(e),
                }
            }
            answered => answered,
        }
    }

    async fn ask_provider(&self, provider: &str, spec: &str) -> Result<Resolved, ResolveError> {
        match self.call_provider(provider, spec, None).await {
            Ok(r) => {
                let freshness = if matches!(r.lifetime, RefLifetime::Immutable) {
                    Freshness::Immutable
                } else {
                    Freshness::Moving
                };
                let resolved = resolved(provider, spec, r);
                self.store(provider, spec, &Outcome::Found(resolved.clone()), freshness);
                Ok(resolved)
            }
            Err(ResolveError::NotFound { key, hint }) => {
                self.store(
                    provider,
                    spec,
                    &Outcome::NotFound(hint.clone()),
                    Freshness::NotFound,
                );
                Err(ResolveError::NotFound { key, hint })
            }
            Err(e) => Err(e),
        }
    }

    /// The provider's answer, for `user` when given.
    async fn call_provider(
        &self,
        provider: &str,
        spec: &str,
        user: Option<&Arc<UserSecret>>,
    ) -> Result<bindings::Resolution, ResolveError> {
        let key = format!("{provider}:{spec}");
        let started = Instant::now();
        let answer = self.plugins.resolve_with(provider, spec, user).await;
        self.metrics
            .plugin_call(provider, "resolve", started.elapsed());
        match answer.map_err(|e| call_failed(&key, e))? {
            Ok(r) => Ok(r),
            Err(PluginError::NotFound(hint)) => Err(ResolveError::NotFound { key, hint }),
            Err(e) => Err(plugin_failed(provider, key, e)),
        }
    }

    /// A cache that fails to read is a miss: the cache only ever saves work.
    fn cached(&self, provider: &str, spec: &str) -> Option<Outcome> {
        match self
            .cache
            .as_ref()?
            .get::<Outcome>(provider, spec, now_ms())
        {
            Ok(hit) => hit.map(|(outcome, _)| outcome),
            Err(e) => {
                tracing::warn!(provider, "ref cache read failed, resolving afresh: {e}");
                None
            }
        }
    }

    /// A moving ref's last resolution, for while its provider fails.
    fn stand_in(&self, provider: &str, spec: &str) -> Option<Resolved> {
        match self
            .cache
            .as_ref()?
            .stand_in::<Outcome>(provider, spec, now_ms())
        {
            Ok(Some(Outcome::Found(r))) => Some(r),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(provider, "ref cache read failed: {e}");
                None
            }
        }
    }

    fn store(&self, provider: &str, spec: &str, outcome: &Outcome, freshness: Freshness) {
        if let Some(cache) = &self.cache
            && let Err(e) = cache.put(provider, spec, outcome, freshness, now_ms())
        {
            tracing::warn!(
                provider,
                "ref cache write failed; the resolution is used but not kept: {e}"
            );
        }
    }
}

fn resolved(provider: &str, spec: &str, r: bindings::Resolution) -> Resolved {
    Resolved {
        provider: provider.into(),
        spec: spec.into(),
        resolved_ref: r.resolved_ref,
        repo_url: r.repo_url,
        build_slug: r.build_slug,
        resolved_spec: r.resolved_spec,
        ref_url: r.ref_url,
        immutable: matches!(r.lifetime, RefLifetime::Immutable),
        notices: r
            .notices
            .into_iter()
            .map(|n| match n {
                bindings::Notice::RefFallback(f) => Notice::RefFallback {
                    requested: f.requested,
                    used: f.used,
                    hint: f.hint,
                },
                bindings::Notice::Info(m) => Notice::Info(m),
            })
            .collect(),
        private: false,
    }
}

fn call_failed(key: &str, e: CallError) -> ResolveError {
    tracing::error!(key, "provider call failed: {e}");
    ResolveError::Failed {
        key: key.into(),
        message: e.to_string(),
    }
}

fn plugin_failed(provider: &str, key: String, e: PluginError) -> ResolveError {
    match &e {
        PluginError::RateLimited(r) => {
            return ResolveError::RateLimited {
                key,
                retry_after: Duration::from_secs(r.retry_after_secs),
                message: r.message.clone(),
            };
        }
        PluginError::InvalidConfig(m) => {
            tracing::error!(provider, "provider is misconfigured: {m}");
        }
        PluginError::Internal(m) => {
            tracing::error!(provider, "provider failed: {m}");
        }
        _ => {}
    }
    ResolveError::Failed {
        key,
        message: bindery_runtime::plugin_error_text(&e),
    }
}
