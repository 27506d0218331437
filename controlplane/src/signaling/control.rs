//! Host controls as one type for both doors: a signaling message from a host's browser and an HTTP request with a
//! host token become the same [`Control`], executed by the meeting's room (`room/moderation.rs`), so a control
//! means the same thing, with the same checks, however it arrives.

use serde::Deserialize;

use super::protocol::{ChatMode, ClientMessage, ErrorCode, GrantsChange, Source};
use crate::store::Role;

/// One host action.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Control {
    Admit {
        participant_id: String,
    },
    AdmitAll,
    Deny {
        participant_id: String,
    },
    Mute {
        participant_id: String,
        source: Source,
    },
    AskUnmute {
        participant_id: String,
        source: Source,
    },
    MuteAll,
    Remove {
        participant_id: String,
    },
    SetRole {
        participant_id: String,
        role: Role,
    },
    SetGrants {
        participant_id: String,
        grants: GrantsChange,
    },
    SendToWaitingRoom {
        participant_id: String,
    },
    Lock {
        locked: bool,
    },
    LowerHands {
        participant_id: Option<String>,
    },
    ChatMode {
        mode: ChatMode,
    },
    /// Breakout rooms (`docs/breakouts.md`).
    BreakoutCreate {
        rooms: Vec<String>,
        count: Option<u32>,
    },
    /// Someone present, by participant id (`None`: the main room).
    BreakoutAssign {
        participant_id: String,
        room_id: Option<String>,
    },
    /// Anyone, by user id, present or not (the HTTP API's pre-assignment).
    BreakoutPreassign {
        user_id: String,
        room_id: Option<String>,
    },
    BreakoutRandom,
    BreakoutOpen {
        duration_secs: Option<u32>,
        allow_return: bool,
        self_select: bool,
        countdown_secs: Option<u32>,
    },
    BreakoutExtend {
        secs: u32,
    },
    BreakoutClose,
    BreakoutBroadcast {
        text: String,
    },
    End,
}

impl Control {
    /// The control a signaling message asks for, or the message back when it is none.
    pub fn from_message(message: ClientMessage) -> Result<Control, ClientMessage> {
        Ok(match message {
            ClientMessage::Admit { participant_id } => Control::Admit { participant_id },
            ClientMessage::AdmitAll {} => Control::AdmitAll,
            ClientMessage::Deny { participant_id } => Control::Deny { participant_id },
            ClientMessage::MuteParticipant { participant_id, source } => Control::Mute { participant_id, source },
            ClientMessage::AskUnmute { participant_id, source } => Control::AskUnmute { participant_id, source },
            ClientMessage::MuteAll {} => Control::MuteAll,
            ClientMessage::RemoveParticipant { participant_id } => Control::Remove { participant_id },
            ClientMessage::SetRole { participant_id, role } => Control::SetRole { participant_id, role },
            ClientMessage::SetGrants { participant_id, grants } => Control::SetGrants { participant_id, grants },
            ClientMessage::SendToWaitingRoom { participant_id } => Control::SendToWaitingRoom { participant_id },
            ClientMessage::Lock { locked } => Control::Lock { locked },
            ClientMessage::LowerHands { participant_id } => Control::LowerHands { participant_id },
            ClientMessage::EndMeeting {} => Control::End,
            ClientMessage::ChatMode { mode } => Control::ChatMode { mode },
            ClientMessage::BreakoutCreate { rooms, count } => Control::BreakoutCreate { rooms, count },
            ClientMessage::BreakoutAssign { participant_id, room_id } => {
                Control::BreakoutAssign { participant_id, room_id }
            }
            ClientMessage::BreakoutAssignRandom {} => Control::BreakoutRandom,
            ClientMessage::BreakoutOpen { duration_secs, allow_return, self_select, countdown_secs } => {
                Control::BreakoutOpen { duration_secs, allow_return, self_select, countdown_secs }
            }
            ClientMessage::BreakoutExtend { secs } => Control::BreakoutExtend { secs },
            ClientMessage::BreakoutClose {} => Control::BreakoutClose,
            ClientMessage::BreakoutBroadcast { text } => Control::BreakoutBroadcast { text },
            other => return Err(other),
        })
    }

    /// For logs and analytics events.
    pub fn name(&self) -> &'static str {
        match self {
            Control::Admit { .. } => "admit",
            Control::AdmitAll => "admit_all",
            Control::Deny { .. } => "deny",
            Control::Mute { .. } => "mute",
            Control::AskUnmute { .. } => "ask_unmute",
            Control::MuteAll => "mute_all",
            Control::Remove { .. } => "remove",
            Control::SetRole { .. } => "set_role",
            Control::SetGrants { .. } => "set_grants",
            Control::SendToWaitingRoom { .. } => "send_to_waiting_room",
            Control::Lock { .. } => "lock",
            Control::LowerHands { .. } => "lower_hands",
            Control::ChatMode { .. } => "chat_mode",
            Control::BreakoutCreate { .. } => "breakout_create",
            Control::BreakoutAssign { .. } | Control::BreakoutPreassign { .. } => "breakout_assign",
            Control::BreakoutRandom => "breakout_assign_random",
            Control::BreakoutOpen { .. } => "breakout_open",
            Control::BreakoutExtend { .. } => "breakout_extend",
            Control::BreakoutClose => "breakout_close",
            Control::BreakoutBroadcast { .. } => "breakout_broadcast",
            Control::End => "end",
        }
    }
}

/// Who asks: a host in the meeting, or an HTTP caller with a host token of the meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Member(String),
    Api { user_id: String, name: String, role: Role },
}

/// Why a control was refused; the message names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    pub code: ErrorCode,
    pub message: String,
}

impl ControlError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ControlError {
        ControlError { code, message: message.into() }
    }

    pub fn forbidden(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorCode::Forbidden, message)
    }

    /// An unknown or departed participant, or one not in the state the control needs.
    pub fn state(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorCode::BadState, message)
    }
}
