-- People a host removed from a meeting: their user id is refused by it from then on.
CREATE TABLE meeting_removals (
    meeting_id TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    removed_by TEXT NOT NULL,
    removed_at TEXT NOT NULL,
    PRIMARY KEY (meeting_id, user_id)
);
