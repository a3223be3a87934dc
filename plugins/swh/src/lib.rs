//! The `swh` provider: objects in the Software Heritage archive by SWHID
//! (`swh:1:<kind>:<40 hex>`), which upstream BinderHub does not have.
//!
//! Directories and revisions are launched as they are; a release launches what
//! it targets; a snapshot launches the revision its `HEAD` branch points to.
//! Every SWHID names immutable content, so every resolution is immutable. The
//! result is always a `swh:1:rev:` or `swh:1:dir:` SWHID, which repo2docker's
//! Software Heritage content provider fetches. Qualifiers (`;origin=…`) are
//! accepted and dropped: they do not change the content.
use std::collections::BTreeMap;

use bindery_sdk::http::Request;
use bindery_sdk::prelude::*;
use bindery_sdk::spec::{self, invalid, quote, unquote};
use bindery_sdk::upstream;
use serde::Deserialize;

pub struct SoftwareHeritage;

const SERVICE: &str = "Software Heritage";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Directory,
    Revision,
    Release,
    Snapshot,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Directory => "dir",
            Kind::Revision => "rev",
            Kind::Release => "rel",
            Kind::Snapshot => "snp",
        }
    }
    fn endpoint(self) -> &'static str {
        match self {
            Kind::Directory => "directory",
            Kind::Revision => "revision",
            Kind::Release => "release",
            Kind::Snapshot => "snapshot",
        }
    }
}

fn parse(spec: &str) -> Result<(Kind, String), PluginError> {
    spec::check(spec)?;
    let swhid = unquote(spec, "SWHID")?;
    let core = swhid.split(';').next().unwrap_or_default();
    let usage = || {
        invalid(format!(
            "{core:?} is not a SWHID such as swh:1:rev:309cf2674ee7a0749978cf8265ab91a60aea0f7d"
        ))
    };
    let mut parts = core.split(':');
    let (Some("swh"), Some("1"), Some(tag), Some(hex), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(usage());
    };
    let kind = match tag {
        "dir" => Kind::Directory,
        "rev" => Kind::Revision,
        "rel" => Kind::Release,
        "snp" => Kind::Snapshot,
        "cnt" => {
            return Err(invalid(
                "a content SWHID (swh:1:cnt:…) names a single file; launch a directory, revision, release or snapshot",
            ));
        }
        _ => return Err(usage()),
    };
    if !spec::is_sha1(hex) {
        return Err(usage());
    }
    Ok((kind, hex.to_string()))
}

#[derive(Deserialize)]
struct Release {
    target: String,
    target_type: String,
}

#[derive(Deserialize)]
struct Snapshot {
    branches: BTreeMap<String, Option<Branch>>,
}

#[derive(Deserialize)]
struct Branch {
    target: String,
    target_type: String,
}

#[derive(Deserialize)]
struct Revision {
    directory: String,
}

bindery_sdk::config! {
    pub struct Config {
        /// Archive API base URL; default https://archive.softwareheritage.org/api/1
        api_base_url: String = "https://archive.softwareheritage.org/api/1".into(),
    }
}

fn api_base(ctx: &impl ProviderContext) -> Result<String, PluginError> {
    Ok(Config::read(ctx)?
        .api_base_url
        .trim_end_matches('/')
        .to_string())
}

fn get(ctx: &impl ProviderContext, path: &str) -> Result<bindery_sdk::http::Response, PluginError> {
    let mut request = Request::get(format!("{}/{path}", api_base(ctx)?));
    if let Some(token) = upstream::optional_secret(ctx, "token") {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = upstream::send(ctx, SERVICE, &request)?;
    upstream::log_rate_limit(ctx, SERVICE, &response);
    match response.status {
        200 => Ok(response),
        404 => Err(PluginError::NotFound(format!(
            "The Software Heritage archive has no object at {path}."
        ))),
        _ => Err(upstream::status_error(ctx, SERVICE, &response)),
    }
}

fn kind_of(target_type: &str) -> Option<Kind> {
    match target_type {
        "directory" => Some(Kind::Directory),
        "revision" => Some(Kind::Revision),
        "release" => Some(Kind::Release),
        _ => None,
    }
}

/// The branch `name` of a snapshot, fetched on its own when the first page of
/// branches does not reach it.
fn branch(
    ctx: &impl ProviderContext,
    snapshot: &str,
    page: &Snapshot,
    name: &str,
) -> Result<Option<Branch>, PluginError> {
    if let Some(b) = page.branches.get(name) {
        return Ok(b.as_ref().map(|b| Branch {
            target: b.target.clone(),
            target_type: b.target_type.clone(),
        }));
    }
    let one: Snapshot = upstream::json(
        SERVICE,
        &get(
            ctx,
            &format!(
                "snapshot/{snapshot}/?branches_from={}&branches_count=1",
                quote(name, "/")
            ),
        )?,
    )?;
    Ok(one
        .branches
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, b)| b))
}

