//! The recorder finishing what a restart interrupted, against a real store (SQLite) and object storage (a local
//! directory) and the real ffmpeg: a recording whose spool survived completes, files already uploaded are not
//! uploaded again, and one whose spool is gone is marked failed with the reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_controlplane::blobs::Blobs;
use sluice_controlplane::config::{DatabaseConfig, StorageConfig};
use sluice_controlplane::store::{Meeting, MeetingSettings, Recording, RecordingStatus, Store, now};
use sluice_recorder::spool::{Codec, Frame, Manifest, Spool, TrackHeader};
use sluice_recorder::transcribe::Backend;
use sluice_recorder::{Recorder, RecorderConfig};

/// A valid 20 ms Opus packet (CELT, silence): what a muted microphone sends.
const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];

/// The embedded defaults in a temp directory (SQLite, local objects) with one meeting.
async fn deployment() -> (tempfile::TempDir, Arc<dyn Store>, Blobs, Meeting) {
    let data = tempfile::tempdir().unwrap();
    let store =
        sluice_controlplane::store::open(&DatabaseConfig::default().store_options(), data.path()).await.unwrap();
    let blobs = Blobs::open(&StorageConfig::default(), data.path()).unwrap();
    let meeting = Meeting {
        id: sluice_controlplane::ids::meeting_id(),
        host_id: "u_host".into(),
        created_at: now(),
        ended_at: None,
        settings: MeetingSettings::default(),
        recording_enabled: true,
    };
    store.create_meeting(&meeting).await.unwrap();
    (data, store, blobs, meeting)
}

async fn row(store: &dyn Store, meeting: &str, id: &str, status: RecordingStatus) {
    let at = now();
    let r = Recording {
        id: id.into(),
        meeting_id: meeting.into(),
        s3_key: None,
        duration_ms: None,
        transcript_url: None,
        status,
        status_reason: None,
        created_at: at,
        updated_at: at,
    };
    store.create_recording(&r).await.unwrap();
}

async fn wait_for(store: &dyn Store, id: &str, status: RecordingStatus) -> Recording {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = store.recording(id).await.unwrap().unwrap();
        if r.status == status {
            return r;
        }
        assert!(Instant::now() < deadline, "recording {id} is {:?}, not {status:?}: {r:?}", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn interrupted_recordings_finish_from_their_spool_and_uploads_resume() {
    let (data, store, blobs, meeting) = deployment().await;
    // A recording the process was writing when it died: 3 s of one voice, spooled.
    row(store.as_ref(), &meeting.id, "r_spooled", RecordingStatus::Recording).await;
    let config = RecorderConfig {
        transcription: sluice_recorder::transcribe::TranscriptionConfig {
            backend: Backend::None,
            ..Default::default()
        },
        ..RecorderConfig::default()
    };
    let manifest = Manifest { recording_id: "r_spooled".into(), meeting_id: meeting.id.clone(), started_us: 1_000_000 };
    let spool = Spool::create(&data.path().join(&config.spool_dir), &manifest).unwrap();
    let header = TrackHeader {
        track_id: "t1".into(),
        participant_id: "p1".into(),
        name: "Ada".into(),
        source: "microphone".into(),
        codec: Codec::Opus,
    };
    let mut w = spool.add_track(0, &header).unwrap();
    for i in 0..150u32 {
        let f = Frame {
            keyframe: true,
            rtp_timestamp: i * 960,
            arrival_us: 1_200_000 + u64::from(i) * 20_000,
            data: OPUS_SILENCE.to_vec(),
        };
        w.write(&f).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    // Its track file was uploaded before the crash; the MP4 was not.
    let prefix = sluice_controlplane::recording::storage_prefix(&meeting.id, "r_spooled");
    let track_key = format!("{prefix}/tracks/0-Ada-microphone.webm");
    blobs.put(&track_key, bytes::Bytes::from_static(b"uploaded before the crash")).await.unwrap();
    // And one whose spool did not survive.
    row(store.as_ref(), &meeting.id, "r_lost", RecordingStatus::Processing).await;

    let recorder = Recorder::new(config, data.path(), Arc::clone(&store), blobs.clone()).unwrap();
    assert_eq!(recorder.recover(true).await.unwrap(), 2);
    let ready = wait_for(store.as_ref(), "r_spooled", RecordingStatus::Ready).await;
    assert_eq!(ready.duration_ms, Some(200 + 2_980), "from the start to the last frame received: {ready:?}");
    assert_eq!(ready.s3_key.as_deref(), Some(format!("{prefix}/composed.mp4").as_str()));
    assert!(blobs.head(&format!("{prefix}/composed.mp4")).await.unwrap().is_some(), "the MP4 was made and stored");
    assert_eq!(
        &blobs.get(&track_key).await.unwrap()[..],
        b"uploaded before the crash",
        "a stored file is not uploaded again"
    );
    // Removed right after the status is committed (never before: a crash in between must not lose it), so a
    // moment after the test sees `ready`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while spool.dir().exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!spool.dir().exists(), "the spool is removed once the recording is stored");
    let lost = wait_for(store.as_ref(), "r_lost", RecordingStatus::Failed).await;
    assert!(lost.status_reason.unwrap().contains("spool is gone"));
}

#[tokio::test]
async fn a_recorder_among_several_leaves_recordings_it_does_not_hold() {
    let (data, store, blobs, meeting) = deployment().await;
    row(store.as_ref(), &meeting.id, "r_elsewhere", RecordingStatus::Recording).await;
    let recorder = Recorder::new(RecorderConfig::default(), data.path(), Arc::clone(&store), blobs).unwrap();
    assert_eq!(recorder.recover(false).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.recording("r_elsewhere").await.unwrap().unwrap().status, RecordingStatus::Recording);
}
