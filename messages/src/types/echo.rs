//! The echo worker's messages.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalogue::{Entry, Kind, entry};
use crate::payload::{JsonObject, payload};

/// `dev.warren.echo.v1`: ask the echo worker to reply with this object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct EchoRequest(pub JsonObject);
payload!(EchoRequest, "dev.warren.echo.v1");

/// `dev.warren.echo.replied.v1`: the echo worker's result, the request's object unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct EchoReplied(pub JsonObject);
payload!(EchoReplied, "dev.warren.echo.replied.v1");

/// The echo worker's messages in the catalogue.
pub(crate) const CATALOGUE: &[Entry] = &[
    entry::<EchoRequest>(
        Kind::Command,
        "Ask the echo worker to reply with this object.",
    )
    .answered_by::<EchoReplied>(),
    entry::<EchoReplied>(
        Kind::Outcome,
        "The echo worker's result: the request's object.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_relays_the_exact_text() {
        let request: EchoRequest =
            serde_json::from_str(r#"{"hello":"world","n":1.50}"#).expect("echo request");
        let reply = EchoReplied(request.0);
        assert_eq!(
            serde_json::to_string(&reply).expect("serialize"),
            r#"{"hello":"world","n":1.50}"#
        );
    }
}
