//! Single flight: one build per image at a time. Every request for an image
//! being built joins the running build: it gets the log so far, then the live
//! tail, and the same outcome. A client that leaves does not stop a build
//! others watch. One nobody watches goes on (its image will be wanted again)
//! unless `[build] cancel_abandoned_after_secs` says to stop it.
//! At most `[build] max_concurrent` builds run at once; the rest wait for a
//! slot, as upstream's build pool makes them.
//! Builds are recorded in the sled `builds` tree, so a restarted host can
//! report builds that were in flight and watch them again where the executor
//! can.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::join_all;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::Instrument;

use crate::build::{BuildExecutor, BuildFailure, BuildLogSender, BuildRequest, Built, Progress};
use crate::cache::{BuildLog, BuildRecord, BuildState, LOG_TAIL_LINES};
use crate::events::Event;
use crate::now_ms;
use crate::registry::Registry;

/// Log events kept in memory per build, by count and by bytes (lines are at
/// most `build::command::MAX_EVENT_BYTES`); a client joining later than that
/// is told how many lines it missed.
const MAX_LOG_EVENTS: usize = 10_000;
const MAX_LOG_BYTES: usize = 1 << 20;
/// Log events an executor may send ahead of the flight taking them.
const LOG_BUFFER: usize = 256;
/// How often a running build's record is written.
const RECORD_INTERVAL: Duration = Duration::from_secs(1);
/// How often a flight counts its readers, when abandoned builds are stopped.
const ABANDON_CHECK: Duration = Duration::from_millis(500);

/// How a build ended.
pub type Outcome = Result<Built, BuildFailure>;

struct Log {
    events: VecDeque<Event>,
    /// Bytes of `events`' JSON.
    bytes: usize,
    /// Index of `events[0]` in the whole log.
    first: usize,
    /// Where in the whole log the executor said the image can be run.
    runnable_at: Option<usize>,
    outcome: Option<Outcome>,
}

/// One build in flight.
pub struct Flight {
    image: String,
    log: Mutex<Log>,
    /// Bumped on every change; readers wait on it.
    version: watch::Sender<u64>,
}

impl Flight {
    fn new(image: &str, history: Vec<Event>) -> Arc<Flight> {
        Arc::new(Flight {
            image: image.into(),
            log: Mutex::new(Log {
                bytes: history.iter().map(|e| e.json().len()).sum(),
                events: history.into(),
                first: 0,
                runnable_at: None,
                outcome: None,
            }),
            version: watch::channel(0).0,
        })
    }

    fn push(&self, event: Event) {
        let mut log = self.log.lock().expect("flight log");
        log.bytes += event.json().len();
        log.events.push_back(event);
        while log.events.len() > MAX_LOG_EVENTS || log.bytes > MAX_LOG_BYTES {
            let Some(gone) = log.events.pop_front() else {
                break;
            };
            log.bytes -= gone.json().len();
            log.first += 1;
        }
        drop(log);
        self.version.send_modify(|v| *v += 1);
    }

    fn runnable(&self) {
        let mut log = self.log.lock().expect("flight log");
        if log.runnable_at.is_none() {
            log.runnable_at = Some(log.first + log.events.len());
        }
        drop(log);
        self.version.send_modify(|v| *v += 1);
    }

    fn finish(&self, outcome: Outcome) {
        self.log.lock().expect("flight log").outcome = Some(outcome);
        self.version.send_modify(|v| *v += 1);
    }

    /// A reader from the start of the log.
    pub fn subscribe(self: &Arc<Self>) -> Reader {
        Reader {
            flight: self.clone(),
            next: 0,
            told_runnable: false,
            changes: self.version.subscribe(),
        }
    }

    /// The image being built.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// Returns once nobody has read this flight for `after`.
    async fn abandoned(&self, after: Duration) {
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(ABANDON_CHECK).await;
            if self.version.receiver_count() > 0 {
                since = Instant::now();
            } else if since.elapsed() >= after {
                return;
            }
        }
    }
}

/// What a reader gets next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A log event.
    Log(Event),
    /// The image can be run, though its push has not ended (once per reader,
    /// in its place in the log).
    Runnable,
    /// The build ended.
    Done(Outcome),
}

