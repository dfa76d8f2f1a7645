-- tenantry 0007: secrets the platform makes for itself and every instance shares (the key that
-- seals pagination cursors), created on first use. Platform data: no row-level security.
CREATE TABLE platform_secrets (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

DO $$
BEGIN
    GRANT SELECT, INSERT, UPDATE, DELETE ON platform_secrets TO tenantry_app;
EXCEPTION
    WHEN undefined_object OR insufficient_privilege THEN RAISE NOTICE 'tenantry_app grants skipped';
END
$$;
