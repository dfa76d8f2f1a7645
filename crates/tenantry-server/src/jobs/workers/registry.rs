//! Job kinds: what each kind is called, how it is retried and leased, and the code that runs it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tenantry_domain::TenantId;
use tenantry_domain::job::RetryPolicy;
use tenantry_store::Store;
use tenantry_store::jobs::Fence;
use uuid::Uuid;

/// How a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (after backoff).
    #[error("{0}")]
    Retryable(String),
    /// Will never succeed: the job goes to the dead-letter state at once.
    #[error("{0}")]
    Permanent(String),
    /// The handler stopped because the job was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// What a running job can see and do.
pub struct JobContext {
    pub id: Uuid,
    pub kind: String,
    pub tenant_id: Option<TenantId>,
    pub attempt: u32,
    pub payload: Value,
    /// The last checkpoint saved by this or an earlier attempt.
    pub checkpoint: Option<Value>,
    /// The run's trace (continuing the one that enqueued the job): audit records and events the
    /// handler writes carry it.
    pub trace: Option<tenantry_domain::TraceContext>,
    pub(crate) fence: Fence,
    pub(crate) owner: Arc<str>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cancel: Arc<AtomicBool>,
}

impl JobContext {
    /// Saves progress: a retried or recovered attempt starts from it. Fails (permanently for this
    /// attempt) when the lease was lost, so a fenced-off worker stops at its next checkpoint.
    pub async fn save_checkpoint(&mut self, value: Value) -> Result<(), JobError> {
        match self
            .store
            .jobs()
            .checkpoint(&self.owner, self.fence, &value, crate::platform::now())
            .await
        {
            Ok(true) => {
                self.checkpoint = Some(value);
                Ok(())
            }
            Ok(false) => Err(JobError::Cancelled),
            Err(e) => Err(JobError::Retryable(format!(
                "could not save checkpoint: {e}"
            ))),
        }
    }

    /// Whether an operator cancelled the job (seen at the worker's next heartbeat) or the lease
    /// was lost. Long handlers check it between steps.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, job: &mut JobContext) -> Result<(), JobError>;

    /// Checks a payload before it is enqueued (or scheduled): a job that could never run
    /// correctly is refused with `422` naming `payload`, instead of failing later in a worker.
    /// The default takes any payload.
    fn validate(&self, _payload: &Value) -> Result<(), String> {
        Ok(())
    }
}

/// Reads a payload as `T` (unknown fields refused), for [`JobHandler::validate`].
pub fn payload_as<T: serde::de::DeserializeOwned>(payload: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize::<_, T>(payload).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner().to_string();
        if at == "." {
            inner
        } else {
            format!("{at}: {inner}")
        }
    })
}

/// `sleep`'s payload: how long, at most ten minutes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepPayload {
    #[serde(default)]
    ms: Option<u64>,
}

/// The longest `sleep` (it holds a worker slot while it runs).
const MAX_SLEEP_MS: u64 = 10 * 60 * 1000;

/// `fail`'s payload.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FailPayload {
    #[serde(default)]
    times: Option<u64>,
    #[serde(default)]
    permanent: Option<bool>,
}

/// A registered kind.
#[derive(Clone)]
pub struct JobKind {
    pub name: &'static str,
    pub description: &'static str,
    pub lease: Duration,
    pub retry: RetryPolicy,
    pub handler: Arc<dyn JobHandler>,
    /// Applied to every job of the kind as it is enqueued (by the API or a schedule's firing),
    /// after the defaults: a kind that must never have two pending jobs for one thing sets its
    /// unique key here ([`no_prepare`]: nothing).
    pub prepare: fn(&mut tenantry_store::jobs::NewJob),
}

/// A kind whose jobs are enqueued as they are.
pub fn no_prepare(_: &mut tenantry_store::jobs::NewJob) {}

/// The kinds this process knows. Enqueueing an unknown kind is refused; a worker that claims one
/// (another version enqueued it) fails it permanently.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<&'static str, JobKind>,
}

impl Registry {
    pub fn register(&mut self, kind: JobKind) {
        self.kinds.insert(kind.name, kind);
    }

