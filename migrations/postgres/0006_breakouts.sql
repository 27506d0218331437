-- Breakout rooms and who is assigned to which (by user id, so people can be assigned before they join).
CREATE TABLE breakout_rooms (
    meeting_id TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    position   INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (meeting_id, id)
);

CREATE TABLE breakout_assignments (
    meeting_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    PRIMARY KEY (meeting_id, user_id),
    FOREIGN KEY (meeting_id, room_id) REFERENCES breakout_rooms (meeting_id, id) ON DELETE CASCADE
);
