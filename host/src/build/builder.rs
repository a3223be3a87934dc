//! The host's build executor: fetch the revision, ask the configured build
//! strategy for a plan, run it on the executor it names, verify the image is
//! in the registry, and remember environment images for later layer builds.
//! A layer plan whose base is gone (the environment image deleted, its
//! revision force-pushed away) is forgotten and the strategy asked again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bindery_runtime::PluginHost;
use bindery_runtime::bindings::{
    BuildPlan, ContentSource, Executor, FilesContent, GitContent, LayerPlan, RefLifetime,
    Repo2dockerPlan, Resolution, secrets,
};
use bindery_runtime::config::PluginSource;
use bindery_runtime::egress::{EgressError, GitRemote, GitUrlError};
use bindery_runtime::gitwire::{GitWire, WireLimits};
use futures_util::future::BoxFuture;

use super::checkout::{Checkout, CheckoutError, FetchLimits};
use super::kubernetes::{KubernetesExecutor, PodEnd};
use super::layer::{self, LayerError};
use super::local::{LocalExecutor, Orphan};
use super::strategy::{self, PlanError};
use super::{BuildExecutor, BuildFailure, BuildLogSender, BuildRequest, BuilderInfo, Built, say};
use crate::cache::{BuildRecord, Environment, Environments};
use crate::config::{Config, ConfigError};
use crate::metrics::{Metrics, without_credentials};
use crate::now_ms;
use crate::registry::Registry;

/// Beside a local build: the environment hash its plan named.
const ENVIRONMENT_FILE: &str = "environment-hash";

/// How the executors read fetched content.
enum Source {
    /// A public git remote: repo2docker fetches it itself, as upstream's does.
    Remote,
    /// A private git remote. The local executor builds the host's checkout,
    /// so the credential stays with the host; a build pod clones with it,
    /// as upstream's `git_credentials` (`GIT_CREDENTIAL_ENV` lines).
    Private {
        /// The host's checkout.
        dir: PathBuf,
        /// `username=…\npassword=…`, the newline written as `\n` for the
        /// builder image's `echo -e` helper, as upstream writes it.
        credentials: String,
    },
    /// Content the host fetched (a data record): repo2docker builds the
    /// directory; a build pod fetches the record itself, as upstream's does,
    /// when repo2docker knows the service.
    Data {
        /// The host's fetched content.
        dir: PathBuf,
        /// Whether repo2docker's own content providers fetch `repo_url`.
        by_repo2docker: bool,
    },
}

impl Source {
    /// The directory a local repo2docker builds, when not the remote.
    fn local_dir(&self) -> Option<&Path> {
        match self {
            Source::Remote => None,
            Source::Private { dir, .. } | Source::Data { dir, .. } => Some(dir),
        }
    }
}

/// A revision fetched for a build.
struct Fetched {
    checkout: Checkout,
    source: Source,
    /// Whose environment images a layer build may start from: the git
    /// remote, or the data record's series.
    environments: String,
}

/// Plans with a strategy plugin, builds with the executor the plan names.
pub struct Builder {
    plugins: Arc<PluginHost>,
    strategy: String,
    work_dir: PathBuf,
    limits: FetchLimits,
    default_timeout: Duration,
    allowed_builder_images: Vec<String>,
    registry: Arc<Registry>,
    environments: Option<Environments>,
    local: LocalExecutor,
    kubernetes: Option<KubernetesExecutor>,
    metrics: Arc<Metrics>,
    /// The builder image, when the strategy's settings send builds to pods.
    pod_image: Option<String>,
}

/// repo2docker's image when a strategy's settings name none: the SDK's
/// `repo2docker::DEFAULT_BUILDER`, upstream's `build_image`.
const DEFAULT_BUILDER_IMAGE: &str = "quay.io/jupyterhub/repo2docker:2024.07.0";

