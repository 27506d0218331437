//! The HTTP API (axum). Handlers are small; each module holds one resource.

pub mod access;
mod analytics;
mod breakouts;
mod chat;
pub mod error;
pub mod files;
mod health;
pub mod json;
pub mod limits;
pub mod meetings;
pub mod moderation;
pub mod recordings;
mod web;
mod whip;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::blobs::Blobs;
use crate::config::{AccessConfig, HttpConfig};
use crate::store::Store;
use crate::tokens::Tokens;
use error::ApiError;

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    pub tokens: Tokens,
    pub metrics: PrometheusHandle,
    /// The media workers, when this process runs them.
    pub dataplane: Option<Arc<sluice_dataplane::runtime::Runtime>>,
    pub signaling: Arc<crate::signaling::Signaling>,
    /// The TURN relay, when this process runs it.
    pub turn: Option<Arc<sluice_turn::runtime::TurnRuntime>>,
    /// Base URL for links, without a trailing slash.
    pub public_url: String,
    /// Base URL this process reaches itself at (the recorder joins through it).
    pub local_url: String,
    /// The recorder, when this deployment records.
    pub recorder: Option<Arc<dyn crate::recording::RecorderHandle>>,
    /// Chat files: size limit, retention, links.
    pub chat: crate::config::ChatConfig,
    pub policy: Policy,
}

/// Who may do what, and how often: the access policies and limits, as the guard and handlers apply them.
#[derive(Debug)]
pub struct Policy {
    pub access: AccessConfig,
    pub limits: Arc<limits::Limits>,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The `Strict-Transport-Security` value, when served over TLS.
    pub hsts: Option<axum::http::HeaderValue>,
    /// `/metrics` lives on the operations listener (`http.ops_listen`), not the public one.
    pub metrics_elsewhere: bool,
}

impl AppState {
    pub fn join_url(&self, meeting_id: &str) -> String {
        format!("{}/m/{meeting_id}", self.public_url)
    }

    /// The signaling WebSocket's URL: `wss://` behind an `https://` public URL.
    pub fn signaling_url(&self) -> String {
        format!("{}/signaling", self.public_url.replacen("http", "ws", 1))
    }
}

/// The process-wide Prometheus recorder, installed on first use (a process has one `metrics` recorder).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            use crate::analytics::{LATENCY_BUCKETS, LONG_SECONDS_BUCKETS, RATIO_BUCKETS, SECONDS_BUCKETS};
            let buckets: [(&str, &[f64]); 8] = [
                ("sluice_join_duration_seconds", SECONDS_BUCKETS),
                ("sluice_time_to_first_frame_seconds", SECONDS_BUCKETS),
                ("sluice_ice_connect_seconds", SECONDS_BUCKETS),
                ("sluice_packet_loss_ratio", RATIO_BUCKETS),
                ("sluice_jitter_seconds", LATENCY_BUCKETS),
                ("sluice_rtt_seconds", LATENCY_BUCKETS),
                ("sluice_transcription_latency_seconds", LONG_SECONDS_BUCKETS),
                ("sluice_recording_processing_seconds", LONG_SECONDS_BUCKETS),
            ];
            let mut builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("sluice_http_request_duration_seconds".into()),
                    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
                )
                .expect("the bucket list is not empty");
            for (name, bounds) in buckets {
                builder = builder.set_buckets_for_metric(Matcher::Full(name.into()), bounds).expect("not empty");
            }
            let handle = builder.install_recorder().expect("no other metrics recorder is installed in this process");
            metrics::gauge!("sluice_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            crate::analytics::register_metrics();
            handle
        })
        .clone()
}

