//! The embedded backend: one SQLite file, WAL journal, `synchronous = FULL` (a crash loses no committed row).
//!
//! rusqlite is blocking, so every call runs on tokio's blocking pool holding the one connection; SQLite
//! serialises writers anyway, and the control plane's write rate is a few rows per join.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::migrations::{MIGRATIONS_SQLITE, MigrationReport, plan};
use super::{sql, *};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let path = path.to_path_buf();
        let target = path.display().to_string();
        let opened = tokio::task::spawn_blocking({
            let path = path.clone();
            move || open_connection(&path)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?;
        let conn = opened.map_err(|reason| StoreError::Connect { target, reason })?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock would poison it; the connection itself is still consistent
            // (SQLite rolls back an unfinished transaction), so keep using it.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
        .map_err(map_err)
    }
}

fn open_connection(path: &Path) -> Result<Connection, String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
    )
    .map_err(|e| e.to_string())?;
    Ok(conn)
}

fn map_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, msg) = &e {
        let text = msg.clone().unwrap_or_default();
        match code.extended_code {
            rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {
                return StoreError::Conflict(text);
            }
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => return StoreError::Missing("the referenced row".into()),
            _ => {}
        }
    }
    StoreError::Backend(e.to_string())
}

/// Fixed-width RFC 3339 in UTC with microseconds, so text order is time order.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn get_ts(row: &Row, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(idx)?;
    parse_ts(idx, &text)
}

fn get_opt_ts(row: &Row, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| parse_ts(idx, &t)).transpose()
}

fn parse_ts(idx: usize, text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
}

fn bad_value(idx: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, what.to_string().into())
}

fn meeting_from(row: &Row) -> rusqlite::Result<Meeting> {
    let settings: String = row.get(4)?;
    Ok(Meeting {
        id: row.get(0)?,
        host_id: row.get(1)?,
        created_at: get_ts(row, 2)?,
        ended_at: get_opt_ts(row, 3)?,
        settings: serde_json::from_str(&settings).map_err(|_| bad_value(4, "settings_json is not valid settings"))?,
        recording_enabled: row.get(5)?,
    })
}

fn participant_from(row: &Row) -> rusqlite::Result<Participant> {
    let role: String = row.get(4)?;
    Ok(Participant {
        meeting_id: row.get(0)?,
        connection_id: row.get(1)?,
        user_id: row.get(2)?,
        name: row.get(3)?,
        role: Role::parse(&role).ok_or_else(|| bad_value(4, "unknown role"))?,
        joined_at: get_ts(row, 5)?,
        left_at: get_opt_ts(row, 6)?,
    })
}

fn recording_from(row: &Row) -> rusqlite::Result<Recording> {
    let status: String = row.get(5)?;
    Ok(Recording {
        id: row.get(0)?,
        meeting_id: row.get(1)?,
        s3_key: row.get(2)?,
        duration_ms: row.get(3)?,
        transcript_url: row.get(4)?,
        status: RecordingStatus::parse(&status).ok_or_else(|| bad_value(5, "unknown recording status"))?,
        status_reason: row.get(6)?,
        created_at: get_ts(row, 7)?,
        updated_at: get_ts(row, 8)?,
    })
}

fn event_from(row: &Row) -> rusqlite::Result<AnalyticsEvent> {
    let metrics: String = row.get(3)?;
    Ok(AnalyticsEvent {
        meeting_id: row.get(0)?,
        user_id: row.get(1)?,
        event_type: row.get(2)?,
        metrics: serde_json::from_str(&metrics).map_err(|_| bad_value(3, "metrics_json is not JSON"))?,
        timestamp: get_ts(row, 4)?,
    })
}

