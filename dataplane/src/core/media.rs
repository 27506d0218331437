//! Steps 3 to 6: an SRTP packet from a publisher, decrypted once, to every subscription of its track's layer,
//! rewritten and encrypted straight into the transmit batch.

use super::downlink::Allocation;
use super::*;
use crate::packet::codec::LayerIndices;

impl InboundStream {
    pub(super) fn new(ssrc: u32, track: TrackId, layer: u8, kind: MediaKind) -> InboundStream {
        InboundStream {
            ssrc,
            track,
            layer,
            clock_rate: kind.clock_rate(),
            window: ReplayWindow::default(),
            stats: ReceiveStats::default(),
            missing: (kind == MediaKind::Video).then(MissingPackets::default),
            pending: false,
        }
    }
}

impl Track {
    /// A packet of stream `layer`, `size` bytes, arrived: which quality levels are being sent, and what each
    /// costs. An SVC stream's levels are its spatial layers, read from `payload`.
    pub(super) fn on_media(&mut self, now: Instant, layer: u8, payload: &[u8], size: usize) {
        let quality = self.quality_of(layer, payload);
        if self.spec.is_simulcast() || self.spec.is_svc() {
            self.layers.on_packet(now, quality);
        }
        self.rates.on_packet(now, quality, size);
    }

    /// The quality level of a packet of stream `layer`: the stream's, or for SVC the packet's spatial layer.
    pub(super) fn quality_of(&self, layer: u8, payload: &[u8]) -> u8 {
        if !self.spec.is_svc() {
            return layer;
        }
        self.spec.codec.layer_indices(payload).map_or(0, |l| l.spatial.min(self.spec.spatial_layers - 1))
    }

    /// What forwarding quality level `quality` costs, if it is being sent: for SVC, with the levels below it
    /// that it is decoded from.
    pub(super) fn cost(&self, now: Instant, quality: u8) -> Option<u64> {
        let own = self.rates.rate(now, usize::from(quality))?;
        if !self.spec.is_svc() {
            return Some(own);
        }
        Some(own + (0..usize::from(quality)).filter_map(|l| self.rates.rate(now, l)).sum::<u64>())
    }
}

/// SVC (RFC 9628) for one subscription taking spatial layers up to `sub.layer` of a stream: what to do with a
/// packet of spatial layer `l.spatial`. A subscription starts, and moves up, at a keyframe (each spatial layer of
/// an L3T3_KEY stream predicts from itself after the keyframe), and moves down at the start of any picture.
/// Layers above its own are dropped without a gap in sequence numbers, and the marker bit (end of picture) goes
/// on the last packet of its top layer. Returns whether to forward the packet and with which marker, whether the
/// subscription moved (from which level), and whether it waits for a keyframe to move up.
fn svc_step(
    sub: &mut Subscription,
    wanted: u8,
    l: LayerIndices,
    keyframe: bool,
    marker: bool,
) -> (Option<bool>, Option<Option<u8>>, bool) {
    let picture_start = l.spatial == 0 && l.begin_of_layer_frame;
    let mut moved = None;
    let mut awaiting = false;
    match sub.layer {
        None if picture_start && keyframe => moved = Some(None),
        None => return (None, None, true),
        Some(current) if picture_start && wanted != current => {
            if wanted < current || keyframe {
                moved = Some(Some(current));
            } else {
                awaiting = true;
            }
        }
        Some(_) => {}
    }
    if moved.is_some() {
        sub.layer = Some(wanted);
    }
    let current = sub.layer.expect("set above");
    let forward = (l.spatial <= current).then_some(marker || (l.end_of_layer_frame && l.spatial == current));
    (forward, moved, awaiting)
}

/// SVC: the marker bit a retransmission of `payload` carries to a subscription at level `quality` (the one it
/// was first sent with, unless the subscription moved since); `None` to keep the publisher's.
pub(super) fn svc_marker(track: &Track, quality: u8, payload: &[u8], marker: bool) -> Option<bool> {
    if !track.spec.is_svc() {
        return None;
    }
    let l = track.spec.codec.layer_indices(payload)?;
    let ours = marker || (l.end_of_layer_frame && l.spatial == quality);
    (ours != marker).then_some(ours)
}

