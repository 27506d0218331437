//! One meeting's live state, owned by one task (an actor): who is connected, on which worker, what each
//! publishes, which media sections each browser has, and where each negotiation stands.
//!
//! Negotiation is server-driven: only the server makes offers, at most one outstanding per participant. A change
//! while an offer is outstanding (someone joins, starts a screenshare) sets `renegotiate`, and the next offer goes
//! out when the answer arrives. The browser never offers, so offers cannot collide (no glare); a browser that
//! wants to publish asks with `publish`, and gets an offer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use sluice_dataplane::core::{
    Event, ExtensionIds, IceCredentials, MediaKind, ParticipantId, RtxSpec, SubscriptionId, SubscriptionSpec, Tag,
    TrackId, TrackSpec,
};
use sluice_dataplane::packet::codec::Codec;
use sluice_dataplane::runtime::{Runtime, RuntimeError};
use tokio::sync::{mpsc, oneshot};

use super::Outbound;
use super::control::{Actor, Control, ControlError};
use super::lobby::{Lobby, WAITING_MAX, WAITING_PER_SOURCE_MAX, Waiter};
use super::protocol::{
    ChatMode, ClientMessage, ConnectionState, ErrorCode, LeaveReason, MAIN, MeetingState, ParticipantInfo, SVC_MODE,
    SVC_SPATIAL_LAYERS, SectionInfo, SectionUse, ServerMessage, Source, TrackInfo, TrackKind, close,
};
use crate::ids;
use crate::sdp::{self, Downlink, OfferParams, Section, SectionRole};
use crate::store::{MeetingSettings, Participant, Role, Store};
use crate::tokens::{Claims, Grants};

mod breakouts;
mod chat;
pub(crate) mod ingest;
mod member;
mod moderation;
mod negotiation;
mod quality;
mod speaker;

pub use chat::ChatPost;
use member::{Binding, Member, Published, SectionState};
use negotiation::close_section;
pub(crate) use negotiation::simulcast_rids;

/// Answers refused in a row before the session is closed (`close::NEGOTIATION`).
const ANSWER_REFUSALS_MAX: u32 = 3;
/// The wait before the fresh offer that follows a first refused answer; it doubles with each refusal.
const ANSWER_RETRY_BASE: std::time::Duration = std::time::Duration::from_millis(250);

/// Reactions: a burst of this many, then one a second.
const REACTION_BURST: f64 = 3.0;

/// Whether these grants allow publishing `source`.
fn may_publish(grants: &Grants, source: Source) -> bool {
    match source {
        Source::Microphone => grants.microphone,
        Source::Camera => grants.camera,
        Source::Screen => grants.screen,
    }
}

/// Media sections one participant's connection may have (each costs SDP size and a transceiver in the browser).
pub const SECTIONS_MAX: usize = 300;

/// What a room needs from outside.
#[derive(Clone)]
pub(crate) struct RoomContext {
    pub meeting_id: String,
    pub settings: MeetingSettings,
    pub store: Arc<dyn Store>,
    pub runtime: Arc<Runtime>,
    /// `a=candidate` values for each worker (its port on every announced address).
    pub candidates: Arc<Vec<Vec<String>>>,
    /// Where dataplane events find their room.
    pub routes: Arc<super::Routes>,
    /// TURN credentials for each joining participant.
    pub ice: Option<Arc<sluice_turn::auth::IceServerIssuer>>,
    /// Object storage, to delete a chat file with its message.
    pub blobs: Option<crate::blobs::Blobs>,
    pub analytics: Arc<crate::analytics::Analytics>,
    /// A participant not connected this long after `welcome` gets an `ice_failed` event.
    pub ice_timeout: std::time::Duration,
    /// The room's own queue, for what it schedules for later (a fresh offer after a backoff); weak, so it does
    /// not keep an idle room alive.
    pub commands: mpsc::WeakSender<RoomCommand>,
}

