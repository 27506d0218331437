//! Analytics (`docs/analytics.md`): events in the store with bounded volume, Prometheus metrics with bounded
//! labels, the browser's stats summaries ([`stats`]) and the reports the API and the dashboard read ([`report`]).

pub mod report;
pub mod stats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::store::{AnalyticsEvent, Store, now};

/// Join attempts, and refused joins, written per meeting per minute; beyond it they are counted in Prometheus
/// only (a flood of joins or of bad tokens must not grow the table without bound).
const REFUSALS_PER_MINUTE: u32 = 60;

/// A meeting and an event kind with a per-minute row budget.
type Budget = (String, &'static str);

/// Writes analytics events; shared by signaling, the rooms and the HTTP API.
#[derive(Debug)]
pub struct Analytics {
    store: Arc<dyn Store>,
    /// Per meeting and kind (attempts, refusals): the minute (unix seconds / 60) and the rows written in it.
    budgets: Mutex<HashMap<Budget, (i64, u32)>>,
}

impl Analytics {
    pub fn new(store: Arc<dyn Store>) -> Arc<Analytics> {
        Arc::new(Analytics { store, budgets: Mutex::new(HashMap::new()) })
    }

    /// Writes one event; a failure is logged (analytics never stops a meeting).
    pub async fn event(&self, meeting_id: &str, user_id: &str, kind: &str, metrics: Value) {
        let row = AnalyticsEvent {
            meeting_id: meeting_id.to_string(),
            user_id: user_id.to_string(),
            event_type: kind.to_string(),
            metrics,
            timestamp: now(),
        };
        if let Err(e) = self.store.add_analytics_event(&row).await {
            tracing::warn!(meeting = meeting_id, event = kind, error = %e, "cannot write an analytics event");
        }
    }

    /// Whether another row of `kind` may be written for this meeting this minute (attempts and refusals each
    /// have their own budget, so a flood of one does not hide the other).
    fn allowed(&self, meeting_id: &str, kind: &'static str) -> bool {
        let minute = now().timestamp() / 60;
        let mut budgets = self.budgets.lock().expect("budgets");
        if budgets.len() > 10_000 {
            budgets.retain(|_, (m, _)| *m == minute);
        }
        let entry = budgets.entry((meeting_id.to_string(), kind)).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        entry.1 <= REFUSALS_PER_MINUTE
    }

    /// A `join` message arrived for an existing meeting.
    pub async fn join_attempted(&self, meeting_id: &str, user_id: &str) {
        if self.allowed(meeting_id, "join_attempted") {
            self.event(meeting_id, user_id, "join_attempted", serde_json::json!({})).await;
        }
    }

    /// A join was refused for `reason` (a fixed set: it is a Prometheus label): counted, and written when the
    /// meeting exists (and its refusals this minute are under the bound).
    pub async fn join_failed(&self, meeting_id: Option<&str>, user_id: &str, reason: &'static str) {
        metrics::counter!("sluice_joins_total", "result" => "failed", "reason" => reason).increment(1);
        if let Some(meeting_id) = meeting_id
            && self.allowed(meeting_id, "join_failed")
        {
            self.event(meeting_id, user_id, "join_failed", serde_json::json!({ "reason": reason })).await;
        }
    }

    /// Deletes events older than `days`, every hour.
    pub fn spawn_retention(self: &Arc<Self>, days: u32) -> Option<tokio::task::JoinHandle<()>> {
        if days == 0 {
            return None;
        }
        let store = Arc::clone(&self.store);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let before = now() - chrono::Duration::days(i64::from(days));
                match store.delete_analytics_before(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "old analytics events deleted"),
                    Err(e) => tracing::warn!(error = %e, "cannot delete old analytics events"),
                }
            }
        }))
    }
}

/// Registers every analytics metric at start-up, so `/metrics` names each from the first scrape (a dashboard
/// or an alert on a metric that does not exist yet shows nothing, not zero).
pub fn register_metrics() {
    metrics::counter!("sluice_joins_total", "result" => "succeeded", "reason" => "ok").increment(0);
    for reason in [
        "bad_token",
        "no_meeting",
        "ended",
        "full",
        "locked",
        "removed",
        "denied",
        "forbidden",
        "rate_limited",
        "unavailable",
    ] {
        metrics::counter!("sluice_joins_total", "result" => "failed", "reason" => reason).increment(0);
    }
    for candidate in ["host", "srflx", "prflx", "relay"] {
        metrics::counter!("sluice_ice_connected_total", "candidate" => candidate).increment(0);
    }
    for reason in ["ice_timeout", "dtls_failed"] {
        metrics::counter!("sluice_ice_failures_total", "reason" => reason).increment(0);
    }
    for outcome in ["ready", "failed"] {
        metrics::counter!("sluice_recordings_total", "outcome" => outcome).increment(0);
    }
    for reason in ["malformed", "rate", "too_large"] {
        metrics::counter!("sluice_stats_refused_total", "reason" => reason).increment(0);
    }
    let _ = metrics::histogram!("sluice_join_duration_seconds");
    let _ = metrics::histogram!("sluice_time_to_first_frame_seconds");
    let _ = metrics::histogram!("sluice_ice_connect_seconds");
    let _ = metrics::histogram!("sluice_packet_loss_ratio", "direction" => "in");
    let _ = metrics::histogram!("sluice_jitter_seconds");
    let _ = metrics::histogram!("sluice_rtt_seconds");
    let _ = metrics::histogram!("sluice_transcription_latency_seconds");
    let _ = metrics::histogram!("sluice_recording_processing_seconds");
}

/// Prometheus buckets for the histograms of this module (installed with the recorder in `http::prometheus`).
pub const SECONDS_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0];
pub const RATIO_BUCKETS: &[f64] = &[0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];
pub const LATENCY_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0];
pub const LONG_SECONDS_BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
