-- tenantry 0005 (PostgreSQL): nothing to change. On SQLite this version stores every time as
-- integer microseconds (0001 and 0002 had RFC 3339 text); PostgreSQL stores timestamptz
-- throughout. The version exists here so that both backends' schema versions name the same steps.
SELECT 1;
