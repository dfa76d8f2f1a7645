-- tenantry 0004 (SQLite): nothing to change.
-- On PostgreSQL this version adds the lease-owner CHECK that keeps the planner off a bloated
-- index, and the capped claim function. Neither applies to SQLite: its claims run inside its
-- single writer, which counts each tenant's running jobs itself. The version exists here so that
-- both backends' schema versions name the same steps.
SELECT 1;
