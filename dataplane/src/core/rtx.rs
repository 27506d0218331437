//! Retransmission: a ring of a video track's recent decrypted packets, from which subscribers' NACKs are
//! answered (RFC 4585 section 6.2.1), and the tracker of packets a publisher has not delivered yet, which we NACK.

use std::time::{Duration, Instant};

use super::transmit::DATAGRAM_MAX;

/// Recent plaintext packets of one track, by extended input index. Allocated with the track; reused forever.
#[derive(Debug)]
pub struct RetransmissionBuffer {
    data: Box<[u8]>,
    lens: Box<[u16]>,
    indices: Box<[u64]>,
}

const EMPTY: u64 = u64::MAX;

impl RetransmissionBuffer {
    pub fn new(packets: usize) -> RetransmissionBuffer {
        RetransmissionBuffer {
            data: vec![0u8; packets * DATAGRAM_MAX].into_boxed_slice(),
            lens: vec![0u16; packets].into_boxed_slice(),
            indices: vec![EMPTY; packets].into_boxed_slice(),
        }
    }

    fn slot(&self, index: u64) -> usize {
        (index % self.indices.len() as u64) as usize
    }

    pub fn store(&mut self, index: u64, packet: &[u8]) {
        let slot = self.slot(index);
        let at = slot * DATAGRAM_MAX;
        self.data[at..at + packet.len()].copy_from_slice(packet);
        self.lens[slot] = packet.len() as u16;
        self.indices[slot] = index;
    }

    /// The packet with extended index `index`, if it is still in the ring.
    pub fn get(&self, index: u64) -> Option<&[u8]> {
        let slot = self.slot(index);
        if self.indices[slot] != index {
            return None;
        }
        let at = slot * DATAGRAM_MAX;
        Some(&self.data[at..at + usize::from(self.lens[slot])])
    }
}

/// Packets missing from a publisher's stream, NACKed up to [`NACK_TRIES`] times at [`NACK_RETRY`] intervals.
#[derive(Debug)]
pub struct MissingPackets {
    /// (extended index, NACKs sent, when the next one is due); a fixed capacity, oldest evicted first.
    missing: Vec<(u64, u8, Instant)>,
}

/// How many times we ask a publisher for one packet before giving up on it.
pub const NACK_TRIES: u8 = 3;
/// Wait before asking again: about one round trip on a typical path (we have no RTT estimate yet).
pub const NACK_RETRY: Duration = Duration::from_millis(60);
/// A gap bigger than this is a publisher restart or a long outage, not loss to repair: ask for a keyframe.
pub const NACK_GAP_MAX: u64 = 64;
const MISSING_MAX: usize = 128;

impl Default for MissingPackets {
    fn default() -> Self {
        MissingPackets { missing: Vec::with_capacity(MISSING_MAX) }
    }
}

impl MissingPackets {
    /// Packet `index` arrived; `previous_highest` is the highest index before it. Returns whether the gap it
    /// opened was too big to repair.
    pub fn on_packet(&mut self, index: u64, previous_highest: Option<u64>, now: Instant) -> bool {
        self.missing.retain(|(i, _, _)| *i != index);
        let Some(highest) = previous_highest else { return false };
        if index <= highest + 1 {
            return false;
        }
        if index - highest - 1 > NACK_GAP_MAX {
            return true;
        }
        for missing in highest + 1..index {
            if self.missing.len() == MISSING_MAX {
                self.missing.remove(0);
            }
            // Reordering is common: wait a little before the first NACK.
            self.missing.push((missing, 0, now + NACK_RETRY / 3));
        }
        false
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.missing.iter().map(|(_, _, due)| *due).min()
    }

    /// The sequence numbers to NACK now (at most `out.len()`); records the attempt and drops exhausted ones.
    pub fn due(&mut self, now: Instant, out: &mut [u16]) -> usize {
        let mut n = 0;
        for entry in self.missing.iter_mut() {
            if entry.2 <= now && n < out.len() {
                out[n] = entry.0 as u16;
                n += 1;
                entry.1 += 1;
                entry.2 = now + NACK_RETRY;
            }
        }
        self.missing.retain(|(_, tries, _)| *tries < NACK_TRIES);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_returns_only_what_it_still_holds() {
        let mut b = RetransmissionBuffer::new(4);
        b.store(10, b"ten");
        b.store(11, b"eleven");
        assert_eq!(b.get(10), Some(&b"ten"[..]));
        b.store(14, b"fourteen");
        assert_eq!(b.get(10), None, "overwritten by 14");
        assert_eq!(b.get(11), Some(&b"eleven"[..]));
        assert_eq!(b.get(12), None);
    }

    #[test]
    fn gaps_are_nacked_after_a_short_wait_then_retried_then_dropped() {
        let t = Instant::now();
        let mut m = MissingPackets::default();
        assert!(!m.on_packet(100, None, t));
        assert!(!m.on_packet(103, Some(100), t), "101 and 102 missing");
        let mut out = [0u16; 8];
        assert_eq!(m.due(t, &mut out), 0, "not yet: it may only be reordered");
        assert!(!m.on_packet(101, Some(103), t + Duration::from_millis(5)), "101 arrived late");
        let later = t + NACK_RETRY;
        assert_eq!(m.due(later, &mut out), 1);
        assert_eq!(out[0], 102);
        assert_eq!(m.due(later + NACK_RETRY, &mut out), 1);
        assert_eq!(m.due(later + NACK_RETRY * 2, &mut out), 1);
        assert_eq!(m.due(later + NACK_RETRY * 3, &mut out), 0, "gave up after three tries");
        assert!(m.on_packet(1_000, Some(103), t), "a huge gap is not repaired");
    }
}
