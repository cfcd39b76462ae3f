//! One example's row: what was expected, what came back, and whether they agree, as a
//! pure function of the facts ([`Row::failures`]).

use std::time::Duration;

use warren_messages::{Fault, Payload, catalogue};

use super::examples::Promise;
use super::schemas::SchemaCheck;

/// The type of a fault outcome.
pub(super) const FAULT_TYPE: &str = Fault::TYPE;

/// The outcome an example promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Expectation {
    /// The outcome's type: the request type's result, or [`FAULT_TYPE`].
    pub(super) outcome_type: &'static str,
    /// For a fault, its code.
    pub(super) fault_code: Option<String>,
    /// Whether the example's own data may fail the request type's schema: only an
    /// example of the fault that says so (`invalid_payload`).
    pub(super) data_may_be_invalid: bool,
}

impl Expectation {
    /// What `promise` means for a request type whose result is `result`.
    pub(super) fn of(promise: &Promise, result: &'static str) -> Expectation {
        match promise {
            Promise::Result => Expectation {
                outcome_type: result,
                fault_code: None,
                data_may_be_invalid: false,
            },
            Promise::Fault(code) => Expectation {
                outcome_type: FAULT_TYPE,
                fault_code: Some(code.clone()),
                data_may_be_invalid: true,
            },
        }
    }
}

/// What came back for an example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Got {
    /// Not sent: the example itself is wrong (see [`Row::refused`]).
    NotSent,
    /// The broker returned it: no queue is bound for its type.
    Unroutable,
    /// No outcome arrived within the timeout.
    NoOutcome(Duration),
    /// An outcome arrived that could not be decoded: why.
    Unreadable(String),
    /// An outcome.
    Outcome {
        /// Its `type`.
        message_type: String,
        /// For a fault, the `code` of its data (when it has one).
        fault_code: Option<String>,
        /// Its `dataschema`, when it has one.
        dataschema: Option<String>,
    },
}

/// One example and its check: a row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    /// The type folder: the request type.
    pub(super) message_type: String,
    /// The example's file name (`-` for a type folder with none).
    pub(super) example: String,
    /// Why the example was not sent, when it was not.
    pub(super) refused: Option<String>,
    /// The outcome it promises (when it was sent).
    pub(super) expected: Option<Expectation>,
    /// The example's data against the request type's schema.
    pub(super) data: SchemaCheck,
    /// What came back.
    pub(super) got: Got,
    /// The outcome's data against its type's schema.
    pub(super) schema: SchemaCheck,
}

impl Row {
    /// A row of an example that is not sent, for `reason`.
    pub(super) fn refused(message_type: &str, example: &str, reason: String) -> Row {
        Row {
            message_type: message_type.to_owned(),
            example: example.to_owned(),
            refused: Some(reason),
            expected: None,
            data: SchemaCheck::NotChecked,
            got: Got::NotSent,
            schema: SchemaCheck::NotChecked,
        }
    }

    /// A row of an example that is sent, waiting for its outcome.
    pub(super) fn sent(
        message_type: &str,
        example: &str,
        expected: Expectation,
        data: SchemaCheck,
    ) -> Row {
        Row {
            message_type: message_type.to_owned(),
            example: example.to_owned(),
            refused: None,
            expected: Some(expected),
            data,
            got: Got::NotSent,
            schema: SchemaCheck::NotChecked,
        }
    }

