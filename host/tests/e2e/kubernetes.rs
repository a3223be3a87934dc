//! The `kubernetes` executor, against a test double of the Kubernetes API
//! server (`support/kube.rs`): no API server can be installed where these
//! tests run. kube-rs is real, and so is what the build pods do: the double's
//! kubelet runs the pod's repo2docker command as a process against the real
//! Docker engine of `scripts/engine.sh`, and it pushes to a real registry.

use crate::support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bindery::config::{Config, KubernetesBuildConfig};
use serde_json::json;
use support::engine::{DOCKERFILE, TestRepo, build_config, engine};
use support::kube::KubeApi;
use support::registry::OciRegistry;
use support::service::{Process, Service, Stream, build_only, git_spec, sse};

/// Upstream's default builder image; the double runs the real repo2docker for it.
pub(crate) const BUILDER: &str = "quay.io/jupyterhub/repo2docker:2024.07.0";
pub(crate) const NS: &str = "binder";

/// The build configuration of the tests, building in pods of `builder` on `api`.
pub(crate) async fn config(
    data: &std::path::Path,
    registry: &OciRegistry,
    api: &KubeApi,
    builder: &str,
) -> Config {
    let mut c = build_config(data, registry).await;
    c.build.allowed_builder_images = vec![builder.into()];
    c.build.kubernetes = Some(KubernetesBuildConfig {
        api_url: Some(api.url.parse().unwrap()),
        namespace: Some(NS.into()),
        docker_host: engine().docker_host.clone(),
        env: c.build.local.env.clone(),
        ..Default::default()
    });
    let strategy = c.plugins.get_mut("layer-first").unwrap();
    strategy
        .config
        .insert("executor".into(), "kubernetes".into());
    strategy
        .config
        .insert("builder_image".into(), builder.into());
    c
}

async fn build(s: &Service, repo: &TestRepo, reference: &str) -> Stream {
    build_only(&s.base, &repo.url, reference).await
}

