//! Probing: for a short while, send faster than the media needs (the rest made up with padding), and measure
//! what the link delivered. The estimate climbs only 8% a second on its own, and not at all past 1.5 times what
//! is being sent, so without a probe a subscriber moved down a layer would never be moved back up (goog_cc's
//! probe controller and probe bitrate estimator, simplified: one cluster at a time).
//!
//! A cluster lasts [`DURATION_US`]; every packet sent to the transport meanwhile (media and padding) belongs to
//! it. Its result is the lower of the rate it was sent at and the rate it arrived at (first to last arrival),
//! once most of it has been reported. A result under [`SUCCESS_FRACTION`] of the target is a failure, and the
//! next probe waits twice as long as the last (2 s, doubling up to 8 s: a link that got faster is found within
//! that).

/// How long a cluster sends: long enough for a dozen packets at low rates, short enough that a probe above the
/// link's capacity queues only a few tens of milliseconds of excess.
pub const DURATION_US: i64 = 150_000;
/// Padding owed is sent at most this much of the target rate at a time (three padding ticks).
const PADDING_CATCH_UP_US: u128 = 15_000;
/// A result reaching this share of the target confirms it.
pub const SUCCESS_FRACTION: f64 = 0.9;
/// Clusters with fewer packets than this say nothing.
const PACKETS_MIN: u32 = 8;
/// A cluster is judged once this share of its packets was reported, or [`REPORT_WAIT_US`] after it ended.
const REPORTED_FRACTION: f64 = 0.8;
const REPORT_WAIT_US: i64 = 1_000_000;
const BACKOFF_START_US: i64 = 2_000_000;
const BACKOFF_MAX_US: i64 = 8_000_000;
/// A cluster with more of its packets lost than this failed, whatever the rate of the rest.
const LOSS_MAX: f64 = 0.1;

/// What a finished probe measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeResult {
    pub target_bps: u64,
    /// What the link delivered (None: too little arrived to say).
    pub delivered_bps: Option<u64>,
    pub success: bool,
}

#[derive(Debug, Clone, Copy)]
struct Cluster {
    id: u16,
    target_bps: u64,
    start_us: i64,
    sent_packets: u32,
    sent_bytes: u64,
    first_send_us: i64,
    last_send_us: i64,
    /// The last packet's size is not part of the send rate (the interval ends when it starts).
    last_sent_size: u32,
    received: u32,
    lost: u32,
    first_arrival_us: Option<i64>,
    last_arrival_us: i64,
    received_bytes: u64,
    /// The first arrival's size is not part of the receive rate (the interval starts when it ends).
    first_arrival_size: u32,
}

/// One transport's prober.
#[derive(Debug)]
pub struct Prober {
    cluster: Option<Cluster>,
    next_id: u16,
    not_before_us: i64,
    backoff_us: i64,
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
}

impl Default for Prober {
    fn default() -> Self {
        Prober {
            cluster: None,
            next_id: 1,
            not_before_us: 0,
            backoff_us: BACKOFF_START_US,
            started: 0,
            succeeded: 0,
            failed: 0,
        }
    }
}

impl Prober {
    /// Starts a cluster at `target_bps` unless one is running or being judged, or the last failure's wait has
    /// not passed. Returns whether it started.
    pub fn start(&mut self, target_bps: u64, now_us: i64) -> bool {
        if self.cluster.is_some() || now_us < self.not_before_us || target_bps == 0 {
            return false;
        }
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.cluster = Some(Cluster {
            id,
            target_bps,
            start_us: now_us,
            sent_packets: 0,
            sent_bytes: 0,
            first_send_us: now_us,
            last_send_us: now_us,
            last_sent_size: 0,
            received: 0,
            lost: 0,
            first_arrival_us: None,
            last_arrival_us: 0,
            received_bytes: 0,
            first_arrival_size: 0,
        });
        self.started += 1;
        true
    }

    /// Whether a cluster is sending at `now_us`.
    pub fn sending(&self, now_us: i64) -> bool {
        self.cluster.is_some_and(|c| now_us < c.start_us + DURATION_US)
    }

    /// The cluster a packet sent now belongs to (0: none), counting it.
    pub fn on_sent(&mut self, size: usize, now_us: i64) -> u16 {
        let Some(c) = self.cluster.as_mut().filter(|c| now_us < c.start_us + DURATION_US) else { return 0 };
        if c.sent_packets == 0 {
            c.first_send_us = now_us;
        }
        c.sent_packets += 1;
        c.sent_bytes += size as u64;
        c.last_send_us = now_us;
        c.last_sent_size = size as u32;
        c.id
    }

    /// Bytes of padding to send now so that the cluster keeps to its target rate.
    /// At most [`PADDING_CATCH_UP_US`] of the target rate at once: padding held back (media waiting in the
    /// pacer goes first) is not sent later as one burst.
    pub fn padding_due(&self, now_us: i64) -> usize {
        let Some(c) = self.cluster.filter(|c| now_us < c.start_us + DURATION_US) else { return 0 };
        let elapsed_us = (now_us - c.start_us).max(0) as u128;
        let owed = (u128::from(c.target_bps) * elapsed_us / 8_000_000) as u64;
        let at_once = (u128::from(c.target_bps) * PADDING_CATCH_UP_US / 8_000_000) as u64;
        owed.saturating_sub(c.sent_bytes).min(at_once) as usize
    }

