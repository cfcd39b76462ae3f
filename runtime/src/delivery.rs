//! Reading what the broker delivered: envelope mode, properties, headers.

use std::time::Duration;

use lapin::Acker;
use lapin::BasicProperties;
use lapin::options::BasicAckOptions;
use lapin::types::ShortString;
use serde_json::value::RawValue;
use warren_messages::{
    Attributes, DecodeError, Envelope, HeaderValue, Limits, STRUCTURED_CONTENT_TYPE,
    check_attribute, decode_binary, decode_structured, salvage_attributes,
};

use crate::error::RuntimeError;
use crate::headers::{self, TRACEPARENT};

/// Whether a delivery is a binary-mode CloudEvent: it carries a `ce-specversion` header
/// and is not labelled structured (`application/cloudevents+json`).
fn is_binary(properties: &BasicProperties) -> bool {
    let structured = properties.content_type().as_ref().is_some_and(|value| {
        value
            .as_str()
            .split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case(STRUCTURED_CONTENT_TYPE))
    });
    !structured
        && properties.headers().as_ref().is_some_and(|headers| {
            headers
                .inner()
                .keys()
                .any(|key| key.as_str().eq_ignore_ascii_case("ce-specversion"))
        })
}

fn short_str(value: &Option<ShortString>) -> Option<&str> {
    value.as_ref().map(ShortString::as_str)
}

/// Every header, as binary-mode decoding sees it.
fn binary_headers(properties: &BasicProperties) -> Vec<(&str, HeaderValue<'_>)> {
    properties
        .headers()
        .as_ref()
        .map(|headers| {
            headers
                .inner()
                .iter()
                .map(|(key, value)| (key.as_str(), headers::binary_value(value)))
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes a delivery's body in structured mode, or in binary mode when it carries
/// CloudEvents `ce-` headers and is not labelled structured. A delivery with a property
/// that did not arrive as UTF-8 is refused first (see
/// [`headers::unreadable_property`]).
pub fn decode_delivery<'a>(
    body: &'a [u8],
    properties: &BasicProperties,
    limits: &Limits,
) -> Result<Envelope<&'a RawValue>, DecodeError> {
    if let Some(name) = headers::unreadable_property(properties) {
        return Err(DecodeError::InvalidProperty {
            name,
            reason: "it is not valid UTF-8".to_owned(),
        });
    }
    if is_binary(properties) {
        let content_type = properties.content_type().as_ref().map(ShortString::as_str);
        return decode_binary(&binary_headers(properties), content_type, body, limits);
    }
    decode_structured(body, limits)
}

/// What can still be read of a delivery that [`decode_delivery`] refused, to tell its
/// sender: the attributes that are valid on their own, from the envelope (its body in
/// structured mode, its `ce-` headers in binary mode), else from the AMQP properties
/// that mirror them.
pub fn salvage(body: &[u8], properties: &BasicProperties, limits: &Limits) -> Attributes {
    let mut attributes = salvage_attributes(
        &binary_headers(properties),
        is_binary(properties),
        body,
        limits,
    );
    let property = |name: &'static str, value: Option<&str>| {
        value
            .filter(|value| !value.contains(char::REPLACEMENT_CHARACTER))
            .filter(|value| check_attribute(name, value).is_ok())
            .map(str::to_owned)
    };
    if attributes.id.is_empty() {
        attributes.id = property("id", short_str(properties.message_id())).unwrap_or_default();
    }
    if attributes.source.is_empty() {
        attributes.source = property("source", short_str(properties.app_id())).unwrap_or_default();
    }
    if attributes.message_type.is_empty() {
        attributes.message_type =
            property("type", short_str(properties.kind())).unwrap_or_default();
    }
    if attributes.correlationid.is_none() {
        attributes.correlationid =
            property("correlationid", short_str(properties.correlation_id()));
    }
    if attributes.replyto.is_none() {
        attributes.replyto = property("replyto", short_str(properties.reply_to()));
    }
    if attributes.traceparent.is_none() {
        let header = headers::header_text(properties.headers().as_ref(), TRACEPARENT);
        attributes.traceparent = property("traceparent", header);
    }
    attributes
}