/// The image build pods run, when the default strategy's settings (the
/// SDK's `repo2docker::Settings` keys, which the bundled strategies read)
/// send builds to pods.
fn pod_image(config: &Config) -> Option<String> {
    let settings = &config.plugins.get(&config.build.strategy)?.config;
    let setting = |key: &str| settings.get(key).and_then(toml::Value::as_str);
    (setting("executor") == Some("kubernetes")).then(|| {
        setting("builder_image")
            .unwrap_or(DEFAULT_BUILDER_IMAGE)
            .to_string()
    })
}

impl Builder {
    /// A builder for `config`'s `[build]`, pushing to `registry`.
    pub fn new(
        config: &Config,
        plugins: Arc<PluginHost>,
        registry: Arc<Registry>,
        environments: Option<Environments>,
        metrics: Arc<Metrics>,
    ) -> Result<Builder, ConfigError> {
        let b = &config.build;
        let kubernetes = b
            .kubernetes
            .as_ref()
            .map(|k| KubernetesExecutor::new(k, &config.registry))
            .transpose()?;
        Ok(Builder {
            plugins,
            strategy: b.strategy.clone(),
            work_dir: config.build_dir(),
            limits: FetchLimits {
                max_bytes: b.max_repo_bytes,
                max_files: b.max_repo_files,
                max_file_bytes: b.max_file_bytes,
                timeout: Duration::from_secs(b.fetch_timeout_secs),
            },
            default_timeout: Duration::from_secs(b.timeout_secs),
            allowed_builder_images: b.allowed_builder_images.clone(),
            registry,
            environments,
            local: LocalExecutor::new(&b.local, &config.registry),
            kubernetes,
            metrics,
            pod_image: pod_image(config),
        })
    }

    /// The build pod cleaner, when `[build.kubernetes]` is set. The caller runs it.
    pub fn cleaner(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        self.kubernetes.as_ref().map(KubernetesExecutor::cleaner)
    }

    async fn run(
        &self,
        request: &BuildRequest,
        dir: &Path,
        log: &BuildLogSender,
    ) -> Result<Built, BuildFailure> {
        say(
            log,
            "fetching",
            format!(
                "Fetching {} at {}\n",
                without_credentials(&request.repo_url),
                request.resolved_ref
            ),
        )
        .await;
        let (request, fetched) = self.fetch(request, dir).await?;
        let request = &request;
        let Fetched {
            mut checkout,
            source,
            environments: key,
        } = fetched;
        // A private build's environments are not offered to anyone else's
        // builds, nor theirs to it: a layer carries the content before it.
        let key = if request.credential.is_some() {
            format!("private/{key}")
        } else {
            key
        };
        // At most one re-plan: after a base that is gone has been forgotten.
        for attempt in 0..2 {
            let environments = self.environments(&key);
            let plan = strategy::plan(
                &self.plugins,
                &self.strategy,
                request,
                &checkout.dir,
                &environments,
            )
            .await
            .map_err(|e| match e {
                PlanError::Refused(m) => BuildFailure::new(m),
                other => BuildFailure::new(other),
            })?;
            let started = Instant::now();
            match plan {
                BuildPlan::Repo2docker(plan) => {
                    // What a layer on this image whites out, for content with no history.
                    let listing = (matches!(source, Source::Data { .. })
                        && plan.environment_hash.is_some())
                    .then(|| layer::listing(&checkout));
                    let built = self.repo2docker(request, &plan, &source, dir, log).await;
                    self.observe(executor_name(plan.executor), started, built.is_ok());
                    if built.is_ok()
                        && let Some(hash) = &plan.environment_hash
                    {
                        self.remember_environment(
                            &key,
                            request,
                            hash,
                            listing.and_then(Result::ok),
                        );
                    }
                    return built;
                }
                BuildPlan::Layer(plan) => {
                    let base = environments
                        .iter()
                        .find(|e| e.image == plan.environment_image)
                        .and_then(|e| e.listing.clone());
                    let (built, back) = self.layer(request, &plan, checkout, base, dir, log).await;
                    self.observe("layer", started, built.is_ok());
                    match built {
                        Ok(built) => return Ok(built),
                        Err(LayerError::BaseGone(why)) if attempt == 0 => {
                            say(
                                log,
                                "building",
                                format!(
                                    "Cannot build on {}: {why}; planning again without it.\n",
                                    plan.environment_image
                                ),
                            )
                            .await;
                            self.forget(&key, &plan.environment_image);
                            checkout = back;
                        }
                        Err(e) => {
                            return Err(BuildFailure::new(format!("The layer build failed: {e}")));
                        }
                    }
                }
            }
        }
        Err(BuildFailure::new(
            "The build strategy planned a layer build on an image that is gone, twice.",
        ))
    }

