//! The spool: what the recorder received, on local disk while it records, in a form a crash cannot damage
//! beyond its last partial record. One directory per recording holds `recording.json` (the manifest) and one
//! `<n>.track` file per track: a JSON header line, then frame records.
//!
//! Record layout (big-endian): `len: u32 | flags: u8 | rtp_timestamp: u32 | arrival_us: u64 | frame[len]`.
//! A reader stops at the first record that is cut short (the process died while writing it).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bytes before a record's frame.
const RECORD_HEADER_LEN: usize = 17;
/// A frame larger than this is not media: the spool is damaged from here on.
pub const FRAME_LEN_MAX: usize = 4 << 20;
/// Flag bit: the frame is a keyframe (always set for audio).
const FLAG_KEYFRAME: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Opus,
    Vp8,
    Vp9,
    H264,
}

impl Codec {
    pub fn is_audio(self) -> bool {
        self == Codec::Opus
    }

    /// From an `a=rtpmap` encoding name.
    pub fn from_rtpmap(name: &str) -> Option<Codec> {
        Some(match name.to_ascii_lowercase().as_str() {
            "opus" => Codec::Opus,
            "vp8" => Codec::Vp8,
            "vp9" => Codec::Vp9,
            "h264" => Codec::H264,
            _ => return None,
        })
    }

    pub fn clock_rate(self) -> u32 {
        if self.is_audio() { 48_000 } else { 90_000 }
    }
}

/// What a recording is, written when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub recording_id: String,
    pub meeting_id: String,
    /// Wall clock at the start, in microseconds since the Unix epoch: every track's offset is from here.
    pub started_us: u64,
}

/// One track of the recording, the first line of its spool file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackHeader {
    pub track_id: String,
    pub participant_id: String,
    /// The publisher's display name (shown in the composed video, and on transcript cues).
    pub name: String,
    /// `microphone`, `camera` or `screen`.
    pub source: String,
    pub codec: Codec,
}

/// One frame as spooled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub keyframe: bool,
    pub rtp_timestamp: u32,
    /// Wall clock when its last packet arrived, microseconds since the Unix epoch.
    pub arrival_us: u64,
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: bad header: {reason}")]
    Header { path: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.display().to_string(), source }
}

/// A recording's spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Creates the directory and writes the manifest (synced: recovery starts from it).
    pub fn create(root: &Path, manifest: &Manifest) -> Result<Spool, SpoolError> {
        let dir = root.join(&manifest.recording_id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join("recording.json");
        let mut file = File::create(&path).map_err(io(&path))?;
        file.write_all(&serde_json::to_vec(manifest).expect("a manifest serialises")).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        Ok(Spool { dir })
    }

    pub fn open(dir: PathBuf) -> Spool {
        Spool { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> Result<Manifest, SpoolError> {
        let path = self.dir.join("recording.json");
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| SpoolError::Header { path: path.display().to_string(), reason: e.to_string() })
    }

    /// Starts track number `n`.
    pub fn add_track(&self, n: usize, header: &TrackHeader) -> Result<TrackWriter, SpoolError> {
        let path = self.dir.join(format!("{n}.track"));
        let file = OpenOptions::new().create_new(true).write(true).open(&path).map_err(io(&path))?;
        let mut out = BufWriter::new(file);
        let mut line = serde_json::to_vec(header).expect("a header serialises");
        line.push(b'\n');
        out.write_all(&line).map_err(io(&path))?;
        Ok(TrackWriter { out, path, frames: 0 })
    }

    /// The spooled tracks, in the order they started.
    pub fn tracks(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let mut tracks: Vec<(usize, PathBuf)> = std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let n = name.strip_suffix(".track")?.parse().ok()?;
                Some((n, e.path()))
            })
            .collect();
        tracks.sort();
        Ok(tracks.into_iter().map(|(_, p)| p).collect())
    }

    pub fn remove(self) -> std::io::Result<()> {
        std::fs::remove_dir_all(&self.dir)
    }
}

/// Appends frames to one track's spool file.
#[derive(Debug)]
pub struct TrackWriter {
    out: BufWriter<File>,
    path: PathBuf,
    frames: u64,
}

