//! The `gl` provider: GitLab projects, as BinderHub's `GitLabRepoProvider`.
//!
//! Spec: `<url-escaped namespace>/<ref>`, split on the first `/` (nested groups
//! live in the escaped part). Resolved with
//! `GET {api}/api/v4/projects/{namespace}/repository/commits/{ref}`.
//! Credentials go in headers (`PRIVATE-TOKEN`, `Authorization: Bearer`) rather
//! than upstream's query parameters, so they never reach access logs.
use bindery_sdk::http::Request;
use bindery_sdk::prelude::*;
use bindery_sdk::spec::{self, invalid, is_sha1, quote, unquote};
use bindery_sdk::upstream;
use serde::Deserialize;

bindery_sdk::config! {
    pub struct Config {
        /// The GitLab instance; default gitlab.com
        hostname: String = "gitlab.com".into(),
        /// Where the API is served; default https://{hostname}
        api_base_url: Option<String>,
    }
}

pub struct GitLab;

const SERVICE: &str = "GitLab";

#[derive(Debug, PartialEq, Eq)]
struct Spec<'a> {
    quoted_namespace: &'a str,
    namespace: String,
    git_ref: String,
}

fn parse(spec: &str) -> Result<Spec<'_>, PluginError> {
    spec::check(spec)?;
    let (quoted_namespace, quoted_ref) = spec.split_once('/').ok_or_else(|| {
        invalid("expected <url-escaped namespace>/<ref>, e.g. group%2Fproject/HEAD")
    })?;
    let namespace = unquote(quoted_namespace, "namespace")?;
    let git_ref = unquote(quoted_ref, "ref")?;
    if git_ref.is_empty() {
        return Err(invalid("An unresolved ref is required"));
    }
    let part_ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars().all(|c| c.is_alphanumeric() || "-_.+".contains(c))
    };
    if namespace.split('/').count() < 2 || !namespace.split('/').all(part_ok) {
        return Err(invalid(format!(
            "{namespace:?} is not a GitLab project path such as group/project"
        )));
    }
    if !is_sha1(&git_ref) {
        spec::check_git_ref(&git_ref)?;
    }
    Ok(Spec {
        quoted_namespace,
        namespace,
        git_ref,
    })
}

#[derive(Deserialize)]
struct Commit {
    id: String,
}

impl Provider for GitLab {
    type Config = Config;
    const HOSTS: &'static [&'static str] = &["gitlab.com"];
    const SECRETS: &'static [&'static str] = &["access_token", "private_token"];

    fn display_config() -> DisplayConfig {
        DisplayConfig {
            display_name: "GitLab.com".into(),
            id: "gl".into(),
            spec_validate_regex: "[^/]+/.+".into(),
            detect_regex: Some("^(https?://gitlab.com/)?(?<repo>.*[^/])/?".into()),
            repo_label: "GitLab.com repository or URL".into(),
            repo_placeholder:
                "example: https://gitlab.com/mosaik/examples/mosaik-tutorials-on-binder".into(),
            repo_url_encode: true,
            ..DisplayConfig::default()
        }
    }

    fn resolve(ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        let s = parse(spec)?;
        let Config {
            hostname,
            api_base_url,
        } = Config::read(ctx)?;
        let api = api_base_url.unwrap_or_else(|| format!("https://{hostname}"));
        let url = format!(
            "{}/api/v4/projects/{}/repository/commits/{}",
            api.trim_end_matches('/'),
            quote(&s.namespace, ""),
            quote(&s.git_ref, "")
        );
        let mut request = Request::get(url);
        if let Some(token) = upstream::optional_secret(ctx, "private_token") {
            request = request.header("PRIVATE-TOKEN", token);
        } else if let Some(token) = upstream::optional_secret(ctx, "access_token") {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = upstream::send(ctx, SERVICE, &request)?;
        let sha = match response.status {
            200 => upstream::json::<Commit>(SERVICE, &response)?.id,
            404 => return Err(PluginError::NotFound(String::new())),
            _ => return Err(upstream::status_error(ctx, SERVICE, &response)),
        };
        if !is_sha1(&sha) {
            return Err(upstream::failure(
                SERVICE,
                Some(200),
                format!("{sha:?} is not a commit sha"),
            ));
        }
        Ok(Resolution {
            repo_url: format!("https://{hostname}/{}.git", s.namespace),
            build_slug: s
                .namespace
                .split('/')
                .map(|p| p.replace('-', "_-"))
                .collect::<Vec<_>>()
                .join("-"),
            resolved_spec: format!("{}/{sha}", s.quoted_namespace),
            ref_url: format!("https://{hostname}/{}/tree/{sha}", s.namespace),
            lifetime: if is_sha1(&s.git_ref) {
                RefLifetime::Immutable
            } else {
                RefLifetime::Moving
            },
            resolved_ref: sha,
            notices: vec![],
        })
    }

    /// The repository with git. As upstream, a `private_token` authenticates
    /// the fetch; an OAuth `access_token` does too, as GitLab takes it.
    fn content(
        ctx: &impl ProviderContext,
        resolution: Resolution,
    ) -> Result<ContentSource, PluginError> {
        let auth = upstream::basic_auth(ctx, "binderhub", "private_token")
            .or_else(|| upstream::basic_auth(ctx, "oauth2", "access_token"));
        Ok(ContentSource::git_with(&resolution, auth))
    }
}

