//! The event bus port (issue 14): publish an event durably, read it through durable consumers
//! that acknowledge what they handled and get again what they did not. Two adapters pass one
//! conformance suite ([`conformance`]): [`InProcessBus`] (the embedded default: one process, kept
//! in memory) and [`NatsBus`] (NATS JetStream: a stream of the platform's events, durable pull
//! consumers, explicit acks, redelivery, bounded deliveries).
//!
//! Subjects are `<prefix>.<partition>.<type>` — `tenantry.events.<tenant id>.device.created.v1`
//! — so consumers filter by tenant and type with NATS wildcards (`*` one token, `>` the rest),
//! which the in-process adapter matches the same way ([`subject_matches`]).
//!
//! The server's `events` capability relays the event log to the bus and fans it out to
//! realtime streams on every instance (docs/events.md).

pub mod conformance;
mod inproc;
mod nats;

use std::time::Duration;

use async_trait::async_trait;

pub use inproc::InProcessBus;
pub use nats::NatsBus;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus cannot be reached or refused the operation: worth trying again later.
    #[error("the event bus is unavailable: {0}")]
    Unavailable(String),
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
}

/// One event on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The event's id: the bus drops a second publish of the same id (within its window).
    pub id: String,
    /// The ordering key (the tenant, or `platform`): one subject token.
    pub partition: String,
    /// The event type (`device.created.v1`): the subject's last tokens.
    pub event_type: String,
    /// The event's position in the publisher's log (0: none). Carried beside the payload (a
    /// NATS header) so a reader can order and check for gaps without parsing the payload.
    pub position: u64,
    /// The CloudEvent, as JSON.
    pub payload: bytes::Bytes,
}

/// How a durable consumer is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// How long a delivery waits for its ack before it is delivered again.
    pub ack_wait: Duration,
    /// Deliveries of one message at most; after the last, the consumer's handler must
    /// dead-letter it (the bus delivers it no more).
    pub max_deliver: u32,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
        }
    }
}

/// A message handed to a consumer.
pub struct Delivery {
    pub message: Message,
    /// 1 on the first delivery.
    pub attempt: u32,
    /// The bus's position of the message (increasing in publish order).
    pub sequence: u64,
    acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("attempt", &self.attempt)
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Handled: never delivered to this consumer again.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }

    /// Not handled: delivered again after `delay` (while deliveries remain).
    pub async fn nak(self, delay: Duration) -> Result<(), BusError> {
        self.acker.nak(delay).await
    }
}

#[async_trait]
trait Acker: Send + Sync {
    async fn ack(&self) -> Result<(), BusError>;
    async fn nak(&self, delay: Duration) -> Result<(), BusError>;
}

/// The acker of a tail's deliveries: there is nothing to acknowledge.
struct NoAck;

#[async_trait]
impl Acker for NoAck {
    async fn ack(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn nak(&self, _: Duration) -> Result<(), BusError> {
        Ok(())
    }
}

/// A durable consumer: its position survives a restart (a new [`Bus::consumer`] of the same
/// name continues where the old one stopped; unacknowledged messages come again).
#[async_trait]
pub trait Consumer: Send {
    /// The next delivery, waiting up to `wait`; `None` when nothing came.
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>, BusError>;
}

#[async_trait]
pub trait Bus: Send + Sync {
    /// Publishes `message`; returns once the bus has it durably.
    async fn publish(&self, message: &Message) -> Result<(), BusError>;

    /// Publishes `messages` in order, pipelined where the bus allows; returns once the bus has
    /// them all durably. On an error some may be stored: publish them again (ids deduplicate).
    async fn publish_all(&self, messages: &[Message]) -> Result<(), BusError> {
        for m in messages {
            self.publish(m).await?;
        }
        Ok(())
    }

    /// The messages matching `filter` published from now on, in publish order, to this reader
    /// only: not durable, nothing to acknowledge (acks are no-ops). A realtime fan-out reads
    /// this and fills any gap from its own log.
    async fn tail(&self, filter: &str) -> Result<Box<dyn Consumer>, BusError>;

    /// The durable consumer `name` of the messages whose subject matches `filter` (relative to
    /// the bus's prefix: `*.device.>` is every tenant's device events), created on first use.
    async fn consumer(
        &self,
        name: &str,
        filter: &str,
        options: ConsumerOptions,
    ) -> Result<Box<dyn Consumer>, BusError>;

    /// Whether the bus answers (readiness).
    async fn check(&self) -> Result<(), BusError>;
}

/// The subject of `message` under `prefix`.
pub fn subject(prefix: &str, message: &Message) -> Result<String, BusError> {
    let valid_token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    };
    if !valid_token(&message.partition) {
        return Err(BusError::Invalid {
            what: "partition",
            why: format!("'{}' is not one subject token", message.partition),
        });
    }
    if message.event_type.is_empty() || !message.event_type.split('.').all(valid_token) {
        return Err(BusError::Invalid {
            what: "event type",
            why: format!("'{}' is not dot-separated tokens", message.event_type),
        });
    }
    Ok(format!(
        "{prefix}.{}.{}",
        message.partition, message.event_type
    ))
}

/// NATS subject matching: `*` matches one token, a final `>` one or more.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_like_nats() {
        let s = "p.t1.device.created.v1";
        assert!(subject_matches("p.>", s));
        assert!(subject_matches("p.*.device.>", s));
        assert!(subject_matches("p.t1.device.created.v1", s));
        assert!(!subject_matches("p.t2.>", s));
        assert!(!subject_matches("p.*.tenant.>", s));
        assert!(!subject_matches("p.t1.device.created", s));
        assert!(!subject_matches("p.t1.device.created.v1.x", s));
        assert!(!subject_matches("p.t1.>", "p.t1"));
    }

    #[test]
    fn subjects_are_checked() {
        let m = |p: &str, t: &str| Message {
            id: "1".into(),
            partition: p.into(),
            event_type: t.into(),
            position: 0,
            payload: bytes::Bytes::new(),
        };
        assert_eq!(
            subject("e", &m("t-1", "device.created.v1")).unwrap(),
            "e.t-1.device.created.v1"
        );
        assert!(subject("e", &m("a.b", "x.v1")).is_err());
        assert!(subject("e", &m("a", "x..v1")).is_err());
        assert!(subject("e", &m("a", "x.*")).is_err());
    }
}
