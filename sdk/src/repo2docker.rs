//! repo2docker's rules, for build strategies: the buildpack repo2docker would
//! pick for a repository ([`detect`], by repo2docker's own detection order),
//! the plan of a repo2docker build under the operator's settings ([`plan`]),
//! and which files make up the environment it builds ([`environment_files`]).
//!
//! Detection (repo2docker `app.py` order; the first match wins):
//! a legacy `andrewosh/binder-base` Dockerfile (an error), `Dockerfile`,
//! `Project.toml`/`JuliaProject.toml`, `REQUIRE` (an error), `default.nix`,
//! R (a dated `runtime.txt`, or a root `DESCRIPTION` without a binder
//! directory), `environment.yml`/`.yaml`, `Pipfile`/`Pipfile.lock`, Python,
//! then the default buildpack. When `binder/` or `.binder/` exists, config
//! files are read only there; both at once is an error.

use crate::build_strategy::{
    ContainerEngine, Executor, Repo2dockerPlan, RepoFacts, ResourceLimits,
};
use crate::config::PluginConfig;
use crate::types::PluginError;
use crate::{BuildStrategyContext, Context};

/// repo2docker's buildpacks that can build, named as repo2docker names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buildpack {
    /// The repository's own `Dockerfile`.
    Docker,
    /// `Project.toml` / `JuliaProject.toml`.
    JuliaProject,
    /// `default.nix`.
    Nix,
    /// A dated R runtime or a `DESCRIPTION`.
    R,
    /// `environment.yml`.
    Conda,
    /// `Pipfile` / `Pipfile.lock`.
    Pipfile,
    /// `requirements.txt`, `setup.py`, a PEP 517 project, or the default.
    Python,
}

impl Buildpack {
    /// The class name repo2docker logs.
    pub fn name(self) -> &'static str {
        match self {
            Buildpack::Docker => "DockerBuildPack",
            Buildpack::JuliaProject => "JuliaProjectTomlBuildPack",
            Buildpack::Nix => "NixBuildPack",
            Buildpack::R => "RBuildPack",
            Buildpack::Conda => "CondaBuildPack",
            Buildpack::Pipfile => "PipfileBuildPack",
            Buildpack::Python => "PythonBuildPack",
        }
    }
}

/// `runtime.txt`: `name-ver`, `name-ver-YYYY-MM-DD` or `name-YYYY-MM-DD`.
#[derive(Debug, PartialEq, Eq)]
pub struct Runtime {
    /// Lower-cased, e.g. `python` or `r`.
    pub name: String,
    /// e.g. `3.11`.
    pub version: Option<String>,
    /// A snapshot date, `YYYY-MM-DD`.
    pub date: Option<String>,
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Parses `runtime.txt`; none for a form repo2docker does not accept.
pub fn parse_runtime(text: &str) -> Option<Runtime> {
    let text = text.trim();
    let (rest, date) = match text.len().checked_sub(11) {
        Some(cut)
            if text.is_char_boundary(cut)
                && text[cut..].starts_with('-')
                && is_date(&text[cut + 1..]) =>
        {
            (&text[..cut], Some(text[cut + 1..].to_string()))
        }
        _ if is_date(text) => return None,
        _ => (text, None),
    };
    let (name, version) = match rest.split_once('-') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (rest, None),
    };
    (!name.is_empty()).then(|| Runtime {
        name: name.to_lowercase(),
        version,
        date,
    })
}

fn refused(message: impl Into<String>) -> PluginError {
    PluginError::InvalidSpec(message.into())
}

/// The repository as repo2docker sees it: config files come from the binder
/// directory when there is one.
struct Repo<'a, C> {
    ctx: &'a C,
    facts: &'a RepoFacts,
}

