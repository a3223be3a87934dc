//! Builds for real: the host fetches the repository with git2, the bundled
//! `layer-first` strategy plans, the `local` executor runs the real
//! repo2docker CLI against a real Docker engine, the `layer` executor appends
//! content with no engine, and everything lands in a real registry. The
//! engine, repo2docker and the base images come from `scripts/engine.sh`:
//! base images cannot be pulled here, so a Debian base is made with
//! debootstrap and a Jupyter single-user image is built on it.

use crate::support;

use std::time::{Duration, Instant};

use support::engine::{DOCKERFILE, TestRepo, build_config, engine, noise, run_in};
use support::faults::{CutProxy, SmallDisk};
use support::registry::OciRegistry;
use support::service::{Service, Stream, build_only, git_spec};

async fn build(s: &Service, repo: &TestRepo, reference: &str) -> Stream {
    build_only(&s.base, &repo.url, reference).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_build_then_a_content_only_commit_is_a_layer_that_runs() {
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let repo = TestRepo::new();
    let first = repo.commit(
        &[
            ("Dockerfile", DOCKERFILE),
            ("data/old.csv", b"a,b\n"),
            ("run.sh", b"#!/bin/sh\necho hi\n"),
        ],
        &[],
    );
    let s = Service::planned(build_config(data.path(), &registry).await).await;

    let full = build(&s, &repo, &first).await;
    assert_eq!(full.last()["phase"], "ready", "{}", full.raw);
    let log = full.messages();
    assert!(
        log.contains("Building with repo2docker (DockerBuildPack) on the local executor"),
        "{log}"
    );
    assert!(
        full.phases().contains(&"building"),
        "repo2docker's own JSON log lines are relayed: {}",
        full.raw
    );
    let image = full.last()["imageName"].as_str().unwrap().to_string();
    assert!(
        s.image_digest(&image).await.is_some(),
        "pushed to the registry"
    );
    assert!(
        s.state.metrics.encode().contains(
            r#"bindery_build_executor_seconds_count{executor="local",status="success"} 1"#
        )
    );

    // A content-only change: a notebook added, a directory removed. The
    // engine is not used at all: this service cannot even reach it.
    let second = repo.commit(
        &[(
            "analysis.ipynb",
            br#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#,
        )],
        &["data"],
    );
    let mut no_engine = build_config(data.path(), &registry).await;
    no_engine.build.local.docker_host = Some("unix:///nonexistent/docker.sock".into());
    drop(s);
    let s = Service::planned(no_engine).await;
    let layered = build(&s, &repo, &second).await;
    assert_eq!(layered.last()["phase"], "ready", "{}", layered.raw);
    assert!(
        layered.messages().contains("as a layer (no engine)"),
        "{}",
        layered.raw
    );
    let layer_image = layered.last()["imageName"].as_str().unwrap().to_string();
    assert!(
        s.state.metrics.encode().contains(
            r#"bindery_build_executor_seconds_count{executor="layer",status="success"} 1"#
        )
    );

    // The engine pulls it from the registry: the new content, owned by 1000, the old gone.
    let listing = run_in(
        &layer_image,
        "cd /home/jovyan && stat -c '%u:%g %a %n' . .. analysis.ipynb run.sh Dockerfile && ls -a",
    );
    assert!(
        listing.contains("1000:1000 755 .\n") && listing.contains("0:0 755 ..\n"),
        "the home directory keeps its owner: {listing}"
    );
    assert!(
        listing.contains("1000:1000 644 analysis.ipynb"),
        "{listing}"
    );
    assert!(listing.contains("1000:1000 755 run.sh"), "{listing}");
    assert!(
        !listing.contains("data"),
        "the removed directory is whited out: {listing}"
    );
    assert!(
        !listing.contains(".git\n"),
        "the old revision's git metadata is whited out: {listing}"
    );
    assert!(
        listing.contains(".bashrc"),
        "the environment image's home is kept: {listing}"
    );

    // And Jupyter starts in it and serves the repository's notebook.
    let port = support::free_port().to_string();
    let name = format!("bindery-layer-test-{port}");
    let started = engine().docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        &layer_image,
        "jupyter-server",
        "--ip=127.0.0.1",
        &format!("--port={port}"),
        "--IdentityProvider.token=t",
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let url = format!("http://127.0.0.1:{port}/api/contents/analysis.ipynb?token=t");
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status().is_success()
        {
            break r.text().await.unwrap();
        }
        if Instant::now() > deadline {
            let logs = engine().docker(&["logs", &name]);
            panic!(
                "Jupyter did not start in {layer_image}: {}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    engine().docker(&["rm", "-f", &name]);
    assert!(
        answer.contains("\"nbformat\": 4") || answer.contains("\"nbformat\":4"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_overlong_builds_fail_with_their_log_and_nothing_is_pushed() {
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let repo = TestRepo::new();
    let failing = repo.commit(
        &[(
            "Dockerfile",
            b"FROM bindery-test/jupyter:1\nRUN echo about to fail && false\n",
        )],
        &[],
    );
    let s = Service::planned(build_config(data.path(), &registry).await).await;
    let got = build(&s, &repo, &failing).await;
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    assert!(
        got.messages().contains("about to fail"),
        "the build's log reaches the user: {}",
        got.raw
    );
    let image = s.state.pipeline.registry.image_name(
        &bindery::registry::naming::safe_build_slug(&repo.url, 255 - 22 - 7, 6),
        &failing,
    );
    assert_eq!(s.image_digest(&image).await, None);

    let slow = repo.commit(
        &[(
            "Dockerfile",
            b"FROM bindery-test/jupyter:1\nRUN sleep 120\n",
        )],
        &[],
    );
    let mut c = build_config(data.path(), &registry).await;
    c.plugins
        .get_mut("layer-first")
        .unwrap()
        .config
        .insert("timeout_secs".into(), "5".into());
    drop(s);
    let s = Service::planned(c).await;
    let started = Instant::now();
    let got = build(&s, &repo, &slow).await;
    assert_eq!(
        got.last()["message"],
        "The build took longer than its limit of 5 s and was stopped.\n",
        "{}",
        got.raw
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_clear_failures() {
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let repo = TestRepo::new();
    let noise = noise(400_000, 0x2545_f491_4f6c_dd1d);
    // A revision that is not (any more) in the repository.
    let s = Service::planned(build_config(data.path(), &registry).await).await;
    let gone = "0123456789abcdef0123456789abcdef01234567";
    let got = build(&s, &repo, gone).await;
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    assert!(
        got.last()["message"]
            .as_str()
            .unwrap()
            .contains(&format!("The revision {gone} is not in {}", repo.url)),
        "{}",
        got.raw
    );

    let big = repo.commit(
        &[("requirements.txt", b"numpy\n"), ("noise.bin", &noise)],
        &[],
    );
    let mut c = build_config(data.path(), &registry).await;
    c.build.max_repo_bytes = 100_000;
    drop(s);
    let s = Service::planned(c).await;
    let got = build(&s, &repo, &big).await;
    assert_eq!(
        got.last()["message"],
        format!(
            "The repository {} is larger than this Bindery's limit of 0.1 MiB (build.max_repo_bytes).\n",
            repo.url
        ),
        "{}",
        got.raw
    );

    // A build directory that cannot be written (a file where the directory should be).
    let blocked = tempfile::NamedTempFile::new().unwrap();
    let mut c = build_config(data.path(), &registry).await;
    c.build.work_dir = Some(blocked.path().join("builds"));
    drop(s);
    let s = Service::planned(c).await;
    let ok = repo.commit(&[("requirements.txt", b"numpy\n")], &["noise.bin"]);
    let got = build(&s, &repo, &ok).await;
    assert!(
        got.last()["message"]
            .as_str()
            .unwrap()
            .starts_with("Cannot write the checkout in"),
        "{}",
        got.raw
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_dies_mid_push_or_is_full_leaves_nothing_half_pushed() {
    // The real registry stores on a small filesystem, and is reached through a proxy that can cut it off.
    let disk = SmallDisk::mount(2 << 30);
    let registry = OciRegistry::start_on(&disk.path().join("data"));
    let proxy = CutProxy::start(registry.port).await;
    let data = tempfile::tempdir().unwrap();
    let repo = TestRepo::new();
    let mut c = build_config(data.path(), &registry).await;
    c.registry.image_prefix = format!("127.0.0.1:{}/binder-", proxy.port);
    let direct = c.clone();
    c.registry.url = Some(format!("http://127.0.0.1:{}", proxy.port).parse().unwrap());
    let s = Service::planned(c).await;
    let environment = repo.commit(&[("Dockerfile", DOCKERFILE)], &[]);
    let got = build(&s, &repo, &environment).await;
    assert_eq!(got.last()["phase"], "ready", "{}", got.raw);

    // The registry dies as the layer's first blob upload starts.
    let content = repo.commit(&[("notes.md", b"# notes\n")], &[]);
    proxy.cut_at("/blobs/uploads/");
    let got = build(&s, &repo, &content).await;
    assert!(
        proxy.is_down(),
        "the push reached the registry before it died"
    );
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    let message = got.last()["message"].as_str().unwrap();
    assert!(
        message.starts_with("The layer build failed: ") && message.contains("cannot be reached"),
        "{message}"
    );
    proxy.restore();
    let image = s.state.pipeline.registry.image_name(
        &bindery::registry::naming::safe_build_slug(&repo.url, 255 - 22 - 7, 6),
        &content,
    );
    assert_eq!(
        s.image_digest(&image).await,
        None,
        "no manifest: nothing half-pushed is called built"
    );

    // The registry's disk fills up mid-push (no proxy: the registry answers for itself).
    drop(s);
    let s = Service::planned(direct).await;
    disk.resize(disk.used() + (64 << 10));
    let bigger = repo.commit(&[("data.bin", &noise(2 << 20, 3))], &[]);
    let got = build(&s, &repo, &bigger).await;
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    let message = got.last()["message"].as_str().unwrap();
    assert!(
        message.starts_with("The layer build failed: ")
            && message.contains("no space left on device"),
        "{message}"
    );
    let image = s.state.pipeline.registry.image_name(
        &bindery::registry::naming::safe_build_slug(&repo.url, 255 - 22 - 7, 6),
        &bigger,
    );
    assert_eq!(s.image_digest(&image).await, None);

    // Space again: the same commit builds, still as a layer: the environment image was not forgotten.
    disk.resize(2 << 30);
    let got = build(&s, &repo, &bigger).await;
    assert_eq!(got.last()["phase"], "ready", "{}", got.raw);
    assert!(
        got.messages().contains("as a layer (no engine)"),
        "{}",
        got.raw
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_build_directory_fails_clearly_and_is_left_empty() {
    let registry = OciRegistry::start(None);
    let (data, disk, repo) = (
        tempfile::tempdir().unwrap(),
        SmallDisk::mount(1 << 20),
        TestRepo::new(),
    );
    let sha = repo.commit(
        &[("Dockerfile", DOCKERFILE), ("data.bin", &noise(3 << 20, 5))],
        &[],
    );
    let mut c = build_config(data.path(), &registry).await;
    c.build.work_dir = Some(disk.path().to_path_buf());
    let s = Service::planned(c).await;
    let got = build(&s, &repo, &sha).await;
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    let message = got.last()["message"].as_str().unwrap();
    assert!(
        message.starts_with("Cannot write the checkout in")
            && message.contains("No space left on device"),
        "{message}"
    );
    // The half-written checkout goes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !disk.files().is_empty() {
        assert!(Instant::now() < deadline, "left behind: {:?}", disk.files());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bombs_are_refused_before_their_checkout() {
    let registry = OciRegistry::start(None);
    let (data, disk, repo) = (
        tempfile::tempdir().unwrap(),
        SmallDisk::mount(64 << 20),
        TestRepo::new(),
    );
    // The issue's figures: 300 MB of zeros, four 20 MB files under a 50 MiB
    // limit, and ten million files; each packs to a few kilobytes.
    let one_file = repo.zeros("one-file", 1, 300_000_000);
    let four_files = repo.zeros("four-files", 4, 20_000_000);
    let many_files = repo.tree_bomb("many-files", 6);
    let mut c = build_config(data.path(), &registry).await;
    c.build.work_dir = Some(disk.path().to_path_buf());
    c.build.max_repo_bytes = 50 << 20;
    let s = Service::planned(c).await;
    let url = &repo.url;
    for (sha, refusal) in [
        (
            &one_file,
            format!(
                "zeros-0.bin in {url} is larger than this Bindery's limit of 100.0 MiB for one file (build.max_file_bytes).\n"
            ),
        ),
        (
            &four_files,
            format!(
                "The repository {url} is larger than this Bindery's limit of 50.0 MiB (build.max_repo_bytes).\n"
            ),
        ),
        (
            &many_files,
            format!(
                "The repository {url} has more than 100000 files and directories, this Bindery's limit (build.max_repo_files).\n"
            ),
        ),
    ] {
        let got = build(&s, &repo, sha).await;
        assert_eq!(got.last()["message"], refusal.as_str(), "{}", got.raw);
        // Nothing of it stays in the build directory.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !disk.files().is_empty() {
            assert!(Instant::now() < deadline, "left behind: {:?}", disk.files());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_nobody_watches_is_stopped_when_the_config_says_so() {
    use std::os::unix::fs::PermissionsExt;
    let registry = OciRegistry::start(None);
    let (data, repo) = (tempfile::tempdir().unwrap(), TestRepo::new());
    let sha = repo.commit(&[("Dockerfile", DOCKERFILE)], &[]);
    // Stands in for repo2docker: tells its version as the real one does;
    // for a build, says it started, then takes its time.
    let (script, pids) = (data.path().join("repo2docker.sh"), data.path().join("pids"));
    let write_script = |body: &str| {
        std::fs::write(&script, format!("#!/bin/sh\n[ \"$1\" = --version ] && exec echo 2024.07.0\necho $$ >> '{}'\necho '{{\"phase\": \"building\", \"message\": \"Step 1/2\\n\"}}'\n{body}\n", pids.display())).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write_script("exec sleep 60");
    let mut c = build_config(data.path(), &registry).await;
    c.build.local.command = script.clone();
    c.build.cancel_abandoned_after_secs = Some(1);
    let s = Service::planned(c).await;
    let url = format!(
        "{}/build/git/{}?build_only=true",
        s.base,
        git_spec(&repo.url, &sha)
    );

    // The only client leaves once the build runs.
    let mut response = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("Step 1/2") {
        seen.push_str(&String::from_utf8_lossy(
            &response.chunk().await.unwrap().expect("the stream goes on"),
        ));
    }
    drop(response);
    let pid = std::fs::read_to_string(&pids).unwrap().trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let alive = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    };
    while alive(&pid) || s.state.pipeline.flights.in_flight() > 0 {
        assert!(Instant::now() < deadline, "the abandoned build still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A build someone watches runs to its end, however long past the setting.
    write_script(
        "sleep 3\necho '{\"phase\": \"failed\", \"message\": \"the real outcome\\n\"}'\nexit 1",
    );
    let got = build(&s, &repo, &sha).await;
    assert!(got.messages().contains("the real outcome"), "{}", got.raw);
    assert!(!got.messages().contains("Nobody watched"), "{}", got.raw);
}
