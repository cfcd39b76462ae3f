//! Every way a token can be wrong, the good one, a key rollover and a reload of the key
//! set's file, against a key set in a file of the test's own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::auth::{GeneratedKey, SigningKey, TokenRequest, generate_ed25519_key};

const ADD: &str = "dev.warren.tally.add.v1";
const GET: &str = "dev.warren.tally.get.v1";

/// A key set file of the test's own, its keys, and a verifier of it.
struct Fixture {
    folder: PathBuf,
    keys: BTreeMap<&'static str, GeneratedKey>,
    settings: AuthSettings,
}

impl Fixture {
    /// Keys `k1` and `k2` (and `outsider`, never in the set); the set holds `in_set`.
    fn new(in_set: &[&str]) -> Fixture {
        let folder = std::env::temp_dir().join(format!("warren-auth-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&folder).expect("a temp folder");
        let keys: BTreeMap<&'static str, GeneratedKey> = ["k1", "k2", "outsider"]
            .into_iter()
            .map(|kid| (kid, generate_ed25519_key(kid).expect("a key")))
            .collect();
        let settings = AuthSettings {
            required: true,
            issuer: "warren-dev".to_owned(),
            audience: "warren".to_owned(),
            keys_file: folder.join("jwks.json"),
            leeway_secs: 30,
            scopes: BTreeMap::from([(ADD.to_owned(), "tally:write".to_owned())]),
        };
        let fixture = Fixture {
            folder,
            keys,
            settings,
        };
        fixture.write_key_set(in_set);
        fixture
    }

    /// Replaces the key set's file with one holding `kids` (written aside, then renamed
    /// over it, as an operator should).
    fn write_key_set(&self, kids: &[&str]) {
        let keys: Vec<&Value> = kids.iter().map(|kid| &self.keys[kid].public_jwk).collect();
        self.write_file(&json!({ "keys": keys }).to_string());
    }

    fn write_file(&self, text: &str) {
        let aside = self.folder.join("jwks.json.new");
        std::fs::write(&aside, text).expect("the new key set");
        std::fs::rename(&aside, &self.settings.keys_file).expect("renamed over");
    }

    /// A verifier that looks at the file on every message.
    fn verifier(&self) -> Verifier {
        Verifier::with_check_interval(&self.settings, &[ADD, GET], Duration::ZERO)
            .expect("a verifier")
    }

    fn signing_key(&self, kid: &'static str) -> SigningKey {
        SigningKey::from_pem(self.keys[kid].private_key_pem.as_bytes(), kid).expect("a key")
    }

    /// A token of `kid` for `alice` with `scopes`, valid for a minute, changed by
    /// `change`.
    fn token_with(
        &self,
        kid: &'static str,
        scopes: &[&str],
        change: impl FnOnce(&mut TokenRequest<'_>),
    ) -> String {
        let scopes: Vec<String> = scopes.iter().map(|scope| (*scope).to_owned()).collect();
        let mut request = TokenRequest::new(
            "alice",
            &scopes,
            "warren-dev",
            "warren",
            Duration::from_secs(60),
        );
        change(&mut request);
        self.signing_key(kid)
            .issue(&request)
            .expect("a token")
            .as_str()
            .to_owned()
    }

    fn token(&self, kid: &'static str, scopes: &[&str]) -> String {
        self.token_with(kid, scopes, |_| {})
    }

    /// Good claims for `alice`, as JSON.
    fn claims(&self) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({"iss": "warren-dev", "sub": "alice", "aud": "warren", "exp": now + 60,
               "scope": "tally:write"})
    }

    /// The raw 32 bytes of `kid`'s public key.
    fn public_key_bytes(&self, kid: &str) -> Vec<u8> {
        let x = self.keys[kid].public_jwk["x"].as_str().expect("x");
        URL_SAFE_NO_PAD.decode(x).expect("base64url")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// A compact token of `header` and `claims` with `signature` as it is.
fn compact(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// The reason `verifier` refuses `token` for a message of `message_type`.
fn reason(verifier: &Verifier, token: Option<&str>, message_type: &str) -> &'static str {
    match verifier.verify(token, message_type) {
        Ok(claims) => panic!("accepted, as {claims:?}"),
        Err(error) => {
            // No error quotes the token.
            if let Some(token) = token.filter(|token| token.len() > 20) {
                assert!(!error.to_string().contains(token), "{error}");
            }
            error.reason_code()
        }
    }
}

#[test]
fn a_good_token_gives_the_handler_its_claims() {
    let fixture = Fixture::new(&["k1"]);
    let verifier = fixture.verifier();
    let token = fixture.token("k1", &["tally:write", "tally:read"]);
    let claims = verifier.verify(Some(&token), ADD).expect("accepted");
    assert_eq!(claims.subject, "alice");
    assert_eq!(claims.scopes, ["tally:write", "tally:read"]);
    assert_eq!(
        (claims.issuer.as_str(), claims.key_id.as_str()),
        ("warren-dev", "k1")
    );
    // A type that requires no scope takes any valid token.
    let unscoped = fixture.token("k1", &[]);
    assert!(verifier.verify(Some(&unscoped), GET).is_ok());
    // Within the leeway of its expiry, a token is still good.
    let just_expired = fixture.token_with("k1", &["tally:write"], |request| {
        request.expires_in_secs = -10;
    });
    assert!(verifier.verify(Some(&just_expired), ADD).is_ok());
    assert_eq!(verifier.key_ids(), ["k1"]);
    assert_eq!(
        verifier.scopes().get(ADD).map(String::as_str),
        Some("tally:write")
    );
}

#[test]
fn every_bad_token_is_refused_with_its_reason() {
    let fixture = Fixture::new(&["k1"]);
    let verifier = fixture.verifier();
    let good = fixture.token("k1", &["tally:write"]);
    let good_signature = good.rsplit('.').next().expect("a signature").to_owned();
    let claims = fixture.claims();
    let hmac_with = |secret: &[u8], alg: jsonwebtoken::Algorithm| {
        let mut header = Header::new(alg);
        header.kid = Some("k1".to_owned());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(secret).expect("a key"),
        )
        .expect("an HMAC token")
    };
    let jwks_text = std::fs::read(&fixture.settings.keys_file).expect("the key set");
    let public_key = fixture.public_key_bytes("k1");
    let signed_by = |kid: &'static str, as_kid: &'static str| {
        let mut request_claims = claims.clone();
        request_claims["jti"] = json!("x");
        let signing = SigningKey::from_pem(fixture.keys[kid].private_key_pem.as_bytes(), as_kid)
            .expect("a key");
        signing
            .issue(&TokenRequest::new(
                "alice",
                &["tally:write".to_owned()],
                "warren-dev",
                "warren",
                Duration::from_secs(60),
            ))
            .expect("a token")
            .as_str()
            .to_owned()
    };
    let mut without_sub = claims.clone();
    without_sub.as_object_mut().expect("object").remove("sub");
    let unsigned_claims = claims.clone();
    let cases: Vec<(&str, Option<String>, &str, &str)> = vec![
        ("no token", None, ADD, "token_missing"),
        (
            "not a JWT",
            Some("not-a-token".into()),
            ADD,
            "token_malformed",
        ),
        (
            "a header that is not JSON",
            Some(format!("bm9wZQ.{good_signature}.{good_signature}")),
            ADD,
            "token_malformed",
        ),
        (
            "alg none",
            Some(compact(
                &json!({"alg": "none", "kid": "k1"}),
                &unsigned_claims,
                "",
            )),
            ADD,
            "token_unsigned",
        ),
        (
            "alg None, signed",
            Some(compact(
                &json!({"alg": "None", "kid": "k1"}),
                &unsigned_claims,
                &good_signature,
            )),
            ADD,
            "token_unsigned",
        ),
        (
            "HS256 with the public key's bytes as the secret",
            Some(hmac_with(&public_key, jsonwebtoken::Algorithm::HS256)),
            ADD,
            "token_shared_secret",
        ),
        (
            "HS256 with the key set's text as the secret",
            Some(hmac_with(&jwks_text, jsonwebtoken::Algorithm::HS256)),
            ADD,
            "token_shared_secret",
        ),
        (
            "HS512",
            Some(hmac_with(&public_key, jsonwebtoken::Algorithm::HS512)),
            ADD,
            "token_shared_secret",
        ),
        (
            "an RS256 header on an Ed25519 key",
            Some(compact(
                &json!({"alg": "RS256", "kid": "k1"}),
                &claims,
                &good_signature,
            )),
            ADD,
            "token_wrong_algorithm",
        ),
        (
            "a bad signature (another key's, under k1)",
            Some(signed_by("outsider", "k1")),
            ADD,
            "token_bad_signature",
        ),
        (
            "a good signature over other claims",
            Some(compact(
                &json!({"alg": "EdDSA", "kid": "k1"}),
                &claims,
                &good_signature,
            )),
            ADD,
            "token_bad_signature",
        ),
        (
            "an unknown kid",
            Some(signed_by("outsider", "outsider")),
            ADD,
            "token_unknown_key",
        ),
        (
            "no kid",
            Some(compact(&json!({"alg": "EdDSA"}), &claims, &good_signature)),
            ADD,
            "token_unknown_key",
        ),
        (
            "the wrong audience",
            Some(fixture.token_with("k1", &["tally:write"], |request| {
                request.audience = "another-fleet"
            })),
            ADD,
            "token_wrong_audience",
        ),
        (
            "the wrong issuer",
            Some(fixture.token_with("k1", &["tally:write"], |request| request.issuer = "mallory")),
            ADD,
            "token_wrong_issuer",
        ),
        (
            "expired, beyond the leeway",
            Some(fixture.token_with("k1", &["tally:write"], |request| {
                request.expires_in_secs = -120
            })),
            ADD,
            "token_expired",
        ),
        (
            "not valid yet, beyond the leeway",
            Some(fixture.token_with("k1", &["tally:write"], |request| {
                request.not_before_offset_secs = 120;
                request.expires_in_secs = 600;
            })),
            ADD,
            "token_not_yet_valid",
        ),
        (
            "no subject",
            Some({
                let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
                header.kid = Some("k1".to_owned());
                let key = EncodingKey::from_ed_pem(fixture.keys["k1"].private_key_pem.as_bytes())
                    .expect("a key");
                jsonwebtoken::encode(&header, &without_sub, &key).expect("a token")
            }),
            ADD,
            "token_invalid_claims",
        ),
        (
            "a scope the type requires, lacking",
            Some(fixture.token("k1", &["tally:read"])),
            ADD,
            "token_missing_scope",
        ),
    ];
    for (case, token, message_type, expected) in &cases {
        assert_eq!(
            reason(&verifier, token.as_deref(), message_type),
            *expected,
            "{case}"
        );
    }
    // Refusals are not remembered: each is verified again, and refused again.
    for (case, token, message_type, expected) in &cases {
        assert_eq!(
            reason(&verifier, token.as_deref(), message_type),
            *expected,
            "{case}, again"
        );
    }
    // And the good token still passes.
    assert!(verifier.verify(Some(&good), ADD).is_ok());
}

#[test]
fn a_verified_token_is_kept_until_it_expires() {
    let fixture = Fixture::new(&["k1"]);
    let verifier = fixture.verifier();
    let token = fixture.token("k1", &["tally:write"]);
    let first = verifier.verify(Some(&token), ADD).expect("accepted");
    let second = verifier.verify(Some(&token), GET).expect("accepted again");
    assert!(Arc::ptr_eq(&first, &second), "verified once");
    // The scope is checked on every message, cached or not.
    assert_eq!(
        verifier
            .verify(Some(&fixture.token("k1", &[])), ADD)
            .map(|_| ()),
        Err(TokenError::MissingScope {
            scope: "tally:write".to_owned(),
            message_type: ADD.to_owned()
        })
    );
    // An entry past its expiry is dropped and the token verified again.
    let keys = Arc::clone(&verifier.lock().keys);
    let mut stale = (*first).clone();
    stale.expires_at = 1;
    verifier.remember(&token, &Arc::new(stale), &keys, 1_000);
    let third = verifier.verify(Some(&token), ADD).expect("verified again");
    assert!(!Arc::ptr_eq(&first, &third) && third.expires_at > 1);
    // The cache is bounded.
    let now = jsonwebtoken::get_current_timestamp();
    for n in 0..=CACHE_CAPACITY {
        verifier.remember(&format!("t{n}"), &first, &keys, now);
    }
    assert!(verifier.lock().verified.len() <= CACHE_CAPACITY);
}

#[test]
fn a_rollover_keeps_two_keys_valid_then_retires_the_old_one() {
    let fixture = Fixture::new(&["k1"]);
    let verifier = fixture.verifier();
    let old = fixture.token("k1", &["tally:write"]);
    assert!(verifier.verify(Some(&old), ADD).is_ok());
    // 1. The new key is added beside the old one: both verify.
    fixture.write_key_set(&["k1", "k2"]);
    let new = fixture.token("k2", &["tally:write"]);
    assert!(
        verifier.verify(Some(&old), ADD).is_ok(),
        "the old key, during the rollover"
    );
    assert!(verifier.verify(Some(&new), ADD).is_ok(), "the new key");
    assert_eq!(verifier.key_ids(), ["k1", "k2"]);
    // 2. The old key is removed: its tokens, verified and kept before, are refused now.
    fixture.write_key_set(&["k2"]);
    assert_eq!(reason(&verifier, Some(&old), ADD), "token_unknown_key");
    assert!(verifier.verify(Some(&new), ADD).is_ok());
}

#[test]
fn a_key_set_file_that_breaks_is_reported_and_the_keys_in_use_kept() {
    let fixture = Fixture::new(&["k1"]);
    let verifier = fixture.verifier();
    let token = fixture.token("k1", &["tally:write"]);
    for broken in ["{not json", r#"{"keys": []}"#] {
        fixture.write_file(broken);
        assert!(verifier.verify(Some(&token), ADD).is_ok(), "{broken}");
        assert_eq!(verifier.key_ids(), ["k1"]);
    }
    std::fs::remove_file(&fixture.settings.keys_file).expect("removed");
    assert!(verifier.verify(Some(&token), ADD).is_ok(), "a missing file");
    // Once the file holds a valid set again, it is the one used.
    fixture.write_key_set(&["k2"]);
    assert_eq!(reason(&verifier, Some(&token), ADD), "token_unknown_key");
    assert_eq!(verifier.key_ids(), ["k2"]);
}

#[test]
fn the_file_is_looked_at_no_more_often_than_the_interval() {
    let fixture = Fixture::new(&["k1"]);
    let verifier =
        Verifier::with_check_interval(&fixture.settings, &[ADD], Duration::from_secs(3600))
            .expect("a verifier");
    let token = fixture.token("k1", &["tally:write"]);
    fixture.write_key_set(&["k2"]);
    // Within the interval, the set read at the start is the one used.
    assert!(verifier.verify(Some(&token), ADD).is_ok());
    assert_eq!(verifier.key_ids(), ["k1"]);
}

#[test]
fn a_verifier_needs_a_readable_key_set() {
    let fixture = Fixture::new(&["k1"]);
    fixture.write_file("[]");
    let error = Verifier::new(&fixture.settings, &[ADD]).expect_err("no key set");
    assert!(error.contains("jwks.json"), "{error}");
}

/// An RSA key of 2048 bits made for this test alone (`openssl genpkey -algorithm RSA`):
/// never trusted anywhere.
const TEST_RSA_KEY: &str = include_str!("test-rsa-key.pem");

#[test]
fn an_rsa_key_verifies_rs256_tokens_and_nothing_else() {
    let fixture = Fixture::new(&["k1"]);
    let encoding = EncodingKey::from_rsa_pem(TEST_RSA_KEY.as_bytes()).expect("an RSA key");
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::RS256)
            .expect("its public JWK");
    jwk.common.key_id = Some("rsa".to_owned());
    let ed = &fixture.keys["k1"].public_jwk;
    fixture.write_file(&json!({ "keys": [ed, jwk] }).to_string());
    let verifier = fixture.verifier();
    let signing = SigningKey::from_pem(TEST_RSA_KEY.as_bytes(), "rsa").expect("a signing key");
    assert_eq!(signing.algorithm(), jsonwebtoken::Algorithm::RS256);
    let scopes = ["tally:write".to_owned()];
    let token = signing
        .issue(&TokenRequest::new(
            "svc",
            &scopes,
            "warren-dev",
            "warren",
            Duration::from_secs(60),
        ))
        .expect("a token");
    let claims = verifier
        .verify(Some(token.as_str()), ADD)
        .expect("accepted");
    assert_eq!(
        (claims.subject.as_str(), claims.key_id.as_str()),
        ("svc", "rsa")
    );
    // The RSA key under another RSA algorithm, and the Ed25519 key named by an RS256
    // token, are refused before any signature is checked.
    let claims = fixture.claims();
    let signature = token.as_str().rsplit('.').next().expect("a signature");
    for (header, expected) in [
        (
            json!({"alg": "RS512", "kid": "rsa"}),
            "token_wrong_algorithm",
        ),
        (
            json!({"alg": "PS256", "kid": "rsa"}),
            "token_wrong_algorithm",
        ),
        (
            json!({"alg": "RS256", "kid": "k1"}),
            "token_wrong_algorithm",
        ),
        (json!({"alg": "HS256", "kid": "rsa"}), "token_shared_secret"),
    ] {
        let forged = compact(&header, &claims, signature);
        assert_eq!(reason(&verifier, Some(&forged), ADD), expected, "{header}");
    }
}
