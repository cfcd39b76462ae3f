//! Making a run's request envelopes, and publishing one with its confirm.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::value::RawValue;
use uuid::Uuid;
use uuid::timestamp::context::ContextV7;
use warren_messages::{Attributes, Envelope, TraceParent};
use warren_runtime::{Delivered, Publisher, RuntimeError, Token};

use crate::common::{exchange_for, request_attributes};

/// Makes a run's request envelopes: one type, data and reply queue; each its own id,
/// time, trace and deadline.
pub(super) struct Requests<'a> {
    /// Its own id clock, so making an id takes no lock (`Uuid::now_v7` shares one).
    ids: ContextV7,
    template: Attributes,
    data: &'a RawValue,
    pub(super) exchange: &'static str,
    timeout: SignedDuration,
}

impl<'a> Requests<'a> {
    pub(super) fn new(
        message_type: &str,
        data: &'a RawValue,
        reply_queue: &str,
        timeout: Duration,
    ) -> Self {
        let mut template = request_attributes(message_type);
        // Set per request; empty here so cloning the template copies nothing of them.
        template.id = String::new();
        template.correlationid = None;
        template.traceparent = None;
        template.replyto = Some(reply_queue.to_owned());
        Requests {
            ids: ContextV7::new(),
            template,
            data,
            exchange: exchange_for(message_type),
            timeout: SignedDuration::try_from(timeout).unwrap_or(SignedDuration::MAX),
        }
    }

    /// A new request id: a UUID v7, so ids sort by time.
    /// Whether every request asks its hops for progress notes.
    pub(super) fn ask_for_progress(&mut self, progress: bool) {
        self.template.progress = progress;
    }

    pub(super) fn new_id(&self) -> Uuid {
        Uuid::new_v7(uuid::Timestamp::now(&self.ids))
    }

    /// A new request's deadline, when made at `now`.
    pub(super) fn deadline(&self, now: Timestamp) -> Option<Timestamp> {
        now.checked_add(self.timeout).ok()
    }

    /// The envelope of request `id` made at `now`.
    pub(super) fn envelope(
        &self,
        id: Uuid,
        deadline: Option<Timestamp>,
        now: Timestamp,
    ) -> Envelope<&'a RawValue> {
        let mut buffer = Uuid::encode_buffer();
        let id_text: &str = id.hyphenated().encode_lower(&mut buffer);
        let mut attributes = self.template.clone();
        attributes.id = id_text.to_owned();
        attributes.correlationid = Some(id_text.to_owned());
        attributes.time = Some(now);
        attributes.traceparent = Some(TraceParent::new_root().to_string());
        attributes.deadline = deadline;
        Envelope {
            attributes,
            data: self.data,
        }
    }
}

/// What became of one publish.
pub(super) struct Published {
    pub(super) id: Uuid,
    pub(super) deadline: Option<Timestamp>,
    pub(super) result: Result<Delivered, RuntimeError>,
}

/// Publishes `envelope`, with `token` if there is one, and waits for its confirm.
pub(super) async fn publish_request(
    publisher: Publisher,
    exchange: &'static str,
    envelope: Envelope<&RawValue>,
    id: Uuid,
    token: Option<Arc<Token>>,
) -> Published {
    let result = match publisher
        .publish_with_token(
            exchange,
            &envelope.attributes.message_type,
            &envelope,
            token.as_deref(),
        )
        .await
    {
        Ok(confirm) => confirm.wait().await,
        Err(error) => Err(error),
    };
    Published {
        id,
        deadline: envelope.attributes.deadline,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::args::padded_data;

    #[test]
    fn padded_data_goes_into_the_envelope_as_is() {
        let data = padded_data(256).expect("padded data");
        let requests = Requests::new(
            "dev.warren.echo.v1",
            &data,
            "warren.reply.x",
            Duration::from_secs(30),
        );
        let now = Timestamp::now();
        let id = Uuid::now_v7();
        let envelope = requests.envelope(id, requests.deadline(now), now);
        let body = String::from_utf8(envelope.to_json_vec().expect("serialize")).expect("utf-8");
        assert!(
            body.contains(&format!(r#""data":{}"#, data.get())),
            "{body}"
        );
        let attributes = &envelope.attributes;
        assert_eq!(attributes.id, id.to_string());
        assert_eq!(attributes.correlation_id(), attributes.id);
        assert_eq!(attributes.replyto.as_deref(), Some("warren.reply.x"));
        assert_eq!(
            attributes.deadline,
            now.checked_add(SignedDuration::from_secs(30)).ok()
        );
        assert!(attributes.trace_parent().is_some());
    }
}
