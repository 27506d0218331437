//! Signaling: the WebSocket at `/signaling` that joins a browser to a meeting (protocol in [`protocol`] and
//! `docs/signaling.md`), one room actor per live meeting ([`room`]), and the routing of dataplane events
//! (connected, gone) to the room of the participant they name.

pub mod control;
mod lobby;
pub mod protocol;
mod room;
mod session;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use sluice_dataplane::core::{Event, ParticipantId};
use sluice_dataplane::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

pub use room::ingest::Selection;
pub use room::{ChatPost, RosterEntry};
pub use session::upgrade;

use crate::store::{MeetingSettings, Role, Store};
use crate::tokens::Grants;
use control::{Actor, Control, ControlError};
use room::{RoomCommand, RoomContext};

/// Commands queued per room; a join storm waits here rather than growing memory.
const ROOM_QUEUE: usize = 1024;

/// What a room sends a participant's session.
#[derive(Debug)]
pub enum Outbound {
    Message(protocol::ServerMessage),
    /// Close the socket with this code and reason.
    Close(u16, String),
}

/// The live rooms by meeting id. A room removes itself when its last participant leaves.
#[derive(Debug, Default)]
pub struct Registry {
    rooms: Mutex<HashMap<String, mpsc::Sender<RoomCommand>>>,
}

impl Registry {
    fn get(&self, meeting_id: &str) -> Option<mpsc::Sender<RoomCommand>> {
        self.rooms.lock().expect("rooms").get(meeting_id).cloned()
    }

    /// Called by a room with nothing left to do: removes it and closes its queue (so a late sender gets its
    /// command back and starts a new room) unless a command arrived meanwhile.
    fn close_if_idle(&self, meeting_id: &str, commands: &mut mpsc::Receiver<RoomCommand>) -> bool {
        let mut rooms = self.rooms.lock().expect("rooms");
        if !commands.is_empty() {
            return false;
        }
        rooms.remove(meeting_id);
        commands.close();
        true
    }

    pub fn live(&self) -> usize {
        self.rooms.lock().expect("rooms").len()
    }
}

/// Which meeting a dataplane participant belongs to.
#[derive(Debug, Default)]
pub struct Routes {
    by_participant: Mutex<HashMap<(usize, ParticipantId), String>>,
}

impl Routes {
    fn insert(&self, worker: usize, participant: ParticipantId, meeting_id: &str) {
        self.by_participant.lock().expect("routes").insert((worker, participant), meeting_id.to_string());
    }

    fn remove(&self, worker: usize, participant: ParticipantId) {
        self.by_participant.lock().expect("routes").remove(&(worker, participant));
    }

    fn meeting_of(&self, worker: usize, participant: ParticipantId) -> Option<String> {
        self.by_participant.lock().expect("routes").get(&(worker, participant)).cloned()
    }
}

/// Signaling's shared state.
pub struct Signaling {
    store: Arc<dyn Store>,
    runtime: Option<Arc<Runtime>>,
    candidates: Arc<Vec<Vec<String>>>,
    registry: Arc<Registry>,
    routes: Arc<Routes>,
    /// TURN credentials handed out in `welcome`.
    ice: Option<Arc<sluice_turn::auth::IceServerIssuer>>,
    /// The tokio runtime, for the event pump (a plain thread) to hand events to a busy room.
    handle: Option<tokio::runtime::Handle>,
    /// Object storage, for chat files.
    blobs: Option<crate::blobs::Blobs>,
    analytics: Arc<crate::analytics::Analytics>,
    analytics_config: crate::config::AnalyticsConfig,
}

impl std::fmt::Debug for Signaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signaling").field("rooms", &self.registry.live()).finish_non_exhaustive()
    }
}

