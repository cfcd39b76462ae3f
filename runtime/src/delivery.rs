//! Reading what the broker delivered: envelope mode, headers, broker-written counts.

use std::time::Duration;

use lapin::Acker;
use lapin::BasicProperties;
use lapin::options::BasicAckOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::value::RawValue;
use warren_messages::{
    Attributes, DecodeError, Envelope, Limits, STRUCTURED_CONTENT_TYPE, decode_binary,
    decode_structured,
};

use crate::error::RuntimeError;

/// Decodes a delivery's body in structured mode, or in binary mode when it carries
/// CloudEvents `ce-` headers and is not labelled structured.
pub(crate) fn decode_delivery<'a>(
    body: &'a [u8],
    properties: &BasicProperties,
    limits: &Limits,
) -> Result<Envelope<&'a RawValue>, DecodeError> {
    let content_type = properties
        .content_type()
        .as_ref()
        .map(|value| value.as_str());
    let structured = content_type.is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case(STRUCTURED_CONTENT_TYPE))
    });
    if !structured
        && let Some(headers) = properties.headers()
        && headers
            .inner()
            .keys()
            .any(|key| key.as_str().eq_ignore_ascii_case("ce-specversion"))
    {
        let attributes: Vec<(&str, &str)> = headers
            .inner()
            .iter()
            .filter_map(|(key, value)| Some((key.as_str(), value_as_str(value)?)))
            .collect();
        return decode_binary(&attributes, content_type, body, limits);
    }
    decode_structured(body, limits)
}

/// A header's value as text, when it is a string.
pub(crate) fn header_str<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a str> {
    properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get(name))
        .and_then(value_as_str)
}

/// A header's value as a count, when it is a non-negative integer.
pub(crate) fn header_count(headers: Option<&FieldTable>, name: &str) -> Option<u32> {
    let value = headers?.inner().get(name)?;
    let number: i64 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => *v,
        _ => return None,
    };
    u32::try_from(number).ok()
}

fn value_as_str(value: &AMQPValue) -> Option<&str> {
    match value {
        AMQPValue::LongString(text) => std::str::from_utf8(text.as_bytes()).ok(),
        AMQPValue::ShortString(text) => Some(text.as_str()),
        _ => None,
    }
}

/// Attributes recovered from AMQP properties alone, for a body that could not be read:
/// enough to tie a fault to the request.
pub(crate) fn attributes_from_properties(properties: &BasicProperties) -> Attributes {
    let text = |value: &Option<lapin::types::ShortString>| {
        value.as_ref().map(|value| value.as_str().to_owned())
    };
    let id = text(properties.message_id()).unwrap_or_default();
    Attributes {
        correlationid: text(properties.correlation_id()).or_else(|| Some(id.clone())),
        id,
        source: text(properties.app_id()).unwrap_or_default(),
        message_type: text(properties.kind()).unwrap_or_default(),
        replyto: text(properties.reply_to()),
        traceparent: header_str(properties, "traceparent").map(str::to_owned),
        ..Attributes::default()
    }
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
    use lapin::types::LongString;

    fn headers(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut table = FieldTable::default();
        for (key, value) in entries {
            table.insert((*key).into(), value.clone());
        }
        table
    }

    #[test]
    fn binary_mode_is_read_from_ce_headers() {
        let text = |value: &str| AMQPValue::LongString(LongString::from(value));
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
    fn counts_accept_every_integer_width() {
        for value in [
            AMQPValue::LongLongInt(3),
            AMQPValue::LongInt(3),
            AMQPValue::ShortShortUInt(3),
        ] {
            let table = headers(&[("x-delivery-count", value)]);
            assert_eq!(header_count(Some(&table), "x-delivery-count"), Some(3));
        }
        let negative = headers(&[("x-delivery-count", AMQPValue::LongLongInt(-1))]);
        assert_eq!(header_count(Some(&negative), "x-delivery-count"), None);
        assert_eq!(header_count(None, "x-delivery-count"), None);
    }
}