/// Why a subscription now receives `layer`: below what it asked for because of its bandwidth (`target`, the
/// allocation's ceiling, is below its request), because the publisher is not sending what it asked for, or as
/// asked.
fn switch_reason(layer: u8, target: u8, requested: u8) -> LayerReason {
    if layer < requested && target < requested {
        LayerReason::Bandwidth
    } else if layer != requested {
        LayerReason::PublisherPaused
    } else {
        LayerReason::Requested
    }
}

/// Moves a subscription to `layer`, whose keyframe with RTP timestamp `timestamp` is about to be forwarded:
/// sequence numbers continue after the last one sent, and the timestamp one frame (30 fps video, 20 ms audio)
/// after the last one sent, whatever random base the new layer's (or track's) clock has.
pub(super) fn switch_layer(sub: &mut Subscription, kind: MediaKind, layer: u8, timestamp: u32) {
    let frame_ticks: u32 = match kind {
        MediaKind::Video => 3_000,
        MediaKind::Audio => 960,
    };
    if sub.layer.is_some() || std::mem::take(&mut sub.source_switch) {
        sub.rewriter.switch_source();
        sub.picture.switch_source();
        sub.timestamp_offset = sub.last_timestamp.wrapping_add(frame_ticks).wrapping_sub(timestamp);
    }
    sub.layer = Some(layer);
}

/// The header extensions we own in a forwarded packet: offsets of their values in the packet, and for
/// abs-send-time the value to write.
#[derive(Debug, Clone, Copy)]
pub(super) struct OwnedExtensions {
    pub(super) transport_seq: Option<usize>,
    pub(super) abs_send_time: Option<(usize, u32)>,
}

/// One outgoing copy of a packet, before the subscription's rewrite.
pub(super) struct Outgoing<'a> {
    pub(super) plain: &'a [u8],
    pub(super) header_len: usize,
    /// The output timestamp: the publisher's plus the subscription's offset when the copy was made (a paced copy
    /// keeps it even if the subscription switches layer, and so offset, before the copy leaves).
    pub(super) timestamp: u32,
    pub(super) seq: u16,
    /// The SRTP index to encrypt with.
    pub(super) index: u64,
    pub(super) owned: OwnedExtensions,
    /// VP8 and VP9: the subscription's PictureID and TL0PICIDX.
    pub(super) picture: PicturePatch,
    /// SVC: the marker bit for this subscription (end of its picture), where it differs from the publisher's.
    pub(super) marker: Option<bool>,
}

/// Writes a forwarded packet into `slot`: the plaintext with the subscription's SSRC, sequence number, timestamp
/// and payload type, the next transport-wide sequence number and our send time, encrypted with the subscriber's
/// key. Returns its length.
pub(super) fn write_forwarded(
    slot: &mut [u8],
    packet: &Outgoing<'_>,
    sub: &Subscription,
    tx: &srtp::Context,
    transport_seq: &mut u16,
) -> usize {
    let plain = packet.plain;
    slot[..plain.len()].copy_from_slice(plain);
    packet.picture.apply(&mut slot[packet.header_len..plain.len()]);
    rtp::set_ssrc(slot, sub.spec.ssrc);
    rtp::set_seq(slot, packet.seq);
    rtp::set_timestamp(slot, packet.timestamp);
    if let Some(pt) = sub.spec.payload_type {
        rtp::set_payload_type(slot, pt);
    }
    if let Some(marker) = packet.marker {
        rtp::set_marker(slot, marker);
    }
    if let Some(at) = packet.owned.transport_seq {
        slot[at..at + 2].copy_from_slice(&transport_seq.to_be_bytes());
        *transport_seq = transport_seq.wrapping_add(1);
    }
    if let Some((at, value)) = packet.owned.abs_send_time {
        slot[at..at + 3].copy_from_slice(&value.to_be_bytes()[1..]);
    }
    tx.protect_rtp(slot, plain.len(), packet.header_len, packet.index).expect("a transmit slot has room for the tag")
}

