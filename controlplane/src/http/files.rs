//! Files shared in chat (`docs/chat.md`): a streamed upload into object storage whose type is read from the
//! bytes, signed short-lived download links, the list of a meeting's files, and retention.
//!
//! Nothing the client says about a file is trusted: its type comes from the magic numbers, its name is kept only
//! as a display name, its size is counted as it arrives (the limit holds whatever `Content-Length` claims).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access::meeting_claims;
use super::error::ApiError;
use super::meetings::find;
use super::moderation::refusal;
use crate::blobs::Blobs;
use crate::ids;
use crate::signaling::ChatPost;
use crate::signaling::protocol::{ChatView, FileView};
use crate::store::{ChatFile, ChatMessage, Store, now, previewable};
use crate::tokens::Claims;

/// A display name's longest length, in characters.
pub const FILE_NAME_MAX: usize = 200;
/// Bytes kept from the start of an upload to detect its type.
const SNIFF_LEN: usize = 8192;
/// An upload that sends nothing for this long is broken off.
const UPLOAD_IDLE: Duration = Duration::from_secs(30);
/// And one that takes longer than this in all (a trickle of bytes would hold an upload open for ever).
const UPLOAD_TOTAL: Duration = Duration::from_secs(600);
/// Expired files deleted per sweep.
const SWEEP_BATCH: u32 = 100;

/// The client's file name as something safe to show: the last path segment, without control or
/// direction-override characters, leading dots and surrounding space, at most [`FILE_NAME_MAX`] characters.
pub fn display_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    let name: String = trimmed.chars().take(FILE_NAME_MAX).collect();
    if name.is_empty() { "file".to_string() } else { name }
}

/// Types a browser runs (markup that can carry script): stored and served as what they also are, text, so no
/// link to a shared file ever renders as a page of this origin.
const ACTIVE: [&str; 5] = ["text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml"];

/// The type the bytes say: a known magic number, else UTF-8 text, else opaque bytes.
pub fn detect(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head).filter(|k| !ACTIVE.contains(&k.mime_type())) {
        return kind.mime_type().to_string();
    }
    match std::str::from_utf8(head) {
        Ok(_) => "text/plain; charset=utf-8".to_string(),
        // A multi-byte character cut at the sniffing boundary is still text.
        Err(e) if e.error_len().is_none() && head.len() >= SNIFF_LEN => "text/plain; charset=utf-8".to_string(),
        Err(_) => "application/octet-stream".to_string(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    name: Option<String>,
    /// `hosts`, or a participant id for a private file; absent: everyone.
    to: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Uploaded {
    pub file: FileView,
    pub message: ChatView,
}

fn too_large(limit: u64) -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "too_large",
        message: format!("files are limited to {limit} bytes (chat.file_size_max_bytes)"),
    }
}

/// `POST /meetings/{id}/files?name=...&to=...` with a participant's token: the body is the file.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let meeting = find(&state, &id).await?;
    let claims = meeting_claims(&state, &headers, &meeting)?;
    if meeting.ended_at.is_some() {
        return Err(ApiError::gone(format!("meeting {id:?} has ended")));
    }
    let limit = state.chat.file_size_max_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        metrics::counter!("sluice_chat_uploads_refused_total", "reason" => "too_large").increment(1);
        return Err(too_large(limit));
    }
    let name = display_name(query.name.as_deref().unwrap_or(""));
    // Refused before a byte is stored: not in the meeting, no chat grant, chat off, unknown recipient.
    let check = ChatPost { body: name.clone(), to: query.to.clone(), file: None };
    state.signaling.chat_post(&meeting.id, &claims.sub, check, true).await.map_err(refusal)?;
    // The rest runs in its own task: a client that goes away drops this handler, and the upload must still be
    // aborted (or, once whole, recorded) rather than left half-done.
    let task = tokio::spawn(store_and_post(state, meeting.id, claims, name, query.to, body, limit));
    task.await.map_err(|e| ApiError::internal(format!("the upload task failed: {e}")))?
}

