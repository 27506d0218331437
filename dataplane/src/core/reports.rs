//! RTCP reception statistics (RFC 3550 section 6.4, appendix A.3 and A.8) and the wallclock mapping behind
//! Sender Reports.

use std::time::{Duration, Instant};

use crate::packet::rtcp::ReportBlock;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// Maps the core's monotonic `Instant`s to NTP wallclock time, from one reading the runtime provides.
#[derive(Debug, Clone, Copy)]
pub struct Wallclock {
    anchor: Instant,
    /// NTP time at `anchor`, 32.32 fixed point.
    anchor_ntp: u64,
}

impl Wallclock {
    /// `since_unix_epoch` is the system time at `anchor`.
    pub fn new(anchor: Instant, since_unix_epoch: Duration) -> Wallclock {
        Wallclock { anchor, anchor_ntp: to_ntp(since_unix_epoch + Duration::from_secs(NTP_UNIX_OFFSET_SECS)) }
    }

    pub fn ntp(&self, now: Instant) -> u64 {
        match now.checked_duration_since(self.anchor) {
            Some(d) => self.anchor_ntp.wrapping_add(to_ntp(d)),
            None => self.anchor_ntp.wrapping_sub(to_ntp(self.anchor - now)),
        }
    }
}

/// A duration as NTP 32.32 fixed point.
pub fn to_ntp(d: Duration) -> u64 {
    (d.as_secs() << 32) | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

/// The middle 32 bits of an NTP timestamp, as RTCP's LSR and RTT arithmetic use.
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// What the publisher's last Sender Report said, and when we got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderClock {
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub received_at: Instant,
}

impl SenderClock {
    /// The publisher's RTP clock at `now`, extrapolated from its last report.
    pub fn rtp_at(&self, now: Instant, clock_rate: u32) -> u32 {
        let elapsed = now.saturating_duration_since(self.received_at);
        let ticks = elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
        self.rtp_timestamp.wrapping_add(ticks as u32)
    }
}

/// Reception statistics of one inbound stream, for the Receiver Reports we send its publisher.
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    first_index: Option<u64>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter in timestamp units, scaled by 16 (RFC 3550 A.8).
    jitter_x16: u64,
    last_transit: Option<i64>,
    pub sender_clock: Option<SenderClock>,
}

impl ReceiveStats {
    /// A packet with extended index `index` and RTP timestamp `timestamp` arrived at `arrival` (in the stream's
    /// clock units, from any fixed origin).
    pub fn on_packet(&mut self, index: u64, timestamp: u32, arrival: u64) {
        self.first_index = Some(self.first_index.map_or(index, |first| first.min(index)));
        self.received += 1;
        let transit = arrival as i64 - i64::from(timestamp);
        if let Some(last) = self.last_transit.replace(transit) {
            let d = (transit - last).unsigned_abs() & 0xffff_ffff;
            // J += (|D| - J) / 16, kept scaled by 16 to stay in integers.
            self.jitter_x16 = self.jitter_x16 + d - (self.jitter_x16 + 8) / 16;
        }
    }

    /// Packets expected up to `highest_index` and not received (RFC 3550 A.3's cumulative loss), without
    /// advancing the report interval.
    pub fn lost(&self, highest_index: u64) -> i64 {
        let Some(first) = self.first_index else { return 0 };
        (highest_index.saturating_sub(first) + 1) as i64 - self.received as i64
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter_units(&self) -> u64 {
        self.jitter_x16 / 16
    }

    /// The report block for this stream; advances the interval used for `fraction_lost`.
    pub fn report_block(&mut self, ssrc: u32, highest_index: u64, now: Instant) -> Option<ReportBlock> {
        let first = self.first_index?;
        let expected = highest_index.saturating_sub(first) + 1;
        let lost = expected as i64 - self.received as i64;
        let expected_interval = expected - self.expected_prior.min(expected);
        let received_interval = self.received - self.received_prior.min(self.received);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = ((lost_interval << 8).checked_div(expected_interval).unwrap_or(0)).min(255) as u8;
        let (last_sr, delay_since_last_sr) = match self.sender_clock {
            Some(c) => (ntp_middle(c.ntp), (to_ntp(now.saturating_duration_since(c.received_at)) >> 16) as u32),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_seq: highest_index as u32,
            jitter: (self.jitter_x16 / 16) as u32,
            last_sr,
            delay_since_last_sr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_conversion_and_wallclock() {
        assert_eq!(to_ntp(Duration::from_millis(1500)), (1 << 32) | (1 << 31));
        let t0 = Instant::now();
        let clock = Wallclock::new(t0, Duration::from_secs(1_700_000_000));
        assert_eq!(clock.ntp(t0) >> 32, 1_700_000_000 + NTP_UNIX_OFFSET_SECS);
        assert_eq!(clock.ntp(t0 + Duration::from_secs(2)) - clock.ntp(t0), 2 << 32);
    }

    #[test]
    fn losses_fraction_and_jitter_follow_rfc3550() {
        let now = Instant::now();
        let mut s = ReceiveStats::default();
        // 10 expected (100..=109), 8 received, evenly spaced: no jitter.
        for i in (100..110u64).filter(|i| *i != 103 && *i != 107) {
            s.on_packet(i, (i * 960) as u32, i * 960 + 5_000);
        }
        let block = s.report_block(7, 109, now).unwrap();
        assert_eq!((block.cumulative_lost, block.fraction_lost, block.highest_seq, block.jitter), (2, 51, 109, 0));
        // Next interval: 10 more, none lost.
        for i in 110..120u64 {
            s.on_packet(i, (i * 960) as u32, i * 960 + 5_000);
        }
        let block = s.report_block(7, 119, now).unwrap();
        assert_eq!((block.cumulative_lost, block.fraction_lost), (2, 0));
        // Arrival off by 160 ticks once: jitter rises by about 160/16 = 10.
        s.on_packet(120, 120 * 960, 120 * 960 + 5_160);
        assert_eq!(s.report_block(7, 120, now).unwrap().jitter, 10);
    }

    #[test]
    fn sender_clock_extrapolates() {
        let t = Instant::now();
        let c = SenderClock { ntp: 0, rtp_timestamp: 1000, received_at: t };
        assert_eq!(c.rtp_at(t + Duration::from_millis(20), 48_000), 1960);
        assert_eq!(c.rtp_at(t, 90_000), 1000);
    }
}