/// The name of the `n`th pod created, once it is.
async fn nth_pod(api: &KubeApi, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(pod) = api.created().get(n) {
            return pod.metadata.name.clone().unwrap();
        }
        assert!(Instant::now() < deadline, "no build pod was created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_pod_as_upstream_makes_it_builds_pushes_and_is_deleted() {
    let (registry, api, repo, data) = (
        OciRegistry::start(None),
        KubeApi::start().await,
        TestRepo::new(),
        tempfile::tempdir().unwrap(),
    );
    api.run_image(BUILDER, &[engine().repo2docker.to_str().unwrap()]);
    let sha = repo.commit(&[("Dockerfile", DOCKERFILE), ("data.csv", b"a,b\n")], &[]);
    let mut c = config(data.path(), &registry, &api, BUILDER).await;
    let k = c.build.kubernetes.as_mut().unwrap();
    k.node_selector = [(
        "hub.jupyter.org/node-purpose".to_string(),
        "user".to_string(),
    )]
    .into();
    k.image_pull_secrets = vec!["builder-pull".into()];
    let strategy = c.plugins.get_mut("layer-first").unwrap();
    strategy
        .config
        .insert("memory_limit".into(), "2147483648".into());
    strategy.config.insert("cpu_limit".into(), "1000".into());
    strategy
        .config
        .insert("memory_request".into(), "1073741824".into());
    let s = Service::planned(c).await;

    let got = build(&s, &repo, &sha).await;
    assert_eq!(got.last()["phase"], "ready", "{}", got.raw);
    assert!(
        got.messages().contains("on the kubernetes executor"),
        "{}",
        got.raw
    );
    assert!(
        got.phases().contains(&"pushing"),
        "repo2docker's log lines come through the pod's log: {}",
        got.raw
    );
    let image = got.last()["imageName"].as_str().unwrap();
    assert!(
        s.image_digest(image).await.is_some(),
        "pushed to the registry"
    );
    assert!(
        api.pods(NS).is_empty(),
        "the pod is deleted once it succeeded"
    );

    // The pod, field by field, as upstream's KubernetesBuildExecutor makes it.
    let created = api.created();
    assert_eq!(created.len(), 1);
    let pod = serde_json::to_value(&created[0]).unwrap();
    let name = pod["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("build-") && name.len() <= 63, "{name}");
    assert_eq!(
        pod["metadata"]["labels"],
        json!({ "name": name, "component": "binderhub-build" })
    );
    assert_eq!(
        pod["metadata"]["annotations"],
        json!({ "binder-repo": repo.url })
    );
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    assert_eq!(
        (container["name"].as_str(), container["image"].as_str()),
        (Some("builder"), Some(BUILDER))
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args[..8],
        [
            "jupyter-repo2docker",
            &format!("--ref={sha}"),
            &format!("--image={image}"),
            "--no-clean",
            "--no-run",
            "--json-logs",
            "--user-name=jovyan",
            "--user-id=1000"
        ]
    );
    assert!(args.contains(&"--push"), "{args:?}");
    assert_eq!(args.last(), Some(&repo.url.as_str()));
    let socket = engine().docker_host.strip_prefix("unix://").unwrap();
    assert_eq!(
        spec["volumes"],
        json!([{ "name": "docker-socket", "hostPath": { "path": socket, "type": "Socket" } }])
    );
    assert_eq!(
        container["volumeMounts"],
        json!([{ "name": "docker-socket", "mountPath": "/var/run/docker.sock" }])
    );
    assert_eq!(
        container["resources"],
        json!({ "limits": { "memory": "2147483648", "cpu": "1000m" }, "requests": { "memory": "1073741824" } })
    );
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "R2D_DATAVERSE_INSTALLATIONS_URL"),
        "{}",
        container["env"]
    );
    assert_eq!(
        spec["tolerations"],
        json!([
            { "key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule" },
            { "key": "hub.jupyter.org_dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule" },
        ])
    );
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(
        (
            &spec["automountServiceAccountToken"],
            &spec["enableServiceLinks"]
        ),
        (&json!(false), &json!(false)),
        "a build runs the repository's code: no API token in the pod"
    );
    assert_eq!(
        spec["nodeSelector"],
        json!({ "hub.jupyter.org/node-purpose": "user" })
    );
    assert_eq!(
        spec["imagePullSecrets"],
        json!([{ "name": "builder-pull" }])
    );
    assert_eq!(
        spec["affinity"],
        json!({ "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{ "weight": 100,
            "podAffinityTerm": { "topologyKey": "kubernetes.io/hostname", "labelSelector": { "matchLabels": { "component": "binderhub-build" } } } }] } })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_builds_prefer_the_node_upstreams_rendezvous_hash_picks() {
    let (registry, api, repo, data) = (
        OciRegistry::start(None),
        KubeApi::start().await,
        TestRepo::new(),
        tempfile::tempdir().unwrap(),
    );
    api.run_image("bindery-test/fails", &["sh", "-c", "exit 1", "builder"]);
    for node in ["node-a", "node-b", "node-c", "node-d"] {
        let pod = json!({ "metadata": { "name": format!("dind-{node}"), "labels": { "component": "image-builder", "app": "binder" } },
            "spec": { "nodeName": node, "containers": [{ "name": "dind", "image": "docker:dind" }] }, "status": { "phase": "Running" } });
        api.insert(NS, pod);
    }
    let sha = repo.commit(&[("Dockerfile", DOCKERFILE)], &[]);
    let mut c = config(data.path(), &registry, &api, "bindery-test/fails").await;
    c.build.kubernetes.as_mut().unwrap().sticky_builds = true;
    let s = Service::planned(c).await;
    build(&s, &repo, &sha).await;
    let nodes = ["node-a", "node-b", "node-c", "node-d"];
    let best = bindery::build::kubernetes::rendezvous_rank(nodes, &repo.url)[0];
    let affinity = serde_json::to_value(&api.created()[0]).unwrap()["spec"]["affinity"].clone();
    assert_eq!(
        affinity,
        json!({ "nodeAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{ "weight": 100,
            "preference": { "matchExpressions": [{ "key": "kubernetes.io/hostname", "operator": "In", "values": [best] }] } }] } })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pod_an_unpullable_builder_and_an_eviction_are_clear_failures() {
    let (registry, api, repo) = (
        OciRegistry::start(None),
        KubeApi::start().await,
        TestRepo::new(),
    );
    let failed_line = r#"echo '{"phase": "failed", "message": "Error during build: the command returned 1\n"}'; exit 1"#;
    api.run_image("bindery-test/fails", &["sh", "-c", failed_line, "builder"]);
    api.run_image(
        "bindery-test/slow",
        &[
            "sh",
            "-c",
            r#"echo '{"phase": "building", "message": "Step 1/2\n"}'; exec sleep 60"#,
            "builder",
        ],
    );
    let sha = repo.commit(&[("Dockerfile", DOCKERFILE)], &[]);

    // repo2docker fails in the pod: its own failed line, the pod deleted, nothing pushed.
    let data = tempfile::tempdir().unwrap();
    let s =
        Service::planned(config(data.path(), &registry, &api, "bindery-test/fails").await).await;
    let got = build(&s, &repo, &sha).await;
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    assert!(
        got.messages()
            .contains("Error during build: the command returned 1"),
        "{}",
        got.raw
    );
    assert!(api.pods(NS).is_empty(), "the failed pod is deleted");
    drop(s);

    // A builder image that cannot be pulled: the user is told, and the plan's time limit ends it.
    let data = tempfile::tempdir().unwrap();
    let mut c = config(
        data.path(),
        &registry,
        &api,
        "registry.invalid/repo2docker:none",
    )
    .await;
    c.plugins
        .get_mut("layer-first")
        .unwrap()
        .config
        .insert("timeout_secs".into(), "3".into());
    let s = Service::planned(c).await;
    let got = build(&s, &repo, &sha).await;
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    let said = got.messages();
    assert!(said.contains("The build pod is waiting: ErrImagePull: failed to pull image \"registry.invalid/repo2docker:none\""), "{said}");
    assert!(
        said.contains("The build took longer than its limit of 3 s and its pod was deleted."),
        "{said}"
    );
    assert!(api.pods(NS).is_empty());
    drop(s);

    // A builder image the operator did not allow: no pod at all.
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), &registry, &api, "evil.example/r2d:1").await;
    c.build.allowed_builder_images = vec!["quay.io/jupyterhub/repo2docker:*".into()];
    let s = Service::planned(c).await;
    let got = build(&s, &repo, &sha).await;
    assert_eq!(
        got.last()["message"],
        "The build strategy asked for the builder image evil.example/r2d:1, which is not in build.allowed_builder_images.\n",
        "{}",
        got.raw
    );
    assert!(api.pods(NS).is_empty());
    drop(s);

    // The node evicts the pod mid-build.
    let data = tempfile::tempdir().unwrap();
    let s = Service::planned(config(data.path(), &registry, &api, "bindery-test/slow").await).await;
    let url = format!(
        "{}/build/git/{}?build_only=true",
        s.base,
        git_spec(&repo.url, &sha)
    );
    let client = tokio::spawn(async move { sse(&url).await });
    let name = nth_pod(&api, 2).await;
    // Evicted once it has logged, so the log so far is there to relay.
    api.wait_for_log(NS, &name, "Step 1/2").await;
    api.evict(NS, &name);
    let got = client.await.unwrap();
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    let said = got.messages();
    assert!(said.contains("Step 1/2"), "the log so far: {said}");
    assert!(
        said.contains(&format!(
            "The build pod {name} failed: Evicted: The node was low on resource: ephemeral-storage."
        )),
        "{said}"
    );
    assert!(registry_has_none(&s, &got).await);
}

