//! The `Store`: every durable row Sluice keeps, behind one trait with two backends.
//!
//! - [`sqlite::SqliteStore`]: the embedded default, a file under the data directory (`rusqlite`, bundled).
//! - [`postgres::PostgresStore`]: production, chosen with a `postgres://` URL (`tokio-postgres` + `deadpool`).
//!
//! Both run the same SQL text from [`sql`] and the versioned migrations in `migrations/<backend>/`; one test
//! suite (`controlplane/tests/store.rs`) runs against both.

mod chat;
mod migrations;
mod model;
pub mod postgres;
mod sql;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use chat::*;
pub use migrations::{MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE, Migration, MigrationReport};
pub use model::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or opened; the text names the database and the cause.
    #[error("cannot open the database {target}: {reason}")]
    Connect { target: String, reason: String },
    /// The URL is not one we know how to open.
    #[error("database URL {0:?} is not supported: use sqlite://PATH or postgres://USER@HOST/DB")]
    BadUrl(String),
    #[error("migration failed: {0}")]
    Migration(String),
    /// A row with that key exists already.
    #[error("{0} already exists")]
    Conflict(String),
    /// A row refers to one that does not exist (a participant of an unknown meeting, say).
    #[error("{0} does not exist")]
    Missing(String),
    /// Anything else the database said. Internal: logged, not shown to users.
    #[error("database error: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which backend a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Every durable read and write of the control plane. Methods are small and named for what the caller means;
