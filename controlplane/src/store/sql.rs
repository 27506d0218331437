//! SQL text shared by both backends. Placeholders are `$1..$n`, each first used in ascending order: PostgreSQL
//! reads them as positions, and SQLite numbers named parameters in order of first appearance, so the same
//! binding order works for both. Column order here is the order the backends' row readers expect.

pub const PING: &str = "SELECT 1";

pub const MEETING_INSERT: &str = "INSERT INTO meetings (id, host_id, created_at, ended_at, settings_json, recording_enabled) \
     VALUES ($1, $2, $3, $4, $5, $6)";
pub const MEETING_BY_ID: &str = "SELECT id, host_id, created_at, ended_at, settings_json, recording_enabled \
     FROM meetings WHERE id = $1";
pub const MEETING_END: &str = "UPDATE meetings SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL";
pub const MEETING_SET_RECORDING: &str = "UPDATE meetings SET recording_enabled = $1 WHERE id = $2";

pub const PARTICIPANT_INSERT: &str = "INSERT INTO participants \
     (meeting_id, connection_id, user_id, name, role, joined_at, left_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub const PARTICIPANT_LEFT: &str = "UPDATE participants SET left_at = $1 \
     WHERE meeting_id = $2 AND connection_id = $3 AND left_at IS NULL";
pub const PARTICIPANTS_ALL_LEFT: &str =
    "UPDATE participants SET left_at = $1 WHERE meeting_id = $2 AND left_at IS NULL";
pub const PARTICIPANTS_OF_MEETING: &str = "SELECT meeting_id, connection_id, user_id, name, role, joined_at, left_at \
     FROM participants WHERE meeting_id = $1 ORDER BY joined_at, connection_id";
pub const PARTICIPANTS_ACTIVE: &str = "SELECT meeting_id, connection_id, user_id, name, role, joined_at, left_at \
     FROM participants WHERE meeting_id = $1 AND left_at IS NULL ORDER BY joined_at, connection_id";

pub const RECORDING_INSERT: &str = "INSERT INTO recordings (id, meeting_id, s3_key, duration_ms, transcript_url, \
     status, status_reason, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const RECORDING_SELECT: &str = "SELECT id, meeting_id, s3_key, duration_ms, transcript_url, status, status_reason, \
     created_at, updated_at FROM recordings";
pub fn recording_by_id() -> String {
    format!("{RECORDING_SELECT} WHERE id = $1")
}
pub fn recordings_of_meeting() -> String {
    format!("{RECORDING_SELECT} WHERE meeting_id = $1 ORDER BY created_at DESC, id DESC")
}
pub fn recordings_with_status() -> String {
    format!("{RECORDING_SELECT} WHERE status = $1 ORDER BY created_at, id")
}
/// `COALESCE` keeps a column when its parameter is NULL, so one statement serves every partial update.
pub const RECORDING_UPDATE: &str = "UPDATE recordings SET \
     status = COALESCE($1, status), status_reason = COALESCE($2, status_reason), s3_key = COALESCE($3, s3_key), \
     duration_ms = COALESCE($4, duration_ms), transcript_url = COALESCE($5, transcript_url), updated_at = $6 \
     WHERE id = $7";

pub const ANALYTICS_INSERT: &str = "INSERT INTO analytics_events (meeting_id, user_id, event_type, metrics_json, \"timestamp\") \
     VALUES ($1, $2, $3, $4, $5)";
pub const ANALYTICS_BETWEEN: &str = "SELECT meeting_id, user_id, event_type, metrics_json, \"timestamp\" \
     FROM analytics_events WHERE \"timestamp\" >= $1 AND \"timestamp\" < $2 ORDER BY \"timestamp\", id LIMIT $3";
pub const ANALYTICS_DELETE_BEFORE: &str = "DELETE FROM analytics_events WHERE \"timestamp\" < $1";
pub const ANALYTICS_OF_MEETING: &str = "SELECT meeting_id, user_id, event_type, metrics_json, \"timestamp\" \
     FROM analytics_events WHERE meeting_id = $1 ORDER BY \"timestamp\", id LIMIT $2";

pub const CHAT_INSERT: &str = "INSERT INTO chat_messages (meeting_id, room, user_id, participant_id, name, role, body, \
     recipient_user_id, recipient_participant_id, recipient_name, to_hosts, file_id, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id";
/// Messages with their file (unless deleted): columns 0-14 the message, 15-24 the file (NULLs when none).
const CHAT_SELECT: &str = "SELECT m.id, m.meeting_id, m.room, m.user_id, m.participant_id, m.name, m.role, m.body, \
     m.recipient_user_id, m.recipient_participant_id, m.recipient_name, m.to_hosts, m.created_at, m.edited_at, \
     m.deleted_at, f.id, f.meeting_id, f.object_key, f.name, f.content_type, f.size, f.user_id, f.created_at, \
     f.expires_at, f.deleted_at \
     FROM chat_messages m LEFT JOIN chat_files f ON f.id = m.file_id AND f.deleted_at IS NULL";
