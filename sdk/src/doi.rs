//! Providers whose specs are DOIs (Zenodo, Figshare, Dataverse): the spec
//! check, the resolver round trip and the launch form they share.

use crate::config::PluginConfig;
use crate::context::ProviderContext;
use crate::http::Request;
use crate::provider::DisplayConfig;
use crate::spec::{self, invalid};
use crate::types::PluginError;
use crate::upstream;

/// A DOI: `10.<digits>/<suffix>`, as the providers' `validateRegex` accepts it.
pub fn is_doi(s: &str) -> bool {
    s.strip_prefix("10.")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(registrant, suffix)| {
            !registrant.is_empty()
                && registrant.bytes().all(|b| b.is_ascii_digit())
                && !suffix.is_empty()
        })
}

/// Checks that `spec` is a DOI, resolves it through the resolver in the
/// plugin's `doi_resolver` config key (default `https://doi.org`), following
/// redirects, and returns the landing page's URL. An unknown DOI is
/// [`PluginError::NotFound`]; `example` goes into the message for a malformed one.
pub fn landing_page(
    ctx: &impl ProviderContext,
    spec: &str,
    example: &str,
) -> Result<String, PluginError> {
    spec::check(spec)?;
    if !is_doi(spec) {
        return Err(invalid(format!("{spec:?} is not a DOI such as {example}")));
    }
    let resolver = Resolver::read(ctx)?.doi_resolver;
    let url = format!(
        "{}/{}",
        resolver.trim_end_matches('/'),
        spec::quote(spec, "/:;()")
    );
    let response = upstream::send(ctx, "DOI resolver", &Request::get(url))?;
    match response.status {
        200..=299 => Ok(response.final_url),
        404 => Err(PluginError::NotFound(format!(
            "The DOI {spec} is not registered."
        ))),
        _ => Err(upstream::status_error(ctx, "DOI resolver", &response)),
    }
}

crate::config! {
    /// The `doi_resolver` config key that [`landing_page`] reads: a DOI
    /// provider's `Config` (or part of it).
    pub struct Resolver {
        /// DOI resolver base URL; default `https://doi.org`
        doi_resolver: String = "https://doi.org".into(),
    }
}

/// The launch form of a DOI provider: upstream's `validateRegex`, no ref.
pub fn display_config(display_name: &str, id: &str, example: &str) -> DisplayConfig {
    DisplayConfig {
        display_name: display_name.into(),
        id: id.into(),
        spec_validate_regex: "10\\.\\d+\\/(.)+".into(),
        detect_regex: None,
        repo_label: display_name.into(),
        repo_placeholder: format!("example: {example}"),
        repo_url_encode: false,
        ref_enabled: false,
        ref_default: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dois() {
        assert!(is_doi("10.5281/zenodo.3242074"));
        assert!(!is_doi("10.x/y") && !is_doi("10.1/") && !is_doi("11.1/x"));
        assert_eq!(
            display_config("Zenodo DOI", "zenodo", "x").spec_validate_regex,
            r"10\.\d+\/(.)+"
        );
    }
}