    /// Every way this row breaks the contract; none means it passes.
    pub(super) fn failures(&self) -> Vec<String> {
        if let Some(reason) = &self.refused {
            return vec![reason.clone()];
        }
        let Some(expected) = &self.expected else {
            return vec!["nothing was expected of it".to_owned()];
        };
        let mut failures = Vec::new();
        if let SchemaCheck::Invalid(error) = &self.data
            && !expected.data_may_be_invalid
        {
            failures.push(format!(
                "the example does not match the {} schema: {error}",
                self.message_type
            ));
        }
        match &self.got {
            Got::NotSent => failures.push("it was not sent".to_owned()),
            Got::Unroutable => failures.push(format!(
                "no worker consumes {}: no queue is bound for it",
                self.message_type
            )),
            Got::NoOutcome(timeout) => {
                failures.push(format!("no outcome within {}", duration_text(*timeout)));
            }
            Got::Unreadable(error) => {
                failures.push(format!("the outcome could not be read: {error}"));
            }
            Got::Outcome {
                message_type,
                fault_code,
                dataschema,
            } => {
                if message_type != expected.outcome_type
                    || (expected.fault_code.is_some() && fault_code != &expected.fault_code)
                {
                    failures.push(format!(
                        "expected {}, got {}",
                        expected_text(expected),
                        got_text(&self.got)
                    ));
                }
                let documented = catalogue::lookup(message_type).map(|entry| entry.schema);
                if let (Some(dataschema), Some(documented)) = (dataschema, documented)
                    && dataschema != documented
                {
                    failures.push(format!(
                        "its dataschema is {dataschema}, the catalogue's is {documented}"
                    ));
                }
                match &self.schema {
                    SchemaCheck::Valid => {}
                    SchemaCheck::Invalid(error) => failures.push(format!(
                        "the outcome does not match the {message_type} schema: {error}"
                    )),
                    SchemaCheck::Undocumented => {
                        failures.push(format!("{message_type} is not in the catalogue"));
                    }
                    SchemaCheck::NotChecked => {
                        failures.push("the outcome was not checked against its schema".to_owned());
                    }
                }
            }
        }
        failures
    }

    /// Whether the row passes.
    pub(super) fn passed(&self) -> bool {
        self.failures().is_empty()
    }
}

/// An expectation as the table writes it: the result type, or `fault <code>`.
pub(super) fn expected_text(expected: &Expectation) -> String {
    match &expected.fault_code {
        Some(code) => format!("fault {code}"),
        None => expected.outcome_type.to_owned(),
    }
}

/// What came back as the table writes it: the outcome's type (`fault <code>` for a
/// fault), `unroutable`, `unreadable`, or `-`.
pub(super) fn got_text(got: &Got) -> String {
    match got {
        Got::NotSent | Got::NoOutcome(_) => "-".to_owned(),
        Got::Unroutable => "unroutable".to_owned(),
        Got::Unreadable(_) => "unreadable".to_owned(),
        Got::Outcome {
            message_type,
            fault_code,
            ..
        } if message_type == FAULT_TYPE => match fault_code {
            Some(code) => format!("fault {code}"),
            None => "fault (no code)".to_owned(),
        },
        Got::Outcome { message_type, .. } => message_type.clone(),
    }
}

