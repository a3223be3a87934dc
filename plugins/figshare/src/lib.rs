//! The `figshare` provider: Figshare articles by DOI, as BinderHub's `FigshareProvider`.
//!
//! The DOI (with or without `.vN`) is resolved through the DOI resolver to the
//! article's landing page `…/articles/<type>/<title>/<id>[/<version>]`. Without a
//! version there, the latest comes from `GET {api}/articles/{id}/versions`.
use bindery_sdk::http::Request;
use bindery_sdk::prelude::*;
use bindery_sdk::upstream;
use serde::Deserialize;

pub struct Figshare;

const SERVICE: &str = "Figshare";

/// `(article id, version)` from a landing page URL.
fn article(landing: &str) -> Result<(u64, Option<u64>), PluginError> {
    let not_article = || {
        upstream::failure(
            SERVICE,
            None,
            format!("the DOI leads to {landing}, which is not a Figshare article"),
        )
    };
    let path = landing.split(['?', '#']).next().unwrap_or_default();
    let (_, rest) = path.split_once("/articles/").ok_or_else(not_article)?;
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let id = parts
        .get(2)
        .and_then(|s| s.parse().ok())
        .ok_or_else(not_article)?;
    let version = match parts.get(3) {
        Some(v) => Some(v.parse().map_err(|_| not_article())?),
        None => None,
    };
    Ok((id, version))
}

#[derive(Deserialize)]
struct Version {
    version: u64,
}

#[derive(Deserialize)]
struct Article {
    files: Vec<ArticleFile>,
}

#[derive(Deserialize)]
struct ArticleFile {
    name: String,
    download_url: String,
    size: Option<u64>,
    is_link_only: bool,
}

bindery_sdk::config! {
    pub struct Config {
        /// Figshare API base URL; default https://api.figshare.com/v2
        api_base_url: String = "https://api.figshare.com/v2".into(),
    }
}

fn api_base(ctx: &impl ProviderContext) -> Result<String, PluginError> {
    Ok(Config::read(ctx)?
        .api_base_url
        .trim_end_matches('/')
        .to_string())
}

impl Provider for Figshare {
    type Config = (bindery_sdk::doi::Resolver, Config);
    const HOSTS: &'static [&'static str] = &["doi.org", "figshare.com", "*.figshare.com"];

    fn display_config() -> DisplayConfig {
        bindery_sdk::doi::display_config(
            "Figshare DOI",
            "figshare",
            "10.6084/m9.figshare.9782777.v1",
        )
    }

    fn resolve(ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        let landing = bindery_sdk::doi::landing_page(ctx, spec, "10.6084/m9.figshare.9782777.v1")?;
        let (id, version) = article(&landing)?;
        let (version, lifetime) = match version {
            Some(v) => (v, RefLifetime::Immutable),
            None => {
                let response = upstream::send(
                    ctx,
                    SERVICE,
                    &Request::get(format!("{}/articles/{id}/versions", api_base(ctx)?)),
                )?;
                if response.status != 200 {
                    return Err(upstream::status_error(ctx, SERVICE, &response));
                }
                let versions: Vec<Version> = upstream::json(SERVICE, &response)?;
                let latest = versions.iter().map(|v| v.version).max().unwrap_or(1);
                (latest, RefLifetime::Moving)
            }
        };
        let record = format!("{id}.v{version}");
        let resolved_spec = format!(
            "{}figshare.{record}",
            spec.split("figshare").next().unwrap_or_default()
        );
        Ok(Resolution {
            repo_url: spec.into(),
            build_slug: format!("figshare-{record}"),
            ref_url: format!("https://doi.org/{resolved_spec}"),
            resolved_spec,
            resolved_ref: record,
            lifetime,
            notices: vec![],
        })
    }

    /// repo2docker's fetch: the version's `files`, link-only ones left out,
    /// each `download_url` saved as its `name`; one `.zip` alone is unpacked.
    fn content(
        ctx: &impl ProviderContext,
        resolution: Resolution,
    ) -> Result<ContentSource, PluginError> {
        let (id, version) = resolution.resolved_ref.split_once(".v").ok_or_else(|| {
            PluginError::Internal(format!(
                "not a Figshare version: {}",
                resolution.resolved_ref
            ))
        })?;
        let url = format!("{}/articles/{id}/versions/{version}", api_base(ctx)?);
        let missing = format!("Figshare has no version {version} of article {id}.");
        let article: Article = upstream::get_json(ctx, SERVICE, &url, &missing)?;
        let files: Vec<ArticleFile> = article
            .files
            .into_iter()
            .filter(|f| !f.is_link_only)
            .collect();
        let unpack = match files.as_slice() {
            [one] if one.name.ends_with(".zip") => Unpack::Zip,
            _ => Unpack::AsIs,
        };
        Ok(ContentSource::Files(FilesContent {
            downloads: files
                .into_iter()
                .map(|f| Download {
                    path: f.name,
                    url: f.download_url,
                    size: f.size,
                })
                .collect(),
            unpack,
            auth: None,
            series: Some(format!("article/{id}")),
        }))
    }
}

