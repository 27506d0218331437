//! The web client, embedded in the binary: no CDN, no build step, nothing fetched from the internet.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

const INDEX: &str = include_str!("../../web/index.html");
const MEETING: &str = include_str!("../../web/meeting.html");
const RECORDINGS: &str = include_str!("../../web/recordings.html");
const DASHBOARD: &str = include_str!("../../web/dashboard.html");
const NOT_FOUND: &str = include_str!("../../web/error.html");

/// `(name, content type, body)` of every file under `/assets/`.
const ASSETS: &[(&str, &str, &str)] = &[
    ("sluice-client.js", "text/javascript; charset=utf-8", include_str!("../../web/sluice-client.js")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../web/app.js")),
    ("moderation.js", "text/javascript; charset=utf-8", include_str!("../../web/moderation.js")),
    ("chat.js", "text/javascript; charset=utf-8", include_str!("../../web/chat.js")),
    ("breakouts.js", "text/javascript; charset=utf-8", include_str!("../../web/breakouts.js")),
    ("recordings.js", "text/javascript; charset=utf-8", include_str!("../../web/recordings.js")),
    ("landing.js", "text/javascript; charset=utf-8", include_str!("../../web/landing.js")),
    ("stats.js", "text/javascript; charset=utf-8", include_str!("../../web/stats.js")),
    ("settings.js", "text/javascript; charset=utf-8", include_str!("../../web/settings.js")),
    ("speakers.js", "text/javascript; charset=utf-8", include_str!("../../web/speakers.js")),
    ("layout.js", "text/javascript; charset=utf-8", include_str!("../../web/layout.js")),
    ("tilequality.js", "text/javascript; charset=utf-8", include_str!("../../web/tilequality.js")),
    ("lobby.js", "text/javascript; charset=utf-8", include_str!("../../web/lobby.js")),
    ("dialogs.js", "text/javascript; charset=utf-8", include_str!("../../web/dialogs.js")),
    ("connection.js", "text/javascript; charset=utf-8", include_str!("../../web/connection.js")),
    ("dashboard.js", "text/javascript; charset=utf-8", include_str!("../../web/dashboard.js")),
    ("charts.js", "text/javascript; charset=utf-8", include_str!("../../web/charts.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../web/style.css")),
    ("dashboard.css", "text/css; charset=utf-8", include_str!("../../web/dashboard.css")),
];

/// Pages may use the camera, microphone and screen of this origin only; scripts and styles come from here only.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob: mediastream:; \
                   img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn page(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// A page in the site's style for a browser that asked for an address that is not there; API clients get JSON.
pub fn not_found_page() -> Response {
    let mut response = page(NOT_FOUND);
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

pub async fn landing() -> Response {
    page(INDEX)
}

/// `/m/{meeting_id}`: the lobby and meeting view; the script reads the id from the path.
pub async fn meeting(Path(_id): Path<String>) -> Response {
    page(MEETING)
}

pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::not_found(format!("no such asset: {name}")))?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "no-cache")], *body)
        .into_response())
}

/// `/dashboard`: the deployment's analytics (the page asks for an operator credential).
pub async fn dashboard() -> Response {
    page(DASHBOARD)
}

/// `/dashboard/m/{meeting_id}`: one meeting's analytics (the page reads the id from the path).
pub async fn dashboard_meeting(Path(_id): Path<String>) -> Response {
    page(DASHBOARD)
}

/// `/m/{meeting_id}/recordings`: the meeting's recordings.
pub async fn recordings(Path(_id): Path<String>) -> Response {
    page(RECORDINGS)
}

/// `/recordings/{id}/play?share=...`: one recording in a player with its subtitles.
pub async fn player(Path(_id): Path<String>) -> Response {
    page(RECORDINGS)
}
