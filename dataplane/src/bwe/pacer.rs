//! The pacer of one subscriber's transport: what we send it leaves at most at a multiple of its estimate, so a
//! publisher's keyframe (tens of packets in a millisecond) does not arrive as one burst that overflows a slow
//! link's queue. A leaky bucket with a small burst allowance; sans-IO and allocation-free per packet.
//!
//! The caller sends audio and retransmissions at once and [`Pacer::charge`]s them (they go first); video asks
//! [`Pacer::admit`] and, if refused, is queued as an entry of the caller's choosing (the core queues where the
//! packet sits in its track's retransmission buffer, so a paced packet is never copied); [`Pacer::pop`] releases
//! entries as the budget refills. Padding is sent only while the queue is empty and is not charged: probes are
//! meant to go faster than the estimate.
//!
//! A queue drains at least fast enough to empty within [`QUEUE_TIME_MAX`] (as goog_cc's "max expected queue
//! length"), and a packet that has waited that long goes whatever the budget: a queue that only grows is delay
//! the subscriber sees and gains nothing; the allocator's lower layers are the cure.

use std::collections::VecDeque;

/// Pacing rate as a multiple of the estimate (goog_cc's pacing factor).
pub const PACING_FACTOR: f64 = 2.5;
/// The budget saved up while idle is capped at this much sending time: a short burst passes without queueing.
pub const BURST_US: i64 = 20_000;
/// The longest the queue may take to drain at the pacing rate before it drains faster.
pub const QUEUE_TIME_MAX_US: i64 = 250_000;
/// Keep in step with [`QUEUE_TIME_MAX_US`] (docs).
pub const QUEUE_TIME_MAX: std::time::Duration = std::time::Duration::from_micros(QUEUE_TIME_MAX_US as u64);

/// One transport's pacer over entries of type `T`.
#[derive(Debug)]
pub struct Pacer<T> {
    /// Bits per second, or `None`: not paced (the link has shown no limit yet).
    rate_bps: Option<u64>,
    /// Bytes that may be sent now; negative is debt (one packet may overdraw).
    budget: i64,
    refilled_us: i64,
    queue: VecDeque<Queued<T>>,
    capacity: usize,
    queued_bytes: usize,
}

#[derive(Debug, Clone, Copy)]
struct Queued<T> {
    entry: T,
    size: usize,
    at_us: i64,
}

/// An entry released from the queue, with how long it waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released<T> {
    pub entry: T,
    pub waited_us: i64,
}

impl<T: Copy> Pacer<T> {
    /// A pacer whose queue holds at most `capacity` entries (allocated now, never grown).
    pub fn new(capacity: usize) -> Pacer<T> {
        Pacer {
            rate_bps: None,
            budget: 0,
            refilled_us: 0,
            queue: VecDeque::with_capacity(capacity),
            capacity,
            queued_bytes: 0,
        }
    }

