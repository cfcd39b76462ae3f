//! A delivery as the broker sends it: the bytes of a content header frame (property
//! flags and list, headers table included) and a body, parsed by lapin's own parser,
//! then read and answered as a worker does.
#![no_main]

use amq_protocol::frame::{AMQPFrame, parsing::parse_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The first byte says how much of the rest is the body.
    let Some((&split, rest)) = input.split_first() else {
        return;
    };
    let body_len = usize::from(split).min(rest.len()) * rest.len() / 256;
    let (body, property_bytes) = rest.split_at(body_len);
    let mut payload = vec![0, 60, 0, 0];
    payload.extend_from_slice(&(body.len() as u64).to_be_bytes());
    payload.extend_from_slice(property_bytes);
    let mut frame = vec![2, 0, 1];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame.push(0xCE);
    if let Ok((_, AMQPFrame::Header(_, header))) = parse_frame(frame.as_slice()) {
        warren_fuzz::check_delivery(&header.properties, body);
    }
});
