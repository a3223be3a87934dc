//! The Kubernetes API client, for the build pods and the culler's Lease.

use crate::config::ConfigError;

/// A client of the API server at `api_url` (unset: the in-cluster service
/// account's), and the namespace to use (`namespace`, else the service
/// account's). `section` names the config section in errors.
pub fn client(
    api_url: Option<&url::Url>,
    namespace: Option<&str>,
    section: &str,
) -> Result<(kube::Client, String), ConfigError> {
    let invalid = |e: &dyn std::fmt::Display| ConfigError::Invalid(format!("{section}: {e}"));
    let mut config = match api_url {
        Some(url) => kube::Config::new(url.as_str().parse::<http::Uri>().map_err(|e| invalid(&e))?),
        None => kube::Config::incluster().map_err(|e| {
            invalid(&format_args!(
                "not running in a cluster ({e}); set {section}.api_url"
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
