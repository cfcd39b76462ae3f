//! The public keys a worker trusts: a JWKS (RFC 7517) read from a file, each key with
//! the one algorithm it verifies.
//!
//! Only signature keys with a public-key algorithm are accepted: Ed25519 (`kty: OKP`,
//! `crv: Ed25519`, alg `EdDSA`) and RSA of at least 2048 bits (`kty: RSA`, alg `RS256`).
//! A symmetric key (`kty: oct`), a private key (`d`), a key for encryption (`use: enc`),
//! a key without a `kid`, and two keys with one `kid` make the whole set refused: a key
//! set is small and written by hand or by `warren token keygen`, so a surprise in it is a
//! mistake to report, not to skip.

use std::collections::HashMap;
use std::path::Path;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};

/// The longest `kid` accepted, in bytes.
const MAX_KEY_ID_BYTES: usize = 64;

/// The fewest bytes of an RSA modulus accepted (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// One trusted key: what it verifies with, and the only algorithm it verifies.
#[derive(Clone)]
pub(crate) struct TrustedKey {
    pub(crate) algorithm: Algorithm,
    pub(crate) decoding_key: DecodingKey,
}

/// The public keys trusted, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, TrustedKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KeySet")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

impl KeySet {
    /// The key set of the JWKS file `path`. The error names the path and what is wrong,
    /// never a key's content.
    pub fn read(path: &Path) -> Result<KeySet, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        KeySet::parse(&text).map_err(|error| format!("{}: {error}", path.display()))
    }

    /// The key set of a JWKS document (`{"keys": [...]}`).
    pub fn parse(jwks: &str) -> Result<KeySet, String> {
        let document: serde_json::Value =
            serde_json::from_str(jwks).map_err(|error| format!("not JSON: {error}"))?;
        let Some(keys) = document.get("keys").and_then(serde_json::Value::as_array) else {
            return Err("not a JWKS: no \"keys\" array".to_owned());
        };
        let mut set = KeySet::default();
        for (index, key) in keys.iter().enumerate() {
            let (kid, trusted) =
                trusted_key(key).map_err(|error| format!("key {index}: {error}"))?;
            if set.keys.insert(kid.clone(), trusted).is_some() {
                return Err(format!("two keys have the kid {kid:?}"));
            }
        }
        if set.keys.is_empty() {
            return Err("the key set holds no key".to_owned());
        }
        Ok(set)
    }

    /// The key `kid`, if trusted.
    pub(crate) fn get(&self, kid: &str) -> Option<&TrustedKey> {
        self.keys.get(kid)
    }

    /// Every `kid`, sorted: what a log line says of the set.
    pub fn key_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds none (a parsed set never does).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One JWK as a trusted key, with its `kid`.