/// Writes a retransmission as RTX (RFC 4588 section 4): the forwarded packet's header with the RTX SSRC, payload
/// type and sequence number, then the original (output) sequence number, then the original payload.
pub(super) fn write_rtx(
    slot: &mut [u8],
    packet: &Outgoing<'_>,
    rtx: RtxSpec,
    rtx_index: u64,
    tx: &srtp::Context,
    transport_seq: &mut u16,
) -> usize {
    /// The original sequence number that precedes the payload.
    const OSN_LEN: usize = 2;
    let (plain, header_len) = (packet.plain, packet.header_len);
    slot[..header_len].copy_from_slice(&plain[..header_len]);
    slot[header_len..header_len + OSN_LEN].copy_from_slice(&packet.seq.to_be_bytes());
    slot[header_len + OSN_LEN..plain.len() + OSN_LEN].copy_from_slice(&plain[header_len..]);
    packet.picture.apply(&mut slot[header_len + OSN_LEN..plain.len() + OSN_LEN]);
    rtp::set_ssrc(slot, rtx.ssrc);
    rtp::set_seq(slot, rtx_index as u16);
    rtp::set_timestamp(slot, packet.timestamp);
    rtp::set_payload_type(slot, rtx.payload_type);
    if let Some(marker) = packet.marker {
        rtp::set_marker(slot, marker);
    }
    if let Some(at) = packet.owned.transport_seq {
        slot[at..at + 2].copy_from_slice(&transport_seq.to_be_bytes());
        *transport_seq = transport_seq.wrapping_add(1);
    }
    tx.protect_rtp(slot, plain.len() + OSN_LEN, header_len, rtx_index)
        .expect("a transmit slot has room for OSN and tag")
}

