//! Per-track reordering: packets leave in sequence order; a hole waits a bounded time for a retransmission
//! (asked for with NACK) and is then given up as a gap. Sans-IO: the caller passes the time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Packets held at most per track; beyond it the oldest hole is given up at once.
const HELD_MAX: usize = 1024;
/// A missing packet is asked for again after this long, at most `NACK_TRIES` times.
const NACK_RETRY: Duration = Duration::from_millis(60);
const NACK_TRIES: u8 = 3;
/// Holes further back than this are not asked for (the publisher's history would not have them).
const NACK_SPAN_MAX: u64 = 256;

#[derive(Debug, PartialEq, Eq)]
pub enum Released<T> {
    Packet(T),
    /// One or more packets before the next were lost.
    Gap,
}

#[derive(Debug)]
pub struct Reorder<T> {
    /// How long a hole may hold back what follows it.
    wait: Duration,
    /// The next extended sequence number to release.
    next: Option<u64>,
    highest: u64,
    held: BTreeMap<u64, (Instant, T)>,
    /// Missing sequence numbers: when they were last asked for, and how often.
    asked: BTreeMap<u64, (Option<Instant>, u8)>,
}

impl<T> Reorder<T> {
    pub fn new(wait: Duration) -> Reorder<T> {
        Reorder { wait, next: None, highest: 0, held: BTreeMap::new(), asked: BTreeMap::new() }
    }

    /// The extended sequence number of `seq`: the one nearest the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let delta = i64::from(seq.wrapping_sub(self.highest as u16) as i16);
        (self.highest as i64 + delta).max(0) as u64
    }

    /// Takes a packet. Duplicates and packets older than what was released are dropped (returns false).
    pub fn push(&mut self, seq: u16, now: Instant, packet: T) -> bool {
        let Some(next) = self.next else {
            // The first packet: sequence numbers start high enough that the extended form never goes below 0.
            let ext = (1u64 << 32) + u64::from(seq);
            self.next = Some(ext);
            self.highest = ext;
            self.held.insert(ext, (now, packet));
            return true;
        };
        let ext = self.extend(seq);
        if ext < next || self.held.contains_key(&ext) {
            return false;
        }
        self.asked.remove(&ext);
        self.highest = self.highest.max(ext);
        self.held.insert(ext, (now, packet));
        true
    }

    /// What may leave now, in order.
    pub fn release(&mut self, now: Instant, out: &mut Vec<Released<T>>) {
        let Some(mut next) = self.next else { return };
        loop {
            if let Some((_, packet)) = self.held.remove(&next) {
                out.push(Released::Packet(packet));
                next += 1;
                continue;
            }
            let Some((&first, &(arrived, _))) = self.held.iter().next() else { break };
            // A hole before `first`: give it up once what waits behind it waited long enough, or when too much
            // is held.
            if now.duration_since(arrived) >= self.wait || self.held.len() > HELD_MAX {
                out.push(Released::Gap);
                self.asked.retain(|&s, _| s >= first);
                next = first;
                continue;
            }
            break;
        }
        self.next = Some(next);
    }

    /// Sequence numbers to NACK now (each missing packet a few times, spaced out).
    pub fn to_nack(&mut self, now: Instant) -> Vec<u16> {
        let Some(next) = self.next else { return Vec::new() };
        let mut lost = Vec::new();
        let from = next.max(self.highest.saturating_sub(NACK_SPAN_MAX));
        for ext in from..self.highest {
            if self.held.contains_key(&ext) {
                continue;
            }
            let entry = self.asked.entry(ext).or_insert((None, 0));
            if entry.1 < NACK_TRIES && entry.0.is_none_or(|last| now.duration_since(last) >= NACK_RETRY) {
                *entry = (Some(now), entry.1 + 1);
                lost.push(ext as u16);
            }
        }
        lost
    }

    /// When `release` may next have something to do: the oldest held packet's deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.held.values().map(|(t, _)| *t + self.wait).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(r: &mut Reorder<u16>, now: Instant) -> Vec<Released<u16>> {
        let mut out = Vec::new();
        r.release(now, &mut out);
        out
    }

    #[test]
    fn reordered_packets_leave_in_order() {
        let t = Instant::now();
        let mut r = Reorder::new(Duration::from_millis(100));
        for seq in [10u16, 12, 11, 13] {
            r.push(seq, t, seq);
        }
        let out = drain(&mut r, t);
        assert_eq!(out, [10, 11, 12, 13].map(Released::Packet));
        assert!(!r.push(11, t, 11), "a late duplicate is dropped");
    }

    #[test]
    fn a_hole_is_nacked_then_given_up_as_a_gap() {
        let t = Instant::now();
        let mut r = Reorder::new(Duration::from_millis(100));
        r.push(65534, t, 1);
        r.push(1, t, 4); // 65535 and 0 lost, across the wrap
        assert_eq!(drain(&mut r, t), vec![Released::Packet(1)]);
        assert_eq!(r.to_nack(t), vec![65535, 0]);
        assert_eq!(r.to_nack(t + Duration::from_millis(10)), Vec::<u16>::new(), "not asked again at once");
        assert_eq!(r.to_nack(t + NACK_RETRY), vec![65535, 0]);
        // 65535 arrives as a retransmission; 0 never does.
        r.push(65535, t + Duration::from_millis(70), 2);
        assert_eq!(drain(&mut r, t + Duration::from_millis(70)), vec![Released::Packet(2)]);
        assert_eq!(drain(&mut r, t + Duration::from_millis(100)), vec![Released::Gap, Released::Packet(4)]);
        assert!(r.deadline().is_none());
    }

    #[test]
    fn a_missing_packet_is_asked_for_a_bounded_number_of_times() {
        let t = Instant::now();
        let mut r = Reorder::new(Duration::from_secs(10));
        r.push(1, t, 1);
        r.push(3, t, 3);
        let asked: usize = (0..10).map(|i| r.to_nack(t + NACK_RETRY * i).len()).sum();
        assert_eq!(asked, usize::from(NACK_TRIES));
    }

    #[test]
    fn too_much_held_gives_a_hole_up_at_once() {
        let t = Instant::now();
        let mut r = Reorder::new(Duration::from_secs(10));
        r.push(0, t, 0);
        for seq in 2..(HELD_MAX as u16 + 3) {
            r.push(seq, t, seq);
        }
        let out = drain(&mut r, t);
        assert_eq!(out[1], Released::Gap);
        assert_eq!(out.len(), HELD_MAX + 3);
    }
}