impl Signaling {
    /// Without a runtime, joins are refused (`close::UNAVAILABLE`): this process runs no media workers.
    pub fn new(store: Arc<dyn Store>, runtime: Option<Arc<Runtime>>, announce: &[IpAddr]) -> Signaling {
        let candidates = runtime.as_ref().map(|rt| worker_candidates(rt, announce)).unwrap_or_default();
        for (worker, lines) in candidates.iter().enumerate() {
            tracing::info!(worker, candidates = ?lines, "ICE candidates");
        }
        Signaling {
            runtime,
            candidates: Arc::new(candidates),
            registry: Arc::default(),
            routes: Arc::default(),
            handle: tokio::runtime::Handle::try_current().ok(),
            ice: None,
            blobs: None,
            analytics: crate::analytics::Analytics::new(Arc::clone(&store)),
            analytics_config: crate::config::AnalyticsConfig::default(),
            store,
        }
    }

    pub fn with_analytics(mut self, config: crate::config::AnalyticsConfig) -> Signaling {
        self.analytics_config = config;
        self
    }

    pub fn analytics(&self) -> Arc<crate::analytics::Analytics> {
        Arc::clone(&self.analytics)
    }

    pub fn analytics_config(&self) -> &crate::config::AnalyticsConfig {
        &self.analytics_config
    }

    /// Lets rooms delete a chat file's object with its message.
    pub fn with_blobs(mut self, blobs: crate::blobs::Blobs) -> Signaling {
        self.blobs = Some(blobs);
        self
    }

    /// Hands each joining participant TURN credentials from `ice` in its `welcome`.
    pub fn with_ice_servers(mut self, ice: Option<Arc<sluice_turn::auth::IceServerIssuer>>) -> Signaling {
        self.ice = ice;
        self
    }

    pub fn live_rooms(&self) -> usize {
        self.registry.live()
    }

    /// Hands a dataplane event to the room of the participant it names (called by the event pump thread).
    pub fn dataplane_event(&self, worker: usize, event: Event) {
        let Some(participant) = event.participant() else { return };
        let Some(meeting) = self.routes.meeting_of(worker, participant) else { return };
        let Some(room) = self.registry.get(&meeting) else { return };
        if let Err(mpsc::error::TrySendError::Full(command)) = room.try_send(RoomCommand::Dataplane { worker, event }) {
            // `Gone` comes once: it must not be lost to a busy room. A few events per participant at most, so
            // waiting for room in a task is bounded; the pump itself never waits (it also routes keyframes).
            if let Some(handle) = &self.handle {
                handle.spawn(async move {
                    let _ = room.send(command).await;
                });
            }
        }
    }

    /// Ends a live meeting's room (after the store marked it ended): everyone is told and disconnected.
    pub async fn end_meeting(&self, meeting_id: &str, reason: &str) {
        if let Some(room) = self.registry.get(meeting_id) {
            let _ = room.send(RoomCommand::End { reason: reason.to_string() }).await;
        }
    }

    /// WHIP: seats a publisher in `meeting` (its settings given) and answers its offer: (participant id, answer).
    /// Refusals are a signaling close code and its reason (`close::*`), which the HTTP layer maps to a status.
    pub async fn ingest(
        &self,
        meeting: &crate::store::Meeting,
        claims: crate::tokens::Claims,
        offer: crate::sdp::Answer,
        source: IpAddr,
    ) -> Result<(String, String), (u16, String)> {
        let Some(runtime) = self.runtime.as_ref() else {
            return Err((protocol::close::UNAVAILABLE, "this server runs no media workers".into()));
        };
        let mut request = headless(claims, source);
        let offer = Box::new(offer);
        // A room closing as we arrive refuses the command; the second try starts a new one.
        for _ in 0..2 {
            let room = self.room(&meeting.id, &meeting.settings, runtime);
            let (reply, answer) = oneshot::channel();
            match room.send(RoomCommand::Ingest { request, offer: offer.clone(), reply }).await {
                Ok(()) => {
                    return answer.await.map_err(|_| (protocol::close::UNAVAILABLE, "the room stopped".into()))?;
                }
                Err(tokio::sync::mpsc::error::SendError(RoomCommand::Ingest { request: back, .. })) => request = back,
                Err(_) => unreachable!("the command sent comes back"),
            }
        }
        Err((protocol::close::UNAVAILABLE, "the meeting's room is restarting: try again".into()))
    }

