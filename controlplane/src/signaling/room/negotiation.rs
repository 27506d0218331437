//! Negotiation: the sections of each member's connection (uplinks it publishes on, downlinks it receives on),
//! the offers we make when they change, and what an answer does (tracks published, subscriptions started,
//! rejected sections closed, refused answers retried with backoff). The room's other parts call `negotiate` after
//! changing sections; only this module writes offers and reads answers.

use super::*;

impl Room {
    /// Adds an uplink section for `source`; false if the participant publishes it already or has too many.
    pub(super) fn open_uplink(&mut self, id: &str, source: Source) -> bool {
        // Cameras only: a screen share is read at full resolution, and its frame rate drops rather than its size.
        let svc = source == Source::Camera && self.ctx.settings.video_svc;
        let simulcast = source == Source::Camera && self.ctx.settings.simulcast && !svc;
        let Some(m) = self.member(id) else { return false };
        let open = m.sections.iter().any(|s| matches!(s.binding, Binding::Uplink { source: s2, .. } if s2 == source));
        if open {
            return false;
        }
        let kind = if source.is_audio() { MediaKind::Audio } else { MediaKind::Video };
        let info = SectionInfo {
            mid: String::new(),
            role: SectionUse::Publish,
            source: Some(source),
            participant_id: None,
            track_id: None,
            scalability_mode: svc.then_some(SVC_MODE),
        };
        m.add_section(kind, SectionRole::Uplink, simulcast, info, Binding::Uplink { source, published: false })
    }

    /// Adds a downlink section to `subscriber` for a track of `publisher`; subscribed in the dataplane once the
    /// subscriber's browser accepted it.
    pub(super) fn open_downlink(&mut self, subscriber: &str, publisher: &str, track_id: &str) {
        let Some(p) = self.members.iter().find(|m| m.id == publisher) else { return };
        let Some(track) = p.published.iter().find(|t| t.track_id == track_id) else { return };
        let (codec, source, kind) = (track.codec, track.source, track.spec.kind);
        let Some(s) = self.member(subscriber) else { return };
        if !s.grants.subscribe {
            return;
        }
        let rtx_ssrc = (kind == MediaKind::Video).then(rand::random::<u32>);
        let downlink = Downlink {
            codec,
            ssrc: rand::random(),
            rtx_ssrc,
            stream_id: publisher.to_string(),
            track_id: track_id.to_string(),
        };
        let info = SectionInfo {
            mid: String::new(),
            role: SectionUse::Subscribe,
            source: Some(source),
            participant_id: Some(publisher.to_string()),
            track_id: Some(track_id.to_string()),
            scalability_mode: None,
        };
        let binding = Binding::Downlink {
            publisher: publisher.to_string(),
            track_id: track_id.to_string(),
            subscription: None,
            layer: None,
        };
        if !s.add_section(kind, SectionRole::Downlink(downlink), false, info, binding) {
            // Closed sections stay in every offer; a connection that has used them all starts afresh.
            s.send(ServerMessage::error(ErrorCode::Limit, format!("more than {SECTIONS_MAX} media sections")));
            let _ = s.out.try_send(Outbound::Close(close::RENEW, "too many media sections: reconnect".into()));
        }
    }

