//! The `secrets` capability: values by name, each granted individually; and
//! the secret a launching user linked, which stands in for one of them in
//! the calls and fetches made for that user.

use super::CallState;
use crate::bindings::secrets::{Host, SecretError};

impl Host for CallState {
    fn get(&mut self, name: String) -> Result<String, SecretError> {
        self.grants
            .secret(&self.plugin, &name, self.user.as_deref())
    }
}

/// A user's own credential for a provider (a forge token from the hub's
/// `auth_state`), read under the name of the granted secret it replaces:
/// the plugin asks for its secret as ever, and gets the user's. It lives
/// for one launch; `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct UserSecret {
    name: String,
    value: String,
}

impl UserSecret {
    /// The user's `value` for the secret `name`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> UserSecret {
        UserSecret {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The secret it stands in for.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserSecret({}: <redacted>)", self.name)
    }
}

impl super::Grants {
    /// The value of secret `name`: the user's own when `user` stands in for
    /// it, else the operator's grant, read at each use so that a rotated
    /// secret needs no restart. For the plugin's calls, and for the host's
    /// fetches that the plugin authenticates with a secret it names.
    pub fn secret(
        &self,
        plugin: &str,
        name: &str,
        user: Option<&UserSecret>,
    ) -> Result<String, SecretError> {
        if let Some(user) = user.filter(|u| u.name == name) {
            return Ok(user.value.clone());
        }
        let Some(source) = self.secrets.get(name) else {
            return Err(SecretError::NotGranted(name.into()));
        };
        source.read().ok_or_else(|| {
            tracing::warn!(
                plugin,
                secret = name,
                "granted secret has no value ({source:?})"
            );
            SecretError::Missing(name.into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PluginConfig, RuntimeConfig, SecretSource};

    #[test]
    fn a_users_secret_stands_in_for_its_name_only_and_never_shows() {
        let var = "BINDERY_TEST_SECRETS_OPERATOR_TOKEN";
        // SAFETY: a name no other test reads or writes.
        unsafe { std::env::set_var(var, "operator") };
        let mut config = PluginConfig::default();
        config
            .secrets
            .insert("token".into(), SecretSource::Env(var.into()));
        let grants = super::super::Grants::new("gh", &config, &RuntimeConfig::default());
        let user = UserSecret::new("token", "users-own");
        assert_eq!(grants.secret("gh", "token", None).unwrap(), "operator");
        assert_eq!(
            grants.secret("gh", "token", Some(&user)).unwrap(),
            "users-own"
        );
        let other = UserSecret::new("password", "users-own");
        assert_eq!(
            grants.secret("gh", "token", Some(&other)).unwrap(),
            "operator"
        );
        // Not granted by the operator: the user's is still theirs to use.
        assert_eq!(
            grants.secret("gh", "password", Some(&other)).unwrap(),
            "users-own"
        );
        assert!(matches!(
            grants.secret("gh", "password", None),
            Err(SecretError::NotGranted(n)) if n == "password"
        ));
        assert_eq!(format!("{user:?}"), "UserSecret(token: <redacted>)");
    }
}
