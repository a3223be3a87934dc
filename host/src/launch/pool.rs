//! The warm pool: servers started ahead of demand for the images launched
//! most, each handed to one launch of its image at once. A pool-policy
//! plugin decides how many each image gets; the host keeps the bounds.
//!
//! A pool server is a hub user in `warm_pool.group` running its default
//! server with the options of its image's latest launch. Before the spawn
//! the pool gives that user an API token, the claim: handing the server out
//! deletes it, which the hub answers with 204 exactly once, so two launches
//! (or replicas) never get the same server. A claimed user joins
//! `hub.users_group` and is culled like any launch. Everything but the
//! launch counts lives on the hub, so a restart finds the pool again, and
//! every replica can hand out what the leader (`cull.leader`) started.
//!
//! The pool takes only room the total quota leaves, and gives it back: a
//! launch the total quota refuses has a pool server removed for it (of the
//! image launched least) and tries again.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bindery_runtime::PluginHost;
use bindery_runtime::bindings::{ImageDemand, PoolBounds};
use futures_util::future::BoxFuture;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::{LaunchError, LaunchRequest, Launched, Launcher, LauncherHealth, Quota};
use crate::cache::{Demand, LaunchDemand};
use crate::config::WarmPoolConfig;
use crate::jupyterhub::{Hub, UserModel, segment};
use crate::metrics::Metrics;

/// Pool servers started at once in one pass.
const SPAWNS_PER_PASS: usize = 4;

/// How long a launch the total quota refuses waits for the pool's starting
/// servers to be up and removable (the hub cannot stop a spawn under way).
const GIVE_WAY_PATIENCE: Duration = Duration::from_secs(120);

/// What deleting a claim token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// This caller deleted it: the server is its alone.
    Taken,
    /// Already deleted: someone else took the server.
    Gone,
    /// The hub did not say.
    Failed,
}

/// A started pool server no launch has claimed.
#[derive(Debug, Clone)]
struct Ready {
    user: String,
    token: String,
    claim: String,
}

/// The pool's users on the hub, by image, as one listing shows them.
#[derive(Default)]
struct Listing {
    ready: HashMap<String, Vec<Ready>>,
    /// Users whose server the hub is still spawning, by image.
    starting: HashMap<String, Vec<String>>,
    /// Pool users whose server is neither up nor starting (it failed or
    /// stopped, or the user was left half-made), with their claim where
    /// they have one: each pass removes them.
    broken: Vec<Ready>,
    /// Servers running for launches (everything of Bindery's but the pool).
    launched: u32,
    /// Rooms held for launches other replicas gave pool servers' room to.
    given: u32,
}

impl Listing {
    fn of(users: &[UserModel], pool_group: &str, users_group: &str) -> Listing {
        let mut listing = Listing::default();
        for user in users {
            if !user.unclaimed_in_pool(pool_group, users_group) {
                listing.launched += user.servers.len() as u32;
                continue;
            }
            let server = user.servers.get("");
            let options = server
                .and_then(|s| s.user_options.clone())
                .unwrap_or_default();
            let text = |key: &str| options.get(key).and_then(Value::as_str).map(String::from);
            let state = server.map(|s| (s.ready, s.pending.as_deref()));
            match (state, text("image"), text("token"), text("bindery_claim")) {
                (Some((true, None)), Some(image), Some(token), Some(claim)) => {
                    listing.ready.entry(image).or_default().push(Ready {
                        user: user.name.clone(),
                        token,
                        claim,
                    });
                }
                (Some((_, Some("spawn"))), Some(image), ..) => {
                    listing
                        .starting
                        .entry(image)
                        .or_default()
                        .push(user.name.clone());
                }
                (.., claim) => listing.broken.push(Ready {
                    user: user.name.clone(),
                    token: String::new(),
                    claim: claim.unwrap_or_default(),
                }),
            }
        }
        listing
    }

    fn forget(&mut self, user: &str) {
        forget(&mut self.ready, user);
    }

    fn pooled(&self, image: &str) -> usize {
        self.ready.get(image).map_or(0, Vec::len) + self.starting.get(image).map_or(0, Vec::len)
    }

