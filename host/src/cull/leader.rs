//! One leader among replicas: the holder of a `coordination.k8s.io/v1` Lease
//! culls and tends the warm pool. A holder renews it at a third of its duration; another replica
//! takes it over once it has gone unrenewed for the whole duration. Updates
//! carry the Lease's resource version, so of two replicas racing for it one
//! gets a `409` and stands down. A replica that cannot reach the API server
//! stops culling and tending the pool: two cullers are worse than none for
//! a while.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::sync::watch;

use crate::config::{ConfigError, LeaderConfig};
use crate::now_ms;

/// Who leads among replicas, for the culler and the warm pool: with no
/// Lease configured this host is the only one and leads at once; with one,
/// the contender (the second value, for the caller to run) says so while it
/// holds the Lease.
pub fn elect(
    config: Option<&LeaderConfig>,
) -> Result<(watch::Receiver<bool>, Option<BoxFuture<'static, ()>>), ConfigError> {
    let (leading, follower) = watch::channel(config.is_none());
    let contender = match config {
        Some(config) => Some(Leader::new(config)?.run(leading).boxed()),
        None => None,
    };
    Ok((follower, contender))
}

/// A contender for the Lease.
pub struct Leader {
    leases: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

fn micro_time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Leader {
    /// A contender as `config` says (identity: the host name, unless set).
    pub fn new(config: &LeaderConfig) -> Result<Leader, ConfigError> {
        let (client, namespace) = crate::cluster::client(
            config.api_url.as_ref(),
            config.namespace.as_deref(),
            "cull.leader",
        )?;
        let identity = config
            .identity
            .clone()
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_else(|| "bindery".into());
        Ok(Leader {
            leases: Api::namespaced(client, &namespace),
            name: config.lease.clone(),
            identity,
            duration: Duration::from_secs(config.lease_secs.max(1)),
        })
    }

    /// This contender's name in the Lease.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn lease(
        &self,
        acquired_ms: u64,
        renewed_ms: u64,
        transitions: i32,
        resource_version: Option<String>,
    ) -> Lease {
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": { "name": self.name, "resourceVersion": resource_version },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration.as_secs(),
                "acquireTime": micro_time(acquired_ms),
                "renewTime": micro_time(renewed_ms),
                "leaseTransitions": transitions,
            },
        });
        serde_json::from_value(lease).expect("a well-formed Lease")
    }

    /// Takes the Lease if it is free or expired, renews it if held: whether this contender leads now.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = now_ms();
        let lost_race = |e: kube::Error| match e {
            kube::Error::Api(status) if status.code == 409 => Ok(false),
            e => Err(e),
        };
        let Some(lease) = self.leases.get_opt(&self.name).await? else {
            return self
                .leases
                .create(&PostParams::default(), &self.lease(now, now, 0, None))
                .await
                .map(|_| true)
                .or_else(lost_race);
        };
        let spec = lease.spec.unwrap_or_default();
        let renewed = spec
            .renew_time
            .map_or(0, |t| t.0.as_millisecond().max(0) as u64);
        let expires = renewed + spec.lease_duration_seconds.unwrap_or(0).max(0) as u64 * 1000;
        let transitions = spec.lease_transitions.unwrap_or(0);
        let (acquired, transitions) = if spec.holder_identity.as_deref()
            == Some(self.identity.as_str())
        {
            (
                spec.acquire_time
                    .map_or(now, |t| t.0.as_millisecond().max(0) as u64),
                transitions,
            )
        } else if now >= expires {
            tracing::info!(lease = %self.name, previous = ?spec.holder_identity, "taking over the expired lease");
            (now, transitions + 1)
        } else {
            return Ok(false);
        };
        let replacement = self.lease(acquired, now, transitions, lease.metadata.resource_version);
        self.leases
            .replace(&self.name, &PostParams::default(), &replacement)
            .await
            .map(|_| true)
            .or_else(lost_race)
    }

    /// Contends forever, telling `leading` whether this host leads.
    pub async fn run(self, leading: watch::Sender<bool>) {
        loop {
            let now_leading = self.try_lead().await.unwrap_or_else(|e| {
                tracing::warn!(lease = %self.name, "cannot reach the lease, so this host neither culls nor tends the warm pool: {e}");
                false
            });
            leading.send_if_modified(|was| {
                if *was != now_leading {
                    tracing::info!(identity = %self.identity, "leadership (culler, warm pool): {}", if now_leading { "taken" } else { "lost" });
                }
                std::mem::replace(was, now_leading) != now_leading
            });
            tokio::time::sleep(self.duration / 3).await;
        }
    }
}
