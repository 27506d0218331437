//! Just enough of each video codec's RTP payload format to tell whether a packet starts a keyframe (the point
//! where a subscriber can switch simulcast layers or start decoding), where its picture indices sit, and which
//! temporal and spatial layer it belongs to.

/// The codecs Sluice forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Opus,
    Vp8,
    Vp9,
    H264,
}

impl Codec {
    /// Whether `payload` (the RTP payload, after the header) begins a keyframe.
    pub fn is_keyframe_start(self, payload: &[u8]) -> bool {
        match self {
            Codec::Opus => true,
            Codec::Vp8 => vp8_keyframe_start(payload),
            Codec::Vp9 => vp9_keyframe_start(payload),
            Codec::H264 => h264_keyframe(payload),
        }
    }
}

/// RFC 7741: the payload descriptor, then (at the start of partition 0) the VP8 frame header whose P bit is 0
/// for a keyframe.
fn vp8_keyframe_start(p: &[u8]) -> bool {
    let Some(&first) = p.first() else { return false };
    let (extended, start, partition) = (first & 0x80 != 0, first & 0x10 != 0, first & 0x07);
    if !start || partition != 0 {
        return false;
    }
    let mut at = 1;
    if extended {
        let Some(&x) = p.get(1) else { return false };
        at = 2;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            at += if p.get(at).is_some_and(|b| b & 0x80 != 0) { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    p.get(at).is_some_and(|header| header & 0x01 == 0)
}

/// Where a VP8 (RFC 7741 section 4.2) or VP9 (RFC 9628 section 4.2) payload descriptor keeps the indices a
/// subscriber's decoder orders frames by, as offsets into the payload with their values, for rewriting across
/// simulcast switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PictureIndices {
    /// The PictureID: offset, value, and whether it has 15 bits (M=1) rather than 7.
    pub picture_id: Option<(usize, u16, bool)>,
    /// TL0PICIDX: offset and value.
    pub tl0_pic_idx: Option<(usize, u8)>,
}

impl Codec {
    /// The PictureID and TL0PICIDX of a VP8 or VP9 payload, where present; `None` for other codecs and for a
    /// descriptor too short to hold what its flags announce.
    pub fn picture_indices(self, payload: &[u8]) -> Option<PictureIndices> {
        match self {
            Codec::Vp8 => vp8_indices(payload),
            Codec::Vp9 => vp9_indices(payload),
            Codec::Opus | Codec::H264 => None,
        }
    }
}

/// A PictureID at `at`: 15 bits when the first byte's M bit is set, else 7.
fn picture_id_at(p: &[u8], at: usize) -> Option<((usize, u16, bool), usize)> {
    let first = *p.get(at)?;
    if first & 0x80 != 0 {
        Some(((at, u16::from_be_bytes([first & 0x7f, *p.get(at + 1)?]), true), at + 2))
    } else {
        Some(((at, u16::from(first), false), at + 1))
    }
}

fn vp8_indices(p: &[u8]) -> Option<PictureIndices> {
    let mut indices = PictureIndices::default();
    if p.first()? & 0x80 == 0 {
        return Some(indices);
    }
    let x = *p.get(1)?;
    let mut at = 2;
    if x & 0x80 != 0 {
        let (picture_id, next) = picture_id_at(p, at)?;
        indices.picture_id = Some(picture_id);
        at = next;
    }
    if x & 0x40 != 0 {
        indices.tl0_pic_idx = Some((at, *p.get(at)?));
    }
    Some(indices)
}

/// RFC 9628: I (PictureID present), then with L (layer indices) a byte of TID/U/SID/D, followed in
/// non-flexible mode (F clear) by TL0PICIDX.
fn vp9_indices(p: &[u8]) -> Option<PictureIndices> {
    let mut indices = PictureIndices::default();
    let d = *p.first()?;
    let mut at = 1;
    if d & 0x80 != 0 {
        let (picture_id, next) = picture_id_at(p, at)?;
        indices.picture_id = Some(picture_id);
        at = next;
    }
    if d & 0x20 != 0 {
        p.get(at)?;
        at += 1;
        if d & 0x10 == 0 {
            indices.tl0_pic_idx = Some((at, *p.get(at)?));
        }
    }
    Some(indices)
}

/// Where a VP8 or VP9 packet sits in a scalable stream: its temporal layer, and for VP9 its spatial layer and
/// whether it ends its layer's frame (the E bit), from the payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerIndices {
    /// TID: 0 is the base, which never references higher ones.
    pub temporal: u8,
    /// VP9 SID (0 for VP8).
    pub spatial: u8,
    /// VP9: the first packet of this spatial layer's frame (B); with spatial layer 0, of a picture.
    pub begin_of_layer_frame: bool,
    /// VP9: the last packet of this spatial layer's frame (E).
    pub end_of_layer_frame: bool,
}

