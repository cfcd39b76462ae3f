//! The reliability count of a fault test: every request sent to the tally worker is
//! classified from what its originator received and from the totals read back.
//!
//! Each request adds to a key of its own, so its side effect is visible on its own: the
//! key's total is its baseline (0 unless the test put something there first) plus 1 when
//! the add is expected to apply, or the baseline alone when it is expected to fail.
//!
//! Every sent request is exactly one of:
//! - **delivered**: the total is what the expectation says and the request has one
//!   terminal outcome (possibly received several times, all alike) of the expected kind;
//! - **lost**: the total is short of it (or was not read), or no outcome arrived;
//! - **duplicated**: the total is above it, the side effect happened more than once;
//! - **unexpected**: its outcome contradicts the expectation (a fault for an add that
//!   applied, a wrong total in the result, two different outcomes).
//!
//! Besides, every outcome or total for a correlation id or key nobody sent counts as
//! **unexpected** too. **Duplicate outcomes** (the same outcome received again, which
//! at-least-once delivery allows) are only reported.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde_json::Value;
use warren_messages::{Fault, Payload, TallyAdded, TallyTotal};

/// What a request should end in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// The add applies once, and the originator gets `dev.warren.tally.added.v1` with
    /// the key and its new total.
    Applied,
    /// The add changes nothing, and the originator gets `dev.warren.fault.v1` with this
    /// code, `retryable` and `attempts`.
    Faulted {
        /// The fault code.
        code: String,
        /// Whether the fault says retrying may help.
        retryable: bool,
        /// How many attempts the fault reports.
        attempts: u32,
    },
}

/// One request the test sent.
#[derive(Debug, Clone)]
struct Sent {
    key: String,
    baseline: i64,
    expectation: Expectation,
}