    /// Paces at `rate_bps`, or (with `None`) not at all: then everything is admitted and the queue drains at once.
    pub fn set_rate(&mut self, rate_bps: Option<u64>) {
        self.rate_bps = rate_bps.map(|r| r.max(1));
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The rate the queue drains at now: the pacing rate, or faster when the queue holds more than
    /// [`QUEUE_TIME_MAX_US`] of it.
    fn drain_bps(&self) -> Option<u64> {
        let rate = self.rate_bps?;
        let to_drain = (self.queued_bytes as u64 * 8).saturating_mul(1_000_000) / QUEUE_TIME_MAX_US as u64;
        Some(rate.max(to_drain))
    }

    fn refill(&mut self, now_us: i64) {
        let elapsed = (now_us - self.refilled_us).max(0);
        self.refilled_us = self.refilled_us.max(now_us);
        let Some(rate) = self.drain_bps() else { return };
        let cap = (rate as i64).saturating_mul(BURST_US) / 8_000_000;
        let earned = (rate as i64).saturating_mul(elapsed) / 8_000_000;
        self.budget = self.budget.saturating_add(earned).min(cap.max(0));
    }

    /// Whether a packet of `size` bytes may leave now (then it is charged). Refused while others wait, so the
    /// order of video is kept.
    pub fn admit(&mut self, size: usize, now_us: i64) -> bool {
        if self.rate_bps.is_none() {
            return true;
        }
        if !self.queue.is_empty() {
            return false;
        }
        self.refill(now_us);
        if self.budget < 0 {
            return false;
        }
        self.budget -= size as i64;
        true
    }

    /// A packet that does not wait (audio, a retransmission) left: it uses the budget the queue would have.
    pub fn charge(&mut self, size: usize, now_us: i64) {
        if self.rate_bps.is_some() {
            self.refill(now_us);
            self.budget -= size as i64;
        }
    }

    /// Queues an entry refused by `admit`; gives it back when the queue is full.
    pub fn push(&mut self, entry: T, size: usize, now_us: i64) -> Result<(), T> {
        if self.queue.len() == self.capacity {
            return Err(entry);
        }
        self.queue.push_back(Queued { entry, size, at_us: now_us });
        self.queued_bytes += size;
        Ok(())
    }

    /// The next entry whose turn has come, charged; `None` when the queue is empty or the budget spent. An
    /// entry that has waited [`QUEUE_TIME_MAX_US`] goes whatever the budget.
    pub fn pop(&mut self, now_us: i64) -> Option<Released<T>> {
        let front = *self.queue.front()?;
        if self.rate_bps.is_some() {
            self.refill(now_us);
            if self.budget < 0 && now_us - front.at_us < QUEUE_TIME_MAX_US {
                return None;
            }
            self.budget -= front.size as i64;
        }
        self.queue.pop_front();
        self.queued_bytes -= front.size;
        Some(Released { entry: front.entry, waited_us: (now_us - front.at_us).max(0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `packets` of `size` bytes at `at_us`, then drains in 1 ms steps; returns when each left.
    fn run(p: &mut Pacer<u32>, packets: u32, size: usize, at_us: i64) -> Vec<i64> {
        let mut left = vec![0; packets as usize];
        for i in 0..packets {
            if p.admit(size, at_us) {
                left[i as usize] = at_us;
            } else {
                p.push(i, size, at_us).unwrap();
            }
        }
        let mut now = at_us;
        while !p.is_empty() {
            now += 1_000;
            while let Some(r) = p.pop(now) {
                left[r.entry as usize] = now;
                assert_eq!(r.waited_us, now - at_us);
            }
            assert!(now < at_us + 10_000_000, "the queue drains");
        }
        left
    }

    #[test]
    fn unpaced_admits_everything() {
        let mut p: Pacer<u32> = Pacer::new(4);
        for i in 0..100 {
            assert!(p.admit(1200, i));
        }
        assert!(p.is_empty());
    }

    #[test]
    fn a_burst_is_spread_at_the_pacing_rate() {
        let mut p = Pacer::new(256);
        p.set_rate(Some(1_000_000));
        // Idle for a while: the saved budget is capped at 20 ms (2500 bytes at 1 Mbit/s).
        assert!(p.admit(100, 0));
        let left = run(&mut p, 50, 1000, 1_000_000);
        let passed = left.iter().filter(|t| **t == 1_000_000).count();
        assert!((2..=4).contains(&passed), "a short burst passes: {passed}");
        // 50 kB at 1 Mbit/s takes 400 ms, less the burst; faster only because the queue time limit lets it.
        let last = *left.last().unwrap() - 1_000_000;
        assert!((200_000..=420_000).contains(&last), "spread over {last} us");
        // Order kept.
        assert!(left.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn the_queue_never_holds_more_than_its_time_limit() {
        let mut p = Pacer::new(4096);
        p.set_rate(Some(100_000));
        // 1 MB at 100 kbit/s would take 80 s; the queue drains within about its limit instead.
        let left = run(&mut p, 1000, 1000, 0);
        let last = *left.last().unwrap();
        assert!(last <= 2 * QUEUE_TIME_MAX_US, "drained in {last} us");
    }

    #[test]
    fn charged_packets_use_the_budget() {
        let mut p = Pacer::new(16);
        p.set_rate(Some(800_000)); // 100 bytes per ms
        p.admit(0, 0);
        p.charge(5_000, 0);
        assert!(!p.admit(100, 0), "audio and retransmissions go first");
        p.push(7, 100, 0).unwrap();
        assert_eq!(p.pop(10_000), None, "still in debt after 10 ms");
        assert_eq!(p.pop(52_000).map(|r| r.entry), Some(7));
    }

    #[test]
    fn a_full_queue_gives_the_entry_back() {
        let mut p = Pacer::new(2);
        p.set_rate(Some(8_000));
        p.charge(10_000, 0);
        assert!(p.push(1, 100, 0).is_ok());
        assert!(p.push(2, 100, 0).is_ok());
        assert_eq!(p.push(3, 100, 0), Err(3));
    }

    #[test]
    fn lifting_the_rate_releases_the_queue() {
        let mut p = Pacer::new(8);
        p.set_rate(Some(8_000));
        p.charge(10_000, 0);
        p.push(1, 1000, 0).unwrap();
        p.push(2, 1000, 0).unwrap();
        p.set_rate(None);
        assert_eq!(p.pop(1).map(|r| r.entry), Some(1));
        assert_eq!(p.pop(1).map(|r| r.entry), Some(2));
    }
}
