//! The `ckan` provider: datasets on any CKAN site, as BinderHub's `CKANProvider`.
//!
//! Spec: the URL-escaped dataset URL, `<site>/dataset/<id>`, optionally naming
//! one activity (`/history/<activity id>` or `?activity_id=<id>`). The version is
//! the dataset's `metadata_modified` from the CKAN action API: `package_show`,
//! or `activity_data_show` for one activity (which then never changes).
use bindery_sdk::http::Request;
use bindery_sdk::prelude::*;
use bindery_sdk::spec::{self, invalid, quote, unquote};
use bindery_sdk::upstream;
use serde::Deserialize;

pub struct Ckan;

const SERVICE: &str = "CKAN";

#[derive(Debug, PartialEq, Eq)]
struct Spec {
    url: String,
    /// Everything before `/dataset/`: where the API lives.
    site: String,
    dataset: String,
    activity: Option<String>,
}

fn parse(spec: &str) -> Result<Spec, PluginError> {
    spec::check(spec)?;
    let url = unquote(spec, "dataset URL")?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(invalid(format!(
            "{url:?} is not an http(s) URL of a CKAN dataset"
        )));
    }
    let (site, rest) = url.split_once("/dataset/").ok_or_else(|| {
        invalid(format!(
            "{url:?} is not a CKAN dataset URL: it has no /dataset/ part"
        ))
    })?;
    if site.contains(['?', '#', '@', ' ', '\\']) {
        return Err(invalid(format!(
            "{url:?} is not a plain http(s) URL of a CKAN site"
        )));
    }
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut segments = path.split('/');
    let dataset = segments.next().unwrap_or_default().to_string();
    let history = match (segments.next(), segments.next()) {
        (Some("history"), Some(id)) => Some(id.to_string()),
        _ => None,
    };
    let activity = history.or_else(|| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix("activity_id="))
            .map(|id| id.split('#').next().unwrap_or_default().to_string())
    });
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    };
    if !ok(&dataset) || activity.as_deref().is_some_and(|a| !ok(a)) {
        return Err(invalid(format!(
            "{url:?} does not name a CKAN dataset (and activity) by id"
        )));
    }
    Ok(Spec {
        site: site.to_string(),
        dataset,
        activity,
        url,
    })
}

#[derive(Deserialize)]
struct Answer {
    success: bool,
    result: Option<Package>,
}

#[derive(Deserialize)]
struct Package {
    metadata_modified: String,
    #[serde(default)]
    resources: Vec<Resource>,
}

#[derive(Deserialize)]
struct Resource {
    id: String,
    #[serde(default)]
    url: String,
    size: Option<u64>,
}

/// The dataset (or the activity's copy of it) from the action API.
fn package(ctx: &impl ProviderContext, s: &Spec) -> Result<Package, PluginError> {
    let api = format!("{}/api/3/action", s.site.trim_end_matches('/'));
    let url = match &s.activity {
        Some(a) => format!(
            "{api}/activity_data_show?id={}&object_type=package",
            quote(a, "")
        ),
        None => format!("{api}/package_show?id={}", quote(&s.dataset, "")),
    };
    let response = upstream::send(ctx, SERVICE, &Request::get(url))?;
    let answer: Answer = match response.status {
        200 => upstream::json(SERVICE, &response)?,
        // Upstream treats any HTTP error as "no such dataset".
        400..=499 => return Err(PluginError::NotFound(String::new())),
        _ => return Err(upstream::status_error(ctx, SERVICE, &response)),
    };
    answer
        .result
        .filter(|_| answer.success)
        .ok_or_else(|| PluginError::NotFound(String::new()))
}

impl Provider for Ckan {
    type Config = ();
    const HOSTS: &'static [&'static str] = &["*"];

    fn display_config() -> DisplayConfig {
        DisplayConfig {
            display_name: "CKAN dataset".into(),
            id: "ckan".into(),
            spec_validate_regex: "[^/]+".into(),
            detect_regex: None,
            repo_label: "CKAN dataset URL".into(),
            repo_placeholder: "example: https://demo.ckan.org/dataset/sample-dataset-1".into(),
            repo_url_encode: true,
            ref_enabled: false,
            ref_default: None,
        }
    }

    fn resolve(ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        let s = parse(spec)?;
        let package = package(ctx, &s)?;
        let modified = upstream::iso8601_epoch(&package.metadata_modified).ok_or_else(|| {
            upstream::failure(
                SERVICE,
                Some(200),
                format!(
                    "unreadable metadata_modified {:?}",
                    package.metadata_modified
                ),
            )
        })?;
        Ok(Resolution {
            build_slug: format!("ckan-{}", s.dataset),
            resolved_ref: format!("{}.v{modified}", s.dataset),
            resolved_spec: s.url.clone(),
            ref_url: s.url.clone(),
            repo_url: s.url,
            lifetime: if s.activity.is_some() {
                RefLifetime::Immutable
            } else {
                RefLifetime::Moving
            },
            notices: vec![],
        })
    }

    /// repo2docker's fetch: every resource with a URL, saved flat in the root
    /// under its URL's last segment (or its id); a later resource of the same
    /// name replaces an earlier one, as upstream's overwrite does.
    fn content(
        ctx: &impl ProviderContext,
        resolution: Resolution,
    ) -> Result<ContentSource, PluginError> {
        let s = parse(&quote(&resolution.repo_url, ""))?;
        let mut downloads: Vec<Download> = Vec::new();
        for r in package(ctx, &s)?.resources {
            if r.url.is_empty() {
                continue;
            }
            let path = r.url.split(['?', '#']).next().unwrap_or_default();
            let name = match path.rsplit('/').next() {
                Some(last) if !last.is_empty() => last.to_string(),
                _ => r.id,
            };
            downloads.retain(|d| d.path != name);
            downloads.push(Download {
                path: name,
                url: r.url,
                size: r.size,
            });
        }
        Ok(ContentSource::Files(FilesContent {
            downloads,
            unpack: Unpack::AsIs,
            auth: None,
            series: Some(format!("{}/dataset/{}", s.site, s.dataset)),
        }))
    }
}

