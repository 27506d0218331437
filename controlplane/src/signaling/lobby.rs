//! A meeting's waiting room: people who asked to join and wait, in order of arrival, for a host to admit or
//! deny them. A waiting person has no media, no offer, no participant list and no chat; only the hosts see them.
//! The room owns it (`room.rs`), so it lives as long as the room, across a host's reconnect.

use chrono::{DateTime, Utc};

use super::protocol::WaitingInfo;
use super::room::JoinRequest;

/// People one meeting's waiting room holds; a join beyond it is refused as full.
pub(crate) const WAITING_MAX: usize = 500;
/// People waiting from one source address (a /64 for IPv6): one address cannot fill a waiting room.
pub(crate) const WAITING_PER_SOURCE_MAX: usize = 5;

pub(crate) struct Waiter {
    /// The participant id the session already uses; it keeps it once admitted.
    pub id: String,
    pub request: JoinRequest,
    pub since: DateTime<Utc>,
}

impl Waiter {
    fn info(&self) -> WaitingInfo {
        WaitingInfo { participant_id: self.id.clone(), name: self.request.claims.name.clone(), since: self.since }
    }
}

#[derive(Default)]
pub(crate) struct Lobby {
    waiting: Vec<Waiter>,
}

impl Lobby {
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.waiting.len() >= WAITING_MAX
    }

    pub fn contains(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    pub fn find(&self, id: &str) -> Option<&Waiter> {
        self.waiting.iter().find(|w| w.id == id)
    }

    /// How many wait from `source`.
    pub fn waiting_from(&self, source: std::net::IpAddr) -> usize {
        self.waiting.iter().filter(|w| w.request.source == source).count()
    }

    pub fn add(&mut self, waiter: Waiter) {
        self.waiting.push(waiter);
    }

    /// Takes one person out (admitted, denied or gone).
    pub fn take(&mut self, id: &str) -> Option<Waiter> {
        let at = self.waiting.iter().position(|w| w.id == id)?;
        Some(self.waiting.remove(at))
    }

    /// Takes the person waiting under `user_id`, if any (the same person joining again from another tab).
    pub fn take_user(&mut self, user_id: &str) -> Option<Waiter> {
        let at = self.waiting.iter().position(|w| w.request.claims.sub == user_id)?;
        Some(self.waiting.remove(at))
    }

    /// Everyone, in order of arrival.
    pub fn take_all(&mut self) -> Vec<Waiter> {
        std::mem::take(&mut self.waiting)
    }

    /// What hosts are shown, in order of arrival.
    pub fn list(&self) -> Vec<WaitingInfo> {
        self.waiting.iter().map(Waiter::info).collect()
    }
}
