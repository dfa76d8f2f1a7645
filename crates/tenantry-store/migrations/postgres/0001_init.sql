-- tenantry 0001: editions, tenants, API keys, audit log, outbox, idempotency keys.

CREATE TABLE editions (
    key         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    limits      JSONB NOT NULL,
    builtin     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE tenants (
    id           UUID PRIMARY KEY,
    slug         TEXT NOT NULL CONSTRAINT tenants_slug_key UNIQUE,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('provisioning', 'active', 'suspended', 'deleted')),
    edition      TEXT NOT NULL REFERENCES editions (key),
    region       TEXT,
    isolation    TEXT NOT NULL CHECK (isolation IN ('pooled', 'schema', 'database')),
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    deleted_at   TIMESTAMPTZ,
    purge_after  TIMESTAMPTZ,
    deleted_from TEXT,
    version      BIGINT NOT NULL
);
CREATE INDEX tenants_status_idx ON tenants (status, id);
CREATE INDEX tenants_edition_idx ON tenants (edition, id);

CREATE TABLE api_keys (
    id           UUID PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('operator', 'tenant_secret', 'device')),
    lookup       TEXT NOT NULL CONSTRAINT api_keys_lookup_key UNIQUE,
    secret_hash  BYTEA NOT NULL,
    name         TEXT NOT NULL,
    tenant_id    UUID REFERENCES tenants (id),
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);

-- Append-only. tenant_id has no foreign key: audit outlives the tenant it speaks of.
CREATE TABLE audit_log (
    id            UUID PRIMARY KEY,
    occurred_at   TIMESTAMPTZ NOT NULL,
    actor_kind    TEXT NOT NULL,
    actor_id      TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    tenant_id     UUID,
    trace_id      TEXT,
    details       JSONB NOT NULL
);
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);

CREATE TABLE outbox (
    id             UUID PRIMARY KEY,
    event_type     TEXT NOT NULL,
    source         TEXT NOT NULL,
    time           TIMESTAMPTZ NOT NULL,
    tenant_id      UUID,
    edition        TEXT,
    trace_id       TEXT,
    schema_version INTEGER NOT NULL,
    key            TEXT NOT NULL,
    data           JSONB NOT NULL,
    dispatched_at  TIMESTAMPTZ
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE dispatched_at IS NULL;

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER NOT NULL,
    headers      JSONB NOT NULL,
    body         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);
