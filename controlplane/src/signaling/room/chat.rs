//! Chat and polls in a meeting's room (`docs/chat.md`). The room decides who may send what and who sees it: the
//! author, role and time come from the member, never from the message, and each copy goes only to those the
//! message's recipient rule lets read it. Every message is stored before anyone is told of it.

use std::time::Instant;

use super::super::control::ControlError;
use super::super::protocol::{
    CHAT_BODY_MAX, CHAT_HISTORY_MAX, ChatMode, ChatView, ErrorCode, POLL_OPTION_MAX, POLL_OPTIONS_MAX,
    POLL_OPTIONS_MIN, POLL_QUESTION_MAX, POLLS_MAX, PollView, ServerMessage,
};
use super::{Member, Room};
use crate::ids;
use crate::store::{
    ChatFile, ChatMessage, ChatQuery, MAIN_ROOM, NewChatMessage, Poll, PollResults, PollVote, Recipient, Role, now,
};

/// Chat messages, edits, deletions and votes: a burst of this many per participant, then `CHAT_RATE` a second.
pub(super) const CHAT_BURST: f64 = 10.0;
const CHAT_RATE: f64 = 2.0;

/// A chat request from a participant's socket or from the file upload API.
#[derive(Debug)]
pub struct ChatPost {
    pub body: String,
    /// `None`: everyone; `"hosts"`; or a participant id.
    pub to: Option<String>,
    pub file: Option<ChatFile>,
}

fn not_found(what: impl Into<String>) -> ControlError {
    ControlError::new(ErrorCode::NotFound, what)
}

fn bad(what: impl Into<String>) -> ControlError {
    ControlError::new(ErrorCode::BadMessage, what)
}

/// A text field of 1..=`max` characters, or the error naming `field` and the limit.
fn text(value: &str, field: &str, max: usize) -> Result<(), ControlError> {
    if value.trim().is_empty() {
        return Err(bad(format!("{field} is empty")));
    }
    let len = value.chars().count();
    if len > max {
        return Err(ControlError::new(ErrorCode::Limit, format!("{field} has {len} characters; at most {max}")));
    }
    Ok(())
}

impl Member {
    /// Takes one token from the chat bucket, or says how long to wait.
    pub(super) fn chat_token(&mut self) -> Result<(), ControlError> {
        let (tokens, at) = self.chat;
        let now = Instant::now();
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * CHAT_RATE).min(CHAT_BURST);
        if tokens < 1.0 {
            self.chat = (tokens, now);
            return Err(ControlError::new(
                ErrorCode::RateLimited,
                format!(
                    "at most {CHAT_RATE} chat messages a second after a burst of {CHAT_BURST}; wait and send again"
                ),
            ));
        }
        self.chat = (tokens - 1.0, now);
        Ok(())
    }
}

