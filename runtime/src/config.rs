//! Typed, layered settings, validated at start-up.
//!
//! Layers, each overriding the one before: the defaults compiled in from
//! `config/default.toml`; `default.toml` and `$WARREN_ENV.toml` under `$WARREN_CONFIG_DIR`
//! (default `./config`); `WARREN_<SECTION>__<KEY>` environment variables plus the short
//! forms `WARREN_AMQP_URL` and `WARREN_LOG`; then command-line flags.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use warren_messages::Limits;

const DEFAULTS: &str = include_str!("../../config/default.toml");

/// Everything a warren process reads from its configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The broker connection.
    pub amqp: AmqpSettings,
    /// How a worker consumes.
    pub worker: WorkerSettings,
    /// Retries of transient failures.
    pub retry: RetrySettings,
    /// Input limits.
    pub limits: LimitSettings,
    /// Logging.
    pub log: LogSettings,
    /// Where workers keep their own stores.
    pub store: StoreSettings,
    /// The Prometheus endpoint.
    pub metrics: MetricsSettings,
}

/// The broker connection.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// The broker URL (`amqp://` or `amqps://`), which may hold a password.
    pub url: String,
    /// Heartbeat interval asked of the broker, in seconds.
    pub heartbeat_secs: u16,
    /// How long a publish may wait for its confirm, in milliseconds.
    pub confirm_timeout_ms: u64,
    /// TLS for an `amqps://` URL: whom to trust, who we are, and whether plain AMQP is
    /// allowed at all.
    pub tls: TlsSettings,
}

impl AmqpSettings {
    /// The URL with its password replaced by `***`, safe to log.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Whether the URL asks for TLS (`amqps://`); false for a URL that does not parse.
    pub fn uses_tls(&self) -> bool {
        self.url
            .parse::<lapin::uri::AMQPUri>()
            .is_ok_and(|uri| uri.scheme == lapin::uri::AMQPScheme::AMQPS)
    }

    /// How long a publish may wait for its confirm.
    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.confirm_timeout_ms)
    }
}

impl fmt::Debug for AmqpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpSettings")
            .field("url", &self.redacted_url())
            .field("heartbeat_secs", &self.heartbeat_secs)
            .field("confirm_timeout_ms", &self.confirm_timeout_ms)
            .field("tls", &self.tls)
            .finish()
    }
}

/// TLS to the broker (`[amqp.tls]`), used when the URL is `amqps://`. It sits under
/// `[amqp]` because it is part of the broker connection: whatever holds the
/// [`AmqpSettings`] a connection is opened with has its TLS settings too.
///
/// Only paths are held here, never a file's content, so the settings may be logged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the certificate authorities trusted for the broker's certificate, in
    /// addition to the system's roots; empty for the system's roots alone.
    pub ca_file: PathBuf,
    /// PEM file of the certificate (chain) presented to the broker; empty for none. Set
    /// together with `client_key_file`.
    pub client_cert_file: PathBuf,
    /// PEM file of the private key of `client_cert_file` (PKCS#8, PKCS#1 or SEC1, not
    /// encrypted); empty for none.
    pub client_key_file: PathBuf,
    /// Whether a URL that is not `amqps://` is refused at start-up.
    pub required: bool,
}

impl TlsSettings {
    /// Whether a client certificate is configured (both files are, or validation failed).
    pub fn has_client_identity(&self) -> bool {
        !self.client_cert_file.as_os_str().is_empty()
    }

    /// Checks the files: each one set is readable and holds what it should. The error
    /// names the setting and the path, never a key's content.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        if !self.ca_file.as_os_str().is_empty()
            && let Err(reason) = read_pem_certificates(&self.ca_file)
        {
            return invalid("amqp.tls.ca_file", reason);
        }
        match (
            self.client_cert_file.as_os_str().is_empty(),
            self.client_key_file.as_os_str().is_empty(),
        ) {
            (true, true) => Ok(()),
            (false, true) => invalid(
                "amqp.tls.client_key_file",
                "must be set when amqp.tls.client_cert_file is (both or neither)".to_owned(),
            ),
            (true, false) => invalid(
                "amqp.tls.client_cert_file",
                "must be set when amqp.tls.client_key_file is (both or neither)".to_owned(),
            ),
            (false, false) => {
                if let Err(reason) = read_pem_certificates(&self.client_cert_file) {
                    return invalid("amqp.tls.client_cert_file", reason);
                }
                if let Err(reason) = read_pem_private_key(&self.client_key_file) {
                    return invalid("amqp.tls.client_key_file", reason);
                }
                Ok(())
            }
        }
    }
}