    /// Asks the provider how the revision is fetched, and fetches it: a git
    /// remote over the provider's wire, anything else through its grants
    /// (see [`super::fetch`]). The request comes back with a git remote's
    /// URL as checked, and how the executors should read the content.
    async fn fetch(
        &self,
        request: &BuildRequest,
        dir: &Path,
    ) -> Result<(BuildRequest, Fetched), BuildFailure> {
        let plugin = self.plugins.get(&request.provider);
        let source = match &plugin {
            Some(_) => {
                let resolution = Resolution {
                    resolved_ref: request.resolved_ref.clone(),
                    repo_url: request.repo_url.clone(),
                    build_slug: request.build_slug.clone(),
                    resolved_spec: request.resolved_spec.clone(),
                    ref_url: request.ref_url.clone(),
                    lifetime: if request.immutable {
                        RefLifetime::Immutable
                    } else {
                        RefLifetime::Moving
                    },
                    notices: Vec::new(),
                };
                match self
                    .plugins
                    .content_with(&request.provider, &resolution, request.credential.as_ref())
                    .await
                {
                    Ok(Ok(source)) => source,
                    Ok(Err(e)) => {
                        return Err(BuildFailure::new(format!(
                            "The {} provider cannot say how to fetch {}: {}",
                            request.provider,
                            request.repo_url,
                            bindery_runtime::plugin_error_text(&e)
                        )));
                    }
                    Err(e) => {
                        return Err(BuildFailure::new(format!(
                            "The {} provider failed: {e}",
                            request.provider
                        )));
                    }
                }
            }
            // A provider unloaded since the resolution: its repository is a git remote, as before 0.2.0.
            None => ContentSource::Git(GitContent {
                url: request.repo_url.clone(),
                revision: request.resolved_ref.clone(),
                auth: None,
            }),
        };
        let limits = self.limits;
        let (request, checkout, source, key) = match source {
            ContentSource::Git(git) => {
                let (remote, wire) = self.check_egress(request, plugin.as_deref(), &git).await?;
                let credentials = remote
                    .basic_auth()
                    .map(|(user, password)| format!("username={user}\\npassword={password}"));
                let (url, reference, checkout_dir) = (
                    remote.as_str().to_string(),
                    git.revision.clone(),
                    dir.join("repo"),
                );
                let on_the_wire = WireLimits {
                    timeout: limits.timeout,
                    max_bytes: limits.max_bytes,
                };
                let checkout = wire
                    .run(&remote, on_the_wire, move || {
                        Checkout::fetch(&url, &reference, &checkout_dir, limits)
                    })
                    .await
                    .map_err(|e| {
                        BuildFailure::new(CheckoutError::at_wire(remote.as_str(), limits, e))
                    })?
                    .map_err(BuildFailure::new)?;
                // From here on the URL is the one checked, as it was parsed.
                let request = BuildRequest {
                    repo_url: remote.as_str().to_string(),
                    resolved_ref: git.revision,
                    ..request.clone()
                };
                let source = match credentials {
                    Some(credentials) => Source::Private {
                        dir: checkout.dir.clone(),
                        credentials,
                    },
                    None => Source::Remote,
                };
                let key = request.repo_url.clone();
                (request, checkout, source, key)
            }
            other => {
                let plugin = plugin
                    .as_deref()
                    .expect("only a loaded provider returns content other than git");
                let checkout = super::fetch::data(
                    plugin,
                    request.credential.as_deref(),
                    &other,
                    &request.repo_url,
                    dir,
                    limits,
                )
                .await
                .map_err(BuildFailure::new)?;
                let source = Source::Data {
                    dir: checkout.dir.clone(),
                    by_repo2docker: repo2docker_fetches(plugin),
                };
                // Images of the record's other versions, else of this one only.
                let key = match &other {
                    ContentSource::Files(FilesContent {
                        series: Some(series),
                        ..
                    }) => format!("{}:{series}", request.provider),
                    _ => request.repo_url.clone(),
                };
                (request.clone(), checkout, source, key)
            }
        };
        Ok((
            request,
            Fetched {
                checkout,
                source,
                environments: key,
            },
        ))
    }

