//! The NATS JetStream bus: one stream holds the platform's events under `<prefix>.>`; a publish
//! waits for the stream's acknowledgement and carries the event id as `Nats-Msg-Id` (the stream
//! drops a duplicate within its window); consumers are durable pull consumers with explicit
//! acks, an ack wait and a bounded number of deliveries; a tail is an ordered consumer (ephemeral,
//! no acks, recreated by the client on a gap).
//!
//! The bus connects lazily and keeps trying: a process starts while NATS is down, and the stream
//! is created (again) on the first operation that reaches the server.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use async_trait::async_trait;
use futures_util::StreamExt as _;

use crate::{Acker, Bus, BusError, Consumer, ConsumerOptions, Delivery, Message, NoAck, subject};

const MSG_ID: &str = "Nats-Msg-Id";
const POSITION: &str = "Tenantry-Position";

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// The JetStream bus.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    prefix: String,
    max_age: Duration,
    /// Whether the stream is known to exist (cleared by a failed publish: a server restarted
    /// without its storage has lost it).
    ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl NatsBus {
    /// Connects to `url` and creates the stream `stream` over `<prefix>.>` if it is missing
    /// (messages kept `max_age`, file storage). Fails when the server does not answer.
    pub async fn connect(
        url: &str,
        stream: &str,
        prefix: &str,
        max_age: Duration,
    ) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .map_err(unavailable)?;
        let bus = Self::with_client(client, stream, prefix, max_age);
        bus.ensure_stream().await?;
        Ok(bus)
    }

    /// Like [`NatsBus::connect`], but returns at once when the server is down: the client keeps
    /// connecting in the background and every operation fails as unavailable until it has.
    pub async fn connect_lazily(
        url: &str,
        stream: &str,
        prefix: &str,
        max_age: Duration,
    ) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .map_err(unavailable)?;
        Ok(Self::with_client(client, stream, prefix, max_age))
    }

    fn with_client(
        client: async_nats::Client,
        stream: &str,
        prefix: &str,
        max_age: Duration,
    ) -> Self {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(3));
        Self {
            client,
            js,
            stream: stream.to_owned(),
            prefix: prefix.to_owned(),
            max_age,
            ready: std::sync::Arc::default(),
        }
    }

    async fn ensure_stream(&self) -> Result<(), BusError> {
        use std::sync::atomic::Ordering;
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.js
            .get_or_create_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![format!("{}.>", self.prefix)],
                max_age: self.max_age,
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    fn lost(&self, e: impl std::fmt::Display) -> BusError {
        self.ready
            .store(false, std::sync::atomic::Ordering::Release);
        unavailable(e)
    }

    fn headers(message: &Message) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(MSG_ID, message.id.as_str());
        if message.position > 0 {
            headers.insert(POSITION, message.position.to_string().as_str());
        }
        headers
    }

    /// Deletes the stream and its consumers (tests clean up with it).
    pub async fn delete_stream(&self) -> Result<(), BusError> {
        self.js
            .delete_stream(&self.stream)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, message: &Message) -> Result<(), BusError> {
        self.publish_all(std::slice::from_ref(message)).await
    }

    async fn publish_all(&self, messages: &[Message]) -> Result<(), BusError> {
        self.ensure_stream().await?;
        let mut acks = Vec::with_capacity(messages.len());
        for m in messages {
            let subject = subject(&self.prefix, m)?;
            let ack = self
                .js
                .publish_with_headers(subject, Self::headers(m), m.payload.clone())
                .await
                .map_err(|e| self.lost(e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| self.lost(e))?;
        }
        Ok(())
    }

    async fn tail(&self, filter: &str) -> Result<Box<dyn Consumer>, BusError> {
        self.ensure_stream().await?;
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| self.lost(e))?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: format!("{}.{filter}", self.prefix),
                deliver_policy: jetstream::consumer::DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        Ok(Box::new(NatsTail {
            messages,
            prefix: format!("{}.", self.prefix),
        }))
    }

    async fn consumer(
        &self,
        name: &str,
        filter: &str,
        options: ConsumerOptions,
    ) -> Result<Box<dyn Consumer>, BusError> {
        self.ensure_stream().await?;
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| self.lost(e))?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                name,
                pull::Config {
                    durable_name: Some(name.to_owned()),
                    filter_subject: format!("{}.{filter}", self.prefix),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: options.ack_wait,
                    max_deliver: i64::from(options.max_deliver),
                    ..Default::default()
                },
            )
            .await
            .map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        Ok(Box::new(NatsConsumer {
            messages,
            prefix: format!("{}.", self.prefix),
        }))
    }

    async fn check(&self) -> Result<(), BusError> {
        self.client.flush().await.map_err(unavailable)
    }
}

struct NatsConsumer {
    messages: pull::Stream,
    prefix: String,
}

struct NatsAcker(jetstream::Message);

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.0.double_ack().await.map_err(unavailable)
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.0
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl Consumer for NatsConsumer {
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>, BusError> {
        let msg = match tokio::time::timeout(wait, self.messages.next()).await {
            Err(_) | Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(unavailable(e)),
            Ok(Some(Ok(m))) => m,
        };
        let (attempt, sequence) = {
            let info = msg.info().map_err(unavailable)?;
            (
                u32::try_from(info.delivered).unwrap_or(u32::MAX),
                info.stream_sequence,
            )
        };
        let message = received(&self.prefix, &msg);
        Ok(Some(Delivery {
            message,
            attempt,
            sequence,
            acker: Box::new(NatsAcker(msg)),
        }))
    }
}

/// The port's message of a received NATS message.
fn received(prefix: &str, msg: &async_nats::Message) -> Message {
    let rest = msg
        .subject
        .as_str()
        .strip_prefix(prefix)
        .unwrap_or_default();
    let (partition, event_type) = rest.split_once('.').unwrap_or((rest, ""));
    let header = |name: &str| {
        msg.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    Message {
        id: header(MSG_ID).unwrap_or_default(),
        partition: partition.to_owned(),
        event_type: event_type.to_owned(),
        position: header(POSITION).and_then(|p| p.parse().ok()).unwrap_or(0),
        payload: msg.payload.clone(),
    }
}

struct NatsTail {
    messages: pull::Ordered,
    prefix: String,
}

#[async_trait]
impl Consumer for NatsTail {
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>, BusError> {
        let msg = match tokio::time::timeout(wait, self.messages.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err(BusError::Unavailable("the tail ended".into())),
            Ok(Some(Err(e))) => return Err(unavailable(e)),
            Ok(Some(Ok(m))) => m,
        };
        let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        Ok(Some(Delivery {
            message: received(&self.prefix, &msg),
            attempt: 1,
            sequence,
            acker: Box::new(NoAck),
        }))
    }
}
