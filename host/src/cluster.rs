//! The Kubernetes API client, for the build pods, the culler's Lease and
//! the pod-count quota.

use std::task::{Context, Poll, Waker};

use crate::config::ConfigError;

/// A client of the API server at `api_url`; unset, as kube-rs infers it: a
/// kubeconfig (`KUBECONFIG`, else `~/.kube/config`), else the in-cluster
/// service account's. `namespace` overrides theirs. `section` names the
/// config section in errors.
pub fn client(
    api_url: Option<&url::Url>,
    namespace: Option<&str>,
    section: &str,
) -> Result<(kube::Client, String), ConfigError> {
    let invalid = |e: &dyn std::fmt::Display| ConfigError::Invalid(format!("{section}: {e}"));
    let mut config = match api_url {
        Some(url) => kube::Config::new(url.as_str().parse::<http::Uri>().map_err(|e| invalid(&e))?),
        None => inferred().map_err(|e| {
            invalid(&format_args!(
                "no kubeconfig and not in a cluster ({e}); set {section}.api_url, KUBECONFIG, or run in a pod"
            ))
        })?,
    };
    if let Some(namespace) = namespace {
        config.default_namespace = namespace.to_string();
    }
    let namespace = config.default_namespace.clone();
    Ok((
        kube::Client::try_from(config).map_err(|e| invalid(&e))?,
        namespace,
    ))
}

/// `kube::Config::infer`, which is async only in its signature: it reads
/// files and the environment and never waits, so one poll completes it and
/// the services built from configuration stay synchronous.
fn inferred() -> Result<kube::Config, String> {
    let mut infer = std::pin::pin!(kube::Config::infer());
    match infer.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(config) => config.map_err(|e| e.to_string()),
        Poll::Pending => {
            Err("loading the kubeconfig would wait (an exec credential plugin?)".into())
        }
    }
}