    /// Follows a local repo2docker a killed Bindery left building, to its end.
    async fn follow_orphan(
        &self,
        record: &BuildRecord,
        orphan: Orphan,
        log: BuildLogSender,
    ) -> Result<Built, BuildFailure> {
        let _dir = BuildDir(orphan.dir().to_path_buf());
        say(
            &log,
            "building",
            format!(
                "Bindery restarted during this build; following repo2docker (pid {}) from here\n",
                orphan.pid()
            ),
        )
        .await;
        let said_failed = orphan
            .follow(&log, self.default_timeout, self.local.runnable_early())
            .await?;
        match self.verify(&record.image).await {
            Ok(built) if !said_failed => {
                if let Ok(hash) = std::fs::read_to_string(orphan.dir().join(ENVIRONMENT_FILE))
                    && let Some(environments) = &self.environments
                {
                    let environment = Environment {
                        image: record.image.clone(),
                        hash,
                        resolved_ref: record.resolved_ref.clone(),
                        built_ms: now_ms(),
                        listing: None,
                    };
                    if let Err(e) = environments.put(&record.repo_url, environment) {
                        tracing::warn!(image = %record.image, "cannot remember the environment image: {e}");
                    }
                }
                Ok(built)
            }
            _ => Err(BuildFailure::new(
                "The build was interrupted by a restart of Bindery and did not push its image; try again.",
            )),
        }
    }

    /// The repository is fetched only from addresses its provider may reach:
    /// public ones, and the provider's `private_networks`. A spec cannot make
    /// the host fetch from loopback, cloud metadata or a private network.
    /// The remote as parsed, and the provider's wire to fetch it over; an
    /// address the provider may not reach is refused here, in words that
    /// name the grant.
    async fn check_egress(
        &self,
        request: &BuildRequest,
        plugin: Option<&bindery_runtime::LoadedPlugin>,
        git: &GitContent,
    ) -> Result<(GitRemote, Arc<GitWire>), BuildFailure> {
        let refused = |why: String| {
            BuildFailure::new(format!(
                "Bindery does not fetch {}: {why}",
                without_credentials(&git.url)
            ))
        };
        let mut remote = GitRemote::parse(&git.url).map_err(|e| match e {
            GitUrlError::Scheme(_) => BuildFailure::new(CheckoutError::NotGit {
                url: git.url.clone(),
            }),
            other => refused(other.to_string()),
        })?;
        if let Some(auth) = &git.auth {
            let plugin = plugin.expect("only a loaded provider names a credential");
            if remote.scheme() == "git" {
                return Err(refused(
                    "the git protocol carries no credentials; use https".into(),
                ));
            }
            let password = plugin
                .secret(&auth.password_secret, request.credential.as_deref())
                .map_err(|e| {
                    BuildFailure::new(format!(
                        "The {} provider's credential for {} cannot be used: {}",
                        request.provider,
                        without_credentials(&git.url),
                        match e {
                            secrets::SecretError::NotGranted(n) =>
                                format!("the secret `{n}` is not granted to it"),
                            secrets::SecretError::Missing(n) =>
                                format!("the secret `{n}` has no value"),
                        }
                    ))
                })?;
            remote = remote.with_basic_auth(auth.username.clone(), password);
        }
        let wire = plugin.map_or_else(|| GitWire::new(Arc::default()), |p| p.git_wire().clone());
        match wire.egress().resolve(remote.host(), remote.port()).await {
            Ok(_) => Ok((remote, wire)),
            Err(EgressError::Denied(d)) => Err(refused(format!(
                "{d} (the `{}` provider's `private_networks` grants such networks)",
                request.provider
            ))),
            Err(EgressError::Lookup(m)) => Err(refused(m)),
        }
    }