    /// The pool's servers of every image, ready or starting.
    fn pooled_total(&self) -> usize {
        self.ready.values().map(Vec::len).sum::<usize>()
            + self.starting.values().map(Vec::len).sum::<usize>()
    }
}

/// The warm pool of one hub.
pub struct WarmPool {
    hub: Arc<Hub>,
    plugins: Arc<PluginHost>,
    demand: LaunchDemand,
    config: WarmPoolConfig,
    total_quota: Option<u32>,
    users_group: String,
    metrics: Arc<Metrics>,
    /// Unclaimed servers, ready or starting, at the last pass.
    counted: Mutex<usize>,
    /// Ready servers by image: as the last pass found them, and those
    /// started since as soon as they are up.
    ready: Arc<Mutex<HashMap<String, Vec<Ready>>>>,
    /// Anonymous launches under way on this replica that the pool did not
    /// serve: room in the total quota the pool must leave them.
    in_flight: AtomicU32,
    /// Pool users listed as unclaimed whose claim was found gone: a launch
    /// took them and may not have moved them out of the pool's group yet
    /// (or failed to). The leader checks and finishes the move.
    suspects: Arc<Mutex<HashSet<String>>>,
    /// Whether this replica's leader pass has checked every listed claim
    /// (once, for what a previous process left half-claimed).
    checked: AtomicBool,
    /// Rooms given to launches on other replicas, held for them.
    given: Mutex<Given>,
}

/// How long the room of a pool server another replica gave to its launch
/// ([`WarmPool::give_way`]) is kept for that launch: from the server's
/// removal until the launch's own server is listed, which the leader
/// cannot see coming, as it sees its own launches (`in_flight`).
const GIVEN_HOLD: Duration = Duration::from_secs(30);

/// What [`WarmPool::look`] needs to tell a pool server given away from one
/// that moved to a launch or that this replica removed.
#[derive(Default)]
struct Given {
    /// Unclaimed pool users at the last look.
    pooled: HashSet<String>,
    /// Users this replica removed since.
    removed: HashSet<String>,
    /// When each room given away was noticed.
    held: VecDeque<std::time::Instant>,
}

impl Given {
    /// Notes the unclaimed pool servers gone since the last look that
    /// neither went to a launch (into the launches' group) nor were removed
    /// by this replica: another replica gave their room to its launch.
    /// The rooms held now.
    fn notice(&mut self, listing: &Listing, launched: &HashSet<&str>) -> u32 {
        let pooled: HashSet<String> = listing
            .ready
            .values()
            .flat_map(|r| r.iter().map(|s| s.user.clone()))
            .chain(listing.starting.values().flatten().cloned())
            .collect();
        for user in self.pooled.difference(&pooled) {
            if !launched.contains(user.as_str()) && !self.removed.contains(user) {
                tracing::debug!(
                    user,
                    "warm pool: a server left the pool for a launch elsewhere; its room is held for that launch"
                );
                self.held.push_back(std::time::Instant::now());
            }
        }
        // What this replica removes is still pooled until its server stops.
        self.removed.retain(|u| pooled.contains(u));
        self.pooled = pooled;
        while self.held.front().is_some_and(|t| t.elapsed() > GIVEN_HOLD) {
            self.held.pop_front();
        }
        self.held.len() as u32
    }
}

impl WarmPool {
    /// A pool on `hub`, sized by `config.policy` from `demand`.
    pub fn new(
        hub: Arc<Hub>,
        plugins: Arc<PluginHost>,
        demand: LaunchDemand,
        config: &WarmPoolConfig,
        total_quota: Option<u32>,
        users_group: &str,
        metrics: Arc<Metrics>,
    ) -> WarmPool {
        WarmPool {
            hub,
            plugins,
            demand,
            config: config.clone(),
            total_quota,
            users_group: users_group.into(),
            metrics,
            counted: Mutex::default(),
            ready: Arc::default(),
            in_flight: AtomicU32::new(0),
            suspects: Arc::default(),
            checked: AtomicBool::new(false),
            given: Mutex::default(),
        }
    }

