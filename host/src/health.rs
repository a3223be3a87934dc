//! What `/health` answers: upstream's checks of the registry and the hub,
//! refreshed in the background so that no request waits for either.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

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

/// Upstream's checks: the registry, the hub (and its quota check), each a
/// `{"service", "ok"}` object; a failed check without `_ignore_failure` makes it 503.
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
        checks.extend(
            launcher
                .health()
                .await
                .into_iter()
                .map(|c| Value::Object(c.check)),
        );
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
