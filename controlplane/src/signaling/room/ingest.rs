//! WHIP ingest (RFC 9725) and WHEP playback: an encoder (OBS, GStreamer, a hardware box) publishes into the
//! meeting, or a player watches one person of it, with one HTTP request each. It is seated like any participant (the same checks, a seat, a roster entry others see) but has no
//! signaling connection: its one negotiation is its own offer, answered here, and it never receives media.
//!
//! The offer's sections become uplink sections under the client's MIDs, and its offer is read as the answer
//! to them would be: the same path (`apply_uplinks`) turns them into tracks and gives everyone a downlink.

use super::*;
use crate::sdp::whip::{Taken, WhipAnswerParams, accepted_extensions, write_whip_answer};

/// Whom a WHEP player watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The participant with this id or display name: their camera and microphone.
    Participant(String),
    /// The screen being shared, with the sharer's microphone.
    Screen,
    /// The first participant with a camera (the first with any media if nobody has one).
    Anyone,
    /// Whoever talks: the player's audio and video move to each new active speaker.
    Speaker,
}

impl Room {
    /// Seats a WHEP player and answers its offer with the selected participant's video and audio.
    pub(super) async fn play(
        &mut self,
        request: JoinRequest,
        offer: &sdp::Answer,
        selection: Selection,
    ) -> Result<(String, String), (u16, String)> {
        let publishers =
            self.members.iter().filter(|m| m.room == MAIN && m.role != Role::Recorder && !m.ingest_player());
        let chosen = match &selection {
            Selection::Participant(who) => publishers.into_iter().find(|m| m.id == *who || m.name == *who),
            Selection::Screen => {
                publishers.into_iter().find(|m| m.published.iter().any(|t| t.source == Source::Screen))
            }
            Selection::Anyone | Selection::Speaker => {
                let all: Vec<&Member> = publishers.collect();
                let has_camera = |m: &&&Member| m.published.iter().any(|t| t.source == Source::Camera);
                // The speaker, if they have a camera: a player starting on a microphone alone would never get a
                // video stream (its video section would be refused), so it starts on a camera.
                let speaker = match selection {
                    Selection::Speaker => {
                        self.speakers.current().and_then(|s| all.iter().find(|m| m.id == s)).filter(has_camera)
                    }
                    _ => None,
                };
                let camera = all.iter().find(has_camera);
                speaker.or(camera).or_else(|| all.iter().find(|m| !m.published.is_empty())).copied()
            }
        };
        let Some(publisher) = chosen else {
            let who = match &selection {
                Selection::Participant(who) => format!("nobody named {who:?} is in the meeting"),
                Selection::Screen => "nobody is sharing a screen".to_string(),
                Selection::Anyone | Selection::Speaker => "nobody in the meeting publishes anything yet".to_string(),
            };
            return Err((close::NO_MEETING, who));
        };
        let video_source = if selection == Selection::Screen { Source::Screen } else { Source::Camera };
        let tracks: Vec<(MediaKind, Source, String, Codec)> = publisher
            .published
            .iter()
            .filter(|t| t.source == Source::Microphone || t.source == video_source)
            .map(|t| (t.spec.kind, t.source, t.track_id.clone(), t.codec))
            .collect();
        let publisher_id = publisher.id.clone();
        // Each of the player's sections: the first receiving section of each kind gets that kind's track.
        let mut taken = Vec::with_capacity(offer.sections.len());
        let mut given: Vec<(MediaKind, Source, String, Codec, String, u32)> = Vec::new();
        let mut payload_types: Vec<(MediaKind, u8)> = Vec::new();
        for s in &offer.sections {
            let kind = match s.media.as_str() {
                "audio" => MediaKind::Audio,
                "video" => MediaKind::Video,
                _ => {
                    taken.push(Taken::Refused);
                    continue;
                }
            };
            let receives = matches!(s.direction, sdp::Direction::RecvOnly | sdp::Direction::SendRecv);
            let track = tracks.iter().find(|(k, ..)| *k == kind);
            let (Some((_, source, track_id, codec)), false, true) =
                (track, s.rejected || given.iter().any(|(k, ..)| *k == kind), receives)
            else {
                taken.push(Taken::Refused);
                continue;
            };
            let Some((_, payload_type)) = s.send_codec(&[*codec]) else {
                return Err((
                    close::PROTOCOL,
                    format!(
                        "the {} section {:?} does not offer {codec:?}, the codec of the {}",
                        s.media,
                        s.mid,
                        source.as_str()
                    ),
                ));
            };
            let ssrc = rand::random::<u32>();
            payload_types.push((kind, payload_type));
            given.push((kind, *source, track_id.clone(), *codec, s.mid.clone(), ssrc));
            taken.push(Taken::Send {
                kind,
                codec: *codec,
                payload_type,
                ssrc,
                stream_id: publisher_id.clone(),
                track_id: track_id.clone(),
            });
        }
        if given.is_empty() {
            return Err((
                close::PROTOCOL,
                "the offer has no audio or video section that receives what is published".into(),
            ));
        }
        if self.must_wait(&request.claims) {
            return Err((close::FORBIDDEN, "the meeting has a waiting room: play with a host's token".into()));
        }
        let id = self.join(request).await?;
        let m = self.member(&id).ok_or((close::UNAVAILABLE, "the player was not seated".to_string()))?;
        m.player = true;
        m.watch = Some(speaker::Watch {
            publisher: publisher_id.clone(),
            follows_speaker: selection == Selection::Speaker,
            payload_types: payload_types.clone(),
        });
        for (kind, source, track_id, codec, mid, ssrc) in &given {
            m.add_player_section(*kind, *source, mid, &publisher_id, track_id, *codec, *ssrc);
        }
        m.offered = m.sections.len();
        self.expect_dtls_of(&id, offer.fingerprint).await?;
        self.apply_downlinks(&id, offer).await;
        let m = self.members.iter().find(|m| m.id == id).expect("seated above");
        let subscribed =
            m.sections.iter().filter(|s| matches!(s.binding, Binding::Downlink { subscription: Some(_), .. }));
        if subscribed.count() != given.len() {
            self.leave(&id, LeaveReason::Left).await;
            return Err((close::UNAVAILABLE, "the dataplane did not take every track".into()));
        }
        let answer = self.answer_sdp(&id, offer, taken);
        tracing::info!(meeting = %self.ctx.meeting_id, participant = %id, watching = %publisher_id, "WHEP player in");
        if selection == Selection::Speaker {
            self.start_speaker_ticks();
        }
        metrics::counter!("sluice_whep_sessions_total").increment(1);
        Ok((id, answer))
    }

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
            // The stream is named by its SSRC, or by the MID header extension at the ID the dataplane reads;
            // simulcast layers by MID and RID, both at our IDs (else the answer takes one encoding).
            let accepted = accepted_extensions(s, extensions);
            let mid_ours = accepted.iter().any(|(_, uri)| *uri == sdp::offer::URI_MID);
            let rid_ours = accepted.iter().any(|(_, uri)| *uri == sdp::offer::URI_RID);
            let rids: Vec<String> = if kind == MediaKind::Video && mid_ours && rid_ours {
                super::simulcast_rids(&s.send_rids).into_iter().map(str::to_string).collect()
            } else {
                Vec::new()
            };
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
            taken.push(Taken::Receive { kind, codec, payload_type, rids });
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
            if let Taken::Receive { kind, rids, .. } = t {
                let source = if *kind == MediaKind::Audio { Source::Microphone } else { Source::Camera };
                m.add_ingest_section(*kind, source, &s.mid, !rids.is_empty());
            }
        }
        m.offered = m.sections.len();
        self.expect_dtls_of(&id, offer.fingerprint).await?;
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
        let answer = self.answer_sdp(&id, &offer, taken);
        tracing::info!(meeting = %self.ctx.meeting_id, participant = %id, tracks = kinds.len(), "WHIP publisher in");
        metrics::counter!("sluice_whip_sessions_total").increment(1);
        Ok((id, answer))
    }

    /// WHIP `DELETE` (`end`): the session ends, if it is `user_id`'s. Without `end`, only whether it is.
    pub(super) async fn ingest_end(&mut self, participant: &str, user_id: &str, end: bool) -> bool {
        let found = self.members.iter().any(|m| m.id == participant && m.ingest && m.user_id == user_id);
        if found && end {
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
    /// The client's certificate is the one its offer names (it is the DTLS client; we are the server). A
    /// failure takes the session out again.
    async fn expect_dtls_of(
        &mut self,
        id: &str,
        fingerprint: sluice_dataplane::core::Fingerprint,
    ) -> Result<(), (u16, String)> {
        let Some(m) = self.member(id) else { return Err((close::UNAVAILABLE, "the session was not seated".into())) };
        let (worker, core) = (m.worker, m.core);
        m.fingerprint = Some(fingerprint);
        if let Err(e) = media(&self.ctx.runtime, move |rt| rt.expect_dtls(worker, core, fingerprint)).await {
            self.leave(id, LeaveReason::Left).await;
            return Err((close::UNAVAILABLE, format!("cannot set up DTLS: {e}")));
        }
        Ok(())
    }

    /// The answer to a WHIP or WHEP session's offer: its sections as `taken`, its worker's candidates.
    fn answer_sdp(&self, id: &str, offer: &sdp::Answer, taken: Vec<Taken>) -> String {
        let m = self.members.iter().find(|m| m.id == id).expect("seated by the caller");
        let sections: Vec<(&sdp::AnswerSection, Taken)> = offer.sections.iter().zip(taken).collect();
        write_whip_answer(&WhipAnswerParams {
            session_id: m.session_id,
            ice_ufrag: &m.ice.ufrag,
            ice_pwd: &m.ice.pwd,
            fingerprint: self.ctx.runtime.fingerprint(),
            extensions: ExtensionIds::default(),
            candidates: self.ctx.candidates.get(m.worker).map(Vec::as_slice).unwrap_or_default(),
            sections: &sections,
        })
    }
}

impl Member {
    /// A WHEP player (it is not a publisher to watch).
    fn ingest_player(&self) -> bool {
        self.ingest && self.player
    }

    /// A downlink section under the WHEP player's MID, carrying `publisher`'s track under our SSRC.
    #[allow(clippy::too_many_arguments)]
    fn add_player_section(
        &mut self,
        kind: MediaKind,
        source: Source,
        mid: &str,
        publisher: &str,
        track_id: &str,
        codec: Codec,
        ssrc: u32,
    ) {
        let downlink =
            Downlink { codec, ssrc, rtx_ssrc: None, stream_id: publisher.to_string(), track_id: track_id.to_string() };
        let role = SectionRole::Downlink(downlink);
        let section = Section { mid: mid.to_string(), kind, role, prefer: None, simulcast: false };
        let info = SectionInfo {
            mid: mid.to_string(),
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
        self.sections.push(SectionState { section, info, binding, closed_in_offer: false, recyclable: false });
    }

    /// An uplink section under the WHIP client's MID (its packets carry that MID; it is never offered).
    fn add_ingest_section(&mut self, kind: MediaKind, source: Source, mid: &str, simulcast: bool) {
        let section = Section { mid: mid.to_string(), kind, role: SectionRole::Uplink, prefer: None, simulcast };
        let info = SectionInfo {
            mid: mid.to_string(),
            role: SectionUse::Publish,
            source: Some(source),
            participant_id: None,
            track_id: None,
            scalability_mode: None,
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
