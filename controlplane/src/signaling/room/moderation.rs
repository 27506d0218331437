//! Host controls, raised hands and reactions in a meeting's room. Every control, whether a host's browser sent it
//! or an HTTP request with a host token, comes through [`Room::control`]: one set of checks, one set of effects.
//! The server enforces each: a stopped source is blocked in the dataplane at once (`DropReason::Blocked`), a
//! revoked grant closes its section by renegotiation, a removed user is refused by the meeting from then on.

use super::super::control::{Actor, Control, ControlError};
use super::super::protocol::{ChatMode, ErrorCode, LeaveReason, REACTIONS, ServerMessage, Source, close};
use super::{Binding, Member, REACTION_BURST, Room, RosterEntry, close_section, may_publish, media};
use crate::store::{AnalyticsEvent, MeetingSettings, Role, now};
use crate::tokens::{Claims, Grants};

/// Who is acting, once checked.
pub(super) struct Acting {
    /// Their participant id, when they are in the meeting.
    pub id: Option<String>,
    pub name: String,
    pub role: Role,
}

impl Room {
    /// Runs one host control for `actor`, or says why not. Nothing changes when it is refused.
    pub(super) async fn control(&mut self, actor: &Actor, control: Control) -> Result<(), ControlError> {
        let acting = self.acting(actor, control.name())?;
        let by = acting.name.clone();
        tracing::info!(meeting = %self.ctx.meeting_id, control = control.name(), by = %by, "host control");
        match control {
            Control::Admit { participant_id } => self.admit(&acting, Some(&participant_id)).await,
            Control::AdmitAll => self.admit(&acting, None).await,
            Control::Deny { participant_id } => self.deny(&acting, &participant_id).await,
            Control::Mute { participant_id, source } => {
                let target = self.target(&acting, &participant_id, false)?;
                self.hold(&target, source, &by).await;
                Ok(())
            }
            Control::AskUnmute { participant_id, source } => {
                let target = self.target(&acting, &participant_id, false)?;
                let m = self.member(&target).expect("target checked");
                if !m.held.contains(&source) {
                    return Err(ControlError::state(format!("{} is not muted by a host", source.as_str())));
                }
                if !m.asked.contains(&source) {
                    m.asked.push(source);
                }
                m.send(ServerMessage::UnmuteRequested { source, by });
                Ok(())
            }
            Control::MuteAll => {
                let others: Vec<String> = self
                    .members
                    .iter()
                    .filter(|m| !m.grants.host && Some(&m.id) != acting.id.as_ref())
                    .map(|m| m.id.clone())
                    .collect();
                for id in others {
                    self.hold(&id, Source::Microphone, &by).await;
                }
                Ok(())
            }
            Control::Remove { participant_id } => self.remove(&acting, &participant_id).await,
            Control::SetRole { participant_id, role } => self.set_role(&acting, &participant_id, role).await,
            Control::SetGrants { participant_id, grants } => {
                let target = self.target(&acting, &participant_id, false)?;
                let m = self.member(&target).expect("target checked");
                let mut changed = m.grants;
                grants.apply(&mut changed);
                let role = m.role;
                self.apply_role(&target, role, changed).await;
                self.analytics(&acting, "grants_changed", &target, serde_json::json!({ "grants": changed })).await;
                Ok(())
            }
            Control::SendToWaitingRoom { participant_id } => self.send_to_waiting_room(&acting, &participant_id).await,
            Control::Lock { locked } => {
                let mut settings = self.ctx.settings.clone();
                settings.locked = locked;
                self.save_settings(settings).await?;
                for m in &self.members {
                    m.send(ServerMessage::MeetingLocked { locked, by: by.clone() });
                }
                Ok(())
            }
            Control::ChatMode { mode } => {
                let mut settings = self.ctx.settings.clone();
                mode.apply(&mut settings);
                self.save_settings(settings).await?;
                for m in &self.members {
                    m.send(ServerMessage::ChatMode { mode, by: by.clone() });
                }
                Ok(())
            }
            Control::BreakoutCreate { .. }
            | Control::BreakoutAssign { .. }
            | Control::BreakoutPreassign { .. }
            | Control::BreakoutRandom
            | Control::BreakoutOpen { .. }
            | Control::BreakoutExtend { .. }
            | Control::BreakoutClose
            | Control::BreakoutBroadcast { .. } => self.breakout(&acting, control).await,
            Control::LowerHands { participant_id } => {
                match participant_id {
                    Some(id) => {
                        if !self.hands.contains(&id) {
                            return Err(ControlError::state(format!("{id:?} has no hand raised")));
                        }
                        self.hands.retain(|h| *h != id);
                    }
                    None => self.hands.clear(),
                }
                self.send_hands();
                Ok(())
            }
            Control::End => {
                if acting.role != Role::Host {
                    return Err(ControlError::forbidden("ending the meeting needs the host role; a co-host cannot"));
                }
                self.ctx
                    .store
                    .end_meeting(&self.ctx.meeting_id, now())
                    .await
                    .map_err(|e| ControlError::new(ErrorCode::Internal, format!("cannot end the meeting: {e}")))?;
                self.end_for_everyone("the host ended the meeting").await;
                Ok(())
            }
        }
    }

