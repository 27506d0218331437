//! Step 2a: ICE-lite (RFC 8445 section 2.5). Binding requests are answered with XOR-MAPPED-ADDRESS, our
//! MESSAGE-INTEGRITY and FINGERPRINT; they keep consent fresh (RFC 7675) and move the participant where the
//! browser nominates. Binding indications (RFC 8445 section 11: the keepalives of libnice and other non-browser
//! stacks) from a participant's address keep it alive too, as does media that authenticates (`media.rs`,
//! `feedback.rs`): liveness is any authenticated traffic.

use super::*;

impl Core {
    pub(super) fn handle_stun(&mut self, now: Instant, source: SocketAddr, datagram: &[u8], out: &mut Transmits) {
        self.counters.stun_in += 1;
        let Ok(msg) = Message::parse(datagram) else { return self.drop(DropReason::MalformedStun) };
        if msg.msg_type == stun::BINDING_INDICATION {
            return self.keepalive(now, source, &msg);
        }
        if msg.msg_type != stun::BINDING_REQUEST {
            return self.drop(DropReason::UnexpectedStun);
        }
        // USERNAME is "<our ufrag>:<their ufrag>" (RFC 8445 section 7.2.2).
        let ufrag = msg
            .get(stun::attr::USERNAME)
            .and_then(|u| u.split(|b| *b == b':').next())
            .and_then(|u| std::str::from_utf8(u).ok());
        let Some(&id) = ufrag.and_then(|u| self.by_ufrag.get(u)) else { return self.drop(DropReason::StunUnknownUser) };
        let p = self.participants.get_mut(id).expect("by_ufrag only names live participants");
        if msg.check_integrity(p.ice.pwd.as_bytes()).is_err() || msg.check_fingerprint().is_err() {
            return self.drop(DropReason::StunAuthFailed);
        }
        let Some(slot) = out.slot() else { return self.drop(DropReason::TransmitFull) };
        let written = Writer::new(slot, stun::BINDING_SUCCESS, msg.transaction_id).and_then(|mut w| {
            w.xor_address(stun::attr::XOR_MAPPED_ADDRESS, source)?.integrity(p.ice.pwd.as_bytes())?.fingerprint()?;
            Ok(w.len())
        });
        let len = written.expect("a binding response fits in a datagram buffer");
        out.commit(source, len);
        self.counters.stun_out += 1;
        self.counters.bytes_out += len as u64;

        p.last_consent = Some(now);
        if self.next_consent_check.is_none() {
            self.next_consent_check = Some(now + CONSENT_CHECK_INTERVAL);
        }
        if p.gone {
            return;
        }
        // The first address that passes a check carries DTLS and media until the browser nominates one; a
        // nomination from a new address moves the participant there (a network change keeps the meeting).
        let use_candidate = msg.has(stun::attr::USE_CANDIDATE);
        let moved = p.address != Some(source);
        if p.address.is_none() || (use_candidate && moved) {
            if let Some((stale, _)) = p.previous_address.take()
                && stale != source
            {
                self.by_address.remove(&stale);
            }
            if let Some(old) = p.address.replace(source) {
                p.previous_address = Some((old, now + PREVIOUS_ADDRESS_GRACE));
            }
            self.by_address.insert(source, id);
        }
        if use_candidate && (moved || !p.nominated) {
            p.nominated = true;
            self.events.push_back(Event::Nominated { participant: id, address: source });
        }
    }

    /// A Binding indication: nothing to answer. From a participant's address (and naming its ufrag, when it names
    /// one) it refreshes liveness; it is counted either way, as it is not forwarded.
    fn keepalive(&mut self, now: Instant, source: SocketAddr, msg: &Message) {
        self.drop(DropReason::StunIndication);
        let Some(&id) = self.by_address.get(&source) else { return };
        let p = self.participants.get_mut(id).expect("by_address only names live participants");
        let named = msg.get(stun::attr::USERNAME).and_then(|u| u.split(|b| *b == b':').next());
        if named.is_some_and(|ufrag| ufrag != p.ice.ufrag.as_bytes()) {
            return;
        }
        if p.last_consent.is_some() {
            p.last_consent = Some(now);
        }
    }
}