    /// WHEP: seats a player in `meeting` watching `selection` and answers its offer: (participant id, answer).
    /// Only a live meeting has anyone to watch: no room is started for a player.
    pub async fn play(
        &self,
        meeting: &crate::store::Meeting,
        claims: crate::tokens::Claims,
        offer: crate::sdp::Answer,
        selection: Selection,
        source: IpAddr,
    ) -> Result<(String, String), (u16, String)> {
        if self.runtime.is_none() {
            return Err((protocol::close::UNAVAILABLE, "this server runs no media workers".into()));
        }
        let nobody = || (protocol::close::NO_MEETING, "nobody is in the meeting to watch".to_string());
        let room = self.registry.get(&meeting.id).ok_or_else(nobody)?;
        let request = headless(claims, source);
        let (reply, answer) = oneshot::channel();
        let command = RoomCommand::Play { request, offer: Box::new(offer), selection, reply };
        room.send(command).await.map_err(|_| nobody())?;
        answer.await.map_err(|_| (protocol::close::UNAVAILABLE, "the room stopped".to_string()))?
    }

    /// WHIP `DELETE` (`end`): ends `user_id`'s ingest session `participant`; false if there is none. Without
    /// `end`, only whether there is.
    pub async fn ingest_end(&self, meeting_id: &str, participant: &str, user_id: &str, end: bool) -> bool {
        let Some(room) = self.registry.get(meeting_id) else { return false };
        let (reply, answer) = oneshot::channel();
        let command = RoomCommand::IngestEnd { participant: participant.into(), user_id: user_id.into(), end, reply };
        room.send(command).await.is_ok() && answer.await.unwrap_or(false)
    }

    /// Whether the meeting has a live room (someone connected or waiting).
    pub fn is_live(&self, meeting_id: &str) -> bool {
        self.registry.get(meeting_id).is_some()
    }

    /// Runs a host control in a live meeting's room (the HTTP API's door; signaling's is the room's messages).
    pub async fn control(&self, meeting_id: &str, actor: Actor, control: Control) -> Result<(), ControlError> {
        let room = self.registry.get(meeting_id).ok_or_else(|| ControlError::state("nobody is in the meeting"))?;
        let (reply, answer) = oneshot::channel();
        room.send(RoomCommand::Control { actor, control, reply })
            .await
            .map_err(|_| ControlError::state("nobody is in the meeting"))?;
        answer.await.map_err(|_| ControlError::state("the meeting's room stopped"))?
    }

