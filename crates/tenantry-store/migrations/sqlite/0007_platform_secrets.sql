-- tenantry 0007: secrets the platform makes for itself and every instance shares (the key that
-- seals pagination cursors), created on first use.
CREATE TABLE platform_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
