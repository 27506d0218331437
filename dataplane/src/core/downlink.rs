//! Downlink control (issue 24): each subscriber gets the layers its bandwidth estimate carries. After every
//! transport-wide feedback from a subscriber whose link has shown its limit, the allocator
//! ([`crate::bwe::allocate`]) divides the estimate, less the subscriber's audio, over its video subscriptions.
//! Here the hysteresis around it (down at once; up only with 10% to spare, once a probe has confirmed room for
//! 1.1 times the new total, and not within 10 s of a downgrade), and probing: when an upgrade waits, a short
//! burst of padding on an RTX stream finds out whether the link has the room.
//!
//! Until the link shows a limit (a growing queue, or loss the loss-based bound cuts for), every subscription gets
//! what it asks for, as before: the media itself is the probe, and the estimate follows what arrives.

use super::*;
use crate::bwe::allocate::{self, Demand};

/// An upgrade needs the estimate, and a probe, to carry the new total this many times over.
pub const UPGRADE_HEADROOM: f64 = 1.1;
/// No upgrade of a subscription for this long after its allocation went down (flapping costs keyframes).
pub const UPGRADE_HOLD: Duration = Duration::from_secs(10);
/// Padding is sent in ticks this far apart while a probe runs.
const PADDING_TICK: Duration = Duration::from_millis(5);
/// RFC 3550's padding count is one byte.
const PADDING_MAX: usize = 255;
/// A probe aims at most this many times the estimate, and this much over what the subscriptions want.
const PROBE_STEP_MAX: f64 = 2.0;
const PROBE_OVER_WANTED: f64 = 1.25;
/// Allocation also runs this often without feedback: a subscriber whose video is all paused may receive nothing
/// to report on, and only a probe can bring it back.
pub(super) const ALLOCATE_INTERVAL: Duration = Duration::from_millis(500);
/// Header and one-word extension block of a padding packet.
const PADDING_HEADER_LEN: usize = 20;

/// What a video subscription's subscriber can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Allocation {
    /// The link has shown no limit: the layer asked for.
    Unconstrained,
    /// At most this layer.
    Layer(u8),
    /// Nothing: even the lowest layer does not fit.
    Paused,
}

/// Buffers for one allocation round, sized once for the largest subscriber.
#[derive(Debug)]
pub(super) struct Scratch {
    subs: Vec<SubscriptionId>,
    demands: Vec<Demand>,
    /// With no limit, within the limit, within the limit with headroom, and what is chosen.
    want: Vec<Option<u8>>,
    fit: Vec<Option<u8>>,
    up: Vec<Option<u8>>,
    chosen: Vec<Option<u8>>,
    /// What each has now.
    current: Vec<Option<u8>>,
}

impl Scratch {
    pub(super) fn new(capacity: usize) -> Scratch {
        Scratch {
            subs: Vec::with_capacity(capacity),
            demands: Vec::with_capacity(capacity),
            want: Vec::with_capacity(capacity),
            fit: Vec::with_capacity(capacity),
            up: Vec::with_capacity(capacity),
            chosen: Vec::with_capacity(capacity),
            current: Vec::with_capacity(capacity),
        }
    }

    fn reset(&mut self) {
        self.subs.clear();
        self.demands.clear();
    }

    fn size(&mut self) {
        let n = self.subs.len();
        for v in [&mut self.want, &mut self.fit, &mut self.up, &mut self.chosen, &mut self.current] {
            v.clear();
            v.resize(n, None);
        }
    }
}

impl Core {
    /// The allocation timer: every subscriber whose link has shown its limit, feedback or not.
    pub(super) fn allocate_all(&mut self, now: Instant) {
        self.round_ids.clear();
        self.round_ids.extend(self.participants.iter().filter(|(_, p)| p.bwe.congested()).map(|(id, _)| id));
        for i in 0..self.round_ids.len() {
            self.allocate_downlink(now, self.round_ids[i]);
        }
        self.next_allocation = (!self.round_ids.is_empty()).then_some(now + ALLOCATE_INTERVAL);
    }