bindery_sdk::export_provider!(Figshare);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_the_versions_files_without_link_only_ones() {
        let ctx = MockContext::new()
            .with_redirect(
                "https://doi.org/10.6084/m9.figshare.9782777.v1",
                "https://figshare.com/articles/code/title/9782777/1",
            )
            .with_json(
                "https://api.figshare.com/v2/articles/9782777/versions/1",
                200,
                r#"{"files": [
                    {"name": "binder.zip", "download_url": "https://ndownloader.figshare.com/files/1", "size": 3, "is_link_only": false},
                    {"name": "elsewhere", "download_url": "https://example.org/x", "size": 0, "is_link_only": true}]}"#,
            );
        let r = Figshare::resolve(&ctx, "10.6084/m9.figshare.9782777.v1").unwrap();
        let ContentSource::Files(files) = Figshare::content(&ctx, r).unwrap() else {
            panic!("not files");
        };
        assert_eq!(files.unpack, Unpack::Zip);
        assert_eq!(
            files.downloads,
            vec![Download {
                path: "binder.zip".into(),
                url: "https://ndownloader.figshare.com/files/1".into(),
                size: Some(3),
            }]
        );
    }
    use bindery_sdk::testing::MockContext;
    use proptest::prelude::*;

    fn landing(doi: &str, to: &str) -> MockContext {
        MockContext::new().with_redirect(&format!("https://doi.org/{doi}"), to)
    }

    #[test]
    fn versioned_and_unversioned_dois() {
        let doi = "10.6084/m9.figshare.9782777.v1";
        let r = Figshare::resolve(
            &landing(
                doi,
                "https://figshare.com/articles/code/Binder-ready/9782777/1",
            ),
            doi,
        )
        .unwrap();
        assert_eq!(r.resolved_ref, "9782777.v1");
        assert_eq!(r.build_slug, "figshare-9782777.v1");
        assert_eq!(r.resolved_spec, "10.6084/m9.figshare.9782777.v1");
        assert_eq!(r.ref_url, "https://doi.org/10.6084/m9.figshare.9782777.v1");
        assert_eq!(r.lifetime, RefLifetime::Immutable);

        let doi = "10.6084/m9.figshare.9782777";
        let ctx = landing(
            doi,
            "https://figshare.com/articles/code/Binder-ready/9782777",
        )
        .with_json(
            "https://api.figshare.com/v2/articles/9782777/versions",
            200,
            r#"[{"version":1,"url":"u"},{"version":3,"url":"u"},{"version":2,"url":"u"}]"#,
        );
        let r = Figshare::resolve(&ctx, doi).unwrap();
        assert_eq!(r.resolved_ref, "9782777.v3");
        assert_eq!(r.resolved_spec, "10.6084/m9.figshare.9782777.v3");
        assert_eq!(r.lifetime, RefLifetime::Moving);
    }

    #[test]
    fn landing_pages_that_are_not_articles() {
        let doi = "10.6084/m9.figshare.1";
        assert!(matches!(
            Figshare::resolve(&landing(doi, "https://figshare.com/projects/x"), doi),
            Err(PluginError::Upstream(_))
        ));
        assert!(matches!(
            Figshare::resolve(&landing(doi, "https://figshare.com/articles/a/b/c"), doi),
            Err(PluginError::Upstream(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn landing_pages_never_panic(url in "\\PC{0,60}(/articles/[a-z0-9/]{0,20})?") {
            let _ = article(&url);
        }
    }
}
