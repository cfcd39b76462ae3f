//! Envelope encode and decode: the per-message cost warren adds to every hop.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warren_messages::{
    EchoReplied, EchoRequest, Envelope, Limits, OutgoingEnvelope, decode_structured,
};

fn request_body(payload_bytes: usize) -> Vec<u8> {
    let data = serde_json::json!({ "pad": "x".repeat(payload_bytes.saturating_sub(10)) });
    let payload: EchoRequest = serde_json::from_value(data).expect("payload");
    let mut envelope = OutgoingEnvelope::request("/bench", &payload).expect("envelope");
    envelope.attributes.replyto = Some("warren.reply.bench".into());
    envelope.to_json_vec().expect("encode")
}

fn envelope(c: &mut Criterion) {
    let limits = Limits::default();
    for payload_bytes in [256usize, 4096] {
        let body = request_body(payload_bytes);
        let mut group = c.benchmark_group(format!("envelope/{payload_bytes}B"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("decode", |b| {
            b.iter(|| decode_structured(black_box(&body), &limits).expect("decode"))
        });
        group.bench_function("decode+data", |b| {
            b.iter(|| {
                let envelope = decode_structured(black_box(&body), &limits).expect("decode");
                envelope.decode_data::<EchoRequest>().expect("data")
            })
        });
        let decoded = decode_structured(&body, &limits).expect("decode");
        let request: EchoRequest = decoded.decode_data().expect("data");
        let reply = EchoReplied(request.0);
        group.bench_function("child+encode", |b| {
            b.iter(|| {
                let child = Envelope {
                    attributes: decoded.attributes.child::<EchoReplied>("/warren/echo"),
                    data: black_box(&reply),
                };
                child.to_json_vec().expect("encode")
            })
        });
        group.finish();
    }
}

criterion_group!(benches, envelope);
criterion_main!(benches);
