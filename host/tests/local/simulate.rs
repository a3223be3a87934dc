//! `bindery simulate` on hand-made traces whose answers are known: the
//! bundled policies (and a test policy that reads the `clock` capability)
//! loaded as `serve` loads them, on the replay's virtual clock.

use crate::support;

use std::path::Path;

use bindery::config::{Config, Spread};
use bindery::simulate::report::{Culls, Refusal};
use bindery::simulate::{self, Report, trace};

/// 2024-05-01T10:00:00Z.
const TEN: u64 = 1_714_557_600_000;
const SEC: u64 = 1000;

fn fixed(secs: f64) -> Spread {
    Spread {
        median_secs: secs,
        p90_secs: secs,
    }
}

/// The defaults with a model of fixed durations: builds 100 s, spawns 2 s,
/// sessions 60 s; activity seen at once; a cull pass every minute.
fn config(data: &Path, edit: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::load(None).unwrap();
    c.data_dir = data.into();
    c.cull.every_secs = 60;
    c.simulate.build = fixed(100.0);
    c.simulate.spawn = fixed(2.0);
    c.simulate.session = fixed(60.0);
    c.simulate.activity_interval_secs = 0;
    edit(&mut c);
    c
}

/// Launch events at `(seconds after ten, spec)`, GitHub's, as upstream writes them.
fn trace(launches: &[(u64, &str)]) -> Vec<trace::Launch> {
    let lines: Vec<String> = launches
        .iter()
        .map(|(at, spec)| {
            let when = chrono::DateTime::from_timestamp_millis((TEN + at * SEC) as i64).unwrap();
            serde_json::json!({
                "timestamp": when.to_rfc3339(),
                "schema": "binderhub.jupyter.org/launch",
                "version": 5,
                "provider": "GitHub",
                "spec": spec,
                "ref": "0123456789abcdef0123456789abcdef01234567",
                "status": "success",
                "build_token": false,
                "origin": "mybinder.org",
            })
            .to_string()
        })
        .collect();
    trace::parse(lines.join("\n").as_bytes()).unwrap()
}

async fn replay(config: &Config, launches: &[trace::Launch]) -> Report {
    simulate::run(config, launches).await.unwrap()
}

fn culls(report: &Report) -> Vec<(&str, &str, u64)> {
    report
        .total
        .culls
        .iter()
        .map(
            |Culls {
                 policy,
                 reason,
                 servers,
             }| (policy.as_str(), reason.as_str(), *servers),
        )
        .collect()
}

#[tokio::test]
async fn two_launches_of_one_image_build_it_once_and_each_get_a_server_culled_when_idle() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), |_| {});
    let r = replay(&c, &trace(&[(0, "a/b/HEAD"), (300, "a/b/HEAD")])).await;
    let t = &r.total;
    assert_eq!(
        (t.launches, t.builds, t.cache_hits, t.build_joins),
        (2, 1, 1, 0)
    );
    // Build 100 s and spawn 2 s, then the second launch finds the image.
    assert_eq!(
        (t.wait_secs.launches, t.wait_secs.p50, t.wait_secs.max),
        (2, Some(2.0), Some(102.0))
    );
    // As in BinderHub, each launch gets its own server: their lives overlap.
    assert_eq!((t.peak.servers, t.peak.builds), (2, 1));
    let [a, b] = &r.launches[..] else {
        panic!("{:?}", r.launches)
    };
    assert_eq!(
        (a.ready_ms, b.ready_ms),
        (Some(TEN + 102 * SEC), Some(TEN + 302 * SEC))
    );
    // Idle from 10:02:42 and 10:06:02: the first pass 600 s on culls each.
    assert_eq!(
        (a.stopped_ms, b.stopped_ms),
        (Some(TEN + 780 * SEC), Some(TEN + 1020 * SEC))
    );
    assert_eq!(culls(&r), [("idle", "inactive for N s (limit 600 s)", 2)]);
    // Two minutes of work; 2 + 618 and 2 + 658 s starting or idle.
    assert_eq!(
        (
            t.server_hours.active,
            t.server_hours.idle,
            t.server_hours.pool
        ),
        (0.033, 0.356, 0.0)
    );
    assert_eq!(
        (r.start.as_str(), r.end.as_str(), r.left_running),
        ("2024-05-01T10:00:00Z", "2024-05-01T10:17:00Z", 0)
    );
    assert_eq!(r.hours.len(), 1);
    assert_eq!(r.hours[0], r.total, "one hour holds everything");
}

