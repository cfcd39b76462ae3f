//! Why a token is refused: one variant per case, each with a stable reason (the dead
//! letter's `x-warren-reason`); the originator's fault code is always `unauthorized`.
//!
//! The texts never quote the token. What they quote of it (a `kid`, an `alg`) is
//! attacker's text, so it is cut short and quoted with `{:?}`, which escapes control
//! characters.

use std::borrow::Cow;

/// The most of a token's own text (a `kid`, an `alg`) an error quotes.
const MAX_QUOTED: usize = 64;

/// Why a message's token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The message has no `x-warren-token` header.
    #[error(
        "no token: the message has no x-warren-token header, and this worker requires one \
         (auth.required)"
    )]
    Missing,
    /// The header is there, but not a string.
    #[error("the x-warren-token header is not a string")]
    NotText,
    /// Not a compact JWT: why.
    #[error("the token is not a compact JWT: {0}")]
    Malformed(&'static str),
    /// `alg: none`.
    #[error("the token is unsigned (alg none), which is never accepted")]
    Unsigned,
    /// An HMAC algorithm (`HS256`, …): a shared secret, never accepted (a verifier that
    /// took one could be fooled by a token signed with its public key as the secret).
    #[error(
        "the token is signed with {0:?}, a shared-secret (HMAC) algorithm, which is never \
         accepted: only the key set's public keys verify tokens"
    )]
    SharedSecret(String),
    /// The header names no key.
    #[error("the token names no key (its header has no kid)")]
    NoKeyId,
    /// The key it names is not in the key set: never there, or retired or revoked.
    #[error("the token's key {0:?} is not in the key set (unknown, retired or revoked)")]
    UnknownKey(String),
    /// The token's `alg` is not the one its key is for.
    #[error("the token says alg {token:?}, but its key {kid:?} is for {key}")]
    WrongAlgorithm {
        /// The key's id.
        kid: String,
        /// The token's `alg`.
        token: String,
        /// The key's algorithm.
        key: &'static str,
    },
    /// The signature does not verify with the key the token names.
    #[error("the token's signature does not verify with its key {0:?}")]
    BadSignature(String),
    /// `exp` is past, by more than the leeway.
    #[error("the token has expired (its exp is past, by more than the leeway of {0} s)")]
    Expired(u64),
    /// `nbf` is ahead, by more than the leeway.
    #[error("the token is not valid yet (its nbf is ahead, by more than the leeway of {0} s)")]
    NotYetValid(u64),
    /// `iss` is not `auth.issuer`.
    #[error("the token's issuer (iss) is not the one this fleet trusts (auth.issuer)")]
    WrongIssuer,
    /// `aud` does not name `auth.audience`.
    #[error("the token's audience (aud) does not name this fleet (auth.audience)")]
    WrongAudience,
    /// A claim every token must have is missing: `sub`, `iss`, `aud` or `exp`.
    #[error("the token has no {0} claim, which every token must have")]
    MissingClaim(&'static str),
    /// A claim cannot be read (`scope` not a string, a subject too long, …).
    #[error("the token's claims cannot be read: {0}")]
    InvalidClaims(Cow<'static, str>),
    /// The message's `replyto` is not a reply queue of the token's subject
    /// (`warren.reply.<subject>.…`): its outcomes would go to someone else's queue. No
    /// outcome is sent for it at all (docs/security.md, "Guarded replies").
    #[error(
        "the replyto is not a reply queue of the token's subject {0:?} \
         (warren.reply.<subject>.… or warren.reply.resend.<subject>.…): outcomes go only to \
         the token's owner, so nothing is sent"
    )]
    ForeignReply(String),
    /// The token lacks the scope the message's type requires (`[auth.scopes]`).
    #[error("the token lacks the scope {scope:?} that {message_type} requires")]
    MissingScope {
        /// The scope required.
        scope: String,
        /// The message's type.
        message_type: String,
    },
}

impl TokenError {
    /// A stable snake_case reason: the dead letter's `x-warren-reason`, and a metric's
    /// label.
    pub fn reason_code(&self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::NotText | TokenError::Malformed(_) => "token_malformed",
            TokenError::Unsigned => "token_unsigned",
            TokenError::SharedSecret(_) => "token_shared_secret",
            TokenError::NoKeyId | TokenError::UnknownKey(_) => "token_unknown_key",
            TokenError::WrongAlgorithm { .. } => "token_wrong_algorithm",
            TokenError::BadSignature(_) => "token_bad_signature",
            TokenError::Expired(_) => "token_expired",
            TokenError::NotYetValid(_) => "token_not_yet_valid",
            TokenError::WrongIssuer => "token_wrong_issuer",
            TokenError::WrongAudience => "token_wrong_audience",
            TokenError::MissingClaim(_) | TokenError::InvalidClaims(_) => "token_invalid_claims",
            TokenError::MissingScope { .. } => "token_missing_scope",
            TokenError::ForeignReply(_) => "token_foreign_reply",
        }
    }
}

/// `text` from a token, cut to [`MAX_QUOTED`] bytes for an error to quote.
pub(crate) fn quoted(text: &str) -> String {
    crate::publisher::truncate(text, MAX_QUOTED).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_quote_little_of_the_token_and_escape_it() {
        let error = TokenError::UnknownKey(quoted(&format!("k\n{}", "x".repeat(500))));
        let text = error.to_string();
        assert!(text.contains(r#""k\nxxx"#), "{text}");
        assert!(!text.contains('\n') && text.len() < 200, "{text}");
        assert_eq!(error.reason_code(), "token_unknown_key");
    }
}
