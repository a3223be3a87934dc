//! Faults of the parts around Bindery, each real: the hub dies while a server
//! starts, the Docker engine is SIGKILLed mid-build, the data directory's
//! disk fills, the sled cache is corrupted on disk. Each ends the user's
//! stream with a clear `failed` event (or, for the cache, a start with an
//! empty cache and a log line saying so), and loses nothing precious: a
//! retry once the fault is gone succeeds. Bindery itself SIGKILLed mid-build
//! and started again follows the repo2docker it left running: the build is
//! finished and reported, never run twice. (A registry that dies mid-push is
//! in builds.rs; the same for build pods in kubernetes.rs.)

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::engine::{DOCKERFILE, TestRepo, build_config, engine};
use support::faults::SmallDisk;
use support::hub::{JupyterHub, built_repo, launch_config, launch_service};
use support::registry::OciRegistry;
use support::service::{OpenStream, Process, Service, Stream, git_spec, sse};

/// The engine is killed in one test and the hub runs on it in another.
static ENGINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn launch(s: &Service, repo: &TestRepo, reference: &str, query: &str) -> Stream {
    sse(&format!(
        "{}/build/git/{}{query}",
        s.base,
        git_spec(&repo.url, reference)
    ))
    .await
}

async fn until(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_dies_while_a_server_starts_fails_the_launch_clearly() {
    let _engine = ENGINE.lock().await;
    let registry = OciRegistry::start(None);
    let mut hub = JupyterHub::start().await;
    let (repo, sha, image) = built_repo(&registry);
    let data = tempfile::tempdir().unwrap();
    let mut c = launch_config(data.path(), &registry, &hub.url, &hub.token);
    c.hub.request_timeout_secs = 5;
    c.hub.launch_timeout_secs = 30;
    let s = launch_service(c).await;
    let launching = tokio::spawn({
        let base = s.base.clone();
        let url = format!("{base}/build/git/{}", git_spec(&repo.url, &sha));
        async move { sse(&url).await }
    });
    // Once the hub has a server starting, it dies.
    until("a server to start", Duration::from_secs(60), async || {
        hub.users()
            .await
            .iter()
            .any(|u| u["servers"].as_object().is_some_and(|s| !s.is_empty()))
    })
    .await;
    hub.kill();
    let got = launching.await.unwrap();
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    let m = got.last()["message"].as_str().unwrap();
    assert!(
        m.contains("JupyterHub") || m.contains("hub"),
        "the failure names the hub: {m}"
    );
    assert!(got.phases().contains(&"launching"), "{}", got.raw);
    // The image is still there, and the next launch finds it and is refused
    // only for the hub.
    assert!(s.image_digest(&image).await.is_some());
    let again = launch(&s, &repo, &sha, "").await;
    assert_eq!(
        again
            .events
            .iter()
            .find(|e| e["phase"] == "built")
            .map(|e| e["message"].clone()),
        Some("Found built image, launching...\n".into()),
        "{}",
        again.raw
    );
    assert_eq!(again.last()["phase"], "failed", "{}", again.raw);
}

/// A Dockerfile with a `RUN` step of `secs` that no earlier build cached.
fn slow_dockerfile(repo: &TestRepo, secs: u32) -> Vec<u8> {
    format!("FROM bindery-test/jupyter:1\nRUN echo '{}' && sleep {secs}\nCOPY --chown=1000:1000 . /home/jovyan/\n", repo.url).into_bytes()
}

/// Reads `stream` until its build's `RUN` step (of [`slow_dockerfile`]) is
/// running, as the engine's own log says.
async fn until_run_step(stream: &mut OpenStream) {
    let timeout = Duration::from_secs(120);
    stream.until("&& sleep", timeout).await;
    stream.until("Running in", timeout).await;
}

/// Starts the engine again (scripts/engine.sh starts it when it does not answer).
fn restart_engine() {
    support::run_script("engine.sh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_killed_mid_build_fails_the_build_and_a_retry_builds() {
    let _engine = ENGINE.lock().await;
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let repo = TestRepo::new();
    let sha = repo.commit(&[("Dockerfile", &slow_dockerfile(&repo, 10))], &[]);
    let s = Service::planned(build_config(data.path(), &registry).await).await;
    let url = format!(
        "{}/build/git/{}?build_only=true",
        s.base,
        git_spec(&repo.url, &sha)
    );
    let mut building = OpenStream::open(&url, &[("accept", "text/event-stream")]).await;
    // The `RUN sleep` step's container is up: the engine is SIGKILLed.
    until_run_step(&mut building).await;
    let e = engine();
    let pid_file = std::path::Path::new(e.docker_host.trim_start_matches("unix://"))
        .with_file_name("docker.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    support::signal(pid, libc::SIGKILL);
    let got = building.end().await;
    restart_engine();
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    let m = got.last()["message"].as_str().unwrap();
    // repo2docker's own words, relayed as upstream relays them.
    assert!(
        m.starts_with("Error during build: ") && m.contains("Connection broken"),
        "the failure says what failed: {m}\n{}",
        got.raw
    );
    let slug =
        bindery::registry::naming::safe_build_slug(&repo.url, 255 - registry.host().len() - 7, 6);
    let image = format!("{}/binder-{slug}:{sha}", registry.host());
    assert!(
        s.image_digest(&image).await.is_none(),
        "nothing half-built is in the registry"
    );
    // With the engine back, the same link builds.
    let again = launch(&s, &repo, &sha, "?build_only=true").await;
    assert_eq!(again.last()["phase"], "ready", "{}", again.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_disk_fails_builds_clearly_and_keeps_the_cache() {
    let _engine = ENGINE.lock().await;
    let registry = OciRegistry::start(None);
    let disk = SmallDisk::mount(64 << 20);
    let repo = TestRepo::new();
    let first = repo.commit(&[("Dockerfile", DOCKERFILE)], &[]);
    let c = build_config(disk.path(), &registry).await;
    let s = Service::planned(c.clone()).await;
    let built = launch(&s, &repo, &first, "?build_only=true").await;
    assert_eq!(built.last()["phase"], "ready", "{}", built.raw);

    // The disk fills up (something else on the machine wrote to it).
    let mut filler = std::fs::File::create(disk.path().join("filler")).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while filler.write_all(&chunk).is_ok() {}
    drop(filler);
    let second = repo.commit(&[("notes.md", &support::engine::noise(256 << 10, 3))], &[]);
    let got = launch(&s, &repo, &second, "?build_only=true").await;
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    let m = got.last()["message"].as_str().unwrap();
    assert!(
        m.contains("No space left on device"),
        "the failure says the disk is full: {m}"
    );
    // What was built before is still launched while the disk is full.
    let cached = launch(&s, &repo, &first, "?build_only=true").await;
    assert_eq!(cached.last()["phase"], "ready", "{}", cached.raw);

    // Space again, and a restart: the cache kept the first build, and the
    // second revision builds (a layer on the first).
    std::fs::remove_file(disk.path().join("filler")).unwrap();
    drop(s);
    let s = Service::planned(c).await;
    let cached = launch(&s, &repo, &first, "?build_only=true").await;
    assert!(
        cached.events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("Found built image"))),
        "{}",
        cached.raw
    );
    let got = launch(&s, &repo, &second, "?build_only=true").await;
    assert_eq!(got.last()["phase"], "ready", "{}", got.raw);
    assert!(got.raw.contains("as a layer (no engine)"), "{}", got.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_cache_is_moved_aside_and_bindery_starts_empty_and_says_so() {
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let repo = TestRepo::new();
    repo.commit(&[("README.md", b"hello\n")], &[]);
    let mut c = support::service::config(data.path(), Some(&registry));
    c.listen = support::free_addr();
    c.web.rate_limit.limit = 0;
    c.web.api_only = true;
    // sled's files, overwritten with garbage (a disk error, a bad restore).
    let cache = data.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let garbage = support::engine::noise(64 << 10, 7);
    std::fs::write(cache.join("conf"), &garbage[..512]).unwrap();
    std::fs::write(cache.join("db"), &garbage).unwrap();

    let _bindery = Process::start(&c, data.path()).await;
    let base = format!("http://{}", c.listen);
    let log = std::fs::read_to_string(data.path().join("bindery.log")).unwrap();
    assert!(
        log.contains("cannot open the cache") && log.contains("starting empty"),
        "the log says so: {log}"
    );
    let aside: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("cache.corrupt-")
        })
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the corrupt cache is kept aside for a post-mortem"
    );
    assert_eq!(
        std::fs::read(aside[0].path().join("db")).unwrap(),
        garbage,
        "kept as it was"
    );
    // It resolves and answers as usual (no executor: the stream says so).
    let got = sse(&format!("{base}/build/git/{}", git_spec(&repo.url, "main"))).await;
    assert!(
        got.events.iter().any(|e| e["phase"] == "failed"
            && e["message"].as_str().is_some_and(|m| m.contains("build")))
            || got.last()["phase"] == "ready",
        "{}",
        got.raw
    );
    assert!(!got.raw.contains("Error resolving"), "{}", got.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindery_sigkilled_mid_build_follows_the_build_it_left_and_builds_once() {
    let _engine = ENGINE.lock().await;
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let repo = TestRepo::new();
    let sha = repo.commit(&[("Dockerfile", &slow_dockerfile(&repo, 8))], &[]);
    let mut c = build_config(data.path(), &registry).await;
    c.listen = support::free_addr();
    // repo2docker behind a wrapper that counts its builds (not the
    // `--version` each start asks for `/versions`).
    let starts = data.path().join("starts");
    let wrapper = data.path().join("repo2docker.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = --version ] || echo started >> {}\nexec {} \"$@\"\n",
            starts.display(),
            c.build.local.command.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    c.build.local.command = wrapper;
    let base = format!("http://{}", c.listen);
    let url = format!(
        "{base}/build/git/{}?build_only=true",
        git_spec(&repo.url, &sha)
    );

    let first = Process::start(&c, data.path()).await;
    // A watcher whose stream is cut by the kill.
    let mut watching = OpenStream::open(&url, &[("accept", "text/event-stream")]).await;
    until_run_step(&mut watching).await;
    drop(first); // SIGKILL
    let cut = watching.rest().await;
    assert!(
        cut.is_none_or(|text| !text.contains("\"phase\":\"ready\"")),
        "the stream was cut"
    );

    let second = Process::start(&c, data.path()).await;
    let got = sse(&url).await;
    let builds = data.path().join("builds");
    until(
        "the build directory to be cleaned up",
        Duration::from_secs(10),
        async || !builds.read_dir().unwrap().any(|_| true),
    )
    .await;
    // The image it followed is remembered as the environment: a content-only
    // commit is a layer on it.
    let content = repo.commit(&[("notes.md", b"more\n")], &[]);
    let layered = sse(&format!(
        "{base}/build/git/{}?build_only=true",
        git_spec(&repo.url, &content)
    ))
    .await;
    drop(second);
    assert!(
        layered.raw.contains("as a layer (no engine)") && layered.last()["phase"] == "ready",
        "{}",
        layered.raw
    );
    assert_eq!(got.last()["phase"], "ready", "{}", got.raw);
    assert!(
        got.raw
            .contains("Bindery restarted during this build; following repo2docker"),
        "{}",
        got.raw
    );
    assert!(
        got.raw.contains("Successfully pushed"),
        "the rest of the log is relayed: {}",
        got.raw
    );
    assert_eq!(
        std::fs::read_to_string(&starts).unwrap().lines().count(),
        1,
        "repo2docker ran once"
    );
    let slug =
        bindery::registry::naming::safe_build_slug(&repo.url, 255 - registry.host().len() - 7, 6);
    assert!(
        got.raw
            .contains(&format!("{}/binder-{slug}:{sha}", registry.host())),
        "{}",
        got.raw
    );
}