pub(crate) enum RoomCommand {
    Join {
        request: JoinRequest,
        reply: oneshot::Sender<Result<String, (u16, String)>>,
    },
    Message {
        participant: String,
        message: ClientMessage,
    },
    Leave {
        participant: String,
        reason: LeaveReason,
    },
    Dataplane {
        worker: usize,
        event: Event,
    },
    /// The meeting was ended through the HTTP API.
    End {
        reason: String,
    },
    /// A host control from the HTTP API (signaling's arrive as messages).
    Control {
        actor: Actor,
        control: Control,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    /// The backoff after a refused answer is over: send the fresh offer.
    Renegotiate {
        participant: String,
    },
    /// The time for `participant`'s media to connect is over (an `ice_failed` event if it has not).
    ConnectTimeout {
        participant: String,
    },
    /// WHIP: seat a publisher with no signaling connection and answer its offer (participant id, answer SDP).
    Ingest {
        request: JoinRequest,
        offer: Box<sdp::Answer>,
        reply: oneshot::Sender<Result<(String, String), (u16, String)>>,
    },
    /// WHEP: seat a player with no signaling connection, give it `selection`'s tracks and answer its offer.
    Play {
        request: JoinRequest,
        offer: Box<sdp::Answer>,
        selection: ingest::Selection,
        reply: oneshot::Sender<Result<(String, String), (u16, String)>>,
    },
    /// WHIP or WHEP `DELETE`: the session `participant` of `user_id` leaves; false if there is none.
    IngestEnd {
        participant: String,
        user_id: String,
        /// False: only whether the session is there and `user_id`'s (a WHIP `PATCH`).
        end: bool,
        reply: oneshot::Sender<bool>,
    },
    /// Time to read audio levels and decide the active speaker (while a WHEP player follows it).
    SpeakerTick,
    /// A breakout timer event (warning, end, end of the closing countdown) for timer `generation`.
    BreakoutTick {
        generation: u64,
    },
    /// The room a connected user is in, for the chat history API.
    RoomOfUser {
        user_id: String,
        reply: oneshot::Sender<Option<String>>,
    },
    /// The breakout rooms as hosts see them, for `GET /meetings/{id}/breakouts`.
    Breakouts {
        reply: oneshot::Sender<super::protocol::BreakoutsView>,
    },
    /// Who is here now, for `GET /meetings/{id}/participants`.
    Roster {
        reply: oneshot::Sender<Vec<RosterEntry>>,
    },
    /// The meeting's settings changed (`PATCH /meetings/{id}`).
    Settings {
        settings: MeetingSettings,
    },
    /// The role and grants a host gave this user in the room, if any (the HTTP API checks a token against it).
    Effective {
        user_id: String,
        reply: oneshot::Sender<Option<(Role, Grants)>>,
    },
    /// A chat message from the HTTP API (a shared file) for the connected user `user_id`; `check_only` asks
    /// whether it would be accepted, before the upload.
    ChatPost {
        user_id: String,
        post: ChatPost,
        check_only: bool,
        reply: oneshot::Sender<Result<Option<crate::store::ChatMessage>, ControlError>>,
    },
}

/// One live participant as the participants API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RosterEntry {
    pub participant_id: String,
    pub user_id: String,
    pub name: String,
    pub role: Role,
    pub grants: Grants,
    pub hand_raised: bool,
    /// Sources a host stopped.
    pub held: Vec<Source>,
    /// Sources muted (by the participant or a host).
    pub muted: Vec<Source>,
    pub waiting: bool,
    /// A WHEP player: the participant whose media it receives now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watching: Option<String>,
}

pub(crate) struct JoinRequest {
    pub claims: Claims,
    pub publish: Vec<Source>,
    pub video_codec: Option<Codec>,
    pub out: mpsc::Sender<Outbound>,
    /// The client's address as the limits count it (a /64 for IPv6): the waiting room caps each source.
    pub source: std::net::IpAddr,
    /// When the `join` message arrived (the join's duration is measured from it).
    pub requested_at: std::time::Instant,
    /// A WHIP publisher: no signaling connection, so it is never sent offers and receives nothing.
    pub ingest: bool,
}

pub(crate) struct Room {
    ctx: RoomContext,
    members: Vec<Member>,
    /// People waiting for a host to admit them.
    lobby: Lobby,
    /// Users a host admitted while this room lives: their reconnects (a network blip, a reload) go straight in.
    admitted: HashSet<String>,
    /// Raised hands, by participant id, in the order raised.
    hands: Vec<String>,
    /// Roles and grants a host gave, by user id: they hold across the user's reconnects while the room lives.
    overrides: HashMap<String, (Role, Grants)>,
    /// Sources a host stopped, by user id: a reconnect does not undo a host's mute.
    held: HashMap<String, Vec<Source>>,
    /// Users a host sent back to the waiting room: they wait again whatever their token, until admitted.
    sent_back: HashSet<String>,
    /// Users a host removed (also in the store, which the session checks before a join reaches the room).
    removed: HashSet<String>,
    /// Whether anyone was ever removed from this meeting: link tokens (anonymous) then wait for a host.
    removals_seen: bool,
    /// Set when the meeting ends: joins queued behind the end are refused.
    ended: bool,
    /// The room's polls with their votes, read from the store when first needed.
    polls: Option<Vec<crate::store::Poll>>,
    /// Breakout rooms, their assignments and timer.
    breakouts: breakouts::Breakouts,
    /// Who talks, for WHEP players that follow the speaker.
    speakers: speaker::Speakers,
}

