//! The `secrets` capability: values by name, each granted individually.

use super::CallState;
use crate::bindings::secrets::{Host, SecretError};

impl Host for CallState {
    fn get(&mut self, name: String) -> Result<String, SecretError> {
        self.grants.secret(&self.plugin, &name)
    }
}

impl super::Grants {
    /// The value of secret `name`, read at each use so that a rotated secret
    /// needs no restart: for the plugin's calls, and for the host's fetches
    /// that the plugin authenticates with a secret it names.
    pub fn secret(&self, plugin: &str, name: &str) -> Result<String, SecretError> {
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
