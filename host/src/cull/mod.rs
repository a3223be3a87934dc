//! The culler: every `cull.every_secs` it lists the hub's ready servers
//! (paginated, as jupyterhub-idle-culler does), asks the cull-policy chain for
//! a decision per server, and carries them out with bounded concurrency. The
//! host owns the I/O; the policies only decide. The first policy that
//! decides a server wins; a policy that fails (traps, runs out of time or
//! memory, answers the wrong number of decisions) keeps every server it was
//! asked about, and is logged and counted. With several replicas, only the
//! holder of a Kubernetes Lease culls ([`leader`]).

pub mod leader;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bindery_runtime::PluginHost;
use bindery_runtime::bindings::{Decision, Server, ServerState};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::sync::watch;

use crate::config::{CullConfig, HubConfig};
use crate::jupyterhub::{Hub, HubError, ServerModel, Stopped, UserModel, timestamp_ms};
use crate::metrics::Metrics;
use crate::now_ms;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Servers the policies were asked about.
    pub servers: usize,
    /// Servers stopped.
    pub stopped: usize,
    /// Stops the hub accepted but had not finished (`202`).
    pub slow: usize,
    /// Users deleted with their server.
    pub users_deleted: usize,
    /// Warnings decided (logged: a hub has no way to show them to the user).
    pub warned: usize,
    /// Stops or deletions the hub refused.
    pub failed: usize,
    /// Policies that failed in this pass.
    pub policy_failures: usize,
}

/// The culler's background work: culling `hub` while `leading` says this
/// host leads (always, with no Lease: see [`leader::elect`]).
pub fn task(
    hub: Arc<Hub>,
    plugins: Arc<PluginHost>,
    config: &CullConfig,
    scope: CullScope,
    metrics: Arc<Metrics>,
    leading: watch::Receiver<bool>,
) -> BoxFuture<'static, ()> {
    Arc::new(Culler::new(hub, plugins, config, scope, metrics))
        .run(leading)
        .boxed()
}

/// What of a shared hub is Bindery's to cull.
#[derive(Debug, Clone)]
pub struct CullScope {
    /// The group of Bindery's temporary users: only its members are deleted.
    pub group: String,
    /// False in authenticated mode: the users are people, not Bindery's.
    pub delete_users: bool,
    /// The warm pool's group: its servers no launch has claimed are the
    /// pool's to keep or remove, never the culler's.
    pub pool_group: Option<String>,
}

impl CullScope {
    /// The scope `[hub]` sets.
    pub fn of(hub: &HubConfig) -> CullScope {
        CullScope {
            group: hub.users_group.clone(),
            delete_users: !hub.auth_enabled,
            pool_group: None,
        }
    }
}

/// Culls one hub.
pub struct Culler {
    hub: Arc<Hub>,
    plugins: Arc<PluginHost>,
    config: CullConfig,
    scope: CullScope,
    metrics: Arc<Metrics>,
}

/// Whether Bindery launched `server`: its launches carry `binder_request`.
fn launched_by_bindery(server: &ServerModel) -> bool {
    server
        .user_options
        .as_ref()
        .is_some_and(|o| o.contains_key("binder_request"))
}

