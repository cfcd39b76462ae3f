//! Fixtures for the fault-injection tests (`tests/faults.rs`): the prelude every one of
//! them shares, so that each test reads as its fault.
//!
//! A [`TallyScenario`] is a vhost of its own, a store folder, a `warren-tally` started in it
//! with the test's settings, an originator's [`ReplyCollector`] and an empty [`Checker`].
//! The test sends requests through it, strikes, and ends with
//! [`TallyScenario::check_when_settled`]: every outcome in, the work queue settled, every
//! total read back through the worker ([`read_totals`]), every request classified.

use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use warren_messages::{Payload, TallyAdd, TallyGet};

use crate::checker::{Checker, Expectation, Verdict};
use crate::proxy::Proxy;
use crate::{
    ReplyCollector, Request, StoreFolder, TALLY_QUEUE, Vhost, WarrenCommand, WarrenProcess,
    close_connection,
};

/// How long all outcomes of a run may take to arrive.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(45);

/// How long the work queue may take to empty once every outcome arrived.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long reading back every total may take.
pub const TOTALS_TIMEOUT: Duration = Duration::from_secs(30);

/// A request adding `amount` to `key`, answered at the reply queue `replyto`.
pub fn tally_add(key: &str, amount: i64, replyto: &str) -> Request {
    Request::new(
        TallyAdd::TYPE,
        &json!({ "key": key, "amount": amount }).to_string(),
        Some(replyto),
    )
}

/// Publishes `requests` with confirms on a connection of the test's own to `vhost`,
/// closed after.
///
/// # Panics
/// When the broker does not confirm one of them.
pub async fn publish_requests(vhost: &Vhost, requests: impl IntoIterator<Item = Request>) {
    let client = vhost.connect().await;
    client
        .publish_all(requests.into_iter().map(|request| request.message))
        .await;
    close_connection(client.connection(), "published").await;
}

/// The tally worker in a vhost of its own, fed and watched by the test.
///
/// Its fields are dropped in order: the worker and the reader go before the store folder
/// and the vhost they use.
#[derive(Debug)]
pub struct TallyScenario {
    /// The first `warren-tally`, consuming.
    pub worker: WarrenProcess,
    /// The originator's reply queue, read by a reconnecting consumer.
    pub outcomes: ReplyCollector,
    /// What the test sent and expects of each request.
    pub checker: Checker,
    /// The store folder every tally instance of the test shares.
    pub store: StoreFolder,
    /// The test's vhost.
    pub vhost: Vhost,
    /// The URL the workers connect to (the vhost, or a proxy in front of it).
    worker_url: String,
}

impl TallyScenario {
    /// A new vhost and store folder, `warren-tally` with `settings` (extra environment:
    /// `WARREN_FAILPOINTS`, `WARREN_RETRY__MAX_ATTEMPTS`, …) consuming in it, a reply
    /// collector and an empty checker.
    ///
    /// # Panics
    /// When any of it cannot be set up.
    pub async fn start(settings: &[(&str, &str)]) -> TallyScenario {
        Self::start_at(None, settings).await
    }

    /// [`TallyScenario::start`] with the worker connected through `proxy`; the test's own
    /// connections go to the broker directly.
    pub async fn start_behind(proxy: &Proxy, settings: &[(&str, &str)]) -> TallyScenario {
        Self::start_at(Some(proxy), settings).await
    }

    async fn start_at(proxy: Option<&Proxy>, settings: &[(&str, &str)]) -> TallyScenario {
        let vhost = Vhost::create().await;
        let store = StoreFolder::new();
        let worker_url = match proxy {
            Some(proxy) => proxy.amqp_url(&vhost),
            None => vhost.amqp_url().to_owned(),
        };
        let worker = Self::tally(&worker_url, &store, settings).start().await;
        let outcomes = ReplyCollector::start(&vhost).await;
        TallyScenario {
            vhost,
            store,
            worker,
            outcomes,
            checker: Checker::new(),
            worker_url,
        }
    }

