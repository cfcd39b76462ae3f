//! `warren contract check`: every documented request example through the live fleet,
//! every outcome against its documented schema.
//!
//! The examples folder ([`examples`]) holds a folder per request type with an example
//! file per outcome it promises. Each example is read and checked against the request
//! type's schema, then sent as `warren request` sends (same envelope, progress off, a
//! deadline of `--timeout`), all of them first on one [`Originator`] connection; then
//! the outcomes are read as they come, matched to their example by correlation id
//! (an outcome that answers no example is reported, and fails the run), each held to
//! what its example promised and to its own type's schema ([`schemas`]). The verdicts
//! ([`verdict`]) are printed as a table or JSON lines ([`render`]).
//!
//! Exit codes: 0 every example passed; 1 any did not (wrong outcome, an outcome off its
//! schema, no outcome in time, an example that is itself wrong); 2 the examples folder
//! is missing or empty, or the broker cannot be reached.

mod examples;
mod render;
mod schemas;
mod verdict;

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use serde_json::value::RawValue;
use warren_messages::catalogue::{self, Entry};
use warren_messages::{Envelope, Fault, Payload, Progress};
use warren_runtime::{Originator, Outcome, Settings};

use crate::common::{
    EXIT_FAULT, EXIT_USAGE, new_envelope, next_outcome_before, parse_duration, publish_confirmed,
    reconnect,
};
use examples::{TypeFolder, promise_of};
use schemas::{SchemaCheck, Schemas};
use verdict::{Expectation, Got, Row};

/// Arguments of `warren contract check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The examples folder: a folder per request type, in it `ok-<name>.json` (ends in
    /// the type's result) and `fault-<code>-<name>.json` (ends in that fault).
    #[arg(long, value_name = "DIR", default_value = "docs/examples")]
    examples: PathBuf,
    /// How long each example may take to get its outcome, e.g. 10s or 2m. Also sent as
    /// each request's deadline.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print one JSON object per example instead of the table (the summary goes to
    /// stderr).
    #[arg(long)]
    json: bool,
    /// Check only the examples of this request type (may be given more than once).
    #[arg(long, value_name = "TYPE")]
    only: Vec<String>,
}

/// An example to send: its row, its request.
struct Request {
    row: usize,
    envelope: Envelope<Box<RawValue>>,
}

/// `warren contract check`.
pub async fn run(settings: &Settings, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let folders = match examples::type_folders(&args.examples, &args.only) {
        Ok(folders) => folders,
        Err(error) => {
            eprintln!("warren: {error}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let mut schemas = Schemas::default();
    let mut rows = Vec::new();
    let mut requests = Vec::new();
    for folder in &folders {
        plan_folder(folder, &mut schemas, &mut rows, &mut requests);
    }
    let strays = if requests.is_empty() {
        Vec::new()
    } else {
        send_and_collect(settings, &args, &mut schemas, &mut rows, requests).await?
    };

    let mut stdout = std::io::stdout().lock();
    if args.json {
        for row in &rows {
            writeln!(stdout, "{}", render::json_line(row))?;
        }
        stdout.flush()?;
        eprintln!("warren: {}", render::summary(&rows));
    } else {
        stdout.write_all(render::table(&rows).as_bytes())?;
        stdout.flush()?;
    }
    for stray in &strays {
        eprintln!(
            "warren: an outcome that answers no example: {}",
            render::escape(stray)
        );
    }
    if rows.iter().all(Row::passed) && strays.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(EXIT_FAULT))
    }
}

/// The rows of one type folder: each example refused at once (wrong type, file name or
/// JSON) or added to `requests`, its data checked against the request type's schema.
fn plan_folder(
    folder: &TypeFolder,
    schemas: &mut Schemas,
    rows: &mut Vec<Row>,
    requests: &mut Vec<Request>,
) {
    let message_type = folder.message_type.as_str();
    let request_type = request_entry(message_type);
    if folder.files.is_empty() {
        // A request type without examples has nothing to check; anything else is a
        // folder that should not be there.
        if let Err(reason) = request_type {
            rows.push(Row::refused(message_type, "-", reason));
        }
        return;
    }
    for (file_name, path) in &folder.files {
        let planned = request_type.clone().and_then(|(entry, result)| {
            let promise = promise_of(file_name)?;
            let data = read_example(path)?;
            Ok((entry, Expectation::of(&promise, result), data))
        });
        match planned {
            Err(reason) => rows.push(Row::refused(message_type, file_name, reason)),
            Ok((entry, expected, data)) => {
                let data_check = match serde_json::from_str::<Value>(data.get()) {
                    Ok(value) => schemas.check_entry(entry, &value),
                    Err(error) => SchemaCheck::Invalid(format!("not JSON: {error}")),
                };
                let mut envelope = new_envelope(message_type, data);
                // No news before the outcome: only the outcome is checked.
                envelope.attributes.progress = false;
                requests.push(Request {
                    row: rows.len(),
                    envelope,
                });
                rows.push(Row::sent(message_type, file_name, expected, data_check));
            }
        }
    }
}

/// The catalogue entry of a request type and its result, or why `message_type` is not
/// one.
fn request_entry(message_type: &str) -> Result<(&'static Entry, &'static str), String> {
    let entry = catalogue::lookup(message_type).ok_or_else(|| {
        format!("{message_type} is not in the catalogue (`warren types` lists it)")
    })?;
    let result = entry.result.ok_or_else(|| {
        format!("{message_type} is not a request type: it has no result to expect")
    })?;
    Ok((entry, result))
}

/// The data of the example at `path`, or why it cannot be sent.
fn read_example(path: &Path) -> Result<Box<RawValue>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read the example: {error}"))?;
    serde_json::from_str::<Box<RawValue>>(text.trim())
        .map_err(|error| format!("the example is not JSON: {error}"))
}

