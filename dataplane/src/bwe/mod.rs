//! Send-side bandwidth estimation for one subscriber's transport (issue 24's first part): how fast Sluice may
//! send to it, from its transport-wide congestion control feedback. Sans-IO and allocation-free per packet: the
//! core tells it what left (`on_send`) and what the subscriber's feedback says arrived (`on_feedback`), with
//! times in microseconds on the core's clock; `estimate_bps` is the result. After goog_cc (see
//! `docs/congestion.md`): a delay-based estimate (arrival groups, trendline, overuse detector, AIMD) bounded by a
//! loss-based one, both anchored on the acknowledged rate.

mod acked;
mod aimd;
pub mod allocate;
mod delay;
mod history;
mod loss;
pub mod pacer;
pub mod probe;

use crate::packet::twcc::PacketResult;

use delay::Usage;

use acked::AckedRate;
use aimd::Aimd;
use delay::DelayDetector;
use history::SendHistory;
use loss::LossBased;
use probe::{ProbeResult, Prober};

/// Where an estimate starts before any feedback (goog_cc starts at 300 kbit/s).
pub const START_BPS: u64 = 300_000;
pub const MIN_BPS: u64 = 30_000;
pub const MAX_BPS: u64 = 50_000_000;
/// How long after a probe's result its floor holds (the queue it built drains).
const PROBE_QUEUE_DRAIN_US: i64 = 1_000_000;
/// A subscriber's REMB is its estimate only if it has had media this long without sending transport-wide
/// feedback (browsers send that every 50 to 100 ms).
pub const REMB_AFTER_US: i64 = 1_000_000;
/// A successful probe's rate stands as room for upgrades this long.
pub const CONFIRMED_FOR_US: i64 = 5_000_000;

/// One transport's estimator.
#[derive(Debug)]
pub struct SendSideEstimator {
    history: SendHistory,
    delay: DelayDetector,
    aimd: Aimd,
    loss: LossBased,
    acked: AckedRate,
    prober: Prober,
    /// The link showed its limit (a queue grew or packets were lost): from then on the estimate, not what the
    /// subscriber asked for, decides what it gets.
    congested: bool,
    /// The last probe's result, until the core takes it.
    probe_result: Option<ProbeResult>,
    /// The subscriber's own estimate (REMB), used only while it sends no transport-wide feedback.
    remb_bps: Option<u64>,
    /// When the first packet was sent.
    first_send_us: Option<i64>,
    /// The estimate when the running probe started.
    before_probe_bps: Option<u64>,
    /// After a probe: the estimate is at least this until the time given (see `on_feedback`).
    probe_floor: Option<(u64, i64)>,
    /// The rate the last successful probe aimed at (the link carried it without loss), and when: the room an
    /// upgrade may count on.
    confirmed: Option<(u64, i64)>,
    /// Feedback messages read.
    pub feedbacks: u64,
}

impl SendSideEstimator {
    pub fn new(start_bps: u64) -> SendSideEstimator {
        SendSideEstimator {
            history: SendHistory::new(),
            delay: DelayDetector::default(),
            aimd: Aimd::new(start_bps),
            loss: LossBased::new(start_bps),
            acked: AckedRate::default(),
            prober: Prober::default(),
            congested: false,
            probe_result: None,
            remb_bps: None,
            first_send_us: None,
            before_probe_bps: None,
            probe_floor: None,
            confirmed: None,
            feedbacks: 0,
        }
    }

    /// A packet left with transport-wide sequence number `seq`, `size` bytes on the wire, at `now_us`.
    pub fn on_send(&mut self, seq: u16, size: usize, now_us: i64) {
        self.first_send_us.get_or_insert(now_us);
        let cluster = self.prober.on_sent(size, now_us);
        self.history.record(seq, size, now_us, cluster);
    }

