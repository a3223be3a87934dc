//! Users' own credentials for providers (authenticated mode). A provider
//! whose `[plugins.<name>.user_credential]` is set reads, for a logged-in
//! user's launch, that user's token from their hub `auth_state` (where an
//! OAuthenticator login to GitHub or GitLab keeps it, encrypted by the hub)
//! in place of the operator's secret. The hub is asked on every launch, so
//! a token the user's login renewed or lost takes effect at once, and
//! Bindery keeps no copy.

use std::collections::HashMap;
use std::sync::Arc;

use bindery_runtime::capabilities::UserSecret;
use bindery_runtime::config::UserCredential;
use serde_json::Value;

use crate::config::Config;
use crate::jupyterhub::{Hub, HubError};

/// Where each provider's user credentials come from.
pub struct UserCredentials {
    hub: Arc<Hub>,
    by_provider: HashMap<String, UserCredential>,
}

/// The hub could not say what credentials a user holds.
#[derive(Debug, thiserror::Error)]
#[error("Cannot read your credentials from JupyterHub: {0}")]
pub struct CredentialError(#[from] HubError);

impl UserCredentials {
    /// The providers of `config` that take users' credentials, read from
    /// `hub`; `None` when no provider does.
    pub fn new(config: &Config, hub: Arc<Hub>) -> Option<UserCredentials> {
        let by_provider: HashMap<_, _> = config
            .enabled_plugins()
            .filter_map(|(name, p)| Some((name.to_string(), p.user_credential.clone()?)))
            .collect();
        (!by_provider.is_empty()).then_some(UserCredentials { hub, by_provider })
    }

    /// `user`'s credential for `provider`, if the provider takes one and
    /// the user's `auth_state` holds it.
    pub async fn of(
        &self,
        provider: &str,
        user: &str,
    ) -> Result<Option<Arc<UserSecret>>, CredentialError> {
        let Some(wanted) = self.by_provider.get(provider) else {
            return Ok(None);
        };
        let state = self.hub.auth_state(user).await?;
        Ok(state
            .as_ref()
            .and_then(|s| credential(wanted, s))
            .map(Arc::new))
    }
}

/// The credential `wanted` points at in `auth_state`: a non-empty string.
fn credential(wanted: &UserCredential, auth_state: &Value) -> Option<UserSecret> {
    auth_state
        .pointer(&wanted.auth_state_key)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(|v| UserSecret::new(wanted.secret.clone(), v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_credential_is_the_string_the_pointer_names() {
        let wanted = UserCredential {
            secret: "access_token".into(),
            auth_state_key: "/access_token".into(),
        };
        let state = json!({ "access_token": "gho_x", "github_user": { "login": "a" } });
        assert_eq!(
            credential(&wanted, &state),
            Some(UserSecret::new("access_token", "gho_x"))
        );
        let nested = UserCredential {
            auth_state_key: "/token_response/access_token".into(),
            ..wanted.clone()
        };
        let state = json!({ "token_response": { "access_token": "glpat" } });
        assert_eq!(
            credential(&nested, &state),
            Some(UserSecret::new("access_token", "glpat"))
        );
        for missing in [
            json!({}),
            json!({ "access_token": "" }),
            json!({ "access_token": 7 }),
        ] {
            assert_eq!(credential(&wanted, &missing), None, "{missing}");
        }
    }
}
