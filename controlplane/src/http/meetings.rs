//! `POST /meetings`, `GET /meetings/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::json::JsonBody;
use crate::ids;
use crate::store::{Meeting, MeetingSettings, Role, now};
use crate::tokens::TokenRequest;

/// Display names are shown to everyone in the meeting.
const NAME_LEN_MAX: usize = 64;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreateMeeting {
    pub settings: MeetingSettings,
    pub recording_enabled: bool,
    /// The creator's display name, written into the host token.
    pub host_name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CreatedMeeting {
    pub meeting: Meeting,
    /// Admits the creator as host. Keep it: it is the only way to end or record the meeting.
    pub host_token: String,
    /// Where people join.
    pub join_url: String,
}

#[derive(Debug, Serialize)]
pub struct MeetingView {
    #[serde(flatten)]
    pub meeting: Meeting,
    pub join_url: String,
    pub active_participants: usize,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<CreateMeeting>,
) -> Result<(StatusCode, Json<CreatedMeeting>), ApiError> {
    body.settings.validate().map_err(ApiError::bad_request)?;
    let host_name = display_name(body.host_name.as_deref().unwrap_or("Host"))?;
    let meeting = Meeting {
        id: ids::meeting_id(),
        host_id: ids::prefixed("u"),
        created_at: now(),
        ended_at: None,
        settings: body.settings,
        recording_enabled: body.recording_enabled,
    };
    state.store.create_meeting(&meeting).await?;
    metrics::counter!("sluice_meetings_created_total").increment(1);
    let host_token = state.tokens.mint(&TokenRequest {
        meeting_id: meeting.id.clone(),
        user_id: meeting.host_id.clone(),
        name: host_name,
        role: Role::Host,
        ttl_secs: None,
    });
    let join_url = state.join_url(&meeting.id);
    tracing::info!(meeting = %meeting.id, "meeting created");
    Ok((StatusCode::CREATED, Json(CreatedMeeting { meeting, host_token, join_url })))
}

pub async fn get(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<MeetingView>, ApiError> {
    let meeting = find(&state, &id).await?;
    let active_participants = state.store.participants(&meeting.id, true).await?.len();
    let join_url = state.join_url(&meeting.id);
    Ok(Json(MeetingView { meeting, join_url, active_participants }))
}

/// The meeting, or a 404 that says which id was not found.
pub async fn find(state: &AppState, id: &str) -> Result<Meeting, ApiError> {
    let missing = || ApiError::not_found(format!("meeting {id:?} does not exist"));
    if !ids::is_meeting_id(id) {
        return Err(missing());
    }
    state.store.meeting(id).await?.ok_or_else(missing)
}

/// Trims, and refuses empty, over-long or control-character names.
pub fn display_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("the name is empty"));
    }
    if name.chars().count() > NAME_LEN_MAX {
        return Err(ApiError::bad_request(format!("the name is longer than {NAME_LEN_MAX} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("the name contains control characters"));
    }
    Ok(name.to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinMeeting {
    /// Display name shown to the others.
    pub name: String,
}

#[derive(Debug, Serialize)]
pub struct JoinTicket {
    pub meeting_id: String,
    pub participant_token: String,
    pub role: Role,
    /// The WebSocket to send `join` to with this token.
    pub signaling_url: String,
}

/// `POST /meetings/{id}/join {name}`: a participant token for an open meeting.
pub async fn join(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<JoinMeeting>,
) -> Result<Json<JoinTicket>, ApiError> {
    let meeting = find(&state, &id).await?;
    if meeting.ended_at.is_some() {
        return Err(ApiError::gone(format!("meeting {id:?} has ended")));
    }
    let name = display_name(&body.name)?;
    let participant_token = state.tokens.mint(&TokenRequest {
        meeting_id: meeting.id.clone(),
        user_id: ids::prefixed("u"),
        name,
        role: Role::Participant,
        ttl_secs: None,
    });
    let signaling_url = format!("{}/signaling", state.public_url.replacen("http", "ws", 1));
    Ok(Json(JoinTicket { meeting_id: meeting.id, participant_token, role: Role::Participant, signaling_url }))
}

/// `DELETE /meetings/{id}` with the host's token as `Authorization: Bearer`: ends the meeting for everyone.
pub async fn end(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<StatusCode, ApiError> {
    let meeting = find(&state, &id).await?;
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("send the host token as Authorization: Bearer <token>"))?;
    let claims = state.tokens.verify(token.trim(), &meeting.id).map_err(|e| ApiError::unauthorized(e.to_string()))?;
    if !claims.grants.host {
        return Err(ApiError::forbidden("only a host token can end the meeting"));
    }
    if !state.store.end_meeting(&meeting.id, now()).await? {
        return Err(ApiError::gone(format!("meeting {id:?} has ended already")));
    }
    let left = state.store.all_participants_left(&meeting.id, now()).await?;
    state.signaling.end_meeting(&meeting.id, "the host ended the meeting").await;
    tracing::info!(meeting = %meeting.id, left, "meeting ended");
    Ok(StatusCode::NO_CONTENT)
}