fn chat_from(row: &Row) -> rusqlite::Result<ChatMessage> {
    let role: String = row.get(6)?;
    let file = match row.get::<_, Option<String>>(15)? {
        Some(_) => Some(file_from_at(row, 15)?),
        None => None,
    };
    Ok(ChatMessage {
        id: row.get(0)?,
        meeting_id: row.get(1)?,
        room: row.get(2)?,
        user_id: row.get(3)?,
        participant_id: row.get(4)?,
        name: row.get(5)?,
        role: Role::parse(&role).ok_or_else(|| bad_value(6, "unknown role"))?,
        body: row.get(7)?,
        recipient: Recipient::from_columns(row.get(8)?, row.get(9)?, row.get(10)?, row.get(11)?),
        created_at: get_ts(row, 12)?,
        edited_at: get_opt_ts(row, 13)?,
        deleted_at: get_opt_ts(row, 14)?,
        file,
    })
}

/// A `chat_files` row whose columns start at `at`.
fn file_from_at(row: &Row, at: usize) -> rusqlite::Result<ChatFile> {
    Ok(ChatFile {
        id: row.get(at)?,
        meeting_id: row.get(at + 1)?,
        object_key: row.get(at + 2)?,
        name: row.get(at + 3)?,
        content_type: row.get(at + 4)?,
        size: row.get(at + 5)?,
        user_id: row.get(at + 6)?,
        created_at: get_ts(row, at + 7)?,
        expires_at: get_opt_ts(row, at + 8)?,
        deleted_at: get_opt_ts(row, at + 9)?,
    })
}

fn poll_from(row: &Row) -> rusqlite::Result<Poll> {
    let options: String = row.get(4)?;
    let results: String = row.get(6)?;
    Ok(Poll {
        id: row.get(0)?,
        meeting_id: row.get(1)?,
        room: row.get(2)?,
        question: row.get(3)?,
        options: serde_json::from_str(&options).map_err(|_| bad_value(4, "options_json is not a list"))?,
        anonymous: row.get(5)?,
        results: PollResults::parse(&results).ok_or_else(|| bad_value(6, "unknown poll results"))?,
        created_by: row.get(7)?,
        created_at: get_ts(row, 8)?,
        closed_at: get_opt_ts(row, 9)?,
        votes: Vec::new(),
    })
}

fn api_key_from(row: &Row) -> rusqlite::Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: row.get(0)?,
        name: row.get(1)?,
        secret_hash: row.get(2)?,
        scopes: row.get(3)?,
        created_at: get_ts(row, 4)?,
        revoked_at: get_opt_ts(row, 5)?,
    })
}

