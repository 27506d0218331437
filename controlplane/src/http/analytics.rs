//! The analytics API (`docs/analytics.md`): a meeting's summary and timelines for its host or an operator, and
//! the deployment's figures over time for an operator. An operator is an operator token (`sluice token
//! --operator`) or an API key with the `read_analytics` scope; participant tokens are refused, saying so.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::access::{Caller, bearer, host_now};
use super::error::ApiError;
use super::meetings::find;
use crate::analytics::report;
use crate::apikeys::{self, Scope};

/// Events read for one meeting's report, and for the deployment's.
const MEETING_EVENTS_MAX: u32 = 200_000;
const DEPLOYMENT_EVENTS_MAX: u32 = 500_000;
/// The longest range `GET /analytics` covers.
const RANGE_MAX_DAYS: i64 = 31;

const NEEDED: &str = "analytics need an operator token (sluice token --operator) or an API key with the \
                      read_analytics scope";

/// An operator credential, or the 401/403 that says what is needed.
fn operator(state: &AppState, headers: &HeaderMap, caller: &Caller) -> Result<(), ApiError> {
    let Some(token) = bearer(headers) else {
        return Err(ApiError::unauthorized(format!("{NEEDED}, as Authorization: Bearer ...")));
    };
    if apikeys::is_api_key(token) {
        return caller.key_with(Scope::ReadAnalytics).map(drop);
    }
    match state.tokens.verify_operator(token) {
        Ok(_) => Ok(()),
        Err(_) => Err(ApiError::forbidden(format!("this token is not an operator's: {NEEDED}"))),
    }
}

/// `GET /meetings/{id}/analytics`: an operator, or a host of this meeting.
pub async fn meeting(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    // Credentials first: an anonymous caller learns nothing, not even whether the meeting exists.
    if bearer(&headers).is_none() {
        return Err(ApiError::unauthorized(format!("{NEEDED}, or a host token of the meeting")));
    }
    let meeting = find(&state, &id).await?;
    if operator(&state, &headers, &caller).is_err() {
        host_now(&state, &headers, &meeting, "read the meeting's analytics (or use an operator credential)").await?;
    }
    let events = state.store.analytics_events(&meeting.id, MEETING_EVENTS_MAX).await?;
    Ok(Json(report::meeting(&meeting, &events)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

/// `GET /analytics?since=&until=`: the deployment, for an operator.
pub async fn deployment(
    State(state): State<Arc<AppState>>,
    Query(range): Query<Range>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    operator(&state, &headers, &caller)?;
    let until = range.until.unwrap_or_else(Utc::now);
    let since = range.since.unwrap_or(until - chrono::Duration::hours(24));
    if since >= until {
        return Err(ApiError::bad_request("since must be before until"));
    }
    if until - since > chrono::Duration::days(RANGE_MAX_DAYS) {
        return Err(ApiError::bad_request(format!("the range is at most {RANGE_MAX_DAYS} days")));
    }
    let events = state.store.analytics_events_between(since, until, DEPLOYMENT_EVENTS_MAX).await?;
    let mut titles = HashMap::new();
    for e in &events {
        if !titles.contains_key(&e.meeting_id) && titles.len() < 1000 {
            let title = state.store.meeting(&e.meeting_id).await?.and_then(|m| m.settings.title);
            titles.insert(e.meeting_id.clone(), title);
        }
    }
    Ok(Json(report::deployment(since, until, &events, &titles)))
}