    /// The actor, if they may run host controls; a participant is told which grant they lack.
    fn acting(&self, actor: &Actor, action: &str) -> Result<Acting, ControlError> {
        let acting = match actor {
            Actor::Member(id) => {
                let m = self
                    .members
                    .iter()
                    .find(|m| m.id == *id)
                    .ok_or_else(|| ControlError::state("you are not in the meeting"))?;
                if !m.grants.host {
                    return Err(ControlError::forbidden(format!("{action} needs the host grant")));
                }
                Acting { id: Some(m.id.clone()), name: m.name.clone(), role: m.role }
            }
            Actor::Api { user_id, name, role } => {
                // A host demoted in the meeting is not a host through the API either.
                let role = self.overrides.get(user_id).map_or(*role, |(r, _)| *r);
                if !matches!(role, Role::Host | Role::CoHost) {
                    return Err(ControlError::forbidden(format!("{action} needs the host grant")));
                }
                let id = self.members.iter().find(|m| m.user_id == *user_id).map(|m| m.id.clone());
                Acting { id, name: name.clone(), role }
            }
        };
        Ok(acting)
    }

    /// A participant a control may act on: in the meeting, and no host when a co-host acts.
    pub(super) fn target(&self, acting: &Acting, id: &str, not_self: bool) -> Result<String, ControlError> {
        let m = self
            .members
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| ControlError::state(format!("no participant {id:?} is in the meeting")))?;
        if acting.role == Role::CoHost && m.role == Role::Host {
            return Err(ControlError::forbidden("a co-host cannot act on the host"));
        }
        if not_self && acting.id.as_deref() == Some(id) {
            return Err(ControlError::state("a host cannot do this to themselves"));
        }
        Ok(m.id.clone())
    }

    /// A host stops `source` of `id`: forwarding blocked now, unmuting refused until a host asks and they accept.
    async fn hold(&mut self, id: &str, source: Source, by: &str) {
        let Some(m) = self.member(id) else { return };
        if !m.held.contains(&source) {
            m.held.push(source);
        }
        m.asked.retain(|s| *s != source);
        let (user, held, worker) = (m.user_id.clone(), m.held.clone(), m.worker);
        let track = m.published.iter_mut().find(|p| p.source == source).map(|p| {
            p.muted = true;
            (p.core, p.track_id.clone())
        });
        m.send(ServerMessage::MutedByHost { source, by: by.to_string() });
        self.held.insert(user, held);
        if let Some((core, track_id)) = track {
            if let Err(e) = media(&self.ctx.runtime, move |rt| rt.block_track(worker, core, true)).await {
                tracing::warn!(error = %e, "blocking a track failed");
            }
            let room = self.room_of(id);
            for other in self.members.iter().filter(|o| o.id != id && o.room == room) {
                other.send(ServerMessage::TrackMuted {
                    participant_id: id.to_string(),
                    track_id: track_id.clone(),
                    muted: true,
                });
            }
        }
    }

    async fn admit(&mut self, acting: &Acting, target: Option<&str>) -> Result<(), ControlError> {
        let waiters = match target {
            Some(target) => match self.lobby.take(target) {
                Some(waiter) => vec![waiter],
                None => return Err(ControlError::state(format!("nobody waiting has the id {target:?}"))),
            },
            None => self.lobby.take_all(),
        };
        for waiter in waiters {
            self.admitted.insert(waiter.request.claims.sub.clone());
            let out = waiter.request.out.clone();
            let id = waiter.id.clone();
            tracing::info!(meeting = %self.ctx.meeting_id, participant = %id, by = %acting.name, "admitted");
            metrics::counter!("sluice_waiting_room_admitted_total").increment(1);
            self.analytics(acting, "admitted", &id, serde_json::json!({ "user_id": waiter.request.claims.sub })).await;
            if let Err((code, reason)) = self.seat(waiter.id, waiter.request).await {
                let _ = out.try_send(super::Outbound::Close(code, reason));
            }
        }
        self.waiting_changed();
        Ok(())
    }

    async fn deny(&mut self, acting: &Acting, target: &str) -> Result<(), ControlError> {
        let waiter = self
            .lobby
            .take(target)
            .ok_or_else(|| ControlError::state(format!("nobody waiting has the id {target:?}")))?;
        tracing::info!(meeting = %self.ctx.meeting_id, participant = %waiter.id, by = %acting.name, "denied");
        metrics::counter!("sluice_waiting_room_denied_total").increment(1);
        let _ = waiter.request.out.try_send(super::Outbound::Close(close::DENIED, "a host did not let you in".into()));
        self.analytics(acting, "denied", target, serde_json::json!({ "user_id": waiter.request.claims.sub })).await;
        self.waiting_changed();
        Ok(())
    }

    /// Removed: disconnected with 4014 and refused by this meeting from then on, by user id (a new token for the
    /// same user included); anonymous link joiners wait for a host from then on. Someone waiting can be removed too.
    async fn remove(&mut self, acting: &Acting, target: &str) -> Result<(), ControlError> {
        let user = match self.lobby.find(target) {
            Some(waiter) => waiter.request.claims.sub.clone(),
            None => {
                let id = self.target(acting, target, true)?;
                self.member(&id).expect("target checked").user_id.clone()
            }
        };
        // Recorded first: a removal that cannot be kept is not carried out.
        self.ctx
            .store
            .add_removal(&self.ctx.meeting_id, &user, &acting.name, now())
            .await
            .map_err(|e| ControlError::new(ErrorCode::Internal, format!("cannot record the removal: {e}")))?;
        self.removed.insert(user.clone());
        self.removals_seen = true;
        self.admitted.remove(&user);
        if let Some(waiter) = self.lobby.take_user(&user) {
            let _ = waiter.request.out.try_send(super::Outbound::Close(close::REMOVED, "a host removed you".into()));
            self.waiting_changed();
        }
        let connected: Vec<String> = self.members.iter().filter(|m| m.user_id == user).map(|m| m.id.clone()).collect();
        for id in connected {
            self.leave(&id, LeaveReason::Removed).await;
        }
        self.analytics(acting, "removed", target, serde_json::json!({ "user_id": user })).await;
        Ok(())
    }

    async fn set_role(&mut self, acting: &Acting, target: &str, role: Role) -> Result<(), ControlError> {
        let id = self.target(acting, target, false)?;
        match role {
            Role::Recorder => {
                return Err(ControlError::new(ErrorCode::BadMessage, "the recorder role is the server's"));
            }
            Role::Host | Role::CoHost if acting.role != Role::Host => {
                return Err(ControlError::forbidden("only the host can make someone host or co-host"));
            }
            _ => {}
        }
        if acting.id.as_deref() == Some(target) && role != Role::Host {
            return Err(ControlError::state(
                "a host hands the role over to someone else instead of demoting themselves",
            ));
        }
        self.apply_role(&id, role, Grants::for_role(role)).await;
        // Handing the host role over: the former host stays a co-host.
        if role == Role::Host
            && let Some(me) = acting.id.clone().filter(|me| *me != id)
        {
            self.apply_role(&me, Role::CoHost, Grants::for_role(Role::CoHost)).await;
        }
        self.analytics(acting, "role_changed", &id, serde_json::json!({ "role": role })).await;
        Ok(())
    }

    /// Gives `id` a role and grants: remembered for the user's reconnects, written to the participants row,
    /// announced to everyone; sources the new grants no longer allow are closed.
    pub(super) async fn apply_role(&mut self, id: &str, role: Role, grants: Grants) {
        let Some(m) = self.member(id) else { return };
        let was_host = m.grants.host;
        m.role = role;
        m.grants = grants;
        let revoked: Vec<Source> = m.published.iter().map(|p| p.source).filter(|s| !may_publish(&grants, *s)).collect();
        let (user, connection) = (m.user_id.clone(), m.connection_id.clone());
        self.overrides.insert(user, (role, grants));
        if let Err(e) = self.ctx.store.set_participant_role(&self.ctx.meeting_id, &connection, role).await {
            tracing::error!(error = %e, participant = %id, "cannot record a role change");
        }
        // Their room and the hosts: nobody learns of people in other rooms.
        let room = self.room_of(id);
        for m in self.members.iter().filter(|m| m.room == room || m.grants.host) {
            m.send(ServerMessage::RoleChanged { participant_id: id.to_string(), role, grants });
        }
        if grants.host && !was_host && !self.lobby.is_empty() {
            let waiting = self.lobby.list();
            self.member(id).expect("found above").send(ServerMessage::WaitingList { waiting });
        }
        if grants.host != was_host {
            // A host sees every room's people and hands; someone who is no longer one, their room's.
            if !self.breakouts_empty() {
                self.send_breakouts();
            }
            self.send_hands();
            // A host visiting a room while rooms are closed would be stuck there once demoted.
            if !grants.host && !self.rooms_open() && self.room_of(id) != super::super::protocol::MAIN {
                self.move_member(id, super::super::protocol::MAIN, "a host").await;
            }
        }
        for source in revoked {
            self.revoke(id, source).await;
        }
    }

    /// A source whose grant is gone: blocked in the dataplane at once (its packets counted as
    /// `DropReason::Blocked`), its section closed by renegotiation, the track removed once the answer is in.
    async fn revoke(&mut self, id: &str, source: Source) {
        let Some(m) = self.member(id) else { return };
        let Some(index) = m.published.iter().position(|p| p.source == source) else { return };
        let track = m.published.remove(index);
        for s in &mut m.sections {
            if matches!(s.binding, Binding::Uplink { source: s2, .. } if s2 == source) {
                close_section(s);
            }
        }
        m.closing.push(track.core);
        let worker = m.worker;
        let core = track.core;
        if let Err(e) = media(&self.ctx.runtime, move |rt| rt.block_track(worker, core, true)).await {
            tracing::warn!(error = %e, "blocking a revoked track failed");
        }
        let room = self.room_of(id);
        self.track_gone(id, &room, &track.track_id);
        self.negotiate(id);
    }

    async fn send_to_waiting_room(&mut self, acting: &Acting, target: &str) -> Result<(), ControlError> {
        let id = self.target(acting, target, true)?;
        let m = self.member(&id).expect("target checked");
        if m.grants.host {
            return Err(ControlError::state("a host cannot be sent to the waiting room; change their role first"));
        }
        if m.ingest {
            return Err(ControlError::state("a WHIP publisher cannot wait in the waiting room: remove it instead"));
        }
        let request = super::JoinRequest {
            ingest: false,
            claims: Claims { waiting_room: true, ..m.claims.clone() },
            publish: m.published.iter().map(|p| p.source).filter(|s| *s != Source::Screen).collect(),
            video_codec: m.video_codec,
            out: m.out.clone(),
            source: m.source,
            requested_at: std::time::Instant::now(),
        };
        let user = m.user_id.clone();
        self.admitted.remove(&user);
        self.sent_back.insert(user);
        self.leave(&id, LeaveReason::WaitingRoom).await;
        self.lobby.add(super::Waiter { id: id.clone(), request, since: now() });
        let waiter = self.lobby.find(&id).expect("just added");
        let waiting = ServerMessage::Waiting {
            meeting_id: self.ctx.meeting_id.clone(),
            participant_id: id.clone(),
            name: waiter.request.claims.name.clone(),
            title: self.ctx.settings.title.clone(),
        };
        let _ = waiter.request.out.try_send(super::Outbound::Message(waiting));
        self.waiting_changed();
        self.analytics(acting, "sent_to_waiting_room", &id, serde_json::Value::Null).await;
        Ok(())
    }

    /// The role and grants a joiner gets: what a host gave them in this room, else their token's, with the
    /// meeting's "only hosts share screens" applied.
    pub(super) fn role_of(&self, claims: &Claims) -> (Role, Grants) {
        let (role, mut grants) = self.overrides.get(&claims.sub).copied().unwrap_or((claims.role, claims.grants));
        if self.ctx.settings.screenshare_hosts_only && !grants.host {
            grants.screen = false;
        }
        (role, grants)
    }

    /// The last host left on purpose: the earliest co-host becomes host; with no co-host, the earliest-joined
    /// participant becomes co-host, so the meeting always has someone who can run it. (A host whose connection
    /// dropped is not replaced: they come back as host with their token.)
    pub(super) async fn hand_over_if_hostless(&mut self) {
        if self.members.iter().any(|m| m.role == Role::Host) {
            return;
        }
        if let Some(heir) = self.members.iter().find(|m| m.role == Role::CoHost).map(|m| m.id.clone()) {
            tracing::info!(meeting = %self.ctx.meeting_id, participant = %heir, "the last host left: a co-host is host");
            self.apply_role(&heir, Role::Host, Grants::for_role(Role::Host)).await;
            return;
        }
        if self.members.iter().any(|m| m.grants.host) {
            return;
        }
        let Some(heir) = self.members.iter().find(|m| m.role == Role::Participant).map(|m| m.id.clone()) else {
            return;
        };
        tracing::info!(meeting = %self.ctx.meeting_id, participant = %heir, "the last host left: a co-host is named");
        self.apply_role(&heir, Role::CoHost, Grants::for_role(Role::CoHost)).await;
    }

    pub(super) fn raise_hand(&mut self, id: &str, raised: bool) {
        let present = self.hands.iter().any(|h| h == id);
        match (raised, present) {
            (true, false) => self.hands.push(id.to_string()),
            (false, true) => self.hands.retain(|h| h != id),
            _ => return,
        }
        self.send_hands();
    }

    pub(super) fn send_hands(&self) {
        // Hosts see every hand; the others, their room's.
        for m in &self.members {
            let raised = self.hands.iter().filter(|h| m.grants.host || self.room_of(h) == m.room).cloned().collect();
            m.send(ServerMessage::Hands { raised });
        }
    }

    /// A reaction from the fixed set, at most `REACTION_BURST` at once and one a second after that.
    pub(super) fn react(&mut self, id: &str, emoji: &str) {
        let Some(m) = self.member(id) else { return };
        if !REACTIONS.contains(&emoji) {
            let allowed = REACTIONS.join(" ");
            return m.send(ServerMessage::error(ErrorCode::BadMessage, format!("reactions are one of {allowed}")));
        }
        let (tokens, at) = m.reactions;
        let now = std::time::Instant::now();
        let tokens = (tokens + now.duration_since(at).as_secs_f64()).min(REACTION_BURST);
        if tokens < 1.0 {
            m.reactions = (tokens, now);
            return m.send(ServerMessage::error(ErrorCode::Limit, "at most one reaction a second"));
        }
        m.reactions = (tokens - 1.0, now);
        let room = m.room.clone();
        for other in self.members.iter().filter(|o| o.room == room) {
            other.send(ServerMessage::Reaction { participant_id: id.to_string(), emoji: emoji.to_string() });
        }
    }

    /// Who is here, for the participants API.
    pub(super) fn roster(&self) -> Vec<RosterEntry> {
        let mut entries: Vec<RosterEntry> = self.members.iter().map(|m| self.entry(m)).collect();
        entries.extend(self.lobby.list().into_iter().map(|w| RosterEntry {
            participant_id: w.participant_id,
            user_id: String::new(),
            name: w.name,
            role: Role::Participant,
            grants: Grants::for_role(Role::Participant),
            hand_raised: false,
            held: Vec::new(),
            muted: Vec::new(),
            waiting: true,
            watching: None,
        }));
        entries
    }

    fn entry(&self, m: &Member) -> RosterEntry {
        RosterEntry {
            participant_id: m.id.clone(),
            user_id: m.user_id.clone(),
            name: m.name.clone(),
            role: m.role,
            grants: m.grants,
            hand_raised: self.hands.contains(&m.id),
            held: m.held.clone(),
            muted: m.published.iter().filter(|p| p.muted).map(|p| p.source).collect(),
            waiting: false,
            watching: m.watch.as_ref().map(|w| w.publisher.clone()),
        }
    }

    /// New settings from `PATCH /meetings/{id}` (already stored), applied to who is here now: the lock is
    /// announced, a waiting room turned off lets everyone waiting in (but those a host sent back), and screens
    /// that are no longer allowed stop.
    pub(super) async fn settings_changed(&mut self, settings: MeetingSettings) {
        let before = std::mem::replace(&mut self.ctx.settings, settings);
        let now = self.ctx.settings.clone();
        if now.locked != before.locked {
            for m in &self.members {
                m.send(ServerMessage::MeetingLocked { locked: now.locked, by: "a host".into() });
            }
        }
        let mode = ChatMode::of(&now);
        if mode != ChatMode::of(&before) {
            for m in &self.members {
                m.send(ServerMessage::ChatMode { mode, by: "a host".into() });
            }
        }
        if before.waiting_room && !now.waiting_room {
            let released: Vec<super::Waiter> = self.lobby.take_all();
            let (release, keep): (Vec<_>, Vec<_>) = released
                .into_iter()
                .partition(|w| !self.sent_back.contains(&w.request.claims.sub) && !w.request.claims.waiting_room);
            for w in keep {
                self.lobby.add(w);
            }
            for w in release {
                let out = w.request.out.clone();
                if let Err((code, reason)) = self.seat(w.id, w.request).await {
                    let _ = out.try_send(super::Outbound::Close(code, reason));
                }
            }
            self.waiting_changed();
        }
        let screens_for_hosts = !now.allow_screenshare || now.screenshare_hosts_only;
        if screens_for_hosts {
            let sharing: Vec<String> = self
                .members
                .iter()
                .filter(|m| {
                    (!now.allow_screenshare || !m.grants.host) && m.published.iter().any(|p| p.source == Source::Screen)
                })
                .map(|m| m.id.clone())
                .collect();
            for id in sharing {
                self.revoke(&id, Source::Screen).await;
            }
        }
    }

    async fn save_settings(&mut self, settings: MeetingSettings) -> Result<(), ControlError> {
        self.ctx
            .store
            .set_meeting_settings(&self.ctx.meeting_id, &settings)
            .await
            .map_err(|e| ControlError::new(ErrorCode::Internal, format!("cannot save the setting: {e}")))?;
        self.ctx.settings = settings;
        Ok(())
    }

    /// An analytics event for a moderation act (who did it to whom); a failed write is logged, not fatal.
    async fn analytics(&self, acting: &Acting, event: &str, target: &str, detail: serde_json::Value) {
        let row = AnalyticsEvent {
            meeting_id: self.ctx.meeting_id.clone(),
            user_id: target.to_string(),
            event_type: event.to_string(),
            metrics: serde_json::json!({ "by": acting.name, "by_role": acting.role, "detail": detail }),
            timestamp: now(),
        };
        if let Err(e) = self.ctx.store.add_analytics_event(&row).await {
            tracing::error!(error = %e, event, "cannot record a moderation event");
        }
    }
}
