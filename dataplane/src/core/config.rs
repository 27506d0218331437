//! Limits of one core (one worker). Everything is allocated from these at start-up; when a table is full the
//! control plane's request is refused, and no packet ever makes anything grow.

use std::time::Duration;

use super::ExtensionIds;

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub participants_max: usize,
    /// Tracks published on this worker.
    pub tracks_max: usize,
    /// Subscriptions (subscriber x track) on this worker.
    pub subscriptions_max: usize,
    /// Inbound SSRCs per participant: audio, screen, three simulcast layers of camera video, and their RTX.
    pub streams_per_participant_max: usize,
    pub subscribers_per_track_max: usize,
    pub subscriptions_per_participant_max: usize,
    /// A participant that sends no ICE check for this long is gone (RFC 7675 consent freshness: 30 s).
    pub consent_timeout: Duration,
    /// At most one keyframe request per track per interval reaches the publisher, however many subscribers ask.
    pub keyframe_request_interval: Duration,
    /// Recent packets kept per video track to answer subscribers' NACKs (1500 bytes each, allocated with the
    /// track). 256 is about one second of 2.5 Mbit/s video. 0 turns retransmission off.
    pub retransmission_buffer_packets: usize,
    /// The RTP header extension ids our SDP offers use.
    pub extension_ids: ExtensionIds,
    /// Decrypted packets in flight to other workers at once (1.5 KB each, allocated when this worker first
    /// relays a track). At 300k packets/s, 4096 is about 14 ms of backlog.
    pub relay_pool_packets: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            participants_max: 1024,
            tracks_max: 4096,
            subscriptions_max: 65_536,
            streams_per_participant_max: 16,
            subscribers_per_track_max: 1024,
            subscriptions_per_participant_max: 512,
            consent_timeout: Duration::from_secs(30),
            keyframe_request_interval: Duration::from_millis(500),
            retransmission_buffer_packets: 256,
            extension_ids: ExtensionIds::default(),
            relay_pool_packets: 4096,
        }
    }
}
