//! The replay: a discrete-event simulation of one deployment on a virtual
//! clock. Launches arrive as the trace says; builds, spawns and sessions
//! take what the model draws; the cull-policy chain and the pool policy are
//! the real components, called through the same [`PluginHost`] calls, with
//! the same inputs, as the culler and the warm pool make in service.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bindery_runtime::PluginHost;
use bindery_runtime::bindings::{Decision, ImageDemand, PoolBounds, Server, ServerState};
use serde_json::{Map, Value};

use super::SimulateError;
use super::model::Model;
use super::report::{Outcome, Refusal, Report, Tally};
use super::trace::Launch;
use crate::cache::{Demand, ranked};
use crate::config::Config;
use crate::launch::LaunchRequest;
use crate::launch::pool::plan;
use crate::pipeline::policy::SpecPolicy;
use crate::registry::naming;

/// How long a launch the total quota refuses waits for the pool's starting
/// servers to be up and give their room (the warm pool's patience).
const GIVE_WAY_PATIENCE_MS: u64 = 120_000;
/// The timeline's step.
const SAMPLE_MS: u64 = 300_000;
/// How long after the last launch the replay goes on at most, for the
/// servers still running to be culled.
const HORIZON_MS: u64 = 24 * 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Launch `n` arrives.
    Arrive(usize),
    /// Image `n`'s build ends.
    Built(usize),
    /// Server `n` is ready.
    Ready(usize),
    /// Launch `n` has waited for room as long as the pool lets it.
    GiveUp(usize),
    Cull,
    Pool,
    Sample,
}

#[derive(Debug, Clone, PartialEq)]
enum Build {
    Missing,
    /// Waiting for a build slot, and the launches waiting for it.
    Queued(Vec<usize>),
    Running(Vec<usize>),
    Built,
}

struct Image {
    name: String,
    build: Build,
}

/// A server: a launch's, or the pool's until a launch claims it.
struct SimServer {
    image: usize,
    user: String,
    /// The launch using it; none while it waits in the pool.
    launch: Option<usize>,
    pooled_once: bool,
    requested_ms: u64,
    ready_ms: Option<u64>,
    /// When its launch got it.
    claimed_ms: u64,
    /// When its user stops working.
    session_end_ms: u64,
    stopped_ms: Option<u64>,
    /// What the culler sees of its launch's `user_options`.
    options: String,
}

/// The replay's state.
pub struct Replay<'a> {
    config: &'a Config,
    plugins: &'a PluginHost,
    clock: Arc<AtomicU64>,
    model: Model,
    launches: &'a [Launch],
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    images: Vec<Image>,
    image_of: Vec<usize>,
    /// Each image's repository, by the image name without its tag.
    repo_of: Vec<usize>,
    /// What became of each launch.
    outcomes: Vec<Outcome>,
    servers: Vec<SimServer>,
    live: Vec<usize>,
    builds_running: usize,
    build_queue: VecDeque<usize>,
    /// Launches waiting for the room of a starting pool server, with
    /// their deadlines.
    room_waiters: VecDeque<(usize, u64)>,
    /// The pool's launch counts by image (ordered: ties rank alike every run).
    demand: BTreeMap<usize, Demand>,
    pool_spawns: u64,
    spec_policies: HashMap<String, Option<SpecPolicy>>,
    last_arrival: u64,
    tally: Tally,
}

