//! Content that is not a git remote, fetched by the host through the
//! provider's grants: what a hostile data record cannot do. These builds end
//! at the fetch, so no engine or registry is needed.

use crate::support;

use support::forges::Forges;
use support::service::{Service, sse};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_fail_clearly_and_leave_nothing_behind() {
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut c = support::service::config(data.path(), None);
    forges.grant_providers(&mut c);
    c.plugins.get_mut("zenodo").unwrap().enabled = true;
    c.build.max_repo_bytes = 8 << 20;
    c.build.max_file_bytes = 4 << 20;
    c.web.api_only = true;
    c.web.rate_limit.limit = 0;
    let builds = c.build_dir();
    let s = Service::planned(c).await;
    let failure = async |doi: &str| {
        let got = sse(&format!("{}/build/zenodo/{doi}?build_only=true", s.base)).await;
        assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
        got.last()["message"].as_str().unwrap().to_string()
    };

    // 64 MiB of zeros in a 64 KiB zip: refused at the entry's size, before it is written.
    assert_eq!(
        failure("10.5281/zenodo.666").await,
        "bomb/zeros in 10.5281/zenodo.666 is larger than this Bindery's limit of 4.0 MiB for one file (build.max_file_bytes).\n"
    );
    assert_eq!(
        failure("10.5281/zenodo.667").await,
        "Cannot fetch 10.5281/zenodo.667: the provider named a file \"../../escaped\": it leads out of the content\n"
    );
    assert!(!data.path().join("escaped").exists());
    assert_eq!(
        failure("10.5281/zenodo.668").await,
        format!(
            "Cannot fetch 10.5281/zenodo.668: {}/figshare-files/1 sent {} bytes where the service said 3\n",
            forges.base,
            support::forges::RECORD_DOCKERFILE.len()
        )
    );
    // Nothing of them is left on disk, once the build directories' removal
    // (in the background, after the build ends) has run.
    let left = || -> Vec<_> {
        std::fs::read_dir(&builds)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !left().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(left().is_empty(), "{:?}", left());
}

/// A provider's header credential goes with each download to the provider's
/// own origin, and not to the object store a download is redirected to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_credential_goes_only_to_its_origin() {
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let key_file = data.path().join("api-token");
    std::fs::write(&key_file, "dv-key-123\n").unwrap();
    let mut c = support::service::config(data.path(), None);
    forges.grant_providers(&mut c);
    c.plugins.get_mut("layer-first").unwrap().enabled = true;
    let dataverse = c.plugins.get_mut("dataverse").unwrap();
    dataverse.enabled = true;
    dataverse.secrets.insert(
        "api_token".into(),
        bindery::config::SecretSource::File(key_file),
    );
    c.web.api_only = true;
    c.web.rate_limit.limit = 0;
    // No engine here: the build fails after the fetch, which is what is looked at.
    c.build.local.command = "/nonexistent/repo2docker".into();
    let s = Service::planned(c).await;
    let got = sse(&format!(
        "{}/build/dataverse/10.7910/DVN/TJCLKP?build_only=true",
        s.base
    ))
    .await;
    assert!(got.raw.contains("/nonexistent/repo2docker"), "{}", got.raw);
    assert!(!got.raw.contains("dv-key-123"));
    for id in ["11", "12", "13"] {
        let hits = forges.hits(&format!("/api/access/datafile/{id}"));
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].authorization.as_deref(), Some("dv-key-123"));
    }
    let stored = forges.hits("/s3/results.zip");
    assert_eq!(stored.len(), 1, "the redirect was followed");
    assert_eq!(
        stored[0].authorization, None,
        "the key stayed with its origin"
    );
}
