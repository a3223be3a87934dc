//! Every data provider builds: the host fetches the record through the
//! provider's grants from a loopback server answering in the service's API
//! shapes (file lists, redirects, zips and tarballs as the service serves
//! them), the real repo2docker builds it on the real engine, and the image
//! in the real registry holds the files where repo2docker would put them. A
//! new version that changes only data is a layer on the previous version.

use crate::support;

use support::engine::{build_config, run_in};
use support::forges::{Forges, HYDROSHARE_ID, SWH_DIR};
use support::registry::OciRegistry;
use support::service::{Service, Stream, sse};

/// The paths in `image`'s home, `./`-relative and sorted, hidden ones left out.
fn files_in(image: &str) -> Vec<String> {
    run_in(
        image,
        "cd /home/jovyan && find . -path './.*' -prune -o -print | sort",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

async fn build(s: &Service, provider: &str, spec: &str) -> Stream {
    let got = sse(&format!(
        "{}/build/{provider}/{spec}?build_only=true",
        s.base
    ))
    .await;
    assert_eq!(got.last()["phase"], "ready", "{provider}: {}", got.raw);
    got
}

fn image(got: &Stream) -> String {
    got.last()["imageName"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_data_provider_builds_its_record_laid_out_as_repo2docker_lays_it_out() {
    let forges = Forges::start().await;
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let mut c = build_config(data.path(), &registry).await;
    forges.grant_providers(&mut c);
    for name in bindery::bundled::DATA_PROVIDERS {
        c.plugins.get_mut(name).unwrap().enabled = true;
    }
    let s = Service::planned(c).await;
    let ckan = bindery_sdk::spec::quote(&format!("{}/ckan/dataset/sample", forges.base), "");
    let records: [(&str, &str, &[&str], &[&str]); 6] = [
        // One zip: unpacked, its single folder flattened.
        (
            "zenodo",
            "10.5281/zenodo.3242074",
            &["./Dockerfile", "./data/a.csv"],
            &["binder.zip", "binder-1"],
        ),
        // Files as listed; the link-only one left out.
        (
            "figshare",
            "10.6084/m9.figshare.9782777.v1",
            &["./Dockerfile", "./analysis.ipynb"],
            &["elsewhere"],
        ),
        // Folders from directoryLabel, the tabular original, a zip kept whole.
        (
            "dataverse",
            "10.7910/DVN/TJCLKP",
            &["./Dockerfile", "./data/raw/table.tsv", "./data/results.zip"],
            &["table.tab", "out.txt"],
        ),
        // The bag's data/contents only.
        (
            "hydroshare",
            HYDROSHARE_ID,
            &["./Dockerfile", "./model/run.txt"],
            &["bagit.txt", "resourcemap.xml", "manifest"],
        ),
        // Resources flat in the root, named by their URL's last segment.
        (
            "ckan",
            &ckan,
            &["./Dockerfile", "./measurements.csv"],
            &["download=1"],
        ),
        // The vault's tarball, its one folder lifted; modes kept.
        (
            "swh",
            &format!("swh:1:dir:{SWH_DIR}"),
            &["./Dockerfile", "./run.sh", "./src/main.py"],
            &[SWH_DIR],
        ),
    ];
    for (provider, spec, present, absent) in records {
        let got = build(&s, provider, spec).await;
        assert!(
            got.messages()
                .contains("Building with repo2docker (DockerBuildPack) on the local executor"),
            "{provider}: {}",
            got.raw
        );
        let files = files_in(&image(&got));
        for p in present {
            assert!(
                files.iter().any(|f| f == p),
                "{provider}: {p} missing from {files:?}"
            );
        }
        for a in absent {
            assert!(
                !files.iter().any(|f| f.contains(a)),
                "{provider}: {a} in {files:?}"
            );
        }
    }
    let swh = image(&build(&s, "swh", &format!("swh:1:dir:{SWH_DIR}")).await);
    assert!(run_in(&swh, "stat -c %a /home/jovyan/run.sh").starts_with("755"));

    // Zenodo's next version of the record: same environment, other data. A
    // layer on the first version's image, its removed file whited out.
    let next = build(&s, "zenodo", "10.5281/zenodo.3242075").await;
    assert!(
        next.messages().contains("as a layer (no engine)"),
        "{}",
        next.raw
    );
    let files = files_in(&image(&next));
    assert!(files.contains(&"./data/b.csv".to_string()), "{files:?}");
    assert!(!files.contains(&"./data/a.csv".to_string()), "{files:?}");
    assert!(
        s.state.metrics.encode().contains(
            r#"bindery_build_executor_seconds_count{executor="layer",status="success"} 1"#
        )
    );
}
