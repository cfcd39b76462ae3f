//! Tokens on messages (docs/security.md, "Tokens"): who sent a message, proved by a JWT
//! in its `x-warren-token` header, verified by a worker whose `auth.required` is set.
//!
//! - [`token`]: a token as it travels ([`Token`], never printed) and what its header
//!   says before any key is chosen.
//! - [`error`]: why a token is refused ([`TokenError`], one variant per case, each with
//!   its dead letter's reason).
//! - [`claims`]: what a verified token says, as a handler sees it ([`Claims`]).
//! - [`key_set`]: the public keys trusted, read from a JWKS file ([`KeySet`]): each key
//!   with the one algorithm it verifies, never a shared secret.
//! - [`verifier`]: the per-message check ([`Verifier`]): the key set re-read when its
//!   file changes, verified tokens cached until they expire, the scope a message type
//!   requires.
//! - [`issue`]: signing keys, dev tokens and new key pairs, for `warren token`.

pub mod claims;
pub mod error;
pub mod issue;
pub mod key_set;
pub mod token;
pub mod verifier;

pub use claims::Claims;
pub use error::TokenError;
pub use issue::{GeneratedKey, SigningKey, TokenRequest, generate_ed25519_key};
pub use key_set::KeySet;
pub use token::{MAX_TOKEN_BYTES, Token};
pub use verifier::Verifier;
