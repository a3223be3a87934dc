//! The `hydroshare` provider: HydroShare resources, as BinderHub's `HydroshareProvider`.
//!
//! Spec: anything holding a 32-hex resource id (an id or a resource URL). The
//! version is the resource's modification time from
//! `GET {base}/hsapi/resource/{id}/scimeta/elements`.
use bindery_sdk::http::Request;
use bindery_sdk::prelude::*;
use bindery_sdk::spec::{self, invalid, unquote};
use bindery_sdk::upstream;
use serde::Deserialize;

bindery_sdk::config! {
    pub struct Config {
        /// The HydroShare site; default https://www.hydroshare.org
        base_url: String = "https://www.hydroshare.org".into(),
    }
}

pub struct HydroShare;

const SERVICE: &str = "HydroShare";

/// The last run of 32 lower-case hex digits, as upstream's greedy `.*([0-9a-f]{32}).*` finds it.
fn resource_id(spec: &str) -> Option<&str> {
    let b = spec.as_bytes();
    (0..=b.len().checked_sub(32)?)
        .rev()
        .find(|&i| {
            b[i..i + 32]
                .iter()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        })
        .map(|i| &spec[i..i + 32])
}

#[derive(Deserialize)]
struct Elements {
    dates: Vec<Date>,
}

#[derive(Deserialize)]
struct Date {
    #[serde(rename = "type")]
    kind: String,
    start_date: String,
}

impl Provider for HydroShare {
    type Config = Config;
    // The bags are served from S3 once prepared.
    const HOSTS: &'static [&'static str] = &["www.hydroshare.org", "s3.hydroshare.org"];

    fn display_config() -> DisplayConfig {
        DisplayConfig {
            display_name: "Hydroshare resource".into(),
            id: "hydroshare".into(),
            spec_validate_regex: "[^/]+".into(),
            detect_regex: None,
            repo_label: "Hydroshare resource id or URL".into(),
            repo_placeholder: "example: 8f7c2f0341ef4180b0bd7a9a5b4a2f7b".into(),
            repo_url_encode: true,
            ref_enabled: false,
            ref_default: None,
        }
    }

    fn resolve(ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        spec::check(spec)?;
        let unescaped = unquote(spec, "spec")?;
        let id = resource_id(&unescaped)
            .ok_or_else(|| invalid("The specified Hydroshare resource id was not recognized."))?;
        let base = Config::read(ctx)?.base_url;
        let base = base.trim_end_matches('/');
        let response = upstream::send(
            ctx,
            SERVICE,
            &Request::get(format!("{base}/hsapi/resource/{id}/scimeta/elements")),
        )?;
        let elements: Elements = match response.status {
            200 => upstream::json(SERVICE, &response)?,
            404 => {
                return Err(PluginError::NotFound(format!(
                    "HydroShare has no public resource {id}."
                )));
            }
            _ => return Err(upstream::status_error(ctx, SERVICE, &response)),
        };
        let modified = elements
            .dates
            .iter()
            .find(|d| d.kind == "modified")
            .and_then(|d| upstream::iso8601_epoch(&d.start_date))
            .ok_or_else(|| {
                upstream::failure(
                    SERVICE,
                    Some(200),
                    format!("resource {id} has no readable modification date"),
                )
            })?;
        let record = format!("{id}.v{modified}");
        let repo_url = format!("{base}/resource/{id}");
        Ok(Resolution {
            build_slug: format!("hydroshare-{record}"),
            resolved_spec: repo_url.clone(),
            ref_url: repo_url.clone(),
            repo_url,
            resolved_ref: record,
            lifetime: RefLifetime::Moving,
            notices: vec![],
        })
    }

    /// repo2docker's fetch: the resource's BagIt zip, of which only
    /// `{id}/data/contents` is the content. HydroShare prepares a bag on
    /// demand and redirects to it on S3 once it is ready.
    fn content(
        ctx: &impl ProviderContext,
        resolution: Resolution,
    ) -> Result<ContentSource, PluginError> {
        let (id, _) = resolution.resolved_ref.split_once(".v").ok_or_else(|| {
            PluginError::Internal(format!(
                "not a HydroShare version: {}",
                resolution.resolved_ref
            ))
        })?;
        let base = Config::read(ctx)?.base_url;
        let bag = format!(
            "{}/django_s3/download/bags/{id}.zip",
            base.trim_end_matches('/')
        );
        let request = Request {
            follow_redirects: false,
            ..Request::get(bag.as_str())
        };
        let response = upstream::send(ctx, SERVICE, &request)?;
        let url = match response.status {
            301..=303 | 307 | 308 => match response.header("location") {
                Some(to) if to.starts_with("https://") || to.starts_with("http://") => {
                    to.to_string()
                }
                Some(to) if to.starts_with('/') => format!("{}{to}", origin(&bag)),
                _ => {
                    return Err(upstream::failure(
                        SERVICE,
                        Some(response.status),
                        "the bag redirect has no usable Location",
                    ));
                }
            },
            // Upstream polls for up to 120 s here; a build asks again instead.
            200 => {
                return Err(PluginError::RateLimited(RateLimit {
                    retry_after_secs: 10,
                    message: format!(
                        "HydroShare is preparing the download of resource {id}. Try again in a minute."
                    ),
                }));
            }
            404 => {
                return Err(PluginError::NotFound(format!(
                    "HydroShare has no bag for resource {id}."
                )));
            }
            _ => return Err(upstream::status_error(ctx, SERVICE, &response)),
        };
        Ok(ContentSource::Files(FilesContent {
            downloads: vec![Download {
                path: format!("{id}.zip"),
                url,
                size: None,
            }],
            unpack: Unpack::ZipFolder(format!("{id}/data/contents")),
            auth: None,
            series: Some(format!("{base}/resource/{id}")),
        }))
    }
}

