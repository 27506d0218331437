//! Spooled frames into per-track files, without re-encoding: VP8 or VP9 video and Opus audio in WebM (libwebm
//! through the `webm` crate), H.264 in MP4 (`shiguredo_mp4`). Each file starts at its track's first frame; `offset_ms` says where that falls in the
//! recording, so composition and transcripts line the tracks up.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use webm::mux::{AudioCodecId, SegmentBuilder, VideoCodecId, Writer};

use crate::spool::{Codec, Frame, TrackHeader, read_track};

/// RTP and arrival clocks may disagree by this much before the file follows arrival (a sender that restarted
/// its RTP clock, a long mute).
const RESYNC_AFTER_NS: i64 = 2_000_000_000;
/// A video track whose keyframes carried no size (VP9 without a scalability structure) is labelled this size;
/// decoders take the real size from the stream.
const DEFAULT_SIZE: (u16, u16) = (640, 480);

/// One muxed track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackFile {
    pub header: TrackHeader,
    /// File name (under the recording's `tracks/`).
    pub file: String,
    /// Where the track's first frame falls in the recording.
    pub offset_ms: u64,
    pub duration_ms: u64,
    pub frames: usize,
    /// Video only.
    pub width: u16,
    pub height: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("muxing {file}: {reason}")]
    Mux { file: String, reason: String },
}

/// `OpusHead` (RFC 7845 section 5.1) for stereo 48 kHz, no pre-skip, no gain: Matroska's Opus CodecPrivate.
fn opus_head() -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1); // version
    h.push(2); // channels
    h.extend_from_slice(&0u16.to_le_bytes()); // pre-skip
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // channel mapping family
    h
}

/// Presentation times in nanoseconds from the first frame: from RTP timestamps (smooth, the encoder's clock),
/// re-based on arrival times when the two drift apart by more than [`RESYNC_AFTER_NS`]; never decreasing.
pub fn timeline(frames: &[Frame], clock_rate: u32) -> Vec<u64> {
    let Some(first) = frames.first() else { return Vec::new() };
    let mut out = Vec::with_capacity(frames.len());
    let (mut last_rtp, mut rtp_ns, mut base_ns) = (first.rtp_timestamp, 0i64, 0i64);
    let mut previous = 0u64;
    for f in frames {
        let ticks = i64::from(f.rtp_timestamp.wrapping_sub(last_rtp) as i32);
        last_rtp = f.rtp_timestamp;
        rtp_ns += ticks * 1_000_000_000 / i64::from(clock_rate);
        let arrival_ns = (f.arrival_us.saturating_sub(first.arrival_us) * 1000) as i64;
        if (base_ns + rtp_ns - arrival_ns).abs() > RESYNC_AFTER_NS {
            base_ns = arrival_ns - rtp_ns;
        }
        let t = (base_ns + rtp_ns).max(previous as i64) as u64;
        out.push(t);
        previous = t;
    }
    out
}

