//! The job queue's upkeep on PostgreSQL: enqueue coalescing, wake-ups across instances
//! (`NOTIFY` / `LISTEN tenantry_jobs`) and vacuuming the jobs table under sustained load
//! (ADR 0010).

use std::sync::{Arc, Weak};

use sqlx::PgConnection;
use sqlx::postgres::PgListener;

use super::jobs::{CHANNEL, insert_fresh};
use super::{PgStore, err};
use crate::StoreResult;
use crate::jobs::NewJob;
use crate::sql::enqueue_batch::EnqueueBatcher;

impl PgStore {
    /// Concurrent plain enqueues share one insert and one commit (`enqueue_batch`), up to four
    /// inserts in flight.
    pub(super) fn enqueue_batcher(&self) -> &EnqueueBatcher {
        self.batcher.get_or_init(|| {
            let pool = self.pool.clone();
            EnqueueBatcher::start(
                4,
                Arc::new(move |jobs: Vec<NewJob>| {
                    let pool = pool.clone();
                    Box::pin(async move {
                        let refs: Vec<&NewJob> = jobs.iter().collect();
                        insert_fresh(&pool, &refs).await
                    })
                }),
            )
        })
    }

    /// `VACUUM` of the jobs table on a connection of its own: `VACUUM` needs the table's owner
    /// (the login role that ran the migrations), not the application role the pools work as.
    /// `SKIP_LOCKED`: if autovacuum or another instance is at it already, there is nothing to do.
    pub(super) async fn vacuum_jobs(&self) -> StoreResult<bool> {
        use sqlx::Connection as _;
        let mut conn = PgConnection::connect_with(&self.options)
            .await
            .map_err(err)?;
        let owner: bool = sqlx::query_scalar(
            "SELECT pg_has_role(session_user, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = 'jobs'::regclass",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(err)?;
        if !owner {
            if !self
                .vacuum_refused
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(
                    "the database login does not own the jobs table, so it cannot vacuum it; autovacuum alone keeps the queue tidy (claims slow down under sustained load)"
                );
            }
            let _ = conn.close().await;
            return Ok(false);
        }
        let started = std::time::Instant::now();
        let r = sqlx::query("VACUUM (SKIP_LOCKED) jobs")
            .execute(&mut conn)
            .await
            .map_err(err);
        let _ = conn.close().await;
        r?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "jobs table vacuumed"
        );
        Ok(true)
    }

    /// Jobs may be available: wake this instance's workers now, and other instances' through
    /// `NOTIFY` — coalesced to at most one every couple of milliseconds, because `NOTIFY`
    /// serialises the commits of the transactions that send it.
    /// After an enqueue commits: wake this instance's workers and announce to the others.
    pub(super) fn after_enqueue(&self) {
        self.announce();
    }

    pub(super) fn announce(&self) {
        self.signal.notify_waiters();
        if self
            .announce_pending
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let pool = self.pool.clone();
        let pending = Arc::clone(&self.announce_pending);
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            pending.store(false, std::sync::atomic::Ordering::Release);
            if pool.is_closed() {
                return;
            }
            if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, "NOTIFY failed; other instances find the jobs by polling");
            }
        });
    }

    /// Forwards `NOTIFY <channel>` from any instance to `signal`, for as long as it lives.
    pub(super) fn spawn_listener(&self, channel: &'static str, signal: &Arc<tokio::sync::Notify>) {
        let pool = self.pool.clone();
        let weak: Weak<tokio::sync::Notify> = Arc::downgrade(signal);
        tokio::spawn(async move {
            let mut listener = loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut l) => match l.listen(channel).await {
                        Ok(()) => break l,
                        Err(e) => tracing::warn!(error = %e, "LISTEN failed; retrying"),
                    },
                    Err(e) => tracing::warn!(error = %e, "job listener cannot connect; retrying"),
                }
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            };
            loop {
                let got =
                    tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv()).await;
                let Some(signal) = weak.upgrade() else {
                    return;
                };
                match got {
                    Ok(Ok(_)) => signal.notify_waiters(),
                    // the store is closing: let go of the connection so the pool can close
                    Ok(Err(_)) if pool.is_closed() => return,
                    // reconnects by itself on the next recv; wake workers in case we missed one
                    Ok(Err(e)) => {
                        signal.notify_waiters();
                        tracing::debug!(error = %e, "job listener lost its connection; reconnecting");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                    Err(_) if pool.is_closed() => return,
                    Err(_) => {}
                }
            }
        });
    }
}
