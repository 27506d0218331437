//! Pacing in the core: each subscriber's video leaves at most at [`pacer::PACING_FACTOR`] times its estimate
//! once its link has shown a limit (before that, as the allocator, nothing is held back: the media is the probe).
//! A video packet the pacer does not admit is queued as a [`Paced`] entry naming where its plaintext sits in the
//! track's retransmission buffer, with the sequence number, SRTP index and picture IDs the subscription gave it;
//! the 5 ms pacing tick encrypts it into the batch from there, so nothing is copied twice and the transport-wide
//! send time is the real one. Audio and retransmissions are sent at once and charged; padding waits for an empty
//! queue.

use super::media::{Outgoing, OwnedExtensions, write_forwarded};
use super::*;
use crate::bwe::pacer::{self, Pacer};

/// The pacing tick (goog_cc's pacer processes every 5 ms).
pub(super) const PACE_TICK: Duration = Duration::from_millis(5);
/// Entries a subscriber's queue holds (about 0.6 MB of video): more is dropped (`DropReason::PacerFull`).
pub(super) const PACER_QUEUE_MAX: usize = 512;

/// A video packet waiting in a subscriber's pacer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Paced {
    pub(super) sub: SubscriptionId,
    /// The track it came from: a subscription moved to another track (a speaker-following player) since is
    /// not sent the old track's packet.
    pub(super) track: TrackId,
    pub(super) layer: u8,
    /// The packet's extended index at the publisher: its place in the track's retransmission buffer.
    pub(super) index: u64,
    pub(super) seq: u16,
    pub(super) out_index: u64,
    /// The output timestamp, fixed when the copy was made.
    pub(super) timestamp: u32,
    pub(super) picture: PicturePatch,
    pub(super) marker: Option<bool>,
}

pub(super) type SubscriberPacer = Pacer<Paced>;

pub(super) fn new_pacer() -> Box<SubscriberPacer> {
    Box::new(Pacer::new(PACER_QUEUE_MAX))
}

/// The pacing rate for a link that has shown its limit (until then a pacer has none: it admits everything).
pub(super) fn pacing_rate(estimate_bps: u64) -> u64 {
    (estimate_bps as f64 * pacer::PACING_FACTOR) as u64
}

/// Where the header extensions we rewrite sit in `plain`, with `abs_send_time` the value for now.
pub(super) fn owned_extensions(ids: ExtensionIds, header: &RtpHeader, plain: &[u8], abs: u32) -> OwnedExtensions {
    let transport_seq = header.extension(plain, ids.transport_cc).filter(|(_, len)| *len == 2).map(|(at, _)| at);
    let abs_send_time =
        header.extension(plain, ids.abs_send_time).filter(|(_, len)| *len == 3).map(|(at, _)| (at, abs));
    OwnedExtensions { transport_seq, abs_send_time }
}

impl Participant {
    /// Queues a video packet its pacer did not admit: `Err` when the queue is full, else whether the participant
    /// must be added to the core's list of queues to drain.
    pub(super) fn queue_paced(&mut self, entry: Paced, size: usize, now_us: i64) -> Result<bool, ()> {
        self.pacer.push(entry, size, now_us).map_err(|_| ())?;
        Ok(!std::mem::replace(&mut self.pace_listed, true))
    }
}

impl Core {
    /// abs-send-time for `now`: 6.18 fixed-point seconds, the middle 24 bits of the NTP time.
    pub(super) fn abs_send_time(&self, now: Instant) -> u32 {
        let ntp = self.wallclock.map_or_else(
            || reports::to_ntp(now.saturating_duration_since(self.origin.unwrap_or(now))),
            |clock| clock.ntp(now),
        );
        ((ntp >> 14) & 0x00ff_ffff) as u32
    }

    /// The pacing tick: every subscriber with a queue sends what its budget allows.
    pub(super) fn pace(&mut self, now: Instant, out: &mut Transmits) {
        let now_us = micros_since(self.origin, now);
        let (ids, abs) = (self.config.extension_ids, self.abs_send_time(now));
        let Core { participants, subscriptions, tracks, pacing, counters, next_pace, .. } = self;
        let mut i = 0;
        while i < pacing.len() && !out.is_full() {
            let Some(p) = participants.get_mut(pacing[i]) else {
                pacing.swap_remove(i);
                continue;
            };
            while !out.is_full() {
                let Some(released) = p.pacer.pop(now_us) else { break };
                let e = released.entry;
                let (Some(destination), Some(tx), false) = (p.address, p.tx.as_ref(), p.gone) else {
                    counters.fanout_not_ready += 1;
                    continue;
                };
                let Some(sub) = subscriptions.get_mut(e.sub).filter(|s| s.track == e.track) else {
                    counters.drops[DropReason::PacerExpired as usize] += 1;
                    continue;
                };
                let plain = tracks
                    .get(sub.track)
                    .and_then(|t| t.retransmission.get(usize::from(e.layer))?.as_ref()?.get(e.index));
                let Some((plain, Ok(header))) = plain.map(|plain| (plain, RtpHeader::parse(plain))) else {
                    counters.drops[DropReason::PacerExpired as usize] += 1;
                    continue;
                };
                let owned = owned_extensions(ids, &header, plain, abs);
                let packet = Outgoing {
                    plain,
                    header_len: header.header_len,
                    timestamp: e.timestamp,
                    seq: e.seq,
                    index: e.out_index,
                    owned,
                    picture: e.picture,
                    marker: e.marker,
                };
                let slot = out.slot().expect("checked not full");
                let transport_seq = p.transport_seq;
                let len = write_forwarded(slot, &packet, sub, tx, &mut p.transport_seq);
                if owned.transport_seq.is_some() {
                    p.bwe.on_send(transport_seq, len, now_us);
                }
                out.commit(destination, len);
                counters.paced += 1;
                counters.pacer_wait_us += released.waited_us as u64;
                sub.packets_sent += 1;
                sub.octets_sent += (plain.len() - header.header_len) as u64;
                counters.rtp_out += 1;
                counters.bytes_out += len as u64;
            }
            if p.pacer.is_empty() {
                p.pace_listed = false;
                pacing.swap_remove(i);
            } else {
                i += 1;
            }
        }
        *next_pace = match (pacing.is_empty(), out.is_full()) {
            (true, _) => None,
            // The batch filled: go on as soon as it is sent.
            (false, true) => Some(now),
            (false, false) => Some(now + PACE_TICK),
        };
    }
}
