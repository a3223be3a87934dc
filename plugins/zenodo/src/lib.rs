//! The `zenodo` provider: Zenodo records by DOI, as BinderHub's `ZenodoProvider`.
//!
//! The DOI is resolved through the DOI resolver; the record id is the last path
//! segment of the landing page it redirects to. A concept DOI (all versions)
//! lands on the latest record, so its resolution moves; a version DOI lands on
//! its own record and is immutable.
use bindery_sdk::prelude::*;
use bindery_sdk::upstream;

pub struct Zenodo;

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
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "zenodo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Provider,
            description: "Zenodo records by DOI, resolved through doi.org".into(),
            requests: CapabilityRequests {
                hosts: vec!["doi.org".into(), "zenodo.org".into(), "*.zenodo.org".into()],
                config_keys: vec![bindery_sdk::doi::resolver_config_key()],
                secrets: vec![],
            },
        }
    }

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