    /// A REMB from subscriber `id`: its estimate, if it sends no transport-wide feedback; allocation follows.
    pub(super) fn on_remb(&mut self, now: Instant, id: ParticipantId, bitrate_bps: u64) {
        self.counters.rembs_in += 1;
        let Some(p) = self.participants.get(id) else { return };
        // What its current layers cost: below that, REMB says the link is the limit.
        let forwarded: u64 = p
            .subscriptions
            .iter()
            .filter_map(|s| self.subscriptions.get(*s))
            .filter_map(|s| self.tracks.get(s.track)?.cost(now, s.layer?))
            .sum();
        let Some(p) = self.participants.get_mut(id) else { return };
        if p.bwe.on_remb(bitrate_bps, forwarded, micros_since(self.origin, now)) {
            self.allocate_downlink(now, id);
        }
    }

    /// Re-divides subscriber `id`'s estimate over its video subscriptions (after its feedback).
    pub(super) fn allocate_downlink(&mut self, now: Instant, id: ParticipantId) {
        let now_us = micros_since(self.origin, now);
        let Core {
            participants,
            subscriptions,
            tracks,
            allocator: s,
            events,
            counters,
            probing,
            next_probe,
            next_allocation,
            ..
        } = self;
        let Some(p) = participants.get_mut(id) else { return };
        match p.bwe.take_probe_result() {
            Some(r) if r.success => counters.probes_succeeded += 1,
            Some(_) => counters.probes_failed += 1,
            None => {}
        }
        if !p.bwe.congested() {
            return;
        }
        next_allocation.get_or_insert(now + ALLOCATE_INTERVAL);
        let estimate = p.bwe.estimate_bps();
        p.pacer.set_rate(Some(pacing::pacing_rate(estimate)));
        s.reset();
        let mut audio = 0u64;
        for &sub_id in &p.subscriptions {
            let Some(sub) = subscriptions.get(sub_id) else { continue };
            let Some(track) = tracks.get(sub.track) else { continue };
            if track.spec.kind == MediaKind::Audio {
                audio += track.rates.rate(now, 0).unwrap_or(0);
                continue;
            }
            let mut rates = [None; LAYERS_MAX];
            if !track.blocked {
                for (quality, rate) in rates.iter_mut().enumerate().take(track.spec.qualities()) {
                    *rate = track.cost(now, quality as u8);
                }
            }
            s.subs.push(sub_id);
            s.demands.push(Demand { screen: track.spec.screen, ceiling: sub.target_layer, rates });
        }
        if s.subs.is_empty() {
            return;
        }
        s.size();
        let budget = estimate.saturating_sub(audio);
        allocate::allocate(u64::MAX, &s.demands, &mut s.want);
        allocate::allocate(budget, &s.demands, &mut s.fit);
        allocate::allocate((budget as f64 / UPGRADE_HEADROOM) as u64, &s.demands, &mut s.up);
        let mut upgrade_waits = false;
        for i in 0..s.subs.len() {
            let sub = subscriptions.get(s.subs[i]).expect("listed above");
            let current = match sub.allocation {
                Allocation::Unconstrained => s.want[i],
                Allocation::Layer(layer) => Some(layer),
                Allocation::Paused => None,
            };
            // A paused video may come back as soon as a probe finds room: the hold is against flapping between
            // layers, and a pause is the last resort.
            s.current[i] = current;
            let held =
                current.is_some() && sub.downgraded_at.is_some_and(|t| now.saturating_duration_since(t) < UPGRADE_HOLD);
            s.chosen[i] = if s.fit[i] < current {
                s.fit[i]
            } else if s.up[i] > current && !held {
                s.up[i]
            } else {
                current
            };
            upgrade_waits |= s.want[i] > s.chosen[i] && !held;
        }
        // Keeping some where they are and raising others may not fit together: then what fits.
        if allocate::total(&s.demands, &s.chosen) > budget {
            s.chosen.copy_from_slice(&s.fit);
        }
        // An upgrade goes ahead only once a probe has shown room for the new total with headroom: the estimate
        // alone creeps up as the media flows and would move into a link that cannot take it. A subscriber that
        // cannot be probed (REMB only, or no RTX stream to pad on) upgrades on its estimate.
        let upgrading = s.chosen.iter().zip(&s.current).any(|(chosen, current)| chosen > current);
        let probeable = !p.bwe.uses_remb() && padding_stream(&p.subscriptions, subscriptions).is_some();
        let needed = ((allocate::total(&s.demands, &s.chosen) + audio) as f64 * UPGRADE_HEADROOM) as u64;
        let mut confirm_at = None;
        if upgrading && probeable && p.bwe.confirmed_bps(now_us).is_none_or(|room| room < needed) {
            for (chosen, current) in s.chosen.iter_mut().zip(&s.current) {
                if *chosen > *current {
                    *chosen = *current;
                }
            }
            confirm_at = Some(needed);
            upgrade_waits = true;
        }
        for i in 0..s.subs.len() {
            let sub_id = s.subs[i];
            let sub = subscriptions.get_mut(sub_id).expect("listed above");
            let chosen = s.chosen[i];
            let allocation = chosen.map_or(Allocation::Paused, Allocation::Layer);
            if allocation == sub.allocation {
                continue;
            }
            let before = match sub.allocation {
                // Entering the constrained regime at what it gets anyway changes nothing the subscriber sees.
                Allocation::Unconstrained if chosen == s.want[i] => {
                    sub.allocation = allocation;
                    continue;
                }
                Allocation::Unconstrained => s.want[i],
                Allocation::Layer(layer) => Some(layer),
                Allocation::Paused => None,
            };
            sub.allocation = allocation;
            if chosen < before {
                sub.downgraded_at = Some(now);
                counters.bandwidth_downgrades += 1;
                p.bwe.forget_confirmed();
            } else {
                counters.bandwidth_upgrades += 1;
            }
            if chosen.is_none() {
                // Nothing more is forwarded; on resuming, the stream continues at the next keyframe.
                if sub.layer.take().is_some() {
                    sub.source_switch = true;
                }
                counters.bandwidth_pauses += 1;
                let reason = LayerReason::Bandwidth;
                events.push_back(Event::LayerChanged { participant: id, subscription: sub_id, layer: None, reason });
            }
        }
        // A REMB-only subscriber reports no arrivals: a probe would find nothing out.
        if !upgrade_waits || p.bwe.probing(now_us) || p.bwe.uses_remb() {
            return;
        }
        let wanted = allocate::total(&s.demands, &s.want) + audio;
        let target = (wanted as f64 * PROBE_OVER_WANTED).min(estimate as f64 * PROBE_STEP_MAX) as u64;
        // An upgrade the estimate allows but no probe has confirmed: probe for the room it needs, step by step (a
        // probe aimed at everything wanted would fail under a cap that has room for this step, and a video
        // paused for bandwidth would stay paused while its lowest layer fits).
        let target = confirm_at.unwrap_or(target);
        if (target <= estimate && confirm_at.is_none()) || padding_stream(&p.subscriptions, subscriptions).is_none() {
            return;
        }
        if p.bwe.start_probe(target, now_us) {
            counters.probes += 1;
            if !probing.contains(&id) {
                probing.push(id);
            }
            *next_probe = Some(now);
        }
    }