    /// Counts a launch of `request.image`.
    fn record(&self, request: &LaunchRequest) {
        let (provider, spec) = request
            .binder_request
            .strip_prefix("v2/")
            .and_then(|r| r.split_once('/'))
            .unwrap_or_default();
        let mut options = request.binder_fields();
        options.remove("binder_client_ip");
        let launch = Demand {
            image: request.image.clone(),
            repo_url: request.repo_url.clone(),
            provider: provider.into(),
            spec: spec.into(),
            options,
            ..Demand::default()
        };
        if let Err(e) = self.demand.record(&launch, crate::now_ms()) {
            tracing::warn!(image = %request.image, "warm pool: cannot count the launch: {e}");
        }
    }

    /// A ready server of `image`, now this launch's alone; `None` when the
    /// pool has none left.
    async fn claim(&self, image: &str) -> Option<Launched> {
        loop {
            let candidate = self.ready.lock().ok()?.get_mut(image)?.pop()?;
            if self.take(&candidate).await != Claim::Taken {
                continue;
            }
            // Bookkeeping only: the deleted token already makes it this
            // launch's. Should it fail, the leader's next pass finishes it.
            let (hub, groups, user) = (
                self.hub.clone(),
                (self.users_group.clone(), self.config.group.clone()),
                candidate.user.clone(),
            );
            let suspects = self.suspects.clone();
            tokio::spawn(async move {
                if !finish_claim(&hub, &groups.0, &groups.1, &user).await
                    && let Ok(mut suspects) = suspects.lock()
                {
                    suspects.insert(user);
                }
            });
            return Some(Launched {
                url: self.hub.server_url(&candidate.user, ""),
                token: candidate.token,
                user: candidate.user,
                server: String::new(),
                temporary: true,
            });
        }
    }

    /// Deletes `server`'s claim token: [`Claim::Taken`] for the one caller
    /// the hub answers 204.
    async fn take(&self, server: &Ready) -> Claim {
        match self
            .hub
            .request(Method::DELETE, &claim_path(server), None)
            .await
        {
            Ok(_) => Claim::Taken,
            Err(e) if e.status() == Some(404) => {
                if let Ok(mut suspects) = self.suspects.lock() {
                    suspects.insert(server.user.clone());
                }
                Claim::Gone
            }
            Err(e) => {
                tracing::warn!(user = %server.user, "warm pool: cannot claim a server: {e}");
                Claim::Failed
            }
        }
    }

