//! The recorder as a service: takes jobs from the control plane, records each meeting into its spool, then
//! muxes, composes, uploads and transcribes, moving the `recordings` row from `recording` to `processing` to
//! `ready` (or `failed`, with the reason in words). At start-up it finishes what a crash or restart
//! interrupted: the spool holds every frame received, so the recording completes with them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sluice_controlplane::blobs::Blobs;
use sluice_controlplane::recording::{RecorderHandle, RecordingJob};
use sluice_controlplane::store::{RecordingStatus, RecordingUpdate, Store, now};
use tokio::sync::watch;

use crate::mux::TrackFile;
use crate::session::{Ended, Session};
use crate::spool::{Manifest, Spool};
use crate::transcribe::{self, TranscriptionConfig};

/// Recordings running at once on one recorder.
const ACTIVE_MAX: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecorderConfig {
    /// Record at all (`sluice serve` runs the recorder unless this is false).
    pub enabled: bool,
    /// Where recordings spool while they run (relative to the data directory).
    pub spool_dir: PathBuf,
    /// The ffmpeg binary that composes the MP4 and decodes voices for transcription.
    pub ffmpeg: PathBuf,
    /// Threads ffmpeg may use: composition runs beside live meetings and should not take every core.
    pub compose_threads: u32,
    /// `sluice serve` sends recordings to the `sluice recorder` at this URL instead of recording in-process.
    pub remote_url: String,
    /// `sluice recorder`: where it takes jobs from the control plane.
    pub listen: std::net::SocketAddr,
    /// Keep the spool after a recording is uploaded (debugging).
    pub keep_spool: bool,
    pub transcription: TranscriptionConfig,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            enabled: true,
            spool_dir: "spool".into(),
            ffmpeg: "ffmpeg".into(),
            compose_threads: 2,
            remote_url: String::new(),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8090)),
            keep_spool: false,
            transcription: TranscriptionConfig::default(),
        }
    }
}

/// What `manifest.json` in storage says about a recording.
#[derive(Debug, Serialize)]
struct StoredManifest<'a> {
    recording_id: &'a str,
    meeting_id: &'a str,
    started_at_unix_ms: u64,
    duration_ms: u64,
    tracks: &'a [TrackFile],
    composed: Option<&'a str>,
    transcript: Option<&'a str>,
    /// How long transcription took, from the start of the first track's recognition to the last cue.
    transcription_ms: Option<u64>,
}

#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    config: RecorderConfig,
    spool_root: PathBuf,
    store: Arc<dyn Store>,
    blobs: Blobs,
    /// Running recordings: the switch that stops each.
    active: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("spool", &self.inner.spool_root).finish_non_exhaustive()
    }
}

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

impl Recorder {
    pub fn new(
        config: RecorderConfig,
        data_dir: &Path,
        store: Arc<dyn Store>,
        blobs: Blobs,
    ) -> Result<Recorder, String> {
        let spool_root = data_dir.join(&config.spool_dir);
        std::fs::create_dir_all(&spool_root)
            .map_err(|e| format!("cannot create the recorder's spool {}: {e}", spool_root.display()))?;
        if std::process::Command::new(&config.ffmpeg).arg("-version").output().is_err() {
            tracing::warn!(ffmpeg = %config.ffmpeg.display(), "ffmpeg is not installed: recordings will keep per-track files but fail to compose (Debian: apt install ffmpeg)");
        }
        let inner = Inner { config, spool_root, store, blobs, active: Mutex::new(HashMap::new()) };
        Ok(Recorder { inner: Arc::new(inner) })
    }

    /// Finishes recordings a crash or restart interrupted; returns how many it took up. Runs them in the
    /// background. `sole`: this is the deployment's only recorder, so an interrupted recording whose spool is not
    /// here is lost and marked failed; a recorder among several leaves those to the recorder that has them.
    pub async fn recover(&self, sole: bool) -> Result<usize, String> {
        let mut interrupted =
            self.inner.store.recordings_with_status(RecordingStatus::Recording).await.map_err(|e| e.to_string())?;
        interrupted.extend(
            self.inner.store.recordings_with_status(RecordingStatus::Processing).await.map_err(|e| e.to_string())?,
        );
        interrupted.retain(|r| sole || self.inner.spool_root.join(&r.id).join("recording.json").exists());
        let n = interrupted.len();
        for r in interrupted {
            let inner = Arc::clone(&self.inner);
            tracing::info!(recording = %r.id, meeting = %r.meeting_id, "finishing a recording interrupted by a restart");
            tokio::spawn(async move {
                let dir = inner.spool_root.join(&r.id);
                if dir.join("recording.json").exists() {
                    inner.finish(&r.id, Spool::open(dir)).await;
                } else {
                    inner.fail(&r.id, "the recorder stopped and its spool is gone".into()).await;
                }
            });
        }
        Ok(n)
    }

