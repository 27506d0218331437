//! RTP payloads back into frames, as the publisher's encoder made them: Opus (one packet, one frame), VP8
//! (RFC 7741) and VP9 (RFC 9628) frames split over packets (a VP9 SVC picture's spatial layers, each its own
//! frame, joined into one superframe), H.264 (RFC 6184: single NAL units, STAP-A, FU-A) as Annex B access units. Packets come in sequence order (the jitter buffer
//! orders them); a loss breaks the frame it hit, and a video track then waits for the next keyframe, since
//! nothing after a lost frame decodes until one comes.

use crate::spool::Codec;

/// Largest frame kept: beyond this a publisher is not sending video we can record.
const FRAME_LEN_MAX: usize = crate::spool::FRAME_LEN_MAX;

/// A frame that came out whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    pub keyframe: bool,
    pub rtp_timestamp: u32,
    pub data: Vec<u8>,
    /// From a VP8 keyframe header or a VP9 scalability structure.
    pub size: Option<(u16, u16)>,
}

/// Where a payload's codec data starts and what its descriptor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Descriptor {
    start: bool,
    /// VP9 only: the descriptor says the frame is not predicted from another.
    independent: bool,
    offset: usize,
    size: Option<(u16, u16)>,
    /// VP9: the spatial layer (SID), 0 without layer indices.
    spatial: u8,
}

/// A VP9 superframe holds at most this many frames (Annex B: three bits count them).
const SUPERFRAME_FRAMES_MAX: usize = 8;

#[derive(Debug)]
pub struct Assembler {
    codec: Codec,
    data: Vec<u8>,
    timestamp: u32,
    in_frame: bool,
    independent: bool,
    size: Option<(u16, u16)>,
    /// After a loss, frames are dropped until a keyframe.
    need_keyframe: bool,
    /// H.264: a fragmented NAL unit (FU-A) is open.
    fragment_open: bool,
    /// VP9 SVC: where each spatial layer's frame after the first starts in `data`, and the last layer begun.
    layer_starts: Vec<usize>,
    spatial: u8,
}

/// Annex B start code before each H.264 NAL unit.
const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// H.264 NAL unit types (ITU-T H.264 table 7-1, RFC 6184 table 1).
const NAL_IDR: u8 = 5;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

impl Assembler {
    pub fn new(codec: Codec) -> Assembler {
        Assembler {
            codec,
            data: Vec::new(),
            timestamp: 0,
            in_frame: false,
            independent: false,
            size: None,
            need_keyframe: !codec.is_audio(),
            fragment_open: false,
            layer_starts: Vec::with_capacity(SUPERFRAME_FRAMES_MAX),
            spatial: 0,
        }
    }

    /// True while frames are dropped for want of a keyframe: ask the publisher for one (PLI).
    pub fn needs_keyframe(&self) -> bool {
        self.need_keyframe
    }

    /// Packets were lost before the next one: the frame in progress cannot be completed.
    pub fn gap(&mut self) {
        self.in_frame = false;
        self.fragment_open = false;
        self.data.clear();
        if !self.codec.is_audio() {
            self.need_keyframe = true;
        }
    }

