//! A bare AMQP 0-9-1 publisher that writes its frames by hand, for the hostile-input
//! tests: it sends what a careless or hostile client could, which lapin (and warren's own
//! publisher) refuse to produce: short strings that are not UTF-8 or longer than the
//! protocol allows, header tables of any shape, properties in any combination.
//!
//! It speaks just enough of the protocol to publish with publisher confirms: the
//! handshake (PLAIN, no heartbeats), one channel in confirm mode, `basic.publish`, and the
//! broker's `basic.ack`, `basic.nack` or `basic.return`. Every read is bounded.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;

/// How long one answer of the broker may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// An AMQP field value, written as RabbitMQ reads tables.
#[derive(Debug, Clone)]
pub enum RawValue {
    /// `S`: a long string, any bytes.
    LongString(Vec<u8>),
    /// `l`: a signed 64-bit integer.
    LongLong(i64),
    /// `t`: a boolean.
    Bool(bool),
    /// `F`: a nested table.
    Table(Vec<(Vec<u8>, RawValue)>),
    /// `A`: an array.
    Array(Vec<RawValue>),
    /// Any type tag with the bytes that follow it, as they are.
    Tagged(u8, Vec<u8>),
}

impl RawValue {
    /// A long string of UTF-8 text.
    pub fn text(text: &str) -> RawValue {
        RawValue::LongString(text.as_bytes().to_vec())
    }
}

/// A header table: names as raw bytes (a name may be any bytes), values in order.
pub type RawTable = Vec<(Vec<u8>, RawValue)>;

/// The basic-class properties of a message, each as raw bytes where the protocol has a
/// short string: nothing is checked (the length byte of a value over 255 bytes wraps,
/// which the broker refuses as a malformed frame).
#[derive(Debug, Clone, Default)]
pub struct RawProperties {
    /// `content_type`.
    pub content_type: Option<Vec<u8>>,
    /// `headers`.
    pub headers: Option<RawTable>,
    /// `delivery_mode`.
    pub delivery_mode: Option<u8>,
    /// `correlation_id`.
    pub correlation_id: Option<Vec<u8>>,
    /// `reply_to`.
    pub reply_to: Option<Vec<u8>>,
    /// `message_id`.
    pub message_id: Option<Vec<u8>>,
    /// `type`.
    pub kind: Option<Vec<u8>>,
    /// `app_id`.
    pub app_id: Option<Vec<u8>>,
}

impl RawProperties {
    /// Structured-mode CloudEvents properties: content type and persistent delivery.
    pub fn structured() -> RawProperties {
        RawProperties {
            content_type: Some(b"application/cloudevents+json".to_vec()),
            delivery_mode: Some(2),
            ..RawProperties::default()
        }
    }

    fn encode(&self) -> Vec<u8> {
        // Property flags, highest bit first: content-type (15), content-encoding (14),
        // headers (13), delivery-mode (12), priority (11), correlation-id (10),
        // reply-to (9), expiration (8), message-id (7), timestamp (6), type (5),
        // user-id (4), app-id (3).
        let mut flags: u16 = 0;
        let mut list = Vec::new();
        if let Some(value) = &self.content_type {
            flags |= 1 << 15;
            short(&mut list, value);
        }
        if let Some(table) = &self.headers {
            flags |= 1 << 13;
            encode_table(&mut list, table);
        }
        if let Some(mode) = self.delivery_mode {
            flags |= 1 << 12;
            list.push(mode);
        }
        if let Some(value) = &self.correlation_id {
            flags |= 1 << 10;
            short(&mut list, value);
        }
        if let Some(value) = &self.reply_to {
            flags |= 1 << 9;
            short(&mut list, value);
        }
        if let Some(value) = &self.message_id {
            flags |= 1 << 7;
            short(&mut list, value);
        }
        if let Some(value) = &self.kind {
            flags |= 1 << 5;
            short(&mut list, value);
        }
        if let Some(value) = &self.app_id {
            flags |= 1 << 3;
            short(&mut list, value);
        }
        let mut encoded = flags.to_be_bytes().to_vec();
        encoded.extend(list);
        encoded
    }
}

