//! Look-ups: whether an image exists (remembered in the sled `images` tree),
//! and the manifests and blobs a layer build starts from.

use super::*;

impl Registry {
    /// The image's manifest digest, or `None` when the registry does not have it.
    pub async fn lookup(&self, image: &str) -> Result<Option<String>, RegistryError> {
        let ttl_ms = self.config.found_ttl_secs * 1000;
        if let Some(cache) = &self.cache {
            match cache.get(image, now_ms(), ttl_ms) {
                Ok(Some(digest)) => return Ok(Some(digest)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(image, "image cache read failed, asking the registry: {e}");
                }
            }
        }
        if self.host.is_none() {
            return Ok(None);
        }
        let found = self.ask(image).await?;
        match &found {
            Some(digest) => self.record(image, digest),
            None => self.forget(image),
        }
        Ok(found)
    }

    /// Records that `image` now exists (a build pushed it).
    pub fn record(&self, image: &str, digest: &str) {
        if let Some(cache) = &self.cache
            && let Err(e) = cache.put(image, digest, now_ms())
        {
            tracing::warn!(image, "image cache write failed: {e}");
        }
    }

    fn forget(&self, image: &str) {
        if let Some(cache) = &self.cache
            && let Err(e) = cache.remove(image)
        {
            tracing::warn!(image, "image cache write failed: {e}");
        }
    }

    /// Upstream's health check: ask for an image that need not exist; any
    /// definite answer (found or not) means the registry works.
    pub async fn check(&self) -> Result<(), RegistryError> {
        if self.host.is_none() {
            return Ok(());
        }
        let probe = format!("{}some-image-name:12345", self.config.image_prefix);
        self.ask(&probe).await.map(drop)
    }

    /// One manifest look-up with retries on failures that may pass.
    async fn ask(&self, image: &str) -> Result<Option<String>, RegistryError> {
        let reference = self.reference(image);
        let auth = self.auth();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.client().fetch_manifest_digest(&reference, &auth).await;
            match self.classify(outcome) {
                Err(e @ (RegistryError::Unreachable { .. } | RegistryError::Failed { .. }))
                    if attempt < self.config.retries.max(1) =>
                {
                    tracing::debug!(image, attempt, "registry look-up failed, retrying: {e}");
                    tokio::time::sleep(RETRY_DELAY * attempt).await;
                }
                other => return other,
            }
        }
    }

    /// `image`'s manifest as stored (for an index, its linux/amd64 image's),
    /// or `None` when the registry does not have it.
    pub async fn manifest(&self, image: &str) -> Result<Option<StoredManifest>, RegistryError> {
        let mut reference = self.reference(image);
        for _ in 0..2 {
            let (body, digest) = match self
                .client()
                .pull_manifest_raw(&reference, &self.auth(), MANIFEST_TYPES)
                .await
            {
                Ok(found) => found,
                Err(e) if self.is_missing(&e) => return Ok(None),
                Err(e) => return Err(self.error(e)),
            };
            let parsed: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Failed {
                    url: self.url(),
                    reason: format!("the manifest of {image} is not JSON: {e}"),
                })?;
            let media_type = parsed["mediaType"]
                .as_str()
                .unwrap_or(OCI_MANIFEST)
                .to_string();
            let Some(entries) = parsed["manifests"].as_array() else {
                return Ok(Some(StoredManifest {
                    body: body.to_vec(),
                    media_type,
                    digest,
                }));
            };
            let amd64 = entries.iter().find(|m| {
                m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64"
            });
            let Some(chosen) = amd64.and_then(|m| m["digest"].as_str()) else {
                return Err(RegistryError::Failed {
                    url: self.url(),
                    reason: format!("{image} has no linux/amd64 image"),
                });
            };
            reference = reference.clone_with_digest(chosen.to_string());
        }
        Err(RegistryError::Failed {
            url: self.url(),
            reason: format!("{image} is an index of indexes"),
        })
    }

    /// A blob of `image`'s repository.
    pub async fn blob(&self, image: &str, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let reference = self.reference(image);
        self.client()
            .store_auth_if_needed(reference.resolve_registry(), &self.auth())
            .await;
        let mut out = Vec::new();
        self.client()
            .pull_blob(&reference, digest, &mut out)
            .await
            .map_err(|e| self.error(e))?;
        Ok(out)
    }
}

/// A manifest as the registry stores it.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// The bytes (their sha256 is the digest).
    pub body: Vec<u8>,
    /// `mediaType`.
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MANIFEST_TYPES: &[&str] = &[
    OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
