//! The production backend: PostgreSQL through a `deadpool` pool of `tokio-postgres` connections.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use super::migrations::{MIGRATIONS_POSTGRES, MigrationReport, plan};
use super::{sql, *};

/// Names the advisory lock that serialises migrations across nodes starting at once ("SLUICE" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x534c_5549_4345;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// Connects, retrying `connect_attempts` times with doubling backoff; the error names the server and the
    /// last reason.
    pub async fn connect(options: &StoreOptions) -> Result<PostgresStore> {
        let target = redact_url(&options.url);
        let connect_err = |reason: String| StoreError::Connect { target: target.clone(), reason };
        let mut config: tokio_postgres::Config =
            options.url.parse().map_err(|e| connect_err(format!("bad URL: {e}")))?;
        config.connect_timeout(options.connect_backoff.max(Duration::from_secs(2)) * 2);
        // Keep any `options` the URL carries (a search_path, say) and add ours.
        let url_options = config.get_options().unwrap_or_default().to_string();
        config.options(format!("{url_options} -c statement_timeout={}", options.statement_timeout.as_millis()).trim());
        config.application_name("sluice");
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.statement_timeout))
            .create_timeout(Some(options.statement_timeout))
            .build()
            .map_err(|e| connect_err(e.to_string()))?;
        let store = PostgresStore { pool };

        let mut backoff = options.connect_backoff;
        let attempts = options.connect_attempts.max(1);
        for attempt in 1..=attempts {
            match store.pool.get().await {
                Ok(_) => return Ok(store),
                Err(e) if attempt == attempts => {
                    return Err(connect_err(format!("{} (after {attempts} attempts)", pool_error_reason(&e))));
                }
                Err(e) => {
                    tracing::warn!(%target, attempt, attempts, reason = %pool_error_reason(&e), "database not reachable yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(options.connect_backoff * 8);
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    async fn conn(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| StoreError::Backend(pool_error_reason(&e)))
    }
}

fn pool_error_reason(e: &deadpool_postgres::PoolError) -> String {
    crate::innermost_cause(e)
}

fn map_err(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => {
            StoreError::Conflict(e.as_db_error().map_or("row".into(), |d| d.message().to_string()))
        }
        Some(code) if *code == SqlState::FOREIGN_KEY_VIOLATION => StoreError::Missing("the referenced row".into()),
        _ => StoreError::Backend(e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string())),
    }
}

fn bad_value(what: &str) -> StoreError {
    StoreError::Backend(format!("unexpected value in the database: {what}"))
}

fn meeting_from(row: &Row) -> Result<Meeting> {
    let settings: serde_json::Value = row.try_get(4).map_err(map_err)?;
    Ok(Meeting {
        id: row.try_get(0).map_err(map_err)?,
        host_id: row.try_get(1).map_err(map_err)?,
        created_at: row.try_get(2).map_err(map_err)?,
        ended_at: row.try_get(3).map_err(map_err)?,
        settings: serde_json::from_value(settings).map_err(|_| bad_value("settings_json is not valid settings"))?,
        recording_enabled: row.try_get(5).map_err(map_err)?,
    })
}

fn participant_from(row: &Row) -> Result<Participant> {
    let role: &str = row.try_get(4).map_err(map_err)?;
    Ok(Participant {
        meeting_id: row.try_get(0).map_err(map_err)?,
        connection_id: row.try_get(1).map_err(map_err)?,
        user_id: row.try_get(2).map_err(map_err)?,
        name: row.try_get(3).map_err(map_err)?,
        role: Role::parse(role).ok_or_else(|| bad_value("unknown role"))?,
        joined_at: row.try_get(5).map_err(map_err)?,
        left_at: row.try_get(6).map_err(map_err)?,
    })
}

fn recording_from(row: &Row) -> Result<Recording> {
    let status: &str = row.try_get(5).map_err(map_err)?;
    Ok(Recording {
        id: row.try_get(0).map_err(map_err)?,
        meeting_id: row.try_get(1).map_err(map_err)?,
        s3_key: row.try_get(2).map_err(map_err)?,
        duration_ms: row.try_get(3).map_err(map_err)?,
        transcript_url: row.try_get(4).map_err(map_err)?,
        status: RecordingStatus::parse(status).ok_or_else(|| bad_value("unknown recording status"))?,
        status_reason: row.try_get(6).map_err(map_err)?,
        created_at: row.try_get(7).map_err(map_err)?,
        updated_at: row.try_get(8).map_err(map_err)?,
    })
}

