//! The `zenodo` provider: Zenodo records by DOI, as BinderHub's `ZenodoProvider`.
//!
//! The DOI is resolved through the DOI resolver; the record id is the last path
//! segment of the landing page it redirects to. A concept DOI (all versions)
//! lands on the latest record, so its resolution moves; a version DOI lands on
//! its own record and is immutable.
use bindery_sdk::prelude::*;
use bindery_sdk::upstream;

pub struct Zenodo;

/// The Invenio records API behind a landing page: `https://zenodo.org/records/1`
/// (or `/record/1`, `/doi/…`) answers at `https://zenodo.org/api/records/1`,
/// and an instance under a path prefix keeps it.
fn records_api(landing: &str, record: &str) -> Result<String, PluginError> {
    let path_start = landing
        .find("://")
        .and_then(|i| landing[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(landing.len());
    let path = &landing[path_start..];
    let prefix = ["/records/", "/record/", "/doi/"]
        .iter()
        .filter_map(|marker| path.find(marker))
        .min()
        .ok_or_else(|| {
            upstream::failure(
                "Zenodo",
                None,
                format!("{landing} is not a record page of an Invenio repository"),
            )
        })?;
    Ok(format!(
        "{}{}/api/records/{record}",
        &landing[..path_start],
        &path[..prefix]
    ))
}

#[derive(serde::Deserialize)]
struct Record {
    links: RecordLinks,
    conceptrecid: Option<String>,
}

#[derive(serde::Deserialize)]
struct RecordLinks {
    files: String,
}

#[derive(serde::Deserialize)]
struct Files {
    entries: Vec<FileEntry>,
}

#[derive(serde::Deserialize)]
struct FileEntry {
    key: String,
    size: Option<u64>,
    links: FileLinks,
}

#[derive(serde::Deserialize)]
struct FileLinks {
    content: String,
}

/// The last path segment of the landing page: the record id.
fn record_id(landing: &str) -> Result<&str, PluginError> {
    let path = landing.split(['?', '#']).next().unwrap_or_default();
    let id = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(upstream::failure(
            "Zenodo",
            None,
            format!("the DOI leads to {landing}, which is not a Zenodo record"),
        ));
    }
    Ok(id)
}

impl Provider for Zenodo {
    type Config = bindery_sdk::doi::Resolver;
    const HOSTS: &'static [&'static str] = &["doi.org", "zenodo.org", "*.zenodo.org"];

    fn display_config() -> DisplayConfig {
        bindery_sdk::doi::display_config("Zenodo DOI", "zenodo", "10.5281/zenodo.3242074")
    }

    fn resolve(ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        let landing = bindery_sdk::doi::landing_page(ctx, spec, "10.5281/zenodo.3242074")?;
        let record = record_id(&landing)?;
        let resolved_spec = format!(
            "{}zenodo.{record}",
            spec.split("zenodo").next().unwrap_or_default()
        );
        // A version DOI names its own record; a concept DOI names the latest one.
        let versioned = spec
            .rsplit_once("zenodo.")
            .is_some_and(|(_, n)| n == record);
        Ok(Resolution {
            repo_url: spec.into(),
            build_slug: format!("zenodo-{record}"),
            ref_url: format!("https://doi.org/{resolved_spec}"),
            resolved_spec,
            resolved_ref: record.into(),
            lifetime: if versioned {
                RefLifetime::Immutable
            } else {
                RefLifetime::Moving
            },
            notices: vec![],
        })
    }

    /// repo2docker's fetch: the record, then its `links.files`; every entry's
    /// `links.content` saved as its `key`, and a record of one zip unpacked.
    fn content(
        ctx: &impl ProviderContext,
        resolution: Resolution,
    ) -> Result<ContentSource, PluginError> {
        let landing = bindery_sdk::doi::landing_page(
            ctx,
            &resolution.resolved_spec,
            "10.5281/zenodo.3242074",
        )?;
        let record = &resolution.resolved_ref;
        let api = records_api(&landing, record)?;
        let missing = format!("Zenodo has no record {record}.");
        let found: Record = upstream::get_json(ctx, "Zenodo", &api, &missing)?;
        let files: Files = upstream::get_json(ctx, "Zenodo", &found.links.files, &missing)?;
        let unpack = if files.entries.len() == 1 {
            Unpack::Zip
        } else {
            Unpack::AsIs
        };
        Ok(ContentSource::Files(FilesContent {
            downloads: files
                .entries
                .into_iter()
                .map(|e| Download {
                    path: e.key,
                    url: e.links.content,
                    size: e.size,
                })
                .collect(),
            unpack,
            auth: None,
            // Every version of a record shares its concept record.
            series: found
                .conceptrecid
                .map(|c| format!("{}/{c}", api.rsplit_once('/').map_or("", |(base, _)| base))),
        }))
    }
}

