//! The signaling protocol, version 1: JSON text messages over a WebSocket, each an object with a `type`.
//! `docs/signaling.md` describes it; `docs/schemas/signaling/*.json` hold a JSON Schema for every message, and
//! `controlplane/tests/signaling.rs` checks every message of a session against them.

mod breakouts;
mod chat;

use serde::{Deserialize, Serialize};

pub use breakouts::*;
pub use chat::*;

use crate::store::{PollResults, Role};
use crate::tokens::Grants;

/// The protocol version a client names in `join.v`.
pub const PROTOCOL_VERSION: u32 = 1;
/// The largest message either side sends (an offer for a big meeting is the largest).
pub const MESSAGE_LEN_MAX: usize = 512 * 1024;

/// WebSocket close codes the server uses (4000-4999 are the application's, RFC 6455 section 7.4.2).
pub mod close {
    /// A message was not understood and the session cannot go on (the first message was not `join`, or the
    /// protocol version is not supported).
    pub const PROTOCOL: u16 = 4000;
    /// The token is missing, malformed, expired, not yet valid, or for another meeting.
    pub const BAD_TOKEN: u16 = 4001;
    /// The token is valid but does not allow this (a viewer asking to publish at join).
    pub const FORBIDDEN: u16 = 4003;
    /// No such meeting.
    pub const NO_MEETING: u16 = 4004;
    /// No `join` within the join timeout, or no pong to the server's pings: the connection looks dead.
    pub const TIMEOUT: u16 = 4008;
    /// The meeting has `max_participants` connected already.
    pub const FULL: u16 = 4009;
    /// The same user joined again from another connection.
    pub const REPLACED: u16 = 4010;
    /// The meeting has ended.
    pub const ENDED: u16 = 4011;
    /// A host did not admit this person from the waiting room.
    pub const DENIED: u16 = 4013;
    /// A host removed this person: their user id is refused by this meeting from then on.
    pub const REMOVED: u16 = 4014;
    /// The meeting is locked: no new joins except hosts.
    pub const LOCKED: u16 = 4015;
    /// Negotiation failed: several answers in a row could not be used (the reason quotes the last problem).
    pub const NEGOTIATION: u16 = 4016;
    /// The connection has used up its media sections (closed ones stay in every offer): join again on a new
    /// connection, which starts with only the live ones.
    pub const RENEW: u16 = 4012;
    /// Too many messages, too fast, or a client too slow to read what we send.
    pub const RATE_LIMITED: u16 = 4029;
    /// The server could not place the participant on a media worker.
    pub const UNAVAILABLE: u16 = 4503;
}

/// A media source a participant publishes. One track per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Microphone,
    Camera,
    Screen,
}

