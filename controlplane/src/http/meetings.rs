//! `POST /meetings`, `GET /meetings/{id}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access::{Caller, bearer, host_now};
use super::error::ApiError;
use super::json::JsonBody;
use crate::apikeys::Scope;
use crate::config::{CreatePolicy, JoinPolicy};
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
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateMeeting>,
) -> Result<(StatusCode, Json<CreatedMeeting>), ApiError> {
    let creator = may_create(&state, &caller, &headers)?;
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
    tracing::info!(meeting = %meeting.id, by = %creator, source = %caller.source, "meeting created");
    Ok((StatusCode::CREATED, Json(CreatedMeeting { meeting, host_token, join_url })))
}

/// Whether this caller may create a meeting under `access.create_meetings`; who it is, for the log.
fn may_create(state: &AppState, caller: &Caller, headers: &HeaderMap) -> Result<String, ApiError> {
    match state.policy.access.create_meetings {
        CreatePolicy::Anyone => Ok("anyone".into()),
        CreatePolicy::ApiKey => Ok(format!("key {}", caller.key_with(Scope::CreateMeetings)?.id)),
        CreatePolicy::CreatorToken => {
            if caller.presents_key() {
                return Ok(format!("key {}", caller.key_with(Scope::CreateMeetings)?.id));
            }
            let token = bearer(headers).ok_or_else(|| {
                ApiError::unauthorized(
                    "creating meetings needs a creator token or an API key with the create_meetings scope, as \
                     Authorization: Bearer <credential>",
                )
            })?;
            let claims = state
                .tokens
                .verify_creator(token)
                .map_err(|e| ApiError::unauthorized(format!("the creator token is refused: {e}")))?;
            Ok(format!("creator {}", claims.sub))
        }
    }
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<MeetingView>, ApiError> {
    // Where only invited people join, only they (and applications) read a meeting, checked before the store is
    // asked: knowing an id tells nothing, not even whether it exists.
    if state.policy.access.join_by_link == JoinPolicy::TokenOnly {
        if caller.presents_key() {
            caller.key_with(Scope::MintTokens)?;
        } else {
            let token = bearer(&headers).unwrap_or_default();
            state.tokens.verify(token, &id).map_err(|_| {
                ApiError::unauthorized(
                    "joining by the meeting's link alone is turned off on this server: ask the organiser for an \
                     invitation link",
                )
            })?;
        }
    }
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

/// `POST /meetings/{id}/join {name}`: a participant token for an open meeting. Under
/// `access.join_by_link = "token_only"` only an application with a `mint_tokens` key may ask; under
/// `"waiting_room"` the token admits to the waiting room first.
pub async fn join(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<JoinMeeting>,
) -> Result<Json<JoinTicket>, ApiError> {
    // A key, where the policy looks at keys, must be a valid one with the scope.
    if state.policy.access.join_by_link != JoinPolicy::Anyone && caller.presents_key() {
        caller.key_with(Scope::MintTokens)?;
    }
    if state.policy.access.join_by_link == JoinPolicy::TokenOnly && !caller.presents_key() {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "join_by_link_disabled",
            message: "this server admits only people invited with a token: joining by the meeting's link \
                          alone is turned off (access.join_by_link = \"token_only\"); ask the organiser for an \
                          invitation link"
                .into(),
        });
    }
    let meeting = find(&state, &id).await?;
    if meeting.ended_at.is_some() {
        return Err(ApiError::gone(format!("meeting {id:?} has ended")));
    }
    let name = display_name(&body.name)?;
    let request = TokenRequest {
        meeting_id: meeting.id.clone(),
        user_id: ids::prefixed("u"),
        name,
        role: Role::Participant,
        ttl_secs: None,
    };
    // Under the waiting-room policy a link admits to the waiting room; an application's key admits straight in.
    let participant_token = if caller.presents_key() {
        state.tokens.mint(&request)
    } else {
        state.tokens.mint_link(&request, state.policy.access.join_by_link == JoinPolicy::WaitingRoom)
    };
    let signaling_url = state.signaling_url();
    Ok(Json(JoinTicket { meeting_id: meeting.id, participant_token, role: Role::Participant, signaling_url }))
}