    fn tally(url: &str, store: &StoreFolder, settings: &[(&str, &str)]) -> WarrenCommand {
        WarrenCommand::new("warren-tally", url)
            .store(store)
            .envs(settings)
    }

    /// Starts another `warren-tally` with `settings` on the same store and URL, and waits
    /// until it consumes.
    pub async fn start_another_tally(&self, settings: &[(&str, &str)]) -> WarrenProcess {
        Self::tally(&self.worker_url, &self.store, settings)
            .start()
            .await
    }

    /// Adds of 1 to the keys `<prefix><n>` (`n` zero-padded to 5 digits) for `n` in
    /// `numbers`, answered on the collector, recorded in the checker with `expectation`.
    pub fn adds_of_one(
        &mut self,
        prefix: &str,
        numbers: Range<usize>,
        expectation: &Expectation,
    ) -> Vec<Request> {
        numbers
            .map(|n| {
                let key = format!("{prefix}{n:05}");
                let request = tally_add(&key, 1, self.outcomes.name());
                self.checker
                    .sent(request.correlation_id(), &key, expectation.clone());
                request
            })
            .collect()
    }

    /// Publishes `requests` with confirms on a connection of the test's own.
    pub async fn publish(&self, requests: impl IntoIterator<Item = Request>) {
        publish_requests(&self.vhost, requests).await;
    }

    /// The correlation ids of every request recorded in the checker.
    pub fn correlation_ids(&self) -> HashSet<String> {
        self.checker.correlation_ids()
    }

    /// Waits for every outcome ([`ANSWER_TIMEOUT`]), for the work queue to settle
    /// ([`SETTLE_TIMEOUT`]), reads every total back ([`TOTALS_TIMEOUT`]), and classifies
    /// every request; prints the checker's line under `label`.
    ///
    /// # Panics
    /// When the work queue did not settle (after printing the verdict).
    pub async fn check_when_settled(&self, label: &str) -> Verdict {
        let correlation_ids = self.correlation_ids();
        let started = Instant::now();
        self.outcomes
            .wait_until_answered(&correlation_ids, correlation_ids.len(), ANSWER_TIMEOUT)
            .await;
        eprintln!("{label}: outcomes in after {:?}", started.elapsed());
        let settled = self
            .vhost
            .wait_until_settled(TALLY_QUEUE, SETTLE_TIMEOUT)
            .await;
        let totals = read_totals(&self.vhost, &self.checker.keys(), TOTALS_TIMEOUT).await;
        let verdict = self.checker.check(&self.outcomes.outcomes(), &totals);
        verdict.print(label);
        if let Err(counts) = settled {
            panic!(
                "{label}: {TALLY_QUEUE} still held messages {SETTLE_TIMEOUT:?} after the \
                 outcomes ({counts:?}); {verdict}"
            );
        }
        verdict
    }
}

/// Reads the total of every key in `keys` through the worker: one
/// `dev.warren.tally.get.v1` request each, on a reply queue of its own. Returns every
/// reply that arrived within `timeout` (the checker makes the totals of them).
///
/// # Panics
/// When the requests cannot be published.
pub async fn read_totals(vhost: &Vhost, keys: &[String], timeout: Duration) -> Vec<Value> {
    let replies = ReplyCollector::start(vhost).await;
    let requests: Vec<Request> = keys
        .iter()
        .map(|key| {
            Request::new(
                TallyGet::TYPE,
                &json!({ "key": key }).to_string(),
                Some(replies.name()),
            )
        })
        .collect();
    let correlation_ids: HashSet<String> = requests
        .iter()
        .map(|request| request.correlation_id().to_owned())
        .collect();
    publish_requests(vhost, requests).await;
    replies
        .wait_until_answered(&correlation_ids, correlation_ids.len(), timeout)
        .await;
    replies.outcomes()
}
