-- A tamper-evident audit trail: each event carries a MAC (under the server key) over its content and the previous
-- event's MAC. Pruning old events records where the kept chain starts, MAC'd too, so a pruned trail still verifies.

ALTER TABLE audit_events ADD COLUMN prev_mac BLOB;
ALTER TABLE audit_events ADD COLUMN mac BLOB;
CREATE INDEX audit_events_at ON audit_events (at_ms);

CREATE TABLE audit_anchor (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_id  INTEGER NOT NULL,
    last_mac BLOB    NOT NULL,
    mac      BLOB    NOT NULL
);