/// A short string: a length byte and the bytes (the length wraps past 255: the caller
/// asked for exactly those bytes).
fn short(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

fn long(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(
        &u32::try_from(bytes.len())
            .expect("fits a frame")
            .to_be_bytes(),
    );
    out.extend_from_slice(bytes);
}

fn encode_value(out: &mut Vec<u8>, value: &RawValue) {
    match value {
        RawValue::LongString(bytes) => {
            out.push(b'S');
            long(out, bytes);
        }
        RawValue::LongLong(number) => {
            out.push(b'l');
            out.extend_from_slice(&number.to_be_bytes());
        }
        RawValue::Bool(value) => {
            out.push(b't');
            out.push(u8::from(*value));
        }
        RawValue::Table(table) => {
            out.push(b'F');
            encode_table(out, table);
        }
        RawValue::Tagged(tag, bytes) => {
            out.push(*tag);
            out.extend_from_slice(bytes);
        }
        RawValue::Array(values) => {
            out.push(b'A');
            let mut inner = Vec::new();
            for value in values {
                encode_value(&mut inner, value);
            }
            long(out, &inner);
        }
    }
}

fn encode_table(out: &mut Vec<u8>, table: &RawTable) {
    let mut inner = Vec::new();
    for (name, value) in table {
        short(&mut inner, name);
        encode_value(&mut inner, value);
    }
    long(out, &inner);
}

/// How the broker answered a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishAnswer {
    /// `basic.ack`: the broker took it.
    Acked,
    /// `basic.return` then `basic.ack`: no queue matched.
    Returned,
    /// `basic.nack`.
    Nacked,
    /// The broker closed the channel or the connection instead; its reply text.
    Closed(String),
}

/// One frame read from the broker.
struct Frame {
    kind: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn method(&self) -> Option<(u16, u16)> {
        (self.kind == FRAME_METHOD && self.payload.len() >= 4).then(|| {
            (
                u16::from_be_bytes([self.payload[0], self.payload[1]]),
                u16::from_be_bytes([self.payload[2], self.payload[3]]),
            )
        })
    }
}

/// A connection with one channel in confirm mode.
pub struct RawPublisher {
    stream: TcpStream,
    frame_max: u32,
}

impl RawPublisher {
    /// Connects to `127.0.0.1:<port>` as guest/guest, opens `vhost` and a confirm-mode
    /// channel.
    ///
    /// # Panics
    /// When the broker refuses or does not answer in time.
    pub async fn connect(port: u16, vhost: &str) -> RawPublisher {
        let stream = tokio::time::timeout(ANSWER_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .expect("connect in time")
            .expect("connect to the broker");
        let mut publisher = RawPublisher {
            stream,
            frame_max: 131_072,
        };
        publisher
            .stream
            .write_all(b"AMQP\x00\x00\x09\x01")
            .await
            .expect("write the protocol header");
        publisher
            .expect_method(0, (10, 10), "connection.start")
            .await;
        let mut start_ok = Vec::new();
        encode_table(
            &mut start_ok,
            &vec![(b"product".to_vec(), RawValue::text("warren-e2e raw"))],
        );
        short(&mut start_ok, b"PLAIN");
        long(&mut start_ok, b"\x00guest\x00guest");
        short(&mut start_ok, b"en_US");
        publisher.send_method(0, (10, 11), &start_ok).await;
        let tune = publisher
            .expect_method(0, (10, 30), "connection.tune")
            .await;
        // channel-max (2), frame-max (4), heartbeat (2).
        let frame_max = u32::from_be_bytes([tune[6], tune[7], tune[8], tune[9]]);
        publisher.frame_max = if frame_max == 0 { 131_072 } else { frame_max };
        let mut tune_ok = Vec::new();
        tune_ok.extend_from_slice(&tune[4..6]);
        tune_ok.extend_from_slice(&publisher.frame_max.to_be_bytes());
        tune_ok.extend_from_slice(&0u16.to_be_bytes());
        publisher.send_method(0, (10, 31), &tune_ok).await;
        let mut open = Vec::new();
        short(&mut open, vhost.as_bytes());
        short(&mut open, b"");
        open.push(0);
        publisher.send_method(0, (10, 40), &open).await;
        publisher
            .expect_method(0, (10, 41), "connection.open-ok")
            .await;
        publisher.send_method(1, (20, 10), &[0]).await;
        publisher
            .expect_method(1, (20, 11), "channel.open-ok")
            .await;
        publisher.send_method(1, (85, 10), &[0]).await;
        publisher
            .expect_method(1, (85, 11), "confirm.select-ok")
            .await;
        publisher
    }

    /// The largest frame the broker takes on this connection.
    pub fn frame_max(&self) -> u32 {
        self.frame_max
    }

    /// Publishes `body` with `properties` to `exchange` under `routing_key`, mandatory,
    /// and waits for the broker's answer.
    ///
    /// # Panics
    /// When the broker closes the connection or does not answer in time.
    pub async fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        properties: &RawProperties,
        body: &[u8],
    ) -> PublishAnswer {
        let mut publish = vec![0, 0];
        short(&mut publish, exchange.as_bytes());
        short(&mut publish, routing_key.as_bytes());
        publish.push(0b01); // mandatory
        self.send_method(1, (60, 40), &publish).await;
        let mut header = Vec::new();
        header.extend_from_slice(&60u16.to_be_bytes());
        header.extend_from_slice(&0u16.to_be_bytes());
        header.extend_from_slice(&(body.len() as u64).to_be_bytes());
        header.extend(properties.encode());
        self.send_frame(FRAME_HEADER, 1, &header).await;
        let chunk = usize::try_from(self.frame_max).expect("fits") - 8;
        for part in body.chunks(chunk) {
            self.send_frame(FRAME_BODY, 1, part).await;
        }
        let mut returned = false;
        loop {
            let frame = self.read_frame().await;
            match frame.method() {
                Some((60, 50)) => returned = true,
                Some((60, 80)) => {
                    return if returned {
                        PublishAnswer::Returned
                    } else {
                        PublishAnswer::Acked
                    };
                }
                Some((60, 120)) => return PublishAnswer::Nacked,
                Some((20, 40)) | Some((10, 50)) => {
                    return PublishAnswer::Closed(
                        String::from_utf8_lossy(frame.payload.get(7..).unwrap_or_default())
                            .trim_end_matches('\0')
                            .to_owned(),
                    );
                }
                // The content of a returned message, or a heartbeat.
                _ => {}
            }
        }
    }