    async fn repo2docker(
        &self,
        request: &BuildRequest,
        plan: &Repo2dockerPlan,
        source: &Source,
        dir: &Path,
        log: &BuildLogSender,
    ) -> Result<Built, BuildFailure> {
        say(
            log,
            "building",
            format!(
                "Building with repo2docker ({}) on the {} executor\n",
                plan.buildpack,
                executor_name(plan.executor)
            ),
        )
        .await;
        let timeout = self.timeout(plan.timeout_secs);
        let gone = match plan.executor {
            Executor::Local => {
                // For the Bindery that follows this build if this one is killed.
                if let Some(hash) = &plan.environment_hash
                    && let Err(e) = std::fs::write(dir.join(ENVIRONMENT_FILE), hash)
                {
                    tracing::warn!(image = %request.image, "cannot note the environment hash beside the build: {e}");
                }
                self.local
                    .build(request, plan, source.local_dir(), dir, timeout, log)
                    .await
                    .map(|()| false)?
            }
            Executor::Kubernetes => {
                let Some(kubernetes) = &self.kubernetes else {
                    return Err(BuildFailure::new(
                        "The build strategy asked for a Kubernetes build pod, but this Bindery has no [build.kubernetes] executor configured.",
                    ));
                };
                if !self.allowed_builder_images.iter().any(|allowed| {
                    allowed
                        .strip_suffix('*')
                        .map_or(allowed == &plan.builder_image, |prefix| {
                            plan.builder_image.starts_with(prefix)
                        })
                }) {
                    return Err(BuildFailure::new(format!(
                        "The build strategy asked for the builder image {}, which is not in build.allowed_builder_images.",
                        plan.builder_image
                    )));
                }
                let credentials = match source {
                    Source::Remote => None,
                    Source::Private { credentials, .. } => Some(credentials.as_str()),
                    Source::Data {
                        by_repo2docker: true,
                        ..
                    } => None,
                    Source::Data { .. } => {
                        return Err(BuildFailure::new(format!(
                            "A build pod's repo2docker fetches data records itself, and it does not know the `{}` provider's: build {} with the local executor, or as a layer.",
                            request.provider, request.repo_url
                        )));
                    }
                };
                kubernetes
                    .build(request, plan, credentials, timeout, log)
                    .await?
                    == PodEnd::Gone
            }
        };
        let built = match self.verify(&request.image).await {
            Err(_) if gone => {
                return Err(BuildFailure::new(format!(
                    "The build pod {} was deleted before it finished.",
                    request.build_name
                )));
            }
            verified => verified?,
        };
        Ok(built)
    }

    /// Remembers `request.image` as the environment for `hash` under `key`:
    /// what a later content-only revision is layered on. `listing` is the
    /// content's paths, for content that is no git history (the layer
    /// builder whites out what a later version lacks).
    fn remember_environment(
        &self,
        key: &str,
        request: &BuildRequest,
        hash: &str,
        listing: Option<Vec<String>>,
    ) {
        let Some(environments) = &self.environments else {
            return;
        };
        let environment = Environment {
            image: request.image.clone(),
            hash: hash.into(),
            resolved_ref: request.resolved_ref.clone(),
            built_ms: now_ms(),
            listing,
        };
        if let Err(e) = environments.put(key, environment) {
            tracing::warn!(image = %request.image, "cannot remember the environment image: {e}");
        }
    }