/// Runs a meeting's room until its last participant leaves (or the meeting ends).
pub(crate) async fn run(ctx: RoomContext, mut commands: mpsc::Receiver<RoomCommand>, registry: Arc<super::Registry>) {
    let meeting_id = ctx.meeting_id.clone();
    let mut room = Room {
        ctx,
        members: Vec::new(),
        lobby: Lobby::default(),
        admitted: HashSet::new(),
        hands: Vec::new(),
        overrides: HashMap::new(),
        held: HashMap::new(),
        sent_back: HashSet::new(),
        removed: HashSet::new(),
        removals_seen: false,
        ended: false,
        polls: None,
        breakouts: breakouts::Breakouts::default(),
        speakers: speaker::Speakers::default(),
    };
    loop {
        let Some(command) = commands.recv().await else { break };
        room.handle(command).await;
        room.remove_stalled().await;
        if room.members.is_empty() && room.lobby.is_empty() && registry.close_if_idle(&meeting_id, &mut commands) {
            break;
        }
    }
    // Closed under the registry's lock; anything that slipped in before is answered, not lost.
    while let Ok(command) = commands.try_recv() {
        match command {
            RoomCommand::Join { reply, .. } => {
                let _ = reply.send(Err((close::UNAVAILABLE, "the meeting's room was closing; join again".into())));
            }
            RoomCommand::Control { reply, .. } => {
                let _ = reply.send(Err(ControlError::state("nobody is in the meeting")));
            }
            RoomCommand::Roster { reply } => {
                let _ = reply.send(Vec::new());
            }
            RoomCommand::Effective { reply, .. } => {
                let _ = reply.send(None);
            }
            RoomCommand::ChatPost { reply, .. } => {
                let _ = reply.send(Err(ControlError::new(ErrorCode::NotFound, "you are not in the meeting")));
            }
            RoomCommand::Breakouts { reply } => drop(reply),
            RoomCommand::RoomOfUser { reply, .. } => drop(reply),
            _ => {}
        }
    }
    tracing::debug!(meeting = %meeting_id, "room closed");
}

impl Room {
    async fn handle(&mut self, command: RoomCommand) {
        match command {
            RoomCommand::Join { request, reply } => {
                let result = self.join(request).await;
                let _ = reply.send(result);
            }
            RoomCommand::Message { participant, message } => self.message(&participant, message).await,
            RoomCommand::Leave { participant, reason } => self.leave(&participant, reason).await,
            RoomCommand::Dataplane { worker, event } => self.dataplane_event(worker, event).await,
            RoomCommand::End { reason } => self.end_for_everyone(&reason).await,
            RoomCommand::Control { actor, control, reply } => {
                let _ = reply.send(self.control(&actor, control).await);
            }
            RoomCommand::Roster { reply } => {
                let _ = reply.send(self.roster());
            }
            RoomCommand::Renegotiate { participant } => self.negotiate(&participant),
            RoomCommand::BreakoutTick { generation } => self.breakout_tick(generation).await,
            RoomCommand::SpeakerTick => self.speaker_tick().await,
            RoomCommand::ConnectTimeout { participant } => {
                self.media_failed(&participant, "ice_timeout").await;
                self.drop_unconnected_ingest(&participant).await;
            }
            RoomCommand::Ingest { request, offer, reply } => {
                let result = self.ingest(request, &offer).await;
                let _ = reply.send(result);
            }
            RoomCommand::Play { request, offer, selection, reply } => {
                let result = self.play(request, &offer, selection).await;
                let _ = reply.send(result);
            }
            RoomCommand::IngestEnd { participant, user_id, end, reply } => {
                let _ = reply.send(self.ingest_end(&participant, &user_id, end).await);
            }
            RoomCommand::Breakouts { reply } => {
                let _ = reply.send(self.breakouts_view(true));
            }
            RoomCommand::RoomOfUser { user_id, reply } => {
                let _ = reply.send(self.members.iter().find(|m| m.user_id == user_id).map(|m| m.room.clone()));
            }
            RoomCommand::Settings { settings } => self.settings_changed(settings).await,
            RoomCommand::Effective { user_id, reply } => {
                let _ = reply.send(self.overrides.get(&user_id).copied());
            }
            RoomCommand::ChatPost { user_id, post, check_only, reply } => {
                let found = self.members.iter().find(|m| m.user_id == user_id).map(|m| m.id.clone());
                let result = match found {
                    Some(id) => self.post(&id, post, check_only).await,
                    None => Err(ControlError::new(ErrorCode::NotFound, "you are not in the meeting: join it first")),
                };
                let _ = reply.send(result);
            }
        }
    }