    async fn send_method(&mut self, channel: u16, (class, method): (u16, u16), arguments: &[u8]) {
        let mut payload = Vec::with_capacity(4 + arguments.len());
        payload.extend_from_slice(&class.to_be_bytes());
        payload.extend_from_slice(&method.to_be_bytes());
        payload.extend_from_slice(arguments);
        self.send_frame(FRAME_METHOD, channel, &payload).await;
    }

    async fn send_frame(&mut self, kind: u8, channel: u16, payload: &[u8]) {
        let mut frame = Vec::with_capacity(payload.len() + 8);
        frame.push(kind);
        frame.extend_from_slice(&channel.to_be_bytes());
        frame.extend_from_slice(&u32::try_from(payload.len()).expect("fits").to_be_bytes());
        frame.extend_from_slice(payload);
        frame.push(FRAME_END);
        self.stream.write_all(&frame).await.expect("write a frame");
    }

    async fn read_frame(&mut self) -> Frame {
        loop {
            let mut head = [0u8; 7];
            tokio::time::timeout(ANSWER_TIMEOUT, self.stream.read_exact(&mut head))
                .await
                .expect("the broker answers in time")
                .expect("read a frame header");
            let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
            let mut payload = vec![0u8; usize::try_from(size).expect("fits") + 1];
            tokio::time::timeout(ANSWER_TIMEOUT, self.stream.read_exact(&mut payload))
                .await
                .expect("the broker answers in time")
                .expect("read a frame");
            assert_eq!(payload.pop(), Some(FRAME_END), "a frame ends with 0xCE");
            if head[0] != FRAME_HEARTBEAT {
                return Frame {
                    kind: head[0],
                    payload,
                };
            }
        }
    }

    async fn expect_method(&mut self, channel: u16, method: (u16, u16), what: &str) -> Vec<u8> {
        let frame = self.read_frame().await;
        assert_eq!(
            frame.method(),
            Some(method),
            "expected {what} on channel {channel}, got {:?}",
            String::from_utf8_lossy(&frame.payload)
        );
        frame.payload
    }

    /// Closes the connection (best effort: the close-ok is not awaited).
    pub async fn close(mut self) {
        let mut close = Vec::new();
        close.extend_from_slice(&200u16.to_be_bytes());
        short(&mut close, b"done");
        close.extend_from_slice(&[0, 0, 0, 0]);
        self.send_method(0, (10, 50), &close).await;
        let _ = self.stream.shutdown().await;
    }
}
