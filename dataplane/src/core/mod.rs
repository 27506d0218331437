//! The sans-IO forwarding core of one worker: participants, their tracks and subscriptions, and the packet path
//! from one publisher's SRTP to every subscriber's SRTP.
//!
//! Driving contract (as quinn and str0m): feed every datagram to [`Core::handle_receive`] and call
//! [`Core::handle_timeout`] when [`Core::poll_timeout`] says; both write datagrams into the caller's
//! [`Transmits`] batch, which the caller sends and clears. Drain [`Core::poll_event`] after each call. Time only
//! enters as the `now` argument; nothing here blocks, allocates per packet, or touches a socket.
//!
//! The packet path, step by step (see `docs/dataplane.md`):
//! 1. [`demux::classify`] by first byte (RFC 7983);
//! 2. STUN: ICE-lite answers Binding requests and nominates the sender's address;
//! 3. RTP: the source address names the participant; the SSRC names the inbound stream; the replay window checks
//!    the estimated index; SRTP decrypts in place, once;
//! 4. fan-out: for each subscription of the track, copy into a transmit slot, rewrite SSRC, sequence number and
//!    timestamp, encrypt with the subscriber's keys, commit;
//! 5. RTCP: decrypt, then act on keyframe requests (rate-limited) per subscription.

mod arrivals;
mod config;
mod downlink;
mod drop;
mod dtls;
mod events;
mod feedback;
mod handshake;
mod ice;
mod media;
mod pacing;
mod peer_signature;
mod relay;
mod reports;
mod rewrite;
mod rtx;
mod slab;
mod speech;
mod stats;
mod timers;
mod track;
mod transmit;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use arrivals::ArrivalRecorder;
pub use config::CoreConfig;
pub use drop::DropReason;
pub use dtls::{DtlsIdentity, Fingerprint, IdentityError, profile_of as srtp_profile_of, split_keying_material};
pub use events::{Counters, DtlsFailure, Event, LayerReason};
pub use relay::{RELAY_WORKERS_MAX, Relay, RelayKey, RelayPacket};
use relay::{RelayPool, TrackRelay};
pub use reports::Wallclock;
use reports::{ReceiveStats, SenderClock};
pub use rewrite::{PictureIdRewriter, PicturePatch, SeqRewriter};
use rtx::{MissingPackets, RetransmissionBuffer};
pub use slab::Key;
pub use speech::AudioActivity;
pub use stats::ParticipantStats;
pub use track::{ExtensionIds, LAYERS_MAX, LayerSpec, Tag, TrackSpec};
use track::{LayerActivity, LayerRates};
pub use transmit::{DATAGRAM_MAX, Transmit, Transmits};

use crate::packet::demux::{self, Kind};
use crate::packet::rtcp;
use crate::packet::rtp::{self, RtpHeader};
use crate::packet::stun::{self, Message, Writer};
use crate::srtp::{self, Profile, ReplayWindow};

use slab::Slab;

pub type ParticipantId = Key;
pub type TrackId = Key;
pub type SubscriptionId = Key;

