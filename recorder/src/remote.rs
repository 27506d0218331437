//! The recorder in its own process (`sluice recorder`), away from the SFU's cores: a small HTTP job API it serves,
//! and the [`RemoteRecorder`] handle `sluice serve` uses to reach it. A job carries a recorder token for its
//! meeting; the recorder takes only jobs whose token it can verify (the deployment's shared token secret or
//! key), so only the control plane can make it join a meeting.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;
use sluice_controlplane::recording::{RecorderHandle, RecordingJob};
use sluice_controlplane::store::Role;
use sluice_controlplane::tokens::Tokens;

use crate::Recorder;

/// Requests to a remote recorder are bounded by this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `sluice serve`'s handle on a `sluice recorder` elsewhere.
#[derive(Debug, Clone)]
pub struct RemoteRecorder {
    http: reqwest::Client,
    base: String,
}

impl RemoteRecorder {
    pub fn new(base: &str) -> Result<RemoteRecorder, String> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("recorder.remote_url {base:?} must be an http:// or https:// URL"));
        }
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().map_err(|e| e.to_string())?;
        Ok(RemoteRecorder { http, base: base.trim_end_matches('/').to_string() })
    }

    async fn error_of(reply: reqwest::Response) -> String {
        let status = reply.status();
        let body: serde_json::Value = reply.json().await.unwrap_or_default();
        format!("{status}: {}", body["error"].as_str().unwrap_or("no reason given"))
    }
}

#[async_trait::async_trait]
impl RecorderHandle for RemoteRecorder {
    async fn start(&self, job: RecordingJob) -> Result<(), String> {
        let url = format!("{}/jobs", self.base);
        let reply = self
            .http
            .post(&url)
            .json(&job)
            .send()
            .await
            .map_err(|e| format!("cannot reach the recorder at {url}: {e}"))?;
        if reply.status().is_success() { Ok(()) } else { Err(Self::error_of(reply).await) }
    }

    async fn stop(&self, job: &RecordingJob) -> Result<bool, String> {
        let url = format!("{}/jobs/{}/stop", self.base, job.recording_id);
        let reply = self
            .http
            .post(&url)
            .json(job)
            .send()
            .await
            .map_err(|e| format!("cannot reach the recorder at {url}: {e}"))?;
        match reply.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(Self::error_of(reply).await),
        }
    }

    fn in_process(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone)]
struct JobApi {
    recorder: Recorder,
    tokens: Tokens,
}

/// The job API of `sluice recorder`: `POST /jobs`, `POST /jobs/{id}/stop`, `GET /healthz`.
pub fn job_api(recorder: Recorder, tokens: Tokens) -> axum::Router {
    axum::Router::new()
        .route("/jobs", post(start))
        .route("/jobs/{id}/stop", post(stop))
        .route("/healthz", get(healthz))
        .with_state(Arc::new(JobApi { recorder, tokens }))
}

fn refuse(status: StatusCode, why: String) -> axum::response::Response {
    (status, Json(json!({"error": why}))).into_response()
}

/// Only the control plane can mint recorder tokens for a meeting: a job whose token verifies here came from it.
fn check(api: &JobApi, job: &RecordingJob) -> Result<(), (StatusCode, String)> {
    match api.tokens.verify(&job.token, &job.meeting_id) {
        Ok(claims) if claims.role == Role::Recorder => Ok(()),
        Ok(_) => Err((StatusCode::FORBIDDEN, "the job's token is not a recorder token".into())),
        Err(e) => Err((StatusCode::UNAUTHORIZED, format!("the job's token does not verify here: {e}"))),
    }
}

async fn start(State(api): State<Arc<JobApi>>, Json(job): Json<RecordingJob>) -> axum::response::Response {
    if let Err((status, why)) = check(&api, &job) {
        return refuse(status, why);
    }
    match api.recorder.start(job).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn stop(
    State(api): State<Arc<JobApi>>,
    Path(id): Path<String>,
    Json(job): Json<RecordingJob>,
) -> axum::response::Response {
    if let Err((status, why)) = check(&api, &job) {
        return refuse(status, why);
    }
    if job.recording_id != id {
        return refuse(StatusCode::BAD_REQUEST, format!("the job is for {:?}, the path for {id:?}", job.recording_id));
    }
    match api.recorder.stop(&job).await {
        Ok(true) => StatusCode::ACCEPTED.into_response(),
        Ok(false) => refuse(StatusCode::NOT_FOUND, format!("this recorder does not hold recording {id:?}")),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn healthz(State(api): State<Arc<JobApi>>) -> impl IntoResponse {
    Json(json!({"status": "ok", "recording": api.recorder.active()}))
}
