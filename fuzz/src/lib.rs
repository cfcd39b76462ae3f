//! What every fuzz target checks about one delivery, however it was made: reading it
//! never panics, and whatever warren would publish because of it (a reply, a fault, a
//! dead-letter copy) can be written to the wire and read back by warren.

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, gen_frame};
use lapin_types::BasicProperties;
use serde_json::value::RawValue;
use warren_messages::{
    Envelope, Fault, Limits, Payload, check_attribute, decode_structured, new_message_id,
};
use warren_runtime::delivery::{decode_delivery, salvage};
use warren_runtime::headers::{DeadLetterFacts, dead_letter_properties, header_frame_size};
use warren_runtime::{MessageIdentity, properties_of};

/// The basic properties type, as lapin and amq-protocol share it.
pub mod lapin_types {
    pub use amq_protocol::protocol::BasicProperties;
}

/// The broker's default frame size.
pub const FRAME_MAX: usize = 131_072;

/// Small limits, so the fuzzer reaches every check quickly.
const LIMITS: Limits = Limits {
    max_body_bytes: 4096,
    max_depth: 16,
};

/// The content header frame carrying `properties`, as lapin writes it.
pub fn encode(properties: &BasicProperties) -> Vec<u8> {
    let frame = AMQPFrame::Header(
        1,
        AMQPContentHeader {
            class_id: 60,
            body_size: 0,
            properties: properties.clone(),
        },
    );
    cookie_factory::gen_simple(gen_frame(&frame), Vec::new()).expect("a frame encodes")
}

/// Checks everything warren does with a delivery of `body` with `properties`.
pub fn check_delivery(properties: &BasicProperties, body: &[u8]) {
    match decode_delivery(body, properties, &LIMITS) {
        Ok(envelope) => {
            let identity = MessageIdentity::of(&envelope.attributes, envelope.data);
            assert_eq!(identity.fingerprint.len(), 64);
            // An output of this message, as the runtime makes it.
            let child = envelope.attributes.child_with_id(
                new_message_id(),
                "dev.warren.fuzz.replied.v1",
                Some("urn:warren:schema:dev.warren.fuzz.replied.v1"),
                "/warren/fuzz",
            );
            let output = Envelope {
                attributes: child,
                data: envelope.data,
            };
            read_back(&output);
        }
        Err(error) => {
            let salvaged = salvage(body, properties, &LIMITS);
            for (name, value) in [
                ("id", Some(salvaged.id.as_str())),
                ("source", Some(salvaged.source.as_str())),
                ("type", Some(salvaged.message_type.as_str())),
                ("correlationid", salvaged.correlationid.as_deref()),
                ("replyto", salvaged.replyto.as_deref()),
                ("traceparent", salvaged.traceparent.as_deref()),
            ] {
                if let Some(value) = value {
                    assert!(check_attribute(name, value).is_ok(), "salvaged {name}: {value:?}");
                }
            }
            // The dead-letter copy fits the frame the original fitted, and the size the
            // runtime computes is the size lapin writes.
            let error_text = error.to_string();
            let copy = dead_letter_properties(
                properties,
                &DeadLetterFacts {
                    reason: error.reason_code(),
                    error: &error_text,
                    worker: "fuzz",
                    exchange: "warren.commands",
                    routing_key: "dev.warren.fuzz.v1",
                    attempts: 1,
                    token_subject: None,
                },
                FRAME_MAX,
            );
            let encoded = encode(&copy);
            assert_eq!(encoded.len(), header_frame_size(&copy), "frame size");
            if header_frame_size(properties) <= FRAME_MAX - 4096 {
                assert!(encoded.len() <= FRAME_MAX, "the copy does not fit");
            }
            // The fault its sender would get.
            let fault = Fault {
                code: error.fault_code().to_owned(),
                message: error_text,
                retryable: false,
                worker: "fuzz".to_owned(),
                stage: "decode".to_owned(),
                attempts: 1,
                details: serde_json::Value::Null,
            };
            let data = serde_json::value::to_raw_value(&fault).expect("a fault encodes");
            let envelope = Envelope {
                attributes: salvaged.child_of_type(Fault::TYPE, Some(Fault::SCHEMA), "/warren/fuzz"),
                data: &*data,
            };
            read_back(&envelope);
        }
    }
}

/// What warren publishes: its properties encode, and its body is an envelope warren
/// reads, with the same correlation.
fn read_back(envelope: &Envelope<&RawValue>) {
    let properties = properties_of(envelope);
    encode(&properties);
    let body = envelope.to_json_vec().expect("an envelope encodes");
    let unlimited = Limits {
        max_body_bytes: usize::MAX,
        max_depth: Limits::MAX_DEPTH_CEILING,
    };
    let back = decode_structured(&body, &unlimited)
        .unwrap_or_else(|error| panic!("warren cannot read what it published ({error})"));
    assert_eq!(
        back.attributes.correlation_id(),
        envelope.attributes.correlation_id()
    );
}
