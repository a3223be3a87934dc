//! The whole click flow, as a newcomer meets it: `scripts/quickstart` (what
//! the README's `scripts/run` runs once it has built the binary; here it runs
//! the binary under test) starts the real registry, Docker engine, JupyterHub
//! with DockerSpawner, git server and Bindery, and prints a launch link. A
//! real headless Chromium opens the link, watches the build log, lands in
//! JupyterLab and shows the example notebook's saved output. The same link
//! again is a cached launch; a commit that changes only the notebook is a
//! layer build. Ctrl-C stops everything; a second run reuses what the first
//! made. Screenshots go to `<target>/test-artifacts`.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::browser::Browser;
use support::engine::engine;
use support::{free_port, free_ports, git};

struct Ports {
    bindery: u16,
    hub: u16,
    registry: u16,
    git: u16,
}

/// A running `scripts/quickstart` and what it printed.
struct Quickstart {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    launch: String,
}

impl Quickstart {
    fn start(state: &Path, ports: &Ports) -> Quickstart {
        let mut child = Command::new(support::workspace().join("scripts/quickstart"))
            .arg(env!("CARGO_BIN_EXE_bindery"))
            .env("QUICKSTART_DIR", state)
            .env("QUICKSTART_PORT", ports.bindery.to_string())
            .env("QUICKSTART_HUB_PORT", ports.hub.to_string())
            .env("QUICKSTART_REGISTRY_PORT", ports.registry.to_string())
            .env("QUICKSTART_GIT_PORT", ports.git.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("scripts/quickstart runs");
        let (tx, stdout) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err = BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        // The first run on a machine installs the engine and the hub.
        let deadline = Instant::now() + Duration::from_secs(1200);
        let launch = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some(link) = line.strip_prefix("Launch: ") {
                        break link.to_string();
                    }
                }
                Err(_) => panic!(
                    "no launch link from scripts/quickstart:\n{}",
                    stderr.lock().unwrap()
                ),
            }
        };
        Quickstart {
            child,
            stdout,
            stderr,
            launch,
        }
    }

    fn said(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Ctrl-C, and how the script ended.
    fn interrupt(&mut self) -> std::process::ExitStatus {
        self.stop(libc::SIGINT)
    }

    /// Sends the script `signal` and waits for it to end.
    fn stop(&mut self, signal: i32) -> std::process::ExitStatus {
        support::signal(self.child.id() as i32, signal);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "scripts/quickstart did not stop on signal {signal}:\n{}",
                self.said()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            support::signal(self.child.id() as i32, libc::SIGTERM);
            let _ = self.child.wait();
        }
        while self.stdout.try_recv().is_ok() {}
    }
}

const LOG: &str = "document.getElementById('log')?.textContent ?? ''";
const OUTPUTS: &str = "Array.from(document.querySelectorAll('.jp-OutputArea-output')).map(e => e.innerText).join('\\n')";

/// Opens `link` and follows it into JupyterLab; the launch page's log and
/// the notebook's rendered outputs. `mid_build` screenshots the launch page
/// once the build's own log shows.
fn click(browser: &mut Browser, link: &str, mid_build: Option<&str>) -> (String, String) {
    // Off the last server first, so that "/user/" below is this launch's.
    browser.navigate("about:blank");
    browser.wait_for("location.href", Duration::from_secs(10), |v| {
        v == "about:blank"
    });
    browser.navigate(link);
    if let Some(name) = mid_build {
        browser.wait_for(LOG, Duration::from_secs(300), |v| {
            v.as_str().is_some_and(|t| t.contains("Step 1/"))
        });
        std::fs::write(support::artifacts().join(name), browser.screenshot()).unwrap();
    }
    // The launch page's log, read until the page leaves for the server.
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let href = browser.eval("location.href");
        if href.as_str().is_some_and(|h| h.contains("/user/")) {
            break;
        }
        if let Some(t) = browser.eval(LOG).as_str()
            && t.len() >= log.len()
        {
            log = t.to_string();
        }
        assert!(!log.contains("Failed"), "the launch failed:\n{log}");
        assert!(
            Instant::now() < deadline,
            "never left the launch page:\n{log}"
        );
        // The last lines (the push's end, `ready`) come moments before the
        // page leaves: read often, or they are missed.
        std::thread::sleep(Duration::from_millis(5));
    }
    let outputs = browser.wait_for(OUTPUTS, Duration::from_secs(180), |v| {
        v.as_str().is_some_and(|t| !t.is_empty())
    });
    (log, outputs.as_str().unwrap().to_string())
}