/// How often consent freshness is checked; a participant is reported gone at most this long after its timeout.
const CONSENT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The SSRC the SFU uses as the sender of the RTCP it originates (keyframe requests, reports).
const SFU_RTCP_SSRC: u32 = 1;
/// After a participant moves to a new address, packets already in flight from the old one are still accepted
/// for this long (the old candidate pair stays valid in ICE); nothing is sent there.
const PREVIOUS_ADDRESS_GRACE: Duration = Duration::from_secs(5);
/// DTLS records waiting per participant for the next handshake step. A handshake flight is at most a few
/// records; more means a flood, which is dropped (`DropReason::DtlsBacklog`).
const DTLS_INBOX_MAX: usize = 16;
/// dimpl writes each output record into this scratch buffer before it is copied into the transmit batch.
const DTLS_SCRATCH_LEN: usize = 4096;
/// How often each connected participant gets its Sender and Receiver Reports (RFC 3550 suggests 5 s minimum for
/// large sessions; browsers send about once a second, and lip-sync converges faster with frequent SRs).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How often publishers get transport-wide feedback (libwebrtc's receivers send it every 50-100 ms).
const FEEDBACK_INTERVAL: Duration = Duration::from_millis(100);
/// RTCP bytes per report datagram before SRTCP's trailer; more reports go in further datagrams.
const REPORT_DATAGRAM_MAX: usize = 1200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("{0} limit reached")]
    Full(&'static str),
    #[error("no such participant")]
    UnknownParticipant,
    #[error("no such track")]
    UnknownTrack,
    #[error("no such subscription")]
    UnknownSubscription,
    #[error("ICE ufrag {0:?} is already in use on this worker")]
    DuplicateUfrag(String),
    #[error("SSRC {0} is already announced by this participant")]
    DuplicateSsrc(u32),
    #[error("a track needs 1 to {LAYERS_MAX} layers, each with an SSRC or a RID (and a MID if any has no SSRC)")]
    BadLayers,
    #[error("the track has no layer {0}")]
    UnknownLayer(u8),
    #[error("relay key {0} is already in use on this worker")]
    DuplicateRelayKey(u64),
    #[error("{0}")]
    Dtls(&'static str),
    #[error("{0}")]
    Mismatch(&'static str),
    #[error("bad SRTP keys: {0}")]
    Keys(#[from] srtp::SrtpError),
}

/// ICE-lite credentials of the server side of one participant's connection (from our SDP offer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    /// RTP clock rate: Opus runs at 48 kHz; VP8, VP9, H.264 and AV1 at 90 kHz.
    pub fn clock_rate(self) -> u32 {
        match self {
            MediaKind::Audio => 48_000,
            MediaKind::Video => 90_000,
        }
    }
}

/// How a subscriber receives a track: the SSRC and payload type from the subscriber's SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionSpec {
    pub ssrc: u32,
    /// Rewrite the payload type when the subscriber's mapping differs from the publisher's.
    pub payload_type: Option<u8>,
    /// Retransmissions go on this RTX stream (RFC 4588) when the subscriber negotiated one; else on the media
    /// SSRC itself.
    pub rtx: Option<RtxSpec>,
}

/// An RTX stream: its own SSRC and the payload type of `a=rtpmap:<pt> rtx/90000` with `apt=` the media's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtxSpec {
    pub ssrc: u32,
    pub payload_type: u8,
}

#[derive(Debug)]
struct InboundStream {
    ssrc: u32,
    track: TrackId,
    layer: u8,
    clock_rate: u32,
    window: ReplayWindow,
    stats: ReceiveStats,
    /// Video only: packets the publisher has not delivered, which we NACK.
    missing: Option<MissingPackets>,
    /// Learned from MID/RID, kept only once a packet on it authenticates.
    pending: bool,
}