    /// Takes the next packet in sequence order; returns a frame when this packet completes one.
    pub fn push(&mut self, timestamp: u32, marker: bool, payload: &[u8]) -> Option<Assembled> {
        let d = match self.codec {
            Codec::Opus => {
                return (!payload.is_empty()).then(|| Assembled {
                    keyframe: true,
                    rtp_timestamp: timestamp,
                    data: payload.to_vec(),
                    size: None,
                });
            }
            Codec::Vp8 => vp8_descriptor(payload)?,
            Codec::Vp9 => vp9_descriptor(payload)?,
            Codec::H264 => return self.push_h264(timestamp, marker, payload),
        };
        if self.in_frame && timestamp != self.timestamp {
            // The last frame never saw its marker: its end was lost.
            self.gap();
        }
        let next_layer = d.start && self.in_frame && d.spatial > self.spatial;
        if next_layer {
            // The next spatial layer of the same picture (VP9 SVC): its frame follows in the same superframe, and
            // the picture is a keyframe if its first layer is (upper layers of a key picture predict from below).
            if self.layer_starts.len() + 1 == SUPERFRAME_FRAMES_MAX {
                self.gap();
                return None;
            }
            self.layer_starts.push(self.data.len());
            self.spatial = d.spatial;
        } else if d.start {
            self.data.clear();
            self.layer_starts.clear();
            self.in_frame = true;
            self.timestamp = timestamp;
            self.independent = d.independent;
            self.size = d.size;
            self.spatial = d.spatial;
        } else if !self.in_frame {
            return None;
        }
        if self.data.len() + payload.len() > FRAME_LEN_MAX {
            self.gap();
            return None;
        }
        self.data.extend_from_slice(&payload[d.offset..]);
        if !marker {
            return None;
        }
        self.in_frame = false;
        if !self.layer_starts.is_empty() && !self.append_superframe_index() {
            self.gap();
            return None;
        }
        let data = std::mem::take(&mut self.data);
        let (keyframe, size) = match self.codec {
            Codec::Vp8 => (data.first().is_some_and(|b| b & 1 == 0), vp8_size(&data)),
            _ => (self.independent, self.size),
        };
        self.complete(keyframe, timestamp, data, size)
    }

    fn complete(
        &mut self,
        keyframe: bool,
        timestamp: u32,
        data: Vec<u8>,
        size: Option<(u16, u16)>,
    ) -> Option<Assembled> {
        if self.need_keyframe && !keyframe {
            return None;
        }
        self.need_keyframe = false;
        Some(Assembled { keyframe, rtp_timestamp: timestamp, data, size })
    }

    /// VP9 Annex B: after the frames of a picture's spatial layers, the index that tells a decoder where each
    /// ends (a marker byte, each frame's size in little-endian bytes, the marker again). False if it would not fit.
    fn append_superframe_index(&mut self) -> bool {
        let mut sizes = [0usize; SUPERFRAME_FRAMES_MAX];
        let mut from = 0;
        let frames = self.layer_starts.len() + 1;
        for (size, end) in sizes.iter_mut().zip(self.layer_starts.iter().copied().chain([self.data.len()])) {
            *size = end - from;
            from = end;
        }
        let largest = sizes[..frames].iter().copied().max().unwrap_or(0);
        let width = match largest {
            0..=0xff => 1,
            0x100..=0xffff => 2,
            0x1_0000..=0xff_ffff => 3,
            _ => 4,
        };
        if self.data.len() + 2 + width * frames > FRAME_LEN_MAX {
            return false;
        }
        let marker = 0xc0 | ((width as u8 - 1) << 3) | (frames as u8 - 1);
        self.data.push(marker);
        for size in &sizes[..frames] {
            self.data.extend_from_slice(&(*size as u32).to_le_bytes()[..width]);
        }
        self.data.push(marker);
        true
    }

