//! What a verified token says about who sent a message: what a handler sees
//! ([`crate::Incoming::claims`]).

use std::borrow::Cow;

use super::error::TokenError;

/// The longest subject accepted, in bytes.
const MAX_SUBJECT_BYTES: usize = 256;
/// The longest scope accepted, in bytes.
const MAX_SCOPE_BYTES: usize = 128;
/// The most scopes a token may carry.
const MAX_SCOPES: usize = 64;

/// Who sent a message, as its verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `sub`: whom the token was issued to (a person, a service).
    pub subject: String,
    /// What the token allows: its `scope` claim (space-separated, as OAuth 2.0 and
    /// RFC 8693 write it) and its `scopes` array, in order, each once.
    pub scopes: Vec<String>,
    /// `iss`: who issued it (the fleet's `auth.issuer`).
    pub issuer: String,
    /// `exp`, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// The `kid` of the key that verified it.
    pub key_id: String,
}

impl Claims {
    /// Claims of `subject` with `scopes`: for a handler's unit tests
    /// ([`crate::Incoming::with_claims`]).
    pub fn new(subject: &str, scopes: &[&str]) -> Claims {
        Claims {
            subject: subject.to_owned(),
            scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
            issuer: String::new(),
            expires_at: u64::MAX,
            key_id: String::new(),
        }
    }

    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|held| held == scope)
    }
}

/// The claims of a token's payload as they arrive; `jsonwebtoken` checks `exp`, `nbf`,
/// `iss`, `aud` and their presence, so each is optional here.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenClaims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    exp: Option<serde_json::Number>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

impl TokenClaims {
    /// The claims a handler sees, from a token verified with key `key_id`.
    pub(crate) fn into_claims(self, key_id: &str) -> Result<Claims, TokenError> {
        let invalid = |why: &'static str| TokenError::InvalidClaims(Cow::Borrowed(why));
        let subject = self.sub.ok_or(TokenError::MissingClaim("sub"))?;
        if subject.is_empty() || subject.len() > MAX_SUBJECT_BYTES || has_control(&subject) {
            return Err(invalid(
                "its sub is empty, longer than 256 bytes or holds a control character",
            ));
        }
        let issuer = self.iss.ok_or(TokenError::MissingClaim("iss"))?;
        let expires_at = self
            .exp
            .and_then(|exp| {
                exp.as_u64()
                    .or_else(|| exp.as_f64().filter(|exp| *exp >= 0.0).map(seconds_of))
            })
            .ok_or(TokenError::MissingClaim("exp"))?;
        let mut scopes: Vec<String> = Vec::new();
        let spaced = self.scope.iter().flat_map(|scope| scope.split(' '));
        let listed = self.scopes.iter().flatten().map(String::as_str);
        for scope in spaced.chain(listed).filter(|scope| !scope.is_empty()) {
            if scope.len() > MAX_SCOPE_BYTES || has_control(scope) || scope.contains(' ') {
                return Err(invalid(
                    "a scope is longer than 128 bytes or holds a space or a control character",
                ));
            }
            if !scopes.iter().any(|held| held == scope) {
                scopes.push(scope.to_owned());
            }
            if scopes.len() > MAX_SCOPES {
                return Err(invalid("it has more than 64 scopes"));
            }
        }
        Ok(Claims {
            subject,
            scopes,
            issuer,
            expires_at,
            key_id: key_id.to_owned(),
        })
    }
}

/// Whole seconds of a non-negative `exp` written as a fraction.
fn seconds_of(exp: f64) -> u64 {
    // Saturating: a float past u64's range is "never" for any clock.
    exp.trunc() as u64
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: serde_json::Value) -> Result<Claims, TokenError> {
        serde_json::from_value::<TokenClaims>(json)
            .expect("claims")
            .into_claims("k1")
    }

    #[test]
    fn scopes_come_from_both_claims_in_order_and_once() {
        let read = claims(serde_json::json!({
            "sub": "alice", "iss": "warren-dev", "exp": 2_000_000_000u64,
            "scope": "tally:write  orders:place", "scopes": ["tally:read", "tally:write"],
        }))
        .expect("claims");
        assert_eq!(read.subject, "alice");
        assert_eq!(read.scopes, ["tally:write", "orders:place", "tally:read"]);
        assert!(read.has_scope("tally:read") && !read.has_scope("tally"));
        assert_eq!(
            (read.expires_at, read.key_id.as_str()),
            (2_000_000_000, "k1")
        );
        let fractional = claims(serde_json::json!({"sub": "a", "iss": "i", "exp": 1.5e9}))
            .expect("a fractional exp");
        assert_eq!(fractional.expires_at, 1_500_000_000);
        assert!(fractional.scopes.is_empty());
    }

    #[test]
    fn subjects_and_scopes_are_bounded() {
        let base = |extra: serde_json::Value| {
            let mut json = serde_json::json!({"sub": "alice", "iss": "i", "exp": 1});
            for (key, value) in extra.as_object().expect("an object") {
                json[key] = value.clone();
            }
            claims(json)
        };
        for bad in [
            serde_json::json!({"sub": ""}),
            serde_json::json!({"sub": "a\nb"}),
            serde_json::json!({"sub": "s".repeat(257)}),
            serde_json::json!({"scopes": ["a b"]}),
            serde_json::json!({"scope": "x".repeat(129)}),
            serde_json::json!({"scopes": (0..65).map(|n| format!("s{n}")).collect::<Vec<_>>()}),
        ] {
            assert!(
                matches!(base(bad.clone()), Err(TokenError::InvalidClaims(_))),
                "{bad}"
            );
        }
        assert_eq!(
            claims(serde_json::json!({"iss": "i", "exp": 1})),
            Err(TokenError::MissingClaim("sub"))
        );
    }
}
