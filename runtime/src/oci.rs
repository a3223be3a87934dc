//! Plugins as OCI artifacts, in the CNCF TAG Runtime's Wasm layout: an OCI
//! image manifest whose config is `application/vnd.wasm.config.v0+json` and
//! whose one layer is the component, `application/wasm`. Components are
//! pulled by digest only; the manifest's and the layer's digests are checked
//! against what was asked for and what the manifest says, and the component
//! is kept on disk by manifest digest (checked again when read back).

use std::path::{Path, PathBuf};

use oci_client::client::{ClientConfig, ClientProtocol, Config as OciConfig, ImageLayer};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::json;

use super::engine::sha256_hex;
use crate::config::{OciPluginConfig, SecretSource};

/// The Wasm artifact's config media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The component layer's media type.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The older wasm-to-oci layer type, still read.
const LEGACY_LAYER_MEDIA_TYPE: &str = oci_client::manifest::WASM_LAYER_MEDIA_TYPE;

/// Pulls and pushes plugin components.
pub struct OciPlugins {
    /// Built at the first pull or push: building it reads the system's CA
    /// bundle (about 60 ms), and most hosts load no plugin from a registry.
    client: std::sync::OnceLock<Client>,
    protocol: ClientProtocol,
    auth: RegistryAuth,
    cache: PathBuf,
}

impl OciPlugins {
    /// A client for `config`, caching under `default_cache` unless the config names a directory.
    pub fn new(config: &OciPluginConfig, default_cache: &Path) -> OciPlugins {
        let protocol = ClientProtocol::HttpsExcept(config.insecure_registries.clone());
        let auth = match (
            &config.username,
            config.password.as_ref().and_then(SecretSource::read),
        ) {
            (Some(user), Some(password)) => RegistryAuth::Basic(user.clone(), password),
            _ => RegistryAuth::Anonymous,
        };
        OciPlugins {
            client: std::sync::OnceLock::new(),
            protocol,
            auth,
            cache: config
                .cache_dir
                .clone()
                .unwrap_or_else(|| default_cache.to_path_buf()),
        }
    }

    /// The same client, logging in as `user` with `password` (a login the
    /// caller found elsewhere, e.g. in the Docker config).
    pub fn with_login(mut self, user: String, password: String) -> OciPlugins {
        self.auth = RegistryAuth::Basic(user, password);
        self
    }

    /// Whether the configuration names a login.
    pub fn has_login(&self) -> bool {
        !matches!(self.auth, RegistryAuth::Anonymous)
    }

    fn client(&self) -> &Client {
        self.client.get_or_init(|| {
            Client::new(ClientConfig {
                protocol: self.protocol.clone(),
                ..Default::default()
            })
        })
    }

    fn cached(&self, manifest_digest: &str) -> (PathBuf, PathBuf) {
        let stem = manifest_digest.replace(':', "-");
        (
            self.cache.join(format!("{stem}.wasm")),
            self.cache.join(format!("{stem}.layer")),
        )
    }