    /// Recordings running now.
    pub fn active(&self) -> usize {
        self.inner.active.lock().expect("not poisoned").len()
    }

    /// Stops every running recording (shutting down): each session flushes its spool, and the next start
    /// finishes them.
    pub fn stop_all(&self) {
        for switch in self.inner.active.lock().expect("not poisoned").values() {
            let _ = switch.send(true);
        }
    }
}

#[async_trait::async_trait]
impl RecorderHandle for Recorder {
    async fn start(&self, job: RecordingJob) -> Result<(), String> {
        let (tx, rx) = watch::channel(false);
        {
            let mut active = self.inner.active.lock().expect("not poisoned");
            if active.len() >= ACTIVE_MAX {
                return Err(format!("the recorder already records {ACTIVE_MAX} meetings"));
            }
            active.insert(job.recording_id.clone(), tx);
        }
        let manifest = Manifest {
            recording_id: job.recording_id.clone(),
            meeting_id: job.meeting_id.clone(),
            started_us: unix_us(),
        };
        let spool = match Spool::create(&self.inner.spool_root, &manifest) {
            Ok(s) => s,
            Err(e) => {
                self.inner.active.lock().expect("not poisoned").remove(&job.recording_id);
                return Err(e.to_string());
            }
        };
        let inner = Arc::clone(&self.inner);
        metrics::gauge!("sluice_recordings_active").increment(1.0);
        let started = serde_json::json!({ "recording_id": job.recording_id });
        inner.event(&job.meeting_id, "recording_started", started).await;
        tokio::spawn(async move { inner.record(job, spool, rx).await });
        Ok(())
    }

    async fn stop(&self, job: &RecordingJob) -> Result<bool, String> {
        let active = self.inner.active.lock().expect("not poisoned");
        Ok(match active.get(&job.recording_id) {
            Some(switch) => {
                let _ = switch.send(true);
                true
            }
            None => false,
        })
    }
}

impl Inner {
    async fn record(self: Arc<Self>, job: RecordingJob, spool: Spool, stop: watch::Receiver<bool>) {
        let mut session = Session::new(&spool);
        let result = session.run(&job.signaling_url, &job.meeting_id, &job.token, stop).await;
        let frames = session.frames;
        drop(session);
        self.active.lock().expect("not poisoned").remove(&job.recording_id);
        metrics::gauge!("sluice_recordings_active").decrement(1.0);
        match result {
            Ok(Ended::Stopped) => tracing::info!(recording = %job.recording_id, frames, "recording stopped"),
            Ok(Ended::MeetingOver(why)) => {
                tracing::info!(recording = %job.recording_id, frames, why, "recording ended with the meeting")
            }
            Err(e) if frames == 0 => {
                return self.fail(&job.recording_id, format!("the recorder could not record: {e}")).await;
            }
            Err(e) => {
                tracing::warn!(recording = %job.recording_id, frames, error = %e, "recording cut short; keeping what was received")
            }
        }
        self.finish(&job.recording_id, spool).await;
    }

    /// An analytics event of the meeting (`docs/analytics.md`); a failure to write it is logged.
    async fn event(&self, meeting_id: &str, kind: &str, metrics: serde_json::Value) {
        let row = sluice_controlplane::store::AnalyticsEvent {
            meeting_id: meeting_id.to_string(),
            user_id: String::new(),
            event_type: kind.to_string(),
            metrics,
            timestamp: now(),
        };
        if let Err(e) = self.store.add_analytics_event(&row).await {
            tracing::warn!(meeting = meeting_id, event = kind, error = %e, "cannot write an analytics event");
        }
    }

    /// An event of the recording's meeting.
    async fn recording_event(&self, id: &str, kind: &str, mut metrics: serde_json::Value) {
        let Ok(Some(recording)) = self.store.recording(id).await else { return };
        metrics["recording_id"] = serde_json::json!(id);
        self.event(&recording.meeting_id, kind, metrics).await;
    }