impl Room {
    /// Sends a joiner the history they may see and the polls, right after `welcome`.
    pub(super) async fn send_history(&mut self, id: &str) {
        let Some(m) = self.members.iter().find(|m| m.id == id && m.role != Role::Recorder) else { return };
        let query = ChatQuery {
            meeting_id: self.ctx.meeting_id.clone(),
            room: m.room.clone(),
            viewer_user_id: m.user_id.clone(),
            viewer_is_host: m.grants.host,
            before: None,
            limit: CHAT_HISTORY_MAX + 1,
        };
        let in_main = m.room == MAIN_ROOM;
        let mut page = match self.ctx.store.chat_history(&query).await {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(meeting = %self.ctx.meeting_id, error = %e, "cannot read the chat history");
                Vec::new()
            }
        };
        let has_more = page.len() > CHAT_HISTORY_MAX as usize;
        page.truncate(CHAT_HISTORY_MAX as usize);
        page.reverse();
        if self.load_polls().await.is_err() {
            return;
        }
        let Some(m) = self.members.iter().find(|m| m.id == id) else { return };
        let messages = page.iter().map(|msg| ChatView::of(msg, &m.user_id)).collect();
        // Polls run in the main room.
        let polls = match in_main {
            true => self.polls.iter().flatten().map(|p| PollView::of(p, &m.user_id, m.grants.host)).collect(),
            false => Vec::new(),
        };
        m.send(ServerMessage::ChatHistory { messages, has_more, polls });
    }

    /// Sends a chat message for member `id` (from signaling) and tells whoever may see it.
    pub(super) async fn chat_send(&mut self, id: &str, body: String, to: Option<String>) {
        if let Err(e) = self.post(id, ChatPost { body, to, file: None }, false).await {
            self.refuse(id, e.code, e.message);
        }
    }

    /// Checks and (unless `check_only`) stores and delivers a message from member `id`. The file upload API
    /// checks first, uploads, then posts: a refusal then costs no upload.
    pub(super) async fn post(
        &mut self,
        id: &str,
        post: ChatPost,
        check_only: bool,
    ) -> Result<Option<ChatMessage>, ControlError> {
        let mode = ChatMode::of(&self.ctx.settings);
        let author = self.members.iter().find(|m| m.id == id).ok_or_else(|| not_found("you are not in the meeting"))?;
        text(&post.body, "the message", CHAT_BODY_MAX)?;
        if mode == ChatMode::Off {
            return Err(ControlError::forbidden("chat is off in this meeting"));
        }
        if !author.grants.chat || author.role == Role::Recorder {
            return Err(ControlError::forbidden("you may not chat in this meeting (a host turned it off for you)"));
        }
        let recipient = match post.to.as_deref() {
            None | Some("") => Recipient::Everyone,
            Some("hosts") => Recipient::Hosts,
            Some(pid) => {
                let r = self
                    .members
                    .iter()
                    .find(|m| m.id == pid && m.role != Role::Recorder && m.room == author.room)
                    .ok_or_else(|| not_found(format!("no participant {pid:?} in this room")))?;
                if r.user_id == author.user_id {
                    return Err(bad("a private message needs someone else as its recipient"));
                }
                if mode == ChatMode::HostsOnly && !author.grants.host && !r.grants.host {
                    return Err(ControlError::forbidden(
                        "only hosts chat in this meeting: send to the hosts or to a host",
                    ));
                }
                Recipient::User { user_id: r.user_id.clone(), participant_id: r.id.clone(), name: r.name.clone() }
            }
        };
        if mode == ChatMode::HostsOnly && !author.grants.host && recipient == Recipient::Everyone {
            return Err(ControlError::forbidden("only hosts chat in this meeting: send to the hosts or to a host"));
        }
        // An upload pays at its check (before the bytes), not again when its message is posted.
        if check_only || post.file.is_none() {
            self.member(id).expect("author checked").chat_token()?;
        }
        if check_only {
            return Ok(None);
        }
        let author = self.members.iter().find(|m| m.id == id).expect("author checked");
        let message = NewChatMessage {
            meeting_id: self.ctx.meeting_id.clone(),
            room: author.room.clone(),
            user_id: author.user_id.clone(),
            participant_id: author.id.clone(),
            name: author.name.clone(),
            role: author.role,
            body: post.body,
            recipient,
            file_id: post.file.as_ref().map(|f| f.id.clone()),
            created_at: now(),
        };
        let stored = self.ctx.store.add_chat_message(&message).await.map_err(|e| {
            tracing::error!(meeting = %self.ctx.meeting_id, error = %e, "cannot store a chat message");
            ControlError::new(ErrorCode::Internal, "the message could not be stored; send it again")
        })?;
        metrics::counter!("sluice_chat_messages_total").increment(1);
        self.deliver(&stored, |message| ServerMessage::Chat { message: Box::new(message) });
        Ok(Some(stored))
    }

    /// Each member who may see `message` gets their copy.
    fn deliver(&self, message: &ChatMessage, wrap: impl Fn(ChatView) -> ServerMessage) {
        for m in self.members.iter().filter(|m| m.role != Role::Recorder && m.room == message.room) {
            if message.recipient.visible_to(&message.user_id, &m.user_id, m.grants.host) {
                m.send(wrap(ChatView::of(message, &m.user_id)));
            }
        }
    }

    /// A message of this room that member `id` can see, or not found.
    async fn visible_message(&self, id: &str, message_id: i64) -> Result<(ChatMessage, String, bool), ControlError> {
        let m = self.members.iter().find(|m| m.id == id).ok_or_else(|| not_found("you are not in the meeting"))?;
        let (user, host, room) = (m.user_id.clone(), m.grants.host, m.room.clone());
        let missing = || not_found(format!("no chat message {message_id} in this meeting"));
        let message = self
            .ctx
            .store
            .chat_message(message_id)
            .await
            .map_err(|e| ControlError::new(ErrorCode::Internal, format!("cannot read the message: {e}")))?
            .ok_or_else(missing)?;
        if message.meeting_id != self.ctx.meeting_id
            || message.room != room
            || message.deleted_at.is_some()
            || !message.recipient.visible_to(&message.user_id, &user, host)
        {
            return Err(missing());
        }
        Ok((message, user, host))
    }

    pub(super) async fn chat_edit(&mut self, id: &str, message_id: i64, body: String) -> Result<(), ControlError> {
        let (message, user, _) = self.visible_message(id, message_id).await?;
        if message.user_id != user {
            return Err(ControlError::forbidden("only its author can edit a message"));
        }
        // Editing is saying something: the same rules as sending.
        let m = self.members.iter().find(|m| m.id == id).expect("checked");
        if ChatMode::of(&self.ctx.settings) == ChatMode::Off {
            return Err(ControlError::forbidden("chat is off in this meeting"));
        }
        if !m.grants.chat {
            return Err(ControlError::forbidden("you may not chat in this meeting (a host turned it off for you)"));
        }
        if ChatMode::of(&self.ctx.settings) == ChatMode::HostsOnly && !m.grants.host {
            let to_a_host = match &message.recipient {
                Recipient::Hosts => true,
                Recipient::User { user_id, .. } => self.members.iter().any(|o| o.user_id == *user_id && o.grants.host),
                Recipient::Everyone => false,
            };
            if !to_a_host {
                return Err(ControlError::forbidden(
                    "only hosts chat in this meeting: you can edit what you sent to them",
                ));
            }
        }
        text(&body, "the message", CHAT_BODY_MAX)?;
        self.member(id).expect("checked").chat_token()?;
        let stored = self.ctx.store.edit_chat_message(message_id, &body, now()).await;
        if !matches!(stored, Ok(true)) {
            return Err(ControlError::new(ErrorCode::Internal, "the edit could not be stored"));
        }
        self.redeliver(message_id).await
    }

    pub(super) async fn chat_delete(&mut self, id: &str, message_id: i64) -> Result<(), ControlError> {
        let (message, user, host) = self.visible_message(id, message_id).await?;
        if message.user_id != user && !host {
            return Err(ControlError::forbidden("only its author or a host can delete a message"));
        }
        self.member(id).expect("checked").chat_token()?;
        let by = self.members.iter().find(|m| m.id == id).map(|m| m.name.clone()).unwrap_or_default();
        let stored = self.ctx.store.delete_chat_message(message_id, &by, now()).await;
        if !matches!(stored, Ok(true)) {
            return Err(ControlError::new(ErrorCode::Internal, "the deletion could not be stored"));
        }
        if let Some(file) = &message.file {
            self.delete_file(file).await;
        }
        self.redeliver(message_id).await
    }

    /// A message's file goes with it: the row first (no link is signed from then on), then the object.
    async fn delete_file(&self, file: &ChatFile) {
        if let Err(e) = self.ctx.store.delete_chat_file(&file.id, now()).await {
            tracing::error!(file = %file.id, error = %e, "cannot mark a chat file deleted");
            return;
        }
        if let Some(blobs) = &self.ctx.blobs {
            let (blobs, key) = (blobs.clone(), file.object_key.clone());
            tokio::spawn(async move {
                if let Err(e) = blobs.delete(&key).await {
                    tracing::warn!(key, error = %e, "cannot delete a chat file's object; retention will retry");
                }
            });
        }
    }

    /// Reads a changed message back and sends `chat_updated` to whoever may see it.
    async fn redeliver(&self, message_id: i64) -> Result<(), ControlError> {
        let message = self
            .ctx
            .store
            .chat_message(message_id)
            .await
            .ok()
            .flatten()
            .ok_or_else(|| ControlError::new(ErrorCode::Internal, "the changed message could not be read back"))?;
        self.deliver(&message, |message| ServerMessage::ChatUpdated { message: Box::new(message) });
        Ok(())
    }

    /// The room's polls, read from the store once per room life.
    async fn load_polls(&mut self) -> Result<(), ControlError> {
        if self.polls.is_none() {
            let polls = self.ctx.store.polls(&self.ctx.meeting_id, MAIN_ROOM).await.map_err(|e| {
                tracing::error!(meeting = %self.ctx.meeting_id, error = %e, "cannot read the polls");
                ControlError::new(ErrorCode::Internal, "the polls could not be read")
            })?;
            self.polls = Some(polls);
        }
        Ok(())
    }

    fn host_member(&self, id: &str, action: &str) -> Result<&Member, ControlError> {
        let m = self.members.iter().find(|m| m.id == id).ok_or_else(|| not_found("you are not in the meeting"))?;
        if !m.grants.host {
            return Err(ControlError::forbidden(format!("{action} needs the host grant")));
        }
        Ok(m)
    }

    pub(super) async fn poll_create(
        &mut self,
        id: &str,
        question: String,
        options: Vec<String>,
        anonymous: bool,
        results: PollResults,
    ) -> Result<(), ControlError> {
        let host = self.host_member(id, "creating a poll")?;
        if host.room != MAIN_ROOM {
            return Err(ControlError::state("polls run in the main room: return to it to create one"));
        }
        let created_by = host.name.clone();
        text(&question, "the question", POLL_QUESTION_MAX)?;
        if !(POLL_OPTIONS_MIN..=POLL_OPTIONS_MAX).contains(&options.len()) {
            return Err(bad(format!(
                "a poll has {POLL_OPTIONS_MIN} to {POLL_OPTIONS_MAX} options; got {}",
                options.len()
            )));
        }
        for (i, option) in options.iter().enumerate() {
            text(option, &format!("option {}", i + 1), POLL_OPTION_MAX)?;
        }
        self.load_polls().await?;
        if self.polls.as_ref().is_some_and(|p| p.len() >= POLLS_MAX) {
            return Err(ControlError::new(ErrorCode::Limit, format!("a meeting has at most {POLLS_MAX} polls")));
        }
        let poll = Poll {
            id: ids::prefixed("poll"),
            meeting_id: self.ctx.meeting_id.clone(),
            room: MAIN_ROOM.into(),
            question,
            options,
            anonymous,
            results,
            created_by,
            created_at: now(),
            closed_at: None,
            votes: Vec::new(),
        };
        self.ctx
            .store
            .create_poll(&poll)
            .await
            .map_err(|e| ControlError::new(ErrorCode::Internal, format!("the poll could not be stored: {e}")))?;
        metrics::counter!("sluice_polls_total").increment(1);
        let poll_id = poll.id.clone();
        self.polls.get_or_insert_default().push(poll);
        self.send_poll(&poll_id);
        Ok(())
    }

    pub(super) async fn poll_vote(&mut self, id: &str, poll_id: &str, choice: u32) -> Result<(), ControlError> {
        self.load_polls().await?;
        let m = self.members.iter().find(|m| m.id == id).ok_or_else(|| not_found("you are not in the meeting"))?;
        if m.role == Role::Recorder {
            return Err(ControlError::forbidden("the recorder does not vote"));
        }
        if m.room != MAIN_ROOM {
            return Err(ControlError::state("polls run in the main room"));
        }
        let (user_id, name) = (m.user_id.clone(), m.name.clone());
        let poll = self.poll(poll_id)?;
        if poll.closed_at.is_some() {
            return Err(ControlError::state("the poll is closed"));
        }
        if choice as usize >= poll.options.len() {
            return Err(bad(format!("the poll has options 0 to {}; got {choice}", poll.options.len() - 1)));
        }
        if poll.votes.iter().any(|v| v.user_id == user_id && v.choice == choice) {
            return Err(ControlError::state(format!("you already voted for option {choice}")));
        }
        self.member(id).expect("checked").chat_token()?;
        let vote = PollVote { user_id: user_id.clone(), name, choice, voted_at: now() };
        self.ctx
            .store
            .vote(poll_id, &vote)
            .await
            .map_err(|e| ControlError::new(ErrorCode::Internal, format!("the vote could not be stored: {e}")))?;
        let poll = self.poll_mut(poll_id)?;
        poll.votes.retain(|v| v.user_id != user_id);
        poll.votes.push(vote);
        self.send_poll(poll_id);
        Ok(())
    }

    pub(super) async fn poll_close(&mut self, id: &str, poll_id: &str) -> Result<(), ControlError> {
        self.host_member(id, "closing a poll")?;
        self.load_polls().await?;
        if self.poll(poll_id)?.closed_at.is_some() {
            return Err(ControlError::state("the poll is closed already"));
        }
        let at = now();
        self.ctx
            .store
            .close_poll(poll_id, at)
            .await
            .map_err(|e| ControlError::new(ErrorCode::Internal, format!("the poll could not be closed: {e}")))?;
        self.poll_mut(poll_id)?.closed_at = Some(at);
        self.send_poll(poll_id);
        Ok(())
    }

    fn poll(&self, poll_id: &str) -> Result<&Poll, ControlError> {
        self.polls
            .iter()
            .flatten()
            .find(|p| p.id == poll_id)
            .ok_or_else(|| not_found(format!("no poll {poll_id:?} in this meeting")))
    }

    fn poll_mut(&mut self, poll_id: &str) -> Result<&mut Poll, ControlError> {
        self.polls
            .iter_mut()
            .flatten()
            .find(|p| p.id == poll_id)
            .ok_or_else(|| not_found(format!("no poll {poll_id:?} in this meeting")))
    }

    /// Everyone gets the poll as they may see it (counts, names, their own vote).
    fn send_poll(&self, poll_id: &str) {
        let Ok(poll) = self.poll(poll_id) else { return };
        for m in self.members.iter().filter(|m| m.role != Role::Recorder && m.room == MAIN_ROOM) {
            m.send(ServerMessage::Poll { poll: Box::new(PollView::of(poll, &m.user_id, m.grants.host)) });
        }
    }
}
