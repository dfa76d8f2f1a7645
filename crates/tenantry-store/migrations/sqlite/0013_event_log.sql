-- tenantry 0013: the event log (issue 14, ADR 0023). An outbox event enters the log when the
-- sequencer gives it its position `seq` (contiguous, handed out after commit, under the one
-- writer). Named readers (the relay) keep their position in `event_cursors`.

ALTER TABLE outbox ADD COLUMN seq INTEGER;
CREATE UNIQUE INDEX outbox_seq_idx ON outbox (seq);
CREATE INDEX outbox_unsequenced_idx ON outbox (id) WHERE seq IS NULL;
CREATE INDEX outbox_tenant_log_idx ON outbox (tenant_id, seq) WHERE seq IS NOT NULL;
DROP INDEX IF EXISTS outbox_pending_idx;

CREATE TABLE event_cursors (
    name       TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
INSERT INTO event_cursors (name, position, updated_at) VALUES ('log_head', 0, 0);
