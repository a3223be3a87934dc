//! Decompression bombs against the release binary: how long `bindery serve`
//! takes to refuse each, and its peak RSS (`VmHWM`) after each, beside its
//! peak after start-up and after a build that fetches a small repository.
//! Prints medians of `BENCH_N` rounds (default 5); asserts nothing. Run with
//! `cargo bench -p bindery --bench bombs` (root: the build directory is a
//! 64 MiB tmpfs, so a bomb that were checked out would fail on a full disk).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::engine::{TestRepo, build_config};
use support::faults::SmallDisk;
use support::registry::OciRegistry;
use support::service::{Process, build_only};

fn peak_rss_mib(process: &Process) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.0.id())).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = support::service::bench_n(5);
    let registry = OciRegistry::start(None);
    // A repository each: a fetch brings every branch of its repository.
    let small = TestRepo::new();
    let small_sha = small.commit(&[("README.md", b"# small\n")], &[]);
    let bomb = |name: &'static str, make: &dyn Fn(&TestRepo) -> String| {
        let repo = TestRepo::new();
        let sha = make(&repo);
        (name, repo, sha)
    };
    let bombs = [
        bomb("300 MB of zeros in one file", &|r| {
            r.zeros("bomb", 1, 300_000_000)
        }),
        bomb("four 20 MB files of zeros", &|r| {
            r.zeros("bomb", 4, 20_000_000)
        }),
        bomb("10^7 files (six levels of ten)", &|r| {
            r.tree_bomb("bomb", 6)
        }),
    ];
    println!("| input | time to refusal (median) | peak RSS after it (median) |");
    println!("|---|---|---|");
    let mut rows: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for round in 0..rounds {
        let (data, disk) = (tempfile::tempdir().unwrap(), SmallDisk::mount(64 << 20));
        let mut c = build_config(data.path(), &registry).await;
        c.build.work_dir = Some(disk.path().to_path_buf());
        c.build.max_repo_bytes = 50 << 20;
        // The baseline's plan runs this and fails at once: no engine needed.
        c.build.local.command = "false".into();
        c.listen = support::free_addr();
        let process = Process::start(&c, data.path()).await;
        let base = format!("http://{}", c.listen);
        let mut measured = vec![("start-up".to_string(), 0.0, peak_rss_mib(&process))];
        // A small repository is fetched and planned (its repo2docker is
        // `false`), as the baseline for the bombs.
        let started = Instant::now();
        let _ = build_only(&base, &small.url, &small_sha).await;
        measured.push((
            "a small repository (baseline)".into(),
            started.elapsed().as_secs_f64(),
            peak_rss_mib(&process),
        ));
        for (name, repo, sha) in &bombs {
            let started = Instant::now();
            let got = build_only(&base, &repo.url, sha).await;
            let took = started.elapsed().as_secs_f64();
            assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
            measured.push(((*name).to_string(), took, peak_rss_mib(&process)));
        }
        for (i, (name, took, rss)) in measured.into_iter().enumerate() {
            if round == 0 {
                rows.push((name, Vec::new(), Vec::new()));
            }
            rows[i].1.push(took);
            rows[i].2.push(rss);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (name, took, rss) in rows {
        println!(
            "| {name} | {:.2} s | {:.0} MiB |",
            median(took),
            median(rss)
        );
    }
}
