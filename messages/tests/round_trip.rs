//! Whatever warren encodes, it decodes to the same attributes and data.

use proptest::prelude::*;
use serde_json::value::RawValue;
use warren_messages::{
    Attributes, EchoRequest, Envelope, Limits, OutgoingEnvelope, decode_structured,
};

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, including quotes, backslashes and control characters.
    any::<String>().prop_filter("non-empty", |value| !value.is_empty())
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

fn attributes() -> impl Strategy<Value = Attributes> {
    (
        text(),
        text(),
        text(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(0i64..4_000_000_000),
    )
        .prop_map(
            |(id, source, message_type, subject, correlationid, replyto, deadline)| {
                let mut attributes = Attributes::request_of_type(&message_type, None, &source);
                attributes.id = id;
                attributes.subject = subject;
                attributes.correlationid = correlationid;
                attributes.replyto = replyto;
                attributes.deadline =
                    deadline.and_then(|seconds| jiff::Timestamp::from_second(seconds).ok());
                attributes
            },
        )
}

proptest! {
    #[test]
    fn structured_envelopes_round_trip(attributes in attributes(), data in json_value()) {
        let envelope = Envelope {
            attributes,
            data: serde_json::value::to_raw_value(&data).expect("raw value"),
        };
        let body = envelope.to_json_vec().expect("encode");
        let decoded = decode_structured(&body, &Limits::default()).expect("decode");
        prop_assert_eq!(&decoded.attributes, &envelope.attributes);
        let decoded_data: serde_json::Value =
            serde_json::from_str(decoded.data.get()).expect("data");
        prop_assert_eq!(decoded_data, data);
    }
}

#[test]
fn a_child_keeps_the_correlation_and_reply_queue() {
    let payload: EchoRequest = serde_json::from_str(r#"{"n":1}"#).expect("payload");
    let mut request = OutgoingEnvelope::request("/test", &payload).expect("request");
    request.attributes.replyto = Some("warren.reply.abc".into());
    request.attributes.deadline = Some(jiff::Timestamp::now());
    let child =
        OutgoingEnvelope::child_of(&request.attributes, "/warren/echo", &payload).expect("child");
    assert_ne!(child.attributes.id, request.attributes.id);
    assert_eq!(child.attributes.correlation_id(), request.attributes.id);
    assert_eq!(
        child.attributes.causationid.as_deref(),
        Some(request.attributes.id.as_str())
    );
    assert_eq!(child.attributes.replyto, request.attributes.replyto);
    assert_eq!(child.attributes.deadline, request.attributes.deadline);
    let parent_trace = request.attributes.trace_parent().expect("parent trace");
    let child_trace = child.attributes.trace_parent().expect("child trace");
    assert_eq!(child_trace.trace_id, parent_trace.trace_id);
    assert_ne!(child_trace.span_id, parent_trace.span_id);
    let _: &RawValue = &child.data;
}