    /// Passes forever, the first at once, then every `every_secs`: the
    /// leader's, which start and remove servers; elsewhere, looks at the
    /// pool so that this replica can hand out what the leader started.
    pub async fn run(self: Arc<Self>, leading: watch::Receiver<bool>) {
        let every = Duration::from_secs(self.config.every_secs);
        loop {
            let leads = *leading.borrow();
            let done = match leads {
                true => self.pass().await,
                false => self.look().await.map(drop),
            };
            if let Err(e) = done {
                tracing::warn!("warm pool pass failed: {e}");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Lists the pool on the hub, and offers its ready servers.
    async fn look(&self) -> Result<Listing, String> {
        let users = self.hub.users("active").await.map_err(|e| e.to_string())?;
        let mut listing = Listing::of(&users, &self.config.group, &self.users_group);
        // Members with no active server (it stopped or crashed) are not in
        // that listing, and are broken too.
        let group = format!("groups/{}", segment(&self.config.group));
        let members = match self.hub.json(Method::GET, &group, None).await {
            Ok(group) => group["users"].as_array().cloned().unwrap_or_default(),
            Err(e) if e.status() == Some(404) => Vec::new(),
            Err(e) => return Err(e.to_string()),
        };
        let active: HashSet<&str> = users.iter().map(|u| u.name.as_str()).collect();
        for name in members.iter().filter_map(Value::as_str) {
            if !active.contains(name) {
                listing.broken.push(Ready {
                    user: name.into(),
                    token: String::new(),
                    claim: String::new(),
                });
            }
        }
        let launched: HashSet<&str> = users
            .iter()
            .filter(|u| !u.unclaimed_in_pool(&self.config.group, &self.users_group))
            .map(|u| u.name.as_str())
            .collect();
        if let Ok(mut given) = self.given.lock() {
            listing.given = given.notice(&listing, &launched);
        }
        let counted = listing.ready.values().map(Vec::len).sum::<usize>()
            + listing.starting.values().map(Vec::len).sum::<usize>();
        self.metrics.pool_servers(
            (listing
                .ready
                .iter()
                .map(|(i, r)| (i.as_str(), "ready", r.len())))
            .chain(
                listing
                    .starting
                    .iter()
                    .map(|(i, s)| (i.as_str(), "starting", s.len())),
            ),
        );
        if let Ok(mut c) = self.counted.lock() {
            *c = counted;
        }
        if let Ok(mut ready) = self.ready.lock() {
            ready.clone_from(&listing.ready);
        }
        Ok(listing)
    }

    /// The leader's pass: lists the pool on the hub, then starts what the
    /// policy wants more of and removes what it wants less of.
    pub async fn pass(&self) -> Result<(), String> {
        let mut listing = self.look().await?;
        self.settle_claims(&mut listing).await;
        let now = crate::now_ms();
        if let Err(e) = self.demand.prune(now, self.config.max_images) {
            tracing::warn!("warm pool: cannot prune the launch counts: {e}");
        }
        let demand = self.demand.at(now).map_err(|e| e.to_string())?;
        let images: Vec<ImageDemand> = demand
            .iter()
            .map(|d| ImageDemand {
                image: d.image.clone(),
                repo_url: d.repo_url.clone(),
                provider: d.provider.clone(),
                spec: d.spec.clone(),
                recent_launches: d.launches,
                last_launch_ms: d.at_ms,
                pooled: listing.pooled(&d.image) as u32,
            })
            .collect();
        // Launches under way here may not be listed yet: their room is
        // theirs, and so is the room another replica gave its launch.
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        let bounds = PoolBounds {
            max_servers: self.config.max_servers,
            quota_room: self
                .total_quota
                .map(|t| t.saturating_sub(listing.launched + in_flight + listing.given)),
        };
        let wants = match self
            .plugins
            .pool_sizes(&self.config.policy, now, bounds, &images)
            .await
        {
            Ok(Ok(sizes)) => sizes,
            // The pool stays as it is rather than follow a policy that failed.
            Ok(Err(e)) => {
                return Err(format!(
                    "pool policy `{}`: {}",
                    self.config.policy,
                    bindery_runtime::plugin_error_text(&e)
                ));
            }
            Err(e) => return Err(format!("pool policy `{}`: {e}", self.config.policy)),
        };
        let pooled: Vec<usize> = demand.iter().map(|d| listing.pooled(&d.image)).collect();
        let plan = plan(&wants, bounds, &pooled, listing.pooled_total());
        let wanted: BTreeMap<&str, usize> = demand
            .iter()
            .zip(&plan.keep)
            .map(|(d, &n)| (d.image.as_str(), n as usize))
            .collect();
        let started = futures_util::future::join_all(
            plan.starts
                .into_iter()
                .map(|i| self.spawn(&demand[i], in_flight)),
        )
        .await;
        for e in started.into_iter().filter_map(Result::err) {
            tracing::warn!("warm pool: {e}");
        }
        self.shrink(&listing, &wanted).await;
        Ok(())
    }

    /// Removes the broken pool users, and the ready servers past what
    /// `wanted` gives their image. Each is claimed before it goes, so that
    /// no launch is handed a server being removed. A spawn under way is
    /// left to end (the hub cannot stop it): the next pass judges it.
    async fn shrink(&self, listing: &Listing, wanted: &BTreeMap<&str, usize>) {
        for server in &listing.broken {
            // Without a claim (made half-way) it was never offered; with its
            // claim gone, whoever took it has no server to use. (Its room
            // was noted when it left the pool: see `Given::notice`.)
            if server.claim.is_empty() || self.take(server).await != Claim::Failed {
                self.remove(&server.user).await;
            }
        }
        for (image, ready) in &listing.ready {
            let mut surplus = listing
                .pooled(image)
                .saturating_sub(wanted.get(image.as_str()).copied().unwrap_or(0));
            for server in ready {
                if surplus == 0 {
                    break;
                }
                if self.take(server).await == Claim::Taken {
                    if let Ok(mut offered) = self.ready.lock() {
                        forget(&mut offered, &server.user);
                    }
                    self.removing(&server.user);
                    self.remove(&server.user).await;
                    surplus -= 1;
                }
            }
        }
    }

    /// Notes that this replica removes `user`, with whose room it does as
    /// it decides: not a room given to another replica's launch.
    fn removing(&self, user: &str) {
        if let Ok(mut given) = self.given.lock() {
            given.removed.insert(user.into());
        }
    }

    /// Deletes a pool user, its server with it; true once it is gone. The
    /// hub refuses while the server is stopping, so that is waited out.
    async fn remove(&self, user: &str) -> bool {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.hub.delete_user(user).await {
                Ok(()) => {
                    tracing::info!(user, "warm pool: removed a server");
                    return true;
                }
                Err(e) if e.status() == Some(404) => return true,
                Err(e) if e.status() == Some(400) && tokio::time::Instant::now() < give_up => {
                    tracing::debug!(user, "warm pool: not removable yet: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    tracing::warn!(user, "warm pool: cannot remove a server: {e}");
                    return false;
                }
            }
        }
    }

    /// Finishes the claims of servers still listed as unclaimed whose claim
    /// is gone: a launch took them, and moving them to the launches' group
    /// failed or is under way. They are that launch's now, culled like any.
    /// The first pass checks every listed claim, for what a previous
    /// process left half-claimed.
    async fn settle_claims(&self, listing: &mut Listing) {
        let everything = !self.checked.swap(true, Ordering::SeqCst);
        let suspects = self
            .suspects
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        let listed: Vec<Ready> = listing.ready.values().flatten().cloned().collect();
        for server in listed
            .iter()
            .filter(|s| everything || suspects.contains(&s.user))
        {
            match self
                .hub
                .request(Method::GET, &claim_path(server), None)
                .await
            {
                Ok(_) => {}
                Err(e) if e.status() == Some(404) => {
                    tracing::warn!(user = %server.user, "warm pool: a claimed server was still in the pool's group; moving it to the launches'");
                    let moved = finish_claim(
                        &self.hub,
                        &self.users_group,
                        &self.config.group,
                        &server.user,
                    )
                    .await;
                    if !moved && let Ok(mut s) = self.suspects.lock() {
                        s.insert(server.user.clone());
                    }
                    // Not the pool's either way: it is no longer offered or counted.
                    listing.forget(&server.user);
                    if let Ok(mut ready) = self.ready.lock() {
                        forget(&mut ready, &server.user);
                    }
                }
                Err(e) => {
                    tracing::debug!(user = %server.user, "warm pool: cannot check a claim: {e}");
                    if let Ok(mut s) = self.suspects.lock() {
                        s.insert(server.user.clone());
                    }
                }
            }
        }
    }

    /// Unclaimed servers, ready or starting, at the last look.
    fn unclaimed(&self) -> usize {
        self.counted.lock().map_or(0, |c| *c)
    }

    /// Frees room in the total quota for a launch of `image`: removes a
    /// ready server of the image launched least (claimed first, so that no
    /// launch is handed it), waiting until `deadline` for starting ones to
    /// be up. True when the launch should try again: room was made, or a
    /// server of its own image is ready to claim.
    async fn give_way(&self, image: &str, deadline: tokio::time::Instant) -> bool {
        loop {
            let ranks: HashMap<String, f64> = self
                .demand
                .at(crate::now_ms())
                .unwrap_or_default()
                .into_iter()
                .map(|d| (d.image, d.launches))
                .collect();
            let victim = {
                let Ok(ready) = self.ready.lock() else {
                    return false;
                };
                if ready.get(image).is_some_and(|r| !r.is_empty()) {
                    return true;
                }
                ready
                    .iter()
                    .filter_map(|(i, r)| Some((ranks.get(i).copied().unwrap_or(0.0), r.last()?)))
                    .min_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, server)| server.clone())
            };
            match victim {
                Some(server) => {
                    if let Ok(mut ready) = self.ready.lock() {
                        forget(&mut ready, &server.user);
                    }
                    // Its room is this replica's launch's, which `in_flight` holds.
                    self.removing(&server.user);
                    if self.take(&server).await == Claim::Taken && self.remove(&server.user).await {
                        tracing::info!(image, user = %server.user, "warm pool: gave a server's room to a launch");
                        return true;
                    }
                }
                None if self.unclaimed() > 0 && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return false,
            }
        }
    }

    /// Starts one pool server for `demand`'s image: the user, its claim
    /// token, then the server with the latest launch's options. With a
    /// total quota, it leaves the room to a launch that arrived since the
    /// pass counted `in_flight`.
    async fn spawn(&self, demand: &Demand, in_flight: u32) -> Result<(), String> {
        let user = format!("pool-{}", super::hub::user_name_for(&demand.repo_url));
        let made = async {
            self.hub
                .request(Method::POST, &format!("users/{}", segment(&user)), None)
                .await?;
            self.hub.add_to_group(&self.config.group, &user).await?;
            let claim = self
                .hub
                .json(
                    Method::POST,
                    &format!("users/{}/tokens", segment(&user)),
                    Some(&json!({ "note": "bindery warm pool: deleted by the launch this server is handed to" })),
                )
                .await?;
            let ready = Ready {
                user: user.clone(),
                token: super::hub::server_token(),
                claim: claim["id"].as_str().unwrap_or_default().to_string(),
            };
            if self.total_quota.is_some() && self.in_flight.load(Ordering::SeqCst) > in_flight {
                return Ok(None);
            }
            let mut options = demand.options.clone();
            options.insert("token".into(), json!(ready.token));
            options.insert("bindery_claim".into(), json!(ready.claim));
            self.hub
                .request(
                    Method::POST,
                    &Hub::server_path(&user, ""),
                    Some(&Value::Object(options)),
                )
                .await
                .map(|_| Some(ready))
        };
        let failed = match made.await {
            Ok(Some(ready)) => {
                tracing::info!(user, image = %demand.image, "warm pool: starting a server");
                tokio::spawn(offer_when_up(
                    self.hub.clone(),
                    self.ready.clone(),
                    self.metrics.clone(),
                    demand.image.clone(),
                    ready,
                ));
                return Ok(());
            }
            Ok(None) => format!(
                "a server of {} left its room to a launch that just arrived",
                demand.image
            ),
            Err(e) => format!("cannot start a server of {}: {e}", demand.image),
        };
        if let Err(gone) = self.hub.delete_user(&user).await
            && gone.status() != Some(404)
        {
            tracing::warn!(user, "warm pool: a half-made pool user stays: {gone}");
        }
        Err(failed)
    }
}

/// Takes `user` out of the ready servers `ready` offers.
fn forget(ready: &mut HashMap<String, Vec<Ready>>, user: &str) {
    for list in ready.values_mut() {
        list.retain(|r| r.user != user);
    }
}

/// The API path of a pool server's claim token.
fn claim_path(server: &Ready) -> String {
    format!(
        "users/{}/tokens/{}",
        segment(&server.user),
        segment(&server.claim)
    )
}

/// Moves a claimed pool user from the pool's group to the launches', where
/// the culler treats it like any launch; false when it could not join them.
async fn finish_claim(hub: &Hub, users_group: &str, pool_group: &str, user: &str) -> bool {
    if let Err(e) = hub.add_to_group(users_group, user).await {
        tracing::warn!(
            user,
            "warm pool: a claimed server stays in the pool's group until the next pass: {e}"
        );
        return false;
    }
    let body = json!({ "users": [user] });
    let path = format!("groups/{}/users", segment(pool_group));
    if let Err(e) = hub.request(Method::DELETE, &path, Some(&body)).await {
        tracing::debug!("warm pool: leaving the pool's group: {e}");
    }
    true
}

/// Offers `server` for hand-out as soon as the hub says it is up, rather
/// than at the next pass; gives up when it is gone or no longer starting.
async fn offer_when_up(
    hub: Arc<Hub>,
    ready: Arc<Mutex<HashMap<String, Vec<Ready>>>>,
    metrics: Arc<Metrics>,
    image: String,
    server: Ready,
) {
    let asked = tokio::time::Instant::now();
    // A spawn the hub has not ended by then is the next pass's to judge.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if tokio::time::Instant::now() > give_up {
            return;
        }
        let state = match hub.user(&server.user).await {
            Ok(Some(user)) => user.servers.get("").map(|s| (s.ready, s.pending.is_some())),
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(user = %server.user, "warm pool: {e}");
                continue;
            }
        };
        match state {
            Some((true, false)) => break,
            Some((_, true)) => continue,
            // Failed or stopped: the next pass replaces it.
            _ => return,
        }
    }
    metrics.pool_refilled(&image, asked.elapsed());
    if let Ok(mut ready) = ready.lock() {
        let list = ready.entry(image).or_default();
        if !list.iter().any(|r| r.user == server.user) {
            list.push(server);
        }
    }
}

