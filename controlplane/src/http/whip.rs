//! WHIP ingest (RFC 9725): `POST /whip/{meeting_id}` with an SDP offer and a meeting token that may publish
//! answers `201 Created` with the SDP answer and the session's resource in `Location`; `DELETE` on the resource
//! ends it. WHEP playback is the same exchange at `/whep/{meeting_id}` with a token that may receive: the player's
//! receive-only offer is answered with one participant's video and audio (`?participant=`, `?source=screen`). Trickle ICE and ICE restarts (`PATCH`) are not offered: the answer carries every candidate of the
//! server (ICE-lite), and a restart is a new session. See `docs/whip-whep.md`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::Extensions;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::access::meeting_claims;
use super::error::ApiError;
use super::meetings::find;
use crate::sdp::answer::ANSWER_LEN_MAX;
use crate::signaling::Selection;
use crate::signaling::protocol::close;

const SDP: &str = "application/sdp";

/// `POST /whip/{meeting_id}`.
pub async fn publish(
    State(state): State<Arc<AppState>>,
    Path(meeting_id): Path<String>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (meeting, claims, offer) = read_offer(&state, &meeting_id, &headers, &body).await?;
    if !claims.grants.microphone && !claims.grants.camera {
        return Err(ApiError::forbidden("this token may not publish a microphone or a camera"));
    }
    let user = claims.sub.clone();
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
    let (participant, answer) =
        state.signaling.ingest(&meeting, claims, offer, peer).await.map_err(|(code, reason)| refusal(code, reason))?;
    tracing::info!(meeting = %meeting.id, %participant, %user, "WHIP session started");
    created(format!("/whip/{}/{participant}", meeting.id), answer)
}

/// `POST /whep/{meeting_id}[?participant=<id or name>|?source=screen]`.
pub async fn play(
    State(state): State<Arc<AppState>>,
    Path(meeting_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (meeting, claims, offer) = read_offer(&state, &meeting_id, &headers, &body).await?;
    if !claims.grants.subscribe {
        return Err(ApiError::forbidden("this token may not receive media"));
    }
    let selection = match (query.get("participant"), query.get("source").map(String::as_str)) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give participant or source, not both")),
        (Some(who), None) => Selection::Participant(who.clone()),
        (None, Some("screen")) => Selection::Screen,
        (None, Some(other)) => {
            return Err(ApiError::bad_request(format!("source={other:?}: only source=screen is known")));
        }
        (None, None) => Selection::Anyone,
    };
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
    let (participant, answer) = state
        .signaling
        .play(&meeting, claims, offer, selection, peer)
        .await
        .map_err(|(code, reason)| refusal(code, reason))?;
    tracing::info!(meeting = %meeting.id, %participant, "WHEP session started");
    created(format!("/whep/{}/{participant}", meeting.id), answer)
}

/// The checks WHIP and WHEP share: content type, meeting, token, meeting not ended, user not removed, the offer.
async fn read_offer(
    state: &AppState,
    meeting_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(crate::store::Meeting, crate::tokens::Claims, crate::sdp::Answer), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case(SDP)) {
        return Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: format!("an offer is sent as Content-Type: {SDP}, not {content_type:?}"),
        });
    }
    let meeting = find(state, meeting_id).await?;
    let claims = meeting_claims(state, headers, &meeting)?;
    if meeting.ended_at.is_some() {
        return Err(ApiError::gone("the meeting has ended"));
    }
    if state.store.is_removed(&meeting.id, &claims.sub).await? {
        return Err(ApiError::forbidden("a host removed this user from the meeting"));
    }
    if body.len() > ANSWER_LEN_MAX {
        return Err(ApiError::bad_request(format!("the offer is longer than {ANSWER_LEN_MAX} bytes")));
    }
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the offer is not UTF-8 text"))?;
    let offer = crate::sdp::parse_offer(text).map_err(|e| ApiError::bad_request(format!("the offer: {e}")))?;
    Ok((meeting, claims, offer))
}

fn created(location: String, answer: String) -> Result<Response, ApiError> {
    let mut response = (StatusCode::CREATED, answer).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    h.insert(header::LOCATION, HeaderValue::from_str(&location).map_err(ApiError::internal)?);
    Ok(response)
}

/// `DELETE /whip/{meeting_id}/{participant}` (and `/whep/...`): with a token of the user who started the session.
pub async fn end(
    State(state): State<Arc<AppState>>,
    Path((meeting_id, participant)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let meeting = find(&state, &meeting_id).await?;
    let claims = meeting_claims(&state, &headers, &meeting)?;
    if state.signaling.ingest_end(&meeting.id, &participant, &claims.sub).await {
        tracing::info!(meeting = %meeting.id, %participant, "WHIP session ended");
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found(format!("no WHIP session {participant:?} of this user in the meeting")))
    }
}

/// A room's refusal (a signaling close code) as the HTTP status a WHIP client understands.
fn refusal(code: u16, reason: String) -> ApiError {
    match code {
        close::BAD_TOKEN => ApiError::unauthorized(reason),
        close::FORBIDDEN | close::REMOVED | close::LOCKED | close::DENIED => ApiError::forbidden(reason),
        close::NO_MEETING => ApiError::not_found(reason),
        close::ENDED => ApiError::gone(reason),
        close::PROTOCOL => ApiError::bad_request(reason),
        close::FULL | close::UNAVAILABLE | close::RATE_LIMITED => ApiError::unavailable(reason),
        _ => ApiError::conflict(reason),
    }
}
