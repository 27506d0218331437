//! The rows the Store reads and writes. Names follow the glossary in `product.md`.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

/// Both backends keep microseconds (PostgreSQL's `timestamptz` precision), so every timestamp is truncated to
/// microseconds before it is stored: a value read back equals the value written, on either backend.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// What a participant may do in a meeting. Stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Created the meeting (or was handed the role): ends it, records it, runs it.
    Host,
    /// Runs the meeting with the host (admits, mutes, removes, records) but cannot end it, hand out host or
    /// co-host roles, or act on a host.
    CoHost,
    /// Publishes and subscribes.
    Participant,
    /// Subscribes only.
    Viewer,
    /// The recorder's own subscription.
    Recorder,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::CoHost => "co_host",
            Role::Participant => "participant",
            Role::Viewer => "viewer",
            Role::Recorder => "recorder",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "host" => Role::Host,
            "co_host" => Role::CoHost,
            "participant" => Role::Participant,
            "viewer" => Role::Viewer,
            "recorder" => Role::Recorder,
            _ => return None,
        })
    }
}

/// Per-meeting settings, kept as JSON (`settings_json`) so new settings need no migration.
/// Every field has a default so rows written by older versions still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeetingSettings {
    /// Shown in the web client; at most [`MeetingSettings::TITLE_LEN_MAX`] characters.
    pub title: Option<String>,
    /// Shown under the title; at most [`MeetingSettings::DESCRIPTION_LEN_MAX`] characters.
    pub description: Option<String>,
    /// Participants connected at once; a join beyond it is refused.
    pub max_participants: u32,
    /// Joiners wait until a host admits them.
    pub waiting_room: bool,
    /// Anyone may chat (false: chat is off, see `docs/chat.md`).
    pub allow_chat: bool,
    /// Only hosts chat freely; the others may only write to the hosts.
    pub chat_hosts_only: bool,
    pub allow_screenshare: bool,
    /// Only hosts and co-hosts share screens.
    pub screenshare_hosts_only: bool,
    /// Participants join with their microphone muted (they may unmute themselves).
    pub join_muted: bool,
    /// No new joins, even with a valid token, except hosts (a host toggles it during the meeting).
    pub locked: bool,
    /// Cameras publish three simulcast layers (1/4, 1/2 and full resolution) and each subscriber receives the
    /// one it asks for: more upload for the publisher, far less download for people viewing thumbnails.
    pub simulcast: bool,
    /// Cameras publish VP9 with three spatial layers in one stream (scalability mode L3T3_KEY) where the browser
    /// can, instead of simulcast; each subscriber still receives the layers it asks for. Less upload than
    /// simulcast for the same pictures; browsers without VP9 SVC send one layer.
    pub video_svc: bool,
}

impl MeetingSettings {
    pub const TITLE_LEN_MAX: usize = 200;
    pub const DESCRIPTION_LEN_MAX: usize = 2000;
    /// A room bigger than this is a webinar that wants cascading across nodes, which a setting cannot give.
    pub const PARTICIPANTS_MAX: u32 = 10_000;

    /// Checks the settings a user sent; the error says which field is wrong and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(title) = &self.title
            && title.chars().count() > Self::TITLE_LEN_MAX
        {
            return Err(format!("settings.title is longer than {} characters", Self::TITLE_LEN_MAX));
        }
        if let Some(description) = &self.description
            && description.chars().count() > Self::DESCRIPTION_LEN_MAX
        {
            return Err(format!("settings.description is longer than {} characters", Self::DESCRIPTION_LEN_MAX));
        }
        if self.max_participants == 0 || self.max_participants > Self::PARTICIPANTS_MAX {
            return Err(format!(
                "settings.max_participants must be between 1 and {}, got {}",
                Self::PARTICIPANTS_MAX,
                self.max_participants
            ));
        }
        Ok(())
    }
}

impl Default for MeetingSettings {
    fn default() -> Self {
        MeetingSettings {
            title: None,
            description: None,
            max_participants: 100,
            waiting_room: false,
            allow_chat: true,
            chat_hosts_only: false,
            allow_screenshare: true,
            screenshare_hosts_only: false,
            join_muted: false,
            locked: false,
            simulcast: true,
            video_svc: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meeting {
    pub id: String,
    pub host_id: String,
    pub created_at: DateTime<Utc>,
    /// Set when a host ends the meeting; an ended meeting admits nobody.
    pub ended_at: Option<DateTime<Utc>>,
    pub settings: MeetingSettings,
    pub recording_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    pub meeting_id: String,
    /// One per signaling connection: a person who rejoins gets a new row.
    pub connection_id: String,
    pub user_id: String,
    pub name: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingStatus {
    Recording,
    Processing,
    Ready,
    Failed,
}

impl RecordingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingStatus::Recording => "recording",
            RecordingStatus::Processing => "processing",
            RecordingStatus::Ready => "ready",
            RecordingStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RecordingStatus> {
        Some(match s {
            "recording" => RecordingStatus::Recording,
            "processing" => RecordingStatus::Processing,
            "ready" => RecordingStatus::Ready,
            "failed" => RecordingStatus::Failed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    pub id: String,
    pub meeting_id: String,
    /// Key of the composed file in object storage, once uploaded.
    pub s3_key: Option<String>,
    pub duration_ms: Option<i64>,
    pub transcript_url: Option<String>,
    pub status: RecordingStatus,
    /// Why a recording failed, in words for the host.
    pub status_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A change to a recording row; `None` leaves a column as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordingUpdate {
    pub status: Option<RecordingStatus>,
    pub status_reason: Option<String>,
    pub s3_key: Option<String>,
    pub duration_ms: Option<i64>,
    pub transcript_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsEvent {
    pub meeting_id: String,
    pub user_id: String,
    pub event_type: String,
    pub metrics: serde_json::Value,
    pub timestamp: DateTime<Utc>,
}

/// A named breakout room of a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakoutRoom {
    pub id: String,
    pub name: String,
}

/// An application's API key as stored: the hash of its secret, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRow {
    /// The public part of the key (`sk_<id>_<secret>`), used to find the row.
    pub id: String,
    /// What the operator called it, for logs and `sluice apikey list`.
    pub name: String,
    /// SHA-256 of the secret part, hex.
    pub secret_hash: String,
    /// Scope names separated by spaces (`create_meetings mint_tokens`).
    pub scopes: String,
    pub created_at: DateTime<Utc>,
    /// Set once; a revoked key is refused from then on.
    pub revoked_at: Option<DateTime<Utc>>,
}
