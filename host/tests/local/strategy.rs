//! The bundled `repo2docker` build strategy, loaded from the embedded
//! defaults, planning real checkouts on disk through the `repo-files` capability.

use crate::support;

use std::path::Path;

use bindery::build::BuildRequest;
use bindery::build::strategy::{PlanError, plan, repo_facts};
use bindery::cache::Environment;
use bindery::config::Config;
use bindery_runtime::PluginHost;
use bindery_runtime::bindings::{BuildPlan, Executor};

fn resolved() -> BuildRequest {
    BuildRequest {
        image: "reg/binder-a-b:0123456789abcdef0123456789abcdef01234567".into(),
        build_name: "build-a-b".into(),
        provider: "gh".into(),
        spec: "a/b/HEAD".into(),
        resolved_ref: "0123456789abcdef0123456789abcdef01234567".into(),
        repo_url: "https://github.com/a/b".into(),
        build_slug: "x".into(),
        resolved_spec: "x".into(),
        ref_url: "x".into(),
        immutable: true,
        repo_config: Default::default(),
        credential: None,
    }
}

fn checkout(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    dir
}

async fn host(data: &Path, settings: &[(&str, &str)]) -> std::sync::Arc<PluginHost> {
    let mut config = Config::load(None).unwrap();
    config.data_dir = data.to_path_buf();
    config.plugin_runtime.compile_cache_dir =
        Some(support::test_target_dir().join("compile-cache"));
    for (name, p) in &mut config.plugins {
        p.enabled = name == "repo2docker" || name == "layer-first";
    }
    for (k, v) in settings {
        let (name, k) = k.split_once('.').unwrap_or(("repo2docker", k));
        let strategy = config.plugins.get_mut(name).expect("bundled by default");
        strategy
            .config
            .insert(k.to_string(), toml::Value::String(v.to_string()));
    }
    PluginHost::start(&config)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_strategy_plans_real_checkouts() {
    let data = tempfile::tempdir().unwrap();
    let plugins = host(
        data.path(),
        &[("executor", "kubernetes"), ("timeout_secs", "900")],
    )
    .await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("requirements.txt", "numpy\n")], "PythonBuildPack"),
        (
            &[
                ("environment.yml", "dependencies: [numpy]\n"),
                ("requirements.txt", ""),
            ],
            "CondaBuildPack",
        ),
        // The binder directory hides the root's Dockerfile; runtime.txt is read through repo-files.
        (
            &[
                ("Dockerfile", "FROM x\n"),
                ("binder/runtime.txt", "r-2024-01-15\n"),
            ],
            "RBuildPack",
        ),
        (&[(".binder/Dockerfile", "FROM base\n")], "DockerBuildPack"),
        (
            &[(
                "pyproject.toml",
                "[project]\nname = \"p\"\n[build-system]\nrequires = [\"hatchling\"]\n",
            )],
            "PythonBuildPack",
        ),
    ];
    for (files, buildpack) in cases {
        let dir = checkout(files);
        match plan(&plugins, "repo2docker", &resolved(), dir.path(), &[]).await {
            Ok(BuildPlan::Repo2docker(p)) => {
                assert_eq!(p.buildpack, *buildpack, "{files:?}");
                assert_eq!(p.executor, Executor::Kubernetes);
                assert_eq!(p.timeout_secs, 900);
            }
            other => panic!("{files:?}: {other:?}"),
        }
    }
    let facts = repo_facts(
        checkout(&[("binder/apt.txt", ""), ("README.md", "")]).path(),
        &resolved(),
        &[],
    )
    .unwrap();
    assert_eq!(facts.root_files, ["README.md", "binder/"]);
    assert_eq!(
        (facts.binder_dir.as_deref(), facts.binder_files.as_slice()),
        (Some("binder/"), ["apt.txt".to_string()].as_slice())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_misconfiguration_are_clear() {
    let data = tempfile::tempdir().unwrap();
    let plugins = host(data.path(), &[]).await;
    let both = checkout(&[
        ("binder/requirements.txt", ""),
        (".binder/requirements.txt", ""),
    ]);
    let e = plan(&plugins, "repo2docker", &resolved(), both.path(), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, PlanError::Refused(m) if m.contains("both binder/ and .binder/")),
        "{e:?}"
    );
    let legacy = checkout(&[("Dockerfile", "FROM andrewosh/binder-base\n")]);
    let e = plan(&plugins, "repo2docker", &resolved(), legacy.path(), &[])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("January 2020"), "{e}");

    let misconfigured = host(tempfile::tempdir().unwrap().path(), &[("engine", "rkt")]).await;
    let e = plan(
        &misconfigured,
        "repo2docker",
        &resolved(),
        checkout(&[("requirements.txt", "")]).path(),
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "build strategy `repo2docker` failed: its configuration is wrong: engine must be docker, podman, kaniko or buildah, not \"rkt\""
    );
    let e = plan(&plugins, "no-such-strategy", &resolved(), both.path(), &[])
        .await
        .unwrap_err();
    assert!(matches!(e, PlanError::Failed { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_first_plans_a_layer_for_a_known_environment_and_invalid_plans_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let plugins = host(data.path(), &[]).await;
    let first = checkout(&[("requirements.txt", "numpy\n"), ("a.ipynb", "{}")]);
    let hash = match plan(&plugins, "layer-first", &resolved(), first.path(), &[]).await {
        Ok(BuildPlan::Repo2docker(p)) => p
            .environment_hash
            .expect("an environment the host should remember"),
        other => panic!("{other:?}"),
    };
    let known = [Environment {
        image: "reg/binder-a-b:aaaa".into(),
        hash: hash.clone(),
        resolved_ref: "a".repeat(40),
        built_ms: 1,
        listing: None,
    }];
    let second = checkout(&[("requirements.txt", "numpy\n"), ("b.ipynb", "{}")]);
    match plan(&plugins, "layer-first", &resolved(), second.path(), &known).await {
        Ok(BuildPlan::Layer(p)) => assert_eq!(
            (p.environment_image.as_str(), p.base_ref.as_deref(), p.uid),
            ("reg/binder-a-b:aaaa", Some("a".repeat(40).as_str()), 1000)
        ),
        other => panic!("{other:?}"),
    }

    // Plans the host will not run, from real plugins misconfigured.
    let pushing = host(
        tempfile::tempdir().unwrap().path(),
        &[("extra_args", "--push --debug")],
    )
    .await;
    let e = plan(&pushing, "repo2docker", &resolved(), second.path(), &[])
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with(
            "build strategy `repo2docker` returned an invalid plan: extra argument \"--push\" is not one a plan may give (as --name=value: --build-arg,"
        ),
        "{e}"
    );
    let rooted = host(
        tempfile::tempdir().unwrap().path(),
        &[("layer-first.uid", "0")],
    )
    .await;
    let e = plan(&rooted, "layer-first", &resolved(), second.path(), &known)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, PlanError::Invalid { message, .. } if message.contains("root")),
        "{e:?}"
    );
}