/// A ready server as the policies see it: without the server's token, which
/// opens the server to whoever holds it and which no cull decision needs.
fn record(user: &str, server: &ServerModel) -> Server {
    let mut options = server.user_options.clone().unwrap_or_default();
    options.remove("token");
    let text = |key: &str| {
        options
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    // `binder_request` is `v2/{provider}/{spec}`.
    let request = text("binder_request");
    let (provider, spec) = request
        .strip_prefix("v2/")
        .and_then(|r| r.split_once('/'))
        .unwrap_or_default();
    let started_ms = server
        .started
        .as_deref()
        .and_then(timestamp_ms)
        .unwrap_or(0);
    Server {
        user: user.into(),
        server_name: server.name.clone(),
        image: text("image"),
        repo_url: text("repo_url"),
        provider: provider.into(),
        spec: spec.into(),
        started_ms,
        last_activity_ms: server.last_activity.as_deref().and_then(timestamp_ms),
        state: if server.pending.is_some() || !server.ready {
            ServerState::Pending
        } else {
            ServerState::Ready
        },
        user_options_json: Value::Object(options).to_string(),
    }
}

impl Culler {
    /// A culler of `hub` deciding with `config.policies`.
    pub fn new(
        hub: Arc<Hub>,
        plugins: Arc<PluginHost>,
        config: &CullConfig,
        scope: CullScope,
        metrics: Arc<Metrics>,
    ) -> Culler {
        Culler {
            hub,
            plugins,
            config: config.clone(),
            scope,
            metrics,
        }
    }

    /// Passes forever, while `leading` says this host leads; the first at once.
    pub async fn run(self: Arc<Self>, mut leading: watch::Receiver<bool>) {
        let every = Duration::from_secs(self.config.every_secs.max(1));
        loop {
            if *leading.borrow_and_update() {
                match self.pass().await {
                    Ok(report) => tracing::info!(?report, "cull pass"),
                    Err(e) => tracing::warn!("cull pass failed: {e}"),
                }
            }
            // A new leader culls at once rather than a whole interval later;
            // with no election (the only host), the sender is gone and it waits.
            if let Ok(Err(_)) = tokio::time::timeout(every, leading.changed()).await {
                tokio::time::sleep(every).await;
            }
        }
    }

    /// One pass over the ready servers Bindery launched; an admin's are never
    /// culled, whoever launched them.
    pub async fn pass(&self) -> Result<PassReport, HubError> {
        let started = Instant::now();
        let now = now_ms();
        let users = self.hub.users("ready").await?;
        let (servers, deletable): (Vec<Server>, Vec<bool>) = users
            .iter()
            .filter(|u| !u.admin && !self.unclaimed_pool_server(u))
            .flat_map(|u| {
                let deletable = self.scope.delete_users && u.groups.contains(&self.scope.group);
                u.servers
                    .values()
                    .filter(|s| launched_by_bindery(s))
                    .map(move |s| (record(&u.name, s), deletable))
            })
            .unzip();
        let mut report = PassReport {
            servers: servers.len(),
            ..PassReport::default()
        };
        let decisions = self.decide(now, &servers, &mut report).await;
        let outcomes: Vec<(&'static str, bool)> =
            futures_util::stream::iter(servers.into_iter().zip(decisions).zip(deletable))
                .map(|((server, decision), deletable)| self.act(server, decision, deletable))
                .buffer_unordered(self.config.concurrency.max(1))
                .collect()
                .await;
        for (action, deleted_user) in outcomes {
            match action {
                "stopped" => report.stopped += 1,
                "slow" => report.slow += 1,
                "warned" => report.warned += 1,
                "failed" => report.failed += 1,
                _ => {}
            }
            report.users_deleted += usize::from(deleted_user);
            self.metrics.cull_action(action);
        }
        self.metrics.cull_pass(started.elapsed());
        Ok(report)
    }

    /// Whether `user` is a warm-pool server waiting for its launch.
    fn unclaimed_pool_server(&self, user: &UserModel) -> bool {
        self.scope
            .pool_group
            .as_ref()
            .is_some_and(|pool| user.unclaimed_in_pool(pool, &self.scope.group))
    }

    /// The chain's decision per server, its failures logged and counted.
    async fn decide(&self, now: u64, servers: &[Server], report: &mut PassReport) -> Vec<Decision> {
        let verdicts = decide(&self.plugins, &self.config.policies, now, servers).await;
        for policy in &verdicts.failed {
            self.metrics.cull_policy_failed(policy);
        }
        report.policy_failures += verdicts.failed.len();
        verdicts.decisions.into_iter().map(|(d, _)| d).collect()
    }

    /// Carries out one decision: the action for the metrics, and whether the
    /// user was deleted. A user outside Bindery's group is only stopped.
    async fn act(
        &self,
        server: Server,
        decision: Decision,
        deletable: bool,
    ) -> (&'static str, bool) {
        let (reason, delete_user) = match decision {
            Decision::Pass | Decision::Keep => return ("kept", false),
            Decision::Warn(message) => {
                tracing::info!(user = %server.user, server = %server.server_name, "cull warning (not deliverable through the hub): {message}");
                return ("warned", false);
            }
            Decision::Stop(reason) => (reason, false),
            Decision::StopAndDeleteUser(reason) => (reason, deletable),
        };
        match self.hub.stop(&server.user, &server.server_name).await {
            Ok(Stopped::Pending) => {
                // As the idle culler: slow to stop is not culled yet; the next pass sees it again.
                tracing::info!(user = %server.user, server = %server.server_name, "stopping (slow): {reason}");
                ("slow", false)
            }
            Ok(Stopped::Done) => {
                tracing::info!(user = %server.user, server = %server.server_name, image = %server.image, "stopped: {reason}");
                if !delete_user {
                    return ("stopped", false);
                }
                match self.hub.delete_user(&server.user).await {
                    Ok(()) => ("stopped", true),
                    Err(e) => {
                        tracing::warn!(user = %server.user, "stopped, but the user cannot be deleted: {e}");
                        ("stopped", false)
                    }
                }
            }
            Err(e) => {
                tracing::warn!(user = %server.user, server = %server.server_name, "cannot stop: {e}");
                ("failed", false)
            }
        }
    }
}

/// What the cull-policy chain decided about some servers.
#[derive(Debug, Clone)]
pub struct Verdicts {
    /// One per server, in order: the decision, and the policy that made it
    /// (none when no policy decided, and the server is kept).
    pub decisions: Vec<(Decision, Option<String>)>,
    /// The policies that failed; each kept every server it was asked about.
    pub failed: Vec<String>,
}

/// Asks `policies` in order about `servers` at `now_ms`: the first policy
/// that decides a server wins, a policy that fails (traps, runs out of time
/// or memory, answers the wrong number of decisions) keeps every server it
/// was asked about, and undecided servers are kept. The culler and
/// `bindery simulate` both decide through this.
pub async fn decide(
    plugins: &PluginHost,
    policies: &[String],
    now_ms: u64,
    servers: &[Server],
) -> Verdicts {
    let mut decided: Vec<Option<(Decision, Option<String>)>> = vec![None; servers.len()];
    let mut failed = Vec::new();
    for policy in policies {
        let open: Vec<usize> = (0..servers.len())
            .filter(|i| decided[*i].is_none())
            .collect();
        if open.is_empty() {
            break;
        }
        let asked: Vec<Server> = open.iter().map(|i| servers[*i].clone()).collect();
        let failure = match plugins.decide(policy, now_ms, &asked).await {
            Ok(Ok(answers)) if answers.len() == asked.len() => {
                for (i, answer) in open.into_iter().zip(answers) {
                    if !matches!(answer, Decision::Pass) {
                        decided[i] = Some((answer, Some(policy.clone())));
                    }
                }
                continue;
            }
            Ok(Ok(answers)) => format!(
                "it answered {} decisions for {} servers",
                answers.len(),
                asked.len()
            ),
            Ok(Err(e)) => format!("{e:?}"),
            Err(e) => e.to_string(),
        };
        tracing::warn!(
            policy,
            servers = asked.len(),
            "cull policy failed, so its servers are kept: {failure}"
        );
        failed.push(policy.clone());
        for i in open {
            decided[i] = Some((Decision::Keep, Some(policy.clone())));
        }
    }
    Verdicts {
        decisions: decided
            .into_iter()
            .map(|d| d.unwrap_or((Decision::Keep, None)))
            .collect(),
        failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_as_policies_see_them() {
        let model: ServerModel = serde_json::from_value(serde_json::json!({
            "name": "", "ready": true, "pending": null, "url": "/user/u/",
            "started": "2026-11-23T10:00:00Z", "last_activity": "2026-11-23T10:05:00.000000Z",
            "user_options": { "image": "reg/binder-x:abc", "repo_url": "https://github.com/a/b", "binder_request": "v2/gh/a/b/HEAD", "token": "t" },
        }))
        .unwrap();
        let s = record("u", &model);
        assert_eq!(
            (s.provider.as_str(), s.spec.as_str(), s.image.as_str()),
            ("gh", "a/b/HEAD", "reg/binder-x:abc")
        );
        assert_eq!(
            (s.started_ms, s.last_activity_ms),
            (1795428000000, Some(1795428300000))
        );
        assert_eq!(s.state, ServerState::Ready);
        let options: Value = serde_json::from_str(&s.user_options_json).unwrap();
        assert_eq!(options["binder_request"], "v2/gh/a/b/HEAD");
        assert!(options.get("token").is_none(), "{options}");
        let bare: ServerModel = serde_json::from_value(
            serde_json::json!({ "name": "x", "ready": false, "pending": "spawn" }),
        )
        .unwrap();
        let s = record("u", &bare);
        assert_eq!(
            (s.state, s.provider.as_str(), s.last_activity_ms),
            (ServerState::Pending, "", None)
        );
    }
}
