//! Plain enqueues (no unique key, nothing to record with them) from concurrent callers,
//! coalesced into one insert: a caller's call still returns only once its jobs are committed,
//! but the commit — a WAL flush, or SQLite's `fsync` — and the statement's fixed cost are shared
//! by everyone who called while the previous insert was running. An idle system adds no wait: a
//! lone call goes at once. ADR 0010 has the measurements.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::jobs::NewJob;
use crate::{StoreError, StoreResult};

/// Inserts and commits one batch of jobs (the adapter's own statement).
pub(crate) type InsertFn =
    Arc<dyn Fn(Vec<NewJob>) -> Pin<Box<dyn Future<Output = StoreResult<()>> + Send>> + Send + Sync>;

/// Whether an enqueue may be coalesced with others: nothing to record in its transaction and
/// no unique key to check first.
pub(crate) fn coalescable(jobs: &[NewJob], records_something: bool) -> bool {
    !records_something && jobs.iter().all(|j| j.unique_key.is_none())
}

/// Jobs per coalesced insert (PostgreSQL: 18 parameters a job, well inside its 65 535).
const BATCH_MAX_JOBS: usize = 1000;

pub(crate) struct EnqueueBatcher {
    tx: mpsc::UnboundedSender<Request>,
    /// Used directly if the inserters are gone (their runtime shut down).
    insert: InsertFn,
}

impl std::fmt::Debug for EnqueueBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnqueueBatcher").finish_non_exhaustive()
    }
}

struct Request {
    jobs: Vec<NewJob>,
    done: oneshot::Sender<StoreResult<()>>,
}

impl EnqueueBatcher {
    /// `inserters` inserts may be in flight at once; each takes every call waiting when it starts.
    /// `insert` must not hold the store itself (the batcher lives in it): give it the pool.
    pub(crate) fn start(inserters: usize, insert: InsertFn) -> Self {
        let (tx, rx) = mpsc::unbounded_channel::<Request>();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..inserters.max(1) {
            let (rx, insert) = (Arc::clone(&rx), Arc::clone(&insert));
            // a store outlives nothing it spawned: if this runtime shuts down, the inserters go
            // and `enqueue` inserts directly
            tokio::spawn(async move {
                let mut carry: Option<Request> = None;
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut rx = rx.lock().await;
                        let first = match carry.take() {
                            Some(r) => r,
                            None => match rx.recv().await {
                                Some(r) => r,
                                None => return, // the store is gone
                            },
                        };
                        let mut n = first.jobs.len();
                        batch.push(first);
                        while n < BATCH_MAX_JOBS {
                            let Ok(next) = rx.try_recv() else { break };
                            if n + next.jobs.len() > BATCH_MAX_JOBS {
                                carry = Some(next);
                                break;
                            }
                            n += next.jobs.len();
                            batch.push(next);
                        }
                    }
                    insert_batch(&insert, batch).await;
                }
            });
        }
        Self { tx, insert }
    }

    /// Returns once `jobs` are committed (or failed).
    pub(crate) async fn enqueue(&self, jobs: &[NewJob]) -> StoreResult<()> {
        let (done, rx) = oneshot::channel();
        let request = Request {
            jobs: jobs.to_vec(),
            done,
        };
        if let Err(mpsc::error::SendError(request)) = self.tx.send(request) {
            return (self.insert)(request.jobs).await;
        }
        // dropped unanswered only if the inserter's runtime shut down mid-insert (the process is
        // stopping): the jobs may or may not be stored, as with a connection lost at commit
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Unavailable(sqlx::Error::PoolClosed)))
    }
}

/// One insert for every call in `batch`; if it fails, each call is tried alone, so one caller's
/// bad job (say, a tenant that does not exist) fails only that caller.
async fn insert_batch(insert: &InsertFn, mut batch: Vec<Request>) {
    if batch.len() == 1 {
        if let Some(r) = batch.pop() {
            let result = insert(r.jobs).await;
            let _ = r.done.send(result);
        }
        return;
    }
    let all: Vec<NewJob> = batch.iter().flat_map(|r| r.jobs.iter().cloned()).collect();
    if insert(all).await.is_ok() {
        for r in batch {
            let _ = r.done.send(Ok(()));
        }
        return;
    }
    for r in batch {
        let result = insert(r.jobs).await;
        let _ = r.done.send(result);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn job(kind: &str) -> NewJob {
        NewJob::new(kind, serde_json::json!({}), chrono::Utc::now())
    }

    /// An insert that records each batch's kinds, takes a moment (so calls pile up behind it),
    /// and fails a batch holding a job of kind "bad".
    fn recording() -> (InsertFn, Arc<Mutex<Vec<Vec<String>>>>) {
        let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let log = Arc::clone(&seen);
        let insert: InsertFn = Arc::new(move |jobs: Vec<NewJob>| {
            let log = Arc::clone(&log);
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                let kinds: Vec<String> = jobs.iter().map(|j| j.kind.clone()).collect();
                let bad = kinds.iter().any(|k| k == "bad");
                log.lock().unwrap().push(kinds);
                if bad {
                    Err(StoreError::corrupt("bad job"))
                } else {
                    Ok(())
                }
            })
        });
        (insert, seen)
    }

    #[tokio::test]
    async fn concurrent_calls_share_inserts_and_a_bad_call_fails_alone() {
        let (insert, seen) = recording();
        let batcher = EnqueueBatcher::start(1, insert);
        // 20 calls at once (this test's runtime has one thread: all of them are queued before
        // the inserter runs), one of them bad
        let calls: Vec<Vec<NewJob>> = (0..20)
            .map(|i| vec![job(if i == 7 { "bad" } else { "ok" })])
            .collect();
        let results =
            crate::testing::join_all(calls.iter().map(|jobs| batcher.enqueue(jobs))).await;
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_ok(), i != 7, "call {i}: {r:?}");
        }
        // a lone call goes alone
        batcher.enqueue(&[job("lone")]).await.unwrap();
        let seen = seen.lock().unwrap();
        // one shared insert of the 20 (it failed), each of them alone, then the lone call
        assert_eq!(seen[0].len(), 20, "the calls were not coalesced: {seen:?}");
        assert!(seen[1..=20].iter().all(|b| b.len() == 1));
        assert_eq!(seen[21], vec!["lone".to_owned()]);
        assert_eq!(seen.len(), 22);
    }

    #[test]
    fn a_batcher_whose_runtime_is_gone_inserts_directly() {
        let (insert, seen) = recording();
        let batcher = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { EnqueueBatcher::start(2, insert) });
        // that runtime (and the inserters) are gone; a new one still gets its jobs stored
        let r = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(batcher.enqueue(&[job("late")]));
        assert!(r.is_ok());
        assert_eq!(seen.lock().unwrap().as_slice(), [vec!["late".to_owned()]]);
    }
}