/// Tokens live at most this long, whatever is asked.
const TOKEN_TTL_MAX_SECS: u64 = 30 * 24 * 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintToken {
    /// Display name shown to the others.
    pub name: String,
    /// `host`, `participant` (the default) or `viewer`.
    #[serde(default)]
    pub role: Option<Role>,
    /// The application's id for this person (`sub`); a random one when absent.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Lifetime; the configured one when absent, at most 30 days.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct MintedToken {
    pub meeting_id: String,
    pub token: String,
    pub role: Role,
    pub user_id: String,
    pub signaling_url: String,
    /// Opens the meeting in the web client with this token (the token rides in the fragment, which browsers
    /// do not send to servers).
    pub join_url: String,
}

/// `POST /meetings/{id}/tokens` with a `mint_tokens` key: a token for one person, as the application decides.
pub async fn mint(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<MintToken>,
) -> Result<(StatusCode, Json<MintedToken>), ApiError> {
    let key = caller.key_with(Scope::MintTokens)?;
    let meeting = find(&state, &id).await?;
    if meeting.ended_at.is_some() {
        return Err(ApiError::gone(format!("meeting {id:?} has ended")));
    }
    let name = display_name(&body.name)?;
    let role = body.role.unwrap_or(Role::Participant);
    if role == Role::Recorder {
        return Err(ApiError::bad_request(
            "role must be host, participant or viewer; recorder tokens are the server's",
        ));
    }
    let user_id = match body.user_id {
        Some(user) => user_id(&user)?,
        None => ids::prefixed("u"),
    };
    let ttl = ttl(body.ttl_secs)?;
    let token = state.tokens.mint(&TokenRequest {
        meeting_id: meeting.id.clone(),
        user_id: user_id.clone(),
        name: name.clone(),
        role,
        ttl_secs: ttl,
    });
    tracing::info!(meeting = %meeting.id, key = %key.id, user = %user_id, role = role.as_str(), "token minted");
    let join_url = format!("{}?name={}#token={token}", state.join_url(&meeting.id), percent_encode(&name));
    let signaling_url = state.signaling_url();
    Ok((
        StatusCode::CREATED,
        Json(MintedToken { meeting_id: meeting.id, token, role, user_id, signaling_url, join_url }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MintCreator {
    /// Who the application vouches for; written into the server's log with each meeting created.
    pub user_id: Option<String>,
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct MintedCreator {
    pub creator_token: String,
    pub user_id: String,
}

/// `POST /creator-tokens` with a `mint_tokens` key: a token that lets its holder create meetings under
/// `access.create_meetings = "creator_token"` (an application hands it to its signed-in users' browsers).
pub async fn mint_creator(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<MintCreator>,
) -> Result<(StatusCode, Json<MintedCreator>), ApiError> {
    let key = caller.key_with(Scope::MintTokens)?;
    let user_id = match body.user_id {
        Some(user) => user_id(&user)?,
        None => ids::prefixed("u"),
    };
    let creator_token = state.tokens.mint_creator(&user_id, ttl(body.ttl_secs)?);
    tracing::info!(key = %key.id, user = %user_id, "creator token minted");
    Ok((StatusCode::CREATED, Json(MintedCreator { creator_token, user_id })))
}

fn ttl(asked: Option<u64>) -> Result<Option<u64>, ApiError> {
    match asked {
        Some(0) => Err(ApiError::bad_request("ttl_secs must be at least 1")),
        Some(t) if t > TOKEN_TTL_MAX_SECS => {
            Err(ApiError::bad_request(format!("ttl_secs must be at most {TOKEN_TTL_MAX_SECS} (30 days)")))
        }
        t => Ok(t),
    }
}

/// An application's user id: 1 to 128 printable characters.
fn user_id(raw: &str) -> Result<String, ApiError> {
    if raw.is_empty() || raw.len() > 128 || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::bad_request("user_id must be 1 to 128 characters without spaces or control characters"));
    }
    Ok(raw.to_string())
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a query value.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `DELETE /meetings/{id}` with the host's token as `Authorization: Bearer`: ends the meeting for everyone.
pub async fn end(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let meeting = find(&state, &id).await?;
    let claims = host_now(&state, &headers, &meeting, "end the meeting").await?;
    if claims.role != Role::Host {
        return Err(ApiError::forbidden("ending the meeting needs the host role; a co-host cannot"));
    }
    if !state.store.end_meeting(&meeting.id, now()).await? {
        return Err(ApiError::gone(format!("meeting {id:?} has ended already")));
    }
    let left = state.store.all_participants_left(&meeting.id, now()).await?;
    state.signaling.end_meeting(&meeting.id, "the host ended the meeting").await;
    tracing::info!(meeting = %meeting.id, left, "meeting ended");
    Ok(StatusCode::NO_CONTENT)
}