/// `10s`, `1.5s`, `500ms`: a timeout as `warren request` writes it.
pub(super) fn duration_text(duration: Duration) -> String {
    format!("{duration:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &str = "dev.warren.echo.v1";
    const REPLIED: &str = "dev.warren.echo.replied.v1";

    fn ok_row() -> Row {
        let mut row = Row::sent(
            ECHO,
            "ok-hello.json",
            Expectation::of(&Promise::Result, REPLIED),
            SchemaCheck::Valid,
        );
        row.got = Got::Outcome {
            message_type: REPLIED.to_owned(),
            fault_code: None,
            dataschema: Some("urn:warren:schema:dev.warren.echo.replied.v1".to_owned()),
        };
        row.schema = SchemaCheck::Valid;
        row
    }

    fn fault_row(promised: &str, got: Option<&str>) -> Row {
        let mut row = Row::sent(
            ECHO,
            &format!("fault-{promised}-x.json"),
            Expectation::of(&Promise::Fault(promised.to_owned()), REPLIED),
            SchemaCheck::Valid,
        );
        row.got = Got::Outcome {
            message_type: FAULT_TYPE.to_owned(),
            fault_code: got.map(str::to_owned),
            dataschema: None,
        };
        row.schema = SchemaCheck::Valid;
        row
    }

    #[test]
    fn the_promised_outcome_with_a_valid_payload_passes() {
        assert_eq!(ok_row().failures(), Vec::<String>::new());
        assert!(ok_row().passed());
        assert!(fault_row("out_of_stock", Some("out_of_stock")).passed());
    }

    #[test]
    fn the_wrong_outcome_fails() {
        let mut row = ok_row();
        row.got = Got::Outcome {
            message_type: FAULT_TYPE.to_owned(),
            fault_code: Some("internal".to_owned()),
            dataschema: None,
        };
        assert_eq!(
            row.failures(),
            [format!("expected {REPLIED}, got fault internal")]
        );

        let other_code = fault_row("out_of_stock", Some("card_declined"));
        assert_eq!(
            other_code.failures(),
            ["expected fault out_of_stock, got fault card_declined"]
        );
        let no_code = fault_row("out_of_stock", None);
        assert_eq!(
            no_code.failures(),
            ["expected fault out_of_stock, got fault (no code)"]
        );

        let mut result_for_a_fault = fault_row("out_of_stock", None);
        result_for_a_fault.got = ok_row().got;
        assert_eq!(
            result_for_a_fault.failures(),
            [format!("expected fault out_of_stock, got {REPLIED}")]
        );
    }

    #[test]
    fn an_outcome_off_its_schema_or_outside_the_catalogue_fails() {
        let mut row = ok_row();
        row.schema = SchemaCheck::Invalid("/n: \"x\" is not of type \"integer\"".to_owned());
        assert_eq!(
            row.failures(),
            [format!(
                "the outcome does not match the {REPLIED} schema: /n: \"x\" is not of type \"integer\""
            )]
        );

        let mut unknown = ok_row();
        unknown.got = Got::Outcome {
            message_type: "dev.warren.nope.v1".to_owned(),
            fault_code: None,
            dataschema: None,
        };
        unknown.schema = SchemaCheck::Undocumented;
        assert_eq!(
            unknown.failures(),
            [
                format!("expected {REPLIED}, got dev.warren.nope.v1"),
                "dev.warren.nope.v1 is not in the catalogue".to_owned()
            ]
        );

        let mut other_schema = ok_row();
        other_schema.got = Got::Outcome {
            message_type: REPLIED.to_owned(),
            fault_code: None,
            dataschema: Some("urn:warren:schema:dev.warren.echo.replied.v9".to_owned()),
        };
        assert_eq!(
            other_schema.failures(),
            [
                "its dataschema is urn:warren:schema:dev.warren.echo.replied.v9, the catalogue's \
              is urn:warren:schema:dev.warren.echo.replied.v1"
            ]
        );
    }

    #[test]
    fn only_a_fault_example_may_break_the_request_schema() {
        let mut ok = ok_row();
        ok.data = SchemaCheck::Invalid("(root): [1] is not of type \"object\"".to_owned());
        assert_eq!(
            ok.failures(),
            [format!(
                "the example does not match the {ECHO} schema: (root): [1] is not of type \"object\""
            )]
        );
        let mut fault = fault_row("invalid_payload", Some("invalid_payload"));
        fault.data = ok.data.clone();
        assert!(fault.passed(), "{:?}", fault.failures());
    }

    #[test]
    fn no_outcome_and_examples_not_sent_fail_with_why() {
        let mut late = ok_row();
        late.got = Got::NoOutcome(Duration::from_secs(10));
        late.schema = SchemaCheck::NotChecked;
        assert_eq!(late.failures(), ["no outcome within 10s"]);
        late.got = Got::NoOutcome(Duration::from_millis(1500));
        assert_eq!(late.failures(), ["no outcome within 1.5s"]);

        let mut returned = ok_row();
        returned.got = Got::Unroutable;
        assert_eq!(
            returned.failures(),
            [format!(
                "no worker consumes {ECHO}: no queue is bound for it"
            )]
        );

        let mut unreadable = ok_row();
        unreadable.got = Got::Unreadable("not JSON".to_owned());
        assert_eq!(
            unreadable.failures(),
            ["the outcome could not be read: not JSON"]
        );

        let refused = Row::refused(
            "dev.warren.orders.completed.v1",
            "ok-x.json",
            "not a request type".to_owned(),
        );
        assert_eq!(refused.failures(), ["not a request type"]);
        assert_eq!(got_text(&refused.got), "-");
    }
}
