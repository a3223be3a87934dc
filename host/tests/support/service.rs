//! Bindery's HTTP service on a loopback port, with a build executor and a
//! launcher for tests. The executor really pushes the image it "builds" to
//! the real test registry; the launcher stands in for JupyterHub, whose
//! launcher is its own piece of work and has its own tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bindery::api::{AppState, router};
use bindery::app::{App, Builds, Tasks};
use bindery::build::{
    BuildExecutor, BuildFailure, BuildLogSender, BuildRequest, BuilderInfo, Built,
};
use bindery::cache::BuildRecord;
use bindery::config::Config;
use bindery::events::Event;
use bindery::launch::{
    LaunchError, LaunchRequest, Launched, Launcher, LauncherHealth, ServerCount,
};
use bindery_runtime::PluginHost;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use super::registry::OciRegistry;

/// The embedded defaults with only the git provider, allowed to reach loopback,
/// and the registry at `registry`.
pub fn config(data: &std::path::Path, registry: Option<&OciRegistry>) -> Config {
    let mut config = Config::load(None).unwrap();
    config.data_dir = data.to_path_buf();
    config.plugin_runtime.compile_cache_dir = Some(super::test_target_dir().join("compile-cache"));
    for (name, plugin) in &mut config.plugins {
        plugin.enabled = name == "git";
    }
    config.plugins.get_mut("git").unwrap().private_networks = vec!["127.0.0.0/8".parse().unwrap()];
    if let Some(r) = registry {
        config.registry.url = Some(r.url().parse().unwrap());
        config.registry.image_prefix = format!("{}/binder-", r.host());
        config.registry.timeout_ms = 2_000;
        config.registry.retries = 1;
    }
    config
}

/// `bindery serve` as a process (the binary under test), with `config`
/// written to `dir/bindery.toml` and its log in `dir/bindery.log`.
/// SIGKILLed on drop.
pub struct Process(pub std::process::Child);

impl Process {
    /// Starts it and waits until it listens.
    pub async fn start(config: &Config, dir: &std::path::Path) -> Process {
        Process::start_under(&[], config, dir).await
    }

    /// The same, run by `wrapper` (a command and its arguments, then
    /// Bindery's binary and its own arguments), e.g. in another namespace.
    pub async fn start_under(wrapper: &[&str], config: &Config, dir: &std::path::Path) -> Process {
        Process::spawn_under(wrapper, config, dir)
            .listening(config, dir)
            .await
    }

    async fn listening(self, config: &Config, dir: &std::path::Path) -> Process {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::net::TcpStream::connect(config.listen).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "bindery serve did not start: {}",
                std::fs::read_to_string(dir.join("bindery.log")).unwrap_or_default()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self
    }

    /// Starts it under `wrapper` without waiting: for a process this one
    /// cannot reach, e.g. in a network namespace of its own.
    pub fn spawn_under(wrapper: &[&str], config: &Config, dir: &std::path::Path) -> Process {
        Process::spawn_logging("warn,bindery::app=info", "pretty", wrapper, config, dir)
    }

    /// Starts it logging as `filter` (`BINDERY_LOG`) says and waits until it listens.
    pub async fn start_logging(filter: &str, config: &Config, dir: &std::path::Path) -> Process {
        Process::spawn_logging(filter, "pretty", &[], config, dir)
            .listening(config, dir)
            .await
    }

    /// [`Process::start_logging`] with `--log-format json`.
    pub async fn start_logging_json(
        filter: &str,
        config: &Config,
        dir: &std::path::Path,
    ) -> Process {
        Process::spawn_logging(filter, "json", &[], config, dir)
            .listening(config, dir)
            .await
    }

    fn spawn_logging(
        filter: &str,
        format: &str,
        wrapper: &[&str],
        config: &Config,
        dir: &std::path::Path,
    ) -> Process {
        let path = dir.join("bindery.toml");
        std::fs::write(&path, toml::to_string(config).unwrap()).unwrap();
        let bin = env!("CARGO_BIN_EXE_bindery");
        let (program, args) = wrapper
            .split_first()
            .map_or((bin, &[][..]), |(p, a)| (*p, a));
        let child = std::process::Command::new(program)
            .args(args)
            .args(if wrapper.is_empty() { None } else { Some(bin) })
            .args(["--log-format", format, "serve", "--config"])
            .arg(&path)
            // By default the composition root says at info which background tasks ended.
            .env("BINDERY_LOG", filter)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("bindery.log")).unwrap())
            .spawn()
            .unwrap();
        Process(child)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `/metrics` text of the Bindery at `base`.