impl Sent {
    fn expected_total(&self) -> i64 {
        match self.expectation {
            Expectation::Applied => self.baseline.saturating_add(1),
            Expectation::Faulted { .. } => self.baseline,
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Delivered,
    Lost,
    Duplicated,
    Unexpected,
}

/// The requests of one test run, to be checked against what came back.
#[derive(Debug, Clone, Default)]
pub struct Checker {
    /// By correlation id.
    sent: BTreeMap<String, Sent>,
    keys: HashSet<String>,
}

impl Checker {
    /// A checker with no request yet.
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Records a request adding 1 to `key`, whose total was 0 before.
    ///
    /// # Panics
    /// When the correlation id or the key was already used: each request needs a key of
    /// its own.
    pub fn sent(&mut self, correlation_id: &str, key: &str, expectation: Expectation) {
        self.sent_on_top_of(correlation_id, key, 0, expectation);
    }

    /// Records a request adding to `key`, whose total was `baseline` before.
    ///
    /// # Panics
    /// As [`Checker::sent`].
    pub fn sent_on_top_of(
        &mut self,
        correlation_id: &str,
        key: &str,
        baseline: i64,
        expectation: Expectation,
    ) {
        assert!(
            self.keys.insert(key.to_owned()),
            "key {key:?} used by two requests"
        );
        let previous = self.sent.insert(
            correlation_id.to_owned(),
            Sent {
                key: key.to_owned(),
                baseline,
                expectation,
            },
        );
        assert!(
            previous.is_none(),
            "correlation id {correlation_id} sent twice"
        );
    }

    /// How many requests were sent.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Whether no request was sent.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// The correlation ids of every request.
    pub fn correlation_ids(&self) -> HashSet<String> {
        self.sent.keys().cloned().collect()
    }

    /// The keys of every request, in correlation id order.
    pub fn keys(&self) -> Vec<String> {
        self.sent.values().map(|sent| sent.key.clone()).collect()
    }

    /// Classifies every request from `outcomes` (everything the originator received,
    /// duplicates included) and `total_replies` (the `dev.warren.tally.total.v1` replies
    /// to the reads of the totals).
    pub fn check(&self, outcomes: &[Value], total_replies: &[Value]) -> Verdict {
        let mut verdict = Verdict {
            sent: self.sent.len(),
            ..Verdict::default()
        };
        let totals = self.totals(total_replies, &mut verdict);
        let mut by_correlation: HashMap<&str, Vec<&Value>> = HashMap::new();
        for outcome in outcomes {
            match outcome.get("correlationid").and_then(Value::as_str) {
                Some(correlation_id) if self.sent.contains_key(correlation_id) => {
                    by_correlation
                        .entry(correlation_id)
                        .or_default()
                        .push(outcome);
                }
                _ => verdict.unexpected_thing(format!("an outcome nobody asked for: {outcome}")),
            }
        }
        for (correlation_id, sent) in &self.sent {
            let received = by_correlation
                .get(correlation_id.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            let class = classify(
                correlation_id,
                sent,
                totals.get(sent.key.as_str()).copied(),
                received,
                &mut verdict,
            );
            verdict.count(class);
        }
        verdict
    }

    /// The totals read, by key; a reply that is not a total of a key sent counts as
    /// unexpected.
    fn totals<'a>(
        &self,
        total_replies: &'a [Value],
        verdict: &mut Verdict,
    ) -> HashMap<&'a str, i64> {
        let mut totals: HashMap<&str, i64> = HashMap::new();
        for reply in total_replies {
            let key = reply["data"]["key"].as_str();
            let total = reply["data"]["total"].as_i64();
            match (reply["type"].as_str(), key, total) {
                (Some(TallyTotal::TYPE), Some(key), Some(total)) if self.keys.contains(key) => {
                    if let Some(earlier) = totals.insert(key, total)
                        && earlier != total
                    {
                        verdict.unexpected_thing(format!(
                            "two different totals read for key {key:?}: {earlier} and {total}"
                        ));
                        totals.insert(key, earlier.max(total));
                    }
                }
                _ => verdict.unexpected_thing(format!("a total of a key nobody sent: {reply}")),
            }
        }
        totals
    }
}

/// What the outcomes of one request must look like to match `expectation`: `None` when
/// `outcome` matches, or what is wrong with it.
fn mismatch(sent: &Sent, outcome: &Value) -> Option<String> {
    let data = &outcome["data"];
    let message_type = outcome["type"].as_str();
    match &sent.expectation {
        Expectation::Applied => {
            let expected_total = sent.expected_total();
            let fine = message_type == Some(TallyAdded::TYPE)
                && data["key"].as_str() == Some(sent.key.as_str())
                && data["total"].as_i64() == Some(expected_total);
            (!fine).then(|| {
                format!(
                    "expected {} with key {:?} and total {expected_total}, got {outcome}",
                    TallyAdded::TYPE,
                    sent.key
                )
            })
        }
        Expectation::Faulted {
            code,
            retryable,
            attempts,
        } => {
            let fine = message_type == Some(Fault::TYPE)
                && data["code"].as_str() == Some(code.as_str())
                && data["retryable"].as_bool() == Some(*retryable)
                && data["attempts"].as_u64() == Some(u64::from(*attempts));
            (!fine).then(|| {
                format!(
                    "expected {} with code {code:?}, retryable {retryable}, attempts \
                     {attempts}, got {outcome}",
                    Fault::TYPE
                )
            })
        }
    }
}

/// What makes two outcomes of one request the same outcome: a result sent again has the
/// same type and data (and, from the inbox, the same id); a fault sent again after a
/// redelivery has a new id but the same type, code, `retryable` and `attempts`.
fn sameness(outcome: &Value) -> Value {
    let data = &outcome["data"];
    if outcome["type"].as_str() == Some(Fault::TYPE) {
        serde_json::json!([
            outcome["type"],
            data["code"],
            data["retryable"],
            data["attempts"]
        ])
    } else {
        serde_json::json!([outcome["type"], data])
    }
}

fn classify(
    correlation_id: &str,
    sent: &Sent,
    total: Option<i64>,
    received: &[&Value],
    verdict: &mut Verdict,
) -> Class {
    let key = &sent.key;
    let expected_total = sent.expected_total();
    verdict.duplicate_outcomes += received.len().saturating_sub(1);
    let Some(total) = total else {
        verdict.problem(format!(
            "lost: no total read for key {key:?} ({correlation_id})"
        ));
        return Class::Lost;
    };
    if total > expected_total {
        verdict.problem(format!(
            "duplicated: key {key:?} ({correlation_id}) has total {total}, expected \
             {expected_total}"
        ));
        return Class::Duplicated;
    }
    if total < expected_total {
        verdict.problem(format!(
            "lost: key {key:?} ({correlation_id}) has total {total}, expected {expected_total}"
        ));
        return Class::Lost;
    }
    let Some(first) = received.first() else {
        verdict.problem(format!(
            "lost: no outcome for key {key:?} ({correlation_id}), total {total}"
        ));
        return Class::Lost;
    };
    if let Some(other) = received
        .iter()
        .find(|outcome| sameness(outcome) != sameness(first))
    {
        verdict.problem(format!(
            "unexpected: two different outcomes for key {key:?} ({correlation_id}): {first} \
             and {other}"
        ));
        return Class::Unexpected;
    }
    if let Some(wrong) = mismatch(sent, first) {
        verdict.problem(format!(
            "unexpected: key {key:?} ({correlation_id}): {wrong}"
        ));
        return Class::Unexpected;
    }
    Class::Delivered
}

/// The count of one run. Its [`Display`](fmt::Display) is the one-line summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Requests sent.
    pub sent: usize,
    /// Requests whose side effect happened once and whose outcome arrived.
    pub delivered: usize,
    /// Requests without their side effect or without an outcome.
    pub lost: usize,
    /// Requests whose side effect happened more than once.
    pub duplicated: usize,
    /// Requests with a wrong or conflicting outcome, plus outcomes and totals nobody
    /// asked for.
    pub unexpected: usize,
    /// Outcomes received more than once (allowed by at-least-once delivery).
    pub duplicate_outcomes: usize,
    /// What went wrong, one line each (the first few are shown by
    /// [`Verdict::assert_clean`]).
    pub problems: Vec<String>,
}

