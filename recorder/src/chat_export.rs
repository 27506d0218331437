//! A recording's chat, exported beside it: the public messages said while it ran, as a readable `chat.txt`
//! (`[00:01:23] Ann: hello`, times from the recording's start) and as `chat.json`. Private messages and messages
//! to the hosts are never exported (the store query selects public ones only).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_controlplane::store::ChatMessage;

/// Messages exported at most (a meeting's chat is rarely near it; the export stays bounded).
pub const EXPORT_MAX: u32 = 50_000;

#[derive(Debug, Serialize)]
struct Line<'a> {
    offset_ms: i64,
    sent_at: DateTime<Utc>,
    name: &'a str,
    role: &'a str,
    body: &'a str,
    edited: bool,
    /// The shared file's name, if the message carries one.
    file: Option<&'a str>,
}

/// The text and JSON files for messages said from `started` on.
pub fn render(messages: &[ChatMessage], started: DateTime<Utc>) -> (String, Vec<u8>) {
    let mut text = String::new();
    let mut lines = Vec::with_capacity(messages.len());
    for m in messages {
        let offset_ms = (m.created_at - started).num_milliseconds().max(0);
        let secs = offset_ms / 1000;
        let file = m.file.as_ref().map(|f| f.name.as_str());
        // One line per message: a newline in a body would let it forge the next line's time and author.
        let body = m.body.replace(['\r', '\n', '\u{85}', '\u{2028}', '\u{2029}'], " ");
        let what = match file {
            Some(name) => format!("[file] {name}"),
            None => body,
        };
        text.push_str(&format!("[{:02}:{:02}:{:02}] {}: {}\n", secs / 3600, secs / 60 % 60, secs % 60, m.name, what));
        lines.push(Line {
            offset_ms,
            sent_at: m.created_at,
            name: &m.name,
            role: m.role.as_str(),
            body: &m.body,
            edited: m.edited_at.is_some(),
            file,
        });
    }
    let json = serde_json::to_vec_pretty(&lines).expect("chat lines serialise");
    (text, json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_controlplane::store::{MAIN_ROOM, Recipient, Role};

    fn message(name: &str, body: &str, at: DateTime<Utc>) -> ChatMessage {
        ChatMessage {
            id: 1,
            meeting_id: "m".into(),
            room: MAIN_ROOM.into(),
            user_id: name.into(),
            participant_id: "p".into(),
            name: name.into(),
            role: Role::Participant,
            body: body.into(),
            recipient: Recipient::Everyone,
            file: None,
            created_at: at,
            edited_at: None,
            deleted_at: None,
        }
    }

    #[test]
    fn times_are_relative_and_lines_cannot_be_forged() {
        let start = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z").unwrap().with_timezone(&Utc);
        let msgs = [
            message("Ann", "hello", start + chrono::Duration::seconds(83)),
            message("Bob", "hi\n[00:00:01] Ann: fake", start + chrono::Duration::seconds(3725)),
        ];
        let (text, json) = render(&msgs, start);
        assert_eq!(text, "[00:01:23] Ann: hello\n[01:02:05] Bob: hi [00:00:01] Ann: fake\n");
        let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(parsed[0]["offset_ms"], 83_000);
        assert_eq!(parsed[1]["body"], "hi\n[00:00:01] Ann: fake");
    }
}
