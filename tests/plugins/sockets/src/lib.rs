//! A provider that bypasses the host and opens a socket. Test fixture only:
//! Bindery must refuse to load it.
use bindery_sdk::prelude::*;

pub struct Sockets;

impl Provider for Sockets {
    type Config = ();

    fn metadata(_: bindery_sdk::Package) -> PluginMetadata {
        PluginMetadata {
            name: "sockets".into(),
            version: "0.1.0".into(),
            kind: PluginKind::Provider,
            description: "opens sockets".into(),
            requests: CapabilityRequests {
                hosts: vec![],
                config_keys: vec![],
                secrets: vec![],
            },
        }
    }

    fn display_config() -> DisplayConfig {
        DisplayConfig {
            display_name: "Sockets".into(),
            id: "sockets".into(),
            spec_validate_regex: ".+".into(),
            detect_regex: None,
            repo_label: "host".into(),
            repo_placeholder: "127.0.0.1:80".into(),
            repo_url_encode: false,
            ref_enabled: false,
            ref_default: Some("HEAD".into()),
        }
    }

    fn resolve(_ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        let stream =
            std::net::TcpStream::connect(spec).map_err(|e| PluginError::Internal(e.to_string()))?;
        Err(PluginError::Internal(format!(
            "connected to {:?}",
            stream.peer_addr()
        )))
    }
}

bindery_sdk::export_provider!(Sockets);