#[tokio::test]
async fn a_pool_of_one_turns_the_second_launch_into_a_hit() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), |c| {
        c.warm_pool.max_servers = 1;
        let popular = c.plugins.get_mut("popular").unwrap();
        for (key, value) in [
            ("launches_per_server", toml::Value::Float(1.0)),
            ("min_launches", toml::Value::Float(0.5)),
            ("max_per_image", toml::Value::Integer(1)),
        ] {
            popular.config.insert(key.into(), value);
        }
    });
    let r = replay(&c, &trace(&[(0, "a/b/HEAD"), (300, "a/b/HEAD")])).await;
    let t = &r.total;
    let p = t.warm_pool;
    // The first launch misses and its launch counts; the pool's next pass
    // starts a server; the second launch is handed it.
    assert_eq!((p.hits, p.misses), (1, 1));
    assert_eq!((t.wait_secs.p50, t.wait_secs.max), (Some(0.0), Some(102.0)));
    let [a, b] = &r.launches[..] else { panic!() };
    assert!(!a.pool_hit && b.pool_hit);
    assert_eq!(b.ready_ms, Some(TEN + 300 * SEC));
    // The pool refills at once, and its server waits there to the end.
    assert_eq!((p.started, p.removed, r.left_running), (2, 0, 1));
    // Its first server waited 10:01:40 to 10:05:00; the second from 10:05
    // to the end, when the handed-out server (idle from 10:06) is culled.
    assert_eq!(b.stopped_ms, Some(TEN + 960 * SEC));
    assert_eq!(r.end, "2024-05-01T10:16:00Z");
    assert_eq!(t.server_hours.pool, 0.239);
    assert_eq!(t.peak.servers, 3, "two launches' servers and the refill");
}

#[tokio::test]
async fn quotas_and_bans_refuse_launches_as_in_service() {
    let data = tempfile::tempdir().unwrap();
    let launches = trace(&[(0, "a/x/HEAD"), (60, "a/y/HEAD"), (90, "banned/z/HEAD")]);
    let c = config(data.path(), |c| {
        c.quota.total = Some(1);
        c.plugins.get_mut("gh").unwrap().banned_specs = vec!["^banned/".into()];
    });
    let r = replay(&c, &launches).await;
    let t = &r.total;
    // y passes the quota while x builds, and finds it full when built.
    assert_eq!(
        (
            t.refused.total_quota,
            t.refused.repo_quota,
            t.refused.banned
        ),
        (1, 0, 1)
    );
    let refused: Vec<Option<Refusal>> = r.launches.iter().map(|l| l.refused).collect();
    assert_eq!(
        refused,
        [None, Some(Refusal::TotalQuota), Some(Refusal::Banned)]
    );
    assert_eq!((t.builds, t.peak.servers), (2, 1));

    let c = config(data.path(), |c| c.quota.per_repo = Some(1));
    let r = replay(
        &c,
        &trace(&[(0, "a/x/HEAD"), (180, "a/x/HEAD"), (210, "a/y/HEAD")]),
    )
    .await;
    let refused: Vec<Option<Refusal>> = r.launches.iter().map(|l| l.refused).collect();
    assert_eq!(refused, [None, Some(Refusal::RepoQuota), None]);
    assert_eq!(r.total.peak.servers, 2);
}

