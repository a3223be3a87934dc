//! Bindery's container image (`Dockerfile`), built on the real local engine
//! (`support/image.rs`) and run as the chart runs it: non-root, read-only
//! root filesystem, a writable data directory.

use crate::support;

use std::time::{Duration, Instant};

use support::engine::engine;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_bindery_as_a_non_root_user_and_answers_health() {
    let tag = format!("bindery-test/bindery:{}", std::process::id());
    support::image::build(std::path::Path::new(env!("CARGO_BIN_EXE_bindery")), &tag);
    let e = engine();

    let version = e.docker(&["run", "--rm", &tag, "--version"]);
    assert!(
        version.status.success(),
        "{}",
        String::from_utf8_lossy(&version.stderr)
    );
    assert!(
        String::from_utf8_lossy(&version.stdout)
            .starts_with(&format!("bindery {}", env!("CARGO_PKG_VERSION")))
    );
    let id = e.docker(&["run", "--rm", "--entrypoint", "id", &tag]);
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        "uid=10001(bindery) gid=10001(bindery) groups=10001(bindery)"
    );

    let port = support::free_port();
    let name = format!("bindery-image-test-{port}");
    let started = e.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/var/lib/bindery:uid=10001,gid=10001",
        &tag,
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        "/var/lib/bindery",
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/health")).await {
            break r;
        }
        if Instant::now() > deadline {
            let logs = e.docker(&["logs", &name]);
            e.docker(&["rm", "-f", &name]);
            panic!(
                "Bindery did not answer in its image: {}",
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = health.status();
    let body: serde_json::Value = health.json().await.unwrap();
    let versions: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}/versions"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    e.docker(&["rm", "-f", &name]);
    e.docker(&["rmi", &tag]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    assert!(versions["binderhub"].is_string(), "{versions}");
}
