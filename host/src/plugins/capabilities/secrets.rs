//! The `secrets` capability: values by name, each granted individually.

use super::CallState;
use crate::config::SecretSource;
use crate::plugins::bindings::secrets::{Host, SecretError};

impl Host for CallState {
    fn get(&mut self, name: String) -> Result<String, SecretError> {
        let Some(source) = self.grants.secrets.get(&name) else {
            return Err(SecretError::NotGranted(name));
        };
        // Read at each use, so a rotated secret needs no restart.
        let value = match source {
            SecretSource::Env(var) => std::env::var(var).ok(),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string()),
        };
        match value {
            Some(v) if !v.is_empty() => Ok(v),
            _ => {
                tracing::warn!(plugin = %self.plugin, secret = %name, "granted secret has no value ({source:?})");
                Err(SecretError::Missing(name))
            }
        }
    }
}
