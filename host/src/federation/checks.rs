//! The members' health checks: one loop per member asks its `/versions`
//! and `/health` every period (jittered), and the member leaves the set
//! when either says it should, until a later check says it may come back.
//!
//! Unlike mybinder.org's redirector (z2jh-and-chart.md §8.4), a check that
//! got its answers is not repeated within a period, an informational check
//! (`_ignore_failure`, the "Pod quota") that is not ok is not a failure,
//! and a member near its quota is out only until the next period.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::Federation;

/// Why a check takes a member out of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// It failed: checked again after `failed_period_secs`. The reason is
    /// `versions`, the failing check's service, or what went wrong.
    Failed(String),
    /// It is near its quota: checked again after the usual period.
    Full,
}

impl Out {
    fn reason(&self) -> String {
        match self {
            Out::Failed(reason) => reason.clone(),
            Out::Full => "approaching pod quota".into(),
        }
    }
}

impl Federation {
    /// The checks of every member, until the federation is dropped. The
    /// caller runs it.
    pub fn checks(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(self.config.check.timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            // A new connection each time: one a member's old process still
            // holds open must not answer for it.
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client");
        let loops: Vec<_> = self
            .config
            .members
            .keys()
            .map(|name| member_loop(Arc::downgrade(self), client.clone(), name.clone()))
            .collect();
        async move {
            futures_util::future::join_all(loops).await;
        }
    }

    /// One check of `member`: its verdict.
    pub async fn check(&self, client: &reqwest::Client, member: &str) -> Result<(), Out> {
        let m = &self.config.members[member];
        let versions = self.fetch(client, m.url.join("versions").ok()).await?;
        if m.prime {
            *self.reference.write().expect("federation state") = Some(versions.clone());
        }
        let reference = self.reference.read().expect("federation state").clone();
        if reference.is_some_and(|r| r != versions) {
            return Err(Out::Failed("versions".into()));
        }
        let health = self.fetch(client, m.url.join("health").ok()).await?;
        judge_health(&health, self.config.pod_headroom)
    }

    /// A JSON answer (a 503 from `/health` included: its body says why),
    /// trying again 1 s later while the member cannot be reached.
    async fn fetch(&self, client: &reqwest::Client, url: Option<url::Url>) -> Result<Value, Out> {
        let url = url.ok_or_else(|| Out::Failed("the member's URL cannot be joined".into()))?;
        let mut attempt = 1;
        loop {
            let answer = match client.get(url.clone()).send().await {
                Ok(r) if r.status().is_success() || r.status().as_u16() == 503 => {
                    r.json::<Value>().await.map_err(|e| e.to_string())
                }
                Ok(r) => Err(format!("{url} answered {}", r.status())),
                Err(e) => Err(format!("{url}: {e}")),
            };
            match answer {
                Ok(json) => return Ok(json),
                Err(why) if attempt >= self.config.check.retries => {
                    return Err(Out::Failed(format!("unreachable: {why}")));
                }
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// `/health`'s verdict: a check that is not ok and not informational fails
/// the member; a "Pod quota" with a quota, whose servers plus `headroom`
/// reach it, makes it full.
fn judge_health(health: &Value, headroom: u64) -> Result<(), Out> {
    let checks = health["checks"]
        .as_array()
        .ok_or_else(|| Out::Failed("/health has no checks".into()))?;
    for check in checks {
        let service = check["service"].as_str().unwrap_or("unnamed check");
        if check["ok"] != true && check["_ignore_failure"] != true {
            return Err(Out::Failed(service.to_string()));
        }
        if service == "Pod quota"
            && let (Some(quota), Some(total)) =
                (check["quota"].as_u64(), check["total_pods"].as_u64())
            && total + headroom >= quota
        {
            return Err(Out::Full);
        }
    }
    if health["ok"] != true {
        return Err(Out::Failed("/health is not ok".into()));
    }
    Ok(())
}

async fn member_loop(
    federation: std::sync::Weak<Federation>,
    client: reqwest::Client,
    member: String,
) {
    loop {
        let Some(f) = federation.upgrade() else {
            return;
        };
        let verdict = f.check(&client, &member).await;
        let c = &f.config.check;
        let wait = match &verdict {
            Err(Out::Failed(_)) => c.failed_period_secs,
            Ok(()) | Err(Out::Full) => c.period_secs,
        };
        let wait = wait * (1.0 + c.jitter * (0.5 - random_unit()));
        f.judged(&member, verdict.err().map(|out| out.reason()));
        drop(f);
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}

/// A number in [0, 1) for the jitter: not for anything secret.
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_or(0.5, |()| {
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn health(quota: Value, total: u64, hub_ok: bool) -> Value {
        json!({ "ok": hub_ok, "checks": [
            { "service": "JupyterHub API", "ok": hub_ok },
            { "service": "Pod quota", "total_pods": total, "build_pods": 0, "user_pods": total,
              "quota": quota, "ok": quota.as_u64().is_none_or(|q| total <= q), "_ignore_failure": true },
        ]})
    }

    #[test]
    fn over_quota_is_full_not_failed_and_a_failing_hub_is_a_failure() {
        assert_eq!(judge_health(&health(json!(null), 500, true), 10), Ok(()));
        assert_eq!(judge_health(&health(json!(100), 80, true), 10), Ok(()));
        assert_eq!(
            judge_health(&health(json!(100), 90, true), 10),
            Err(Out::Full)
        );
        // Over its quota, upstream's "ok": false on the informational check.
        assert_eq!(
            judge_health(&health(json!(100), 120, true), 0),
            Err(Out::Full)
        );
        assert_eq!(
            judge_health(&health(json!(null), 0, false), 10),
            Err(Out::Failed("JupyterHub API".into()))
        );
    }
}