/// The text of the PEM file `path`, with at least one certificate that parses.
pub(crate) fn read_pem_certificates(path: &std::path::Path) -> Result<String, String> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("{} is not valid PEM: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(text)
}

/// The bytes of the PEM file `path`, which holds a private key. A parse error is not
/// quoted: it could show part of the key.
pub(crate) fn read_pem_private_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use rustls_pki_types::{PrivateKeyDer, pem::PemObject};
    let bytes =
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    if PrivateKeyDer::from_pem_slice(&bytes).is_err() {
        return Err(format!(
            "{} holds no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        ));
    }
    Ok(bytes)
}

/// How a worker consumes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// How many unacknowledged deliveries a worker holds at once.
    pub prefetch: u16,
    /// How long in-flight work may take to finish at shutdown, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Deliveries of one message before the broker dead-letters it as poison.
    pub delivery_limit: u32,
}

impl WorkerSettings {
    /// How long in-flight work may take to finish at shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// Retries of transient failures, through broker delay queues.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The delay before the first retry, in milliseconds.
    pub initial_delay_ms: u64,
    /// How much longer each next delay is.
    pub multiplier: u32,
    /// The longest delay, in milliseconds.
    pub max_delay_ms: u64,
}

impl RetrySettings {
    /// The delay before retrying a message that failed `failed_attempts` times (1 for
    /// the first retry).
    pub fn delay_after(&self, failed_attempts: u32) -> Duration {
        let exponent = failed_attempts.saturating_sub(1);
        let factor = u64::from(self.multiplier).saturating_pow(exponent);
        Duration::from_millis(
            self.initial_delay_ms
                .saturating_mul(factor)
                .min(self.max_delay_ms),
        )
    }

    /// Every distinct delay a retry can wait, shortest first: one delay queue each.
    pub fn delays(&self) -> Vec<Duration> {
        let mut delays: Vec<Duration> = (1..self.max_attempts)
            .map(|failed| self.delay_after(failed))
            .collect();
        delays.dedup();
        delays
    }
}

/// Input limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// The largest message body accepted.
    pub max_body_bytes: usize,
    /// The deepest JSON nesting accepted.
    pub max_depth: usize,
}

impl LimitSettings {
    /// The limits in the form the decoder takes.
    pub fn decode_limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_depth: self.max_depth,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A tracing filter directive.
    pub filter: String,
    /// The output format.
    pub format: LogFormat,
    /// The folder of the log files (`<dir>/<worker>.<date>.log`, JSON lines, rolled
    /// daily); empty for no files.
    pub dir: PathBuf,
    /// How many daily files each worker keeps; older ones are deleted as it rolls.
    pub keep_files: usize,
}

/// The Prometheus endpoint of a worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// The address `/metrics` is served on (`127.0.0.1:9464`); empty for no endpoint,
    /// and then nothing is counted.
    pub listen: String,
}

impl MetricsSettings {
    /// The address to serve on, if any (validated at load).
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        self.listen.parse().ok()
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where workers keep their own stores.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// The folder of the workers' store files (`<dir>/<worker>.sqlite`); a relative
    /// path is relative to the working directory.
    pub dir: PathBuf,
}

