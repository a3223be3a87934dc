//! What `/health` answers: upstream's checks of the registry and the hub,
//! refreshed in the background so that no request waits for either.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::launch::ServerCount;
use crate::pipeline::Pipeline;

/// How long a health answer is reused (upstream: 15 s).
const HEALTH_INTERVAL: Duration = Duration::from_secs(15);

/// A health answer: status and JSON body; `None` before the first check.
pub type HealthAnswer = Option<(StatusCode, Bytes)>;

/// The latest answer, and the task that refreshes it every 15 s while the
/// pipeline lives. The task is the caller's to run.
pub fn monitor(
    pipeline: &Arc<Pipeline>,
) -> (
    watch::Receiver<HealthAnswer>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = watch::channel(None);
    let pipeline: Weak<Pipeline> = Arc::downgrade(pipeline);
    let refresh = async move {
        loop {
            let Some(p) = pipeline.upgrade() else { return };
            let answer = check(&p).await;
            drop(p);
            if tx.send(Some(answer)).is_err() {
                return;
            }
            tokio::time::sleep(HEALTH_INTERVAL).await;
        }
    };
    (rx, refresh)
}

/// Upstream's checks, in its order and shape (`binderhub/health.py`):
/// the registry, the hub, and the "Pod quota", which is informational
/// (`_ignore_failure`): a site at or over its quota is still healthy, and
/// 503 means a check that is not informational failed.
async fn check(pipeline: &Pipeline) -> (StatusCode, Bytes) {
    let mut checks: Vec<Value> = Vec::new();
    if pipeline.registry.is_configured() {
        let result = pipeline.registry.check().await;
        if let Err(e) = &result {
            tracing::warn!("health: {e}");
        }
        checks.push(json!({ "service": "Docker registry", "ok": result.is_ok() }));
    }
    if let Some(launcher) = &pipeline.launcher {
        let health = launcher.health().await;
        if let Err(e) = &health.hub {
            tracing::warn!("health: the hub: {e}");
        }
        checks.push(json!({ "service": "JupyterHub API", "ok": health.hub.is_ok() }));
        checks.push(pod_quota(
            health.servers,
            health.quota,
            pipeline.metrics.builds_in_progress(),
        ));
    }
    let ok = checks
        .iter()
        .all(|c| c["ok"] == true || c["_ignore_failure"] == true);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Bytes::from(json!({ "ok": ok, "checks": checks }).to_string()),
    )
}

/// The "Pod quota" check: always listed, `quota` null when none is set,
/// and `ok` while the total is at most the quota, as upstream's. Builds
/// are this replica's unless the pods were counted in the cluster.
fn pod_quota(
    servers: Result<ServerCount, String>,
    quota: Option<u32>,
    local_builds: usize,
) -> Value {
    let mut check = json!({ "service": "Pod quota", "_ignore_failure": true });
    let (total, builds, users, ok) = match servers {
        Ok(count) => {
            let builds = count.build_pods.unwrap_or(local_builds);
            let total = count.user_pods + builds;
            let ok = quota.is_none_or(|q| total as u64 <= u64::from(q));
            (json!(total), json!(builds), json!(count.user_pods), ok)
        }
        Err(e) => {
            tracing::warn!("health: counting the servers: {e}");
            (Value::Null, Value::Null, Value::Null, false)
        }
    };
    check["total_pods"] = total;
    check["build_pods"] = builds;
    check["user_pods"] = users;
    check["quota"] = json!(quota);
    check["ok"] = json!(ok);
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(user_pods: usize, build_pods: Option<usize>) -> Result<ServerCount, String> {
        Ok(ServerCount {
            user_pods,
            build_pods,
        })
    }

    #[test]
    fn the_pod_quota_check_is_upstreams_shape_with_or_without_a_quota() {
        assert_eq!(
            pod_quota(count(2, None), None, 1),
            json!({ "service": "Pod quota", "total_pods": 3, "build_pods": 1, "user_pods": 2, "quota": null, "ok": true, "_ignore_failure": true })
        );
        assert_eq!(
            pod_quota(count(2, Some(0)), Some(2), 1),
            json!({ "service": "Pod quota", "total_pods": 2, "build_pods": 0, "user_pods": 2, "quota": 2, "ok": true, "_ignore_failure": true }),
            "at the quota is within it; cluster counts replace this replica's builds"
        );
        assert_eq!(pod_quota(count(3, Some(0)), Some(2), 0)["ok"], false);
        let failed = pod_quota(Err("the hub is down".into()), Some(2), 0);
        assert_eq!(failed["ok"], false);
        assert_eq!(
            (
                &failed["total_pods"],
                &failed["build_pods"],
                &failed["user_pods"]
            ),
            (&Value::Null, &Value::Null, &Value::Null),
            "upstream's keys, without counts"
        );
    }
}
