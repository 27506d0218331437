//! The delay-based detector: packets grouped by send time (5 ms groups, as goog_cc's inter-arrival), the change
//! in one-way delay between groups, a trendline over the last 20 groups of the smoothed accumulated delay, and an
//! adaptive threshold that says whether the link's queue grows (overusing), drains (underusing) or neither.

/// Packets sent within this of a group's first belong to it.
const GROUP_US: i64 = 5_000;
/// A later packet arriving within this of the group's last, with less delay, is part of the same burst.
const BURST_US: i64 = 5_000;
/// Groups in the regression window.
const WINDOW: usize = 20;
const SMOOTHING: f64 = 0.9;
const GAIN: f64 = 4.0;
const THRESHOLD_START_MS: f64 = 12.5;
const THRESHOLD_MIN_MS: f64 = 6.0;
const THRESHOLD_MAX_MS: f64 = 600.0;
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
/// Overuse is declared once the trend has been over the threshold this long.
const OVERUSE_TIME_MS: f64 = 10.0;
/// No feedback for this long: start over (the old groups say nothing about the queue now).
const RESET_US: i64 = 2_000_000;

/// The state of the link's queue as the delay trend shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Usage {
    #[default]
    Normal,
    Underusing,
    Overusing,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_send_us: i64,
    last_send_us: i64,
    first_arrival_us: i64,
    last_arrival_us: i64,
}

#[derive(Debug)]
pub(super) struct DelayDetector {
    current: Option<Group>,
    previous: Option<Group>,
    /// The trendline's points: (arrival ms since the first, smoothed accumulated delay ms), a ring.
    points: [(f64, f64); WINDOW],
    count: usize,
    first_arrival_us: Option<i64>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    deltas: u32,
    threshold_ms: f64,
    last_update_us: Option<i64>,
    previous_trend: f64,
    over_ms: f64,
    over_count: u32,
    usage: Usage,
}

impl Default for DelayDetector {
    fn default() -> DelayDetector {
        DelayDetector {
            current: None,
            previous: None,
            points: [(0.0, 0.0); WINDOW],
            count: 0,
            first_arrival_us: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            deltas: 0,
            threshold_ms: THRESHOLD_START_MS,
            last_update_us: None,
            previous_trend: 0.0,
            over_ms: -1.0,
            over_count: 0,
            usage: Usage::Normal,
        }
    }
}

impl DelayDetector {
    pub(super) fn usage(&self) -> Usage {
        self.usage
    }

    /// One received packet, in sequence order: its send time (our clock) and arrival time (the receiver's).
    pub(super) fn on_packet(&mut self, send_us: i64, arrival_us: i64, _size: u32) {
        if let Some(g) = self.current {
            if arrival_us - g.last_arrival_us > RESET_US || g.first_arrival_us - arrival_us > RESET_US {
                // A long gap, or a clock that jumped back: what was measured no longer describes the link.
                *self = DelayDetector { threshold_ms: self.threshold_ms, ..DelayDetector::default() };
            } else if arrival_us < g.first_arrival_us {
                return; // reordered across a group boundary: skipped, as goog_cc does
            }
        }
        let Some(mut g) = self.current else {
            self.current = Some(Group {
                first_send_us: send_us,
                last_send_us: send_us,
                first_arrival_us: arrival_us,
                last_arrival_us: arrival_us,
            });
            return;
        };
        if send_us < g.first_send_us {
            return; // reordered from an earlier group
        }
        let same_group = send_us - g.first_send_us <= GROUP_US || {
            // A burst: it arrived right after the group and waited less than the group's last packet did.
            let arrival_delta = arrival_us - g.last_arrival_us;
            let propagation = arrival_delta - (send_us - g.last_send_us);
            arrival_delta < BURST_US && propagation < 0
        };
        if same_group {
            g.last_send_us = g.last_send_us.max(send_us);
            g.last_arrival_us = g.last_arrival_us.max(arrival_us);
            self.current = Some(g);
            return;
        }
        if let Some(p) = self.previous {
            let send_delta = g.last_send_us - p.last_send_us;
            let arrival_delta = g.last_arrival_us - p.last_arrival_us;
            self.on_group_delta(send_delta, arrival_delta, g.last_arrival_us);
        }
        self.previous = Some(g);
        self.current = Some(Group {
            first_send_us: send_us,
            last_send_us: send_us,
            first_arrival_us: arrival_us,
            last_arrival_us: arrival_us,
        });
    }

