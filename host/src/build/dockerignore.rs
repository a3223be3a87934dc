//! `.dockerignore` as Docker applies it to a build context: each line a Go
//! `filepath.Match` pattern plus `**`, cleaned and rooted at the context; a
//! pattern excludes a path it matches or any path under one it matches; `!`
//! re-includes; the last matching line decides.

use globset::{Glob, GlobBuilder, GlobMatcher};

/// The rules of one `.dockerignore` (or `.containerignore`).
pub struct IgnoreRules {
    rules: Vec<(GlobMatcher, bool)>,
}

impl IgnoreRules {
    /// Parses the file's text; a line that is not a valid pattern is an error naming it.
    pub fn parse(text: &str) -> Result<IgnoreRules, String> {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (pattern, include) = match line.strip_prefix('!') {
                Some(rest) => (rest.trim(), true),
                None => (line, false),
            };
            let cleaned = clean(pattern);
            if cleaned.is_empty() {
                return Err(format!("{line:?} is not a pattern"));
            }
            let glob: Glob = GlobBuilder::new(&cleaned)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("{line:?}: {e}"))?;
            rules.push((glob.compile_matcher(), include));
        }
        Ok(IgnoreRules { rules })
    }

    /// Whether `path` (relative, `/`-separated) is left out of the context.
    pub fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for (glob, include) in &self.rules {
            // A pattern matching a parent directory covers everything under it.
            let hit = glob.is_match(path)
                || path
                    .match_indices('/')
                    .any(|(i, _)| glob.is_match(&path[..i]));
            if hit {
                excluded = !include;
            }
        }
        excluded
    }
}

/// Go's `filepath.Clean` of a pattern, with a leading `/` dropped.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_rules() {
        let rules = IgnoreRules::parse(
            "# comment\n\n/data\n*.log\n!keep.log\nbuild/**/tmp\n./docs/*.md\nsecret?\n",
        )
        .unwrap();
        for (path, excluded) in [
            ("data", true),
            ("data/big.csv", true),
            ("sub/data", false),
            ("x.log", true),
            ("sub/x.log", false),
            ("keep.log", false),
            ("build/tmp", true),
            ("build/a/b/tmp/f", true),
            ("docs/a.md", true),
            ("docs/sub/a.md", false),
            ("secret1", true),
            ("secret12", false),
            ("notebook.ipynb", false),
        ] {
            assert_eq!(rules.excludes(path), excluded, "{path}");
        }
        let all_but = IgnoreRules::parse("*\n!*.ipynb\n").unwrap();
        assert!(all_but.excludes("README.md") && !all_but.excludes("a.ipynb"));
        assert!(IgnoreRules::parse("!\n").is_err());
        assert!(IgnoreRules::parse("[a-\n").is_err());
    }
}
