//! Sequence-number and timestamp rewriting for one subscription: gap-free output across source switches
//! (a simulcast layer change, a publisher replaced), and the output's extended index for SRTP.
//!
//! Worked example. A subscription forwards layer A: in 100, 101, 102 -> out 100, 101, 102. It switches to layer
//! B, whose next packet is 7000: the offset becomes 103 - 7000, so in 7000, 7001 -> out 103, 104. A late packet
//! of A (in 99) is dropped: it belongs to the previous source. A late packet of B (in 6999) is before the
//! switch point and is dropped too, so output never repeats or runs backwards.

use crate::packet::codec::{Codec, PictureIndices};
use crate::srtp::estimate_index;

/// Dropped packets (a temporal layer shed, a spatial layer a subscriber does not take) leave no gap: each drop
/// starts a segment of the input whose offset is one less. Older segments are kept so late packets and NACKs
/// from before a drop still map; this many, then the oldest is forgotten (its packets count as stale).
const SEGMENTS_MAX: usize = 48;

/// From input index `start` on (until the next segment), output = input + `offset` (mod 2^16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Segment {
    start: u64,
    offset: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqRewriter {
    /// The newest segment: the offset for new packets (the only one the packet path reads).
    current: Segment,
    /// The segments before it, a ring, oldest at `first`; boxed so a subscription stays small for the fan-out.
    older: Box<[Segment; SEGMENTS_MAX - 1]>,
    first: usize,
    len: usize,
    /// Extended index of the oldest packet still mapped; anything before it is dropped. Input indices start at
    /// 1 << 16 for each source so a late packet from just before the start still has an index below it.
    source_start: u64,
    /// Highest extended input index of the current source (forwarded or dropped).
    highest_in: u64,
    /// Highest output extended index sent (ROC << 16 | seq).
    highest_out: u64,
    started: bool,
    /// A switch is pending: the next packet defines the new offset.
    switching: bool,
}

impl Default for SeqRewriter {
    fn default() -> Self {
        SeqRewriter {
            current: Segment::default(),
            older: Box::new([Segment::default(); SEGMENTS_MAX - 1]),
            first: 0,
            len: 0,
            source_start: 0,
            highest_in: 0,
            highest_out: 0,
            started: false,
            switching: true,
        }
    }
}

impl SeqRewriter {
    /// The next packet comes from a new source and continues right after the last one sent.
    pub fn switch_source(&mut self) {
        self.switching = true;
    }

