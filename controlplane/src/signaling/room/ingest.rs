//! WHIP ingest (RFC 9725): an encoder (OBS, GStreamer, a hardware box) publishes into the meeting with one HTTP
//! request. It is seated like any participant (the same checks, a seat, a roster entry others see) but has no
//! signaling connection: its one negotiation is its own offer, answered here, and it never receives media.
//!
//! The offer's sections become uplink sections under the client's MIDs, and its offer is read as the answer
//! to them would be: the same path (`apply_uplinks`) turns them into tracks and gives everyone a downlink.

use super::*;
use crate::sdp::whip::{Taken, WhipAnswerParams, accepted_extensions, write_whip_answer};

impl Room {
    /// Seats a WHIP publisher and answers its offer: (participant id, answer SDP), or a close code and reason.
    pub(super) async fn ingest(
        &mut self,
        request: JoinRequest,
        offer: &sdp::Answer,
    ) -> Result<(String, String), (u16, String)> {
        let extensions = ExtensionIds::default();
        let (_, grants) = self.role_of(&request.claims);
        // What each offered section becomes, decided before anything is seated: a refusal leaves no trace.
        let mut taken = Vec::with_capacity(offer.sections.len());
        let mut kinds = Vec::new();
        for s in &offer.sections {
            let kind = match s.media.as_str() {
                "audio" => MediaKind::Audio,
                "video" => MediaKind::Video,
                _ => {
                    taken.push(Taken::Refused);
                    continue;
                }
            };
            let source = if kind == MediaKind::Audio { Source::Microphone } else { Source::Camera };
            if s.rejected || !s.direction.sends() || kinds.contains(&kind) || !may_publish(&grants, source) {
                taken.push(Taken::Refused);
                continue;
            }
            let Some((codec, payload_type)) = s.send_codec(&sdp::offer::uplink_codecs(kind, None)) else {
                let names: Vec<&str> = s.rtpmap.iter().map(|(_, n)| n.as_str()).collect();
                return Err((
                    close::PROTOCOL,
                    format!(
                        "the {} section {:?} offers no codec we forward ({names:?}): use Opus, VP8, VP9 or H.264",
                        s.media, s.mid
                    ),
                ));
            };
            // The stream is named by its SSRC, or by the MID header extension at the ID the dataplane reads.
            let mid_ours = accepted_extensions(s, extensions).iter().any(|(_, uri)| *uri == sdp::offer::URI_MID);
            if s.media_ssrc().is_none() && !mid_ours {
                return Err((
                    close::PROTOCOL,
                    format!(
                        "the {} section {:?} names no SSRC (a=ssrc) and no MID header extension at ID {}",
                        s.media, s.mid, extensions.mid
                    ),
                ));
            }
            kinds.push(kind);
            taken.push(Taken::Receive { kind, codec, payload_type });
        }
        if kinds.is_empty() {
            if !grants.microphone && !grants.camera {
                return Err((close::FORBIDDEN, "this token may not publish a microphone or a camera".into()));
            }
            return Err((
                close::PROTOCOL,
                "nothing to publish: the offer has no audio or video section that sends".into(),
            ));
        }
        // One session per user: a second offer on the same token is refused, not a replacement of the first.
        if self.members.iter().any(|m| m.ingest && m.user_id == request.claims.sub) {
            return Err((close::REPLACED, "this token has a WHIP session already: DELETE it first".into()));
        }
        // An encoder cannot wait for a host to click.
        if self.must_wait(&request.claims) {
            return Err((close::FORBIDDEN, "the meeting has a waiting room: publish with a host's token".into()));
        }
        let id = self.join(request).await?;
        let m = self.member(&id).ok_or((close::UNAVAILABLE, "the publisher was not seated".to_string()))?;
        for (s, t) in offer.sections.iter().zip(&taken) {
            if let Taken::Receive { kind, .. } = *t {
                let source = if kind == MediaKind::Audio { Source::Microphone } else { Source::Camera };
                m.add_ingest_section(kind, source, &s.mid);
            }
        }
        m.offered = m.sections.len();
        let (worker, core, fingerprint) = (m.worker, m.core, offer.fingerprint);
        m.fingerprint = Some(fingerprint);
        if let Err(e) = media(&self.ctx.runtime, move |rt| rt.expect_dtls(worker, core, fingerprint)).await {
            self.leave(&id, LeaveReason::Left).await;
            return Err((close::UNAVAILABLE, format!("cannot set up DTLS: {e}")));
        }
        // Read as the answer to its own sections: only the MID extension at our ID names a stream.
        let mut offer = offer.clone();
        for s in &mut offer.sections {
            s.mid_extension = accepted_extensions(s, extensions).iter().any(|(_, uri)| *uri == sdp::offer::URI_MID);
        }
        self.apply_uplinks(&id, &offer).await;
        let published = self.members.iter().find(|m| m.id == id).map_or(0, |m| m.published.len());
        if published != kinds.len() {
            self.leave(&id, LeaveReason::Left).await;
            return Err((close::UNAVAILABLE, "the dataplane did not take every track".into()));
        }
        let m = self.members.iter().find(|m| m.id == id).expect("seated above");
        let sections: Vec<(&sdp::AnswerSection, Taken)> = offer.sections.iter().zip(taken).collect();
        let answer = write_whip_answer(&WhipAnswerParams {
            session_id: m.session_id,
            ice_ufrag: &m.ice.ufrag,
            ice_pwd: &m.ice.pwd,
            fingerprint: self.ctx.runtime.fingerprint(),
            extensions,
            candidates: self.ctx.candidates.get(m.worker).map(Vec::as_slice).unwrap_or_default(),
            sections: &sections,
        });
        tracing::info!(meeting = %self.ctx.meeting_id, participant = %id, tracks = kinds.len(), "WHIP publisher in");
        metrics::counter!("sluice_whip_sessions_total").increment(1);
        Ok((id, answer))
    }

    /// WHIP `DELETE`: the session ends, if it is `user_id`'s.
    pub(super) async fn ingest_end(&mut self, participant: &str, user_id: &str) -> bool {
        let found = self.members.iter().any(|m| m.id == participant && m.ingest && m.user_id == user_id);
        if found {
            self.leave(participant, LeaveReason::Left).await;
        }
        found
    }

    /// A WHIP publisher whose media never connected is gone: no socket will ever close for it.
    pub(super) async fn drop_unconnected_ingest(&mut self, id: &str) {
        if self.members.iter().any(|m| m.id == id && m.ingest && !m.analytics.connected()) {
            tracing::info!(meeting = %self.ctx.meeting_id, participant = %id, "WHIP publisher never connected");
            self.leave(id, LeaveReason::ConnectionLost).await;
        }
    }
}

impl Member {
    /// An uplink section under the WHIP client's MID (its packets carry that MID; it is never offered).
    fn add_ingest_section(&mut self, kind: MediaKind, source: Source, mid: &str) {
        let section = Section { mid: mid.to_string(), kind, role: SectionRole::Uplink, prefer: None, simulcast: false };
        let info = SectionInfo {
            mid: mid.to_string(),
            role: SectionUse::Publish,
            source: Some(source),
            participant_id: None,
            track_id: None,
        };
        self.sections.push(SectionState {
            section,
            info,
            binding: Binding::Uplink { source, published: false },
            closed_in_offer: false,
            recyclable: false,
        });
    }
}
