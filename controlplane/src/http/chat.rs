//! `GET /meetings/{id}/chat`: older pages of a meeting's chat, selected by the same rule as live delivery (public
//! messages, one's own, those to one, and those to the hosts for a host). See `docs/chat.md`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::files::{is_host_now, reader};
use super::meetings::find;
use crate::signaling::protocol::ChatView;
use crate::store::{ChatQuery, MAIN_ROOM};

/// The largest page.
pub const PAGE_MAX: u32 = 200;
const PAGE_DEFAULT: u32 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Messages with a smaller id than this (the oldest one the client has).
    before: Option<i64>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct Page {
    /// Oldest first.
    pub messages: Vec<ChatView>,
    /// Older messages exist.
    pub has_more: bool,
}

pub async fn history(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
    headers: HeaderMap,
) -> Result<Json<Page>, ApiError> {
    let meeting = find(&state, &id).await?;
    let claims = reader(&state, &headers, &meeting).await?;
    let limit = page.limit.unwrap_or(PAGE_DEFAULT);
    if limit == 0 || limit > PAGE_MAX {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {PAGE_MAX}, got {limit}")));
    }
    let query = ChatQuery {
        meeting_id: meeting.id.clone(),
        // The room they are in now (a breakout room's chat is its own); the main room when they are not here.
        room: state.signaling.room_of(&meeting.id, &claims.sub).await.unwrap_or_else(|| MAIN_ROOM.into()),
        viewer_user_id: claims.sub.clone(),
        viewer_is_host: is_host_now(&state, &claims, &meeting.id).await,
        before: page.before,
        limit: limit + 1,
    };
    let mut found = state.store.chat_history(&query).await?;
    let has_more = found.len() > limit as usize;
    found.truncate(limit as usize);
    found.reverse();
    Ok(Json(Page { messages: found.iter().map(|m| ChatView::of(m, &claims.sub)).collect(), has_more }))
}