impl<C: BuildStrategyContext> Repo<'_, C> {
    fn config_path(&self, name: &str) -> String {
        match &self.facts.binder_dir {
            Some(dir) => format!("{}/{name}", dir.trim_end_matches('/')),
            None => name.to_string(),
        }
    }

    /// A config file exists (in the binder directory when there is one).
    fn has(&self, name: &str) -> bool {
        let files = if self.facts.binder_dir.is_some() {
            &self.facts.binder_files
        } else {
            &self.facts.root_files
        };
        files.iter().any(|f| f == name)
    }

    fn has_root(&self, name: &str) -> bool {
        self.facts.root_files.iter().any(|f| f == name)
    }

    fn read(&self, name: &str) -> String {
        self.ctx
            .read_file(&self.config_path(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn runtime(&self) -> Option<Runtime> {
        self.has("runtime.txt")
            .then(|| parse_runtime(&self.read("runtime.txt")))
            .flatten()
    }
}

/// The buildpack repo2docker picks, or why it would refuse the repository.
pub fn detect(
    ctx: &impl BuildStrategyContext,
    facts: &RepoFacts,
) -> Result<Buildpack, PluginError> {
    if facts.root_files.iter().any(|f| f == "binder/")
        && facts.root_files.iter().any(|f| f == ".binder/")
    {
        return Err(refused(
            "The repository has both binder/ and .binder/ directories; repo2docker refuses to choose. Keep one.",
        ));
    }
    let repo = Repo { ctx, facts };
    if repo.has("Dockerfile") {
        let dockerfile = repo.read("Dockerfile");
        let legacy = dockerfile.lines().any(|l| {
            l.trim_start().to_uppercase().starts_with("FROM") && l.contains("andrewosh/binder-base")
        });
        if legacy {
            return Err(refused(
                "The andrewosh/binder-base Dockerfile (legacy Binder) was removed from repo2docker in January 2020; use a supported configuration.",
            ));
        }
        return Ok(Buildpack::Docker);
    }
    if repo.has("Project.toml") || repo.has("JuliaProject.toml") {
        return Ok(Buildpack::JuliaProject);
    }
    if repo.has("REQUIRE") {
        return Err(refused(
            "Julia REQUIRE no longer supported: use a Project.toml.",
        ));
    }
    if repo.has("default.nix") {
        return Ok(Buildpack::Nix);
    }
    let runtime = repo.runtime();
    let dated_r = runtime
        .as_ref()
        .is_some_and(|r| r.name == "r" && r.date.is_some());
    if dated_r || (facts.binder_dir.is_none() && repo.has_root("DESCRIPTION")) {
        return Ok(Buildpack::R);
    }
    if repo.has("environment.yml") || repo.has("environment.yaml") {
        return Ok(Buildpack::Conda);
    }
    let python_runtime = runtime.as_ref().is_none_or(|r| r.name == "python");
    if (repo.has("Pipfile") || repo.has("Pipfile.lock")) && python_runtime {
        return Ok(Buildpack::Pipfile);
    }
    if runtime.as_ref().is_some_and(|r| r.name == "python") {
        return Ok(Buildpack::Python);
    }
    if python_runtime
        && (repo.has_root("setup.py") || repo.has("requirements.txt") || pep517(&repo))
    {
        return Ok(Buildpack::Python);
    }
    match Settings::read(ctx)?.default_buildpack.as_deref() {
        None | Some("python") => Ok(Buildpack::Python),
        Some("none") => Err(refused(
            "No environment specification found: add a requirements.txt, environment.yml, Dockerfile or another configuration file repo2docker knows.",
        )),
        Some(other) => Err(PluginError::InvalidConfig(format!(
            "default_buildpack must be \"python\" or \"none\", not {other:?}"
        ))),
    }
}

/// A root `pyproject.toml` with both `[project]` and `[build-system]` (only without a binder directory).
fn pep517<C: BuildStrategyContext>(repo: &Repo<'_, C>) -> bool {
    if repo.facts.binder_dir.is_some() || !repo.has_root("pyproject.toml") {
        return false;
    }
    let text = repo.read("pyproject.toml");
    let table = |name: &str| text.lines().any(|l| l.trim() == name);
    table("[project]") && table("[build-system]")
}

/// The builder image when the operator names none (upstream's default).
pub const DEFAULT_BUILDER: &str = "quay.io/jupyterhub/repo2docker:2024.07.0";
/// A build's time limit when the operator sets none.
pub const DEFAULT_TIMEOUT_SECS: u64 = 3600;

crate::config! {
    /// The operator's settings for repo2docker builds, which [`detect`] and
    /// [`plan`] read: a strategy's `Config` (or part of it).
    pub struct Settings {
        /// local (default) or kubernetes
        executor: Option<String>,
        /// the repo2docker image build pods run
        builder_image: String = DEFAULT_BUILDER.into(),
        /// docker (default), podman, kaniko or buildah
        engine: Option<String>,
        /// more repo2docker arguments, separated by spaces
        extra_args: Option<String>,
        /// Dockerfile lines appended to generated builds
        appendix: Option<String>,
        /// stop a build after this long (default 3600)
        timeout_secs: u64 = DEFAULT_TIMEOUT_SECS,
        /// bytes; 0 is unlimited
        memory_limit: u64 = 0,
        /// bytes
        memory_request: u64 = 0,
        /// millicores; 0 is unlimited
        cpu_limit: u32 = 0,
        /// millicores
        cpu_request: u32 = 0,
        /// python (default) or none, for repositories with no configuration
        default_buildpack: Option<String>,
    }
}

/// The plan for `buildpack` under the operator's settings.
pub fn plan(ctx: &impl Context, buildpack: Buildpack) -> Result<Repo2dockerPlan, PluginError> {
    let settings = Settings::read(ctx)?;
    let executor = match settings.executor.as_deref() {
        None | Some("local") => Executor::Local,
        Some("kubernetes") => Executor::Kubernetes,
        Some(other) => {
            return Err(PluginError::InvalidConfig(format!(
                "executor must be \"local\" or \"kubernetes\", not {other:?}"
            )));
        }
    };
    let engine = match settings.engine.as_deref() {
        None | Some("docker") => ContainerEngine::Docker,
        Some("podman") => ContainerEngine::Podman,
        Some("kaniko") => ContainerEngine::Kaniko,
        Some("buildah") => ContainerEngine::Buildah,
        Some(other) => {
            return Err(PluginError::InvalidConfig(format!(
                "engine must be docker, podman, kaniko or buildah, not {other:?}"
            )));
        }
    };
    // repo2docker ignores the appendix for Dockerfile builds: say so rather than pretend.
    let appendix = settings.appendix.filter(|a| !a.trim().is_empty());
    if appendix.is_some() && buildpack == Buildpack::Docker {
        ctx.info("the appendix is not applied: repo2docker builds a repository's own Dockerfile unchanged");
    }
    Ok(Repo2dockerPlan {
        executor,
        builder_image: settings.builder_image,
        engine,
        buildpack: buildpack.name().into(),
        extra_args: settings
            .extra_args
            .map(|a| a.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        env: Vec::new(),
        limits: ResourceLimits {
            memory_limit: settings.memory_limit,
            memory_request: settings.memory_request,
            cpu_limit: settings.cpu_limit,
            cpu_request: settings.cpu_request,
        },
        appendix: appendix.filter(|_| buildpack != Buildpack::Docker),
        timeout_secs: settings.timeout_secs,
        environment_hash: None,
    })
}

/// Config files repo2docker builds an environment from, wherever they apply.
const ENVIRONMENT_FILES: &[&str] = &[
    "Dockerfile",
    ".dockerignore",
    ".containerignore",
    "apt.txt",
    "environment.yml",
    "environment.yaml",
    "requirements.txt",
    "Pipfile",
    "Pipfile.lock",
    "runtime.txt",
    "install.R",
    "DESCRIPTION",
    "setup.py",
    "pyproject.toml",
    "Project.toml",
    "Manifest.toml",
    "JuliaProject.toml",
    "JuliaManifest.toml",
    "default.nix",
    "postBuild",
    "start",
];

/// The files (paths from the repository root, sorted) whose contents decide
/// the environment repo2docker builds: the binder directory's config files
/// when there is one, and the root's otherwise; the ignore files always.
pub fn environment_files(facts: &RepoFacts) -> Vec<String> {
    let mut files: Vec<String> = match &facts.binder_dir {
        Some(dir) => facts
            .binder_files
            .iter()
            .filter(|f| ENVIRONMENT_FILES.contains(&f.as_str()))
            .map(|f| format!("{dir}{f}"))
            .collect(),
        None => Vec::new(),
    };
    let root_always = [".dockerignore", ".containerignore", "setup.py"];
    for f in &facts.root_files {
        if (facts.binder_dir.is_none() && ENVIRONMENT_FILES.contains(&f.as_str()))
            || (facts.binder_dir.is_some() && root_always.contains(&f.as_str()))
        {
            files.push(f.clone());
        }
    }
    files.sort();
    files
}

/// Why the repository's other content goes into the environment too, so a
/// change to any file changes the image repo2docker builds; none when only
/// [`environment_files`] do.
pub fn content_in_environment(
    ctx: &impl BuildStrategyContext,
    facts: &RepoFacts,
    buildpack: Buildpack,
) -> Option<&'static str> {
    let repo = Repo { ctx, facts };
    match buildpack {
        Buildpack::Docker => {
            return Some("a Dockerfile may copy any file of the repository into the image");
        }
        Buildpack::R if facts.binder_dir.is_none() && repo.has_root("DESCRIPTION") => {
            return Some("the repository is an R package, installed into the image");
        }
        Buildpack::Python if repo.has_root("setup.py") || pep517(&repo) => {
            return Some("the repository is a Python package, installed into the image");
        }
        _ => {}
    }
    // A requirement on the repository itself (`-e .`, `.`, `./sub`) installs its content.
    let local = |text: String| {
        text.lines()
            .map(|l| l.trim().trim_start_matches("- ").trim())
            .any(|l| {
                let l = l
                    .strip_prefix("-e")
                    .or_else(|| l.strip_prefix("--editable"))
                    .map_or(l, str::trim);
                l == "." || l.starts_with("./") || l.starts_with("file:")
            })
    };
    let requirements = ["requirements.txt", "environment.yml", "environment.yaml"];
    requirements
        .iter()
        .any(|f| repo.has(f) && local(repo.read(f)))
        .then_some("a requirements file installs the repository itself")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockContext;

    fn facts(root: &[&str], binder_dir: Option<&str>, binder: &[&str]) -> RepoFacts {
        RepoFacts {
            provider: "gh".into(),
            spec: "a/b/HEAD".into(),
            resolved_ref: "0123".into(),
            repo_url: "https://github.com/a/b".into(),
            root_files: root.iter().map(std::string::ToString::to_string).collect(),
            binder_dir: binder_dir.map(String::from),
            binder_files: binder
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            environments: vec![],
        }
    }

    /// (root files, binder dir and its files, file contents, expected buildpack or error text)
    #[test]
    fn every_detection_rule() {
        use Buildpack::*;
        type Case = (
            &'static [&'static str],
            Option<&'static str>,
            &'static [&'static str],
            &'static [(&'static str, &'static str)],
            Result<Buildpack, &'static str>,
        );
        let cases: &[Case] = &[
            (
                &["Dockerfile", "requirements.txt", "environment.yml"],
                None,
                &[],
                &[("Dockerfile", "FROM python:3.12\n")],
                Ok(Docker),
            ),
            (
                &["Dockerfile"],
                None,
                &[],
                &[("Dockerfile", "from andrewosh/binder-base\n")],
                Err("removed from repo2docker in January 2020"),
            ),
            (
                &["Project.toml", "environment.yml"],
                None,
                &[],
                &[],
                Ok(JuliaProject),
            ),
            (&["JuliaProject.toml"], None, &[], &[], Ok(JuliaProject)),
            (
                &["REQUIRE", "requirements.txt"],
                None,
                &[],
                &[],
                Err("Julia REQUIRE no longer supported"),
            ),
            (
                &["REQUIRE", "Project.toml"],
                None,
                &[],
                &[],
                Ok(JuliaProject),
            ),
            (
                &["default.nix", "requirements.txt"],
                None,
                &[],
                &[],
                Ok(Nix),
            ),
            (
                &["runtime.txt", "install.R"],
                None,
                &[],
                &[("runtime.txt", "r-2023-05-01\n")],
                Ok(R),
            ),
            (
                &["runtime.txt"],
                None,
                &[],
                &[("runtime.txt", "r-4.3-2023-05-01")],
                Ok(R),
            ),
            (
                &["runtime.txt", "requirements.txt"],
                None,
                &[],
                &[("runtime.txt", "r-4.3")],
                Err("No environment specification"),
            ),
            // install.R alone does not make an R build (repo2docker#1533).
            (
                &["install.R"],
                None,
                &[],
                &[],
                Err("No environment specification"),
            ),
            (&["DESCRIPTION"], None, &[], &[], Ok(R)),
            (
                &["DESCRIPTION", "binder/"],
                Some("binder/"),
                &["requirements.txt"],
                &[],
                Ok(Python),
            ),
            (
                &["environment.yml", "requirements.txt"],
                None,
                &[],
                &[],
                Ok(Conda),
            ),
            (&["environment.yaml"], None, &[], &[], Ok(Conda)),
            (
                &["Pipfile", "requirements.txt"],
                None,
                &[],
                &[],
                Ok(Pipfile),
            ),
            (&["Pipfile.lock"], None, &[], &[], Ok(Pipfile)),
            (
                &["Pipfile", "runtime.txt"],
                None,
                &[],
                &[("runtime.txt", "python-3.11")],
                Ok(Pipfile),
            ),
            (
                &["Pipfile", "runtime.txt", "requirements.txt"],
                None,
                &[],
                &[("runtime.txt", "julia-1.9")],
                Err("No environment specification"),
            ),
            (&["requirements.txt"], None, &[], &[], Ok(Python)),
            (&["setup.py"], None, &[], &[], Ok(Python)),
            (
                &["runtime.txt"],
                None,
                &[],
                &[("runtime.txt", "python-3.11")],
                Ok(Python),
            ),
            (
                &["pyproject.toml"],
                None,
                &[],
                &[(
                    "pyproject.toml",
                    "[project]\nname = \"x\"\n\n[build-system]\nrequires = []\n",
                )],
                Ok(Python),
            ),
            (
                &["pyproject.toml"],
                None,
                &[],
                &[("pyproject.toml", "[tool.black]\n")],
                Err("No environment specification"),
            ),
            (
                &["README.md"],
                None,
                &[],
                &[],
                Err("No environment specification"),
            ),
            // A binder directory hides the root's config files.
            (
                &["Dockerfile", "binder/"],
                Some("binder/"),
                &["environment.yml"],
                &[],
                Ok(Conda),
            ),
            (
                &["environment.yml", ".binder/"],
                Some(".binder/"),
                &["requirements.txt"],
                &[],
                Ok(Python),
            ),
            (
                &["binder/"],
                Some("binder/"),
                &["Dockerfile"],
                &[("binder/Dockerfile", "FROM x\n")],
                Ok(Docker),
            ),
            (
                &["binder/", ".binder/", "requirements.txt"],
                Some("binder/"),
                &[],
                &[],
                Err("both binder/ and .binder/"),
            ),
            // pyproject.toml counts only without a binder directory; setup.py at the root always.
            (
                &["pyproject.toml", "binder/"],
                Some("binder/"),
                &["apt.txt"],
                &[("pyproject.toml", "[project]\n[build-system]\n")],
                Err("No environment specification"),
            ),
            (
                &["setup.py", "binder/"],
                Some("binder/"),
                &["apt.txt"],
                &[],
                Ok(Python),
            ),
        ];
        for (i, (root, dir, binder, contents, expected)) in cases.iter().enumerate() {
            let mut ctx = MockContext::new().with_config("default_buildpack", "none");
            for (path, text) in *contents {
                ctx = ctx.with_file(path, text.as_bytes());
            }
            let got = detect(&ctx, &facts(root, *dir, binder));
            match (expected, got) {
                (Ok(want), Ok(got)) => {
                    assert_eq!(*want, got, "case {i}: {root:?} {dir:?} {binder:?}");
                }
                (Err(want), Err(PluginError::InvalidSpec(m))) => {
                    assert!(m.contains(want), "case {i}: {m}");
                }
                (want, got) => panic!("case {i}: {root:?}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn the_default_buildpack_is_python_unless_configured_otherwise() {
        let bare = facts(&["README.md"], None, &[]);
        assert_eq!(detect(&MockContext::new(), &bare), Ok(Buildpack::Python));
        let bad = MockContext::new().with_config("default_buildpack", "conda");
        assert!(
            matches!(detect(&bad, &bare), Err(PluginError::InvalidConfig(m)) if m.contains("default_buildpack"))
        );
    }

    #[test]
    fn runtime_txt_forms() {
        let rt = |n: &str, v: Option<&str>, d: Option<&str>| {
            Some(Runtime {
                name: n.into(),
                version: v.map(Into::into),
                date: d.map(Into::into),
            })
        };
        assert_eq!(
            parse_runtime("python-3.10\n"),
            rt("python", Some("3.10"), None)
        );
        assert_eq!(
            parse_runtime("r-4.3-2023-05-01"),
            rt("r", Some("4.3"), Some("2023-05-01"))
        );
        assert_eq!(
            parse_runtime("r-2023-05-01"),
            rt("r", None, Some("2023-05-01"))
        );
        assert_eq!(
            parse_runtime("R-2023-05-01"),
            rt("r", None, Some("2023-05-01"))
        );
        assert_eq!(parse_runtime(""), None);
        assert_eq!(parse_runtime("2023-05-01"), None);
    }

    #[test]
    fn plans_follow_the_operators_settings() {
        let ctx = MockContext::new()
            .with_config("executor", "kubernetes")
            .with_config("builder_image", "registry.example.org/r2d:1")
            .with_config("extra_args", "--Repo2Docker.default_buildpack=None  --DockerEngine.extra_init_args={\"timeout\":1200}")
            .with_config("memory_limit", "2147483648")
            .with_config("cpu_limit", "1000")
            .with_config("appendix", "RUN echo hi");
        let p = plan(&ctx, Buildpack::Conda).unwrap();
        assert_eq!(p.executor, Executor::Kubernetes);
        assert_eq!(p.builder_image, "registry.example.org/r2d:1");
        assert_eq!(p.buildpack, "CondaBuildPack");
        assert_eq!(
            p.extra_args,
            [
                "--Repo2Docker.default_buildpack=None",
                "--DockerEngine.extra_init_args={\"timeout\":1200}"
            ]
        );
        assert_eq!(
            (p.limits.memory_limit, p.limits.cpu_limit),
            (2147483648, 1000)
        );
        assert_eq!(p.appendix.as_deref(), Some("RUN echo hi"));
        assert_eq!(p.timeout_secs, 3600);
        assert_eq!(
            plan(&ctx, Buildpack::Docker).unwrap().appendix,
            None,
            "repo2docker ignores the appendix for Dockerfiles"
        );
        let defaults = plan(&MockContext::new(), Buildpack::Python).unwrap();
        assert_eq!(
            (
                defaults.executor,
                defaults.engine,
                defaults.builder_image.as_str()
            ),
            (Executor::Local, ContainerEngine::Docker, DEFAULT_BUILDER)
        );
        for (key, value) in [
            ("executor", "cloud"),
            ("engine", "rkt"),
            ("timeout_secs", "an hour"),
            ("memory_limit", "2G"),
        ] {
            let e = plan(
                &MockContext::new().with_config(key, value),
                Buildpack::Python,
            )
            .unwrap_err();
            assert!(
                matches!(&e, PluginError::InvalidConfig(m) if m.contains(key)),
                "{key}: {e:?}"
            );
        }
    }

    #[test]
    fn environment_files_and_content_dependence() {
        let root = facts(
            &[
                "README.md",
                "requirements.txt",
                "postBuild",
                "data.csv",
                ".dockerignore",
            ],
            None,
            &[],
        );
        assert_eq!(
            environment_files(&root),
            [".dockerignore", "postBuild", "requirements.txt"]
        );
        let binder = facts(
            &["requirements.txt", "binder/", "setup.py"],
            Some("binder/"),
            &["environment.yml", "notes.md"],
        );
        assert_eq!(
            environment_files(&binder),
            ["binder/environment.yml", "setup.py"]
        );

        let ctx = MockContext::new().with_file("requirements.txt", b"numpy\n");
        assert_eq!(content_in_environment(&ctx, &root, Buildpack::Python), None);
        for text in ["-e .\n", "numpy\n./pkg\n", "--editable .\n", "file:./x\n"] {
            let ctx = MockContext::new().with_file("requirements.txt", text.as_bytes());
            assert!(
                content_in_environment(&ctx, &root, Buildpack::Python).is_some(),
                "{text}"
            );
        }
        let conda = facts(&["environment.yml"], None, &[]);
        let ctx = MockContext::new()
            .with_file("environment.yml", b"dependencies:\n  - pip:\n    - -e .\n");
        assert!(content_in_environment(&ctx, &conda, Buildpack::Conda).is_some());
        assert!(
            content_in_environment(
                &MockContext::new(),
                &facts(&["setup.py"], None, &[]),
                Buildpack::Python
            )
            .is_some()
        );
        assert!(
            content_in_environment(
                &MockContext::new(),
                &facts(&["Dockerfile"], None, &[]),
                Buildpack::Docker
            )
            .is_some()
        );
        assert!(
            content_in_environment(
                &MockContext::new(),
                &facts(&["DESCRIPTION"], None, &[]),
                Buildpack::R
            )
            .is_some()
        );
    }
}