    /// The segments, newest first, each with the first input index it maps: its start, or for the oldest
    /// everything back to `source_start`.
    fn newest_first(&self) -> impl Iterator<Item = (u64, Segment)> + '_ {
        let current = (if self.len == 0 { self.source_start } else { self.current.start }, self.current);
        std::iter::once(current).chain((0..self.len).rev().map(|i| {
            let segment = self.older[(self.first + i) % (SEGMENTS_MAX - 1)];
            (if i == 0 { self.source_start } else { segment.start }, segment)
        }))
    }

    /// The offset for input `index` of the current source: the newest segment starting at or before it (the
    /// oldest covers everything back to `source_start`).
    fn offset_for(&self, index: u64) -> u16 {
        if index >= self.current.start {
            return self.current.offset;
        }
        self.newest_first().find(|(from, _)| *from <= index).map_or(self.current.offset, |(_, s)| s.offset)
    }

    /// Output sequence number and extended index for input `seq`, or `None` to drop it (from before the current
    /// source's first packet, or from before the oldest segment still kept).
    pub fn rewrite(&mut self, seq: u16) -> Option<(u16, u64)> {
        let offset = if self.switching {
            let next_out = if self.started { (self.highest_out as u16).wrapping_add(1) } else { seq };
            let offset = next_out.wrapping_sub(seq);
            self.highest_in = (1 << 16) | u64::from(seq);
            // After a real switch, packets from before the new source's first would collide with what the old
            // source already sent. On the very first packet nothing was sent yet, so late ones still pass.
            self.source_start = if self.started { self.highest_in } else { 0 };
            self.current = Segment { start: self.highest_in, offset };
            (self.first, self.len) = (0, 0);
            self.switching = false;
            offset
        } else {
            let index = estimate_index(self.highest_in, seq);
            if index < self.source_start {
                return None;
            }
            self.highest_in = self.highest_in.max(index);
            self.offset_for(index)
        };
        let out = seq.wrapping_add(offset);
        let out_index = if self.started { estimate_index(self.highest_out, out) } else { u64::from(out) };
        if !self.started || out_index > self.highest_out {
            self.highest_out = out_index;
        }
        self.started = true;
        Some((out, out_index))
    }

    /// Drops input `seq` of the current source without leaving a gap: the packets after it move down by one.
    /// Only the newest packet can be dropped so (those after an older one went out already); returns whether it
    /// was, else the caller forwards it.
    pub fn skip(&mut self, seq: u16) -> bool {
        if !self.started || self.switching {
            return false;
        }
        let index = estimate_index(self.highest_in, seq);
        if index <= self.highest_in {
            return false;
        }
        self.highest_in = index;
        let next = Segment { start: index + 1, offset: self.current.offset.wrapping_sub(1) };
        if self.current.start == index {
            // Nothing went out since the last drop: the run of drops grows.
            self.current = next;
            return true;
        }
        const OLDER_MAX: usize = SEGMENTS_MAX - 1;
        if self.len == OLDER_MAX {
            self.first = (self.first + 1) % OLDER_MAX;
            self.len -= 1;
            self.source_start = if self.len == 0 { self.current.start } else { self.older[self.first].start };
        }
        self.older[(self.first + self.len) % OLDER_MAX] = self.current;
        self.len += 1;
        self.current = next;
        true
    }

    pub fn highest_out(&self) -> u64 {
        self.highest_out
    }

    /// For a NACKed output sequence number: the input sequence number it came from and the extended output
    /// index it was sent with, if it belongs to the current source (older ones cannot be mapped back).
    pub fn reverse(&self, out_seq: u16) -> Option<(u16, u64)> {
        if !self.started || self.switching {
            return None;
        }
        let out_index = estimate_index(self.highest_out, out_seq);
        if out_index > self.highest_out {
            return None;
        }
        // Outputs of newer segments map to inputs at or after their start; an output of an older segment maps
        // below every newer segment's start.
        self.newest_first().find_map(|(from, segment)| {
            let in_seq = out_seq.wrapping_sub(segment.offset);
            let in_index = estimate_index(self.highest_in, in_seq);
            (in_index >= from && in_index <= self.highest_in).then_some((in_seq, out_index))
        })
    }
}

/// VP8 and VP9 PictureID and TL0PICIDX continuity for one subscription (RFC 7741, RFC 9628). A decoder orders frames and finds
/// their references by these indices; each simulcast layer counts from its own random start, so a switch would
/// look to the subscriber like a jump back or forward by thousands of frames. Receivers differ in what they make
/// of that (a Firefox viewer froze after its first frame of the new layer): after a switch, the new layer's
/// indices continue one after the last ones sent, as they would from a single encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PictureIdRewriter {
    picture_offset: u16,
    tl0_offset: u8,
    /// The newest PictureID and TL0PICIDX sent (after rewriting).
    last_picture: Option<u16>,
    last_tl0: Option<u8>,
    switching: bool,
}

/// What to write into one forwarded VP8 or VP9 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PicturePatch {
    picture_id: Option<(usize, u16, bool)>,
    tl0_pic_idx: Option<(usize, u8)>,
}

const PICTURE_ID_MASK: u16 = 0x7fff;

impl PictureIdRewriter {
    /// The next packet comes from a new source (it starts a keyframe) and continues after the last one sent.
    pub fn switch_source(&mut self) {
        self.switching = true;
    }

    /// The patch for a payload about to be forwarded; the first after a switch sets the new offsets.
    pub fn rewrite(&mut self, codec: Codec, payload: &[u8]) -> PicturePatch {
        let Some(indices) = codec.picture_indices(payload) else { return PicturePatch::default() };
        if std::mem::take(&mut self.switching) {
            if let (Some(last), Some((_, value, _))) = (self.last_picture, indices.picture_id) {
                self.picture_offset = last.wrapping_add(1).wrapping_sub(value) & PICTURE_ID_MASK;
            }
            if let (Some(last), Some((_, value))) = (self.last_tl0, indices.tl0_pic_idx) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(value);
            }
        }
        let patch = self.patch_indices(indices);
        if let Some((_, out, _)) = patch.picture_id {
            // The newest, so a reordered older packet does not pull the next switch's start back.
            if self.last_picture.is_none_or(|last| out.wrapping_sub(last) & PICTURE_ID_MASK < 0x4000) {
                self.last_picture = Some(out);
            }
        }
        if let Some((_, out)) = patch.tl0_pic_idx
            && self.last_tl0.is_none_or(|last| out.wrapping_sub(last) < 0x80)
        {
            self.last_tl0 = Some(out);
        }
        patch
    }

    /// The patch for a payload sent before (a retransmission from the current source): the current offsets.
    pub fn patch(&self, codec: Codec, payload: &[u8]) -> PicturePatch {
        codec.picture_indices(payload).map(|i| self.patch_indices(i)).unwrap_or_default()
    }

    fn patch_indices(&self, indices: PictureIndices) -> PicturePatch {
        PicturePatch {
            picture_id: indices.picture_id.map(|(at, value, wide)| {
                let out = value.wrapping_add(self.picture_offset) & PICTURE_ID_MASK;
                // A 7-bit PictureID keeps its width: its low bits continue.
                (at, if wide { out } else { out & 0x7f }, wide)
            }),
            tl0_pic_idx: indices.tl0_pic_idx.map(|(at, value)| (at, value.wrapping_add(self.tl0_offset))),
        }
    }
}