/// `{scheme}://{host}` of an absolute URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..]
        .find('/')
        .map_or(url, |end| &url[..after_scheme + end])
}

bindery_sdk::export_provider!(HydroShare);

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_sdk::testing::MockContext;
    use proptest::prelude::*;

    const ID: &str = "b8f6eae9d89241cf8b5904033460af61";

    fn bag(status: u16, location: Option<&str>) -> MockContext {
        let response = bindery_sdk::http::Response {
            status,
            headers: location
                .map(|l| ("location".to_string(), l.to_string()))
                .into_iter()
                .collect(),
            body: vec![],
            final_url: String::new(),
            revalidated: false,
        };
        MockContext::new().with_response(
            &format!("https://www.hydroshare.org/django_s3/download/bags/{ID}.zip"),
            Ok(response),
        )
    }

    fn resolution() -> Resolution {
        Resolution {
            resolved_ref: format!("{ID}.v1568655557"),
            repo_url: format!("https://www.hydroshare.org/resource/{ID}"),
            build_slug: String::new(),
            resolved_spec: String::new(),
            ref_url: String::new(),
            lifetime: RefLifetime::Moving,
            notices: vec![],
        }
    }

    #[test]
    fn content_is_the_bags_data_contents_once_it_is_ready() {
        let s3 = format!("https://s3.hydroshare.org/bags/{ID}.zip?sig=1");
        let ctx = bag(302, Some(&s3));
        let ContentSource::Files(files) = HydroShare::content(&ctx, resolution()).unwrap() else {
            panic!("not files");
        };
        assert_eq!(
            files.unpack,
            Unpack::ZipFolder(format!("{ID}/data/contents"))
        );
        assert_eq!(files.downloads[0].url, s3);
        assert!(!ctx.requests()[0].follow_redirects);
        let relative = bag(302, Some("/bags/x.zip"));
        let ContentSource::Files(files) = HydroShare::content(&relative, resolution()).unwrap()
        else {
            panic!("not files");
        };
        assert_eq!(
            files.downloads[0].url,
            "https://www.hydroshare.org/bags/x.zip"
        );
        assert!(matches!(
            HydroShare::content(&bag(200, None), resolution()),
            Err(PluginError::RateLimited(r)) if r.message.contains("preparing")
        ));
        assert!(matches!(
            HydroShare::content(&bag(404, None), resolution()),
            Err(PluginError::NotFound(_))
        ));
    }

    #[test]
    fn ids_and_urls_resolve_to_the_modification_time() {
        let url = format!("https://www.hydroshare.org/hsapi/resource/{ID}/scimeta/elements");
        let body = r#"{"dates":[{"type":"created","start_date":"2019-01-01T00:00:00Z"},{"type":"modified","start_date":"2019-09-16T17:39:17.593906Z"}]}"#;
        for spec in [
            ID.to_string(),
            format!("https%3A%2F%2Fwww.hydroshare.org%2Fresource%2F{ID}%2F"),
        ] {
            let ctx = MockContext::new().with_json(&url, 200, body);
            let r = HydroShare::resolve(&ctx, &spec).unwrap();
            assert_eq!(r.resolved_ref, format!("{ID}.v1568655557"));
            assert_eq!(r.build_slug, format!("hydroshare-{ID}.v1568655557"));
            assert_eq!(
                r.repo_url,
                format!("https://www.hydroshare.org/resource/{ID}")
            );
            assert_eq!(r.resolved_spec, r.repo_url);
            assert_eq!(r.ref_url, r.repo_url);
        }
        assert!(matches!(
            HydroShare::resolve(&MockContext::new(), "not-an-id"),
            Err(PluginError::InvalidSpec(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn requests_name_a_resource_id(spec in prop_oneof!["\\PC{0,80}", "[0-9a-f%/.]{30,40}"]) {
            let ctx = MockContext::new();
            let _ = HydroShare::resolve(&ctx, &spec);
            for r in ctx.requests() {
                let id = r.url.strip_prefix("https://www.hydroshare.org/hsapi/resource/").and_then(|s| s.strip_suffix("/scimeta/elements"));
                prop_assert!(id.is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())), "{}", r.url);
            }
        }
    }
}
