//! Resolution figures: a spec answered from the sled ref cache, and one that
//! goes to the provider plugin and the (loopback) GitHub-shaped test server,
//! beside a bare HTTP GET of the same URL as the same-run baseline. Then a
//! branch under load: 32 clients at once, revalidated every
//! `moving_ref_revalidate_ms` (the default) against every click. Prints
//! p50/p99, heap allocations per resolve and throughput; asserts nothing.
//! Run with `cargo bench -p bindery --bench resolve`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bindery::app::App;
use bindery::config::Config;
use bindery_runtime::PluginHost;
use support::forges::{Forges, SHA};

/// Counts every allocation in the process (the test server's too).
struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, which
// upholds GlobalAlloc's contract; counting touches no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A service with `gh` pointed at `forges`, and `revalidate_ms` for moving refs.
async fn start_app(forges: &Forges, data: &std::path::Path, revalidate_ms: Option<u64>) -> App {
    let mut config = Config::load(None).unwrap();
    config.data_dir = data.to_path_buf();
    config.plugin_runtime.compile_cache_dir =
        Some(support::test_target_dir().join("compile-cache"));
    if let Some(ms) = revalidate_ms {
        config.cache.moving_ref_revalidate_ms = ms;
    }
    let gh = config.plugins.get_mut("gh").unwrap();
    gh.hosts = vec!["127.0.0.1".into()];
    gh.private_networks = vec!["127.0.0.0/8".parse().unwrap()];
    gh.config.insert(
        "api_base_url".into(),
        toml::Value::String(format!("{}/github", forges.base)),
    );
    let plugins = PluginHost::start(&config).await.unwrap();
    App::new(config, plugins).unwrap()
}

/// 32 clients resolving one branch for `secs`: resolves per second, and
/// upstream requests per second.
async fn under_load(app: &App, forges: &Forges, secs: u64) -> (f64, f64) {
    let resolver = app.state.resolver.clone();
    let before = forges.total();
    let resolves = std::sync::Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (resolver, resolves) = (resolver.clone(), resolves.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    resolver
                        .resolve("gh", "binder-examples/requirements/main")
                        .await
                        .unwrap();
                    resolves.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let per_sec = |n: u64| n as f64 / secs as f64;
    (
        per_sec(resolves.load(Ordering::Relaxed)),
        per_sec((forges.total() - before) as u64),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Prints one line and returns the p50.
fn summary(label: &str, mut samples: Vec<Duration>, allocations: u64) -> Duration {
    samples.sort();
    let n = samples.len();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "{label:<46} n={n:<5} p50 {:>9.1} µs   p99 {:>9.1} µs   {:>7.0} allocations/op",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        allocations as f64 / n as f64
    );
    p50
}

async fn timed<F: AsyncFnMut(usize)>(n: usize, mut f: F) -> (Vec<Duration>, u64) {
    let mut samples = Vec::with_capacity(n);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..n {
        let t = Instant::now();
        f(i).await;
        samples.push(t.elapsed());
    }
    (samples, ALLOCATIONS.load(Ordering::Relaxed) - before)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = support::service::bench_n(2000);
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let app = start_app(&forges, data.path(), None).await;
    let state = &app.state;
    let resolver = &state.resolver;

    // Warm up the connection pool, the plugin instance path and the server.
    for _ in 0..50 {
        resolver
            .resolve("gh", "binder-examples/requirements/main/")
            .await
            .unwrap();
    }
    let client = reqwest::Client::new();
    let url = format!(
        "{}/github/repos/binder-examples/requirements/commits/{SHA}",
        forges.base
    );
    let (s, a) = timed(n, async |_| {
        client
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    })
    .await;
    let baseline = summary("baseline: bare HTTP GET of the commit URL", s, a);

    // Distinct specs: every resolve misses the cache and calls the plugin.
    let specs: Vec<String> = (0..n)
        .map(|i| format!("binder-examples/requirements-{i}/{SHA}"))
        .collect();
    let (s, a) = timed(n, async |i| {
        resolver.resolve("gh", &specs[i]).await.unwrap();
    })
    .await;
    let uncached = summary("resolve, uncached (plugin + HTTP + cache write)", s, a);

    // The same specs again: immutable, so every resolve is a cache hit.
    let requests_before = forges.total();
    let (s, a) = timed(n, async |i| {
        resolver.resolve("gh", &specs[i]).await.unwrap();
    })
    .await;
    let cached = summary("resolve, cached (sled hit)", s, a);

    println!(
        "{:<46} {:.2}x the bare GET",
        "  uncached resolve",
        uncached.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "{:<46} {:.0}x faster than uncached",
        "  cached resolve",
        uncached.as_secs_f64() / cached.as_secs_f64()
    );
    println!(
        "{:<46} {}",
        "  upstream requests made by the cached pass",
        forges.total() - requests_before
    );

    // A branch: each resolve after the window asks again, conditionally
    // (the test server answers 304 to its ETag), as a click after a push does.
    let every_click_data = tempfile::tempdir().unwrap();
    let every_click = start_app(&forges, every_click_data.path(), Some(0)).await;
    let branch = "binder-examples/requirements/main";
    every_click
        .state
        .resolver
        .resolve("gh", branch)
        .await
        .unwrap();
    let (s, a) = timed(n, async |_| {
        every_click
            .state
            .resolver
            .resolve("gh", branch)
            .await
            .unwrap();
    })
    .await;
    let revalidated = summary("resolve a branch, revalidated (ETag, 304)", s, a);
    println!(
        "{:<46} {:.2}x the bare GET",
        "  revalidated resolve",
        revalidated.as_secs_f64() / baseline.as_secs_f64()
    );
    let secs = 5;
    let (rate, upstream) = under_load(&app, &forges, secs).await;
    println!(
        "{:<46} {rate:>9.0} resolves/s   {upstream:>6.1} upstream requests/s",
        "32 clients, one branch, revalidated each 1 s"
    );
    let (every_rate, every_upstream) = under_load(&every_click, &forges, secs).await;
    println!(
        "{:<46} {every_rate:>9.0} resolves/s   {every_upstream:>6.1} upstream requests/s",
        "32 clients, one branch, revalidated each click"
    );
    println!(
        "{:<46} {:.1}x the throughput of revalidating each click",
        "  1 s window",
        rate / every_rate
    );
}