struct Participant {
    ice: IceCredentials,
    /// Where this participant's media goes: the first address that passed an ICE check, then each address the
    /// browser nominates.
    address: Option<SocketAddr>,
    /// The address before the last move, still accepted for receiving until the instant given.
    previous_address: Option<(SocketAddr, Instant)>,
    nominated: bool,
    last_consent: Option<Instant>,
    gone: bool,
    dtls: Option<Box<dimpl::Dtls>>,
    /// From the participant's SDP; the certificate it presents must match.
    remote_fingerprint: Option<Fingerprint>,
    peer_verified: bool,
    dtls_inbox: std::collections::VecDeque<Vec<u8>>,
    dtls_timeout: Option<Instant>,
    handshake_queued: bool,
    dtls_failed: bool,
    rx: Option<srtp::Context>,
    tx: Option<srtp::Context>,
    /// Next SRTCP index for RTCP we send to this participant.
    srtcp_index: u32,
    /// Transport-wide sequence number of the next packet we send this participant (draft-holmer-rmcat-
    /// transport-wide-cc-extensions): one counter per transport, across all its subscriptions.
    transport_seq: u16,
    /// Arrivals of its packets by their transport-wide numbers, for the feedback we send it.
    arrivals: ArrivalRecorder,
    /// Listed in `Core::nack_pending` (so the packet path need not search the list).
    nack_queued: bool,
    inbound: Vec<InboundStream>,
    rtcp_windows: Vec<(u32, ReplayWindow)>,
    subscriptions: Vec<SubscriptionId>,
    tracks: Vec<TrackId>,
    /// For analytics (`stats.rs`).
    media: stats::MediaCounters,
    /// How fast we may send to it, from its transport-wide feedback.
    bwe: Box<crate::bwe::SendSideEstimator>,
    /// Its video waiting for the link (`pacing.rs`); `pace_listed` while it is in `Core::pacing`.
    pacer: Box<pacing::SubscriberPacer>,
    pace_listed: bool,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("ufrag", &self.ice.ufrag)
            .field("address", &self.address)
            .field("nominated", &self.nominated)
            .field("gone", &self.gone)
            .field("connected", &self.tx.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Track {
    /// `None` for a mirror of a track published on another worker.
    publisher: Option<ParticipantId>,
    relay: TrackRelay,
    spec: TrackSpec,
    subscribers: Vec<SubscriptionId>,
    /// Per layer: keyframe requests are limited per SSRC.
    last_keyframe_request: [Option<Instant>; LAYERS_MAX],
    /// Simulcast: which layers arrive, so a subscription gets the best one being sent.
    layers: LayerActivity,
    /// Per layer, video only (and unless turned off): recent packets for answering NACKs. Allocated with the
    /// track, also for layers whose SSRC is learned later.
    retransmission: [Option<RetransmissionBuffer>; LAYERS_MAX],
    /// What each layer costs to forward, for the layer allocator.
    rates: LayerRates,
    /// Its media is dropped (`DropReason::Blocked`): a host stopped it, or the grant to publish it was revoked.
    blocked: bool,
    /// Audio: the levels its packets carried since the control plane last read them.
    speech: AudioActivity,
}

#[derive(Debug)]
struct Subscription {
    subscriber: ParticipantId,
    track: TrackId,
    spec: SubscriptionSpec,
    rewriter: SeqRewriter,
    /// VP8 and VP9: PictureID and TL0PICIDX continuity across layer switches.
    picture: PictureIdRewriter,
    timestamp_offset: u32,
    /// Moved to another track: the next packet forwarded starts a new source (sequence, timestamp, picture ID).
    source_switch: bool,
    /// The layer being forwarded (`None` until the first keyframe of `target_layer` on a simulcast track).
    layer: Option<u8>,
    target_layer: u8,
    /// Last output timestamp, for continuity across layer switches.
    last_timestamp: u32,
    /// Extended index of the last packet sent on the RTX stream (its own sequence space).
    rtx_index: Option<u64>,
    /// What the subscriber's bandwidth allows (video).
    allocation: downlink::Allocation,
    /// The last time the allocation went down: no upgrade for a while after.
    downgraded_at: Option<Instant>,
    packets_sent: u64,
    octets_sent: u64,
}

#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    participants: Slab<Participant>,
    tracks: Slab<Track>,
    subscriptions: Slab<Subscription>,
    by_ufrag: FxHashMap<Box<str>, ParticipantId>,
    by_address: FxHashMap<SocketAddr, ParticipantId>,
    events: std::collections::VecDeque<Event>,
    next_consent_check: Option<Instant>,
    counters: Counters,
    identity: DtlsIdentity,
    /// Participants with DTLS records or a due DTLS timer, processed by `handle_handshakes`.
    handshake_queue: std::collections::VecDeque<ParticipantId>,
    /// Participants whose handshake has not finished (their DTLS timers matter).
    handshaking: Vec<ParticipantId>,
    dtls_scratch: Box<[u8]>,
    wallclock: Option<Wallclock>,
    /// Origin of arrival times for jitter: the first `now` the core saw.
    origin: Option<Instant>,
    next_reports: Option<Instant>,
    report_scratch: Box<[u8]>,
    /// The participants of one timer round (reports, allocation), reused: no allocation per tick.
    round_ids: Vec<ParticipantId>,
    /// Participants with packets to NACK; `next_nack` is the earliest due.
    nack_pending: Vec<ParticipantId>,
    next_nack: Option<Instant>,
    /// Participants with arrivals to report; `next_feedback` is when.
    feedback_pending: Vec<ParticipantId>,
    /// Subscribers' transport-wide feedback, decoded (capacity `twcc::REPORTED_MAX`: never grows).
    twcc_scratch: Vec<crate::packet::twcc::PacketResult>,
    next_feedback: Option<Instant>,
    /// Relayed tracks by key: originals published here and mirrors of others'.
    by_relay_key: FxHashMap<RelayKey, TrackId>,
    /// Allocated when this worker first relays a track.
    relay_pool: Option<RelayPool>,
    /// Reused by every allocation (capacity `subscriptions_per_participant_max`: never grows).
    allocator: downlink::Scratch,
    /// Subscribers a probe is sending padding to; `next_probe` is the next padding tick.
    probing: Vec<ParticipantId>,
    next_probe: Option<Instant>,
    /// Allocation without feedback, while any subscriber's link has shown its limit.
    next_allocation: Option<Instant>,
    /// Subscribers with video in their pacer; `next_pace` is the next pacing tick.
    pacing: Vec<ParticipantId>,
    next_pace: Option<Instant>,
}

impl Core {
    /// A core with a freshly generated DTLS identity.
    pub fn new(config: CoreConfig) -> Core {
        // Generating an ECDSA key only fails if the system has no randomness, which nothing here survives.
        Core::with_identity(config, DtlsIdentity::generate().expect("generate a DTLS identity"))
    }

