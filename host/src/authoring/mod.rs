//! Tools for plugin authors and operators: `bindery plugin new`, `build`,
//! `check`, `push` and `list`. The binary only parses the command line and
//! prints what these return.

pub mod call;
pub mod cargo;

pub mod template;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bindery_runtime::{PluginHost, kind_name};

use crate::config::{Config, PluginConfig, PluginSource};

pub use template::{TemplateError, new_plugin};

/// `bindery plugin push`: checks that `file` is a component of one of
/// Bindery's worlds, pushes it to `reference` as an OCI artifact and returns
/// the reference pinned by digest.
pub async fn push(file: &Path, reference: &str, config: &Config) -> Result<String, String> {
    let wasm = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    // Only a component of one of Bindery's worlds is pushed (grants are the deployment's business).
    let runtime =
        bindery_runtime::engine::Runtime::new(&config.plugin_runtime, &config.data_dir, false)?;
    let kind = bindery_runtime::loader::inspect(&runtime, &file.display().to_string(), &wasm)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "pushing a {} plugin ({} bytes)",
        kind_name(kind),
        wasm.len()
    );
    let mut oci = bindery_runtime::oci::OciPlugins::new(
        &config.plugin_runtime.oci,
        &config.data_dir.join("plugin-oci"),
    );
    if !oci.has_login() {
        let registry = reference.split('/').next().unwrap_or_default();
        if let Some((user, password)) = docker_login(registry)? {
            eprintln!("logging in to {registry} as {user} (Docker config)");
            oci = oci.with_login(user, password);
        }
    }
    oci.push(wasm, reference).await
}

/// The login for `registry` that `docker push` would use: the Docker config
/// (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`), its `auths`
/// or credential helpers. `None` when it has none.
fn docker_login(registry: &str) -> Result<Option<(String, String)>, String> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")));
    if !dir.is_some_and(|d| d.join("config.json").is_file()) {
        return Ok(None);
    }
    // Docker keeps Docker Hub's login under its v1 index URL.
    let server = match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/",
        other => other,
    };
    match docker_credential::get_credential(server) {
        Ok(DockerCredential::UsernamePassword(user, password)) => Ok(Some((user, password))),
        Ok(DockerCredential::IdentityToken(_)) => Err(format!(
            "the Docker config holds an identity token for {registry}, which Bindery cannot use: set [plugin_runtime.oci] username and password"
        )),
        Err(E::NoCredentialConfigured | E::ConfigNotFound) => Ok(None),
        Err(e) => Err(format!(
            "cannot read the login for {registry} from the Docker config: {e}"
        )),
    }
}

/// `bindery plugin list`: the configured plugins, loaded, as JSON.
pub async fn list(config: &Config) -> Result<String, String> {
    let host = PluginHost::start(config).await.map_err(join_errors)?;
    let all: Vec<_> = host.list().iter().map(|p| p.summary()).collect();
    Ok(serde_json::to_string_pretty(&all).expect("json"))
}

fn join_errors(errors: Vec<bindery_runtime::LoadError>) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `bindery plugin build`: builds the crate in `dir` for `wasm32-wasip2`,
/// showing cargo's progress, and returns the component's path.
pub fn build(dir: &Path) -> Result<PathBuf, String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let package: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", manifest.display()))?;
    let name = package
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| format!("{} has no [package] name", manifest.display()))?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), PathBuf::from);
    let paths = cargo::build_plugins_showing_progress(&manifest, &[name], &target, "release")?;
    Ok(paths.into_iter().next().expect("one package, one path"))
}

/// Loads `file` alone, with the grants `config` gives the plugin `as_name`
/// (default: the file's stem): the host, the name it is loaded under and
/// its configuration.
async fn load_one(
    file: &Path,
    as_name: Option<String>,
    mut config: Config,
) -> Result<(Arc<PluginHost>, String, PluginConfig), String> {
    let name = as_name.unwrap_or_else(|| {
        file.file_stem().map_or_else(
            || "plugin".into(),
            |s| s.to_string_lossy().replace('_', "-"),
        )
    });
    let mut plugin: PluginConfig = config.plugins.get(&name).cloned().unwrap_or_default();
    plugin.path = Some(file.to_path_buf());
    plugin.bundled = None;
    plugin.enabled = true;
    config.plugins = [(name.clone(), plugin.clone())].into();
    let host = PluginHost::start(&config).await.map_err(join_errors)?;
    Ok((host, name, plugin))
}

/// `bindery plugin check`: loads `file` with the grants `config` gives the
/// plugin `as_name` (default: the file's stem) and reports its metadata,
/// requests, grants and linked capabilities.
pub async fn check(file: &Path, as_name: Option<String>, config: Config) -> Result<String, String> {
    let (host, name, plugin) = load_one(file, as_name, config).await?;
    let p = host.get(&name).expect("the only configured plugin loaded");
    let m = &p.metadata;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let report = |out: &mut String| -> std::fmt::Result {
        writeln!(
            out,
            "{} {} ({} plugin, loaded as `{name}` from {})",
            m.name,
            m.version,
            kind_name(m.kind),
            PluginSource::Path(file.into())
        )?;
        writeln!(out, "  {}", m.description)?;
        writeln!(out, "  sha256       {}", p.sha256)?;
        writeln!(
            out,
            "  load         {:.1} ms ({:?})",
            p.load_time.as_secs_f64() * 1e3,
            p.compiled
        )?;
        writeln!(out, "  requests     hosts: {:?}", m.requests.hosts)?;
        writeln!(out, "               secrets: {:?}", m.requests.secrets)?;
        for k in &m.requests.config_keys {
            let set = plugin.config.contains_key(&k.name);
            writeln!(
                out,
                "               config `{}`{} {}: {}",
                k.name,
                if k.required { " (required)" } else { "" },
                if set { "set" } else { "unset" },
                k.description
            )?;
        }
        writeln!(
            out,
            "  granted      hosts: {:?}, private networks: {:?}, secrets: {:?}",
            plugin.hosts,
            plugin.private_networks,
            plugin.secrets.keys().collect::<Vec<_>>()
        )?;
        writeln!(
            out,
            "  linked       {}",
            p.linked
                .iter()
                .map(|c| c.interface())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        if p.ungranted.is_empty() {
            writeln!(out, "  everything it requests is granted")?;
        } else {
            writeln!(
                out,
                "  NOT granted  {} (add them under [plugins.{name}])",
                p.ungranted.join(", ")
            )?;
        }
        Ok(())
    };
    report(&mut out).expect("writing to a String");
    Ok(out)
}
