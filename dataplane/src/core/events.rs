//! What a core tells its caller: events for the control plane ([`super::Core::poll_event`]) and the counters the runtime
//! copies out ([`super::Core::counters`]).

use std::net::SocketAddr;

use super::{DropReason, ParticipantId, RelayKey, SubscriptionId};

/// Things the control plane wants to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The participant's browser nominated an address (first connection, or a move to a new network).
    Nominated { participant: ParticipantId, address: SocketAddr },
    /// DTLS-SRTP finished and the keys are installed: media flows both ways.
    Connected { participant: ParticipantId },
    /// The DTLS handshake failed; the participant cannot send or receive media until it reconnects.
    DtlsFailed { participant: ParticipantId, reason: DtlsFailure },
    /// No consent for `consent_timeout`, or the browser closed DTLS: the participant is unreachable. Media to
    /// and from it stops.
    Gone { participant: ParticipantId },
    /// A subscriber of a mirrored track needs a keyframe: the runtime asks the publisher's worker
    /// ([`super::Core::request_relayed_keyframe`]). Rate-limited here like a PLI.
    KeyframeNeeded { key: RelayKey, layer: u8 },
    /// A subscription now receives another layer of its track (`Some`), or nothing (`None`: paused because its
    /// lowest layer does not fit the subscriber's bandwidth), and why.
    LayerChanged { participant: ParticipantId, subscription: SubscriptionId, layer: Option<u8>, reason: LayerReason },
}

/// Why a subscription receives the layer it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerReason {
    /// The layer asked for (`set_layer`), or the best one, fits the subscriber's bandwidth and is being sent.
    Requested,
    /// The subscriber's bandwidth estimate does not carry more.
    Bandwidth,
    /// The publisher does not send the layer asked for now (its own bandwidth, or a small capture).
    PublisherPaused,
}

impl LayerReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerReason::Requested => "requested",
            LayerReason::Bandwidth => "bandwidth",
            LayerReason::PublisherPaused => "publisher_paused",
        }
    }
}

impl Event {
    /// The participant the event is about (a keyframe request is about a track).
    pub fn participant(&self) -> Option<ParticipantId> {
        match *self {
            Event::Nominated { participant, .. }
            | Event::Connected { participant }
            | Event::DtlsFailed { participant, .. }
            | Event::Gone { participant }
            | Event::LayerChanged { participant, .. } => Some(participant),
            Event::KeyframeNeeded { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsFailure {
    /// The certificate the browser presented is not the one its SDP's `a=fingerprint` names.
    FingerprintMismatch,
    /// The browser offered no SRTP protection profile we implement.
    NoSrtpProfile,
    /// The handshake itself failed (bad messages, a timeout, a protocol error).
    Handshake,
}

/// Everything counted by one core. Plain integers: one core owns them, the runtime copies them out.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub datagrams_in: u64,
    pub bytes_in: u64,
    pub rtp_in: u64,
    pub rtcp_in: u64,
    pub stun_in: u64,
    pub rtp_out: u64,
    pub rtcp_out: u64,
    pub stun_out: u64,
    pub bytes_out: u64,
    /// Subscriptions skipped because the subscriber is not connected yet (no address or keys).
    pub fanout_not_ready: u64,
    /// Packets of a simulcast layer a subscription does not take (it takes another layer, or waits for a
    /// keyframe on the one it switches to).
    pub fanout_other_layer: u64,
    /// Simulcast layer switches made (each at a keyframe of the new layer).
    pub layer_switches: u64,
    /// Subscriptions moved to another track (a player following the active speaker).
    pub retargets: u64,
    /// Layer allocations lowered, raised and paused because of subscribers' bandwidth estimates.
    pub bandwidth_downgrades: u64,
    pub bandwidth_upgrades: u64,
    pub bandwidth_pauses: u64,
    /// VP8 packets of upper temporal layers not forwarded while a subscription waits for a lower layer's keyframe
    /// after its allocation went down.
    pub fanout_temporal_shed: u64,
    /// Packets not forwarded because the subscription is paused for bandwidth.
    pub fanout_paused: u64,
    /// Probes started towards subscribers, those that found the room they looked for and those that did not,
    /// and padding packets sent for them.
    pub probes: u64,
    pub probes_succeeded: u64,
    pub probes_failed: u64,
    pub padding_sent: u64,
    /// REMBs received from subscribers (used as their estimate only while they send no transport-wide feedback).
    pub rembs_in: u64,
    /// Video packets that waited in a subscriber's pacer, and their total wait in microseconds.
    pub paced: u64,
    pub pacer_wait_us: u64,
    /// SSRCs learned from MID/RID header extensions.
    pub ssrcs_learned: u64,
    /// Packets a subscription dropped as belonging before its current source (after a switch).
    pub fanout_stale: u64,
    pub keyframe_requests_forwarded: u64,
    pub keyframe_requests_limited: u64,
    pub sender_reports_sent: u64,
    pub receiver_reports_sent: u64,
    /// NACKs we sent to publishers, and the packets they named.
    pub nacks_sent: u64,
    /// Packets retransmitted to subscribers in answer to their NACKs.
    pub retransmissions_sent: u64,
    /// NACKed packets we could not retransmit (no longer buffered, or from before a source switch).
    pub retransmissions_unavailable: u64,
    /// Transport-wide feedback messages sent to publishers.
    pub transport_feedback_sent: u64,
    /// Packets other workers decrypted and relayed to this one's mirrors.
    pub relays_in: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl Counters {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
}