    /// Sends the next offer to `id`, or marks that one is due once the outstanding one is answered.
    pub(super) fn negotiate(&mut self, id: &str) {
        let extensions = ExtensionIds::default();
        let fingerprint = self.ctx.runtime.fingerprint();
        let candidates = Arc::clone(&self.ctx.candidates);
        let Some(m) = self.member(id) else { return };
        // A WHIP publisher negotiated once, by its own offer; it has no connection to send offers on.
        if m.ingest {
            return;
        }
        if m.awaiting.is_some() {
            m.renegotiate = true;
            return;
        }
        if m.sections.is_empty() {
            return;
        }
        m.revision += 1;
        m.renegotiate = false;
        m.awaiting = Some(m.revision);
        m.offered = m.sections.len();
        for s in &mut m.sections {
            s.closed_in_offer = matches!(s.binding, Binding::Closed);
        }
        let sections: Vec<Section> = m.sections.iter().map(|s| s.section.clone()).collect();
        let sdp = sdp::write_offer(&OfferParams {
            session_id: m.session_id,
            version: m.revision,
            ice_ufrag: &m.ice.ufrag,
            ice_pwd: &m.ice.pwd,
            fingerprint,
            extensions,
            candidates: &[],
            sections: &sections,
        });
        m.send(ServerMessage::Offer {
            revision: m.revision,
            sdp,
            sections: m.sections.iter().map(|s| s.info.clone()).collect(),
        });
        if m.revision == 1 {
            // Trickle: the server's candidates follow the first offer (ICE-lite knows them all up front).
            let mid = sections.iter().find(|s| s.role != SectionRole::Rejected).map(|s| s.mid.clone());
            let mid = mid.unwrap_or_default();
            for candidate in candidates.get(m.worker).into_iter().flatten() {
                m.send(ServerMessage::Candidate { candidate: Some(candidate.clone()), sdp_mid: mid.clone() });
            }
            m.send(ServerMessage::Candidate { candidate: None, sdp_mid: mid });
        }
    }

    pub(super) fn publish(&mut self, id: &str, source: Source) {
        let screen_hosts_only = self.ctx.settings.screenshare_hosts_only;
        let Some(m) = self.member(id) else { return };
        if !may_publish(&m.grants, source) {
            let what = source.as_str();
            return m
                .send(ServerMessage::error(ErrorCode::Forbidden, format!("you may not publish a {what}: no grant")));
        }
        if source == Source::Screen && screen_hosts_only && !m.grants.host {
            return m.send(ServerMessage::error(ErrorCode::Forbidden, "only hosts share screens in this meeting"));
        }
        if m.held.contains(&source) {
            if !m.asked.contains(&source) {
                let text = format!("a host stopped your {}; you can start it when a host asks", source.as_str());
                return m.send(ServerMessage::error(ErrorCode::Forbidden, text));
            }
            // Publishing what a host asked to unmute is accepting the request.
            m.held.retain(|s| *s != source);
            m.asked.retain(|s| *s != source);
            let (user, held) = (m.user_id.clone(), m.held.clone());
            self.held.insert(user, held);
        }
        if source == Source::Screen && !self.ctx.settings.allow_screenshare {
            let m = self.member(id).expect("found above");
            return m.send(ServerMessage::error(ErrorCode::Forbidden, "screen sharing is off in this meeting"));
        }
        if !self.open_uplink(id, source) {
            let m = self.member(id).expect("found above");
            return m.send(ServerMessage::error(
                ErrorCode::BadState,
                format!("already publishing {} (or too many sections)", source.as_str()),
            ));
        }
        self.negotiate(id);
    }

    pub(super) async fn answer(&mut self, id: &str, revision: u64, text: &str) {
        let runtime = Arc::clone(&self.ctx.runtime);
        let Some(m) = self.member(id) else { return };
        if m.awaiting != Some(revision) {
            let expected = m.awaiting.map_or("none".to_string(), |r| r.to_string());
            return m.send(ServerMessage::error(
                ErrorCode::StaleAnswer,
                format!("answer to revision {revision}, but the outstanding offer is {expected}"),
            ));
        }
        let answer = match sdp::parse_answer(text) {
            Ok(answer) => answer,
            Err(e) => return self.refuse_answer(id, ErrorCode::BadSdp, e.to_string()),
        };
        if let Some(missing) = m.sections[..m.offered].iter().find(|s| answer.section(&s.section.mid).is_none()) {
            let text = format!("the answer has no section with mid {}", missing.section.mid);
            return self.refuse_answer(id, ErrorCode::BadSdp, text);
        }
        match m.fingerprint {
            None => {
                let (worker, core, fingerprint) = (m.worker, m.core, answer.fingerprint);
                if let Err(e) = media(&runtime, move |rt| rt.expect_dtls(worker, core, fingerprint)).await {
                    return self.refuse_answer(id, ErrorCode::Internal, format!("cannot set up DTLS: {e}"));
                }
                self.member(id).expect("found above").fingerprint = Some(fingerprint);
            }
            Some(known) if known != answer.fingerprint => {
                let text = "the answer's DTLS fingerprint differs from the first answer's: start a new connection";
                return self.refuse_answer(id, ErrorCode::BadSdp, text.into());
            }
            Some(_) => {}
        }
        let m = self.member(id).expect("found above");
        m.awaiting = None;
        m.refusals = 0;
        // Sections the answered offer closed are stopped in the browser: their m-lines may be reused.
        for s in &mut m.sections[..m.offered] {
            s.recyclable |= s.closed_in_offer && matches!(s.binding, Binding::Closed);
        }
        self.close_rejected(id, &answer).await;
        self.apply_uplinks(id, &answer).await;
        self.apply_downlinks(id, &answer).await;
        self.remove_closed_tracks(id).await;
        if self.member(id).is_some_and(|m| m.renegotiate) {
            self.negotiate(id);
        }
    }

