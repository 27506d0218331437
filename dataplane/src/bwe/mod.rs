//! Send-side bandwidth estimation for one subscriber's transport (issue 24's first part): how fast Sluice may
//! send to it, from its transport-wide congestion control feedback. Sans-IO and allocation-free per packet: the
//! core tells it what left (`on_send`) and what the subscriber's feedback says arrived (`on_feedback`), with
//! times in microseconds on the core's clock; `estimate_bps` is the result. After goog_cc (see
//! `docs/congestion.md`): a delay-based estimate (arrival groups, trendline, overuse detector, AIMD) bounded by a
//! loss-based one, both anchored on the acknowledged rate.

mod acked;
mod aimd;
mod delay;
mod history;
mod loss;

use crate::packet::twcc::PacketResult;

use delay::Usage;

use acked::AckedRate;
use aimd::Aimd;
use delay::DelayDetector;
use history::SendHistory;
use loss::LossBased;

/// Where an estimate starts before any feedback (goog_cc starts at 300 kbit/s).
pub const START_BPS: u64 = 300_000;
pub const MIN_BPS: u64 = 30_000;
pub const MAX_BPS: u64 = 50_000_000;

/// One transport's estimator.
#[derive(Debug)]
pub struct SendSideEstimator {
    history: SendHistory,
    delay: DelayDetector,
    aimd: Aimd,
    loss: LossBased,
    acked: AckedRate,
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
            feedbacks: 0,
        }
    }

    /// A packet left with transport-wide sequence number `seq`, `size` bytes on the wire, at `now_us`.
    pub fn on_send(&mut self, seq: u16, size: usize, now_us: i64) {
        self.history.record(seq, size, now_us);
    }

    /// A feedback message arrived at `now_us`: each reported packet, in sequence order, with its arrival time on
    /// the subscriber's clock (or none: lost).
    pub fn on_feedback(&mut self, results: &[PacketResult], now_us: i64) {
        self.feedbacks += 1;
        let (mut lost, mut received) = (0u32, 0u32);
        for r in results {
            let Some(sent) = self.history.take(r.seq, r.arrival_us.is_some()) else { continue };
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
        self.aimd.update(self.delay.usage(), acked, now_us);
        self.loss.update(lost, received, self.aimd.estimate_bps(), now_us);
    }

    /// What may be sent to this transport now, in bit/s.
    pub fn estimate_bps(&self) -> u64 {
        self.aimd.estimate_bps().min(self.loss.estimate_bps()).clamp(MIN_BPS, MAX_BPS)
    }

    /// The rate the subscriber acknowledged over the last half second, in bit/s.
    pub fn acked_bps(&self) -> Option<u64> {
        self.acked.rate_bps()
    }
}
