-- tenantry 0012: source sync (issue 13). A tenant's sources (pulled on a schedule from a
-- third-party API), the runs that pulled them (one per job: a retried or recovered attempt
-- resumes from the run's checkpoint, saved with each page), the records they brought, and the
-- items that could not be read (quarantine).

CREATE TABLE sync_sources (
    id             UUID PRIMARY KEY,
    tenant_id      UUID NOT NULL REFERENCES tenants (id),
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    schedule       TEXT,
    enabled        BOOLEAN NOT NULL,
    max_attempts   INTEGER NOT NULL,
    config         JSONB NOT NULL,
    sealed_headers TEXT,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE sync_runs (
    id           UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants (id),
    source_id    UUID NOT NULL REFERENCES sync_sources (id) ON DELETE CASCADE,
    status       TEXT NOT NULL,
    manual       BOOLEAN NOT NULL,
    triggered_at TIMESTAMPTZ NOT NULL,
    attempts     INTEGER NOT NULL,
    resumed      BOOLEAN NOT NULL,
    owner        TEXT,
    checkpoint   JSONB,
    counts       JSONB NOT NULL,
    error        TEXT,
    started_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ
);
CREATE INDEX sync_runs_by_source ON sync_runs (tenant_id, source_id, id);

CREATE TABLE sync_records (
    id            UUID PRIMARY KEY,
    tenant_id     UUID NOT NULL REFERENCES tenants (id),
    source_id     UUID NOT NULL REFERENCES sync_sources (id) ON DELETE CASCADE,
    record_type   TEXT NOT NULL,
    key           TEXT NOT NULL,
    data          JSONB NOT NULL,
    hash          TEXT NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    changed_at    TIMESTAMPTZ NOT NULL,
    removed_at    TIMESTAMPTZ,
    last_run_id   UUID NOT NULL,
    UNIQUE (tenant_id, source_id, record_type, key)
);
CREATE INDEX sync_records_by_tenant ON sync_records (tenant_id, id);

CREATE TABLE sync_quarantine (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants (id),
    source_id   UUID NOT NULL REFERENCES sync_sources (id) ON DELETE CASCADE,
    run_id      UUID NOT NULL,
    page        BIGINT NOT NULL,
    item_index  BIGINT NOT NULL,
    key         TEXT,
    reason      TEXT NOT NULL,
    excerpt     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (run_id, page, item_index)
);
CREATE INDEX sync_quarantine_by_source ON sync_quarantine (tenant_id, source_id, id);

ALTER TABLE sync_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_sources FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sync_sources USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));
ALTER TABLE sync_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sync_runs USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));
ALTER TABLE sync_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sync_records USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));
ALTER TABLE sync_quarantine ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_quarantine FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sync_quarantine USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));

DO $$
BEGIN
    GRANT SELECT, INSERT, UPDATE, DELETE ON sync_sources, sync_runs, sync_records, sync_quarantine TO tenantry_app;
EXCEPTION
    WHEN undefined_object OR insufficient_privilege THEN RAISE NOTICE 'tenantry_app grants skipped';
END
$$;
