//! The per-message check of a worker whose `auth.required` is set: the token is
//! verified against the key set, with the algorithm the key names (never the one the
//! token names), its issuer, audience, expiry and start, then the scope the message's
//! type requires.
//!
//! The per-message cost, beyond the first sight of a token, is one uncontended lock, a
//! hash of the token and a map look-up: verified tokens are kept (at most
//! [`CACHE_CAPACITY`], each until it expires), so a token forwarded through a pipeline,
//! or carried by every request of one originator, is verified once per worker. The key
//! set's file is looked at (its modification time, size and inode) at most every
//! [`KEYS_FILE_CHECK_INTERVAL`], read again when it changed, and the cache emptied then,
//! so a key taken out of the set stops verifying within that interval.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use super::claims::{Claims, TokenClaims};
use super::error::{TokenError, quoted};
use super::key_set::KeySet;
use super::token::{read_header, split_compact};
use crate::config::AuthSettings;

/// How often, at most, the key set's file is looked at for a change.
pub const KEYS_FILE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The most verified tokens kept. When it is full, expired ones are dropped; when none
/// has expired, all are (each is verified again on its next message).
pub const CACHE_CAPACITY: usize = 4096;

/// Verifies the tokens of a worker's messages.
pub struct Verifier {
    issuer: String,
    audience: String,
    leeway_secs: u64,
    /// The scope each message type requires, for the types this worker consumes.
    scopes: HashMap<String, String>,
    keys_file: PathBuf,
    check_interval: Duration,
    /// One validation per algorithm a key may have, made once.
    ed_dsa: Validation,
    rs256: Validation,
    state: Mutex<State>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .field("scopes", &self.scopes)
            .field("keys_file", &self.keys_file)
            .finish_non_exhaustive()
    }
}

/// What changes while the worker runs: the key set, and the tokens verified with it.
struct State {
    keys: Arc<KeySet>,
    /// The key set file's modification time, size and inode when it was read.
    file_stamp: Option<FileStamp>,
    checked_at: Instant,
    /// Verified tokens (by their compact form): the claims, and until when (`exp` plus
    /// the leeway, in Unix seconds) they hold.
    verified: HashMap<Box<str>, (Arc<Claims>, u64)>,
}

impl Verifier {
    /// The verifier of a worker consuming `consumed` types under `settings`: its key set
    /// read from `auth.keys_file` now. The error says what is wrong with the file.
    pub fn new(settings: &AuthSettings, consumed: &[&str]) -> Result<Verifier, String> {
        Self::with_check_interval(settings, consumed, KEYS_FILE_CHECK_INTERVAL)
    }

    /// Like [`Verifier::new`], looking at the key set's file at most every
    /// `check_interval` (tests use zero).
    pub fn with_check_interval(
        settings: &AuthSettings,
        consumed: &[&str],
        check_interval: Duration,
    ) -> Result<Verifier, String> {
        let keys_file = settings.keys_file.clone();
        let file_stamp = stamp(&keys_file);
        let keys = KeySet::read(&keys_file)?;
        let scopes = required_scopes(&settings.scopes, consumed);
        let validation = |algorithm| {
            let mut validation = Validation::new(algorithm);
            validation.leeway = settings.leeway_secs;
            validation.set_issuer(&[&settings.issuer]);
            validation.set_audience(&[&settings.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = true;
            validation
        };
        Ok(Verifier {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway_secs: settings.leeway_secs,
            scopes,
            keys_file,
            check_interval,
            ed_dsa: validation(Algorithm::EdDSA),
            rs256: validation(Algorithm::RS256),
            state: Mutex::new(State {
                keys: Arc::new(keys),
                file_stamp,
                checked_at: Instant::now(),
                verified: HashMap::new(),
            }),
        })
    }

    /// The `kid`s of the key set in use.
    pub fn key_ids(&self) -> Vec<String> {
        let keys = Arc::clone(&self.lock().keys);
        keys.key_ids().into_iter().map(str::to_owned).collect()
    }

    /// The message types that require a scope, with it.
    pub fn scopes(&self) -> &HashMap<String, String> {
        &self.scopes
    }

    /// Verifies `token` (the message's `x-warren-token`, `None` when it has none) for a
    /// message of `message_type`: the claims it proves, or why it is refused.
    pub fn verify(
        &self,
        token: Option<&str>,
        message_type: &str,
    ) -> Result<Arc<Claims>, TokenError> {
        let token = token.ok_or(TokenError::Missing)?;
        let now = jsonwebtoken::get_current_timestamp();
        // Seen before: the claims kept. Otherwise the key set to verify it with, taken
        // out of the lock (the signature is checked without holding it).
        let seen = {
            let mut state = self.lock();
            self.reload_if_changed(&mut state);
            match state.verified.get(token) {
                Some((claims, valid_until)) if now <= *valid_until => Ok(Arc::clone(claims)),
                Some(_) => {
                    state.verified.remove(token);
                    Err(Arc::clone(&state.keys))
                }
                None => Err(Arc::clone(&state.keys)),
            }
        };
        let claims = match seen {
            Ok(claims) => claims,
            Err(keys) => {
                let claims = Arc::new(self.verify_with(token, &keys)?);
                self.remember(token, &claims, &keys, now);
                claims
            }
        };
        if let Some(scope) = self.scopes.get(message_type)
            && !claims.has_scope(scope)
        {
            return Err(TokenError::MissingScope {
                scope: scope.clone(),
                message_type: message_type.to_owned(),
            });
        }
        Ok(claims)
    }

    /// Verifies `token` with `keys`, from scratch.
    fn verify_with(&self, token: &str, keys: &KeySet) -> Result<Claims, TokenError> {
        let [encoded_header, _, _] = split_compact(token)?;
        let header = read_header(encoded_header)?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::Unsigned);
        }
        if header
            .alg
            .get(..2)
            .is_some_and(|family| family.eq_ignore_ascii_case("HS"))
        {
            return Err(TokenError::SharedSecret(quoted(&header.alg)));
        }
        let kid = header.kid.as_deref().ok_or(TokenError::NoKeyId)?;
        let key = keys
            .get(kid)
            .ok_or_else(|| TokenError::UnknownKey(quoted(kid)))?;
        // The key decides the algorithm: the token's own say must agree with it.
        let key_algorithm = algorithm_name(key.algorithm);
        if header.alg != key_algorithm {
            return Err(TokenError::WrongAlgorithm {
                kid: quoted(kid),
                token: quoted(&header.alg),
                key: key_algorithm,
            });
        }
        let validation = match key.algorithm {
            Algorithm::EdDSA => &self.ed_dsa,
            _ => &self.rs256,
        };
        let data = jsonwebtoken::decode::<TokenClaims>(token, &key.decoding_key, validation)
            .map_err(|error| self.refusal(error.into_kind(), kid))?;
        data.claims.into_claims(kid)
    }