bindery_sdk::export_provider!(Ckan);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_every_resource_flat_in_the_root() {
        let body = r#"{"success": true, "result": {"metadata_modified": "2024-04-01T12:10:31.000000", "resources": [
            {"id": "r1", "url": "https://demo.ckan.org/dataset/d/resource/r1/download/environment.yml", "size": 20},
            {"id": "r2", "url": ""},
            {"id": "r3", "url": "https://files.example.org/"},
            {"id": "r4", "url": "https://files.example.org/data.csv?x=1"},
            {"id": "r5", "url": "https://mirror.example.org/environment.yml"}]}}"#;
        let ctx = bindery_sdk::testing::MockContext::new().with_json(
            "https://demo.ckan.org/api/3/action/package_show?id=d",
            200,
            body,
        );
        let r = Ckan::resolve(&ctx, &quote("https://demo.ckan.org/dataset/d", "")).unwrap();
        let ContentSource::Files(files) = Ckan::content(&ctx, r).unwrap() else {
            panic!("not files");
        };
        let paths: Vec<&str> = files.downloads.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["r3", "data.csv", "environment.yml"]);
        assert_eq!(
            files.downloads[2].url,
            "https://mirror.example.org/environment.yml"
        );
        assert_eq!(files.unpack, Unpack::AsIs);
    }
    use bindery_sdk::testing::MockContext;
    use proptest::prelude::*;

    const BODY: &str = r#"{"success":true,"result":{"id":"abc","name":"sample-dataset-1","metadata_modified":"2021-01-12T15:28:15.123456"}}"#;

    #[test]
    fn datasets_and_activities() {
        let ctx = MockContext::new().with_json(
            "https://demo.ckan.org/api/3/action/package_show?id=sample-dataset-1",
            200,
            BODY,
        );
        let r = Ckan::resolve(
            &ctx,
            "https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fsample-dataset-1",
        )
        .unwrap();
        assert_eq!(r.repo_url, "https://demo.ckan.org/dataset/sample-dataset-1");
        assert_eq!(r.build_slug, "ckan-sample-dataset-1");
        assert_eq!(r.resolved_ref, "sample-dataset-1.v1610465295");
        assert_eq!(r.resolved_spec, r.repo_url);
        assert_eq!(r.lifetime, RefLifetime::Moving);

        for spec in [
            "https://demo.ckan.org/dataset/d/history/act-1",
            "https://demo.ckan.org/dataset/d?activity_id=act-1",
        ] {
            let ctx = MockContext::new().with_json("https://demo.ckan.org/api/3/action/activity_data_show?id=act-1&object_type=package", 200, BODY);
            let r = Ckan::resolve(&ctx, &quote(spec, "")).unwrap();
            assert_eq!(r.lifetime, RefLifetime::Immutable, "{spec}");
        }
        let gone = MockContext::new().with_json(
            "https://demo.ckan.org/api/3/action/package_show?id=gone",
            404,
            "{}",
        );
        assert!(matches!(
            Ckan::resolve(&gone, "https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fgone"),
            Err(PluginError::NotFound(_))
        ));
    }

    #[test]
    fn bad_specs() {
        for spec in [
            "demo.ckan.org%2Fdataset%2Fx",
            "https%3A%2F%2Fdemo.ckan.org%2Fgroup%2Fx",
            "file%3A%2F%2F%2Fdataset%2Fx",
            "https%3A%2F%2Fa%2Fdataset%2F..%2Fx",
            "https%3A%2F%2Fa%2Fdataset%2Fx%3Factivity_id%3D%26y",
        ] {
            assert!(
                matches!(
                    Ckan::resolve(&MockContext::new(), spec),
                    Err(PluginError::InvalidSpec(_))
                ),
                "{spec}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn requests_go_to_the_sites_action_api(spec in prop_oneof!["\\PC{0,80}", "https?%3A%2F%2F[a-z.]{1,10}%2Fdataset%2F[a-z0-9%?=&/_.-]{0,20}"]) {
            let ctx = MockContext::new();
            let parsed = parse(&spec);
            let _ = Ckan::resolve(&ctx, &spec);
            for r in ctx.requests() {
                let site = &parsed.as_ref().unwrap().site;
                prop_assert!(r.url.starts_with(&format!("{site}/api/3/action/")), "{}", r.url);
                prop_assert_eq!(r.url.matches('?').count(), 1);
            }
        }
    }
}
