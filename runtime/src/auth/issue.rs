//! Making tokens and keys, for `warren token` and the tests: a signing key read from its
//! PEM file, a token issued with it, a new Ed25519 key pair with its public JWK.
//!
//! This is a development issuer: a production fleet takes its tokens from its identity
//! provider, and gives the workers that provider's public keys (docs/security.md).

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::token::Token;

/// The start of every Ed25519 private key in PKCS#8 v1 (RFC 8410): the version, the
/// algorithm (1.3.101.112) and the 32-byte key's own header. The seed follows.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The start of ring's PKCS#8 v2 Ed25519 document: the same, with version 1 and a
/// longer sequence (the public key, `[1]`, follows the seed).
const ED25519_PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A private key that signs tokens, with the `kid` that names its public key in the
/// fleet's key set. Its `Debug` shows neither the key nor anything of it.
pub struct SigningKey {
    algorithm: Algorithm,
    key: EncodingKey,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The private key in the PEM file `path` (PKCS#8: Ed25519 signs with EdDSA; an RSA
    /// key, PKCS#1 or PKCS#8, with RS256), named `kid`. The error names the path, never
    /// anything of the key.
    pub fn read_pem_file(path: &Path, kid: &str) -> Result<SigningKey, String> {
        let pem = std::fs::read(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        SigningKey::from_pem(&pem, kid).map_err(|error| format!("{}: {error}", path.display()))
    }

    /// The private key of `pem`, named `kid`.
    pub fn from_pem(pem: &[u8], kid: &str) -> Result<SigningKey, String> {
        if kid.is_empty() {
            return Err("the kid is empty".to_owned());
        }
        let (algorithm, key) = if let Ok(key) = EncodingKey::from_ed_pem(pem) {
            (Algorithm::EdDSA, key)
        } else if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
            (Algorithm::RS256, key)
        } else {
            return Err(
                "holds no unencrypted PEM private key warren signs with (Ed25519 PKCS#8, or RSA)"
                    .to_owned(),
            );
        };
        Ok(SigningKey {
            algorithm,
            key,
            kid: kid.to_owned(),
        })
    }

    /// The algorithm it signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Issues a token for `request`, signed with this key, `kid` in its header.
    pub fn issue(&self, request: &TokenRequest<'_>) -> Result<Token, String> {
        let now = jsonwebtoken::get_current_timestamp();
        let not_before = now.saturating_add_signed(request.not_before_offset_secs);
        let claims = serde_json::json!({
            "iss": request.issuer,
            "sub": request.subject,
            "aud": request.audience,
            "iat": now,
            "nbf": not_before,
            "exp": now.saturating_add_signed(request.expires_in_secs),
            "scope": request.scopes.join(" "),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        let compact = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|error| format!("cannot sign the token: {error}"))?;
        Token::parse(&compact).map_err(|error| error.to_string())
    }
}

/// What a token says: to whom it is issued, what it allows, by whom, for whom, and for
/// how long.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    /// `sub`.
    pub subject: &'a str,
    /// The scopes, written space-separated in `scope`.
    pub scopes: &'a [String],
    /// `iss`.
    pub issuer: &'a str,
    /// `aud`.
    pub audience: &'a str,
    /// `exp`, in seconds from now; negative for a token already expired (tests).
    pub expires_in_secs: i64,
    /// `nbf`, in seconds from now; 0 for now, positive for a token not valid yet (tests).
    pub not_before_offset_secs: i64,
}

impl<'a> TokenRequest<'a> {
    /// A token for `subject` with `scopes`, from `issuer` to `audience`, valid from now
    /// for `lifetime`.
    pub fn new(
        subject: &'a str,
        scopes: &'a [String],
        issuer: &'a str,
        audience: &'a str,
        lifetime: Duration,
    ) -> Self {
        TokenRequest {
            subject,
            scopes,
            issuer,
            audience,
            expires_in_secs: i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
            not_before_offset_secs: 0,
        }
    }
}

/// A new key pair: the private key's PEM, to keep secret, and its public key as a JWK,
/// for the fleet's key set.
pub struct GeneratedKey {
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_key_pem: String,
    /// The public key as a JWK: `kty` OKP, `crv` Ed25519, `x`, `kid`, `alg` EdDSA, `use`
    /// sig.
    pub public_jwk: serde_json::Value,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GeneratedKey")
            .field("public_jwk", &self.public_jwk)
            .finish_non_exhaustive()
    }
}

/// A new Ed25519 key pair named `kid`, from the system's random source (ring's).
pub fn generate_ed25519_key(kid: &str) -> Result<GeneratedKey, String> {
    let random = ring::rand::SystemRandom::new();
    let document = ring::signature::Ed25519KeyPair::generate_pkcs8(&random)
        .map_err(|_| "the system's random source failed".to_owned())?;
    // ring writes PKCS#8 v2 (the public key after the seed); jsonwebtoken reads v1. The
    // seed is the same 32 bytes in both.
    let bytes = document.as_ref();
    let seed = bytes
        .strip_prefix(&ED25519_PKCS8_V2_PREFIX)
        .and_then(|rest| rest.get(..32))
        .ok_or_else(|| "ring wrote an Ed25519 key of an unexpected form".to_owned())?;
    let mut der = ED25519_PKCS8_V1_PREFIX.to_vec();
    der.extend_from_slice(seed);
    let key = EncodingKey::from_ed_der(&der);
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA)
        .map_err(|error| format!("cannot make the public key: {error}"))?;
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    let public_jwk =
        serde_json::to_value(&jwk).map_err(|error| format!("cannot write the JWK: {error}"))?;
    Ok(GeneratedKey {
        private_key_pem: pem("PRIVATE KEY", &der),
        public_jwk,
    })
}

/// `der` as PEM text with `label`, 64 characters a line (RFC 7468).
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_signs_tokens_its_jwk_verifies() {
        let generated = generate_ed25519_key("k1").expect("a key pair");
        assert!(
            generated
                .private_key_pem
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        assert_eq!(generated.public_jwk["kid"], "k1");
        assert_eq!(generated.public_jwk["alg"], "EdDSA");
        assert_eq!(generated.public_jwk["crv"], "Ed25519");
        assert!(generated.public_jwk.get("d").is_none(), "public only");
        let key = SigningKey::from_pem(generated.private_key_pem.as_bytes(), "k1")
            .expect("the PEM reads back");
        assert_eq!(key.algorithm(), Algorithm::EdDSA);
        assert!(!format!("{key:?}").contains("PRIVATE"));
        let scopes = ["tally:write".to_owned()];
        let token = key
            .issue(&TokenRequest::new(
                "alice",
                &scopes,
                "warren-dev",
                "warren",
                Duration::from_secs(60),
            ))
            .expect("a token");
        let jwk: Jwk = serde_json::from_value(generated.public_jwk).expect("a JWK");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["warren"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            token.as_str(),
            &jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("a decoding key"),
            &validation,
        )
        .expect("verifies");
        assert_eq!(data.header.kid.as_deref(), Some("k1"));
        assert_eq!(data.claims["sub"], "alice");
        assert_eq!(data.claims["scope"], "tally:write");
        // Two keys are two keys.
        let other = generate_ed25519_key("k2").expect("another");
        assert_ne!(other.public_jwk["x"], jwk_x(&jwk));
        assert!(SigningKey::from_pem(b"not a key", "k").is_err());
        assert!(SigningKey::from_pem(generated.private_key_pem.as_bytes(), "").is_err());
    }

    fn jwk_x(jwk: &Jwk) -> serde_json::Value {
        serde_json::to_value(jwk).expect("JSON")["x"].clone()
    }
}
