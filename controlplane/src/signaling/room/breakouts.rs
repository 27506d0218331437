//! Breakout rooms in a meeting's room actor (`docs/breakouts.md`). A move is the server's act: the mover's
//! downlinks for the old room are closed and unsubscribed in the dataplane, the new room's tracks are offered on
//! the same connection, and the old and new rooms stop and start receiving the mover's tracks. Media, people and
//! chat follow `Member::room`; the functions in `room.rs` that send them filter by it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::seq::SliceRandom;

use super::super::control::{Control, ControlError};
use super::super::protocol::{
    BREAKOUT_NAME_MAX, BREAKOUT_ROOMS_MAX, BROADCAST_MAX, BreakoutRoomView, BreakoutsView, ErrorCode, LeaveReason,
    MAIN, PersonView, ServerMessage,
};
use super::moderation::Acting;
use super::{Binding, Member, Room, RoomCommand, close_section, media};
use crate::ids;
use crate::store::{BreakoutRoom, Role, now};

/// The warning before the rooms' timer ends.
const WARNING: Duration = Duration::from_secs(60);
/// Seconds between "the rooms close" and everyone being back, unless the host chose otherwise.
const COUNTDOWN_DEFAULT: u32 = 10;
const COUNTDOWN_MAX: u32 = 120;
/// The longest timer, and the longest extension.
const DURATION_MAX: u32 = 24 * 3600;

/// The breakout rooms of a live meeting.
#[derive(Debug, Default)]
pub(super) struct Breakouts {
    /// Rooms and assignments are read from the store once per room life (they may be made before anyone joins).
    loaded: bool,
    rooms: Vec<BreakoutRoom>,
    /// User id to room id.
    assigned: HashMap<String, String>,
    /// Where each user is while rooms are open (a reconnect returns them there: someone who went back to the
    /// main room, chose a room, or is a host visiting one).
    current: HashMap<String, String>,
    open: bool,
    ends_at: Option<DateTime<Utc>>,
    warned: bool,
    closing: bool,
    allow_return: bool,
    self_select: bool,
    countdown: u32,
    /// Bumped whenever the timer changes, so a tick scheduled for an older timer does nothing.
    generation: u64,
    /// While many move at once (opening, closing): who needs a fresh offer once all have moved. One offer each
    /// then, and no offer outstanding mid-batch, so the batch's new sections reuse closed m-lines.
    deferred: Option<Vec<String>>,
    /// And what waits until those offers are out: subscriptions to end, movers to send their room's chat.
    deferred_unsubscribe: Vec<(usize, sluice_dataplane::core::SubscriptionId)>,
    deferred_history: Vec<String>,
}

fn not_found(what: impl Into<String>) -> ControlError {
    ControlError::new(ErrorCode::NotFound, what)
}

fn internal(e: impl std::fmt::Display) -> ControlError {
    ControlError::new(ErrorCode::Internal, format!("the breakout rooms could not be saved: {e}"))
}

impl Breakouts {
    fn room(&self, id: &str) -> Option<&BreakoutRoom> {
        self.rooms.iter().find(|r| r.id == id)
    }

    /// `None` for the main room; a breakout room's id, or not found.
    fn target(&self, room_id: Option<&str>) -> Result<Option<String>, ControlError> {
        match room_id {
            None | Some(MAIN) => Ok(None),
            Some(id) => match self.room(id) {
                Some(r) => Ok(Some(r.id.clone())),
                None => Err(not_found(format!("no breakout room {id:?}"))),
            },
        }
    }
}

impl Room {
    async fn load_breakouts(&mut self) -> Result<(), ControlError> {
        if self.breakouts.loaded {
            return Ok(());
        }
        let store = &self.ctx.store;
        let rooms = store.breakout_rooms(&self.ctx.meeting_id).await.map_err(internal)?;
        let assigned = store.breakout_assignments(&self.ctx.meeting_id).await.map_err(internal)?;
        self.breakouts.rooms = rooms;
        self.breakouts.assigned = assigned.into_iter().collect();
        self.breakouts.loaded = true;
        Ok(())
    }