fn event_from(row: &Row) -> Result<AnalyticsEvent> {
    Ok(AnalyticsEvent {
        meeting_id: row.try_get(0).map_err(map_err)?,
        user_id: row.try_get(1).map_err(map_err)?,
        event_type: row.try_get(2).map_err(map_err)?,
        metrics: row.try_get(3).map_err(map_err)?,
        timestamp: row.try_get(4).map_err(map_err)?,
    })
}

fn chat_from(row: &Row) -> Result<ChatMessage> {
    let get = |i| -> Result<Option<String>> { row.try_get(i).map_err(map_err) };
    let role: &str = row.try_get(6).map_err(map_err)?;
    let file = match get(15)? {
        Some(_) => Some(file_from_at(row, 15)?),
        None => None,
    };
    Ok(ChatMessage {
        id: row.try_get(0).map_err(map_err)?,
        meeting_id: row.try_get(1).map_err(map_err)?,
        room: row.try_get(2).map_err(map_err)?,
        user_id: row.try_get(3).map_err(map_err)?,
        participant_id: row.try_get(4).map_err(map_err)?,
        name: row.try_get(5).map_err(map_err)?,
        role: Role::parse(role).ok_or_else(|| bad_value("unknown role"))?,
        body: row.try_get(7).map_err(map_err)?,
        recipient: Recipient::from_columns(get(8)?, get(9)?, get(10)?, row.try_get(11).map_err(map_err)?),
        created_at: row.try_get(12).map_err(map_err)?,
        edited_at: row.try_get(13).map_err(map_err)?,
        deleted_at: row.try_get(14).map_err(map_err)?,
        file,
    })
}

/// A `chat_files` row whose columns start at `at`.
fn file_from_at(row: &Row, at: usize) -> Result<ChatFile> {
    Ok(ChatFile {
        id: row.try_get(at).map_err(map_err)?,
        meeting_id: row.try_get(at + 1).map_err(map_err)?,
        object_key: row.try_get(at + 2).map_err(map_err)?,
        name: row.try_get(at + 3).map_err(map_err)?,
        content_type: row.try_get(at + 4).map_err(map_err)?,
        size: row.try_get(at + 5).map_err(map_err)?,
        user_id: row.try_get(at + 6).map_err(map_err)?,
        created_at: row.try_get(at + 7).map_err(map_err)?,
        expires_at: row.try_get(at + 8).map_err(map_err)?,
        deleted_at: row.try_get(at + 9).map_err(map_err)?,
    })
}

fn file_from(row: &Row) -> Result<ChatFile> {
    file_from_at(row, 0)
}

fn poll_from(row: &Row) -> Result<Poll> {
    let options: &str = row.try_get(4).map_err(map_err)?;
    let results: &str = row.try_get(6).map_err(map_err)?;
    Ok(Poll {
        id: row.try_get(0).map_err(map_err)?,
        meeting_id: row.try_get(1).map_err(map_err)?,
        room: row.try_get(2).map_err(map_err)?,
        question: row.try_get(3).map_err(map_err)?,
        options: serde_json::from_str(options).map_err(|_| bad_value("options_json is not a list"))?,
        anonymous: row.try_get(5).map_err(map_err)?,
        results: PollResults::parse(results).ok_or_else(|| bad_value("unknown poll results"))?,
        created_by: row.try_get(7).map_err(map_err)?,
        created_at: row.try_get(8).map_err(map_err)?,
        closed_at: row.try_get(9).map_err(map_err)?,
        votes: Vec::new(),
    })
}

fn api_key_from(row: &Row) -> Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: row.try_get(0).map_err(map_err)?,
        name: row.try_get(1).map_err(map_err)?,
        secret_hash: row.try_get(2).map_err(map_err)?,
        scopes: row.try_get(3).map_err(map_err)?,
        created_at: row.try_get(4).map_err(map_err)?,
        revoked_at: row.try_get(5).map_err(map_err)?,
    })
}

