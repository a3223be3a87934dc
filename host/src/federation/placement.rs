//! Where a repository's launches go: weighted rendezvous hashing, scored as
//! mybinder.org's redirector scores it (so a Bindery front places a key
//! where upstream's `rendezvous` balancer would), on a key that names the
//! repository and not its ref.

use blake2::Blake2b;
use blake2::digest::Digest;
use blake2::digest::consts::U8;

/// A member's score for `key`: `weight / -ln(h / (2^64 - 1))`, `h` the
/// [`hash`] of `"{key}-{member}"`. The highest wins.
pub fn score(key: &str, member: &str, weight: f64) -> f64 {
    let h = hash(&format!("{key}-{member}"));
    weight / -(h as f64 / u64::MAX as f64).ln()
}

/// BLAKE2b with an 8-byte digest, read big-endian: the redirector's hash.
pub fn hash(text: &str) -> u64 {
    u64::from_be_bytes(Blake2b::<U8>::digest(text).into())
}

/// `members` (name, weight) from the best placed for `key` to the worst:
/// the first healthy one takes the launch; when it leaves, the next does,
/// and only its keys move.
pub fn ranked<'a>(key: &str, members: impl IntoIterator<Item = (&'a str, f64)>) -> Vec<&'a str> {
    let mut scored: Vec<(&str, f64)> = members
        .into_iter()
        .map(|(name, weight)| (name, score(key, name, weight)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    scored.into_iter().map(|(name, _)| name).collect()
}

/// The repository a launch spec names, without its ref, lower-cased: the
/// same for every ref of one repository, so that its launches meet its
/// image. `url_encoded` providers (`git`, `gl`) escape the repository into
/// the first segment; others with refs put the ref after the repository's
/// two segments (`gh`, `gist`), or after the last `/`; without refs, the
/// spec is the repository (a DOI, a record).
pub fn key(provider: &str, spec: &str, url_encoded: bool, has_ref: bool) -> String {
    let spec = spec.trim_matches('/');
    let repo = if !has_ref {
        spec
    } else if url_encoded {
        spec.split('/').next().unwrap_or(spec)
    } else {
        match spec.match_indices('/').nth(1) {
            Some((second, _)) => &spec[..second],
            None => spec.rsplit_once('/').map_or(spec, |(repo, _)| repo),
        }
    };
    format!("{provider}/{repo}").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(weights: [f64; 2]) -> (usize, usize) {
        let a = (0..100)
            .filter(|i| {
                ranked(&format!("key-{i}"), [("a", weights[0]), ("b", weights[1])])[0] == "a"
            })
            .count();
        (a, 100 - a)
    }

    #[test]
    fn scores_as_mybinders_redirector_does() {
        // mybinder.org's images/federation-redirect/test_rendezvous.py.
        assert_eq!(share([1.0, 1.0]), (52, 48));
        assert_eq!(share([0.8, 0.2]), (75, 25));
        assert_eq!(share([0.3, 0.0]), (100, 0));
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_keys() {
        let all = [("a", 1.0), ("b", 1.0), ("c", 2.0)];
        for i in 0..500 {
            let key = format!("gh/org/repo-{i}");
            let order = ranked(&key, all);
            let without_b = ranked(&key, all.into_iter().filter(|m| m.0 != "b"));
            let expected: Vec<&str> = order.iter().copied().filter(|m| *m != "b").collect();
            assert_eq!(without_b, expected, "{key}");
        }
    }

    #[test]
    fn every_ref_of_a_repository_has_one_key() {
        assert_eq!(key("gh", "Org/Repo/main", false, true), "gh/org/repo");
        assert_eq!(key("gh", "org/repo/feature/x", false, true), "gh/org/repo");
        assert_eq!(key("gh", "org/repo/HEAD", false, true), "gh/org/repo");
        let git = "https%3A%2F%2Fgit.example.org%2Flab%2Fnotes.git";
        assert_eq!(
            key("git", &format!("{git}/v1/x"), true, true),
            format!("git/{git}").to_lowercase()
        );
        assert_eq!(
            key("gl", "group%2Fproject/main", true, true),
            "gl/group%2fproject"
        );
        assert_eq!(
            key("zenodo", "10.5281/zenodo.3242074", false, false),
            "zenodo/10.5281/zenodo.3242074"
        );
        assert_eq!(key("x", "repo/ref", false, true), "x/repo");
    }
}
