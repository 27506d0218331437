//! The recorder's post-processing against the real tools: ffmpeg composes per-track WebM files into an H.264 +
//! AAC MP4, and PocketSphinx (through our FFI) transcribes a spoken sentence into cues naming the speaker.
//! Track files here are made by ffmpeg from espeak-ng speech and a test pattern; the browser tests
//! (`tests/browser.rs`) run the same pipeline on what the recorder received from real participants.

use std::path::Path;
use std::process::Command;

use sluice_recorder::mux::TrackFile;
use sluice_recorder::spool::{Codec, TrackHeader};
use sluice_recorder::transcribe::{self, Backend, TranscriptionConfig};

/// PocketSphinx's small model is rough on synthetic speech; this sentence, in espeak-ng's US voice, is one it
/// mostly gets.
const SENTENCE: &str = "good morning everyone. please open the report and check the numbers.";

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e} (tests/run.sh installs it)"));
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

fn ffmpeg(dir: &Path, args: &[&str]) {
    run(
        Command::new("ffmpeg").current_dir(dir).args(["-hide_banner", "-loglevel", "error", "-y"]).args(args),
        "ffmpeg",
    );
}

fn track(participant: &str, name: &str, source: &str, codec: Codec, file: &str, offset_ms: u64) -> TrackFile {
    TrackFile {
        header: TrackHeader {
            track_id: format!("{participant}-{source}"),
            participant_id: participant.into(),
            name: name.into(),
            source: source.into(),
            codec,
        },
        file: file.into(),
        offset_ms,
        duration_ms: 3000,
        frames: 0,
        width: 320,
        height: 240,
    }
}

/// `speech.webm`: the sentence as Opus, with a second of silence before and after.
fn speech(dir: &Path) {
    run(
        Command::new("espeak-ng").current_dir(dir).args(["-v", "en-us", "-s", "150", "-w", "speech.wav", SENTENCE]),
        "espeak-ng",
    );
    ffmpeg(
        dir,
        &[
            "-i",
            "speech.wav",
            "-af",
            "adelay=1000:all=1,apad=pad_dur=1",
            "-ar",
            "48000",
            "-ac",
            "2",
            "-c:a",
            "libopus",
            "speech.webm",
        ],
    );
}

#[tokio::test]
async fn voice_tracks_become_cues_that_name_their_speaker() {
    let dir = tempfile::tempdir().unwrap();
    speech(dir.path());
    let tracks = [track("p1", "Alice", "microphone", Codec::Opus, "speech.webm", 2_000)];
    let config = TranscriptionConfig { backend: Backend::Pocketsphinx, ..TranscriptionConfig::default() };
    let (cues, took) = transcribe::transcribe(&config, Path::new("ffmpeg"), dir.path(), &tracks).await.unwrap();
    println!("{took:?}: {cues:#?}");
    assert!(!cues.is_empty(), "no cue for a clearly spoken sentence");
    assert!(cues.iter().all(|c| c.speaker == "Alice"));
    // The speech starts 1 s into the file, which starts 2 s into the recording.
    assert!(cues[0].start_ms >= 2_700 && cues[0].start_ms <= 3_500, "{cues:?}");
    let heard: String = cues.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join(" ");
    let said = ["morning", "everyone", "please", "open", "report", "check", "numbers"];
    let shared = said.iter().filter(|w| heard.split_whitespace().any(|h| h == **w)).count();
    assert!(shared >= 2, "heard {heard:?}, said {SENTENCE:?}");
    assert!(transcribe::vtt(&cues).contains("<v Alice>"));
}

#[tokio::test]
async fn a_missing_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    speech(dir.path());
    let tracks = [track("p1", "Alice", "microphone", Codec::Opus, "speech.webm", 0)];
    let config = TranscriptionConfig { model_dir: "/nonexistent/model".into(), ..TranscriptionConfig::default() };
    let e = transcribe::transcribe(&config, Path::new("ffmpeg"), dir.path(), &tracks).await.unwrap_err();
    assert!(e.contains("/nonexistent/model") && e.contains("pocketsphinx-en-us"), "{e}");
}

