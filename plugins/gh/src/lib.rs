//! The `gh` provider: GitHub repositories, as BinderHub's `GitHubRepoProvider`.
//!
//! Spec: `<user>/<repo>/<ref>`, split on the first two `/` so the ref may hold
//! more. The ref is resolved with `GET {api}/repos/{user}/{repo}/commits/{ref}`;
//! the host's ETag cache makes a repeat a conditional request. A `master` or
//! `main` that no longer exists falls back to `HEAD` with a notice, as upstream.
use base64::Engine;
use bindery_sdk::http::Request;
use bindery_sdk::prelude::*;
use bindery_sdk::spec::{self, invalid, is_sha1};
use bindery_sdk::upstream;
use serde::Deserialize;

pub struct GitHub;

const SERVICE: &str = "GitHub";
const DEFAULT_BRANCH_HINT: &str =
    "GitHub recently changed default branches from \"master\" to \"main\".";
const HEAD_TIP: &str = "Tip: HEAD will always resolve to a repository's default branch.";

#[derive(Debug, PartialEq, Eq)]
struct Spec<'a> {
    user: &'a str,
    repo: &'a str,
    git_ref: &'a str,
}

/// A GitHub user, organisation or repository name: letters, digits, `-`, `_`, `.`.
fn check_name(name: &str, what: &str) -> Result<(), PluginError> {
    if spec::is_forge_name(name) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{name:?} is not a valid GitHub {what} name"
        )))
    }
}

fn parse(spec: &str) -> Result<Spec<'_>, PluginError> {
    spec::check(spec)?;
    let parts: Vec<&str> = spec.splitn(3, '/').collect();
    let [user, repo, git_ref] = parts[..] else {
        let mut msg = format!("Spec is not of the form \"user/repo/ref\", provided: \"{spec}\".");
        if parts.len() == 2 && !["main", "master", "HEAD"].contains(&parts[1]) {
            msg.push_str(&format!(" Did you mean \"{spec}/HEAD\"?"));
        }
        return Err(invalid(msg));
    };
    let repo = repo.strip_suffix(".git").unwrap_or(repo);
    check_name(user, "user")?;
    check_name(repo, "repository")?;
    if !is_sha1(git_ref) {
        spec::check_git_ref(git_ref)?;
    }
    Ok(Spec {
        user,
        repo,
        git_ref,
    })
}

#[derive(Deserialize)]
struct Commit {
    sha: Option<String>,
}

/// The `Authorization` header from the granted credentials: a token, else the
/// OAuth app's client id and secret.
fn authorization(ctx: &impl ProviderContext) -> Option<String> {
    if let Some(token) = upstream::optional_secret(ctx, "access_token") {
        return Some(format!("token {token}"));
    }
    let id = upstream::optional_secret(ctx, "client_id")?;
    let secret = upstream::optional_secret(ctx, "client_secret")?;
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    ))
}

bindery_sdk::config! {
    pub struct Config {
        /// GitHub host for repository URLs (GitHub Enterprise); default github.com
        hostname: String = "github.com".into(),
        /// API base URL; default https://api.{hostname}
        api_base_url: Option<String>,
    }
}

/// Where and how to ask GitHub, read from config and secrets once per resolve.
struct Api {
    hostname: String,
    base: String,
    authorization: Option<String>,
}

impl Api {
    fn new(ctx: &impl ProviderContext) -> Result<Api, PluginError> {
        let Config {
            hostname,
            api_base_url,
        } = Config::read(ctx)?;
        let base = api_base_url.unwrap_or_else(|| format!("https://api.{hostname}"));
        Ok(Api {
            base: base.trim_end_matches('/').into(),
            hostname,
            authorization: authorization(ctx),
        })
    }

    /// The commit `git_ref` names, or `None` when GitHub does not know it (404, 422).
    fn commit(
        &self,
        ctx: &impl ProviderContext,
        s: &Spec<'_>,
        git_ref: &str,
    ) -> Result<Option<String>, PluginError> {
        let url = format!(
            "{}/repos/{}/{}/commits/{}",
            self.base,
            s.user,
            s.repo,
            spec::ref_path(git_ref)
        );
        let mut request = Request::get(url).header("Accept", "application/vnd.github+json");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth.as_str());
        }
        let response = upstream::send(ctx, SERVICE, &request)?;
        upstream::log_rate_limit(ctx, SERVICE, &response);
        match response.status {
            200 => {
                let commit: Commit = upstream::json(SERVICE, &response)?;
                match commit.sha {
                    Some(sha) if is_sha1(&sha) => Ok(Some(sha)),
                    _ => Err(upstream::failure(
                        SERVICE,
                        Some(200),
                        format!("no commit sha in the answer from {}", response.final_url),
                    )),
                }
            }
            404 | 422 => Ok(None),
            _ => Err(upstream::status_error(ctx, SERVICE, &response)),
        }
    }
}

