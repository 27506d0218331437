//! Breakout rooms over HTTP with a host token (`docs/breakouts.md`): the same controls as signaling's, run by
//! the meeting's room. Creating rooms and assigning people by user id also work before anyone has joined: they
//! are stored, and the meeting's room reads them when it starts.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::AppState;
use super::access::host_now;
use super::error::ApiError;
use super::json::JsonBody;
use super::meetings::find;
use super::moderation::refusal;
use crate::ids;
use crate::signaling::control::{Actor, Control};
use crate::signaling::protocol::{BREAKOUT_NAME_MAX, BREAKOUT_ROOMS_MAX, BreakoutRoomView, BreakoutsView, MAIN};
use crate::store::{BreakoutRoom, now};

/// `GET /meetings/{id}/breakouts` with a host token.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<BreakoutsView>, ApiError> {
    let meeting = find(&state, &id).await?;
    host_now(&state, &headers, &meeting, "see the breakout rooms").await?;
    if let Some(view) = state.signaling.breakouts(&meeting.id).await {
        return Ok(Json(view));
    }
    let rooms = state.store.breakout_rooms(&meeting.id).await?;
    let assignments = state.store.breakout_assignments(&meeting.id).await?;
    Ok(Json(BreakoutsView {
        open: false,
        rooms: rooms
            .into_iter()
            .map(|r| BreakoutRoomView { room_id: r.id, name: r.name, participants: Some(Vec::new()) })
            .collect(),
        main: Some(Vec::new()),
        assignments: Some(assignments.into_iter().collect()),
        ends_at: None,
        allow_return: false,
        self_select: false,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    rooms: Option<Vec<String>>,
    count: Option<u32>,
    participant_id: Option<String>,
    user_id: Option<String>,
    room_id: Option<String>,
    duration_secs: Option<u32>,
    #[serde(default)]
    allow_return: bool,
    #[serde(default)]
    self_select: bool,
    countdown_secs: Option<u32>,
    secs: Option<u32>,
    text: Option<String>,
}

/// `POST /meetings/{id}/breakouts/{action}` with a host token.
pub async fn control(
    State(state): State<Arc<AppState>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Body>,
) -> Result<StatusCode, ApiError> {
    let need =
        |v: Option<u32>, field: &str| v.ok_or_else(|| ApiError::bad_request(format!("this action needs \"{field}\"")));
    let control = match action.as_str() {
        "create" => Control::BreakoutCreate { rooms: body.rooms.unwrap_or_default(), count: body.count },
        "assign" => match (body.participant_id, body.user_id) {
            (Some(participant_id), None) => Control::BreakoutAssign { participant_id, room_id: body.room_id },
            (None, Some(user_id)) => Control::BreakoutPreassign { user_id, room_id: body.room_id },
            _ => return Err(ApiError::bad_request("assign needs either \"participant_id\" or \"user_id\"")),
        },
        "random" => Control::BreakoutRandom,
        "open" => Control::BreakoutOpen {
            duration_secs: body.duration_secs,
            allow_return: body.allow_return,
            self_select: body.self_select,
            countdown_secs: body.countdown_secs,
        },
        "extend" => Control::BreakoutExtend { secs: need(body.secs, "secs")? },
        "close" => Control::BreakoutClose,
        "broadcast" => Control::BreakoutBroadcast {
            text: body.text.ok_or_else(|| ApiError::bad_request("this action needs \"text\""))?,
        },
        other => return Err(ApiError::not_found(format!("no breakout action {other:?}"))),
    };
    let meeting = find(&state, &id).await?;
    let claims = host_now(&state, &headers, &meeting, control.name()).await?;
    if meeting.ended_at.is_some() {
        return Err(ApiError::gone(format!("meeting {id:?} has ended")));
    }
    if !state.signaling.is_live(&meeting.id) {
        return offline(&state, &meeting.id, control).await;
    }
    let actor = Actor::Api { user_id: claims.sub, name: claims.name, role: claims.role };
    state.signaling.control(&meeting.id, actor, control).await.map_err(refusal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Before anyone has joined: rooms and assignments are stored; the rest needs people in the meeting.
async fn offline(state: &AppState, meeting_id: &str, control: Control) -> Result<StatusCode, ApiError> {
    match control {
        Control::BreakoutCreate { rooms, count } => {
            let names: Vec<String> = match (rooms.is_empty(), count) {
                (false, None) => rooms.into_iter().map(|n| n.trim().to_string()).collect(),
                (true, Some(n)) if n as usize <= BREAKOUT_ROOMS_MAX => (1..=n).map(|i| format!("Room {i}")).collect(),
                (true, Some(_)) => Vec::new(),
                _ => return Err(ApiError::bad_request("give either the rooms' names or their count")),
            };
            if names.is_empty() || names.len() > BREAKOUT_ROOMS_MAX {
                return Err(ApiError::bad_request(format!("a meeting has 1 to {BREAKOUT_ROOMS_MAX} breakout rooms")));
            }
            if names
                .iter()
                .any(|n| n.is_empty() || n.chars().count() > BREAKOUT_NAME_MAX || n.chars().any(char::is_control))
            {
                return Err(ApiError::bad_request(format!(
                    "room names have 1 to {BREAKOUT_NAME_MAX} characters and no control characters"
                )));
            }
            let rooms: Vec<BreakoutRoom> =
                names.into_iter().map(|name| BreakoutRoom { id: ids::prefixed("b"), name }).collect();
            state.store.set_breakout_rooms(meeting_id, &rooms, now()).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Control::BreakoutPreassign { user_id, room_id } => {
            let room = room_id.filter(|r| r != MAIN);
            if let Some(r) = &room
                && !state.store.breakout_rooms(meeting_id).await?.iter().any(|b| b.id == *r)
            {
                return Err(ApiError::not_found(format!("no breakout room {r:?}")));
            }
            state.store.assign_breakout(meeting_id, &user_id, room.as_deref()).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::conflict("nobody is in the meeting: only creating rooms and assigning user ids work now")),
    }
}
