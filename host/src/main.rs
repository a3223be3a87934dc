//! The `bindery` command: the service and the plugin author's tools.

use std::path::PathBuf;
use std::process::ExitCode;

use bindery::authoring;
use bindery::config::Config;
use bindery::registry::naming;
use bindery::simulate::trace::Generate;
use bindery_runtime::bindings::PluginKind;
use bindery_runtime::kind_name;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "bindery",
    version,
    about = "A BinderHub with WebAssembly plugins"
)]
struct Cli {
    /// How log lines are written to stderr: `pretty` (text, coloured on a
    /// terminal) or `json` (one object per line, for log collectors).
    #[arg(
        long,
        global = true,
        env = "BINDERY_LOG_FORMAT",
        default_value = "pretty"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    #[value(alias = "text")]
    Pretty,
    Json,
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
    /// Check a configuration file before a rollout: each problem with its
    /// line (a syntax error, an unknown key, a value of the wrong type), then
    /// what the service would refuse at start. Exits 1 on a problem.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Replay a trace of launches (upstream's launch events, JSON lines,
    /// plain or gzipped: mybinder.org's events archive, or `[event_log]`'s
    /// file) against a configuration's cull and pool policies on a virtual
    /// clock, and report launches, waits, server-hours and culls per hour.
    /// With --generate, write a synthetic day of launches instead.
    Simulate(SimulateArgs),
    /// Print a completion script for `shell` (bash, zsh, fish, elvish,
    /// powershell), e.g. `bindery completions bash > /etc/bash_completion.d/bindery`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
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

#[derive(clap::Args)]
struct SimulateArgs {
    /// The trace to replay.
    #[arg(long, required_unless_present = "generate")]
    trace: Option<PathBuf>,
    /// TOML configuration file: its plugins, `[cull]`, `[warm_pool]`,
    /// `[quota]`, `[build]` and the model in `[simulate]`.
    #[arg(long, env = "BINDERY_CONFIG")]
    config: Option<PathBuf>,
    /// Replay the trace against this configuration too, and print the two
    /// side by side.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Write the report as JSON here (with --compare, both, by file name).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the chart, SVG, here: servers over the day and waits per hour.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Write a synthetic day of launch events (to --out, gzipped when it
    /// ends in `.gz`, else to standard output) instead of replaying one.
    #[arg(long, conflicts_with_all = ["trace", "compare", "json", "svg"])]
    generate: bool,
    /// --generate: launches in the day (at most a million, what one replay takes).
    #[arg(long, default_value_t = Generate::default().launches, requires = "generate")]
    launches: u64,
    /// --generate: repositories, their popularity Zipf-distributed.
    #[arg(long, default_value_t = Generate::default().repos, requires = "generate")]
    repos: u64,
    /// --generate: Zipf's exponent (higher: more launches to the most popular).
    #[arg(long, default_value_t = Generate::default().exponent, requires = "generate")]
    exponent: f64,
    /// --generate: the day, YYYY-MM-DD (UTC).
    #[arg(long, default_value_t = Generate::default().day, requires = "generate")]
    day: chrono::NaiveDate,
    /// --generate: the busiest hour (UTC); the quietest, twelve hours off, has a third of its launches.
    #[arg(long, default_value_t = Generate::default().peak_hour, value_parser = clap::value_parser!(u32).range(0..24), requires = "generate")]
    peak_hour: u32,
    /// --generate: the seed of the draws.
    #[arg(long, default_value_t = Generate::default().seed, requires = "generate")]
    seed: u64,
    /// --generate: where to write the trace.
    #[arg(long, requires = "generate")]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the JSON Schema of `bindery.toml` (for editors: TOML language
    /// servers such as Taplo and Even Better TOML read it).
    Schema,
    /// Validate a configuration file, with the environment's overrides.
    Check {
        /// TOML configuration file.
        #[arg(long, env = "BINDERY_CONFIG")]
        config: PathBuf,
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
        /// Build against the bindery-sdk source at this path (developing the
        /// SDK itself) instead of the released bindery-sdk of this version.
        #[arg(long, alias = "sdk")]
        sdk_path: Option<PathBuf>,
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
    /// Run one function of a component, loaded with the grants, limits and
    /// capabilities the configuration gives it, and print its answer as
    /// JSON. Exits 1 when the plugin answers with an error.
    Call {
        /// The component (.wasm).
        file: PathBuf,
        /// provider: metadata, display, resolve <spec>, content <spec>;
        /// build-strategy: metadata, plan <dir>; cull-policy: metadata,
        /// decide <servers>; pool-policy: metadata, sizes <{bounds, images}>
        /// (JSON arguments inline or as @file).
        function: String,
        /// The function's arguments.
        args: Vec<String>,
        /// Call it with the grants of this plugin name in the configuration.
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
    PoolPolicy,
}

impl From<Kind> for PluginKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Provider => PluginKind::Provider,
            Kind::BuildStrategy => PluginKind::BuildStrategy,
            Kind::CullPolicy => PluginKind::CullPolicy,
            Kind::PoolPolicy => PluginKind::PoolPolicy,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BINDERY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours for a terminal, not for a log file or a collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        // One JSON object per line, the span's fields (a launch's provider,
        // spec, ref) beside the event's.
        LogFormat::Json => logs.json().with_current_span(true).init(),
        LogFormat::Pretty => logs.init(),
    }
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
        Command::Config(ConfigCommand::Check { config }) => {
            let c = Config::check(&config).map_err(|e| e.to_string())?;
            println!(
                "{}: ok ({} plugins enabled, listening on {})",
                config.display(),
                c.enabled_plugins().count(),
                c.listen
            );
            Ok(())
        }
        Command::Config(ConfigCommand::Schema) => {
            let schema = schemars::schema_for!(Config);
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("a schema serializes")
            );
            Ok(())
        }
        Command::Simulate(args) => simulate(args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "bindery",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Plugin(PluginCommand::New {
            kind,
            name,
            dir,
            sdk_path,
        }) => {
            let root = authoring::new_plugin(kind.into(), &name, &dir, sdk_path.as_deref())
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
            let path = authoring::build(&dir)?;
            println!("{}", path.display());
            Ok(())
        }
        Command::Plugin(PluginCommand::Check {
            file,
            as_name,
            config,
        }) => {
            let config = Config::load(config.as_deref()).map_err(|e| e.to_string())?;
            print!("{}", authoring::check(&file, as_name, config).await?);
            Ok(())
        }
        Command::Plugin(PluginCommand::Call {
            file,
            function,
            args,
            as_name,
            config,
        }) => {
            let config = Config::load(config.as_deref()).map_err(|e| e.to_string())?;
            let answer = authoring::call::call(&file, as_name, config, &function, &args).await?;
            println!("{}", answer.json);
            if answer.refused {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Plugin(PluginCommand::Push {
            file,
            reference,
            config,
        }) => {
            let config = Config::load(config.as_deref()).map_err(|e| e.to_string())?;
            println!("{}", authoring::push(&file, &reference, &config).await?);
            Ok(())
        }
        Command::Plugin(PluginCommand::List { config }) => {
            let config = Config::load(config.as_deref()).map_err(|e| e.to_string())?;
            println!("{}", authoring::list(&config).await?);
            Ok(())
        }
    }
}

async fn simulate(args: SimulateArgs) -> Result<(), String> {
    use bindery::simulate::{self, chart, report, trace};
    if args.generate {
        let options = Generate {
            launches: args.launches,
            repos: args.repos,
            exponent: args.exponent,
            day: args.day,
            peak_hour: args.peak_hour,
            seed: args.seed,
        };
        return match &args.out {
            Some(path) => simulate::write_file(path, |mut out| {
                if path.extension().is_some_and(|e| e == "gz") {
                    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
                    trace::generate(&options, &mut gz)?;
                    gz.finish()
                        .map(drop)
                        .map_err(|e| simulate::SimulateError::Output(e.to_string()))
                } else {
                    trace::generate(&options, &mut out)
                }
            }),
            None => trace::generate(&options, &mut std::io::stdout().lock()),
        }
        .map_err(|e| e.to_string());
    }
    let path = args
        .trace
        .expect("clap requires --trace without --generate");
    let launches = trace::read(&path).map_err(|e| e.to_string())?;
    let mut configs = vec![args.config];
    if let Some(other) = args.compare {
        configs.push(Some(other));
    }
    let mut runs = Vec::new();
    for file in &configs {
        let config = Config::load(file.as_deref()).map_err(|e| e.to_string())?;
        let report = simulate::run(&config, &launches)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!(
            "replayed {} launches against {} in {:.2} s",
            launches.len(),
            label(file.as_deref()),
            report.elapsed.as_secs_f64()
        );
        runs.push((label(file.as_deref()), report));
    }
    if let [(a, first), (b, second)] = &runs[..]
        && a == b
    {
        runs = vec![
            (format!("{a} (1)"), first.clone()),
            (format!("{b} (2)"), second.clone()),
        ];
    }
    let named: Vec<(&str, &simulate::Report)> = runs.iter().map(|(n, r)| (n.as_str(), r)).collect();
    match &named[..] {
        [(_, one)] => print!("{}", report::table(one)),
        [a, b] => {
            for (name, r) in [a, b] {
                println!("== {name}\n{}", report::table(r));
            }
            print!("{}", report::compare(*a, *b));
        }
        _ => unreachable!("one configuration, or two"),
    }
    if let Some(path) = &args.json {
        let value = match &named[..] {
            [(_, one)] => serde_json::to_value(one),
            all => serde_json::to_value(
                all.iter()
                    .map(|(n, r)| (n.to_string(), r))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            ),
        }
        .map_err(|e| e.to_string())?;
        let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())? + "\n";
        write_text(path, &text)?;
    }
    if let Some(path) = &args.svg {
        write_text(path, &chart::svg(&named))?;
    }
    Ok(())
}

fn write_text(path: &std::path::Path, text: &str) -> Result<(), String> {
    bindery::simulate::write_file(path, |out| {
        out.write_all(text.as_bytes())
            .map_err(|e| bindery::simulate::SimulateError::Output(e.to_string()))
    })
    .map_err(|e| e.to_string())
}

/// A configuration's name in reports: its file's, or `defaults`.
fn label(file: Option<&std::path::Path>) -> String {
    file.and_then(|f| f.file_name())
        .map_or("defaults".into(), |n| n.to_string_lossy().into_owned())
}