impl Provider for GitHub {
    type Config = Config;
    const HOSTS: &'static [&'static str] = &["api.github.com"];
    const SECRETS: &'static [&'static str] = &["access_token", "client_id", "client_secret"];

    fn display_config() -> DisplayConfig {
        DisplayConfig {
            display_name: "GitHub".into(),
            id: "gh".into(),
            spec_validate_regex: "[^/]+/[^/]+/.+".into(),
            detect_regex: Some("^(https?://github.com/)?(?<repo>.*[^/])/?".into()),
            repo_label: "GitHub repository name or URL".into(),
            repo_placeholder: "example: binder-examples/requirements or https://github.com/binder-examples/requirements".into(),
            ..DisplayConfig::default()
        }
    }

    fn resolve(ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        let s = parse(spec)?;
        let api = Api::new(ctx)?;
        let mut notices = Vec::new();
        let sha = match api.commit(ctx, &s, s.git_ref)? {
            Some(sha) => sha,
            None if matches!(s.git_ref, "master" | "main") => {
                // Keep old links to a renamed default branch working, loudly.
                let hint = format!("{DEFAULT_BRANCH_HINT} {HEAD_TIP}");
                let sha = api
                    .commit(ctx, &s, "HEAD")?
                    .ok_or_else(|| PluginError::NotFound(hint.clone()))?;
                notices.push(Notice::RefFallback(RefFallback {
                    requested: s.git_ref.into(),
                    used: "HEAD".into(),
                    hint,
                }));
                sha
            }
            None => return Err(PluginError::NotFound(DEFAULT_BRANCH_HINT.into())),
        };
        let repo_url = format!("https://{}/{}/{}", api.hostname, s.user, s.repo);
        Ok(Resolution {
            ref_url: format!("{repo_url}/tree/{sha}"),
            build_slug: format!("{}-{}", s.user, s.repo),
            resolved_spec: format!("{}/{}/{sha}", s.user, s.repo),
            lifetime: if is_sha1(s.git_ref) {
                RefLifetime::Immutable
            } else {
                RefLifetime::Moving
            },
            resolved_ref: sha,
            repo_url,
            notices,
        })
    }

    /// The repository with git; a granted `access_token` authenticates the
    /// fetch (private repositories), as upstream's `git_credentials`.
    fn content(
        ctx: &impl ProviderContext,
        resolution: Resolution,
    ) -> Result<ContentSource, PluginError> {
        let auth = upstream::basic_auth(ctx, "x-access-token", "access_token");
        Ok(ContentSource::git_with(&resolution, auth))
    }
}

