//! Breakout rooms on the wire (`docs/breakouts.md`).

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The main room's id.
pub const MAIN: &str = "main";
/// Breakout rooms one meeting may have.
pub const BREAKOUT_ROOMS_MAX: usize = 50;
pub const BREAKOUT_NAME_MAX: usize = 60;
pub const BROADCAST_MAX: usize = 1000;

/// The rooms as one person may see them: hosts with who is in each, others only the names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakoutsView {
    pub open: bool,
    pub rooms: Vec<BreakoutRoomView>,
    /// Hosts: who is in the main room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main: Option<Vec<PersonView>>,
    /// Hosts: user id to room id, for people assigned who are not here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignments: Option<std::collections::BTreeMap<String, String>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub allow_return: bool,
    pub self_select: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakoutRoomView {
    pub room_id: String,
    pub name: String,
    /// Hosts only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<PersonView>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonView {
    pub participant_id: String,
    pub name: String,
    /// The breakout room they are assigned to, if any (where they go when the rooms open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned: Option<String>,
}
