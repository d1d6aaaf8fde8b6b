-- The audit chain covers a sequence number: events are numbered 1, 2, 3, ... across all instances, and each new
-- event's MAC covers its number (mac_version 2), so a deleted event leaves a gap that renumbering cannot hide. Events
-- written before this migration keep their MAC (mac_version 1, number not covered) and are numbered in id order,
-- after whatever was pruned before. Pruning works by number: the anchor records the last pruned number.

ALTER TABLE audit_events ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_events ADD COLUMN mac_version INTEGER NOT NULL DEFAULT 1;
UPDATE audit_events SET seq = numbered.seq
FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS seq FROM audit_events) AS numbered
WHERE audit_events.id = numbered.id;
CREATE UNIQUE INDEX audit_events_seq ON audit_events (seq);

-- A version 1 anchor's MAC covers (last_id, last_mac); a version 2 anchor's covers (last_seq, last_at_ms, last_mac).
ALTER TABLE audit_anchor ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_anchor ADD COLUMN last_at_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_anchor ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
