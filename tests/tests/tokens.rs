//! Tokens on messages (docs/security.md, "Tokens"), end to end: workers started with
//! `auth.required` (`WARREN_AUTH__REQUIRED`, `WARREN_AUTH__KEYS_FILE`), each in a vhost
//! of its own, with key sets made by `warren token keygen`.
//!
//! Every bad token is published straight to the broker with a bare AMQP client of the
//! test's own ([`RawPublisher`]), never through warren's publisher, and signed (or not)
//! by the test itself with `jsonwebtoken`, never by warren's issuer. For each, the same is
//! asserted: the message is in the DLQ with its reason and without its token, the sender
//! gets the fault `unauthorized`, the tally total is what it was, and the worker, the same
//! process, serves the next good message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use warren_e2e::raw_amqp::{PublishAnswer, RawProperties, RawPublisher, RawValue};
use warren_e2e::replies::ReplyQueueLifetime;
use warren_e2e::repository::repository_root;
use warren_e2e::{
    BrokerClient, MESSAGE_TIMEOUT, ReplyQueue, StoreFolder, TALLY_DLQ, Vhost, WarrenProcess,
    attribute,
};

const TALLY_ADD: &str = "dev.warren.tally.add.v1";
const TALLY_ADDED: &str = "dev.warren.tally.added.v1";
const TALLY_GET: &str = "dev.warren.tally.get.v1";
const FAULT: &str = "dev.warren.fault.v1";
const COMMANDS: &str = "warren.commands";
const TOKEN_HEADER: &str = "x-warren-token";

/// The shared broker's AMQP port.
const BROKER_PORT: u16 = 5672;

/// The order pipeline's workers.
const PIPELINE: [&str; 4] = ["orders", "inventory", "payments", "shipping"];

/// Key sets of the test's own, made with `warren token keygen` in a folder removed at
/// the end: `keys/jwks.json` (the workers' set) trusts `current`; `retired` was in it and
/// was taken out with `warren token retire`; `stranger` (in `elsewhere/`) never was.
struct Keys {
    folder: PathBuf,
}

impl Keys {
    async fn make(vhost: &Vhost) -> Keys {
        let folder = std::env::temp_dir().join(format!("warren-tokens-{}", uuid::Uuid::new_v4()));
        let keys = folder.join("keys");
        let elsewhere = folder.join("elsewhere");
        for (out, kid) in [
            (&keys, "current"),
            (&keys, "retired"),
            (&elsewhere, "stranger"),
        ] {
            let made = vhost
                .warren(&["token", "keygen", "--out", path_text(out), "--kid", kid])
                .await;
            assert_eq!(made.code(), Some(0), "keygen {kid}: {}", made.stderr);
        }
        let jwks = keys.join("jwks.json");
        let retired = vhost
            .warren(&[
                "token",
                "retire",
                "--keys-file",
                path_text(&jwks),
                "--kid",
                "retired",
            ])
            .await;
        assert_eq!(retired.code(), Some(0), "retire: {}", retired.stderr);
        Keys { folder }
    }

    /// The workers' key set.
    fn key_set(&self) -> PathBuf {
        self.folder.join("keys/jwks.json")
    }

    /// The private key file of `kid`.
    fn private_key(&self, kid: &str) -> PathBuf {
        let folder = if kid == "stranger" {
            "elsewhere"
        } else {
            "keys"
        };
        self.folder.join(folder).join(format!("{kid}.pem"))
    }

