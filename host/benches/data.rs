//! Data-record build figures: time to `ready` (build only) for a Zenodo
//! record's first build (the host fetches its zip and unpacks it, repo2docker
//! builds on the real engine, the image goes to the real registry), for the
//! record's next version as a layer on it, and, as the baseline in the same
//! run, the first build of a git repository with the same files. Each round
//! starts from an empty cache and a registry prefix of its own. Prints
//! medians; asserts nothing. Run with `cargo bench -p bindery --bench data`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::engine::{TestRepo, build_config};
use support::forges::{Forges, RECORD_DOCKERFILE};
use support::registry::OciRegistry;
use support::service::{Service, git_spec, median, time_to_ready};

const ROUNDS: usize = 5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let forges = Forges::start().await;
    let registry = OciRegistry::start(None);
    let repo = TestRepo::new();
    let sha = repo.commit(
        &[
            ("Dockerfile", RECORD_DOCKERFILE),
            ("data/a.csv", b"x,y\n1,2\n"),
        ],
        &[],
    );
    let (mut first, mut layer, mut git) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let data = tempfile::tempdir().unwrap();
        let mut c = build_config(data.path(), &registry).await;
        forges.grant_providers(&mut c);
        c.plugins.get_mut("zenodo").unwrap().enabled = true;
        c.registry.image_prefix = format!("{}/bench{round}-", registry.host());
        let s = Service::planned(c).await;
        git.push(time_to_ready(&s, &format!("git/{}", git_spec(&repo.url, &sha))).await);
        first.push(time_to_ready(&s, "zenodo/10.5281/zenodo.3242074").await);
        layer.push(time_to_ready(&s, "zenodo/10.5281/zenodo.3242075").await);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (first, layer, git) = (median(first), median(layer), median(git));
    println!("rounds: {ROUNDS}, medians, time to `ready` (build only)");
    println!(
        "git repository, first build (baseline):     {:8.1} ms",
        ms(git)
    );
    println!(
        "Zenodo record, first build:                  {:8.1} ms ({:.2}x the git build)",
        ms(first),
        ms(first) / ms(git)
    );
    println!(
        "Zenodo record, next version as a layer:      {:8.1} ms ({:.2}x the first build)",
        ms(layer),
        ms(layer) / ms(first)
    );
}
