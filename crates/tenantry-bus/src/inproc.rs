//! The in-process bus: the embedded default. Messages are kept in memory in publish order; each
//! durable consumer keeps its position and its unacknowledged deliveries, so it behaves like a
//! JetStream pull consumer — within one process, and not across a restart of it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{
    Acker, Bus, BusError, Consumer, ConsumerOptions, Delivery, Message, subject, subject_matches,
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
    log: Vec<(String, Message)>,
    ids: HashSet<String>,
    consumers: HashMap<String, ConsumerState>,
}

/// The in-process bus.
#[derive(Clone)]
pub struct InProcessBus {
    prefix: String,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl InProcessBus {
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
            state.log.push((subject, message.clone()));
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

    async fn check(&self) -> Result<(), BusError> {
        Ok(())
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
        let State { log, consumers, .. } = &mut *state;
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
                let found = log[c.next..]
                    .iter()
                    .position(|(s, _)| subject_matches(&c.filter, s))
                    .map(|offset| c.next + offset);
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
                        c.next = log.len();
                        return Err(c.pending.values().map(|p| p.due).min());
                    }
                }
            }
        };
        Ok(Delivery {
            message: log[index].1.clone(),
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
