//! Step 7: RTCP from participants (Sender Reports, keyframe requests, NACKs), and what we send in answer:
//! rate-limited PLIs to publishers, retransmissions (or RTX) to subscribers, NACKs to publishers.

use super::media::{Outgoing, OwnedExtensions, svc_marker, write_forwarded, write_rtx};
use super::*;
use crate::packet::twcc;

impl Core {
    /// Answers a subscriber's NACK for the stream it knows as `media_ssrc` from the track's buffer.
    pub(super) fn retransmit(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        media_ssrc: u32,
        lost: rtcp::NackLost<'_>,
        out: &mut Transmits,
    ) {
        /// Bounds the work one NACK can cause.
        const RETRANSMISSIONS_PER_NACK_MAX: usize = 64;
        let Core { participants, subscriptions, tracks, counters, config, origin, .. } = self;
        let extension_ids = config.extension_ids;
        // What left on the transport, for its bandwidth estimate (recorded once the subscriber is mutable again).
        let mut sent = [(0u16, 0usize); RETRANSMISSIONS_PER_NACK_MAX];
        let mut sent_count = 0;
        let Some(p) = participants.get_mut(subscriber) else { return };
        p.media.nacks_in += 1;
        let Some(p) = participants.get(subscriber) else { return };
        let (Some(destination), Some(tx)) = (p.address, p.tx.as_ref()) else { return };
        let mut transport_seq = p.transport_seq;
        let Some(&sub_id) =
            p.subscriptions.iter().find(|s| subscriptions.get(**s).is_some_and(|s| s.spec.ssrc == media_ssrc))
        else {
            return;
        };
        let sub = subscriptions.get_mut(sub_id).expect("just found");
        let Some(track) = tracks.get(sub.track) else { return };
        let Some(quality) = sub.layer else { return };
        let layer = track.spec.stream_of(quality);
        let Some(buffer) = track.retransmission[usize::from(layer)].as_ref() else { return };
        let highest = match track.publisher {
            Some(publisher) => {
                let Some(publisher) = participants.get(publisher) else { return };
                let Some(stream) = publisher.inbound.iter().find(|s| s.track == sub.track && s.layer == layer) else {
                    return;
                };
                stream.window.highest()
            }
            None => track.relay.highest[usize::from(layer)],
        };
        let (mut retransmitted, mut retransmitted_bytes) = (0, 0);
        for out_seq in lost.take(RETRANSMISSIONS_PER_NACK_MAX) {
            let packet = sub
                .rewriter
                .reverse(out_seq)
                .and_then(|(in_seq, out_index)| Some((buffer.get(srtp::estimate_index(highest, in_seq))?, out_index)));
            let Some((plain, out_index)) = packet else {
                counters.retransmissions_unavailable += 1;
                continue;
            };
            let (Ok(header), Some(slot)) = (RtpHeader::parse(plain), out.slot()) else {
                counters.drops[DropReason::TransmitFull as usize] += 1;
                continue;
            };
            // A retransmission is a new packet on the transport: it gets a new transport-wide number.
            let owned = OwnedExtensions {
                transport_seq: header
                    .extension(plain, extension_ids.transport_cc)
                    .filter(|(_, l)| *l == 2)
                    .map(|(at, _)| at),
                abs_send_time: None,
            };
            let packet = Outgoing {
                plain,
                header_len: header.header_len,
                timestamp: header.timestamp.wrapping_add(sub.timestamp_offset),
                seq: out_seq,
                index: out_index,
                owned,
                picture: sub.picture.patch(track.spec.codec, &plain[header.header_len..]),
                marker: svc_marker(track, quality, &plain[header.header_len..], header.marker),
            };
            let seq_before = transport_seq;
            let len = match sub.spec.rtx {
                Some(_) if plain.len() + 2 + Profile::RTP_OVERHEAD_MAX > DATAGRAM_MAX => {
                    counters.drops[DropReason::TooLarge as usize] += 1;
                    continue;
                }
                Some(rtx) => {
                    let index = sub.rtx_index.map_or(0, |i| i + 1);
                    sub.rtx_index = Some(index);
                    write_rtx(slot, &packet, rtx, index, tx, &mut transport_seq)
                }
                None => write_forwarded(slot, &packet, sub, tx, &mut transport_seq),
            };
            if owned.transport_seq.is_some() && sent_count < sent.len() {
                sent[sent_count] = (seq_before, len);
                sent_count += 1;
            }
            out.commit(destination, len);
            counters.retransmissions_sent += 1;
            counters.rtp_out += 1;
            counters.bytes_out += len as u64;
            retransmitted += 1;
            retransmitted_bytes += len;
        }
        if let Some(p) = participants.get_mut(subscriber) {
            p.transport_seq = transport_seq;
            p.media.retransmissions_out += retransmitted;
            let now_us = micros_since(*origin, now);
            for (seq, len) in &sent[..sent_count] {
                p.bwe.on_send(*seq, *len, now_us);
            }
            // Retransmissions go before waiting video, and use its budget.
            p.pacer.charge(retransmitted_bytes, now_us);
        }
    }

