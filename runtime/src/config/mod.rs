//! Typed, layered settings, validated at start-up.
//!
//! Layers, each overriding the one before: the defaults compiled in from
//! `config/default.toml`; `default.toml` and `$WARREN_ENV.toml` under `$WARREN_CONFIG_DIR`
//! (default `./config`); `WARREN_<SECTION>__<KEY>` environment variables plus the short
//! forms `WARREN_AMQP_URL` and `WARREN_LOG`; then command-line flags.
//!
//! Each of those variables may instead name a file that holds the value, by the same name
//! with `_FILE` appended (`WARREN_AMQP_URL_FILE`, `WARREN_AMQP__URL_FILE`), as Docker and
//! Kubernetes secrets are given; the file's content, less one trailing newline, is the
//! value, in the same layer. Giving both a variable and its `_FILE` is an error, and no
//! error quotes a file's content.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use warren_messages::Limits;

mod auth;
mod env;
mod tls;

pub use auth::{AuthSettings, MAX_LEEWAY_SECS};
use env::{
    SettingVariable, classify_variable, known_settings, read_setting_file, redact_file_contents,
};
pub use tls::TlsSettings;
pub(crate) use tls::{read_pem_certificates, read_pem_private_key};

const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// What a variable's name ends with when it names a file holding the value rather than
/// the value itself (`WARREN_AMQP_URL_FILE=/run/secrets/amqp_url`).
pub const FILE_SUFFIX: &str = "_FILE";

/// Every variable that sets `amqp.url`: the short form, the long form, and each one's
/// `_FILE`. `warren up` removes them all from a worker's environment when it gives the
/// worker the URL of its own `--amqp-url`.
pub const AMQP_URL_VARIABLES: [&str; 4] = [
    "WARREN_AMQP_URL",
    "WARREN_AMQP_URL_FILE",
    "WARREN_AMQP__URL",
    "WARREN_AMQP__URL_FILE",
];

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
    /// Tokens on messages.
    pub auth: AuthSettings,
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
    /// Whether a worker declares the shared exchanges (true), or only checks that they
    /// exist (false: for a worker under a user of its own after `warren topology apply`,
    /// which may not declare them).
    pub declare_exchanges: bool,
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
            .field("declare_exchanges", &self.declare_exchanges)
            .field("tls", &self.tls)
            .finish()
    }
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
    /// A setting is given both as a value and as a file (`X` and `X_FILE`).
    #[error(
        "both {variable} and {file_variable} are set: give the value or the file that \
         holds it, not both"
    )]
    ValueAndFile {
        /// The variable holding the value, e.g. `WARREN_AMQP_URL`.
        variable: String,
        /// The variable naming the file, e.g. `WARREN_AMQP_URL_FILE`.
        file_variable: String,
    },
    /// The file a `_FILE` variable names cannot be read. Says the variable, the path and
    /// why, never any of the file's content.
    #[error("cannot read the file {variable} names, {path}: {reason}")]
    UnreadableFile {
        /// The variable, e.g. `WARREN_AMQP_URL_FILE`.
        variable: String,
        /// The path it holds.
        path: PathBuf,
        /// Why it cannot be read.
        reason: String,
    },
}

impl ConfigError {
    /// This error with every quotation of `file_contents` (the values read from `_FILE`
    /// variables' files) replaced by `***`.
    fn without_file_contents(self, file_contents: &[String]) -> ConfigError {
        if file_contents.is_empty() {
            return self;
        }
        match self {
            // The message is kept, not the error: its `Debug` could quote a value too.
            ConfigError::Read(error) => ConfigError::Read(config::ConfigError::Message(
                redact_file_contents(&error.to_string(), file_contents),
            )),
            ConfigError::Invalid { key, reason } => ConfigError::Invalid {
                key,
                reason: redact_file_contents(&reason, file_contents),
            },
            other => other,
        }
    }
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
        let known = known_settings()?;
        let mut file_contents = Vec::new();
        for (key, value) in &environment {
            let (setting, value) = match classify_variable(key, &known) {
                None => continue,
                Some(SettingVariable::Value(setting)) => (setting, value.clone()),
                Some(SettingVariable::File {
                    setting,
                    value_variable,
                }) => {
                    if variable(&value_variable).is_some() {
                        return Err(ConfigError::ValueAndFile {
                            variable: value_variable,
                            file_variable: key.clone(),
                        });
                    }
                    let content = read_setting_file(key, value)?;
                    file_contents.push(content.clone());
                    (setting, content)
                }
            };
            builder = builder.set_override(setting, value)?;
        }
        builder = builder
            .set_override_option("amqp.url", overrides.amqp_url.clone())?
            .set_override_option("worker.prefetch", overrides.prefetch.map(i64::from))?;