    /// A report of packet `cluster` (sent at `sent_us`, `size` bytes): arrived at `arrival_us`, or lost.
    pub fn on_result(&mut self, cluster: u16, arrival_us: Option<i64>, size: u32) {
        let Some(c) = self.cluster.as_mut().filter(|c| c.id == cluster && cluster != 0) else { return };
        let Some(arrival_us) = arrival_us else {
            c.lost += 1;
            return;
        };
        c.received += 1;
        match c.first_arrival_us {
            None => {
                c.first_arrival_us = Some(arrival_us);
                c.first_arrival_size = size;
                c.last_arrival_us = arrival_us;
            }
            Some(first) if arrival_us < first => {
                // Reordered before the first: it becomes the first, the old first counts.
                c.received_bytes += u64::from(c.first_arrival_size);
                c.first_arrival_us = Some(arrival_us);
                c.first_arrival_size = size;
            }
            Some(_) => {
                c.received_bytes += u64::from(size);
                c.last_arrival_us = c.last_arrival_us.max(arrival_us);
            }
        }
    }

    /// The finished cluster's result, once enough of it was reported (then the prober is free again).
    pub fn poll_result(&mut self, now_us: i64) -> Option<ProbeResult> {
        let c = self.cluster?;
        let end_us = c.start_us + DURATION_US;
        if now_us < end_us {
            return None;
        }
        let reported = c.received + c.lost;
        let enough = f64::from(reported) >= REPORTED_FRACTION * f64::from(c.sent_packets);
        if !enough && now_us < end_us + REPORT_WAIT_US {
            return None;
        }
        self.cluster = None;
        let delivered_bps = measured(&c);
        let lossy = reported > 0 && f64::from(c.lost) > LOSS_MAX * f64::from(reported);
        let success = !lossy && delivered_bps.is_some_and(|d| d as f64 >= SUCCESS_FRACTION * c.target_bps as f64);
        if success {
            self.succeeded += 1;
            self.backoff_us = BACKOFF_START_US;
            self.not_before_us = now_us;
        } else {
            self.failed += 1;
            self.not_before_us = now_us + self.backoff_us;
            self.backoff_us = (self.backoff_us * 2).min(BACKOFF_MAX_US);
        }
        Some(ProbeResult { target_bps: c.target_bps, delivered_bps, success })
    }
}

/// min(send rate, receive rate) of a cluster, if enough of it arrived to say.
fn measured(c: &Cluster) -> Option<u64> {
    if c.sent_packets < PACKETS_MIN || c.received < PACKETS_MIN / 2 {
        return None;
    }
    let first_arrival = c.first_arrival_us?;
    let send_us = (c.last_send_us - c.first_send_us).max(1) as f64;
    let receive_us = (c.last_arrival_us - first_arrival).max(1) as f64;
    let send_bps = (c.sent_bytes - u64::from(c.last_sent_size)) as f64 * 8e6 / send_us;
    let receive_bps = c.received_bytes as f64 * 8e6 / receive_us;
    Some(send_bps.min(receive_bps) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends a cluster of 1000-byte packets at `target` through a link of `capacity` (bit/s), reporting each.
    fn run(p: &mut Prober, target: u64, capacity: u64, now: i64) -> ProbeResult {
        assert!(p.start(target, now));
        let mut t = now;
        let mut link_free = now;
        let mut sent = Vec::new();
        while p.sending(t) {
            while p.padding_due(t) > 0 {
                let cluster = p.on_sent(1000, t);
                let arrival = link_free.max(t) + (1000 * 8 * 1_000_000 / capacity) as i64;
                link_free = arrival;
                sent.push((cluster, arrival));
            }
            t += 1_000;
        }
        for (cluster, arrival) in sent {
            p.on_result(cluster, Some(arrival + 20_000), 1000);
        }
        p.poll_result(t).expect("every packet was reported")
    }

    #[test]
    fn a_probe_measures_the_lower_of_what_was_sent_and_what_arrived() {
        let mut p = Prober::default();
        let ok = run(&mut p, 1_000_000, 10_000_000, 0);
        assert!(ok.success, "{ok:?}");
        let d = ok.delivered_bps.unwrap();
        assert!((900_000..=1_100_000).contains(&d), "sent at 1 Mbit/s: {d}");
        let capped = run(&mut p, 3_000_000, 1_000_000, 1_000_000);
        assert!(!capped.success, "{capped:?}");
        let d = capped.delivered_bps.unwrap();
        assert!((900_000..=1_100_000).contains(&d), "the link carried 1 Mbit/s: {d}");
    }

    #[test]
    fn failures_back_off_doubling_and_a_success_resets() {
        let mut p = Prober::default();
        run(&mut p, 3_000_000, 1_000_000, 0); // judged at 150 ms
        assert!(!p.start(1_000_000, 2_000_000), "two seconds after a failure");
        run(&mut p, 3_000_000, 1_000_000, 2_200_000); // judged at 2.35 s
        assert!(!p.start(1_000_000, 6_000_000), "four seconds after the second");
        let ok = run(&mut p, 1_000_000, 10_000_000, 6_400_000);
        assert!(ok.success);
        assert!(p.start(1_000_000, 6_600_000), "no wait after a success");
        assert_eq!((p.started, p.succeeded, p.failed), (4, 1, 2));
    }

    #[test]
    fn a_cluster_nobody_reports_is_judged_a_failure_after_a_second() {
        let mut p = Prober::default();
        assert!(p.start(1_000_000, 0));
        for t in 0..100 {
            p.on_sent(1000, t * 1000);
        }
        assert_eq!(p.poll_result(DURATION_US + 10_000), None, "still waiting for reports");
        let r = p.poll_result(DURATION_US + REPORT_WAIT_US).unwrap();
        assert_eq!((r.success, r.delivered_bps), (false, None));
    }
}