/// Values given on the command line, the last layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--amqp-url`.
    pub amqp_url: Option<String>,
    /// `--prefetch`.
    pub prefetch: Option<u16>,
}

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A layer could not be read or parsed.
    #[error("cannot read the configuration: {0}")]
    Read(#[from] config::ConfigError),
    /// A value is impossible.
    #[error("invalid setting `{key}`: {reason}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Settings {
    /// Loads every layer from the real environment, then validates.
    pub fn load(overrides: &Overrides) -> Result<Settings, ConfigError> {
        Self::load_from(std::env::vars(), overrides)
    }

    /// Loads every layer taking environment variables from `environment`, then
    /// validates. Tests use this to leave the process environment alone.
    pub fn load_from(
        environment: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let environment: Vec<(String, String)> = environment
            .into_iter()
            .filter(|(key, _)| key.starts_with("WARREN_"))
            .collect();
        let variable = |name: &str| {
            environment
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let config_dir = PathBuf::from(variable("WARREN_CONFIG_DIR").unwrap_or("config".into()));

        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::from(config_dir.join("default.toml")).required(false));
        if let Some(environment_name) = variable("WARREN_ENV").filter(|name| !name.is_empty()) {
            builder = builder.add_source(
                config::File::from(config_dir.join(format!("{environment_name}.toml")))
                    .required(true),
            );
        }
        for (key, value) in &environment {
            let Some(path) = key.strip_prefix("WARREN_") else {
                continue;
            };
            let setting = match path {
                "AMQP_URL" => "amqp.url".to_owned(),
                "LOG" => "log.filter".to_owned(),
                _ if path.contains("__") => path.to_ascii_lowercase().replace("__", "."),
                _ => continue,
            };
            builder = builder.set_override(setting, value.as_str())?;
        }
        builder = builder
            .set_override_option("amqp.url", overrides.amqp_url.clone())?
            .set_override_option("worker.prefetch", overrides.prefetch.map(i64::from))?;

        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Rejects impossible values with a message that says what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if let Err(error) = self.amqp.url.parse::<lapin::uri::AMQPUri>() {
            return Err(ConfigError::Invalid {
                key: "amqp.url",
                reason: format!(
                    "{:?} is not an AMQP URL: {}",
                    self.amqp.redacted_url(),
                    redact_secret_in(&error, &self.amqp.url)
                ),
            });
        }
        if self.amqp.tls.required && !self.amqp.uses_tls() {
            return Err(ConfigError::Invalid {
                key: "amqp.tls.required",
                reason: format!(
                    "is true, so the broker URL must be amqps://, and {:?} is not: plain AMQP \
                     would send the password and every message unencrypted",
                    self.amqp.redacted_url()
                ),
            });
        }
        self.amqp.tls.validate()?;
        if self.amqp.heartbeat_secs == 0 {
            return invalid(
                "amqp.heartbeat_secs",
                "must be at least 1: without heartbeats a dead connection goes unnoticed",
            );
        }
        if self.amqp.confirm_timeout_ms == 0 {
            return invalid("amqp.confirm_timeout_ms", "must be at least 1");
        }
        if self.worker.prefetch == 0 {
            return invalid(
                "worker.prefetch",
                "must be at least 1: 0 would let the broker send unlimited deliveries",
            );
        }
        if self.worker.delivery_limit == 0 {
            return invalid("worker.delivery_limit", "must be at least 1");
        }
        if self.retry.max_attempts == 0 {
            return invalid(
                "retry.max_attempts",
                "must be at least 1 (1 means no retries)",
            );
        }
        if self.retry.max_attempts > 100 {
            return invalid("retry.max_attempts", "must be at most 100");
        }
        if self.retry.initial_delay_ms == 0 || self.retry.multiplier == 0 {
            return invalid(
                "retry.initial_delay_ms",
                "retry delays and their multiplier must be at least 1",
            );
        }
        if self.retry.max_delay_ms < self.retry.initial_delay_ms
            || self.retry.max_delay_ms > u64::from(u32::MAX)
        {
            return invalid(
                "retry.max_delay_ms",
                "must be at least retry.initial_delay_ms and at most 4294967295",
            );
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_body_bytes > 128 * 1024 * 1024 {
            return invalid(
                "limits.max_body_bytes",
                "must be between 1 and 134217728 (RabbitMQ's largest message)",
            );
        }
        if self.limits.max_depth < 2 || self.limits.max_depth > Limits::MAX_DEPTH_CEILING {
            return invalid(
                "limits.max_depth",
                "must be between 2 (an envelope holding an object) and 120",
            );
        }
        if self
            .log
            .filter
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            return invalid("log.filter", "is not a tracing filter such as \"info\"");
        }
        if self.log.keep_files == 0 {
            return invalid("log.keep_files", "must be at least 1");
        }
        if !self.metrics.listen.is_empty() && self.metrics.address().is_none() {
            return invalid(
                "metrics.listen",
                "must be an address and port such as 127.0.0.1:9464, or empty for none",
            );
        }
        Ok(())
    }
}