    /// Revoked tracks whose closed sections the browser has now answered: gone from the dataplane.
    pub(super) async fn remove_closed_tracks(&mut self, id: &str) {
        let Some(m) = self.member(id) else { return };
        let (worker, closing) = (m.worker, std::mem::take(&mut m.closing));
        for track in closing {
            if let Err(e) = media(&self.ctx.runtime, move |rt| rt.remove_track(worker, track)).await {
                tracing::warn!(error = %e, "removing a revoked track failed");
            }
        }
    }

    /// An answer we cannot use: the error says why, and a fresh offer follows (the browser applied its answer and
    /// is stable, so without one negotiation would stop here).
    pub(super) fn refuse_answer(&mut self, id: &str, code: ErrorCode, text: String) {
        let Some(m) = self.member(id) else { return };
        m.send(ServerMessage::error(code, text.clone()));
        m.awaiting = None;
        m.refusals += 1;
        if m.refusals > ANSWER_REFUSALS_MAX {
            let reason = format!("{} answers in a row could not be used; the last: {text}", m.refusals);
            let _ = m.out.try_send(Outbound::Close(close::NEGOTIATION, reason));
            return;
        }
        // A client that answers the same way again must not loop: each fresh offer waits twice as long.
        let delay = ANSWER_RETRY_BASE * 2u32.pow(m.refusals - 1);
        let (commands, participant) = (self.ctx.commands.clone(), id.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(room) = commands.upgrade() {
                let _ = room.send(RoomCommand::Renegotiate { participant }).await;
            }
        });
    }

    /// Sections the browser rejected (port 0) are closed for good, as JSEP requires.
    /// Sections the browser rejected are closed; a rejected downlink it had accepted before stops receiving in
    /// the dataplane too (a client cannot keep a subscription by rejecting its section).
    pub(super) async fn close_rejected(&mut self, id: &str, answer: &sdp::Answer) {
        let Some(m) = self.member(id) else { return };
        let (offered, worker) = (m.offered, m.worker);
        let mut unsubscribe = Vec::new();
        for s in &mut m.sections[..offered] {
            if !matches!(s.binding, Binding::Closed) && answer.section(&s.section.mid).is_some_and(|a| a.rejected) {
                if let Binding::Downlink { subscription: Some(sub), .. } = s.binding {
                    unsubscribe.push(sub);
                }
                close_section(s);
                m.renegotiate = true;
            }
        }
        for sub in unsubscribe {
            if let Err(e) = media(&self.ctx.runtime, move |rt| rt.unsubscribe(worker, sub)).await {
                tracing::warn!(error = %e, "unsubscribing a rejected downlink failed");
            }
        }
    }

    /// Uplink sections the browser now sends on become tracks; everyone else gets a section for them.
    pub(super) async fn apply_uplinks(&mut self, id: &str, answer: &sdp::Answer) {
        let runtime = Arc::clone(&self.ctx.runtime);
        let Some(m) = self.member(id) else { return };
        let mut new_tracks = Vec::new();
        let mut refused = Vec::new();
        for (index, s) in m.sections[..m.offered].iter().enumerate() {
            let Binding::Uplink { source, published: false } = s.binding else { continue };
            // A grant revoked while the section was being answered: it is not published, and closes.
            if !may_publish(&m.grants, source) {
                refused.push(index);
                continue;
            }
            let Some(a) = answer.section(&s.section.mid).filter(|a| !a.rejected && a.direction.sends()) else {
                continue;
            };
            let spec = a
                .send_codec(&sdp::offer::uplink_codecs(s.section.kind, s.section.prefer))
                .ok_or("names no codec we forward")
                .and_then(|(codec, pt)| uplink_spec(&s.section, a, codec).map(|spec| (spec, pt)))
                // SVC where we asked for it and the answer took VP9 (else one layer, or simulcast).
                .map(|(spec, pt)| match s.info.scalability_mode {
                    Some(_) => (spec.with_spatial_layers(SVC_SPATIAL_LAYERS), pt),
                    None => (spec, pt),
                });
            match spec {
                Ok((spec, pt)) => new_tracks.push((index, source, spec, spec.codec, pt)),
                Err(why) => m.send(ServerMessage::error(
                    ErrorCode::BadSdp,
                    format!("section {} sends but {why}", s.section.mid),
                )),
            }
        }
        for index in refused.iter().copied() {
            close_section(&mut m.sections[index]);
        }
        if !refused.is_empty() {
            m.renegotiate = true;
        }
        let (worker, core) = (m.worker, m.core);
        let mut added = Vec::new();
        for (index, source, spec, codec, payload_type) in new_tracks {
            // The layer allocator serves screen shares before cameras.
            let spec = spec.with_screen(source == Source::Screen);
            match media(&runtime, move |rt| rt.add_track(worker, core, spec)).await {
                Ok(track) => {
                    let m = self.member(id).expect("found above");
                    // Stopped by a host while the section was being answered: published, but blocked and muted.
                    let held = m.held.contains(&source);
                    if held && let Err(e) = media(&runtime, move |rt| rt.block_track(worker, track, true)).await {
                        tracing::warn!(error = %e, "blocking a held track failed");
                    }
                    let m = self.member(id).expect("found above");
                    let muted_early = m.muted_early.contains(&source);
                    m.muted_early.retain(|s| *s != source);
                    let track_id = ids::prefixed("t");
                    m.sections[index].binding = Binding::Uplink { source, published: true };
                    m.sections[index].info.track_id = Some(track_id.clone());
                    let published = Published {
                        track_id: track_id.clone(),
                        source,
                        codec,
                        spec,
                        core: track,
                        muted: held || muted_early,
                        payload_type,
                    };
                    added.push(published.info());
                    m.published.push(published);
                }
                Err(e) => {
                    let m = self.member(id).expect("found above");
                    m.send(ServerMessage::error(
                        ErrorCode::Internal,
                        format!("cannot publish {}: {e}", source.as_str()),
                    ));
                }
            }
        }
        let room = self.room_of(id);
        for track in added {
            let others: Vec<String> =
                self.members.iter().filter(|o| o.id != id && o.room == room).map(|o| o.id.clone()).collect();
            for other in others {
                self.member(&other)
                    .expect("listed above")
                    .send(ServerMessage::TrackAdded { participant_id: id.to_string(), track: track.clone() });
                self.open_downlink(&other, id, &track.track_id);
                self.negotiate(&other);
            }
        }
    }

    /// Downlink sections the browser accepted start receiving their track.
    pub(super) async fn apply_downlinks(&mut self, id: &str, answer: &sdp::Answer) {
        let runtime = Arc::clone(&self.ctx.runtime);
        let Some(m) = self.member(id) else { return };
        let (worker, core) = (m.worker, m.core);
        let mut todo = Vec::new();
        for (index, s) in m.sections[..m.offered].iter().enumerate() {
            let (Binding::Downlink { publisher, track_id, subscription: None, layer }, SectionRole::Downlink(d)) =
                (&s.binding, &s.section.role)
            else {
                continue;
            };
            if let Some(a) = answer.section(&s.section.mid).filter(|a| !a.rejected) {
                // The payload type the receiver maps to the codec (ours in a browser's answer; a WHEP player's
                // own in its offer).
                let pt = a.send_codec(&[d.codec]).map(|(_, pt)| pt);
                todo.push((index, publisher.clone(), track_id.clone(), d.clone(), *layer, pt));
            }
        }
        for (index, publisher, track_id, d, layer, receiver_pt) in todo {
            let Some(origin) = self.members.iter().find(|p| p.id == publisher) else { continue };
            let Some(track) = origin.published.iter().find(|t| t.track_id == track_id) else { continue };
            let (origin_worker, origin_track, spec) = (origin.worker, track.core, track.spec);
            // A publisher's payload type (a WHIP client's own) may differ from the receiver's: rewritten to it.
            let wanted = receiver_pt.unwrap_or_else(|| sdp::offer::payload_type(track.codec));
            let sub = SubscriptionSpec {
                ssrc: d.ssrc,
                payload_type: (track.payload_type != wanted).then_some(wanted),
                rtx: d.rtx_ssrc.and_then(|ssrc| {
                    sdp::offer::rtx_payload_type(d.codec).map(|payload_type| RtxSpec { ssrc, payload_type })
                }),
            };
            let result = media(&runtime, move |rt| {
                let local = rt.track_on(origin_worker, origin_track, spec, worker)?;
                let subscription = rt.subscribe(worker, core, local, sub)?;
                if let Some(layer) = layer {
                    rt.set_layer(worker, subscription, layer)?;
                }
                Ok(subscription)
            })
            .await;
            let m = self.member(id).expect("found above");
            match result {
                Ok(id) => {
                    if let Binding::Downlink { subscription, .. } = &mut m.sections[index].binding {
                        *subscription = Some(id);
                    }
                }
                Err(e) => m.send(ServerMessage::error(ErrorCode::Internal, format!("cannot receive {track_id}: {e}"))),
            }
        }
    }

    /// Closes the source's section, published yet or not (a screen share stopped before the answer came).
    pub(super) async fn unpublish(&mut self, id: &str, source: Source) {
        let Some(m) = self.member(id) else { return };
        let mut open = false;
        for s in &mut m.sections {
            if matches!(s.binding, Binding::Uplink { source: s2, .. } if s2 == source) {
                close_section(s);
                open = true;
            }
        }
        if !open {
            return m.send(ServerMessage::error(ErrorCode::BadState, format!("not publishing {}", source.as_str())));
        }
        if let Some(index) = m.published.iter().position(|p| p.source == source) {
            let track = m.published.remove(index);
            let (worker, core_track) = (m.worker, track.core);
            if let Err(e) = media(&self.ctx.runtime, move |rt| rt.remove_track(worker, core_track)).await {
                tracing::warn!(error = %e, "removing a track from the dataplane failed");
            }
            let room = self.room_of(id);
            self.track_gone(id, &room, &track.track_id);
        }
        self.negotiate(id);
    }

    /// Tells the publisher's room a track is gone and closes every section for it.
    pub(super) fn track_gone(&mut self, publisher: &str, room: &str, track_id: &str) {
        let mut changed = Vec::new();
        for other in self.members.iter_mut().filter(|o| o.id != publisher) {
            if other.room == room {
                other.send(ServerMessage::TrackRemoved {
                    participant_id: publisher.to_string(),
                    track_id: track_id.to_string(),
                });
            }
            let mut any = false;
            for s in &mut other.sections {
                if matches!(&s.binding, Binding::Downlink { track_id: t, .. } if t == track_id) {
                    close_section(s);
                    any = true;
                }
            }
            if any {
                changed.push(other.id.clone());
            }
        }
        for other in changed {
            self.negotiate(&other);
        }
    }

    /// A subscriber chooses the simulcast layer it receives of a track.
    pub(super) async fn set_layer(&mut self, id: &str, track_id: &str, layer: u8) {
        let runtime = Arc::clone(&self.ctx.runtime);
        let layers = self.members.iter().flat_map(|m| &m.published).find(|t| t.track_id == track_id);
        let layers = layers.map(|t| t.spec.qualities());
        let Some(m) = self.member(id) else { return };
        let Some(layers) = layers else {
            return m.send(ServerMessage::error(ErrorCode::BadState, format!("no track {track_id} is published")));
        };
        if usize::from(layer) >= layers {
            let text = format!("track {track_id} has {layers} layer(s): layer must be 0 to {}", layers - 1);
            return m.send(ServerMessage::error(ErrorCode::BadMessage, text));
        }
        let worker = m.worker;
        let binding = m.sections.iter_mut().find_map(|s| match &mut s.binding {
            Binding::Downlink { track_id: t, subscription, layer: asked, .. } if t == track_id => {
                Some((subscription, asked))
            }
            _ => None,
        });
        let Some((subscription, asked)) = binding else {
            return m.send(ServerMessage::error(ErrorCode::BadState, format!("not receiving track {track_id}")));
        };
        *asked = Some(layer);
        // Not subscribed yet: the layer is set when the answer accepts the section.
        let Some(subscription) = *subscription else { return };
        if let Err(e) = media(&runtime, move |rt| rt.set_layer(worker, subscription, layer)).await
            && let Some(m) = self.member(id)
        {
            m.send(ServerMessage::error(ErrorCode::Internal, format!("cannot change the layer of {track_id}: {e}")));
        }
    }
}

