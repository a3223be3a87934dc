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

/// `{scheme}://{host}/api/datasets/:persistentId?{query}` from the landing page.
fn api_url(landing: &str) -> Result<String, PluginError> {
    let (origin_and_path, query) = landing.split_once('?').unwrap_or((landing, ""));
    let query = query.split('#').next().unwrap_or_default();
    let (scheme, rest) = origin_and_path
        .split_once("://")
        .filter(|(s, _)| matches!(*s, "http" | "https"))
        .ok_or_else(|| {
            upstream::failure(
                SERVICE,
                None,
                format!("the DOI leads to {landing}, which is not a web page"),
            )
        })?;
    let host = rest.split('/').next().unwrap_or_default();
    Ok(format!(
        "{scheme}://{host}/api/datasets/:persistentId?{query}"
    ))
}

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
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "dataverse".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Provider,
            description: "Dataverse datasets by DOI, on any Dataverse installation".into(),
            requests: CapabilityRequests {
                hosts: vec!["*".into()],
                config_keys: vec![bindery_sdk::doi::resolver_config_key()],
                secrets: vec![],
            },
        }
    }

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
