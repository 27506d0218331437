//! What left, by transport-wide sequence number, until feedback names it: a fixed ring, no allocation per packet.

/// Slots: at 2.5 Mbit/s of 1200-byte packets, about four seconds; feedback comes every 100 ms or so.
const SLOTS: usize = 1024;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The full (unwrapped) sequence number this slot holds, plus one (0: empty).
    key: u64,
    size: u32,
    sent_us: i64,
    /// Reported lost once: a later report may still say it arrived (late or reordered), another "lost" does
    /// not count again.
    lost_reported: bool,
    /// The probe cluster it belonged to (0: none).
    cluster: u16,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Sent {
    pub(super) size: u32,
    pub(super) sent_us: i64,
    pub(super) cluster: u16,
}

#[derive(Debug)]
pub(super) struct SendHistory {
    slots: Box<[Slot]>,
    /// The highest full sequence number recorded.
    highest: Option<u64>,
}

impl SendHistory {
    pub(super) fn new() -> SendHistory {
        SendHistory { slots: vec![Slot::default(); SLOTS].into_boxed_slice(), highest: None }
    }

    /// The full sequence number of `seq`: the one nearest the highest recorded.
    fn unwrap(&self, seq: u16) -> u64 {
        let Some(highest) = self.highest else { return u64::from(seq) + (1 << 16) };
        let delta = seq.wrapping_sub(highest as u16) as i16;
        highest.wrapping_add_signed(i64::from(delta))
    }

    pub(super) fn record(&mut self, seq: u16, size: usize, sent_us: i64, cluster: u16) {
        let full = self.unwrap(seq);
        self.highest = Some(self.highest.map_or(full, |h| h.max(full)));
        self.slots[full as usize % SLOTS] =
            Slot { key: full + 1, size: size as u32, sent_us, lost_reported: false, cluster };
    }

    /// The packet `seq` as a report names it (`received` or lost), if it is still here: a packet counts once as
    /// received and at most once as lost (a packet reported lost may still be reported received later).
    pub(super) fn take(&mut self, seq: u16, received: bool) -> Option<Sent> {
        self.highest?;
        let full = self.unwrap(seq);
        let slot = &mut self.slots[full as usize % SLOTS];
        if slot.key != full + 1 {
            return None;
        }
        let sent = Sent { size: slot.size, sent_us: slot.sent_us, cluster: slot.cluster };
        if received {
            slot.key = 0;
        } else if std::mem::replace(&mut slot.lost_reported, true) {
            return None;
        }
        Some(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_found_once_across_the_sequence_wrap() {
        let mut h = SendHistory::new();
        for (i, seq) in (65_530u16..=65_535).chain(0..5).enumerate() {
            h.record(seq, 1000 + i, i as i64 * 1000, 0);
        }
        assert_eq!(h.take(2, true).map(|s| s.size), Some(1008));
        assert!(h.take(2, true).is_none(), "reported once");
        assert_eq!(h.take(65_531, false).map(|s| s.sent_us), Some(1000), "lost");
        assert!(h.take(65_531, false).is_none(), "lost counts once");
        assert!(h.take(65_531, true).is_some(), "then it arrived after all");
        assert!(h.take(100, true).is_none(), "never sent");
    }

    #[test]
    fn old_packets_are_overwritten() {
        let mut h = SendHistory::new();
        for seq in 0..(SLOTS as u16 + 10) {
            h.record(seq, 1200, i64::from(seq), 0);
        }
        assert!(h.take(5, true).is_none());
        assert!(h.take(SLOTS as u16 + 5, true).is_some());
    }
}