/// each is one statement or one transaction.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    fn backend(&self) -> Backend;

    /// Applies the migrations this binary knows and the database lacks. Idempotent.
    async fn migrate(&self) -> Result<MigrationReport>;

    /// A round trip to the database, for readiness checks.
    async fn ping(&self) -> Result<()>;

    async fn create_meeting(&self, meeting: &Meeting) -> Result<()>;
    async fn meeting(&self, id: &str) -> Result<Option<Meeting>>;
    /// Sets `ended_at` once; returns false if the meeting was already ended or does not exist.
    async fn end_meeting(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;
    async fn set_recording_enabled(&self, id: &str, enabled: bool) -> Result<bool>;
    /// Replaces a meeting's settings; returns false if there is no such meeting.
    async fn set_meeting_settings(&self, id: &str, settings: &MeetingSettings) -> Result<bool>;

    async fn add_participant(&self, participant: &Participant) -> Result<()>;
    /// Sets `left_at` once; returns false if that connection had left already or was never there.
    async fn participant_left(&self, meeting_id: &str, connection_id: &str, at: DateTime<Utc>) -> Result<bool>;
    /// Marks everyone still in a meeting as gone (the meeting ended, or the node restarted). Returns how many.
    async fn all_participants_left(&self, meeting_id: &str, at: DateTime<Utc>) -> Result<u64>;
    /// A host changed a connection's role.
    async fn set_participant_role(&self, meeting_id: &str, connection_id: &str, role: Role) -> Result<bool>;
    /// A host removed `user_id` from the meeting: refused from then on. Idempotent.
    async fn add_removal(&self, meeting_id: &str, user_id: &str, removed_by: &str, at: DateTime<Utc>) -> Result<()>;
    async fn is_removed(&self, meeting_id: &str, user_id: &str) -> Result<bool>;
    /// Whether a host ever removed anyone from the meeting.
    async fn any_removal(&self, meeting_id: &str) -> Result<bool>;
    /// In order of joining. `active_only` keeps those without `left_at`.
    async fn participants(&self, meeting_id: &str, active_only: bool) -> Result<Vec<Participant>>;

    async fn create_recording(&self, recording: &Recording) -> Result<()>;
    async fn recording(&self, id: &str) -> Result<Option<Recording>>;
    /// Applies the non-`None` fields and bumps `updated_at`; returns false if there is no such recording.
    async fn update_recording(&self, id: &str, update: &RecordingUpdate, at: DateTime<Utc>) -> Result<bool>;
    /// Newest first.
    async fn recordings_of_meeting(&self, meeting_id: &str) -> Result<Vec<Recording>>;
    /// Recordings in a status, oldest first (the recorder resumes `recording` and `processing` ones at start-up).
    async fn recordings_with_status(&self, status: RecordingStatus) -> Result<Vec<Recording>>;

    async fn add_analytics_event(&self, event: &AnalyticsEvent) -> Result<()>;
    /// Oldest first, at most `limit`.
    async fn analytics_events(&self, meeting_id: &str, limit: u32) -> Result<Vec<AnalyticsEvent>>;
    /// Every meeting's events in `[since, until)`, oldest first, at most `limit`.
    async fn analytics_events_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<AnalyticsEvent>>;
    /// Deletes events older than `before` (retention); returns how many.
    async fn delete_analytics_before(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Stores a message (its `file_id` must name a stored file) and returns it with its id and file.
    async fn add_chat_message(&self, message: &NewChatMessage) -> Result<ChatMessage>;
    async fn chat_message(&self, id: i64) -> Result<Option<ChatMessage>>;
    /// A page of the messages a viewer may see, newest first; deleted ones are left out.
    async fn chat_history(&self, query: &ChatQuery) -> Result<Vec<ChatMessage>>;
    /// Public messages not deleted, said in `[from, to]`, oldest first (a recording's export).
    async fn chat_public_between(
        &self,
        meeting_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ChatMessage>>;
    /// Replaces the body; false if there is no such message or it is deleted.
    async fn edit_chat_message(&self, id: i64, body: &str, at: DateTime<Utc>) -> Result<bool>;
    /// Marks the message deleted; false if there is no such message or it was deleted already.
    async fn delete_chat_message(&self, id: i64, by: &str, at: DateTime<Utc>) -> Result<bool>;

    async fn add_chat_file(&self, file: &ChatFile) -> Result<()>;
    async fn chat_file(&self, id: &str) -> Result<Option<ChatFile>>;
    /// The files of a meeting not deleted, each with the id of its message, oldest first.
    async fn chat_files(&self, meeting_id: &str) -> Result<Vec<(ChatFile, i64)>>;
    /// Files whose retention ended before `now`, at most `limit`, the oldest expiry first.
    async fn expired_chat_files(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<ChatFile>>;
    /// Marks the file deleted (its object is deleted by the caller); false if it was already.
    async fn delete_chat_file(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;

    async fn create_poll(&self, poll: &Poll) -> Result<()>;
    /// A room's polls with their votes, oldest first.
    async fn polls(&self, meeting_id: &str, room: &str) -> Result<Vec<Poll>>;
    /// Records a vote, replacing the user's earlier one.
    async fn vote(&self, poll_id: &str, vote: &PollVote) -> Result<()>;
    /// Sets `closed_at` once; false if it was closed already or does not exist.
    async fn close_poll(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;

    /// Replaces a meeting's breakout rooms (and so drops every assignment to them) with these, in order.
    async fn set_breakout_rooms(&self, meeting_id: &str, rooms: &[BreakoutRoom], at: DateTime<Utc>) -> Result<()>;
    /// In order.
    async fn breakout_rooms(&self, meeting_id: &str) -> Result<Vec<BreakoutRoom>>;
    /// Assigns `user_id` to a breakout room (`None`: to none); the room must exist.
    async fn assign_breakout(&self, meeting_id: &str, user_id: &str, room_id: Option<&str>) -> Result<()>;
    /// `(user_id, room_id)`, by user id.
    async fn breakout_assignments(&self, meeting_id: &str) -> Result<Vec<(String, String)>>;

    async fn create_api_key(&self, key: &ApiKeyRow) -> Result<()>;
    /// Read on every use, so a revocation by any process takes effect at the next request.
    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>>;
    /// Oldest first, revoked ones included.
    async fn api_keys(&self) -> Result<Vec<ApiKeyRow>>;
    /// Sets `revoked_at` once; returns false if there is no such key or it was revoked already.
    async fn revoke_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;
}

/// How to open the store: the URL, and how hard to try.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://PATH` (relative paths are under the data directory) or `postgres://...`.
    pub url: String,
    /// PostgreSQL pool size.
    pub max_connections: usize,
    /// Connection attempts at start-up before giving up with the last reason.
    pub connect_attempts: u32,
    /// Wait between attempts (doubles each time, up to 8x).
    pub connect_backoff: Duration,
    pub statement_timeout: Duration,
}

/// Opens the store the URL names and runs its migrations.
pub async fn open(options: &StoreOptions, data_dir: &Path) -> Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if let Some(rest) = options.url.strip_prefix("sqlite://") {
        let path = data_dir.join(rest);
        Arc::new(sqlite::SqliteStore::open(&path).await?)
    } else if options.url.starts_with("postgres://") || options.url.starts_with("postgresql://") {
        Arc::new(postgres::PostgresStore::connect(options).await?)
    } else {
        return Err(StoreError::BadUrl(options.url.clone()));
    };
    let report = store.migrate().await?;
    tracing::info!(backend = ?store.backend(), applied = ?report.applied, version = report.version, "store ready");
    Ok(store)
}

/// Hides the password of a database URL for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_only_the_password() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://sluice.db"), "sqlite://sluice.db");
    }

    #[test]
    fn settings_validation_names_the_field() {
        let mut s = MeetingSettings { max_participants: 0, ..Default::default() };
        assert!(s.validate().unwrap_err().contains("max_participants"));
        s.max_participants = 10;
        s.title = Some("x".repeat(MeetingSettings::TITLE_LEN_MAX + 1));
        assert!(s.validate().unwrap_err().contains("title"));
        s.title = Some("standup".into());
        assert!(s.validate().is_ok());
    }
}