    /// H.264 has no frame-start bit: a frame is every packet of one timestamp, up to the marker.
    fn push_h264(&mut self, timestamp: u32, marker: bool, payload: &[u8]) -> Option<Assembled> {
        let header = *payload.first()?;
        if self.in_frame && timestamp != self.timestamp {
            self.gap();
        }
        if !self.in_frame {
            self.data.clear();
            (self.in_frame, self.timestamp, self.independent, self.fragment_open) = (true, timestamp, false, false);
        }
        let fits = |data: &Vec<u8>, more: usize| data.len() + more + START_CODE.len() <= FRAME_LEN_MAX;
        match header & 0x1f {
            1..=23 => {
                if !fits(&self.data, payload.len()) {
                    self.gap();
                    return None;
                }
                self.independent |= header & 0x1f == NAL_IDR;
                self.data.extend_from_slice(&START_CODE);
                self.data.extend_from_slice(payload);
            }
            NAL_STAP_A => {
                let mut at = 1;
                while at + 2 <= payload.len() {
                    let len = usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
                    let Some(nal) = payload.get(at + 2..at + 2 + len).filter(|n| !n.is_empty()) else {
                        self.gap();
                        return None;
                    };
                    if !fits(&self.data, nal.len()) {
                        self.gap();
                        return None;
                    }
                    self.independent |= nal[0] & 0x1f == NAL_IDR;
                    self.data.extend_from_slice(&START_CODE);
                    self.data.extend_from_slice(nal);
                    at += 2 + len;
                }
            }
            NAL_FU_A => {
                let fu = *payload.get(1)?;
                let body = &payload[2..];
                if !fits(&self.data, body.len() + 1) {
                    self.gap();
                    return None;
                }
                if fu & 0x80 != 0 {
                    self.independent |= fu & 0x1f == NAL_IDR;
                    self.data.extend_from_slice(&START_CODE);
                    self.data.push((header & 0xe0) | (fu & 0x1f));
                    self.fragment_open = true;
                } else if !self.fragment_open {
                    // The fragment's start was lost.
                    self.gap();
                    return None;
                }
                self.data.extend_from_slice(body);
                if fu & 0x40 != 0 {
                    self.fragment_open = false;
                }
            }
            // STAP-B, MTAP and FU-B belong to interleaved mode, which browsers do not use.
            _ => return None,
        }
        if !marker {
            return None;
        }
        self.in_frame = false;
        let data = std::mem::take(&mut self.data);
        let keyframe = self.independent;
        self.complete(keyframe, timestamp, data, None)
    }
}

/// RFC 7741 section 4.2: `X R N S R PID`, then optional `I L T K`, picture id, TL0PICIDX, TID/KEYIDX.
fn vp8_descriptor(p: &[u8]) -> Option<Descriptor> {
    let b0 = *p.first()?;
    let mut at = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(at)?;
        at += 1;
        if x & 0x80 != 0 {
            at += if *p.get(at)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1;
        }
        if x & 0x30 != 0 {
            at += 1;
        }
    }
    (at < p.len()).then_some(Descriptor {
        start: b0 & 0x10 != 0 && b0 & 0x07 == 0,
        independent: false,
        offset: at,
        size: None,
        spatial: 0,
    })
}

/// A VP8 keyframe's size: after the 3-byte frame tag comes the start code `9d 01 2a`, then 14-bit width and
/// height (little-endian, the top two bits are scaling).
pub(crate) fn vp8_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w, h))
}

