//! WHIP ingest (RFC 9725): `POST /whip/{meeting_id}` with an SDP offer and a meeting token that may publish
//! answers `201 Created` with the SDP answer and the session's resource in `Location`; `DELETE` on the resource
//! ends it. WHEP playback is the same exchange at `/whep/{meeting_id}` with a token that may receive: the player's
//! receive-only offer is answered with one participant's video and audio (`?participant=`, `?source=screen`,
//! or `?source=speaker`, which follows whoever talks). `PATCH` takes trickled candidates (`204`: the server is
//! ICE-lite and learns the client's addresses from its checks, so they are read and discarded) and refuses an
//! ICE restart with `422` (RFC 9725 section 4.4: a restart is a new session here). See `docs/whip-whep.md`.

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

/// `POST /whep/{meeting_id}[?participant=<id or name>|?source=screen|?source=speaker]`.
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
        (None, Some("speaker")) => Selection::Speaker,
        (None, Some(other)) => {
            return Err(ApiError::bad_request(format!("source={other:?}: source is screen or speaker")));
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
    let etag = etag(location.rsplit('/').next().unwrap_or_default());
    let mut response = (StatusCode::CREATED, answer).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    h.insert(header::LOCATION, HeaderValue::from_str(&location).map_err(ApiError::internal)?);
    h.insert(header::ETAG, HeaderValue::from_str(&etag).map_err(ApiError::internal)?);
    Ok(response)
}

/// The session's entity tag (RFC 9725 section 4.3.1): one ICE session per resource, so it never changes.
fn etag(participant: &str) -> String {
    format!("\"{participant}\"")
}

const SDPFRAG: &str = "application/trickle-ice-sdpfrag";
/// A trickle fragment is a few candidate lines; anything near this is not one.
const SDPFRAG_LEN_MAX: usize = 16 * 1024;

/// `PATCH /whip/{meeting_id}/{participant}` (and `/whep/...`), RFC 9725 section 4.3: trickled candidates are
/// checked and discarded (`204`: an ICE-lite server learns the client's addresses from its connectivity checks);
/// an ICE restart (`If-Match: *`, as RFC 9725 has a client ask for one) is refused with `422`.
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Path((meeting_id, participant)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let meeting = find(&state, &meeting_id).await?;
    let claims = meeting_claims(&state, &headers, &meeting)?;
    if !state.signaling.ingest_end(&meeting.id, &participant, &claims.sub, false).await {
        return Err(ApiError::not_found(format!(
            "no WHIP or WHEP session {participant:?} of this user in the meeting"
        )));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case(SDPFRAG)) {
        return Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: format!("a PATCH carries Content-Type: {SDPFRAG}, not {content_type:?}"),
        });
    }
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(str::trim);
    if if_match == Some("*") {
        return Err(restart_refused());
    }
    if let Some(tag) = if_match.filter(|t| *t != etag(&participant)) {
        return Err(ApiError {
            status: StatusCode::PRECONDITION_FAILED,
            code: "precondition_failed",
            message: format!("If-Match {tag:?} is not this session's ETag {}", etag(&participant)),
        });
    }
    if body.len() > SDPFRAG_LEN_MAX {
        return Err(ApiError::bad_request(format!("the fragment is longer than {SDPFRAG_LEN_MAX} bytes")));
    }
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the fragment is not UTF-8 text"))?;
    let candidates = read_sdpfrag(text)?;
    metrics::counter!("sluice_whip_trickle_candidates_total").increment(candidates as u64);
    tracing::debug!(meeting = %meeting.id, %participant, candidates, "trickled candidates (ICE-lite: not needed)");
    Ok(StatusCode::NO_CONTENT)
}

fn restart_refused() -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "ice_restart_unsupported",
        message: "ICE restarts are not supported: DELETE this session and POST a new offer".into(),
    }
}

/// Checks a trickle-ice-sdpfrag (RFC 8840) and counts its candidates.
fn read_sdpfrag(text: &str) -> Result<usize, ApiError> {
    let mut candidates = 0;
    for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        let Some((kind, value)) = line.split_once('=') else {
            return Err(ApiError::bad_request(format!("{line:?} is not an SDP line (type=value)")));
        };
        match (kind, value.split_once(':').map_or(value, |(name, _)| name)) {
            ("a", "candidate") => {
                let fields = value.split_ascii_whitespace().count();
                if fields < 8 {
                    return Err(ApiError::bad_request(format!("{line:?} is not a candidate (too few fields)")));
                }
                candidates += 1;
            }
            ("a" | "m" | "c", _) => {}
            _ => return Err(ApiError::bad_request(format!("{line:?} does not belong in a trickle fragment"))),
        }
    }
    Ok(candidates)
}

/// `DELETE /whip/{meeting_id}/{participant}` (and `/whep/...`): with a token of the user who started the session.
pub async fn end(
    State(state): State<Arc<AppState>>,
    Path((meeting_id, participant)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let meeting = find(&state, &meeting_id).await?;
    let claims = meeting_claims(&state, &headers, &meeting)?;
    if state.signaling.ingest_end(&meeting.id, &participant, &claims.sub, true).await {
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
