//! Recordings: start and stop (host only), metadata, the files, share links and the playback portal.
//!
//! Reading a recording needs a token of its meeting (any role) as `Authorization: Bearer`, or a share token
//! (`?share=`): a signed, expiring token scoped to that one recording, which admits to no meeting.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access::{bearer, host_now, meeting_claims};
use super::error::ApiError;
use super::meetings::find;
use crate::ids;
use crate::recording::RecordingJob;
use crate::store::{Recording, RecordingStatus, Role, now};
use crate::tokens::TokenRequest;

/// How long a share link works.
const SHARE_TTL_SECS: u64 = 7 * 24 * 3600;
/// The recorder's token outlives any meeting it records: it only admits a subscriber without grants to speak.
const RECORDER_TOKEN_TTL_SECS: u64 = 24 * 3600;
/// What the recorder is called in the meeting.
pub const RECORDER_NAME: &str = "Recorder";

/// A recording as the API shows it: the row, and links to what exists.
#[derive(Debug, Serialize)]
pub struct RecordingView {
    #[serde(flatten)]
    pub recording: Recording,
    /// The composed MP4 (once `ready`).
    pub file_url: Option<String>,
    /// The WebVTT subtitles (once transcribed).
    pub vtt_url: Option<String>,
    /// The meeting's public chat while it was recorded, as text and as JSON (once `ready`).
    pub chat_url: Option<String>,
    pub chat_json_url: Option<String>,
    /// Per-track files (WebM), in `GET /recordings/{id}` only.
    pub track_urls: Vec<String>,
    /// Works without an account until `share_expires_at`.
    pub share_url: Option<String>,
    pub share_expires_at: Option<i64>,
    pub player_url: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Access {
    /// A share token from `share_url`.
    pub share: Option<String>,
}

/// `POST /meetings/{id}/recording/start`: the recorder joins and records every track, including later ones.
pub async fn start(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<RecordingView>), ApiError> {
    let meeting = find(&state, &id).await?;
    host_now(&state, &headers, &meeting, "start a recording").await?;
    if meeting.ended_at.is_some() {
        return Err(ApiError::gone(format!("meeting {id:?} has ended")));
    }
    if !meeting.recording_enabled {
        return Err(ApiError::forbidden(format!(
            "recording is not enabled for meeting {id:?} (create it with \"recording_enabled\": true)"
        )));
    }
    let recorder = state.recorder.as_ref().ok_or_else(|| ApiError::unavailable("this server runs no recorder"))?;
    if let Some(running) = active(&state, &meeting.id).await? {
        return Err(ApiError::conflict(format!("meeting {id:?} is already being recorded ({})", running.id)));
    }
    let at = now();
    let recording = Recording {
        id: ids::prefixed("r"),
        meeting_id: meeting.id.clone(),
        s3_key: None,
        duration_ms: None,
        transcript_url: None,
        status: RecordingStatus::Recording,
        status_reason: None,
        created_at: at,
        updated_at: at,
    };
    match state.store.create_recording(&recording).await {
        // Another start request won the race (one recording runs per meeting: a unique index).
        Err(crate::store::StoreError::Conflict(_)) => {
            return Err(ApiError::conflict(format!("meeting {id:?} is already being recorded")));
        }
        other => other?,
    }
    let job = job(&state, recorder.as_ref(), &recording);
    if let Err(e) = recorder.start(job).await {
        let update = crate::store::RecordingUpdate {
            status: Some(RecordingStatus::Failed),
            status_reason: Some(format!("the recorder refused the job: {e}")),
            ..Default::default()
        };
        state.store.update_recording(&recording.id, &update, now()).await?;
        return Err(ApiError::unavailable(format!("the recorder cannot start: {e}")));
    }
    metrics::counter!("sluice_recordings_started_total").increment(1);
    tracing::info!(meeting = %meeting.id, recording = %recording.id, "recording started");
    Ok((StatusCode::CREATED, Json(view(&state, recording))))
}

/// `POST /meetings/{id}/recording/stop`: stops the running recording; it becomes `processing`, then `ready`.
pub async fn stop(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<RecordingView>, ApiError> {
    let meeting = find(&state, &id).await?;
    host_now(&state, &headers, &meeting, "stop a recording").await?;
    let recording = active(&state, &meeting.id)
        .await?
        .ok_or_else(|| ApiError::conflict(format!("meeting {id:?} is not being recorded")))?;
    let recorder = state.recorder.as_ref().ok_or_else(|| ApiError::unavailable("this server runs no recorder"))?;
    let held = recorder
        .stop(&job(&state, recorder.as_ref(), &recording))
        .await
        .map_err(|e| ApiError::unavailable(format!("the recorder: {e}")))?;
    if !held {
        return Err(ApiError::conflict(format!(
            "recording {} is not held by this server's recorder (it is finished after a restart)",
            recording.id
        )));
    }
    tracing::info!(meeting = %meeting.id, recording = %recording.id, "recording stopped");
    let recording = state.store.recording(&recording.id).await?.unwrap_or(recording);
    Ok(Json(view(&state, recording)))
}

/// The recorder's instructions for `recording`, with a fresh recorder token for its meeting.
fn job(state: &AppState, recorder: &dyn crate::recording::RecorderHandle, recording: &Recording) -> RecordingJob {
    let token = state.tokens.mint(&TokenRequest {
        meeting_id: recording.meeting_id.clone(),
        user_id: format!("recorder-{}", recording.id),
        name: RECORDER_NAME.into(),
        role: Role::Recorder,
        ttl_secs: Some(RECORDER_TOKEN_TTL_SECS),
    });
    let base = if recorder.in_process() { &state.local_url } else { &state.public_url };
    RecordingJob {
        recording_id: recording.id.clone(),
        meeting_id: recording.meeting_id.clone(),
        token,
        signaling_url: format!("{}/signaling", base.replacen("http", "ws", 1)),
    }
}

/// The meeting's recording in progress, if any.
async fn active(state: &AppState, meeting_id: &str) -> Result<Option<Recording>, ApiError> {
    let all = state.store.recordings_of_meeting(meeting_id).await?;
    Ok(all.into_iter().find(|r| r.status == RecordingStatus::Recording))
}

/// `GET /recordings/{id}` with a token of its meeting, or `?share=`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(access): Query<Access>,
    headers: HeaderMap,
) -> Result<Json<RecordingView>, ApiError> {
    let recording = readable(&state, &id, &access, &headers).await?;
    let tracks = format!("{}/tracks", prefix(&recording));
    let names: Vec<String> = state
        .blobs
        .list(&tracks)
        .await?
        .into_iter()
        .filter_map(|o| o.location.filename().map(str::to_string))
        .collect();
    let mut v = view(&state, recording);
    let share = access.share.as_ref().map_or(String::new(), |s| format!("?share={s}"));
    v.track_urls = names
        .iter()
        .map(|n| format!("{}/recordings/{}/files/tracks/{n}{share}", state.public_url, v.recording.id))
        .collect();
    Ok(Json(v))
}

/// `GET /meetings/{id}/recordings` with a token of the meeting: newest first.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<RecordingView>>, ApiError> {
    let meeting = find(&state, &id).await?;
    meeting_claims(&state, &headers, &meeting)?;
    let all = state.store.recordings_of_meeting(&meeting.id).await?;
    Ok(Json(all.into_iter().map(|r| view(&state, r)).collect()))
}

