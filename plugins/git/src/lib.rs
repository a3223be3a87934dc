//! The `git` provider: any git repository by URL, as BinderHub's
//! `GitRepoProvider` does it.
//!
//! Spec: `<url-escaped repository URL>/<ref>`. A 40-hex ref is taken as is,
//! with no network access; anything else is looked up with `git ls-remote`,
//! taking the first advertised ref whose name ends in `/<ref>` (or is `<ref>`),
//! the same tail match `git ls-remote -- <url> <ref>` applies.
use bindery_sdk::git;
use bindery_sdk::prelude::*;
use bindery_sdk::spec::{self, invalid, is_sha1, unquote};
use bindery_sdk::upstream;

pub struct Git;

const ALLOWED_PROTOCOLS: [&str; 4] = ["http", "https", "git", "ssh"];

/// The parsed spec.
#[derive(Debug, PartialEq, Eq)]
struct Spec<'a> {
    /// The URL as it appears (escaped) in the spec.
    escaped_url: &'a str,
    /// The repository URL, unescaped and normalised.
    url: String,
    /// The ref, unescaped.
    git_ref: String,
}

fn parse(spec: &str) -> Result<Spec<'_>, PluginError> {
    spec::check(spec)?;
    let (escaped_url, escaped_ref) = spec
        .split_once('/')
        .ok_or_else(|| invalid("expected <url-escaped repository URL>/<ref>, e.g. https%3A%2F%2Fexample.org%2Frepo.git/HEAD"))?;
    let url = unquote(escaped_url, "repository URL")?;
    let git_ref = unquote(escaped_ref, "ref")?;
    if git_ref.is_empty() {
        return Err(invalid(
            "`unresolved_ref` must be specified in the url for the basic git provider",
        ));
    }
    if !is_sha1(&git_ref) {
        spec::check_git_ref(&git_ref)?;
    }
    let url = scp_to_ssh(&url).unwrap_or(url);
    let protocol = url
        .split_once("://")
        .map(|(p, _)| p.to_ascii_lowercase())
        .unwrap_or_default();
    if !ALLOWED_PROTOCOLS.contains(&protocol.as_str()) {
        return Err(invalid(format!(
            "unsupported protocol in {url:?}: use one of {}",
            ALLOWED_PROTOCOLS.join(", ")
        )));
    }
    Ok(Spec {
        escaped_url,
        url,
        git_ref,
    })
}

/// `user@host:path` (scp-like syntax) as `ssh://user@host/path`.
fn scp_to_ssh(url: &str) -> Option<String> {
    if url.contains("://") {
        return None;
    }
    let (user, rest) = url.split_once('@')?;
    let (host, path) = rest.split_once(':')?;
    let plain = |s: &str| !s.is_empty() && !s.contains(['/', ':', '@']);
    (plain(user) && plain(host))
        .then(|| format!("ssh://{user}@{host}/{}", path.trim_start_matches('/')))
}

bindery_sdk::config! {
    pub struct Config {
        /// The user name the `password` secret goes with, for private repositories; default git
        username: String = "git".into(),
    }
}

impl Provider for Git {
    type Config = Config;
    const HOSTS: &'static [&'static str] = &["*"];
    const SECRETS: &'static [&'static str] = &["password"];

    fn display_config() -> DisplayConfig {
        DisplayConfig {
            display_name: "Git repository".into(),
            id: "git".into(),
            spec_validate_regex: "[^/]+/.+".into(),
            detect_regex: None,
            repo_label: "Arbitrary git repository URL (http://git.example.com/repo)".into(),
            repo_placeholder: String::new(),
            repo_url_encode: true,
            ref_enabled: true,
            ref_default: Some("HEAD".into()),
        }
    }

    fn resolve(ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        let spec = parse(spec)?;
        let (sha, lifetime) = if is_sha1(&spec.git_ref) {
            (spec.git_ref.clone(), RefLifetime::Immutable)
        } else {
            // A private repository's refs are asked for with its credential.
            let username = Config::read(ctx)?.username;
            let listed = match upstream::basic_auth(ctx, &username, "password") {
                Some(auth) => {
                    ctx.ls_remote_authenticated(&spec.url, &auth.username, &auth.password_secret)
                }
                None => ctx.ls_remote(&spec.url),
            };
            let refs = listed.map_err(|e| {
                PluginError::Upstream(UpstreamFailure {
                    service: "git".into(),
                    status: None,
                    message: format!(
                        "Unable to run git ls-remote to get the `resolved_ref`: {e:?}"
                    ),
                })
            })?;
            let found = git::find_ref(&refs, &spec.git_ref).ok_or_else(|| {
                PluginError::NotFound(format!(
                    "The remote advertises no ref named {:?}.",
                    spec.git_ref
                ))
            })?;
            (found.oid.clone(), RefLifetime::Moving)
        };
        Ok(Resolution {
            resolved_spec: format!("{}/{sha}", spec.escaped_url),
            resolved_ref: sha,
            build_slug: spec.url.clone(),
            ref_url: spec.url.clone(),
            repo_url: spec.url,
            lifetime,
            notices: vec![],
        })
    }

    /// The repository with git; a granted `password` secret (with the
    /// `username` config key, default `git`) authenticates the fetch, as
    /// upstream's `GitRepoProvider.git_credentials`.
    fn content(
        ctx: &impl ProviderContext,
        resolution: Resolution,
    ) -> Result<ContentSource, PluginError> {
        let auth = upstream::basic_auth(ctx, &Config::read(ctx)?.username, "password");
        Ok(ContentSource::git_with(&resolution, auth))
    }
}

