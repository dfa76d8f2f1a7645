//! The in-process bus: the embedded default. Messages are kept in memory in publish order; each
//! durable consumer keeps its position and its unacknowledged deliveries, so it behaves like a
//! JetStream pull consumer — within one process, and not across a restart of it. Memory is
//! bounded: messages every durable consumer has passed are dropped once more than
//! [`InProcessBus::RETAIN`] are held (the dedupe window is what is held).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{
    Acker, Bus, BusError, Consumer, ConsumerOptions, Delivery, Message, NoAck, subject,
    subject_matches,
};

struct Pending {
    attempts: u32,
    due: Instant,
}

struct ConsumerState {
    filter: String,
    options: ConsumerOptions,
    /// The next log index not yet delivered.
    next: usize,
    /// Delivered, not yet acknowledged (by log index).
    pending: BTreeMap<usize, Pending>,
}

#[derive(Default)]
struct State {
    /// Messages from index `base` on.
    log: VecDeque<(String, Message)>,
    base: usize,
    ids: HashSet<String>,
    consumers: HashMap<String, ConsumerState>,
}

impl State {
    fn end(&self) -> usize {
        self.base + self.log.len()
    }

    fn get(&self, index: usize) -> Option<&(String, Message)> {
        index.checked_sub(self.base).and_then(|i| self.log.get(i))
    }

    /// Drops what no durable consumer still needs, keeping at least `retain` messages.
    fn trim(&mut self, retain: usize) {
        if self.log.len() <= retain * 2 {
            return;
        }
        let needed = self
            .consumers
            .values()
            .map(|c| {
                c.pending
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(c.next)
                    .min(c.next)
            })
            .min()
            .unwrap_or(usize::MAX);
        let keep_from = needed.min(self.end() - retain);
        while self.base < keep_from {
            if let Some((_, m)) = self.log.pop_front() {
                self.ids.remove(&m.id);
            }
            self.base += 1;
        }
    }
}

