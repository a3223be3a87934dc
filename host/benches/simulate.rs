//! `bindery simulate` on a generated day of 25,000 launches (Zipf over
//! 2,000 repositories, a daily cycle): the replay with no policy to ask
//! (the engine alone, the baseline), with the default `idle` cull policy,
//! and with a warm pool of 50 sized by `popular` besides, in the same run.
//! Prints; asserts nothing. Run with `cargo bench -p bindery --bench simulate`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use bindery::config::Config;
use bindery::simulate::{self, trace};
use support::service::median;

const RUNS: usize = 3;

/// A configuration measured: its name, and what it changes of the defaults.
type Variant = (&'static str, fn(&mut Config));

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = trace::Generate::default();
    let mut lines = Vec::new();
    let started = Instant::now();
    trace::generate(&options, &mut lines).unwrap();
    let generated = started.elapsed();
    let started = Instant::now();
    let launches = trace::parse(&lines[..]).unwrap();
    let parsed = started.elapsed();
    println!(
        "trace: {} launches, {} KiB; generated in {:.1} ms, parsed in {:.1} ms",
        launches.len(),
        lines.len() / 1024,
        generated.as_secs_f64() * 1e3,
        parsed.as_secs_f64() * 1e3
    );
    let data = tempfile::tempdir().unwrap();
    let base = {
        let mut c = Config::load(None).unwrap();
        c.data_dir = data.path().into();
        c
    };
    let variants: [Variant; 3] = [
        ("no policy (engine alone)", |c| c.cull.enabled = false),
        ("idle (the default)", |_| {}),
        ("idle + warm pool of 50 (popular)", |c| {
            c.warm_pool.max_servers = 50;
        }),
    ];
    let mut baseline = None;
    println!("| configuration | runs | median | launches/s | vs engine alone |");
    println!("|---|---|---|---|---|");
    for (name, edit) in variants {
        let mut config = base.clone();
        edit(&mut config);
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let report = simulate::run(&config, &launches).await.unwrap();
            times.push(report.elapsed);
        }
        let m = median(times);
        let base = *baseline.get_or_insert(m);
        println!(
            "| {name} | {RUNS} | {:.2} s | {:.0} | {:.1}x |",
            m.as_secs_f64(),
            launches.len() as f64 / m.as_secs_f64(),
            m.as_secs_f64() / base.as_secs_f64()
        );
    }
}