    /// `claims` signed with the private key of `signer` (EdDSA), `kid` in the header.
    fn sign(&self, signer: &str, kid: Option<&str>, claims: &Value) -> String {
        let pem = std::fs::read(self.private_key(signer)).expect("the private key");
        let key = EncodingKey::from_ed_pem(&pem).expect("an Ed25519 key");
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &key).expect("a signed token")
    }

    /// A good token of `current` for alice with `scope`.
    fn good(&self, scope: &str) -> String {
        self.sign(
            "current",
            Some("current"),
            &claims(json!({ "scope": scope })),
        )
    }

    /// The raw 32 bytes of `current`'s public key, from the key set.
    fn public_key_bytes(&self) -> Vec<u8> {
        let text = std::fs::read_to_string(self.key_set()).expect("the key set");
        let set: Value = serde_json::from_str(&text).expect("JSON");
        let x = set["keys"][0]["x"].as_str().expect("x");
        URL_SAFE_NO_PAD.decode(x).expect("base64url")
    }

    /// The environment of a worker that requires tokens verified with the key set.
    fn worker_env(&self) -> [(&'static str, String); 2] {
        [
            ("WARREN_AUTH__REQUIRED", "true".to_owned()),
            (
                "WARREN_AUTH__KEYS_FILE",
                path_text(&self.key_set()).to_owned(),
            ),
        ]
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Good claims for alice, valid for ten minutes, with `overrides` over them (a JSON
/// `null` removes one).
fn claims(overrides: Value) -> Value {
    let now = jiff::Timestamp::now().as_second();
    let mut claims = json!({
        "iss": "warren-dev", "sub": "alice", "aud": "warren",
        "iat": now, "nbf": now, "exp": now + 600, "scope": "tally:write",
    });
    let object = claims.as_object_mut().expect("an object");
    for (name, value) in overrides.as_object().expect("overrides are an object") {
        if value.is_null() {
            object.remove(name);
        } else {
            object.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// A compact token of `header` and `claims` with `signature` as it is.
fn compact(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// What a message carries in its `x-warren-token` header.
#[derive(Debug, Clone)]
enum TokenHeader {
    /// No such header.
    Absent,
    /// This text.
    Text(String),
    /// An integer, not a string.
    Integer,
}

/// `warren-tally` requiring tokens in a vhost of its own, a connection and a reply queue
/// of the test's, and a bare publisher. Dropped in order: the worker before the store
/// folder, the keys and the vhost.
struct SecureTally {
    tally: WarrenProcess,
    tally_pid: u32,
    broker: BrokerClient,
    replies: ReplyQueue,
    raw: RawPublisher,
    _store: StoreFolder,
    keys: Keys,
    vhost: Vhost,
}

impl SecureTally {
    async fn start() -> SecureTally {
        let vhost = Vhost::create().await;
        let keys = Keys::make(&vhost).await;
        let store = StoreFolder::new();
        let env = keys.worker_env();
        let mut tally = vhost.worker("warren-tally").store(&store);
        for (name, value) in &env {
            tally = tally.env(name, value);
        }
        let tally = tally.start().await;
        let broker = vhost.connect().await;
        // Alice's: with tokens required, outcomes go only to the subject's reply queues.
        let replies =
            ReplyQueue::declare_owned(&broker, "alice", ReplyQueueLifetime::Connection).await;
        let raw = RawPublisher::connect(BROKER_PORT, vhost.name()).await;
        SecureTally {
            tally_pid: tally.pid(),
            tally,
            broker,
            replies,
            raw,
            _store: store,
            keys,
            vhost,
        }
    }

    /// Publishes, through the bare client, a structured-mode `message_type` with
    /// `data`, replying to the test's queue, with `token`; returns its id and body.
    async fn send(
        &mut self,
        message_type: &str,
        data: Value,
        token: &TokenHeader,
    ) -> (String, Vec<u8>) {
        let id = uuid::Uuid::now_v7().to_string();
        let body = serde_json::to_vec(&json!({
            "specversion": "1.0",
            "id": id,
            "source": "/test/tokens",
            "type": message_type,
            "replyto": self.replies.name(),
            "data": data,
        }))
        .expect("JSON");
        let header = match token {
            TokenHeader::Absent => None,
            TokenHeader::Text(text) => Some(RawValue::text(text)),
            TokenHeader::Integer => Some(RawValue::LongLong(42)),
        };
        let properties = RawProperties {
            headers: header.map(|value| vec![(TOKEN_HEADER.as_bytes().to_vec(), value)]),
            ..RawProperties::structured()
        };
        let answer = self
            .raw
            .publish(COMMANDS, message_type, &properties, &body)
            .await;
        assert_eq!(answer, PublishAnswer::Acked, "the broker took the message");
        (id, body)
    }

    /// The next outcome, which must answer the request `id`.
    async fn outcome_of(&self, id: &str) -> Value {
        let outcome = self
            .replies
            .next_within(&self.broker, MESSAGE_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("no outcome for {id} within {MESSAGE_TIMEOUT:?}"));
        assert_eq!(attribute(&outcome, "correlationid"), Some(id), "{outcome}");
        outcome
    }

    /// Adds `amount` to `key` with a good token, and returns the new total.
    async fn add(&mut self, key: &str, amount: i64) -> i64 {
        let token = TokenHeader::Text(self.keys.good("tally:write"));
        let (id, _) = self
            .send(TALLY_ADD, json!({ "key": key, "amount": amount }), &token)
            .await;
        let outcome = self.outcome_of(&id).await;
        assert_eq!(attribute(&outcome, "type"), Some(TALLY_ADDED), "{outcome}");
        outcome["data"]["total"].as_i64().expect("a total")
    }

    /// The total of `key`, asked with a good token that has no scope (the type requires
    /// none): the worker is serving.
    async fn total(&mut self, key: &str) -> i64 {
        let token = TokenHeader::Text(self.keys.good(""));
        let (id, _) = self.send(TALLY_GET, json!({ "key": key }), &token).await;
        let outcome = self.outcome_of(&id).await;
        outcome["data"]["total"]
            .as_i64()
            .unwrap_or_else(|| panic!("a total: {outcome}"))
    }

    /// The worker is the process it was, with no session lost.
    fn assert_same_process(&mut self) {
        assert_eq!(self.tally.pid(), self.tally_pid);
        assert!(self.tally.try_exit_status().is_none(), "the worker exited");
        assert_eq!(self.tally.count_lines_with(&["session lost"]), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_is_dead_lettered_faulted_and_changes_nothing() {
    let mut fleet = SecureTally::start().await;
    // A good token with the scope the type requires: handled.
    assert_eq!(fleet.add("victim", 5).await, 5);

    let keys = &fleet.keys;
    let good = keys.good("tally:write");
    let good_signature = good.rsplit('.').next().expect("a signature").to_owned();
    let hmac = |secret: &[u8]| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("current".to_owned());
        jsonwebtoken::encode(
            &header,
            &claims(json!({})),
            &EncodingKey::from_secret(secret).expect("a key"),
        )
        .expect("an HMAC token")
    };
    let now = jiff::Timestamp::now().as_second();
    let text = TokenHeader::Text;
    let cases: Vec<(&str, TokenHeader, &str)> = vec![
        ("no token", TokenHeader::Absent, "token_missing"),
        (
            "not a JWT",
            text("not-a-token".to_owned()),
            "token_malformed",
        ),
        (
            "a header that is not a string",
            TokenHeader::Integer,
            "token_malformed",
        ),
        (
            "a bad signature: another key's, under the trusted kid",
            text(keys.sign("stranger", Some("current"), &claims(json!({})))),
            "token_bad_signature",
        ),
        (
            "a good signature over other claims",
            text(compact(
                &json!({"alg": "EdDSA", "kid": "current"}),
                &claims(json!({"sub": "mallory"})),
                &good_signature,
            )),
            "token_bad_signature",
        ),
        (
            "alg none",
            text(compact(
                &json!({"alg": "none", "kid": "current"}),
                &claims(json!({})),
                "",
            )),
            "token_unsigned",
        ),
        (
            "HS256 signed with the public key's bytes",
            text(hmac(&keys.public_key_bytes())),
            "token_shared_secret",
        ),
        (
            "HS256 signed with the key set's text",
            text(hmac(&std::fs::read(keys.key_set()).expect("the key set"))),
            "token_shared_secret",
        ),
        (
            "the wrong audience",
            text(keys.sign(
                "current",
                Some("current"),
                &claims(json!({"aud": "another-fleet"})),
            )),
            "token_wrong_audience",
        ),
        (
            "the wrong issuer",
            text(keys.sign(
                "current",
                Some("current"),
                &claims(json!({"iss": "mallory"})),
            )),
            "token_wrong_issuer",
        ),
        (
            "expired, beyond the leeway",
            text(keys.sign(
                "current",
                Some("current"),
                &claims(json!({"exp": now - 600, "iat": now - 1200, "nbf": now - 1200})),
            )),
            "token_expired",
        ),
        (
            "not valid yet (nbf), beyond the leeway",
            text(keys.sign(
                "current",
                Some("current"),
                &claims(json!({"nbf": now + 300})),
            )),
            "token_not_yet_valid",
        ),
        (
            "an unknown kid",
            text(keys.sign("stranger", Some("stranger"), &claims(json!({})))),
            "token_unknown_key",
        ),
        (
            "a key rotated out of the set (warren token retire)",
            text(keys.sign("retired", Some("retired"), &claims(json!({})))),
            "token_unknown_key",
        ),
        (
            "a scope the type requires, lacking",
            text(keys.sign(
                "current",
                Some("current"),
                &claims(json!({"scope": "tally:read"})),
            )),
            "token_missing_scope",
        ),
    ];
    let mut tokens_sent = vec![good];
    for (case, token, reason) in &cases {
        let (id, body) = fleet
            .send(TALLY_ADD, json!({ "key": "victim", "amount": 1000 }), token)
            .await;
        if let TokenHeader::Text(text) = token {
            tokens_sent.push(text.clone());
        }
        // Dead-lettered with its reason, its body unchanged, its token left out.
        let letter = fleet
            .broker
            .get_within(TALLY_DLQ, MESSAGE_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("{case}: no dead letter"));
        let headers = letter.headers_debug();
        assert_eq!(
            letter.header("x-warren-reason").as_deref(),
            Some(*reason),
            "{case}: {headers:?}"
        );
        assert!(
            letter
                .header("x-warren-error")
                .is_some_and(|error| !error.is_empty()),
            "{case}: {headers:?}"
        );
        assert!(
            headers
                .keys()
                .all(|name| !name.eq_ignore_ascii_case(TOKEN_HEADER)),
            "{case}: the dead letter kept the token: {headers:?}"
        );
        assert_eq!(
            letter.header("x-warren-token-subject"),
            None,
            "{case}: unverified"
        );
        assert!(
            letter.body == body,
            "{case}: the dead letter's body changed"
        );
        // The sender is told, with the fault `unauthorized`.
        let fault = fleet.outcome_of(&id).await;
        assert_eq!(attribute(&fault, "type"), Some(FAULT), "{case}: {fault}");
        assert_eq!(fault["data"]["code"], "unauthorized", "{case}: {fault}");
        assert_eq!(fault["data"]["stage"], "authorize", "{case}: {fault}");
        assert_eq!(fault["data"]["worker"], "tally", "{case}: {fault}");
        assert_eq!(fault["data"]["retryable"], false, "{case}: {fault}");
        // No side effect, and the worker serves the next good message.
        assert_eq!(fleet.total("victim").await, 5, "{case}: the total changed");
        fleet.assert_same_process();
    }
    // Refused for its data, from a verified sender: the dead letter names who sent it,
    // and still keeps no token.
    let token = TokenHeader::Text(fleet.keys.good("tally:write"));
    let (id, _) = fleet
        .send(TALLY_ADD, json!({ "key": "victim" }), &token)
        .await;
    let letter = fleet
        .broker
        .get_within(TALLY_DLQ, MESSAGE_TIMEOUT)
        .await
        .expect("a dead letter for bad data");
    assert_eq!(
        letter.header("x-warren-reason").as_deref(),
        Some("invalid_data")
    );
    assert_eq!(
        letter.header("x-warren-token-subject").as_deref(),
        Some("alice")
    );
    assert!(
        letter
            .headers_debug()
            .keys()
            .all(|name| !name.eq_ignore_ascii_case(TOKEN_HEADER)),
        "the dead letter kept the token"
    );
    let fault = fleet.outcome_of(&id).await;
    assert_eq!(fault["data"]["code"], "invalid_payload", "{fault}");
    // Still taking adds, and nothing left over.
    assert_eq!(fleet.add("victim", 1).await, 6);
    assert!(
        fleet
            .replies
            .next_within(&fleet.broker, Duration::ZERO)
            .await
            .is_none(),
        "an outcome nobody asked for"
    );
    assert!(
        fleet
            .broker
            .get_within(TALLY_DLQ, Duration::ZERO)
            .await
            .is_none()
    );
    // No token, good or bad, is ever logged.
    let output = fleet.tally.output_lines().join("\n");
    for token in &tokens_sent {
        let signature = token.rsplit('.').next().unwrap_or(token);
        assert!(
            signature.len() < 8 || !output.contains(signature),
            "the worker logged a token"
        );
    }
    assert!(
        fleet
            .tally
            .count_lines_with(&["unauthorized: dead-lettering"])
            >= cases.len(),
        "each refusal is logged, with its reason"
    );
}

/// `warren request --token "$(warren token issue …)"` against a tally that requires
/// tokens gets its result; without `--token`, the fault `unauthorized` (exit 1); a token
/// without the scope `tally:write`, the same. `warren publish --token` is taken too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_issues_and_attaches_tokens() {
    let fleet = SecureTally::start().await;
    let keys = &fleet.keys;
    let vhost = &fleet.vhost;
    let issue = |scopes: &[&str]| {
        let key = path_text(&keys.private_key("current")).to_owned();
        let mut args: Vec<String> = [
            "token", "issue", "--key", &key, "--kid", "current", "--sub", "alice", "--ttl", "5m",
        ]
        .map(str::to_owned)
        .to_vec();
        for scope in scopes {
            args.extend(["--scope".to_owned(), (*scope).to_owned()]);
        }
        args
    };
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        vhost.warren(&args).await
    };
    let issued = run(issue(&["tally:write"])).await;
    assert_eq!(issued.code(), Some(0), "{}", issued.stderr);
    let token = issued.stdout.trim().to_owned();
    assert_eq!(issued.stdout_lines().len(), 1, "the token alone on stdout");
    assert!(
        !issued.stderr.contains(&token),
        "the token is not repeated on stderr"
    );

    let add = |token: Option<&str>| {
        let mut args = vec![
            "request".to_owned(),
            TALLY_ADD.to_owned(),
            r#"{"key":"cli","amount":2}"#.to_owned(),
        ];
        if let Some(token) = token {
            args.extend(["--token".to_owned(), token.to_owned()]);
        }
        args
    };
    let accepted = run(add(Some(&token))).await;
    assert_eq!(accepted.code(), Some(0), "{}", accepted.stderr);
    let result = &accepted.envelopes()[0];
    assert_eq!(attribute(result, "type"), Some(TALLY_ADDED), "{result}");
    assert_eq!(result["data"]["total"], 2);

    // From a file, and through `warren publish`.
    let token_file = keys.folder.join("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("the token file");
    let published = run(vec![
        "publish".to_owned(),
        TALLY_ADD.to_owned(),
        r#"{"key":"cli","amount":3}"#.to_owned(),
        "--token".to_owned(),
        format!("@{}", path_text(&token_file)),
    ])
    .await;
    assert_eq!(published.code(), Some(0), "{}", published.stderr);

    let refused = run(add(None)).await;
    assert_eq!(refused.code(), Some(1), "{}", refused.stderr);
    let fault = &refused.envelopes()[0];
    assert_eq!(attribute(fault, "type"), Some(FAULT), "{fault}");
    assert_eq!(fault["data"]["code"], "unauthorized", "{fault}");
    assert!(
        fault["data"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("no token")),
        "{fault}"
    );

    let unscoped = run(issue(&[])).await;
    let unscoped = unscoped.stdout.trim().to_owned();
    let lacking = run(add(Some(&unscoped))).await;
    assert_eq!(lacking.code(), Some(1), "{}", lacking.stderr);
    let fault = &lacking.envelopes()[0];
    assert_eq!(fault["data"]["code"], "unauthorized", "{fault}");
    assert!(
        fault["data"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("tally:write")),
        "{fault}"
    );
    // A token that is not even a JWT is refused by the CLI itself, without quoting it.
    let garbage = run(add(Some("not-a-token-at-all"))).await;
    assert_eq!(garbage.code(), Some(2), "{}", garbage.stderr);
    assert!(
        !garbage.stderr.contains("not-a-token-at-all"),
        "{}",
        garbage.stderr
    );

    // `warren load --token` puts it on every request: all answered; without it, all
    // faulted.
    let load = |token: Option<&str>| {
        let mut args: Vec<String> = [
            "load",
            "--type",
            TALLY_GET,
            "--data",
            r#"{"key":"load"}"#,
            "--messages",
            "20",
            "--inflight",
            "5",
            "--json",
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(token) = token {
            args.extend(["--token".to_owned(), token.to_owned()]);
        }
        args
    };
    let loaded = run(load(Some(&token))).await;
    assert_eq!(loaded.code(), Some(0), "{}", loaded.stderr);
    let unloaded = run(load(None)).await;
    assert_eq!(unloaded.code(), Some(1), "{}", unloaded.stderr);

    // Both accepted adds were applied (the published one is applied before the next
    // request is, one queue), the refused ones not.
    let read = run(vec![
        "request".to_owned(),
        TALLY_GET.to_owned(),
        r#"{"key":"cli"}"#.to_owned(),
        "--token".to_owned(),
        unscoped,
    ])
    .await;
    assert_eq!(read.code(), Some(0), "{}", read.stderr);
    assert_eq!(read.envelopes()[0]["data"]["total"], 5);
}

/// The order pipeline with every worker requiring tokens: one token, given to
/// `warren request`, is forwarded hop by hop (orders → inventory → payments → shipping,
/// and the events back to orders), so the order completes; a declined card's failure is
/// announced with the token, so the earlier hops take the announcement and undo their
/// work (no worker dead-letters anything).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_is_forwarded_through_the_whole_pipeline_and_its_compensation() {
    let vhost = Vhost::create().await;
    let keys = Keys::make(&vhost).await;
    let store = StoreFolder::new();
    let mut workers = Vec::new();
    for name in PIPELINE {
        let mut worker = vhost.worker(&format!("warren-{name}")).store(&store);
        for (variable, value) in &keys.worker_env() {
            worker = worker.env(variable, value);
        }
        workers.push(worker.start().await);
    }
    let key = path_text(&keys.private_key("current")).to_owned();
    let issued = vhost
        .warren(&[
            "token",
            "issue",
            "--key",
            &key,
            "--kid",
            "current",
            "--sub",
            "shop",
            "--scope",
            "orders:place",
            "--ttl",
            "10m",
        ])
        .await;
    assert_eq!(issued.code(), Some(0), "{}", issued.stderr);
    let token = issued.stdout.trim().to_owned();
    let examples = repository_root().join("docs/examples/dev.warren.orders.place.v1");
    let order = |example: &str| format!("@{}", examples.join(example).display());

    let completed = vhost
        .warren(&[
            "request",
            "dev.warren.orders.place.v1",
            &order("ok-one-apple.json"),
            "--token",
            &token,
            "--timeout",
            "30s",
        ])
        .await;
    assert_eq!(completed.code(), Some(0), "{}", completed.stderr);
    let outcome = &completed.envelopes()[0];
    assert_eq!(
        attribute(outcome, "type"),
        Some("dev.warren.orders.completed.v1"),
        "{outcome}"
    );

    let declined = vhost
        .warren(&[
            "request",
            "dev.warren.orders.place.v1",
            &order("fault-card_declined-test-card.json"),
            "--token",
            &token,
            "--timeout",
            "30s",
        ])
        .await;
    assert_eq!(declined.code(), Some(1), "{}", declined.stderr);
    let fault = &declined.envelopes()[0];
    assert_eq!(fault["data"]["code"], "card_declined", "{fault}");

    // Every hop took every message, the announcement of the failure included.
    for name in PIPELINE {
        let queue = format!("warren.{name}");
        assert!(
            vhost
                .wait_until_settled(&queue, Duration::from_secs(20))
                .await
                .is_ok(),
            "{queue} did not settle"
        );
    }
    for name in PIPELINE {
        let dlq = format!("warren.{name}.dlq");
        let counts = vhost
            .queue_counts(&dlq)
            .await
            .expect("the dead-letter queue");
        assert_eq!(counts.ready, 0, "{dlq}: a hop refused a forwarded token");
    }
    for worker in &workers {
        assert_eq!(worker.count_lines_with(&["unauthorized"]), 0);
    }
    // The stock reserved for the declined order was released on its announcement; the
    // completed order's is still held.
    let inventory = warren_inventory::InventoryHandler::open(store.path())
        .expect("the inventory store")
        .counts()
        .await
        .expect("inventory counts");
    assert_eq!(
        (inventory.reserved, inventory.released),
        (1, 1),
        "{inventory:?}"
    );
}