/// Muxes spooled track `spool_file` into `out_dir/<n>-<name>-<source>.webm` (`.mp4` for H.264); `None` if the
/// track holds no frame.
pub fn mux_track(spool_file: &Path, started_us: u64, out_dir: &Path, n: usize) -> Result<Option<TrackFile>, MuxError> {
    let (header, frames) = read_track(spool_file)?;
    if frames.is_empty() {
        return Ok(None);
    }
    let codec = match header.codec {
        Codec::Vp8 => Some(VideoCodecId::VP8),
        Codec::Vp9 => Some(VideoCodecId::VP9),
        Codec::Opus => None,
        Codec::H264 => return mux_h264(header, &frames, started_us, out_dir, n),
    };
    let file = format!("{n}-{}-{}.webm", safe(&header.name), header.source);
    let path: PathBuf = out_dir.join(&file);
    let io = |source| MuxError::Io { path: path.display().to_string(), source };
    let webm_error = |e: webm::mux::Error| MuxError::Mux { file: file.clone(), reason: format!("{e:?}") };
    let dest = File::create(&path).map_err(io)?;
    let builder = SegmentBuilder::new(Writer::new(BufWriter::new(dest))).map_err(webm_error)?;
    let builder = builder.set_writing_app("sluice-recorder").map_err(webm_error)?;
    let size = frames
        .iter()
        .filter(|f| f.keyframe)
        .find_map(|f| match header.codec {
            Codec::Vp8 => crate::depacketize::vp8_size(&f.data),
            _ => None,
        })
        .unwrap_or(DEFAULT_SIZE);
    let (builder, track) = match codec {
        Some(video) => {
            let (b, t) = builder
                .add_video_track(u32::from(size.0.max(1)), u32::from(size.1.max(1)), video, None)
                .map_err(webm_error)?;
            (b, u64::from(t))
        }
        None => {
            let (b, t) = builder.add_audio_track(48_000, 2, AudioCodecId::Opus, None).map_err(webm_error)?;
            let b = b.set_codec_private(t, &opus_head()).map_err(webm_error)?;
            (b, u64::from(t))
        }
    };
    let mut segment = builder.build();
    let times = timeline(&frames, header.codec.clock_rate());
    for (f, t) in frames.iter().zip(&times) {
        segment.add_frame(track, &f.data, *t, f.keyframe).map_err(webm_error)?;
    }
    segment
        .finalize(None)
        .map_err(|_| MuxError::Mux { file: file.clone(), reason: "libwebm could not finalize the file".into() })?;
    let is_video = codec.is_some();
    Ok(Some(TrackFile {
        offset_ms: frames[0].arrival_us.saturating_sub(started_us) / 1000,
        duration_ms: times.last().copied().unwrap_or(0) / 1_000_000,
        frames: frames.len(),
        width: if is_video { size.0 } else { 0 },
        height: if is_video { size.1 } else { 0 },
        header,
        file,
    }))
}

