//! The operator documentation stays true: every configuration key, with its
//! embedded default, is in `docs/configuration.md`, and every metric in
//! `docs/metrics.md`.

use crate::support;

use serde_json::Value;

/// `a.b.c = default` for every key of `value`. Maps of free keys (a plugin's
/// `config`, `env`, …) and secret sources (`{ env = … }`) are one key each.
fn keys(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    let free = [".config", ".env", "node_selector", ".secrets"]
        .iter()
        .any(|s| prefix.ends_with(s));
    match value {
        Value::Object(map)
            if !map.is_empty()
                && !free
                && !(map.len() == 1 && (map.contains_key("env") || map.contains_key("file"))) =>
        {
            for (k, v) in map {
                keys(
                    &if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    },
                    v,
                    out,
                );
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Every configuration key and its default: the defaults, the tables
/// absent by default, and one plugin entry with the defaults of its keys.
fn every_key() -> Vec<(String, String)> {
    use bindery::config::{
        Config, KubernetesBuildConfig, KubernetesQuotaConfig, LeaderConfig, PluginConfig,
    };
    let mut config = serde_json::to_value(Config::load(None).unwrap()).unwrap();
    config["build"]["kubernetes"] = serde_json::to_value(KubernetesBuildConfig::default()).unwrap();
    config["quota"]["kubernetes"] = serde_json::to_value(KubernetesQuotaConfig::default()).unwrap();
    config["cull"]["leader"] = serde_json::to_value(LeaderConfig::default()).unwrap();
    config["plugins"] =
        serde_json::json!({ "<name>": PluginConfig { enabled: true, ..PluginConfig::default() } });
    let mut all = Vec::new();
    keys("", &config, &mut all);
    all
}

#[test]
fn every_configuration_key_and_default_is_documented() {
    let all = every_key();
    let doc = std::fs::read_to_string(support::workspace().join("docs/configuration.md")).unwrap();
    let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `")).collect();
    let mut missing = Vec::new();
    for (key, default) in &all {
        let row = rows.iter().find(|r| r.starts_with(&format!("| `{key}` |")));
        match row {
            None => missing.push(format!("{key} (default {default})")),
            Some(row) => {
                let documented = row.split(" | ").nth(1).unwrap_or_default();
                let shown = match (key.as_str(), default.as_str()) {
                    (_, "null") => "unset".to_string(),
                    (_, d) => format!("`{d}`"),
                };
                // Paths and addresses under the data directory differ per machine.
                if !key.ends_with("data_dir") && documented != shown {
                    missing.push(format!(
                        "{key}: documented default {documented}, but it is {shown}"
                    ));
                }
            }
        }
    }
    if std::env::var_os("PRINT_CONFIG_KEYS").is_some() {
        for (k, d) in &all {
            println!("{k}\t{d}");
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md is out of date:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_metric_is_documented() {
    let doc = std::fs::read_to_string(support::workspace().join("docs/metrics.md")).unwrap();
    let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `")).collect();
    // Every family is listed from the start, so a fresh registry names them all.
    let text = bindery::metrics::Metrics::default().encode();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    assert!(names.len() >= 20, "{names:?}");
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !rows.iter().any(|r| r.contains(&format!("`{n}`"))))
        .collect();
    assert!(missing.is_empty(), "docs/metrics.md lacks {missing:?}");
}

/// `bindery config check` before a rollout: the line, column and key of a
/// problem the parser sees, then what the service would refuse, exit 1;
/// a good file passes.
#[test]
fn config_check_names_the_line_of_a_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let file = dir.path().join("bindery.toml");
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bindery"))
            .args(["config", "check", "--config"])
            .arg(&file)
            .env_remove("BINDERY_CONFIG")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        (out.status.code(), said)
    };
    let (code, said) =
        check("listen = \"127.0.0.1:9000\"\n\n[plugins.gh]\nhosts = []\nlissten = 3\n");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("line 5, column 1") && said.contains("unknown field `lissten`"),
        "{said}"
    );
    let (code, said) = check("[plugin_runtime]\ncall_timeout_ms = \"soon\"\n");
    assert_eq!(code, Some(1));
    assert!(
        said.contains("line 2") && said.contains("expected u64"),
        "{said}"
    );
    // Well-formed, but refused at start.
    let (code, said) = check("[plugin_runtime]\ncall_timeout_ms = 0\n");
    assert_eq!(code, Some(1));
    assert!(said.contains("must be positive"), "{said}");
    let (code, said) = check("listen = \"127.0.0.1:9000\"\n");
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("ok (") && said.contains("127.0.0.1:9000"),
        "{said}"
    );

    let completions = std::process::Command::new(env!("CARGO_BIN_EXE_bindery"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let script = String::from_utf8_lossy(&completions.stdout);
    assert!(
        script.contains("_bindery()") && script.contains("plugin"),
        "{script}"
    );
}

/// `bindery config schema` describes every configuration key: each key the
/// defaults have (and one plugin entry's) is found in it, through its
/// `$ref`s, and unknown keys are refused as the loader refuses them.
#[test]
fn the_json_schema_has_every_configuration_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bindery"))
        .args(["config", "schema"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    let all = every_key();
    /// `Option<T>` is `anyOf: [T, null]`; a struct is a `$ref` into `$defs`.
    fn resolve<'a>(schema: &'a Value, mut node: &'a Value) -> &'a Value {
        loop {
            if let Some(r) = node["$ref"].as_str() {
                node = &schema["$defs"][r.trim_start_matches("#/$defs/")];
            } else if let Some(first) = node["anyOf"].as_array().and_then(|a| a.first()) {
                node = first;
            } else {
                return node;
            }
        }
    }
    for (key, _) in &all {
        let mut node = &schema;
        for part in key.split('.') {
            node = resolve(&schema, node);
            node = match &node["properties"][part] {
                Value::Null if part == "<name>" => &node["additionalProperties"],
                found => found,
            };
            assert!(!node.is_null(), "{key}: no `{part}` in the schema");
        }
    }
}
