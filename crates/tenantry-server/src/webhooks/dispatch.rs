//! The dispatcher: one per deployment (the `webhook-dispatch` lease, among processes with the
//! worker role), it
//!
//! 1. **fans out** the event log: reads events after its cursor (`webhooks`), matches each to
//!    the tenant's enabled subscriptions (types, filter), and stores one message per match *with*
//!    the cursor's new position, in one transaction — the inbox: a crash replays the batch, and
//!    the (subscription, event) key stores nothing twice;
//! 2. **claims** due messages per subscription, within the subscription's concurrency cap, rate
//!    limit and circuit breaker (open: none; half-open: one probe), and per-key order — so a
//!    dead endpoint is probed, not hammered, and never takes another subscription's turn;
//! 3. **sends** each as its own task (signed, through the egress guard, bounded by the
//!    subscription's timeout) and
//! 4. **records** the outcomes in batches: delivered, tried again (backoff with full jitter, or
//!    the receiver's `Retry-After` on 429/503), dead-lettered, or — on `410 Gone`, or after
//!    `[webhooks] disable_after_hours` of nothing but failures — the subscription disabled (an
//!    audit record and a `webhook.subscription.disabled.v1` event).
//!
//! A claimed message is leased (its next attempt pushed past the attempt's timeout): if the
//! dispatcher dies, the next one sends it again when the lease runs out — at least once, with
//! the same `webhook-id`, which is the receiver's idempotency key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use opentelemetry::KeyValue;
use opentelemetry::trace::{FutureExt, SpanKind};
use serde_json::json;
use tenantry_domain::TenantId;
use tenantry_domain::sync::{Breaker, BreakerPolicy};
use tenantry_domain::webhook::{Answer, Decision, Filter, Ordering, decide};
use tenantry_store::events::LoggedEvent;
use tenantry_store::webhooks::{
    AttemptOutcome, AttemptResult, Claim, ClaimedMessage, NewMessage, SubscriptionRecord,
};
use tenantry_store::{Changes, StoreError};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::service::{host_of, message_id, seal_binding, subscription_event};
use super::signing;
use crate::events::catalog;
use crate::jobs::workers::scheduler::WorkerLease;
use crate::observability::traces;
use crate::platform::{App, Ctx, now};

/// The lease naming the one dispatcher.
pub const LEASE: &str = "webhook-dispatch";
/// The fan-out's position in the event log.
pub const CURSOR: &str = "webhooks";
const LEASE_TTL: Duration = Duration::from_secs(10);
const RENEW_EVERY: Duration = Duration::from_secs(3);
/// Subscriptions are read again at least this often (and at once when the log shows a change).
const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// How long past its timeout an attempt's claim holds the message.
const LEASE_SLACK: Duration = Duration::from_secs(30);

/// A subscription as the dispatcher holds it.
struct Sub {
    rec: Arc<SubscriptionRecord>,
    filter: Option<Filter>,
    /// Signing keys in force (newest first), opened from the sealed secrets.
    keys: Vec<(Vec<u8>, Option<chrono::DateTime<Utc>>)>,
    in_flight: u32,
    breaker: Breaker,
    /// Whether the store may hold due messages for it (cleared when a claim found fewer than
    /// asked; set by the fan-out, outcomes, timers and the periodic sweep).
    maybe_due: bool,
    /// Token bucket of `rate_limit_per_minute`.
    tokens: f64,
    refilled: Instant,
}

/// One attempt's end, as the sender saw it.
struct Sent {
    msg: ClaimedMessage,
    answer: Answer,
    latency: Duration,
    response: Option<String>,
    error: Option<String>,
}

