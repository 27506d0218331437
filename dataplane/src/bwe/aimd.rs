//! Additive-increase, multiplicative-decrease of the delay-based estimate (goog_cc's AIMD rate control): down
//! to 0.85 of the acknowledged rate on overuse, held while the queue drains, and up otherwise: 8% a second far
//! from the last known capacity, one packet per 200 ms within 80% to 110% of it; growth stops at 1.5 times what is
//! being acknowledged (plus 10 kbit/s), so an idle transport's estimate cannot run away (an estimate a probe set
//! above that is kept, as goog_cc does).

use super::Usage;
use super::{MAX_BPS, MIN_BPS};

const BETA: f64 = 0.85;
const GROWTH_PER_SEC: f64 = 1.08;
/// Near capacity: one packet of this size per `NEAR_PERIOD_US`.
const PACKET_BITS: f64 = 1200.0 * 8.0;
const NEAR_PERIOD_US: f64 = 200_000.0;
/// Updates further apart than this count as this long (after a pause, no jump).
const DT_MAX_US: i64 = 200_000;

#[derive(Debug)]
pub(super) struct Aimd {
    estimate: f64,
    /// The acknowledged rate at the last overuse: where the link's capacity was found.
    capacity: Option<f64>,
    last_us: Option<i64>,
}

impl Aimd {
    pub(super) fn new(start_bps: u64) -> Aimd {
        Aimd { estimate: start_bps as f64, capacity: None, last_us: None }
    }

    pub(super) fn estimate_bps(&self) -> u64 {
        self.estimate as u64
    }

    /// Capacity seen (a probe, or what arrived without queueing): the estimate goes there at once if lower.
    pub(super) fn raise_to(&mut self, bps: u64) {
        let bps = bps as f64;
        if bps > self.estimate {
            self.estimate = bps.min(MAX_BPS as f64);
            if self.capacity.is_some_and(|c| bps > c) {
                self.capacity = None;
            }
        }
    }

    pub(super) fn update(&mut self, usage: Usage, acked_bps: Option<u64>, now_us: i64) {
        let dt_us = self.last_us.map_or(0, |t| (now_us - t).clamp(0, DT_MAX_US));
        self.last_us = Some(now_us);
        let acked = acked_bps.map(|a| a as f64);
        match usage {
            Usage::Overusing => {
                let base = acked.unwrap_or(self.estimate);
                let decreased = BETA * base;
                if decreased < self.estimate {
                    self.estimate = decreased;
                }
                self.capacity = Some(base);
            }
            Usage::Underusing => {}
            Usage::Normal => {
                if self.capacity.is_some_and(|c| self.estimate > 1.1 * c) {
                    self.capacity = None; // past it with no overuse: the link got faster
                }
                // Growth stops at the limit; an estimate already past it (a probe found room) is not pulled down.
                let limit = acked.map_or(f64::MAX, |a| 1.5 * a + 10_000.0);
                if self.estimate < limit {
                    let near = self.capacity.is_some_and(|c| self.estimate > 0.8 * c);
                    let grown = if near {
                        self.estimate + PACKET_BITS * dt_us as f64 / NEAR_PERIOD_US
                    } else {
                        self.estimate * GROWTH_PER_SEC.powf(dt_us as f64 / 1e6)
                    };
                    self.estimate = grown.min(limit);
                }
            }
        }
        self.estimate = self.estimate.clamp(MIN_BPS as f64, MAX_BPS as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overuse_drops_below_what_gets_through_and_normal_grows_back() {
        let mut a = Aimd::new(2_000_000);
        a.update(Usage::Overusing, Some(1_000_000), 0);
        assert_eq!(a.estimate_bps(), 850_000);
        // Near the capacity found: slowly, 48 kbit/s a second.
        for i in 1..=10 {
            a.update(Usage::Normal, Some(850_000), i * 100_000);
        }
        let after = a.estimate_bps();
        assert!((890_000..=905_000).contains(&after), "{after}");
    }

    #[test]
    fn far_from_capacity_it_grows_eight_percent_a_second_up_to_one_and_a_half_times_the_acked_rate() {
        let mut a = Aimd::new(1_000_000);
        for i in 0..=10 {
            a.update(Usage::Normal, Some(10_000_000), i * 100_000);
        }
        let after = a.estimate_bps();
        assert!((1_070_000..=1_090_000).contains(&after), "{after}");
        let mut b = Aimd::new(100_000);
        for i in 0..=100 {
            b.update(Usage::Normal, Some(100_000), i * 100_000);
        }
        assert_eq!(b.estimate_bps(), 160_000, "growth stops at 1.5 x acked + 10 kbit/s");
        a.update(Usage::Normal, Some(100_000), 1_100_000);
        assert_eq!(a.estimate_bps(), after, "an estimate past the limit is not pulled down, only not raised");
    }
}
