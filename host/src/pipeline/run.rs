//! One launch, from spec to running server: resolve → image look-up → build
//! (shared with every other request for the image) → launch. Each step's
//! progress is an [`Event`] in upstream BinderHub's words, sent to the client
//! that asked; the executor and the launcher are traits, so the API does not
//! know which ones run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::flight::{Flights, Item, Joined};
use super::{ResolveError, Resolved, Resolver, UserCredentials};
use crate::build::{BuildExecutor, BuildRequest};
use crate::event_log::{EventLog, LaunchEvent};
use crate::events::Event;
use crate::launch::{LaunchError, LaunchRequest, Launched, Launcher, Quota};
use crate::metrics::{InProgress, Metrics};
use crate::registry::{Registry, naming};
use bindery_runtime::capabilities::UserSecret;

/// A launch as the client asked for it.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The provider prefix.
    pub provider: String,
    /// The spec, raw (still percent-encoded), as upstream reads it.
    pub spec: String,
    /// Stop once the image exists (`build_only=true`).
    pub build_only: bool,
    /// The client's address, as trusted proxies report it.
    pub client_ip: String,
    /// `binder_launch_host`: where launch links point.
    pub launch_host: String,
    /// The hub user it is for (authenticated mode); `None`: a temporary user.
    pub user: Option<String>,
    /// A build token admitted it.
    pub build_token: bool,
}

/// The launch pipeline and its parts.
pub struct Pipeline {
    /// Spec → revision.
    pub resolver: Arc<Resolver>,
    /// Image names and look-ups.
    pub registry: Arc<Registry>,
    /// Builds in flight.
    pub flights: Arc<Flights>,
    /// Runs builds; `None` when none is configured.
    pub executor: Option<Arc<dyn BuildExecutor>>,
    /// Starts servers; `None` when no hub is configured.
    pub launcher: Option<Arc<dyn Launcher>>,
    /// Users' own credentials for providers; `None` when no provider takes them.
    pub credentials: Option<Arc<UserCredentials>>,
    /// Upstream's launch events; `None` when no sink is configured.
    pub event_log: Option<Arc<EventLog>>,
    /// Where the outcomes are counted.
    pub metrics: Arc<Metrics>,
}

/// Events buffered per client; a slow client holds only its own launch back,
/// and at most this many log lines (each at most 4 KiB) in memory.
const CLIENT_BUFFER: usize = 16;

impl Pipeline {
    /// Starts `launch`; its events arrive on the receiver, ending with a
    /// terminal one (`ready` or `failed`). Dropping the receiver abandons the
    /// launch, never a build another client watches.
    pub fn start(self: &Arc<Self>, launch: Launch) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
        let pipeline = self.clone();
        // The launch's span: its fields go with every line logged under it
        // (the resolve, the look-up, the launch), in JSON logs beside each line's own.
        let span = tracing::info_span!(
            "launch",
            provider = %launch.provider,
            spec = %launch.spec,
            resolved_ref = tracing::field::Empty,
            image = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let task = async move {
            let sink = Sink(tx);
            // A client that leaves takes its launch with it at once, even one
            // still waiting for a plugin slot; a build it joined goes on.
            let finished = tokio::select! {
                result = pipeline.run(&launch, &sink) => result.is_ok(),
                () = sink.0.closed() => false,
            };
            if finished {
                tracing::info!("launch ended");
            } else {
                tracing::info!("client left before the launch ended");
            }
        };
        tokio::spawn(task.instrument(span));
        rx
    }