#[tokio::test]
async fn tracks_compose_into_an_h264_aac_mp4_of_the_recording_length() {
    let dir = tempfile::tempdir().unwrap();
    speech(dir.path());
    ffmpeg(
        dir.path(),
        &["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "3", "-c:v", "libvpx", "-b:v", "300k", "cam.webm"],
    );
    ffmpeg(
        dir.path(),
        &["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=10", "-t", "2", "-c:v", "libvpx", "screen.webm"],
    );
    let tracks = [
        track("p1", "Alice", "microphone", Codec::Opus, "speech.webm", 500),
        track("p1", "Alice", "camera", Codec::Vp8, "cam.webm", 400),
        track("p2", "Bob O'Neil: \\ ", "camera", Codec::Vp8, "cam.webm", 1_000),
        track("p2", "Bob", "screen", Codec::Vp8, "screen.webm", 2_000),
        // Alice's camera again, as after a camera restart or a recorder rejoin: drawn in her cell from 3.5 s.
        track("p1", "Alice", "camera", Codec::Vp8, "cam.webm", 3_500),
    ];
    sluice_recorder::compose::compose(Path::new("ffmpeg"), dir.path(), &tracks, 6_000, 2, "out.mp4").await.unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name:format=duration", "-of", "csv=p=0"])
        .arg(dir.path().join("out.mp4"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("h264") && text.contains("aac"), "{text}");
    let duration: f64 = text.lines().last().unwrap().trim().parse().unwrap();
    assert!((duration - 6.0).abs() < 0.3, "{text}");
    if let Some(keep) = std::env::var_os("SLUICE_KEEP_COMPOSED") {
        std::fs::copy(dir.path().join("out.mp4"), keep).unwrap();
    }
}

#[tokio::test]
async fn a_missing_ffmpeg_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let tracks = [track("p1", "Alice", "camera", Codec::Vp8, "cam.webm", 0)];
    let e = sluice_recorder::compose::compose(Path::new("/nonexistent/ffmpeg"), dir.path(), &tracks, 1_000, 1, "o.mp4")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("apt install ffmpeg"), "{e}");
}

/// Annex B access units of `stream` (one slice per picture, as x264 and browsers make them): a new unit starts
/// at a parameter set, SEI or slice that follows a slice.
fn access_units(stream: &[u8]) -> Vec<Vec<u8>> {
    // NAL units after 3- or 4-byte start codes; each is written back with a 4-byte one.
    let starts: Vec<usize> =
        (0..stream.len().saturating_sub(2)).filter(|&i| stream[i..i + 3] == [0, 0, 1]).map(|i| i + 3).collect();
    let mut units: Vec<Vec<u8>> = Vec::new();
    let mut has_slice = false;
    for (k, &start) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(stream.len(), |next| next - 3);
        while end > start && stream[end - 1] == 0 {
            end -= 1;
        }
        let nal = &stream[start..end];
        let kind = nal[0] & 0x1f;
        if units.is_empty() || (has_slice && matches!(kind, 1 | 5 | 6 | 7 | 8 | 9)) {
            units.push(Vec::new());
            has_slice = false;
        }
        has_slice |= matches!(kind, 1 | 5);
        let unit = units.last_mut().unwrap();
        unit.extend_from_slice(&[0, 0, 0, 1]);
        unit.extend_from_slice(nal);
    }
    units
}

#[test]
fn an_h264_track_becomes_an_mp4_file_without_re_encoding() {
    use sluice_recorder::spool::{Frame, Manifest, Spool};
    let dir = tempfile::tempdir().unwrap();
    ffmpeg(
        dir.path(),
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-t",
            "2",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-x264-params",
            "keyint=25",
            "-f",
            "h264",
            "cam.h264",
        ],
    );
    let units = access_units(&std::fs::read(dir.path().join("cam.h264")).unwrap());
    assert_eq!(units.len(), 50);
    let manifest = Manifest { recording_id: "r_h".into(), meeting_id: "m".into(), started_us: 0 };
    let spool = Spool::create(dir.path(), &manifest).unwrap();
    let header = TrackHeader {
        track_id: "t".into(),
        participant_id: "p".into(),
        name: "Eve".into(),
        source: "camera".into(),
        codec: Codec::H264,
    };
    let mut w = spool.add_track(0, &header).unwrap();
    for (i, u) in units.iter().enumerate() {
        let keyframe = u.windows(5).any(|n| n[..4] == [0, 0, 0, 1] && n[4] & 0x1f == 5);
        w.write(&Frame {
            keyframe,
            rtp_timestamp: i as u32 * 3600,
            arrival_us: 250_000 + i as u64 * 40_000,
            data: u.clone(),
        })
        .unwrap();
    }
    w.flush().unwrap();
    let out = tempfile::tempdir().unwrap();
    let t = sluice_recorder::mux::mux_track(&spool.tracks().unwrap()[0], 0, out.path(), 0).unwrap().unwrap();
    assert_eq!((t.file.as_str(), t.width, t.height, t.offset_ms, t.frames), ("0-Eve-camera.mp4", 320, 240, 250, 50));
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames:format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(out.path().join(&t.file))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(
        text.starts_with("h264,320,240,50"),
        "every frame decodes: {text} {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let duration: f64 = text.lines().last().unwrap().trim().parse().unwrap();
    assert!((duration - 2.0).abs() < 0.05, "{text}");
}
