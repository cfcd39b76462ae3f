//! A delivery built field by field: a body and the AMQP properties and headers a client
//! could set, with CloudEvents `ce-` headers likely, so binary mode is reached as often as
//! structured mode; then read and answered as a worker does.
#![no_main]

use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use warren_fuzz::lapin_types::BasicProperties;

#[derive(Debug, Arbitrary)]
enum Value {
    Text(String),
    Bytes(Vec<u8>),
    Integer(i64),
    Boolean(bool),
    Table(Vec<(String, String)>),
}

#[derive(Debug, Arbitrary)]
enum Name {
    /// A CloudEvents attribute header.
    Attribute(u8),
    /// A header warren or the broker writes.
    Known(u8),
    Other(String),
}

const ATTRIBUTES: [&str; 14] = [
    "ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time", "ce-dataschema",
    "ce-subject", "ce-correlationid", "ce-causationid", "ce-traceparent", "ce-tracestate",
    "ce-replyto", "ce-deadline", "CE-ID",
];
const KNOWN: [&str; 5] = ["x-death", "x-delivery-count", "traceparent", "x-warren-reason", "x-first-death-queue"];

#[derive(Debug, Arbitrary)]
struct Delivery {
    body: Vec<u8>,
    structured: Option<bool>,
    headers: Vec<(Name, Value)>,
    message_id: Option<String>,
    correlation_id: Option<String>,
    reply_to: Option<String>,
    kind: Option<String>,
    app_id: Option<String>,
}

fn short(text: &Option<String>) -> Option<ShortString> {
    text.as_deref().and_then(|text| ShortString::try_new(text).ok())
}

fuzz_target!(|delivery: Delivery| {
    let mut properties = BasicProperties::default();
    match delivery.structured {
        Some(true) => properties = properties.with_content_type("application/cloudevents+json".into()),
        Some(false) => properties = properties.with_content_type("application/json".into()),
        None => {}
    }
    let mut table = FieldTable::default();
    for (name, value) in delivery.headers {
        let name = match name {
            Name::Attribute(index) => ATTRIBUTES[usize::from(index) % ATTRIBUTES.len()].to_owned(),
            Name::Known(index) => KNOWN[usize::from(index) % KNOWN.len()].to_owned(),
            Name::Other(name) => name,
        };
        let Ok(name) = ShortString::try_new(name) else { continue };
        let value = match value {
            Value::Text(text) => AMQPValue::LongString(LongString::from(text.as_str())),
            Value::Bytes(bytes) => AMQPValue::LongString(LongString::from(bytes)),
            Value::Integer(number) => AMQPValue::LongLongInt(number),
            Value::Boolean(flag) => AMQPValue::Boolean(flag),
            Value::Table(entries) => {
                let mut inner = FieldTable::default();
                for (key, text) in entries {
                    if let Ok(key) = ShortString::try_new(key) {
                        inner.insert(key, AMQPValue::LongString(LongString::from(text.as_str())));
                    }
                }
                AMQPValue::FieldArray(vec![AMQPValue::FieldTable(inner)].into())
            }
        };
        table.insert(name, value);
    }
    properties = properties.with_headers(table);
    if let Some(value) = short(&delivery.message_id) {
        properties = properties.with_message_id(value);
    }
    if let Some(value) = short(&delivery.correlation_id) {
        properties = properties.with_correlation_id(value);
    }
    if let Some(value) = short(&delivery.reply_to) {
        properties = properties.with_reply_to(value);
    }
    if let Some(value) = short(&delivery.kind) {
        properties = properties.with_type(value);
    }
    if let Some(value) = short(&delivery.app_id) {
        properties = properties.with_app_id(value);
    }
    warren_fuzz::check_delivery(&properties, &delivery.body);
});