bindery_sdk::export_provider!(Zenodo);

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_sdk::testing::MockContext;
    use proptest::prelude::*;

    fn landing(doi: &str, to: &str) -> MockContext {
        MockContext::new().with_redirect(&format!("https://doi.org/{doi}"), to)
    }

    #[test]
    fn version_and_concept_dois() {
        let r = Zenodo::resolve(
            &landing(
                "10.5281/zenodo.3242074",
                "https://zenodo.org/records/3242074",
            ),
            "10.5281/zenodo.3242074",
        )
        .unwrap();
        assert_eq!(r.resolved_ref, "3242074");
        assert_eq!(r.repo_url, "10.5281/zenodo.3242074");
        assert_eq!(r.build_slug, "zenodo-3242074");
        assert_eq!(r.resolved_spec, "10.5281/zenodo.3242074");
        assert_eq!(r.ref_url, "https://doi.org/10.5281/zenodo.3242074");
        assert_eq!(r.lifetime, RefLifetime::Immutable);
        let r = Zenodo::resolve(
            &landing(
                "10.5281/zenodo.3242073",
                "https://zenodo.org/records/3242074",
            ),
            "10.5281/zenodo.3242073",
        )
        .unwrap();
        assert_eq!(r.resolved_spec, "10.5281/zenodo.3242074");
        assert_eq!(r.lifetime, RefLifetime::Moving);
    }

    #[test]
    fn records_api_follows_the_landing_page() {
        for (landing, api) in [
            (
                "https://zenodo.org/records/7",
                "https://zenodo.org/api/records/7",
            ),
            (
                "https://zenodo.org/record/7",
                "https://zenodo.org/api/records/7",
            ),
            (
                "https://sandbox.zenodo.org/doi/10.5072/zenodo.7",
                "https://sandbox.zenodo.org/api/records/7",
            ),
            (
                "http://127.0.0.1:9/zenodo/records/7",
                "http://127.0.0.1:9/zenodo/api/records/7",
            ),
        ] {
            assert_eq!(records_api(landing, "7").unwrap(), api);
        }
        assert!(records_api("https://zenodo.org/search?q=7", "7").is_err());
    }

    #[test]
    fn content_lists_the_record_files_and_unpacks_a_lone_zip() {
        let resolution = |ctx: &MockContext| Zenodo::resolve(ctx, "10.5281/zenodo.7").unwrap();
        let record = r#"{"conceptrecid": "6", "links": {"files": "https://zenodo.org/api/records/7/files"}}"#;
        let one = r#"{"entries": [{"key": "code.zip", "size": 10,
            "links": {"content": "https://zenodo.org/api/records/7/files/code.zip/content"}}]}"#;
        let ctx = landing("10.5281/zenodo.7", "https://zenodo.org/records/7")
            .with_json("https://zenodo.org/api/records/7", 200, record)
            .with_json("https://zenodo.org/api/records/7/files", 200, one);
        let r = resolution(&ctx);
        let ContentSource::Files(files) = Zenodo::content(&ctx, r).unwrap() else {
            panic!("not files");
        };
        assert_eq!(files.unpack, Unpack::Zip);
        assert_eq!(
            files.series.as_deref(),
            Some("https://zenodo.org/api/records/6")
        );
        assert_eq!(
            files.downloads,
            vec![Download {
                path: "code.zip".into(),
                url: "https://zenodo.org/api/records/7/files/code.zip/content".into(),
                size: Some(10),
            }]
        );
        let two = r#"{"entries": [
            {"key": "a.zip", "links": {"content": "https://zenodo.org/a"}},
            {"key": "environment.yml", "links": {"content": "https://zenodo.org/e"}}]}"#;
        let ctx = landing("10.5281/zenodo.7", "https://zenodo.org/records/7")
            .with_json("https://zenodo.org/api/records/7", 200, record)
            .with_json("https://zenodo.org/api/records/7/files", 200, two);
        let r = resolution(&ctx);
        let ContentSource::Files(files) = Zenodo::content(&ctx, r).unwrap() else {
            panic!("not files");
        };
        assert_eq!(files.unpack, Unpack::AsIs);
        assert_eq!(files.downloads.len(), 2);
        let gone = landing("10.5281/zenodo.7", "https://zenodo.org/records/7").with_json(
            "https://zenodo.org/api/records/7",
            404,
            "{}",
        );
        let r = resolution(&gone);
        assert!(matches!(
            Zenodo::content(&gone, r),
            Err(PluginError::NotFound(_))
        ));
    }

    #[test]
    fn unknown_dois_and_bad_specs() {
        let ctx = MockContext::new().with_json("https://doi.org/10.5281/zenodo.1", 404, "{}");
        assert!(matches!(
            Zenodo::resolve(&ctx, "10.5281/zenodo.1"),
            Err(PluginError::NotFound(_))
        ));
        let odd = landing("10.5281/zenodo.2", "https://evil.example/");
        assert!(matches!(
            Zenodo::resolve(&odd, "10.5281/zenodo.2"),
            Err(PluginError::Upstream(_))
        ));
        for spec in ["zenodo.1", "10.x/1", "10.5281/", "10.5281/a\nb"] {
            assert!(
                matches!(
                    Zenodo::resolve(&MockContext::new(), spec),
                    Err(PluginError::InvalidSpec(_))
                ),
                "{spec}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn requests_stay_on_the_resolver(spec in prop_oneof!["\\PC{0,80}", "10\\.[0-9]{1,5}/[a-z.%?#@/ -]{0,16}"]) {
            let ctx = MockContext::new();
            let _ = Zenodo::resolve(&ctx, &spec);
            for r in ctx.requests() {
                let doi = r.url.strip_prefix("https://doi.org/10.");
                prop_assert!(doi.is_some_and(|d| !d.contains(['?', '#', ' '])), "{}", r.url);
            }
        }
    }
}