pub fn chat_by_id() -> String {
    format!("{CHAT_SELECT} WHERE m.id = $1")
}
/// A viewer's page: public messages, their own, those to them, and those to the hosts when they are one.
pub fn chat_history() -> String {
    format!(
        "{CHAT_SELECT} WHERE m.meeting_id = $1 AND m.room = $2 AND m.deleted_at IS NULL AND m.id < $3 \
         AND ((m.recipient_user_id IS NULL AND m.to_hosts = FALSE) OR m.user_id = $4 OR m.recipient_user_id = $4 \
         OR (m.to_hosts AND $5)) ORDER BY m.id DESC LIMIT $6"
    )
}
/// Public messages said between two times, for the recording's export.
pub fn chat_public_between() -> String {
    format!(
        "{CHAT_SELECT} WHERE m.meeting_id = $1 AND m.recipient_user_id IS NULL AND m.to_hosts = FALSE \
         AND m.deleted_at IS NULL AND m.created_at >= $2 AND m.created_at <= $3 ORDER BY m.id LIMIT $4"
    )
}
pub const CHAT_EDIT: &str = "UPDATE chat_messages SET body = $1, edited_at = $2 WHERE id = $3 AND deleted_at IS NULL";
pub const CHAT_DELETE: &str =
    "UPDATE chat_messages SET deleted_at = $1, deleted_by = $2 WHERE id = $3 AND deleted_at IS NULL";

pub const CHAT_FILE_INSERT: &str = "INSERT INTO chat_files (id, meeting_id, object_key, name, content_type, size, \
     user_id, created_at, expires_at, deleted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const CHAT_FILE_SELECT: &str = "SELECT id, meeting_id, object_key, name, content_type, size, user_id, created_at, \
     expires_at, deleted_at FROM chat_files";
pub fn chat_file_by_id() -> String {
    format!("{CHAT_FILE_SELECT} WHERE id = $1")
}
/// A meeting's files that are not deleted, each with the id of the message that shared it (last column).
pub const CHAT_FILES_OF_MEETING: &str = "SELECT f.id, f.meeting_id, f.object_key, f.name, f.content_type, f.size, \
     f.user_id, f.created_at, f.expires_at, f.deleted_at, m.id FROM chat_files f \
     JOIN chat_messages m ON m.file_id = f.id AND m.deleted_at IS NULL \
     WHERE f.meeting_id = $1 AND f.deleted_at IS NULL ORDER BY f.created_at, f.id";
pub fn chat_files_expired() -> String {
    format!(
        "{CHAT_FILE_SELECT} WHERE deleted_at IS NULL AND expires_at IS NOT NULL AND expires_at < $1 ORDER BY expires_at LIMIT $2"
    )
}
pub const CHAT_FILE_DELETE: &str = "UPDATE chat_files SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL";

pub const POLL_INSERT: &str = "INSERT INTO polls (id, meeting_id, room, question, options_json, anonymous, results, \
     created_by, created_at, closed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
pub const POLLS_OF_ROOM: &str = "SELECT id, meeting_id, room, question, options_json, anonymous, results, created_by, \
     created_at, closed_at FROM polls WHERE meeting_id = $1 AND room = $2 ORDER BY created_at, id";
pub const POLL_VOTES_OF_ROOM: &str = "SELECT v.poll_id, v.user_id, v.name, v.choice, v.voted_at FROM poll_votes v \
     JOIN polls p ON p.id = v.poll_id WHERE p.meeting_id = $1 AND p.room = $2 ORDER BY v.voted_at, v.user_id";
/// A second vote by the same user replaces the first.
pub const POLL_VOTE: &str = "INSERT INTO poll_votes (poll_id, user_id, name, choice, voted_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (poll_id, user_id) DO UPDATE SET name = excluded.name, choice = excluded.choice, \
     voted_at = excluded.voted_at";
pub const POLL_CLOSE: &str = "UPDATE polls SET closed_at = $1 WHERE id = $2 AND closed_at IS NULL";

pub const API_KEY_INSERT: &str = "INSERT INTO api_keys (id, name, secret_hash, scopes, created_at, revoked_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";
pub const API_KEY_BY_ID: &str =
    "SELECT id, name, secret_hash, scopes, created_at, revoked_at FROM api_keys WHERE id = $1";
pub const API_KEYS_ALL: &str =
    "SELECT id, name, secret_hash, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at, id";
pub const API_KEY_REVOKE: &str = "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";

pub const MEETING_SET_SETTINGS: &str = "UPDATE meetings SET settings_json = $1 WHERE id = $2";
pub const PARTICIPANT_SET_ROLE: &str = "UPDATE participants SET role = $1 WHERE meeting_id = $2 AND connection_id = $3";
/// A second removal of the same user keeps the first row.
pub const REMOVAL_INSERT: &str = "INSERT INTO meeting_removals (meeting_id, user_id, removed_by, removed_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (meeting_id, user_id) DO NOTHING";
pub const REMOVAL_EXISTS: &str = "SELECT 1 FROM meeting_removals WHERE meeting_id = $1 AND user_id = $2";
pub const REMOVAL_ANY: &str = "SELECT 1 FROM meeting_removals WHERE meeting_id = $1 LIMIT 1";

pub const BREAKOUT_ROOMS_DELETE: &str = "DELETE FROM breakout_rooms WHERE meeting_id = $1";
pub const BREAKOUT_ROOM_INSERT: &str =
    "INSERT INTO breakout_rooms (meeting_id, id, name, position, created_at) VALUES ($1, $2, $3, $4, $5)";
pub const BREAKOUT_ROOMS_OF_MEETING: &str =
    "SELECT id, name FROM breakout_rooms WHERE meeting_id = $1 ORDER BY position";
/// A user's new room replaces their old one.
pub const BREAKOUT_ASSIGN: &str = "INSERT INTO breakout_assignments (meeting_id, user_id, room_id) VALUES ($1, $2, $3) \
     ON CONFLICT (meeting_id, user_id) DO UPDATE SET room_id = excluded.room_id";
pub const BREAKOUT_UNASSIGN: &str = "DELETE FROM breakout_assignments WHERE meeting_id = $1 AND user_id = $2";
pub const BREAKOUT_ASSIGNMENTS: &str =
    "SELECT user_id, room_id FROM breakout_assignments WHERE meeting_id = $1 ORDER BY user_id";