#[tokio::test]
async fn culls_are_counted_by_the_policy_and_reason_that_decided() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), |c| {
        let per_repo = c.plugins.get_mut("per-repo").unwrap();
        per_repo.enabled = true;
        let rules: toml::Table =
            toml::from_str(r#"rules = [{ spec = "gh/org/workshop*", timeout_secs = 1200 }]"#)
                .unwrap();
        per_repo
            .config
            .insert("rules".into(), rules["rules"].clone());
        c.cull.policies = vec!["per-repo".into(), "idle".into()];
    });
    let r = replay(
        &c,
        &trace(&[(0, "org/workshop/HEAD"), (30, "org/other/HEAD")]),
    )
    .await;
    assert_eq!(
        culls(&r),
        [
            ("idle", "inactive for N s (limit 600 s)", 1),
            ("per-repo", "inactive for N s (limit 1200 s)", 1)
        ]
    );
    let culled: Vec<(Option<u64>, &str)> = r
        .launches
        .iter()
        .map(|l| (l.stopped_ms, l.culled_by.as_ref().unwrap().0.as_str()))
        .collect();
    // Idle from 10:02:42 (the workshop's) and 10:03:12.
    assert_eq!(
        culled,
        [
            (Some(TEN + 1380 * SEC), "per-repo"),
            (Some(TEN + 840 * SEC), "idle")
        ]
    );
}

#[tokio::test]
async fn policies_read_the_replays_clock_and_a_failing_one_keeps_its_servers() {
    let data = tempfile::tempdir().unwrap();
    let fixture = support::fixture("bindery-test-hostile-cull");
    let hostile = |mode: &str| bindery::config::PluginConfig {
        config: [("mode".to_string(), toml::Value::String(mode.into()))].into(),
        ..support::plugin_at(&fixture)
    };
    let c = config(data.path(), |c| {
        c.plugins.insert("by-the-clock".into(), hostile("clock"));
        c.cull.policies = vec!["by-the-clock".into()];
    });
    let r = replay(&c, &trace(&[(0, "a/b/HEAD")])).await;
    // Started 10:01:40 by the clock of 2024, not of today: a minute on,
    // the pass of 10:03 stops it.
    assert_eq!(r.launches[0].stopped_ms, Some(TEN + 180 * SEC));
    assert_eq!(culls(&r), [("by-the-clock", "the clock says N", 1)]);

    let c = config(data.path(), |c| {
        c.plugins.insert("panics".into(), hostile("panic"));
        c.cull.policies = vec!["panics".into(), "idle".into()];
        c.cull.every_secs = 600;
    });
    let r = replay(&c, &trace(&[(0, "a/b/HEAD")])).await;
    // Every pass from 10:10 to a day after the launch fails and keeps it.
    assert_eq!(r.policy_failures.cull, 144);
    assert!(culls(&r).is_empty());
    assert_eq!(
        (r.left_running, r.end.as_str()),
        (1, "2024-05-02T10:00:00Z")
    );
}

#[tokio::test]
async fn a_policy_the_configuration_names_but_does_not_load_is_an_error() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), |c| c.cull.policies = vec!["popular".into()]);
    let e = simulate::run(&c, &trace(&[(0, "a/b/HEAD")]))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the configuration: cull.policies: no cull-policy plugin `popular` is loaded"
    );
    let c = config(data.path(), |_| {});
    let e = simulate::run(&c, &[]).await.unwrap_err();
    assert!(e.to_string().contains("no successful launch"), "{e}");
}