impl Codec {
    /// The temporal and spatial layer a VP8 or VP9 packet belongs to, when its descriptor carries them (VP8 with
    /// the T bit; VP9 always, layer 0 of both without the L bit, with its B and E bits); `None` otherwise, and for
    /// a descriptor too short for its flags.
    pub fn layer_indices(self, payload: &[u8]) -> Option<LayerIndices> {
        match self {
            Codec::Vp8 => vp8_layer_indices(payload),
            Codec::Vp9 => vp9_layer_indices(payload),
            Codec::Opus | Codec::H264 => None,
        }
    }
}

/// RFC 7741 section 4.2: with X, the byte after PictureID and TL0PICIDX holds TID in its top two bits when T is
/// set.
fn vp8_layer_indices(p: &[u8]) -> Option<LayerIndices> {
    if p.first()? & 0x80 == 0 {
        return None;
    }
    let x = *p.get(1)?;
    if x & 0x20 == 0 {
        return None;
    }
    let mut at = 2;
    if x & 0x80 != 0 {
        at = picture_id_at(p, at)?.1;
    }
    if x & 0x40 != 0 {
        at += 1;
    }
    Some(LayerIndices { temporal: p.get(at)? >> 6, ..LayerIndices::default() })
}

/// RFC 9628 section 4.2: with L, the byte after the PictureID is TID (3 bits), U, SID (3 bits), D; B and E are
/// bits 3 and 2 of the first byte.
fn vp9_layer_indices(p: &[u8]) -> Option<LayerIndices> {
    let d = *p.first()?;
    let at = if d & 0x80 != 0 { picture_id_at(p, 1)?.1 } else { 1 };
    // Without L, one layer: every frame is a picture (a VP9 stream that is not scalable, as Firefox sends).
    let layers = if d & 0x20 != 0 { *p.get(at)? } else { 0 };
    Some(LayerIndices {
        temporal: layers >> 5,
        spatial: (layers >> 1) & 0x07,
        begin_of_layer_frame: d & 0x08 != 0,
        end_of_layer_frame: d & 0x04 != 0,
    })
}

/// RFC 9628: B (start of frame) set and P (inter-picture predicted) clear.
fn vp9_keyframe_start(p: &[u8]) -> bool {
    p.first().is_some_and(|d| d & 0x08 != 0 && d & 0x40 == 0)
}

