//! `bindery plugin new`: a plugin crate that builds for wasm32-wasip2 and
//! whose native tests pass as generated.

use std::path::{Path, PathBuf};

use bindery_runtime::bindings::PluginKind;

const CARGO_TOML: &str = include_str!("../../../sdk/template/Cargo.toml.tmpl");
const PROVIDER: &str = include_str!("../../../sdk/template/provider.rs.tmpl");
const BUILD_STRATEGY: &str = include_str!("../../../sdk/template/build-strategy.rs.tmpl");
const CULL_POLICY: &str = include_str!("../../../sdk/template/cull-policy.rs.tmpl");
const POOL_POLICY: &str = include_str!("../../../sdk/template/pool-policy.rs.tmpl");

/// Why a plugin crate could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The name is not usable as a plugin and crate name.
    #[error(
        "plugin names are lowercase letters, digits and `-`, starting with a letter; got {0:?}"
    )]
    BadName(String),
    /// Refusing to overwrite.
    #[error("{0} already exists; choose another name or directory")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn camel_case(name: &str) -> String {
    name.split('-')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Writes a new plugin crate for `kind` called `name` into `dir/name`,
/// depending on the released bindery-sdk of this version, or on the SDK
/// source at `sdk` (developing the SDK itself).
pub fn new_plugin(
    kind: PluginKind,
    name: &str,
    dir: &Path,
    sdk: Option<&Path>,
) -> Result<PathBuf, TemplateError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 64;
    if !valid {
        return Err(TemplateError::BadName(name.into()));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(TemplateError::Exists(root));
    }
    let sdk_dep = match sdk {
        Some(path) => format!(
            "bindery-sdk = {{ path = {:?} }}",
            path.display().to_string()
        ),
        None => format!("bindery-sdk = \"{}\"", env!("CARGO_PKG_VERSION")),
    };
    let (code, description) = match kind {
        PluginKind::Provider => (PROVIDER, "Repositories on our git server"),
        PluginKind::BuildStrategy => (BUILD_STRATEGY, "repo2docker for everything"),
        PluginKind::CullPolicy => (CULL_POLICY, "stops idle servers"),
        PluginKind::PoolPolicy => (POOL_POLICY, "ready servers for the images launched often"),
    };
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{crate}}", &format!("bindery-plugin-{name}"))
            .replace("{{type}}", &camel_case(name))
            .replace("{{sdk_dep}}", &sdk_dep)
            .replace("{{description}}", description)
    };
    let write = |rel: &str, contents: String| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("files sit in a directory"))
            .and_then(|()| std::fs::write(&path, contents))
            .map_err(|source| TemplateError::Io { path, source })
    };
    write("Cargo.toml", fill(CARGO_TOML))?;
    write("src/lib.rs", fill(code))?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_nothing_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            new_plugin(PluginKind::Provider, "Bad Name", dir.path(), None),
            Err(TemplateError::BadName(_))
        ));
        assert!(matches!(
            new_plugin(PluginKind::Provider, "../up", dir.path(), None),
            Err(TemplateError::BadName(_))
        ));
        let root = new_plugin(PluginKind::CullPolicy, "late-night", dir.path(), None).unwrap();
        let code = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        assert!(code.contains("pub struct LateNight;"));
        assert!(!code.contains("{{"));
        assert!(matches!(
            new_plugin(PluginKind::Provider, "late-night", dir.path(), None),
            Err(TemplateError::Exists(_))
        ));
    }
}
