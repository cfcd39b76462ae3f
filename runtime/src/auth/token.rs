//! A token as it travels: the compact JWT of a message's `x-warren-token` header.
//!
//! A token is a credential: whoever holds it may act as its subject until it expires. So
//! it is never printed (its `Debug` is `Token(***)`), never put into an envelope, a log
//! line or an error, and never kept in a dead-letter copy.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::TokenError;

/// The most bytes a token may have. A compact JWT with a handful of claims is well under
/// 1 KiB; an RS256 one about 1 KiB more. A larger header is refused before any decoding,
/// and never forwarded.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A compact JWT (`header.claims.signature`, each part base64url), as an originator
/// attaches it to a request. Its `Debug` never shows it; [`Token::as_str`] is for the
/// header it travels in.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// `text` (whitespace around it ignored) as a token, when it has a token's shape:
    /// three non-empty base64url parts, at most [`MAX_TOKEN_BYTES`]. Nothing is
    /// verified: that is the receiving worker's job.
    pub fn parse(text: &str) -> Result<Token, TokenError> {
        let text = text.trim();
        let parts = split_compact(text)?;
        if parts.iter().any(|part| part.is_empty()) {
            return Err(TokenError::Malformed("one of its three parts is empty"));
        }
        Ok(Token(text.to_owned()))
    }

    /// The compact form, for the `x-warren-token` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The subject (`sub`) the token claims, read without verifying anything: what an
    /// originator names its reply queue after (`warren.reply.<sub>.…`, the only reply
    /// queues a worker that requires tokens answers for it). `None` when the claims
    /// cannot be read or have no string `sub`.
    pub fn claimed_subject(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Subject {
            sub: Option<String>,
        }
        let [_, claims, _] = split_compact(&self.0).ok()?;
        let json = URL_SAFE_NO_PAD.decode(claims).ok()?;
        serde_json::from_slice::<Subject>(&json).ok()?.sub
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Token(***)")
    }
}

/// `token`'s three parts, when it has a compact JWT's shape: at most
/// [`MAX_TOKEN_BYTES`], three parts of base64url characters (the last may be empty: an
/// unsigned token, refused later with its own reason).
pub(crate) fn split_compact(token: &str) -> Result<[&str; 3], TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("it is longer than 8 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "it is not three parts separated by dots",
        ));
    };
    let base64url = |part: &str| {
        part.bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    };
    if ![header, claims, signature].into_iter().all(base64url) {
        return Err(TokenError::Malformed(
            "it holds characters other than base64url's",
        ));
    }
    Ok([header, claims, signature])
}

/// What a token's header says, read before any key is chosen: which key signed it and
/// with which algorithm, as the token claims. Nothing here is trusted: the key is looked
/// up by `kid`, and the algorithm must be the one that key is for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct TokenHeader {
    /// `alg`, as written.
    pub(crate) alg: String,
    /// `kid`.
    #[serde(default)]
    pub(crate) kid: Option<String>,
}

/// The header of a token whose first part is `encoded_header`.
pub(crate) fn read_header(encoded_header: &str) -> Result<TokenHeader, TokenError> {
    let json = URL_SAFE_NO_PAD
        .decode(encoded_header)
        .map_err(|_| TokenError::Malformed("its header is not base64url"))?;
    serde_json::from_slice(&json)
        .map_err(|_| TokenError::Malformed("its header is not a JSON object with a string alg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn a_token_is_never_shown() {
        let token = Token::parse(" aaa.bbb.ccc\n").expect("a token's shape");
        assert_eq!(token.as_str(), "aaa.bbb.ccc");
        assert_eq!(format!("{token:?}"), "Token(***)");
    }

    #[test]
    fn shapes_other_than_a_compact_jwt_are_refused() {
        for text in [
            "",
            "aaa",
            "aaa.bbb",
            "aaa.bbb.ccc.ddd",
            "aaa.bbb.",
            "a a.bbb.ccc",
            "aaa.b+b.ccc",
            "aaa.bbb.cc=",
        ] {
            assert!(
                matches!(Token::parse(text), Err(TokenError::Malformed(_))),
                "{text:?}"
            );
        }
        let long = format!("{}.b.c", "a".repeat(MAX_TOKEN_BYTES));
        assert!(matches!(Token::parse(&long), Err(TokenError::Malformed(_))));
        // An unsigned token has an empty third part: the worker refuses it by its alg.
        assert!(split_compact("aaa.bbb.").is_ok());
    }

    #[test]
    fn the_claimed_subject_is_read_unverified() {
        let token = |claims: &str| {
            Token::parse(&format!(
                "{}.{}.sig",
                encode(r#"{"alg":"EdDSA"}"#),
                encode(claims)
            ))
            .expect("a token's shape")
        };
        assert_eq!(
            token(r#"{"sub":"alice","exp":1}"#)
                .claimed_subject()
                .as_deref(),
            Some("alice")
        );
        assert_eq!(token(r#"{"exp":1}"#).claimed_subject(), None);
        assert_eq!(token(r#"{"sub":7}"#).claimed_subject(), None);
        assert_eq!(token("not json").claimed_subject(), None);
    }

    #[test]
    fn the_header_is_read_as_written() {
        let header =
            read_header(&encode(r#"{"alg":"EdDSA","kid":"k1","typ":"JWT"}"#)).expect("a header");
        assert_eq!(header.alg, "EdDSA");
        assert_eq!(header.kid.as_deref(), Some("k1"));
        let unsigned = read_header(&encode(r#"{"alg":"none"}"#)).expect("a header");
        assert_eq!((unsigned.alg.as_str(), unsigned.kid), ("none", None));
        for bad in [encode("[1]"), encode(r#"{"alg":1}"#), "!!".to_owned()] {
            assert!(read_header(&bad).is_err(), "{bad}");
        }
    }
}
