//! When each of a participant's packets arrived, by transport-wide sequence number, until we report them in
//! transport-wide feedback (so the browser's send-side bandwidth estimator can work).

use crate::packet::twcc;
use crate::srtp::estimate_index;

/// Arrivals remembered per participant: at 100 ms between reports this covers 10,000 packets per second.
const RING: usize = 1024;
/// Packets per feedback message: keeps it under 1200 bytes even with every delta large.
pub const FEEDBACK_PACKETS_MAX: usize = 400;
const NONE: i64 = i64::MIN;

#[derive(Debug)]
pub struct ArrivalRecorder {
    /// Next extended sequence number to report.
    base: Option<u64>,
    highest: u64,
    times_us: Box<[i64]>,
    feedback_count: u8,
}

impl Default for ArrivalRecorder {
    fn default() -> Self {
        ArrivalRecorder { base: None, highest: 0, times_us: vec![NONE; RING].into_boxed_slice(), feedback_count: 0 }
    }
}

impl ArrivalRecorder {
    /// Records packet `seq` (transport-wide) arriving at `arrival_us`. Returns whether there was nothing pending
    /// before (the caller schedules feedback).
    pub fn on_packet(&mut self, seq: u16, arrival_us: i64) -> bool {
        let was_empty = self.base.is_none_or(|b| b > self.highest);
        let index = match self.base {
            Some(_) => estimate_index(self.highest, seq),
            // Start at 1 << 16 so reordered packets just before the first still have an index.
            None => (1 << 16) | u64::from(seq),
        };
        let base = *self.base.get_or_insert(index);
        if index < base {
            // Reported as lost already; too late.
            return false;
        }
        if index >= base + RING as u64 {
            // Far ahead: what lies more than a ring behind is forgotten unreported.
            let new_base = index + 1 - RING as u64;
            for i in base..new_base.min(base + RING as u64) {
                self.times_us[(i % RING as u64) as usize] = NONE;
            }
            self.base = Some(new_base);
        }
        self.times_us[(index % RING as u64) as usize] = arrival_us;
        self.highest = self.highest.max(index);
        was_empty
    }

    pub fn has_pending(&self) -> bool {
        self.base.is_some_and(|b| b <= self.highest)
    }

    /// Writes one feedback message for the oldest unreported packets (at most [`FEEDBACK_PACKETS_MAX`]) and
    /// forgets them. Returns its length, or `None` if nothing is pending.
    pub fn write_feedback(&mut self, buf: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Option<usize> {
        let base = self.base.filter(|b| *b <= self.highest)?;
        let count = ((self.highest - base + 1) as usize).min(FEEDBACK_PACKETS_MAX);
        let mut arrivals = [None; FEEDBACK_PACKETS_MAX];
        for (i, slot) in arrivals.iter_mut().take(count).enumerate() {
            let at = ((base + i as u64) % RING as u64) as usize;
            *slot = (self.times_us[at] != NONE).then_some(self.times_us[at]);
            self.times_us[at] = NONE;
        }
        self.base = Some(base + count as u64);
        if arrivals[..count].iter().all(Option::is_none) {
            return None;
        }
        let len =
            twcc::write(buf, sender_ssrc, media_ssrc, base as u16, self.feedback_count, &arrivals[..count]).ok()?;
        self.feedback_count = self.feedback_count.wrapping_add(1);
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::rtcp::compound;

    #[test]
    fn reports_each_packet_once_with_losses_and_late_ones() {
        let mut r = ArrivalRecorder::default();
        assert!(r.on_packet(10, 1_000));
        assert!(!r.on_packet(11, 2_000));
        assert!(!r.on_packet(13, 4_000));
        let mut buf = [0u8; 1500];
        let n = r.write_feedback(&mut buf, 1, 2).unwrap();
        let mut out = vec![];
        twcc::read(&compound(&buf[..n]).next().unwrap().unwrap(), &mut out).unwrap();
        let got: Vec<_> = out.iter().map(|p| (p.seq, p.arrival_us.is_some())).collect();
        assert_eq!(got, vec![(10, true), (11, true), (12, false), (13, true)]);
        assert!(!r.has_pending());
        assert!(!r.on_packet(12, 5_000), "12 was reported lost; too late now");
        assert!(r.write_feedback(&mut buf, 1, 2).is_none());
        assert!(r.on_packet(14, 6_000), "new packets start a new report");
        assert!(r.has_pending());
    }
}
