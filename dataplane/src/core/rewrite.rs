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
    /// First input sequence number of the current source; earlier ones are dropped.
    source_start: u16,
    /// Highest output extended index sent (ROC << 16 | seq).
    highest_out: u64,
    started: bool,
    /// A switch is pending: the next packet defines the new offset.
    switching: bool,
}

impl Default for SeqRewriter {
    fn default() -> Self {
        SeqRewriter { offset: 0, source_start: 0, highest_out: 0, started: false, switching: true }
    }
}

impl SeqRewriter {
    /// The next packet comes from a new source and continues right after the last one sent.
    pub fn switch_source(&mut self) {
        self.switching = true;
    }

    /// Output sequence number and extended index for input `seq`, or `None` to drop it (before the current
    /// source's start, or more than half the sequence space behind).
    pub fn rewrite(&mut self, seq: u16) -> Option<(u16, u64)> {
        if self.switching {
            let next_out = if self.started { (self.highest_out as u16).wrapping_add(1) } else { seq };
            self.offset = next_out.wrapping_sub(seq);
            self.source_start = seq;
            self.switching = false;
        } else if seq.wrapping_sub(self.source_start) >= 0x8000 {
            return None;
        }
        let out = seq.wrapping_add(self.offset);
        let index = if self.started { estimate_index(self.highest_out, out) } else { u64::from(out) };
        if self.started && index + 0x8000 <= self.highest_out {
            return None;
        }
        if !self.started || index > self.highest_out {
            self.highest_out = index;
        }
        self.started = true;
        Some((out, index))
    }

    pub fn highest_out(&self) -> u64 {
        self.highest_out
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