/// `GET /recordings/{id}/files/{*name}`: the composed MP4 (`composed.mp4`), the subtitles (`transcript.vtt`) or
/// a per-track file (`tracks/...`), with HTTP range requests so players can seek.
pub async fn file(
    State(state): State<Arc<AppState>>,
    Path((id, name)): Path<(String, String)>,
    Query(access): Query<Access>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let recording = readable(&state, &id, &access, &headers).await?;
    if name.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(ApiError::bad_request(format!("bad file name {name:?}")));
    }
    let key = format!("{}/{name}", prefix(&recording));
    let meta = state.blobs.head(&key).await?.ok_or_else(|| ApiError::not_found(format!("no file {name:?} yet")))?;
    let size = meta.size;
    let content_type = match name.rsplit('.').next() {
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        Some("vtt") => "text/vtt; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(|v| parse_range(v, size));
    let (status, span) = match range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r),
        None => (StatusCode::OK, 0..size),
    };
    if status == StatusCode::PARTIAL_CONTENT && span.is_empty() {
        let unsatisfiable = [(header::CONTENT_RANGE, format!("bytes */{size}"))];
        return Ok((StatusCode::RANGE_NOT_SATISFIABLE, unsatisfiable).into_response());
    }
    let body = if span.is_empty() || method == Method::HEAD {
        axum::body::Body::empty()
    } else {
        axum::body::Body::from_stream(state.blobs.stream_range(&key, span.clone(), meta.e_tag.clone()).await?)
    };
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, header::HeaderValue::from(span.end - span.start));
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, header::HeaderValue::from_static("bytes"));
    // The chat export holds what users typed: never sniffed into HTML.
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {}-{}/{size}", span.start, span.end - 1);
        h.insert(header::CONTENT_RANGE, header::HeaderValue::from_str(&value).expect("ascii"));
    }
    Ok(response)
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` (one range; players ask for one) as a half-open span within `size`
/// (empty when unsatisfiable: it starts past the end). `None` for what RFC 9110 says to ignore (several
/// ranges, a last byte before the first, not bytes): the whole file is sent.
fn parse_range(value: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = value.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let span = match (a.trim(), b.trim()) {
        ("", n) => size.saturating_sub(n.parse().ok()?)..size,
        (a, "") => a.parse().ok()?..size,
        (a, b) => {
            let (first, last) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
            if last < first {
                return None;
            }
            first..(last + 1).min(size)
        }
    };
    Some(if span.start >= size { size..size } else { span })
}

/// The recording, if the caller may read it: a share token for it, or a token of its meeting.
async fn readable(state: &AppState, id: &str, access: &Access, headers: &HeaderMap) -> Result<Recording, ApiError> {
    let missing = || ApiError::not_found(format!("recording {id:?} does not exist"));
    if !id.starts_with("r_") || id.len() > 64 {
        return Err(missing());
    }
    let recording = state.store.recording(id).await?.ok_or_else(missing)?;
    if let Some(share) = &access.share {
        state
            .tokens
            .verify(share, &share_scope(id))
            .map_err(|e| ApiError::unauthorized(format!("the share link does not work: {e}")))?;
        return Ok(recording);
    }
    let token = bearer(headers).ok_or_else(|| {
        ApiError::unauthorized("send a token of the meeting as Authorization: Bearer <token>, or use a share link")
    })?;
    state.tokens.verify(token, &recording.meeting_id).map_err(|e| ApiError::unauthorized(e.to_string()))?;
    Ok(recording)
}

/// Share tokens are ordinary signed tokens whose meeting is this scope: no meeting id has this form, so a
/// share token admits to no meeting.
fn share_scope(recording_id: &str) -> String {
    format!("share:{recording_id}")
}

fn prefix(recording: &Recording) -> String {
    crate::recording::storage_prefix(&recording.meeting_id, &recording.id)
}

fn view(state: &AppState, recording: Recording) -> RecordingView {
    let base = format!("{}/recordings/{}", state.public_url, recording.id);
    let ready = recording.status == RecordingStatus::Ready;
    let (share_url, share_expires_at) = if ready {
        let token = state.tokens.mint(&TokenRequest {
            meeting_id: share_scope(&recording.id),
            user_id: "share".into(),
            name: "share".into(),
            role: Role::Viewer,
            ttl_secs: Some(SHARE_TTL_SECS),
        });
        let expires = chrono::Utc::now().timestamp() + SHARE_TTL_SECS as i64;
        (Some(format!("{}/play?share={token}", base)), Some(expires))
    } else {
        (None, None)
    };
    RecordingView {
        file_url: ready.then(|| format!("{base}/files/composed.mp4")),
        vtt_url: recording.transcript_url.as_ref().map(|_| format!("{base}/files/transcript.vtt")),
        chat_url: ready.then(|| format!("{base}/files/chat.txt")),
        chat_json_url: ready.then(|| format!("{base}/files/chat.json")),
        track_urls: Vec::new(),
        share_url,
        share_expires_at,
        player_url: format!("{base}/play"),
        recording,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_are_read_as_players_send_them() {
        assert_eq!(parse_range("bytes=0-", 100), Some(0..100));
        assert_eq!(parse_range("bytes=10-19", 100), Some(10..20));
        assert_eq!(parse_range("bytes=90-200", 100), Some(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Some(90..100));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=x-1", 100), None);
    }
}