async fn registry_has_none(s: &Service, got: &Stream) -> bool {
    let image = got.events.iter().find_map(|e| e["imageName"].as_str());
    match image {
        Some(image) => s.image_digest(image).await.is_none(),
        None => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleaner_deletes_finished_and_over_age_build_pods_only() {
    let (registry, api, data) = (
        OciRegistry::start(None),
        KubeApi::start().await,
        tempfile::tempdir().unwrap(),
    );
    let old = (chrono::Utc::now() - chrono::Duration::hours(5)).to_rfc3339();
    let young = chrono::Utc::now().to_rfc3339();
    let build_pod = |name: &str, created: &str, status: serde_json::Value| {
        json!({ "metadata": { "name": name, "creationTimestamp": created, "labels": { "name": name, "component": "binderhub-build" } },
            "spec": { "containers": [{ "name": "builder", "image": BUILDER }] }, "status": status })
    };
    api.insert(
        NS,
        build_pod("build-succeeded", &young, json!({ "phase": "Succeeded" })),
    );
    api.insert(
        NS,
        build_pod("build-failed", &young, json!({ "phase": "Failed" })),
    );
    api.insert(
        NS,
        build_pod(
            "build-evicted",
            &young,
            json!({ "phase": "Failed", "reason": "Evicted" }),
        ),
    );
    api.insert(
        NS,
        build_pod("build-stuck", &old, json!({ "phase": "Running" })),
    );
    api.insert(
        NS,
        build_pod("build-running", &young, json!({ "phase": "Running" })),
    );
    api.insert(NS, json!({ "metadata": { "name": "jupyter-someone", "creationTimestamp": old, "labels": { "component": "singleuser-server" } },
        "spec": { "containers": [{ "name": "notebook", "image": "x" }] }, "status": { "phase": "Succeeded" } }));
    let mut c = config(data.path(), &registry, &api, BUILDER).await;
    c.build.kubernetes.as_mut().unwrap().cleaner_interval_secs = 1;
    let _s = Service::planned(c).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.pods(NS).len() > 2 {
        assert!(
            Instant::now() < deadline,
            "the cleaner did not run: {:?}",
            api.pods(NS)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(api.pods(NS), ["build-running", "jupyter-someone"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_build_pod_across_hosts_and_a_sigkilled_restart() {
    let (registry, api, repo) = (
        OciRegistry::start(None),
        KubeApi::start().await,
        TestRepo::new(),
    );
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = gate_dir.path().join("open");
    let script = format!(
        r#"while [ ! -e '{}' ]; do sleep 0.1; done; exec '{}' "$@""#,
        gate.display(),
        engine().repo2docker.display()
    );
    api.run_image("bindery-test/gated", &["sh", "-c", &script, "builder"]);
    let sha = repo.commit(
        &[("Dockerfile", DOCKERFILE), ("notes.md", b"# notes\n")],
        &[],
    );

    // Host A, a real `bindery serve`, starts the build, and is killed while the pod waits.
    let a_dir = tempfile::tempdir().unwrap();
    let mut a_config = config(a_dir.path(), &registry, &api, "bindery-test/gated").await;
    a_config.listen = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let a_base = format!("http://{}", a_config.listen);
    let host_a = Process::start(&a_config, a_dir.path()).await;
    let url = format!(
        "{a_base}/build/git/{}?build_only=true",
        git_spec(&repo.url, &sha)
    );
    let first_client = tokio::spawn({
        let url = url.clone();
        // The stream breaks off when the host dies.
        async move {
            reqwest::Client::new()
                .get(url)
                .header("accept", "text/event-stream")
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()
        }
    });
    let name = nth_pod(&api, 0).await;
    api.wait_for_phase(NS, &name, "Running").await;
    drop(host_a);
    let cut_off = first_client.await.unwrap().unwrap_or_default();
    assert!(!cut_off.contains("\"ready\""), "{cut_off}");

    // Host B (its own cache) asks for the same image: it follows the running pod.
    let b_dir = tempfile::tempdir().unwrap();
    let b =
        Service::planned(config(b_dir.path(), &registry, &api, "bindery-test/gated").await).await;
    let b_url = format!(
        "{}/build/git/{}?build_only=true",
        b.base,
        git_spec(&repo.url, &sha)
    );
    let b_client = tokio::spawn(async move { sse(&b_url).await });

    // Host A again, same data directory: it watches the build it recorded.
    let host_a = Process::start(&a_config, a_dir.path()).await;
    let again_client = tokio::spawn(async move { sse(&url).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(&gate, b"").unwrap();

    let from_b = b_client.await.unwrap();
    assert_eq!(from_b.last()["phase"], "ready", "{}", from_b.raw);
    assert!(
        from_b.messages().contains(&format!(
            "Found build pod {name} already running; following it."
        )),
        "{}",
        from_b.raw
    );
    let from_a = again_client.await.unwrap();
    assert_eq!(from_a.last()["phase"], "ready", "{}", from_a.raw);
    assert_eq!(api.created().len(), 1, "one build pod in all");
    assert!(
        from_a.phases().contains(&"pushing"),
        "the restarted host relays the pod's log: {}",
        from_a.raw
    );
    assert!(
        !from_a.messages().contains("already running"),
        "the restarted host watches the pod it recorded, not a new create: {}",
        from_a.raw
    );
    let image = from_a.last()["imageName"].as_str().unwrap();
    assert!(b.image_digest(image).await.is_some());
    drop(host_a);
    let record = bindery::cache::Cache::open(a_dir.path())
        .unwrap()
        .builds()
        .unwrap()
        .get(image)
        .unwrap()
        .unwrap();
    assert_eq!(
        record.state,
        bindery::cache::BuildState::Built,
        "{record:?}"
    );
    assert_eq!(record.handle.as_deref(), Some(name.as_str()));
}
