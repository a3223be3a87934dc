//! A provider whose spec says how to misbehave. Test fixture only.
//!
//! - `ok/<anything>`: resolves to a fixed revision.
//! - `loop`: spins forever.
//! - `bomb`: allocates until memory runs out.
//! - `panic`: panics.
//! - `fetch/<url>`: fetches the URL and reports the body length as the ref.
//! - `fetch-authorized/<url>`: fetches the URL with the `token` secret as its
//!   `Authorization` header and reports the body as the ref.
//! - `secret/<name>`: reads a secret and reports its length.
//! - `log/<text>`: logs the text and writes it to stdout and stderr.
//! - `env/<name>`: reads an environment variable; `env` counts them.
//! - `ls-remote/<url>`: lists a git remote's refs and reports how many.
use bindery_sdk::http::Request;
use bindery_sdk::prelude::*;

pub struct Hostile;

fn resolution(resolved_ref: String) -> Resolution {
    Resolution {
        resolved_ref,
        repo_url: "https://example.org/hostile".into(),
        build_slug: "hostile".into(),
        resolved_spec: "hostile".into(),
        ref_url: "https://example.org/hostile".into(),
        lifetime: RefLifetime::Immutable,
        notices: vec![],
    }
}

impl Provider for Hostile {
    type Config = ();

    fn metadata(_: bindery_sdk::Package) -> PluginMetadata {
        PluginMetadata {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Provider,
            description: "misbehaves on request".into(),
            requests: CapabilityRequests {
                hosts: vec!["*".into()],
                config_keys: vec![],
                secrets: vec!["token".into()],
            },
        }
    }

    fn display_config() -> DisplayConfig {
        DisplayConfig {
            display_name: "Hostile".into(),
            id: "hostile".into(),
            spec_validate_regex: ".+".into(),
            detect_regex: None,
            repo_label: "anything".into(),
            repo_placeholder: "ok/x".into(),
            repo_url_encode: false,
            ref_enabled: false,
            ref_default: Some("HEAD".into()),
        }
    }

    fn resolve(ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError> {
        let (verb, arg) = spec.split_once('/').unwrap_or((spec, ""));
        match verb {
            "ok" => Ok(resolution(format!("ok-{arg}"))),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("hostile plugin panics on purpose"),
            "fetch" => {
                let response = ctx
                    .fetch(&Request::get(arg))
                    .map_err(|e| PluginError::Internal(format!("{e:?}")))?;
                Ok(resolution(format!(
                    "{}:{}",
                    response.status,
                    response.body.len()
                )))
            }
            "fetch-authorized" => {
                let token = ctx
                    .secret("token")
                    .map_err(|e| PluginError::Unauthorized(format!("{e:?}")))?;
                let response = ctx
                    .fetch(&Request::get(arg).header("authorization", format!("token {token}")))
                    .map_err(|e| PluginError::Internal(format!("{e:?}")))?;
                Ok(resolution(
                    String::from_utf8_lossy(&response.body).into_owned(),
                ))
            }
            "secret" => {
                let value = ctx
                    .secret(arg)
                    .map_err(|e| PluginError::Unauthorized(format!("{e:?}")))?;
                Ok(resolution(format!("secret-len-{}", value.len())))
            }
            "log" => {
                ctx.info(arg);
                println!("stdout: {arg}");
                eprintln!("stderr: {arg}");
                Ok(resolution("logged".into()))
            }
            "env" if arg.is_empty() => Ok(resolution(format!(
                "env-count-{}",
                std::env::vars_os().count()
            ))),
            "env" => match std::env::var(arg) {
                Ok(value) => Ok(resolution(format!("env-len-{}", value.len()))),
                Err(e) => Err(PluginError::Internal(format!("env: {e}"))),
            },
            "ls-remote" => {
                let refs = ctx
                    .ls_remote(arg)
                    .map_err(|e| PluginError::Internal(format!("{e:?}")))?;
                Ok(resolution(format!("refs-{}", refs.len())))
            }
            _ => Err(PluginError::InvalidSpec(format!("unknown verb {verb:?}"))),
        }
    }
}

bindery_sdk::export_provider!(Hostile);
