-- Chat as a durable log: who a message is for, where it was said, edits and deletions, shared files, polls.
ALTER TABLE chat_messages DROP COLUMN attachment_key;
ALTER TABLE chat_messages ADD COLUMN participant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE chat_messages ADD COLUMN role TEXT NOT NULL DEFAULT 'participant';
-- The breakout room it was said in; 'main' for the meeting's main room.
ALTER TABLE chat_messages ADD COLUMN room TEXT NOT NULL DEFAULT 'main';
-- A private message's recipient (user id, and their participant id and name when it was sent).
ALTER TABLE chat_messages ADD COLUMN recipient_user_id TEXT;
ALTER TABLE chat_messages ADD COLUMN recipient_participant_id TEXT;
ALTER TABLE chat_messages ADD COLUMN recipient_name TEXT;
ALTER TABLE chat_messages ADD COLUMN to_hosts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chat_messages ADD COLUMN file_id TEXT;
ALTER TABLE chat_messages ADD COLUMN edited_at TEXT;
ALTER TABLE chat_messages ADD COLUMN deleted_at TEXT;
ALTER TABLE chat_messages ADD COLUMN deleted_by TEXT;

-- Finding a file's message (the files list, a download link).
CREATE INDEX chat_messages_file ON chat_messages (file_id) WHERE file_id IS NOT NULL;

CREATE TABLE chat_files (
    id           TEXT PRIMARY KEY,
    meeting_id   TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    object_key   TEXT NOT NULL,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    user_id      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    deleted_at   TEXT
);
CREATE INDEX chat_files_meeting ON chat_files (meeting_id, created_at);
CREATE INDEX chat_files_expiry ON chat_files (expires_at) WHERE deleted_at IS NULL;

CREATE TABLE polls (
    id           TEXT PRIMARY KEY,
    meeting_id   TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    room         TEXT NOT NULL,
    question     TEXT NOT NULL,
    options_json TEXT NOT NULL,
    anonymous    INTEGER NOT NULL,
    results      TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    closed_at    TEXT
);
CREATE INDEX polls_meeting ON polls (meeting_id, created_at);

CREATE TABLE poll_votes (
    poll_id  TEXT NOT NULL REFERENCES polls (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL,
    name     TEXT NOT NULL,
    choice   INTEGER NOT NULL,
    voted_at TEXT NOT NULL,
    PRIMARY KEY (poll_id, user_id)
);
