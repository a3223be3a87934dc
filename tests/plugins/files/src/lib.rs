//! A provider that reads files itself, e.g. the host's credentials. Test
//! fixture only: Bindery must refuse to load it.
use bindery_sdk::prelude::*;

pub struct Files;

impl Provider for Files {
    type Config = ();

    fn metadata(_: bindery_sdk::Package) -> PluginMetadata {
        PluginMetadata {
            name: "files".into(),
            version: "0.1.0".into(),
            kind: PluginKind::Provider,
            description: "reads files".into(),
            requests: CapabilityRequests {
                hosts: vec![],
                config_keys: vec![],
                secrets: vec![],
            },
        }
    }

    fn display_config() -> DisplayConfig {
        DisplayConfig {
            display_name: "Files".into(),
            id: "files".into(),
            spec_validate_regex: ".+".into(),
            detect_regex: None,
            repo_label: "path".into(),
            repo_placeholder: "/etc/passwd".into(),
            repo_url_encode: false,
            ref_enabled: false,
            ref_default: Some("HEAD".into()),
        }
    }

    fn resolve(_ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        let bytes = std::fs::read(spec).map_err(|e| PluginError::Internal(e.to_string()))?;
        Err(PluginError::Internal(format!("read {} bytes", bytes.len())))
    }
}

bindery_sdk::export_provider!(Files);
