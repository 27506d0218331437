//! Who is calling: the `guard` middleware in front of every route finds the client's address, checks an API key
//! when one is presented, applies the request limits and attributes every use of a key in the log; handlers ask
//! the resulting [`Caller`] for the credential their policy needs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::limits::client_address;
use crate::apikeys::{self, ApiKey, KeyError, Scope};
use crate::store::Meeting;
use crate::tokens::Claims;

/// What the guard learnt about a request, for its handler (`Extension<Caller>`).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client's address (behind a trusted proxy, the one it forwarded for).
    pub source: IpAddr,
    /// The API key presented, checked: `None` when the request carried none.
    key: Option<Result<ApiKey, KeyError>>,
}

impl Caller {
    /// The presented key if it is valid and has `scope`; otherwise the 401 or 403 that says what is missing.
    pub fn key_with(&self, scope: Scope) -> Result<&ApiKey, ApiError> {
        match &self.key {
            None => Err(ApiError::unauthorized(format!(
                "send an API key with the {scope} scope as Authorization: Bearer sk_... (sluice apikey create)"
            ))),
            Some(Err(KeyError::Store(_))) => Err(ApiError::unavailable("the API key could not be checked; try again")),
            Some(Err(e)) => Err(ApiError::unauthorized(e.to_string())),
            Some(Ok(key)) if !key.allows(scope) => {
                Err(ApiError::forbidden(format!("the API key {} ({}) lacks the {scope} scope", key.id, key.name)))
            }
            Some(Ok(key)) => Ok(key),
        }
    }

    /// Whether the request carries an API key at all (valid or not).
    pub fn presents_key(&self) -> bool {
        self.key.is_some()
    }
}

/// The bearer credential of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// The claims of a token for `meeting` (any role), or the 401 that says what was wrong.
pub fn meeting_claims(state: &AppState, headers: &HeaderMap, meeting: &Meeting) -> Result<Claims, ApiError> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("send a token of the meeting as Authorization: Bearer <token>"))?;
    state.tokens.verify(token, &meeting.id).map_err(|e| ApiError::unauthorized(e.to_string()))
}

/// The claims of a host token for `meeting`, or the 401/403 that says what was wrong.
pub fn host_claims(state: &AppState, headers: &HeaderMap, meeting: &Meeting, action: &str) -> Result<Claims, ApiError> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("send the host token as Authorization: Bearer <token>"))?;
    let claims = state.tokens.verify(token, &meeting.id).map_err(|e| ApiError::unauthorized(e.to_string()))?;
    if !claims.grants.host {
        return Err(ApiError::forbidden(format!("only a host can {action}")));
    }
    Ok(claims)
}

/// As `host_claims`, and the meeting agrees now: a host a host demoted in the live meeting is no host through
/// the API either. The returned claims carry the role the meeting gives them.
pub async fn host_now(
    state: &AppState,
    headers: &HeaderMap,
    meeting: &Meeting,
    action: &str,
) -> Result<Claims, ApiError> {
    let mut claims = host_claims(state, headers, meeting, action)?;
    if let Some((role, grants)) = state.signaling.effective(&meeting.id, &claims.sub).await {
        if !grants.host {
            return Err(ApiError::forbidden(format!(
                "only a host can {action}; you are no longer one in this meeting"
            )));
        }
        claims.role = role;
        claims.grants = grants;
    }
    Ok(claims)
}

/// In front of every route: client address, API key check, limits, key attribution, HSTS.
pub async fn guard(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let peer =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let source = client_address(peer, request.headers(), &state.policy.trusted_proxies);
    let presented = bearer(request.headers()).filter(|b| apikeys::is_api_key(b)).map(str::to_string);
    let key = match presented {
        Some(bearer) => {
            // Bounded before the store is asked: a flood of made-up keys costs a source its key attempts, not
            // the database one look-up each.
            if let Err(refused) = state.policy.limits.key_attempt(source) {
                return refused.into_response();
            }
            Some(apikeys::verify(state.store.as_ref(), &bearer).await)
        }
        None => None,
    };
    // A valid key is limited as the key (an application's backend sends for many users from one address);
    // everything else, a refused key included, as its source.
    let limited = match &key {
        Some(Ok(k)) => state.policy.limits.key(&k.id),
        _ => state.policy.limits.source(source),
    };
    if let Err(refused) = limited {
        return refused.into_response();
    }
    match &key {
        Some(Ok(k)) => {
            tracing::info!(key = %k.id, key_name = %k.name, %source, method = %request.method(),
                path = %request.uri().path(), "request with an API key");
        }
        Some(Err(e)) => {
            metrics::counter!("sluice_http_api_key_refused_total").increment(1);
            tracing::info!(%source, path = %request.uri().path(), reason = %e, "API key refused");
        }
        None => {}
    }
    request.extensions_mut().insert(Caller { source, key });
    let mut response = next.run(request).await;
    if let Some(hsts) = &state.policy.hsts {
        response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    response
}
