-- tenantry 0001: editions, tenants, API keys, audit log, outbox, idempotency keys.
-- UUIDs are 16-byte BLOBs (byte order = UUIDv7 time order); times are RFC 3339 TEXT in UTC.

CREATE TABLE editions (
    key         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    limits      TEXT NOT NULL,
    builtin     INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
) STRICT;

CREATE TABLE tenants (
    id           BLOB PRIMARY KEY,
    slug         TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('provisioning', 'active', 'suspended', 'deleted')),
    edition      TEXT NOT NULL REFERENCES editions (key),
    region       TEXT,
    isolation    TEXT NOT NULL CHECK (isolation IN ('pooled', 'schema', 'database')),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    deleted_at   TEXT,
    purge_after  TEXT,
    deleted_from TEXT,
    version      INTEGER NOT NULL
) STRICT;
CREATE INDEX tenants_status_idx ON tenants (status, id);
CREATE INDEX tenants_edition_idx ON tenants (edition, id);

CREATE TABLE api_keys (
    id           BLOB PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('operator', 'tenant_secret', 'device')),
    lookup       TEXT NOT NULL UNIQUE,
    secret_hash  BLOB NOT NULL,
    name         TEXT NOT NULL,
    tenant_id    BLOB REFERENCES tenants (id),
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT
) STRICT;

CREATE TABLE audit_log (
    id            BLOB PRIMARY KEY,
    occurred_at   TEXT NOT NULL,
    actor_kind    TEXT NOT NULL,
    actor_id      TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    tenant_id     BLOB,
    trace_id      TEXT,
    details       TEXT NOT NULL
) STRICT;
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);

CREATE TABLE outbox (
    id             BLOB PRIMARY KEY,
    event_type     TEXT NOT NULL,
    source         TEXT NOT NULL,
    time           TEXT NOT NULL,
    tenant_id      BLOB,
    edition        TEXT,
    trace_id       TEXT,
    schema_version INTEGER NOT NULL,
    key            TEXT NOT NULL,
    data           TEXT NOT NULL,
    dispatched_at  TEXT
) STRICT;
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE dispatched_at IS NULL;

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER NOT NULL,
    headers      TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT;
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);