/// RFC 6184: an IDR slice (5) or SPS (7), alone, in a STAP-A (24), or starting an FU-A (28).
fn h264_keyframe(p: &[u8]) -> bool {
    let Some(&nal) = p.first() else { return false };
    match nal & 0x1f {
        5 | 7 => true,
        24 => {
            let mut at = 1;
            while at + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[at], p[at + 1]]));
                if matches!(p[at + 2] & 0x1f, 5 | 7) {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        28 => p.get(1).is_some_and(|fu| fu & 0x80 != 0 && matches!(fu & 0x1f, 5 | 7)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8() {
        // S=1, PID=0, no extension; frame header P=0: keyframe.
        assert!(Codec::Vp8.is_keyframe_start(&[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        assert!(!Codec::Vp8.is_keyframe_start(&[0x10, 0x01]), "P=1: interframe");
        assert!(!Codec::Vp8.is_keyframe_start(&[0x00, 0x00]), "not the start of the partition");
        // X=1 with a 15-bit PictureID, TL0PICIDX and TID: the frame header is at byte 6.
        assert!(Codec::Vp8.is_keyframe_start(&[0x90, 0xe0, 0x80, 0x01, 0x05, 0x20, 0x00]));
        assert!(!Codec::Vp8.is_keyframe_start(&[0x90, 0xe0, 0x80, 0x01, 0x05, 0x20, 0x01]));
        assert!(!Codec::Vp8.is_keyframe_start(&[0x90]), "truncated");
    }

    #[test]
    fn vp8_indices_are_found_where_the_flags_put_them() {
        // X=1, I=1 L=1 T=1: 15-bit PictureID 0x0105, TL0PICIDX 5.
        let i = vp8_indices(&[0x90, 0xe0, 0x81, 0x05, 0x05, 0x20, 0x00]).unwrap();
        assert_eq!(i.picture_id, Some((2, 0x0105, true)));
        assert_eq!(i.tl0_pic_idx, Some((4, 5)));
        // A 7-bit PictureID and no TL0PICIDX.
        let i = vp8_indices(&[0x90, 0x80, 0x33, 0x00]).unwrap();
        assert_eq!((i.picture_id, i.tl0_pic_idx), (Some((2, 0x33, false)), None));
        // No extension: nothing to rewrite.
        assert_eq!(vp8_indices(&[0x10, 0x00]), Some(PictureIndices::default()));
        // Flags that announce more than the packet holds.
        assert_eq!(vp8_indices(&[0x90, 0xc0, 0x81]), None);
        assert_eq!(vp8_indices(&[0x90]), None);
        assert_eq!(vp8_indices(&[]), None);
    }

    #[test]
    fn vp9_indices_are_found_where_the_flags_put_them() {
        // I=1 L=1 F=0 B=1: 15-bit PictureID 0x0203, TID/SID byte, TL0PICIDX 9.
        let i = Codec::Vp9.picture_indices(&[0xa8, 0x82, 0x03, 0x20, 0x09, 0x00]).unwrap();
        assert_eq!((i.picture_id, i.tl0_pic_idx), (Some((1, 0x0203, true)), Some((4, 9))));
        // Flexible mode (F=1): no TL0PICIDX.
        let i = Codec::Vp9.picture_indices(&[0xb8, 0x05, 0x20, 0x00]).unwrap();
        assert_eq!((i.picture_id, i.tl0_pic_idx), (Some((1, 5, false)), None));
        assert_eq!(Codec::Vp9.picture_indices(&[0xa8, 0x82]), None, "truncated");
        assert_eq!(Codec::H264.picture_indices(&[0x65]), None);
        assert_eq!(Codec::Opus.picture_indices(&[0x80, 0x01]), None);
    }

    #[test]
    fn layer_indices_come_from_the_descriptor() {
        // VP8 X=1, I=1 (15 bits), L=1, T=1: TID 2 in the top bits of byte 5.
        let i = Codec::Vp8.layer_indices(&[0x90, 0xe0, 0x81, 0x05, 0x05, 0x80, 0x00]).unwrap();
        assert_eq!((i.temporal, i.spatial), (2, 0));
        // T=1 without I or L: the TID byte follows X at once.
        assert_eq!(Codec::Vp8.layer_indices(&[0x90, 0x20, 0x40]).map(|i| i.temporal), Some(1));
        assert_eq!(Codec::Vp8.layer_indices(&[0x90, 0xc0, 0x81, 0x05, 0x05]), None, "no T bit");
        assert_eq!(Codec::Vp8.layer_indices(&[0x10, 0x00]), None, "no extension");
        assert_eq!(Codec::Vp8.layer_indices(&[0x90, 0xe0, 0x81, 0x05]), None, "truncated");
        // VP9 I=1 L=1 B=1 E=1: 15-bit PictureID, TID 1 / U / SID 2 / D.
        let i = Codec::Vp9.layer_indices(&[0xac, 0x82, 0x03, 0b0011_0101, 0x09]).unwrap();
        assert_eq!((i.temporal, i.spatial, i.begin_of_layer_frame, i.end_of_layer_frame), (1, 2, true, true));
        let i = Codec::Vp9.layer_indices(&[0x20, 0b0100_0010]).unwrap();
        assert_eq!((i.temporal, i.spatial, i.begin_of_layer_frame, i.end_of_layer_frame), (2, 1, false, false));
        let i = Codec::Vp9.layer_indices(&[0x8c, 0x05]).unwrap();
        assert_eq!((i.temporal, i.spatial, i.begin_of_layer_frame, i.end_of_layer_frame), (0, 0, true, true), "no L");
        assert_eq!(Codec::Vp9.layer_indices(&[0xa8, 0x82, 0x03]), None, "truncated");
        assert_eq!(Codec::H264.layer_indices(&[0x65]), None);
    }

    #[test]
    fn vp9_and_h264() {
        assert!(Codec::Vp9.is_keyframe_start(&[0x08]));
        assert!(!Codec::Vp9.is_keyframe_start(&[0x48]), "P set");
        assert!(Codec::H264.is_keyframe_start(&[0x65]), "IDR");
        assert!(
            Codec::H264.is_keyframe_start(&[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]),
            "STAP-A with SPS"
        );
        assert!(Codec::H264.is_keyframe_start(&[0x7c, 0x85]), "FU-A start of an IDR");
        assert!(!Codec::H264.is_keyframe_start(&[0x7c, 0x05]), "FU-A continuation");
        assert!(!Codec::H264.is_keyframe_start(&[0x41]), "non-IDR slice");
    }
}