fn trusted_key(key: &serde_json::Value) -> Result<(String, TrustedKey), String> {
    let text = |name: &str| key.get(name).and_then(serde_json::Value::as_str);
    let kid = match key.get("kid") {
        None => return Err("it has no kid".to_owned()),
        Some(kid) => kid.as_str().ok_or("its kid is not a string")?,
    };
    if kid.is_empty() || kid.len() > MAX_KEY_ID_BYTES || kid.chars().any(char::is_control) {
        return Err("its kid is empty, longer than 64 bytes or holds a control character".into());
    }
    let refuse = |why: &str| Err(format!("{kid:?}: {why}"));
    if key.get("d").is_some() {
        return refuse("it holds a private key (d): a key set lists public keys only");
    }
    if let Some(public_key_use) = key.get("use")
        && public_key_use.as_str() != Some("sig")
    {
        return refuse("its use is not sig");
    }
    let alg = text("alg");
    let algorithm = match (text("kty"), text("crv"), alg) {
        (Some("oct"), _, _) => {
            return refuse(
                "it is a symmetric key (kty oct): shared secrets (HMAC) never verify tokens",
            );
        }
        (Some("OKP"), Some("Ed25519"), None | Some("EdDSA")) => Algorithm::EdDSA,
        (Some("RSA"), _, None | Some("RS256")) => Algorithm::RS256,
        (Some("OKP" | "RSA"), _, Some(other)) => {
            return refuse(&format!(
                "its alg {other:?} is not accepted (EdDSA for Ed25519, RS256 for RSA)"
            ));
        }
        (kty, crv, _) => {
            return refuse(&format!(
                "its key type {:?} (curve {:?}) is not accepted: Ed25519 (OKP) or RSA",
                kty.unwrap_or("none"),
                crv.unwrap_or("none")
            ));
        }
    };
    let jwk: Jwk = serde_json::from_value(key.clone())
        .map_err(|error| format!("{kid:?}: not a valid JWK: {error}"))?;
    let decoding_key = DecodingKey::from_jwk(&jwk)
        .map_err(|error| format!("{kid:?}: its key cannot be read: {error}"))?;
    // The verifiers take the key's bytes as they are (jsonwebtoken's EdDSA one slices
    // the first 32): a key of the wrong size is refused here, not met per message.
    let size_ok = match (algorithm, decoding_key.kind()) {
        (Algorithm::EdDSA, jsonwebtoken::DecodingKeyKind::SecretOrDer(bytes)) => bytes.len() == 32,
        (Algorithm::RS256, jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, e }) => {
            n.len() >= MIN_RSA_MODULUS_BYTES && !e.is_empty()
        }
        _ => false,
    };
    if !size_ok {
        return refuse(
            "its public key is not 32 bytes (Ed25519) or its modulus is under 2048 bits (RSA)",
        );
    }
    // A key the crypto cannot take (not a point of the curve, say) fails to make a
    // verifier; a valid one merely finds this empty signature wrong.
    let empty_signature = "A".repeat(if algorithm == Algorithm::EdDSA {
        86
    } else {
        342
    });
    if jsonwebtoken::crypto::verify(&empty_signature, b"", &decoding_key, algorithm).is_err() {
        return refuse("its public key is not a valid key for its algorithm");
    }
    Ok((
        kid.to_owned(),
        TrustedKey {
            algorithm,
            decoding_key,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real Ed25519 public key's `x` (32 bytes).
    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn ed(kid: &str) -> serde_json::Value {
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": X, "kid": kid, "alg": "EdDSA", "use": "sig"})
    }

    fn parse(keys: Vec<serde_json::Value>) -> Result<KeySet, String> {
        KeySet::parse(&serde_json::json!({ "keys": keys }).to_string())
    }

    #[test]
    fn ed25519_keys_are_read_with_their_algorithm() {
        let set = parse(vec![ed("a"), ed("b")]).expect("a key set");
        assert_eq!(set.key_ids(), ["a", "b"]);
        assert_eq!(
            set.get("a").map(|key| key.algorithm),
            Some(Algorithm::EdDSA)
        );
        assert!(set.get("c").is_none());
        let mut no_alg = ed("c");
        no_alg.as_object_mut().expect("object").remove("alg");
        assert_eq!(parse(vec![no_alg]).expect("alg may be left out").len(), 1);
    }

    #[test]
    fn surprises_in_a_key_set_refuse_it_whole() {
        let with = |name: &str, value: serde_json::Value| {
            let mut key = ed("k");
            key[name] = value;
            key
        };
        let mut no_kid = ed("k");
        no_kid.as_object_mut().expect("object").remove("kid");
        for (keys, expected) in [
            (vec![], "no key"),
            (vec![ed("k"), ed("k")], "two keys"),
            (vec![no_kid], "no kid"),
            (vec![with("kid", serde_json::json!(""))], "kid is empty"),
            (vec![with("d", serde_json::json!(X))], "private key"),
            (
                vec![with("use", serde_json::json!("enc"))],
                "use is not sig",
            ),
            (
                vec![with("alg", serde_json::json!("HS256"))],
                "not accepted",
            ),
            (vec![with("alg", serde_json::json!("none"))], "not accepted"),
            (
                vec![serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "k"})],
                "symmetric",
            ),
            (
                vec![serde_json::json!({"kty": "EC", "crv": "P-256", "x": X, "y": X, "kid": "k"})],
                "not accepted",
            ),
            (vec![with("x", serde_json::json!("AAAA"))], "not 32 bytes"),
            (
                vec![serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "k"})],
                "2048",
            ),
        ] {
            let error = parse(keys.clone()).expect_err("refused");
            assert!(error.contains(expected), "{keys:?}: {error}");
        }
        for not_a_set in ["", "[]", r#"{"keys": 1}"#] {
            assert!(KeySet::parse(not_a_set).is_err(), "{not_a_set}");
        }
    }
}
