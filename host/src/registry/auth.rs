//! Credentials: the configured login, else the Docker `config.json` entry
//! for the registry's host.

use super::*;
use crate::config::SecretSource;

impl Registry {
    pub(super) fn auth(&self) -> RegistryAuth {
        if let Some(user) = &self.config.username {
            let password = self
                .config
                .password
                .as_ref()
                .and_then(SecretSource::read)
                .unwrap_or_default();
            return RegistryAuth::Basic(user.clone(), password);
        }
        match (&self.config.docker_config, &self.host) {
            (Some(path), Some(host)) => {
                docker_config_auth(path, host).unwrap_or(RegistryAuth::Anonymous)
            }
            _ => RegistryAuth::Anonymous,
        }
    }
}

/// Basic credentials for `host` from a Docker `config.json` (`auths.<host>.auth`
/// is base64 of `user:password`).
fn docker_config_auth(path: &std::path::Path, host: &str) -> Option<RegistryAuth> {
    let text = std::fs::read_to_string(path)
        .map_err(
            |e| tracing::warn!(path = %path.display(), "cannot read registry credentials: {e}"),
        )
        .ok()?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(
            |e| tracing::warn!(path = %path.display(), "registry credentials are not JSON: {e}"),
        )
        .ok()?;
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.iter().find(|(k, _)| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        k.split('/').next() == Some(host)
    })?;
    let encoded = entry.1.get("auth")?.as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(RegistryAuth::Basic(user.into(), password.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("user:p:ss");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"https://reg.example.org/v1/":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        assert!(
            docker_config_auth(&path, "reg.example.org")
                == Some(RegistryAuth::Basic("user".into(), "p:ss".into()))
        );
        assert!(docker_config_auth(&path, "other.example.org").is_none());
    }
}