    /// A core presenting `identity` in DTLS (workers of one node share one, so one fingerprint goes in SDP).
    pub fn with_identity(config: CoreConfig, identity: DtlsIdentity) -> Core {
        let hasher = rustc_hash::FxBuildHasher;
        Core {
            participants: Slab::with_capacity(config.participants_max),
            tracks: Slab::with_capacity(config.tracks_max),
            subscriptions: Slab::with_capacity(config.subscriptions_max),
            by_ufrag: FxHashMap::with_capacity_and_hasher(config.participants_max, hasher),
            // A participant moving networks is briefly known at two addresses.
            by_address: FxHashMap::with_capacity_and_hasher(config.participants_max * 2, hasher),
            events: std::collections::VecDeque::with_capacity(config.participants_max * 2),
            next_consent_check: None,
            counters: Counters::default(),
            identity,
            handshake_queue: std::collections::VecDeque::with_capacity(config.participants_max),
            handshaking: Vec::with_capacity(config.participants_max),
            dtls_scratch: vec![0u8; DTLS_SCRATCH_LEN].into_boxed_slice(),
            wallclock: None,
            origin: None,
            next_reports: None,
            report_scratch: vec![0u8; DATAGRAM_MAX].into_boxed_slice(),
            round_ids: Vec::with_capacity(config.participants_max),
            nack_pending: Vec::with_capacity(config.participants_max),
            next_nack: None,
            feedback_pending: Vec::with_capacity(config.participants_max),
            twcc_scratch: Vec::with_capacity(crate::packet::twcc::REPORTED_MAX),
            next_feedback: None,
            by_relay_key: FxHashMap::default(),
            relay_pool: None,
            allocator: downlink::Scratch::new(config.subscriptions_per_participant_max),
            probing: Vec::with_capacity(config.participants_max),
            next_probe: None,
            next_allocation: None,
            pacing: Vec::with_capacity(config.participants_max),
            next_pace: None,
            config,
        }
    }

    /// Ties the core's `Instant`s to wallclock time (read once by the runtime), so Sender Reports carry NTP time.
    /// Without it the core sends no reports.
    pub fn set_wallclock(&mut self, now: Instant, since_unix_epoch: Duration) {
        self.wallclock = Some(Wallclock::new(now, since_unix_epoch));
        self.next_reports.get_or_insert(now + REPORT_INTERVAL);
    }

