-- tenantry 0014: webhooks (issue 15). See the PostgreSQL migration of the same version; times
-- are integer microseconds since the epoch, UUIDs blobs, JSON text.

CREATE TABLE webhook_subscriptions (
    id                    BLOB PRIMARY KEY,
    tenant_id             BLOB NOT NULL REFERENCES tenants (id),
    url                   TEXT NOT NULL,
    event_types           TEXT NOT NULL,
    filter                TEXT,
    description           TEXT,
    enabled               BOOLEAN NOT NULL,
    disabled_reason       TEXT,
    policy                TEXT NOT NULL,
    rate_limit_per_minute INTEGER,
    ordering              TEXT NOT NULL,
    secrets               TEXT NOT NULL,
    failing_since         INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
CREATE INDEX webhook_subscriptions_by_tenant ON webhook_subscriptions (tenant_id, id);

CREATE TABLE webhook_messages (
    id              BLOB PRIMARY KEY,
    tenant_id       BLOB NOT NULL REFERENCES tenants (id),
    subscription_id BLOB NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_id        BLOB NOT NULL,
    event_seq       INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    partition_key   TEXT NOT NULL,
    body            TEXT NOT NULL,
    trace_parent    TEXT,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    first_attempt_at INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhook_messages_due ON webhook_messages (subscription_id, next_attempt_at, event_seq) WHERE status = 'pending';
CREATE INDEX webhook_messages_keyed ON webhook_messages (subscription_id, partition_key, event_seq) WHERE status = 'pending';
CREATE INDEX webhook_messages_by_tenant ON webhook_messages (tenant_id, subscription_id, created_at);

CREATE TABLE webhook_attempts (
    id              BLOB PRIMARY KEY,
    tenant_id       BLOB NOT NULL REFERENCES tenants (id),
    subscription_id BLOB NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    message_id      BLOB NOT NULL,
    event_type      TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    outcome         TEXT NOT NULL,
    status_code     INTEGER,
    latency_ms      INTEGER NOT NULL,
    response        TEXT,
    error           TEXT,
    at              INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_by_tenant ON webhook_attempts (tenant_id, id);
CREATE INDEX webhook_attempts_by_time ON webhook_attempts (at);