/// Runs the dispatcher until `stop`, as `owner`.
pub async fn run(app: App, owner: String, mut stop: watch::Receiver<bool>) {
    let store = Arc::clone(app.store());
    let rt = Arc::clone(app.webhooks());
    let config = rt.config().clone();
    let signal = store.events().event_signal();
    let wake = rt.wake_signal();
    let mut lease = WorkerLease::new(Arc::clone(&store), LEASE, owner, LEASE_TTL);
    let mut renewed: Option<Instant> = None;
    let poll = Duration::from_millis(u64::from(config.poll_ms));
    let mut d = Dispatcher {
        app: app.clone(),
        subs: HashMap::new(),
        by_tenant: HashMap::new(),
        loaded: None,
        in_flight: 0,
        origin: Instant::now(),
        unrecorded: Vec::new(),
        retry_at: None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Sent>();
    let mut swept = Instant::now();
    // whether the log may hold events not fanned out yet (a commit signal, the periodic sweep,
    // or a batch that came back full)
    let mut fanout_due = true;
    let mut reported: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    // outcomes not yet decided and stored: recorded together at the start of the next round
    let mut sent: Vec<Sent> = Vec::new();
    // armed across rounds (a signal that comes while a round runs is not lost), re-armed as it
    // fires
    let notified = signal.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    loop {
        if *stop.borrow() {
            break;
        }
        if renewed.is_none_or(|r| r.elapsed() >= RENEW_EVERY) {
            let held = lease.hold().await;
            renewed = Some(Instant::now());
            if !held {
                d.loaded = None;
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(RENEW_EVERY) => {}
                }
                continue;
            }
        }
        // outcomes that arrived
        while let Ok(s) = rx.try_recv() {
            sent.push(s);
        }
        let batch = std::mem::take(&mut sent);
        let round = async {
            let follow = d.decide(batch);
            if d.loaded.is_none_or(|l| l.elapsed() >= RELOAD_EVERY) {
                d.reload().await?;
            }
            if swept.elapsed() >= poll || d.retry_at.is_some_and(|r| r <= Instant::now()) {
                swept = Instant::now();
                fanout_due = true;
                d.retry_at = None;
                for s in d.subs.values_mut() {
                    s.maybe_due = true;
                }
            }
            if fanout_due {
                fanout_due = d.fan_out(config.fanout_batch).await?;
            }
            // the outcomes are stored while the room they freed is claimed (a message being
            // recorded is still leased, so no claim can take it again)
            let results = std::mem::take(&mut d.unrecorded);
            let store = Arc::clone(d.app.store());
            let record = async {
                if results.is_empty() {
                    Ok(())
                } else {
                    store.webhooks().record(&results).await
                }
            };
            let (recorded, dispatched) = tokio::join!(record, d.dispatch(&tx));
            if let Err(e) = recorded {
                d.unrecorded.splice(0..0, results);
                return Err(format!("recording attempts: {e}"));
            }
            dispatched?;
            d.follow_up(follow).await;
            if reported.is_none_or(|r| r.elapsed() >= Duration::from_secs(5)) {
                reported = Some(Instant::now());
                if let Ok(stats) = d.app.store().webhooks().stats().await {
                    metrics::gauge!("webhook_pending_messages").set(stats.pending as f64);
                    metrics::gauge!("webhook_dead_letter_messages").set(stats.dead as f64);
                }
            }
            Ok::<_, String>(())
        }
        .await;
        match round {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatcher: a round failed; retrying");
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        let until = d
            .retry_at
            .map_or(poll, |r| r.saturating_duration_since(Instant::now()))
            .min(poll)
            .max(Duration::from_millis(1));
        tokio::select! {
            _ = stop.changed() => {}
            _ = &mut notified => {
                fanout_due = true;
                notified.set(signal.notified());
                notified.as_mut().enable();
            }
            _ = wake.notified() => {}
            s = rx.recv() => {
                if let Some(s) = s {
                    // give the others in flight a moment to join this batch (the next round
                    // records them together)
                    sent.push(s);
                    let deadline = tokio::time::Instant::now() + Duration::from_millis(2);
                    while sent.len() < 1000 {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(s)) => sent.push(s),
                            _ => break,
                        }
                    }
                }
            }
            _ = tokio::time::sleep(until) => {}
        }
    }
    // attempts in flight end within their timeout: what ends in the grace period is recorded
    // with what arrived before the stop, in one batch (the rest is sent again after its lease)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut waiting = d
        .in_flight
        .saturating_sub(u32::try_from(sent.len()).unwrap_or(u32::MAX));
    while waiting > 0 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(s)) => {
                sent.push(s);
                waiting -= 1;
            }
            _ => break,
        }
    }
    let _ = d.outcomes(sent).await;
    lease.release().await;
}

struct Dispatcher {
    app: App,
    subs: HashMap<Uuid, Sub>,
    by_tenant: HashMap<TenantId, Vec<Uuid>>,
    loaded: Option<Instant>,
    in_flight: u32,
    origin: Instant,
    /// Outcomes not yet stored (the store failed): stored with the next batch.
    unrecorded: Vec<AttemptResult>,
    /// The earliest retry this dispatcher scheduled.
    retry_at: Option<Instant>,
}

