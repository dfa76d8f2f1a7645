//! The ids that correlate a request, a job or an event with its trace (W3C Trace Context).
//!
//! Parsing and formatting the `traceparent` header is OpenTelemetry's propagator's job (in
//! `tenantry-server`'s telemetry); the domain only carries the ids: into audit records, outbox
//! envelopes, problem bodies and stored jobs.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

impl TraceContext {
    /// A new root context from caller-supplied randomness (the domain does no I/O).
    pub fn new_root(trace_id: [u8; 16], span_id: [u8; 8]) -> Self {
        Self {
            trace_id,
            span_id,
            sampled: true,
        }
    }

    /// The same trace with a new span (this hop's).
    pub fn child(&self, span_id: [u8; 8]) -> Self {
        Self { span_id, ..*self }
    }

    pub fn trace_id_hex(&self) -> String {
        hex_lower(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex_lower(&self.span_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lower_case_hex() {
        let t = TraceContext::new_root([0xab; 16], [0x0f; 8]);
        assert_eq!(t.trace_id_hex(), "ab".repeat(16));
        assert_eq!(t.span_id_hex(), "0f".repeat(8));
        let c = t.child([1; 8]);
        assert_eq!(c.trace_id, t.trace_id);
        assert_eq!(c.span_id_hex(), "01".repeat(8));
    }
}