fn rows<T>(rows: Vec<Row>, from: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(from).collect()
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> Result<MigrationReport> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(map_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY]).await.map_err(map_err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             checksum BIGINT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(map_err)?;
        let applied: Vec<(i64, i64)> = tx
            .query("SELECT version, checksum FROM schema_migrations ORDER BY version", &[])
            .await
            .map_err(map_err)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut report = MigrationReport { applied: vec![], version: applied.last().map_or(0, |a| a.0) };
        for m in plan(MIGRATIONS_POSTGRES, &applied)? {
            tx.batch_execute(m.sql)
                .await
                .map_err(|e| StoreError::Migration(format!("{} ({}): {}", m.version, m.name, map_err(e))))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &m.checksum()],
            )
            .await
            .map_err(map_err)?;
            report.applied.push(m.version);
            report.version = m.version;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(report)
    }

    async fn ping(&self) -> Result<()> {
        self.conn().await?.execute(sql::PING, &[]).await.map_err(map_err).map(drop)
    }

    async fn create_meeting(&self, m: &Meeting) -> Result<()> {
        let settings = serde_json::to_value(&m.settings).map_err(|e| StoreError::Backend(e.to_string()))?;
        let conn = self.conn().await?;
        conn.execute(
            sql::MEETING_INSERT,
            &[&m.id, &m.host_id, &m.created_at, &m.ended_at, &settings, &m.recording_enabled],
        )
        .await
        .map_err(map_err)
        .map(drop)
    }

    async fn meeting(&self, id: &str) -> Result<Option<Meeting>> {
        let conn = self.conn().await?;
        conn.query_opt(sql::MEETING_BY_ID, &[&id]).await.map_err(map_err)?.as_ref().map(meeting_from).transpose()
    }

    async fn end_meeting(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let conn = self.conn().await?;
        conn.execute(sql::MEETING_END, &[&at, &id]).await.map_err(map_err).map(|n| n == 1)
    }

    async fn set_recording_enabled(&self, id: &str, enabled: bool) -> Result<bool> {
        let conn = self.conn().await?;
        conn.execute(sql::MEETING_SET_RECORDING, &[&enabled, &id]).await.map_err(map_err).map(|n| n == 1)
    }

    async fn add_participant(&self, p: &Participant) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(
            sql::PARTICIPANT_INSERT,
            &[&p.meeting_id, &p.connection_id, &p.user_id, &p.name, &p.role.as_str(), &p.joined_at, &p.left_at],
        )
        .await
        .map_err(map_err)
        .map(drop)
    }

    async fn participant_left(&self, meeting_id: &str, connection_id: &str, at: DateTime<Utc>) -> Result<bool> {
        let conn = self.conn().await?;
        conn.execute(sql::PARTICIPANT_LEFT, &[&at, &meeting_id, &connection_id]).await.map_err(map_err).map(|n| n == 1)
    }

    async fn all_participants_left(&self, meeting_id: &str, at: DateTime<Utc>) -> Result<u64> {
        let conn = self.conn().await?;
        conn.execute(sql::PARTICIPANTS_ALL_LEFT, &[&at, &meeting_id]).await.map_err(map_err)
    }

    async fn participants(&self, meeting_id: &str, active_only: bool) -> Result<Vec<Participant>> {
        let query = if active_only { sql::PARTICIPANTS_ACTIVE } else { sql::PARTICIPANTS_OF_MEETING };
        let conn = self.conn().await?;
        rows(conn.query(query, &[&meeting_id]).await.map_err(map_err)?, participant_from)
    }

    async fn create_recording(&self, r: &Recording) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(
            sql::RECORDING_INSERT,
            &[
                &r.id,
                &r.meeting_id,
                &r.s3_key,
                &r.duration_ms,
                &r.transcript_url,
                &r.status.as_str(),
                &r.status_reason,
                &r.created_at,
                &r.updated_at,
            ],
        )
        .await
        .map_err(map_err)
        .map(drop)
    }

    async fn recording(&self, id: &str) -> Result<Option<Recording>> {
        let conn = self.conn().await?;
        conn.query_opt(&sql::recording_by_id(), &[&id]).await.map_err(map_err)?.as_ref().map(recording_from).transpose()
    }

    async fn update_recording(&self, id: &str, u: &RecordingUpdate, at: DateTime<Utc>) -> Result<bool> {
        let status = u.status.map(|s| s.as_str());
        let conn = self.conn().await?;
        conn.execute(
            sql::RECORDING_UPDATE,
            &[&status, &u.status_reason, &u.s3_key, &u.duration_ms, &u.transcript_url, &at, &id],
        )
        .await
        .map_err(map_err)
        .map(|n| n == 1)
    }

    async fn recordings_of_meeting(&self, meeting_id: &str) -> Result<Vec<Recording>> {
        let conn = self.conn().await?;
        rows(conn.query(&sql::recordings_of_meeting(), &[&meeting_id]).await.map_err(map_err)?, recording_from)
    }

    async fn recordings_with_status(&self, status: RecordingStatus) -> Result<Vec<Recording>> {
        let conn = self.conn().await?;
        rows(conn.query(&sql::recordings_with_status(), &[&status.as_str()]).await.map_err(map_err)?, recording_from)
    }

    async fn add_analytics_event(&self, e: &AnalyticsEvent) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(sql::ANALYTICS_INSERT, &[&e.meeting_id, &e.user_id, &e.event_type, &e.metrics, &e.timestamp])
            .await
            .map_err(map_err)
            .map(drop)
    }

    async fn analytics_events(&self, meeting_id: &str, limit: u32) -> Result<Vec<AnalyticsEvent>> {
        let conn = self.conn().await?;
        let limit = i64::from(limit);
        rows(conn.query(sql::ANALYTICS_OF_MEETING, &[&meeting_id, &limit]).await.map_err(map_err)?, event_from)
    }

    async fn analytics_events_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<AnalyticsEvent>> {
        let conn = self.conn().await?;
        let limit = i64::from(limit);
        rows(conn.query(sql::ANALYTICS_BETWEEN, &[&since, &until, &limit]).await.map_err(map_err)?, event_from)
    }

    async fn delete_analytics_before(&self, before: DateTime<Utc>) -> Result<u64> {
        let conn = self.conn().await?;
        conn.execute(sql::ANALYTICS_DELETE_BEFORE, &[&before]).await.map_err(map_err)
    }

    async fn add_chat_message(&self, m: &NewChatMessage) -> Result<ChatMessage> {
        let conn = self.conn().await?;
        let (r_user, r_participant, r_name, to_hosts) = m.recipient.columns();
        let row = conn
            .query_one(
                sql::CHAT_INSERT,
                &[
                    &m.meeting_id,
                    &m.room,
                    &m.user_id,
                    &m.participant_id,
                    &m.name,
                    &m.role.as_str(),
                    &m.body,
                    &r_user,
                    &r_participant,
                    &r_name,
                    &to_hosts,
                    &m.file_id,
                    &m.created_at,
                ],
            )
            .await
            .map_err(map_err)?;
        let file = match &m.file_id {
            Some(f) => conn
                .query_opt(&sql::chat_file_by_id(), &[f])
                .await
                .map_err(map_err)?
                .as_ref()
                .map(file_from)
                .transpose()?,
            None => None,
        };
        Ok(m.clone().stored(row.try_get(0).map_err(map_err)?, file))
    }

    async fn chat_message(&self, id: i64) -> Result<Option<ChatMessage>> {
        let conn = self.conn().await?;
        conn.query_opt(&sql::chat_by_id(), &[&id]).await.map_err(map_err)?.as_ref().map(chat_from).transpose()
    }

    async fn chat_history(&self, q: &ChatQuery) -> Result<Vec<ChatMessage>> {
        let conn = self.conn().await?;
        let (before, limit) = (q.before.unwrap_or(i64::MAX), i64::from(q.limit));
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&q.meeting_id, &q.room, &before, &q.viewer_user_id, &q.viewer_is_host, &limit];
        rows(conn.query(&sql::chat_history(), &params).await.map_err(map_err)?, chat_from)
    }

    async fn chat_public_between(
        &self,
        meeting_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ChatMessage>> {
        let conn = self.conn().await?;
        let limit = i64::from(limit);
        rows(
            conn.query(&sql::chat_public_between(), &[&meeting_id, &from, &to, &limit]).await.map_err(map_err)?,
            chat_from,
        )
    }

    async fn edit_chat_message(&self, id: i64, body: &str, at: DateTime<Utc>) -> Result<bool> {
        let conn = self.conn().await?;
        conn.execute(sql::CHAT_EDIT, &[&body, &at, &id]).await.map_err(map_err).map(|n| n == 1)
    }

    async fn delete_chat_message(&self, id: i64, by: &str, at: DateTime<Utc>) -> Result<bool> {
        let conn = self.conn().await?;
        conn.execute(sql::CHAT_DELETE, &[&at, &by, &id]).await.map_err(map_err).map(|n| n == 1)
    }

    async fn add_chat_file(&self, f: &ChatFile) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(
            sql::CHAT_FILE_INSERT,
            &[
                &f.id,
                &f.meeting_id,
                &f.object_key,
                &f.name,
                &f.content_type,
                &f.size,
                &f.user_id,
                &f.created_at,
                &f.expires_at,
                &f.deleted_at,
            ],
        )
        .await
        .map_err(map_err)
        .map(drop)
    }

    async fn chat_file(&self, id: &str) -> Result<Option<ChatFile>> {
        let conn = self.conn().await?;
        conn.query_opt(&sql::chat_file_by_id(), &[&id]).await.map_err(map_err)?.as_ref().map(file_from).transpose()
    }

    async fn chat_files(&self, meeting_id: &str) -> Result<Vec<(ChatFile, i64)>> {
        let conn = self.conn().await?;
        let found = conn.query(sql::CHAT_FILES_OF_MEETING, &[&meeting_id]).await.map_err(map_err)?;
        found.iter().map(|r| Ok((file_from(r)?, r.try_get(10).map_err(map_err)?))).collect()
    }

    async fn expired_chat_files(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<ChatFile>> {
        let conn = self.conn().await?;
        let limit = i64::from(limit);
        rows(conn.query(&sql::chat_files_expired(), &[&now, &limit]).await.map_err(map_err)?, file_from)
    }

    async fn delete_chat_file(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let conn = self.conn().await?;
        conn.execute(sql::CHAT_FILE_DELETE, &[&at, &id]).await.map_err(map_err).map(|n| n == 1)
    }

    async fn create_poll(&self, p: &Poll) -> Result<()> {
        let conn = self.conn().await?;
        let options = serde_json::to_string(&p.options).map_err(|e| StoreError::Backend(e.to_string()))?;
        conn.execute(
            sql::POLL_INSERT,
            &[
                &p.id,
                &p.meeting_id,
                &p.room,
                &p.question,
                &options,
                &p.anonymous,
                &p.results.as_str(),
                &p.created_by,
                &p.created_at,
                &p.closed_at,
            ],
        )
        .await
        .map_err(map_err)
        .map(drop)
    }

    async fn polls(&self, meeting_id: &str, room: &str) -> Result<Vec<Poll>> {
        let conn = self.conn().await?;
        let mut polls = rows(conn.query(sql::POLLS_OF_ROOM, &[&meeting_id, &room]).await.map_err(map_err)?, poll_from)?;
        for row in conn.query(sql::POLL_VOTES_OF_ROOM, &[&meeting_id, &room]).await.map_err(map_err)? {
            let poll_id: &str = row.try_get(0).map_err(map_err)?;
            let choice: i32 = row.try_get(3).map_err(map_err)?;
            let vote = PollVote {
                user_id: row.try_get(1).map_err(map_err)?,
                name: row.try_get(2).map_err(map_err)?,
                choice: u32::try_from(choice).map_err(|_| bad_value("negative poll choice"))?,
                voted_at: row.try_get(4).map_err(map_err)?,
            };
            if let Some(p) = polls.iter_mut().find(|p| p.id == poll_id) {
                p.votes.push(vote);
            }
        }
        Ok(polls)
    }

    async fn vote(&self, poll_id: &str, v: &PollVote) -> Result<()> {
        let conn = self.conn().await?;
        let choice = i32::try_from(v.choice).map_err(|_| bad_value("poll choice out of range"))?;
        conn.execute(sql::POLL_VOTE, &[&poll_id, &v.user_id, &v.name, &choice, &v.voted_at])
            .await
            .map_err(map_err)
            .map(drop)
    }

    async fn close_poll(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let conn = self.conn().await?;
        conn.execute(sql::POLL_CLOSE, &[&at, &id]).await.map_err(map_err).map(|n| n == 1)
    }

    async fn set_breakout_rooms(&self, meeting_id: &str, rooms: &[BreakoutRoom], at: DateTime<Utc>) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(map_err)?;
        tx.execute(sql::BREAKOUT_ROOMS_DELETE, &[&meeting_id]).await.map_err(map_err)?;
        for (position, r) in rooms.iter().enumerate() {
            let position = position as i32;
            tx.execute(sql::BREAKOUT_ROOM_INSERT, &[&meeting_id, &r.id, &r.name, &position, &at])
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn breakout_rooms(&self, meeting_id: &str) -> Result<Vec<BreakoutRoom>> {
        let conn = self.conn().await?;
        let found = conn.query(sql::BREAKOUT_ROOMS_OF_MEETING, &[&meeting_id]).await.map_err(map_err)?;
        found
            .iter()
            .map(|r| Ok(BreakoutRoom { id: r.try_get(0).map_err(map_err)?, name: r.try_get(1).map_err(map_err)? }))
            .collect()
    }

    async fn assign_breakout(&self, meeting_id: &str, user_id: &str, room_id: Option<&str>) -> Result<()> {
        let conn = self.conn().await?;
        match room_id {
            Some(r) => conn.execute(sql::BREAKOUT_ASSIGN, &[&meeting_id, &user_id, &r]).await,
            None => conn.execute(sql::BREAKOUT_UNASSIGN, &[&meeting_id, &user_id]).await,
        }
        .map_err(map_err)
        .map(drop)
    }

    async fn breakout_assignments(&self, meeting_id: &str) -> Result<Vec<(String, String)>> {
        let conn = self.conn().await?;
        let found = conn.query(sql::BREAKOUT_ASSIGNMENTS, &[&meeting_id]).await.map_err(map_err)?;
        found.iter().map(|r| Ok((r.try_get(0).map_err(map_err)?, r.try_get(1).map_err(map_err)?))).collect()
    }

    async fn create_api_key(&self, k: &ApiKeyRow) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(sql::API_KEY_INSERT, &[&k.id, &k.name, &k.secret_hash, &k.scopes, &k.created_at, &k.revoked_at])
            .await
            .map_err(map_err)
            .map(drop)
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>> {
        let conn = self.conn().await?;
        conn.query_opt(sql::API_KEY_BY_ID, &[&id]).await.map_err(map_err)?.as_ref().map(api_key_from).transpose()
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        let conn = self.conn().await?;
        rows(conn.query(sql::API_KEYS_ALL, &[]).await.map_err(map_err)?, api_key_from)
    }

    async fn revoke_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let conn = self.conn().await?;
        conn.execute(sql::API_KEY_REVOKE, &[&at, &id]).await.map_err(map_err).map(|n| n == 1)
    }

    async fn set_meeting_settings(&self, id: &str, settings: &MeetingSettings) -> Result<bool> {
        let conn = self.conn().await?;
        let settings = serde_json::to_value(settings).map_err(|e| StoreError::Backend(e.to_string()))?;
        conn.execute(sql::MEETING_SET_SETTINGS, &[&settings, &id]).await.map_err(map_err).map(|n| n == 1)
    }

    async fn set_participant_role(&self, meeting_id: &str, connection_id: &str, role: Role) -> Result<bool> {
        let conn = self.conn().await?;
        conn.execute(sql::PARTICIPANT_SET_ROLE, &[&role.as_str(), &meeting_id, &connection_id])
            .await
            .map_err(map_err)
            .map(|n| n == 1)
    }

    async fn add_removal(&self, meeting_id: &str, user_id: &str, removed_by: &str, at: DateTime<Utc>) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(sql::REMOVAL_INSERT, &[&meeting_id, &user_id, &removed_by, &at]).await.map_err(map_err).map(drop)
    }

    async fn is_removed(&self, meeting_id: &str, user_id: &str) -> Result<bool> {
        let conn = self.conn().await?;
        Ok(conn.query_opt(sql::REMOVAL_EXISTS, &[&meeting_id, &user_id]).await.map_err(map_err)?.is_some())
    }

    async fn any_removal(&self, meeting_id: &str) -> Result<bool> {
        let conn = self.conn().await?;
        Ok(conn.query_opt(sql::REMOVAL_ANY, &[&meeting_id]).await.map_err(map_err)?.is_some())
    }
}