/// RFC 9628 section 4.2: `I P L F B E V Z`, picture id, layer indices, reference diffs, scalability structure.
fn vp9_descriptor(p: &[u8]) -> Option<Descriptor> {
    let b0 = *p.first()?;
    let (i, pflag, l, f, b, v) =
        (b0 & 0x80 != 0, b0 & 0x40 != 0, b0 & 0x20 != 0, b0 & 0x10 != 0, b0 & 0x08 != 0, b0 & 0x02 != 0);
    let mut at = 1;
    if i {
        at += if *p.get(at)? & 0x80 != 0 { 2 } else { 1 };
    }
    let mut spatial = 0;
    if l {
        spatial = (*p.get(at)? >> 1) & 0x07;
        at += if f { 1 } else { 2 };
    }
    if f && pflag {
        // Up to three reference differences, each with an N bit saying another follows.
        for _ in 0..3 {
            let diff = *p.get(at)?;
            at += 1;
            if diff & 1 == 0 {
                break;
            }
        }
    }
    let mut size = None;
    if v {
        let ss = *p.get(at)?;
        at += 1;
        let layers = usize::from(ss >> 5) + 1;
        if ss & 0x10 != 0 {
            for layer in 0..layers {
                let w = u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]);
                let h = u16::from_be_bytes([*p.get(at + 2)?, *p.get(at + 3)?]);
                // The highest spatial layer is the picture a viewer sees.
                if layer == layers - 1 {
                    size = Some((w, h));
                }
                at += 4;
            }
        }
        if ss & 0x08 != 0 {
            let groups = *p.get(at)?;
            at += 1;
            for _ in 0..groups {
                let g = *p.get(at)?;
                at += 1 + usize::from((g >> 2) & 0x03);
            }
        }
    }
    (at < p.len()).then_some(Descriptor { start: b, independent: !pflag, offset: at, size, spatial })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 keyframe's first bytes: frame tag (keyframe), start code, 640x360.
    fn vp8_key() -> Vec<u8> {
        vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01, 0xaa, 0xbb]
    }

    #[test]
    fn vp8_frames_are_joined_across_packets_and_their_size_read() {
        let mut a = Assembler::new(Codec::Vp8);
        let key = vp8_key();
        // Extended descriptor with a 15-bit picture id, start of partition 0.
        let first = [&[0x90, 0x80, 0x81, 0x23][..], &key[..6]].concat();
        let second = [&[0x80, 0x80, 0x81, 0x23][..], &key[6..]].concat();
        assert_eq!(a.push(3000, false, &first), None);
        let frame = a.push(3000, true, &second).expect("the marker ends the frame");
        assert!(frame.keyframe);
        assert_eq!(frame.data, key);
        assert_eq!(frame.size, Some((640, 360)));
        // A delta frame in one packet.
        let delta = a.push(6000, true, &[0x10, 0x01, 0x00, 0x00]).unwrap();
        assert!(!delta.keyframe);
        assert_eq!(delta.data, vec![0x01, 0x00, 0x00]);
    }

    #[test]
    fn after_a_loss_video_waits_for_a_keyframe() {
        let mut a = Assembler::new(Codec::Vp8);
        assert!(a.needs_keyframe(), "a track starts by asking for a keyframe");
        assert_eq!(a.push(1, true, &[0x10, 0x01, 0x00]), None, "a delta frame before any keyframe is useless");
        let key = [&[0x10][..], &vp8_key()].concat();
        assert!(a.push(2, true, &key).is_some());
        a.push(3, false, &[0x10, 0x01]);
        a.gap();
        assert!(a.needs_keyframe());
        assert_eq!(a.push(4, true, &[0x10, 0x01, 0x00]), None);
        assert!(a.push(5, true, &key).is_some_and(|f| f.keyframe));
        assert!(!a.needs_keyframe());
    }

    #[test]
    fn a_frame_whose_end_was_lost_is_dropped() {
        let mut a = Assembler::new(Codec::Vp8);
        let key = [&[0x10][..], &vp8_key()].concat();
        a.push(1, true, &key).unwrap();
        assert_eq!(a.push(2, false, &[0x10, 0x01, 0x00]), None);
        // The next frame starts, though the last never ended.
        assert_eq!(a.push(3, true, &[0x10, 0x01, 0x00]), None, "waits for a keyframe after the broken frame");
        assert!(a.needs_keyframe());
    }

    #[test]
    fn vp9_descriptors_with_scalability_structure() {
        let mut a = Assembler::new(Codec::Vp9);
        // I (7-bit id), B, E, V: non-flexible, not predicted; SS with one layer of 1280x720, no groups.
        let p = [0x8a, 0x05, 0x10, 0x05, 0x00, 0x02, 0xd0, 0x82, 0x49, 0x83];
        let f = a.push(90, true, &p).expect("one-packet frame");
        assert!(f.keyframe);
        assert_eq!(f.size, Some((1280, 720)));
        assert_eq!(f.data, vec![0x82, 0x49, 0x83]);
        // A predicted frame: P set.
        let f = a.push(180, true, &[0xcc, 0x06, 0x01]).unwrap();
        assert!(!f.keyframe);
    }

    #[test]
    fn a_vp9_svc_picture_becomes_one_superframe_of_its_spatial_layers() {
        let mut a = Assembler::new(Codec::Vp9);
        // A key picture: layer 0 (I, L, B, E, not predicted; 7-bit PictureID 5, TID/SID byte, TL0PICIDX) in one
        // packet; layer 1 (SID 1, inter-layer predicted) in two, the marker on its last.
        assert_eq!(a.push(90, false, &[0xac, 0x05, 0x00, 0x00, 0x11, 0x12]), None);
        assert_eq!(a.push(90, false, &[0xa8, 0x05, 0x03, 0x00, 0x21]), None);
        let f = a.push(90, true, &[0xa4, 0x05, 0x03, 0x00, 0x22, 0x23]).expect("the marker ends the picture");
        assert!(f.keyframe, "its first layer is not predicted");
        // Frames of 2 and 3 bytes, then the index: marker 0b110_00_001 (1-byte sizes, 2 frames), 2, 3, marker.
        assert_eq!(f.data, [0x11, 0x12, 0x21, 0x22, 0x23, 0xc1, 2, 3, 0xc1]);
        // The next picture, predicted, a packet per layer.
        assert_eq!(a.push(180, false, &[0xec, 0x06, 0x20, 0x01, 0x31]), None);
        let f = a.push(180, true, &[0xec, 0x06, 0x22, 0x01, 0x41]).unwrap();
        assert!(!f.keyframe);
        assert_eq!(f.data, [0x31, 0x41, 0xc1, 1, 1, 0xc1]);
        // One layer only (a subscriber on the lowest, or no SVC): a plain frame, no index.
        let f = a.push(270, true, &[0xec, 0x07, 0x40, 0x01, 0x51]).unwrap();
        assert_eq!(f.data, [0x51]);
    }

    #[test]
    fn h264_single_nal_stap_a_and_fu_a_become_annex_b() {
        let mut a = Assembler::new(Codec::H264);
        // SPS and PPS aggregated, then an IDR slice in three fragments.
        let stap = [24, 0, 3, 0x67, 0x42, 0x1f, 0, 2, 0x68, 0xce];
        assert_eq!(a.push(100, false, &stap), None);
        assert_eq!(a.push(100, false, &[0x7c, 0x85, 1, 2]), None);
        assert_eq!(a.push(100, false, &[0x7c, 0x05, 3]), None);
        let key = a.push(100, true, &[0x7c, 0x45, 4]).expect("the marker ends the access unit");
        assert!(key.keyframe);
        assert_eq!(
            key.data,
            [&[0, 0, 0, 1, 0x67, 0x42, 0x1f][..], &[0, 0, 0, 1, 0x68, 0xce], &[0, 0, 0, 1, 0x65, 1, 2, 3, 4]].concat()
        );
        // A non-IDR slice in one packet.
        let delta = a.push(3100, true, &[0x41, 9, 9]).unwrap();
        assert!(!delta.keyframe);
        assert_eq!(delta.data, vec![0, 0, 0, 1, 0x41, 9, 9]);
        // A fragment whose start was lost breaks the frame; video then waits for an IDR.
        assert_eq!(a.push(6100, true, &[0x5c, 0x41, 7]), None);
        assert!(a.needs_keyframe());
        assert_eq!(a.push(9100, true, &[0x41, 9]), None);
        assert!(a.push(12100, true, &[0x65, 1]).is_some_and(|f| f.keyframe));
    }

    #[test]
    fn truncated_payloads_are_refused_not_read_past() {
        let mut a = Assembler::new(Codec::Vp8);
        for p in [&[][..], &[0x80], &[0x90, 0x80], &[0x90, 0x80, 0x81]] {
            assert_eq!(a.push(1, true, p), None);
        }
        let mut a = Assembler::new(Codec::Vp9);
        for p in [&[][..], &[0x8a], &[0x8a, 0x05], &[0x8a, 0x05, 0x10], &[0x8a, 0x05, 0x10, 0x05, 0x00]] {
            assert_eq!(a.push(1, true, p), None);
        }
        assert_eq!(Assembler::new(Codec::Opus).push(1, true, &[]), None);
        let mut a = Assembler::new(Codec::H264);
        for p in [&[][..], &[28], &[24, 0], &[24, 0, 9, 0x65], &[24, 0, 0]] {
            assert_eq!(a.push(1, true, p), None);
        }
    }
}
