//! What a publisher announces about a track: its kind, codec, MID, and its encodings (one, or up to three
//! simulcast layers, each known by SSRC or by RID until its first packet names its SSRC).

use std::fmt;
use std::time::{Duration, Instant};

use super::MediaKind;
use crate::packet::codec::Codec;

/// Simulcast layers per track: Chrome sends at most three (quarter, half, full resolution).
pub const LAYERS_MAX: usize = 3;

/// A short identifier from SDP: a MID (RFC 8843) or a RID (RFC 8851), at most 16 bytes, kept inline so
/// comparing it with a header extension allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tag {
    bytes: [u8; 16],
    len: u8,
}

impl Tag {
    /// `None` if empty, longer than 16 bytes, or not `[A-Za-z0-9_-]` (RFC 8851's rid-syntax, also fine for MIDs).
    pub fn new(s: &str) -> Option<Tag> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > 16 || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_') {
            return None;
        }
        let mut bytes = [0u8; 16];
        bytes[..b.len()].copy_from_slice(b);
        Some(Tag { bytes, len: b.len() as u8 })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// One encoding of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    /// Known from the SDP (`a=ssrc`), or learned from the first packet carrying the RID.
    pub ssrc: Option<u32>,
    pub rid: Option<Tag>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackSpec {
    pub kind: MediaKind,
    pub codec: Codec,
    /// The publisher's m-line MID; with RIDs, how packets of not-yet-known SSRCs find this track.
    pub mid: Option<Tag>,
    /// Lowest quality first.
    pub layers: [Option<LayerSpec>; LAYERS_MAX],
    /// A screen share: the layer allocator serves it before cameras.
    pub screen: bool,
    /// VP9 SVC (RFC 9628): spatial layers in one stream, each a quality level a subscription can take, as
    /// simulcast layers are (1: none).
    pub spatial_layers: u8,
}

impl TrackSpec {
    /// A single-encoding track with a known SSRC (audio, screenshare, non-simulcast camera).
    pub fn single(ssrc: u32, kind: MediaKind) -> TrackSpec {
        let codec = match kind {
            MediaKind::Audio => Codec::Opus,
            MediaKind::Video => Codec::Vp8,
        };
        TrackSpec {
            kind,
            codec,
            mid: None,
            layers: [Some(LayerSpec { ssrc: Some(ssrc), rid: None }), None, None],
            screen: false,
            spatial_layers: 1,
        }
    }

    /// A single-encoding track whose SSRC the SDP did not name: learned from the first packet carrying this MID in
    /// its header extension (RFC 8843 section 15), as browsers do for unsignalled streams.
    pub fn by_mid(mid: Tag, kind: MediaKind) -> TrackSpec {
        let codec = match kind {
            MediaKind::Audio => Codec::Opus,
            MediaKind::Video => Codec::Vp8,
        };
        TrackSpec {
            kind,
            codec,
            mid: Some(mid),
            layers: [Some(LayerSpec { ssrc: None, rid: None }), None, None],
            screen: false,
            spatial_layers: 1,
        }
    }

    /// A simulcast video track whose layers are named by RID (lowest quality first), SSRCs learned from packets.
    pub fn simulcast(mid: Tag, rids: &[Tag], codec: Codec) -> TrackSpec {
        let mut layers = [None; LAYERS_MAX];
        for (layer, rid) in layers.iter_mut().zip(rids) {
            *layer = Some(LayerSpec { ssrc: None, rid: Some(*rid) });
        }
        TrackSpec { kind: MediaKind::Video, codec, mid: Some(mid), layers, screen: false, spatial_layers: 1 }
    }

    pub fn with_codec(mut self, codec: Codec) -> TrackSpec {
        self.codec = codec;
        self
    }

    /// Marks it a screen share (or not).
    pub fn with_screen(mut self, screen: bool) -> TrackSpec {
        self.screen = screen;
        self
    }

    /// A single-stream VP9 track with `spatial` spatial layers (at most [`LAYERS_MAX`]); other tracks stay as
    /// they are.
    pub fn with_spatial_layers(mut self, spatial: u8) -> TrackSpec {
        if self.codec == Codec::Vp9 && self.layer_count() == 1 {
            self.spatial_layers = spatial.clamp(1, LAYERS_MAX as u8);
        }
        self
    }

