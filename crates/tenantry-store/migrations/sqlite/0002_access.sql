-- tenantry 0002: tenant and device keys, devices. (SQLite has no row-level security: tenant
-- isolation is the TenantScope filter in every tenant query.)

ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN roles TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN rate_limit_per_minute INTEGER;
ALTER TABLE api_keys ADD COLUMN device_id TEXT;
ALTER TABLE api_keys ADD COLUMN rotated_to BLOB;
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, id);

CREATE TABLE devices (
    id         BLOB PRIMARY KEY,
    tenant_id  BLOB NOT NULL REFERENCES tenants (id),
    device_id  TEXT NOT NULL,
    name       TEXT,
    metadata   TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    UNIQUE (tenant_id, device_id)
) STRICT;
