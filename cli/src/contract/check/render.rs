//! What `warren contract check` prints: the table (one row per example, then why each
//! failing row failed, then the summary line), or one JSON object per example.
//!
//! Outcomes come from the fleet, so what they say (a type, a fault code, a schema
//! violation quoting the payload) may not act on the terminal: control characters,
//! line separators and bidirectional overrides are escaped in every cell, and written
//! as `\uXXXX` in the JSON form.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::schemas::SchemaCheck;
use super::verdict::{Got, Row, expected_text, got_text};
use crate::printable::{is_unsafe, truncate};

/// Re-exported for `contract check`'s own messages.
pub(super) use crate::printable::escape;

/// The most characters of a schema violation the SCHEMA column shows (the failure line
/// under the table has all of it).
const SCHEMA_CELL_CHARS: usize = 60;

/// The table's header.
const HEADER: [&str; 7] = [
    "TYPE", "EXAMPLE", "DATA", "EXPECTED", "GOT", "SCHEMA", "VERDICT",
];

/// The table: a header, one line per row, then a `FAIL <type>/<example>: …` line for
/// each failing row, then the summary line. Every line ends in a newline.
pub(super) fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 7]> = rows.iter().map(row_cells).collect();
    let mut widths = HEADER.map(|title| title.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    push_line(&mut out, &HEADER.map(str::to_owned), &widths);
    for row in &cells {
        push_line(&mut out, row, &widths);
    }
    let failing: Vec<&Row> = rows.iter().filter(|row| !row.passed()).collect();
    if !failing.is_empty() {
        out.push('\n');
    }
    for row in failing {
        let _ = writeln!(
            out,
            "FAIL {}/{}: {}",
            escape(&row.message_type),
            escape(&row.example),
            escape(&row.failures().join("; "))
        );
    }
    out.push('\n');
    out.push_str(&summary(rows));
    out.push('\n');
    out
}

/// `N examples: P passed, F failed`.
pub(super) fn summary(rows: &[Row]) -> String {
    let passed = rows.iter().filter(|row| row.passed()).count();
    format!(
        "{} examples: {passed} passed, {} failed",
        rows.len(),
        rows.len() - passed
    )
}

/// One row as a JSON object on one line (no newline): `type`, `example`, `pass`,
/// `expected` and `got` (`{type, code}` or null), `outcome` (`received`, `no_outcome`,
/// `unroutable`, `unreadable`, `not_sent`), `data` and `schema` (`ok`, `invalid`,
/// `undocumented` or null) with `data_error` and `schema_error`, and `failures`.
pub(super) fn json_line(row: &Row) -> String {
    let (outcome, got) = match &row.got {
        Got::NotSent => ("not_sent", Value::Null),
        Got::Unroutable => ("unroutable", Value::Null),
        Got::NoOutcome(_) => ("no_outcome", Value::Null),
        Got::Unreadable(_) => ("unreadable", Value::Null),
        Got::Outcome {
            message_type,
            fault_code,
            ..
        } => (
            "received",
            json!({"type": message_type, "code": fault_code}),
        ),
    };
    let expected = row.expected.as_ref().map_or(
        Value::Null,
        |expected| json!({"type": expected.outcome_type, "code": expected.fault_code}),
    );
    let failures = row.failures();
    let object = json!({
        "type": row.message_type,
        "example": row.example,
        "pass": failures.is_empty(),
        "expected": expected,
        "got": got,
        "outcome": outcome,
        "data": check_state(&row.data),
        "data_error": check_error(&row.data),
        "schema": check_state(&row.schema),
        "schema_error": check_error(&row.schema),
        "failures": failures,
    });
    escape_json(&object.to_string())
}

/// The cells of one row, in [`HEADER`]'s order.
fn row_cells(row: &Row) -> [String; 7] {
    let expected = row.expected.as_ref().map_or("-".to_owned(), expected_text);
    let data = match &row.data {
        SchemaCheck::Valid => "ok",
        SchemaCheck::Invalid(_) => "invalid",
        SchemaCheck::NotChecked | SchemaCheck::Undocumented => "-",
    };
    let schema = match &row.schema {
        SchemaCheck::Valid => "ok".to_owned(),
        SchemaCheck::Invalid(error) => truncate(error, SCHEMA_CELL_CHARS),
        SchemaCheck::Undocumented => "undocumented".to_owned(),
        SchemaCheck::NotChecked => "-".to_owned(),
    };
    let verdict = if row.passed() { "PASS" } else { "FAIL" };
    [
        row.message_type.clone(),
        row.example.clone(),
        data.to_owned(),
        expected,
        got_text(&row.got),
        schema,
        verdict.to_owned(),
    ]
    .map(|cell| escape(&cell))
}

/// One line of the table: every cell but the last padded to its column's width.
fn push_line(out: &mut String, cells: &[String; 7], widths: &[usize; 7]) {
    let last = cells.len() - 1;
    for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if index == last {
            out.push_str(cell);
        } else {
            let padding = width.saturating_sub(cell.chars().count());
            out.push_str(cell);
            out.push_str(&" ".repeat(padding + 2));
        }
    }
    out.push('\n');
}

fn check_state(check: &SchemaCheck) -> Value {
    match check {
        SchemaCheck::NotChecked => Value::Null,
        SchemaCheck::Valid => "ok".into(),
        SchemaCheck::Invalid(_) => "invalid".into(),
        SchemaCheck::Undocumented => "undocumented".into(),
    }
}

