//! W3C trace context (`traceparent`), carried in every envelope so one request can be
//! followed across every worker it touches.

use std::fmt;

/// A parsed W3C `traceparent`: version 00, a 16-byte trace id, an 8-byte parent span id
/// and the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The id shared by every hop of one request.
    pub trace_id: u128,
    /// The id of the span that sent this message.
    pub span_id: u64,
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// A new trace, for a request that starts here.
    pub fn new_root() -> Self {
        let random = uuid::Uuid::new_v4().as_u128();
        Self {
            trace_id: random,
            span_id: Self::random_span_id(),
            flags: 0x01,
        }
    }

    /// The same trace with a new span id, for a message caused by this one.
    pub fn child(&self) -> Self {
        Self {
            span_id: Self::random_span_id(),
            ..*self
        }
    }

    /// The trace context of work started by a message whose trace context is `parent`:
    /// its child, or a new trace when it carried none.
    pub fn next_hop(parent: Option<TraceParent>) -> Self {
        parent.map_or_else(Self::new_root, |parent| parent.child())
    }

    fn random_span_id() -> u64 {
        // Never zero: the W3C format forbids an all-zero span id.
        (uuid::Uuid::new_v4().as_u128() as u64) | 1
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; `None` for anything else, including the
    /// all-zero ids the format forbids.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        if &text[..2] != "00" {
            return None;
        }
        let hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let (trace, span, flags) = (&text[3..35], &text[36..52], &text[53..55]);
        if !(hex(trace) && hex(span) && hex(flags)) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            flags,
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let root = TraceParent::new_root();
        assert_eq!(TraceParent::parse(&root.to_string()), Some(root));
    }

    #[test]
    fn child_keeps_the_trace_and_changes_the_span() {
        let root = TraceParent::new_root();
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        assert!(
            TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_some()
        );
    }
}
