//! Pushes: blobs and manifests of a layer build, with the push scope
//! asked for first.

use futures_util::StreamExt;

use super::*;

/// Where a blob's bytes come from when the target repository lacks it.
pub enum BlobSource {
    /// Small blobs: configs.
    Bytes(Vec<u8>),
    /// A file streamed in chunks: layers.
    File(std::path::PathBuf),
    /// None: the blob must already be there or be mountable (base layers).
    MountOnly,
}

impl Registry {
    /// Logs in for pushing to `image`'s repository.
    pub async fn authorize_push(&self, image: &str) -> Result<(), RegistryError> {
        let reference = self.reference(image);
        self.client()
            .auth(
                &reference,
                &self.auth(),
                oci_client::RegistryOperation::Push,
            )
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Makes the blob `digest` present in `image`'s repository: nothing when
    /// it is, a cross-repository mount from `from` when that works, else an
    /// upload from `source`.
    pub async fn put_blob(
        &self,
        image: &str,
        from: Option<&str>,
        source: BlobSource,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let reference = self.reference(image);
        if self
            .client()
            .blob_exists(&reference, digest)
            .await
            .map_err(|e| self.error(e))?
        {
            return Ok(());
        }
        if let Some(source) = from
            .map(|f| self.reference(f))
            .filter(|s| s.repository() != reference.repository())
            && self
                .client()
                .mount_blob(&reference, &source, digest)
                .await
                .is_ok()
        {
            return Ok(());
        }
        let unreadable = |reason: String| RegistryError::Failed {
            url: self.url(),
            reason: format!("cannot read the blob to push: {reason}"),
        };
        let pushed = match source {
            BlobSource::Bytes(data) => self.client().push_blob(&reference, data, digest).await,
            BlobSource::File(path) => {
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| unreadable(format!("{}: {e}", path.display())))?;
                // Chunked PATCHes of what is read: a layer of any size costs
                // one read buffer, not its size, in memory.
                let chunks = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
                    .map(|chunk| chunk.map_err(oci_client::errors::OciDistributionError::from));
                self.client()
                    .push_blob_stream(&reference, chunks, digest, None)
                    .await
            }
            BlobSource::MountOnly => {
                return Err(unreadable(
                    "a base layer is neither in the target repository nor mountable".into(),
                ));
            }
        };
        pushed.map(drop).map_err(|e| self.error(e))
    }

    /// Pushes a manifest under `image`'s tag; its digest.
    pub async fn put_manifest(
        &self,
        image: &str,
        body: Vec<u8>,
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let reference = self.reference(image);
        let digest = digest(&body);
        let content_type = media_type.parse().map_err(|_| RegistryError::Failed {
            url: self.url(),
            reason: format!("bad media type {media_type:?}"),
        })?;
        self.client()
            .push_manifest_raw(&reference, body, content_type)
            .await
            .map_err(|e| self.error(e))?;
        Ok(digest)
    }
}

/// The `sha256:…` digest of a blob or manifest.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