impl PicturePatch {
    /// Writes the rewritten indices into `payload` (a copy of the one the patch was made for).
    pub fn apply(&self, payload: &mut [u8]) {
        if let Some((at, value, wide)) = self.picture_id {
            if wide {
                payload[at] = 0x80 | (value >> 8) as u8;
                payload[at + 1] = value as u8;
            } else {
                payload[at] = value as u8;
            }
        }
        if let Some((at, value)) = self.tl0_pic_idx {
            payload[at] = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn worked_example() {
        let mut r = SeqRewriter::default();
        assert_eq!(r.rewrite(100).map(|x| x.0), Some(100));
        assert_eq!(r.rewrite(101).map(|x| x.0), Some(101));
        assert_eq!(r.rewrite(102).map(|x| x.0), Some(102));
        r.switch_source();
        assert_eq!(r.rewrite(7000).map(|x| x.0), Some(103));
        assert_eq!(r.rewrite(7001).map(|x| x.0), Some(104));
        assert_eq!(r.rewrite(6999), None, "before the switch point");
        assert_eq!(r.rewrite(7003).map(|x| x.0), Some(106), "a gap in the source stays a gap");
        assert_eq!(r.rewrite(7002).map(|x| x.0), Some(105), "reordering inside the source is kept");
    }

    #[test]
    fn long_streams_keep_flowing_across_many_wraps() {
        let mut r = SeqRewriter::default();
        let mut expected = 40_000u64;
        for i in 0..300_000u64 {
            let seq = (40_000 + i) as u16;
            assert_eq!(r.rewrite(seq), Some((seq, expected)), "packet {i}");
            expected += 1;
        }
        // A late packet from 100 back, after several wraps, still passes with its own index.
        let late = (40_000u64 + 300_000 - 100) as u16;
        assert_eq!(r.rewrite(late).map(|x| x.1), Some(expected - 100));
    }

    #[test]
    fn packets_reordered_before_the_very_first_are_kept() {
        let mut r = SeqRewriter::default();
        assert_eq!(r.rewrite(11), Some((11, 11)));
        assert_eq!(r.rewrite(10), Some((10, 10)), "the stream's first packet arrived second");
        assert_eq!(r.rewrite(12), Some((12, 12)));
    }

    #[test]
    fn nacked_outputs_map_back_to_their_inputs_within_the_current_source() {
        let mut r = SeqRewriter::default();
        for seq in 100..110 {
            r.rewrite(seq);
        }
        r.switch_source();
        for seq in 5000..5010 {
            r.rewrite(seq);
        }
        assert_eq!(r.reverse(112), Some((5002, 112)));
        assert_eq!(r.reverse(105), None, "from the previous source");
        assert_eq!(r.reverse(200), None, "never sent");
    }

    #[test]
    fn extended_index_rolls_over() {
        let mut r = SeqRewriter::default();
        assert_eq!(r.rewrite(0xfffe), Some((0xfffe, 0xfffe)));
        assert_eq!(r.rewrite(0xffff), Some((0xffff, 0xffff)));
        assert_eq!(r.rewrite(0), Some((0, 0x1_0000)));
        r.switch_source();
        assert_eq!(r.rewrite(500), Some((1, 0x1_0001)));
    }

    proptest! {
        /// However sources switch (each source's packets in order, some lost), the output is strictly increasing
        /// and never skips except where a source skipped.
        #[test]
        fn output_is_gap_free_across_switches(
            sources in proptest::collection::vec((any::<u16>(), proptest::collection::vec(1u16..4, 1..200)), 1..8)
        ) {
            let mut r = SeqRewriter::default();
            let mut last: Option<u64> = None;
            for (start, steps) in sources {
                r.switch_source();
                let mut seq = start;
                let mut first = true;
                for step in steps {
                    if !first { seq = seq.wrapping_add(step); }
                    let (_, index) = r.rewrite(seq).expect("in-order packets of the current source pass");
                    if let Some(prev) = last {
                        let expected_gap = if first { 1 } else { u64::from(step) };
                        prop_assert_eq!(index, prev + expected_gap);
                    }
                    last = Some(index);
                    first = false;
                }
            }
        }
    }

    #[test]
    fn dropped_packets_leave_no_gap_and_nacks_still_map() {
        let mut r = SeqRewriter::default();
        assert_eq!(r.rewrite(100).map(|x| x.0), Some(100));
        assert_eq!(r.rewrite(101).map(|x| x.0), Some(101));
        assert!(r.skip(102));
        assert_eq!(r.rewrite(103).map(|x| x.0), Some(102));
        assert!(r.skip(104));
        assert!(r.skip(105), "a run of drops");
        assert_eq!(r.rewrite(106).map(|x| x.0), Some(103));
        assert!(!r.skip(99), "an older packet cannot be dropped without a gap");
        assert_eq!(r.reverse(103), Some((106, 103)));
        assert_eq!(r.reverse(102), Some((103, 102)));
        assert_eq!(r.reverse(101), Some((101, 101)));
        assert_eq!(r.reverse(104), None, "not sent yet");
        // A packet lost before a drop and arriving late fills its own place.
        assert_eq!(r.rewrite(108).map(|x| x.0), Some(105));
        assert!(r.skip(109));
        assert_eq!(r.rewrite(107).map(|x| x.0), Some(104));
        assert_eq!(r.rewrite(110).map(|x| x.0), Some(106));
        assert_eq!(r.reverse(104), Some((107, 104)));
        // A switch forgets the drops.
        r.switch_source();
        assert!(!r.skip(5000), "the first packet of a source defines its offset");
        assert_eq!(r.rewrite(5000).map(|x| x.0), Some(107));
        assert_eq!(r.reverse(106), None, "the previous source");
    }

    #[test]
    fn drops_beyond_the_kept_segments_make_the_oldest_stale() {
        let mut r = SeqRewriter::default();
        r.rewrite(0);
        r.rewrite(1);
        for i in 0..SEGMENTS_MAX as u16 {
            assert!(r.skip(2 + 2 * i));
            assert_eq!(r.rewrite(3 + 2 * i).map(|x| x.0), Some(2 + i));
        }
        assert_eq!(r.reverse(0), None, "the first segment was forgotten");
        assert_eq!(r.rewrite(0), None, "its packets are stale");
        let last = 1 + 2 * SEGMENTS_MAX as u16;
        assert_eq!(r.reverse(1 + SEGMENTS_MAX as u16), Some((last, u64::from(1 + SEGMENTS_MAX as u16))));
    }

    proptest! {
        /// Whatever packets are lost, reordered by one, or dropped, what goes out has no gaps but the losses, and
        /// every output maps back to the input it came from.
        #[test]
        fn drops_keep_the_output_gap_free_and_reversible(
            start in any::<u16>(),
            fates in proptest::collection::vec(0u8..10, 1..400)
        ) {
            let mut r = SeqRewriter::default();
            let mut sent: Vec<(u16, u64)> = Vec::new();
            let mut lost_outputs = 0u64;
            let mut first_out: Option<u64> = None;
            let mut held: Option<u16> = None;
            for (i, fate) in fates.iter().enumerate() {
                let seq = start.wrapping_add(i as u16);
                match fate {
                    // Lost upstream: its output place stays a gap (the subscriber NACKs it).
                    0 if first_out.is_some() && held.is_none() => { lost_outputs += 1; continue }
                    // Dropped here.
                    1 | 2 if first_out.is_some() && held.is_none() && r.skip(seq) => continue,
                    // Held back one packet: arrives after the next.
                    3 if first_out.is_some() && held.is_none() => { held = Some(seq); continue }
                    _ => {}
                }
                let (_, index) = r.rewrite(seq).expect("a packet of the current source passes");
                first_out.get_or_insert(index);
                sent.push((seq, index));
                if let Some(late) = held.take() {
                    let (_, index) = r.rewrite(late).expect("a late packet after the first passes");
                    sent.push((late, index));
                }
            }
            let mut outputs: Vec<u64> = sent.iter().map(|s| s.1).collect();
            outputs.sort_unstable();
            outputs.dedup();
            prop_assert_eq!(outputs.len(), sent.len(), "no output used twice");
            let span = outputs.last().unwrap() - outputs.first().unwrap() + 1;
            prop_assert!(span <= outputs.len() as u64 + lost_outputs, "gaps only where packets were lost");
            for (seq, index) in sent.iter().rev().take(SEGMENTS_MAX) {
                prop_assert_eq!(r.reverse(*index as u16), Some((*seq, *index)));
            }
        }
    }

    /// A VP8 payload with a 15-bit PictureID and a TL0PICIDX (X, I, L and T set).
    fn vp8(picture_id: u16, tl0: u8) -> Vec<u8> {
        vec![0x90, 0xe0, 0x80 | (picture_id >> 8) as u8, picture_id as u8, tl0, 0x20, 0x00]
    }

    fn indices_after(r: &mut PictureIdRewriter, picture_id: u16, tl0: u8) -> (u16, u8) {
        let mut p = vp8(picture_id, tl0);
        r.rewrite(Codec::Vp8, &p.clone()).apply(&mut p);
        let i = Codec::Vp8.picture_indices(&p).unwrap();
        (i.picture_id.unwrap().1, i.tl0_pic_idx.unwrap().1)
    }

    #[test]
    fn vp8_indices_continue_across_a_switch() {
        let mut r = PictureIdRewriter::default();
        assert_eq!(indices_after(&mut r, 32_766, 254), (32_766, 254), "the first source passes unchanged");
        assert_eq!(indices_after(&mut r, 32_767, 255), (32_767, 255));
        r.switch_source();
        assert_eq!(indices_after(&mut r, 1_000, 17), (0, 0), "one after the last sent, wrapping");
        assert_eq!(indices_after(&mut r, 1_001, 17), (1, 0));
        assert_eq!(indices_after(&mut r, 1_000, 17), (0, 0), "a reordered packet keeps its place");
        r.switch_source();
        assert_eq!(indices_after(&mut r, 20_000, 3), (2, 1), "after the newest, not the reordered one");
        // A retransmission of a packet of the current source gets the same indices it was sent with.
        let mut again = vp8(20_000, 3);
        r.patch(Codec::Vp8, &again.clone()).apply(&mut again);
        assert_eq!(again, {
            let mut p = vp8(20_000, 3);
            PicturePatch { picture_id: Some((2, 2, true)), tl0_pic_idx: Some((4, 1)) }.apply(&mut p);
            p
        });
    }

    #[test]
    fn vp8_seven_bit_picture_ids_keep_their_width_and_other_payloads_pass() {
        let mut r = PictureIdRewriter::default();
        let mut first = vec![0x90, 0x80, 0x7f, 0x00];
        r.rewrite(Codec::Vp8, &first.clone()).apply(&mut first);
        assert_eq!(first, [0x90, 0x80, 0x7f, 0x00]);
        r.switch_source();
        let mut next = vec![0x90, 0x80, 0x10, 0x00];
        r.rewrite(Codec::Vp8, &next.clone()).apply(&mut next);
        assert_eq!(next, [0x90, 0x80, 0x00, 0x00], "0x7f + 1 in seven bits");
        let mut plain = vec![0x10, 0x00, 0x9d];
        r.rewrite(Codec::Vp8, &plain.clone()).apply(&mut plain);
        assert_eq!(plain, [0x10, 0x00, 0x9d], "no extension: untouched");
        assert_eq!(r.rewrite(Codec::Vp8, &[0x90]), PicturePatch::default(), "truncated: untouched");
        assert_eq!(r.rewrite(Codec::H264, &[0x90, 0x80, 0x10]), PicturePatch::default(), "not VP8 or VP9");
    }

    #[test]
    fn vp9_indices_continue_across_a_switch() {
        let mut r = PictureIdRewriter::default();
        // I=1 L=1 F=0 B=1: 15-bit PictureID, TID/SID byte, TL0PICIDX.
        let vp9 =
            |picture_id: u16, tl0: u8| vec![0xa8, 0x80 | (picture_id >> 8) as u8, picture_id as u8, 0x00, tl0, 0x00];
        let mut first = vp9(500, 7);
        r.rewrite(Codec::Vp9, &first.clone()).apply(&mut first);
        assert_eq!(first, vp9(500, 7));
        r.switch_source();
        let mut next = vp9(9_000, 200);
        r.rewrite(Codec::Vp9, &next.clone()).apply(&mut next);
        assert_eq!(next, vp9(501, 8));
    }
}
