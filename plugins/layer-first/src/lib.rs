//! The `layer-first` build strategy. repo2docker builds an environment from a
//! few config files, then copies the repository in; most commits change only
//! the content. This strategy hashes the environment files (and the settings
//! that shape the build): when the host has an image of this repository built
//! from the same hash, the plan is a layer build, which appends the new
//! content to that image with no engine and no rebuild. Otherwise it plans
//! the repo2docker build the `repo2docker` strategy would, naming the hash so
//! the host remembers the image as an environment for the next commit.
//!
//! Repositories whose content goes into the environment (a package installed
//! from the repository, `-e .` requirements, a Dockerfile, which may copy any
//! file) are always built in full, unless `layer_dockerfile = "true"` says
//! the deployment's Dockerfiles copy the repository to `repo_dir` and nothing
//! else depends on it.
use bindery_sdk::prelude::*;
use bindery_sdk::repo2docker::{self, Buildpack};
use sha2::{Digest, Sha256};

pub struct LayerFirst;

/// Where repo2docker puts the repository (`REPO_DIR`, the user's home).
const DEFAULT_REPO_DIR: &str = "/home/jovyan";
/// The user BinderHub builds with (`--user-id=1000`).
const DEFAULT_UID: u32 = 1000;

/// The hash of everything that decides the environment: the buildpack, the
/// environment files' paths and contents, and the operator's build settings.
pub fn environment_hash(
    ctx: &impl BuildStrategyContext,
    facts: &RepoFacts,
    plan: &Repo2dockerPlan,
) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(plan.buildpack.as_bytes());
    field(plan.builder_image.as_bytes());
    field(plan.extra_args.join("\0").as_bytes());
    field(plan.appendix.as_deref().unwrap_or("").as_bytes());
    for path in repo2docker::environment_files(facts) {
        field(path.as_bytes());
        field(&ctx.read_file(&path).unwrap_or_default());
    }
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

bindery_sdk::config! {
    /// The layer builds' settings (beside repo2docker's).
    pub struct Layers {
        /// where the image holds the repository (default /home/jovyan)
        repo_dir: String = DEFAULT_REPO_DIR.into(),
        /// owner of the repository's files (default 1000)
        uid: u32 = DEFAULT_UID,
        /// true: Dockerfile repositories get layer builds too (their Dockerfile copies the repository to repo_dir)
        layer_dockerfile: bool = false,
        /// time limit of a layer build (default: the host's)
        layer_timeout_secs: u64 = 0,
    }
}

fn layer_allowed(
    ctx: &impl BuildStrategyContext,
    facts: &RepoFacts,
    buildpack: Buildpack,
) -> Result<Option<&'static str>, PluginError> {
    let dockerfile_ok = Layers::read(ctx)?.layer_dockerfile;
    Ok(
        match repo2docker::content_in_environment(ctx, facts, buildpack) {
            Some(_) if buildpack == Buildpack::Docker && dockerfile_ok => None,
            reason => reason,
        },
    )
}

impl BuildStrategy for LayerFirst {
    type Config = (repo2docker::Settings, Layers);

    fn plan(ctx: &impl BuildStrategyContext, facts: RepoFacts) -> Result<BuildPlan, PluginError> {
        let buildpack = repo2docker::detect(ctx, &facts)?;
        let mut full = repo2docker::plan(ctx, buildpack)?;
        if let Some(reason) = layer_allowed(ctx, &facts, buildpack)? {
            ctx.info(&format!(
                "{}@{}: {}, built in full: {reason}",
                facts.repo_url,
                facts.resolved_ref,
                buildpack.name()
            ));
            return Ok(BuildPlan::Repo2docker(full));
        }
        let hash = environment_hash(ctx, &facts, &full);
        let Some(environment) = facts
            .environments
            .iter()
            .find(|e| e.environment_hash == hash)
        else {
            ctx.info(&format!(
                "{}@{}: {}, no image of environment {}: built in full",
                facts.repo_url,
                facts.resolved_ref,
                buildpack.name(),
                &hash[..12]
            ));
            full.environment_hash = Some(hash);
            return Ok(BuildPlan::Repo2docker(full));
        };
        let Layers {
            repo_dir: target_dir,
            uid,
            layer_timeout_secs,
            ..
        } = Layers::read(ctx)?;
        if !target_dir.starts_with('/') {
            return Err(PluginError::InvalidConfig(format!(
                "repo_dir must be an absolute path, not {target_dir:?}"
            )));
        }
        ctx.info(&format!(
            "{}@{}: content-only change since {}: a layer on {}",
            facts.repo_url, facts.resolved_ref, environment.resolved_ref, environment.image
        ));
        Ok(BuildPlan::Layer(LayerPlan {
            environment_image: environment.image.clone(),
            environment_hash: hash,
            base_ref: Some(environment.resolved_ref.clone()),
            target_dir,
            uid,
            gid: uid,
            timeout_secs: layer_timeout_secs,
        }))
    }
}