impl Source {
    pub fn is_audio(self) -> bool {
        self == Source::Microphone
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Microphone => "microphone",
            Source::Camera => "camera",
            Source::Screen => "screen",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
}

impl VideoCodec {
    pub fn codec(self) -> sluice_dataplane::packet::codec::Codec {
        use sluice_dataplane::packet::codec::Codec;
        match self {
            VideoCodec::Vp8 => Codec::Vp8,
            VideoCodec::Vp9 => Codec::Vp9,
            VideoCodec::H264 => Codec::H264,
        }
    }
}

/// What a browser sends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// The first message: which meeting, with what token, publishing what.
    Join {
        v: u32,
        meeting_id: String,
        token: String,
        #[serde(default)]
        publish: Vec<Source>,
        /// The codec to publish video in (offered first in publish sections); VP8 when absent.
        #[serde(default)]
        video_codec: Option<VideoCodec>,
    },
    /// The answer to the offer with this revision.
    Answer { revision: u64, sdp: String },
    /// A trickled ICE candidate of the browser (`null`: end of candidates).
    Candidate {
        candidate: Option<String>,
        #[serde(default)]
        sdp_mid: Option<String>,
    },
    /// Start publishing a source: the server answers with an offer that has a section for it.
    Publish { source: Source },
    /// Stop publishing a source.
    Unpublish { source: Source },
    /// Mark a published source muted or not (the media keeps flowing; others show the state).
    Mute { source: Source, muted: bool },
    /// Receive this simulcast layer (0: lowest quality) of a track: the best layer being sent up to it, switched
    /// at a keyframe. A client asks for what its tile shows: the lowest layer for a thumbnail.
    SetLayer { track_id: String, layer: u8 },
    /// The host ends the meeting for everyone.
    EndMeeting {},
    /// A host lets one person in from the waiting room.
    Admit { participant_id: String },
    /// A host lets everyone waiting in.
    AdmitAll {},
    /// A host turns one waiting person away (their socket closes with 4013).
    Deny { participant_id: String },
    /// A host stops someone's source: the server stops forwarding it at once, and they cannot unmute it until a
    /// host asks them to (`ask_unmute`) and they accept.
    MuteParticipant { participant_id: String, source: Source },
    /// A host asks someone to unmute a source a host stopped; they accept by unmuting (`mute` with false).
    AskUnmute { participant_id: String, source: Source },
    /// A host stops every microphone but the hosts'.
    MuteAll {},
    /// A host removes someone: disconnected, and their user id refused by this meeting from then on.
    RemoveParticipant { participant_id: String },
    /// A host changes someone's role (`host` hands the host role over; the host becomes a co-host).
    SetRole { participant_id: String, role: Role },
    /// A host changes what someone may publish or whether they may chat.
    SetGrants { participant_id: String, grants: GrantsChange },
    /// A host sends someone back to the waiting room.
    SendToWaitingRoom { participant_id: String },
    /// A host locks or unlocks the meeting (locked: no new joins but hosts).
    Lock { locked: bool },
    /// Raise or lower one's own hand.
    RaiseHand { raised: bool },
    /// A host lowers someone's hand, or everyone's without `participant_id`.
    LowerHands {
        #[serde(default)]
        participant_id: Option<String>,
    },
    /// A short-lived reaction from the fixed set (`REACTIONS`).
    React { emoji: String },
    /// A chat message to everyone (`to` absent), to the hosts (`"hosts"`) or to one participant (their id).
    ChatSend {
        body: String,
        #[serde(default)]
        to: Option<String>,
    },
    /// The author changes their message.
    ChatEdit { message_id: i64, body: String },
    /// The author, or a host, deletes a message.
    ChatDelete { message_id: i64 },
    /// A host sets who may chat.
    ChatMode { mode: ChatMode },
    /// A host starts a poll.
    PollCreate {
        question: String,
        options: Vec<String>,
        #[serde(default)]
        anonymous: bool,
        #[serde(default = "live_results")]
        results: PollResults,
    },
    /// Vote for an option (its index), or change one's vote while the poll is open.
    PollVote { poll_id: String, option: u32 },
    /// A host closes a poll: everyone sees the results.
    PollClose { poll_id: String },
    /// A host creates breakout rooms: named, or `count` of them ("Room 1", ...). Replaces closed ones.
    BreakoutCreate {
        #[serde(default)]
        rooms: Vec<String>,
        #[serde(default)]
        count: Option<u32>,
    },
    /// A host assigns someone present to a breakout room (`null`: the main room); while rooms are open it moves
    /// them at once.
    BreakoutAssign { participant_id: String, room_id: Option<String> },
    /// A host assigns everyone present but the hosts, evenly and at random.
    BreakoutAssignRandom {},
    /// A host opens the rooms: everyone assigned moves.
    BreakoutOpen {
        #[serde(default)]
        duration_secs: Option<u32>,
        #[serde(default)]
        allow_return: bool,
        #[serde(default)]
        self_select: bool,
        #[serde(default)]
        countdown_secs: Option<u32>,
    },
    /// A host adds time to the rooms' timer.
    BreakoutExtend { secs: u32 },
    /// A host closes the rooms: after the countdown, everyone is back in the main room.
    BreakoutClose {},
    /// A host sends a message to every room.
    BreakoutBroadcast { text: String },
    /// Go to a room (`"main"` to return): hosts anywhere; others as the open rooms allow.
    BreakoutJoin { room_id: String },
    /// In a breakout room: ask the hosts for help.
    AskHelp {},
    /// A summary of the browser's `getStats()`, every 10 s, for analytics only (`docs/analytics.md`).
    Stats {
        #[serde(default)]
        ttff_ms: Option<f64>,
        #[serde(default)]
        candidate: Option<crate::analytics::stats::Candidate>,
        #[serde(default)]
        tracks: Vec<crate::analytics::stats::TrackStats>,
    },
    /// What the server knows of this participant's downlink now: answered with `transport` (at most 4 a second).
    GetTransport {},
    /// Leave now (the socket closing does the same).
    Leave {},
    /// Keep-alive; answered with `pong` carrying the same nonce.
    Ping {
        #[serde(default)]
        nonce: Option<u64>,
    },
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome {
        v: u32,
        meeting_id: String,
        participant_id: String,
        name: String,
        role: Role,
        grants: Grants,
        /// Everyone else in the meeting, with what they publish.
        participants: Vec<ParticipantInfo>,
        /// TURN servers with a short-lived credential, for `RTCPeerConnection`'s `iceServers` (empty when the
        /// deployment has no relay).
        ice_servers: Vec<sluice_turn::auth::IceServer>,
        /// The meeting as the participant sees it: title, lock, whether to start muted, raised hands.
        meeting: Box<MeetingState>,
    },
    Offer {
        revision: u64,
        sdp: String,
        /// What each media section of the SDP carries, by MID.
        sections: Vec<SectionInfo>,
    },
    /// One of the server's ICE candidates (`null`: no more).
    Candidate {
        candidate: Option<String>,
        sdp_mid: String,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: String,
        reason: LeaveReason,
    },
    TrackAdded {
        participant_id: String,
        track: TrackInfo,
    },
    TrackRemoved {
        participant_id: String,
        track_id: String,
    },
    TrackMuted {
        participant_id: String,
        track_id: String,
        muted: bool,
    },
    /// The layer of a track this participant receives changed (`layer`: 0 lowest), or the track is paused
    /// (`layer` null) because even its lowest layer does not fit the participant's bandwidth; `reason` is
    /// `bandwidth`, `requested` or `publisher_paused`.
    LayerChanged {
        track_id: String,
        layer: Option<u8>,
        reason: &'static str,
    },
    /// Media connectivity of this participant: `connected` once DTLS-SRTP is up.
    Connection {
        state: ConnectionState,
    },
    MeetingEnded {
        reason: String,
    },
    /// Instead of `welcome`: this person waits until a host admits them (then `welcome` follows) or denies them
    /// (the socket closes with 4013).
    Waiting {
        meeting_id: String,
        participant_id: String,
        name: String,
        /// The meeting's title, when it has one.
        title: Option<String>,
    },
    /// To hosts: everyone in the waiting room, in order of arrival; sent when it changes and when a host joins
    /// while someone waits.
    WaitingList {
        waiting: Vec<WaitingInfo>,
    },
    /// To the participant: a host stopped this source (the server no longer forwards it); it stays stopped
    /// until a host asks to unmute and the participant accepts.
    MutedByHost {
        source: Source,
        by: String,
    },
    /// To the participant: a host asks them to unmute this source; they accept with `mute` (false).
    UnmuteRequested {
        source: Source,
        by: String,
    },
    /// Someone's role or grants changed (to everyone; the grants matter to the one named).
    RoleChanged {
        participant_id: String,
        role: Role,
        grants: Grants,
    },
    /// Raised hands, in the order they were raised (to everyone, on every change).
    Hands {
        raised: Vec<String>,
    },
    Reaction {
        participant_id: String,
        emoji: String,
    },
    /// The meeting was locked or unlocked, and by whom.
    MeetingLocked {
        locked: bool,
        by: String,
    },
    /// Right after `welcome`: the newest messages this participant may see (oldest first) and the polls.
    ChatHistory {
        messages: Vec<ChatView>,
        /// Older messages exist: page with `GET /meetings/{id}/chat?before=<oldest id>`.
        has_more: bool,
        polls: Vec<PollView>,
    },
    /// A new message.
    Chat {
        message: Box<ChatView>,
    },
    /// A message was edited or deleted.
    ChatUpdated {
        message: Box<ChatView>,
    },
    /// A host changed who may chat.
    ChatMode {
        mode: ChatMode,
        by: String,
    },
    /// A poll was created, voted on or closed.
    Poll {
        poll: Box<PollView>,
    },
    /// The breakout rooms (hosts: with who is in each and the pending assignments).
    Breakouts {
        #[serde(flatten)]
        state: Box<BreakoutsView>,
    },
    /// To the participant: the server moved them to another room; the people here replace the previous list.
    RoomChanged {
        room_id: String,
        room_name: String,
        participants: Vec<ParticipantInfo>,
        by: String,
    },
    /// The breakout rooms' timer: when it ends, and whether this is the warning.
    BreakoutTimer {
        ends_at: chrono::DateTime<chrono::Utc>,
        remaining_secs: u64,
        warning: bool,
    },
    /// The breakout rooms close: everyone returns to the main room in `seconds`.
    BreakoutsClosing {
        seconds: u32,
    },
    /// A host's message to every room.
    Broadcast {
        from: String,
        text: String,
    },
    /// To hosts: someone in a breakout room asks for help.
    HelpRequested {
        room_id: String,
        room_name: String,
        participant_id: String,
        name: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Pong {
        nonce: Option<u64>,
    },
    /// The answer to `get_transport`: the server's bandwidth estimate for sending to this participant and the
    /// rate its browser acknowledged, in bit/s (null before its first feedback), and whether its link has shown a
    /// limit (then the estimate, not what it asks for, decides its layers).
    Transport {
        estimate_bps: Option<u64>,
        acked_bps: Option<u64>,
        limited: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub participant_id: String,
    pub name: String,
    pub role: Role,
    pub tracks: Vec<TrackInfo>,
}

/// What `welcome` says about the meeting itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeetingState {
    pub title: Option<String>,
    pub locked: bool,
    /// Start with the microphone muted (the participant may unmute).
    pub join_muted: bool,
    /// Raised hands in the order raised.
    pub hands: Vec<String>,
    /// Sources this participant may not unmute until a host asks (a host muted them before they reconnected).
    pub held: Vec<Source>,
    /// Who may send chat messages.
    pub chat: ChatMode,
    /// The room they start in: `main`, or the breakout room they are assigned to while rooms are open.
    pub room_id: String,
    pub room_name: String,
}

/// A host's change to someone's grants: absent fields stay as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsChange {
    pub microphone: Option<bool>,
    pub camera: Option<bool>,
    pub screen: Option<bool>,
    pub chat: Option<bool>,
}