    pub fn get(&self, name: &str) -> Option<&JobKind> {
        self.kinds.get(name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        let mut n: Vec<_> = self.kinds.keys().copied().collect();
        n.sort_unstable();
        n
    }

    /// The job kinds every capability registers ([`crate::CAPABILITIES`]).
    /// Every capability's job kinds, for `app`'s process.
    pub fn with_builtins(app: &crate::platform::App) -> Self {
        let mut r = Self::default();
        for c in crate::CAPABILITIES {
            (c.job_kinds)(&mut r, app);
        }
        r
    }

    /// Only the jobs capability's synthetic kinds (`noop`, `sleep`, `fail`): benchmarks.
    pub fn synthetic() -> Self {
        let mut r = Self::default();
        Self::register_synthetic(&mut r);
        r
    }

    /// The jobs capability's `job_kinds`.
    pub fn register_builtins(r: &mut Self, _app: &crate::platform::App) {
        Self::register_synthetic(r);
    }

    /// The jobs capability's own kinds, for synthetic checks and benchmarks: `noop`, `sleep`,
    /// `fail`.
    fn register_synthetic(r: &mut Self) {
        let quick = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
        };
        r.register(JobKind {
            name: "noop",
            description: "does nothing (benchmarks, synthetic checks)",
            lease: Duration::from_secs(30),
            retry: quick,
            handler: Arc::new(Noop),
            prepare: no_prepare,
        });
        r.register(JobKind {
            name: "sleep",
            description: "{ms}: sleeps up to ten minutes, heartbeating, and stops when cancelled",
            lease: Duration::from_secs(30),
            retry: quick,
            handler: Arc::new(Sleep),
            prepare: no_prepare,
        });
        r.register(JobKind {
            name: "fail",
            description: "{times, permanent}: fails `times` attempts then succeeds; `permanent: true` fails permanently",
            lease: Duration::from_secs(30),
            retry: quick,
            handler: Arc::new(Fail),
            prepare: no_prepare,
        });
    }
}

struct Noop;

#[async_trait]
impl JobHandler for Noop {
    async fn run(&self, _job: &mut JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

struct Sleep;

#[async_trait]
impl JobHandler for Sleep {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        let p: SleepPayload = payload_as(payload)?;
        match p.ms {
            Some(ms) if ms > MAX_SLEEP_MS => Err(format!(
                "ms: at most {MAX_SLEEP_MS} (ten minutes), got {ms}"
            )),
            _ => Ok(()),
        }
    }

    async fn run(&self, job: &mut JobContext) -> Result<(), JobError> {
        let ms = job
            .payload
            .get("ms")
            .and_then(Value::as_u64)
            .unwrap_or(1000);
        // resume from the checkpoint: the time already slept counts
        let mut slept = job
            .checkpoint
            .as_ref()
            .and_then(|c| c.get("slept_ms"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let step = 100;
        while slept < ms {
            if job.is_cancelled() {
                return Err(JobError::Cancelled);
            }
            let d = step.min(ms - slept);
            tokio::time::sleep(Duration::from_millis(d)).await;
            slept += d;
            if slept % 1000 < step && slept < ms {
                job.save_checkpoint(serde_json::json!({ "slept_ms": slept }))
                    .await?;
            }
        }
        Ok(())
    }
}

struct Fail;

#[async_trait]
impl JobHandler for Fail {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        let p: FailPayload = payload_as(payload)?;
        let _ = p.permanent;
        match p.times {
            Some(t) if t > 100 => Err(format!("times: at most 100, got {t}")),
            _ => Ok(()),
        }
    }

    async fn run(&self, job: &mut JobContext) -> Result<(), JobError> {
        if job
            .payload
            .get("permanent")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return Err(JobError::Permanent("failing permanently, as asked".into()));
        }
        let times = job
            .payload
            .get("times")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        if u64::from(job.attempt) <= times {
            return Err(JobError::Retryable(format!(
                "failing attempt {} of {times}, as asked",
                job.attempt
            )));
        }
        Ok(())
    }
}
