//! Prometheus metrics: upstream BinderHub's `binderhub_*` names, labels and
//! buckets, so existing dashboards keep working, plus Bindery's own.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaunchTime {
    status: String,
    retries: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Repo {
    status: String,
    provider: String,
    repo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutorRun {
    executor: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CullAction {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Handout {
    image: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolState {
    image: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Member {
    member: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolImage {
    image: String,
}

/// An image's name without its tag (the revision): the pool's metrics are
/// per repository image, as upstream's launch counts are per repository.
fn image_name(image: &str) -> String {
    crate::registry::naming::split_tag(image).0.to_string()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Policy {
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCall {
    plugin: String,
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheResult {
    cache: String,
    result: String,
}

fn build_time() -> Histogram {
    Histogram::new([60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0])
}

/// Finer than upstream's build buckets: a layer build takes a second or less.
fn executor_time() -> Histogram {
    Histogram::new([
        0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ])
}

fn launch_time() -> Histogram {
    Histogram::new([2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0])
}

/// A pool server takes seconds to start, or minutes on a cold node.
fn refill_time() -> Histogram {
    Histogram::new([1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0])
}

fn plugin_time() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ])
}

/// The registry, and each family's descriptor: the text encoder leaves out
/// a family with no samples yet, but dashboards and `absent()` alerts want
/// every family from the start, as upstream's client lists them.
#[derive(Default)]
struct Families {
    registry: Registry,
    /// (name, help, type), in registration order.
    described: Vec<(&'static str, &'static str, MetricType)>,
}

impl Families {
    fn register<M: Metric + TypedMetric>(
        &mut self,
        name: &'static str,
        help: &'static str,
        metric: M,
    ) {
        self.described.push((name, help, M::TYPE));
        self.registry.register(name, help, metric);
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        // Written as the encoder writes them, before its `# EOF`.
        let mut missing = String::new();
        for (name, help, kind) in &self.described {
            if !out.contains(&format!("# TYPE {name} ")) {
                missing.push_str(&format!(
                    "# HELP {name} {help}.\n# TYPE {name} {}\n",
                    kind.as_str()
                ));
            }
        }
        match out.rfind("# EOF") {
            Some(at) => out.insert_str(at, &missing),
            None => out.push_str(&missing),
        }
        out
    }
}

/// The process's own figures (`process_*`, as every Prometheus client
/// exports them), read from the system at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let m = metrics_process::collector::collect();
        if let Some(seconds) = m.cpu_seconds_total {
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(seconds).encode(metric)?;
        }
        let gauges = [
            (
                "process_open_fds",
                "Number of open file descriptors",
                m.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                m.max_fds,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                m.virtual_memory_bytes,
            ),
            (
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes",
                m.virtual_memory_max_bytes,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                m.resident_memory_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                m.start_time_seconds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                m.threads,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(value).encode(metric)?;
            }
        }
        Ok(())
    }
}

/// Every metric the service exports.
pub struct Metrics {
    families: Families,
    build_time: Family<Status, Histogram, fn() -> Histogram>,
    executor_time: Family<ExecutorRun, Histogram, fn() -> Histogram>,
    launch_time: Family<LaunchTime, Histogram, fn() -> Histogram>,
    build_count: Family<Repo, Counter>,
    launch_count: Family<Repo, Counter>,
    inprogress_builds: Gauge,
    inprogress_launches: Gauge,
    github_rate_limit: Gauge,
    plugin_calls: Family<PluginCall, Histogram, fn() -> Histogram>,
    cache: Family<CacheResult, Counter>,
    streams: Gauge,
    cull_servers: Family<CullAction, Counter>,
    cull_policy_failures: Family<Policy, Counter>,
    cull_pass_time: Histogram,
    pool_handouts: Family<Handout, Counter>,
    pool_servers: Family<PoolState, Gauge>,
    pool_refill_time: Family<PoolImage, Histogram, fn() -> Histogram>,
    federation_health: Family<Member, Gauge>,
    federation_redirects: Family<Member, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Families::default();
        let m = Metrics {
            build_time: Family::new_with_constructor(build_time),
            executor_time: Family::new_with_constructor(executor_time),
            launch_time: Family::new_with_constructor(launch_time),
            build_count: Family::default(),
            launch_count: Family::default(),
            inprogress_builds: Gauge::default(),
            inprogress_launches: Gauge::default(),
            github_rate_limit: Gauge::default(),
            plugin_calls: Family::new_with_constructor(plugin_time),
            cache: Family::default(),
            streams: Gauge::default(),
            cull_servers: Family::default(),
            cull_policy_failures: Family::default(),
            cull_pass_time: Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0]),
            pool_handouts: Family::default(),
            pool_servers: Family::default(),
            pool_refill_time: Family::new_with_constructor(refill_time),
            federation_health: Family::default(),
            federation_redirects: Family::default(),
            families: Families::default(),
        };
        registry.register(
            "binderhub_build_time_seconds",
            "Histogram of build times",
            m.build_time.clone(),
        );
        registry.register(
            "bindery_build_executor_seconds",
            "Time of builds by the executor that ran them (local, layer, kubernetes)",
            m.executor_time.clone(),
        );
        registry.register(
            "binderhub_launch_time_seconds",
            "Histogram of launch times",
            m.launch_time.clone(),
        );
        registry.register(
            "binderhub_build_count",
            "Counter of builds by repo",
            m.build_count.clone(),
        );
        registry.register(
            "binderhub_launch_count",
            "Counter of launches by repo",
            m.launch_count.clone(),
        );
        registry.register(
            "binderhub_inprogress_builds",
            "Builds currently in progress",
            m.inprogress_builds.clone(),
        );
        registry.register(
            "binderhub_inprogress_launches",
            "Launches currently in progress",
            m.inprogress_launches.clone(),
        );
        registry.register(
            "binderhub_github_rate_limit_remaining",
            "GitHub rate limit remaining",
            m.github_rate_limit.clone(),
        );
        registry.register(
            "bindery_plugin_call_seconds",
            "Time of plugin calls, instantiation included",
            m.plugin_calls.clone(),
        );
        registry.register(
            "bindery_cache_lookups",
            "Look-ups in the ref cache (cache=refs), hit or miss",
            m.cache.clone(),
        );
        registry.register(
            "bindery_event_streams_open",
            "Event streams being served",
            m.streams.clone(),
        );
        registry.register(
            "bindery_cull_servers",
            "Servers a cull pass decided about, by action (kept, stopped, slow, warned, failed)",
            m.cull_servers.clone(),
        );
        registry.register(
            "bindery_cull_policy_failures",
            "Cull-policy calls that failed, so their servers were kept",
            m.cull_policy_failures.clone(),
        );
        registry.register(
            "bindery_cull_pass_seconds",
            "Time of cull passes",
            m.cull_pass_time.clone(),
        );
        registry.register(
            "bindery_warm_pool_handouts",
            "Anonymous launches by image (without its tag) and whether the warm pool had a started server of it (hit) or not (miss)",
            m.pool_handouts.clone(),
        );
        registry.register(
            "bindery_warm_pool_servers",
            "The warm pool's unclaimed servers by image (without its tag), ready or starting, at its last pass",
            m.pool_servers.clone(),
        );
        registry.register(
            "bindery_warm_pool_refill_seconds",
            "Time from asking the hub for a pool server to its being ready for hand-out, by image (without its tag)",
            m.pool_refill_time.clone(),
        );
        registry.register(
            "federation_health",
            "Federation members: 1 while in the set, with an empty reason; 0 with the reason it left",
            m.federation_health.clone(),
        );
        registry.register(
            "federation_redirect_count",
            "Launches sent to a federation member, by why it was chosen (rendezvous, cookie, next)",
            m.federation_redirects.clone(),
        );
        registry
            .registry
            .register_collector(Box::new(ProcessCollector));
        Metrics {
            families: registry,
            ..m
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        self.families.encode()
    }

    /// What GitHub's API last said of its rate limit to the `gh` provider
    /// (upstream's gauge, read off the provider's responses by the host).
    pub fn github_rate_limit(&self, remaining: u64) {
        self.github_rate_limit
            .set(i64::try_from(remaining).unwrap_or(i64::MAX));
    }

    /// A build ended (`status`: success or failure).
    pub fn build_finished(&self, status: &str, provider: &str, repo: &str, took: Duration) {
        self.build_time
            .get_or_create(&Status {
                status: status.into(),
            })
            .observe(took.as_secs_f64());
        let labels = Repo {
            status: status.into(),
            provider: provider.into(),
            repo: without_credentials(repo),
        };
        self.build_count.get_or_create(&labels).inc();
    }

    /// An executor's part of a build ended (`status`: success or failure).
    pub fn executor_finished(&self, executor: &str, status: &str, took: Duration) {
        self.executor_time
            .get_or_create(&ExecutorRun {
                executor: executor.into(),
                status: status.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// A cull pass acted on one server.
    pub fn cull_action(&self, action: &str) {
        self.cull_servers
            .get_or_create(&CullAction {
                action: action.into(),
            })
            .inc();
    }

    /// A cull policy failed.
    pub fn cull_policy_failed(&self, policy: &str) {
        self.cull_policy_failures
            .get_or_create(&Policy {
                policy: policy.into(),
            })
            .inc();
    }

    /// A cull pass ended.
    pub fn cull_pass(&self, took: Duration) {
        self.cull_pass_time.observe(took.as_secs_f64());
    }

    /// A launch asked the warm pool: `hit` (handed a server) or `miss`.
    pub fn pool_handout(&self, image: &str, hit: bool) {
        let outcome = if hit { "hit" } else { "miss" };
        self.pool_handouts
            .get_or_create(&Handout {
                image: image_name(image),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// The warm pool's unclaimed servers at its last pass: (image, state, count).
    pub fn pool_servers<'a>(&self, servers: impl IntoIterator<Item = (&'a str, &'a str, usize)>) {
        // Images the pool no longer holds drop out rather than stay at 0.
        self.pool_servers.clear();
        for (image, state, n) in servers {
            self.pool_servers
                .get_or_create(&PoolState {
                    image: image_name(image),
                    state: state.into(),
                })
                .inc_by(n as i64);
        }
    }

    /// A pool server of `image` became ready `took` after it was asked for.
    pub fn pool_refilled(&self, image: &str, took: Duration) {
        self.pool_refill_time
            .get_or_create(&PoolImage {
                image: image_name(image),
            })
            .observe(took.as_secs_f64());
    }

    /// A launch ended (`status`: success, failure, pod_quota, repo_quota).
    pub fn launch_finished(&self, status: &str, provider: &str, repo: &str, took: Duration) {
        let time = LaunchTime {
            status: status.into(),
            retries: "0".into(),
        };
        self.launch_time
            .get_or_create(&time)
            .observe(took.as_secs_f64());
        let labels = Repo {
            status: status.into(),
            provider: provider.into(),
            repo: without_credentials(repo),
        };
        self.launch_count.get_or_create(&labels).inc();
    }

    /// Builds running on this replica now.
    pub fn builds_in_progress(&self) -> usize {
        usize::try_from(self.inprogress_builds.get()).unwrap_or(0)
    }

    /// A federation member's state changed from `was` to `reason`: in the
    /// set (empty), or out and why. One series per member.
    pub fn federation_member(&self, member: &str, was: Option<&str>, reason: &str) {
        let labels = |reason: &str| Member {
            member: member.into(),
            reason: reason.into(),
        };
        if let Some(was) = was {
            self.federation_health.remove(&labels(was));
        }
        self.federation_health
            .get_or_create(&labels(reason))
            .set(i64::from(reason.is_empty()));
    }

    /// A launch was sent to `member` (`reason`: how it was chosen).
    pub fn federation_redirect(&self, member: &str, reason: &str) {
        let labels = Member {
            member: member.into(),
            reason: reason.into(),
        };
        self.federation_redirects.get_or_create(&labels).inc();
    }

    /// Counts builds and launches in progress while the guard lives.
    pub fn in_progress(&self, what: InProgress) -> InProgressGuard {
        let gauge = match what {
            InProgress::Build => self.inprogress_builds.clone(),
            InProgress::Launch => self.inprogress_launches.clone(),
            InProgress::Stream => self.streams.clone(),
        };
        gauge.inc();
        InProgressGuard(gauge)
    }

    /// A plugin call took `took`.
    pub fn plugin_call(&self, plugin: &str, function: &str, took: Duration) {
        let labels = PluginCall {
            plugin: plugin.into(),
            function: function.into(),
        };
        self.plugin_calls
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A look-up in `cache` (`refs`, `images`) hit or missed.
    pub fn cache_lookup(&self, cache: &str, hit: bool) {
        let labels = CacheResult {
            cache: cache.into(),
            result: if hit { "hit" } else { "miss" }.into(),
        };
        self.cache.get_or_create(&labels).inc();
    }
}

/// What [`Metrics::in_progress`] counts.
pub enum InProgress {
    /// `binderhub_inprogress_builds`.
    Build,
    /// `binderhub_inprogress_launches`.
    Launch,
    /// `bindery_event_streams_open`.
    Stream,
}

/// Decrements its gauge when dropped, however the work ended.
pub struct InProgressGuard(Gauge);

impl Drop for InProgressGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `url` without its user name and password, as `/metrics`, logs and events
/// show a repository: a token in a private repository's URL is a secret.
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.into()
        }
        _ => url.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls_are_shown_without_credentials() {
        let m = Metrics::default();
        m.build_finished(
            "success",
            "git",
            "https://me:ghp_secret@example.org/a/b.git",
            Duration::ZERO,
        );
        m.launch_finished(
            "success",
            "git",
            "https://ghp_secret@example.org/a/b.git",
            Duration::ZERO,
        );
        let text = m.encode();
        assert!(!text.contains("ghp_secret"), "{text}");
        assert!(
            text.contains("repo=\"https://example.org/a/b.git\""),
            "{text}"
        );
        assert_eq!(
            without_credentials("git://example.org/x"),
            "git://example.org/x"
        );
        assert_eq!(without_credentials("not a url"), "not a url");
    }

    #[test]
    fn upstream_names_and_buckets() {
        let m = Metrics::default();
        m.build_finished(
            "success",
            "gh",
            "https://github.com/a/b",
            Duration::from_secs(90),
        );
        m.launch_finished(
            "success",
            "gh",
            "https://github.com/a/b",
            Duration::from_secs(3),
        );
        let guard = m.in_progress(InProgress::Build);
        let text = m.encode();
        assert!(text.contains(r#"binderhub_build_count_total{status="success",provider="gh",repo="https://github.com/a/b"} 1"#), "{text}");
        assert!(
            text.contains(r#"binderhub_build_time_seconds_bucket{le="120.0",status="success"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"binderhub_build_time_seconds_bucket{le="60.0",status="success"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"binderhub_launch_time_seconds_bucket{le="5.0",status="success",retries="0"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("binderhub_inprogress_builds 1"), "{text}");
        m.executor_finished("layer", "success", Duration::from_millis(700));
        let text = m.encode();
        assert!(text.contains(r#"bindery_build_executor_seconds_bucket{le="1.0",executor="layer",status="success"} 1"#), "{text}");
        assert!(text.contains(r#"bindery_build_executor_seconds_bucket{le="0.5",executor="layer",status="success"} 0"#), "{text}");
        drop(guard);
        assert!(m.encode().contains("binderhub_inprogress_builds 0"));
    }
}
