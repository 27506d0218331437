//! Step 8: timers. Layer allocation, pacing and probe padding, NACK retries, Sender and Receiver Reports once a second,
//! consent freshness, DTLS timers.

use super::*;

impl Core {
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Transmits) {
        if self.next_feedback.is_some_and(|t| t <= now) {
            self.send_transport_feedback(out);
            self.next_feedback = (!self.feedback_pending.is_empty()).then_some(now + FEEDBACK_INTERVAL);
        }
        if self.next_allocation.is_some_and(|t| t <= now) {
            self.allocate_all(now);
        }
        if self.next_pace.is_some_and(|t| t <= now) {
            self.pace(now, out);
        }
        if self.next_probe.is_some_and(|t| t <= now) {
            self.send_padding(now, out);
        }
        if self.next_nack.is_some_and(|t| t <= now) {
            self.send_nacks(now, out);
        }
        if self.next_reports.is_some_and(|t| t <= now) {
            self.next_reports = Some(now + REPORT_INTERVAL);
            self.send_reports(now, out);
        }
        // DTLS timers become handshake work, run by `handle_handshakes` like received records.
        for id in &self.handshaking {
            if let Some(p) = self.participants.get_mut(*id)
                && p.dtls_timeout.is_some_and(|t| t <= now)
                && !p.handshake_queued
            {
                p.handshake_queued = true;
                self.handshake_queue.push_back(*id);
            }
        }
        let Some(due) = self.next_consent_check else { return };
        if now < due {
            return;
        }
        self.next_consent_check = Some(now + CONSENT_CHECK_INTERVAL);
        let timeout = self.config.consent_timeout;
        let Core { participants, by_address, events, .. } = self;
        for (id, p) in participants.iter_mut() {
            if let Some((old, until)) = p.previous_address
                && until <= now
            {
                p.previous_address = None;
                // Unless the participant moved back there, or someone else has it now.
                if by_address.get(&old) == Some(&id) && p.address != Some(old) {
                    by_address.remove(&old);
                }
            }
        }
        for (id, p) in participants.iter() {
            let expired = p.last_consent.is_some_and(|t| now.saturating_duration_since(t) >= timeout);
            if expired && !p.gone {
                events.push_back(Event::Gone { participant: id });
                for addr in p.address.into_iter().chain(p.previous_address.map(|(a, _)| a)) {
                    by_address.remove(&addr);
                }
            }
        }
        for event in self.events.iter() {
            if let Event::Gone { participant } = event
                && let Some(p) = self.participants.get_mut(*participant)
            {
                p.gone = true;
            }
        }
    }

    /// Step 8: one round of RTCP reports. Each connected participant gets a Sender Report for every stream we
    /// forward to it (NTP time from our wallclock, RTP time extrapolated from the publisher's own last SR, so a
    /// publisher's audio and video stay in sync) and a Receiver Report with a block for every stream it publishes.
    /// Transport-wide feedback to every participant with arrivals not reported yet.
    pub(super) fn send_transport_feedback(&mut self, out: &mut Transmits) {
        let mut i = 0;
        while i < self.feedback_pending.len() {
            let id = self.feedback_pending[i];
            let Some(p) = self.participants.get_mut(id) else {
                self.feedback_pending.swap_remove(i);
                continue;
            };
            let media = p.inbound.first().map_or(0, |s| s.ssrc);
            if let Some(len) = p.arrivals.write_feedback(&mut self.report_scratch, SFU_RTCP_SSRC, media) {
                self.send_rtcp(id, len, out);
                self.counters.transport_feedback_sent += 1;
            }
            match self.participants.get(id).is_some_and(|p| p.arrivals.has_pending()) {
                true => i += 1,
                false => {
                    self.feedback_pending.swap_remove(i);
                }
            }
        }
    }

    pub(super) fn send_reports(&mut self, now: Instant, out: &mut Transmits) {
        let Some(clock) = self.wallclock else { return };
        let ntp = clock.ntp(now);
        self.round_ids.clear();
        self.round_ids.extend(
            self.participants
                .iter()
                .filter(|(_, p)| p.tx.is_some() && p.address.is_some() && !p.gone)
                .map(|(id, _)| id),
        );
        for i in 0..self.round_ids.len() {
            let id = self.round_ids[i];
            let mut len = 0;
            let subscriptions = self.participants.get(id).map_or(0, |p| p.subscriptions.len());
            for s in 0..subscriptions {
                let Some(info) = self.sender_info(id, s, now, ntp) else { continue };
                if len + 28 > REPORT_DATAGRAM_MAX {
                    self.send_rtcp(id, len, out);
                    len = 0;
                }
                len += rtcp::write_sender_report(&mut self.report_scratch[len..], &info, &[]).expect("28 bytes fit");
                self.counters.sender_reports_sent += 1;
            }
            let mut blocks = [rtcp::ReportBlock::default(); 31];
            let mut count = 0;
            if let Some(p) = self.participants.get_mut(id) {
                for stream in p.inbound.iter_mut().take(blocks.len()) {
                    if let Some(block) = stream.stats.report_block(stream.ssrc, stream.window.highest(), now) {
                        blocks[count] = block;
                        count += 1;
                    }
                }
            }
            if count > 0 {
                if len + 8 + rtcp::REPORT_BLOCK_LEN * count > REPORT_DATAGRAM_MAX {
                    self.send_rtcp(id, len, out);
                    len = 0;
                }
                len += rtcp::write_receiver_report(&mut self.report_scratch[len..], SFU_RTCP_SSRC, &blocks[..count])
                    .expect("at most 31 blocks fit");
                self.counters.receiver_reports_sent += 1;
            }
            if len > 0 {
                self.send_rtcp(id, len, out);
            }
        }
    }

    /// The Sender Report for subscription `index` of `subscriber`, if it has sent media and its publisher has
    /// told us its clock.
    pub(super) fn sender_info(
        &self,
        subscriber: ParticipantId,
        index: usize,
        now: Instant,
        ntp: u64,
    ) -> Option<rtcp::SenderInfo> {
        let sub = self.subscriptions.get(*self.participants.get(subscriber)?.subscriptions.get(index)?)?;
        if sub.packets_sent == 0 {
            return None;
        }
        let track = self.tracks.get(sub.track)?;
        let publisher = self.participants.get(track.publisher?)?;
        let layer = sub.layer?;
        let stream = publisher.inbound.iter().find(|s| s.track == sub.track && s.layer == layer)?;
        let sender_clock = stream.stats.sender_clock?;
        Some(rtcp::SenderInfo {
            ssrc: sub.spec.ssrc,
            ntp,
            rtp_timestamp: sender_clock.rtp_at(now, stream.clock_rate).wrapping_add(sub.timestamp_offset),
            packet_count: sub.packets_sent as u32,
            octet_count: sub.octets_sent as u32,
        })
    }

    /// Encrypts `report_scratch[..len]` for participant `id` and adds it to the batch.
    pub(super) fn send_rtcp(&mut self, id: ParticipantId, len: usize, out: &mut Transmits) {
        let Core { participants, report_scratch, counters, .. } = self;
        let Some(p) = participants.get_mut(id) else { return };
        let (Some(to), Some(tx)) = (p.address, p.tx.as_ref()) else { return };
        let Some(slot) = out.slot() else {
            counters.drops[DropReason::TransmitFull as usize] += 1;
            return;
        };
        slot[..len].copy_from_slice(&report_scratch[..len]);
        p.srtcp_index = (p.srtcp_index + 1) & 0x7fff_ffff;
        let n = tx.protect_rtcp(slot, len, p.srtcp_index).expect("a report datagram leaves room for SRTCP's trailer");
        out.commit(to, n);
        counters.rtcp_out += 1;
        counters.bytes_out += n as u64;
    }
}
