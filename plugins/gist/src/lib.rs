//! The `gist` provider: GitHub gists, as BinderHub's `GistRepoProvider`.
//!
//! Spec: `<user>/<gist id>[/<ref>]`. The gist's history comes from
//! `GET {api}/gists/{id}`; an empty ref, `HEAD`, `master` or `main` means the
//! latest version, any other ref must be a version in the history. Secret gists
//! are refused unless the operator sets `allow_secret_gist`.
use bindery_sdk::http::Request;
use bindery_sdk::prelude::*;
use bindery_sdk::spec::{self, invalid, is_sha1};
use bindery_sdk::upstream;
use serde::Deserialize;

pub struct Gist;

const SERVICE: &str = "GitHub";

#[derive(Debug, PartialEq, Eq)]
struct Spec<'a> {
    user: &'a str,
    id: &'a str,
    git_ref: &'a str,
}

fn parse(spec: &str) -> Result<Spec<'_>, PluginError> {
    spec::check(spec)?;
    let parts: Vec<&str> = spec.split('/').collect();
    let (user, id, git_ref) = match parts[..] {
        [user, id] => (user, id, ""),
        [user, id, git_ref] => (user, id, git_ref),
        _ => {
            return Err(invalid(format!(
                "Spec is not of the form \"user/gistid[/ref]\", provided: \"{spec}\"."
            )));
        }
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    };
    if !name_ok(user) {
        return Err(invalid(format!("{user:?} is not a valid GitHub user name")));
    }
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(format!("{id:?} is not a gist id")));
    }
    if !(git_ref.is_empty() || ["HEAD", "master", "main"].contains(&git_ref) || is_sha1(git_ref)) {
        return Err(invalid(format!(
            "{git_ref:?} is not a gist version: use HEAD or a full commit sha from the gist's revisions"
        )));
    }
    Ok(Spec { user, id, git_ref })
}

#[derive(Deserialize)]
struct GistInfo {
    public: bool,
    history: Vec<Version>,
}

#[derive(Deserialize)]
struct Version {
    version: String,
}

bindery_sdk::config! {
    pub struct Config {
        /// Launch secret (unlisted) gists too; default false
        allow_secret_gist: bool = false,
        /// API base URL; default https://api.github.com
        api_base_url: String = "https://api.github.com".into(),
    }
}

impl Provider for Gist {
    type Config = Config;
    const HOSTS: &'static [&'static str] = &["api.github.com"];
    const SECRETS: &'static [&'static str] = &["access_token"];

    fn display_config() -> DisplayConfig {
        DisplayConfig {
            display_name: "Gist".into(),
            id: "gist".into(),
            spec_validate_regex: "[^/]+/[^/]+(/[^/]+)?".into(),
            detect_regex: Some("^(https?://gist.github.com/)?(?<repo>.*[^/])/?".into()),
            repo_label: "Gist ID (username/gistId) or URL".into(),
            repo_placeholder: "example: choldgraf/6f2e7e2b0c4bbd7ba5f2a9d5e0d51b9a".into(),
            repo_url_encode: false,
            ref_enabled: true,
            ref_default: Some("HEAD".into()),
        }
    }

    fn resolve(ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        let s = parse(spec)?;
        let config = Config::read(ctx)?;
        let api = config.api_base_url;
        let mut request = Request::get(format!("{}/gists/{}", api.trim_end_matches('/'), s.id));
        if let Some(token) = upstream::optional_secret(ctx, "access_token") {
            request = request.header("Authorization", format!("token {token}"));
        }
        let response = upstream::send(ctx, SERVICE, &request)?;
        upstream::log_rate_limit(ctx, SERVICE, &response);
        let info: GistInfo = match response.status {
            200 => upstream::json(SERVICE, &response)?,
            404 | 422 => return Err(PluginError::NotFound(String::new())),
            _ => return Err(upstream::status_error(ctx, SERVICE, &response)),
        };
        if !info.public && !config.allow_secret_gist {
            return Err(PluginError::Banned(
                "You seem to want to use a secret Gist, but do not have permission to do so. To enable secret Gist support, set (or have an administrator set) `allow_secret_gist = true` in this provider's config".into(),
            ));
        }
        let (sha, lifetime) = if is_sha1(s.git_ref) {
            if !info.history.iter().any(|v| v.version == s.git_ref) {
                return Err(PluginError::NotFound(format!(
                    "{} is not a revision of this gist.",
                    s.git_ref
                )));
            }
            (s.git_ref.to_string(), RefLifetime::Immutable)
        } else {
            let latest = info
                .history
                .first()
                .ok_or_else(|| upstream::failure(SERVICE, Some(200), "the gist has no history"))?;
            (latest.version.clone(), RefLifetime::Moving)
        };
        if !is_sha1(&sha) {
            return Err(upstream::failure(
                SERVICE,
                Some(200),
                format!("{sha:?} in the gist's history is not a commit sha"),
            ));
        }
        Ok(Resolution {
            repo_url: format!("https://gist.github.com/{}/{}.git", s.user, s.id),
            build_slug: s.id.into(),
            resolved_spec: format!("{}/{}/{sha}", s.user, s.id),
            ref_url: format!("https://gist.github.com/{}/{}/{sha}", s.user, s.id),
            resolved_ref: sha,
            lifetime,
            notices: vec![],
        })
    }

    /// The gist with git; a granted `access_token` authenticates the fetch.
    fn content(
        ctx: &impl ProviderContext,
        resolution: Resolution,
    ) -> Result<ContentSource, PluginError> {
        let auth = upstream::basic_auth(ctx, "x-access-token", "access_token");
        Ok(ContentSource::git_with(&resolution, auth))
    }
}