bindery_sdk::export_build_strategy!(LayerFirst);

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_sdk::testing::MockContext;

    fn facts(root: &[&str], environments: Vec<EnvironmentImage>) -> RepoFacts {
        RepoFacts {
            provider: "git".into(),
            spec: "x/HEAD".into(),
            resolved_ref: "b".repeat(40),
            repo_url: "https://example.org/r.git".into(),
            root_files: root.iter().map(std::string::ToString::to_string).collect(),
            binder_dir: None,
            binder_files: vec![],
            environments,
        }
    }

    fn environment(hash: &str) -> EnvironmentImage {
        EnvironmentImage {
            image: "reg/binder-r:aaaa".into(),
            environment_hash: hash.into(),
            resolved_ref: "a".repeat(40),
            built_ms: 1,
        }
    }

    fn plan(ctx: &MockContext, facts: RepoFacts) -> BuildPlan {
        LayerFirst::plan(ctx, facts).unwrap()
    }

    #[test]
    fn a_known_environment_gets_a_layer_and_an_unknown_one_a_named_full_build() {
        let ctx = MockContext::new().with_file("requirements.txt", b"numpy\n");
        let BuildPlan::Repo2docker(first) =
            plan(&ctx, facts(&["requirements.txt", "a.ipynb"], vec![]))
        else {
            panic!("a full build first")
        };
        let hash = first
            .environment_hash
            .expect("the hash is named so the image is remembered");
        let BuildPlan::Layer(layer) = plan(
            &ctx,
            facts(
                &["requirements.txt", "b.ipynb"],
                vec![environment("other"), environment(&hash)],
            ),
        ) else {
            panic!("same environment files: a layer")
        };
        assert_eq!(
            (layer.environment_image.as_str(), layer.base_ref.as_deref()),
            ("reg/binder-r:aaaa", Some("a".repeat(40).as_str()))
        );
        assert_eq!(
            (layer.target_dir.as_str(), layer.uid, layer.gid),
            ("/home/jovyan", 1000, 1000)
        );

        let changed = MockContext::new().with_file("requirements.txt", b"numpy\npandas\n");
        let BuildPlan::Repo2docker(p) = plan(
            &changed,
            facts(&["requirements.txt"], vec![environment(&hash)]),
        ) else {
            panic!("changed requirements: full")
        };
        assert_ne!(p.environment_hash.as_deref(), Some(hash.as_str()));
        let settings = ctx.clone().with_config("appendix", "RUN echo x");
        assert!(
            matches!(
                plan(
                    &settings,
                    facts(&["requirements.txt"], vec![environment(&hash)])
                ),
                BuildPlan::Repo2docker(_)
            ),
            "settings are part of the environment"
        );
    }

    #[test]
    fn content_in_the_environment_means_full_builds() {
        let ctx = MockContext::new().with_file("Dockerfile", b"FROM base\nCOPY . /home/jovyan\n");
        let BuildPlan::Repo2docker(p) = plan(&ctx, facts(&["Dockerfile"], vec![])) else {
            panic!()
        };
        assert_eq!(p.environment_hash, None, "a Dockerfile may copy anything");
        let opted = ctx.clone().with_config("layer_dockerfile", "true");
        let BuildPlan::Repo2docker(p) = plan(&opted, facts(&["Dockerfile"], vec![])) else {
            panic!()
        };
        let hash = p.environment_hash.expect("opted in");
        assert!(matches!(
            plan(
                &opted,
                facts(&["Dockerfile", "new.md"], vec![environment(&hash)])
            ),
            BuildPlan::Layer(_)
        ));
        let e = LayerFirst::plan(
            &ctx.clone().with_config("layer_dockerfile", "yes"),
            facts(&["Dockerfile"], vec![]),
        )
        .unwrap_err();
        assert!(matches!(e, PluginError::InvalidConfig(m) if m.contains("layer_dockerfile")));
        let BuildPlan::Repo2docker(p) = plan(&MockContext::new(), facts(&["setup.py"], vec![]))
        else {
            panic!()
        };
        assert_eq!(
            p.environment_hash, None,
            "a package installed from the repository"
        );
        let bad = MockContext::new()
            .with_config("repo_dir", "home")
            .with_file("requirements.txt", b"x\n");
        let BuildPlan::Repo2docker(p) = plan(&bad, facts(&["requirements.txt"], vec![])) else {
            panic!()
        };
        let e = LayerFirst::plan(
            &bad,
            facts(
                &["requirements.txt"],
                vec![environment(&p.environment_hash.unwrap())],
            ),
        )
        .unwrap_err();
        assert!(matches!(e, PluginError::InvalidConfig(m) if m.contains("repo_dir")));
    }
}