/// Acks through `acker` (every delivery up to it when `multiple`), bounded by `limit`:
/// lapin's ack may never resolve once the broker has dropped the connection, so an ack
/// not written in time fails with [`RuntimeError::ConfirmTimeout`] instead of hanging
/// its caller. An acker of a dead channel fails with [`RuntimeError::ChannelGone`].
pub async fn ack_within(
    acker: &Acker,
    multiple: bool,
    limit: Duration,
) -> Result<(), RuntimeError> {
    let ack = acker.ack(BasicAckOptions { multiple });
    let sent = tokio::time::timeout(limit, ack)
        .await
        .map_err(|_elapsed| RuntimeError::ConfirmTimeout(limit))??;
    if sent {
        Ok(())
    } else {
        Err(RuntimeError::ChannelGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{long_text as text, table as headers};
    use lapin::types::AMQPValue;

    #[test]
    fn binary_mode_is_read_from_ce_headers() {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(headers(&[
                ("ce-specversion", text("1.0")),
                ("ce-id", text("b-1")),
                ("ce-source", text("/sdk")),
                ("ce-type", text("dev.warren.echo.v1")),
            ]));
        let envelope =
            decode_delivery(br#"{"x":1}"#, &properties, &Limits::default()).expect("binary");
        assert_eq!(envelope.attributes.id, "b-1");
        assert_eq!(envelope.data.get(), r#"{"x":1}"#);

        let structured = BasicProperties::default()
            .with_content_type(STRUCTURED_CONTENT_TYPE.into())
            .with_headers(headers(&[("ce-specversion", text("1.0"))]));
        let error = decode_delivery(br#"{"x":1}"#, &structured, &Limits::default())
            .expect_err("structured body without attributes");
        assert_eq!(error, DecodeError::MissingAttribute("specversion"));
    }

    #[test]
    fn a_property_that_was_not_utf8_is_refused() {
        let properties = BasicProperties::default().with_message_id("m\u{fffd}".into());
        let error = decode_delivery(b"{}", &properties, &Limits::default()).expect_err("refused");
        assert_eq!(error.reason_code(), "invalid_property");
    }

    #[test]
    fn salvage_prefers_the_envelope_and_falls_back_to_valid_properties() {
        let properties = BasicProperties::default()
            .with_message_id("property-id".into())
            .with_correlation_id("property-correlation".into())
            .with_reply_to("warren.reply.property".into());
        let body =
            br#"{"specversion":"1.0","id":"body-id","replyto":"warren.reply.body","type":7}"#;
        let salvaged = salvage(body, &properties, &Limits::default());
        assert_eq!(salvaged.id, "body-id");
        assert_eq!(salvaged.replyto.as_deref(), Some("warren.reply.body"));
        assert_eq!(
            salvaged.correlationid.as_deref(),
            Some("property-correlation")
        );
        assert_eq!(salvaged.message_type, "");

        let mangled = BasicProperties::default()
            .with_message_id("m\u{fffd}".into())
            .with_correlation_id("line\nbreak".into());
        let salvaged = salvage(b"not json", &mangled, &Limits::default());
        assert_eq!(salvaged.id, "");
        assert_eq!(salvaged.correlationid, None);

        let binary = BasicProperties::default().with_headers(headers(&[
            ("ce-specversion", text("1.0")),
            ("ce-type", AMQPValue::LongLongInt(7)),
            ("ce-replyto", text("warren.reply.binary")),
        ]));
        let salvaged = salvage(b"{", &binary, &Limits::default());
        assert_eq!(salvaged.replyto.as_deref(), Some("warren.reply.binary"));
    }
}