pub(super) fn close_section(s: &mut SectionState) {
    s.section.role = SectionRole::Rejected;
    s.info.role = SectionUse::Closed;
    // A closed section names nobody: it stays in every offer, and who it carried may be in another room now.
    s.info.participant_id = None;
    s.info.track_id = None;
    s.binding = Binding::Closed;
}

/// Runs a (briefly blocking) dataplane call off the async threads.
/// The track an uplink section's answer publishes: simulcast layers by RID where we asked for them and the
/// browser sends them (lowest quality first, whatever order it lists them in), else one SSRC.
fn uplink_spec(section: &Section, answer: &sdp::AnswerSection, codec: Codec) -> Result<TrackSpec, &'static str> {
    let rids: Vec<Tag> =
        simulcast_rids(&answer.send_rids).into_iter().filter(|_| section.simulcast).filter_map(Tag::new).collect();
    if !rids.is_empty() {
        let mid = Tag::new(&section.mid).ok_or("its MID cannot name simulcast layers")?;
        return Ok(TrackSpec::simulcast(mid, &rids, codec));
    }
    if let Some(ssrc) = answer.media_ssrc() {
        return Ok(TrackSpec::single(ssrc, section.kind).with_codec(codec));
    }
    // No a=ssrc: the stream is known by the MID its packets carry (RFC 8843 section 15), if the MID extension
    // was accepted.
    if !answer.mid_extension {
        return Err(
            "names no SSRC (a=ssrc), accepts no MID header extension, and sends no simulcast layers we asked for",
        );
    }
    let mid = Tag::new(&section.mid).ok_or("its MID cannot name a stream")?;
    Ok(TrackSpec::by_mid(mid, section.kind).with_codec(codec))
}

/// The layers of a simulcast stream, lowest quality first, at most three: our RIDs (`q`, `h`, `f`) in that order
/// whatever order they are listed in; a WHIP client's own RIDs in the order its `a=simulcast` lists them.
pub(crate) fn simulcast_rids(listed: &[String]) -> Vec<&str> {
    let ours = sdp::offer::SIMULCAST_RIDS;
    if listed.iter().all(|r| ours.contains(&r.as_str())) {
        ours.iter().copied().filter(|rid| listed.iter().any(|r| r == rid)).collect()
    } else {
        listed.iter().map(String::as_str).take(ours.len()).collect()
    }
}
