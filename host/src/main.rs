//! The `bindery` command: the service and the plugin author's tools.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bindery::authoring::{self, cargo};
use bindery::config::{Config, PluginConfig, PluginSource};
use bindery::registry::naming;
use bindery_runtime::bindings::PluginKind;
use bindery_runtime::{PluginHost, kind_name};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "bindery",
    version,
    about = "A BinderHub with WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// TOML configuration file (environment variables BINDERY_* override it).
        #[arg(long, env = "BINDERY_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:8585.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Data directory (plugin compile cache, caches).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Tools for plugin authors and operators.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Print the image a build slug and resolved ref are built into (or,
    /// with --pod, the build pod's name), by upstream BinderHub's rule.
    ImageName {
        /// The provider's build slug, e.g. `binder-examples-octave`.
        build_slug: String,
        /// The resolved ref, e.g. a commit sha.
        resolved_ref: String,
        /// The registry's image prefix (default: the configuration's `registry.image_prefix`).
        #[arg(long)]
        prefix: Option<String>,
        /// Print the build pod's name instead.
        #[arg(long)]
        pod: bool,
        /// TOML configuration file.
        #[arg(long, env = "BINDERY_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Write a new plugin crate from the template.
    New {
        /// What the plugin decides.
        kind: Kind,
        /// Its name: lowercase letters, digits and `-`.
        name: String,
        /// Directory to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path to bindery-sdk (defaults to the checkout this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin crate for wasm32-wasip2 and print the component's path.
    Build {
        /// The crate's directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Load a component, print its metadata and requested capabilities, and
    /// say what the configuration grants it.
    Check {
        /// The component (.wasm).
        file: PathBuf,
        /// Check it with the grants of this plugin name in the configuration.
        #[arg(long = "as")]
        as_name: Option<String>,
        /// TOML configuration file.
        #[arg(long, env = "BINDERY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a component, push it to an OCI registry as a Wasm artifact
    /// (CNCF layout), and print the digest-pinned `oci://` reference a
    /// configuration's `oci = …` takes.
    Push {
        /// The component (.wasm).
        file: PathBuf,
        /// Where to push it, e.g. `registry.example.org/plugins/campus:1.0.0`.
        reference: String,
        /// TOML configuration file (for `plugin_runtime.oci`: plain-HTTP registries, login).
        #[arg(long, env = "BINDERY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Load every configured plugin and list them.
    List {
        /// TOML configuration file.
        #[arg(long, env = "BINDERY_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Provider,
    BuildStrategy,
    CullPolicy,
}

impl From<Kind> for PluginKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Provider => PluginKind::Provider,
            Kind::BuildStrategy => PluginKind::BuildStrategy,
            Kind::CullPolicy => PluginKind::CullPolicy,
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BINDERY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(run(cli.command));
    // Blocking work still running (a git fetch or listing waiting on a slow
    // server) would hold the exit for its own timeout, minutes.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Serve {
            config: file,
            listen,
            data_dir,
        } => {
            let mut config = Config::load(file.as_deref()).map_err(|e| e.to_string())?;
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(d) = data_dir {
                config.data_dir = d;
            }
            bindery::serve::serve(config, file)
                .await
                .map_err(|e| e.to_string())
        }
        Command::ImageName {
            build_slug,
            resolved_ref,
            prefix,
            pod,
            config,
        } => {
            if pod {
                println!("{}", naming::build_pod_name(&build_slug, &resolved_ref));
                return Ok(());
            }
            let prefix = match prefix {
                Some(p) => p,
                None => {
                    Config::load(config.as_deref())
                        .map_err(|e| e.to_string())?
                        .registry
                        .image_prefix
                }
            };
            println!(
                "{}",
                naming::image_name(&prefix, &build_slug, &resolved_ref)
            );
            Ok(())
        }
        Command::Plugin(PluginCommand::New {
            kind,
            name,
            dir,
            sdk,
        }) => {
            let sdk = sdk.or_else(authoring::template::default_sdk_path);
            let root = authoring::new_plugin(kind.into(), &name, &dir, sdk.as_deref())
                .map_err(|e| e.to_string())?;
            println!(
                "Created {} plugin `{name}` in {}",
                kind_name(kind.into()),
                root.display()
            );
            println!("  native tests:  cd {} && cargo test", root.display());
            println!("  component:     bindery plugin build {}", root.display());
            Ok(())
        }
        Command::Plugin(PluginCommand::Build { dir }) => {
            let path = build(&dir)?;
            println!("{}", path.display());
            Ok(())
        }
        Command::Plugin(PluginCommand::Check {
            file,
            as_name,
            config,
        }) => check(&file, as_name, config.as_deref()).await,
        Command::Plugin(PluginCommand::Push {
            file,
            reference,
            config,
        }) => {
            let config = Config::load(config.as_deref()).map_err(|e| e.to_string())?;
            let wasm =
                std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            // Only a component of one of Bindery's worlds is pushed (grants are the deployment's business).
            let runtime = bindery_runtime::engine::Runtime::new(
                &config.plugin_runtime,
                &config.data_dir,
                false,
            )?;
            let kind =
                bindery_runtime::loader::inspect(&runtime, &file.display().to_string(), &wasm)
                    .map_err(|e| e.to_string())?;
            eprintln!(
                "pushing a {} plugin ({} bytes)",
                kind_name(kind),
                wasm.len()
            );
            let oci = bindery_runtime::oci::OciPlugins::new(
                &config.plugin_runtime.oci,
                &config.data_dir.join("plugin-oci"),
            );
            println!("{}", oci.push(wasm, &reference).await?);
            Ok(())
        }
        Command::Plugin(PluginCommand::List { config }) => {
            let config = Config::load(config.as_deref()).map_err(|e| e.to_string())?;
            let host = PluginHost::start(&config).await.map_err(join_errors)?;
            let all: Vec<_> = host.list().iter().map(|p| p.summary()).collect();
            println!("{}", serde_json::to_string_pretty(&all).expect("json"));
            Ok(())
        }
    }
}

fn join_errors(errors: Vec<bindery_runtime::LoadError>) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Builds the crate in `dir` and returns the component's path.
fn build(dir: &Path) -> Result<PathBuf, String> {
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
    let paths = cargo::build_plugins(&manifest, &[name], &target, "release")?;
    Ok(paths.into_iter().next().expect("one package, one path"))
}

async fn check(file: &Path, as_name: Option<String>, config: Option<&Path>) -> Result<(), String> {
    let mut config = Config::load(config).map_err(|e| e.to_string())?;
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
    let p = host.get(&name).expect("the only configured plugin loaded");
    let m = &p.metadata;
    println!(
        "{} {} ({} plugin, loaded as `{name}` from {})",
        m.name,
        m.version,
        kind_name(m.kind),
        PluginSource::Path(file.into())
    );
    println!("  {}", m.description);
    println!("  sha256       {}", p.sha256);
    println!(
        "  load         {:.1} ms ({:?})",
        p.load_time.as_secs_f64() * 1e3,
        p.compiled
    );
    println!("  requests     hosts: {:?}", m.requests.hosts);
    println!("               secrets: {:?}", m.requests.secrets);
    for k in &m.requests.config_keys {
        let set = plugin.config.contains_key(&k.name);
        println!(
            "               config `{}`{} {}: {}",
            k.name,
            if k.required { " (required)" } else { "" },
            if set { "set" } else { "unset" },
            k.description
        );
    }
    println!(
        "  granted      hosts: {:?}, private networks: {:?}, secrets: {:?}",
        plugin.hosts,
        plugin.private_networks,
        plugin.secrets.keys().collect::<Vec<_>>()
    );
    println!(
        "  linked       {}",
        p.linked
            .iter()
            .map(|c| c.interface())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if p.ungranted.is_empty() {
        println!("  everything it requests is granted");
    } else {
        println!(
            "  NOT granted  {} (add them under [plugins.{name}])",
            p.ungranted.join(", ")
        );
    }
    Ok(())
}