/// One client's position in a build's log.
pub struct Reader {
    flight: Arc<Flight>,
    next: usize,
    told_runnable: bool,
    changes: watch::Receiver<u64>,
}

impl Reader {
    /// The next log event, or the outcome once the log is read to its end.
    pub async fn next(&mut self) -> Item {
        loop {
            self.changes.borrow_and_update();
            {
                let log = self.flight.log.lock().expect("flight log");
                if self.next < log.first {
                    let missed = log.first - self.next;
                    self.next = log.first;
                    return Item::Log(Event::message(
                        "unknown",
                        format!("[{missed} earlier log lines not shown]\n"),
                    ));
                }
                if !self.told_runnable && log.runnable_at.is_some_and(|at| at <= self.next) {
                    self.told_runnable = true;
                    return Item::Runnable;
                }
                if let Some(event) = log.events.get(self.next - log.first) {
                    self.next += 1;
                    return Item::Log(event.clone());
                }
                if let Some(outcome) = &log.outcome {
                    return Item::Done(outcome.clone());
                }
            }
            if self.changes.changed().await.is_err() {
                // The flight is gone without an outcome: cannot happen while we hold it.
                return Item::Done(Err(BuildFailure {
                    message: "The build stopped unexpectedly.\n".into(),
                }));
            }
        }
    }
}

/// The builds in flight.
pub struct Flights {
    running: Mutex<HashMap<String, Arc<Flight>>>,
    records: Option<BuildLog>,
    /// Told of each image built, so the next request finds it without asking.
    registry: Arc<Registry>,
    /// Stop a build nobody has read for this long.
    abandon: Option<Duration>,
    /// One permit per build allowed to run at once.
    slots: Semaphore,
    max_concurrent: u64,
}

/// How [`Flights::join`] found the image.
pub enum Joined {
    /// This request started the build.
    Started(Reader),
    /// The build was already running.
    Watching(Reader),
}

impl Flights {
    /// No builds yet; records go to `records`, built images to `registry`;
    /// builds nobody reads for `abandon` are stopped; `max_concurrent` run
    /// at once.
    pub fn new(
        records: Option<BuildLog>,
        registry: Arc<Registry>,
        abandon: Option<Duration>,
        max_concurrent: u64,
    ) -> Flights {
        let permits = usize::try_from(max_concurrent)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Flights {
            running: Mutex::new(HashMap::new()),
            records,
            registry,
            abandon,
            slots: Semaphore::new(permits),
            max_concurrent,
        }
    }

    /// Runs `build` in a slot, telling its watchers when it has to wait for one.
    async fn in_slot(&self, log: BuildLogSender, build: impl Future<Output = Outcome>) -> Outcome {
        let _slot = match self.slots.try_acquire() {
            Ok(slot) => slot,
            Err(_) => {
                let waiting = Event::message(
                    "waiting",
                    format!(
                        "All {} build slots are in use (build.max_concurrent); this build starts when one frees.\n",
                        self.max_concurrent
                    ),
                );
                let _ = log.send(waiting).await;
                // The log ends when the executor's sender goes, not this one.
                drop(log);
                self.slots
                    .acquire()
                    .await
                    .expect("the build slots are never closed")
            }
        };
        build.await
    }

    /// The recorded state of `image`'s latest build.
    pub fn record(&self, image: &str) -> Option<BuildRecord> {
        self.records
            .as_ref()?
            .get(image)
            .map_err(|e| tracing::warn!(image, "cannot read the build record: {e}"))
            .ok()?
    }

    /// Builds running now.
    pub fn in_flight(&self) -> usize {
        self.running.lock().expect("flights").len()
    }

