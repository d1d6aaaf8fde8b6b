-- Sessions idle past session_idle_timeout are found by when they were last seen: without this index the
-- once-a-minute purge reads the whole table (0.6 s at a million sessions, holding SQLite's write lock).
CREATE INDEX sessions_last_seen ON sessions (last_seen_at);