    /// The component at `reference` (`host/repository@sha256:…`).
    pub async fn pull(&self, reference: &str) -> Result<Vec<u8>, String> {
        let parsed: Reference = reference
            .parse()
            .map_err(|e| format!("not an OCI reference: {e}"))?;
        let pinned = parsed
            .digest()
            .ok_or("the reference is not pinned by digest")?
            .to_string();
        let (wasm_path, layer_path) = self.cached(&pinned);
        if let (Ok(wasm), Ok(layer)) = (
            std::fs::read(&wasm_path),
            std::fs::read_to_string(&layer_path),
        ) {
            if format!("sha256:{}", sha256_hex(&wasm)) == layer.trim() {
                return Ok(wasm);
            }
            tracing::warn!(path = %wasm_path.display(), "a cached plugin does not match its digest; pulling it again");
        }
        let (body, _) = self
            .client()
            .pull_manifest_raw(&parsed, &self.auth, &[OCI_IMAGE_MEDIA_TYPE])
            .await
            .map_err(|e| format!("cannot get its manifest from the registry: {e}"))?;
        let got = format!("sha256:{}", sha256_hex(&body));
        if got != pinned {
            return Err(format!(
                "the registry's manifest has digest {got}, not the pinned {pinned}: refused"
            ));
        }
        let manifest: OciImageManifest = serde_json::from_slice(&body)
            .map_err(|e| format!("its manifest is not an OCI image manifest: {e}"))?;
        let layers: Vec<_> = manifest
            .layers
            .iter()
            .filter(|l| l.media_type == LAYER_MEDIA_TYPE || l.media_type == LEGACY_LAYER_MEDIA_TYPE)
            .collect();
        let [layer] = layers.as_slice() else {
            return Err(format!(
                "it is not a Wasm component artifact: it needs one `{LAYER_MEDIA_TYPE}` layer, it has {}",
                layers.len()
            ));
        };
        let mut wasm = Vec::with_capacity(usize::try_from(layer.size).unwrap_or(0));
        self.client()
            .pull_blob(&parsed, *layer, &mut wasm)
            .await
            .map_err(|e| match e {
                // oci-client checks the digest as the blob streams in.
                OciDistributionError::DigestError(e) => format!(
                    "the component blob does not match the {} its manifest names ({e}): refused",
                    layer.digest
                ),
                e => format!("cannot get the component blob {}: {e}", layer.digest),
            })?;
        let got = format!("sha256:{}", sha256_hex(&wasm));
        if got != layer.digest {
            return Err(format!(
                "the component blob does not match the {} its manifest names (it is {got}): refused",
                layer.digest
            ));
        }
        if let Err(e) = self.keep(&wasm_path, &layer_path, &wasm, &layer.digest) {
            tracing::warn!(dir = %self.cache.display(), "cannot cache the pulled plugin: {e}");
        }
        Ok(wasm)
    }

    fn keep(
        &self,
        wasm_path: &Path,
        layer_path: &Path,
        wasm: &[u8],
        layer_digest: &str,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.cache)?;
        // Written aside and renamed: a reader never sees half a component.
        let partial = wasm_path.with_extension("partial");
        std::fs::write(&partial, wasm)?;
        std::fs::write(layer_path, layer_digest)?;
        std::fs::rename(partial, wasm_path)
    }

    /// Pushes `wasm` as a Wasm component artifact to `reference` (a tag); the
    /// reference pinned by the manifest's digest, as a config takes it.
    pub async fn push(&self, wasm: Vec<u8>, reference: &str) -> Result<String, String> {
        let parsed: Reference = reference
            .parse()
            .map_err(|e| format!("not an OCI reference: {e}"))?;
        let layer_digest = format!("sha256:{}", sha256_hex(&wasm));
        let config = json!({
            "created": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer_digest],
        });
        let layers = [ImageLayer::new(wasm, LAYER_MEDIA_TYPE.into(), None)];
        let config = OciConfig::new(
            config.to_string().into_bytes(),
            CONFIG_MEDIA_TYPE.into(),
            None,
        );
        let mut manifest = OciImageManifest::build(&layers, &config, None);
        manifest.artifact_type = None;
        let pushed = self
            .client()
            .push(&parsed, &layers, config, &self.auth, Some(manifest))
            .await
            .map_err(|e| format!("cannot push to {reference}: {e}"))?;
        let digest = pushed
            .manifest_url
            .rsplit('/')
            .next()
            .filter(|d| d.starts_with("sha256:"))
            .map(String::from);
        let digest = match digest {
            Some(d) => d,
            None => self
                .client()
                .fetch_manifest_digest(&parsed, &self.auth)
                .await
                .map_err(|e| format!("pushed, but its digest cannot be read back: {e}"))?,
        };
        Ok(format!(
            "oci://{}/{}@{digest}",
            parsed.registry(),
            parsed.repository()
        ))
    }
}