impl GrantsChange {
    pub fn apply(&self, grants: &mut Grants) {
        grants.microphone = self.microphone.unwrap_or(grants.microphone);
        grants.camera = self.camera.unwrap_or(grants.camera);
        grants.screen = self.screen.unwrap_or(grants.screen);
        grants.chat = self.chat.unwrap_or(grants.chat);
    }
}

/// The reactions a participant may send: a small fixed set, so nothing arbitrary is shown to everyone.
pub const REACTIONS: [&str; 8] = ["👍", "👏", "😂", "😮", "❤️", "🎉", "🤔", "👋"];

/// One person in the waiting room, as hosts see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitingInfo {
    pub participant_id: String,
    pub name: String,
    pub since: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    pub track_id: String,
    pub source: Source,
    pub kind: TrackKind,
    pub muted: bool,
    /// Quality layers the publisher sends (simulcast layers, or spatial layers of VP9 SVC; 1: one), lowest first;
    /// subscribers choose one with `set_layer`.
    pub layers: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Audio,
    Video,
}

/// One media section of an offer, from the browser's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SectionInfo {
    pub mid: String,
    pub role: SectionUse,
    /// `publish`: the source to send here. `subscribe`: the source of the track received here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_id: Option<String>,
    /// `publish` of a camera in a meeting with `video_svc`: the scalability mode to send in (WebRTC-SVC, e.g.
    /// `L3T3_KEY`: three spatial and three temporal layers), set on the sender after answering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scalability_mode: Option<&'static str>,
}