    /// NACKs every publisher stream with packets due for asking (RFC 4585 generic NACK).
    pub(super) fn send_nacks(&mut self, now: Instant, out: &mut Transmits) {
        let mut next: Option<Instant> = None;
        let mut i = 0;
        while i < self.nack_pending.len() {
            let id = self.nack_pending[i];
            let mut still_missing = false;
            let streams = self.participants.get(id).map_or(0, |p| p.inbound.len());
            for s in 0..streams {
                let mut lost = [0u16; 64];
                let Some(p) = self.participants.get_mut(id) else { break };
                let stream = &mut p.inbound[s];
                let Some(missing) = stream.missing.as_mut() else { continue };
                let n = missing.due(now, &mut lost);
                if let Some(due) = missing.next_due() {
                    still_missing = true;
                    next = Some(next.map_or(due, |t| t.min(due)));
                }
                if n > 0 {
                    let media = stream.ssrc;
                    let len =
                        rtcp::write_nack(&mut self.report_scratch, SFU_RTCP_SSRC, media, lost[..n].iter().copied())
                            .expect("64 NACK items fit a datagram");
                    self.send_rtcp(id, len, out);
                    self.counters.nacks_sent += 1;
                }
            }
            if still_missing {
                i += 1;
            } else {
                self.nack_pending.swap_remove(i);
                if let Some(p) = self.participants.get_mut(id) {
                    p.nack_queued = false;
                }
            }
        }
        self.next_nack = next;
    }

    pub(super) fn handle_rtcp(&mut self, now: Instant, source: SocketAddr, datagram: &mut [u8], out: &mut Transmits) {
        self.counters.rtcp_in += 1;
        let Some(&id) = self.by_address.get(&source) else { return self.drop(DropReason::UnknownSource) };
        let p = self.participants.get_mut(id).expect("by_address only names live participants");
        let Some(rx) = p.rx.as_ref() else { return self.drop(DropReason::NotConnected) };
        if datagram.len() < 8 {
            return self.drop(DropReason::MalformedRtcp);
        }
        let sender = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
        let Ok((len, index)) = rx.unprotect_rtcp(datagram) else { return self.drop(DropReason::AuthFailed) };
        if p.last_consent.is_some() {
            p.last_consent = Some(now);
        }
        let slot = match p.rtcp_windows.iter().position(|(ssrc, _)| *ssrc == sender) {
            Some(i) => i,
            None if p.rtcp_windows.len() < p.rtcp_windows.capacity() => {
                p.rtcp_windows.push((sender, ReplayWindow::default()));
                p.rtcp_windows.len() - 1
            }
            None => return self.drop(DropReason::UnknownSsrc),
        };
        let window = &mut p.rtcp_windows[slot].1;
        if window.check(u64::from(index)).is_err() {
            return self.drop(DropReason::Replay);
        }
        window.record(u64::from(index));
        for packet in rtcp::compound(&datagram[..len]) {
            let Ok(packet) = packet else { return self.drop(DropReason::MalformedRtcp) };
            if packet.packet_type == rtcp::SR
                && let Ok((info, _)) = rtcp::sender_report(&packet)
                && let Some(p) = self.participants.get_mut(id)
                && let Some(stream) = p.inbound.iter_mut().find(|s| s.ssrc == info.ssrc)
            {
                stream.stats.sender_clock =
                    Some(SenderClock { ntp: info.ntp, rtp_timestamp: info.rtp_timestamp, received_at: now });
            }
            if (packet.packet_type, packet.count) == (rtcp::RTPFB, rtcp::FMT_NACK)
                && let (Ok(media), Ok(lost)) = (rtcp::media_ssrc(&packet), rtcp::nack_lost(&packet))
            {
                self.retransmit(now, id, media, lost, out);
            }
            if (packet.packet_type, packet.count) == (rtcp::RTPFB, rtcp::FMT_TWCC) {
                self.twcc_scratch.clear();
                if twcc::read(&packet, &mut self.twcc_scratch).is_ok()
                    && let Some(p) = self.participants.get_mut(id)
                {
                    p.bwe.on_feedback(&self.twcc_scratch, micros_since(self.origin, now));
                    self.allocate_downlink(now, id);
                }
            }
            if (packet.packet_type, packet.count) == (rtcp::PSFB, rtcp::FMT_AFB)
                && let Some((bitrate, _)) = rtcp::remb(&packet)
            {
                self.on_remb(now, id, bitrate);
            }
            let keyframe_request =
                matches!((packet.packet_type, packet.count), (rtcp::PSFB, rtcp::FMT_PLI) | (rtcp::PSFB, rtcp::FMT_FIR));
            if keyframe_request && let Ok(media) = rtcp::media_ssrc(&packet) {
                let media = if packet.count == rtcp::FMT_FIR {
                    rtcp::fir_entries(&packet).ok().and_then(|mut e| e.next()).map_or(media, |(ssrc, _)| ssrc)
                } else {
                    media
                };
                self.request_keyframe(now, id, media, out);
            }
        }
    }