    /// Writes and pushes the layer; gives the checkout back for a re-plan.
    async fn layer(
        &self,
        request: &BuildRequest,
        plan: &LayerPlan,
        checkout: Checkout,
        base_listing: Option<Vec<String>>,
        dir: &Path,
        log: &BuildLogSender,
    ) -> (Result<Built, LayerError>, Checkout) {
        if !self.registry.is_configured() {
            return (
                Err(LayerError::Failed(
                    "a layer build needs a registry ([registry] url)".into(),
                )),
                checkout,
            );
        }
        say(
            log,
            "building",
            format!(
                "Adding the repository's content to {} as a layer (no engine)\n",
                plan.environment_image
            ),
        )
        .await;
        let (owned_plan, out) = (plan.clone(), dir.join("layer.tar.gz"));
        let written = tokio::task::spawn_blocking(move || {
            let layer = layer::write_layer(&checkout, &owned_plan, base_listing.as_deref(), &out);
            (layer, checkout)
        });
        let (layer, checkout) = match written.await {
            Ok(done) => done,
            Err(e) => panic!("the layer writer panicked: {e}"),
        };
        let layer = match layer {
            Ok(l) => l,
            Err(e) => return (Err(e), checkout),
        };
        say(
            log,
            "pushing",
            format!(
                "Pushing {} ({} files, {} removed, {} KiB compressed)\n",
                request.image,
                layer.files,
                layer.whiteouts,
                layer.size / 1024
            ),
        )
        .await;
        let description = format!(
            "bindery layer: {}@{} into {}",
            request.repo_url, request.resolved_ref, plan.target_dir
        );
        let timeout = self.timeout(plan.timeout_secs);
        let pushed = match tokio::time::timeout(
            timeout,
            layer::push(
                &self.registry,
                plan,
                &layer,
                &request.image,
                &description,
                &request.resolved_ref,
            ),
        )
        .await
        {
            Ok(pushed) => pushed,
            Err(_) => Err(LayerError::Failed(format!(
                "it took longer than its limit of {} s",
                timeout.as_secs()
            ))),
        };
        (
            pushed.map(|digest| Built {
                digest: Some(digest),
            }),
            checkout,
        )
    }

    /// The image must be in the registry before anyone is told it is built.
    async fn verify(&self, image: &str) -> Result<Built, BuildFailure> {
        if !self.registry.is_configured() {
            return Ok(Built { digest: None });
        }
        match self.registry.lookup(image).await {
            Ok(Some(digest)) => Ok(Built {
                digest: Some(digest),
            }),
            Ok(None) => Err(BuildFailure::new(format!(
                "The build finished but {image} is not in the registry: the push failed."
            ))),
            Err(e) => Err(BuildFailure::new(format!(
                "The build finished but {image} cannot be checked: {e}"
            ))),
        }
    }

    fn observe(&self, executor: &str, started: Instant, ok: bool) {
        self.metrics.executor_finished(
            executor,
            if ok { "success" } else { "failure" },
            started.elapsed(),
        );
    }

    fn timeout(&self, plan_secs: u64) -> Duration {
        if plan_secs == 0 {
            self.default_timeout
        } else {
            Duration::from_secs(plan_secs)
        }
    }

    fn environments(&self, repo_url: &str) -> Vec<Environment> {
        let Some(environments) = &self.environments else {
            return Vec::new();
        };
        environments.get(repo_url).unwrap_or_else(|e| {
            tracing::warn!(repo_url, "cannot read the environment images: {e}");
            Vec::new()
        })
    }

    fn forget(&self, repo_url: &str, image: &str) {
        if let Some(environments) = &self.environments
            && let Err(e) = environments.remove(repo_url, image)
        {
            tracing::warn!(repo_url, image, "cannot forget the environment image: {e}");
        }
    }
}