impl Core {
    pub(super) fn handle_rtp(&mut self, now: Instant, source: SocketAddr, datagram: &mut [u8], out: &mut Transmits) {
        self.counters.rtp_in += 1;
        let Some(&id) = self.by_address.get(&source) else { return self.drop(DropReason::UnknownSource) };
        let Ok(header) = RtpHeader::parse(datagram) else { return self.drop(DropReason::MalformedRtp) };
        let p = self.participants.get(id).expect("by_address only names live participants");
        if p.rx.is_none() {
            return self.drop(DropReason::NotConnected);
        }
        let slot = match p.inbound.iter().position(|s| s.ssrc == header.ssrc) {
            Some(slot) => slot,
            None => match self.learn_ssrc(id, &header, datagram) {
                Some(slot) => slot,
                None => return self.drop(DropReason::UnknownSsrc),
            },
        };
        let p = self.participants.get_mut(id).expect("checked above");
        p.media.packets_in += 1;
        p.media.bytes_in += datagram.len() as u64;
        let rx = p.rx.as_ref().expect("checked above");
        let stream = &mut p.inbound[slot];
        let index = stream.window.index_for(header.seq);
        if stream.window.check(index).is_err() {
            return self.drop(DropReason::Replay);
        }
        let Ok(len) = rx.unprotect_rtp(datagram, header.header_len, index) else {
            if stream.pending {
                // A learned SSRC that did not authenticate is forgotten again.
                p.inbound.swap_remove(slot);
            }
            return self.drop(DropReason::AuthFailed);
        };
        if std::mem::take(&mut stream.pending) {
            self.counters.ssrcs_learned += 1;
        }
        // Media that authenticates is a live peer, whatever keeps its ICE pair up.
        if p.last_consent.is_some() {
            p.last_consent = Some(now);
        }
        let previous_highest = stream.window.started().then(|| stream.window.highest());
        stream.window.record(index);
        let since_origin = now.saturating_duration_since(self.origin.unwrap_or(now));
        let arrival = (since_origin.as_nanos() * u128::from(stream.clock_rate) / 1_000_000_000) as u64;
        stream.stats.on_packet(index, header.timestamp, arrival);
        if let Some((at, 2)) = header.extension(datagram, self.config.extension_ids.transport_cc) {
            let seq = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
            if p.arrivals.on_packet(seq, since_origin.as_micros() as i64) {
                self.feedback_pending.push(id);
                self.next_feedback.get_or_insert(now + FEEDBACK_INTERVAL);
            }
        }
        let track = stream.track;
        if let Some(t) = self.tracks.get_mut(track) {
            if t.blocked {
                return self.drop(DropReason::Blocked);
            }
            if t.spec.kind == MediaKind::Audio
                && let Some((at, 1)) = header.extension(datagram, self.config.extension_ids.audio_level)
            {
                t.speech.on_level(datagram[at]);
            }
        }
        let p = self.participants.get_mut(id).expect("checked above");
        let stream = &mut p.inbound[slot];
        let mut unrepairable = false;
        if let Some(missing) = stream.missing.as_mut() {
            unrepairable = missing.on_packet(index, previous_highest, now);
            if let Some(due) = missing.next_due() {
                self.next_nack = Some(self.next_nack.map_or(due, |t| t.min(due)));
                if !std::mem::replace(&mut p.nack_queued, true) {
                    self.nack_pending.push(id);
                }
            }
        }
        let (track, layer) = (stream.track, stream.layer);
        // The publisher's MID and RIDs name its own m-line; a subscriber's browser drops packets whose MID it does
        // not know, and routes by our SSRC without one. Blanked once here, so copies, relays and retransmissions
        // all go without them.
        let ids = self.config.extension_ids;
        rtp::blank_extensions(&header, &mut datagram[..len], &[ids.mid, ids.rid, ids.repaired_rid]);
        if let Some(t) = self.tracks.get_mut(track) {
            if let Some(buffer) = t.retransmission[usize::from(layer)].as_mut() {
                buffer.store(index, &datagram[..len]);
            }
            t.on_media(now, layer, &datagram[header.header_len..len], len);
        }
        self.relay_out(now, track, layer, index, &datagram[..len], out);
        let owned = self.owned_extensions(now, &header, &datagram[..len]);
        let awaiting_keyframe = self.fan_out(now, track, layer, index, &datagram[..len], &header, owned, out);
        if unrepairable || awaiting_keyframe {
            self.send_pli(now, track, layer, out);
        }
    }

    /// Where the header extensions we rewrite sit in this packet, and the abs-send-time value for `now`.
    pub(super) fn owned_extensions(&self, now: Instant, header: &RtpHeader, plain: &[u8]) -> OwnedExtensions {
        pacing::owned_extensions(self.config.extension_ids, header, plain, self.abs_send_time(now))
    }

    /// An SSRC the publisher did not list: if its MID and RID header extensions name a layer of one of the
    /// publisher's tracks whose SSRC is not known yet, add a stream for it, pending until its first packet
    /// authenticates. Returns the stream's slot.
    pub(super) fn learn_ssrc(&mut self, id: ParticipantId, header: &RtpHeader, datagram: &[u8]) -> Option<usize> {
        let ids = self.config.extension_ids;
        let (mid_at, mid_len) = header.extension(datagram, ids.mid)?;
        let mid = &datagram[mid_at..mid_at + mid_len];
        // No RID: a single-layer track named by its MID alone.
        let rid = header.extension(datagram, ids.rid).map(|(at, len)| &datagram[at..at + len]);
        let p = self.participants.get(id)?;
        if p.inbound.len() == p.inbound.capacity() {
            return None;
        }
        let (track_id, layer, kind) = p.tracks.iter().find_map(|t| {
            let track = self.tracks.get(*t)?;
            if track.spec.mid.is_none_or(|m| m.as_bytes() != mid) {
                return None;
            }
            let layer = match rid {
                Some(rid) => track
                    .spec
                    .layers
                    .iter()
                    .position(|l| l.is_some_and(|l| l.rid.is_some_and(|r| r.as_bytes() == rid)))?,
                None if track.spec.layer_count() == 1 && track.spec.layers[0].is_some_and(|l| l.rid.is_none()) => 0,
                None => return None,
            };
            let taken = p.inbound.iter().any(|s| s.track == *t && usize::from(s.layer) == layer);
            (!taken).then_some((*t, layer as u8, track.spec.kind))
        })?;
        let p = self.participants.get_mut(id)?;
        let mut stream = InboundStream::new(header.ssrc, track_id, layer, kind);
        stream.pending = true;
        p.inbound.push(stream);
        Some(p.inbound.len() - 1)
    }

