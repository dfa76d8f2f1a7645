-- tenantry 0003: the durable job queue, schedules and singleton leases.

CREATE TABLE jobs (
    id               UUID PRIMARY KEY,
    queue            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    tenant_id        UUID REFERENCES tenants (id) DEFERRABLE INITIALLY DEFERRED,
    -- the fairness lane: the tenant id, or '' for platform jobs
    lane             TEXT NOT NULL,
    fair_key         BIGINT NOT NULL,
    unique_key       TEXT,
    unique_window_ms BIGINT NOT NULL DEFAULT 0,
    payload          JSONB NOT NULL,
    priority         SMALLINT NOT NULL DEFAULT 0,
    state            TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           TIMESTAMPTZ NOT NULL,
    lease_ms         BIGINT NOT NULL,
    retry_base_ms    BIGINT NOT NULL,
    retry_cap_ms     BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    heartbeat_at     TIMESTAMPTZ,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    checkpoint       JSONB,
    errors           JSONB NOT NULL DEFAULT '[]',
    created_at       TIMESTAMPTZ NOT NULL,
    attempted_at     TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ
);
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
    job_id     UUID NOT NULL,
    expires_at TIMESTAMPTZ
);

CREATE TABLE schedules (
    name          TEXT PRIMARY KEY,
    tenant_id     UUID REFERENCES tenants (id),
    cron          TEXT,
    interval_ms   BIGINT,
    kind          TEXT NOT NULL,
    payload       JSONB NOT NULL,
    enabled       BOOLEAN NOT NULL,
    next_fire_at  TIMESTAMPTZ,
    last_fired_at TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE worker_leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL
);

-- A queue table swings between empty and large within seconds, so its statistics are always
-- stale: vacuum and analyze it often (dead index entries of claimed jobs slow the next claims).
ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000,
    autovacuum_analyze_scale_factor = 0.0, autovacuum_analyze_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);

-- The claim. Its only good plan is an ordered walk of jobs_claim_idx that stops after p_limit
-- rows; with stale statistics (a new database, a queue that just filled up) the planner would
-- rather collect every pending job and sort them (86 ms instead of 2 ms at 50 000 jobs). The
-- function pins the plan, whatever the statistics say.
CREATE FUNCTION tenantry_claim_jobs(p_owner TEXT, p_now TIMESTAMPTZ, p_queues TEXT[], p_limit BIGINT)
    RETURNS SETOF jobs
    LANGUAGE plpgsql VOLATILE
    SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH picked AS (
        SELECT id FROM jobs
        WHERE state IN ('scheduled', 'available', 'retryable')
          AND run_at <= p_now AND queue = ANY (p_queues)
        ORDER BY priority DESC, fair_key, id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED)
    UPDATE jobs j SET state = 'running', attempt = j.attempt + 1, lease_owner = p_owner,
        lease_expires_at = p_now + j.lease_ms * interval '1 millisecond',
        heartbeat_at = p_now, attempted_at = p_now
    FROM picked WHERE j.id = picked.id
    RETURNING j.*;
END
$$;

-- Where new jobs go in the fair order: after the queue's head and after their lane's tail. Both
-- are one step along an index, pinned for the same reason as the claim (under row-level security
-- the planner also believes almost no pending job is visible, and sorts them all).
-- (PL/pgSQL rather than SQL: it keeps each session's plan instead of planning every call.)
CREATE FUNCTION tenantry_queue_head() RETURNS BIGINT
    LANGUAGE plpgsql STABLE
    SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off
AS $$
BEGIN
    RETURN COALESCE((SELECT fair_key FROM jobs WHERE state IN ('scheduled', 'available', 'retryable')
                     ORDER BY priority DESC, fair_key, id LIMIT 1), 0);
END
$$;

CREATE FUNCTION tenantry_lane_tail(p_lane TEXT) RETURNS BIGINT
    LANGUAGE plpgsql STABLE
    SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off
AS $$
BEGIN
    RETURN COALESCE((SELECT fair_key FROM jobs WHERE lane = p_lane AND state IN ('scheduled', 'available', 'retryable')
                     ORDER BY fair_key DESC LIMIT 1), 0);
END
$$;

ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON jobs USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));
ALTER TABLE schedules ENABLE ROW LEVEL SECURITY;
ALTER TABLE schedules FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON schedules USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));

DO $$
BEGIN
    GRANT SELECT, INSERT, UPDATE, DELETE ON jobs, job_unique_keys, schedules, worker_leases TO tenantry_app;
EXCEPTION
    WHEN undefined_object OR insufficient_privilege THEN RAISE NOTICE 'tenantry_app grants skipped';
END
$$;
