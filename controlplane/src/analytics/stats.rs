//! The browser's `stats` summary (`docs/analytics.md`): parsed strictly, clamped to sane ranges, and reduced to
//! the per-direction figures a quality sample keeps. It is trusted for nothing but analytics.

use serde::Deserialize;
use serde_json::{Value, json};

/// The largest summary, in bytes of JSON.
pub const STATS_LEN_MAX: usize = 16 * 1024;
/// Tracks one summary may list.
pub const STATS_TRACKS_MAX: usize = 64;

const COUNT_MAX: u64 = 1 << 53;
const MS_MAX: f64 = 60_000.0;
const KBPS_MAX: f64 = 10_000_000.0;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserStats {
    /// Once: join to the first decoded video frame.
    #[serde(default)]
    pub ttff_ms: Option<f64>,
    #[serde(default)]
    pub candidate: Option<Candidate>,
    #[serde(default)]
    pub tracks: Vec<TrackStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    #[serde(rename = "type")]
    pub kind: CandidateType,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CandidateType {
    Host,
    Srflx,
    Prflx,
    Relay,
}

impl CandidateType {
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::Srflx => "srflx",
            CandidateType::Prflx => "prflx",
            CandidateType::Relay => "relay",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Udp,
    Tcp,
    Tls,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Audio,
    Video,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Limitation {
    None,
    Cpu,
    Bandwidth,
    Other,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackStats {
    pub mid: String,
    pub direction: Direction,
    pub kind: Kind,
    #[serde(default)]
    pub packets: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub lost: i64,
    #[serde(default)]
    pub jitter_ms: Option<f64>,
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    #[serde(default)]
    pub bitrate_kbps: Option<f64>,
    #[serde(default)]
    pub frames_decoded: Option<u64>,
    #[serde(default)]
    pub frames_dropped: Option<u64>,
    #[serde(default)]
    pub freezes: Option<u64>,
    #[serde(default)]
    pub freeze_ms: Option<f64>,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub fps: Option<f64>,
    #[serde(default)]
    pub limitation: Option<Limitation>,
    #[serde(default)]
    pub concealed_ms: Option<f64>,
}

fn clamp_f(v: Option<f64>, max: f64) -> Option<f64> {
    v.filter(|x| x.is_finite()).map(|x| x.clamp(0.0, max))
}

impl BrowserStats {
    /// Refuses what cannot be a summary (too many tracks, a MID that is not short); clamps the figures.
    pub fn checked(mut self) -> Result<BrowserStats, String> {
        if self.tracks.len() > STATS_TRACKS_MAX {
            return Err(format!("a stats summary lists at most {STATS_TRACKS_MAX} tracks; got {}", self.tracks.len()));
        }
        if let Some(t) = self.tracks.iter().find(|t| t.mid.len() > 32) {
            let start: String = t.mid.chars().take(8).collect();
            return Err(format!("mid {start:?}... is longer than 32 bytes"));
        }
        self.ttff_ms = clamp_f(self.ttff_ms, 600_000.0);
        for t in &mut self.tracks {
            t.packets = t.packets.min(COUNT_MAX);
            t.bytes = t.bytes.min(COUNT_MAX);
            // Duplicates make RFC 3550's loss negative; either way it stays within a count.
            t.lost = t.lost.clamp(-(COUNT_MAX as i64), COUNT_MAX as i64);
            t.jitter_ms = clamp_f(t.jitter_ms, MS_MAX);
            t.rtt_ms = clamp_f(t.rtt_ms, MS_MAX);
            t.bitrate_kbps = clamp_f(t.bitrate_kbps, KBPS_MAX);
            t.freeze_ms = clamp_f(t.freeze_ms, 86_400_000.0);
            t.concealed_ms = clamp_f(t.concealed_ms, 86_400_000.0);
            t.fps = clamp_f(t.fps, 1000.0);
            t.width = t.width.map(|w| w.min(16_384));
            t.height = t.height.map(|h| h.min(16_384));
        }
        Ok(self)
    }

    /// Inbound loss as a fraction of packets expected, over the cumulative counts.
    pub fn loss_in(&self) -> Option<f64> {
        let (mut received, mut lost) = (0u64, 0i64);
        for t in self.tracks.iter().filter(|t| t.direction == Direction::Inbound) {
            received += t.packets;
            lost += t.lost.max(0);
        }
        let expected = received as f64 + lost as f64;
        (expected > 0.0).then(|| lost as f64 / expected)
    }

    fn mean(&self, direction: Direction, f: impl Fn(&TrackStats) -> Option<f64>) -> Option<f64> {
        let values: Vec<f64> = self.tracks.iter().filter(|t| t.direction == direction).filter_map(f).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }

    fn sum(&self, direction: Direction, f: impl Fn(&TrackStats) -> Option<f64>) -> f64 {
        self.tracks.iter().filter(|t| t.direction == direction).filter_map(f).sum()
    }

    /// The browser's part of a quality sample.
    pub fn summary(&self) -> Value {
        let video_in = self.tracks.iter().filter(|t| t.direction == Direction::Inbound && t.kind == Kind::Video);
        let (mut freezes, mut fps, mut width, mut height, mut n) = (0u64, 0.0, 0u32, 0u32, 0usize);
        for t in video_in {
            freezes += t.freezes.unwrap_or(0);
            fps += t.fps.unwrap_or(0.0);
            width = width.max(t.width.unwrap_or(0));
            height = height.max(t.height.unwrap_or(0));
            n += 1;
        }
        let limitation = self
            .tracks
            .iter()
            .filter(|t| t.direction == Direction::Outbound)
            .filter_map(|t| t.limitation)
            .find(|l| *l != Limitation::None)
            .map_or("none", |l| match l {
                Limitation::Cpu => "cpu",
                Limitation::Bandwidth => "bandwidth",
                _ => "other",
            });
        json!({
            "bitrate_in_kbps": self.sum(Direction::Inbound, |t| t.bitrate_kbps),
            "bitrate_out_kbps": self.sum(Direction::Outbound, |t| t.bitrate_kbps),
            "loss_in": self.loss_in(),
            "jitter_in_ms": self.mean(Direction::Inbound, |t| t.jitter_ms),
            "rtt_ms": self.mean(Direction::Outbound, |t| t.rtt_ms),
            "freezes": freezes,
            "fps": (n > 0).then(|| fps / n as f64),
            "width": width,
            "height": height,
            "limitation": limitation,
            "tracks": self.tracks.len(),
        })
    }

    /// The mean RTT and inbound jitter, in seconds, for the Prometheus histograms.
    pub fn rtt_s(&self) -> Option<f64> {
        self.mean(Direction::Outbound, |t| t.rtt_ms).map(|ms| ms / 1000.0)
    }

    pub fn jitter_s(&self) -> Option<f64> {
        self.mean(Direction::Inbound, |t| t.jitter_ms).map(|ms| ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<BrowserStats, String> {
        serde_json::from_value::<BrowserStats>(v).map_err(|e| e.to_string())?.checked()
    }

    #[test]
    fn figures_are_clamped_and_summed_per_direction() {
        let s = parse(json!({"tracks": [
            {"mid": "1", "direction": "inbound", "kind": "video", "packets": 990, "lost": 10, "jitter_ms": 4.0,
             "bitrate_kbps": 800.0, "freezes": 1, "fps": 30.0, "width": 640, "height": 360},
            {"mid": "2", "direction": "inbound", "kind": "audio", "packets": 1000, "lost": 0, "jitter_ms": 2.0,
             "bitrate_kbps": 40.0},
            {"mid": "0", "direction": "outbound", "kind": "video", "packets": 5, "rtt_ms": 1e12,
             "bitrate_kbps": -5.0, "limitation": "bandwidth"}
        ]}))
        .unwrap();
        let sum = s.summary();
        assert_eq!(sum["bitrate_in_kbps"], 840.0);
        assert_eq!(sum["bitrate_out_kbps"], 0.0, "negative bitrates clamp to 0");
        assert_eq!(sum["rtt_ms"], 60_000.0, "RTT clamps to 60 s");
        assert_eq!(sum["loss_in"], 10.0 / 2000.0);
        assert_eq!(sum["jitter_in_ms"], 3.0);
        assert_eq!((sum["width"].clone(), sum["limitation"].clone()), (json!(640), json!("bandwidth")));
    }

    #[test]
    fn malformed_summaries_are_refused() {
        assert!(parse(json!({"tracks": [{"mid": "1", "direction": "sideways", "kind": "video"}]})).is_err());
        assert!(parse(json!({"ip": "10.0.0.1"})).is_err(), "unknown fields, such as addresses, are refused");
        assert!(parse(json!({"candidate": {"type": "relay", "protocol": "udp", "address": "1.2.3.4"}})).is_err());
        let many: Vec<Value> =
            (0..65).map(|i| json!({"mid": i.to_string(), "direction": "inbound", "kind": "audio"})).collect();
        assert!(parse(json!({ "tracks": many })).unwrap_err().contains("64"));
        assert!(parse(json!({"tracks": [{"mid": "x".repeat(40), "direction": "inbound", "kind": "audio"}]})).is_err());
        // A long MID of multi-byte characters is refused, not sliced mid-character.
        assert!(parse(json!({"tracks": [{"mid": "€".repeat(11), "direction": "inbound", "kind": "audio"}]})).is_err());
    }
}
