//! The figures of a frame as one JSON object, for `warren top --once --json`.

use serde_json::{Value, json};

use super::state::{BrokerReading, QueueCell, Row, rows};
use super::view::Frame;

/// The frame as one JSON object.
pub(super) fn json(frame: &Frame<'_>) -> Value {
    let rows = frame
        .metrics
        .map(|metrics| rows(metrics, frame.broker))
        .unwrap_or_default();
    let (status, error) = match frame.broker {
        BrokerReading::Connecting => ("connecting", None),
        BrokerReading::Read(_) => ("connected", None),
        BrokerReading::Unreachable(error) => ("unreachable", Some(error.as_str())),
    };
    let workers: Vec<Value> = rows.iter().map(row_json).collect();
    json!({
        "time": frame.at.to_string(),
        "interval_seconds": frame.interval.as_secs_f64(),
        "broker": { "url": frame.broker_url, "status": status, "error": error },
        "targets_folder": frame.targets_folder,
        "problems": frame.metrics.map(|metrics| metrics.problems.clone()).unwrap_or_default(),
        "workers": workers,
    })
}

fn row_json(row: &Row) -> Value {
    let (queue, queue_missing) = match row.queue {
        QueueCell::Unknown => (Value::Null, false),
        QueueCell::Missing => (Value::Null, true),
        QueueCell::Found {
            messages,
            consumers,
        } => (
            json!({ "messages": messages, "consumers": consumers }),
            false,
        ),
    };
    json!({
        "worker": row.worker,
        "instances": row.instances,
        "up": row.up,
        "down_reason": row.down_reason,
        "window_seconds": row.window_seconds,
        "processed": row.processed,
        "errors": row.errors,
        "messages_per_second": row.messages_per_second,
        "errors_per_second": row.errors_per_second,
        "p99_seconds": row.p99.map(|p99| p99.seconds),
        "p99_beyond_buckets": row.p99.map(|p99| p99.beyond_last_bound),
        "in_flight": row.in_flight,
        "queue": queue,
        "queue_missing": queue_missing,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use warren_ops::queue_stats::QueueState;

    use super::super::view::fixtures::{frame, reading, worker};
    use super::*;

    #[test]
    fn json_has_every_figure() {
        let metrics = reading(vec![worker("echo", 1, 12.0), worker("tally", 0, 0.0)]);
        let broker = BrokerReading::Read(BTreeMap::from([
            (
                "echo".to_owned(),
                QueueState::Found {
                    messages: 4,
                    consumers: 2,
                },
            ),
            ("tally".to_owned(), QueueState::Missing),
        ]));
        let value = json(&frame(&metrics, &broker));
        assert_eq!(value["broker"]["status"], "connected");
        assert_eq!(value["interval_seconds"], 1.0);
        let echo = &value["workers"][0];
        assert_eq!(echo["worker"], "echo");
        assert_eq!(echo["processed"], 12.0);
        assert_eq!(echo["messages_per_second"], 12.0);
        assert_eq!(echo["errors_per_second"], 1.0);
        // 0.99 of 12 is in (5 ms, 10 ms], holding the 6 slowest: 5 + 5 * 5.88 / 6 ms.
        let p99 = echo["p99_seconds"].as_f64().expect("a p99");
        assert!((p99 - 0.0099).abs() < 1e-12, "{p99}");
        assert_eq!(echo["queue"], json!({"messages": 4, "consumers": 2}));
        let tally = &value["workers"][1];
        assert_eq!(tally["up"], 0);
        assert_eq!(tally["messages_per_second"], Value::Null);
        assert_eq!(tally["queue_missing"], true);
        assert_eq!(tally["down_reason"], "127.0.0.1:9: connection refused");
    }
}
