//! Running a meeting over HTTP with a host token (as LiveKit's RoomService): the participants roster, `PATCH` of
//! the meeting's title and settings, and every host control. Controls go to the meeting's room as the same
//! [`Control`] a host's browser sends over signaling, so both doors share one code path and one set of checks.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::access::host_now;
use super::error::ApiError;
use super::json::JsonBody;
use super::meetings::{MeetingView, find};
use crate::signaling::RosterEntry;
use crate::signaling::control::{Actor, Control, ControlError};
use crate::signaling::protocol::{ChatMode, ErrorCode, GrantsChange, Source};
use crate::store::{MeetingSettings, Participant, Role};

#[derive(Debug, Serialize)]
pub struct Roster {
    /// Who is connected now (and who waits), with role, grants, raised hand and muted sources.
    pub live: Vec<RosterEntry>,
    /// Every connection of the meeting, with `joined_at` and `left_at`, in order of joining.
    pub history: Vec<Participant>,
}

/// `GET /meetings/{id}/participants` with a host token.
pub async fn participants(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Roster>, ApiError> {
    let meeting = find(&state, &id).await?;
    host_now(&state, &headers, &meeting, "list the participants").await?;
    let live = state.signaling.roster(&meeting.id).await;
    let history = state.store.participants(&meeting.id, false).await?;
    Ok(Json(Roster { live, history }))
}

/// `PATCH /meetings/{id}` with a host token: `{"settings": {...}}` with any subset of the settings (title,
/// description, waiting room, lock, ...); the rest stay. Validated as a whole before it is stored.
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MeetingPatch>,
) -> Result<Json<MeetingView>, ApiError> {
    let mut meeting = find(&state, &id).await?;
    host_now(&state, &headers, &meeting, "change the meeting").await?;
    if meeting.ended_at.is_some() {
        return Err(ApiError::gone(format!("meeting {id:?} has ended")));
    }
    let Value::Object(changes) = body.settings else {
        return Err(ApiError::bad_request("settings must be an object of the settings to change"));
    };
    let mut merged = serde_json::to_value(&meeting.settings).map_err(ApiError::internal)?;
    for (key, value) in changes {
        merged[key] = value;
    }
    let settings: MeetingSettings =
        serde_json::from_value(merged).map_err(|e| ApiError::bad_request(format!("settings: {e}")))?;
    settings.validate().map_err(ApiError::bad_request)?;
    state.store.set_meeting_settings(&meeting.id, &settings).await?;
    state.signaling.settings_changed(&meeting.id, settings.clone()).await;
    meeting.settings = settings;
    let active_participants = state.store.participants(&meeting.id, true).await?.len();
    let join_url = state.join_url(&meeting.id);
    Ok(Json(MeetingView { meeting, join_url, active_participants }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeetingPatch {
    pub settings: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlBody {
    pub participant_id: Option<String>,
    pub source: Option<Source>,
    pub role: Option<Role>,
    pub locked: Option<bool>,
    pub grants: Option<GrantsChange>,
    pub mode: Option<ChatMode>,
}

/// `POST /meetings/{id}/control/{action}` and `POST /meetings/{id}/participants/{participant_id}/{action}` with a
/// host token: the same controls as signaling's, with the same errors.
pub async fn meeting_control(
    State(state): State<Arc<AppState>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ControlBody>,
) -> Result<StatusCode, ApiError> {
    let control = match action.as_str() {
        "admit" => Control::Admit { participant_id: need(body.participant_id, "participant_id")? },
        "admit-all" => Control::AdmitAll,
        "deny" => Control::Deny { participant_id: need(body.participant_id, "participant_id")? },
        "mute-all" => Control::MuteAll,
        "lock" => Control::Lock { locked: need(body.locked, "locked")? },
        "lower-hands" => Control::LowerHands { participant_id: body.participant_id },
        "chat-mode" => Control::ChatMode { mode: need(body.mode, "mode")? },
        other => return Err(ApiError::not_found(format!("no meeting control {other:?}"))),
    };
    run(&state, &id, &headers, control).await
}

pub async fn participant_control(
    State(state): State<Arc<AppState>>,
    Path((id, participant_id, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ControlBody>,
) -> Result<StatusCode, ApiError> {
    let control = match action.as_str() {
        "mute" => Control::Mute { participant_id, source: need(body.source, "source")? },
        "ask-unmute" => Control::AskUnmute { participant_id, source: need(body.source, "source")? },
        "remove" => Control::Remove { participant_id },
        "role" => Control::SetRole { participant_id, role: need(body.role, "role")? },
        "grants" => Control::SetGrants { participant_id, grants: need(body.grants, "grants")? },
        "waiting-room" => Control::SendToWaitingRoom { participant_id },
        "lower-hand" => Control::LowerHands { participant_id: Some(participant_id) },
        other => return Err(ApiError::not_found(format!("no participant control {other:?}"))),
    };
    run(&state, &id, &headers, control).await
}

fn need<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::bad_request(format!("this control needs \"{field}\"")))
}

async fn run(state: &AppState, id: &str, headers: &HeaderMap, control: Control) -> Result<StatusCode, ApiError> {
    let meeting = find(state, id).await?;
    let claims = host_now(state, headers, &meeting, control.name()).await?;
    if meeting.ended_at.is_some() {
        return Err(ApiError::gone(format!("meeting {id:?} has ended")));
    }
    // Locking and the chat mode need no one present: they are settings.
    if matches!(control, Control::Lock { .. } | Control::ChatMode { .. }) && !state.signaling.is_live(&meeting.id) {
        let mut settings = meeting.settings.clone();
        match control {
            Control::Lock { locked } => settings.locked = locked,
            Control::ChatMode { mode } => mode.apply(&mut settings),
            _ => {}
        }
        state.store.set_meeting_settings(&meeting.id, &settings).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let actor = Actor::Api { user_id: claims.sub, name: claims.name, role: claims.role };
    state.signaling.control(&meeting.id, actor, control).await.map_err(refusal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A control's refusal as an HTTP error: forbidden is 403, an unknown or departed participant 404, the rest 409.
pub(super) fn refusal(e: ControlError) -> ApiError {
    match e.code {
        ErrorCode::Forbidden => ApiError::forbidden(e.message),
        ErrorCode::BadState if e.message.contains("no participant") || e.message.contains("nobody") => {
            ApiError::not_found(e.message)
        }
        ErrorCode::BadMessage => ApiError::bad_request(e.message),
        ErrorCode::NotFound => ApiError::not_found(e.message),
        ErrorCode::RateLimited => {
            ApiError { status: StatusCode::TOO_MANY_REQUESTS, code: "rate_limited", message: e.message }
        }
        ErrorCode::Limit => ApiError::bad_request(e.message),
        ErrorCode::Internal => ApiError::internal(e.message),
        _ => ApiError::conflict(e.message),
    }
}