    /// Who is in a live meeting now (empty when nobody is).
    pub async fn roster(&self, meeting_id: &str) -> Vec<RosterEntry> {
        let Some(room) = self.registry.get(meeting_id) else { return Vec::new() };
        let (reply, answer) = oneshot::channel();
        if room.send(RoomCommand::Roster { reply }).await.is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// The role and grants a host gave `user_id` in a live meeting, overriding their token's.
    pub async fn effective(&self, meeting_id: &str, user_id: &str) -> Option<(Role, Grants)> {
        let room = self.registry.get(meeting_id)?;
        let (reply, answer) = oneshot::channel();
        room.send(RoomCommand::Effective { user_id: user_id.to_string(), reply }).await.ok()?;
        answer.await.ok().flatten()
    }

    /// A chat message from the HTTP API for a connected user (see `RoomCommand::ChatPost`).
    pub async fn chat_post(
        &self,
        meeting_id: &str,
        user_id: &str,
        post: ChatPost,
        check_only: bool,
    ) -> Result<Option<crate::store::ChatMessage>, ControlError> {
        let absent = || ControlError::new(protocol::ErrorCode::NotFound, "you are not in the meeting: join it first");
        let room = self.registry.get(meeting_id).ok_or_else(absent)?;
        let (reply, answer) = oneshot::channel();
        room.send(RoomCommand::ChatPost { user_id: user_id.to_string(), post, check_only, reply })
            .await
            .map_err(|_| absent())?;
        answer.await.map_err(|_| absent())?
    }

    /// The room a connected user is in (`None`: not connected).
    pub async fn room_of(&self, meeting_id: &str, user_id: &str) -> Option<String> {
        let room = self.registry.get(meeting_id)?;
        let (reply, answer) = oneshot::channel();
        room.send(RoomCommand::RoomOfUser { user_id: user_id.to_string(), reply }).await.ok()?;
        answer.await.ok().flatten()
    }

    /// The breakout rooms of a live meeting as hosts see them (`None`: nobody is in it).
    pub async fn breakouts(&self, meeting_id: &str) -> Option<protocol::BreakoutsView> {
        let room = self.registry.get(meeting_id)?;
        let (reply, answer) = oneshot::channel();
        room.send(RoomCommand::Breakouts { reply }).await.ok()?;
        answer.await.ok()
    }

    /// New settings for a live meeting's room (already stored).
    pub async fn settings_changed(&self, meeting_id: &str, settings: MeetingSettings) {
        if let Some(room) = self.registry.get(meeting_id) {
            let _ = room.send(RoomCommand::Settings { settings }).await;
        }
    }

    /// The room's command queue, starting the room if it is not live.
    fn room(&self, meeting_id: &str, settings: &MeetingSettings, runtime: &Arc<Runtime>) -> mpsc::Sender<RoomCommand> {
        let mut rooms = self.registry.rooms.lock().expect("rooms");
        if let Some(room) = rooms.get(meeting_id).filter(|r| !r.is_closed()) {
            return room.clone();
        }
        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
        let ctx = RoomContext {
            meeting_id: meeting_id.to_string(),
            settings: settings.clone(),
            store: Arc::clone(&self.store),
            runtime: Arc::clone(runtime),
            candidates: Arc::clone(&self.candidates),
            routes: Arc::clone(&self.routes),
            ice: self.ice.clone(),
            blobs: self.blobs.clone(),
            analytics: Arc::clone(&self.analytics),
            ice_timeout: std::time::Duration::from_secs(self.analytics_config.ice_timeout_secs.max(1)),
            commands: tx.downgrade(),
        };
        tokio::spawn(room::run(ctx, rx, Arc::clone(&self.registry)));
        rooms.insert(meeting_id.to_string(), tx.clone());
        tx
    }
}

/// A join for a WHIP or WHEP session: no signaling connection, so nothing reads what the room sends it (the
/// receiving end is dropped at once).
fn headless(claims: crate::tokens::Claims, source: IpAddr) -> room::JoinRequest {
    let (out, _) = tokio::sync::mpsc::channel(1);
    room::JoinRequest {
        claims,
        publish: Vec::new(),
        video_codec: None,
        out,
        source: crate::http::limits::bucket_of(source),
        requested_at: std::time::Instant::now(),
        ingest: true,
    }
}

/// The `a=candidate` values of each worker: its port on every address browsers may reach.
fn worker_candidates(runtime: &Runtime, announce: &[IpAddr]) -> Vec<Vec<String>> {
    (0..runtime.workers())
        .map(|w| {
            let Ok(local) = runtime.local_addr(w) else { return Vec::new() };
            let ips = if !announce.is_empty() {
                announce.to_vec()
            } else if local.ip().is_unspecified() {
                interface_addresses(local.is_ipv4())
            } else {
                vec![local.ip()]
            };
            ips.iter()
                .enumerate()
                .map(|(i, ip)| crate::sdp::offer::host_candidate(i as u32 + 1, SocketAddr::new(*ip, local.port())))
                .collect()
        })
        .collect()
}

/// This machine's addresses of one family, loopback last (a browser elsewhere cannot use it).
fn interface_addresses(v4: bool) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| ip.is_ipv4() == v4 && !ip.is_multicast())
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .collect();
    ips.sort_by_key(|ip| ip.is_loopback());
    ips.dedup();
    ips
}