/// The charts of `docs/simulate.md` are the tool's own for its worked
/// example (`scripts/simulate-example` draws them again after a change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_charts_are_what_the_tool_draws() {
    let root = support::workspace();
    let examples = root.join("docs/examples/simulate");
    let mut day = Vec::new();
    trace::generate(&trace::Generate::default(), &mut day).unwrap();
    let launches = trace::parse(&day[..]).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    for name in ["idle.toml", "per-repo.toml"] {
        let mut c = Config::load(Some(&examples.join(name))).unwrap();
        c.data_dir = data.path().into();
        reports.push((name, replay(&c, &launches).await));
    }
    let named: Vec<(&str, &Report)> = reports.iter().map(|(n, r)| (*n, r)).collect();
    let regenerate = "the docs' charts are out of date: run scripts/simulate-example";
    for (file, drawn) in [
        ("simulate-idle.svg", simulate::chart::svg(&named[..1])),
        ("simulate-per-repo.svg", simulate::chart::svg(&named)),
    ] {
        let committed = std::fs::read_to_string(root.join("docs/images").join(file)).unwrap();
        assert!(committed == drawn, "{file}: {regenerate}");
    }
}

/// The command as an operator runs it: a generated day, gzipped because
/// its name says so, replayed against two configurations; the comparison
/// on the terminal agrees with the JSON of both, and the chart draws both.
#[test]
fn the_command_replays_a_generated_day_against_two_configurations() {
    let work = tempfile::tempdir().unwrap();
    let examples = support::workspace().join("docs/examples/simulate");
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_bindery"))
            .arg("simulate")
            .args(args)
            .env("BINDERY_DATA_DIR", work.path().join("data"))
            .env_remove("BINDERY_CONFIG")
            .output()
            .unwrap()
    };
    let bindery = |args: &[&std::ffi::OsStr]| {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    let day = work.path().join("day.jsonl.gz");
    let (json, svg) = (work.path().join("r.json"), work.path().join("r.svg"));
    // A day that cannot be made leaves the file already there as it was.
    std::fs::write(&day, "gathered over a month").unwrap();
    let refused = run(&[
        "--generate".as_ref(),
        "--launches".as_ref(),
        "5000000".as_ref(),
        "--out".as_ref(),
        day.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("at most 1000000"), "{stderr}");
    assert_eq!(std::fs::read(&day).unwrap(), b"gathered over a month");
    bindery(&[
        "--generate".as_ref(),
        "--launches".as_ref(),
        "3000".as_ref(),
        "--repos".as_ref(),
        "300".as_ref(),
        "--out".as_ref(),
        day.as_os_str(),
    ]);
    assert_eq!(std::fs::read(&day).unwrap()[..2], [0x1f, 0x8b]);
    let printed = bindery(&[
        "--trace".as_ref(),
        day.as_os_str(),
        "--config".as_ref(),
        examples.join("idle.toml").as_os_str(),
        "--compare".as_ref(),
        examples.join("per-repo.toml").as_os_str(),
        "--json".as_ref(),
        json.as_os_str(),
        "--svg".as_ref(),
        svg.as_os_str(),
    ]);
    assert!(
        printed.contains("== idle.toml\n") && printed.contains("== per-repo.toml\n"),
        "{printed}"
    );
    let reports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let row = |name: &str| -> Vec<String> {
        let line = printed
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with("  "))
            .unwrap_or_else(|| panic!("no row {name:?} in {printed}"));
        line[name.len()..]
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(row("launches"), ["3000", "3000", "="]);
    let culled = |name: &str| -> u64 {
        let culls = reports[name]["total"]["culls"].as_array().unwrap();
        culls.iter().map(|c| c["servers"].as_u64().unwrap()).sum()
    };
    let (a, b) = (culled("idle.toml"), culled("per-repo.toml"));
    assert!(a > 0 && b > 0, "{reports}");
    assert_eq!(row("servers culled")[..2], [a.to_string(), b.to_string()]);
    let policies: Vec<&str> = reports["per-repo.toml"]["total"]["culls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["policy"].as_str().unwrap())
        .collect();
    assert!(policies.contains(&"per-repo"), "{policies:?}");
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.starts_with("<svg") && chart.contains("idle.toml") && chart.contains("per-repo.toml"),
        "{chart}"
    );
    let left: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