/// Sends every request on one connection, then reads the outcomes until each has one
/// or `--timeout` has passed since the last was sent, and fills in their rows. Returns
/// what outcomes answered no example.
async fn send_and_collect(
    settings: &Settings,
    args: &CheckArgs,
    schemas: &mut Schemas,
    rows: &mut [Row],
    mut requests: Vec<Request>,
) -> anyhow::Result<Vec<String>> {
    let prefetch = u16::try_from(requests.len().min(1000)).unwrap_or(1000);
    let mut originator = Originator::connect_within(
        settings,
        "warren-cli contract check",
        prefetch,
        args.timeout,
    )
    .await
    .context("cannot connect to the broker")?;
    let deadline_in = SignedDuration::try_from(args.timeout).unwrap_or(SignedDuration::MAX);
    let deadline = Timestamp::now().checked_add(deadline_in).ok();
    for request in &mut requests {
        request.envelope.attributes.replyto = Some(originator.reply_queue().to_owned());
        request.envelope.attributes.deadline = deadline;
    }

    let routed = loop {
        match publish_confirmed(
            &originator,
            requests.iter().map(|request| &request.envelope),
        )
        .await
        {
            Ok(routed) => break routed,
            Err(error) => {
                // Published again with the same ids: a worker's inbox takes each once.
                eprintln!("warren: publishing failed ({error}); reconnecting");
                let give_up_at = tokio::time::Instant::now() + args.timeout;
                reconnect(&mut originator, settings, give_up_at).await?;
            }
        }
    };
    // Each example waiting for its outcome, by request id: its row.
    let mut pending: HashMap<String, usize> = HashMap::with_capacity(requests.len());
    for (request, routed) in requests.iter().zip(routed) {
        if routed {
            pending.insert(request.envelope.attributes.id.clone(), request.row);
        } else {
            rows[request.row].got = Got::Unroutable;
        }
    }

    let wait_until = tokio::time::Instant::now() + args.timeout;
    let mut answered: HashSet<String> = HashSet::with_capacity(pending.len());
    let mut strays = Vec::new();
    while !pending.is_empty() {
        let Some(outcome) = next_outcome_before(&mut originator, settings, wait_until).await?
        else {
            break;
        };
        let (correlation_id, got, data) = read_outcome(&outcome);
        if got_is_progress(&got) {
            continue;
        }
        let Some(correlation_id) = correlation_id else {
            strays.push(format!("{} without a correlation id", describe(&got)));
            continue;
        };
        let Some(row) = pending.remove(&correlation_id) else {
            // A second copy of an outcome already read is a redelivery.
            if !answered.contains(&correlation_id) {
                strays.push(format!("{} for {correlation_id:?}", describe(&got)));
            }
            continue;
        };
        answered.insert(correlation_id);
        if let (Got::Outcome { message_type, .. }, Some(data)) = (&got, &data) {
            rows[row].schema = schemas.check(message_type, data);
        }
        rows[row].got = got;
    }
    for row in pending.into_values() {
        rows[row].got = Got::NoOutcome(args.timeout);
    }
    if let Err(error) = originator.close().await {
        eprintln!("warren: could not delete the reply queue ({error}); it expires by itself");
    }
    Ok(strays)
}

/// An outcome's correlation id, what it is, and its data (for a readable one).
fn read_outcome(outcome: &Outcome) -> (Option<String>, Got, Option<Value>) {
    let envelope = match &outcome.envelope {
        Ok(envelope) => envelope,
        Err(error) => {
            let correlation_id = outcome.salvaged.correlationid.clone();
            return (correlation_id, Got::Unreadable(error.to_string()), None);
        }
    };
    let attributes = &envelope.attributes;
    let data = match serde_json::from_str::<Value>(envelope.data.get()) {
        Ok(data) => data,
        Err(error) => {
            let got = Got::Unreadable(format!("its data is not JSON: {error}"));
            return (attributes.correlationid.clone(), got, None);
        }
    };
    let fault_code = (attributes.message_type == Fault::TYPE)
        .then(|| data.get("code").and_then(Value::as_str).map(str::to_owned))
        .flatten();
    let got = Got::Outcome {
        message_type: attributes.message_type.clone(),
        fault_code,
        dataschema: attributes.dataschema.clone(),
    };
    (attributes.correlationid.clone(), got, Some(data))
}