impl Dispatcher {
    fn config(&self) -> &super::config::WebhooksConfig {
        self.app.webhooks().config()
    }

    fn breaker_policy(&self) -> BreakerPolicy {
        BreakerPolicy {
            threshold: self.config().breaker_threshold,
            cooldown: Duration::from_secs(u64::from(self.config().breaker_cooldown_seconds)),
        }
    }

    /// Reads the enabled subscriptions again, keeping what it knows of the ones it had.
    async fn reload(&mut self) -> Result<(), String> {
        let records = self
            .app
            .store()
            .webhooks()
            .enabled_subscriptions()
            .await
            .map_err(|e| format!("reading subscriptions: {e}"))?;
        let mut subs = HashMap::with_capacity(records.len());
        let mut by_tenant: HashMap<TenantId, Vec<Uuid>> = HashMap::new();
        for rec in records {
            let old = self.subs.remove(&rec.id);
            let keys = match &old {
                Some(o) if o.rec.secrets == rec.secrets => o.keys.clone(),
                _ => self.open_keys(&rec).await,
            };
            let filter = rec.filter.as_deref().and_then(|f| Filter::parse(f).ok());
            by_tenant.entry(rec.tenant_id).or_default().push(rec.id);
            let sub = match old {
                Some(o) => Sub {
                    rec: Arc::new(rec),
                    filter,
                    keys,
                    ..o
                },
                None => Sub {
                    rec: Arc::new(rec),
                    filter,
                    keys,
                    in_flight: 0,
                    breaker: Breaker::default(),
                    maybe_due: true,
                    tokens: 1.0,
                    refilled: Instant::now(),
                },
            };
            subs.insert(sub.rec.id, sub);
        }
        self.subs = subs;
        self.by_tenant = by_tenant;
        self.loaded = Some(Instant::now());
        metrics::gauge!("webhook_circuits_open").set(
            self.subs
                .values()
                .filter(|s| s.breaker.is_open(self.origin.elapsed()))
                .count() as f64,
        );
        Ok(())
    }

    async fn open_keys(
        &self,
        rec: &SubscriptionRecord,
    ) -> Vec<(Vec<u8>, Option<chrono::DateTime<Utc>>)> {
        let mut keys = Vec::new();
        for k in &rec.secrets {
            match self
                .app
                .webhooks()
                .sealer()
                .open(&k.sealed, &seal_binding(rec.tenant_id, rec.id))
                .await
            {
                Ok(plain) => {
                    if let Some(key) = std::str::from_utf8(&plain).ok().and_then(signing::key_of) {
                        keys.push((key, k.expires_at));
                    }
                }
                Err(e) => tracing::error!(
                    tenant_id = %rec.tenant_id, subscription = %rec.id, error = %e,
                    "a webhook signing secret cannot be opened (was the encryption key changed without keeping the old one in encryption_keys_previous?)"
                ),
            }
        }
        keys
    }

