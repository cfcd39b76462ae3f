//! Tokens on messages (`[auth]`): whether a worker requires one, whom it trusts to issue
//! them, and the scope each message type requires.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use crate::auth::KeySet;

/// The largest `auth.leeway_secs` accepted: a leeway is for clocks that disagree a
/// little, not a way to keep expired tokens working.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// Tokens on messages (`[auth]`, docs/security.md "Tokens").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Whether every message a worker takes must carry a valid token (`x-warren-token`).
    /// Off in the local default, on in the `secure` profile.
    pub required: bool,
    /// The `iss` a token must have.
    pub issuer: String,
    /// The `aud` a token must name: the fleet.
    pub audience: String,
    /// The JWKS file of the public keys that verify tokens; re-read when it changes.
    pub keys_file: PathBuf,
    /// How far a token's `exp` and `nbf` may be off, in seconds, for clocks that
    /// disagree.
    pub leeway_secs: u64,
    /// The scope a message type requires, by type (`"dev.warren.tally.add.v1" =
    /// "tally:write"`); an empty scope requires none.
    pub scopes: BTreeMap<String, String>,
}

impl AuthSettings {
    /// Checks the settings, and the key set's file when one is named (read and parsed,
    /// as a worker will). The error names the setting.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        if self.required && self.keys_file.as_os_str().is_empty() {
            return invalid(
                "auth.keys_file",
                "must name the JWKS file of the keys that verify tokens when auth.required is \
                 true (warren token keygen writes one)"
                    .to_owned(),
            );
        }
        if self.required && self.issuer.is_empty() {
            return invalid(
                "auth.issuer",
                "must not be empty when auth.required is true".to_owned(),
            );
        }
        if self.required && self.audience.is_empty() {
            return invalid(
                "auth.audience",
                "must not be empty when auth.required is true".to_owned(),
            );
        }
        if self.leeway_secs > MAX_LEEWAY_SECS {
            return invalid(
                "auth.leeway_secs",
                format!(
                    "must be at most {MAX_LEEWAY_SECS}: it is for clocks that disagree a little"
                ),
            );
        }
        for (message_type, scope) in &self.scopes {
            if message_type.is_empty() || scope.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return invalid(
                    "auth.scopes",
                    format!(
                        "{message_type:?} = {scope:?}: a message type names one scope, without \
                         spaces (or \"\" for none)"
                    ),
                );
            }
        }
        if !self.keys_file.as_os_str().is_empty()
            && let Err(reason) = KeySet::read(&self.keys_file)
        {
            return invalid("auth.keys_file", reason);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Overrides, Settings};

    /// The checkout's `config/` folder.
    fn repository_config() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
    }

    fn load(environment: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load_from(
            environment
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .chain([("WARREN_CONFIG_DIR".into(), "/nonexistent/warren".into())]),
            &Overrides::default(),
        )
    }

    fn rejected_key(result: Result<Settings, ConfigError>) -> &'static str {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }

    #[test]
    fn tokens_are_off_by_default_and_scopes_are_read_by_type() {
        let settings = load(&[]).expect("defaults");
        let auth = &settings.auth;
        assert!(!auth.required);
        assert_eq!(
            (auth.issuer.as_str(), auth.audience.as_str()),
            ("warren-dev", "warren")
        );
        assert_eq!(auth.leeway_secs, 30);
        assert!(auth.keys_file.as_os_str().is_empty());
        // A type's dots are part of its key, not a path.
        assert_eq!(
            auth.scopes
                .get("dev.warren.tally.add.v1")
                .map(String::as_str),
            Some("tally:write")
        );
    }

    #[test]
    fn the_settings_are_read_from_the_environment_and_checked() {
        let dev_keys = repository_config().join("dev-keys/jwks.json");
        let dev_keys = dev_keys.to_str().expect("a UTF-8 path");
        let settings = load(&[
            ("WARREN_AUTH__REQUIRED", "true"),
            ("WARREN_AUTH__KEYS_FILE", dev_keys),
            ("WARREN_AUTH__ISSUER", "https://id.example"),
            ("WARREN_AUTH__LEEWAY_SECS", "5"),
        ])
        .expect("valid");
        assert!(settings.auth.required);
        assert_eq!(settings.auth.issuer, "https://id.example");
        assert_eq!(settings.auth.leeway_secs, 5);

        let hmac = std::env::temp_dir().join(format!("warren-hmac-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(
            &hmac,
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}"#,
        )
        .expect("a key set");
        let hmac_path = hmac.to_str().expect("a UTF-8 path").to_owned();
        for (environment, expected) in [
            (vec![("WARREN_AUTH__REQUIRED", "true")], "auth.keys_file"),
            (
                vec![("WARREN_AUTH__KEYS_FILE", "/nonexistent/jwks.json")],
                "auth.keys_file",
            ),
            (
                vec![("WARREN_AUTH__KEYS_FILE", hmac_path.as_str())],
                "auth.keys_file",
            ),
            (
                vec![
                    ("WARREN_AUTH__REQUIRED", "true"),
                    ("WARREN_AUTH__KEYS_FILE", dev_keys),
                    ("WARREN_AUTH__ISSUER", ""),
                ],
                "auth.issuer",
            ),
            (
                vec![
                    ("WARREN_AUTH__REQUIRED", "true"),
                    ("WARREN_AUTH__KEYS_FILE", dev_keys),
                    ("WARREN_AUTH__AUDIENCE", ""),
                ],
                "auth.audience",
            ),
            (
                vec![("WARREN_AUTH__LEEWAY_SECS", "301")],
                "auth.leeway_secs",
            ),
            (
                vec![("WARREN_AUTH__SCOPES__DEV_ECHO", "two scopes")],
                "auth.scopes",
            ),
        ] {
            assert_eq!(
                rejected_key(load(&environment)),
                expected,
                "{environment:?}"
            );
        }
        let _ = std::fs::remove_file(hmac);
    }

    #[test]
    fn the_secure_profile_requires_tokens_verified_by_the_dev_key_set() {
        let config = repository_config();
        let profile = std::fs::read_to_string(config.join("secure.toml")).expect("secure.toml");
        assert!(profile.contains(r#"keys_file = "config/dev-keys/jwks.json""#));
        // The profile's path is relative to where `warren up` runs (the checkout), so
        // the test, which runs elsewhere, names the same file by its full path.
        let dev_keys = config.join("dev-keys/jwks.json");
        let settings = Settings::load_from(
            [
                ("WARREN_CONFIG_DIR", config.to_str().expect("UTF-8")),
                ("WARREN_ENV", "secure"),
                ("WARREN_AUTH__KEYS_FILE", dev_keys.to_str().expect("UTF-8")),
            ]
            .map(|(key, value)| (key.to_owned(), value.to_owned())),
            &Overrides::default(),
        )
        .expect("the secure profile");
        assert!(settings.auth.required);
        // The files' layers merge, each type's dots still part of its one key.
        assert_eq!(
            settings.auth.scopes,
            BTreeMap::from(
                [
                    ("dev.warren.orders.place.v1", "orders:place"),
                    ("dev.warren.orders.place.v2", "orders:place"),
                    ("dev.warren.tally.add.v1", "tally:write"),
                ]
                .map(|(message_type, scope)| (message_type.to_owned(), scope.to_owned()))
            )
        );
        // The committed dev key signs tokens the committed key set verifies.
        let key = crate::auth::SigningKey::read_pem_file(&config.join("dev-keys/dev.pem"), "dev")
            .expect("the dev key");
        let scopes = ["tally:write".to_owned()];
        let token = key
            .issue(&crate::auth::TokenRequest::new(
                "alice",
                &scopes,
                &settings.auth.issuer,
                &settings.auth.audience,
                std::time::Duration::from_secs(60),
            ))
            .expect("a token");
        let verifier = crate::auth::Verifier::new(&settings.auth, &["dev.warren.tally.add.v1"])
            .expect("a verifier");
        let claims = verifier
            .verify(Some(token.as_str()), "dev.warren.tally.add.v1")
            .expect("verified");
        assert_eq!(claims.subject, "alice");
    }
}