    /// The streams (encodings) the publisher sends.
    pub fn layer_count(&self) -> usize {
        self.layers.iter().flatten().count()
    }

    pub fn is_simulcast(&self) -> bool {
        self.layer_count() > 1
    }

    pub fn is_svc(&self) -> bool {
        self.spatial_layers > 1
    }

    /// The quality levels a subscription chooses among (`set_layer`, the allocator): simulcast layers, or
    /// spatial layers of an SVC stream.
    pub fn qualities(&self) -> usize {
        if self.is_svc() { usize::from(self.spatial_layers) } else { self.layer_count() }
    }

    /// The stream that carries quality level `quality`: its own for simulcast, the one stream for SVC.
    pub fn stream_of(&self, quality: u8) -> u8 {
        if self.is_svc() { 0 } else { quality }
    }
}

/// Which simulcast layers a publisher is sending now, and so which layer a subscription that asks for one gets.
/// Browsers start with the lowest layers while their bandwidth estimate ramps up, pause the top ones when it
/// drops, and skip those their capture resolution is too small for: a subscription asking for a layer that is
/// not coming gets the best one that is (the highest below it, else the lowest above it), and moves to the one
/// it asked for once that starts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LayerActivity {
    /// The track's first packet: until [`LayerActivity::STARTUP`] has passed, layers are still starting (a
    /// browser's first packets of each layer come within a frame or two of each other) and a subscription
    /// waits for the layer it asked for rather than take the first to arrive.
    started: Option<Instant>,
    settled: bool,
    seen: [Option<Instant>; LAYERS_MAX],
    /// Bit `l`: layer `l` sent within [`LayerActivity::PAUSED_AFTER`] of the last packet of any layer.
    active: u8,
}

impl LayerActivity {
    /// A layer silent this long counts as paused: even at its lowest, a browser sends a layer at several frames
    /// per second.
    pub(crate) const PAUSED_AFTER: Duration = Duration::from_millis(1_000);
    pub(crate) const STARTUP: Duration = Duration::from_millis(300);

    /// A packet of `layer` arrived at `now`. Only the arriving layer and the staleness of the others change: three
    /// comparisons, no allocation.
    pub(crate) fn on_packet(&mut self, now: Instant, layer: u8) {
        let Some(seen) = self.seen.get_mut(usize::from(layer)) else { return };
        *seen = Some(now);
        if !self.settled {
            let started = *self.started.get_or_insert(now);
            self.settled = now.saturating_duration_since(started) >= Self::STARTUP;
        }
        self.active = self.seen.iter().enumerate().fold(0, |mask, (l, seen)| match seen {
            Some(t) if now.saturating_duration_since(*t) < Self::PAUSED_AFTER => mask | 1 << l,
            _ => mask,
        });
    }

    /// The layer a subscription asking for `wanted` should get now.
    pub(crate) fn best(&self, wanted: u8) -> u8 {
        if !self.settled {
            return wanted;
        }
        let active = |l: u8| self.active & (1 << l) != 0;
        (0..=wanted)
            .rev()
            .find(|l| active(*l))
            .or_else(|| (wanted + 1..LAYERS_MAX as u8).find(|l| active(*l)))
            .unwrap_or(wanted)
    }
}

/// What each layer of a track costs to forward: bit/s over half-second windows, halved into the previous
/// figure so a keyframe does not swing it, and whether the layer is arriving at all (a packet within
/// [`LayerRates::SILENT_AFTER`]). Fixed arrays: nothing allocated per packet.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LayerRates {
    window_start: Option<Instant>,
    bytes: [u64; LAYERS_MAX],
    bps: [u64; LAYERS_MAX],
    seen: [Option<Instant>; LAYERS_MAX],
}

impl LayerRates {
    const WINDOW: Duration = Duration::from_millis(500);
    pub(crate) const SILENT_AFTER: Duration = Duration::from_millis(1_000);