impl Verdict {
    fn count(&mut self, class: Class) {
        match class {
            Class::Delivered => self.delivered += 1,
            Class::Lost => self.lost += 1,
            Class::Duplicated => self.duplicated += 1,
            Class::Unexpected => self.unexpected += 1,
        }
    }

    fn unexpected_thing(&mut self, problem: String) {
        self.unexpected += 1;
        self.problem(problem);
    }

    fn problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    /// Prints the summary line, prefixed with `label`, to stderr.
    pub fn print(&self, label: &str) {
        eprintln!("[checker] {label}: {self}");
    }

    /// Asserts nothing was lost, duplicated or unexpected, and every request was
    /// delivered (its side effect once, its terminal outcome received).
    ///
    /// # Panics
    /// Otherwise, showing the summary and the first problems.
    pub fn assert_clean(&self) {
        let clean = self.lost == 0
            && self.duplicated == 0
            && self.unexpected == 0
            && self.delivered == self.sent;
        assert!(
            clean,
            "{self} (of {} sent); first problems:\n{}",
            self.sent,
            self.problems
                .iter()
                .take(15)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "delivered={} lost={} duplicated={} unexpected={} duplicate_outcomes={}",
            self.delivered, self.lost, self.duplicated, self.unexpected, self.duplicate_outcomes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn added(correlation_id: &str, id: &str, key: &str, total: i64) -> Value {
        json!({
            "type": TallyAdded::TYPE, "id": id, "correlationid": correlation_id,
            "data": {"key": key, "total": total}
        })
    }

    fn fault(correlation_id: &str, id: &str, code: &str, attempts: u32) -> Value {
        json!({
            "type": Fault::TYPE, "id": id, "correlationid": correlation_id,
            "data": {"code": code, "message": "m", "retryable": true, "worker": "tally",
                     "stage": "handle", "attempts": attempts}
        })
    }

    fn total(key: &str, total: i64) -> Value {
        json!({"type": TallyTotal::TYPE, "id": "t", "correlationid": "g",
               "data": {"key": key, "total": total}})
    }

    fn flaky() -> Expectation {
        Expectation::Faulted {
            code: "internal".into(),
            retryable: true,
            attempts: 3,
        }
    }

    #[test]
    fn a_clean_run_is_all_delivered_and_counts_duplicate_outcomes() {
        let mut checker = Checker::new();
        checker.sent("c1", "k1", Expectation::Applied);
        checker.sent("c2", "k2", Expectation::Applied);
        checker.sent("c3", "k3", flaky());
        let outcomes = [
            added("c1", "r1", "k1", 1),
            added("c2", "r2", "k2", 1),
            added("c1", "r1", "k1", 1),
            fault("c3", "f1", "internal", 3),
            fault("c3", "f2", "internal", 3),
        ];
        let totals = [total("k1", 1), total("k2", 1), total("k3", 0)];
        let verdict = checker.check(&outcomes, &totals);
        assert_eq!(
            verdict.to_string(),
            "delivered=3 lost=0 duplicated=0 unexpected=0 duplicate_outcomes=2"
        );
        verdict.assert_clean();
    }

    #[test]
    fn each_kind_of_failure_is_counted() {
        let mut checker = Checker::new();
        for n in 1..=7 {
            checker.sent(&format!("c{n}"), &format!("k{n}"), Expectation::Applied);
        }
        checker.sent_on_top_of("c8", "k8", i64::MAX, flaky());
        let outcomes = [
            added("c1", "r1", "k1", 1),
            // c2: applied, never answered.
            added("c3", "r3", "k3", 1),
            added("c4", "r4", "k4", 1),
            fault("c5", "f5", "internal", 3),
            added("c6", "r6", "k6", 1),
            fault("c6", "f6", "internal", 3),
            // c7: answered, never applied.
            added("c7", "r7", "k7", 1),
            fault("c8", "f8", "internal", 3),
            added("stranger", "r9", "k9", 1),
        ];
        let totals = [
            total("k1", 1),
            total("k2", 1),
            total("k3", 2),
            // k4: never read.
            total("k5", 1),
            total("k6", 1),
            total("k7", 0),
            total("k8", i64::MAX),
            total("nobody", 1),
        ];
        let verdict = checker.check(&outcomes, &totals);
        assert_eq!(
            (
                verdict.delivered,
                verdict.lost,
                verdict.duplicated,
                verdict.unexpected
            ),
            (2, 3, 1, 4),
            "{:#?}",
            verdict.problems
        );
        assert_eq!(verdict.sent, 8);
        let result = std::panic::catch_unwind(|| verdict.assert_clean());
        assert!(result.is_err(), "a run with losses is not clean");
    }
}