bindery_sdk::export_provider!(Git);

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_sdk::git::GitError;
    use bindery_sdk::testing::MockContext;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
    const OTHER: &str = "89abcdef0123456789abcdef0123456789abcdef";
    const URL: &str = "https://example.org/repo.git";
    const ESCAPED: &str = "https%3A%2F%2Fexample.org%2Frepo.git";

    fn remote() -> MockContext {
        MockContext::new().with_remote(
            URL,
            &[
                ("HEAD", SHA),
                ("refs/heads/domain", OTHER),
                ("refs/heads/main", SHA),
                ("refs/tags/v1.0", OTHER),
            ],
        )
    }

    #[test]
    fn a_private_repository_is_listed_and_fetched_with_the_granted_password() {
        let ctx = remote()
            .with_secret("password", "t0k")
            .with_config("username", "builder");
        let r = Git::resolve(&ctx, &format!("{ESCAPED}/main")).unwrap();
        assert_eq!(r.resolved_ref, SHA);
        let ContentSource::Git(git) = Git::content(&ctx, r).unwrap() else {
            panic!("not git");
        };
        assert_eq!(
            git.auth,
            Some(BasicAuth {
                username: "builder".into(),
                password_secret: "password".into()
            })
        );
        let ContentSource::Git(git) = Git::content(
            &remote(),
            Git::resolve(&remote(), &format!("{ESCAPED}/main")).unwrap(),
        )
        .unwrap() else {
            panic!("not git");
        };
        assert_eq!(git.auth, None);
    }

    #[test]
    fn branches_tags_and_head_resolve_by_tail_match() {
        let r = Git::resolve(&remote(), &format!("{ESCAPED}/main")).unwrap();
        assert_eq!(r.resolved_ref, SHA);
        assert_eq!(r.repo_url, URL);
        assert_eq!(r.build_slug, URL);
        assert_eq!(r.ref_url, URL);
        assert_eq!(r.resolved_spec, format!("{ESCAPED}/{SHA}"));
        assert_eq!(r.lifetime, RefLifetime::Moving);
        assert_eq!(
            Git::resolve(&remote(), &format!("{ESCAPED}/HEAD"))
                .unwrap()
                .resolved_ref,
            SHA
        );
        assert_eq!(
            Git::resolve(&remote(), &format!("{ESCAPED}/v1.0"))
                .unwrap()
                .resolved_ref,
            OTHER
        );
        assert_eq!(
            Git::resolve(&remote(), &format!("{ESCAPED}/heads/main"))
                .unwrap()
                .resolved_ref,
            SHA
        );
        assert!(matches!(
            Git::resolve(&remote(), &format!("{ESCAPED}/ain")),
            Err(PluginError::NotFound(_))
        ));
    }

    #[test]
    fn a_sha_is_taken_as_is_without_the_network() {
        let ctx = MockContext::new();
        let r = Git::resolve(&ctx, &format!("{ESCAPED}/{OTHER}")).unwrap();
        assert_eq!(r.resolved_ref, OTHER);
        assert_eq!(r.lifetime, RefLifetime::Immutable);
    }

    #[test]
    fn scp_style_urls_become_ssh() {
        let s = parse("git%40example.org%3Agroup%2Frepo.git/main").unwrap();
        assert_eq!(s.url, "ssh://git@example.org/group/repo.git");
        assert_eq!(scp_to_ssh("https://example.org/x"), None);
    }

    #[test]
    fn bad_specs_are_invalid() {
        for spec in [
            "no-slash",
            &format!("{ESCAPED}/"),
            "file%3A%2F%2F%2Fetc%2Fpasswd/HEAD",
            "%2Fetc%2Fpasswd/HEAD",
            "ext%3A%3Ash%20-c%20id/HEAD",
            &format!("{ESCAPED}/--upload-pack=evil"),
            &format!("{ESCAPED}/ma%0Ain"),
            &format!("{ESCAPED}/%FF"),
            &format!("{ESCAPED}/{}", "a".repeat(10_000)),
        ] {
            assert!(
                matches!(
                    Git::resolve(&MockContext::new(), spec),
                    Err(PluginError::InvalidSpec(_))
                ),
                "{spec:.80}"
            );
        }
    }

    #[test]
    fn an_unreachable_remote_is_an_upstream_failure() {
        let ctx = MockContext::new()
            .with_remote_error(URL, GitError::Remote("connection refused".into()));
        match Git::resolve(&ctx, &format!("{ESCAPED}/main")) {
            Err(PluginError::Upstream(u)) => assert!(u.message.contains("connection refused")),
            other => panic!("{other:?}"),
        }
    }
}