/// A launcher that hands out a pool server when the pool has one of the
/// image, and launches with `inner` otherwise.
pub struct Pooled {
    /// The launcher of everything the pool does not serve.
    pub inner: Arc<dyn Launcher>,
    /// The pool.
    pub pool: Arc<WarmPool>,
}

/// An anonymous launch under way that the pool did not serve (yet).
struct InFlight<'a>(&'a AtomicU32);

impl<'a> InFlight<'a> {
    fn new(count: &'a AtomicU32) -> InFlight<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Launcher for Pooled {
    fn admit<'a>(&'a self, request: &'a LaunchRequest) -> BoxFuture<'a, Result<(), LaunchError>> {
        Box::pin(async move {
            match self.inner.admit(request).await {
                // The pool gives its room back when the launch comes.
                Err(LaunchError::Quota {
                    quota: Quota::Total,
                    ..
                }) if request.user.is_none() && self.pool.unclaimed() > 0 => Ok(()),
                admitted => admitted,
            }
        })
    }

    fn launch<'a>(
        &'a self,
        request: &'a LaunchRequest,
        progress: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<Launched, LaunchError>> {
        Box::pin(async move {
            if request.user.is_some() {
                return self.inner.launch(request, progress).await;
            }
            self.pool.record(request);
            let _flight = InFlight::new(&self.pool.in_flight);
            let deadline = tokio::time::Instant::now() + GIVE_WAY_PATIENCE;
            loop {
                if let Some(launched) = self.pool.claim(&request.image).await {
                    self.pool.metrics.pool_handout(&request.image, true);
                    tracing::info!(image = %request.image, "warm pool: handed out a started server");
                    return Ok(launched);
                }
                let launched = self.inner.launch(request, progress.clone()).await;
                let full = matches!(
                    launched,
                    Err(LaunchError::Quota {
                        quota: Quota::Total,
                        ..
                    })
                );
                if full && self.pool.give_way(&request.image, deadline).await {
                    continue;
                }
                self.pool.metrics.pool_handout(&request.image, false);
                return launched;
            }
        })
    }

    fn discard(&self, launched: &Launched) {
        self.inner.discard(launched);
    }

    fn health(&self) -> BoxFuture<'_, LauncherHealth> {
        self.inner.health()
    }
}

