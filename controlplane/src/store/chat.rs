//! Chat rows: messages, the files shared in them, polls and their votes (`docs/chat.md`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Role;

/// The room of a meeting a message was said in, before breakout rooms exist.
pub const MAIN_ROOM: &str = "main";

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recipient {
    Everyone,
    /// Whoever has the host grant when it is read.
    Hosts,
    /// One person, by user id (their participant id and name when it was sent, for display).
    User {
        user_id: String,
        participant_id: String,
        name: String,
    },
}

impl Recipient {
    /// Whether `viewer` may read a message `author` sent to this recipient.
    pub fn visible_to(&self, author: &str, viewer: &str, viewer_is_host: bool) -> bool {
        match self {
            Recipient::Everyone => true,
            _ if author == viewer => true,
            Recipient::Hosts => viewer_is_host,
            Recipient::User { user_id, .. } => user_id == viewer,
        }
    }

    /// The three columns it is stored in: recipient user id, participant id, name; and `to_hosts`.
    pub(super) fn columns(&self) -> (Option<&str>, Option<&str>, Option<&str>, bool) {
        match self {
            Recipient::Everyone => (None, None, None, false),
            Recipient::Hosts => (None, None, None, true),
            Recipient::User { user_id, participant_id, name } => {
                (Some(user_id), Some(participant_id), Some(name), false)
            }
        }
    }

    pub(super) fn from_columns(
        user_id: Option<String>,
        participant_id: Option<String>,
        name: Option<String>,
        to_hosts: bool,
    ) -> Recipient {
        match user_id {
            Some(user_id) => Recipient::User {
                user_id,
                participant_id: participant_id.unwrap_or_default(),
                name: name.unwrap_or_default(),
            },
            None if to_hosts => Recipient::Hosts,
            None => Recipient::Everyone,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewChatMessage {
    pub meeting_id: String,
    pub room: String,
    pub user_id: String,
    /// The author's participant id when they sent it.
    pub participant_id: String,
    pub name: String,
    pub role: Role,
    pub body: String,
    pub recipient: Recipient,
    /// A shared file (`chat_files.id`).
    pub file_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl NewChatMessage {
    /// The stored message, once the store has given it its id.
    pub fn stored(self, id: i64, file: Option<ChatFile>) -> ChatMessage {
        ChatMessage {
            id,
            meeting_id: self.meeting_id,
            room: self.room,
            user_id: self.user_id,
            participant_id: self.participant_id,
            name: self.name,
            role: self.role,
            body: self.body,
            recipient: self.recipient,
            file,
            created_at: self.created_at,
            edited_at: None,
            deleted_at: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Increases with every message in the whole store, so clients page with "before id".
    pub id: i64,
    pub meeting_id: String,
    pub room: String,
    pub user_id: String,
    pub participant_id: String,
    pub name: String,
    pub role: Role,
    pub body: String,
    pub recipient: Recipient,
    /// The shared file, unless it was deleted (with its message, or by retention).
    pub file: Option<ChatFile>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Which messages a history page holds: those of one room `viewer` may see, newest first, below `before`.
#[derive(Debug, Clone)]
pub struct ChatQuery {
    pub meeting_id: String,
    pub room: String,
    pub viewer_user_id: String,
    pub viewer_is_host: bool,
    /// Only messages with a smaller id (`None`: from the newest).
    pub before: Option<i64>,
    pub limit: u32,
}

/// A file shared in a meeting's chat; its bytes are in object storage under `object_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatFile {
    pub id: String,
    pub meeting_id: String,
    pub object_key: String,
    /// The sanitised display name (never a path).
    pub name: String,
    /// Detected from the bytes, not the client's claim.
    pub content_type: String,
    pub size: i64,
    /// Who uploaded it.
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    /// When retention deletes it (`None`: kept).
    pub expires_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Types a browser may show inline: raster images it decodes without running anything. (SVG is not one: it can
/// carry script.)
pub fn previewable(content_type: &str) -> bool {
    matches!(content_type, "image/png" | "image/jpeg" | "image/gif" | "image/webp")
}

/// Who sees a poll's counts while it is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PollResults {
    /// Everyone, as votes come in.
    Live,
    /// Hosts only, until it is closed.
    Hosts,
}

impl PollResults {
    pub fn as_str(self) -> &'static str {
        match self {
            PollResults::Live => "live",
            PollResults::Hosts => "hosts",
        }
    }

    pub fn parse(s: &str) -> Option<PollResults> {
        match s {
            "live" => Some(PollResults::Live),
            "hosts" => Some(PollResults::Hosts),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    pub id: String,
    pub meeting_id: String,
    pub room: String,
    pub question: String,
    pub options: Vec<String>,
    pub anonymous: bool,
    pub results: PollResults,
    /// The name of the host who created it.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// One per voter, in the order they last voted.
    pub votes: Vec<PollVote>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollVote {
    pub user_id: String,
    pub name: String,
    /// The option's index.
    pub choice: u32,
    pub voted_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_messages_are_seen_by_author_and_recipient_only() {
        let to_bob = Recipient::User { user_id: "bob".into(), participant_id: "p_b".into(), name: "Bob".into() };
        assert!(to_bob.visible_to("ann", "ann", false));
        assert!(to_bob.visible_to("ann", "bob", false));
        assert!(!to_bob.visible_to("ann", "cy", false));
        assert!(!to_bob.visible_to("ann", "host", true), "hosts do not read private messages");
        assert!(Recipient::Hosts.visible_to("ann", "host", true));
        assert!(!Recipient::Hosts.visible_to("ann", "cy", false));
        assert!(Recipient::Everyone.visible_to("ann", "cy", false));
    }
}
