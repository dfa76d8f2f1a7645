-- tenantry 0003: the durable job queue, schedules and singleton leases. Times are INTEGER
-- microseconds since the Unix epoch (exact ordering and arithmetic in SQL).

CREATE TABLE jobs (
    id               BLOB PRIMARY KEY,
    queue            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    tenant_id        BLOB REFERENCES tenants (id) DEFERRABLE INITIALLY DEFERRED,
    -- the fairness lane: the tenant id, or '' for platform jobs
    lane             TEXT NOT NULL,
    fair_key         INTEGER NOT NULL,
    unique_key       TEXT,
    unique_window_ms INTEGER NOT NULL DEFAULT 0,
    payload          TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    state            TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    lease_ms         INTEGER NOT NULL,
    retry_base_ms    INTEGER NOT NULL,
    retry_cap_ms     INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    heartbeat_at     INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    checkpoint       TEXT,
    errors           TEXT NOT NULL DEFAULT '[]',
    created_at       INTEGER NOT NULL,
    attempted_at     INTEGER,
    finished_at      INTEGER
) STRICT;
-- the claim order, over pending jobs only (the index stays small however many jobs finished)
CREATE INDEX jobs_claim_idx ON jobs (priority DESC, fair_key, id)
    WHERE state IN ('scheduled', 'available', 'retryable');
-- the tail of each tenant's lane, for fair keys at enqueue
CREATE INDEX jobs_lane_idx ON jobs (lane, fair_key)
    WHERE state IN ('scheduled', 'available', 'retryable');
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'running';
-- the dead-letter console and its gauges (dead jobs are few; finished ones are not indexed by
-- state: every index is written again by each claim and completion)
CREATE INDEX jobs_dead_idx ON jobs (finished_at) WHERE state = 'dead';
CREATE INDEX jobs_tenant_idx ON jobs (tenant_id, id);
-- pruning walks the primary key: ids are UUIDv7, so a job finished before T was created before T

-- unique keys of jobs that are not finished, or finished less than their window ago
CREATE TABLE job_unique_keys (
    key        TEXT PRIMARY KEY,
    job_id     BLOB NOT NULL,
    expires_at INTEGER
) STRICT;

CREATE TABLE schedules (
    name          TEXT PRIMARY KEY,
    tenant_id     BLOB REFERENCES tenants (id),
    cron          TEXT,
    interval_ms   INTEGER,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    enabled       INTEGER NOT NULL,
    next_fire_at  INTEGER,
    last_fired_at INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE worker_leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL
) STRICT;