    /// The room a joiner starts in: while rooms are open, where they were (a reconnect) or else their assigned
    /// room; the main room otherwise, and always for the recorder.
    pub(super) async fn room_for_joiner(&mut self, claims: &crate::tokens::Claims) -> String {
        if let Err(e) = self.load_breakouts().await {
            tracing::error!(meeting = %self.ctx.meeting_id, error = %e.message, "cannot read the breakout rooms");
        }
        let b = &self.breakouts;
        if claims.role == Role::Recorder || !b.open || b.closing {
            return MAIN.to_string();
        }
        let user = claims.sub.as_str();
        match b.current.get(user).or_else(|| b.assigned.get(user)) {
            Some(room) if room == MAIN || b.room(room).is_some() => room.clone(),
            _ => MAIN.to_string(),
        }
    }

    pub(super) fn rooms_open(&self) -> bool {
        self.breakouts.open
    }

    pub(super) fn breakouts_empty(&self) -> bool {
        self.breakouts.rooms.is_empty()
    }

    pub(super) fn room_name(&self, room: &str) -> String {
        self.breakouts.room(room).map_or_else(|| "Main room".to_string(), |r| r.name.clone())
    }

    /// A host's breakout control.
    pub(super) async fn breakout(&mut self, acting: &Acting, control: Control) -> Result<(), ControlError> {
        self.load_breakouts().await?;
        match control {
            Control::BreakoutCreate { rooms, count } => self.create_rooms(rooms, count).await?,
            Control::BreakoutAssign { participant_id, room_id } => {
                let user = self.present(&participant_id)?.user_id.clone();
                // The same limits as other controls: a co-host does not move the host.
                self.target(acting, &participant_id, false)?;
                self.assign(&user, room_id.as_deref(), &acting.name).await?;
            }
            Control::BreakoutPreassign { user_id, room_id } => {
                self.assign(&user_id, room_id.as_deref(), &acting.name).await?;
            }
            Control::BreakoutRandom => self.assign_randomly(&acting.name).await?,
            Control::BreakoutOpen { duration_secs, allow_return, self_select, countdown_secs } => {
                self.open_rooms(duration_secs, allow_return, self_select, countdown_secs, &acting.name).await?;
            }
            Control::BreakoutExtend { secs } => self.extend(secs)?,
            Control::BreakoutClose => {
                if !self.breakouts.open || self.breakouts.closing {
                    return Err(ControlError::state("the breakout rooms are not open"));
                }
                self.start_closing().await;
            }
            Control::BreakoutBroadcast { text } => {
                let len = text.chars().count();
                if text.trim().is_empty() || len > BROADCAST_MAX {
                    return Err(ControlError::new(
                        ErrorCode::BadMessage,
                        format!("a broadcast has 1 to {BROADCAST_MAX} characters; got {len}"),
                    ));
                }
                for m in self.members.iter().filter(|m| m.role != Role::Recorder) {
                    m.send(ServerMessage::Broadcast { from: acting.name.clone(), text: text.clone() });
                }
            }
            _ => unreachable!("only breakout controls come here"),
        }
        self.send_breakouts();
        Ok(())
    }

    /// A participant present in the meeting (not waiting, not the recorder).
    fn present(&self, participant_id: &str) -> Result<&Member, ControlError> {
        self.members
            .iter()
            .find(|m| m.id == participant_id && m.role != Role::Recorder)
            .ok_or_else(|| not_found(format!("no participant {participant_id:?} in the meeting")))
    }

