//! The chat's wire types: messages, files and polls as a participant sees them (`docs/chat.md`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{ChatFile, ChatMessage, MeetingSettings, Poll, PollResults, Recipient, Role};

/// A message body's longest length, in characters.
pub const CHAT_BODY_MAX: usize = 4000;
/// Messages in the `chat_history` a joiner gets.
pub const CHAT_HISTORY_MAX: u32 = 100;
pub const POLL_QUESTION_MAX: usize = 500;
pub const POLL_OPTION_MAX: usize = 200;
pub const POLL_OPTIONS_MIN: usize = 2;
pub const POLL_OPTIONS_MAX: usize = 10;
/// Polls one meeting room may have.
pub const POLLS_MAX: usize = 50;

/// Who may send chat messages in a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatMode {
    Everyone,
    /// Hosts send to anyone; the others only to the hosts.
    HostsOnly,
    Off,
}

impl ChatMode {
    pub fn of(settings: &MeetingSettings) -> ChatMode {
        match (settings.allow_chat, settings.chat_hosts_only) {
            (false, _) => ChatMode::Off,
            (true, true) => ChatMode::HostsOnly,
            (true, false) => ChatMode::Everyone,
        }
    }

    pub fn apply(self, settings: &mut MeetingSettings) {
        settings.allow_chat = self != ChatMode::Off;
        settings.chat_hosts_only = self == ChatMode::HostsOnly;
    }
}

/// A message as one participant sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatView {
    pub id: i64,
    pub from_participant_id: String,
    pub from_name: String,
    pub from_role: Role,
    /// Sent by the one this copy is for (by user id: on an earlier connection too).
    pub mine: bool,
    /// `everyone`, `hosts` or `participant`.
    pub to: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_participant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_name: Option<String>,
    pub body: String,
    pub sent_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    pub file: Option<FileView>,
}

impl ChatView {
    pub fn of(message: &ChatMessage, viewer_user_id: &str) -> ChatView {
        let deleted = message.deleted_at.is_some();
        let (to, to_participant_id, to_name) = match &message.recipient {
            Recipient::Everyone => ("everyone", None, None),
            Recipient::Hosts => ("hosts", None, None),
            Recipient::User { participant_id, name, .. } => {
                ("participant", Some(participant_id.clone()), Some(name.clone()))
            }
        };
        ChatView {
            id: message.id,
            from_participant_id: message.participant_id.clone(),
            from_name: message.name.clone(),
            from_role: message.role,
            mine: message.user_id == viewer_user_id,
            to,
            to_participant_id,
            to_name,
            body: if deleted { String::new() } else { message.body.clone() },
            sent_at: message.created_at,
            edited_at: message.edited_at,
            deleted,
            file: if deleted { None } else { message.file.as_ref().map(FileView::of) },
        }
    }
}

/// A shared file in a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileView {
    pub id: String,
    pub name: String,
    pub size: i64,
    pub content_type: String,
    /// A safe raster image: the client may show it inline from `preview_url`.
    pub preview: bool,
}

impl FileView {
    pub fn of(file: &ChatFile) -> FileView {
        FileView {
            id: file.id.clone(),
            name: file.name.clone(),
            size: file.size,
            content_type: file.content_type.clone(),
            preview: crate::store::previewable(&file.content_type),
        }
    }
}

/// A poll as one participant sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PollView {
    pub id: String,
    pub question: String,
    pub options: Vec<String>,
    pub anonymous: bool,
    pub results: PollResults,
    pub closed: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// How many voted.
    pub voters: usize,
    /// Votes per option; `null` for whoever may not see results yet.
    pub counts: Option<Vec<u32>>,
    /// Names per option: hosts only, never for an anonymous poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voted_by: Option<Vec<Vec<String>>>,
    pub my_vote: Option<u32>,
}

impl PollView {
    pub fn of(poll: &Poll, viewer_user_id: &str, viewer_is_host: bool) -> PollView {
        let closed = poll.closed_at.is_some();
        let sees_counts = closed || viewer_is_host || poll.results == PollResults::Live;
        let counts = sees_counts.then(|| {
            let mut counts = vec![0u32; poll.options.len()];
            for v in &poll.votes {
                if let Some(c) = counts.get_mut(v.choice as usize) {
                    *c += 1;
                }
            }
            counts
        });
        let voted_by = (viewer_is_host && !poll.anonymous).then(|| {
            let mut names = vec![Vec::new(); poll.options.len()];
            for v in &poll.votes {
                if let Some(n) = names.get_mut(v.choice as usize) {
                    n.push(v.name.clone());
                }
            }
            names
        });
        PollView {
            id: poll.id.clone(),
            question: poll.question.clone(),
            options: poll.options.clone(),
            anonymous: poll.anonymous,
            results: poll.results,
            closed,
            created_by: poll.created_by.clone(),
            created_at: poll.created_at,
            voters: poll.votes.len(),
            counts,
            voted_by,
            my_vote: poll.votes.iter().find(|v| v.user_id == viewer_user_id).map(|v| v.choice),
        }
    }
}