    async fn run(&self, launch: &Launch, out: &Sink) -> Result<(), Gone> {
        // The resolve, look-up, admission, build and launch futures are boxed:
        // a stream waiting in one step should not carry the others' state
        // (this keeps an idle stream's task small).
        let credential = match (&self.credentials, &launch.user) {
            (Some(credentials), Some(user)) => {
                match Box::pin(credentials.of(&launch.provider, user)).await {
                    Ok(credential) => credential,
                    Err(e) => return out.send(failed(format!("{e}\n"))).await,
                }
            }
            _ => None,
        };
        let (provider, spec) = (&launch.provider, &launch.spec);
        let resolving: BoxFuture<'_, _> = match &credential {
            Some(c) => Box::pin(self.resolver.resolve_as(provider, spec, c)),
            None => Box::pin(self.resolver.resolve(provider, spec)),
        };
        let resolved = match resolving.await {
            Ok(r) => r,
            Err(e) => return out.send(resolve_failed(&e)).await,
        };
        let key = format!("{}:{}", resolved.provider, resolved.spec);
        for notice in &resolved.notices {
            out.send(Event::message("waiting", notice.message(&key)))
                .await?;
            tokio::time::sleep(notice.pause()).await;
        }
        let image = self
            .registry
            .image_name(&resolved.image_slug(), &resolved.resolved_ref);
        let span = tracing::Span::current();
        span.record("resolved_ref", resolved.resolved_ref.as_str());
        span.record("image", image.as_str());
        let request = self.launch_request(launch, &resolved, &image);
        match Box::pin(self.registry.lookup(&image)).await {
            Err(e) => {
                tracing::error!(image, "image look-up failed: {e}");
                return out
                    .send(failed(format!(
                        "Cannot check whether {image} is built: {e}\n"
                    )))
                    .await;
            }
            Ok(Some(_)) if launch.build_only => {
                let done = json!({ "imageName": image, "message": "Done! Found built image\n" });
                return out.send(Event::fields("ready", done)).await;
            }
            Ok(Some(_)) => {
                out.send(Event::fields(
                    "built",
                    json!({ "imageName": image, "message": "Found built image, launching...\n" }),
                ))
                .await?;
            }
            Ok(None) => {
                let admitted = match &self.launcher {
                    Some(launcher) if !launch.build_only => {
                        Box::pin(launcher.admit(&request)).await
                    }
                    _ => Ok(()),
                };
                if let Err(e) = admitted {
                    self.metrics.launch_finished(
                        launch_status(&e),
                        &launch.provider,
                        &resolved.repo_url,
                        Duration::ZERO,
                    );
                    return out.send(failed(ensure_newline(e.to_string()))).await;
                }
                let overlapped =
                    match Box::pin(self.build(launch, &resolved, credential, &request, out)).await?
                    {
                        BuildEnd::Failed => return Ok(()),
                        BuildEnd::Built(overlapped) => overlapped,
                    };
                if launch.build_only {
                    return out
                        .send(Event::fields(
                            "ready",
                            json!({ "message": "Done! Image built\n", "imageName": image }),
                        ))
                        .await;
                }
                out.send(Event::fields(
                    "built",
                    json!({ "message": "Built image, launching...\n", "imageName": image }),
                ))
                .await?;
                if let Some(overlapped) = overlapped {
                    let (result, elapsed) = overlapped.finish(out).await?;
                    let result = result.map(Unconfirmed::keep);
                    return self
                        .report_launch(launch, &resolved, &request, result, elapsed, out)
                        .await;
                }
            }
        }
        Box::pin(self.launch(launch, &resolved, &request, out)).await
    }

    /// Joins or starts the image's build and relays its log. When the
    /// executor says the image can be run before its push ends, the launch
    /// starts then, its events held until the push has ended.
    async fn build<'a>(
        &'a self,
        launch: &Launch,
        resolved: &Resolved,
        credential: Option<Arc<UserSecret>>,
        request: &'a LaunchRequest,
        out: &Sink,
    ) -> Result<BuildEnd<'a>, Gone> {
        let (image, repo_config) = (&request.image, &request.repo_config);
        let Some(executor) = &self.executor else {
            out.send(failed(format!("Cannot build {image}: this Bindery has no build executor configured ([build] executor).\n"))).await?;
            return Ok(BuildEnd::Failed);
        };
        let wanted = BuildRequest {
            image: image.into(),
            build_name: naming::build_pod_name(&resolved.image_slug(), &resolved.resolved_ref),
            repo_url: resolved.repo_url.clone(),
            resolved_ref: resolved.resolved_ref.clone(),
            provider: resolved.provider.clone(),
            spec: resolved.spec.clone(),
            build_slug: resolved.build_slug.clone(),
            resolved_spec: resolved.resolved_spec.clone(),
            ref_url: resolved.ref_url.clone(),
            immutable: resolved.immutable,
            repo_config: repo_config.clone(),
            credential,
        };
        out.send(Event::message("waiting", "Waiting for build to start...\n"))
            .await?;
        let (mut reader, started) = match self.flights.join(executor, wanted) {
            Joined::Started(r) => (r, true),
            Joined::Watching(r) => (r, false),
        };
        // The request that started the build counts it, so each build counts once.
        let counted =
            started.then(|| (self.metrics.in_progress(InProgress::Build), Instant::now()));
        // Dropped with this future if the build fails or the client leaves:
        // the launch then stops, and a server it started is removed.
        let mut overlapped: Option<Overlapped<'a>> = None;
        loop {
            let item = match &mut overlapped {
                Some(early) => tokio::select! {
                    item = reader.next() => item,
                    () = early.progress() => continue,
                },
                None => reader.next().await,
            };
            match item {
                Item::Log(event) => out.send(event).await?,
                Item::Runnable => {
                    if let Some(launcher) = &self.launcher
                        && !launch.build_only
                        && overlapped.is_none()
                    {
                        tracing::info!(image, "launching while the image is pushed");
                        overlapped = Some(Overlapped::start(self, launcher.as_ref(), request));
                    }
                }
                Item::Done(outcome) => {
                    if let Some((guard, started_at)) = counted {
                        let status = if outcome.is_ok() {
                            "success"
                        } else {
                            "failure"
                        };
                        self.metrics.build_finished(
                            status,
                            &launch.provider,
                            &resolved.repo_url,
                            started_at.elapsed(),
                        );
                        drop(guard);
                    }
                    return match outcome {
                        Ok(_) => Ok(BuildEnd::Built(overlapped)),
                        Err(f) if f.message.is_empty() => out
                            .send(Event::fields("failed", json!({})))
                            .await
                            .map(|()| BuildEnd::Failed),
                        Err(f) => out.send(failed(f.message)).await.map(|()| BuildEnd::Failed),
                    };
                }
            }
        }
    }

    async fn launch(
        &self,
        launch: &Launch,
        resolved: &Resolved,
        request: &LaunchRequest,
        out: &Sink,
    ) -> Result<(), Gone> {
        let Some(launcher) = &self.launcher else {
            return out
                .send(failed(format!("{} is built, but this Bindery has no JupyterHub configured to launch it ([hub] url).\n", request.image)))
                .await;
        };
        let (result, elapsed) = self.start_server(launcher.as_ref(), request, out).await?;
        self.report_launch(launch, resolved, request, result, elapsed, out)
            .await
    }

    /// Asks `launcher` for a server, relaying `launching` and the hub's
    /// progress to `out`; how it ended, and how long it took.
    async fn start_server(
        &self,
        launcher: &dyn Launcher,
        request: &LaunchRequest,
        out: &Sink,
    ) -> Result<(Result<Launched, LaunchError>, Duration), Gone> {
        out.send(Event::message("launching", "Launching server...\n"))
            .await?;
        let _guard = self.metrics.in_progress(InProgress::Launch);
        let started = Instant::now();
        let (progress_tx, mut progress) = mpsc::channel::<String>(16);
        let launched = launcher.launch(request, progress_tx);
        tokio::pin!(launched);
        let result = loop {
            tokio::select! {
                result = &mut launched => break result,
                Some(message) = progress.recv() => out.send(Event::message("launching", ensure_newline(message))).await?,
            }
        };
        while let Ok(message) = progress.try_recv() {
            out.send(Event::message("launching", ensure_newline(message)))
                .await?;
        }
        Ok((result, started.elapsed()))
    }

    /// Counts a launch and tells the client how it ended.
    async fn report_launch(
        &self,
        launch: &Launch,
        resolved: &Resolved,
        request: &LaunchRequest,
        result: Result<Launched, LaunchError>,
        elapsed: Duration,
        out: &Sink,
    ) -> Result<(), Gone> {
        let (status, event) = match result {
            Err(e) => (launch_status(&e), failed(ensure_newline(e.to_string()))),
            Ok(server) => {
                let mut ready = json!({
                    "message": format!("server running at {}\n", server.url),
                    "url": server.url,
                    "token": server.token,
                });
                if let Value::Object(fields) = &mut ready {
                    fields.extend(request.binder_fields());
                }
                self.record_launch(launch, resolved);
                ("success", Event::fields("ready", ready))
            }
        };
        self.metrics
            .launch_finished(status, &launch.provider, &resolved.repo_url, elapsed);
        out.send(event).await
    }

    /// Upstream's launch event for a launch that succeeded.
    fn record_launch(&self, launch: &Launch, resolved: &Resolved) {
        let Some(log) = &self.event_log else {
            return;
        };
        // The plugin's own name, whatever prefix the operator loaded it under.
        let plugin = self
            .resolver
            .plugins()
            .get(&resolved.provider)
            .map_or_else(|| resolved.provider.clone(), |p| p.metadata.name.clone());
        let host = url::Url::parse(&launch.launch_host)
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.to_string();
                Some(u.port().map_or(host.clone(), |p| format!("{host}:{p}")))
            })
            .unwrap_or_default();
        log.record(LaunchEvent::success(
            &plugin,
            &launch.spec,
            &resolved.resolved_ref,
            launch.build_token,
            log.origin(&host),
        ));
    }

    fn launch_request(&self, launch: &Launch, resolved: &Resolved, image: &str) -> LaunchRequest {
        LaunchRequest {
            image: image.into(),
            repo_url: resolved.repo_url.clone(),
            ref_url: resolved.ref_url.clone(),
            launch_host: launch.launch_host.clone(),
            // Upstream reports the spec as asked, trailing `/` and all.
            binder_request: format!("v2/{}/{}", launch.provider, launch.spec),
            persistent_request: format!("v2/{}/{}", resolved.provider, resolved.resolved_spec),
            client_ip: launch.client_ip.clone(),
            repo_config: self
                .resolver
                .repo_config(&resolved.provider, &resolved.spec),
            user: launch.user.clone(),
        }
    }
}