/// The in-process bus.
#[derive(Clone)]
pub struct InProcessBus {
    prefix: String,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl InProcessBus {
    /// Messages kept beyond what durable consumers still need.
    pub const RETAIN: usize = 10_000;

    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            state: Arc::default(),
            notify: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn publish(&self, message: &Message) -> Result<(), BusError> {
        let subject = subject(&self.prefix, message)?;
        {
            let mut state = self.lock();
            if !state.ids.insert(message.id.clone()) {
                return Ok(()); // a duplicate publish
            }
            state.log.push_back((subject, message.clone()));
            state.trim(Self::RETAIN);
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn consumer(
        &self,
        name: &str,
        filter: &str,
        options: ConsumerOptions,
    ) -> Result<Box<dyn Consumer>, BusError> {
        let filter = format!("{}.{filter}", self.prefix);
        let mut state = self.lock();
        let c = state
            .consumers
            .entry(name.to_owned())
            .or_insert_with(|| ConsumerState {
                filter: filter.clone(),
                options,
                next: 0,
                pending: BTreeMap::new(),
            });
        if c.filter != filter {
            return Err(BusError::Invalid {
                what: "consumer",
                why: format!("'{name}' exists with the filter {}", c.filter),
            });
        }
        c.options = options;
        Ok(Box::new(InProcessConsumer {
            bus: self.clone(),
            name: name.to_owned(),
        }))
    }

    async fn tail(&self, filter: &str) -> Result<Box<dyn Consumer>, BusError> {
        let next = self.lock().end();
        Ok(Box::new(InProcessTail {
            bus: self.clone(),
            filter: format!("{}.{filter}", self.prefix),
            next,
        }))
    }

    async fn check(&self) -> Result<(), BusError> {
        Ok(())
    }
}

/// A reader of what is published from its start on.
struct InProcessTail {
    bus: InProcessBus,
    filter: String,
    next: usize,
}

#[async_trait]
impl Consumer for InProcessTail {
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>, BusError> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.bus.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.bus.lock();
                // a reader left behind by trimming goes on from what is still held
                self.next = self.next.max(state.base);
                while let Some((subject, message)) = state.get(self.next) {
                    self.next += 1;
                    if subject_matches(&self.filter, subject) {
                        return Ok(Some(Delivery {
                            message: message.clone(),
                            attempt: 1,
                            sequence: self.next as u64,
                            acker: Box::new(NoAck),
                        }));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

struct InProcessConsumer {
    bus: InProcessBus,
    name: String,
}

struct InProcessAcker {
    bus: InProcessBus,
    name: String,
    index: usize,
}

#[async_trait]
impl Acker for InProcessAcker {
    async fn ack(&self) -> Result<(), BusError> {
        if let Some(c) = self.bus.lock().consumers.get_mut(&self.name) {
            c.pending.remove(&self.index);
        }
        Ok(())
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        if let Some(c) = self.bus.lock().consumers.get_mut(&self.name)
            && let Some(p) = c.pending.get_mut(&self.index)
        {
            p.due = Instant::now() + delay;
        }
        self.bus.notify.notify_waiters();
        Ok(())
    }
}

impl InProcessConsumer {
    /// A delivery now, or when to look again.
    fn poll(&self) -> Result<Delivery, Option<Instant>> {
        let now = Instant::now();
        let mut state = self.bus.lock();
        let State {
            log,
            base,
            consumers,
            ..
        } = &mut *state;
        let base = *base;
        let Some(c) = consumers.get_mut(&self.name) else {
            return Err(None);
        };
        let (max_deliver, ack_wait) = (c.options.max_deliver, c.options.ack_wait);
        // deliveries whose ack is overdue (or nak'd) come first, oldest first; those out of
        // deliveries are dropped (their handler dead-lettered them on the last one)
        c.pending
            .retain(|_, p| p.due > now || p.attempts < max_deliver);
        let due = c
            .pending
            .iter_mut()
            .find(|(_, p)| p.due <= now)
            .map(|(i, p)| {
                p.attempts += 1;
                p.due = now + ack_wait;
                (*i, p.attempts)
            });
        let (index, attempt) = match due {
            Some(d) => d,
            None => {
                let start = c.next.max(base);
                let found = log
                    .iter()
                    .skip(start - base)
                    .position(|(s, _)| subject_matches(&c.filter, s))
                    .map(|offset| start + offset);
                match found {
                    Some(i) => {
                        c.next = i + 1;
                        c.pending.insert(
                            i,
                            Pending {
                                attempts: 1,
                                due: now + ack_wait,
                            },
                        );
                        (i, 1)
                    }
                    None => {
                        c.next = base + log.len();
                        return Err(c.pending.values().map(|p| p.due).min());
                    }
                }
            }
        };
        let Some((_, message)) = index.checked_sub(base).and_then(|i| log.get(i)) else {
            return Err(None);
        };
        Ok(Delivery {
            message: message.clone(),
            attempt,
            sequence: index as u64 + 1,
            acker: Box::new(InProcessAcker {
                bus: self.bus.clone(),
                name: self.name.clone(),
                index,
            }),
        })
    }
}

#[async_trait]
impl Consumer for InProcessConsumer {
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>, BusError> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.bus.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let until = match self.poll() {
                Ok(d) => return Ok(Some(d)),
                Err(due) => due.map_or(deadline, |d| d.min(deadline)),
            };
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: usize) -> Message {
        Message {
            id: i.to_string(),
            partition: "p".into(),
            event_type: "x.v1".into(),
            position: i as u64,
            payload: bytes::Bytes::new(),
        }
    }

    #[tokio::test]
    async fn memory_is_bounded_but_a_durable_consumer_keeps_what_it_needs() {
        let bus = InProcessBus::new("t");
        let mut c = bus
            .consumer("slow", ">", ConsumerOptions::default())
            .await
            .unwrap();
        let first = c.next(Duration::ZERO).await.unwrap();
        assert!(first.is_none());
        let n = InProcessBus::RETAIN * 3;
        for i in 0..n {
            bus.publish(&m(i)).await.unwrap();
        }
        assert_eq!(bus.lock().log.len(), n, "the consumer has read none");
        for _ in 0..n {
            c.next(Duration::ZERO)
                .await
                .unwrap()
                .unwrap()
                .ack()
                .await
                .unwrap();
        }
        bus.publish(&m(n)).await.unwrap();
        let held = bus.lock().log.len();
        assert!(held <= InProcessBus::RETAIN * 2, "{held} held");
        let mut tail = bus.tail(">").await.unwrap();
        bus.publish(&m(n + 1)).await.unwrap();
        let d = tail.next(Duration::from_secs(1)).await.unwrap().unwrap();
        assert_eq!(d.message.position, n as u64 + 1);
    }
}
