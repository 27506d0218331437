//! What a publisher announces about a track: its kind, codec, MID, and its encodings (one, or up to three
//! simulcast layers, each known by SSRC or by RID until its first packet names its SSRC).

use std::fmt;

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
}

impl TrackSpec {
    /// A single-encoding track with a known SSRC (audio, screenshare, non-simulcast camera).
    pub fn single(ssrc: u32, kind: MediaKind) -> TrackSpec {
        let codec = match kind {
            MediaKind::Audio => Codec::Opus,
            MediaKind::Video => Codec::Vp8,
        };
        TrackSpec { kind, codec, mid: None, layers: [Some(LayerSpec { ssrc: Some(ssrc), rid: None }), None, None] }
    }

    /// A simulcast video track whose layers are named by RID (lowest quality first), SSRCs learned from packets.
    pub fn simulcast(mid: Tag, rids: &[Tag], codec: Codec) -> TrackSpec {
        let mut layers = [None; LAYERS_MAX];
        for (layer, rid) in layers.iter_mut().zip(rids) {
            *layer = Some(LayerSpec { ssrc: None, rid: Some(*rid) });
        }
        TrackSpec { kind: MediaKind::Video, codec, mid: Some(mid), layers }
    }

    pub fn with_codec(mut self, codec: Codec) -> TrackSpec {
        self.codec = codec;
        self
    }

    pub fn layer_count(&self) -> usize {
        self.layers.iter().flatten().count()
    }

    pub fn is_simulcast(&self) -> bool {
        self.layer_count() > 1
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
}

impl Default for ExtensionIds {
    fn default() -> Self {
        ExtensionIds { abs_send_time: 2, transport_cc: 3, mid: 4, rid: 10, repaired_rid: 11 }
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
}