/// The `binderhub_launch_count` status of a launch that did not happen.
fn launch_status(e: &LaunchError) -> &'static str {
    match e {
        LaunchError::Quota {
            quota: Quota::Total,
            ..
        } => "pod_quota",
        LaunchError::Quota {
            quota: Quota::Repo, ..
        } => "repo_quota",
        LaunchError::Failed(_) => "failure",
    }
}

fn ensure_newline(mut message: String) -> String {
    if !message.ends_with('\n') {
        message.push('\n');
    }
    message
}

fn failed(message: String) -> Event {
    Event::message("failed", message)
}

/// Resolution failures in upstream's words; an unknown prefix carries the
/// status code upstream's `HTTPError` did.
fn resolve_failed(e: &ResolveError) -> Event {
    match e {
        ResolveError::UnknownProvider(_) => Event::fields(
            "failed",
            json!({ "status_code": 404, "message": format!("{e}\n") }),
        ),
        // Upstream sends this one without a newline.
        ResolveError::Banned { .. } => failed(e.to_string()),
        _ => failed(format!("{e}\n")),
    }
}

/// How [`Pipeline::build`] ended.
enum BuildEnd<'a> {
    /// The client was told why.
    Failed,
    /// The image is in the registry; a launch may have started while it was pushed.
    Built(Option<Overlapped<'a>>),
}

