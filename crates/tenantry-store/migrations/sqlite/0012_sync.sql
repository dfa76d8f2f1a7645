-- tenantry 0012: source sync (issue 13). See the PostgreSQL migration of the same version; times
-- are integer microseconds since the epoch, UUIDs blobs, JSON text.

CREATE TABLE sync_sources (
    id             BLOB PRIMARY KEY,
    tenant_id      BLOB NOT NULL REFERENCES tenants (id),
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    schedule       TEXT,
    enabled        BOOLEAN NOT NULL,
    max_attempts   INTEGER NOT NULL,
    config         TEXT NOT NULL,
    sealed_headers TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE sync_runs (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants (id),
    source_id    BLOB NOT NULL REFERENCES sync_sources (id) ON DELETE CASCADE,
    status       TEXT NOT NULL,
    manual       BOOLEAN NOT NULL,
    triggered_at INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    resumed      BOOLEAN NOT NULL,
    owner        TEXT,
    checkpoint   TEXT,
    counts       TEXT NOT NULL,
    error        TEXT,
    started_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX sync_runs_by_source ON sync_runs (tenant_id, source_id, id);

CREATE TABLE sync_records (
    id            BLOB PRIMARY KEY,
    tenant_id     BLOB NOT NULL REFERENCES tenants (id),
    source_id     BLOB NOT NULL REFERENCES sync_sources (id) ON DELETE CASCADE,
    record_type   TEXT NOT NULL,
    key           TEXT NOT NULL,
    data          TEXT NOT NULL,
    hash          TEXT NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    changed_at    INTEGER NOT NULL,
    removed_at    INTEGER,
    last_run_id   BLOB NOT NULL,
    UNIQUE (tenant_id, source_id, record_type, key)
);
CREATE INDEX sync_records_by_tenant ON sync_records (tenant_id, id);

CREATE TABLE sync_quarantine (
    id          BLOB PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id),
    source_id   BLOB NOT NULL REFERENCES sync_sources (id) ON DELETE CASCADE,
    run_id      BLOB NOT NULL,
    page        INTEGER NOT NULL,
    item_index  INTEGER NOT NULL,
    key         TEXT,
    reason      TEXT NOT NULL,
    excerpt     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (run_id, page, item_index)
);
CREATE INDEX sync_quarantine_by_source ON sync_quarantine (tenant_id, source_id, id);