    /// Fans out the log after the cursor: a few batches, each stored with its cursor. `true`
    /// when it stopped with more to read.
    async fn fan_out(&mut self, batch: u32) -> Result<bool, String> {
        let store = Arc::clone(self.app.store());
        for _ in 0..8 {
            store
                .events()
                .sequence(batch)
                .await
                .map_err(|e| format!("sequencing the log: {e}"))?;
            let after = store
                .events()
                .cursor(CURSOR)
                .await
                .map_err(|e| format!("reading the fan-out cursor: {e}"))?;
            let events = store
                .events()
                .read_after(after, batch)
                .await
                .map_err(|e| format!("reading the log: {e}"))?;
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(false);
            };
            // a change of subscriptions in this batch: read them first (a subscription created
            // mid-batch receives the batch's later events; its creation time bounds the rest)
            if events
                .iter()
                .any(|e| e.event.event_type.starts_with("webhook.subscription."))
            {
                self.reload().await?;
            }
            let messages = self.match_events(&events);
            let at = now();
            store
                .webhooks()
                .fan_out(CURSOR, last, &messages, at)
                .await
                .map_err(|e| format!("storing fanned-out messages: {e}"))?;
            metrics::counter!("webhook_messages_total").increment(messages.len() as u64);
            for m in &messages {
                if let Some(s) = self.subs.get_mut(&m.subscription_id) {
                    s.maybe_due = true;
                }
            }
            if events.len() < batch as usize {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn match_events(&self, events: &[LoggedEvent]) -> Vec<NewMessage> {
        let mut out = Vec::new();
        for e in events {
            let Some(tenant) = e.event.tenant_id else {
                continue;
            };
            let Some(ids) = self.by_tenant.get(&tenant) else {
                continue;
            };
            let mut rendered: Option<(String, serde_json::Value)> = None;
            for id in ids {
                let Some(sub) = self.subs.get(id) else {
                    continue;
                };
                let rec = &sub.rec;
                if e.event.time < rec.created_at
                    || !rec
                        .event_types
                        .iter()
                        .any(|p| catalog::matches(p, &e.event.event_type))
                {
                    continue;
                }
                let (body, value) = rendered.get_or_insert_with(|| {
                    let ce = e
                        .event
                        .to_logged_cloud_event(crate::events::runtime::source(), e.seq);
                    let value = serde_json::to_value(&ce).unwrap_or_default();
                    (value.to_string(), value)
                });
                if let Some(f) = &sub.filter
                    && !f.matches(value)
                {
                    continue;
                }
                out.push(NewMessage {
                    // the same message id however often this event is fanned out (a lost
                    // commit, a take-over): the receiver's `webhook-id` never changes
                    id: message_uuid(rec.id, *e.event.id.as_uuid()),
                    tenant_id: tenant,
                    subscription_id: rec.id,
                    event_id: *e.event.id.as_uuid(),
                    event_seq: e.seq,
                    event_type: e.event.event_type.clone(),
                    partition_key: value["partitionkey"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    body: body.clone(),
                    trace_parent: value["traceparent"].as_str().map(str::to_owned),
                    at: now(),
                });
            }
        }
        out
    }

    /// Claims what each subscription may take now, and sends it.
    async fn dispatch(&mut self, tx: &mpsc::UnboundedSender<Sent>) -> Result<(), String> {
        let max_total = self.config().max_in_flight;
        let per_sub = self.config().max_in_flight_per_subscription;
        let clock = self.origin.elapsed();
        let mut claims = Vec::new();
        let mut trials = Vec::new();
        let mut room = max_total.saturating_sub(self.in_flight);
        for s in self.subs.values_mut() {
            if room == 0 {
                break;
            }
            if !s.maybe_due || s.in_flight >= per_sub {
                continue;
            }
            let closed = s.breaker.is_closed();
            let mut take = per_sub - s.in_flight;
            if !closed {
                if s.in_flight > 0 || s.breaker.allow(clock).is_err() {
                    continue;
                }
                take = 1; // the probe
                trials.push(s.rec.id);
            }
            if let Some(rpm) = s.rec.rate_limit_per_minute {
                let per_sec = f64::from(rpm) / 60.0;
                let cap = per_sec.max(1.0);
                s.tokens = (s.tokens + s.refilled.elapsed().as_secs_f64() * per_sec).min(cap);
                s.refilled = Instant::now();
                take = take.min(s.tokens.floor() as u32);
                if take == 0 {
                    continue;
                }
            }
            take = take.min(room);
            room -= take;
            claims.push(Claim {
                subscription_id: s.rec.id,
                take,
                per_key: s.rec.ordering == Ordering::PerKey,
            });
        }
        if claims.is_empty() {
            return Ok(());
        }
        let at = now();
        let longest = claims
            .iter()
            .filter_map(|c| self.subs.get(&c.subscription_id))
            .map(|s| s.rec.policy.timeout_ms)
            .max()
            .unwrap_or(10_000);
        let lease_until = at
            + chrono::Duration::from_std(Duration::from_millis(u64::from(longest)) + LEASE_SLACK)
                .unwrap_or_default();
        let claimed = self
            .app
            .store()
            .webhooks()
            .claim(&claims, at, lease_until)
            .await
            .map_err(|e| format!("claiming messages: {e}"))?;
        let mut got: HashMap<Uuid, u32> = HashMap::new();
        for m in &claimed {
            *got.entry(m.subscription_id).or_default() += 1;
        }
        for c in &claims {
            let n = got.get(&c.subscription_id).copied().unwrap_or(0);
            if let Some(s) = self.subs.get_mut(&c.subscription_id) {
                if n < c.take {
                    s.maybe_due = false;
                }
                if n == 0 && trials.contains(&c.subscription_id) {
                    s.breaker.release_trial();
                }
                if s.rec.rate_limit_per_minute.is_some() {
                    s.tokens -= f64::from(n);
                }
            }
        }
        let egress = self.app.webhooks().egress()?.clone();
        let excerpt = self.config().response_excerpt_bytes as usize;
        for m in claimed {
            let Some(s) = self.subs.get_mut(&m.subscription_id) else {
                continue;
            };
            s.in_flight += 1;
            self.in_flight += 1;
            let keys: Vec<Vec<u8>> = s
                .keys
                .iter()
                .filter(|(_, exp)| exp.is_none_or(|e| e > at))
                .map(|(k, _)| k.clone())
                .collect();
            let rec = Arc::clone(&s.rec);
            let egress = egress.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let sent = attempt(&egress, &rec, &keys, m, excerpt).await;
                let _ = tx.send(sent);
            });
        }
        Ok(())
    }

    /// Decides and stores what the attempts came to.
    async fn outcomes(&mut self, sent: Vec<Sent>) -> Result<(), String> {
        let follow = self.decide(sent);
        if !self.unrecorded.is_empty() {
            self.app
                .store()
                .webhooks()
                .record(&self.unrecorded)
                .await
                .map_err(|e| format!("recording attempts: {e}"))?;
            self.unrecorded.clear();
        }
        self.follow_up(follow).await;
        Ok(())
    }

    /// Decides what the attempts came to (in memory: the results join `unrecorded`, the
    /// subscriptions' counts, breakers and health move); what to do about subscriptions after.
    fn decide(&mut self, sent: Vec<Sent>) -> FollowUps {
        let clock = self.origin.elapsed();
        let policy = self.breaker_policy();
        let at = now();
        let mut disable: Vec<(Arc<SubscriptionRecord>, String)> = Vec::new();
        let mut failing: Vec<(Uuid, Option<chrono::DateTime<Utc>>)> = Vec::new();
        let disable_after = chrono::Duration::hours(i64::from(self.config().disable_after_hours));
        for s in sent {
            self.in_flight = self.in_flight.saturating_sub(1);
            let sub = self.subs.get_mut(&s.msg.subscription_id);
            let policy_of = sub.as_ref().map(|x| x.rec.policy).unwrap_or_default();
            let age = (at - s.msg.first_attempt_at).to_std().unwrap_or_default();
            let decision = decide(&policy_of, s.msg.attempt, age, &s.answer, rand::random());
            let class = s.answer.class();
            metrics::counter!("webhook_deliveries_total", "status_class" => class).increment(1);
            metrics::histogram!("webhook_delivery_duration_seconds")
                .record(s.latency.as_secs_f64());
            let (outcome, next) = match &decision {
                Decision::Delivered => (AttemptOutcome::Delivered, None),
                Decision::Retry(wait) => {
                    metrics::counter!("webhook_retries_total").increment(1);
                    let when = Instant::now() + *wait;
                    self.retry_at = Some(self.retry_at.map_or(when, |r| r.min(when)));
                    (
                        AttemptOutcome::Failed,
                        Some(at + chrono::Duration::from_std(*wait).unwrap_or_default()),
                    )
                }
                Decision::Dead(_) => {
                    metrics::counter!("webhook_dead_lettered_total").increment(1);
                    (AttemptOutcome::Dead, None)
                }
                Decision::Gone => {
                    metrics::counter!("webhook_dead_lettered_total").increment(1);
                    (AttemptOutcome::Gone, None)
                }
            };
            let mut error = s.error.clone();
            if let Decision::Dead(why) = &decision {
                error = Some(match error {
                    Some(e) => format!("{e}; dead-lettered: {why}"),
                    None => format!("dead-lettered: {why}"),
                });
            }
            if let Some(sub) = sub {
                sub.in_flight = sub.in_flight.saturating_sub(1);
                sub.maybe_due = true;
                match decision {
                    Decision::Delivered => {
                        sub.breaker.success();
                        if sub.rec.failing_since.is_some() {
                            failing.push((sub.rec.id, None));
                            Arc::make_mut(&mut sub.rec).failing_since = None;
                        }
                    }
                    Decision::Gone => {
                        disable.push((
                            Arc::clone(&sub.rec),
                            "the endpoint answered 410 Gone".to_owned(),
                        ));
                    }
                    _ => {
                        sub.breaker.failure(clock, policy);
                        match sub.rec.failing_since {
                            None => {
                                failing.push((sub.rec.id, Some(at)));
                                Arc::make_mut(&mut sub.rec).failing_since = Some(at);
                            }
                            Some(since) if at - since >= disable_after => {
                                disable.push((
                                    Arc::clone(&sub.rec),
                                    format!(
                                        "every attempt failed since {} ({} hours: [webhooks] disable_after_hours)",
                                        since.to_rfc3339(),
                                        disable_after.num_hours()
                                    ),
                                ));
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
            tracing::debug!(
                target: "tenantry::webhooks",
                tenant_id = %s.msg.tenant_id,
                subscription = %s.msg.subscription_id,
                message = %message_id(s.msg.id),
                attempt = s.msg.attempt,
                status = class,
                outcome = outcome.as_str(),
                latency_ms = s.latency.as_millis() as u64,
                "webhook attempt"
            );
            self.unrecorded.push(AttemptResult {
                id: Uuid::now_v7(),
                message_id: s.msg.id,
                tenant_id: s.msg.tenant_id,
                subscription_id: s.msg.subscription_id,
                event_type: s.msg.event_type.clone(),
                attempt: s.msg.attempt,
                outcome,
                status_code: match s.answer {
                    Answer::Status { code, .. } => Some(code),
                    _ => None,
                },
                latency_ms: u32::try_from(s.latency.as_millis()).unwrap_or(u32::MAX),
                response: s.response,
                error,
                at,
                next_attempt_at: next,
            });
        }
        FollowUps { failing, disable }
    }

    /// Stores subscriptions' health and disables those that asked for it.
    async fn follow_up(&mut self, f: FollowUps) {
        for (id, since) in f.failing {
            if let Err(e) = self
                .app
                .store()
                .webhooks()
                .set_failing_since(id, since)
                .await
            {
                tracing::warn!(subscription = %id, error = %e, "recording a subscription's health failed");
            }
        }
        for (rec, reason) in f.disable {
            self.subs.remove(&rec.id);
            if let Err(e) = disable_subscription(&self.app, &rec, &reason).await {
                tracing::warn!(tenant_id = %rec.tenant_id, subscription = %rec.id, error = %e, "disabling a webhook subscription failed; it is tried again on its next failure");
            }
        }
    }
}

/// What outcomes ask of subscriptions: their health to store, those to disable.
struct FollowUps {
    failing: Vec<(Uuid, Option<chrono::DateTime<Utc>>)>,
    disable: Vec<(Arc<SubscriptionRecord>, String)>,
}

/// A message's id: a function of its subscription and event (a UUID version 8 of their hash).
fn message_uuid(subscription: Uuid, event: Uuid) -> Uuid {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(subscription.as_bytes())
        .chain_update(event.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Disables a subscription, with an audit record and a `webhook.subscription.disabled.v1`.
async fn disable_subscription(
    app: &App,
    rec: &SubscriptionRecord,
    reason: &str,
) -> Result<(), String> {
    let store = app.store();
    let tenant = store
        .tenants()
        .get(&tenantry_domain::TenantRef::Id(rec.tenant_id))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the tenant is gone")?;
    let scope = crate::access::scope::system_scope(&tenant, "webhook dispatcher");
    for _ in 0..3 {
        let Some(current) = store
            .webhooks()
            .get_subscription(&scope, rec.id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        if !current.enabled {
            return Ok(());
        }
        let mut next = current.clone();
        next.enabled = false;
        next.disabled_reason = Some(reason.to_owned());
        next.updated_at = now().max(current.updated_at + chrono::Duration::microseconds(1));
        let ctx = Ctx::new(tenantry_domain::Actor::system(), None);
        let audit = ctx.audit(
            "webhook.subscription.disable",
            "webhook_subscription",
            rec.id.to_string(),
            Some(rec.tenant_id),
            json!({"reason": reason, "url_host": host_of(&rec.url)}),
        );
        let changes = Changes::new(
            audit,
            subscription_event(
                None,
                &scope,
                "webhook.subscription.disabled.v1",
                &next,
                json!({"reason": reason}),
            ),
        );
        match store
            .webhooks()
            .update_subscription(&scope, &next, current.updated_at, &changes)
            .await
        {
            Ok(()) => {
                tracing::warn!(
                    tenant_id = %rec.tenant_id, subscription = %rec.id, host = %host_of(&rec.url),
                    reason, "webhook subscription disabled"
                );
                metrics::counter!("webhook_subscriptions_disabled_total").increment(1);
                return Ok(());
            }
            Err(StoreError::VersionConflict) => continue,
            Err(StoreError::NotFound) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("the subscription kept changing".into())
}

/// One attempt: the message signed with every key in force, sent through the egress guard.
async fn attempt(
    egress: &crate::platform::egress::Egress,
    rec: &SubscriptionRecord,
    keys: &[Vec<u8>],
    msg: ClaimedMessage,
    excerpt: usize,
) -> Sent {
    let parent = msg
        .trace_parent
        .as_deref()
        .map(traces::extract_traceparent)
        .unwrap_or_default();
    let host = host_of(&rec.url);
    let traced = traces::start(
        || "webhook.deliver".into(),
        SpanKind::Producer,
        || {
            vec![
                KeyValue::new("tenant.id", msg.tenant_id.to_string()),
                KeyValue::new("webhook.subscription", msg.subscription_id.to_string()),
                KeyValue::new("server.address", host.clone()),
                KeyValue::new("webhook.attempt", i64::from(msg.attempt)),
                KeyValue::new("cloudevents.event_type", msg.event_type.clone()),
            ]
        },
        &parent,
    );
    let started = Instant::now();
    let id = message_id(msg.id);
    let timestamp = Utc::now().timestamp();
    let signature = signing::header(keys, &id, timestamp, msg.body.as_bytes());
    let timeout = Duration::from_millis(u64::from(rec.policy.timeout_ms));
    let request = egress
        .request(reqwest::Method::POST, &rec.url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::USER_AGENT, "tenantry-webhooks/1")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .header("webhook-event-type", &msg.event_type)
        .header("webhook-tenant-id", msg.tenant_id.to_string())
        .header("webhook-attempt", msg.attempt.to_string())
        .header("traceparent", traces::traceparent(&traced.trace))
        .body(msg.body.clone())
        .build();
    let cx = traced.cx.clone();
    let outcome = async {
        let request = request.map_err(|e| (Answer::Error, e.without_url().to_string()))?;
        let response = egress.send(request).await.map_err(describe)?;
        let code = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::sync::fetch::retry_after(v, std::time::SystemTime::now()));
        // the start of the body, within what is left of the timeout
        let mut body = Vec::new();
        let mut response = response;
        let left = timeout.saturating_sub(started.elapsed());
        let _ = tokio::time::timeout(left, async {
            while body.len() < excerpt {
                match response.chunk().await {
                    Ok(Some(c)) => body.extend_from_slice(&c),
                    _ => break,
                }
            }
        })
        .await;
        body.truncate(excerpt);
        Ok::<_, (Answer, String)>((code, retry_after, body))
    }
    .with_context(cx.clone())
    .await;
    let latency = started.elapsed();
    let (answer, response, error) = match outcome {
        Ok((code, retry_after, body)) => (
            Answer::Status { code, retry_after },
            (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned()),
            None,
        ),
        Err((answer, error)) => (answer, None, Some(error)),
    };
    let ok = matches!(answer, Answer::Status { code, .. } if (200..300).contains(&code));
    if let Answer::Status { code, .. } = answer {
        let span = opentelemetry::trace::TraceContextExt::span(&cx);
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
    }
    traces::end(&cx, ok);
    tracing::debug!(
        target: "tenantry::webhooks",
        tenant_id = %msg.tenant_id,
        trace_id = %traced.trace.trace_id_hex(),
        subscription = %msg.subscription_id,
        host = %host,
        attempt = msg.attempt,
        status = answer.class(),
        latency_ms = latency.as_millis() as u64,
        "webhook.deliver"
    );
    Sent {
        msg,
        answer,
        latency,
        response,
        error,
    }
}

/// What went wrong, without the URL (it may carry a token), with its causes.
fn describe(e: crate::platform::egress::EgressError) -> (Answer, String) {
    use crate::platform::egress::EgressError;
    match e {
        EgressError::Request(e) => {
            let answer = if e.is_timeout() {
                Answer::Timeout
            } else {
                Answer::Error
            };
            let e = e.without_url();
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            (answer, text)
        }
        other => (Answer::Error, other.to_string()),
    }
}