    /// The fingerprint of this core's DTLS certificate, for `a=fingerprint` in the SDP offers.
    pub fn fingerprint(&self) -> Fingerprint {
        self.identity.fingerprint()
    }

    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// Whether a participant of this core has this ICE ufrag (ours, the first half of a check's USERNAME).
    pub fn knows_ufrag(&self, ufrag: &str) -> bool {
        self.by_ufrag.contains_key(ufrag)
    }

    pub fn participant_ufrag(&self, id: ParticipantId) -> Option<&str> {
        self.participants.get(id).map(|p| p.ice.ufrag.as_str())
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] wants calling next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let dtls = self.handshaking.iter().filter_map(|id| self.participants.get(*id)?.dtls_timeout).min();
        [
            self.next_consent_check,
            dtls,
            self.next_reports,
            self.next_nack,
            self.next_feedback,
            self.next_probe,
            self.next_allocation,
            self.next_pace,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether [`Core::handle_handshakes`] has work.
    pub fn has_handshake_work(&self) -> bool {
        !self.handshake_queue.is_empty()
    }

    // ---- control: called by the runtime on commands from the control plane ----------------------------------

    pub fn add_participant(&mut self, ice: IceCredentials) -> Result<ParticipantId, CoreError> {
        if self.by_ufrag.contains_key(ice.ufrag.as_str()) {
            return Err(CoreError::DuplicateUfrag(ice.ufrag));
        }
        let ufrag: Box<str> = ice.ufrag.clone().into_boxed_str();
        let participant = Participant {
            ice,
            address: None,
            previous_address: None,
            nominated: false,
            last_consent: None,
            gone: false,
            dtls: None,
            remote_fingerprint: None,
            peer_verified: false,
            dtls_inbox: std::collections::VecDeque::new(),
            dtls_timeout: None,
            handshake_queued: false,
            dtls_failed: false,
            rx: None,
            tx: None,
            srtcp_index: 0,
            transport_seq: 0,
            arrivals: ArrivalRecorder::default(),
            nack_queued: false,
            inbound: Vec::with_capacity(self.config.streams_per_participant_max),
            rtcp_windows: Vec::with_capacity(
                self.config.streams_per_participant_max + self.config.subscriptions_per_participant_max,
            ),
            subscriptions: Vec::with_capacity(self.config.subscriptions_per_participant_max),
            tracks: Vec::with_capacity(self.config.streams_per_participant_max),
            media: stats::MediaCounters::default(),
            bwe: Box::new(crate::bwe::SendSideEstimator::new(crate::bwe::START_BPS)),
            pacer: pacing::new_pacer(),
            pace_listed: false,
        };
        let id = self.participants.insert(participant).ok_or(CoreError::Full("participants"))?;
        self.by_ufrag.insert(ufrag, id);
        Ok(id)
    }

    /// Removes a participant with its tracks (and everyone's subscriptions to them) and its own subscriptions.
    pub fn remove_participant(&mut self, id: ParticipantId) -> Result<(), CoreError> {
        let p = self.participants.get(id).ok_or(CoreError::UnknownParticipant)?;
        let (tracks, subs) = (p.tracks.clone(), p.subscriptions.clone());
        for track in tracks {
            self.remove_track(track)?;
        }
        for sub in subs {
            self.unsubscribe(sub)?;
        }
        let p = self.participants.remove(id).ok_or(CoreError::UnknownParticipant)?;
        self.by_ufrag.remove(p.ice.ufrag.as_str());
        for addr in p.address.into_iter().chain(p.previous_address.map(|(a, _)| a)) {
            self.by_address.remove(&addr);
        }
        self.handshaking.retain(|h| *h != id);
        Ok(())
    }

    /// Installs the SRTP keys DTLS-SRTP exported: `local` protects what we send, `remote` what the participant
    /// sends (RFC 5764 section 4.2: the client's key is the server's remote key).
    pub fn set_srtp_keys(
        &mut self,
        id: ParticipantId,
        profile: Profile,
        local: (&[u8], &[u8]),
        remote: (&[u8], &[u8]),
    ) -> Result<(), CoreError> {
        let tx = srtp::Context::new(profile, local.0, local.1)?;
        let rx = srtp::Context::new(profile, remote.0, remote.1)?;
        let p = self.participants.get_mut(id).ok_or(CoreError::UnknownParticipant)?;
        p.tx = Some(tx);
        p.rx = Some(rx);
        Ok(())
    }

    pub fn add_track(&mut self, publisher: ParticipantId, spec: TrackSpec) -> Result<TrackId, CoreError> {
        let layers = spec.layer_count();
        // Every layer is found by its SSRC, by MID and RID, or (a single layer) by MID alone.
        let named = spec
            .layers
            .iter()
            .flatten()
            .all(|l| l.ssrc.is_some() || (spec.mid.is_some() && (l.rid.is_some() || layers == 1)));
        let contiguous = spec.layers.iter().take(layers).all(Option::is_some);
        if layers == 0 || !named || !contiguous {
            return Err(CoreError::BadLayers);
        }
        let p = self.participants.get(publisher).ok_or(CoreError::UnknownParticipant)?;
        let known: Vec<u32> = spec.layers.iter().flatten().filter_map(|l| l.ssrc).collect();
        if let Some(dup) = known.iter().find(|ssrc| p.inbound.iter().any(|s| s.ssrc == **ssrc)) {
            return Err(CoreError::DuplicateSsrc(*dup));
        }
        if p.inbound.len() + layers > self.config.streams_per_participant_max {
            return Err(CoreError::Full("streams per participant"));
        }
        let track = self.new_track(Some(publisher), spec);
        let id = self.tracks.insert(track).ok_or(CoreError::Full("tracks"))?;
        let p = self.participants.get_mut(publisher).expect("checked above");
        for (layer, l) in spec.layers.iter().enumerate() {
            if let Some(ssrc) = l.and_then(|l| l.ssrc) {
                p.inbound.push(InboundStream::new(ssrc, id, layer as u8, spec.kind));
            }
        }
        p.tracks.push(id);
        Ok(id)
    }

    fn new_track(&self, publisher: Option<ParticipantId>, spec: TrackSpec) -> Track {
        let video = spec.kind == MediaKind::Video;
        let buffered = self.config.retransmission_buffer_packets;
        let mut retransmission = [None, None, None];
        for buffer in retransmission.iter_mut().take(spec.layer_count()) {
            *buffer = (video && buffered > 0).then(|| RetransmissionBuffer::new(buffered));
        }
        Track {
            publisher,
            relay: TrackRelay::default(),
            spec,
            subscribers: Vec::with_capacity(self.config.subscribers_per_track_max),
            last_keyframe_request: [None; LAYERS_MAX],
            layers: LayerActivity::default(),
            rates: LayerRates::default(),
            retransmission,
            blocked: false,
            speech: AudioActivity::default(),
        }
    }

    /// Stops (or resumes) forwarding a published track: its packets are still decrypted, then dropped as
    /// `Blocked`. Subscribers see a pause, as for a muted source.
    pub fn block_track(&mut self, id: TrackId, blocked: bool) -> Result<(), CoreError> {
        let track = self.tracks.get_mut(id).ok_or(CoreError::UnknownTrack)?;
        track.blocked = blocked;
        Ok(())
    }

    pub fn remove_track(&mut self, id: TrackId) -> Result<(), CoreError> {
        let subs = self.tracks.get(id).ok_or(CoreError::UnknownTrack)?.subscribers.clone();
        for sub in subs {
            self.unsubscribe(sub)?;
        }
        let track = self.tracks.remove(id).ok_or(CoreError::UnknownTrack)?;
        if let Some(key) = track.relay.key {
            self.by_relay_key.remove(&key);
        }
        if let Some(p) = track.publisher.and_then(|id| self.participants.get_mut(id)) {
            p.inbound.retain(|s| s.track != id);
            p.tracks.retain(|t| *t != id);
        }
        Ok(())
    }

    pub fn subscribe(
        &mut self,
        subscriber: ParticipantId,
        track: TrackId,
        spec: SubscriptionSpec,
    ) -> Result<SubscriptionId, CoreError> {
        let t = self.tracks.get(track).ok_or(CoreError::UnknownTrack)?;
        let p = self.participants.get(subscriber).ok_or(CoreError::UnknownParticipant)?;
        if t.subscribers.len() == self.config.subscribers_per_track_max {
            return Err(CoreError::Full("subscribers per track"));
        }
        if p.subscriptions.len() == self.config.subscriptions_per_participant_max {
            return Err(CoreError::Full("subscriptions per participant"));
        }
        // A single stream forwards from the first packet (the subscriber asks for a keyframe itself); simulcast
        // and SVC start at a keyframe of the level wanted.
        let single = !t.spec.is_simulcast() && !t.spec.is_svc();
        let top = (t.spec.qualities() - 1) as u8;
        let sub = Subscription {
            subscriber,
            track,
            spec,
            rewriter: SeqRewriter::default(),
            picture: PictureIdRewriter::default(),
            timestamp_offset: 0,
            source_switch: false,
            layer: single.then_some(0),
            target_layer: top,
            last_timestamp: 0,
            rtx_index: None,
            allocation: downlink::Allocation::Unconstrained,
            downgraded_at: None,
            packets_sent: 0,
            octets_sent: 0,
        };
        let id = self.subscriptions.insert(sub).ok_or(CoreError::Full("subscriptions"))?;
        self.tracks.get_mut(track).expect("checked above").subscribers.push(id);
        self.participants.get_mut(subscriber).expect("checked above").subscriptions.push(id);
        Ok(id)
    }

    pub fn unsubscribe(&mut self, id: SubscriptionId) -> Result<(), CoreError> {
        let sub = self.subscriptions.remove(id).ok_or(CoreError::UnknownSubscription)?;
        if let Some(t) = self.tracks.get_mut(sub.track) {
            t.subscribers.retain(|s| *s != id);
        }
        if let Some(p) = self.participants.get_mut(sub.subscriber) {
            p.subscriptions.retain(|s| *s != id);
        }
        Ok(())
    }

    // ---- the packet path -------------------------------------------------------------------------------------

    /// Handles one datagram from `source`, decrypting in place, and writes what it causes into `out`.
    pub fn handle_receive(&mut self, now: Instant, source: SocketAddr, datagram: &mut [u8], out: &mut Transmits) {
        self.counters.datagrams_in += 1;
        self.counters.bytes_in += datagram.len() as u64;
        self.origin.get_or_insert(now);
        match demux::classify(datagram) {
            Kind::Stun => self.handle_stun(now, source, datagram, out),
            Kind::Rtp => self.handle_rtp(now, source, datagram, out),
            Kind::Rtcp => self.handle_rtcp(now, source, datagram, out),
            Kind::Dtls => self.handle_dtls(source, datagram),
            Kind::Other => self.drop(DropReason::UnknownProtocol),
        }
    }

    fn drop(&mut self, reason: DropReason) {
        self.counters.drops[reason as usize] += 1;
    }

    /// Chooses the simulcast layer a subscription should receive (lowest quality 0). The switch happens at the
    /// layer's next keyframe, which is requested now (rate-limited).
    pub fn set_layer(
        &mut self,
        now: Instant,
        subscription: SubscriptionId,
        layer: u8,
        out: &mut Transmits,
    ) -> Result<(), CoreError> {
        let sub = self.subscriptions.get_mut(subscription).ok_or(CoreError::UnknownSubscription)?;
        let track = self.tracks.get(sub.track).ok_or(CoreError::UnknownTrack)?;
        if usize::from(layer) >= track.spec.qualities() {
            return Err(CoreError::UnknownLayer(layer));
        }
        sub.target_layer = layer;
        let (track_id, current) = (sub.track, sub.layer);
        if current != Some(layer) {
            self.send_pli(now, track_id, layer, out);
        }
        Ok(())
    }

    // ---- timers ----------------------------------------------------------------------------------------------
}

/// `now` in µs since the core's first packet: the clock the bandwidth estimators run on.
fn micros_since(origin: Option<Instant>, now: Instant) -> i64 {
    now.saturating_duration_since(origin.unwrap_or(now)).as_micros() as i64
}
