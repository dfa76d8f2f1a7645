-- tenantry 0011: telemetry retention (issue 12). Per tenant: a legal hold (retention skips the
-- tenant) and whether expired events are archived first (NULL: the edition's default). A month
-- partition emptied by retention is dropped by `tenantry_telemetry_drop_partition`.

CREATE TABLE telemetry_tenant_settings (
    tenant_id  UUID PRIMARY KEY REFERENCES tenants (id),
    legal_hold BOOLEAN NOT NULL DEFAULT false,
    archive    BOOLEAN,
    updated_at TIMESTAMPTZ NOT NULL
);

-- Drops the month's partition if it exists and holds no row (of any tenant). Runs with the
-- rights of the migrating owner, like tenantry_telemetry_partition. True when dropped.
CREATE FUNCTION tenantry_telemetry_drop_partition(p_month DATE) RETURNS BOOLEAN
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    name TEXT := format('telemetry_events_%s', to_char(date_trunc('month', p_month), 'YYYY_MM'));
    found BOOLEAN;
BEGIN
    IF to_regclass(name) IS NULL THEN
        RETURN false;
    END IF;
    -- the owner sees every tenant's rows here (a system scope for the policy)
    PERFORM set_config('tenantry.scope', 'system', true);
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I)', name) INTO found;
    IF found THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE %I', name);
    RETURN true;
END
$$;

DO $$
BEGIN
    GRANT SELECT, INSERT, UPDATE, DELETE ON telemetry_tenant_settings TO tenantry_app;
EXCEPTION
    WHEN undefined_object OR insufficient_privilege THEN RAISE NOTICE 'tenantry_app grants skipped';
END
$$;