fn check_error(check: &SchemaCheck) -> Value {
    match check {
        SchemaCheck::Invalid(error) => error.as_str().into(),
        _ => Value::Null,
    }
}

/// Serialised JSON with every [`is_unsafe`] character written as `\uXXXX` (serde_json
/// escapes only those below U+0020; the others are all in the BMP and can only occur
/// inside strings), which is the same JSON value.
fn escape_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        if is_unsafe(character) {
            let _ = write!(out, "\\u{:04x}", u32::from(character));
        } else {
            out.push(character);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::examples::Promise;
    use super::super::verdict::{Expectation, FAULT_TYPE};
    use super::*;

    fn passing() -> Row {
        let mut row = Row::sent(
            "dev.warren.echo.v1",
            "ok-hello.json",
            Expectation::of(&Promise::Result, "dev.warren.echo.replied.v1"),
            SchemaCheck::Valid,
        );
        row.got = Got::Outcome {
            message_type: "dev.warren.echo.replied.v1".to_owned(),
            fault_code: None,
            dataschema: None,
        };
        row.schema = SchemaCheck::Valid;
        row
    }

    fn timed_out() -> Row {
        let mut row = Row::sent(
            "dev.warren.tally.add.v1",
            "fault-invalid_payload-x.json",
            Expectation::of(
                &Promise::Fault("invalid_payload".to_owned()),
                "dev.warren.tally.added.v1",
            ),
            SchemaCheck::Invalid("/amount: 1.5 is not of type \"integer\"".to_owned()),
        );
        row.got = Got::NoOutcome(Duration::from_secs(10));
        row
    }

    #[test]
    fn the_table_lines_up_its_columns_and_explains_each_failure() {
        let rows = [passing(), timed_out()];
        let table = table(&rows);
        let expected = "\
TYPE                     EXAMPLE                       DATA     EXPECTED                    GOT                         SCHEMA  VERDICT
dev.warren.echo.v1       ok-hello.json                 ok       dev.warren.echo.replied.v1  dev.warren.echo.replied.v1  ok      PASS
dev.warren.tally.add.v1  fault-invalid_payload-x.json  invalid  fault invalid_payload       -                           -       FAIL

FAIL dev.warren.tally.add.v1/fault-invalid_payload-x.json: no outcome within 10s

2 examples: 1 passed, 1 failed
";
        assert_eq!(table, expected, "\n{table}");
    }

    #[test]
    fn all_passing_has_no_failure_lines() {
        let table = table(&[passing()]);
        assert!(!table.contains("FAIL"), "{table}");
        assert!(
            table.ends_with("\n\n1 examples: 1 passed, 0 failed\n"),
            "{table}"
        );
    }

    #[test]
    fn a_long_violation_is_cut_in_its_cell_and_whole_in_its_failure_line() {
        let mut row = passing();
        let long = format!("/text: \"{}\" is too long", "y".repeat(100));
        row.schema = SchemaCheck::Invalid(long.clone());
        let table = table(&[row]);
        let cell = format!(
            "{}…",
            long.chars().take(SCHEMA_CELL_CHARS).collect::<String>()
        );
        assert!(table.contains(&format!("{cell}  FAIL")), "{table}");
        assert!(table.contains(&long), "{table}");
    }

    #[test]
    fn what_the_fleet_says_cannot_act_on_the_terminal() {
        let mut row = passing();
        row.got = Got::Outcome {
            message_type: FAULT_TYPE.to_owned(),
            fault_code: Some("bad\u{1b}[2J\ncode\u{202e}".to_owned()),
            dataschema: None,
        };
        let table = table(std::slice::from_ref(&row));
        assert!(!table.contains('\u{1b}'), "{table}");
        assert!(!table.contains('\u{202e}'), "{table}");
        assert!(
            table.contains("fault bad\\u{1b}[2J\\ncode\\u{202e}"),
            "{table}"
        );
        // Each row is one line: header, row, blank, failure, blank, summary.
        assert_eq!(table.lines().count(), 6, "{table}");

        let line = json_line(&row);
        assert!(!line.contains('\u{202e}') && !line.contains('\n'), "{line}");
        let value: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(value["got"]["code"], "bad\u{1b}[2J\ncode\u{202e}");
    }

    #[test]
    fn a_json_line_says_everything_the_row_does() {
        let value: Value = serde_json::from_str(&json_line(&passing())).expect("JSON");
        assert_eq!(
            value,
            json!({
                "type": "dev.warren.echo.v1",
                "example": "ok-hello.json",
                "pass": true,
                "expected": {"type": "dev.warren.echo.replied.v1", "code": null},
                "got": {"type": "dev.warren.echo.replied.v1", "code": null},
                "outcome": "received",
                "data": "ok",
                "data_error": null,
                "schema": "ok",
                "schema_error": null,
                "failures": [],
            })
        );
        let value: Value = serde_json::from_str(&json_line(&timed_out())).expect("JSON");
        assert_eq!(value["pass"], false);
        assert_eq!(value["got"], Value::Null);
        assert_eq!(value["outcome"], "no_outcome");
        assert_eq!(value["expected"]["code"], "invalid_payload");
        assert_eq!(value["data"], "invalid");
        assert_eq!(
            value["data_error"],
            "/amount: 1.5 is not of type \"integer\""
        );
        assert_eq!(value["failures"], json!(["no outcome within 10s"]));
    }
}