impl TrackWriter {
    pub fn write(&mut self, frame: &Frame) -> Result<(), SpoolError> {
        let mut head = [0u8; RECORD_HEADER_LEN];
        head[0..4].copy_from_slice(&(frame.data.len() as u32).to_be_bytes());
        head[4] = if frame.keyframe { FLAG_KEYFRAME } else { 0 };
        head[5..9].copy_from_slice(&frame.rtp_timestamp.to_be_bytes());
        head[9..17].copy_from_slice(&frame.arrival_us.to_be_bytes());
        self.out.write_all(&head).map_err(io(&self.path))?;
        self.out.write_all(&frame.data).map_err(io(&self.path))?;
        self.frames += 1;
        Ok(())
    }

    /// Hands buffered frames to the kernel: after this, a crash of the process loses none of them.
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        self.out.flush().map_err(io(&self.path))
    }

    /// Flushes and syncs to disk: after this, not even a power loss loses them.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.flush()?;
        self.out.get_ref().sync_data().map_err(io(&self.path))
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }
}

/// Reads one track's spool file: its header and every complete frame.
pub fn read_track(path: &Path) -> Result<(TrackHeader, Vec<Frame>), SpoolError> {
    let file = File::open(path).map_err(io(path))?;
    let mut input = BufReader::new(file);
    let mut line = String::new();
    input.read_line(&mut line).map_err(io(path))?;
    let header: TrackHeader = serde_json::from_str(line.trim_end())
        .map_err(|e| SpoolError::Header { path: path.display().to_string(), reason: e.to_string() })?;
    let mut frames = Vec::new();
    let mut head = [0u8; RECORD_HEADER_LEN];
    loop {
        if read_full(&mut input, &mut head).map_err(io(path))? < RECORD_HEADER_LEN {
            break;
        }
        let len = u32::from_be_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
        if len > FRAME_LEN_MAX {
            tracing::warn!(path = %path.display(), len, "spool record too large: the rest of the track is damaged");
            break;
        }
        let mut data = vec![0u8; len];
        if read_full(&mut input, &mut data).map_err(io(path))? < len {
            break;
        }
        frames.push(Frame {
            keyframe: head[4] & FLAG_KEYFRAME != 0,
            rtp_timestamp: u32::from_be_bytes(head[5..9].try_into().expect("4 bytes")),
            arrival_us: u64::from_be_bytes(head[9..17].try_into().expect("8 bytes")),
            data,
        });
    }
    Ok((header, frames))
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match input.read(&mut buf[at..])? {
            0 => break,
            n => at += n,
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> TrackHeader {
        TrackHeader {
            track_id: "t1".into(),
            participant_id: "p1".into(),
            name: "Ada".into(),
            source: "microphone".into(),
            codec: Codec::Opus,
        }
    }

    #[test]
    fn frames_come_back_as_written_and_a_cut_record_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let manifest = Manifest { recording_id: "r_1".into(), meeting_id: "m".into(), started_us: 5 };
        let spool = Spool::create(root.path(), &manifest).unwrap();
        let mut w = spool.add_track(0, &header()).unwrap();
        let frames: Vec<Frame> = (0..5)
            .map(|i| Frame {
                keyframe: i == 0,
                rtp_timestamp: i * 960,
                arrival_us: 1000 + u64::from(i),
                data: vec![i as u8; 10 + i as usize],
            })
            .collect();
        frames.iter().for_each(|f| w.write(f).unwrap());
        w.sync().unwrap();
        drop(w);
        let path = &spool.tracks().unwrap()[0];
        // A crash in the middle of the next record: half a header and nothing more.
        let mut file = OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(&[0, 0, 0, 40, 1, 2]).unwrap();
        let (h, back) = read_track(path).unwrap();
        assert_eq!(h, header());
        assert_eq!(back, frames);
        assert_eq!(Spool::open(spool.dir().to_path_buf()).manifest().unwrap(), manifest);
    }

    #[test]
    fn a_damaged_length_ends_the_track_without_a_huge_allocation() {
        let root = tempfile::tempdir().unwrap();
        let manifest = Manifest { recording_id: "r_2".into(), meeting_id: "m".into(), started_us: 5 };
        let spool = Spool::create(root.path(), &manifest).unwrap();
        let mut w = spool.add_track(0, &header()).unwrap();
        w.write(&Frame { keyframe: true, rtp_timestamp: 0, arrival_us: 0, data: vec![7; 3] }).unwrap();
        w.flush().unwrap();
        drop(w);
        let path = &spool.tracks().unwrap()[0];
        let mut file = OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(&[0xff; RECORD_HEADER_LEN]).unwrap();
        let (_, back) = read_track(path).unwrap();
        assert_eq!(back.len(), 1);
    }
}
