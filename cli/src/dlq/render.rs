//! What `warren dlq` prints: the table and JSON lines of `list`, everything about one
//! dead letter for `show` (its body as indented JSON, text, or lossy text), the replay
//! report.

use std::io::Write;

use jiff::SignedDuration;
use serde_json::{Value, json};
use warren_ops::dead_letters::{DeadLetter, ReplayReport};

pub(super) fn summary_json(letter: &DeadLetter) -> Value {
    json!({
        "position": letter.position,
        "message_id": letter.message_id,
        "type": letter.message_type,
        "correlation_id": letter.correlation_id,
        "source": letter.source.as_str(),
        "reason": letter.reason,
        "error": letter.error,
        "worker": letter.worker,
        "death_count": letter.death_count,
        "dead_lettered_at": letter.dead_lettered_at.map(|at| at.to_string()),
        "age_seconds": letter.age.map(|age| age.as_secs()),
        "original_exchange": letter.original_exchange,
        "original_routing_key": letter.original_routing_key,
        "body_bytes": letter.body.len(),
    })
}

/// A column-aligned table of dead letters, with a header line.
pub(super) fn table(letters: &[DeadLetter]) -> String {
    let dash = || "-".to_owned();
    let rows: Vec<[String; 7]> = letters
        .iter()
        .map(|letter| {
            [
                letter.position.to_string(),
                letter.age.map_or_else(dash, format_age),
                letter.reason.clone().unwrap_or_else(dash),
                letter
                    .death_count
                    .map_or_else(dash, |count| count.to_string()),
                letter.message_type.clone().unwrap_or_else(dash),
                letter.correlation_id.clone().unwrap_or_else(dash),
                letter.message_id.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let header = [
        "POSITION",
        "AGE",
        "REASON",
        "DEATHS",
        "TYPE",
        "CORRELATION ID",
        "MESSAGE ID",
    ]
    .map(str::to_owned);
    let mut widths = header.clone().map(|title| title.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `42s`, `5m12s`, `3h4m`, `2d5h`: the two largest units.
fn format_age(age: SignedDuration) -> String {
    let seconds = age.as_secs().max(0);
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds % 86_400 / 3_600,
        seconds % 3_600 / 60,
        seconds % 60,
    );
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// Everything about one dead letter, for `warren dlq show`.
pub(super) fn describe(letter: &DeadLetter, queue: &str) -> String {
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let mut text = format!("dead letter at position {} of {queue}\n", letter.position);
    let age = match (letter.age, letter.dead_lettered_at) {
        (Some(age), Some(at)) => format!("{} (at {at})", format_age(age)),
        _ => "-".to_owned(),
    };
    let route = match letter.original_route() {
        Some((exchange, routing_key)) => {
            format!("exchange {exchange:?}, routing key {routing_key:?}")
        }
        None => "unknown: it cannot be replayed".to_owned(),
    };
    let summary = [
        ("message id", or_dash(&letter.message_id)),
        ("type", or_dash(&letter.message_type)),
        ("correlation id", or_dash(&letter.correlation_id)),
        ("dead-lettered by", letter.source.as_str().to_owned()),
        ("reason", or_dash(&letter.reason)),
        ("error", or_dash(&letter.error)),
        ("worker", or_dash(&letter.worker)),
        ("from queue", or_dash(&letter.dead_lettered_from_queue)),
        (
            "deaths",
            letter
                .death_count
                .map_or_else(|| "-".to_owned(), |count| count.to_string()),
        ),
        ("age", age),
        ("original route", route),
    ];
    for (name, value) in summary {
        text.push_str(&format!("  {:<18}{value}\n", format!("{name}:")));
    }
    text.push_str("properties:\n");
    for (name, value) in &letter.properties {
        text.push_str(&format!("  {name}: {value}\n"));
    }
    text.push_str("headers:\n");
    if letter.headers.is_empty() {
        text.push_str("  (none)\n");
    }
    for (name, value) in &letter.headers {
        text.push_str(&format!("  {name}: {value}\n"));
    }
    let body = &letter.body;
    let json_text = std::str::from_utf8(body).ok().filter(|body_text| {
        serde_json::from_str::<Box<serde_json::value::RawValue>>(body_text).is_ok()
    });
    match json_text {
        Some(body_text) => {
            text.push_str(&format!(
                "body ({} bytes, JSON):\n{}\n",
                body.len(),
                pretty_json(body_text)
            ));
        }
        None => match std::str::from_utf8(body) {
            Ok(body_text) => {
                text.push_str(&format!(
                    "body ({} bytes, not JSON):\n{body_text}\n",
                    body.len()
                ));
            }
            Err(_) => text.push_str(&format!(
                "body ({} bytes, not UTF-8; invalid bytes shown as \u{fffd}):\n{}\n",
                body.len(),
                String::from_utf8_lossy(body)
            )),
        },
    }
    text
}

/// Indents valid JSON `text` two spaces a level, keeping its keys in their order and its
/// numbers as written (which a round trip through `serde_json::Value` would not).
fn pretty_json(text: &str) -> String {
    fn new_line(out: &mut String, depth: usize) {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    while let Some(character) = chars.next() {
        if in_string {
            out.push(character);
            if escaped {
                escaped = false;
            } else if character == '\\' {
                escaped = true;
            } else if character == '"' {
                in_string = false;
            }
            continue;
        }
        match character {
            '"' => {
                in_string = true;
                out.push(character);
            }
            '{' | '[' => {
                while chars.next_if(|next| next.is_ascii_whitespace()).is_some() {}
                let close = if character == '{' { '}' } else { ']' };
                out.push(character);
                if chars.next_if_eq(&close).is_some() {
                    out.push(close);
                } else {
                    depth += 1;
                    new_line(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                new_line(&mut out, depth);
                out.push(character);
            }
            ',' => {
                out.push(character);
                new_line(&mut out, depth);
            }
            ':' => out.push_str(": "),
            whitespace if whitespace.is_ascii_whitespace() => {}
            other => out.push(other),
        }
    }
    out
}

pub(super) fn print_replay_report(report: &ReplayReport, queue: &str) -> anyhow::Result<()> {
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let mut out = String::new();
    for replayed in &report.replayed {
        out.push_str(&format!(
            "replayed {} ({}) from position {} to exchange {:?} with routing key {:?}\n",
            or_dash(&replayed.message_id),
            or_dash(&replayed.message_type),
            replayed.position,
            replayed.exchange,
            replayed.routing_key
        ));
        if !replayed.removed_from_queue {
            eprintln!(
                "warren: {} was republished but its copy is still in {queue} (the replay was \
                 interrupted before the ack); replaying it again makes a duplicate, which \
                 warren's idempotent workers absorb",
                or_dash(&replayed.message_id)
            );
        }
    }
    for not_replayed in &report.not_replayed {
        eprintln!(
            "warren: not replayed: {} ({}) at position {}: {}; it stays in {queue}",
            or_dash(&not_replayed.message_id),
            or_dash(&not_replayed.message_type),
            not_replayed.position,
            not_replayed.reason
        );
    }
    for id in &report.missing_ids {
        eprintln!("warren: no dead letter in {queue} has the message id {id:?}");
    }
    if let Some(error) = &report.interrupted {
        eprintln!(
            "warren: the replay stopped early: {error}; every dead letter not listed as \
             replayed is still in {queue}"
        );
    }
    let selected = report.replayed.len() + report.not_replayed.len();
    out.push_str(&format!(
        "replayed {} of {selected} selected dead letters ({} read from {queue}); {} not \
         replayed, {} message ids not found\n",
        report.replayed.len(),
        report.read,
        report.not_replayed.len(),
        report.missing_ids.len()
    ));
    print_stdout(&out)?;
    Ok(())
}

/// Writes `text` to stdout; a reader that went away (`warren dlq list | head`) is not
/// an error.
pub(super) fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_indented_as_written() {
        let body = r#"{"b":1.50, "a":[ ],"s":"x, \"y\": {[","n":{"z":[1,{}]}}"#;
        assert_eq!(
            pretty_json(body),
            "{\n  \"b\": 1.50,\n  \"a\": [],\n  \"s\": \"x, \\\"y\\\": {[\",\n  \"n\": {\n    \
             \"z\": [\n      1,\n      {}\n    ]\n  }\n}"
        );
        assert_eq!(pretty_json("[1]"), "[\n  1\n]");
        assert_eq!(pretty_json(" 7 "), "7");
    }

    #[test]
    fn ages_show_two_units() {
        assert_eq!(format_age(SignedDuration::from_secs(42)), "42s");
        assert_eq!(format_age(SignedDuration::from_secs(312)), "5m12s");
        assert_eq!(
            format_age(SignedDuration::from_secs(3 * 3600 + 240)),
            "3h4m"
        );
        assert_eq!(
            format_age(SignedDuration::from_secs(2 * 86_400 + 5 * 3600)),
            "2d5h"
        );
        assert_eq!(format_age(SignedDuration::from_secs(-5)), "0s");
    }
}