    /// A subscriber asked for a keyframe of the stream it knows as `media_ssrc`: pass one PLI per interval to
    /// the publisher, however many subscribers ask (no keyframe storms when many join at once).
    pub(super) fn request_keyframe(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        media_ssrc: u32,
        out: &mut Transmits,
    ) {
        let Core { participants, subscriptions, .. } = self;
        let Some(p) = participants.get_mut(subscriber) else { return };
        p.media.plis_in += 1;
        let p = &*p;
        let Some(sub) =
            p.subscriptions.iter().filter_map(|s| subscriptions.get(*s)).find(|s| s.spec.ssrc == media_ssrc)
        else {
            return;
        };
        // The layer it is switching to, or the one it gets.
        let (track, layer) = (sub.track, sub.layer.unwrap_or(sub.target_layer));
        self.send_pli(now, track, layer, out);
    }

    /// One PLI to the track's publisher, unless one went out less than `keyframe_request_interval` ago.
    pub(super) fn send_pli(&mut self, now: Instant, track_id: TrackId, quality: u8, out: &mut Transmits) {
        let Core { participants, tracks, counters, config, events, .. } = self;
        let Some(track) = tracks.get_mut(track_id) else { return };
        let layer = track.spec.stream_of(quality);
        let last = &mut track.last_keyframe_request[usize::from(layer)];
        if last.is_some_and(|t| now.saturating_duration_since(t) < config.keyframe_request_interval) {
            counters.keyframe_requests_limited += 1;
            return;
        }
        let Some(publisher) = track.publisher else {
            // A mirror: the publisher's worker sends the PLI.
            if let Some(key) = track.relay.key {
                events.push_back(Event::KeyframeNeeded { key, layer });
                *last = Some(now);
                counters.keyframe_requests_forwarded += 1;
            }
            return;
        };
        let Some(publisher) = participants.get_mut(publisher) else { return };
        // The layer's SSRC, once known (a RID-only layer that never sent cannot be asked yet).
        let Some(media) = publisher.inbound.iter().find(|s| s.track == track_id && s.layer == layer).map(|s| s.ssrc)
        else {
            return;
        };
        let (Some(destination), Some(tx)) = (publisher.address, publisher.tx.as_ref()) else { return };
        let Some(slot) = out.slot() else {
            counters.drops[DropReason::TransmitFull as usize] += 1;
            return;
        };
        let len = rtcp::write_pli(slot, SFU_RTCP_SSRC, media).expect("a PLI fits a datagram buffer");
        publisher.srtcp_index = (publisher.srtcp_index + 1) & 0x7fff_ffff;
        let len = tx.protect_rtcp(slot, len, publisher.srtcp_index).expect("slot has room for SRTCP's trailer");
        out.commit(destination, len);
        *last = Some(now);
        counters.keyframe_requests_forwarded += 1;
        counters.rtcp_out += 1;
        counters.bytes_out += len as u64;
    }
}