impl<'a> Replay<'a> {
    /// A replay of `launches` (in time order) against `config`, asking the
    /// policies in `plugins`, which tell the time by `clock`.
    pub fn new(
        config: &'a Config,
        plugins: &'a PluginHost,
        clock: Arc<AtomicU64>,
        launches: &'a [Launch],
    ) -> Result<Replay<'a>, SimulateError> {
        let first = launches
            .first()
            .ok_or_else(|| SimulateError::Trace("it holds no successful launch".into()))?;
        let mut images: Vec<Image> = Vec::new();
        let mut by_revision: HashMap<String, usize> = HashMap::new();
        let mut repos: HashMap<String, usize> = HashMap::new();
        let mut repo_of = Vec::new();
        let mut image_of = Vec::with_capacity(launches.len());
        for launch in launches {
            let n = *by_revision.entry(launch.revision()).or_insert_with(|| {
                let name = image_name(&config.registry.image_prefix, launch);
                let repo = naming::split_tag(&name).0.to_string();
                let next = repos.len();
                repo_of.push(*repos.entry(repo).or_insert(next));
                images.push(Image {
                    name,
                    build: if config.simulate.prebuilt {
                        Build::Built
                    } else {
                        Build::Missing
                    },
                });
                images.len() - 1
            });
            image_of.push(n);
        }
        let hour0 = first.at_ms - first.at_ms % 3_600_000;
        let mut replay = Replay {
            config,
            plugins,
            clock,
            model: Model::new(&config.simulate),
            launches,
            now: hour0,
            queue: BinaryHeap::new(),
            seq: 0,
            images,
            image_of,
            repo_of,
            outcomes: launches
                .iter()
                .map(|l| Outcome {
                    arrived_ms: l.at_ms,
                    ..Outcome::default()
                })
                .collect(),
            servers: Vec::new(),
            live: Vec::new(),
            builds_running: 0,
            build_queue: VecDeque::new(),
            room_waiters: VecDeque::new(),
            demand: BTreeMap::new(),
            pool_spawns: 0,
            spec_policies: HashMap::new(),
            last_arrival: launches.last().map_or(0, |l| l.at_ms),
            tally: Tally::new(hour0),
        };
        for (i, launch) in launches.iter().enumerate() {
            replay.at(launch.at_ms, Event::Arrive(i));
        }
        if config.cull.enabled && !config.cull.policies.is_empty() {
            replay.at(hour0, Event::Cull);
        }
        if config.warm_pool.max_servers > 0 {
            replay.at(hour0, Event::Pool);
        }
        replay.at(hour0, Event::Sample);
        Ok(replay)
    }

    fn at(&mut self, at_ms: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at_ms, self.seq, event)));
    }

    /// Whether anything but the periodic passes is left to happen.
    fn busy(&self) -> bool {
        self.now <= self.last_arrival
            || self.builds_running > 0
            || !self.room_waiters.is_empty()
            || self.live.iter().any(|&s| self.servers[s].launch.is_some())
    }

    /// Runs the replay to its end: every launch served or refused, and
    /// every server culled (or a day after the last launch, those left).
    pub async fn run(mut self) -> Result<Report, SimulateError> {
        let started = std::time::Instant::now();
        while let Some(Reverse((at, _, event))) = self.queue.pop() {
            let periodic = matches!(event, Event::Cull | Event::Pool | Event::Sample);
            if periodic && (!self.busy() || at > self.last_arrival + HORIZON_MS) {
                continue;
            }
            self.now = at;
            match event {
                Event::Arrive(i) => self.arrive(i),
                Event::Built(image) => self.built(image),
                Event::Ready(server) => self.ready(server),
                Event::GiveUp(launch) => self.give_up(launch),
                Event::Cull => {
                    self.cull().await;
                    self.at(at + self.config.cull.every_secs.max(1) * 1000, Event::Cull);
                }
                Event::Pool => {
                    self.pool().await;
                    let every = self.config.warm_pool.every_secs.max(1) * 1000;
                    self.at(at + every, Event::Pool);
                }
                Event::Sample => {
                    self.sample();
                    self.at(at + SAMPLE_MS, Event::Sample);
                }
            }
        }
        let end = self.now;
        for s in std::mem::take(&mut self.live) {
            self.tally.left_running += 1;
            self.account(s, end);
        }
        Ok(self.tally.report(end, self.outcomes, started.elapsed()))
    }

    fn spec_policy(&mut self, provider: &str) -> Option<&SpecPolicy> {
        let config = self.config;
        self.spec_policies
            .entry(provider.into())
            .or_insert_with(|| {
                config
                    .plugins
                    .get(provider)
                    .and_then(|p| SpecPolicy::new(provider, p).ok())
            })
            .as_ref()
    }

    /// The repository quota of launch `i`'s spec, as the pipeline reads it.
    fn repo_quota(&mut self, i: usize) -> Option<u64> {
        let launch = &self.launches[i];
        let quota = &self.config.quota;
        let (provider, spec) = (launch.provider.clone(), launch.spec.clone());
        let configured = match self.spec_policy(&provider) {
            Some(policy) => policy
                .repo_config(&spec, quota)
                .get("quota")
                .and_then(Value::as_u64),
            None => quota.per_repo.map(u64::from),
        };
        configured.filter(|q| *q > 0)
    }

    fn pooled_now(&self) -> usize {
        self.live
            .iter()
            .filter(|&&s| self.servers[s].launch.is_none())
            .count()
    }

    /// Whether launch `i` finds room: `None` when it does, else which quota
    /// is full. The pool's unclaimed servers take room in the total but
    /// not in a repository's quota.
    fn full(&mut self, i: usize) -> Option<Full> {
        if let Some(total) = self.config.quota.total
            && self.live.len() as u64 >= u64::from(total)
        {
            return Some(Full::Total);
        }
        let quota = self.repo_quota(i)?;
        let repo = self.repo_of[self.image_of[i]];
        let same = self
            .live
            .iter()
            .filter(|&&s| {
                let server = &self.servers[s];
                server.launch.is_some() && self.repo_of[server.image] == repo
            })
            .count() as u64;
        (same >= quota).then_some(Full::Repo)
    }

    fn arrive(&mut self, i: usize) {
        self.tally.hour(self.now).launches += 1;
        let launch = &self.launches[i];
        let (provider, spec) = (launch.provider.clone(), launch.spec.clone());
        if self
            .spec_policy(&provider)
            .is_some_and(|p| p.is_banned(&spec))
        {
            self.tally.hour(self.now).banned += 1;
            self.outcomes[i].refused = Some(Refusal::Banned);
            return;
        }
        // Admission, before the build: a pool server gives its room back
        // when the launch comes.
        match self.full(i) {
            Some(Full::Total) if self.pooled_now() > 0 => {}
            Some(full) => return self.refuse(i, full),
            None => {}
        }
        let image = self.image_of[i];
        match &mut self.images[image].build {
            Build::Built => {
                self.tally.hour(self.now).cache_hits += 1;
                self.launch(i);
            }
            Build::Queued(waiting) | Build::Running(waiting) => {
                waiting.push(i);
                self.tally.hour(self.now).build_joins += 1;
            }
            Build::Missing => {
                self.tally.hour(self.now).builds += 1;
                if (self.builds_running as u64) < self.config.build.max_concurrent {
                    self.start_build(image, vec![i]);
                } else {
                    self.images[image].build = Build::Queued(vec![i]);
                    self.build_queue.push_back(image);
                }
            }
        }
    }

    fn refuse(&mut self, i: usize, full: Full) {
        let hour = self.tally.hour(self.now);
        self.outcomes[i].refused = Some(match full {
            Full::Total => {
                hour.refused_total += 1;
                Refusal::TotalQuota
            }
            Full::Repo => {
                hour.refused_repo += 1;
                Refusal::RepoQuota
            }
        });
    }

    fn start_build(&mut self, image: usize, waiting: Vec<usize>) {
        self.builds_running += 1;
        self.tally.builds_now(self.now, self.builds_running);
        self.images[image].build = Build::Running(waiting);
        let took = self.model.build_ms(&self.images[image].name);
        let limit = self.config.build.timeout_secs.saturating_mul(1000);
        self.at(self.now + took.min(limit), Event::Built(image));
    }

    fn built(&mut self, image: usize) {
        self.builds_running -= 1;
        self.tally.builds_now(self.now, self.builds_running);
        let Build::Running(waiting) =
            std::mem::replace(&mut self.images[image].build, Build::Built)
        else {
            unreachable!("only a running build ends");
        };
        let limit = self.config.build.timeout_secs.saturating_mul(1000);
        if self.model.build_ms(&self.images[image].name) > limit {
            // Timed out: the next launch of it tries again, and fails the same.
            self.images[image].build = Build::Missing;
            let hour = self.tally.hour(self.now);
            hour.failed_builds += 1;
            hour.failed_launches += waiting.len() as u64;
            for i in waiting {
                self.outcomes[i].refused = Some(Refusal::BuildFailed);
            }
        } else {
            for i in waiting {
                self.launch(i);
            }
        }
        if let Some(next) = self.build_queue.pop_front()
            && let Build::Queued(waiting) =
                std::mem::replace(&mut self.images[next].build, Build::Missing)
        {
            self.start_build(next, waiting);
        }
    }

    /// Launch `i`'s image is in the registry: a pool server, else a spawn.
    fn launch(&mut self, i: usize) {
        let image = self.image_of[i];
        let pool_on = self.config.warm_pool.max_servers > 0;
        if pool_on {
            self.record_demand(i);
            if self.claim(i, image) {
                return;
            }
        }
        match self.full(i) {
            None => self.spawn_for(i),
            Some(Full::Total) if pool_on => self.give_way(i),
            Some(full) => {
                self.miss(pool_on);
                self.refuse(i, full);
            }
        }
    }

    fn miss(&mut self, pool_on: bool) {
        if pool_on {
            self.tally.hour(self.now).pool_misses += 1;
        }
    }

    /// Hands launch `i` a ready pool server of `image`, if there is one.
    fn claim(&mut self, i: usize, image: usize) -> bool {
        let found = self.live.iter().copied().find(|&s| {
            let server = &self.servers[s];
            server.launch.is_none() && server.image == image && server.ready_ms.is_some()
        });
        let Some(s) = found else {
            return false;
        };
        self.serve(i, s);
        true
    }

    /// Server `s`, ready in the pool, is launch `i`'s from now.
    fn serve(&mut self, i: usize, s: usize) {
        self.tally.hour(self.now).pool_hits += 1;
        self.outcomes[i].pool_hit = true;
        self.got_server(i);
        let session = self.model.session_ms(i, self.launches[i].session_secs);
        let options = user_options(&self.launches[i], &self.images[self.image_of[i]].name);
        let server = &mut self.servers[s];
        server.launch = Some(i);
        server.claimed_ms = self.now;
        server.session_end_ms = self.now.saturating_add(session);
        server.options = options;
    }

    /// Launch `i`'s server is ready for it now.
    fn got_server(&mut self, i: usize) {
        let arrived = self.outcomes[i].arrived_ms;
        self.outcomes[i].ready_ms = Some(self.now);
        self.tally.waited(arrived, self.now - arrived);
    }

    fn spawn_for(&mut self, i: usize) {
        self.miss(self.config.warm_pool.max_servers > 0);
        let took = self.model.spawn_ms(i);
        let s = self.new_server(self.image_of[i], Some(i), took);
        self.servers[s].options =
            user_options(&self.launches[i], &self.images[self.image_of[i]].name);
    }

    fn new_server(&mut self, image: usize, launch: Option<usize>, took: u64) -> usize {
        let s = self.servers.len();
        self.servers.push(SimServer {
            image,
            user: format!("sim-{s}"),
            launch,
            pooled_once: launch.is_none(),
            requested_ms: self.now,
            ready_ms: None,
            claimed_ms: self.now,
            session_end_ms: u64::MAX,
            stopped_ms: None,
            options: String::new(),
        });
        self.live.push(s);
        self.tally.servers_now(self.now, self.live.len());
        self.at(self.now + took, Event::Ready(s));
        s
    }

    fn ready(&mut self, s: usize) {
        if self.servers[s].stopped_ms.is_some() {
            return;
        }
        self.servers[s].ready_ms = Some(self.now);
        match self.servers[s].launch {
            Some(i) => {
                let session = self.model.session_ms(i, self.launches[i].session_secs);
                self.servers[s].session_end_ms = self.now.saturating_add(session);
                self.got_server(i);
            }
            None => {
                // A launch waiting for room takes this one, or its room.
                while let Some((i, deadline)) = self.room_waiters.pop_front() {
                    if deadline < self.now {
                        continue;
                    }
                    if self.servers[s].image == self.image_of[i] {
                        self.serve(i, s);
                    } else {
                        self.stop(s);
                        self.tally.hour(self.now).pool_removed += 1;
                        self.spawn_for(i);
                    }
                    break;
                }
            }
        }
    }

    /// The total quota is full for launch `i`: a ready pool server of the
    /// image launched least makes room; with only starting ones, the launch
    /// waits for one to be up.
    fn give_way(&mut self, i: usize) {
        let victim = self
            .live
            .iter()
            .copied()
            .filter(|&s| self.servers[s].launch.is_none() && self.servers[s].ready_ms.is_some())
            .min_by(|&a, &b| {
                let rank = |s: usize| {
                    self.demand
                        .get(&self.servers[s].image)
                        .map_or(0.0, |d| d.launches_at(self.now, self.half_life_ms()))
                };
                rank(a).total_cmp(&rank(b))
            });
        if let Some(s) = victim {
            self.stop(s);
            self.tally.hour(self.now).pool_removed += 1;
            return self.spawn_for(i);
        }
        if self.pooled_now() > 0 {
            let deadline = self.now + GIVE_WAY_PATIENCE_MS;
            self.room_waiters.push_back((i, deadline));
            self.at(deadline, Event::GiveUp(i));
            return;
        }
        self.miss(true);
        self.refuse(i, Full::Total);
    }

    fn give_up(&mut self, i: usize) {
        let before = self.room_waiters.len();
        self.room_waiters.retain(|(w, _)| *w != i);
        if self.room_waiters.len() < before {
            self.miss(true);
            self.refuse(i, Full::Total);
        }
    }

    fn half_life_ms(&self) -> u64 {
        self.config.warm_pool.half_life_secs.saturating_mul(1000)
    }

    /// Counts launch `i` for the pool, as the pool does in service.
    fn record_demand(&mut self, i: usize) {
        let launch = &self.launches[i];
        let name = &self.images[self.image_of[i]].name;
        let counted = Demand {
            image: name.clone(),
            repo_url: repo_url(launch),
            provider: launch.provider.clone(),
            spec: launch.spec.clone(),
            ..Demand::default()
        };
        let half_life = self.half_life_ms();
        let now = self.now;
        let old = self.demand.entry(self.image_of[i]).or_default();
        *old = old.counted(&counted, now, half_life);
    }

    fn stop(&mut self, s: usize) {
        self.servers[s].stopped_ms = Some(self.now);
        if let Some(i) = self.servers[s].launch {
            self.outcomes[i].stopped_ms = Some(self.now);
        }
        self.live.retain(|&l| l != s);
        self.tally.servers_now(self.now, self.live.len());
        self.account(s, self.now);
    }

    /// Adds server `s`'s hours, up to `end`, to the tally.
    fn account(&mut self, s: usize, end: u64) {
        let server = &self.servers[s];
        let pool_until = match server.launch {
            Some(_) if server.pooled_once => server.claimed_ms,
            Some(_) => server.requested_ms,
            None => end,
        };
        self.tally
            .span(server.requested_ms, pool_until.min(end), Span::Pool);
        if server.launch.is_some() {
            let from = pool_until;
            let active_from = server.ready_ms.map_or(end, |r| r.max(from)).min(end);
            let active_to = server.session_end_ms.clamp(active_from, end);
            self.tally.span(from, active_from, Span::Idle);
            self.tally.span(active_from, active_to, Span::Active);
            self.tally.span(active_to, end, Span::Idle);
        }
    }

    /// The hub's record of server `s`'s activity at `now`: the latest
    /// activity as of the hub's last poll, else its start.
    fn last_activity(&self, s: &SimServer) -> u64 {
        let ready = s.ready_ms.unwrap_or(s.requested_ms);
        let interval = self.config.simulate.activity_interval_secs * 1000;
        let polled = match interval {
            0 => self.now,
            i => self.now - self.now % i,
        };
        if polled < s.claimed_ms {
            return ready;
        }
        polled.min(s.session_end_ms).max(ready)
    }

    /// A cull pass: the ready servers launches use, as the culler lists
    /// them, decided by the real chain.
    async fn cull(&mut self) {
        let listed: Vec<usize> = self
            .live
            .iter()
            .copied()
            .filter(|&s| {
                let server = &self.servers[s];
                server.launch.is_some() && server.ready_ms.is_some()
            })
            .collect();
        if listed.is_empty() {
            return;
        }
        let records: Vec<Server> = listed
            .iter()
            .map(|&s| {
                let server = &self.servers[s];
                let launch = &self.launches[server.launch.expect("listed servers are launched")];
                Server {
                    user: server.user.clone(),
                    server_name: String::new(),
                    image: self.images[server.image].name.clone(),
                    repo_url: repo_url(launch),
                    provider: launch.provider.clone(),
                    spec: launch.spec.clone(),
                    started_ms: server.requested_ms,
                    last_activity_ms: Some(self.last_activity(server)),
                    state: ServerState::Ready,
                    user_options_json: server.options.clone(),
                }
            })
            .collect();
        self.clock.store(self.now, Ordering::SeqCst);
        let verdicts =
            crate::cull::decide(self.plugins, &self.config.cull.policies, self.now, &records).await;
        self.tally.cull_policy_failures += verdicts.failed.len() as u64;
        for (s, (decision, policy)) in listed.into_iter().zip(verdicts.decisions) {
            match decision {
                Decision::Pass | Decision::Keep => {}
                Decision::Warn(_) => self.tally.hour(self.now).warnings += 1,
                Decision::Stop(reason) | Decision::StopAndDeleteUser(reason) => {
                    if self.now < self.servers[s].session_end_ms {
                        self.tally.hour(self.now).interrupted += 1;
                    }
                    self.stop(s);
                    if let Some(i) = self.servers[s].launch {
                        self.outcomes[i].culled_by =
                            Some((policy.clone().unwrap_or_default(), reason.clone()));
                    }
                    self.tally
                        .culled(self.now, policy.as_deref().unwrap_or_default(), &reason);
                }
            }
        }
    }

    /// A pool pass, as the leader's: the policy's sizes trimmed to the
    /// bounds, servers started and removed.
    async fn pool(&mut self) {
        let pool = &self.config.warm_pool;
        let now = self.now;
        let mut ranked = ranked(
            self.demand.iter().map(|(&image, d)| (image, d)),
            now,
            self.half_life_ms(),
        );
        // Forget the faded and all but the most launched, as the pool's prune.
        ranked.truncate(pool.max_images);
        if ranked.len() < self.demand.len() {
            let kept: HashSet<usize> = ranked.iter().map(|(image, _)| *image).collect();
            self.demand.retain(|image, _| kept.contains(image));
        }
        // The pool's servers of each image, ready or starting.
        let mut pooled: HashMap<usize, usize> = HashMap::new();
        for &s in &self.live {
            if self.servers[s].launch.is_none() {
                *pooled.entry(self.servers[s].image).or_default() += 1;
            }
        }
        let pooled_of = |image: usize| pooled.get(&image).copied().unwrap_or(0);
        let images: Vec<ImageDemand> = ranked
            .iter()
            .map(|&(image, launches)| {
                let d = &self.demand[&image];
                ImageDemand {
                    image: d.image.clone(),
                    repo_url: d.repo_url.clone(),
                    provider: d.provider.clone(),
                    spec: d.spec.clone(),
                    recent_launches: launches,
                    last_launch_ms: d.at_ms,
                    pooled: pooled_of(image) as u32,
                }
            })
            .collect();
        // As in service, a launch's server counts once as listed and once
        // more while its launch is under way.
        let launched = self
            .live
            .iter()
            .filter(|&&s| self.servers[s].launch.is_some())
            .count() as u32;
        let in_flight = self
            .live
            .iter()
            .filter(|&&s| self.servers[s].launch.is_some() && self.servers[s].ready_ms.is_none())
            .count() as u32;
        let bounds = PoolBounds {
            max_servers: pool.max_servers,
            quota_room: self
                .config
                .quota
                .total
                .map(|t| t.saturating_sub(launched + in_flight)),
        };
        self.clock.store(now, Ordering::SeqCst);
        let answer = self
            .plugins
            .pool_sizes(&pool.policy, now, bounds, &images)
            .await
            .map_err(|e| e.to_string())
            .and_then(|sizes| sizes.map_err(|e| bindery_runtime::plugin_error_text(&e)));
        let wants = match answer {
            Ok(sizes) => sizes,
            Err(why) => {
                tracing::warn!(policy = %pool.policy, "pool policy failed, so the pool stays as it is: {why}");
                self.tally.pool_policy_failures += 1;
                return;
            }
        };
        let have: Vec<usize> = ranked.iter().map(|&(image, _)| pooled_of(image)).collect();
        let plan = plan(&wants, bounds, &have, pooled.values().sum());
        let spawns: Vec<usize> = plan.starts.iter().map(|&n| ranked[n].0).collect();
        for image in spawns {
            self.pool_spawns += 1;
            let took = self.model.pool_spawn_ms(self.pool_spawns);
            self.new_server(image, None, took);
            self.tally.hour(now).pool_started += 1;
        }
        let wanted: HashMap<usize, usize> = ranked
            .iter()
            .zip(&plan.keep)
            .map(|(&(image, _), &n)| (image, n as usize))
            .collect();
        let mut surplus = pooled;
        for (image, n) in &mut surplus {
            *n = n.saturating_sub(wanted.get(image).copied().unwrap_or(0));
        }
        let ready: Vec<usize> = self
            .live
            .iter()
            .copied()
            .filter(|&s| self.servers[s].launch.is_none() && self.servers[s].ready_ms.is_some())
            .collect();
        for s in ready {
            let left = surplus.entry(self.servers[s].image).or_default();
            if *left > 0 {
                *left -= 1;
                self.stop(s);
                self.tally.hour(now).pool_removed += 1;
            }
        }
    }

    fn sample(&mut self) {
        let (mut active, mut idle, mut pool) = (0, 0, 0);
        for &s in &self.live {
            let server = &self.servers[s];
            match server.launch {
                None => pool += 1,
                Some(_) if server.ready_ms.is_some() && self.now < server.session_end_ms => {
                    active += 1;
                }
                Some(_) => idle += 1,
            }
        }
        self.tally
            .sample(self.now, active, idle, pool, self.builds_running);
    }
}

