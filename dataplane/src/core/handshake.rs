//! Step 2c: DTLS-SRTP, off the packet path. Records wait in the participant's inbox; `handle_handshakes`
//! feeds them to dimpl between packet batches, checks the peer's certificate against its SDP fingerprint and
//! installs the exported SRTP keys.

use super::*;

impl Core {
    /// Expects a DTLS handshake from the participant, whose certificate must match `remote` (its SDP's
    /// `a=fingerprint`). We are the DTLS server (`a=setup:passive` on our side). Records that arrived before
    /// this call are processed now.
    pub fn expect_dtls(&mut self, id: ParticipantId, remote: Fingerprint, now: Instant) -> Result<(), CoreError> {
        let p = self.participants.get_mut(id).ok_or(CoreError::UnknownParticipant)?;
        let mut server = self.identity.server(now);
        // dimpl sets up its handshake state (the server random) in its first timeout; it must run before any
        // record is handled.
        if server.handle_timeout(now).is_err() {
            return Err(CoreError::Dtls("the DTLS endpoint did not start"));
        }
        p.dtls = Some(Box::new(server));
        p.remote_fingerprint = Some(remote);
        p.peer_verified = false;
        p.dtls_failed = false;
        if !self.handshaking.contains(&id) {
            self.handshaking.push(id);
        }
        if !p.dtls_inbox.is_empty() && !p.handshake_queued {
            p.handshake_queued = true;
            self.handshake_queue.push_back(id);
        }
        Ok(())
    }

    /// DTLS records wait in the participant's inbox for [`Core::handle_handshakes`], off the media path.
    pub(super) fn handle_dtls(&mut self, source: SocketAddr, datagram: &[u8]) {
        let Some(&id) = self.by_address.get(&source) else { return self.drop(DropReason::UnknownSource) };
        let p = self.participants.get_mut(id).expect("by_address only names live participants");
        if p.dtls_failed {
            return self.drop(DropReason::DtlsFailed);
        }
        if p.dtls_inbox.len() >= DTLS_INBOX_MAX {
            return self.drop(DropReason::DtlsBacklog);
        }
        // Handshake records are copied out (a few per participant, once); media never takes this path.
        p.dtls_inbox.push_back(datagram.to_vec());
        if p.dtls.is_some() && !p.handshake_queued {
            p.handshake_queued = true;
            self.handshake_queue.push_back(id);
        }
    }

    /// Runs up to `budget` participants' pending DTLS work (records received, timers due) and writes the
    /// records it produces into `out`. The runtime calls this between packet batches, so a join storm's
    /// handshakes (ECDHE, ECDSA) never stall forwarding for the participants already in. Returns how many ran.
    pub fn handle_handshakes(&mut self, now: Instant, budget: usize, out: &mut Transmits) -> usize {
        let mut ran = 0;
        while ran < budget {
            let Some(id) = self.handshake_queue.pop_front() else { break };
            if let Some(p) = self.participants.get_mut(id) {
                p.handshake_queued = false;
                self.drive_dtls(now, id, out);
            }
            ran += 1;
        }
        ran
    }

    pub(super) fn drive_dtls(&mut self, now: Instant, id: ParticipantId, out: &mut Transmits) {
        let Core { participants, events, counters, dtls_scratch, handshaking, .. } = self;
        let p = participants.get_mut(id).expect("the caller checked");
        let Some(dtls) = p.dtls.as_mut() else { return };
        let mut failure = None;
        // dimpl's clock is the time of its last timeout call: tell it the time before the records, so its timers
        // and a flight it sends again in answer to the peer's repeated one start from now (not from when the
        // handshake was expected, which once made a needless resend that then held back the real one). It fires
        // only timers that are due.
        p.dtls_timeout = None;
        if dtls.handle_timeout(now).is_err() {
            failure = Some(DtlsFailure::Handshake);
        }
        while failure.is_none()
            && let Some(record) = p.dtls_inbox.pop_front()
        {
            if dtls.handle_packet(&record).is_err() {
                failure = Some(DtlsFailure::Handshake);
            }
        }
        while failure.is_none() {
            match dtls.poll_output(dtls_scratch) {
                dimpl::Output::Packet(record) => match (p.address, out.slot()) {
                    (Some(to), Some(slot)) if record.len() <= slot.len() => {
                        slot[..record.len()].copy_from_slice(record);
                        out.commit(to, record.len());
                        counters.bytes_out += record.len() as u64;
                    }
                    _ => counters.drops[DropReason::TransmitFull as usize] += 1,
                },
                dimpl::Output::Timeout(at) => {
                    p.dtls_timeout = Some(at);
                    break;
                }
                dimpl::Output::PeerCert(der) => {
                    p.peer_verified = p.remote_fingerprint == Some(Fingerprint::of_certificate(der));
                    if !p.peer_verified {
                        failure = Some(DtlsFailure::FingerprintMismatch);
                    }
                }
                dimpl::Output::KeyingMaterial(material, negotiated) => {
                    let keys = dtls::profile_of(negotiated)
                        .and_then(|profile| Some((profile, dtls::split_keying_material(profile, &material)?)));
                    match keys {
                        _ if !p.peer_verified => failure = Some(DtlsFailure::FingerprintMismatch),
                        Some((profile, (client, server))) => {
                            // We are the DTLS server: the server's key protects what we send (RFC 5764 4.2).
                            p.tx = srtp::Context::new(profile, server.0, server.1).ok();
                            p.rx = srtp::Context::new(profile, client.0, client.1).ok();
                            // Media can flow once the keys are in (dimpl reports `Connected` before this). The DTLS
                            // timers keep running: our last flight may be lost, and the browser's retransmission of its
                            // own is answered from them.
                            events.push_back(Event::Connected { participant: id });
                        }
                        None => failure = Some(DtlsFailure::NoSrtpProfile),
                    }
                }
                dimpl::Output::CloseNotify => {
                    p.gone = true;
                    events.push_back(Event::Gone { participant: id });
                }
                _ => {}
            }
        }
        if let Some(reason) = failure {
            p.dtls_failed = true;
            p.dtls = None;
            p.tx = None;
            p.rx = None;
            p.dtls_inbox.clear();
            handshaking.retain(|h| *h != id);
            events.push_back(Event::DtlsFailed { participant: id, reason });
        }
    }
}