    /// What a `jsonwebtoken` error means for the token signed with key `kid`.
    fn refusal(&self, kind: ErrorKind, kid: &str) -> TokenError {
        match kind {
            ErrorKind::ExpiredSignature => TokenError::Expired(self.leeway_secs),
            ErrorKind::ImmatureSignature => TokenError::NotYetValid(self.leeway_secs),
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::MissingRequiredClaim(claim) => {
                TokenError::MissingClaim(match claim.as_str() {
                    "sub" => "sub",
                    "iss" => "iss",
                    "aud" => "aud",
                    "exp" => "exp",
                    _ => "required",
                })
            }
            ErrorKind::InvalidClaimFormat(claim) => TokenError::InvalidClaims(Cow::Owned(format!(
                "its {} claim has the wrong type",
                quoted(&claim)
            ))),
            ErrorKind::Json(_) | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                TokenError::InvalidClaims(Cow::Borrowed("its claims are not base64url JSON"))
            }
            // The signature, or a key the crypto cannot use with it.
            _ => TokenError::BadSignature(quoted(kid)),
        }
    }

    /// Keeps `claims` of `token` until it expires, if `keys` is still the set in use.
    fn remember(&self, token: &str, claims: &Arc<Claims>, keys: &Arc<KeySet>, now: u64) {
        let mut state = self.lock();
        if !Arc::ptr_eq(&state.keys, keys) {
            return;
        }
        if state.verified.len() >= CACHE_CAPACITY {
            state
                .verified
                .retain(|_, (_, valid_until)| now <= *valid_until);
            if state.verified.len() >= CACHE_CAPACITY {
                state.verified.clear();
            }
        }
        let valid_until = claims.expires_at.saturating_add(self.leeway_secs);
        state
            .verified
            .insert(token.into(), (Arc::clone(claims), valid_until));
    }

    /// Reads the key set's file again when it changed since it was read, at most every
    /// `check_interval`. A file that cannot be read, or holds no valid key set, is
    /// reported and the set in use kept.
    fn reload_if_changed(&self, state: &mut State) {
        if state.checked_at.elapsed() < self.check_interval {
            return;
        }
        state.checked_at = Instant::now();
        let current = stamp(&self.keys_file);
        if current == state.file_stamp {
            return;
        }
        match KeySet::read(&self.keys_file) {
            Ok(keys) => {
                tracing::info!(
                    keys_file = %self.keys_file.display(),
                    kids = ?keys.key_ids(),
                    "the key set changed: using it from now on"
                );
                state.keys = Arc::new(keys);
                state.verified.clear();
                state.file_stamp = current;
            }
            Err(error) => {
                // Reported once per change of the file, not on every check.
                state.file_stamp = current;
                tracing::warn!(%error, "the key set's file changed but cannot be used: keeping the keys in use");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned one still holds a whole state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What tells one version of the key set's file from the next: its modification time,
/// its size, and its inode (a new file renamed over the old one, as an operator should
/// replace it, is a new inode even within a clock tick).
type FileStamp = (SystemTime, u64, u64);

/// The file's [`FileStamp`], when it can be read.
fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len(), metadata.ino()))
}

/// The name of `algorithm` as a token's `alg` writes it.
fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::EdDSA => "EdDSA",
        _ => "RS256",
    }
}

/// The scope each of the `consumed` types requires, from `[auth.scopes]`; an empty
/// scope requires none.
fn required_scopes(
    scopes: &BTreeMap<String, String>,
    consumed: &[&str],
) -> HashMap<String, String> {
    scopes
        .iter()
        .filter(|(message_type, scope)| {
            consumed.contains(&message_type.as_str()) && !scope.is_empty()
        })
        .map(|(message_type, scope)| (message_type.clone(), scope.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