/// Follows a snapshot's `HEAD` (through one alias) to what it targets.
fn snapshot_head(ctx: &impl ProviderContext, id: &str) -> Result<(Kind, String), PluginError> {
    let page: Snapshot = upstream::json(SERVICE, &get(ctx, &format!("snapshot/{id}/"))?)?;
    let no_head = || PluginError::NotFound(format!("Snapshot {id} has no HEAD branch to launch."));
    let mut head = branch(ctx, id, &page, "HEAD")?.ok_or_else(no_head)?;
    if head.target_type == "alias" {
        head = branch(ctx, id, &page, &head.target)?.ok_or_else(no_head)?;
    }
    let kind = kind_of(&head.target_type).ok_or_else(no_head)?;
    Ok((kind, head.target))
}

impl Provider for SoftwareHeritage {
    type Config = Config;
    const HOSTS: &'static [&'static str] = &["archive.softwareheritage.org"];
    const SECRETS: &'static [&'static str] = &["token"];

    fn display_config() -> DisplayConfig {
        DisplayConfig {
            display_name: "Software Heritage SWHID".into(),
            id: "swh".into(),
            spec_validate_regex: "swh:1:(dir|rev|rel|snp):[0-9a-f]{40}(;.*)?".into(),
            detect_regex: None,
            repo_label: "Software Heritage identifier (SWHID)".into(),
            repo_placeholder: "example: swh:1:rev:309cf2674ee7a0749978cf8265ab91a60aea0f7d".into(),
            repo_url_encode: true,
            ref_enabled: false,
            ref_default: None,
        }
    }

    fn resolve(ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        let (kind, id) = parse(spec)?;
        let (mut kind, mut id) = match kind {
            Kind::Snapshot => snapshot_head(ctx, &id)?,
            other => (other, id),
        };
        if kind == Kind::Release {
            let rel: Release = upstream::json(SERVICE, &get(ctx, &format!("release/{id}/"))?)?;
            kind = kind_of(&rel.target_type)
                .filter(|k| *k != Kind::Release)
                .ok_or_else(|| {
                    PluginError::NotFound(format!(
                        "Release {id} targets a {}, which cannot be launched.",
                        rel.target_type
                    ))
                })?;
            id = rel.target;
        } else {
            get(ctx, &format!("{}/{id}/", kind.endpoint()))?;
        }
        if !spec::is_sha1(&id) {
            return Err(upstream::failure(
                SERVICE,
                Some(200),
                format!("{id:?} is not an object id"),
            ));
        }
        let swhid = format!("swh:1:{}:{id}", kind.tag());
        Ok(Resolution {
            build_slug: format!("swh-{}", kind.tag()),
            ref_url: format!("https://archive.softwareheritage.org/{swhid}"),
            resolved_spec: swhid.clone(),
            repo_url: swhid,
            resolved_ref: id,
            lifetime: RefLifetime::Immutable,
            notices: vec![],
        })
    }

    /// repo2docker's fetch: the directory (a revision's own), cooked by the
    /// vault and downloaded as a tarball.
    fn content(
        ctx: &impl ProviderContext,
        resolution: Resolution,
    ) -> Result<ContentSource, PluginError> {
        let id = resolution.resolved_ref;
        let directory = if resolution.repo_url.starts_with("swh:1:rev:") {
            let rev: Revision = upstream::json(SERVICE, &get(ctx, &format!("revision/{id}/"))?)?;
            rev.directory
        } else {
            id
        };
        if !spec::is_sha1(&directory) {
            return Err(upstream::failure(
                SERVICE,
                Some(200),
                format!("{directory:?} is not a directory id"),
            ));
        }
        let auth = upstream::optional_secret(ctx, "token").map(|_| {
            Credential::Header(HeaderAuth {
                name: "Authorization".into(),
                prefix: "Bearer ".into(),
                secret: "token".into(),
            })
        });
        Ok(ContentSource::SwhVault(SwhVaultContent {
            api: api_base(ctx)?,
            directory,
            auth,
        }))
    }
}

