-- Sluice schema, version 1 (SQLite dialect).
-- Mirrors migrations/postgres/0001_init.sql. Timestamps are RFC 3339 text in UTC (they sort as they compare),
-- JSON is text, booleans are 0/1.

CREATE TABLE meetings (
    id                TEXT PRIMARY KEY,
    host_id           TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    ended_at          TEXT,
    settings_json     TEXT NOT NULL,
    recording_enabled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX meetings_host_id ON meetings (host_id, created_at);

CREATE TABLE participants (
    meeting_id    TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    joined_at     TEXT NOT NULL,
    left_at       TEXT,
    PRIMARY KEY (meeting_id, connection_id)
);
CREATE INDEX participants_active ON participants (meeting_id, left_at);
CREATE INDEX participants_user ON participants (user_id, joined_at);

CREATE TABLE recordings (
    id             TEXT PRIMARY KEY,
    meeting_id     TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    s3_key         TEXT,
    duration_ms    INTEGER,
    transcript_url TEXT,
    status         TEXT NOT NULL,
    status_reason  TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX recordings_meeting ON recordings (meeting_id, created_at);
CREATE INDEX recordings_status ON recordings (status);

CREATE TABLE analytics_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    meeting_id   TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    metrics_json TEXT NOT NULL,
    "timestamp"  TEXT NOT NULL
);
CREATE INDEX analytics_events_meeting ON analytics_events (meeting_id, "timestamp");
CREATE INDEX analytics_events_type ON analytics_events (event_type, "timestamp");

CREATE TABLE chat_messages (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    meeting_id     TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    user_id        TEXT NOT NULL,
    name           TEXT NOT NULL,
    body           TEXT NOT NULL,
    attachment_key TEXT,
    created_at     TEXT NOT NULL
);
CREATE INDEX chat_messages_meeting ON chat_messages (meeting_id, id);
