-- tenantry 0013: the event log (issue 14, ADR 0023). An outbox event enters the log when the
-- sequencer gives it its position `seq` (contiguous, handed out after commit, one sequencer at a
-- time: the `log_head` row below is its lock). Named readers (the relay) keep their position in
-- `event_cursors`. Published events are pruned after their tenant's edition's retention.

ALTER TABLE outbox ADD COLUMN seq BIGINT;
CREATE UNIQUE INDEX outbox_seq_idx ON outbox (seq);
CREATE INDEX outbox_unsequenced_idx ON outbox (id) WHERE seq IS NULL;
CREATE INDEX outbox_tenant_log_idx ON outbox (tenant_id, seq) WHERE seq IS NOT NULL;
DROP INDEX IF EXISTS outbox_pending_idx;

CREATE TABLE event_cursors (
    name       TEXT PRIMARY KEY,
    position   BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
INSERT INTO event_cursors (name, position, updated_at) VALUES ('log_head', 0, now());

DO $$
BEGIN
    GRANT SELECT, INSERT, UPDATE, DELETE ON event_cursors TO tenantry_app;
EXCEPTION
    WHEN undefined_object OR insufficient_privilege THEN RAISE NOTICE 'tenantry_app grants skipped';
END
$$;
