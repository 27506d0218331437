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

mod config;
mod drop;
mod dtls;
mod reports;
mod rewrite;
mod rtx;
mod slab;
mod track;
mod transmit;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

pub use config::CoreConfig;
pub use drop::DropReason;
pub use dtls::{DtlsIdentity, Fingerprint, IdentityError, profile_of as srtp_profile_of, split_keying_material};
pub use reports::Wallclock;
use reports::{ReceiveStats, SenderClock};
pub use rewrite::SeqRewriter;
use rtx::{MissingPackets, RetransmissionBuffer};
pub use slab::Key;
pub use track::{ExtensionIds, LAYERS_MAX, LayerSpec, Tag, TrackSpec};
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
    #[error("{0}")]
    Dtls(&'static str),
    #[error("bad SRTP keys: {0}")]
    Keys(#[from] srtp::SrtpError),
}

/// ICE-lite credentials of the server side of one participant's connection (from our SDP offer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

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
    pub drops: [u64; DropReason::COUNT],
}

impl Counters {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
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
    inbound: Vec<InboundStream>,
    rtcp_windows: Vec<(u32, ReplayWindow)>,
    subscriptions: Vec<SubscriptionId>,
    tracks: Vec<TrackId>,
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
    publisher: ParticipantId,
    spec: TrackSpec,
    subscribers: Vec<SubscriptionId>,
    /// Per layer: keyframe requests are limited per SSRC.
    last_keyframe_request: [Option<Instant>; LAYERS_MAX],
    /// Per layer, video only (and unless turned off): recent packets for answering NACKs. Allocated with the
    /// track, also for layers whose SSRC is learned later.
    retransmission: [Option<RetransmissionBuffer>; LAYERS_MAX],
}