    /// Step 4: one decrypted packet of `layer` to every subscription of its track that takes that layer, switching
    /// subscriptions waiting for this layer when the packet starts a keyframe. Returns whether a subscription
    /// waits for a keyframe of this layer (the caller asks the publisher for one; requests are rate-limited).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fan_out(
        &mut self,
        now: Instant,
        track_id: TrackId,
        layer: u8,
        packet_index: u64,
        plain: &[u8],
        header: &RtpHeader,
        owned: OwnedExtensions,
        out: &mut Transmits,
    ) -> bool {
        let Core { tracks, subscriptions, participants, counters, origin, events, pacing, next_pace, .. } = self;
        let now_us = micros_since(*origin, now);
        let Some(track) = tracks.get(track_id) else { return false };
        if track.subscribers.is_empty() {
            if track.relay.workers == 0 {
                counters.drops[DropReason::NoSubscribers as usize] += 1;
            }
            return false;
        }
        if plain.len() + Profile::RTP_OVERHEAD_MAX > DATAGRAM_MAX {
            counters.drops[DropReason::TooLarge as usize] += 1;
            return false;
        }
        let payload = &plain[header.header_len..];
        let mut keyframe: Option<bool> = None;
        let mut awaiting_keyframe = false;
        // SVC: the packet's spatial layer is its quality level (the stream is always `layer` 0).
        let svc = track.spec.is_svc().then(|| track.spec.codec.layer_indices(payload).unwrap_or_default());
        for &sub_id in &track.subscribers {
            let sub = subscriptions.get_mut(sub_id).expect("a track lists only live subscriptions");
            let target = match sub.allocation {
                Allocation::Unconstrained => sub.target_layer,
                Allocation::Layer(allocated) => allocated.min(sub.target_layer),
                Allocation::Paused => {
                    counters.fanout_paused += 1;
                    continue;
                }
            };
            let mut marker = None;
            let moved = if let Some(l) = svc {
                let wanted = track.layers.best(target);
                let is_keyframe = *keyframe.get_or_insert_with(|| track.spec.codec.is_keyframe_start(payload));
                let (forward, moved, awaiting) = svc_step(sub, wanted, l, is_keyframe, header.marker);
                awaiting_keyframe |= awaiting;
                if moved == Some(None) {
                    // A start (or a restart after a pause or a move to this track): sequence numbers, timestamps
                    // and picture IDs continue from what was sent before, as for a simulcast switch.
                    sub.layer = None;
                    switch_layer(sub, track.spec.kind, wanted, header.timestamp);
                }
                let Some(forward_marker) = forward else {
                    // A layer above its own leaves no gap; one that arrives late (after newer packets went) does.
                    if sub.layer.is_some() && !sub.rewriter.skip(header.seq) {
                        counters.fanout_stale += 1;
                    }
                    counters.fanout_other_layer += 1;
                    continue;
                };
                marker = (forward_marker != header.marker).then_some(forward_marker);
                moved
            } else if sub.layer != Some(layer) {
                let is_keyframe = *keyframe.get_or_insert_with(|| track.spec.codec.is_keyframe_start(payload));
                let wanted = track.layers.best(target) == layer;
                if !wanted || !is_keyframe {
                    awaiting_keyframe |= wanted;
                    counters.fanout_other_layer += 1;
                    continue;
                }
                let previous = sub.layer;
                switch_layer(sub, track.spec.kind, layer, header.timestamp);
                Some(previous)
            } else {
                // Waiting for a lower layer's keyframe after the allocation went down: until it comes, this
                // layer's upper temporal layers (which nothing in the base layer references) are shed, the quick
                // relief.
                if matches!(sub.allocation, Allocation::Layer(allocated) if allocated < layer)
                    && track.layers.best(target) < layer
                    && track.spec.codec.layer_indices(payload).is_some_and(|l| l.temporal > 0)
                    && sub.rewriter.skip(header.seq)
                {
                    counters.fanout_temporal_shed += 1;
                    continue;
                }
                None
            };
            if let Some(previous) = moved {
                counters.layer_switches += 1;
                // A switch, or the first layer after a pause (not a subscription's first layer).
                if previous.is_some() || matches!(sub.allocation, Allocation::Layer(_)) {
                    let new = sub.layer.expect("just switched");
                    let reason = switch_reason(new, target, sub.target_layer);
                    let participant = sub.subscriber;
                    events.push_back(Event::LayerChanged {
                        participant,
                        subscription: sub_id,
                        layer: Some(new),
                        reason,
                    });
                }
            }
            let subscriber = participants.get_mut(sub.subscriber).expect("a subscription's subscriber is live");
            let (Some(destination), Some(tx), false) = (subscriber.address, subscriber.tx.as_ref(), subscriber.gone)
            else {
                counters.fanout_not_ready += 1;
                continue;
            };
            let Some((seq, index)) = sub.rewriter.rewrite(header.seq) else {
                counters.fanout_stale += 1;
                continue;
            };
            // Video waits in the pacer (at its place in the retransmission buffer) when the budget is spent;
            // what has no buffer (audio) goes at once, first.
            let size = plain.len() + Profile::RTP_OVERHEAD_MAX;
            let paced = match track.retransmission[usize::from(layer)] {
                Some(_) => !subscriber.pacer.admit(size, now_us),
                None => {
                    subscriber.pacer.charge(size, now_us);
                    false
                }
            };
            if !paced && out.is_full() {
                counters.drops[DropReason::TransmitFull as usize] += 1;
                continue;
            }
            let picture = sub.picture.rewrite(track.spec.codec, payload);
            let timestamp = header.timestamp.wrapping_add(sub.timestamp_offset);
            if paced {
                let entry = pacing::Paced {
                    sub: sub_id,
                    track: track_id,
                    layer,
                    index: packet_index,
                    seq,
                    out_index: index,
                    timestamp,
                    picture,
                    marker,
                };
                match subscriber.queue_paced(entry, size, now_us) {
                    Ok(list) => {
                        if list {
                            pacing.push(sub.subscriber);
                        }
                        next_pace.get_or_insert(now + pacing::PACE_TICK);
                    }
                    Err(()) => counters.drops[DropReason::PacerFull as usize] += 1,
                }
                sub.last_timestamp = timestamp;
                continue;
            }
            let slot = out.slot().expect("checked not full");
            let packet =
                Outgoing { plain, header_len: header.header_len, timestamp, seq, index, owned, picture, marker };
            let transport_seq = subscriber.transport_seq;
            let len = write_forwarded(slot, &packet, sub, tx, &mut subscriber.transport_seq);
            if owned.transport_seq.is_some() {
                subscriber.bwe.on_send(transport_seq, len, now_us);
            }
            out.commit(destination, len);
            sub.last_timestamp = timestamp;
            sub.packets_sent += 1;
            sub.octets_sent += (plain.len() - header.header_len) as u64;
            counters.rtp_out += 1;
            counters.bytes_out += len as u64;
        }
        awaiting_keyframe
    }
}