    async fn fail(&self, id: &str, reason: String) {
        tracing::warn!(recording = id, reason, "recording failed");
        metrics::counter!("sluice_recordings_failed_total").increment(1);
        metrics::counter!("sluice_recordings_total", "outcome" => "failed").increment(1);
        self.recording_event(id, "recording_failed", serde_json::json!({ "reason": reason })).await;
        let update = RecordingUpdate {
            status: Some(RecordingStatus::Failed),
            status_reason: Some(reason),
            ..Default::default()
        };
        if let Err(e) = self.store.update_recording(id, &update, now()).await {
            tracing::error!(recording = id, error = %e, "cannot mark a recording failed");
        }
    }

    /// Whether `key` is in storage (a failure to ask counts as no: the upload is then repeated).
    async fn stored(&self, key: &str) -> bool {
        matches!(self.blobs.head(key).await, Ok(Some(_)))
    }

    async fn set(&self, id: &str, update: RecordingUpdate) -> bool {
        match self.store.update_recording(id, &update, now()).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(recording = id, error = %e, "cannot update a recording");
                false
            }
        }
    }

    /// From the spool to files in storage, then the transcript.
    async fn finish(&self, id: &str, spool: Spool) {
        if !self.set(id, RecordingUpdate { status: Some(RecordingStatus::Processing), ..Default::default() }).await {
            return;
        }
        match self.process(id, &spool).await {
            Ok(()) => {
                if !self.config.keep_spool
                    && let Err(e) = spool.remove()
                {
                    tracing::warn!(recording = id, error = %e, "cannot remove a finished recording's spool");
                }
            }
            Err(reason) => self.fail(id, reason).await,
        }
    }

    async fn process(&self, id: &str, spool: &Spool) -> Result<(), String> {
        let manifest = spool.manifest().map_err(|e| e.to_string())?;
        let prefix = sluice_controlplane::recording::storage_prefix(&manifest.meeting_id, &manifest.recording_id);
        let out = spool.dir().join("out");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let tracks = {
            let (spool, out, started) = (spool.clone(), out.clone(), manifest.started_us);
            tokio::task::spawn_blocking(move || -> Result<Vec<TrackFile>, String> {
                let files = spool.tracks().map_err(|e| e.to_string())?;
                let mut tracks = Vec::new();
                for (n, f) in files.iter().enumerate() {
                    if let Some(t) = crate::mux::mux_track(f, started, &out, n).map_err(|e| e.to_string())? {
                        tracks.push(t);
                    }
                }
                Ok(tracks)
            })
            .await
            .map_err(|e| format!("muxing failed: {e}"))??
        };
        if tracks.is_empty() {
            return Err("nothing was recorded: no participant sent audio or video while the recording ran".into());
        }
        let duration_ms = tracks.iter().map(|t| t.offset_ms + t.duration_ms).max().unwrap_or(0);
        // An object exists only once its (multipart) upload completed, so what a restart finds stored is whole:
        // the upload resumes with what is missing.
        for t in &tracks {
            let key = format!("{prefix}/tracks/{}", t.file);
            if !self.stored(&key).await {
                self.blobs
                    .put_file_multipart(&key, &out.join(&t.file))
                    .await
                    .map_err(|e| format!("uploading {}: {e}", t.file))?;
            }
        }
        let composed = "composed.mp4";
        let key = format!("{prefix}/{composed}");
        if !self.stored(&key).await {
            let c = &self.config;
            let composition =
                crate::compose::compose(&c.ffmpeg, &out, &tracks, duration_ms, c.compose_threads, composed).await;
            if let Err(e) = composition {
                self.put_manifest(&prefix, &manifest, duration_ms, &tracks, None, None).await?;
                return Err(format!("composing the MP4 failed (the per-track files are stored): {e}"));
            }
            self.blobs
                .put_file_multipart(&key, &out.join(composed))
                .await
                .map_err(|e| format!("uploading the MP4: {e}"))?;
        }
        self.put_manifest(&prefix, &manifest, duration_ms, &tracks, Some(composed), None).await?;
        // Before `ready`, so a ready recording has its chat beside it; the media matter more than the chat, so a
        // failed export is noted, not fatal.
        let chat_missing = match self.export_chat(&prefix, &manifest, duration_ms).await {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(recording = id, error = %e, "cannot export the chat");
                Some(format!("the chat could not be exported: {e}"))
            }
        };
        let ready = RecordingUpdate {
            status_reason: chat_missing,
            status: Some(RecordingStatus::Ready),
            s3_key: Some(key),
            duration_ms: Some(duration_ms as i64),
            ..Default::default()
        };
        self.set(id, ready).await;
        metrics::counter!("sluice_recordings_ready_total").increment(1);
        metrics::counter!("sluice_recordings_total", "outcome" => "ready").increment(1);
        // Processing: from the end of the recording (its start plus its length) to ready.
        let processing_ms = (unix_us() / 1000).saturating_sub(manifest.started_us / 1000 + duration_ms);
        metrics::histogram!("sluice_recording_processing_seconds").record(processing_ms as f64 / 1000.0);
        let ready = serde_json::json!({ "duration_ms": duration_ms, "processing_ms": processing_ms });
        self.recording_event(id, "recording_ready", ready).await;
        tracing::info!(recording = id, duration_ms, tracks = tracks.len(), "recording ready");
        self.transcript(id, &prefix, &manifest, duration_ms, &out, &tracks).await;
        Ok(())
    }

    /// The subtitles, after the recording is ready: a failure leaves the recording ready, with the reason noted.
    async fn transcript(
        &self,
        id: &str,
        prefix: &str,
        manifest: &Manifest,
        duration_ms: u64,
        out: &Path,
        tracks: &[TrackFile],
    ) {
        let c = &self.config;
        if c.transcription.backend == transcribe::Backend::None {
            return;
        }
        let (cues, took) = match transcribe::transcribe(&c.transcription, &c.ffmpeg, out, tracks).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(recording = id, error = %e, "transcription failed");
                let note =
                    RecordingUpdate { status_reason: Some(format!("transcription failed: {e}")), ..Default::default() };
                self.set(id, note).await;
                return;
            }
        };
        metrics::histogram!("sluice_transcription_seconds").record(took.as_secs_f64());
        let key = format!("{prefix}/transcript.vtt");
        if let Err(e) = self.blobs.put(&key, transcribe::vtt(&cues).into()).await {
            tracing::warn!(recording = id, error = %e, "cannot store the transcript");
            return;
        }
        let _ = self
            .put_manifest(prefix, manifest, duration_ms, tracks, Some("composed.mp4"), Some(("transcript.vtt", took)))
            .await;
        self.set(id, RecordingUpdate { transcript_url: Some(key), ..Default::default() }).await;
        tracing::info!(recording = id, cues = cues.len(), seconds = took.as_secs_f64(), "transcript ready");
        // Latency from the end of the recording to its transcript in storage.
        let latency_ms = (unix_us() / 1000).saturating_sub(manifest.started_us / 1000 + duration_ms);
        metrics::histogram!("sluice_transcription_latency_seconds").record(latency_ms as f64 / 1000.0);
        let done = serde_json::json!({ "latency_ms": latency_ms, "cues": cues.len() });
        self.recording_event(id, "transcription_done", done).await;
    }

    /// `chat.txt` and `chat.json`: the public messages said while the recording ran.
    async fn export_chat(&self, prefix: &str, manifest: &Manifest, duration_ms: u64) -> Result<(), String> {
        let started = chrono::DateTime::from_timestamp_micros(manifest.started_us as i64)
            .ok_or_else(|| format!("the recording's start ({} us) is not a time", manifest.started_us))?;
        let ended = started + chrono::Duration::milliseconds(duration_ms as i64);
        let messages = self
            .store
            .chat_public_between(&manifest.meeting_id, started, ended, crate::chat_export::EXPORT_MAX)
            .await
            .map_err(|e| format!("reading the chat: {e}"))?;
        let (text, json) = crate::chat_export::render(&messages, started);
        self.blobs
            .put(&format!("{prefix}/chat.txt"), text.into())
            .await
            .map_err(|e| format!("uploading the chat: {e}"))?;
        self.blobs
            .put(&format!("{prefix}/chat.json"), json.into())
            .await
            .map_err(|e| format!("uploading the chat: {e}"))?;
        tracing::info!(recording = %manifest.recording_id, messages = messages.len(), "chat exported");
        Ok(())
    }

    async fn put_manifest(
        &self,
        prefix: &str,
        manifest: &Manifest,
        duration_ms: u64,
        tracks: &[TrackFile],
        composed: Option<&str>,
        transcript: Option<(&str, std::time::Duration)>,
    ) -> Result<(), String> {
        let stored = StoredManifest {
            recording_id: &manifest.recording_id,
            meeting_id: &manifest.meeting_id,
            started_at_unix_ms: manifest.started_us / 1000,
            duration_ms,
            tracks,
            composed,
            transcript: transcript.map(|t| t.0),
            transcription_ms: transcript.map(|t| t.1.as_millis() as u64),
        };
        let body = serde_json::to_vec_pretty(&stored).expect("a manifest serialises");
        self.blobs
            .put(&format!("{prefix}/manifest.json"), body.into())
            .await
            .map_err(|e| format!("uploading the manifest: {e}"))
    }
}
