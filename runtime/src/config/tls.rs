//! TLS to the broker: its settings and the PEM files they name.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// TLS to the broker (`[amqp.tls]`), used when the URL is `amqps://`. It sits under
/// `[amqp]` because it is part of the broker connection: whatever holds the
/// [`AmqpSettings`](super::AmqpSettings) a connection is opened with has its TLS settings too.
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
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