/// Replaces the password of an AMQP URL with `***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    // The user info ends at the last '@': a password may hold an unescaped '/', '?' or
    // '@', and a URL that does not parse is redacted all the same.
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    let Some((user, _password)) = userinfo.split_once(':') else {
        return url.to_owned();
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{user}:***@{host}"),
    }
}

/// `text` (an error about `url`) with the URL's password, if it has one, replaced by
/// `***`, in case the error quotes it.
pub fn redact_secret_in(text: &str, url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let password = rest
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty());
    match password {
        Some(password) => text.replace(password, "***"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(environment: &[(&str, &str)], overrides: &Overrides) -> Result<Settings, ConfigError> {
        Settings::load_from(
            environment
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .chain([(
                    "WARREN_CONFIG_DIR".to_string(),
                    "/nonexistent/warren".to_string(),
                )]),
            overrides,
        )
    }

    fn rejected_key(result: Result<Settings, ConfigError>) -> &'static str {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }

    #[test]
    fn defaults_load_and_are_valid() {
        let settings = load(&[], &Overrides::default()).expect("defaults");
        assert_eq!(settings.amqp.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(settings.worker.prefetch, 500);
        assert_eq!(settings.store.dir, PathBuf::from("data"));
        assert_eq!(settings.limits.decode_limits(), Limits::default());
    }

    #[test]
    fn layers_override_in_order() {
        let settings = load(
            &[
                ("WARREN_AMQP_URL", "amqp://a:b@env:5672/%2f"),
                ("WARREN_WORKER__PREFETCH", "7"),
                ("WARREN_LOG", "debug"),
                ("WARREN_STORE__DIR", "/var/lib/warren-stores"),
            ],
            &Overrides::default(),
        )
        .expect("environment");
        assert_eq!(settings.amqp.url, "amqp://a:b@env:5672/%2f");
        assert_eq!(settings.worker.prefetch, 7);
        assert_eq!(settings.log.filter, "debug");
        assert_eq!(settings.store.dir, PathBuf::from("/var/lib/warren-stores"));

        let settings = load(
            &[("WARREN_WORKER__PREFETCH", "7")],
            &Overrides {
                amqp_url: Some("amqp://flag:5672/%2f".into()),
                prefetch: Some(9),
            },
        )
        .expect("flags");
        assert_eq!(settings.worker.prefetch, 9);
        assert_eq!(settings.amqp.url, "amqp://flag:5672/%2f");
    }

    #[test]
    fn impossible_values_are_rejected_with_their_key() {
        let prefetch_zero = Overrides {
            prefetch: Some(0),
            ..Overrides::default()
        };
        assert_eq!(rejected_key(load(&[], &prefetch_zero)), "worker.prefetch");
        let bad_url = Overrides {
            amqp_url: Some("http://example".into()),
            ..Overrides::default()
        };
        assert_eq!(rejected_key(load(&[], &bad_url)), "amqp.url");
        for (key, value, expected) in [
            ("WARREN_AMQP__HEARTBEAT_SECS", "0", "amqp.heartbeat_secs"),
            ("WARREN_LIMITS__MAX_DEPTH", "1", "limits.max_depth"),
            ("WARREN_LIMITS__MAX_DEPTH", "500", "limits.max_depth"),
            (
                "WARREN_LIMITS__MAX_BODY_BYTES",
                "0",
                "limits.max_body_bytes",
            ),
            (
                "WARREN_WORKER__DELIVERY_LIMIT",
                "0",
                "worker.delivery_limit",
            ),
        ] {
            assert_eq!(
                rejected_key(load(&[(key, value)], &Overrides::default())),
                expected
            );
        }
    }

    #[test]
    fn a_missing_environment_file_and_unknown_keys_are_errors() {
        assert!(matches!(
            load(&[("WARREN_ENV", "staging")], &Overrides::default()),
            Err(ConfigError::Read(_))
        ));
        assert!(matches!(
            load(&[("WARREN_WORKER__PREFECTH", "5")], &Overrides::default()),
            Err(ConfigError::Read(_))
        ));
    }

    #[test]
    fn retry_delays_grow_exponentially_up_to_the_cap() {
        let settings = load(&[], &Overrides::default()).expect("defaults");
        let retry = &settings.retry;
        assert_eq!(retry.delay_after(1), Duration::from_millis(1000));
        assert_eq!(retry.delay_after(2), Duration::from_millis(2000));
        assert_eq!(retry.delay_after(40), Duration::from_millis(60000));
        assert_eq!(retry.delays().len(), 4);
        let capped = RetrySettings {
            max_attempts: 10,
            initial_delay_ms: 100,
            multiplier: 10,
            max_delay_ms: 5000,
        };
        let delays: Vec<u128> = capped.delays().iter().map(Duration::as_millis).collect();
        assert_eq!(delays, vec![100, 1000, 5000]);
        assert_eq!(
            rejected_key(load(
                &[("WARREN_RETRY__MAX_ATTEMPTS", "0")],
                &Overrides::default()
            )),
            "retry.max_attempts"
        );
        assert_eq!(
            rejected_key(load(
                &[("WARREN_RETRY__MAX_DELAY_MS", "10")],
                &Overrides::default()
            )),
            "retry.max_delay_ms"
        );
    }

    /// A folder of PEM files for one test, removed when dropped.
    struct PemFolder(PathBuf);

    impl PemFolder {
        fn new() -> PemFolder {
            let path = std::env::temp_dir().join(format!("warren-config-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).expect("a temp folder");
            let key = rcgen::KeyPair::generate().expect("a key");
            let certificate = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
                .expect("parameters")
                .self_signed(&key)
                .expect("a certificate");
            std::fs::write(path.join("cert.pem"), certificate.pem()).expect("cert.pem");
            std::fs::write(path.join("key.pem"), key.serialize_pem()).expect("key.pem");
            std::fs::write(path.join("not-pem.txt"), "SECRET-LOOKING TEXT\n").expect("text");
            PemFolder(path)
        }

        fn file(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }
    }

    impl Drop for PemFolder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn tls_defaults_to_the_systems_roots_and_no_client_certificate() {
        let settings = load(&[], &Overrides::default()).expect("defaults");
        let tls = &settings.amqp.tls;
        assert!(tls.ca_file.as_os_str().is_empty());
        assert!(!tls.has_client_identity());
        assert!(tls.client_key_file.as_os_str().is_empty());
        assert!(!tls.required);
        assert!(!settings.amqp.uses_tls());
    }

    #[test]
    fn tls_required_refuses_a_plain_url() {
        let required = ("WARREN_AMQP__TLS__REQUIRED", "true");
        let error = load(&[required], &Overrides::default()).expect_err("plain URL");
        assert_eq!(
            rejected_key(load(&[required], &Overrides::default())),
            "amqp.tls.required"
        );
        let text = error.to_string();
        assert!(
            text.contains("amqps://") && !text.contains("guest:guest"),
            "{text}"
        );
        let from_flag = Overrides {
            amqp_url: Some("amqp://flag:5672/%2f".into()),
            ..Overrides::default()
        };
        assert_eq!(
            rejected_key(load(&[required], &from_flag)),
            "amqp.tls.required"
        );
        let settings = load(
            &[required, ("WARREN_AMQP_URL", "amqps://u:p@broker:5671/%2f")],
            &Overrides::default(),
        )
        .expect("an amqps:// URL");
        assert!(settings.amqp.tls.required && settings.amqp.uses_tls());
    }

    #[test]
    fn tls_files_are_read_and_checked_at_start_up() {
        let folder = PemFolder::new();
        let (cert, key, text) = (
            folder.file("cert.pem"),
            folder.file("key.pem"),
            folder.file("not-pem.txt"),
        );
        let settings = load(
            &[
                ("WARREN_AMQP__TLS__CA_FILE", cert.as_str()),
                ("WARREN_AMQP__TLS__CLIENT_CERT_FILE", cert.as_str()),
                ("WARREN_AMQP__TLS__CLIENT_KEY_FILE", key.as_str()),
            ],
            &Overrides::default(),
        )
        .expect("valid files");
        assert_eq!(settings.amqp.tls.ca_file, PathBuf::from(&cert));
        assert!(settings.amqp.tls.has_client_identity());
        // Paths may be logged; the key's content never is.
        let debug = format!("{settings:?}");
        assert!(
            debug.contains(&key) && !debug.contains("PRIVATE KEY"),
            "{debug}"
        );

        let missing = folder.file("missing.pem");
        for (environment, expected) in [
            (
                vec![("WARREN_AMQP__TLS__CA_FILE", missing.as_str())],
                "amqp.tls.ca_file",
            ),
            (
                vec![("WARREN_AMQP__TLS__CA_FILE", text.as_str())],
                "amqp.tls.ca_file",
            ),
            (
                vec![("WARREN_AMQP__TLS__CA_FILE", key.as_str())],
                "amqp.tls.ca_file",
            ),
            (
                vec![("WARREN_AMQP__TLS__CLIENT_CERT_FILE", cert.as_str())],
                "amqp.tls.client_key_file",
            ),
            (
                vec![("WARREN_AMQP__TLS__CLIENT_KEY_FILE", key.as_str())],
                "amqp.tls.client_cert_file",
            ),
            (
                vec![
                    ("WARREN_AMQP__TLS__CLIENT_CERT_FILE", key.as_str()),
                    ("WARREN_AMQP__TLS__CLIENT_KEY_FILE", key.as_str()),
                ],
                "amqp.tls.client_cert_file",
            ),
            (
                vec![
                    ("WARREN_AMQP__TLS__CLIENT_CERT_FILE", cert.as_str()),
                    ("WARREN_AMQP__TLS__CLIENT_KEY_FILE", text.as_str()),
                ],
                "amqp.tls.client_key_file",
            ),
        ] {
            let result = load(&environment, &Overrides::default());
            if let Err(error) = &result {
                assert!(!error.to_string().contains("SECRET"), "{error}");
            }
            assert_eq!(rejected_key(result), expected, "{environment:?}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact_url("amqp://host/%2f"), "amqp://host/%2f");
        // A password with an unescaped '/' or '@' is still found, parsable or not.
        assert_eq!(
            redact_url("amqp://user:se/cret@host/vhost"),
            "amqp://user:***@host/vhost"
        );
        assert_eq!(
            redact_url("amqp://user:p@ss@host:5672/%2f"),
            "amqp://user:***@host:5672/%2f"
        );
        assert_eq!(redact_url("user:secret@host"), "user:***@host");
        assert_eq!(
            redact_secret_in("invalid port: cret@host", "amqp://user:se/cret@host"),
            "invalid port: cret@host"
        );
        assert_eq!(
            redact_secret_in("bad: se/cret", "amqp://user:se/cret@host"),
            "bad: ***"
        );
        for url in [
            "amqp://user:se/cret@host/vhost",
            "amqp://user:s3cr3t@host:notaport/v",
        ] {
            let error =
                load(&[("WARREN_AMQP_URL", url)], &Overrides::default()).expect_err("not a URL");
            let text = error.to_string();
            assert!(!text.contains("cret") && !text.contains("s3cr3t"), "{text}");
        }
        let settings = load(&[], &Overrides::default()).expect("defaults");
        assert!(!format!("{settings:?}").contains("guest:guest"));
    }
}