fn run_migrations(conn: &mut Connection) -> Result<MigrationReport> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
         checksum INTEGER NOT NULL, applied_at TEXT NOT NULL)",
    )
    .map_err(map_err)?;
    // IMMEDIATE takes the write lock first, so two processes starting at once do not both apply a migration.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(map_err)?;
    let applied: Vec<(i64, i64)> = {
        let mut stmt =
            tx.prepare("SELECT version, checksum FROM schema_migrations ORDER BY version").map_err(map_err)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)?
    };
    let todo = plan(MIGRATIONS_SQLITE, &applied)?;
    let mut report = MigrationReport { applied: vec![], version: applied.last().map_or(0, |a| a.0) };
    for m in todo {
        tx.execute_batch(m.sql).map_err(|e| StoreError::Migration(format!("{} ({}): {e}", m.version, m.name)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![m.version, m.name, m.checksum(), ts(now())],
        )
        .map_err(map_err)?;
        report.applied.push(m.version);
        report.version = m.version;
    }
    tx.commit().map_err(map_err)?;
    Ok(report)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> Result<MigrationReport> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            run_migrations(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("migration task failed: {e}")))?
    }

    async fn ping(&self) -> Result<()> {
        self.with(|c| c.query_row(sql::PING, [], |_| Ok(()))).await
    }

    async fn create_meeting(&self, m: &Meeting) -> Result<()> {
        let m = m.clone();
        let settings = serde_json::to_string(&m.settings).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.with(move |c| {
            c.execute(
                sql::MEETING_INSERT,
                params![m.id, m.host_id, ts(m.created_at), m.ended_at.map(ts), settings, m.recording_enabled],
            )
        })
        .await
        .map(drop)
    }

    async fn meeting(&self, id: &str) -> Result<Option<Meeting>> {
        let id = id.to_string();
        self.with(move |c| c.prepare_cached(sql::MEETING_BY_ID)?.query_row([id], meeting_from).optional()).await
    }

    async fn end_meeting(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let id = id.to_string();
        self.with(move |c| c.execute(sql::MEETING_END, params![ts(at), id])).await.map(|n| n == 1)
    }

    async fn set_recording_enabled(&self, id: &str, enabled: bool) -> Result<bool> {
        let id = id.to_string();
        self.with(move |c| c.execute(sql::MEETING_SET_RECORDING, params![enabled, id])).await.map(|n| n == 1)
    }

    async fn add_participant(&self, p: &Participant) -> Result<()> {
        let p = p.clone();
        self.with(move |c| {
            c.execute(
                sql::PARTICIPANT_INSERT,
                params![
                    p.meeting_id,
                    p.connection_id,
                    p.user_id,
                    p.name,
                    p.role.as_str(),
                    ts(p.joined_at),
                    p.left_at.map(ts)
                ],
            )
        })
        .await
        .map(drop)
    }

    async fn participant_left(&self, meeting_id: &str, connection_id: &str, at: DateTime<Utc>) -> Result<bool> {
        let (m, c_id) = (meeting_id.to_string(), connection_id.to_string());
        self.with(move |c| c.execute(sql::PARTICIPANT_LEFT, params![ts(at), m, c_id])).await.map(|n| n == 1)
    }

    async fn all_participants_left(&self, meeting_id: &str, at: DateTime<Utc>) -> Result<u64> {
        let m = meeting_id.to_string();
        self.with(move |c| c.execute(sql::PARTICIPANTS_ALL_LEFT, params![ts(at), m])).await.map(|n| n as u64)
    }

    async fn participants(&self, meeting_id: &str, active_only: bool) -> Result<Vec<Participant>> {
        let m = meeting_id.to_string();
        let query = if active_only { sql::PARTICIPANTS_ACTIVE } else { sql::PARTICIPANTS_OF_MEETING };
        self.with(move |c| c.prepare_cached(query)?.query_map([m], participant_from)?.collect()).await
    }

    async fn create_recording(&self, r: &Recording) -> Result<()> {
        let r = r.clone();
        self.with(move |c| {
            c.execute(
                sql::RECORDING_INSERT,
                params![
                    r.id,
                    r.meeting_id,
                    r.s3_key,
                    r.duration_ms,
                    r.transcript_url,
                    r.status.as_str(),
                    r.status_reason,
                    ts(r.created_at),
                    ts(r.updated_at)
                ],
            )
        })
        .await
        .map(drop)
    }

    async fn recording(&self, id: &str) -> Result<Option<Recording>> {
        let id = id.to_string();
        self.with(move |c| c.prepare_cached(&sql::recording_by_id())?.query_row([id], recording_from).optional()).await
    }

    async fn update_recording(&self, id: &str, u: &RecordingUpdate, at: DateTime<Utc>) -> Result<bool> {
        let (id, u) = (id.to_string(), u.clone());
        self.with(move |c| {
            c.execute(
                sql::RECORDING_UPDATE,
                params![
                    u.status.map(|s| s.as_str()),
                    u.status_reason,
                    u.s3_key,
                    u.duration_ms,
                    u.transcript_url,
                    ts(at),
                    id
                ],
            )
        })
        .await
        .map(|n| n == 1)
    }

    async fn recordings_of_meeting(&self, meeting_id: &str) -> Result<Vec<Recording>> {
        let m = meeting_id.to_string();
        self.with(move |c| c.prepare_cached(&sql::recordings_of_meeting())?.query_map([m], recording_from)?.collect())
            .await
    }

    async fn recordings_with_status(&self, status: RecordingStatus) -> Result<Vec<Recording>> {
        self.with(move |c| {
            c.prepare_cached(&sql::recordings_with_status())?.query_map([status.as_str()], recording_from)?.collect()
        })
        .await
    }

    async fn add_analytics_event(&self, e: &AnalyticsEvent) -> Result<()> {
        let e = e.clone();
        self.with(move |c| {
            c.execute(
                sql::ANALYTICS_INSERT,
                params![e.meeting_id, e.user_id, e.event_type, e.metrics.to_string(), ts(e.timestamp)],
            )
        })
        .await
        .map(drop)
    }

    async fn analytics_events(&self, meeting_id: &str, limit: u32) -> Result<Vec<AnalyticsEvent>> {
        let m = meeting_id.to_string();
        self.with(move |c| {
            c.prepare_cached(sql::ANALYTICS_OF_MEETING)?.query_map(params![m, limit], event_from)?.collect()
        })
        .await
    }

    async fn analytics_events_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<AnalyticsEvent>> {
        self.with(move |c| {
            c.prepare_cached(sql::ANALYTICS_BETWEEN)?
                .query_map(params![ts(since), ts(until), limit], event_from)?
                .collect()
        })
        .await
    }

    async fn delete_analytics_before(&self, before: DateTime<Utc>) -> Result<u64> {
        self.with(move |c| c.execute(sql::ANALYTICS_DELETE_BEFORE, params![ts(before)])).await.map(|n| n as u64)
    }

    async fn add_chat_message(&self, msg: &NewChatMessage) -> Result<ChatMessage> {
        let msg = msg.clone();
        self.with(move |c| {
            let (r_user, r_participant, r_name, to_hosts) = msg.recipient.columns();
            let id: i64 = c.query_row(
                sql::CHAT_INSERT,
                params![
                    msg.meeting_id,
                    msg.room,
                    msg.user_id,
                    msg.participant_id,
                    msg.name,
                    msg.role.as_str(),
                    msg.body,
                    r_user,
                    r_participant,
                    r_name,
                    to_hosts,
                    msg.file_id,
                    ts(msg.created_at)
                ],
                |r| r.get(0),
            )?;
            let file = match &msg.file_id {
                Some(f) => {
                    c.prepare_cached(&sql::chat_file_by_id())?.query_row([f], |r| file_from_at(r, 0)).optional()?
                }
                None => None,
            };
            Ok(msg.stored(id, file))
        })
        .await
    }

    async fn chat_message(&self, id: i64) -> Result<Option<ChatMessage>> {
        self.with(move |c| c.prepare_cached(&sql::chat_by_id())?.query_row([id], chat_from).optional()).await
    }

    async fn chat_history(&self, q: &ChatQuery) -> Result<Vec<ChatMessage>> {
        let q = q.clone();
        self.with(move |c| {
            let before = q.before.unwrap_or(i64::MAX);
            c.prepare_cached(&sql::chat_history())?
                .query_map(
                    params![q.meeting_id, q.room, before, q.viewer_user_id, q.viewer_is_host, q.limit],
                    chat_from,
                )?
                .collect()
        })
        .await
    }

    async fn chat_public_between(
        &self,
        meeting_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ChatMessage>> {
        let m = meeting_id.to_string();
        self.with(move |c| {
            c.prepare_cached(&sql::chat_public_between())?
                .query_map(params![m, ts(from), ts(to), limit], chat_from)?
                .collect()
        })
        .await
    }

    async fn edit_chat_message(&self, id: i64, body: &str, at: DateTime<Utc>) -> Result<bool> {
        let body = body.to_string();
        self.with(move |c| c.execute(sql::CHAT_EDIT, params![body, ts(at), id])).await.map(|n| n == 1)
    }

    async fn delete_chat_message(&self, id: i64, by: &str, at: DateTime<Utc>) -> Result<bool> {
        let by = by.to_string();
        self.with(move |c| c.execute(sql::CHAT_DELETE, params![ts(at), by, id])).await.map(|n| n == 1)
    }

    async fn add_chat_file(&self, f: &ChatFile) -> Result<()> {
        let f = f.clone();
        self.with(move |c| {
            c.execute(
                sql::CHAT_FILE_INSERT,
                params![
                    f.id,
                    f.meeting_id,
                    f.object_key,
                    f.name,
                    f.content_type,
                    f.size,
                    f.user_id,
                    ts(f.created_at),
                    f.expires_at.map(ts),
                    f.deleted_at.map(ts)
                ],
            )
        })
        .await
        .map(drop)
    }

    async fn chat_file(&self, id: &str) -> Result<Option<ChatFile>> {
        let id = id.to_string();
        self.with(move |c| {
            c.prepare_cached(&sql::chat_file_by_id())?.query_row([id], |r| file_from_at(r, 0)).optional()
        })
        .await
    }

    async fn chat_files(&self, meeting_id: &str) -> Result<Vec<(ChatFile, i64)>> {
        let m = meeting_id.to_string();
        self.with(move |c| {
            c.prepare_cached(sql::CHAT_FILES_OF_MEETING)?
                .query_map([m], |r| Ok((file_from_at(r, 0)?, r.get(10)?)))?
                .collect()
        })
        .await
    }

    async fn expired_chat_files(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<ChatFile>> {
        self.with(move |c| {
            c.prepare_cached(&sql::chat_files_expired())?
                .query_map(params![ts(now), limit], |r| file_from_at(r, 0))?
                .collect()
        })
        .await
    }

    async fn delete_chat_file(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let id = id.to_string();
        self.with(move |c| c.execute(sql::CHAT_FILE_DELETE, params![ts(at), id])).await.map(|n| n == 1)
    }

    async fn create_poll(&self, p: &Poll) -> Result<()> {
        let p = p.clone();
        let options = serde_json::to_string(&p.options).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.with(move |c| {
            c.execute(
                sql::POLL_INSERT,
                params![
                    p.id,
                    p.meeting_id,
                    p.room,
                    p.question,
                    options,
                    p.anonymous,
                    p.results.as_str(),
                    p.created_by,
                    ts(p.created_at),
                    p.closed_at.map(ts)
                ],
            )
        })
        .await
        .map(drop)
    }

    async fn polls(&self, meeting_id: &str, room: &str) -> Result<Vec<Poll>> {
        let (m, r) = (meeting_id.to_string(), room.to_string());
        self.with(move |c| {
            let mut polls: Vec<Poll> = c
                .prepare_cached(sql::POLLS_OF_ROOM)?
                .query_map(params![m, r], poll_from)?
                .collect::<rusqlite::Result<_>>()?;
            let mut votes = c.prepare_cached(sql::POLL_VOTES_OF_ROOM)?;
            let votes = votes.query_map(params![m, r], |row| {
                let poll_id: String = row.get(0)?;
                let vote = PollVote {
                    user_id: row.get(1)?,
                    name: row.get(2)?,
                    choice: row.get(3)?,
                    voted_at: get_ts(row, 4)?,
                };
                Ok((poll_id, vote))
            })?;
            for vote in votes {
                let (poll_id, vote) = vote?;
                if let Some(p) = polls.iter_mut().find(|p| p.id == poll_id) {
                    p.votes.push(vote);
                }
            }
            Ok(polls)
        })
        .await
    }

    async fn vote(&self, poll_id: &str, v: &PollVote) -> Result<()> {
        let (p, v) = (poll_id.to_string(), v.clone());
        self.with(move |c| c.execute(sql::POLL_VOTE, params![p, v.user_id, v.name, v.choice, ts(v.voted_at)]))
            .await
            .map(drop)
    }

    async fn close_poll(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let id = id.to_string();
        self.with(move |c| c.execute(sql::POLL_CLOSE, params![ts(at), id])).await.map(|n| n == 1)
    }

    async fn set_breakout_rooms(&self, meeting_id: &str, rooms: &[BreakoutRoom], at: DateTime<Utc>) -> Result<()> {
        let (m, rooms) = (meeting_id.to_string(), rooms.to_vec());
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(sql::BREAKOUT_ROOMS_DELETE, [&m])?;
            for (position, r) in rooms.iter().enumerate() {
                tx.execute(sql::BREAKOUT_ROOM_INSERT, params![m, r.id, r.name, position as i64, ts(at)])?;
            }
            tx.commit()
        })
        .await
    }

    async fn breakout_rooms(&self, meeting_id: &str) -> Result<Vec<BreakoutRoom>> {
        let m = meeting_id.to_string();
        self.with(move |c| {
            c.prepare_cached(sql::BREAKOUT_ROOMS_OF_MEETING)?
                .query_map([m], |r| Ok(BreakoutRoom { id: r.get(0)?, name: r.get(1)? }))?
                .collect()
        })
        .await
    }

    async fn assign_breakout(&self, meeting_id: &str, user_id: &str, room_id: Option<&str>) -> Result<()> {
        let (m, u, r) = (meeting_id.to_string(), user_id.to_string(), room_id.map(str::to_string));
        self.with(move |c| match r {
            Some(r) => c.execute(sql::BREAKOUT_ASSIGN, params![m, u, r]),
            None => c.execute(sql::BREAKOUT_UNASSIGN, params![m, u]),
        })
        .await
        .map(drop)
    }

    async fn breakout_assignments(&self, meeting_id: &str) -> Result<Vec<(String, String)>> {
        let m = meeting_id.to_string();
        self.with(move |c| {
            c.prepare_cached(sql::BREAKOUT_ASSIGNMENTS)?.query_map([m], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
        })
        .await
    }

    async fn create_api_key(&self, k: &ApiKeyRow) -> Result<()> {
        let k = k.clone();
        self.with(move |c| {
            c.execute(
                sql::API_KEY_INSERT,
                params![k.id, k.name, k.secret_hash, k.scopes, ts(k.created_at), k.revoked_at.map(ts)],
            )
        })
        .await
        .map(drop)
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>> {
        let id = id.to_string();
        self.with(move |c| c.prepare_cached(sql::API_KEY_BY_ID)?.query_row([id], api_key_from).optional()).await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        self.with(move |c| c.prepare_cached(sql::API_KEYS_ALL)?.query_map([], api_key_from)?.collect()).await
    }

    async fn revoke_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let id = id.to_string();
        self.with(move |c| c.execute(sql::API_KEY_REVOKE, params![ts(at), id])).await.map(|n| n == 1)
    }

    async fn set_meeting_settings(&self, id: &str, settings: &MeetingSettings) -> Result<bool> {
        let (id, settings) =
            (id.to_string(), serde_json::to_string(settings).map_err(|e| StoreError::Backend(e.to_string()))?);
        self.with(move |c| c.execute(sql::MEETING_SET_SETTINGS, params![settings, id])).await.map(|n| n == 1)
    }

    async fn set_participant_role(&self, meeting_id: &str, connection_id: &str, role: Role) -> Result<bool> {
        let (m, c_id) = (meeting_id.to_string(), connection_id.to_string());
        self.with(move |c| c.execute(sql::PARTICIPANT_SET_ROLE, params![role.as_str(), m, c_id])).await.map(|n| n == 1)
    }

    async fn add_removal(&self, meeting_id: &str, user_id: &str, removed_by: &str, at: DateTime<Utc>) -> Result<()> {
        let (m, u, by) = (meeting_id.to_string(), user_id.to_string(), removed_by.to_string());
        self.with(move |c| c.execute(sql::REMOVAL_INSERT, params![m, u, by, ts(at)])).await.map(drop)
    }

    async fn is_removed(&self, meeting_id: &str, user_id: &str) -> Result<bool> {
        let (m, u) = (meeting_id.to_string(), user_id.to_string());
        self.with(move |c| c.prepare_cached(sql::REMOVAL_EXISTS)?.query_row(params![m, u], |_| Ok(())).optional())
            .await
            .map(|found| found.is_some())
    }

    async fn any_removal(&self, meeting_id: &str) -> Result<bool> {
        let m = meeting_id.to_string();
        self.with(move |c| c.prepare_cached(sql::REMOVAL_ANY)?.query_row(params![m], |_| Ok(())).optional())
            .await
            .map(|found| found.is_some())
    }
}
