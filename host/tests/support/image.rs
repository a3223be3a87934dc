//! Bindery's own image, from the repository's Dockerfile, built on the
//! engine of `scripts/engine.sh` with the `prebuilt` target: `binary` is
//! packaged on a Debian base made here by debootstrap, since no public base
//! image can be pulled where the tests run.

use std::path::Path;

use super::engine::engine;

/// Builds the image as `tag` around `binary`.
pub fn build(binary: &Path, tag: &str) {
    let context = tempfile::tempdir().unwrap();
    std::fs::copy(binary, context.path().join("bindery")).unwrap();
    let dockerfile = super::workspace().join("Dockerfile");
    let out = engine().docker(&[
        "build",
        "-q",
        "--network",
        "host",
        "-f",
        dockerfile.to_str().unwrap(),
        "--target",
        "prebuilt",
        "--build-arg",
        "BASE=bindery-test/debian:bookworm",
        "--build-arg",
        "BINARY=bindery",
        "-t",
        tag,
        context.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
