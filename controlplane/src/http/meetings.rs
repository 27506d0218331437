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