async fn store_and_post(
    state: Arc<AppState>,
    meeting_id: String,
    claims: Claims,
    name: String,
    to: Option<String>,
    body: Body,
    limit: u64,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let file_id = ids::prefixed("f");
    let key = format!("meetings/{meeting_id}/chat/{file_id}");
    let (size, content_type) = receive(&state.blobs, &key, body, limit).await?;
    let created_at = now();
    let retention = state.chat.file_retention_days;
    let file = ChatFile {
        id: file_id,
        meeting_id: meeting_id.clone(),
        object_key: key.clone(),
        name: name.clone(),
        content_type,
        size: size as i64,
        user_id: claims.sub.clone(),
        created_at,
        expires_at: (retention > 0).then(|| created_at + chrono::Duration::days(i64::from(retention))),
        deleted_at: None,
    };
    if let Err(e) = state.store.add_chat_file(&file).await {
        let _ = state.blobs.delete(&key).await;
        return Err(e.into());
    }
    let post = ChatPost { body: name, to, file: Some(file.clone()) };
    let message = match state.signaling.chat_post(&meeting_id, &claims.sub, post, false).await {
        Ok(Some(message)) => message,
        outcome => {
            // They left, or chat was turned off, while the bytes arrived: the file goes, nothing refers to it.
            let _ = state.store.delete_chat_file(&file.id, now()).await;
            let _ = state.blobs.delete(&key).await;
            return Err(match outcome {
                Err(e) => refusal(e),
                Ok(_) => ApiError::internal("the room did not post the file"),
            });
        }
    };
    metrics::counter!("sluice_chat_files_total").increment(1);
    metrics::counter!("sluice_chat_file_bytes_total").increment(size);
    tracing::info!(meeting = %meeting_id, file = %file.id, size, content_type = %file.content_type, "chat file shared");
    let uploaded = Uploaded { file: FileView::of(&file), message: ChatView::of(&message, &claims.sub) };
    Ok((StatusCode::CREATED, Json(uploaded)))
}

