-- tenantry 0014: webhooks (issue 15, ADR 0024). A tenant's subscriptions (their signing secrets
-- sealed by the service), the messages fanned out to them from the event log (one per
-- subscription and event: the pair is the fan-out's inbox key), and each delivery attempt.

CREATE TABLE webhook_subscriptions (
    id                    UUID PRIMARY KEY,
    tenant_id             UUID NOT NULL REFERENCES tenants (id),
    url                   TEXT NOT NULL,
    event_types           JSONB NOT NULL,
    filter                TEXT,
    description           TEXT,
    enabled               BOOLEAN NOT NULL,
    disabled_reason       TEXT,
    policy                JSONB NOT NULL,
    rate_limit_per_minute INTEGER,
    ordering              TEXT NOT NULL,
    secrets               JSONB NOT NULL,
    failing_since         TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_subscriptions_by_tenant ON webhook_subscriptions (tenant_id, id);

CREATE TABLE webhook_messages (
    id              UUID PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants (id),
    subscription_id UUID NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_id        UUID NOT NULL,
    event_seq       BIGINT NOT NULL,
    event_type      TEXT NOT NULL,
    partition_key   TEXT NOT NULL,
    body            TEXT NOT NULL,
    trace_parent    TEXT,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    first_attempt_at TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhook_messages_due ON webhook_messages (subscription_id, next_attempt_at, event_seq) WHERE status = 'pending';
CREATE INDEX webhook_messages_keyed ON webhook_messages (subscription_id, partition_key, event_seq) WHERE status = 'pending';
CREATE INDEX webhook_messages_by_tenant ON webhook_messages (tenant_id, subscription_id, created_at);

-- Like the job queue: every message is claimed (its next attempt moved to the lease) and then
-- settled, two non-HOT updates; dead entries in the pending index slow the next claims. Vacuum
-- and analyze it often.
ALTER TABLE webhook_messages SET (
    autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000,
    autovacuum_analyze_scale_factor = 0.0, autovacuum_analyze_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);

CREATE TABLE webhook_attempts (
    id              UUID PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants (id),
    subscription_id UUID NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    message_id      UUID NOT NULL,
    event_type      TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    outcome         TEXT NOT NULL,
    status_code     INTEGER,
    latency_ms      INTEGER NOT NULL,
    response        TEXT,
    error           TEXT,
    at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_attempts_by_tenant ON webhook_attempts (tenant_id, id);
CREATE INDEX webhook_attempts_by_time ON webhook_attempts (at);

ALTER TABLE webhook_subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_subscriptions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_subscriptions USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));
ALTER TABLE webhook_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_messages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_messages USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));
ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_attempts USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));

DO $$
BEGIN
    GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_subscriptions, webhook_messages, webhook_attempts TO tenantry_app;
EXCEPTION
    WHEN undefined_object OR insufficient_privilege THEN RAISE NOTICE 'tenantry_app grants skipped';
END
$$;
