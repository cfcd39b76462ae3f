//! The echo worker: replies to `dev.warren.echo.v1` with `dev.warren.echo.replied.v1`
//! carrying the same object. It has no store and no side effects; it is the load-test
//! target, so it adds nearly nothing to the runtime's own cost.

use warren_messages::{EchoReplied, EchoRequest, Payload};
use warren_runtime::{Handler, HandlerError, Incoming, Manifest, Outputs};

/// What the echo worker consumes and produces.
pub const MANIFEST: Manifest = Manifest {
    name: "echo",
    commands: &[EchoRequest::TYPE],
    events: &[],
    produces: &[EchoReplied::TYPE],
};

/// Replies with the request's object, unchanged.
#[derive(Debug, Default)]
pub struct EchoHandler;

impl Handler for EchoHandler {
    type Input = EchoRequest;

    async fn handle(&self, message: Incoming<'_, EchoRequest>) -> Result<Outputs, HandlerError> {
        Outputs::reply(&EchoReplied(message.payload.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_messages::Attributes;

    #[test]
    fn manifest_matches_the_handler() {
        assert_eq!(MANIFEST.check_against::<EchoRequest>(), Ok(()));
    }

    #[tokio::test]
    async fn replies_with_the_same_object() {
        let attributes = Attributes::request::<EchoRequest>("/test");
        let data =
            serde_json::value::RawValue::from_string(r#"{"hello":"world"}"#.into()).expect("JSON");
        let incoming = Incoming::decode(&attributes, &data).expect("an echo request");
        let outputs = EchoHandler
            .handle(incoming)
            .await
            .expect("echo never fails");
        assert_eq!(outputs.len(), 1);
    }
}