    async fn create_rooms(&mut self, names: Vec<String>, count: Option<u32>) -> Result<(), ControlError> {
        if self.breakouts.open {
            return Err(ControlError::state("close the breakout rooms before creating new ones"));
        }
        let names: Vec<String> = match (names.is_empty(), count) {
            (false, None) => names.into_iter().map(|n| n.trim().to_string()).collect(),
            (true, Some(n)) => (1..=n.min(BREAKOUT_ROOMS_MAX as u32 + 1)).map(|i| format!("Room {i}")).collect(),
            _ => {
                return Err(ControlError::new(ErrorCode::BadMessage, "give either the rooms' names or their count"));
            }
        };
        if names.is_empty() || names.len() > BREAKOUT_ROOMS_MAX {
            return Err(ControlError::new(
                ErrorCode::Limit,
                format!("a meeting has 1 to {BREAKOUT_ROOMS_MAX} breakout rooms; asked for {}", names.len()),
            ));
        }
        for name in &names {
            let len = name.chars().count();
            if len == 0 || len > BREAKOUT_NAME_MAX || name.chars().any(char::is_control) {
                return Err(ControlError::new(
                    ErrorCode::BadMessage,
                    format!("room names have 1 to {BREAKOUT_NAME_MAX} characters and no control characters"),
                ));
            }
        }
        let rooms: Vec<BreakoutRoom> =
            names.into_iter().map(|name| BreakoutRoom { id: ids::prefixed("b"), name }).collect();
        self.ctx.store.set_breakout_rooms(&self.ctx.meeting_id, &rooms, now()).await.map_err(internal)?;
        self.breakouts.rooms = rooms;
        self.breakouts.assigned.clear();
        self.breakouts.current.clear();
        // A host visiting a closed room would be left in one that no longer exists.
        let away: Vec<String> = self.members.iter().filter(|m| m.room != MAIN).map(|m| m.id.clone()).collect();
        for id in away {
            self.move_member(&id, MAIN, "new breakout rooms").await;
        }
        Ok(())
    }

    /// Assigns a user (present or not); while rooms are open, someone present moves at once.
    async fn assign(&mut self, user_id: &str, room_id: Option<&str>, by: &str) -> Result<(), ControlError> {
        let room = self.breakouts.target(room_id)?;
        self.ctx.store.assign_breakout(&self.ctx.meeting_id, user_id, room.as_deref()).await.map_err(internal)?;
        match &room {
            Some(r) => self.breakouts.assigned.insert(user_id.to_string(), r.clone()),
            None => self.breakouts.assigned.remove(user_id),
        };
        if self.breakouts.open && !self.breakouts.closing {
            let present: Vec<String> =
                self.members.iter().filter(|m| m.user_id == user_id).map(|m| m.id.clone()).collect();
            for id in present {
                self.move_member(&id, room.as_deref().unwrap_or(MAIN), by).await;
            }
        }
        Ok(())
    }

    /// Everyone present but hosts and the recorder, shuffled, each to the room with the fewest so far.
    async fn assign_randomly(&mut self, by: &str) -> Result<(), ControlError> {
        if self.breakouts.rooms.is_empty() {
            return Err(ControlError::state("create breakout rooms first"));
        }
        let mut people: Vec<String> = self
            .members
            .iter()
            .filter(|m| !m.grants.host && m.role != Role::Recorder)
            .map(|m| m.user_id.clone())
            .collect();
        people.shuffle(&mut rand::rng());
        let mut sizes: Vec<(usize, String)> = self.breakouts.rooms.iter().map(|r| (0, r.id.clone())).collect();
        for user in people {
            let smallest = sizes.iter_mut().min_by_key(|(n, _)| *n).expect("rooms exist");
            smallest.0 += 1;
            let room = smallest.1.clone();
            self.assign(&user, Some(&room), by).await?;
        }
        Ok(())
    }

    async fn open_rooms(
        &mut self,
        duration: Option<u32>,
        allow_return: bool,
        self_select: bool,
        countdown: Option<u32>,
        by: &str,
    ) -> Result<(), ControlError> {
        let b = &mut self.breakouts;
        if b.rooms.is_empty() {
            return Err(ControlError::state("create breakout rooms before opening them"));
        }
        if b.open {
            return Err(ControlError::state("the breakout rooms are open already"));
        }
        if duration.is_some_and(|d| d == 0 || d > DURATION_MAX) {
            return Err(ControlError::new(ErrorCode::BadMessage, format!("duration_secs is 1 to {DURATION_MAX}")));
        }
        let countdown = countdown.unwrap_or(COUNTDOWN_DEFAULT);
        if countdown > COUNTDOWN_MAX {
            return Err(ControlError::new(ErrorCode::BadMessage, format!("countdown_secs is 0 to {COUNTDOWN_MAX}")));
        }
        b.open = true;
        b.closing = false;
        b.allow_return = allow_return;
        b.self_select = self_select;
        b.countdown = countdown;
        b.warned = false;
        b.generation += 1;
        b.ends_at = duration.map(|d| now() + chrono::Duration::seconds(i64::from(d)));
        let moves: Vec<(String, String)> = self
            .members
            .iter()
            .filter_map(|m| self.breakouts.assigned.get(&m.user_id).map(|r| (m.id.clone(), r.clone())))
            .collect();
        self.breakouts.deferred = Some(Vec::new());
        for (id, room) in moves {
            self.move_member(&id, &room, by).await;
        }
        self.negotiate_deferred().await;
        if self.breakouts.ends_at.is_some() {
            self.send_timer(false);
            self.schedule_tick();
        }
        metrics::counter!("sluice_breakouts_opened_total").increment(1);
        Ok(())
    }

