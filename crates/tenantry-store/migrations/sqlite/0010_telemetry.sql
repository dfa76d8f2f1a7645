-- tenantry 0010: device telemetry (ADR 0017). One table: (tenant, event_id) is its key, which
-- makes a retried event a duplicate; `rowid` orders events of the same instant stably.
-- Times are integer microseconds, as everywhere on SQLite.
CREATE TABLE telemetry_events (
    tenant_id   BLOB NOT NULL,
    event_id    TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    type        TEXT NOT NULL,
    value       REAL,
    "values"    TEXT NOT NULL DEFAULT '{}',
    payload     TEXT,
    recorded_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (tenant_id, event_id)
);
CREATE INDEX telemetry_events_device_idx ON telemetry_events (tenant_id, device_id, recorded_at);
