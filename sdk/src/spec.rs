//! Checks and codecs for launch specs, shared by providers so every one refuses
//! hostile input the same way before it builds a URL from it.

use crate::types::PluginError;

/// Longer specs are refused before any parsing: no real spec comes close.
pub const MAX_SPEC_BYTES: usize = 4096;

/// An [`PluginError::InvalidSpec`] with this message.
pub fn invalid(message: impl Into<String>) -> PluginError {
    PluginError::InvalidSpec(message.into())
}

/// Refuses specs that are too long or contain control characters.
pub fn check(spec: &str) -> Result<(), PluginError> {
    if spec.len() > MAX_SPEC_BYTES {
        return Err(invalid(format!(
            "the spec is {} bytes long; at most {MAX_SPEC_BYTES} are accepted",
            spec.len()
        )));
    }
    no_control_chars(spec, "spec")
}

fn no_control_chars(s: &str, what: &str) -> Result<(), PluginError> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(invalid(format!(
            "the {what} contains the control character {c:?}"
        ))),
        None => Ok(()),
    }
}

/// Percent-decodes `s` (Python's `urllib.parse.unquote`), refusing invalid
/// UTF-8 and control characters in the result. `what` names the part in errors.
pub fn unquote(s: &str, what: &str) -> Result<String, PluginError> {
    let decoded = percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map_err(|_| invalid(format!("the {what} is not valid UTF-8 once unescaped")))?
        .into_owned();
    no_control_chars(&decoded, what)?;
    Ok(decoded)
}

/// Percent-encodes `s` as Python's `urllib.parse.quote(s, safe)` does: ASCII
/// letters, digits, `_.-~` and the characters in `safe` stay; every other byte
/// of the UTF-8 encoding becomes `%XX`.
pub fn quote(s: &str, safe: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric()
            || b"_.-~".contains(&b)
            || (b.is_ascii() && safe.as_bytes().contains(&b))
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `name` is a valid owner or repository name on GitHub-like forges
/// (GitHub, Gitea, Forgejo): letters, digits, `-`, `_` and `.`, at most 100
/// bytes, and not `.` or `..`.
pub fn is_forge_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A full, lower-case, 40-hex git commit id.
pub fn is_sha1(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Refuses what `git check-ref-format` refuses (plus a leading `-`, which a
/// command line would read as an option), so a ref can never carry `..`
/// path segments, spaces or URL syntax into an API call.
pub fn check_git_ref(r: &str) -> Result<(), PluginError> {
    let bad = |why: &str| Err(invalid(format!("{r:?} is not a valid git ref: {why}")));
    if r.is_empty() {
        return bad("it is empty");
    }
    if r.starts_with('-') {
        return bad("it starts with `-`");
    }
    if r.starts_with('/') || r.ends_with('/') || r.contains("//") {
        return bad("empty path component");
    }
    if r.contains("..") || r.contains("@{") || r == "@" {
        return bad("it contains `..` or `@{`");
    }
    if r.ends_with('.') || r.ends_with(".lock") {
        return bad("it ends with `.` or `.lock`");
    }
    if let Some(c) = r
        .chars()
        .find(|c| c.is_control() || " ~^:?*[\\".contains(*c))
    {
        return bad(&format!("it contains {c:?}"));
    }
    if r.split('/').any(|part| part.starts_with('.')) {
        return bad("a component starts with `.`");
    }
    Ok(())
}

/// Percent-encodes each `/`-separated part of a (checked) git ref for a URL path.
pub fn ref_path(r: &str) -> String {
    r.split('/')
        .map(|part| quote(part, ""))
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_python() {
        assert_eq!(quote("group/sub project", ""), "group%2Fsub%20project");
        assert_eq!(quote("a/b", "/"), "a/b");
        assert_eq!(quote("é~_.-", ""), "%C3%A9~_.-");
    }

    #[test]
    fn git_refs() {
        for ok in ["main", "HEAD", "feature/x-1", "v1.0", "release/2024.07"] {
            assert!(check_git_ref(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-x", "../x", "a/../b", "a..b", "a b", "a:b", "x?y", "/a", "a/", "a//b", "x.lock",
            ".hidden", "a/.b", "a\nb", "a@{1}", "a\\b",
        ] {
            assert!(
                matches!(check_git_ref(bad), Err(PluginError::InvalidSpec(_))),
                "{bad:?}"
            );
        }
        assert_eq!(ref_path("feature/a#b"), "feature/a%23b");
    }

    #[test]
    fn unquote_refuses_control_characters_and_bad_utf8() {
        assert_eq!(unquote("a%2Fb", "x").unwrap(), "a/b");
        assert!(unquote("a%0Ab", "x").is_err());
        assert!(unquote("%FF", "x").is_err());
        assert!(check(&"a".repeat(MAX_SPEC_BYTES + 1)).is_err());
        assert!(check("a\u{7f}").is_err());
    }
}
