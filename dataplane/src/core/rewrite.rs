//! Sequence-number and timestamp rewriting for one subscription: gap-free output across source switches
//! (a simulcast layer change, a publisher replaced), and the output's extended index for SRTP.
//!
//! Worked example. A subscription forwards layer A: in 100, 101, 102 -> out 100, 101, 102. It switches to layer
//! B, whose next packet is 7000: the offset becomes 103 - 7000, so in 7000, 7001 -> out 103, 104. A late packet
//! of A (in 99) is dropped: it belongs to the previous source. A late packet of B (in 6999) is before the
//! switch point and is dropped too, so output never repeats or runs backwards.

use crate::srtp::estimate_index;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRewriter {
    /// Added (mod 2^16) to input sequence numbers of the current source.
    offset: u16,
    /// Extended index of the current source's first packet; anything before it is dropped. Input indices start
    /// at 1 << 16 for each source so a late packet from just before the start still has an index below it.
    source_start: u64,
    /// Highest extended input index of the current source.
    highest_in: u64,
    /// Highest output extended index sent (ROC << 16 | seq).
    highest_out: u64,
    started: bool,
    /// A switch is pending: the next packet defines the new offset.
    switching: bool,
}

impl Default for SeqRewriter {
    fn default() -> Self {
        SeqRewriter { offset: 0, source_start: 0, highest_in: 0, highest_out: 0, started: false, switching: true }
    }
}

impl SeqRewriter {
    /// The next packet comes from a new source and continues right after the last one sent.
    pub fn switch_source(&mut self) {
        self.switching = true;
    }

    /// Output sequence number and extended index for input `seq`, or `None` to drop it (from before the current
    /// source's first packet).
    pub fn rewrite(&mut self, seq: u16) -> Option<(u16, u64)> {
        if self.switching {
            let next_out = if self.started { (self.highest_out as u16).wrapping_add(1) } else { seq };
            self.offset = next_out.wrapping_sub(seq);
            self.highest_in = (1 << 16) | u64::from(seq);
            // After a real switch, packets from before the new source's first would collide with what the old
            // source already sent. On the very first packet nothing was sent yet, so late ones still pass.
            self.source_start = if self.started { self.highest_in } else { 0 };
            self.switching = false;
        } else {
            let index = estimate_index(self.highest_in, seq);
            if index < self.source_start {
                return None;
            }
            self.highest_in = self.highest_in.max(index);
        }
        let out = seq.wrapping_add(self.offset);
        let out_index = if self.started { estimate_index(self.highest_out, out) } else { u64::from(out) };
        if !self.started || out_index > self.highest_out {
            self.highest_out = out_index;
        }
        self.started = true;
        Some((out, out_index))
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
        let in_seq = out_seq.wrapping_sub(self.offset);
        let in_index = estimate_index(self.highest_in, in_seq);
        (in_index >= self.source_start && in_index <= self.highest_in).then_some((in_seq, out_index))
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
}