    fn extend(&mut self, secs: u32) -> Result<(), ControlError> {
        let b = &mut self.breakouts;
        let Some(ends_at) = b.ends_at.filter(|_| b.open && !b.closing) else {
            return Err(ControlError::state("the breakout rooms are not open with a timer"));
        };
        if secs == 0 || secs > DURATION_MAX {
            return Err(ControlError::new(ErrorCode::BadMessage, format!("secs is 1 to {DURATION_MAX}")));
        }
        b.ends_at = Some(ends_at + chrono::Duration::seconds(i64::from(secs)));
        b.warned = false;
        b.generation += 1;
        self.send_timer(false);
        self.schedule_tick();
        Ok(())
    }

    /// The rooms close: everyone is told, and moved back when the countdown is over.
    async fn start_closing(&mut self) {
        let b = &mut self.breakouts;
        b.closing = true;
        b.generation += 1;
        let seconds = b.countdown;
        for m in self.members.iter().filter(|m| m.role != Role::Recorder) {
            m.send(ServerMessage::BreakoutsClosing { seconds });
        }
        if seconds == 0 {
            return self.finish_closing().await;
        }
        self.schedule_at(now() + chrono::Duration::seconds(i64::from(seconds)));
    }

    async fn finish_closing(&mut self) {
        let away: Vec<String> = self.members.iter().filter(|m| m.room != MAIN).map(|m| m.id.clone()).collect();
        self.breakouts.deferred = Some(Vec::new());
        for id in away {
            self.move_member(&id, MAIN, "the breakout rooms closed").await;
        }
        self.negotiate_deferred().await;
        let b = &mut self.breakouts;
        b.open = false;
        b.closing = false;
        b.ends_at = None;
        b.current.clear();
        b.generation += 1;
        self.send_breakouts();
    }

    /// A timer event: the warning, the end, or the end of the closing countdown.
    pub(super) async fn breakout_tick(&mut self, generation: u64) {
        let b = &self.breakouts;
        if generation != b.generation || !b.open {
            return;
        }
        if b.closing {
            return self.finish_closing().await;
        }
        let Some(ends_at) = b.ends_at else { return };
        if now() >= ends_at {
            return self.start_closing().await;
        }
        self.schedule_tick();
    }

    /// Sends the warning if it is due (at once for a timer shorter than it), then schedules the next tick: at
    /// the warning if it is still to come, else at the end.
    fn schedule_tick(&mut self) {
        let Some(ends_at) = self.breakouts.ends_at else { return };
        let warning = ends_at - chrono::Duration::from_std(WARNING).expect("a minute");
        if !self.breakouts.warned && now() >= warning {
            self.breakouts.warned = true;
            self.send_timer(true);
        }
        let at = if !self.breakouts.warned && warning > now() { warning } else { ends_at };
        self.schedule_at(at);
    }