/// What one pass does with a pool policy's sizes.
#[derive(Debug, PartialEq, Eq)]
pub struct PassPlan {
    /// The images to start a server of, as indexes (one per server).
    pub starts: Vec<usize>,
    /// The servers each image keeps; those past it are removed.
    pub keep: Vec<u32>,
}

/// A pass's plan for the images a policy sized (most launched first):
/// `wants`, the policy's sizes; `pooled`, each image's servers in the pool
/// (ready or starting); `pooled_total`, all the pool holds. Servers are
/// started into the room the quota leaves, beside those the pool holds;
/// those that room no longer covers stay until a launch needs it
/// ([`WarmPool::give_way`]), rather than go and come back as launches
/// start and end.
pub fn plan(wants: &[u32], bounds: PoolBounds, pooled: &[usize], pooled_total: usize) -> PassPlan {
    let sizes = trim(wants, bounds);
    let keep = trim(
        wants,
        PoolBounds {
            quota_room: None,
            ..bounds
        },
    );
    let free = bounds
        .quota_room
        .map(|room| (room as usize).saturating_sub(pooled_total));
    PassPlan {
        starts: starts(pooled, &sizes, free),
        keep,
    }
}

/// The servers to start, as indexes of the images: each image's servers
/// short of its trimmed size, at most [`SPAWNS_PER_PASS`] in all, and no
/// more than `free` room.
fn starts(pooled: &[usize], sizes: &[u32], free: Option<usize>) -> Vec<usize> {
    let limit = free.map_or(SPAWNS_PER_PASS, |f| f.min(SPAWNS_PER_PASS));
    pooled
        .iter()
        .zip(sizes)
        .enumerate()
        .flat_map(|(i, (&have, &size))| {
            std::iter::repeat_n(i, (size as usize).saturating_sub(have))
        })
        .take(limit)
        .collect()
}