    /// Joins the build of `request.image`, starting it on `executor` if none runs.
    pub fn join(
        self: &Arc<Self>,
        executor: &Arc<dyn BuildExecutor>,
        request: BuildRequest,
    ) -> Joined {
        let mut running = self.running.lock().expect("flights");
        if let Some(flight) = running.get(&request.image) {
            return Joined::Watching(flight.subscribe());
        }
        let flight = Flight::new(&request.image, Vec::new());
        running.insert(request.image.clone(), flight.clone());
        drop(running);
        let record = BuildRecord {
            image: request.image.clone(),
            executor: executor.name().into(),
            handle: executor.handle(&request),
            repo_url: request.repo_url.clone(),
            resolved_ref: request.resolved_ref.clone(),
            state: BuildState::Running,
            started_at_ms: now_ms(),
            updated_at_ms: now_ms(),
            log_tail: Vec::new(),
        };
        let reader = flight.subscribe();
        let (flights, executor) = (self.clone(), executor.clone());
        // Under the launch that started it (the current span), so its lines
        // carry that launch's provider and spec, even after its client left.
        let span = tracing::info_span!(
            "build",
            image = %request.image,
            resolved_ref = %request.resolved_ref,
            executor = executor.name(),
        );
        let build = async move {
            let (tx, rx) = BuildLogSender::channel(LOG_BUFFER);
            let build = flights.in_slot(tx.clone(), executor.build(&request, tx));
            flights.fly(&flight, record, rx, build).await;
        };
        tokio::spawn(build.instrument(span));
        Joined::Started(reader)
    }

    /// On start-up: builds recorded as running are joinable at once, and the
    /// returned task watches them again where the executor can and marks them
    /// lost where it cannot. The caller runs it.
    pub fn recover(
        self: &Arc<Self>,
        executor: Option<&Arc<dyn BuildExecutor>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut watches = Vec::new();
        let Some(records) = &self.records else {
            return join_all(watches).map(drop);
        };
        let all = match records.all() {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!("cannot read build records: {e}");
                return join_all(watches).map(drop);
            }
        };
        for record in all.into_iter().filter(|r| r.state == BuildState::Running) {
            let history: Vec<Event> = record
                .log_tail
                .iter()
                .map(|j| Event::from_json(j))
                .collect();
            let flight = Flight::new(&record.image, history);
            self.running
                .lock()
                .expect("flights")
                .insert(record.image.clone(), flight.clone());
            let (flights, executor) = (
                self.clone(),
                executor.filter(|e| e.name() == record.executor).cloned(),
            );
            watches.push(async move {
                let (tx, rx) = BuildLogSender::channel(LOG_BUFFER);
                let Some(watch) = executor.as_deref().and_then(|e| e.reattach(&record, tx)) else {
                    tracing::warn!(image = %record.image, executor = %record.executor, "a build was running when Bindery stopped and cannot be watched again; it is rebuilt when next asked for");
                    flights.write_durably(&BuildRecord {
                        state: BuildState::Lost,
                        updated_at_ms: now_ms(),
                        ..record.clone()
                    });
                    flights
                        .running
                        .lock()
                        .expect("flights")
                        .remove(&record.image);
                    flight.finish(Err(BuildFailure {
                        message: "The build was interrupted by a restart of Bindery; try again.\n"
                            .into(),
                    }));
                    return;
                };
                tracing::info!(image = %record.image, "watching a build that was running when Bindery stopped");
                // It runs already: it takes a slot if one is free, and never waits for one.
                let _slot = flights.slots.try_acquire().ok();
                flights.fly(&flight, record.clone(), rx, watch).await;
            });
        }
        join_all(watches).map(drop)
    }

    /// Runs `build` while its log goes into the flight and the record, then lands it.
    async fn fly(
        &self,
        flight: &Arc<Flight>,
        record: BuildRecord,
        log: mpsc::Receiver<Progress>,
        build: impl Future<Output = Outcome>,
    ) {
        let build = async {
            let Some(after) = self.abandon else {
                return build.await;
            };
            tokio::select! {
                outcome = build => outcome,
                () = flight.abandoned(after) => {
                    tracing::info!(image = %flight.image(), "stopping a build nobody has watched for {} s", after.as_secs());
                    Err(BuildFailure { message: format!("Nobody watched this build for {} s, so it was stopped.\n", after.as_secs()) })
                }
            }
        };
        // A panic in the executor fails this build, not the flight: its
        // watchers hear of it, and the next request builds again.
        let build = async {
            match std::panic::AssertUnwindSafe(build).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(panic) => Err(panicked(flight.image(), panic.as_ref())),
            }
        };
        let (outcome, record) = tokio::join!(build, self.drive(flight, record, log));
        self.land(flight, outcome, record);
    }

    /// Moves log events from the executor into the flight and the record.
    async fn drive(
        &self,
        flight: &Flight,
        mut record: BuildRecord,
        mut rx: mpsc::Receiver<Progress>,
    ) -> BuildRecord {
        self.write_durably(&record);
        let mut last_write = Instant::now();
        while let Some(progress) = rx.recv().await {
            let event = match progress {
                Progress::Log(event) => event,
                Progress::Runnable => {
                    flight.runnable();
                    continue;
                }
            };
            if record.log_tail.len() == LOG_TAIL_LINES {
                record.log_tail.remove(0);
            }
            record.log_tail.push(event.json().to_string());
            flight.push(event);
            if last_write.elapsed() >= RECORD_INTERVAL {
                record.updated_at_ms = now_ms();
                self.write(&record);
                last_write = Instant::now();
            }
        }
        // The executor dropped its sender: the final record is written by `land`.
        record
    }

    /// Records the outcome, then lets readers see it, then forgets the flight:
    /// a request arriving in between joins and sees the outcome at once.
    fn land(&self, flight: &Arc<Flight>, outcome: Outcome, mut record: BuildRecord) {
        record.state = if outcome.is_ok() {
            BuildState::Built
        } else {
            BuildState::Failed
        };
        record.updated_at_ms = now_ms();
        let seconds = record.updated_at_ms.saturating_sub(record.started_at_ms) as f64 / 1000.0;
        match &outcome {
            Ok(_) => tracing::info!(outcome = "built", seconds, "build ended"),
            Err(e) => {
                let reason = e.message.trim_end();
                tracing::info!(outcome = "failed", seconds, reason, "build ended");
            }
        }
        self.write_durably(&record);
        if let Ok(built) = &outcome {
            self.registry
                .record(flight.image(), built.digest.as_deref().unwrap_or("unknown"));
        }
        flight.finish(outcome);
        self.running.lock().expect("flights").remove(flight.image());
    }

    fn write(&self, record: &BuildRecord) {
        if let Some(records) = &self.records
            && let Err(e) = records.put(record)
        {
            tracing::warn!(image = %record.image, "cannot record the build: {e}");
        }
    }

    fn write_durably(&self, record: &BuildRecord) {
        if let Some(records) = &self.records
            && let Err(e) = records.put_durably(record)
        {
            tracing::warn!(image = %record.image, "cannot record the build: {e}");
        }
    }
}