    /// A feedback message arrived at `now_us`: each reported packet, in sequence order, with its arrival time on
    /// the subscriber's clock (or none: lost).
    pub fn on_feedback(&mut self, results: &[PacketResult], now_us: i64) {
        self.feedbacks += 1;
        let (mut lost, mut received) = (0u32, 0u32);
        for r in results {
            let Some(sent) = self.history.take(r.seq, r.arrival_us.is_some()) else { continue };
            self.prober.on_result(sent.cluster, r.arrival_us, sent.size);
            match r.arrival_us {
                Some(arrival_us) => {
                    received += 1;
                    self.acked.on_acked(arrival_us, sent.size);
                    self.delay.on_packet(sent.sent_us, arrival_us, sent.size);
                }
                None => lost += 1,
            }
        }
        let acked = self.acked.rate_bps();
        let usage = self.delay.usage();
        self.aimd.update(usage, acked, now_us);
        // What arrived without a queue growing, the link carries: until it shows a limit, the estimate keeps up
        // with the media itself (which is sent at the layers asked for), so a fresh transport is not held at the
        // start rate while the estimate climbs.
        if let (Usage::Normal, Some(acked)) = (usage, acked) {
            self.aimd.raise_to(acked);
        }
        let cuts = self.loss.cuts;
        self.loss.update(lost, received, self.aimd.estimate_bps(), acked, now_us);
        self.congested |= usage == Usage::Overusing || self.loss.cuts > cuts;
        if let Some(result) = self.prober.poll_result(now_us) {
            // A probe's delivered rate is capacity seen: the estimate may go there at once (never down: a
            // failed probe's rate may be under what the media alone gets through).
            if let Some(delivered) = result.delivered_bps.filter(|_| usage != Usage::Overusing) {
                self.aimd.raise_to(delivered);
                self.loss.raise_to(delivered);
            }
            // A probe over the link's capacity fills its queue: the overuse and loss that follow are the probe's
            // own, not news that the estimate was too high. The estimate from before the probe (or what the link
            // delivered, if less) is the floor until that queue has drained. Without this, every failed probe
            // under a cap halved a subscriber's estimate. (Flooring at what a failed probe delivered, the link's
            // capacity as measured over 150 ms, read over a Chromium subscriber's htb cap and let the allocator
            // upgrade into it, then pause a video when the link pushed back.)
            if let (Some(delivered), Some(before)) = (result.delivered_bps, self.before_probe_bps.take()) {
                self.probe_floor = Some((delivered.min(before), now_us + PROBE_QUEUE_DRAIN_US));
            }
            if result.success {
                self.confirmed = Some((result.target_bps, now_us));
            }
            self.probe_result = Some(result);
        }
        match self.probe_floor {
            Some((floor, until)) if now_us < until => {
                self.aimd.raise_to(floor);
                self.loss.raise_to(floor);
            }
            Some(_) => self.probe_floor = None,
            None => {}
        }
    }

    /// A REMB from a subscriber arrived at `now_us`, while `forwarded_bps` is what we forward to it. Counts only
    /// from a subscriber that has had media for [`REMB_AFTER_US`] and sent no transport-wide feedback (measured
    /// here, better than a receiver's estimate; browsers that do both send REMB too): then the subscriber's own
    /// estimate is ours, and once it is below what we forward the link has shown its limit. Returns whether it
    /// is used.
    pub fn on_remb(&mut self, bitrate_bps: u64, forwarded_bps: u64, now_us: i64) -> bool {
        let fed_long_enough = self.first_send_us.is_some_and(|t| now_us - t >= REMB_AFTER_US);
        if self.feedbacks > 0 || !fed_long_enough {
            return false;
        }
        self.remb_bps = Some(bitrate_bps);
        self.congested |= bitrate_bps < forwarded_bps;
        true
    }

    /// Whether the estimate is the subscriber's REMB (it sends no transport-wide feedback).
    pub fn uses_remb(&self) -> bool {
        self.feedbacks == 0 && self.remb_bps.is_some()
    }

    /// Whether the link has shown its limit since the transport started.
    pub fn congested(&self) -> bool {
        self.congested
    }

    /// Starts a probe at `target_bps` if none is running and no failure's wait is pending.
    pub fn start_probe(&mut self, target_bps: u64, now_us: i64) -> bool {
        let before = self.estimate_bps();
        let started = self.prober.start(target_bps, now_us);
        if started {
            self.before_probe_bps = Some(before);
        }
        started
    }

    /// Whether a probe is sending now.
    pub fn probing(&self, now_us: i64) -> bool {
        self.prober.sending(now_us)
    }

    /// Bytes of padding to send now to keep a running probe at its rate.
    pub fn padding_due(&self, now_us: i64) -> usize {
        self.prober.padding_due(now_us)
    }

    /// The rate a successful probe showed the link carries, if one did within [`CONFIRMED_FOR_US`] and no
    /// downgrade has forgotten it since.
    pub fn confirmed_bps(&self, now_us: i64) -> Option<u64> {
        self.confirmed.filter(|(_, at)| now_us - at < CONFIRMED_FOR_US).map(|(bps, _)| bps)
    }

    /// The link pushed back (an allocation went down): what a probe showed before counts no more.
    pub fn forget_confirmed(&mut self) {
        self.confirmed = None;
    }

    /// The last probe's result, once.
    pub fn take_probe_result(&mut self) -> Option<ProbeResult> {
        self.probe_result.take()
    }

    /// What may be sent to this transport now, in bit/s.
    pub fn estimate_bps(&self) -> u64 {
        if let (0, Some(remb)) = (self.feedbacks, self.remb_bps) {
            return remb.clamp(MIN_BPS, MAX_BPS);
        }
        self.aimd.estimate_bps().min(self.loss.estimate_bps()).clamp(MIN_BPS, MAX_BPS)
    }

    /// The rate the subscriber acknowledged over the last half second, in bit/s.
    pub fn acked_bps(&self) -> Option<u64> {
        self.acked.rate_bps()
    }
}
