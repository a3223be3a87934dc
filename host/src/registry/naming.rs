//! Upstream BinderHub's image and build-pod naming (`builder.py`). Existing
//! deployments find their images by these names, so every quirk is kept: the
//! escapism-style escaping, the hash of the original-case slug, `_` → `-`, the
//! lowercasing of the whole name, and the length limits.

use sha2::{Digest, Sha256};

/// Longest image name upstream produces (Docker's repository limit).
const IMAGE_NAME_LIMIT: usize = 255;
/// Kubernetes' limit on a pod name.
const POD_NAME_LIMIT: usize = 63;
const POD_PREFIX: &str = "build-";
const POD_REF_LENGTH: usize = 6;

/// `escapism.escape(s, safe=[A-Za-z0-9], escape_char="-")`: every other
/// character becomes `-` plus the upper-case hex of each of its UTF-8 bytes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("-{b:02X}"));
            }
        }
    }
    out
}

/// `_safe_build_slug(slug, limit, hash_length)`: the escaped slug cut to fit,
/// then `-` and the first `hash_length` hex digits of the original's sha256.
pub fn safe_build_slug(slug: &str, limit: usize, hash_length: usize) -> String {
    let hash = hex::encode(Sha256::digest(slug.as_bytes()));
    let escaped = escape(slug);
    // Escaped text is ASCII, so byte slicing is character slicing.
    let keep = limit.saturating_sub(hash_length + 1).min(escaped.len());
    format!("{}-{}", &escaped[..keep], &hash[..hash_length]).to_lowercase()
}

/// The image a build slug and resolved ref are built into:
/// `{prefix}{safe slug}:{ref}`, with `_` → `-`, lowercased.
pub fn image_name(prefix: &str, build_slug: &str, resolved_ref: &str) -> String {
    let slug = safe_build_slug(build_slug, IMAGE_NAME_LIMIT.saturating_sub(prefix.len()), 6);
    format!("{prefix}{slug}:{resolved_ref}")
        .replace('_', "-")
        .to_lowercase()
}

/// The build pod's name: `build-{safe slug}-{safe ref}`, at most 63 characters.
pub fn build_pod_name(build_slug: &str, resolved_ref: &str) -> String {
    let slug = safe_build_slug(
        build_slug,
        POD_NAME_LIMIT - POD_PREFIX.len() - POD_REF_LENGTH - 1,
        6,
    );
    let reference = safe_build_slug(resolved_ref, POD_REF_LENGTH, 2);
    format!(
        "{POD_PREFIX}{slug}-{}",
        &reference[..reference.len().min(POD_REF_LENGTH)]
    )
    .to_lowercase()
}

/// An image name split into repository and tag (the tag follows the last `:`
/// after the last `/`, so a registry port is not mistaken for one).
pub fn split_tag(image: &str) -> (&str, Option<&str>) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], Some(&image[slash + i + 1..])),
        None => (image, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "1479e02b9b4b1d1a9a5f2b9b5c0e0a6b0f1c2d3e";

    #[test]
    fn upstream_examples() {
        // binderhub's documented example: binder-examples/octave.
        assert_eq!(
            safe_build_slug("binder-examples-octave", 255, 6),
            "binder-2dexamples-2doctave-03025a"
        );
        assert_eq!(
            image_name("", "binder-examples-octave", SHA),
            format!("binder-2dexamples-2doctave-03025a:{SHA}")
        );
        // The ref part: its first 3 characters, `-`, 2 hex digits of its sha256.
        let ref_hash = &hex::encode(Sha256::digest(SHA))[..2];
        assert_eq!(
            build_pod_name("binder-examples-octave", SHA),
            format!("build-binder-2dexamples-2doctave-03025a-147-{ref_hash}")
        );
    }

    #[test]
    fn prefix_case_and_underscores() {
        let name = image_name(
            "Registry.Example.org/Binder_Builds/i-",
            "Some_User-Repo",
            "AB_cd",
        );
        assert!(
            name.starts_with("registry.example.org/binder-builds/i-some-5fuser-2drepo-"),
            "{name}"
        );
        assert!(name.ends_with(":ab-cd"), "{name}");
        // The hash is of the original case: case-only differences keep apart.
        assert_ne!(
            image_name("", "User-Repo", SHA),
            image_name("", "user-repo", SHA)
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a/b_c-d.é"), "a-2Fb-5Fc-2Dd-2E-C3-A9");
    }

    #[test]
    fn limits() {
        let long = "x".repeat(400);
        let prefix = "r.example.org/p/";
        let name = image_name(prefix, &long, SHA);
        let (repository, tag) = split_tag(&name);
        assert_eq!(repository.len(), 255);
        assert_eq!(tag, Some(SHA));
        let pod = build_pod_name(&long, SHA);
        assert_eq!(pod.len(), 63, "{pod}");
        // A URL slug (the git provider's) escapes to something pod-safe.
        let pod = build_pod_name("https://example.org/some/repo.git", "v1.0_rc");
        assert!(
            pod.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{pod}"
        );
    }

    #[test]
    fn tags() {
        assert_eq!(
            split_tag("127.0.0.1:5000/binder-x:abc"),
            ("127.0.0.1:5000/binder-x", Some("abc"))
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/binder-x"),
            ("127.0.0.1:5000/binder-x", None)
        );
        assert_eq!(split_tag("plain:tag"), ("plain", Some("tag")));
    }
}
