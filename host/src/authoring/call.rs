//! `bindery plugin call`: one call into a component, loaded with the grants,
//! limits and capabilities the configuration gives it, as the host would;
//! the answer printed as JSON (`{"Ok": …}` or `{"Err": …}`), the shape of
//! the WIT types.

use std::path::Path;
use std::sync::Arc;

use bindery_runtime::bindings::{ImageDemand, PluginError, PoolBounds, Server};
use bindery_runtime::{CallError, DirRepo, kind_name};
use serde::{Deserialize, Serialize};

use crate::build::BuildRequest;
use crate::build::strategy;
use crate::config::Config;

/// What `plugin call` printed, and whether the plugin answered with an error.
pub struct Answer {
    /// The answer as JSON.
    pub json: String,
    /// The plugin answered `Err`.
    pub refused: bool,
}

/// The pool policy's arguments, as one JSON object.
#[derive(Deserialize)]
struct SizesArgs {
    bounds: PoolBounds,
    images: Vec<ImageDemand>,
}

/// Calls `function` of the plugin loaded from `file` as `as_name` with
/// `args`, as [`usage`] says for its kind.
pub async fn call(
    file: &Path,
    as_name: Option<String>,
    config: Config,
    function: &str,
    args: &[String],
) -> Result<Answer, String> {
    let (host, name, _) = super::load_one(file, as_name, config).await?;
    let p = host.get(&name).expect("the only configured plugin loaded");
    let kind = p.kind();
    let wrong = || {
        format!(
            "{name} is a {} plugin: {}",
            kind_name(kind),
            usage(kind_name(kind))
        )
    };
    let arg = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("`{function}` needs an argument: {}", usage(kind_name(kind))))
    };
    let failed = |e: CallError| e.to_string();
    use bindery_runtime::bindings::PluginKind::*;
    match (kind, function) {
        (_, "metadata") => Ok(answer(&Ok::<_, PluginError>(&p.metadata))),
        (Provider, "display") => Ok(answer(&Ok::<_, PluginError>(
            host.display(&name).await.map_err(failed)?,
        ))),
        (Provider, "resolve") => Ok(answer(&host.resolve(&name, arg(0)?).await.map_err(failed)?)),
        (Provider, "content") => match host.resolve(&name, arg(0)?).await.map_err(failed)? {
            Ok(resolution) => Ok(answer(
                &host.content(&name, &resolution).await.map_err(failed)?,
            )),
            refused => Ok(answer(&refused)),
        },
        (BuildStrategy, "plan") => {
            let dir = Path::new(arg(0)?);
            let request = BuildRequest {
                image: String::new(),
                build_name: String::new(),
                repo_url: dir.display().to_string(),
                resolved_ref: "HEAD".into(),
                provider: "local".into(),
                spec: dir.display().to_string(),
                build_slug: dir.display().to_string(),
                resolved_spec: dir.display().to_string(),
                ref_url: dir.display().to_string(),
                immutable: false,
                repo_config: Default::default(),
                credential: None,
            };
            let facts = strategy::repo_facts(dir, &request, &[])
                .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let plan = host
                .plan(&name, &facts, Arc::new(DirRepo::new(dir)))
                .await
                .map_err(failed)?;
            if let Ok(plan) = &plan
                && let Err(why) = strategy::check(plan)
            {
                eprintln!("the host would refuse this plan: {why}");
            }
            Ok(answer(&plan))
        }
        (CullPolicy, "decide") => {
            let servers: Vec<Server> = json_arg(arg(0)?, "servers")?;
            let now = crate::now_ms();
            Ok(answer(
                &host.decide(&name, now, &servers).await.map_err(failed)?,
            ))
        }
        (PoolPolicy, "sizes") => {
            let SizesArgs { bounds, images } = json_arg(arg(0)?, "{bounds, images}")?;
            let now = crate::now_ms();
            Ok(answer(
                &host
                    .pool_sizes(&name, now, bounds, &images)
                    .await
                    .map_err(failed)?,
            ))
        }
        _ => Err(wrong()),
    }
}

/// The functions of each kind and their arguments.
pub fn usage(kind: &str) -> &'static str {
    match kind {
        "provider" => "metadata | display | resolve <spec> | content <spec>",
        "build-strategy" => "metadata | plan <repository directory>",
        "cull-policy" => "metadata | decide <servers: JSON or @file>",
        "pool-policy" => "metadata | sizes <{\"bounds\": …, \"images\": […]}: JSON or @file>",
        _ => "metadata",
    }
}

/// A JSON argument, given inline or as `@file`.
fn json_arg<T: for<'de> Deserialize<'de>>(arg: &str, what: &str) -> Result<T, String> {
    let text = match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
        }
        None => arg.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| format!("the argument is not {what} as JSON: {e}"))
}

fn answer<T: Serialize>(result: &Result<T, PluginError>) -> Answer {
    Answer {
        json: serde_json::to_string_pretty(result).expect("WIT values serialize"),
        refused: result.is_err(),
    }
}