bindery_sdk::export_provider!(Gist);

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_sdk::testing::MockContext;
    use proptest::prelude::*;

    const V1: &str = "0123456789abcdef0123456789abcdef01234567";
    const V0: &str = "89abcdef0123456789abcdef0123456789abcdef";
    const URL: &str = "https://api.github.com/gists/6f2e7e2b";

    fn gist(public: bool) -> MockContext {
        MockContext::new().with_json(
            URL,
            200,
            &format!(
                r#"{{"public":{public},"history":[{{"version":"{V1}"}},{{"version":"{V0}"}}]}}"#
            ),
        )
    }

    #[test]
    fn head_and_empty_refs_are_the_latest_version() {
        for spec in [
            "choldgraf/6f2e7e2b",
            "choldgraf/6f2e7e2b/HEAD",
            "choldgraf/6f2e7e2b/master",
        ] {
            let r = Gist::resolve(&gist(true), spec).unwrap();
            assert_eq!(r.resolved_ref, V1);
            assert_eq!(r.repo_url, "https://gist.github.com/choldgraf/6f2e7e2b.git");
            assert_eq!(r.build_slug, "6f2e7e2b");
            assert_eq!(r.resolved_spec, format!("choldgraf/6f2e7e2b/{V1}"));
            assert_eq!(
                r.ref_url,
                format!("https://gist.github.com/choldgraf/6f2e7e2b/{V1}")
            );
            assert_eq!(r.lifetime, RefLifetime::Moving);
        }
    }

    #[test]
    fn an_old_version_must_be_in_the_history() {
        let r = Gist::resolve(&gist(true), &format!("choldgraf/6f2e7e2b/{V0}")).unwrap();
        assert_eq!(
            (r.resolved_ref.as_str(), r.lifetime),
            (V0, RefLifetime::Immutable)
        );
        let other = "f".repeat(40);
        assert!(matches!(
            Gist::resolve(&gist(true), &format!("choldgraf/6f2e7e2b/{other}")),
            Err(PluginError::NotFound(_))
        ));
    }

    #[test]
    fn secret_gists_need_the_operator() {
        assert!(matches!(
            Gist::resolve(&gist(false), "choldgraf/6f2e7e2b"),
            Err(PluginError::Banned(_))
        ));
        let allowed = gist(false).with_config("allow_secret_gist", "true");
        assert!(Gist::resolve(&allowed, "choldgraf/6f2e7e2b").is_ok());
    }

    #[test]
    fn bad_specs() {
        for spec in [
            "choldgraf",
            "a/b/c/d",
            "../x",
            "a/../HEAD",
            "a/b c",
            "a/b/feature",
            "a/b/%2e%2e",
            "a/b?x",
        ] {
            let ctx = MockContext::new();
            assert!(
                matches!(Gist::resolve(&ctx, spec), Err(PluginError::InvalidSpec(_))),
                "{spec}"
            );
            assert!(ctx.requests().is_empty());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn requests_stay_on_the_api(spec in prop_oneof!["\\PC{0,80}", "[a-z.%?#@ -]{0,8}/[a-z0-9.%?#@/-]{0,12}"]) {
            let ctx = MockContext::new();
            let _ = Gist::resolve(&ctx, &spec);
            for r in ctx.requests() {
                let id = r.url.strip_prefix("https://api.github.com/gists/");
                prop_assert!(id.is_some_and(|id| id.bytes().all(|b| b.is_ascii_alphanumeric())), "{}", r.url);
            }
        }
    }
}