    /// Sends what running probes owe in padding, on an RTX stream of each probing subscriber.
    pub(super) fn send_padding(&mut self, now: Instant, out: &mut Transmits) {
        let now_us = micros_since(self.origin, now);
        let Core { participants, subscriptions, probing, counters, config, next_probe, .. } = self;
        let transport_cc = config.extension_ids.transport_cc;
        let mut i = 0;
        while i < probing.len() {
            let Some(p) = participants.get_mut(probing[i]).filter(|p| p.bwe.probing(now_us)) else {
                probing.swap_remove(i);
                continue;
            };
            i += 1;
            let Participant { address, tx, transport_seq, bwe, subscriptions: subs, gone: false, pacer, .. } = p else {
                continue;
            };
            // Media waiting for the link comes before padding.
            if !pacer.is_empty() {
                continue;
            }
            let (Some(to), Some(tx)) = (*address, tx.as_ref()) else { continue };
            let Some(sub_id) = padding_stream(subs, subscriptions) else { continue };
            let sub = subscriptions.get_mut(sub_id).expect("just found");
            let Some(rtx) = sub.spec.rtx else { continue };
            let mut due = bwe.padding_due(now_us);
            while due > 0 {
                let Some(slot) = out.slot() else {
                    counters.drops[DropReason::TransmitFull as usize] += 1;
                    break;
                };
                let index = sub.rtx_index.map_or(0, |i| i + 1);
                sub.rtx_index = Some(index);
                let seq = *transport_seq;
                let padding = due.saturating_sub(PADDING_HEADER_LEN).clamp(1, PADDING_MAX) as u8;
                let len = write_padding(slot, sub.last_timestamp, rtx, index, tx, transport_cc, transport_seq, padding);
                bwe.on_send(seq, len, now_us);
                out.commit(to, len);
                counters.padding_sent += 1;
                counters.rtp_out += 1;
                counters.bytes_out += len as u64;
                due = due.saturating_sub(len);
            }
        }
        *next_probe = (!probing.is_empty()).then_some(now + PADDING_TICK);
    }
}