pub async fn metrics_at(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A running service.
pub struct Service {
    pub base: String,
    pub state: AppState,
    server: tokio::task::JoinHandle<()>,
    _tasks: Tasks,
}

impl Service {
    pub async fn start(
        config: Config,
        executor: Option<Arc<dyn BuildExecutor>>,
        launcher: Option<Arc<dyn Launcher>>,
    ) -> Service {
        Service::start_with(config, executor.map_or(Builds::Off, Builds::With), launcher).await
    }

    /// A service that builds as its `[build]` says (the host's own builder),
    /// with no launcher.
    pub async fn planned(config: Config) -> Service {
        Service::start_with(config, Builds::Planned, None).await
    }

    pub async fn start_with(
        config: Config,
        builds: Builds,
        launcher: Option<Arc<dyn Launcher>>,
    ) -> Service {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Service::start_on(listener, config, builds, launcher).await
    }

    pub async fn start_on(
        listener: tokio::net::TcpListener,
        config: Config,
        builds: Builds,
        launcher: Option<Arc<dyn Launcher>>,
    ) -> Service {
        let plugins = PluginHost::start(&config)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let App { state, tasks, .. } = App::with(config, plugins, builds, launcher).unwrap();
        let port = listener.local_addr().unwrap().port();
        let edge = bindery::edge::Edge::new(&state.config.web);
        let server =
            tokio::spawn(edge.serve(listener, router(state.clone()), std::future::pending()));
        Service {
            base: format!("http://127.0.0.1:{port}"),
            state,
            server,
            _tasks: tasks,
        }
    }
}

impl Service {
    /// `/health`'s JSON body.
    pub async fn health(&self) -> Value {
        let health = reqwest::get(format!("{}/health", self.base)).await.unwrap();
        health.json().await.unwrap()
    }

    /// `/metrics`' text.
    pub async fn metrics(&self) -> String {
        metrics_at(&self.base).await
    }

    /// The digest of `image` in the registry the service pushes to, if it is there.
    pub async fn image_digest(&self, image: &str) -> Option<String> {
        self.state.pipeline.registry.lookup(image).await.unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One `/build` exchange read to its end.
pub struct Stream {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub raw: String,
    pub events: Vec<Value>,
}

impl Stream {
    pub fn last(&self) -> &Value {
        self.events.last().expect("at least one event")
    }

    pub fn phases(&self) -> Vec<&str> {
        // repo2docker's own lines may have no phase.
        self.events
            .iter()
            .map(|e| e["phase"].as_str().unwrap_or_default())
            .collect()
    }

    /// Every event's message, in order, as one text.
    pub fn messages(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| e["message"].as_str())
            .collect()
    }
}

/// The build token the `/v2/git/<spec>` page of the service at `base` carries.
pub async fn page_build_token(base: &str, spec: &str) -> String {
    let page = reqwest::get(format!("{base}/v2/git/{spec}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.split("\"buildToken\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no build token in the page: {page}"))
        .to_string()
}

/// Builds `reference` of the repository at `repo_url` through `/build` with
/// `build_only=true` (no launch), reading the stream to its end.
pub async fn build_only(base: &str, repo_url: &str, reference: &str) -> Stream {
    sse(&format!(
        "{base}/build/git/{}?build_only=true",
        git_spec(repo_url, reference)
    ))
    .await
}

/// The time `/build/<path>?build_only=true` takes to `ready` (benchmarks).
pub async fn time_to_ready(s: &Service, path: &str) -> std::time::Duration {
    let started = std::time::Instant::now();
    let got = sse(&format!("{}/build/{path}?build_only=true", s.base)).await;
    assert_eq!(got.last()["phase"], "ready", "{}", got.raw);
    started.elapsed()
}

/// A benchmark's rounds: `BENCH_N` when it is set to a number, else `default`.
pub fn bench_n(default: usize) -> usize {
    std::env::var("BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// The median of `v` (benchmarks).
pub fn median<T: Ord + Copy>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

/// GETs `url` as an EventSource would and reads the stream to its end.
pub async fn sse(url: &str) -> Stream {
    sse_with(url, &[("accept", "text/event-stream")]).await
}

pub async fn sse_with(url: &str, headers: &[(&str, &str)]) -> Stream {
    OpenStream::open(url, headers).await.end().await
}

/// An event stream, read as it arrives.
pub struct OpenStream {
    url: String,
    response: reqwest::Response,
    /// What has arrived so far.
    bytes: Vec<u8>,
}

impl OpenStream {
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> OpenStream {
        // Longer than the slowest real build a test streams; a stream that never
        // ends fails its test instead of the whole run's time budget.
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(480))
            .build()
            .unwrap();
        let mut request = client.get(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        OpenStream {
            url: url.into(),
            response: request.send().await.expect("the service answers"),
            bytes: Vec::new(),
        }
    }

    /// Reads until what arrived contains `needle`, failing the test after
    /// `timeout` or when the stream ends first, with what it said.
    pub async fn until(&mut self, needle: &str, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let raw = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        while !raw(&self.bytes).contains(needle) {
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in {timeout:?}: {}", raw(&self.bytes)));
            match chunk {
                Ok(Some(chunk)) => self.bytes.extend_from_slice(&chunk),
                _ => panic!("the stream ended before {needle:?}: {}", raw(&self.bytes)),
            }
        }
    }

    /// Reads what arrives for `wait` (less if the stream ends); all that arrived so far.
    pub async fn read_for(&mut self, wait: std::time::Duration) -> String {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Ok(Some(chunk))) =
            tokio::time::timeout_at(deadline, self.response.chunk()).await
        {
            self.bytes.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Everything that arrived, if the stream ended cleanly.
    pub async fn rest(mut self) -> Option<String> {
        let rest = self.response.bytes().await.ok()?;
        self.bytes.extend_from_slice(&rest);
        Some(String::from_utf8_lossy(&self.bytes).into_owned())
    }

    /// Reads the stream to its end.
    pub async fn end(self) -> Stream {
        let status = self.response.status().as_u16();
        let headers = self.response.headers().clone();
        let url = self.url.clone();
        let raw = self
            .rest()
            .await
            .unwrap_or_else(|| panic!("the stream from {url} did not end"));
        let events = raw
            .split("\n\n")
            .filter_map(|frame| frame.strip_prefix("data: "))
            .map(|json| serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}")))
            .collect();
        Stream {
            status,
            headers,
            raw,
            events,
        }
    }
}

/// `git` specs are the escaped URL, then the ref.
pub fn git_spec(url: &str, git_ref: &str) -> String {
    format!("{}/{git_ref}", url.replace(':', "%3A").replace('/', "%2F"))
}

/// The builder image [`TestBuilder`] names in `/versions`.
pub const TEST_BUILDER_IMAGE: &str = "registry.test/repo2docker:test";

/// A build executor for tests: logs `lines` lines (repo2docker-style JSON and
/// plain text), waits for `gate` when given, then pushes the image to the real
/// registry. With `runnable_early`, it says the image can be run as its push
/// starts, then waits for `push_gate` when given, and fails the push when
/// `push_fails`. Counts the builds it starts.
pub struct TestBuilder {
    pub registry_host: String,
    pub registry: Option<(String, String)>,
    pub lines: usize,
    pub gate: Option<Arc<Semaphore>>,
    pub fail: bool,
    pub builds: AtomicUsize,
    pub can_reattach: bool,
    pub runnable_early: bool,
    pub push_gate: Option<Arc<Semaphore>>,
    pub push_fails: bool,
    /// After its lines, one in bold green, as repo2docker colours its output.
    pub coloured: bool,
}

impl TestBuilder {
    pub fn new(registry: &OciRegistry, lines: usize) -> TestBuilder {
        TestBuilder {
            registry_host: registry.host(),
            registry: registry.credentials.clone(),
            lines,
            gate: None,
            fail: false,
            builds: AtomicUsize::new(0),
            can_reattach: false,
            runnable_early: false,
            push_gate: None,
            push_fails: false,
            coloured: false,
        }
    }

    pub fn count(&self) -> usize {
        self.builds.load(Ordering::SeqCst)
    }

    async fn run(&self, image: &str, log: BuildLogSender) -> Result<Built, BuildFailure> {
        for i in 0..self.lines {
            let event = if i % 2 == 0 {
                Event::log_line(
                    &json!({ "phase": "building", "message": format!("Step {i}\n") }).to_string(),
                )
            } else {
                Event::log_line(&format!("plain line {i}"))
            };
            if log.send(event).await.is_err() {
                break;
            }
        }
        if self.coloured {
            let _ = log
                .send(Event::log_line("\u{1b}[1;32mcoloured line\u{1b}[0m"))
                .await;
        }
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        if self.fail {
            let _ = log
                .send(Event::log_line(
                    r#"{"phase": "failed", "message": "Step 3 failed\n"}"#,
                ))
                .await;
            return Err(BuildFailure {
                message: String::new(),
            });
        }
        let _ = log
            .send(Event::log_line(
                r#"{"phase": "pushing", "message": "Pushing image\n"}"#,
            ))
            .await;
        if self.runnable_early {
            log.runnable().await;
        }
        if let Some(gate) = &self.push_gate {
            gate.acquire().await.unwrap().forget();
        }
        if self.push_fails {
            return Err(BuildFailure::new("The push failed: the registry went away"));
        }
        let (repository, tag) = image.split_once('/').unwrap().1.split_once(':').unwrap();
        let pusher = OciRegistry::client_for(&self.registry_host, self.registry.clone());
        let digest = pusher.push(repository, tag).await;
        Ok(Built {
            digest: Some(digest),
        })
    }
}

impl BuildExecutor for TestBuilder {
    fn name(&self) -> &'static str {
        "test"
    }

    fn builder_info(&self) -> BoxFuture<'_, BuilderInfo> {
        Box::pin(async { BuilderInfo::Image(TEST_BUILDER_IMAGE.into()) })
    }

    fn build<'a>(
        &'a self,
        request: &'a BuildRequest,
        log: BuildLogSender,
    ) -> BoxFuture<'a, Result<Built, BuildFailure>> {
        self.builds.fetch_add(1, Ordering::SeqCst);
        Box::pin(self.run(&request.image, log))
    }

    fn handle(&self, request: &BuildRequest) -> Option<String> {
        Some(request.build_name.clone())
    }

    fn reattach<'a>(
        &'a self,
        record: &'a BuildRecord,
        log: BuildLogSender,
    ) -> Option<BoxFuture<'a, Result<Built, BuildFailure>>> {
        self.can_reattach
            .then(|| Box::pin(self.run(&record.image, log)) as BoxFuture<'a, _>)
    }
}

