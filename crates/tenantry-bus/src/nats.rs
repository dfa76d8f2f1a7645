//! The NATS JetStream bus: one stream holds the platform's events under `<prefix>.>`; a publish
//! waits for the stream's acknowledgement and carries the event id as `Nats-Msg-Id` (the stream
//! drops a duplicate within its window); consumers are durable pull consumers with explicit
//! acks, an ack wait and a bounded number of deliveries.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use async_trait::async_trait;
use futures_util::StreamExt as _;

use crate::{Acker, Bus, BusError, Consumer, ConsumerOptions, Delivery, Message, subject};

const MSG_ID: &str = "Nats-Msg-Id";

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
}

impl NatsBus {
    /// Connects to `url` and creates the stream `stream` over `<prefix>.>` if it is missing
    /// (messages kept `max_age`, file storage).
    pub async fn connect(
        url: &str,
        stream: &str,
        prefix: &str,
        max_age: Duration,
    ) -> Result<Self, BusError> {
        let client = async_nats::connect(url).await.map_err(unavailable)?;
        let js = jetstream::new(client.clone());
        js.get_or_create_stream(stream::Config {
            name: stream.to_owned(),
            subjects: vec![format!("{prefix}.>")],
            max_age,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
        Ok(Self {
            client,
            js,
            stream: stream.to_owned(),
            prefix: prefix.to_owned(),
        })
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
        let subject = subject(&self.prefix, message)?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(MSG_ID, message.id.as_str());
        self.js
            .publish_with_headers(subject, headers, message.payload.clone())
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn consumer(
        &self,
        name: &str,
        filter: &str,
        options: ConsumerOptions,
    ) -> Result<Box<dyn Consumer>, BusError> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(unavailable)?;
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
        let rest = msg
            .subject
            .as_str()
            .strip_prefix(&self.prefix)
            .unwrap_or_default();
        let (partition, event_type) = rest.split_once('.').unwrap_or((rest, ""));
        let id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(MSG_ID))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let message = Message {
            id,
            partition: partition.to_owned(),
            event_type: event_type.to_owned(),
            payload: msg.payload.clone(),
        };
        Ok(Some(Delivery {
            message,
            attempt,
            sequence,
            acker: Box::new(NatsAcker(msg)),
        }))
    }
}
