-- tenantry 0010: device telemetry (ADR 0017).
--
-- Events are partitioned by month of `recorded_at`, so retention drops whole partitions. A
-- partitioned table cannot hold a unique index without its partition key, and idempotency is per
-- (tenant, event_id) whatever the time: the ids live in `telemetry_event_ids`, written in the
-- same statement as the events (an id taken without its event would drop a retried event).
-- `seq` orders events of the same instant stably (pagination) and never repeats.

CREATE SEQUENCE telemetry_event_seq;

CREATE TABLE telemetry_events (
    tenant_id   UUID NOT NULL,
    seq         BIGINT NOT NULL DEFAULT nextval('telemetry_event_seq'),
    event_id    TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    type        TEXT NOT NULL,
    value       DOUBLE PRECISION,
    "values"    JSONB NOT NULL DEFAULT '{}',
    payload     JSONB,
    recorded_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
) PARTITION BY RANGE (recorded_at);

CREATE INDEX telemetry_events_device_idx ON telemetry_events (tenant_id, device_id, recorded_at, seq);

CREATE TABLE telemetry_event_ids (
    tenant_id   UUID NOT NULL,
    event_id    TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX telemetry_event_ids_time_idx ON telemetry_event_ids (recorded_at);

-- One month's partition (idempotent; safe when replicas race). It runs with the rights of the
-- migrating owner, so that the application role, which may not create tables, can call it.
CREATE FUNCTION tenantry_telemetry_partition(p_month DATE) RETURNS VOID
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    first DATE := date_trunc('month', p_month)::date;
    name TEXT := format('telemetry_events_%s', to_char(first, 'YYYY_MM'));
BEGIN
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF telemetry_events FOR VALUES FROM (%L) TO (%L)',
                   name, first::timestamp AT TIME ZONE 'UTC', (first + interval '1 month')::timestamp AT TIME ZONE 'UTC');
EXCEPTION
    WHEN duplicate_table OR unique_violation THEN NULL;
END
$$;

-- A year back and three months ahead; the housekeeping keeps creating them ahead.
SELECT tenantry_telemetry_partition((date_trunc('month', now() AT TIME ZONE 'UTC') + m * interval '1 month')::date)
FROM generate_series(-12, 3) AS m;

ALTER TABLE telemetry_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE telemetry_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON telemetry_events USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));
ALTER TABLE telemetry_event_ids ENABLE ROW LEVEL SECURITY;
ALTER TABLE telemetry_event_ids FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON telemetry_event_ids USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));

DO $$
BEGIN
    GRANT SELECT, INSERT, UPDATE, DELETE ON telemetry_events, telemetry_event_ids TO tenantry_app;
    GRANT USAGE ON SEQUENCE telemetry_event_seq TO tenantry_app;
EXCEPTION
    WHEN undefined_object OR insufficient_privilege THEN RAISE NOTICE 'tenantry_app grants skipped';
END
$$;