/// Whether repo2docker's own content providers fetch what `plugin`, a
/// bundled data provider, names in `repo_url` (a DOI, a HydroShare or CKAN
/// URL, a SWHID), with the same result as the host's fetch.
fn repo2docker_fetches(plugin: &bindery_runtime::LoadedPlugin) -> bool {
    matches!(&plugin.source, PluginSource::Bundled(name) if crate::bundled::DATA_PROVIDERS.contains(&name.as_str()))
}

fn executor_name(e: Executor) -> &'static str {
    match e {
        Executor::Local => "local",
        Executor::Kubernetes => "kubernetes",
    }
}

impl BuildExecutor for Builder {
    fn name(&self) -> &'static str {
        "bindery"
    }

    fn builder_info(&self) -> BoxFuture<'_, BuilderInfo> {
        Box::pin(async move {
            match &self.pod_image {
                Some(image) => BuilderInfo::Image(image.clone()),
                None => BuilderInfo::Local(self.local.version().await),
            }
        })
    }

    fn build<'a>(
        &'a self,
        request: &'a BuildRequest,
        log: BuildLogSender,
    ) -> BoxFuture<'a, Result<Built, BuildFailure>> {
        Box::pin(async move {
            // Named for the build, so a Bindery that restarts finds a local
            // build it left running (`reattach`); one that is there is stale.
            let dir = BuildDir(self.work_dir.join(&request.build_name));
            if dir.0.exists() {
                let _ = std::fs::remove_dir_all(&dir.0);
            }
            self.run(request, &dir.0, &log).await
        })
    }

    /// A build pod and a local repo2docker outlive the host: both are found
    /// by the build's name (the pod's, the build directory's).
    fn handle(&self, request: &BuildRequest) -> Option<String> {
        Some(request.build_name.clone())
    }

    fn reattach<'a>(
        &'a self,
        record: &'a BuildRecord,
        log: BuildLogSender,
    ) -> Option<BoxFuture<'a, Result<Built, BuildFailure>>> {
        let name = record.handle.as_deref()?;
        if let Some(orphan) = Orphan::find(&self.work_dir.join(name), &record.image) {
            return Some(Box::pin(self.follow_orphan(record, orphan, log)));
        }
        let (kubernetes, pod) = (self.kubernetes.as_ref()?, name);
        Some(Box::pin(async move {
            // A pod that is gone either finished (its image is in the registry) or never started.
            match kubernetes.attach(pod, self.default_timeout, &log).await? {
                PodEnd::Succeeded => self.verify(&record.image).await,
                PodEnd::Gone => self.verify(&record.image).await.map_err(|_| {
                    BuildFailure::new(
                        "The build was interrupted by a restart of Bindery; try again.",
                    )
                }),
            }
        }))
    }
}

/// A build's working directory, removed however the build ends (a build
/// stopped because nobody watches it is dropped mid-way).
struct BuildDir(PathBuf);

impl Drop for BuildDir {
    fn drop(&mut self) {
        let dir = std::mem::take(&mut self.0);
        let remove = move || {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), "cannot remove the build directory: {e}");
            }
        };
        // A big checkout takes a while to remove: off the async workers when there are some.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_builder_image_is_the_sdks() {
        assert_eq!(
            DEFAULT_BUILDER_IMAGE,
            bindery_sdk::repo2docker::DEFAULT_BUILDER
        );
    }

    #[test]
    fn build_pods_are_named_in_versions_only_when_the_strategy_sends_builds_there() {
        let with = |settings: &str| {
            let config: Config = toml::from_str(&format!(
                "[plugins.layer-first]\nbundled = \"layer-first\"\nconfig = {{ {settings} }}"
            ))
            .unwrap();
            pod_image(&config)
        };
        assert_eq!(with(""), None, "local builds by default");
        assert_eq!(
            with(r#"executor = "kubernetes""#).as_deref(),
            Some(DEFAULT_BUILDER_IMAGE)
        );
        assert_eq!(
            with(r#"executor = "kubernetes", builder_image = "r.example/r2d:1""#).as_deref(),
            Some("r.example/r2d:1")
        );
    }
}
