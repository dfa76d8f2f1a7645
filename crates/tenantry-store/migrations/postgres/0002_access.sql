-- tenantry 0002: tenant and device keys, devices, and row-level security on tenant data.

ALTER TABLE api_keys
    ADD COLUMN scopes JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN roles JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN rate_limit_per_minute INTEGER,
    ADD COLUMN device_id TEXT,
    ADD COLUMN rotated_to UUID;
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, id);

CREATE TABLE devices (
    id         UUID PRIMARY KEY,
    tenant_id  UUID NOT NULL REFERENCES tenants (id),
    device_id  TEXT NOT NULL,
    name       TEXT,
    metadata   JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT devices_tenant_device_key UNIQUE (tenant_id, device_id)
);

-- The application works through this role: neither superuser nor owner, so row-level security
-- applies to it. Creating it needs CREATEROLE; where the migrating user lacks it, a DBA creates it
-- (see docs/adr/0006) and FORCE ROW LEVEL SECURITY still binds the owner.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantry_app') THEN
        CREATE ROLE tenantry_app NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL; -- created concurrently by another database's migration
    WHEN insufficient_privilege THEN RAISE NOTICE 'cannot create role tenantry_app; row-level security relies on FORCE';
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT tenantry_app TO %I', current_user);
EXCEPTION
    WHEN OTHERS THEN RAISE NOTICE 'membership in tenantry_app not granted: %', SQLERRM;
END
$$;

DO $$
BEGIN
    GRANT USAGE ON SCHEMA public TO tenantry_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO tenantry_app;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tenantry_app;
EXCEPTION
    WHEN undefined_object OR insufficient_privilege THEN RAISE NOTICE 'tenantry_app grants skipped';
    WHEN unique_violation OR duplicate_object THEN NULL;
END
$$;

-- Tenant data is visible in a transaction that set tenantry.tenant_id to its tenant, or in the
-- platform's explicit system context. Without either setting, nothing is visible.
CREATE FUNCTION tenantry_may_see(row_tenant UUID) RETURNS BOOLEAN
    LANGUAGE sql STABLE AS $$
        SELECT current_setting('tenantry.scope', true) = 'system'
            OR row_tenant = NULLIF(current_setting('tenantry.tenant_id', true), '')::uuid
    $$;

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));

ALTER TABLE devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE devices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON devices USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));

ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON outbox USING (tenantry_may_see(tenant_id)) WITH CHECK (tenantry_may_see(tenant_id));