    fn schedule_at(&self, at: DateTime<Utc>) {
        let delay = (at - now()).to_std().unwrap_or_default();
        let (commands, generation) = (self.ctx.commands.clone(), self.breakouts.generation);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(room) = commands.upgrade() {
                let _ = room.send(RoomCommand::BreakoutTick { generation }).await;
            }
        });
    }

    fn send_timer(&self, warning: bool) {
        let Some(ends_at) = self.breakouts.ends_at else { return };
        let remaining_secs = (ends_at - now()).num_seconds().max(0) as u64;
        for m in self.members.iter().filter(|m| m.role != Role::Recorder) {
            m.send(ServerMessage::BreakoutTimer { ends_at, remaining_secs, warning });
        }
    }

    /// Everyone gets the rooms as they may see them: hosts with who is where, the others the names only.
    pub(super) fn send_breakouts(&self) {
        for m in self.members.iter().filter(|m| m.role != Role::Recorder) {
            m.send(ServerMessage::Breakouts { state: Box::new(self.breakouts_view(m.grants.host)) });
        }
    }

    pub(super) fn breakouts_view(&self, host: bool) -> BreakoutsView {
        let b = &self.breakouts;
        let people = |room: &str| -> Vec<PersonView> {
            self.members
                .iter()
                .filter(|m| m.room == room && m.role != Role::Recorder)
                .map(|m| PersonView {
                    participant_id: m.id.clone(),
                    name: m.name.clone(),
                    assigned: b.assigned.get(&m.user_id).cloned(),
                })
                .collect()
        };
        let present: std::collections::HashSet<&str> = self.members.iter().map(|m| m.user_id.as_str()).collect();
        BreakoutsView {
            open: b.open,
            rooms: b
                .rooms
                .iter()
                .map(|r| BreakoutRoomView {
                    room_id: r.id.clone(),
                    name: r.name.clone(),
                    participants: host.then(|| people(&r.id)),
                })
                .collect(),
            main: host.then(|| people(MAIN)),
            assignments: host.then(|| {
                b.assigned
                    .iter()
                    .filter(|(user, _)| !present.contains(user.as_str()))
                    .map(|(u, r)| (u.clone(), r.clone()))
                    .collect::<BTreeMap<_, _>>()
            }),
            ends_at: b.ends_at,
            allow_return: b.allow_return,
            self_select: b.self_select,
        }
    }

    /// `breakout_join` from a participant: hosts go anywhere; others as the open rooms allow.
    pub(super) async fn breakout_join(&mut self, id: &str, room_id: &str) -> Result<(), ControlError> {
        self.load_breakouts().await?;
        let target = self.breakouts.target(Some(room_id))?;
        let m = self.present(id)?;
        let (host, name) = (m.grants.host, m.name.clone());
        if !host {
            // Each move renegotiates every browser in two rooms: a participant cannot make that a flood.
            self.member(id).expect("present").chat_token()?;
            let b = &self.breakouts;
            if !b.open || b.closing {
                return Err(ControlError::state("the breakout rooms are not open"));
            }
            match &target {
                None if !b.allow_return => {
                    return Err(ControlError::forbidden("a host has not allowed returning to the main room"));
                }
                Some(_) if !b.self_select => {
                    return Err(ControlError::forbidden("a host assigns the breakout rooms in this meeting"));
                }
                _ => {}
            }
        }
        self.move_member(id, target.as_deref().unwrap_or(MAIN), &name).await;
        self.send_breakouts();
        Ok(())
    }

    /// `ask_help` from someone in a breakout room: every host is told which room.
    pub(super) fn ask_help(&mut self, id: &str) -> Result<(), ControlError> {
        let m = self.present(id)?;
        if m.room == MAIN {
            return Err(ControlError::state("you are in the main room, with the hosts"));
        }
        let (room_id, name) = (m.room.clone(), m.name.clone());
        self.member(id).expect("present").chat_token()?;
        let room_name = self.room_name(&room_id);
        for host in self.members.iter().filter(|h| h.grants.host) {
            host.send(ServerMessage::HelpRequested {
                room_id: room_id.clone(),
                room_name: room_name.clone(),
                participant_id: id.to_string(),
                name: name.clone(),
            });
        }
        Ok(())
    }

    /// The offers a batch of moves held back.
    async fn negotiate_deferred(&mut self) {
        let mut ids = self.breakouts.deferred.take().unwrap_or_default();
        ids.sort();
        ids.dedup();
        for id in ids {
            self.negotiate(&id);
        }
        // The offers first (the first frame from a new room-mate waits on them), then the rest.
        let unsubscribe = std::mem::take(&mut self.breakouts.deferred_unsubscribe);
        self.unsubscribe_all(unsubscribe).await;
        for id in std::mem::take(&mut self.breakouts.deferred_history) {
            self.send_history(&id).await;
        }
    }

    async fn unsubscribe_all(&self, subscriptions: Vec<(usize, sluice_dataplane::core::SubscriptionId)>) {
        for (worker, sub) in subscriptions {
            if let Err(e) = media(&self.ctx.runtime, move |rt| rt.unsubscribe(worker, sub)).await {
                tracing::warn!(error = %e, "unsubscribing a moved participant's downlink failed");
            }
        }
    }

    /// Moves member `id` to `to`: what it receives, who receives it, who it sees. Same connection, one
    /// renegotiation for each browser concerned.
    pub(super) async fn move_member(&mut self, id: &str, to: &str, by: &str) {
        let Some(m) = self.members.iter().find(|m| m.id == id) else { return };
        // The recorder records the main room: it never moves.
        if m.room == to || m.role == Role::Recorder {
            return;
        }
        if self.breakouts.open {
            self.breakouts.current.insert(m.user_id.clone(), to.to_string());
        }
        let m = self.member(id).expect("found above");
        let from = std::mem::replace(&mut m.room, to.to_string());
        let mut unsubscribe = Vec::new();
        // Everything it received came from its old room.
        for s in &mut m.sections {
            if let Binding::Downlink { subscription, .. } = &s.binding {
                if let Some(sub) = subscription {
                    unsubscribe.push((m.worker, *sub));
                }
                close_section(s);
            }
        }
        let info = m.info();
        let tracks: Vec<String> = m.published.iter().map(|p| p.track_id.clone()).collect();
        let mut changed = vec![id.to_string()];
        for other in self.members.iter_mut().filter(|o| o.id != id) {
            if other.room == from {
                other.send(ServerMessage::ParticipantLeft {
                    participant_id: id.to_string(),
                    reason: LeaveReason::Moved,
                });
                let mut any = false;
                for s in &mut other.sections {
                    if let Binding::Downlink { publisher, subscription, .. } = &s.binding
                        && publisher == id
                    {
                        if let Some(sub) = subscription {
                            unsubscribe.push((other.worker, *sub));
                        }
                        close_section(s);
                        any = true;
                    }
                }
                if any {
                    changed.push(other.id.clone());
                }
            } else if other.room == to {
                other.send(ServerMessage::ParticipantJoined { participant: info.clone() });
            }
        }
        let arrivals: Vec<String> =
            self.members.iter().filter(|o| o.id != id && o.room == to).map(|o| o.id.clone()).collect();
        for other in &arrivals {
            for track in &tracks {
                self.open_downlink(other, id, track);
            }
            changed.push(other.clone());
        }
        let theirs: Vec<(String, String)> = self
            .members
            .iter()
            .filter(|o| o.id != id && o.room == to)
            .flat_map(|o| o.published.iter().map(|p| (o.id.clone(), p.track_id.clone())))
            .collect();
        for (publisher, track) in theirs {
            self.open_downlink(id, &publisher, &track);
        }
        let participants = self.members.iter().filter(|o| o.id != id && o.room == to).map(Member::info).collect();
        let room_name = self.room_name(to);
        if let Some(m) = self.members.iter().find(|m| m.id == id) {
            m.send(ServerMessage::RoomChanged { room_id: to.to_string(), room_name, participants, by: by.to_string() });
        }
        match &mut self.breakouts.deferred {
            Some(later) => later.extend(changed),
            None => {
                changed.sort();
                changed.dedup();
                for c in changed {
                    self.negotiate(&c);
                }
            }
        }
        if self.breakouts.deferred.is_some() {
            self.breakouts.deferred_unsubscribe.extend(unsubscribe);
            self.breakouts.deferred_history.push(id.to_string());
        } else {
            self.unsubscribe_all(unsubscribe).await;
            self.send_history(id).await;
        }
        // Hands are shown per room: the old room no longer sees the mover's, the new one does.
        if self.hands.iter().any(|h| h == id) {
            self.send_hands();
        }
        metrics::counter!("sluice_breakout_moves_total").increment(1);
        tracing::info!(meeting = %self.ctx.meeting_id, participant = %id, from = %from, to = %to, "moved");
    }
}
