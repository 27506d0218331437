//! A member of a room (one connection: a browser, a WHIP publisher or a WHEP player) and what it has: its
//! sections (the m-lines of its connection and what each is bound to) and the tracks it publishes.

use super::*;

pub(super) struct Published {
    pub(super) track_id: String,
    pub(super) source: Source,
    pub(super) codec: Codec,
    pub(super) spec: TrackSpec,
    /// The track on the publisher's worker.
    pub(super) core: TrackId,
    pub(super) muted: bool,
    /// The payload type the publisher sends it with (a WHIP client's own may differ from what we offer).
    pub(super) payload_type: u8,
}

pub(super) struct SectionState {
    pub(super) section: Section,
    pub(super) info: SectionInfo,
    /// Uplink: the source sent here. Downlink: the track (publisher, track id) received here.
    pub(super) binding: Binding,
    /// Closed when the outstanding offer went out.
    pub(super) closed_in_offer: bool,
    /// Closed, and the browser has answered an offer that closed it (its transceiver is stopped): its m-line
    /// may carry a new section (JSEP 5.2.2), so moves and re-publishing do not grow the SDP for ever.
    pub(super) recyclable: bool,
}

pub(super) enum Binding {
    Uplink {
        source: Source,
        published: bool,
    },
    Downlink {
        publisher: String,
        track_id: String,
        /// Set once the browser accepted the section and the dataplane subscribed it.
        subscription: Option<SubscriptionId>,
        /// The simulcast layer asked for with `set_layer` (the top one until then).
        layer: Option<u8>,
    },
    Closed,
}

pub(super) struct Member {
    pub(super) id: String,
    pub(super) connection_id: String,
    pub(super) user_id: String,
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) grants: Grants,
    pub(super) out: mpsc::Sender<Outbound>,
    pub(super) worker: usize,
    pub(super) core: ParticipantId,
    pub(super) ice: IceCredentials,
    pub(super) session_id: u64,
    pub(super) revision: u64,
    pub(super) awaiting: Option<u64>,
    /// Sections in the outstanding offer (sections are only appended; later ones wait for the next offer).
    pub(super) offered: usize,
    pub(super) renegotiate: bool,
    pub(super) next_mid: u32,
    /// Set by the first answer; later answers must keep it.
    pub(super) fingerprint: Option<sluice_dataplane::core::Fingerprint>,
    pub(super) sections: Vec<SectionState>,
    pub(super) published: Vec<Published>,
    /// The codec it publishes video in (offered first in its uplink sections).
    pub(super) video_codec: Option<Codec>,
    /// Its outbound queue overflowed.
    pub(super) stalled: std::sync::atomic::AtomicBool,
    /// The token it joined with (sending it back to the waiting room re-queues it).
    pub(super) claims: Claims,
    /// Sources a host stopped: forwarding blocked, unmuting refused until a host asks.
    pub(super) held: Vec<Source>,
    /// Held sources a host asked it to unmute.
    pub(super) asked: Vec<Source>,
    /// Reactions: a small token bucket (tokens, last refill).
    pub(super) reactions: (f64, std::time::Instant),
    /// Chat messages, edits, deletions and votes: a token bucket (tokens, last refill).
    pub(super) chat: (f64, std::time::Instant),
    /// Tracks whose grant was revoked: blocked, their sections closed in the next offer, removed from the
    /// dataplane once its answer is in.
    pub(super) closing: Vec<TrackId>,
    /// Where it connects from, as the limits count it.
    pub(super) source: std::net::IpAddr,
    /// Answers refused in a row: each fresh offer waits longer, and past `ANSWER_REFUSALS_MAX` the session ends.
    pub(super) refusals: u32,
    /// The room it is in: `main`, or a breakout room's id. It receives that room's media, people and chat only.
    pub(super) room: String,
    pub(super) analytics: quality::MemberAnalytics,
    /// A WHIP publisher or WHEP player (see `JoinRequest::ingest`).
    pub(super) ingest: bool,
    /// A WHEP player: it receives the sections it was given, and nothing is published to it later.
    pub(super) player: bool,
    /// A WHEP player: whom it watches, and whether it follows the active speaker.
    pub(super) watch: Option<speaker::Watch>,
    /// Sources muted before their track was published (turned off in the lobby): published muted.
    pub(super) muted_early: Vec<Source>,
}

impl Member {
    pub(super) fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            participant_id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
            tracks: self.published.iter().map(Published::info).collect(),
        }
    }

    pub(super) fn send(&self, message: ServerMessage) {
        // A client this far behind has missed a message it needs (an offer, say): the room removes it after the
        // current command, and its session closes the socket once the channel is dropped.
        // A closed channel is a session that has left; its leave is on the way.
        if let Err(mpsc::error::TrySendError::Full(_)) = self.out.try_send(Outbound::Message(message)) {
            self.stalled.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub(super) fn add_section(
        &mut self,
        kind: MediaKind,
        role: SectionRole,
        simulcast: bool,
        info: SectionInfo,
        binding: Binding,
    ) -> bool {
        // Reuse a closed m-line of the same kind, only between offers: the outstanding offer's sections must
        // keep their MIDs until its answer arrives.
        let reuse = match self.awaiting {
            None => self.sections.iter().position(|s| s.recyclable && s.section.kind == kind),
            Some(_) => None,
        };
        if reuse.is_none() && self.sections.len() >= SECTIONS_MAX {
            return false;
        }
        let mid = self.next_mid.to_string();
        self.next_mid += 1;
        let state = SectionState {
            // A camera asked to send SVC is offered VP9 first, the codec whose SVC Sluice forwards.
            section: Section {
                mid: mid.clone(),
                kind,
                role,
                prefer: if info.scalability_mode.is_some() { Some(Codec::Vp9) } else { self.video_codec },
                simulcast,
            },
            info: SectionInfo { mid, ..info },
            binding,
            closed_in_offer: false,
            recyclable: false,
        };
        match reuse {
            Some(index) => self.sections[index] = state,
            None => self.sections.push(state),
        }
        true
    }
}

impl Published {
    pub(super) fn info(&self) -> TrackInfo {
        TrackInfo {
            track_id: self.track_id.clone(),
            source: self.source,
            kind: if self.source.is_audio() { TrackKind::Audio } else { TrackKind::Video },
            muted: self.muted,
            layers: self.spec.qualities() as u8,
        }
    }
}
