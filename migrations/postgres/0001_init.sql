-- Sluice schema, version 1 (PostgreSQL dialect).
-- Mirrors migrations/sqlite/0001_init.sql; the Store test suite runs the same queries against both.

CREATE TABLE meetings (
    id                TEXT PRIMARY KEY,
    host_id           TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    ended_at          TIMESTAMPTZ,
    settings_json     JSONB NOT NULL,
    recording_enabled BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX meetings_host_id ON meetings (host_id, created_at);

CREATE TABLE participants (
    meeting_id    TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    joined_at     TIMESTAMPTZ NOT NULL,
    left_at       TIMESTAMPTZ,
    PRIMARY KEY (meeting_id, connection_id)
);
-- "who is in this meeting now" and "when was this user here"
CREATE INDEX participants_active ON participants (meeting_id, left_at);
CREATE INDEX participants_user ON participants (user_id, joined_at);

CREATE TABLE recordings (
    id             TEXT PRIMARY KEY,
    meeting_id     TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    s3_key         TEXT,
    duration_ms    BIGINT,
    transcript_url TEXT,
    status         TEXT NOT NULL,
    status_reason  TEXT,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX recordings_meeting ON recordings (meeting_id, created_at);
-- the recorder resumes unfinished recordings at start-up
CREATE INDEX recordings_status ON recordings (status);

CREATE TABLE analytics_events (
    id           BIGSERIAL PRIMARY KEY,
    meeting_id   TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    metrics_json JSONB NOT NULL,
    "timestamp"  TIMESTAMPTZ NOT NULL
);
CREATE INDEX analytics_events_meeting ON analytics_events (meeting_id, "timestamp");
CREATE INDEX analytics_events_type ON analytics_events (event_type, "timestamp");

CREATE TABLE chat_messages (
    id             BIGSERIAL PRIMARY KEY,
    meeting_id     TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    user_id        TEXT NOT NULL,
    name           TEXT NOT NULL,
    body           TEXT NOT NULL,
    attachment_key TEXT,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX chat_messages_meeting ON chat_messages (meeting_id, id);