        let build_and_validate = || -> Result<Settings, ConfigError> {
            let settings: Settings = builder.build()?.try_deserialize()?;
            settings.validate()?;
            Ok(settings)
        };
        build_and_validate().map_err(|error| error.without_file_contents(&file_contents))
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
        self.auth.validate()
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
    use super::env::replace_ignoring_ascii_case;
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

    /// A folder of files for one test, removed when dropped.
    struct TestFolder(PathBuf);

    impl TestFolder {
        fn new() -> TestFolder {
            let path = std::env::temp_dir().join(format!("warren-config-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).expect("a temp folder");
            TestFolder(path)
        }

        /// With a certificate (`cert.pem`), its key (`key.pem`) and a file that is not
        /// PEM (`not-pem.txt`).
        fn with_pem_files() -> TestFolder {
            let folder = TestFolder::new();
            let key = rcgen::KeyPair::generate().expect("a key");
            let certificate = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
                .expect("parameters")
                .self_signed(&key)
                .expect("a certificate");
            folder.write("cert.pem", &certificate.pem());
            folder.write("key.pem", &key.serialize_pem());
            folder.write("not-pem.txt", "SECRET-LOOKING TEXT\n");
            folder
        }

        /// Writes `content` to the file `name` and returns its path.
        fn write(&self, name: &str, content: &str) -> String {
            let path = self.0.join(name);
            std::fs::write(&path, content).expect("a file");
            path.display().to_string()
        }

        /// The path of the file `name`.
        fn file(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }
    }

    impl Drop for TestFolder {
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
        let folder = TestFolder::with_pem_files();
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

    /// A password no message, setting or path holds by chance.
    const SECRET: &str = "Zq7-hunter2-SECRET-41";

    #[test]
    fn a_setting_may_be_given_as_a_file_by_either_name() {
        let folder = TestFolder::new();
        let url = format!("amqp://app:{SECRET}@broker.example:5672/%2f");
        let with_newline = folder.write("url-newline", &format!("{url}\n"));
        let with_crlf = folder.write("url-crlf", &format!("{url}\r\n"));
        let bare = folder.write("url-bare", &url);
        for variable in ["WARREN_AMQP_URL_FILE", "WARREN_AMQP__URL_FILE"] {
            for path in [&with_newline, &with_crlf, &bare] {
                let settings =
                    load(&[(variable, path.as_str())], &Overrides::default()).expect("from a file");
                assert_eq!(settings.amqp.url, url, "{variable}={path}");
            }
        }
        // Only one trailing newline is removed: the rest is the value's own.
        let two_newlines = folder.write("prefetch", "7\n\n");
        assert!(matches!(
            load(
                &[("WARREN_WORKER__PREFETCH_FILE", two_newlines.as_str())],
                &Overrides::default()
            ),
            Err(ConfigError::Read(_))
        ));
        let prefetch = folder.write("prefetch-ok", "7\n");
        let log = folder.write("log", "debug\n");
        let settings = load(
            &[
                ("WARREN_WORKER__PREFETCH_FILE", prefetch.as_str()),
                ("WARREN_LOG_FILE", log.as_str()),
            ],
            &Overrides::default(),
        )
        .expect("any setting from a file");
        assert_eq!(settings.worker.prefetch, 7);
        assert_eq!(settings.log.filter, "debug");
        // Flags are still the last layer.
        let flag = Overrides {
            amqp_url: Some("amqp://flag:5672/%2f".into()),
            ..Overrides::default()
        };
        let settings =
            load(&[("WARREN_AMQP_URL_FILE", bare.as_str())], &flag).expect("a flag over a file");
        assert_eq!(settings.amqp.url, "amqp://flag:5672/%2f");
    }

    #[test]
    fn a_setting_whose_name_ends_in_file_is_still_that_setting() {
        let folder = TestFolder::new();
        let missing = folder.0.join("missing-ca.pem").display().to_string();
        // `WARREN_AMQP__TLS__CA_FILE` is the setting `amqp.tls.ca_file` (a path), not a
        // file holding `amqp.tls.ca`.
        assert_eq!(
            rejected_key(load(
                &[("WARREN_AMQP__TLS__CA_FILE", missing.as_str())],
                &Overrides::default()
            )),
            "amqp.tls.ca_file"
        );
        let known = known_settings().expect("the defaults");
        assert_eq!(
            classify_variable("WARREN_AMQP__TLS__CA_FILE", &known),
            Some(SettingVariable::Value("amqp.tls.ca_file".to_owned()))
        );
        assert_eq!(
            classify_variable("WARREN_AMQP__TLS__CA_FILE_FILE", &known),
            Some(SettingVariable::File {
                setting: "amqp.tls.ca_file".to_owned(),
                value_variable: "WARREN_AMQP__TLS__CA_FILE".to_owned(),
            })
        );
        assert_eq!(
            classify_variable("WARREN_AMQP_URL_FILE", &known),
            Some(SettingVariable::File {
                setting: "amqp.url".to_owned(),
                value_variable: "WARREN_AMQP_URL".to_owned(),
            })
        );
        assert_eq!(classify_variable("WARREN_CONFIG_DIR_FILE", &known), None);
        assert_eq!(classify_variable("WARREN_ENV", &known), None);
        // The path of a CA file, from a file.
        let path_file = folder.write("ca-path", &format!("{missing}\n"));
        assert_eq!(
            rejected_key(load(
                &[("WARREN_AMQP__TLS__CA_FILE_FILE", path_file.as_str())],
                &Overrides::default()
            )),
            "amqp.tls.ca_file"
        );
        // A `_FILE` of no setting is an unknown setting, as before.
        assert!(matches!(
            load(
                &[("WARREN_WORKER__PREFECTH_FILE", "/x")],
                &Overrides::default()
            ),
            Err(ConfigError::Read(_))
        ));
    }

    #[test]
    fn a_value_and_its_file_together_are_an_error_naming_both() {
        let folder = TestFolder::new();
        let url = folder.write("url", &format!("amqp://app:{SECRET}@broker:5672/%2f\n"));
        for (value_variable, file_variable) in [
            ("WARREN_AMQP_URL", "WARREN_AMQP_URL_FILE"),
            ("WARREN_AMQP__URL", "WARREN_AMQP__URL_FILE"),
        ] {
            // Either order in the environment.
            for environment in [
                [
                    (value_variable, "amqp://other:pw@broker/%2f"),
                    (file_variable, url.as_str()),
                ],
                [
                    (file_variable, url.as_str()),
                    (value_variable, "amqp://other:pw@broker/%2f"),
                ],
            ] {
                let error = load(&environment, &Overrides::default()).expect_err("both");
                match &error {
                    ConfigError::ValueAndFile {
                        variable,
                        file_variable: file,
                    } => assert_eq!(
                        (variable.as_str(), file.as_str()),
                        (value_variable, file_variable)
                    ),
                    other => panic!("expected both to be refused, got {other:?}"),
                }
                let text = error.to_string();
                assert!(
                    text.contains(value_variable) && text.contains(file_variable),
                    "{text}"
                );
                assert!(!text.contains(SECRET) && !format!("{error:?}").contains(SECRET));
            }
        }
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_the_variable_and_the_path() {
        let folder = TestFolder::new();
        let missing = folder.0.join("missing").display().to_string();
        let not_utf8 = folder.0.join("not-utf8");
        std::fs::write(&not_utf8, [b'p', 0xff, 0xfe, b'\n']).expect("bytes");
        let not_utf8 = not_utf8.display().to_string();
        let a_folder = folder.0.display().to_string();
        for path in [missing.as_str(), not_utf8.as_str(), a_folder.as_str(), ""] {
            let error = load(&[("WARREN_AMQP_URL_FILE", path)], &Overrides::default())
                .expect_err("unreadable");
            assert!(
                matches!(&error, ConfigError::UnreadableFile { variable, path: shown, .. }
                    if variable == "WARREN_AMQP_URL_FILE" && shown == &PathBuf::from(path)),
                "{error:?}"
            );
            let text = error.to_string();
            assert!(
                text.contains("WARREN_AMQP_URL_FILE") && text.contains(path),
                "{text}"
            );
        }
    }

    #[test]
    fn file_contents_are_redacted_in_any_case_and_short_ones_only_where_quoted() {
        let contents = ["Se-CRET1".to_owned(), "1".to_owned()];
        assert_eq!(
            redact_file_contents(
                "string \"se-cret1\", then SE-CRET1, 'Se-CRET1', \"1\", '1' and between 1 and 2",
                &contents
            ),
            "string \"***\", then ***, '***', \"***\", '***' and between 1 and 2"
        );
        assert_eq!(replace_ignoring_ascii_case("aAaA", "aa", "-"), "--");
        assert_eq!(replace_ignoring_ascii_case("é-X-é", "x", "y"), "é-y-é");
    }

    #[test]
    fn a_secret_from_a_file_appears_in_no_debug_output_or_error() {
        let folder = TestFolder::new();
        let url_file = folder.write(
            "url",
            &format!("amqp://app:{SECRET}@broker.example:5672/%2f\n"),
        );
        let settings = load(
            &[("WARREN_AMQP_URL_FILE", url_file.as_str())],
            &Overrides::default(),
        )
        .expect("from a file");
        assert!(settings.amqp.url.contains(SECRET));
        for shown in [
            format!("{settings:?}"),
            format!("{:?}", settings.amqp),
            format!("{settings:#?}"),
            settings.amqp.redacted_url(),
        ] {
            assert!(!shown.contains(SECRET), "{shown}");
        }
        assert_eq!(
            settings.amqp.redacted_url(),
            "amqp://app:***@broker.example:5672/%2f"
        );

        // Every error of a bad combination or a bad value, the secret in a file.
        let not_a_url = [
            format!("amqp://app:{SECRET}@broker.example:notaport/%2f"),
            format!("amqp://app:{SECRET}/no-at-sign"),
            format!("mailto:{SECRET}"),
            SECRET.to_owned(),
            format!("http://app:{SECRET}@broker.example/"),
        ];
        let mut environments: Vec<Vec<(String, String)>> = Vec::new();
        for (index, url) in not_a_url.iter().enumerate() {
            let path = folder.write(&format!("bad-url-{index}"), &format!("{url}\n"));
            environments.push(vec![("WARREN_AMQP_URL_FILE".into(), path.clone())]);
            environments.push(vec![("WARREN_AMQP__URL_FILE".into(), path)]);
        }
        // The secret given to settings of other types (which quote a value they cannot
        // read), and beside its own variable.
        for variable in [
            "WARREN_WORKER__PREFETCH_FILE",
            "WARREN_AMQP__TLS__REQUIRED_FILE",
            "WARREN_LOG__FORMAT_FILE",
            "WARREN_METRICS__LISTEN_FILE",
        ] {
            environments.push(vec![(variable.into(), url_file.clone())]);
        }
        let password_file = folder.write("password", &format!("{SECRET}\n"));
        environments.push(vec![(
            "WARREN_AMQP__HEARTBEAT_SECS_FILE".into(),
            password_file,
        )]);
        environments.push(vec![
            ("WARREN_AMQP_URL_FILE".into(), url_file.clone()),
            ("WARREN_AMQP_URL".into(), "amqp://x:y@h/%2f".into()),
        ]);
        environments.push(vec![
            ("WARREN_AMQP_URL_FILE".into(), url_file.clone()),
            ("WARREN_AMQP__TLS__REQUIRED".into(), "true".into()),
        ]);
        for environment in &environments {
            let borrowed: Vec<(&str, &str)> = environment
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str()))
                .collect();
            let error = load(&borrowed, &Overrides::default()).expect_err("a bad setting");
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(!shown.contains(SECRET), "{environment:?}: {shown}");
                assert!(!shown.contains("hunter2"), "{environment:?}: {shown}");
            }
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
