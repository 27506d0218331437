//! The loss-based bound (goog_cc's send-side estimation): over each 20 reported packets, under 2% lost lets it
//! follow the delay-based estimate up, more holds it; over 10% lost across at least 100 packets cuts it by half
//! the loss fraction, at most once per 300 ms. goog_cc cuts on 20 packets too; with so few, 5% random loss reads
//! as over 10% about one time in ten, and each cut can cost a subscriber its top layer. Over 100 packets that
//! happens about one time in seventy. A cut never goes under 85% of the rate the subscriber acknowledges: under a
//! rate cap the arrivals are the cap, and while a lower layer waits for its keyframe the loss goes on; cutting
//! again and again for it would count one overshoot several times (it took a test subscriber under a 350 kbit/s
//! cap down to a pause). With random loss the acknowledged rate falls with what is sent, so the floor follows.

/// Packets per judgement of whether to follow the delay-based estimate.
const FOLLOW_PACKETS: u32 = 20;
/// Packets per judgement of whether to cut.
const CUT_PACKETS: u32 = 100;
const LOW: f64 = 0.02;
const HIGH: f64 = 0.10;
const CUT_INTERVAL_US: i64 = 300_000;

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    lost: u32,
    received: u32,
}

impl Window {
    /// Adds a report; once the window holds `packets`, its loss fraction (and it starts over).
    fn add(&mut self, lost: u32, received: u32, packets: u32) -> Option<f64> {
        self.lost += lost;
        self.received += received;
        let total = self.lost + self.received;
        if total < packets {
            return None; // not enough to judge yet: the counts carry over to the next feedback
        }
        let fraction = f64::from(self.lost) / f64::from(total);
        *self = Window::default();
        Some(fraction)
    }
}

#[derive(Debug)]
pub(super) struct LossBased {
    estimate: f64,
    follow: Window,
    cut: Window,
    last_cut_us: Option<i64>,
    /// Times it cut.
    pub(super) cuts: u64,
}

impl LossBased {
    pub(super) fn new(start_bps: u64) -> LossBased {
        LossBased {
            estimate: start_bps as f64,
            follow: Window::default(),
            cut: Window::default(),
            last_cut_us: None,
            cuts: 0,
        }
    }

    pub(super) fn estimate_bps(&self) -> u64 {
        self.estimate as u64
    }

    /// A probe delivered `bps`: the bound need not wait for the next report to let it through.
    pub(super) fn raise_to(&mut self, bps: u64) {
        self.estimate = self.estimate.max(bps as f64);
    }

    pub(super) fn update(
        &mut self,
        lost: u32,
        received: u32,
        delay_based_bps: u64,
        acked_bps: Option<u64>,
        now_us: i64,
    ) {
        if self.follow.add(lost, received, FOLLOW_PACKETS).is_some_and(|f| f < LOW) {
            self.estimate = delay_based_bps as f64;
        }
        if let Some(fraction) = self.cut.add(lost, received, CUT_PACKETS)
            && fraction > HIGH
            && self.last_cut_us.is_none_or(|t| now_us - t >= CUT_INTERVAL_US)
        {
            let cut = self.estimate.min(delay_based_bps as f64) * (1.0 - 0.5 * fraction);
            let floor = acked_bps.map_or(0.0, |a| 0.85 * a as f64);
            self.estimate = cut.max(floor.min(self.estimate));
            self.last_cut_us = Some(now_us);
            self.cuts += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_loss_cuts_and_light_loss_follows_the_delay_estimate() {
        let mut l = LossBased::new(1_000_000);
        l.update(10, 40, 1_000_000, None, 0);
        assert_eq!(l.estimate_bps(), 1_000_000, "too few packets to cut yet");
        l.update(10, 40, 1_000_000, None, 0); // 20% lost over 100
        assert_eq!(l.estimate_bps(), 900_000);
        l.update(20, 80, 1_000_000, None, 100_000);
        assert_eq!(l.estimate_bps(), 900_000, "at most one cut per 300 ms");
        l.update(5, 95, 1_000_000, None, 400_000); // 5%: hold
        assert_eq!(l.estimate_bps(), 900_000);
        l.update(0, 20, 1_200_000, None, 500_000);
        assert_eq!(l.estimate_bps(), 1_200_000);
    }

    #[test]
    fn a_cut_stops_at_what_the_link_delivers() {
        let mut l = LossBased::new(1_000_000);
        l.update(40, 60, 1_000_000, Some(900_000), 0); // 40% lost: 0.8 x 1 Mbit/s, but 0.85 x 0.9 is more
        assert_eq!(l.estimate_bps(), 800_000);
        l.update(40, 60, 1_000_000, Some(900_000), 300_000);
        assert_eq!(l.estimate_bps(), 765_000, "not under 85% of the 900 kbit/s acknowledged");
        l.update(40, 60, 1_000_000, Some(300_000), 600_000);
        assert_eq!(l.estimate_bps(), 612_000, "with less acknowledged, the floor follows");
    }
}
