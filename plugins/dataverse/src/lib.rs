//! The `dataverse` provider: Dataverse datasets by DOI, as BinderHub's `DataverseProvider`.
//!
//! The DOI is resolved to the dataset's page on whichever Dataverse installation
//! holds it; that installation's `GET /api/datasets/:persistentId?<query>` gives
//! the dataset id and its latest version. Installations are everywhere, so the
//! plugin asks for every host (public addresses only, as always).
use bindery_sdk::http::Request;
use bindery_sdk::prelude::*;
use bindery_sdk::upstream;
use serde::Deserialize;

pub struct Dataverse;

const SERVICE: &str = "Dataverse";

#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Dataset,
}

#[derive(Deserialize)]
struct Dataset {
    id: u64,
    identifier: String,
    authority: String,
    #[serde(rename = "persistentUrl")]
    persistent_url: String,
    #[serde(rename = "latestVersion")]
    latest_version: LatestVersion,
}

#[derive(Deserialize)]
struct LatestVersion {
    #[serde(rename = "versionNumber")]
    major: Option<u64>,
    #[serde(rename = "versionMinorNumber")]
    minor: Option<u64>,
}

/// `{scheme}://{host}` of the landing page: the installation.
fn origin(landing: &str) -> Result<String, PluginError> {
    let (scheme, rest) = landing
        .split_once("://")
        .filter(|(s, _)| matches!(*s, "http" | "https"))
        .ok_or_else(|| {
            upstream::failure(
                SERVICE,
                None,
                format!("the DOI leads to {landing}, which is not a web page"),
            )
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    Ok(format!("{scheme}://{host}"))
}

/// `{scheme}://{host}/api/datasets/:persistentId?{query}` from the landing page.
fn api_url(landing: &str) -> Result<String, PluginError> {
    let query = landing.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or_default();
    Ok(format!(
        "{}/api/datasets/:persistentId?{query}",
        origin(landing)?
    ))
}

/// One version's file list (`GET /api/datasets/{id}/versions/{major}.{minor}`).
#[derive(Deserialize)]
struct VersionAnswer {
    data: VersionFiles,
}

#[derive(Deserialize)]
struct VersionFiles {
    files: Vec<FileEntry>,
}

#[derive(Deserialize)]
struct FileEntry {
    label: String,
    #[serde(rename = "directoryLabel")]
    directory_label: Option<String>,
    #[serde(rename = "dataFile")]
    data_file: DataFile,
}

#[derive(Deserialize)]
struct DataFile {
    id: u64,
    #[serde(rename = "originalFileName")]
    original_file_name: Option<String>,
    filesize: Option<u64>,
    #[serde(rename = "originalFileSize")]
    original_file_size: Option<u64>,
}

/// The API token that reads unpublished or restricted files, when granted.
const TOKEN_SECRET: &str = "api_token";

/// Python `escapism.escape(s, escape_char="-")`: ASCII letters and digits stay,
/// every other byte becomes `-XX`.
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("-{b:02X}")
            }
        })
        .collect()
}

impl Provider for Dataverse {
    type Config = bindery_sdk::doi::Resolver;
    const HOSTS: &'static [&'static str] = &["*"];
    const SECRETS: &'static [&'static str] = &[TOKEN_SECRET];

    fn display_config() -> DisplayConfig {
        bindery_sdk::doi::display_config("Dataverse DOI", "dataverse", "10.7910/DVN/TJCLKP")
    }

    fn resolve(ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        let landing = bindery_sdk::doi::landing_page(ctx, spec, "10.7910/DVN/TJCLKP")?;
        let response = upstream::send(ctx, SERVICE, &Request::get(api_url(&landing)?))?;
        let answer: Answer = match response.status {
            200 => upstream::json(SERVICE, &response)?,
            404 => {
                return Err(PluginError::NotFound(format!(
                    "{landing} is not a published Dataverse dataset."
                )));
            }
            _ => return Err(upstream::status_error(ctx, SERVICE, &response)),
        };
        if answer.status != "OK" {
            return Err(upstream::failure(
                SERVICE,
                Some(200),
                format!("the dataset API answered status {:?}", answer.status),
            ));
        }
        let d = answer.data;
        let version = format!(
            "v{}.{}",
            d.latest_version.major.unwrap_or(0),
            d.latest_version.minor.unwrap_or(0)
        );
        Ok(Resolution {
            repo_url: spec.into(),
            build_slug: format!("dataverse-{}", escape(&d.identifier).to_lowercase()),
            resolved_spec: format!("{}/{}", d.authority, d.identifier),
            ref_url: d.persistent_url,
            resolved_ref: format!("{}.{version}", d.id),
            lifetime: RefLifetime::Moving,
            notices: vec![],
        })
    }

    /// repo2docker's fetch, of the resolved version rather than whatever is
    /// latest at build time: every file under its `directoryLabel`, tabular
    /// files in their original format (`?format=original`), nothing unzipped.
    fn content(
        ctx: &impl ProviderContext,
        resolution: Resolution,
    ) -> Result<ContentSource, PluginError> {
        let landing =
            bindery_sdk::doi::landing_page(ctx, &resolution.repo_url, "10.7910/DVN/TJCLKP")?;
        let base = origin(&landing)?;
        let (id, version) = resolution.resolved_ref.split_once(".v").ok_or_else(|| {
            PluginError::Internal(format!(
                "not a Dataverse version: {}",
                resolution.resolved_ref
            ))
        })?;
        let url = format!("{base}/api/datasets/{id}/versions/{version}");
        let missing = format!(
            "{} has no version {version} any more.",
            resolution.resolved_spec
        );
        let answer: VersionAnswer = upstream::get_json(ctx, SERVICE, &url, &missing)?;
        let downloads = answer
            .data
            .files
            .into_iter()
            .map(|f| {
                let name = f.data_file.original_file_name.unwrap_or(f.label);
                Download {
                    path: match f.directory_label {
                        Some(dir) if !dir.is_empty() => format!("{}/{name}", dir.trim_matches('/')),
                        _ => name,
                    },
                    url: format!(
                        "{base}/api/access/datafile/{}?format=original",
                        f.data_file.id
                    ),
                    size: f.data_file.original_file_size.or(f.data_file.filesize),
                }
            })
            .collect();
        let auth = upstream::optional_secret(ctx, TOKEN_SECRET).map(|_| {
            Credential::Header(HeaderAuth {
                name: "X-Dataverse-key".into(),
                prefix: String::new(),
                secret: TOKEN_SECRET.into(),
            })
        });
        Ok(ContentSource::Files(FilesContent {
            downloads,
            unpack: Unpack::AsIs,
            auth,
            series: Some(format!("{base}/dataset/{id}")),
        }))
    }
}