/// Whether an outcome is news before one (`dev.warren.progress.v1`): not an outcome.
fn got_is_progress(got: &Got) -> bool {
    matches!(got, Got::Outcome { message_type, .. } if message_type == Progress::TYPE)
}

/// An outcome in a line about it: its type (and code), or `an unreadable outcome`.
fn describe(got: &Got) -> String {
    match got {
        Got::Unreadable(error) => format!("an unreadable outcome ({error})"),
        other => verdict::got_text(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Folder;

    fn folder_of(message_type: &str, files: &[(&str, &str)]) -> (TypeFolder, Folder) {
        let temp = Folder::new("contract-check", "plan");
        let files = files
            .iter()
            .map(|(name, text)| (name.to_string(), temp.write(name, text)))
            .collect();
        (
            TypeFolder {
                message_type: message_type.to_owned(),
                files,
            },
            temp,
        )
    }

    fn plan(folder: &TypeFolder) -> (Vec<Row>, Vec<Request>) {
        let mut rows = Vec::new();
        let mut requests = Vec::new();
        plan_folder(folder, &mut Schemas::default(), &mut rows, &mut requests);
        (rows, requests)
    }

    #[test]
    fn examples_of_a_request_type_are_sent_with_what_they_promise() {
        let (folder, _files) = folder_of(
            "dev.warren.tally.add.v1",
            &[
                ("ok-five.json", r#"{"key": "k", "amount": 5}"#),
                (
                    "fault-invalid_payload-half.json",
                    r#"{"key": "k", "amount": 0.5}"#,
                ),
                ("five.json", r#"{"key": "k", "amount": 5}"#),
                ("ok-broken.json", "{"),
            ],
        );
        let (rows, requests) = plan(&folder);
        assert_eq!(rows.len(), 4);
        assert_eq!(requests.len(), 2);
        assert_eq!(
            rows[0].expected.as_ref().map(|e| e.outcome_type),
            Some("dev.warren.tally.added.v1")
        );
        assert_eq!(rows[0].data, SchemaCheck::Valid);
        assert_eq!(
            rows[1]
                .expected
                .as_ref()
                .and_then(|e| e.fault_code.as_deref()),
            Some("invalid_payload")
        );
        assert!(
            matches!(rows[1].data, SchemaCheck::Invalid(ref error) if error.starts_with("/amount"))
        );
        assert!(
            rows[2]
                .refused
                .as_deref()
                .is_some_and(|why| why == examples::NAMING_RULE)
        );
        assert!(
            rows[3]
                .refused
                .as_deref()
                .is_some_and(|why| why.contains("not JSON"))
        );

        let sent = &requests[0].envelope;
        assert_eq!(requests[0].row, 0);
        assert_eq!(requests[1].row, 1);
        assert_eq!(sent.attributes.message_type, "dev.warren.tally.add.v1");
        assert_eq!(sent.data.get(), r#"{"key": "k", "amount": 5}"#);
        assert!(!sent.attributes.progress);
        assert_eq!(
            sent.attributes.dataschema.as_deref(),
            Some("urn:warren:schema:dev.warren.tally.add.v1")
        );
        assert_ne!(sent.attributes.id, requests[1].envelope.attributes.id);
    }

    #[test]
    fn examples_of_a_type_that_is_no_request_are_refused() {
        let (folder, _files) = folder_of(
            "dev.warren.orders.completed.v1",
            &[("ok-done.json", "{}"), ("fault-x-y.json", "{}")],
        );
        let (rows, requests) = plan(&folder);
        assert!(requests.is_empty());
        assert_eq!(rows.len(), 2);
        for row in &rows {
            assert_eq!(
                row.failures(),
                [
                    "dev.warren.orders.completed.v1 is not a request type: it has no result to \
                  expect"
                ]
            );
        }

        let (unknown, _files) = folder_of("dev.example.nope.v1", &[]);
        let (rows, _) = plan(&unknown);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].example, "-");
        assert!(!rows[0].passed());

        let (empty_request_type, _files) = folder_of("dev.warren.echo.v1", &[]);
        assert!(plan(&empty_request_type).0.is_empty());
    }

    #[test]
    fn the_documented_examples_plan_without_refusal() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples");
        let folders = examples::type_folders(&examples, &[]).expect("docs/examples");
        let mut rows = Vec::new();
        let mut requests = Vec::new();
        let mut schemas = Schemas::default();
        for folder in &folders {
            plan_folder(folder, &mut schemas, &mut rows, &mut requests);
        }
        assert!(rows.len() >= 16, "{rows:?}");
        assert_eq!(requests.len(), rows.len());
        for row in &rows {
            // Not sent yet, so only the example's own data can fail it.
            assert_eq!(
                row.failures(),
                ["it was not sent"],
                "{}/{}",
                row.message_type,
                row.example
            );
        }
    }
}
