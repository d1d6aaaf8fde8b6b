-- A tamper-evident audit trail: each event carries a MAC (under the server key) over its content and the previous
-- event's MAC. Pruning old events records where the kept chain starts, MAC'd too, so a pruned trail still verifies.

ALTER TABLE audit_events ADD COLUMN prev_mac BYTEA;
ALTER TABLE audit_events ADD COLUMN mac BYTEA;
CREATE INDEX audit_events_at ON audit_events (at_ms);

CREATE TABLE audit_anchor (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    last_id  BIGINT NOT NULL,
    last_mac BYTEA  NOT NULL,
    mac      BYTEA  NOT NULL
);