pub fn router(state: Arc<AppState>, config: &HttpConfig) -> Router {
    // Uploads stream and count their bytes against `chat.file_size_max_bytes` themselves, with an idle timeout
    // instead of the request timeout (a large file on a slow link takes longer than any API call).
    let uploads = Router::new().route("/meetings/{id}/files", post(files::upload).get(files::list));
    let api = Router::new()
        .route("/", get(web::landing))
        .route("/m/{id}", get(web::meeting))
        .route("/assets/{name}", get(web::asset))
        .route("/api", get(index))
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/meetings", post(meetings::create))
        .route("/meetings/{id}", get(meetings::get).delete(meetings::end).patch(moderation::patch))
        .route("/meetings/{id}/participants", get(moderation::participants))
        .route("/meetings/{id}/participants/{participant}/{action}", post(moderation::participant_control))
        .route("/meetings/{id}/control/{action}", post(moderation::meeting_control))
        .route("/meetings/{id}/join", post(meetings::join))
        .route("/meetings/{id}/tokens", post(meetings::mint))
        .route("/creator-tokens", post(meetings::mint_creator))
        .route("/meetings/{id}/recording/start", post(recordings::start))
        .route("/meetings/{id}/recording/stop", post(recordings::stop))
        .route("/meetings/{id}/recordings", get(recordings::list))
        .route("/m/{id}/recordings", get(web::recordings))
        .route("/recordings/{id}", get(recordings::get))
        .route("/recordings/{id}/play", get(web::player))
        .route("/recordings/{id}/files/{*name}", get(recordings::file))
        .route("/meetings/{id}/chat", get(chat::history))
        .route("/meetings/{id}/analytics", get(analytics::meeting))
        .route("/analytics", get(analytics::deployment))
        .route("/dashboard", get(web::dashboard))
        .route("/dashboard/m/{id}", get(web::dashboard_meeting))
        .route("/meetings/{id}/breakouts", get(breakouts::get))
        .route("/meetings/{id}/breakouts/{action}", post(breakouts::control))
        .route("/meetings/{id}/files/{file}/link", get(files::link))
        .route("/files/{file}", get(files::download))
        .route("/signaling", get(crate::signaling::upgrade))
        .route("/whip/{id}", post(whip::publish))
        .route("/whip/{id}/{participant}", delete(whip::end).patch(whip::patch))
        .route("/whep/{id}", post(whip::play))
        .route("/whep/{id}/{participant}", delete(whip::end).patch(whip::patch))
        .layer(RequestBodyLimitLayer::new(config.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_secs.max(1)),
        ));
    api.merge(uploads)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), access::guard))
        .layer(middleware::from_fn(track))
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)))
        .with_state(state)
}

/// The operations listener (`http.ops_listen`): metrics and health for the monitoring network, nothing else.
pub fn ops_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics_ops))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .with_state(state)
}

async fn index() -> impl IntoResponse {
    axum::Json(json!({
        "name": "sluice",
        "version": env!("CARGO_PKG_VERSION"),
        "api": [
            "POST /meetings", "GET /meetings/{id}", "POST /meetings/{id}/join", "DELETE /meetings/{id}",
            "POST /meetings/{id}/tokens", "POST /creator-tokens", "PATCH /meetings/{id}",
            "GET /meetings/{id}/participants", "POST /meetings/{id}/participants/{participant}/{action}",
            "POST /meetings/{id}/control/{action}",
            "POST /meetings/{id}/recording/start", "POST /meetings/{id}/recording/stop",
            "GET /meetings/{id}/recordings", "GET /recordings/{id}", "GET /recordings/{id}/files/{name}",
            "GET /meetings/{id}/breakouts", "POST /meetings/{id}/breakouts/{action}",
            "GET /meetings/{id}/analytics", "GET /analytics", "GET /dashboard",
            "GET /meetings/{id}/chat", "POST /meetings/{id}/files", "GET /meetings/{id}/files",
            "GET /meetings/{id}/files/{file}/link", "GET /files/{file}",
            "GET /signaling (WebSocket)", "GET /openapi.json", "GET /healthz", "GET /readyz", "GET /metrics",
        ],
    }))
}

/// The API description, `docs/openapi.json`, embedded.
async fn openapi() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], include_str!("../../../docs/openapi.json"))
}

/// A browser navigating to an unknown address (it accepts HTML) gets a page; anything else the JSON error.
async fn not_found(method: axum::http::Method, uri: axum::http::Uri, headers: axum::http::HeaderMap) -> Response {
    let wants_html = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|t| t.trim().starts_with("text/html")));
    if method == axum::http::Method::GET && wants_html {
        return web::not_found_page();
    }
    ApiError::not_found(format!("no such path: {}", uri.path())).into_response()
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!("{method} is not allowed on {}", uri.path()),
    }
}

/// Counts requests and their latency by route template (not raw path, which would grow without bound).
async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("sluice_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("sluice_http_request_duration_seconds", "route" => route).record(started.elapsed());
    response
}
