//! What the control plane asks of a recorder. `sluice-recorder` implements it; the HTTP API calls it. The
//! recorder joins the meeting like any subscriber (with a recorder token), so it can run in this process or
//! beside it.

/// One recording to make: the `recordings` row exists with status `recording`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RecordingJob {
    pub recording_id: String,
    pub meeting_id: String,
    /// A recorder token for the meeting (role `recorder`: subscribes, never publishes).
    pub token: String,
    /// The signaling WebSocket to join through (`ws://.../signaling`).
    pub signaling_url: String,
}

#[async_trait::async_trait]
pub trait RecorderHandle: Send + Sync + std::fmt::Debug {
    /// Starts recording; returns once the recorder has taken the job (not once it has joined).
    async fn start(&self, job: RecordingJob) -> Result<(), String>;
    /// Stops receiving. Processing (mux, composition, upload, transcription) goes on in the background and ends
    /// with the row `ready` or `failed`. False if this recorder does not hold that recording.
    /// `job` names the recording and carries a fresh recorder token for its meeting (a recorder elsewhere checks
    /// it before it stops anything).
    async fn stop(&self, job: &RecordingJob) -> Result<bool, String>;
    /// In this process: it joins through this server's own loopback address. A recorder elsewhere joins
    /// through the public URL.
    fn in_process(&self) -> bool {
        true
    }
}

/// Where a recording's files live in object storage: `composed.mp4`, `transcript.vtt`, `manifest.json` and
/// `tracks/` under it.
pub fn storage_prefix(meeting_id: &str, recording_id: &str) -> String {
    format!("recordings/{meeting_id}/{recording_id}")
}