/// The subscription whose RTX stream carries a subscriber's padding: one with RTX that has sent media (padding
/// never comes before the first media packet).
fn padding_stream(subs: &[SubscriptionId], subscriptions: &Slab<Subscription>) -> Option<SubscriptionId> {
    subs.iter().copied().find(|s| subscriptions.get(*s).is_some_and(|s| s.spec.rtx.is_some() && s.packets_sent > 0))
}

/// Writes a padding-only packet on an RTX stream (RFC 3550 section 5.1's padding, RFC 4588's stream): no
/// payload, `padding` bytes of padding (the last one counts them), and our transport-wide sequence number, so the
/// subscriber's feedback reports it; its browser counts it and drops it. Returns the length.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_padding(
    slot: &mut [u8],
    timestamp: u32,
    rtx: RtxSpec,
    rtx_index: u64,
    tx: &srtp::Context,
    transport_cc: u8,
    transport_seq: &mut u16,
    padding: u8,
) -> usize {
    let padding = usize::from(padding.max(1));
    // Version 2, padding, one extension block.
    slot[0] = 0x80 | 0x20 | 0x10;
    slot[1] = rtx.payload_type & 0x7f;
    slot[2..4].copy_from_slice(&(rtx_index as u16).to_be_bytes());
    slot[4..8].copy_from_slice(&timestamp.to_be_bytes());
    slot[8..12].copy_from_slice(&rtx.ssrc.to_be_bytes());
    // RFC 8285 one-byte header extensions: one word holding the 2-byte transport-wide sequence number.
    slot[12..16].copy_from_slice(&[0xbe, 0xde, 0x00, 0x01]);
    slot[16] = (transport_cc << 4) | 1;
    slot[17..19].copy_from_slice(&transport_seq.to_be_bytes());
    slot[19] = 0;
    *transport_seq = transport_seq.wrapping_add(1);
    let end = PADDING_HEADER_LEN + padding;
    slot[PADDING_HEADER_LEN..end - 1].fill(0);
    slot[end - 1] = padding as u8;
    tx.protect_rtp(slot, end, PADDING_HEADER_LEN, rtx_index).expect("a transmit slot has room for the tag")
}