#[derive(Debug)]
struct Subscription {
    subscriber: ParticipantId,
    track: TrackId,
    spec: SubscriptionSpec,
    rewriter: SeqRewriter,
    timestamp_offset: u32,
    /// The layer being forwarded (`None` until the first keyframe of `target_layer` on a simulcast track).
    layer: Option<u8>,
    target_layer: u8,
    /// Last output timestamp, for continuity across layer switches.
    last_timestamp: u32,
    /// Extended index of the last packet sent on the RTX stream (its own sequence space).
    rtx_index: Option<u64>,
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
    /// Reused each reporting round (no allocation per tick).
    report_ids: Vec<ParticipantId>,
    /// Participants with packets to NACK; `next_nack` is the earliest due.
    nack_pending: Vec<ParticipantId>,
    next_nack: Option<Instant>,
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
            report_ids: Vec::with_capacity(config.participants_max),
            nack_pending: Vec::with_capacity(config.participants_max),
            next_nack: None,
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

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] wants calling next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let dtls = self.handshaking.iter().filter_map(|id| self.participants.get(*id)?.dtls_timeout).min();
        [self.next_consent_check, dtls, self.next_reports, self.next_nack].into_iter().flatten().min()
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
            inbound: Vec::with_capacity(self.config.streams_per_participant_max),
            rtcp_windows: Vec::with_capacity(
                self.config.streams_per_participant_max + self.config.subscriptions_per_participant_max,
            ),
            subscriptions: Vec::with_capacity(self.config.subscriptions_per_participant_max),
            tracks: Vec::with_capacity(self.config.streams_per_participant_max),
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

    /// Expects a DTLS handshake from the participant, whose certificate must match `remote` (its SDP's
    /// `a=fingerprint`). We are the DTLS server (`a=setup:passive` on our side). Records that arrived before
    /// this call are processed now.
    pub fn expect_dtls(&mut self, id: ParticipantId, remote: Fingerprint, now: Instant) -> Result<(), CoreError> {
        let p = self.participants.get_mut(id).ok_or(CoreError::UnknownParticipant)?;
        let mut server = self.identity.server(now);
        // dimpl sets up its handshake state (the server random) in its first timeout; it must run before any
        // record is handled.
        if server.handle_timeout(now).is_err() {
            return Err(CoreError::Dtls("the DTLS endpoint did not start"));
        }
        p.dtls = Some(Box::new(server));
        p.remote_fingerprint = Some(remote);
        p.peer_verified = false;
        p.dtls_failed = false;
        if !self.handshaking.contains(&id) {
            self.handshaking.push(id);
        }
        if !p.dtls_inbox.is_empty() && !p.handshake_queued {
            p.handshake_queued = true;
            self.handshake_queue.push_back(id);
        }
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
        let named = spec.layers.iter().flatten().all(|l| l.ssrc.is_some() || (l.rid.is_some() && spec.mid.is_some()));
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
        let video = spec.kind == MediaKind::Video;
        let buffered = self.config.retransmission_buffer_packets;
        let mut retransmission = [None, None, None];
        for buffer in retransmission.iter_mut().take(layers) {
            *buffer = (video && buffered > 0).then(|| RetransmissionBuffer::new(buffered));
        }
        let track = Track {
            publisher,
            spec,
            subscribers: Vec::with_capacity(self.config.subscribers_per_track_max),
            last_keyframe_request: [None; LAYERS_MAX],
            retransmission,
        };
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

    pub fn remove_track(&mut self, id: TrackId) -> Result<(), CoreError> {
        let subs = self.tracks.get(id).ok_or(CoreError::UnknownTrack)?.subscribers.clone();
        for sub in subs {
            self.unsubscribe(sub)?;
        }
        let track = self.tracks.remove(id).ok_or(CoreError::UnknownTrack)?;
        if let Some(p) = self.participants.get_mut(track.publisher) {
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
        let simulcast = t.spec.is_simulcast();
        let top = (t.spec.layer_count() - 1) as u8;
        let sub = Subscription {
            subscriber,
            track,
            spec,
            rewriter: SeqRewriter::default(),
            timestamp_offset: 0,
            // A single-encoding track forwards from the first packet; the subscriber asks for a keyframe itself.
            layer: (!simulcast).then_some(0),
            target_layer: top,
            last_timestamp: 0,
            rtx_index: None,
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

    fn handle_stun(&mut self, now: Instant, source: SocketAddr, datagram: &[u8], out: &mut Transmits) {
        self.counters.stun_in += 1;
        let Ok(msg) = Message::parse(datagram) else { return self.drop(DropReason::MalformedStun) };
        if msg.msg_type == stun::BINDING_INDICATION {
            // A keepalive (RFC 8445 section 11): nothing to answer.
            return;
        }
        if msg.msg_type != stun::BINDING_REQUEST {
            return self.drop(DropReason::UnexpectedStun);
        }
        // USERNAME is "<our ufrag>:<their ufrag>" (RFC 8445 section 7.2.2).
        let ufrag = msg
            .get(stun::attr::USERNAME)
            .and_then(|u| u.split(|b| *b == b':').next())
            .and_then(|u| std::str::from_utf8(u).ok());
        let Some(&id) = ufrag.and_then(|u| self.by_ufrag.get(u)) else { return self.drop(DropReason::StunUnknownUser) };
        let p = self.participants.get_mut(id).expect("by_ufrag only names live participants");
        if msg.check_integrity(p.ice.pwd.as_bytes()).is_err() || msg.check_fingerprint().is_err() {
            return self.drop(DropReason::StunAuthFailed);
        }
        let Some(slot) = out.slot() else { return self.drop(DropReason::TransmitFull) };
        let written = Writer::new(slot, stun::BINDING_SUCCESS, msg.transaction_id).and_then(|mut w| {
            w.xor_address(stun::attr::XOR_MAPPED_ADDRESS, source)?.integrity(p.ice.pwd.as_bytes())?.fingerprint()?;
            Ok(w.len())
        });
        let len = written.expect("a binding response fits in a datagram buffer");
        out.commit(source, len);
        self.counters.stun_out += 1;
        self.counters.bytes_out += len as u64;

        p.last_consent = Some(now);
        if self.next_consent_check.is_none() {
            self.next_consent_check = Some(now + CONSENT_CHECK_INTERVAL);
        }
        if p.gone {
            return;
        }
        // The first address that passes a check carries DTLS and media until the browser nominates one; a
        // nomination from a new address moves the participant there (a network change keeps the meeting).
        let use_candidate = msg.has(stun::attr::USE_CANDIDATE);
        let moved = p.address != Some(source);
        if p.address.is_none() || (use_candidate && moved) {
            if let Some((stale, _)) = p.previous_address.take()
                && stale != source
            {
                self.by_address.remove(&stale);
            }
            if let Some(old) = p.address.replace(source) {
                p.previous_address = Some((old, now + PREVIOUS_ADDRESS_GRACE));
            }
            self.by_address.insert(source, id);
        }
        if use_candidate && (moved || !p.nominated) {
            p.nominated = true;
            self.events.push_back(Event::Nominated { participant: id, address: source });
        }
    }

    /// DTLS records wait in the participant's inbox for [`Core::handle_handshakes`], off the media path.
    fn handle_dtls(&mut self, source: SocketAddr, datagram: &[u8]) {
        let Some(&id) = self.by_address.get(&source) else { return self.drop(DropReason::UnknownSource) };
        let p = self.participants.get_mut(id).expect("by_address only names live participants");
        if p.dtls_failed {
            return self.drop(DropReason::DtlsFailed);
        }
        if p.dtls_inbox.len() >= DTLS_INBOX_MAX {
            return self.drop(DropReason::DtlsBacklog);
        }
        // Handshake records are copied out (a few per participant, once); media never takes this path.
        p.dtls_inbox.push_back(datagram.to_vec());
        if p.dtls.is_some() && !p.handshake_queued {
            p.handshake_queued = true;
            self.handshake_queue.push_back(id);
        }
    }

    /// Runs up to `budget` participants' pending DTLS work (records received, timers due) and writes the
    /// records it produces into `out`. The runtime calls this between packet batches, so a join storm's
    /// handshakes (ECDHE, ECDSA) never stall forwarding for the participants already in. Returns how many ran.
    pub fn handle_handshakes(&mut self, now: Instant, budget: usize, out: &mut Transmits) -> usize {
        let mut ran = 0;
        while ran < budget {
            let Some(id) = self.handshake_queue.pop_front() else { break };
            if let Some(p) = self.participants.get_mut(id) {
                p.handshake_queued = false;
                self.drive_dtls(now, id, out);
            }
            ran += 1;
        }
        ran
    }

    fn drive_dtls(&mut self, now: Instant, id: ParticipantId, out: &mut Transmits) {
        let Core { participants, events, counters, dtls_scratch, handshaking, .. } = self;
        let p = participants.get_mut(id).expect("the caller checked");
        let Some(dtls) = p.dtls.as_mut() else { return };
        let mut failure = None;
        while let Some(record) = p.dtls_inbox.pop_front() {
            if dtls.handle_packet(&record).is_err() {
                failure = Some(DtlsFailure::Handshake);
                break;
            }
        }
        if failure.is_none() && p.dtls_timeout.is_some_and(|t| t <= now) {
            p.dtls_timeout = None;
            if dtls.handle_timeout(now).is_err() {
                failure = Some(DtlsFailure::Handshake);
            }
        }
        while failure.is_none() {
            match dtls.poll_output(dtls_scratch) {
                dimpl::Output::Packet(record) => match (p.address, out.slot()) {
                    (Some(to), Some(slot)) if record.len() <= slot.len() => {
                        slot[..record.len()].copy_from_slice(record);
                        out.commit(to, record.len());
                        counters.bytes_out += record.len() as u64;
                    }
                    _ => counters.drops[DropReason::TransmitFull as usize] += 1,
                },
                dimpl::Output::Timeout(at) => {
                    p.dtls_timeout = Some(at);
                    break;
                }
                dimpl::Output::PeerCert(der) => {
                    p.peer_verified = p.remote_fingerprint == Some(Fingerprint::of_certificate(der));
                    if !p.peer_verified {
                        failure = Some(DtlsFailure::FingerprintMismatch);
                    }
                }
                dimpl::Output::KeyingMaterial(material, negotiated) => {
                    let keys = dtls::profile_of(negotiated)
                        .and_then(|profile| Some((profile, dtls::split_keying_material(profile, &material)?)));
                    match keys {
                        _ if !p.peer_verified => failure = Some(DtlsFailure::FingerprintMismatch),
                        Some((profile, (client, server))) => {
                            // We are the DTLS server: the server's key protects what we send (RFC 5764 4.2).
                            p.tx = srtp::Context::new(profile, server.0, server.1).ok();
                            p.rx = srtp::Context::new(profile, client.0, client.1).ok();
                            // Media can flow once the keys are in (dimpl reports `Connected` before this). The DTLS
                            // timers keep running: our last flight may be lost, and the browser's retransmission of its
                            // own is answered from them.
                            events.push_back(Event::Connected { participant: id });
                        }
                        None => failure = Some(DtlsFailure::NoSrtpProfile),
                    }
                }
                dimpl::Output::CloseNotify => {
                    p.gone = true;
                    events.push_back(Event::Gone { participant: id });
                }
                _ => {}
            }
        }
        if let Some(reason) = failure {
            p.dtls_failed = true;
            p.dtls = None;
            p.tx = None;
            p.rx = None;
            p.dtls_inbox.clear();
            handshaking.retain(|h| *h != id);
            events.push_back(Event::DtlsFailed { participant: id, reason });
        }
    }

    fn handle_rtp(&mut self, now: Instant, source: SocketAddr, datagram: &mut [u8], out: &mut Transmits) {
        self.counters.rtp_in += 1;
        let Some(&id) = self.by_address.get(&source) else { return self.drop(DropReason::UnknownSource) };
        let Ok(header) = RtpHeader::parse(datagram) else { return self.drop(DropReason::MalformedRtp) };
        let p = self.participants.get(id).expect("by_address only names live participants");
        if p.rx.is_none() {
            return self.drop(DropReason::NotConnected);
        }
        let slot = match p.inbound.iter().position(|s| s.ssrc == header.ssrc) {
            Some(slot) => slot,
            None => match self.learn_ssrc(id, &header, datagram) {
                Some(slot) => slot,
                None => return self.drop(DropReason::UnknownSsrc),
            },
        };
        let p = self.participants.get_mut(id).expect("checked above");
        let rx = p.rx.as_ref().expect("checked above");
        let stream = &mut p.inbound[slot];
        let index = stream.window.index_for(header.seq);
        if stream.window.check(index).is_err() {
            return self.drop(DropReason::Replay);
        }
        let Ok(len) = rx.unprotect_rtp(datagram, header.header_len, index) else {
            if stream.pending {
                // A learned SSRC that did not authenticate is forgotten again.
                p.inbound.swap_remove(slot);
            }
            return self.drop(DropReason::AuthFailed);
        };
        if std::mem::take(&mut stream.pending) {
            self.counters.ssrcs_learned += 1;
        }
        let previous_highest = stream.window.started().then(|| stream.window.highest());
        stream.window.record(index);
        let since_origin = now.saturating_duration_since(self.origin.unwrap_or(now));
        let arrival = (since_origin.as_nanos() * u128::from(stream.clock_rate) / 1_000_000_000) as u64;
        stream.stats.on_packet(index, header.timestamp, arrival);
        let mut unrepairable = false;
        if let Some(missing) = stream.missing.as_mut() {
            unrepairable = missing.on_packet(index, previous_highest, now);
            if let Some(due) = missing.next_due() {
                self.next_nack = Some(self.next_nack.map_or(due, |t| t.min(due)));
                if !self.nack_pending.contains(&id) {
                    self.nack_pending.push(id);
                }
            }
        }
        let (track, layer) = (stream.track, stream.layer);
        if let Some(buffer) = self.tracks.get_mut(track).and_then(|t| t.retransmission[usize::from(layer)].as_mut()) {
            buffer.store(index, &datagram[..len]);
        }
        if unrepairable {
            self.send_pli(now, track, layer, out);
        }
        let owned = self.owned_extensions(now, &header, &datagram[..len]);
        self.fan_out(track, layer, &datagram[..len], &header, owned, out);
    }

    /// Where the header extensions we rewrite sit in this packet, and the abs-send-time value for `now`.
    fn owned_extensions(&self, now: Instant, header: &RtpHeader, plain: &[u8]) -> OwnedExtensions {
        let ids = self.config.extension_ids;
        let transport_seq = header.extension(plain, ids.transport_cc).filter(|(_, len)| *len == 2).map(|(at, _)| at);
        let abs_send_time = header.extension(plain, ids.abs_send_time).filter(|(_, len)| *len == 3).map(|(at, _)| {
            // 6.18 fixed-point seconds: the middle 24 bits of the NTP time.
            let ntp = self.wallclock.map_or_else(
                || reports::to_ntp(now.saturating_duration_since(self.origin.unwrap_or(now))),
                |clock| clock.ntp(now),
            );
            (at, ((ntp >> 14) & 0x00ff_ffff) as u32)
        });
        OwnedExtensions { transport_seq, abs_send_time }
    }

    /// An SSRC the publisher did not list: if its MID and RID header extensions name a layer of one of the
    /// publisher's tracks whose SSRC is not known yet, add a stream for it, pending until its first packet
    /// authenticates. Returns the stream's slot.
    fn learn_ssrc(&mut self, id: ParticipantId, header: &RtpHeader, datagram: &[u8]) -> Option<usize> {
        let ids = self.config.extension_ids;
        let (mid_at, mid_len) = header.extension(datagram, ids.mid)?;
        let (rid_at, rid_len) = header.extension(datagram, ids.rid)?;
        let (mid, rid) = (&datagram[mid_at..mid_at + mid_len], &datagram[rid_at..rid_at + rid_len]);
        let p = self.participants.get(id)?;
        if p.inbound.len() == p.inbound.capacity() {
            return None;
        }
        let (track_id, layer, kind) = p.tracks.iter().find_map(|t| {
            let track = self.tracks.get(*t)?;
            if track.spec.mid.is_none_or(|m| m.as_bytes() != mid) {
                return None;
            }
            let layer =
                track.spec.layers.iter().position(|l| l.is_some_and(|l| l.rid.is_some_and(|r| r.as_bytes() == rid)))?;
            let taken = p.inbound.iter().any(|s| s.track == *t && usize::from(s.layer) == layer);
            (!taken).then_some((*t, layer as u8, track.spec.kind))
        })?;
        let p = self.participants.get_mut(id)?;
        let mut stream = InboundStream::new(header.ssrc, track_id, layer, kind);
        stream.pending = true;
        p.inbound.push(stream);
        Some(p.inbound.len() - 1)
    }

    /// Step 4: one decrypted packet of `layer` to every subscription of its track that takes that layer, switching
    /// subscriptions waiting for this layer when the packet starts a keyframe.
    fn fan_out(
        &mut self,
        track_id: TrackId,
        layer: u8,
        plain: &[u8],
        header: &RtpHeader,
        owned: OwnedExtensions,
        out: &mut Transmits,
    ) {
        let Core { tracks, subscriptions, participants, counters, .. } = self;
        let Some(track) = tracks.get(track_id) else { return };
        if track.subscribers.is_empty() {
            counters.drops[DropReason::NoSubscribers as usize] += 1;
            return;
        }
        if plain.len() + Profile::RTP_OVERHEAD_MAX > DATAGRAM_MAX {
            counters.drops[DropReason::TooLarge as usize] += 1;
            return;
        }
        let mut keyframe: Option<bool> = None;
        for &sub_id in &track.subscribers {
            let sub = subscriptions.get_mut(sub_id).expect("a track lists only live subscriptions");
            if sub.layer != Some(layer) {
                let is_keyframe =
                    *keyframe.get_or_insert_with(|| track.spec.codec.is_keyframe_start(&plain[header.header_len..]));
                if sub.target_layer != layer || !is_keyframe {
                    counters.fanout_other_layer += 1;
                    continue;
                }
                switch_layer(sub, layer, header.timestamp);
                counters.layer_switches += 1;
            }
            let subscriber = participants.get_mut(sub.subscriber).expect("a subscription's subscriber is live");
            let (Some(destination), Some(tx), false) = (subscriber.address, subscriber.tx.as_ref(), subscriber.gone)
            else {
                counters.fanout_not_ready += 1;
                continue;
            };
            let Some((seq, index)) = sub.rewriter.rewrite(header.seq) else {
                counters.fanout_stale += 1;
                continue;
            };
            let Some(slot) = out.slot() else {
                counters.drops[DropReason::TransmitFull as usize] += 1;
                continue;
            };
            let packet =
                Outgoing { plain, header_len: header.header_len, timestamp: header.timestamp, seq, index, owned };
            let len = write_forwarded(slot, &packet, sub, tx, &mut subscriber.transport_seq);
            out.commit(destination, len);
            sub.last_timestamp = header.timestamp.wrapping_add(sub.timestamp_offset);
            sub.packets_sent += 1;
            sub.octets_sent += (plain.len() - header.header_len) as u64;
            counters.rtp_out += 1;
            counters.bytes_out += len as u64;
        }
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
        if usize::from(layer) >= track.spec.layer_count() {
            return Err(CoreError::UnknownLayer(layer));
        }
        sub.target_layer = layer;
        let (track_id, current) = (sub.track, sub.layer);
        if current != Some(layer) {
            self.send_pli(now, track_id, layer, out);
        }
        Ok(())
    }

    /// Answers a subscriber's NACK for the stream it knows as `media_ssrc` from the track's buffer.
    fn retransmit(
        &mut self,
        subscriber: ParticipantId,
        media_ssrc: u32,
        lost: rtcp::NackLost<'_>,
        out: &mut Transmits,
    ) {
        /// Bounds the work one NACK can cause.
        const RETRANSMISSIONS_PER_NACK_MAX: usize = 64;
        let Core { participants, subscriptions, tracks, counters, config, .. } = self;
        let extension_ids = config.extension_ids;
        let Some(p) = participants.get(subscriber) else { return };
        let (Some(destination), Some(tx)) = (p.address, p.tx.as_ref()) else { return };
        let mut transport_seq = p.transport_seq;
        let Some(&sub_id) =
            p.subscriptions.iter().find(|s| subscriptions.get(**s).is_some_and(|s| s.spec.ssrc == media_ssrc))
        else {
            return;
        };
        let sub = subscriptions.get_mut(sub_id).expect("just found");
        let Some(track) = tracks.get(sub.track) else { return };
        let Some(layer) = sub.layer else { return };
        let Some(buffer) = track.retransmission[usize::from(layer)].as_ref() else { return };
        let Some(publisher) = participants.get(track.publisher) else { return };
        let Some(stream) = publisher.inbound.iter().find(|s| s.track == sub.track && s.layer == layer) else { return };
        for out_seq in lost.take(RETRANSMISSIONS_PER_NACK_MAX) {
            let packet = sub.rewriter.reverse(out_seq).and_then(|(in_seq, out_index)| {
                Some((buffer.get(srtp::estimate_index(stream.window.highest(), in_seq))?, out_index))
            });
            let Some((plain, out_index)) = packet else {
                counters.retransmissions_unavailable += 1;
                continue;
            };
            let (Ok(header), Some(slot)) = (RtpHeader::parse(plain), out.slot()) else {
                counters.drops[DropReason::TransmitFull as usize] += 1;
                continue;
            };
            // A retransmission is a new packet on the transport: it gets a new transport-wide number.
            let owned = OwnedExtensions {
                transport_seq: header
                    .extension(plain, extension_ids.transport_cc)
                    .filter(|(_, l)| *l == 2)
                    .map(|(at, _)| at),
                abs_send_time: None,
            };
            let packet = Outgoing {
                plain,
                header_len: header.header_len,
                timestamp: header.timestamp,
                seq: out_seq,
                index: out_index,
                owned,
            };
            let len = match sub.spec.rtx {
                Some(_) if plain.len() + 2 + Profile::RTP_OVERHEAD_MAX > DATAGRAM_MAX => {
                    counters.drops[DropReason::TooLarge as usize] += 1;
                    continue;
                }
                Some(rtx) => {
                    let index = sub.rtx_index.map_or(0, |i| i + 1);
                    sub.rtx_index = Some(index);
                    write_rtx(slot, &packet, sub, rtx, index, tx, &mut transport_seq)
                }
                None => write_forwarded(slot, &packet, sub, tx, &mut transport_seq),
            };
            out.commit(destination, len);
            counters.retransmissions_sent += 1;
            counters.rtp_out += 1;
            counters.bytes_out += len as u64;
        }
        if let Some(p) = participants.get_mut(subscriber) {
            p.transport_seq = transport_seq;
        }
    }

    /// NACKs every publisher stream with packets due for asking (RFC 4585 generic NACK).
    fn send_nacks(&mut self, now: Instant, out: &mut Transmits) {
        let mut next: Option<Instant> = None;
        let mut i = 0;
        while i < self.nack_pending.len() {
            let id = self.nack_pending[i];
            let mut still_missing = false;
            let streams = self.participants.get(id).map_or(0, |p| p.inbound.len());
            for s in 0..streams {
                let mut lost = [0u16; 64];
                let Some(p) = self.participants.get_mut(id) else { break };
                let stream = &mut p.inbound[s];
                let Some(missing) = stream.missing.as_mut() else { continue };
                let n = missing.due(now, &mut lost);
                if let Some(due) = missing.next_due() {
                    still_missing = true;
                    next = Some(next.map_or(due, |t| t.min(due)));
                }
                if n > 0 {
                    let media = stream.ssrc;
                    let len =
                        rtcp::write_nack(&mut self.report_scratch, SFU_RTCP_SSRC, media, lost[..n].iter().copied())
                            .expect("64 NACK items fit a datagram");
                    self.send_rtcp(id, len, out);
                    self.counters.nacks_sent += 1;
                }
            }
            if still_missing {
                i += 1;
            } else {
                self.nack_pending.swap_remove(i);
            }
        }
        self.next_nack = next;
    }

    fn handle_rtcp(&mut self, now: Instant, source: SocketAddr, datagram: &mut [u8], out: &mut Transmits) {
        self.counters.rtcp_in += 1;
        let Some(&id) = self.by_address.get(&source) else { return self.drop(DropReason::UnknownSource) };
        let p = self.participants.get_mut(id).expect("by_address only names live participants");
        let Some(rx) = p.rx.as_ref() else { return self.drop(DropReason::NotConnected) };
        if datagram.len() < 8 {
            return self.drop(DropReason::MalformedRtcp);
        }
        let sender = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
        let Ok((len, index)) = rx.unprotect_rtcp(datagram) else { return self.drop(DropReason::AuthFailed) };
        let slot = match p.rtcp_windows.iter().position(|(ssrc, _)| *ssrc == sender) {
            Some(i) => i,
            None if p.rtcp_windows.len() < p.rtcp_windows.capacity() => {
                p.rtcp_windows.push((sender, ReplayWindow::default()));
                p.rtcp_windows.len() - 1
            }
            None => return self.drop(DropReason::UnknownSsrc),
        };
        let window = &mut p.rtcp_windows[slot].1;
        if window.check(u64::from(index)).is_err() {
            return self.drop(DropReason::Replay);
        }
        window.record(u64::from(index));
        for packet in rtcp::compound(&datagram[..len]) {
            let Ok(packet) = packet else { return self.drop(DropReason::MalformedRtcp) };
            if packet.packet_type == rtcp::SR
                && let Ok((info, _)) = rtcp::sender_report(&packet)
                && let Some(p) = self.participants.get_mut(id)
                && let Some(stream) = p.inbound.iter_mut().find(|s| s.ssrc == info.ssrc)
            {
                stream.stats.sender_clock =
                    Some(SenderClock { ntp: info.ntp, rtp_timestamp: info.rtp_timestamp, received_at: now });
            }
            if (packet.packet_type, packet.count) == (rtcp::RTPFB, rtcp::FMT_NACK)
                && let (Ok(media), Ok(lost)) = (rtcp::media_ssrc(&packet), rtcp::nack_lost(&packet))
            {
                self.retransmit(id, media, lost, out);
            }
            let keyframe_request =
                matches!((packet.packet_type, packet.count), (rtcp::PSFB, rtcp::FMT_PLI) | (rtcp::PSFB, rtcp::FMT_FIR));
            if keyframe_request && let Ok(media) = rtcp::media_ssrc(&packet) {
                let media = if packet.count == rtcp::FMT_FIR {
                    rtcp::fir_entries(&packet).ok().and_then(|mut e| e.next()).map_or(media, |(ssrc, _)| ssrc)
                } else {
                    media
                };
                self.request_keyframe(now, id, media, out);
            }
        }
    }

    /// A subscriber asked for a keyframe of the stream it knows as `media_ssrc`: pass one PLI per interval to
    /// the publisher, however many subscribers ask (no keyframe storms when many join at once).
    fn request_keyframe(&mut self, now: Instant, subscriber: ParticipantId, media_ssrc: u32, out: &mut Transmits) {
        let Core { participants, subscriptions, .. } = self;
        let Some(p) = participants.get(subscriber) else { return };
        let Some(sub) =
            p.subscriptions.iter().filter_map(|s| subscriptions.get(*s)).find(|s| s.spec.ssrc == media_ssrc)
        else {
            return;
        };
        // The layer it is switching to, or the one it gets.
        let (track, layer) = (sub.track, sub.layer.unwrap_or(sub.target_layer));
        self.send_pli(now, track, layer, out);
    }

    /// One PLI to the track's publisher, unless one went out less than `keyframe_request_interval` ago.
    fn send_pli(&mut self, now: Instant, track_id: TrackId, layer: u8, out: &mut Transmits) {
        let Core { participants, tracks, counters, config, .. } = self;
        let Some(track) = tracks.get_mut(track_id) else { return };
        let last = &mut track.last_keyframe_request[usize::from(layer)];
        if last.is_some_and(|t| now.saturating_duration_since(t) < config.keyframe_request_interval) {
            counters.keyframe_requests_limited += 1;
            return;
        }
        let Some(publisher) = participants.get_mut(track.publisher) else { return };
        // The layer's SSRC, once known (a RID-only layer that never sent cannot be asked yet).
        let Some(media) = publisher.inbound.iter().find(|s| s.track == track_id && s.layer == layer).map(|s| s.ssrc)
        else {
            return;
        };
        let (Some(destination), Some(tx)) = (publisher.address, publisher.tx.as_ref()) else { return };
        let Some(slot) = out.slot() else {
            counters.drops[DropReason::TransmitFull as usize] += 1;
            return;
        };
        let len = rtcp::write_pli(slot, SFU_RTCP_SSRC, media).expect("a PLI fits a datagram buffer");
        publisher.srtcp_index = (publisher.srtcp_index + 1) & 0x7fff_ffff;
        let len = tx.protect_rtcp(slot, len, publisher.srtcp_index).expect("slot has room for SRTCP's trailer");
        out.commit(destination, len);
        *last = Some(now);
        counters.keyframe_requests_forwarded += 1;
        counters.rtcp_out += 1;
        counters.bytes_out += len as u64;
    }

    // ---- timers ----------------------------------------------------------------------------------------------

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Transmits) {
        if self.next_nack.is_some_and(|t| t <= now) {
            self.send_nacks(now, out);
        }
        if self.next_reports.is_some_and(|t| t <= now) {
            self.next_reports = Some(now + REPORT_INTERVAL);
            self.send_reports(now, out);
        }
        // DTLS timers become handshake work, run by `handle_handshakes` like received records.
        for id in &self.handshaking {
            if let Some(p) = self.participants.get_mut(*id)
                && p.dtls_timeout.is_some_and(|t| t <= now)
                && !p.handshake_queued
            {
                p.handshake_queued = true;
                self.handshake_queue.push_back(*id);
            }
        }
        let Some(due) = self.next_consent_check else { return };
        if now < due {
            return;
        }
        self.next_consent_check = Some(now + CONSENT_CHECK_INTERVAL);
        let timeout = self.config.consent_timeout;
        let Core { participants, by_address, events, .. } = self;
        for (id, p) in participants.iter_mut() {
            if let Some((old, until)) = p.previous_address
                && until <= now
            {
                p.previous_address = None;
                // Unless the participant moved back there, or someone else has it now.
                if by_address.get(&old) == Some(&id) && p.address != Some(old) {
                    by_address.remove(&old);
                }
            }
        }
        for (id, p) in participants.iter() {
            let expired = p.last_consent.is_some_and(|t| now.saturating_duration_since(t) >= timeout);
            if expired && !p.gone {
                events.push_back(Event::Gone { participant: id });
                for addr in p.address.into_iter().chain(p.previous_address.map(|(a, _)| a)) {
                    by_address.remove(&addr);
                }
            }
        }
        for event in self.events.iter() {
            if let Event::Gone { participant } = event
                && let Some(p) = self.participants.get_mut(*participant)
            {
                p.gone = true;
            }
        }
    }
}

impl InboundStream {
    fn new(ssrc: u32, track: TrackId, layer: u8, kind: MediaKind) -> InboundStream {
        InboundStream {
            ssrc,
            track,
            layer,
            clock_rate: kind.clock_rate(),
            window: ReplayWindow::default(),
            stats: ReceiveStats::default(),
            missing: (kind == MediaKind::Video).then(MissingPackets::default),
            pending: false,
        }
    }
}

/// Moves a subscription to `layer`, whose keyframe with RTP timestamp `timestamp` is about to be forwarded:
/// sequence numbers continue after the last one sent, and the timestamp one frame (at 30 fps) after the last
/// one sent, whatever random base the new layer's clock has.
fn switch_layer(sub: &mut Subscription, layer: u8, timestamp: u32) {
    /// 90 kHz / 30 fps.
    const FRAME_TICKS: u32 = 3_000;
    if sub.layer.is_some() {
        sub.rewriter.switch_source();
        sub.timestamp_offset = sub.last_timestamp.wrapping_add(FRAME_TICKS).wrapping_sub(timestamp);
    }
    sub.layer = Some(layer);
}

/// The header extensions we own in a forwarded packet: offsets of their values in the packet, and for
/// abs-send-time the value to write.
#[derive(Debug, Clone, Copy)]
struct OwnedExtensions {
    transport_seq: Option<usize>,
    abs_send_time: Option<(usize, u32)>,
}

/// One outgoing copy of a packet, before the subscription's rewrite.
struct Outgoing<'a> {
    plain: &'a [u8],
    header_len: usize,
    /// The publisher's timestamp; the subscription's offset is added.
    timestamp: u32,
    seq: u16,
    /// The SRTP index to encrypt with.
    index: u64,
    owned: OwnedExtensions,
}

/// Writes a forwarded packet into `slot`: the plaintext with the subscription's SSRC, sequence number, timestamp
/// and payload type, the next transport-wide sequence number and our send time, encrypted with the subscriber's
/// key. Returns its length.
fn write_forwarded(
    slot: &mut [u8],
    packet: &Outgoing<'_>,
    sub: &Subscription,
    tx: &srtp::Context,
    transport_seq: &mut u16,
) -> usize {
    let plain = packet.plain;
    slot[..plain.len()].copy_from_slice(plain);
    rtp::set_ssrc(slot, sub.spec.ssrc);
    rtp::set_seq(slot, packet.seq);
    rtp::set_timestamp(slot, packet.timestamp.wrapping_add(sub.timestamp_offset));
    if let Some(pt) = sub.spec.payload_type {
        rtp::set_payload_type(slot, pt);
    }
    if let Some(at) = packet.owned.transport_seq {
        slot[at..at + 2].copy_from_slice(&transport_seq.to_be_bytes());
        *transport_seq = transport_seq.wrapping_add(1);
    }
    if let Some((at, value)) = packet.owned.abs_send_time {
        slot[at..at + 3].copy_from_slice(&value.to_be_bytes()[1..]);
    }
    tx.protect_rtp(slot, plain.len(), packet.header_len, packet.index).expect("a transmit slot has room for the tag")
}

/// Writes a retransmission as RTX (RFC 4588 section 4): the forwarded packet's header with the RTX SSRC, payload
/// type and sequence number, then the original (output) sequence number, then the original payload.
fn write_rtx(
    slot: &mut [u8],
    packet: &Outgoing<'_>,
    sub: &Subscription,
    rtx: RtxSpec,
    rtx_index: u64,
    tx: &srtp::Context,
    transport_seq: &mut u16,
) -> usize {
    /// The original sequence number that precedes the payload.
    const OSN_LEN: usize = 2;
    let (plain, header_len) = (packet.plain, packet.header_len);
    slot[..header_len].copy_from_slice(&plain[..header_len]);
    slot[header_len..header_len + OSN_LEN].copy_from_slice(&packet.seq.to_be_bytes());
    slot[header_len + OSN_LEN..plain.len() + OSN_LEN].copy_from_slice(&plain[header_len..]);
    rtp::set_ssrc(slot, rtx.ssrc);
    rtp::set_seq(slot, rtx_index as u16);
    rtp::set_timestamp(slot, packet.timestamp.wrapping_add(sub.timestamp_offset));
    rtp::set_payload_type(slot, rtx.payload_type);
    if let Some(at) = packet.owned.transport_seq {
        slot[at..at + 2].copy_from_slice(&transport_seq.to_be_bytes());
        *transport_seq = transport_seq.wrapping_add(1);
    }
    tx.protect_rtp(slot, plain.len() + OSN_LEN, header_len, rtx_index)
        .expect("a transmit slot has room for OSN and tag")
}

impl Core {
    /// Step 8: one round of RTCP reports. Each connected participant gets a Sender Report for every stream we
    /// forward to it (NTP time from our wallclock, RTP time extrapolated from the publisher's own last SR, so a
    /// publisher's audio and video stay in sync) and a Receiver Report with a block for every stream it publishes.
    fn send_reports(&mut self, now: Instant, out: &mut Transmits) {
        let Some(clock) = self.wallclock else { return };
        let ntp = clock.ntp(now);
        self.report_ids.clear();
        self.report_ids.extend(
            self.participants
                .iter()
                .filter(|(_, p)| p.tx.is_some() && p.address.is_some() && !p.gone)
                .map(|(id, _)| id),
        );
        for i in 0..self.report_ids.len() {
            let id = self.report_ids[i];
            let mut len = 0;
            let subscriptions = self.participants.get(id).map_or(0, |p| p.subscriptions.len());
            for s in 0..subscriptions {
                let Some(info) = self.sender_info(id, s, now, ntp) else { continue };
                if len + 28 > REPORT_DATAGRAM_MAX {
                    self.send_rtcp(id, len, out);
                    len = 0;
                }
                len += rtcp::write_sender_report(&mut self.report_scratch[len..], &info, &[]).expect("28 bytes fit");
                self.counters.sender_reports_sent += 1;
            }
            let mut blocks = [rtcp::ReportBlock::default(); 31];
            let mut count = 0;
            if let Some(p) = self.participants.get_mut(id) {
                for stream in p.inbound.iter_mut().take(blocks.len()) {
                    if let Some(block) = stream.stats.report_block(stream.ssrc, stream.window.highest(), now) {
                        blocks[count] = block;
                        count += 1;
                    }
                }
            }
            if count > 0 {
                if len + 8 + rtcp::REPORT_BLOCK_LEN * count > REPORT_DATAGRAM_MAX {
                    self.send_rtcp(id, len, out);
                    len = 0;
                }
                len += rtcp::write_receiver_report(&mut self.report_scratch[len..], SFU_RTCP_SSRC, &blocks[..count])
                    .expect("at most 31 blocks fit");
                self.counters.receiver_reports_sent += 1;
            }
            if len > 0 {
                self.send_rtcp(id, len, out);
            }
        }
    }

    /// The Sender Report for subscription `index` of `subscriber`, if it has sent media and its publisher has
    /// told us its clock.
    fn sender_info(&self, subscriber: ParticipantId, index: usize, now: Instant, ntp: u64) -> Option<rtcp::SenderInfo> {
        let sub = self.subscriptions.get(*self.participants.get(subscriber)?.subscriptions.get(index)?)?;
        if sub.packets_sent == 0 {
            return None;
        }
        let track = self.tracks.get(sub.track)?;
        let publisher = self.participants.get(track.publisher)?;
        let layer = sub.layer?;
        let stream = publisher.inbound.iter().find(|s| s.track == sub.track && s.layer == layer)?;
        let sender_clock = stream.stats.sender_clock?;
        Some(rtcp::SenderInfo {
            ssrc: sub.spec.ssrc,
            ntp,
            rtp_timestamp: sender_clock.rtp_at(now, stream.clock_rate).wrapping_add(sub.timestamp_offset),
            packet_count: sub.packets_sent as u32,
            octet_count: sub.octets_sent as u32,
        })
    }

    /// Encrypts `report_scratch[..len]` for participant `id` and adds it to the batch.
    fn send_rtcp(&mut self, id: ParticipantId, len: usize, out: &mut Transmits) {
        let Core { participants, report_scratch, counters, .. } = self;
        let Some(p) = participants.get_mut(id) else { return };
        let (Some(to), Some(tx)) = (p.address, p.tx.as_ref()) else { return };
        let Some(slot) = out.slot() else {
            counters.drops[DropReason::TransmitFull as usize] += 1;
            return;
        };
        slot[..len].copy_from_slice(&report_scratch[..len]);
        p.srtcp_index = (p.srtcp_index + 1) & 0x7fff_ffff;
        let n = tx.protect_rtcp(slot, len, p.srtcp_index).expect("a report datagram leaves room for SRTCP's trailer");
        out.commit(to, n);
        counters.rtcp_out += 1;
        counters.bytes_out += n as u64;
    }
}

#[cfg(test)]
mod tests;