/// The policy's `sizes`, trimmed to `bounds`: the images launched least
/// give way first.
fn trim(sizes: &[u32], bounds: PoolBounds) -> Vec<u32> {
    let mut room = bounds
        .quota_room
        .map_or(bounds.max_servers, |q| q.min(bounds.max_servers));
    sizes
        .iter()
        .map(|&wanted| {
            let given = wanted.min(room);
            room -= given;
            given
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pooled(users: &[&str]) -> Listing {
        let mut listing = Listing::default();
        listing.ready.insert(
            "i".into(),
            users
                .iter()
                .map(|u| Ready {
                    user: (*u).into(),
                    token: String::new(),
                    claim: String::new(),
                })
                .collect(),
        );
        listing
    }

    #[test]
    fn room_given_to_another_replicas_launch_is_held_for_it() {
        let mut given = Given::default();
        let none = HashSet::new();
        assert_eq!(given.notice(&pooled(&["a", "b", "c", "d"]), &none), 0);
        // `a` went to a launch (now in the launches' group), `b` was
        // removed here, `c` left without either: another replica gave
        // its room to a launch of its own.
        given.removed.insert("b".into());
        let launched = HashSet::from(["a"]);
        assert_eq!(given.notice(&pooled(&["d"]), &launched), 1);
        assert!(given.removed.is_empty(), "b is gone: nothing left to note");
        assert_eq!(given.notice(&pooled(&["d"]), &launched), 1, "held a while");
        given.held[0] -= GIVEN_HOLD;
        assert_eq!(given.notice(&pooled(&["d"]), &launched), 0, "then let go");
    }

    #[test]
    fn servers_kept_past_the_quotas_room_leave_none_for_other_images() {
        let bounds = PoolBounds {
            max_servers: 20,
            quota_room: Some(10),
        };
        // Image 0 holds 8 from when the policy wanted more; now it wants
        // 5 of each. Image 0's 3 past its size go, but not before image 1
        // starts more than the 2 the room leaves beside the 8.
        assert_eq!(
            plan(&[5, 5], bounds, &[8, 0], 8),
            PassPlan {
                starts: vec![1, 1],
                keep: vec![5, 5]
            }
        );
        // No total quota: as many as the sizes ask, a few per pass.
        assert_eq!(starts(&[0, 1], &[2, 5], None), [0, 0, 1, 1]);
        assert_eq!(starts(&[0, 0], &[3, 3], Some(20)).len(), SPAWNS_PER_PASS);
    }

    #[test]
    fn the_least_launched_give_way_to_the_bounds() {
        let bounds = |max_servers, quota_room| PoolBounds {
            max_servers,
            quota_room,
        };
        assert_eq!(trim(&[3, 2, 2], bounds(10, None)), [3, 2, 2]);
        assert_eq!(trim(&[3, 2, 2], bounds(4, None)), [3, 1, 0]);
        assert_eq!(trim(&[3, 2, 2], bounds(10, Some(2))), [2, 0, 0]);
        assert_eq!(trim(&[3, 2, 2], bounds(10, Some(0))), [0, 0, 0]);
        assert_eq!(trim(&[0, 9, 1], bounds(5, None)), [0, 5, 0]);
    }
}