/// The scalability mode cameras publish in when a meeting asks for SVC: three spatial layers (1/4, 1/2 and full
/// resolution), three temporal layers, upper spatial layers predicted from lower ones only at keyframes, so a
/// subscriber can take fewer.
pub const SVC_MODE: &str = "L3T3_KEY";
/// Spatial layers in [`SVC_MODE`].
pub const SVC_SPATIAL_LAYERS: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionUse {
    /// The browser sends `source` here: set the transceiver to `sendonly` with that track before answering.
    Publish,
    /// The browser receives another participant's track here.
    Subscribe,
    /// No longer used (port 0).
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Connected,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// Sent `leave` or closed the socket.
    Left,
    /// Media consent expired or the signaling connection went silent.
    ConnectionLost,
    /// Joined again from another connection.
    Replaced,
    /// The host ended the meeting.
    MeetingEnded,
    /// A host removed them.
    Removed,
    /// A host sent them back to the waiting room.
    WaitingRoom,
    /// They moved to another (breakout) room.
    Moved,
}

/// Non-fatal errors: the message was refused, the session goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, an unknown `type`, a missing or unknown field, a wrong value.
    BadMessage,
    /// The SDP answer could not be used (the message says why).
    BadSdp,
    /// An answer to an offer that is not the outstanding one.
    StaleAnswer,
    /// The token's grants do not allow this.
    Forbidden,
    /// Already publishing that source, or not publishing it.
    BadState,
    /// A limit was reached (tracks, sections).
    Limit,
    /// The media server failed to do it; retrying may work.
    Internal,
    /// Too many of these messages too fast (chat): wait and send again.
    RateLimited,
    /// What the message names does not exist (a chat message, a poll, a recipient).
    NotFound,
}

fn live_results() -> PollResults {
    PollResults::Live
}

/// Parses one client message, with an error text that names what was wrong.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, String> {
    if text.len() > MESSAGE_LEN_MAX {
        return Err(format!("the message is longer than {MESSAGE_LEN_MAX} bytes"));
    }
    serde_json::from_str(text).map_err(|e| {
        // serde's text already names the field or variant ("unknown variant `x`, expected one of ...").
        let mut text = e.to_string();
        if text.contains("missing field `type`") {
            text = "every message needs a \"type\"".to_string();
        }
        text
    })
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
        ServerMessage::Error { code, message: message.into() }
    }
}
