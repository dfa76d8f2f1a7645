-- tenantry 0005 (SQLite): one time encoding. 0001 and 0002 stored times as RFC 3339 text, 0003
-- (the job queue) as integer microseconds since the Unix epoch; every time is now integer
-- microseconds, so that one row decoder per record serves every table.
--
-- STRICT tables cannot change a column's type, so each table is rebuilt inside the migration's
-- transaction: its rows copied aside, the table dropped and created anew under the same name,
-- the converted rows inserted, the copy dropped. Other tables' foreign keys name the table, which
-- exists again before commit; `defer_foreign_keys` checks them at commit, once every parent row
-- is back. (A rename would not do: with foreign keys on, SQLite rewrites the other tables'
-- references to follow it.)
PRAGMA defer_foreign_keys = ON;

CREATE TABLE editions_0004 AS SELECT * FROM editions;
DROP TABLE editions;
CREATE TABLE editions (
    key         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    limits      TEXT NOT NULL,
    builtin     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
) STRICT;
INSERT INTO editions (key, name, description, limits, builtin, created_at)
SELECT key, name, description, limits, builtin, CASE WHEN created_at IS NULL THEN NULL ELSE unixepoch(substr(created_at, 1, 19)) * 1000000 + CASE WHEN substr(created_at, 20, 1) = '.' THEN CAST(substr(substr(created_at, 21, instr(substr(created_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END
FROM editions_0004;
DROP TABLE editions_0004;

CREATE TABLE tenants_0004 AS SELECT * FROM tenants;
DROP TABLE tenants;
CREATE TABLE tenants (
    id           BLOB PRIMARY KEY,
    slug         TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('provisioning', 'active', 'suspended', 'deleted')),
    edition      TEXT NOT NULL REFERENCES editions (key),
    region       TEXT,
    isolation    TEXT NOT NULL CHECK (isolation IN ('pooled', 'schema', 'database')),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    deleted_at   INTEGER,
    purge_after  INTEGER,
    deleted_from TEXT,
    version      INTEGER NOT NULL
) STRICT;
INSERT INTO tenants (id, slug, name, status, edition, region, isolation, created_at, updated_at, deleted_at, purge_after, deleted_from, version)
SELECT id, slug, name, status, edition, region, isolation, CASE WHEN created_at IS NULL THEN NULL ELSE unixepoch(substr(created_at, 1, 19)) * 1000000 + CASE WHEN substr(created_at, 20, 1) = '.' THEN CAST(substr(substr(created_at, 21, instr(substr(created_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END, CASE WHEN updated_at IS NULL THEN NULL ELSE unixepoch(substr(updated_at, 1, 19)) * 1000000 + CASE WHEN substr(updated_at, 20, 1) = '.' THEN CAST(substr(substr(updated_at, 21, instr(substr(updated_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END, CASE WHEN deleted_at IS NULL THEN NULL ELSE unixepoch(substr(deleted_at, 1, 19)) * 1000000 + CASE WHEN substr(deleted_at, 20, 1) = '.' THEN CAST(substr(substr(deleted_at, 21, instr(substr(deleted_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END, CASE WHEN purge_after IS NULL THEN NULL ELSE unixepoch(substr(purge_after, 1, 19)) * 1000000 + CASE WHEN substr(purge_after, 20, 1) = '.' THEN CAST(substr(substr(purge_after, 21, instr(substr(purge_after, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END, deleted_from, version
FROM tenants_0004;
DROP TABLE tenants_0004;
CREATE INDEX tenants_status_idx ON tenants (status, id);
CREATE INDEX tenants_edition_idx ON tenants (edition, id);

CREATE TABLE api_keys_0004 AS SELECT * FROM api_keys;
DROP TABLE api_keys;
CREATE TABLE api_keys (
    id                    BLOB PRIMARY KEY,
    kind                  TEXT NOT NULL CHECK (kind IN ('operator', 'tenant_secret', 'device')),
    lookup                TEXT NOT NULL UNIQUE,
    secret_hash           BLOB NOT NULL,
    name                  TEXT NOT NULL,
    tenant_id             BLOB REFERENCES tenants (id),
    created_at            INTEGER NOT NULL,
    expires_at            INTEGER,
    revoked_at            INTEGER,
    last_used_at          INTEGER,
    scopes                TEXT NOT NULL DEFAULT '[]',
    roles                 TEXT NOT NULL DEFAULT '[]',
    rate_limit_per_minute INTEGER,
    device_id             TEXT,
    rotated_to            BLOB
) STRICT;
INSERT INTO api_keys (id, kind, lookup, secret_hash, name, tenant_id, created_at, expires_at, revoked_at, last_used_at, scopes, roles, rate_limit_per_minute, device_id, rotated_to)
SELECT id, kind, lookup, secret_hash, name, tenant_id, CASE WHEN created_at IS NULL THEN NULL ELSE unixepoch(substr(created_at, 1, 19)) * 1000000 + CASE WHEN substr(created_at, 20, 1) = '.' THEN CAST(substr(substr(created_at, 21, instr(substr(created_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END, CASE WHEN expires_at IS NULL THEN NULL ELSE unixepoch(substr(expires_at, 1, 19)) * 1000000 + CASE WHEN substr(expires_at, 20, 1) = '.' THEN CAST(substr(substr(expires_at, 21, instr(substr(expires_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END, CASE WHEN revoked_at IS NULL THEN NULL ELSE unixepoch(substr(revoked_at, 1, 19)) * 1000000 + CASE WHEN substr(revoked_at, 20, 1) = '.' THEN CAST(substr(substr(revoked_at, 21, instr(substr(revoked_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END, CASE WHEN last_used_at IS NULL THEN NULL ELSE unixepoch(substr(last_used_at, 1, 19)) * 1000000 + CASE WHEN substr(last_used_at, 20, 1) = '.' THEN CAST(substr(substr(last_used_at, 21, instr(substr(last_used_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END, scopes, roles, rate_limit_per_minute, device_id, rotated_to
FROM api_keys_0004;
DROP TABLE api_keys_0004;
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, id);

CREATE TABLE devices_0004 AS SELECT * FROM devices;
DROP TABLE devices;
CREATE TABLE devices (
    id         BLOB PRIMARY KEY,
    tenant_id  BLOB NOT NULL REFERENCES tenants (id),
    device_id  TEXT NOT NULL,
    name       TEXT,
    metadata   TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    UNIQUE (tenant_id, device_id)
) STRICT;
INSERT INTO devices (id, tenant_id, device_id, name, metadata, created_at)
SELECT id, tenant_id, device_id, name, metadata, CASE WHEN created_at IS NULL THEN NULL ELSE unixepoch(substr(created_at, 1, 19)) * 1000000 + CASE WHEN substr(created_at, 20, 1) = '.' THEN CAST(substr(substr(created_at, 21, instr(substr(created_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END
FROM devices_0004;
DROP TABLE devices_0004;

CREATE TABLE audit_log_0004 AS SELECT * FROM audit_log;
DROP TABLE audit_log;
CREATE TABLE audit_log (
    id            BLOB PRIMARY KEY,
    occurred_at   INTEGER NOT NULL,
    actor_kind    TEXT NOT NULL,
    actor_id      TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    tenant_id     BLOB,
    trace_id      TEXT,
    details       TEXT NOT NULL
) STRICT;
INSERT INTO audit_log (id, occurred_at, actor_kind, actor_id, action, resource_type, resource_id, tenant_id, trace_id, details)
SELECT id, CASE WHEN occurred_at IS NULL THEN NULL ELSE unixepoch(substr(occurred_at, 1, 19)) * 1000000 + CASE WHEN substr(occurred_at, 20, 1) = '.' THEN CAST(substr(substr(occurred_at, 21, instr(substr(occurred_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END, actor_kind, actor_id, action, resource_type, resource_id, tenant_id, trace_id, details
FROM audit_log_0004;
DROP TABLE audit_log_0004;
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);

CREATE TABLE outbox_0004 AS SELECT * FROM outbox;
DROP TABLE outbox;
CREATE TABLE outbox (
    id             BLOB PRIMARY KEY,
    event_type     TEXT NOT NULL,
    source         TEXT NOT NULL,
    time           INTEGER NOT NULL,
    tenant_id      BLOB,
    edition        TEXT,
    trace_id       TEXT,
    schema_version INTEGER NOT NULL,
    key            TEXT NOT NULL,
    data           TEXT NOT NULL,
    dispatched_at  INTEGER
) STRICT;
INSERT INTO outbox (id, event_type, source, time, tenant_id, edition, trace_id, schema_version, key, data, dispatched_at)
SELECT id, event_type, source, CASE WHEN time IS NULL THEN NULL ELSE unixepoch(substr(time, 1, 19)) * 1000000 + CASE WHEN substr(time, 20, 1) = '.' THEN CAST(substr(substr(time, 21, instr(substr(time, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END, tenant_id, edition, trace_id, schema_version, key, data, CASE WHEN dispatched_at IS NULL THEN NULL ELSE unixepoch(substr(dispatched_at, 1, 19)) * 1000000 + CASE WHEN substr(dispatched_at, 20, 1) = '.' THEN CAST(substr(substr(dispatched_at, 21, instr(substr(dispatched_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END
FROM outbox_0004;
DROP TABLE outbox_0004;
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE dispatched_at IS NULL;

CREATE TABLE idempotency_keys_0004 AS SELECT * FROM idempotency_keys;
DROP TABLE idempotency_keys;
CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER NOT NULL,
    headers      TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT;
INSERT INTO idempotency_keys (scope, key, request_hash, status, headers, body, created_at, expires_at)
SELECT scope, key, request_hash, status, headers, body, CASE WHEN created_at IS NULL THEN NULL ELSE unixepoch(substr(created_at, 1, 19)) * 1000000 + CASE WHEN substr(created_at, 20, 1) = '.' THEN CAST(substr(substr(created_at, 21, instr(substr(created_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END, CASE WHEN expires_at IS NULL THEN NULL ELSE unixepoch(substr(expires_at, 1, 19)) * 1000000 + CASE WHEN substr(expires_at, 20, 1) = '.' THEN CAST(substr(substr(expires_at, 21, instr(substr(expires_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END
FROM idempotency_keys_0004;
DROP TABLE idempotency_keys_0004;
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);

