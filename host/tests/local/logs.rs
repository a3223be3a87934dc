//! What operators read: JSON log lines, the access log with its request
//! id, a launch's span over its build, and every metric family on a fresh
//! server.

use crate::support;

use serde_json::Value;
use support::GitDaemon;
use support::service::{Process, config, git_spec, metrics_at, sse};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_and_the_access_log_carries_the_request_id() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), None);
    c.listen = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap();
    let base = format!("http://{}", c.listen);
    let server = Process::start_logging_json("info", &c, data.path()).await;
    let client = reqwest::Client::new();
    let mine = client
        .get(format!("{base}/versions"))
        .header("x-request-id", "req-from-the-client-42")
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 200);
    assert_eq!(mine.headers()["x-request-id"], "req-from-the-client-42");
    // Without one, Bindery makes one up and answers with it.
    let made = client.get(format!("{base}/health")).send().await.unwrap();
    let made = made.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    // A fresh server lists every family, with HELP and TYPE, before any sample.
    let metrics = metrics_at(&base).await;
    for family in [
        "binderhub_build_time_seconds histogram",
        "binderhub_launch_time_seconds histogram",
        "binderhub_build_count counter",
        "binderhub_launch_count counter",
        "process_cpu_seconds counter",
        "process_resident_memory_bytes gauge",
        "process_open_fds gauge",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family}")),
            "{family}:\n{metrics}"
        );
    }
    let (daemon, sha) = GitDaemon::with_repo("repo.git");
    let spec = git_spec(&format!("git://127.0.0.1:{}/repo.git", daemon.port), "main");
    // Its build fails at once (this config loads no build strategy): the
    // point is what the lines carry.
    let launch = sse(&format!("{base}/build/git/{spec}")).await;
    assert_eq!(launch.last()["phase"], "failed", "{}", launch.raw);
    drop(server);

    let log = std::fs::read_to_string(data.path().join("bindery.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 3, "{log}");
    let access = |id: &str| {
        lines
            .iter()
            .find(|l| l["target"] == "bindery::access" && l["span"]["request_id"] == id)
    };
    let line = access("req-from-the-client-42").unwrap_or_else(|| panic!("{log}"));
    assert_eq!(line["fields"]["status"], 200, "{line}");
    assert_eq!(line["span"]["path"], "/versions", "{line}");
    assert!(line["fields"]["ms"].is_u64(), "{line}");
    assert!(access(&made).is_some(), "{log}");

    // The build's lines sit under the launch that started it, whose span
    // has the provider, the spec and, once resolved, the ref.
    let ended = |what: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == what)
            .unwrap_or_else(|| panic!("no \"{what}\" line: {log}"))
    };
    let build = ended("build ended");
    assert_eq!(build["fields"]["outcome"], "failed", "{build}");
    let span = |name: &str| {
        build["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} span: {build}"))
    };
    let (launch, built) = (span("launch"), span("build"));
    assert_eq!(launch["provider"], "git", "{build}");
    assert_eq!(launch["spec"], spec.as_str(), "{build}");
    assert_eq!(launch["resolved_ref"], sha.as_str(), "{build}");
    assert_eq!(built["resolved_ref"], sha.as_str(), "{build}");
    assert!(built["image"].as_str().unwrap().ends_with(&sha), "{build}");
    assert_eq!(span("request")["path"], format!("/build/git/{spec}"));
    let launch = ended("launch ended");
    assert_eq!(launch["span"]["outcome"], "failed", "{launch}");
}