/// Streams a request body into `key`, counting bytes against `limit`; returns the size and detected type. On
/// any failure the upload is aborted, so nothing is left under `key`.
async fn receive(blobs: &Blobs, key: &str, body: Body, limit: u64) -> Result<(u64, String), ApiError> {
    let storage = |e: crate::blobs::BlobError| {
        tracing::error!(key, error = %e, "chat upload to object storage failed");
        ApiError::unavailable("object storage did not take the file; try again")
    };
    let mut upload = blobs.upload(key).await.map_err(storage)?;
    let mut head: Vec<u8> = Vec::with_capacity(SNIFF_LEN);
    let mut stream = body.into_data_stream();
    let deadline = tokio::time::Instant::now() + UPLOAD_TOTAL;
    let failure = loop {
        let wait = UPLOAD_IDLE.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let chunk = match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => {
                break ApiError {
                    status: StatusCode::REQUEST_TIMEOUT,
                    code: "timeout",
                    message: format!(
                        "the upload sent nothing for {} s, or took longer than {} s in all",
                        UPLOAD_IDLE.as_secs(),
                        UPLOAD_TOTAL.as_secs()
                    ),
                };
            }
            Ok(None) => {
                if upload.written() == 0 {
                    break ApiError::bad_request("the file is empty");
                }
                let size = upload.finish().await.map_err(storage)?;
                return Ok((size, detect(&head)));
            }
            Ok(Some(Err(e))) => {
                metrics::counter!("sluice_chat_uploads_refused_total", "reason" => "interrupted").increment(1);
                break ApiError::bad_request(format!("the upload was interrupted: {e}"));
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        if upload.written() + chunk.len() as u64 > limit {
            metrics::counter!("sluice_chat_uploads_refused_total", "reason" => "too_large").increment(1);
            break too_large(limit);
        }
        if head.len() < SNIFF_LEN {
            let take = (SNIFF_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        if let Err(e) = upload.write(&chunk).await {
            upload.abort().await;
            return Err(storage(e));
        }
    };
    upload.abort().await;
    Err(failure)
}

/// Whether the token's user may see the message (the same rule as chat: public, theirs, to them, to hosts).
async fn may_see(state: &AppState, claims: &Claims, meeting_id: &str, message: &ChatMessage) -> bool {
    let host = is_host_now(state, claims, meeting_id).await;
    message.deleted_at.is_none() && message.recipient.visible_to(&message.user_id, &claims.sub, host)
}

/// A token of the meeting whose user was let in (a host, or someone who has been in the meeting) and not
/// removed since: a link token alone, held by someone still waiting or turned away, reads no chat.
pub async fn reader(
    state: &AppState,
    headers: &HeaderMap,
    meeting: &crate::store::Meeting,
) -> Result<Claims, ApiError> {
    let claims = meeting_claims(state, headers, meeting)?;
    if state.store.is_removed(&meeting.id, &claims.sub).await? {
        return Err(ApiError::forbidden("a host removed you from this meeting"));
    }
    let admitted = claims.grants.host
        || state.store.participants(&meeting.id, false).await?.iter().any(|p| p.user_id == claims.sub);
    if !admitted {
        return Err(ApiError::forbidden("join the meeting first: its chat is for people who were let in"));
    }
    Ok(claims)
}

/// The host grant as the live meeting gives it (a host may have changed it), else as the token says.
pub async fn is_host_now(state: &AppState, claims: &Claims, meeting_id: &str) -> bool {
    match state.signaling.effective(meeting_id, &claims.sub).await {
        Some((_, grants)) => grants.host,
        None => claims.grants.host,
    }
}

#[derive(Debug, Serialize)]
pub struct FileEntry {
    #[serde(flatten)]
    pub file: FileView,
    pub message_id: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// `GET /meetings/{id}/files` with a token: the files of messages its user may see.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<FileEntry>>, ApiError> {
    let meeting = find(&state, &id).await?;
    let claims = reader(&state, &headers, &meeting).await?;
    let mut entries = Vec::new();
    for (file, message_id) in state.store.chat_files(&meeting.id).await? {
        let Some(message) = state.store.chat_message(message_id).await? else { continue };
        if may_see(&state, &claims, &meeting.id, &message).await {
            entries.push(FileEntry { file: FileView::of(&file), message_id, created_at: file.created_at });
        }
    }
    Ok(Json(entries))
}

#[derive(Debug, Serialize)]
pub struct Link {
    /// Downloads the file (`Content-Disposition: attachment`).
    pub url: String,
    /// Shows a safe raster image inline; absent for other types.
    pub preview_url: Option<String>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// `GET /meetings/{id}/files/{file_id}/link` with a token of someone who can see the file's message.
pub async fn link(
    State(state): State<Arc<AppState>>,
    Path((id, file_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Link>, ApiError> {
    let meeting = find(&state, &id).await?;
    let claims = reader(&state, &headers, &meeting).await?;
    let missing = || ApiError::not_found(format!("no file {file_id:?} in this meeting"));
    let files = state.store.chat_files(&meeting.id).await?;
    let (file, message_id) = files.into_iter().find(|(f, _)| f.id == file_id).ok_or_else(missing)?;
    let message = state.store.chat_message(message_id).await?.ok_or_else(missing)?;
    if !may_see(&state, &claims, &meeting.id, &message).await {
        return Err(missing());
    }
    let expires = now() + chrono::Duration::seconds(state.chat.link_ttl_secs.max(1) as i64);
    let exp = expires.timestamp();
    let signed = |disposition: &str| {
        let sig = state.tokens.sign_link(&link_fields(&file.id, exp, disposition));
        format!("{}/files/{}?e={exp}&d={disposition}&s={sig}", state.public_url, file.id)
    };
    let preview_url = previewable(&file.content_type).then(|| signed("inline"));
    Ok(Json(Link { url: signed("attachment"), preview_url, expires_at: expires }))
}

/// What a link's signature covers: the file, the expiry and how it is served.
fn link_fields(file_id: &str, exp: i64, disposition: &str) -> String {
    format!("file:{file_id}:{exp}:{disposition}")
}

#[derive(Debug, Deserialize)]
pub struct DownloadQuery {
    e: i64,
    d: String,
    s: String,
}

/// `GET /files/{file_id}?e=..&d=..&s=..`: a signed link, no token (a browser follows it as a plain link).
pub async fn download(
    State(state): State<Arc<AppState>>,
    Path(file_id): Path<String>,
    Query(q): Query<DownloadQuery>,
) -> Result<Response, ApiError> {
    if !state.tokens.verify_link(&link_fields(&file_id, q.e, &q.d), &q.s) {
        return Err(ApiError::forbidden("the link's signature does not match: ask the meeting for a new link"));
    }
    if q.e < now().timestamp() {
        return Err(ApiError::forbidden("the link has expired: ask the meeting for a new link"));
    }
    let gone = || ApiError::not_found("the file was deleted");
    let file = state.store.chat_file(&file_id).await?.ok_or_else(gone)?;
    if file.deleted_at.is_some() {
        return Err(gone());
    }
    let inline = q.d == "inline" && previewable(&file.content_type);
    let size = u64::try_from(file.size).unwrap_or(0);
    let stream = state.blobs.stream_range(&file.object_key, 0..size, None).await.map_err(|e| match e {
        crate::blobs::BlobError::NotFound(_) => gone(),
        e => ApiError::internal(e),
    })?;
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    let content_type = HeaderValue::from_str(&file.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(header::CONTENT_DISPOSITION, disposition(inline, &file.name));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Whatever the bytes are, nothing in them runs in this origin.
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=60"));
    Ok(response)
}

/// `attachment; filename="..."; filename*=UTF-8''...`: an ASCII fallback and the exact name (RFC 6266).
fn disposition(inline: bool, name: &str) -> HeaderValue {
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let kind = if inline { "inline" } else { "attachment" };
    HeaderValue::from_str(&format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Deletes files whose retention ended, every `interval`: the object first, then the row (a failed object
/// deletion is retried at the next sweep).
pub fn spawn_retention(store: Arc<dyn Store>, blobs: Blobs, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
        loop {
            tick.tick().await;
            let expired = match store.expired_chat_files(now(), SWEEP_BATCH).await {
                Ok(files) => files,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look for expired chat files");
                    continue;
                }
            };
            for file in expired {
                if let Err(e) = blobs.delete(&file.object_key).await {
                    tracing::warn!(file = %file.id, error = %e, "cannot delete an expired chat file; retrying later");
                    continue;
                }
                if store.delete_chat_file(&file.id, now()).await.is_ok() {
                    metrics::counter!("sluice_chat_files_expired_total").increment(1);
                    tracing::info!(file = %file.id, meeting = %file.meeting_id, "chat file deleted by retention");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_plain_names() {
        assert_eq!(display_name("../../etc/passwd"), "passwd");
        assert_eq!(display_name("C:\\Users\\a\\report.pdf"), "report.pdf");
        assert_eq!(display_name(".htaccess"), "htaccess");
        assert_eq!(display_name("a\u{202e}fdp.exe"), "afdp.exe");
        assert_eq!(display_name("line\nbreak.txt"), "linebreak.txt");
        assert_eq!(display_name("   "), "file");
        assert_eq!(display_name(""), "file");
        assert_eq!(display_name(&"x".repeat(500)).chars().count(), FILE_NAME_MAX);
        assert_eq!(display_name("<img src=x onerror=alert(1)>.png"), "<img src=x onerror=alert(1)>.png");
    }

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(detect(b"%PDF-1.7\n"), "application/pdf");
        assert!(!previewable(&detect(b"<svg xmlns='http://www.w3.org/2000/svg'><script>1</script></svg>")));
        assert_eq!(detect(b"<!DOCTYPE html><html><script>alert(1)</script>"), "text/plain; charset=utf-8");
        assert_eq!(detect(b"hello"), "text/plain; charset=utf-8");
        assert_eq!(detect(&[0u8, 159, 146, 150]), "application/octet-stream");
        assert!(previewable("image/png") && !previewable("image/svg+xml") && !previewable("text/html"));
    }

    #[test]
    fn dispositions_quote_any_name_safely() {
        let h = disposition(false, "r\u{e9}sum\u{e9} \"final\".pdf");
        let text = h.to_str().unwrap();
        assert!(text.starts_with("attachment; filename=\"r_sum_ _final_.pdf\""), "{text}");
        assert!(text.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"), "{text}");
    }
}
