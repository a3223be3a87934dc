//! Build tokens (upstream's): the `/v2` page gets an HS256 JWT for its
//! `/build` request, valid 300 s, bound to the provider/spec path and to the
//! origin it was issued to. A valid token skips the rate limit for a few
//! requests (the page's, and its event stream's reconnects); upstream's
//! skips it for any number, so one page load was a pass for a flood.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::WebConfig;

const LIFETIME_SECS: u64 = 300;
/// `/build` requests one token lets past the rate limit.
pub const USES: u32 = 5;

#[derive(Serialize, Deserialize)]
struct Claims {
    exp: u64,
    aud: String,
    origin: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Malformed, badly signed, expired, or for another path.
    Invalid,
    /// Issued to another origin.
    WrongOrigin,
    /// Valid, but it has let [`USES`] requests through already.
    Spent,
}

/// `web.build_token_secret` (hex), or a random key for this process only.
pub fn secret(config: &WebConfig) -> Result<Vec<u8>, String> {
    match config.build_token_secret.as_ref().map(|s| (s, s.read())) {
        Some((_, Some(hex_secret))) => hex::decode(hex_secret.trim())
            .map_err(|e| format!("web.build_token_secret is not hex: {e}")),
        Some((source, None)) => Err(format!("web.build_token_secret ({source:?}) has no value")),
        None => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes)
                .map_err(|e| format!("no random source for the build token key: {e}"))?;
            Ok(bytes.to_vec())
        }
    }
}

/// Issues and checks build tokens.
pub struct BuildTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    check_origin: bool,
    spent: Mutex<Spent>,
}

/// Uses of each token seen, by signature, dropped when the token expires.
/// Tokens are only issued by `/v2` pages, which the rate limit counts, so
/// this holds at most a rate limit's worth per address per token lifetime.
#[derive(Default)]
struct Spent {
    uses: HashMap<String, u32>,
    expiring: VecDeque<(u64, String)>,
}

impl BuildTokens {
    /// Tokens signed with `secret` ([`secret`]).
    pub fn new(secret: &[u8], config: &WebConfig) -> BuildTokens {
        BuildTokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            check_origin: config.build_token_check_origin,
            spent: Mutex::default(),
        }
    }

    /// A token for `audience` (`{provider}/{raw spec}`) used from `origin`.
    pub fn issue(&self, audience: &str, origin: &str) -> String {
        let claims = Claims {
            exp: now() + LIFETIME_SECS,
            aud: audience.into(),
            origin: origin.into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Checks a token presented for `audience` from `origin`, and counts the use.
    pub fn admit(&self, token: &str, audience: &str, origin: &str) -> Result<(), TokenError> {
        let exp = self.verify(token, audience, origin)?;
        let signature = token.rsplit('.').next().unwrap_or_default().to_string();
        let now = now();
        let mut guard = self.spent.lock().expect("build token uses");
        let spent = &mut *guard;
        while let Some((when, _)) = spent.expiring.front()
            && *when <= now
        {
            let (_, old) = spent.expiring.pop_front().expect("just seen");
            spent.uses.remove(&old);
        }
        let uses = spent.uses.entry(signature.clone()).or_insert_with(|| {
            spent.expiring.push_back((exp, signature));
            0
        });
        if *uses >= USES {
            return Err(TokenError::Spent);
        }
        *uses += 1;
        Ok(())
    }

    /// Checks a token's signature, audience, expiry and origin; its expiry.
    fn verify(&self, token: &str, audience: &str, origin: &str) -> Result<u64, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?;
        if self.check_origin && data.claims.origin != origin {
            return Err(TokenError::WrongOrigin);
        }
        Ok(data.claims.exp)
    }
}

fn now() -> u64 {
    crate::now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(check_origin: bool) -> BuildTokens {
        let config = WebConfig {
            build_token_check_origin: check_origin,
            ..Default::default()
        };
        BuildTokens::new(&secret(&config).unwrap(), &config)
    }

    #[test]
    fn bound_to_path_and_origin() {
        let t = tokens(true);
        let token = t.issue("gh/a/b/HEAD", "binder.example.org");
        assert!(
            t.verify(&token, "gh/a/b/HEAD", "binder.example.org")
                .is_ok()
        );
        assert_eq!(
            t.verify(&token, "gh/a/c/HEAD", "binder.example.org"),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            t.verify(&token, "gh/a/b/HEAD", "evil.example.org"),
            Err(TokenError::WrongOrigin)
        );
        assert_eq!(
            tokens(false).verify(&token, "gh/a/b/HEAD", "x"),
            Err(TokenError::Invalid),
            "another key"
        );
        let lax = tokens(false);
        assert!(
            lax.verify(&lax.issue("p/s", "a"), "p/s", "b").is_ok(),
            "origin unchecked when so configured"
        );
        assert_eq!(
            t.verify("not.a.jwt", "gh/a/b/HEAD", "binder.example.org"),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let t = tokens(true);
        let claims = Claims {
            exp: now() - 1,
            aud: "p/s".into(),
            origin: "o".into(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &t.encoding).unwrap();
        assert_eq!(t.verify(&token, "p/s", "o"), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_admits_a_few_requests_then_is_spent() {
        let t = tokens(true);
        let token = t.issue("p/s", "o");
        for _ in 0..USES {
            assert_eq!(t.admit(&token, "p/s", "o"), Ok(()));
        }
        assert_eq!(t.admit(&token, "p/s", "o"), Err(TokenError::Spent));
        assert_eq!(
            t.admit(&t.issue("p/t", "o"), "p/t", "o"),
            Ok(()),
            "another token"
        );
        assert_eq!(t.admit(&token, "p/x", "o"), Err(TokenError::Invalid));
    }
}
