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
CREATE INDEX jobs_state_idx ON jobs (state, id);
CREATE INDEX jobs_tenant_idx ON jobs (tenant_id, id);
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;

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