/// H.264 into MP4: the first keyframe's SPS and PPS make the sample entry; samples are length-prefixed NAL units
/// whose durations come from the timeline (the last repeats the one before it).
fn mux_h264(
    header: TrackHeader,
    frames: &[Frame],
    started_us: u64,
    out_dir: &Path,
    n: usize,
) -> Result<Option<TrackFile>, MuxError> {
    use shiguredo_mp4::bitstream::h264::{
        H264SampleEntryConfig, LengthSize, annexb_to_length_prefixed, build_avc1_box_from_annexb,
    };
    use shiguredo_mp4::mux::{Mp4FileMuxer, Sample};
    use std::io::{Seek, SeekFrom, Write};

    let file = format!("{n}-{}-{}.mp4", safe(&header.name), header.source);
    let path = out_dir.join(&file);
    let failed = |reason: String| MuxError::Mux { file: file.clone(), reason };
    let io = |source| MuxError::Io { path: path.display().to_string(), source };
    let config = H264SampleEntryConfig { length_size: LengthSize::FourBytes };
    let entry = build_avc1_box_from_annexb(&frames[0].data, &config)
        .map_err(|e| failed(format!("the first keyframe has no usable SPS and PPS: {e:?}")))?;
    let size = (entry.visual.width, entry.visual.height);
    let times = timeline(frames, Codec::H264.clock_rate());
    let ticks: Vec<u32> = times.windows(2).map(|w| ((w[1] - w[0]) * 90 / 1_000_000) as u32).collect();
    let last = ticks.last().copied().unwrap_or(3000);
    let mut muxer = Mp4FileMuxer::new().map_err(|e| failed(format!("{e:?}")))?;
    let mut out = std::io::BufWriter::new(File::create(&path).map_err(io)?);
    out.write_all(muxer.initial_boxes_bytes()).map_err(io)?;
    let mut offset = muxer.initial_boxes_bytes().len() as u64;
    let mut entry = Some(shiguredo_mp4::boxes::SampleEntry::Avc1(entry));
    for (i, f) in frames.iter().enumerate() {
        let Ok(data) = annexb_to_length_prefixed(&f.data, LengthSize::FourBytes) else {
            tracing::warn!(track = %header.track_id, frame = i, "an H.264 frame that is not Annex B: skipped");
            continue;
        };
        out.write_all(&data).map_err(io)?;
        let sample = Sample {
            track_kind: shiguredo_mp4::TrackKind::Video,
            sample_entry: entry.take(),
            keyframe: f.keyframe,
            timescale: std::num::NonZeroU32::new(90_000).expect("not zero"),
            duration: ticks.get(i).copied().unwrap_or(last),
            composition_time_offset: None,
            data_offset: offset,
            data_size: data.len(),
        };
        muxer.append_sample(&sample).map_err(|e| failed(format!("{e:?}")))?;
        offset += data.len() as u64;
    }
    let finalized = muxer.finalize().map_err(|e| failed(format!("{e:?}")))?;
    for (at, bytes) in finalized.offset_and_bytes_pairs() {
        out.seek(SeekFrom::Start(at)).map_err(io)?;
        out.write_all(bytes).map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(Some(TrackFile {
        offset_ms: frames[0].arrival_us.saturating_sub(started_us) / 1000,
        duration_ms: times.last().copied().unwrap_or(0) / 1_000_000,
        frames: frames.len(),
        width: size.0,
        height: size.1,
        header,
        file,
    }))
}

/// A name safe in a file name: letters, digits, `-` and `_`, at most 32 of them.
fn safe(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(32).collect();
    if s.is_empty() { "track".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Manifest, Spool};

    fn frame(rtp: u32, arrival_us: u64) -> Frame {
        Frame { keyframe: true, rtp_timestamp: rtp, arrival_us, data: vec![0xfc, 0xff, 0xfe] }
    }

    #[test]
    fn the_timeline_follows_rtp_and_resyncs_on_a_jump() {
        let frames = [frame(1000, 0), frame(1960, 20_000), frame(2920, 40_000), frame(9_000_000, 60_000)];
        let t = timeline(&frames, 48_000);
        assert_eq!(&t[..3], &[0, 20_000_000, 40_000_000]);
        assert_eq!(t[3], 60_000_000, "a jump of the RTP clock follows arrival");
        // Across the 32-bit wrap.
        let frames = [frame(u32::MAX - 479, 0), frame(480, 20_000)];
        assert_eq!(timeline(&frames, 48_000), vec![0, 20_000_000]);
    }

    #[test]
    fn an_opus_track_becomes_a_webm_file() {
        let root = tempfile::tempdir().unwrap();
        let manifest = Manifest { recording_id: "r_1".into(), meeting_id: "m".into(), started_us: 1_000_000 };
        let spool = Spool::create(root.path(), &manifest).unwrap();
        let header = TrackHeader {
            track_id: "t".into(),
            participant_id: "p".into(),
            name: "Ada L.".into(),
            source: "microphone".into(),
            codec: Codec::Opus,
        };
        let mut w = spool.add_track(0, &header).unwrap();
        for i in 0..50u32 {
            w.write(&frame(i * 960, 1_500_000 + u64::from(i) * 20_000)).unwrap();
        }
        w.flush().unwrap();
        let out = tempfile::tempdir().unwrap();
        let t = mux_track(&spool.tracks().unwrap()[0], 1_000_000, out.path(), 0).unwrap().unwrap();
        assert_eq!(t.file, "0-Ada_L_-microphone.webm");
        assert_eq!((t.offset_ms, t.duration_ms, t.frames), (500, 980, 50));
        let bytes = std::fs::read(out.path().join(&t.file)).unwrap();
        assert_eq!(&bytes[..4], &[0x1a, 0x45, 0xdf, 0xa3], "an EBML header");
        assert!(bytes.windows(8).any(|w| w == b"OpusHead"), "the Opus CodecPrivate is there");
        assert!(bytes.windows(6).any(|w| w == b"A_OPUS"));
    }
}