    async fn remove_stalled(&mut self) {
        let stalled: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.stalled.load(std::sync::atomic::Ordering::Relaxed))
            .map(|m| m.id.clone())
            .collect();
        for id in stalled {
            tracing::warn!(participant = %id, "removing a participant too slow to read its signaling messages");
            self.leave(&id, LeaveReason::ConnectionLost).await;
        }
    }

    fn member(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    /// The room member `id` is in (`main` when it is not here).
    fn room_of(&self, id: &str) -> String {
        self.members.iter().find(|m| m.id == id).map_or_else(|| MAIN.to_string(), |m| m.room.clone())
    }

    async fn join(&mut self, request: JoinRequest) -> Result<String, (u16, String)> {
        if self.ended {
            return Err((close::ENDED, "the meeting has ended".into()));
        }
        if self.removed.contains(&request.claims.sub) {
            return Err((close::REMOVED, "a host removed you from this meeting".into()));
        }
        let (_, grants) = self.role_of(&request.claims);
        if !request.publish.is_empty() && !grants.publishes() {
            return Err((close::FORBIDDEN, "this token does not grant publishing".into()));
        }
        // People already in (a reconnect after a blip) are no newcomers to a lock.
        let known = self.admitted.contains(&request.claims.sub);
        if self.ctx.settings.locked && !grants.host && !known && request.claims.role != Role::Recorder {
            return Err((close::LOCKED, "the meeting is locked: a host has closed it to new joins".into()));
        }
        if request.claims.link && !self.removals_seen {
            self.removals_seen = self.ctx.store.any_removal(&self.ctx.meeting_id).await.unwrap_or(true);
        }
        if self.must_wait(&request.claims) {
            return self.wait(request);
        }
        self.seat(ids::prefixed("p"), request).await
    }

    /// Whether a joiner waits for a host: the meeting's waiting room is on (or the token says so), they are no
    /// host, and no host admitted them before in this room's life.
    fn must_wait(&self, claims: &Claims) -> bool {
        let (_, grants) = self.role_of(claims);
        if claims.role == Role::Recorder || grants.host {
            return false;
        }
        if self.sent_back.contains(&claims.sub) {
            return true;
        }
        let asked = self.ctx.settings.waiting_room || claims.waiting_room || (claims.link && self.removals_seen);
        asked && !self.admitted.contains(&claims.sub)
    }

    /// Puts a joiner in the waiting room and tells the hosts.
    fn wait(&mut self, request: JoinRequest) -> Result<String, (u16, String)> {
        if let Some(previous) = self.lobby.take_user(&request.claims.sub) {
            let replaced = Outbound::Close(close::REPLACED, "joined again from another connection".into());
            let _ = previous.request.out.try_send(replaced);
        }
        if self.lobby.is_full() {
            return Err((close::FULL, format!("the waiting room holds its maximum of {WAITING_MAX} people")));
        }
        if self.lobby.waiting_from(request.source) >= WAITING_PER_SOURCE_MAX {
            let text = format!("at most {WAITING_PER_SOURCE_MAX} people wait from one address");
            return Err((close::RATE_LIMITED, text));
        }
        let id = ids::prefixed("p");
        let waiting = ServerMessage::Waiting {
            meeting_id: self.ctx.meeting_id.clone(),
            participant_id: id.clone(),
            name: request.claims.name.clone(),
            title: self.ctx.settings.title.clone(),
        };
        let _ = request.out.try_send(Outbound::Message(waiting));
        tracing::info!(meeting = %self.ctx.meeting_id, participant = %id, "waiting for a host");
        self.lobby.add(Waiter { id: id.clone(), request, since: crate::store::now() });
        metrics::counter!("sluice_waiting_room_entered_total").increment(1);
        self.waiting_changed();
        Ok(id)
    }

    /// Sends the hosts the waiting list.
    fn waiting_changed(&self) {
        let list = self.lobby.list();
        for host in self.members.iter().filter(|m| m.grants.host) {
            host.send(ServerMessage::WaitingList { waiting: list.clone() });
        }
    }

    /// An error to a member or to someone waiting.
    fn refuse(&self, id: &str, code: ErrorCode, text: String) {
        let message = ServerMessage::error(code, text);
        if let Some(m) = self.members.iter().find(|m| m.id == id) {
            m.send(message);
        } else if let Some(w) = self.lobby.find(id) {
            let _ = w.request.out.try_send(Outbound::Message(message));
        }
    }

    /// Tells `id` why a request was refused, if it was.
    fn refused(&self, id: &str, result: Result<(), ControlError>) {
        if let Err(e) = result {
            self.refuse(id, e.code, e.message);
        }
    }

    /// Places a participant on a worker, records it and starts its negotiation.
    async fn seat(&mut self, id: String, request: JoinRequest) -> Result<String, (u16, String)> {
        let JoinRequest { claims, mut publish, video_codec, out, source, requested_at, ingest } = request;
        let (role, mut grants) = self.role_of(&claims);
        // A WHIP publisher has nowhere to receive media.
        grants.subscribe &= !ingest;
        let held = self.held.get(&claims.sub).cloned().unwrap_or_default();
        publish.retain(|s| may_publish(&grants, *s) && !held.contains(s));
        if !self.ctx.settings.allow_screenshare {
            publish.retain(|s| *s != Source::Screen);
        }
        publish.dedup();
        if let Some(previous) = self.members.iter().find(|m| m.user_id == claims.sub).map(|m| m.id.clone()) {
            if let Some(m) = self.member(&previous) {
                let _ = m.out.try_send(Outbound::Close(close::REPLACED, "joined again from another connection".into()));
            }
            self.leave(&previous, LeaveReason::Replaced).await;
        }
        if let Some(waiting) = self.lobby.take_user(&claims.sub) {
            let replaced = Outbound::Close(close::REPLACED, "joined again from another connection".into());
            let _ = waiting.request.out.try_send(replaced);
            self.waiting_changed();
        }
        // The recorder takes no seat: starting a recording must not lock someone out of a full meeting.
        let limit = self.ctx.settings.max_participants as usize;
        let seated = self.members.iter().filter(|m| m.role != Role::Recorder).count();
        if claims.role != Role::Recorder && seated >= limit {
            return Err((close::FULL, format!("the meeting has its maximum of {limit} participants")));
        }
        let room = self.room_for_joiner(&claims).await;
        let runtime = &self.ctx.runtime;
        let worker = runtime.least_loaded_worker().ok_or((close::UNAVAILABLE, "no media worker is running".into()))?;
        let ice = IceCredentials { ufrag: ids::random_token(8), pwd: ids::random_token(24) };
        let core = media(runtime, {
            let ice = ice.clone();
            move |rt| rt.add_participant(worker, ice)
        })
        .await
        .map_err(|e| (close::UNAVAILABLE, format!("cannot place the participant on a media worker: {e}")))?;
        let member = Member {
            id,
            connection_id: ids::prefixed("c"),
            user_id: claims.sub.clone(),
            name: claims.name.clone(),
            role,
            grants,
            out,
            worker,
            core,
            ice,
            session_id: rand::random::<u32>().into(),
            revision: 0,
            awaiting: None,
            offered: 0,
            renegotiate: false,
            next_mid: 0,
            fingerprint: None,
            sections: Vec::new(),
            published: Vec::new(),
            stalled: std::sync::atomic::AtomicBool::new(false),
            video_codec,
            claims,
            held,
            asked: Vec::new(),
            reactions: (REACTION_BURST, std::time::Instant::now()),
            chat: (chat::CHAT_BURST, std::time::Instant::now()),
            closing: Vec::new(),
            source,
            refusals: 0,
            room,
            analytics: quality::MemberAnalytics::new(),
            ingest,
            player: false,
            watch: None,
            muted_early: Vec::new(),
        };
        let row = Participant {
            meeting_id: self.ctx.meeting_id.clone(),
            connection_id: member.connection_id.clone(),
            user_id: member.user_id.clone(),
            name: member.name.clone(),
            role: member.role,
            joined_at: crate::store::now(),
            left_at: None,
        };
        if let Err(e) = self.ctx.store.add_participant(&row).await {
            let _ = media(runtime, move |rt| rt.remove_participant(worker, core)).await;
            tracing::error!(error = %e, "cannot record a participant");
            return Err((close::UNAVAILABLE, "the server cannot record the participant now".into()));
        }
        self.ctx.routes.insert(worker, core, &self.ctx.meeting_id);
        // Seated once: their reconnects are no newcomers to a lock or a waiting room turned on later.
        self.admitted.insert(member.user_id.clone());
        self.sent_back.remove(&member.user_id);
        let id = member.id.clone();
        member.send(ServerMessage::Welcome {
            v: super::protocol::PROTOCOL_VERSION,
            meeting_id: self.ctx.meeting_id.clone(),
            participant_id: id.clone(),
            name: member.name.clone(),
            role: member.role,
            grants: member.grants,
            participants: self.members.iter().filter(|o| o.room == member.room).map(Member::info).collect(),
            ice_servers: self.ctx.ice.iter().map(|ice| ice.issue(&id)).collect(),
            meeting: Box::new(MeetingState {
                title: self.ctx.settings.title.clone(),
                locked: self.ctx.settings.locked,
                join_muted: self.ctx.settings.join_muted && !member.grants.host,
                hands: self
                    .hands
                    .iter()
                    .filter(|h| member.grants.host || self.room_of(h) == member.room)
                    .cloned()
                    .collect(),
                held: member.held.clone(),
                chat: ChatMode::of(&self.ctx.settings),
                room_id: member.room.clone(),
                room_name: self.room_name(&member.room),
            }),
        });
        for other in self.members.iter().filter(|o| o.room == member.room) {
            other.send(ServerMessage::ParticipantJoined { participant: member.info() });
        }
        if member.grants.host && !self.lobby.is_empty() {
            member.send(ServerMessage::WaitingList { waiting: self.lobby.list() });
        }
        self.members.push(member);
        metrics::counter!("sluice_participants_joined_total").increment(1);
        metrics::gauge!("sluice_participants_connected").increment(1.0);
        tracing::info!(meeting = %self.ctx.meeting_id, participant = %id, worker, "participant joined");
        for source in publish {
            self.open_uplink(&id, source);
        }
        let room = self.room_of(&id);
        let existing: Vec<(String, TrackInfo)> = self
            .members
            .iter()
            .filter(|m| m.id != id && m.room == room)
            .flat_map(|m| m.published.iter().map(|p| (m.id.clone(), p.info())))
            .collect();
        for (publisher, track) in existing {
            self.open_downlink(&id, &publisher, &track.track_id);
        }
        self.negotiate(&id);
        self.joined(&id, requested_at).await;
        self.send_history(&id).await;
        if !self.breakouts_empty() {
            // The joiner learns the rooms; hosts see where the joiner is.
            self.send_breakouts();
        }
        Ok(id)
    }

    async fn message(&mut self, id: &str, message: ClientMessage) {
        if self.lobby.contains(id) {
            return match message {
                ClientMessage::Leave {} => self.leave(id, LeaveReason::Left).await,
                ClientMessage::Candidate { .. } | ClientMessage::Ping { .. } => {}
                _ => self.refuse(id, ErrorCode::BadState, "you are in the waiting room until a host admits you".into()),
            };
        }
        let message = match Control::from_message(message) {
            Ok(control) => {
                if let Err(e) = self.control(&Actor::Member(id.to_string()), control).await {
                    self.refuse(id, e.code, e.message);
                }
                return;
            }
            Err(message) => message,
        };
        match message {
            ClientMessage::ChatSend { body, to } => self.chat_send(id, body, to).await,
            ClientMessage::ChatEdit { message_id, body } => {
                let done = self.chat_edit(id, message_id, body).await;
                self.refused(id, done);
            }
            ClientMessage::ChatDelete { message_id } => {
                let done = self.chat_delete(id, message_id).await;
                self.refused(id, done);
            }
            ClientMessage::PollCreate { question, options, anonymous, results } => {
                let done = self.poll_create(id, question, options, anonymous, results).await;
                self.refused(id, done);
            }
            ClientMessage::PollVote { poll_id, option } => {
                let done = self.poll_vote(id, &poll_id, option).await;
                self.refused(id, done);
            }
            ClientMessage::PollClose { poll_id } => {
                let done = self.poll_close(id, &poll_id).await;
                self.refused(id, done);
            }
            ClientMessage::BreakoutJoin { room_id } => {
                let done = self.breakout_join(id, &room_id).await;
                self.refused(id, done);
            }
            ClientMessage::Stats { ttff_ms, candidate, tracks } => {
                let stats = crate::analytics::stats::BrowserStats { ttff_ms, candidate, tracks };
                let done = self.stats(id, stats).await;
                self.refused(id, done);
            }
            ClientMessage::GetTransport {} => {
                let done = self.transport(id).await;
                self.refused(id, done);
            }
            ClientMessage::AskHelp {} => {
                let done = self.ask_help(id);
                self.refused(id, done);
            }
            ClientMessage::RaiseHand { raised } => self.raise_hand(id, raised),
            ClientMessage::React { emoji } => self.react(id, &emoji),
            ClientMessage::Answer { revision, sdp } => self.answer(id, revision, &sdp).await,
            ClientMessage::Publish { source } => self.publish(id, source),
            ClientMessage::Unpublish { source } => self.unpublish(id, source).await,
            ClientMessage::Mute { source, muted } => self.mute(id, source, muted).await,
            ClientMessage::SetLayer { track_id, layer } => self.set_layer(id, &track_id, layer).await,
            ClientMessage::Leave {} => self.leave(id, LeaveReason::Left).await,
            // ICE-lite learns the browser's addresses from its checks; trickled candidates need no action.
            ClientMessage::Candidate { .. } | ClientMessage::Ping { .. } | ClientMessage::Join { .. } => {}
            // Host controls were taken above.
            _ => {}
        }
    }

    async fn mute(&mut self, id: &str, source: Source, muted: bool) {
        let Some(m) = self.member(id) else { return };
        if !muted && m.held.contains(&source) {
            if !m.asked.contains(&source) {
                let text = format!("a host muted your {}; you can unmute when a host asks", source.as_str());
                return m.send(ServerMessage::error(ErrorCode::Forbidden, text));
            }
            // Accepting a host's request to unmute: forwarding resumes.
            m.held.retain(|s| *s != source);
            m.asked.retain(|s| *s != source);
            let (user, held, worker) = (m.user_id.clone(), m.held.clone(), m.worker);
            let track = m.published.iter().find(|p| p.source == source).map(|p| p.core);
            self.held.insert(user, held);
            if let Some(track) = track
                && let Err(e) = media(&self.ctx.runtime, move |rt| rt.block_track(worker, track, false)).await
            {
                tracing::warn!(error = %e, "unblocking a track failed");
            }
        }
        let Some(m) = self.member(id) else { return };
        let Some(track) = m.published.iter_mut().find(|p| p.source == source) else {
            // Muted before its section was answered (turned off in the lobby): the track starts muted.
            let pending = m
                .sections
                .iter()
                .any(|s| matches!(s.binding, Binding::Uplink { source: s2, published: false } if s2 == source));
            if pending {
                m.muted_early.retain(|s| *s != source);
                if muted {
                    m.muted_early.push(source);
                }
                return;
            }
            return m.send(ServerMessage::error(ErrorCode::BadState, format!("not publishing {}", source.as_str())));
        };
        track.muted = muted;
        let track_id = track.track_id.clone();
        let room = m.room.clone();
        for other in self.members.iter().filter(|o| o.id != id && o.room == room) {
            other.send(ServerMessage::TrackMuted { participant_id: id.to_string(), track_id: track_id.clone(), muted });
        }
    }

    /// Everyone is told and removed; used by the `end` control and by `DELETE /meetings/{id}`.
    pub async fn end_for_everyone(&mut self, reason: &str) {
        self.ended = true;
        for waiter in self.lobby.take_all() {
            let _ = waiter.request.out.try_send(Outbound::Close(close::ENDED, reason.to_string()));
        }
        for m in &self.members {
            m.send(ServerMessage::MeetingEnded { reason: reason.to_string() });
            let _ = m.out.try_send(Outbound::Close(close::ENDED, reason.to_string()));
        }
        let ids: Vec<String> = self.members.iter().map(|m| m.id.clone()).collect();
        for id in ids {
            self.leave(&id, LeaveReason::MeetingEnded).await;
        }
    }

    async fn leave(&mut self, id: &str, reason: LeaveReason) {
        if self.lobby.take(id).is_some() {
            tracing::info!(meeting = %self.ctx.meeting_id, participant = %id, ?reason, "left the waiting room");
            return self.waiting_changed();
        }
        if !self.members.iter().any(|m| m.id == id) {
            return;
        }
        // Players watching it move on before its tracks go.
        self.speaker_leaving(id).await;
        let Some(index) = self.members.iter().position(|m| m.id == id) else { return };
        let m = self.members.remove(index);
        self.left_event(&m, reason).await;
        if self.hands.iter().any(|h| h == id) {
            self.hands.retain(|h| h != id);
            self.send_hands();
        }
        let (worker, core) = (m.worker, m.core);
        let tracks: Vec<TrackId> = m.published.iter().map(|p| p.core).chain(m.closing.iter().copied()).collect();
        // Best effort, each step: one failed removal must not leave the participant's slot behind.
        let removed = media(&self.ctx.runtime, move |rt| {
            let tracks: Vec<Result<(), RuntimeError>> =
                tracks.into_iter().map(|track| rt.remove_track(worker, track)).collect();
            rt.remove_participant(worker, core)?;
            tracks.into_iter().collect::<Result<(), RuntimeError>>()
        })
        .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, participant = %m.id, "removing a participant from the dataplane failed");
        }
        self.ctx.routes.remove(worker, core);
        if let Err(e) = self.ctx.store.participant_left(&self.ctx.meeting_id, &m.connection_id, Utc::now()).await {
            tracing::error!(error = %e, participant = %m.id, "cannot record that a participant left");
        }
        for other in self.members.iter().filter(|o| o.room == m.room) {
            other.send(ServerMessage::ParticipantLeft { participant_id: m.id.clone(), reason });
        }
        for track in &m.published {
            self.track_gone(&m.id, &m.room, &track.track_id);
        }
        if !self.breakouts_empty() {
            self.send_breakouts();
        }
        // A lost media connection is worth a retry (the client reconnects); the other reasons are final, and the
        // replaced and ended cases were told their own code already.
        let (code, text) = match reason {
            LeaveReason::ConnectionLost => (close::TIMEOUT, "the media connection was lost"),
            LeaveReason::Removed => (close::REMOVED, "a host removed you from the meeting"),
            _ => (1000, "left"),
        };
        // Sent back to the waiting room: the session stays open and waits again.
        if reason != LeaveReason::WaitingRoom {
            let _ = m.out.try_send(Outbound::Close(code, text.into()));
        }
        metrics::gauge!("sluice_participants_connected").decrement(1.0);
        tracing::info!(meeting = %self.ctx.meeting_id, participant = %m.id, ?reason, "participant left");
        if m.grants.host && reason == LeaveReason::Left {
            self.hand_over_if_hostless().await;
        }
    }

    async fn dataplane_event(&mut self, worker: usize, event: Event) {
        let Some(participant) = event.participant() else { return };
        let Some(m) = self.members.iter().find(|m| m.worker == worker && m.core == participant) else { return };
        let id = m.id.clone();
        match event {
            Event::Connected { .. } => {
                m.send(ServerMessage::Connection { state: ConnectionState::Connected });
                self.media_connected(&id).await;
            }
            Event::DtlsFailed { reason, .. } => {
                m.send(ServerMessage::Connection { state: ConnectionState::Failed });
                tracing::warn!(participant = %id, ?reason, "DTLS failed");
                self.media_failed(&id, "dtls_failed").await;
                self.drop_unconnected_ingest(&id).await;
            }
            Event::Gone { .. } => self.leave(&id, LeaveReason::ConnectionLost).await,
            Event::LayerChanged { subscription, layer, reason, .. } => {
                let track_id = m.sections.iter().find_map(|s| match &s.binding {
                    Binding::Downlink { track_id, subscription: Some(sub), .. } if *sub == subscription => {
                        Some(track_id.clone())
                    }
                    _ => None,
                });
                if let Some(track_id) = track_id {
                    metrics::counter!("sluice_layer_changes_total", "reason" => reason.as_str()).increment(1);
                    m.send(ServerMessage::LayerChanged { track_id, layer, reason: reason.as_str() });
                }
            }
            _ => {}
        }
    }
}

async fn media<T: Send + 'static>(
    runtime: &Arc<Runtime>,
    call: impl FnOnce(&Runtime) -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, String> {
    let runtime = Arc::clone(runtime);
    match tokio::task::spawn_blocking(move || call(&runtime)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the dataplane call failed: {e}")),
    }
}