    fn on_group_delta(&mut self, send_delta_us: i64, arrival_delta_us: i64, arrival_us: i64) {
        let delay_delta_ms = (arrival_delta_us - send_delta_us) as f64 / 1000.0;
        self.deltas = (self.deltas + 1).min(1000);
        self.accumulated_ms += delay_delta_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        let first = *self.first_arrival_us.get_or_insert(arrival_us);
        let x = (arrival_us - first) as f64 / 1000.0;
        self.points[self.count % WINDOW] = (x, self.smoothed_ms);
        self.count += 1;
        if self.count < WINDOW {
            return;
        }
        let trend = slope(&self.points).unwrap_or(self.previous_trend);
        self.detect(trend, send_delta_us as f64 / 1000.0, arrival_us);
    }

    fn detect(&mut self, trend: f64, send_delta_ms: f64, now_us: i64) {
        let modified = f64::from(self.deltas.min(60)) * trend * GAIN;
        if modified > self.threshold_ms {
            self.over_ms = if self.over_ms < 0.0 { send_delta_ms / 2.0 } else { self.over_ms + send_delta_ms };
            self.over_count += 1;
            if self.over_ms > OVERUSE_TIME_MS && self.over_count > 1 && trend >= self.previous_trend {
                self.over_ms = 0.0;
                self.over_count = 0;
                self.usage = Usage::Overusing;
            }
        } else if modified < -self.threshold_ms {
            self.over_ms = -1.0;
            self.over_count = 0;
            self.usage = Usage::Underusing;
        } else {
            self.over_ms = -1.0;
            self.over_count = 0;
            self.usage = Usage::Normal;
        }
        self.previous_trend = trend;
        self.adapt_threshold(modified, now_us);
    }

    /// The threshold follows the trend slowly upward and faster downward, so a link with jittery delay does not
    /// look overused forever and a clean one becomes sensitive again.
    fn adapt_threshold(&mut self, modified: f64, now_us: i64) {
        let last = *self.last_update_us.get_or_insert(now_us);
        if modified.abs() > self.threshold_ms + 15.0 {
            self.last_update_us = Some(now_us);
            return;
        }
        let k = if modified.abs() < self.threshold_ms { K_DOWN } else { K_UP };
        let dt_ms = ((now_us - last) as f64 / 1000.0).min(100.0);
        self.threshold_ms = (self.threshold_ms + k * (modified.abs() - self.threshold_ms) * dt_ms)
            .clamp(THRESHOLD_MIN_MS, THRESHOLD_MAX_MS);
        self.last_update_us = Some(now_us);
    }
}

/// Least-squares slope of the points.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) =
        points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (y - my), b + (x - mx) * (x - mx)));
    (den != 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets every 10 ms whose one-way delay grows by `growth_us` each.
    fn run(growth_us: i64, packets: i64) -> Usage {
        let mut d = DelayDetector::default();
        let mut seen_over = false;
        for i in 0..packets {
            let send = i * 10_000;
            d.on_packet(send, send + 20_000 + i * growth_us, 1200);
            seen_over |= d.usage() == Usage::Overusing;
        }
        if seen_over { Usage::Overusing } else { d.usage() }
    }

    #[test]
    fn a_growing_queue_is_overuse_and_a_steady_one_is_not() {
        assert_eq!(run(0, 200), Usage::Normal);
        assert_eq!(run(1_000, 200), Usage::Overusing, "1 ms more delay per 10 ms");
    }

    #[test]
    fn reordered_packets_do_not_wipe_what_was_learnt() {
        let mut d = DelayDetector::default();
        let mut seen_over = false;
        for i in 0..200i64 {
            let send = i * 10_000;
            // Every tenth packet arrives 15 ms early (before its group): reordering, not a new clock.
            let early = if i % 10 == 9 { 15_000 } else { 0 };
            d.on_packet(send, send + 20_000 + i * 1_000 - early, 1200);
            seen_over |= d.usage() == Usage::Overusing;
        }
        assert!(seen_over, "the growing queue is still found");
    }

    #[test]
    fn a_draining_queue_is_underuse() {
        let mut d = DelayDetector::default();
        for i in 0..200i64 {
            let send = i * 10_000;
            d.on_packet(send, send + 500_000 - i * 2_000, 1200);
        }
        assert_eq!(d.usage(), Usage::Underusing);
    }
}