/// What filled up.
#[derive(Debug, Clone, Copy)]
enum Full {
    Total,
    Repo,
}

/// Where a server's time goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Span {
    /// Its user works in it.
    Active,
    /// Starting, or left idle by its user.
    Idle,
    /// Waiting in the warm pool.
    Pool,
}

/// The image a launch is built into, by upstream's naming rule.
fn image_name(prefix: &str, launch: &Launch) -> String {
    let tag = match &launch.resolved_ref {
        Some(r) => r.clone(),
        None if launch.repo() != launch.spec => launch.spec[launch.repo().len() + 1..].to_string(),
        None => format!("{:012x}", crate::federation::placement::hash(&launch.spec)),
    };
    naming::image_name(
        prefix,
        &format!("{}-{}", launch.provider, launch.repo()),
        &tag,
    )
}

/// The repository's URL as a bundled provider would give it; other
/// providers' repositories by their spec.
fn repo_url(launch: &Launch) -> String {
    let repo = launch.repo();
    let unescaped = || {
        percent_encoding::percent_decode_str(repo)
            .decode_utf8_lossy()
            .into_owned()
    };
    match launch.provider.as_str() {
        "gh" => format!("https://github.com/{repo}"),
        "gist" => format!("https://gist.github.com/{repo}"),
        "gl" => format!("https://gitlab.com/{}", unescaped()),
        "git" => unescaped(),
        _ => format!("{}:{}", launch.provider, launch.spec),
    }
}

/// The `user_options` of a launch's server as the culler shows them to
/// policies (without the token); a trace has no client address.
fn user_options(launch: &Launch, image: &str) -> String {
    let binder_request = format!("v2/{}/{}", launch.provider, launch.spec);
    let persistent_request = match &launch.resolved_ref {
        Some(r) if launch.repo() != launch.spec => {
            format!("v2/{}/{}/{r}", launch.provider, launch.repo())
        }
        _ => binder_request.clone(),
    };
    let request = LaunchRequest {
        image: image.into(),
        repo_url: repo_url(launch),
        ref_url: repo_url(launch),
        launch_host: "https://bindery.simulated/".into(),
        binder_request,
        persistent_request,
        client_ip: String::new(),
        repo_config: Map::new(),
        user: None,
    };
    Value::Object(request.binder_fields()).to_string()
}
