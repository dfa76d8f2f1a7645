-- tenantry 0011: telemetry retention (issue 12). Per tenant: a legal hold (retention skips the
-- tenant) and whether expired events are archived first (NULL: the edition's default).
CREATE TABLE telemetry_tenant_settings (
    tenant_id  BLOB PRIMARY KEY REFERENCES tenants (id),
    legal_hold INTEGER NOT NULL DEFAULT 0,
    archive    INTEGER,
    updated_at INTEGER NOT NULL
);
