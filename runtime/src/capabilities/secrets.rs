//! The `secrets` capability: values by name, each granted individually.

use super::CallState;
use crate::bindings::secrets::{Host, SecretError};

impl Host for CallState {
    fn get(&mut self, name: String) -> Result<String, SecretError> {
        let Some(source) = self.grants.secrets.get(&name) else {
            return Err(SecretError::NotGranted(name));
        };
        // Read at each use, so a rotated secret needs no restart.
        match source.read() {
            Some(v) => Ok(v),
            None => {
                tracing::warn!(plugin = %self.plugin, secret = %name, "granted secret has no value ({source:?})");
                Err(SecretError::Missing(name))
            }
        }
    }
}