/// Stands in for JupyterHub: reports progress like the hub and answers with
/// a server URL under `hub`.
pub struct TestLauncher {
    pub hub: String,
    pub launches: AtomicUsize,
    pub last: std::sync::Mutex<Option<LaunchRequest>>,
    /// Refuse every launch with this.
    pub refuse: Option<LaunchError>,
    /// The users of the servers discarded.
    pub discarded: std::sync::Mutex<Vec<String>>,
}

impl TestLauncher {
    pub fn new(hub: &str) -> TestLauncher {
        TestLauncher {
            hub: hub.into(),
            launches: AtomicUsize::new(0),
            last: Default::default(),
            refuse: None,
            discarded: Default::default(),
        }
    }
}

impl Launcher for TestLauncher {
    fn admit<'a>(&'a self, _: &'a LaunchRequest) -> BoxFuture<'a, Result<(), LaunchError>> {
        Box::pin(async { self.refuse.clone().map_or(Ok(()), Err) })
    }

    fn launch<'a>(
        &'a self,
        request: &'a LaunchRequest,
        progress: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<Launched, LaunchError>> {
        Box::pin(async move {
            let n = self.launches.fetch_add(1, Ordering::SeqCst);
            *self.last.lock().unwrap() = Some(request.clone());
            progress.send("Server requested".into()).await.unwrap();
            progress
                .send(format!("Server ready at /user/test-{n}/"))
                .await
                .unwrap();
            Ok(Launched {
                url: format!("{}/user/test-{n}/", self.hub),
                token: format!("token-{n}"),
                user: format!("test-{n}"),
                server: String::new(),
                temporary: true,
            })
        })
    }

    fn discard(&self, launched: &Launched) {
        self.discarded.lock().unwrap().push(launched.user.clone());
    }

    fn health(&self) -> BoxFuture<'_, LauncherHealth> {
        let launched = (self.launches.load(Ordering::SeqCst))
            .saturating_sub(self.discarded.lock().unwrap().len());
        Box::pin(async move {
            LauncherHealth {
                hub: Ok(()),
                servers: Ok(ServerCount {
                    user_pods: launched,
                    build_pods: None,
                }),
                quota: None,
            }
        })
    }
}
