//! Per-participant figures for analytics (`docs/analytics.md`): read on request from state the packet path keeps
//! anyway (its inbound streams' reception statistics, its subscriptions' counters) plus a few counters bumped
//! where a packet is already being handled. Nothing here allocates on the packet path.

use super::*;

/// Counters of one participant, bumped on the packet path.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MediaCounters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub nacks_in: u64,
    pub plis_in: u64,
    pub retransmissions_out: u64,
}

/// What the dataplane knows of one participant's media, cumulative since it joined.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParticipantStats {
    /// RTP packets and bytes received from it (authenticated or not).
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Packets it did not deliver on its inbound streams (RFC 3550: expected minus received).
    pub packets_lost_in: i64,
    /// The highest interarrival jitter of its inbound streams, in milliseconds.
    pub jitter_in_ms: f64,
    /// RTP packets and payload bytes forwarded to it.
    pub packets_out: u64,
    pub bytes_out: u64,
    /// NACKs and PLIs it sent (as a subscriber), retransmissions sent to it.
    pub nacks_in: u64,
    pub plis_in: u64,
    pub retransmissions_out: u64,
    /// The simulcast layer forwarded on each of its subscriptions (`None`: waiting for a keyframe).
    pub layers: Vec<Option<u8>>,
    /// How fast we may send to it, from its transport-wide feedback (`bwe`), in bit/s, once it has sent any;
    /// and the rate it acknowledged over the last half second.
    pub estimate_bps: Option<u64>,
    pub acked_bps: Option<u64>,
    /// Its link has shown a limit: the estimate, not what it asks for, decides its layers (and paces them).
    pub bandwidth_limited: bool,
}

impl Core {
    pub fn participant_stats(&self, id: ParticipantId) -> Result<ParticipantStats, CoreError> {
        let p = self.participants.get(id).ok_or(CoreError::UnknownParticipant)?;
        let mut stats = ParticipantStats {
            packets_in: p.media.packets_in,
            bytes_in: p.media.bytes_in,
            nacks_in: p.media.nacks_in,
            plis_in: p.media.plis_in,
            retransmissions_out: p.media.retransmissions_out,
            estimate_bps: (p.bwe.feedbacks > 0 || p.bwe.uses_remb()).then(|| p.bwe.estimate_bps()),
            bandwidth_limited: p.bwe.congested(),
            acked_bps: p.bwe.acked_bps(),
            ..ParticipantStats::default()
        };
        for s in &p.inbound {
            if s.window.started() {
                stats.packets_lost_in += s.stats.lost(s.window.highest());
            }
            let jitter_ms = s.stats.jitter_units() as f64 * 1000.0 / f64::from(s.clock_rate.max(1));
            stats.jitter_in_ms = stats.jitter_in_ms.max(jitter_ms);
        }
        for sub in p.subscriptions.iter().filter_map(|s| self.subscriptions.get(*s)) {
            stats.packets_out += sub.packets_sent;
            stats.bytes_out += sub.octets_sent;
            stats.layers.push(sub.layer);
        }
        Ok(stats)
    }
}