    pub(crate) fn on_packet(&mut self, now: Instant, layer: u8, size: usize) {
        let Some(bytes) = self.bytes.get_mut(usize::from(layer)) else { return };
        *bytes += size as u64;
        self.seen[usize::from(layer)] = Some(now);
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed < Self::WINDOW {
            return;
        }
        let micros = elapsed.as_micros().max(1) as u64;
        for (bps, bytes) in self.bps.iter_mut().zip(self.bytes.iter_mut()) {
            let window = std::mem::take(bytes) * 8_000_000 / micros;
            *bps = if *bps == 0 { window } else { (*bps + window) / 2 };
        }
        self.window_start = Some(now);
    }

    /// Bit/s of `layer`, if it is arriving.
    pub(crate) fn rate(&self, now: Instant, layer: usize) -> Option<u64> {
        let seen = (*self.seen.get(layer)?)?;
        (now.saturating_duration_since(seen) < Self::SILENT_AFTER).then_some(self.bps[layer])
    }
}

/// The header extension ids Sluice puts in its SDP offers (RFC 8285); the same for every participant, since the
/// server writes the offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionIds {
    pub abs_send_time: u8,
    pub transport_cc: u8,
    pub mid: u8,
    pub rid: u8,
    pub repaired_rid: u8,
    /// RFC 6464 client-to-mixer audio level, read on audio tracks (who is talking).
    pub audio_level: u8,
}

impl Default for ExtensionIds {
    fn default() -> Self {
        ExtensionIds { abs_send_time: 2, transport_cc: 3, mid: 4, rid: 10, repaired_rid: 11, audio_level: 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_rid_syntax() {
        assert_eq!(Tag::new("f").unwrap().as_bytes(), b"f");
        assert!(Tag::new("").is_none());
        assert!(Tag::new("a b").is_none());
        assert!(Tag::new(&"x".repeat(17)).is_none());
        let spec =
            TrackSpec::simulcast(Tag::new("0").unwrap(), &[Tag::new("q").unwrap(), Tag::new("h").unwrap()], Codec::Vp8);
        assert_eq!((spec.layer_count(), spec.is_simulcast()), (2, true));
        assert!(!TrackSpec::single(1, MediaKind::Audio).is_simulcast());
    }

    #[test]
    fn layer_rates_follow_what_arrives_and_forget_silent_layers() {
        let start = Instant::now();
        let mut r = LayerRates::default();
        // Layer 0 at 100 packets of 125 bytes a second (100 kbit/s), layer 2 at 1 Mbit/s, for two seconds.
        for ms in (0..2_000).step_by(10) {
            let now = start + Duration::from_millis(ms);
            r.on_packet(now, 0, 125);
            r.on_packet(now, 2, 1_250);
        }
        let now = start + Duration::from_millis(2_000);
        let (low, top) = (r.rate(now, 0).unwrap(), r.rate(now, 2).unwrap());
        assert!((90_000..=110_000).contains(&low), "{low}");
        assert!((900_000..=1_100_000).contains(&top), "{top}");
        assert_eq!(r.rate(now, 1), None, "never sent");
        assert_eq!(r.rate(now + LayerRates::SILENT_AFTER, 2), None, "silent for a second");
        r.on_packet(now, 7, 100); // no such layer: ignored
    }

    #[test]
    fn a_subscription_gets_the_best_layer_being_sent() {
        let start = Instant::now();
        let mut layers = LayerActivity::default();
        assert_eq!(layers.best(2), 2, "nothing seen yet: what was asked for");
        layers.on_packet(start, 0);
        assert_eq!(layers.best(2), 2, "layers are still starting: wait for the one asked for");
        let start = start + LayerActivity::STARTUP;
        layers.on_packet(start, 0);
        layers.on_packet(start, 1);
        assert_eq!((layers.best(0), layers.best(1), layers.best(2)), (0, 1, 1), "the top layer has not started");
        layers.on_packet(start, 2);
        assert_eq!(layers.best(2), 2);
        // The top and bottom layers pause; the middle one goes on.
        let later = start + LayerActivity::PAUSED_AFTER + Duration::from_millis(1);
        layers.on_packet(later, 1);
        assert_eq!((layers.best(0), layers.best(1), layers.best(2)), (1, 1, 1), "the lowest above, else below");
        layers.on_packet(later, 9);
        assert_eq!(layers.best(0), 1, "a packet of a layer that cannot exist changes nothing");
    }
}
