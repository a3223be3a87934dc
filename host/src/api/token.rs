//! Build tokens (upstream's): the `/v2` page gets an HS256 JWT for its
//! `/build` request, valid 300 s, bound to the provider/spec path and to the
//! origin it was issued to. A valid token skips the rate limit.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::WebConfig;

const LIFETIME_SECS: u64 = 300;

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
}

/// Issues and checks build tokens.
pub struct BuildTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    check_origin: bool,
}

impl BuildTokens {
    /// Keys from `web.build_token_secret` (hex), or random ones.
    pub fn new(config: &WebConfig) -> Result<BuildTokens, String> {
        let secret = match config.build_token_secret.as_ref().map(|s| (s, s.read())) {
            Some((_, Some(hex_secret))) => hex::decode(hex_secret.trim())
                .map_err(|e| format!("web.build_token_secret is not hex: {e}"))?,
            Some((source, None)) => {
                return Err(format!("web.build_token_secret ({source:?}) has no value"));
            }
            None => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes)
                    .map_err(|e| format!("no random source for the build token key: {e}"))?;
                bytes.to_vec()
            }
        };
        Ok(BuildTokens {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            check_origin: config.build_token_check_origin,
        })
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

    /// Checks a token presented for `audience` from `origin`.
    pub fn verify(&self, token: &str, audience: &str, origin: &str) -> Result<(), TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?;
        if self.check_origin && data.claims.origin != origin {
            return Err(TokenError::WrongOrigin);
        }
        Ok(())
    }
}

fn now() -> u64 {
    crate::now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(check_origin: bool) -> BuildTokens {
        BuildTokens::new(&WebConfig {
            build_token_check_origin: check_origin,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn bound_to_path_and_origin() {
        let t = tokens(true);
        let token = t.issue("gh/a/b/HEAD", "binder.example.org");
        assert_eq!(
            t.verify(&token, "gh/a/b/HEAD", "binder.example.org"),
            Ok(())
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
        assert_eq!(
            lax.verify(&lax.issue("p/s", "a"), "p/s", "b"),
            Ok(()),
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
}