bindery_sdk::export_provider!(Dataverse);

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_sdk::testing::MockContext;
    use proptest::prelude::*;

    const LANDING: &str =
        "https://dataverse.harvard.edu/citation?persistentId=doi:10.7910/DVN/TJCLKP";
    const DATASET: &str = r#"{"status":"OK","data":{"id":3035124,"identifier":"DVN/TJCLKP","authority":"10.7910","protocol":"doi",
        "persistentUrl":"https://doi.org/10.7910/DVN/TJCLKP","latestVersion":{"versionNumber":3,"versionMinorNumber":0}}}"#;

    #[test]
    fn resolves_like_upstream() {
        let ctx = MockContext::new()
            .with_redirect("https://doi.org/10.7910/DVN/TJCLKP", LANDING)
            .with_json("https://dataverse.harvard.edu/api/datasets/:persistentId?persistentId=doi:10.7910/DVN/TJCLKP", 200, DATASET);
        let r = Dataverse::resolve(&ctx, "10.7910/DVN/TJCLKP").unwrap();
        assert_eq!(r.resolved_ref, "3035124.v3.0");
        assert_eq!(r.build_slug, "dataverse-dvn-2ftjclkp");
        assert_eq!(r.resolved_spec, "10.7910/DVN/TJCLKP");
        assert_eq!(r.ref_url, "https://doi.org/10.7910/DVN/TJCLKP");
        assert_eq!(r.repo_url, "10.7910/DVN/TJCLKP");
    }

    #[test]
    fn content_keeps_folders_and_original_formats() {
        let files = r#"{"status":"OK","data":{"files":[
            {"label":"2023-01-03.tab","directoryLabel":"data/raw","dataFile":{"id":7,"originalFileName":"2023-01-03.tsv","filesize":9,"originalFileSize":12}},
            {"label":"environment.yml","dataFile":{"id":8,"filesize":30}}]}}"#;
        let ctx = MockContext::new()
            .with_redirect("https://doi.org/10.7910/DVN/TJCLKP", LANDING)
            .with_json("https://dataverse.harvard.edu/api/datasets/:persistentId?persistentId=doi:10.7910/DVN/TJCLKP", 200, DATASET)
            .with_json("https://dataverse.harvard.edu/api/datasets/3035124/versions/3.0", 200, files);
        let r = Dataverse::resolve(&ctx, "10.7910/DVN/TJCLKP").unwrap();
        let ContentSource::Files(content) = Dataverse::content(&ctx, r.clone()).unwrap() else {
            panic!("not files");
        };
        assert_eq!(content.unpack, Unpack::AsIs);
        assert_eq!(content.auth, None);
        assert_eq!(
            content.downloads,
            vec![
                Download {
                    path: "data/raw/2023-01-03.tsv".into(),
                    url: "https://dataverse.harvard.edu/api/access/datafile/7?format=original"
                        .into(),
                    size: Some(12),
                },
                Download {
                    path: "environment.yml".into(),
                    url: "https://dataverse.harvard.edu/api/access/datafile/8?format=original"
                        .into(),
                    size: Some(30),
                },
            ]
        );
        let ContentSource::Files(content) =
            Dataverse::content(&ctx.with_secret(TOKEN_SECRET, "t"), r).unwrap()
        else {
            panic!("not files");
        };
        assert!(
            matches!(content.auth, Some(Credential::Header(h)) if h.name == "X-Dataverse-key" && h.secret == TOKEN_SECRET)
        );
    }

    #[test]
    fn api_urls_keep_the_query_and_drop_the_path() {
        assert_eq!(
            api_url("https://x.org/dataset.xhtml?persistentId=doi:1/2#f").unwrap(),
            "https://x.org/api/datasets/:persistentId?persistentId=doi:1/2"
        );
        assert!(api_url("ftp://x.org/a").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn api_urls_keep_the_landing_host(landing in "https?://[a-z.]{1,20}(/[a-z?=:/.#]{0,30})?") {
            let host = landing.split("://").nth(1).unwrap().split('/').next().unwrap().to_string();
            let url = api_url(&landing).unwrap();
            prop_assert!(url.split("://").nth(1).unwrap().starts_with(&format!("{host}/api/datasets/:persistentId?")), "{url}");
        }
    }
}