bindery_sdk::export_provider!(GitLab);

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_sdk::testing::MockContext;
    use proptest::prelude::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn resolves_like_upstream() {
        let url = "https://gitlab.com/api/v4/projects/my-group%2Fsub%2Fmy-project/repository/commits/feature%2Fx";
        let ctx = MockContext::new()
            .with_json(url, 200, &format!(r#"{{"id":"{SHA}"}}"#))
            .with_secret("private_token", "p");
        let r = GitLab::resolve(&ctx, "my-group%2Fsub%2Fmy-project/feature%2Fx").unwrap();
        assert_eq!(r.resolved_ref, SHA);
        assert_eq!(r.repo_url, "https://gitlab.com/my-group/sub/my-project.git");
        assert_eq!(r.build_slug, "my_-group-sub-my_-project");
        assert_eq!(
            r.resolved_spec,
            format!("my-group%2Fsub%2Fmy-project/{SHA}")
        );
        assert_eq!(
            r.ref_url,
            format!("https://gitlab.com/my-group/sub/my-project/tree/{SHA}")
        );
        assert!(
            ctx.requests()[0]
                .headers
                .contains(&("PRIVATE-TOKEN".into(), "p".into()))
        );
    }

    #[test]
    fn missing_refs_and_bad_specs() {
        let url = "https://gitlab.com/api/v4/projects/g%2Fp/repository/commits/nope";
        let ctx = MockContext::new().with_json(url, 404, r#"{"message":"404 Commit Not Found"}"#);
        assert!(matches!(
            GitLab::resolve(&ctx, "g%2Fp/nope"),
            Err(PluginError::NotFound(_))
        ));
        for spec in [
            "g%2Fp/",
            "gp/HEAD",
            "g%2F..%2Fp/HEAD",
            "g%2Fp/a..b",
            "g%2Fp%0A/HEAD",
            "no-slash",
        ] {
            assert!(
                matches!(
                    GitLab::resolve(&MockContext::new(), spec),
                    Err(PluginError::InvalidSpec(_))
                ),
                "{spec}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn requests_stay_on_the_api(spec in prop_oneof!["\\PC{0,80}", "[a-z.%2F?#@ -]{0,12}/[a-z.%2F?#@{}~^: -]{0,16}"]) {
            let ctx = MockContext::new();
            let _ = GitLab::resolve(&ctx, &spec);
            for r in ctx.requests() {
                let rest = r.url.strip_prefix("https://gitlab.com/api/v4/projects/").unwrap_or_default();
                let (project, tail) = rest.split_once('/').unwrap_or_default();
                prop_assert!(!project.is_empty() && !project.contains(['?', '#']), "{}", r.url);
                let ref_part = tail.strip_prefix("repository/commits/").unwrap_or("/");
                prop_assert!(!ref_part.contains(['/', '?', '#']), "{}", r.url);
            }
        }
    }
}