async fn metric(base: &str, line: &str) -> bool {
    let text = support::service::metrics_at(base).await;
    text.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_builds_launches_and_shows_the_notebook_then_caches_and_layers() {
    // The engine is the shared fixture's, so the quickstart does not own it
    // and leaves it running for the other tests of this binary when it stops.
    engine();
    let state = tempfile::tempdir().unwrap();
    let ports = Ports {
        bindery: free_port(),
        // The hub, its API, the proxy's API.
        hub: free_ports(3),
        registry: free_port(),
        git: free_port(),
    };
    let base = format!("http://127.0.0.1:{}", ports.bindery);
    let first = Quickstart::start(state.path(), &ports);
    assert!(
        first.launch.starts_with(&format!(
            "{base}/v2/git/git%3A%2F%2F127.0.0.1%3A{}%2Fexample.git/HEAD?labpath=index.ipynb",
            ports.git
        )),
        "{}",
        first.launch
    );

    // The first click: a full build, watched, then JupyterLab with the notebook.
    let link = first.launch.clone();
    let (mut browser, log, outputs, landed) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::start();
        let (log, outputs) = click(&mut b, &link, Some("quickstart-building.png"));
        let landed = b.eval("location.href").as_str().unwrap().to_string();
        std::fs::write(
            support::artifacts().join("quickstart-notebook.png"),
            b.screenshot(),
        )
        .unwrap();
        (b, log, outputs, landed)
    })
    .await
    .unwrap();
    assert!(
        log.contains("Building with repo2docker (DockerBuildPack)")
            && log.contains("Successfully pushed"),
        "{log}"
    );
    assert!(
        landed.contains(&format!("127.0.0.1:{}/user/example-", ports.hub))
            && landed.contains("/doc/tree/index.ipynb"),
        "{landed}"
    );
    assert!(
        outputs.contains("sum of squares below 10: 285"),
        "{outputs}"
    );
    assert!(
        metric(
            &base,
            r#"bindery_build_executor_seconds_count{executor="local",status="success"} 1"#
        )
        .await
    );

    // The same link again: the image is found, nothing is built.
    let link = first.launch.clone();
    let (b, log, outputs) = tokio::task::spawn_blocking(move || {
        let (log, outputs) = click(&mut browser, &link, None);
        (browser, log, outputs)
    })
    .await
    .unwrap();
    browser = b;
    assert!(
        log.contains("Found built image, launching...") && !log.contains("Step 1/"),
        "{log}"
    );
    assert!(outputs.contains("285"), "{outputs}");
    assert!(
        metric(
            &base,
            r#"bindery_build_executor_seconds_count{executor="local",status="success"} 1"#
        )
        .await
    );

    // A commit that changes only the notebook: a layer on the image, no engine build.
    let work = tempfile::tempdir().unwrap();
    let bare = state.path().join("git/example.git");
    git(work.path(), &["clone", "-q", bare.to_str().unwrap(), "."]);
    let notebook = std::fs::read_to_string(work.path().join("index.ipynb"))
        .unwrap()
        .replace("285", "285 (and a new commit)");
    std::fs::write(work.path().join("index.ipynb"), notebook).unwrap();
    git(work.path(), &["commit", "-qam", "Only the notebook"]);
    git(work.path(), &["push", "-q", "origin", "main"]);
    let sha = git(work.path(), &["rev-parse", "HEAD"]);
    // By sha, as a link to the new revision is shared.
    let by_sha = first.launch.replace("/HEAD?", &format!("/{sha}?"));
    let link = by_sha.clone();
    let (log, outputs) = tokio::task::spawn_blocking(move || {
        let got = click(&mut browser, &link, None);
        std::fs::write(
            support::artifacts().join("quickstart-layered.png"),
            browser.screenshot(),
        )
        .unwrap();
        got
    })
    .await
    .unwrap();
    assert!(
        log.contains("as a layer (no engine)") && !log.contains("Step 1/"),
        "{log}"
    );
    assert!(outputs.contains("285 (and a new commit)"), "{outputs}");
    assert!(
        metric(
            &base,
            r#"bindery_build_executor_seconds_count{executor="layer",status="success"} 1"#
        )
        .await
    );
    assert!(
        metric(
            &base,
            r#"bindery_build_executor_seconds_count{executor="local",status="success"} 1"#
        )
        .await
    );

    // Ctrl-C stops everything this run started: every port is free again and
    // the servers' containers are gone.
    let mut first = first;
    let status = first.interrupt();
    assert_eq!(status.code(), Some(130), "{}", first.said());
    all_stopped(&ports, &first.said());
    drop(first);

    // A second run reuses the registry, the cache and the repository: the
    // layered revision launches at once.
    let second = Quickstart::start(state.path(), &ports);
    assert!(
        !second.said().contains("making the example repository"),
        "{}",
        second.said()
    );
    let link = by_sha.clone();
    let (log, outputs) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::start();
        click(&mut b, &link, None)
    })
    .await
    .unwrap();
    assert!(
        log.contains("Found built image, launching...") && !log.contains("as a layer"),
        "{log}"
    );
    assert!(outputs.contains("285 (and a new commit)"), "{outputs}");

    // A terminal closed under it, or a kill: the script's own death leaves
    // what it started running, but not its lock, so the next run stops the
    // leftovers by their pid files and starts cleanly; a hang-up stops all
    // as Ctrl-C does.
    let mut second = second;
    second.stop(libc::SIGKILL);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", ports.bindery)).is_ok(),
        "a killed script's Bindery goes on until the next run"
    );
    let mut third = Quickstart::start(state.path(), &ports);
    assert!(
        third.said().contains("left by an earlier run"),
        "{}",
        third.said()
    );
    let status = third.stop(libc::SIGHUP);
    assert_eq!(status.code(), Some(129), "{}", third.said());
    all_stopped(&ports, &third.said());
}

/// Every port of the quickstart is free and no server container is left.
fn all_stopped(ports: &Ports, said: &str) {
    for port in [
        ports.bindery,
        ports.hub,
        ports.hub + 1,
        ports.hub + 2,
        ports.registry,
        ports.git,
    ] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still answers after the quickstart stopped:\n{said}"
        );
    }
    let containers = engine().docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("name=^bindery-quickstart-{}-", ports.hub),
    ]);
    assert!(
        String::from_utf8_lossy(&containers.stdout)
            .trim()
            .is_empty(),
        "servers left running"
    );
}
