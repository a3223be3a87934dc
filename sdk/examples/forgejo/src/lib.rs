//! An institution's own provider: repositories on a Forgejo or Gitea forge
//! (Codeberg, a campus forge). It is not bundled with Bindery: build it with
//! `bindery plugin build`, then load it from its path:
//!
//! ```toml
//! [plugins.forge]
//! path = "/etc/bindery/plugins/forgejo.wasm"
//! hosts = ["forge.example.edu"]
//! config = { base_url = "https://forge.example.edu" }
//! secrets = { token = { env = "FORGE_TOKEN" } }   # optional, for private repositories
//! ```
//!
//! Spec: `<owner>/<repo>/<ref>`, resolved with the forge's
//! `GET /api/v1/repos/{owner}/{repo}/commits?sha={ref}&limit=1`.
use bindery_sdk::http::Request;
use bindery_sdk::prelude::*;
use bindery_sdk::spec::{self, invalid, is_sha1, quote};
use bindery_sdk::upstream;
use serde::Deserialize;

bindery_sdk::config! {
    pub struct Forge {
        /// The forge, e.g. https://codeberg.org
        base_url: String,
    }
}

pub struct Forgejo;

const SERVICE: &str = "Forgejo";

fn check_name(name: &str) -> Result<&str, PluginError> {
    if spec::is_forge_name(name) {
        Ok(name)
    } else {
        Err(invalid(format!(
            "{name:?} is not a valid owner or repository name"
        )))
    }
}

#[derive(Deserialize)]
struct Commit {
    sha: String,
}

impl Provider for Forgejo {
    type Config = Forge;
    const SECRETS: &'static [&'static str] = &["token"];

    fn display_config() -> DisplayConfig {
        DisplayConfig {
            display_name: "Forgejo".into(),
            id: "forgejo".into(),
            spec_validate_regex: "[^/]+/[^/]+/.+".into(),
            repo_label: "Repository (owner/name)".into(),
            repo_placeholder: "example: research-group/analysis".into(),
            ..DisplayConfig::default()
        }
    }

    fn resolve(ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        spec::check(spec)?;
        let mut parts = spec.splitn(3, '/');
        let (Some(owner), Some(repo), Some(git_ref)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(format!(
                "Spec is not of the form \"owner/repo/ref\", provided: \"{spec}\"."
            )));
        };
        let (owner, repo) = (
            check_name(owner)?,
            check_name(repo.trim_end_matches(".git"))?,
        );
        if !is_sha1(git_ref) {
            spec::check_git_ref(git_ref)?;
        }
        let base = Forge::read(ctx)?.base_url;
        let base = base.trim_end_matches('/');
        // Without `sha` the forge lists the default branch: that is HEAD.
        let from = if git_ref == "HEAD" {
            String::new()
        } else {
            format!("&sha={}", quote(git_ref, ""))
        };
        let mut request = Request::get(format!(
            "{base}/api/v1/repos/{owner}/{repo}/commits?limit=1&stat=false&files=false{from}"
        ));
        if let Some(token) = upstream::optional_secret(ctx, "token") {
            request = request.header("Authorization", format!("token {token}"));
        }
        let response = upstream::send(ctx, SERVICE, &request)?;
        let commits: Vec<Commit> = match response.status {
            200 => upstream::json(SERVICE, &response)?,
            404 | 409 | 422 => return Err(PluginError::NotFound(String::new())),
            _ => return Err(upstream::status_error(ctx, SERVICE, &response)),
        };
        let sha = commits
            .into_iter()
            .next()
            .map(|c| c.sha)
            .filter(|s| is_sha1(s))
            .ok_or_else(|| PluginError::NotFound(String::new()))?;
        Ok(Resolution {
            repo_url: format!("{base}/{owner}/{repo}.git"),
            build_slug: format!("{}-{}", owner.replace('-', "_-"), repo.replace('-', "_-")),
            resolved_spec: format!("{owner}/{repo}/{sha}"),
            ref_url: format!("{base}/{owner}/{repo}/commit/{sha}"),
            lifetime: if is_sha1(git_ref) {
                RefLifetime::Immutable
            } else {
                RefLifetime::Moving
            },
            resolved_ref: sha,
            notices: vec![],
        })
    }
}

bindery_sdk::export_provider!(Forgejo);

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_sdk::testing::MockContext;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn resolves_a_branch() {
        let ctx = MockContext::new()
            .with_config("base_url", "https://forge.example.edu/")
            .with_json("https://forge.example.edu/api/v1/repos/lab/my-analysis/commits?limit=1&stat=false&files=false&sha=main", 200, &format!(r#"[{{"sha":"{SHA}"}}]"#));
        let r = Forgejo::resolve(&ctx, "lab/my-analysis/main").unwrap();
        assert_eq!(r.resolved_ref, SHA);
        assert_eq!(r.repo_url, "https://forge.example.edu/lab/my-analysis.git");
        assert_eq!(r.build_slug, "lab-my_-analysis");
        assert!(matches!(
            Forgejo::resolve(&ctx, "lab/../main"),
            Err(PluginError::InvalidSpec(_))
        ));
    }
}