bindery_sdk::export_provider!(GitHub);

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_sdk::testing::MockContext;
    use proptest::prelude::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
    const API: &str = "https://api.github.com/repos/binder-examples/requirements/commits";

    fn commits(refs: &[(&str, u16)]) -> MockContext {
        refs.iter().fold(MockContext::new(), |ctx, (r, status)| {
            ctx.with_json(
                &format!("{API}/{r}"),
                *status,
                &format!(r#"{{"sha":"{SHA}"}}"#),
            )
        })
    }

    #[test]
    fn content_is_the_repository_authenticated_with_a_granted_token() {
        let ctx = commits(&[("main", 200)]);
        let r = GitHub::resolve(&ctx, "binder-examples/requirements/main").unwrap();
        let ContentSource::Git(git) = GitHub::content(&ctx, r.clone()).unwrap() else {
            panic!("not git");
        };
        assert_eq!(
            (git.url.as_str(), git.revision.as_str(), git.auth),
            (r.repo_url.as_str(), SHA, None)
        );
        let ctx = ctx.with_secret("access_token", "t0k");
        let ContentSource::Git(git) = GitHub::content(&ctx, r).unwrap() else {
            panic!("not git");
        };
        assert_eq!(
            git.auth,
            Some(BasicAuth {
                username: "x-access-token".into(),
                password_secret: "access_token".into()
            })
        );
    }

    #[test]
    fn resolves_like_upstream() {
        let ctx = commits(&[("feature/x", 200)]);
        let r = GitHub::resolve(&ctx, "binder-examples/requirements.git/feature/x").unwrap();
        assert_eq!(r.resolved_ref, SHA);
        assert_eq!(
            r.repo_url,
            "https://github.com/binder-examples/requirements"
        );
        assert_eq!(r.build_slug, "binder-examples-requirements");
        assert_eq!(
            r.resolved_spec,
            format!("binder-examples/requirements/{SHA}")
        );
        assert_eq!(
            r.ref_url,
            format!("https://github.com/binder-examples/requirements/tree/{SHA}")
        );
        assert_eq!(r.lifetime, RefLifetime::Moving);
        assert!(r.notices.is_empty());
        assert_eq!(ctx.requests()[0].url, format!("{API}/feature/x"));
    }

    #[test]
    fn two_part_specs_get_the_hint() {
        let e = GitHub::resolve(&MockContext::new(), "binder-examples/requirements").unwrap_err();
        assert_eq!(
            e,
            PluginError::InvalidSpec("Spec is not of the form \"user/repo/ref\", provided: \"binder-examples/requirements\". Did you mean \"binder-examples/requirements/HEAD\"?".into())
        );
        let e = GitHub::resolve(&MockContext::new(), "binder-examples/main").unwrap_err();
        assert!(matches!(e, PluginError::InvalidSpec(m) if !m.contains("Did you mean")));
    }

    #[test]
    fn a_missing_master_falls_back_to_head_with_a_notice() {
        let ctx = commits(&[("master", 404), ("HEAD", 200)]);
        let r = GitHub::resolve(&ctx, "binder-examples/requirements/master").unwrap();
        assert_eq!(r.resolved_ref, SHA);
        assert!(
            matches!(&r.notices[..], [Notice::RefFallback(f)] if f.requested == "master" && f.used == "HEAD" && f.hint.contains("Tip: HEAD"))
        );
        let e = GitHub::resolve(
            &commits(&[("master", 404), ("HEAD", 404)]),
            "binder-examples/requirements/master",
        )
        .unwrap_err();
        assert!(matches!(e, PluginError::NotFound(m) if m.contains("Tip: HEAD")));
        let e = GitHub::resolve(
            &commits(&[("nope", 422)]),
            "binder-examples/requirements/nope",
        )
        .unwrap_err();
        assert_eq!(e, PluginError::NotFound(DEFAULT_BRANCH_HINT.into()));
    }

    #[test]
    fn a_sha_is_immutable_and_credentials_are_sent() {
        let ctx = commits(&[(SHA, 200)]).with_secret("access_token", "t0k");
        let r = GitHub::resolve(&ctx, &format!("binder-examples/requirements/{SHA}")).unwrap();
        assert_eq!(r.lifetime, RefLifetime::Immutable);
        assert!(
            ctx.requests()[0]
                .headers
                .contains(&("Authorization".into(), "token t0k".into()))
        );
    }

    #[test]
    fn hostile_specs_are_refused_before_any_request() {
        for spec in [
            "../etc/passwd",
            "a/../HEAD",
            "a/b/../../x",
            "a b/c/HEAD",
            "a/b/ma\nin",
            "a/b?x=1/HEAD",
            "a/b/x?y",
            "a/b/",
            "évil/repo/HEAD",
        ] {
            let ctx = MockContext::new();
            let e = GitHub::resolve(&ctx, spec).unwrap_err();
            assert!(matches!(e, PluginError::InvalidSpec(_)), "{spec:?}: {e:?}");
            assert!(ctx.requests().is_empty(), "{spec:?}");
        }
        let long = format!("a/b/{}", "x".repeat(10_000));
        assert!(matches!(
            GitHub::resolve(&MockContext::new(), &long),
            Err(PluginError::InvalidSpec(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        /// Whatever the spec, a request goes only to the API host, under /repos/.
        #[test]
        fn requests_stay_on_the_api(spec in prop_oneof!["\\PC{0,80}", "[a-z.%?#@ -]{0,8}/[a-z.%?#@-]{0,8}/[a-z.%?#@{}/~^: -]{0,16}"]) {
            let ctx = MockContext::new();
            let _ = GitHub::resolve(&ctx, &spec);
            for r in ctx.requests() {
                prop_assert!(r.url.starts_with("https://api.github.com/repos/"), "{}", r.url);
                prop_assert!(!r.url.contains("/../") && !r.url.contains('?') && !r.url.contains('#'), "{}", r.url);
            }
        }
    }
}