bindery_sdk::export_provider!(SoftwareHeritage);

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_sdk::testing::MockContext;
    use proptest::prelude::*;

    #[test]
    fn content_is_the_revisions_directory_from_the_vault() {
        let rev = "309cf2674ee7a0749978cf8265ab91a60aea0f7d";
        let dir = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
        let ctx = MockContext::new()
            .with_json(
                &format!("https://archive.softwareheritage.org/api/1/revision/{rev}/"),
                200,
                &format!(r#"{{"directory": "{dir}"}}"#),
            )
            .with_json(
                &format!("https://archive.softwareheritage.org/api/1/directory/{dir}/"),
                200,
                "[]",
            )
            .with_secret("token", "t");
        let r = SoftwareHeritage::resolve(&ctx, &format!("swh:1:rev:{rev}")).unwrap();
        let ContentSource::SwhVault(vault) = SoftwareHeritage::content(&ctx, r).unwrap() else {
            panic!("not the vault");
        };
        assert_eq!(vault.directory, dir);
        assert_eq!(vault.api, "https://archive.softwareheritage.org/api/1");
        assert!(
            matches!(vault.auth, Some(Credential::Header(h)) if h.prefix == "Bearer " && h.secret == "token")
        );
        let r = SoftwareHeritage::resolve(&ctx, &format!("swh:1:dir:{dir}")).unwrap();
        let ContentSource::SwhVault(vault) = SoftwareHeritage::content(&ctx, r).unwrap() else {
            panic!("not the vault");
        };
        assert_eq!(vault.directory, dir);
    }

    const API: &str = "https://archive.softwareheritage.org/api/1";
    const REV: &str = "309cf2674ee7a0749978cf8265ab91a60aea0f7d";
    const SNP: &str = "c7c108084bc0bf3d81436bf980b46e98bd338453";
    const REL: &str = "208f61cc7a5dbc9879ae6e5c2f95891e270f09ef";

    #[test]
    fn revisions_releases_and_snapshots() {
        let ctx = MockContext::new()
            .with_json(&format!("{API}/revision/{REV}/"), 200, &format!(r#"{{"id":"{REV}","directory":"x"}}"#))
            .with_json(&format!("{API}/release/{REL}/"), 200, &format!(r#"{{"id":"{REL}","target":"{REV}","target_type":"revision"}}"#))
            .with_json(
                &format!("{API}/snapshot/{SNP}/"),
                200,
                &format!(r#"{{"id":"{SNP}","branches":{{"HEAD":{{"target":"refs/heads/main","target_type":"alias"}},"refs/heads/main":{{"target":"{REV}","target_type":"revision"}}}},"next_branch":null}}"#),
            );
        for spec in [
            format!("swh:1:rev:{REV}"),
            format!("swh:1:rel:{REL}"),
            format!("swh:1:snp:{SNP}"),
            format!("swh%3A1%3Arev%3A{REV}%3Borigin%3Dhttps%3A%2F%2Fgithub.com%2Fx%2Fy"),
        ] {
            let r = SoftwareHeritage::resolve(&ctx, &spec).unwrap();
            assert_eq!(r.resolved_ref, REV, "{spec}");
            assert_eq!(r.repo_url, format!("swh:1:rev:{REV}"));
            assert_eq!(r.resolved_spec, r.repo_url);
            assert_eq!(
                r.ref_url,
                format!("https://archive.softwareheritage.org/swh:1:rev:{REV}")
            );
            assert_eq!(r.lifetime, RefLifetime::Immutable);
        }
    }

    #[test]
    fn a_head_beyond_the_first_page_is_fetched_alone() {
        let ctx = MockContext::new()
            .with_json(&format!("{API}/snapshot/{SNP}/"), 200, r#"{"branches":{"HEAD":{"target":"refs/heads/main","target_type":"alias"}},"next_branch":"refs/heads/a"}"#)
            .with_json(
                &format!("{API}/snapshot/{SNP}/?branches_from=refs/heads/main&branches_count=1"),
                200,
                &format!(r#"{{"branches":{{"refs/heads/main":{{"target":"{REV}","target_type":"revision"}}}}}}"#),
            )
            .with_json(&format!("{API}/revision/{REV}/"), 200, "{}");
        assert_eq!(
            SoftwareHeritage::resolve(&ctx, &format!("swh:1:snp:{SNP}"))
                .unwrap()
                .resolved_ref,
            REV
        );
    }

    #[test]
    fn missing_objects_and_bad_swhids() {
        let ctx = MockContext::new().with_json(
            &format!("{API}/directory/{REV}/"),
            404,
            r#"{"exception":"NotFoundExc","reason":"Directory not found"}"#,
        );
        assert!(matches!(
            SoftwareHeritage::resolve(&ctx, &format!("swh:1:dir:{REV}")),
            Err(PluginError::NotFound(_))
        ));
        for spec in [
            format!("swh:1:cnt:{REV}"),
            format!("swh:2:rev:{REV}"),
            "swh:1:rev:abc".into(),
            format!("swh:1:rev:{REV}:x"),
            format!("swh:1:rev:{}", REV.to_uppercase()),
        ] {
            assert!(
                matches!(
                    SoftwareHeritage::resolve(&MockContext::new(), &spec),
                    Err(PluginError::InvalidSpec(_))
                ),
                "{spec}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn requests_stay_on_the_api(spec in prop_oneof!["\\PC{0,80}", "swh:1:(dir|rev|rel|snp|cnt):[0-9a-f]{38,41}(;[a-z=/:%]{0,10})?"]) {
            let ctx = MockContext::new();
            let _ = SoftwareHeritage::resolve(&ctx, &spec);
            for r in ctx.requests() {
                let path = r.url.strip_prefix("https://archive.softwareheritage.org/api/1/").unwrap_or("");
                let (endpoint, rest) = path.split_once('/').unwrap_or_default();
                prop_assert!(["directory", "revision", "release", "snapshot"].contains(&endpoint), "{}", r.url);
                prop_assert!(spec::is_sha1(&rest[..40.min(rest.len())]), "{}", r.url);
            }
        }
    }
}