/// What an overlapped launch ended with, and how long it took.
type Started<'a> = (Result<Unconfirmed<'a>, LaunchError>, Duration);

/// A launch started while its image is pushed: its events wait here until
/// the push has ended. Dropped, it stops the launch, and a server it
/// started is discarded.
struct Overlapped<'a> {
    launching: Option<BoxFuture<'a, Result<Started<'a>, Gone>>>,
    started: Option<Started<'a>>,
    events: mpsc::Receiver<Event>,
}

impl<'a> Overlapped<'a> {
    fn start(
        pipeline: &'a Pipeline,
        launcher: &'a dyn Launcher,
        request: &'a LaunchRequest,
    ) -> Self {
        let (tx, events) = mpsc::channel(CLIENT_BUFFER);
        let launching = async move {
            let held = Sink(tx);
            let (result, elapsed) = pipeline.start_server(launcher, request, &held).await?;
            let result = result.map(|launched| Unconfirmed {
                launcher,
                launched: Some(launched),
            });
            Ok((result, elapsed))
        };
        Overlapped {
            launching: Some(Box::pin(launching)),
            started: None,
            events,
        }
    }

    /// Drives the launch until it ends (then never returns), holding its events.
    async fn progress(&mut self) {
        let Some(launching) = &mut self.launching else {
            return std::future::pending().await;
        };
        self.started = launching.await.ok();
        self.launching = None;
    }

    /// The push has ended: relays the held events to `out`, then the rest of
    /// the launch as it goes on; how it ended.
    async fn finish(mut self, out: &Sink) -> Result<Started<'a>, Gone> {
        if let Some(mut launching) = self.launching.take() {
            let started = loop {
                tokio::select! {
                    started = &mut launching => break started?,
                    Some(event) = self.events.recv() => out.send(event).await?,
                }
            };
            self.started = Some(started);
        }
        while let Ok(event) = self.events.try_recv() {
            out.send(event).await?;
        }
        self.started.take().ok_or(Gone)
    }
}

/// A server an overlapped launch started, discarded unless its image's push
/// succeeds and it is kept.
struct Unconfirmed<'a> {
    launcher: &'a dyn Launcher,
    launched: Option<Launched>,
}

impl Unconfirmed<'_> {
    fn keep(mut self) -> Launched {
        self.launched.take().expect("kept once")
    }
}

impl Drop for Unconfirmed<'_> {
    fn drop(&mut self) {
        if let Some(launched) = self.launched.take() {
            tracing::info!(user = %launched.user, "the image of a server started early was not pushed; removing the server");
            self.launcher.discard(&launched);
        }
    }
}

/// The client is gone.
struct Gone;

struct Sink(mpsc::Sender<Event>);

impl Sink {
    async fn send(&self, event: Event) -> Result<(), Gone> {
        if matches!(event.phase(), "ready" | "failed") {
            tracing::Span::current().record("outcome", event.phase());
        }
        self.0.send(event).await.map_err(|_| Gone)
    }
}
