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
pub const ANALYTICS_OF_MEETING: &str = "SELECT meeting_id, user_id, event_type, metrics_json, \"timestamp\" \
     FROM analytics_events WHERE meeting_id = $1 ORDER BY \"timestamp\", id LIMIT $2";

pub const CHAT_INSERT: &str = "INSERT INTO chat_messages (meeting_id, user_id, name, body, attachment_key, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
pub const CHAT_OF_MEETING: &str = "SELECT id, meeting_id, user_id, name, body, attachment_key, created_at \
     FROM chat_messages WHERE meeting_id = $1 AND id > $2 ORDER BY id LIMIT $3";

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