/// The failure watchers of a build whose task panicked see.
fn panicked(image: &str, panic: &(dyn std::any::Any + Send)) -> BuildFailure {
    let why = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(image, "the build task panicked: {why}");
    BuildFailure::new(format!(
        "Bindery failed while building ({why}); try again, and tell the operators if it happens again."
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::future::BoxFuture;

    use super::*;
    use crate::build::{BuildLogSender, BuilderInfo};
    use crate::config::RegistryConfig;

    /// Builds that start, then wait for the test to let them finish.
    struct Gated {
        started: AtomicUsize,
        finish: Semaphore,
    }

    impl BuildExecutor for Gated {
        fn name(&self) -> &'static str {
            "gated"
        }

        fn builder_info(&self) -> BoxFuture<'_, BuilderInfo> {
            Box::pin(async { BuilderInfo::Local(None) })
        }

        fn build<'a>(&'a self, _: &'a BuildRequest, _: BuildLogSender) -> BoxFuture<'a, Outcome> {
            Box::pin(async move {
                self.started.fetch_add(1, Ordering::SeqCst);
                self.finish.acquire().await.unwrap().forget();
                Ok(Built { digest: None })
            })
        }
    }

    fn request(image: &str) -> BuildRequest {
        BuildRequest {
            image: image.into(),
            build_name: image.into(),
            repo_url: "https://example.org/repo".into(),
            resolved_ref: "0".repeat(40),
            provider: "git".into(),
            spec: "x".into(),
            build_slug: "x".into(),
            resolved_spec: "x".into(),
            ref_url: "x".into(),
            immutable: true,
            repo_config: serde_json::Map::new(),
            credential: None,
        }
    }

    async fn started(gated: &Gated, n: usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while gated.started.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} builds did not start"));
    }

    fn started_reader(joined: Joined) -> Reader {
        match joined {
            Joined::Started(r) => r,
            Joined::Watching(_) => panic!("the build was joined, not started"),
        }
    }

    /// Panics on its first build, then builds.
    struct PanicsOnce(AtomicUsize);

    impl BuildExecutor for PanicsOnce {
        fn name(&self) -> &'static str {
            "panics-once"
        }

        fn builder_info(&self) -> BoxFuture<'_, BuilderInfo> {
            Box::pin(async { BuilderInfo::Local(None) })
        }

        fn build<'a>(&'a self, _: &'a BuildRequest, _: BuildLogSender) -> BoxFuture<'a, Outcome> {
            Box::pin(async move {
                assert!(
                    self.0.fetch_add(1, Ordering::SeqCst) > 0,
                    "a bug in an executor"
                );
                Ok(Built { digest: None })
            })
        }
    }

    #[test]
    fn a_builds_log_in_memory_is_bounded_in_bytes_and_late_readers_are_told() {
        let flight = Flight::new("i", Vec::new());
        let line = "x".repeat(4000);
        for _ in 0..1000 {
            flight.push(Event::message("building", line.clone()));
        }
        let log = flight.log.lock().unwrap();
        assert!(log.bytes <= MAX_LOG_BYTES, "{} bytes", log.bytes);
        assert_eq!(
            log.bytes,
            log.events.iter().map(|e| e.json().len()).sum::<usize>()
        );
        assert!(log.first > 700, "{} lines dropped", log.first);
        drop(log);
        let mut late = flight.subscribe();
        let missed = futures_util::FutureExt::now_or_never(late.next()).unwrap();
        assert!(
            matches!(&missed, Item::Log(e) if e.json().contains("earlier log lines not shown")),
            "{missed:?}"
        );
    }

    #[tokio::test]
    async fn a_panicking_build_fails_its_watchers_and_the_next_request_builds_again() {
        let registry = Registry::new(&RegistryConfig::default(), None).unwrap();
        let flights = Arc::new(Flights::new(None, Arc::new(registry), None, 1));
        let executor: Arc<dyn BuildExecutor> = Arc::new(PanicsOnce(AtomicUsize::new(0)));
        let mut first = started_reader(flights.join(&executor, request("i")));
        let watcher = match flights.join(&executor, request("i")) {
            Joined::Watching(r) => Some(r),
            // The build may already have ended.
            Joined::Started(_) => None,
        };
        let done = tokio::time::timeout(Duration::from_secs(5), first.next())
            .await
            .expect("the watchers of a panicked build wait for ever");
        match done {
            Item::Done(Err(f)) => assert!(f.message.contains("a bug in an executor"), "{f:?}"),
            other => panic!("{other:?}"),
        }
        if let Some(mut watcher) = watcher {
            assert!(matches!(watcher.next().await, Item::Done(Err(_))));
        }
        // Its slot is free again, and the image builds.
        let mut again = started_reader(flights.join(&executor, request("i")));
        assert!(matches!(again.next().await, Item::Done(Ok(_))));
    }

    #[tokio::test]
    async fn builds_beyond_max_concurrent_wait_for_a_slot_and_say_so() {
        let registry = Registry::new(&RegistryConfig::default(), None).unwrap();
        let flights = Arc::new(Flights::new(None, Arc::new(registry), None, 1));
        let gated = Arc::new(Gated {
            started: AtomicUsize::new(0),
            finish: Semaphore::new(0),
        });
        let executor: Arc<dyn BuildExecutor> = gated.clone();
        let mut first = started_reader(flights.join(&executor, request("first")));
        started(&gated, 1).await;
        let mut second = started_reader(flights.join(&executor, request("second")));
        match second.next().await {
            Item::Log(event) => {
                assert_eq!(event.phase(), "waiting");
                assert!(
                    event
                        .json()
                        .contains("All 1 build slots are in use (build.max_concurrent)"),
                    "{}",
                    event.json()
                );
            }
            other => panic!("{other:?}"),
        }
        // A request for the image waiting joins it rather than queueing again.
        assert!(matches!(
            flights.join(&executor, request("second")),
            Joined::Watching(_)
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(gated.started.load(Ordering::SeqCst), 1);

        gated.finish.add_permits(1);
        assert!(matches!(first.next().await, Item::Done(Ok(_))));
        started(&gated, 2).await;
        gated.finish.add_permits(1);
        assert!(matches!(second.next().await, Item::Done(Ok(_))));
    }
}
