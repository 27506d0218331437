//! A simulated browser for tests: it speaks ICE (as the controlling agent), SRTP and RTCP to a [`Core`] the way
//! Chrome does, built on the same packet code, and checks everything it receives. Sans-IO like the core: the
//! simulation harness carries its datagrams through a simulated network, the runtime tests through real sockets.
//!
//! Every RTP payload it sends starts with `publisher id (4) | publisher sequence (8) | send time in µs (8)`, so a
//! receiver can tell exactly which packet of whom it got, whatever the SFU rewrote.
//!
//! [`Core`]: crate::core::Core

use std::time::{Duration, Instant};

use std::net::SocketAddr;

use crate::core::{Core, DtlsIdentity, Fingerprint, IceCredentials, ParticipantId, Transmits};

use crate::packet::demux::{self, Kind};
use crate::packet::rtcp;
use crate::packet::rtp::RtpHeader;
use crate::packet::stun::{self, Message, Writer};
use crate::srtp::{self, Profile, ReplayWindow};

/// What a peer's RTP payload carries in its first bytes.
pub const PAYLOAD_TAG_LEN: usize = 20;
/// Bytes a [`TestPeer::simulcast_packet`] adds to its payload at most: RTP header, MID and RID extensions (16
/// bytes each at most), the VP8 descriptor (with temporal layers, 4 bytes), the tag, and SRTP's authentication tag.
pub const SIMULCAST_OVERHEAD_MAX: usize = 12 + 4 + 36 + 4 + PAYLOAD_TAG_LEN + 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub publisher: u32,
    pub seq: u64,
    pub sent_us: u64,
}

/// One received media packet, as the test sees it after decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub tag: Tag,
    /// For VP8 payloads (see [`TestPeer::simulcast_media`]): whether the packet starts a keyframe.
    pub keyframe: Option<bool>,
    /// For VP8 payloads whose descriptor carries one: the temporal layer (TID).
    pub temporal: Option<u8>,
    /// The transport-wide sequence number (extension id 3) and abs-send-time (id 2), if present.
    pub transport_seq: Option<u16>,
    pub abs_send_time: Option<u32>,
    /// Arrived as an RTX retransmission (and was unwrapped).
    pub via_rtx: bool,
    /// Carried a MID (id 4) or RID (id 10, 11) header extension.
    pub names_mid_or_rid: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    BindingSuccess,
    Media(Received),
    KeyframeRequest {
        media_ssrc: u32,
    },
    /// A generic NACK: the SFU asks this peer to resend these packets of its track.
    Nack {
        media_ssrc: u32,
        lost: Vec<u16>,
    },
    /// Transport-wide congestion control feedback about the packets this peer sent.
    TransportFeedback(Vec<crate::packet::twcc::PacketResult>),
    /// Sender Reports and Receiver Report blocks from one compound RTCP packet.
    Reports {
        senders: Vec<rtcp::SenderInfo>,
        blocks: Vec<rtcp::ReportBlock>,
    },
    /// DTLS records to send back (a handshake flight).
    Dtls(Vec<Vec<u8>>),
    /// SRTP or SRTCP before this peer's DTLS finished: a browser discards it, and so does the test peer. Normal
    /// when the SFU's side of the handshake finished first and the SFU's last flight is still on its way.
    BeforeKeys,
    /// Decryption, authentication or parsing failed: always a bug in the SFU under test.
    Bad(&'static str),
    /// A media packet as it is, for a peer that keeps what it receives (see [`TestPeer::deliver_raw`]).
    Rtp(RawRtp),
    /// A padding-only packet on an RTX stream (a bandwidth probe's filler): nothing to play, as a browser sees it.
    Padding {
        transport_seq: Option<u16>,
    },
    /// A duplicate, refused by the replay window (the network may duplicate).
    Duplicate,
}

/// A decrypted RTP packet: header fields and payload, padding removed, RTX unwrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRtp {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload_type: u8,
    pub via_rtx: bool,
    pub payload: Vec<u8>,
}

/// Keys for one direction of SRTP: master key and salt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub key: Vec<u8>,
    pub salt: Vec<u8>,
}

impl Keys {
    /// Deterministic keys from a seed (tests want reproducible runs).
    pub fn from_seed(profile: Profile, seed: u64) -> Keys {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        Keys {
            key: (0..profile.master_key_len()).map(|_| next()).collect(),
            salt: (0..profile.master_salt_len()).map(|_| next()).collect(),
        }
    }
}

pub struct TestPeer {
    pub id: u32,
    /// Our ICE ufrag; the server's ufrag and password come from its offer.
    ufrag: String,
    server_ufrag: String,
    server_pwd: String,
    /// Set by the constructor (keys given) or by DTLS-SRTP.
    tx: Option<srtp::Context>,
    rx: Option<srtp::Context>,
    dtls: Option<PeerDtls>,
    /// SSRC of the track this peer publishes.
    pub ssrc: u32,
    seq: u64,
    srtcp_index: u32,
    transaction: u64,
    windows: Vec<(u32, ReplayWindow)>,
    /// Sent media by sequence number, to answer NACKs (off unless `keep_history`).
    history: Option<Vec<Vec<u8>>>,
    /// Per simulcast layer: packets sent.
    layer_seq: [u64; 3],
    /// Per simulcast layer: frames started (the RTP timestamp's count).
    layer_frames: [u32; 3],
    /// Simulcast frames carry three temporal layers, as Chrome's VP8 does: the TID of each layer's current frame
    /// (keyframes 0, then 0, 2, 1, 2 over and over).
    temporal_layers: Option<[u8; 3]>,
    /// Received payloads start with a 2-byte VP8 descriptor and frame header before the tag.
    vp8: bool,
    /// RTX SSRC -> the media SSRC it repairs (RFC 4588).
    rtx: Vec<(u32, u32)>,
    /// Media comes out as [`Incoming::Rtp`], payload untouched, instead of checked test payloads.
    raw: bool,
    /// The other side offered and controls ICE (a full-ICE server such as Janus): checks say ICE-CONTROLLED.
    controlled: bool,
    /// Simulcast packets carry a transport-wide sequence number (id 3), as browsers' do: the next one.
    transport_cc: Option<u16>,
}

/// The browser side of DTLS-SRTP: the client, checking the server's certificate against the offer.
struct PeerDtls {
    identity: DtlsIdentity,
    endpoint: Option<Box<dimpl::Dtls>>,
    server_fingerprint: Fingerprint,
    verified: bool,
    timeout: Option<Instant>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for TestPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPeer").field("id", &self.id).field("srtp_ready", &self.srtp_ready()).finish_non_exhaustive()
    }
}

impl TestPeer {
    /// A peer whose SRTP keys will come from a DTLS handshake with a server presenting `server_fingerprint`;
    /// `seed` makes its handshake randomness reproducible (simulations), `None` draws it from the system.
    pub fn with_dtls(
        id: u32,
        server_ufrag: &str,
        server_pwd: &str,
        server_fingerprint: Fingerprint,
        seed: Option<u64>,
    ) -> TestPeer {
        let identity = match seed {
            Some(seed) => DtlsIdentity::generate_for_simulation(seed),
            None => DtlsIdentity::generate(),
        }
        .expect("generate a test peer's DTLS identity");
        let dtls = PeerDtls {
            identity,
            endpoint: None,
            server_fingerprint,
            verified: false,
            timeout: None,
            scratch: vec![0u8; 4096],
        };
        TestPeer { dtls: Some(dtls), ..TestPeer::blank(id, server_ufrag, server_pwd) }
    }

    /// A peer with no keys yet.
    fn blank(id: u32, server_ufrag: &str, server_pwd: &str) -> TestPeer {
        TestPeer {
            id,
            ufrag: format!("peer{id}"),
            server_ufrag: server_ufrag.into(),
            server_pwd: server_pwd.into(),
            tx: None,
            rx: None,
            dtls: None,
            ssrc: 0x1000_0000 + id,
            seq: 0,
            srtcp_index: 0,
            transaction: 0,
            windows: Vec::new(),
            history: None,
            layer_seq: [0; 3],
            layer_frames: [0; 3],
            temporal_layers: None,
            vp8: false,
            rtx: Vec::new(),
            raw: false,
            controlled: false,
            transport_cc: None,
        }
    }

    /// This peer's certificate fingerprint (what its SDP answer would carry), if it does DTLS.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.dtls.as_ref().map(|d| d.identity.fingerprint())
    }

    pub fn srtp_ready(&self) -> bool {
        self.tx.is_some() && self.rx.is_some()
    }

    pub fn dtls_started(&self) -> bool {
        self.dtls.as_ref().is_some_and(|d| d.endpoint.is_some())
    }

    /// Starts the handshake as the DTLS client (the browser is `a=setup:active`); returns the records to send.
    pub fn start_dtls(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let Some(d) = self.dtls.as_mut() else { return vec![] };
        let mut endpoint = Box::new(d.identity.client(now));
        let _ = endpoint.handle_timeout(now);
        d.endpoint = Some(endpoint);
        self.drain_dtls()
    }

    pub fn dtls_timeout(&self) -> Option<Instant> {
        self.dtls.as_ref().and_then(|d| d.timeout)
    }

    pub fn handle_dtls_timeout(&mut self, now: Instant) -> Vec<Vec<u8>> {
        if let Some(endpoint) = self.dtls.as_mut().and_then(|d| d.endpoint.as_mut()) {
            let _ = endpoint.handle_timeout(now);
        }
        self.drain_dtls()
    }

    fn drain_dtls(&mut self) -> Vec<Vec<u8>> {
        let mut records = vec![];
        let Some(d) = self.dtls.as_mut() else { return records };
        let Some(endpoint) = d.endpoint.as_mut() else { return records };
        loop {
            match endpoint.poll_output(&mut d.scratch) {
                dimpl::Output::Packet(p) => records.push(p.to_vec()),
                dimpl::Output::Timeout(t) => {
                    d.timeout = Some(t);
                    break;
                }
                dimpl::Output::PeerCert(der) => d.verified = Fingerprint::of_certificate(der) == d.server_fingerprint,
                dimpl::Output::KeyingMaterial(material, negotiated) if d.verified => {
                    let profile = crate::core::srtp_profile_of(negotiated).expect("a profile we implement");
                    let (client, server) =
                        crate::core::split_keying_material(profile, &material).expect("material of the profile's size");
                    // The client's key protects what the client sends.
                    self.tx = srtp::Context::new(profile, client.0, client.1).ok();
                    self.rx = srtp::Context::new(profile, server.0, server.1).ok();
                }
                _ => {}
            }
        }
        records
    }

    /// `to_sfu` protects what this peer sends; `from_sfu` what the SFU sends it.
    pub fn new(
        id: u32,
        server_ufrag: &str,
        server_pwd: &str,
        profile: Profile,
        to_sfu: &Keys,
        from_sfu: &Keys,
    ) -> TestPeer {
        let context = |keys: &Keys| {
            srtp::Context::new(profile, &keys.key, &keys.salt).expect("test keys have the profile's lengths")
        };
        TestPeer {
            tx: Some(context(to_sfu)),
            rx: Some(context(from_sfu)),
            ..TestPeer::blank(id, server_ufrag, server_pwd)
        }
    }

    /// This peer answered the other side's offer and that side controls ICE (RFC 8445 section 6.1.1): checks
    /// carry ICE-CONTROLLED and never nominate.
    pub fn set_ice_controlled(&mut self) {
        self.controlled = true;
    }

    /// The other side's ICE credentials and certificate fingerprint, learnt from its answer after this peer made
    /// the offer.
    pub fn set_remote(&mut self, ufrag: &str, pwd: &str, fingerprint: Fingerprint) {
        self.server_ufrag = ufrag.into();
        self.server_pwd = pwd.into();
        if let Some(d) = self.dtls.as_mut() {
            d.server_fingerprint = fingerprint;
        }
    }

    /// This peer's ICE username fragment (what its SDP carries).
    pub fn ice_ufrag(&self) -> &str {
        &self.ufrag
    }

    /// An ICE connectivity check, as the controlling agent unless [`TestPeer::set_ice_controlled`]; `nominate`
    /// adds USE-CANDIDATE (controlling only).
    pub fn binding_request(&mut self, nominate: bool) -> Vec<u8> {
        self.transaction += 1;
        let mut txid = [0u8; 12];
        txid[..4].copy_from_slice(&self.id.to_be_bytes());
        txid[4..].copy_from_slice(&self.transaction.to_be_bytes());
        let mut buf = vec![0u8; 256];
        let mut w = Writer::new(&mut buf, stun::BINDING_REQUEST, txid).expect("buffer is large enough");
        let username = format!("{}:{}", self.server_ufrag, self.ufrag);
        w.attr(stun::attr::USERNAME, username.as_bytes()).expect("fits");
        w.attr(stun::attr::PRIORITY, &0x6e00_01ffu32.to_be_bytes()).expect("fits");
        let role = if self.controlled { stun::attr::ICE_CONTROLLED } else { stun::attr::ICE_CONTROLLING };
        w.attr(role, &u64::from(self.id).to_be_bytes()).expect("fits");
        if nominate && !self.controlled {
            w.attr(stun::attr::USE_CANDIDATE, &[]).expect("fits");
        }
        w.integrity(self.server_pwd.as_bytes()).expect("fits").fingerprint().expect("fits");
        let n = w.len();
        buf.truncate(n);
        buf
    }

    /// The next SRTP media packet of this peer's track, `payload_len` bytes of payload (at least the tag).
    pub fn media(&mut self, payload_len: usize, now_us: u64) -> Vec<u8> {
        let plain = self.media_plain(payload_len, now_us);
        let tx = self.tx.as_ref().expect("media only after SRTP keys are set");
        // Exactly sized: benchmarks keep thousands of these, and slack capacity spreads them over more memory.
        let len = plain.len();
        let mut p = Vec::with_capacity(len + tx.profile().rtp_overhead());
        p.extend_from_slice(&plain);
        p.resize(len + tx.profile().rtp_overhead(), 0);
        let n = tx.protect_rtp(&mut p, len, 12, self.seq - 1).expect("room for the tag");
        p.truncate(n);
        if let Some(history) = self.history.as_mut() {
            history.push(p.clone());
        }
        p
    }

    /// As [`TestPeer::media`], written into `out` (room for the packet and SRTP's tag), its length returned: no
    /// allocation, for load generators. Not kept for NACKs.
    pub fn media_into(&mut self, payload_len: usize, now_us: u64, out: &mut [u8]) -> usize {
        let len = self.write_media_plain(payload_len, now_us, out);
        let tx = self.tx.as_ref().expect("media only after SRTP keys are set");
        tx.protect_rtp(out, len, 12, self.seq - 1).expect("room for the tag")
    }

    /// The next media packet in the clear: 12-byte header, then the tag and a pattern.
    fn media_plain(&mut self, payload_len: usize, now_us: u64) -> Vec<u8> {
        let mut p = vec![0u8; 12 + payload_len.max(PAYLOAD_TAG_LEN)];
        self.write_media_plain(payload_len, now_us, &mut p);
        p
    }

    fn write_media_plain(&mut self, payload_len: usize, now_us: u64, p: &mut [u8]) -> usize {
        let payload_len = payload_len.max(PAYLOAD_TAG_LEN);
        let seq = self.seq;
        self.seq += 1;
        p[0] = 0x80;
        p[1] = 111;
        p[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
        p[4..8].copy_from_slice(&((seq as u32).wrapping_mul(960)).to_be_bytes());
        p[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        p[12..16].copy_from_slice(&self.id.to_be_bytes());
        p[16..24].copy_from_slice(&seq.to_be_bytes());
        p[24..32].copy_from_slice(&now_us.to_be_bytes());
        for (i, b) in p[32..12 + payload_len].iter_mut().enumerate() {
            *b = (i as u8) ^ (seq as u8);
        }
        12 + payload_len
    }

    /// An SRTP packet on this peer's SSRC carrying `payload` as given (a codec's payload descriptor and data) with
    /// the marker bit and timestamp given, and a transport-wide sequence number if the peer sends them: for tests
    /// of codec-aware forwarding. Kept for NACKs like `media`.
    pub fn video_packet(&mut self, payload_type: u8, marker: bool, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let seq = self.seq;
        self.seq += 1;
        let tx = self.tx.as_ref().expect("media only after SRTP keys are set");
        let transport_cc = self.transport_cc;
        self.transport_cc = transport_cc.map(|seq| seq.wrapping_add(1));
        let mut p = Vec::with_capacity(20 + payload.len() + tx.profile().rtp_overhead());
        let extension = if transport_cc.is_some() { 0x10 } else { 0 };
        p.extend_from_slice(&[0x80 | extension, (u8::from(marker) << 7) | (payload_type & 0x7f)]);
        p.extend_from_slice(&(seq as u16).to_be_bytes());
        p.extend_from_slice(&timestamp.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        if let Some(transport_seq) = transport_cc {
            // One-byte extensions (RFC 8285): the transport-wide sequence number (id 3), padded to a word.
            let [hi, lo] = transport_seq.to_be_bytes();
            p.extend_from_slice(&[0xbe, 0xde, 0, 1, (3 << 4) | 1, hi, lo, 0]);
        }
        let header_len = p.len();
        p.extend_from_slice(payload);
        let len = p.len();
        p.resize(len + tx.profile().rtp_overhead(), 0);
        let n = tx.protect_rtp(&mut p, len, header_len, seq).expect("room for the tag");
        p.truncate(n);
        if let Some(history) = self.history.as_mut() {
            history.push(p.clone());
        }
        p
    }

    /// The SSRC of simulcast layer `layer` (0 lowest) of this peer's video.
    pub fn layer_ssrc(&self, layer: u8) -> u32 {
        self.ssrc + 0x100 * (u32::from(layer) + 1)
    }

    /// One packet (one frame, 30 fps) of simulcast layer `layer`, the way Chrome sends it: its own SSRC and
    /// sequence numbers and timestamps from a different base per layer, the MID and RID header extensions (ids 4 and
    /// 10, what Sluice offers), and a VP8 payload descriptor whose frame header marks `keyframe`. The tag's
    /// publisher field is `id + 0x100 * layer`.
    pub fn simulcast_media(&mut self, mid: &str, rid: &str, layer: u8, keyframe: bool, now_us: u64) -> Vec<u8> {
        self.simulcast_packet(mid, rid, layer, Some(keyframe), 0, now_us)
    }

    /// One packet of a frame of simulcast layer `layer`, as [`TestPeer::simulcast_media`], with at least
    /// `payload_len` bytes of payload. `start`: `Some(keyframe)` for a frame's first packet (the VP8 descriptor's
    /// S bit, and the frame header saying whether it is a keyframe), `None` for the packets that continue it.
    /// The packets of a frame share its RTP timestamp, 3000 ticks (30 fps) after the previous frame's.
    pub fn simulcast_packet(
        &mut self,
        mid: &str,
        rid: &str,
        layer: u8,
        start: Option<bool>,
        payload_len: usize,
        now_us: u64,
    ) -> Vec<u8> {
        let mut p = vec![0u8; payload_len + SIMULCAST_OVERHEAD_MAX];
        let n = self.simulcast_packet_into(mid, rid, layer, start, payload_len, now_us, &mut p);
        p.truncate(n);
        p
    }

    /// As [`TestPeer::simulcast_packet`], written into `out` (at least `payload_len` plus
    /// [`SIMULCAST_OVERHEAD_MAX`] bytes), its length returned: no allocation, for load generators.
    #[allow(clippy::too_many_arguments)]
    pub fn simulcast_packet_into(
        &mut self,
        mid: &str,
        rid: &str,
        layer: u8,
        start: Option<bool>,
        payload_len: usize,
        now_us: u64,
        out: &mut [u8],
    ) -> usize {
        let tx = self.tx.as_ref().expect("media only after SRTP keys are set");
        let seq = self.layer_seq[usize::from(layer)];
        self.layer_seq[usize::from(layer)] += 1;
        let frames = &mut self.layer_frames[usize::from(layer)];
        if let Some(keyframe) = start {
            *frames += 1;
            if let Some(tids) = self.temporal_layers.as_mut() {
                tids[usize::from(layer)] = if keyframe { 0 } else { [0, 2, 1, 2][*frames as usize % 4] };
            }
        }
        let ts = 0x1234_5678u32.wrapping_mul(u32::from(layer) + 1).wrapping_add(frames.wrapping_mul(3_000));
        // Each layer's sequence numbers start elsewhere, as browsers randomize them per SSRC; the SRTP index
        // carries on past 65535.
        let index = seq + 11_111 * (u64::from(layer) + 1);
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&[0x90, 96]);
        put(&(index as u16).to_be_bytes());
        put(&ts.to_be_bytes());
        put(&self.layer_ssrc(layer).to_be_bytes());
        // One-byte header extensions (RFC 8285): MID (id 4) and, unless `rid` is empty, RID (id 10), and if asked
        // the transport-wide sequence number (id 3), padded to 32-bit words.
        let transport_cc = self.transport_cc;
        self.transport_cc = transport_cc.map(|seq| seq.wrapping_add(1));
        let elements =
            1 + mid.len() + if rid.is_empty() { 0 } else { 1 + rid.len() } + if transport_cc.is_some() { 3 } else { 0 };
        let ext_len = elements.div_ceil(4) * 4;
        put(&[0xbe, 0xde]);
        put(&((ext_len / 4) as u16).to_be_bytes());
        put(&[(4 << 4) | (mid.len() as u8 - 1)]);
        put(mid.as_bytes());
        if !rid.is_empty() {
            put(&[(10 << 4) | (rid.len() as u8 - 1)]);
            put(rid.as_bytes());
        }
        if let Some(seq) = transport_cc {
            put(&[(3 << 4) | 1]);
            put(&seq.to_be_bytes());
        }
        put(&[0; 3][..ext_len - elements]);
        let header_len = 16 + ext_len;
        let (first, frame_header) = match start {
            Some(keyframe) => (0x10, if keyframe { 0x00 } else { 0x01 }),
            None => (0x00, 0x01),
        };
        match self.temporal_layers {
            // X=1 with only T: the TID byte follows.
            Some(tids) => put(&[0x80 | first, 0x20, tids[usize::from(layer)] << 6, frame_header]),
            None => put(&[first, frame_header]),
        }
        put(&(self.id + 0x100 * u32::from(layer)).to_be_bytes());
        put(&seq.to_be_bytes());
        put(&now_us.to_be_bytes());
        let len = at.max(header_len + payload_len);
        out[at..len].fill(0);
        tx.protect_rtp(out, len, header_len, index).expect("room for the tag")
    }

    /// Like [`TestPeer::media`], with the transport-wide sequence number (id 3) and abs-send-time (id 2) header
    /// extensions carrying the given values (the SFU must replace both).
    pub fn media_with_extensions(
        &mut self,
        payload_len: usize,
        now_us: u64,
        transport_seq: u16,
        abs_send_time: u32,
    ) -> Vec<u8> {
        let ast = abs_send_time.to_be_bytes();
        let ts = transport_seq.to_be_bytes();
        let block = [0xbe, 0xde, 0, 2, (3 << 4) | 1, ts[0], ts[1], (2 << 4) | 2, ast[1], ast[2], ast[3], 0];
        self.media_with_extension_block(payload_len, now_us, &block)
    }

    /// Like [`TestPeer::media`], with an RFC 6464 audio level (one-byte extension id 1): `level` is the
    /// extension's byte (the voice-activity bit, then the level in -dBov).
    pub fn media_with_audio_level(&mut self, payload_len: usize, now_us: u64, level: u8) -> Vec<u8> {
        self.media_with_extension_block(payload_len, now_us, &[0xbe, 0xde, 0, 1, 1 << 4, level, 0, 0])
    }

    /// [`TestPeer::media`] with `block` (a whole RFC 8285 extension block) after the fixed header.
    fn media_with_extension_block(&mut self, payload_len: usize, now_us: u64, block: &[u8]) -> Vec<u8> {
        let plain = self.media_plain(payload_len, now_us);
        let mut p = plain[..12].to_vec();
        p[0] |= 0x10;
        p.extend_from_slice(block);
        let header_len = p.len();
        p.extend_from_slice(&plain[12..]);
        let tx = self.tx.as_ref().expect("media only after SRTP keys are set");
        let len = p.len();
        // Exactly sized, as in `media`.
        let mut sized = Vec::with_capacity(len + tx.profile().rtp_overhead());
        sized.extend_from_slice(&p);
        let mut p = sized;
        p.resize(len + tx.profile().rtp_overhead(), 0);
        let index = self.seq - 1;
        let n = tx.protect_rtp(&mut p, len, header_len, index).expect("room for the tag");
        p.truncate(n);
        p
    }

    /// Packets on `rtx_ssrc` are RTX (RFC 4588) retransmissions of `media_ssrc`: unwrap them.
    pub fn expect_rtx(&mut self, rtx_ssrc: u32, media_ssrc: u32) {
        self.rtx.push((rtx_ssrc, media_ssrc));
    }

    /// Media packets come out as [`Incoming::Rtp`] with their payload as sent: for a peer that records or
    /// decodes real media rather than checking test payloads.
    pub fn deliver_raw(&mut self) {
        self.raw = true;
    }

    /// Expect received payloads in the [`TestPeer::simulcast_media`] layout.
    pub fn expect_vp8(&mut self) {
        self.vp8 = true;
    }

    /// Simulcast packets from now on carry three temporal layers in their VP8 descriptors.
    pub fn send_temporal_layers(&mut self) {
        self.temporal_layers = Some([0; 3]);
    }

    /// Simulcast packets from now on carry a transport-wide sequence number (extension id 3), as a browser's.
    pub fn send_transport_cc(&mut self) {
        self.transport_cc.get_or_insert(0);
    }

    /// Keep every sent media packet so NACKs can be answered.
    pub fn keep_history(&mut self) {
        self.history.get_or_insert_with(Vec::new);
    }

    /// The packet with 16-bit sequence number `seq`, exactly as first sent (same SRTP index), if kept.
    pub fn resend(&self, seq: u16) -> Option<Vec<u8>> {
        let history = self.history.as_ref()?;
        // The most recent packet with that sequence number.
        (0..history.len()).rev().find(|i| *i as u16 == seq).map(|i| history[i].clone())
    }

    /// A generic NACK for `lost` packets of the stream this peer knows as `media_ssrc`, as SRTCP.
    pub fn nack(&mut self, media_ssrc: u32, lost: &[u16]) -> Vec<u8> {
        let mut buf = vec![0u8; 512];
        let n = rtcp::write_nack(&mut buf, self.ssrc, media_ssrc, lost.iter().copied()).expect("fits");
        self.srtcp_index += 1;
        let tx = self.tx.as_ref().expect("RTCP only after SRTP keys are set");
        let n = tx.protect_rtcp(&mut buf, n, self.srtcp_index).expect("fits");
        buf.truncate(n);
        buf
    }

    /// How many media packets this peer has sent.
    pub fn sent(&self) -> u64 {
        self.seq
    }

    /// A PLI for `media_ssrc` (as the subscriber knows it), as SRTCP.
    pub fn pli(&mut self, media_ssrc: u32) -> Vec<u8> {
        let mut buf = vec![0u8; 64];
        let n = rtcp::write_pli(&mut buf, self.ssrc, media_ssrc).expect("fits");
        self.srtcp_index += 1;
        let tx = self.tx.as_ref().expect("RTCP only after SRTP keys are set");
        let n = tx.protect_rtcp(&mut buf, n, self.srtcp_index).expect("fits");
        buf.truncate(n);
        buf
    }

    /// Transport-wide congestion control feedback (as Chrome sends every 100 ms), as SRTCP: packets
    /// `base_seq..` with their arrival times in µs (`None`: lost).
    pub fn transport_feedback(&mut self, base_seq: u16, feedback_count: u8, arrivals: &[Option<i64>]) -> Vec<u8> {
        let mut buf = vec![0u8; 64 + 4 * arrivals.len()];
        let n = crate::packet::twcc::write(&mut buf, self.ssrc, 0, base_seq, feedback_count, arrivals).expect("fits");
        self.srtcp_index += 1;
        let tx = self.tx.as_ref().expect("RTCP only after SRTP keys are set");
        let n = tx.protect_rtcp(&mut buf, n, self.srtcp_index).expect("fits");
        buf.truncate(n);
        buf
    }

    /// A REMB of `bitrate_bps` for the streams `ssrcs`, as SRTCP (a receiver without transport-wide feedback).
    pub fn remb(&mut self, bitrate_bps: u64, ssrcs: &[u32]) -> Vec<u8> {
        let mut buf = vec![0u8; 64 + 4 * ssrcs.len()];
        let n = rtcp::write_remb(&mut buf, self.ssrc, bitrate_bps, ssrcs).expect("fits");
        self.srtcp_index += 1;
        let tx = self.tx.as_ref().expect("RTCP only after SRTP keys are set");
        let n = tx.protect_rtcp(&mut buf, n, self.srtcp_index).expect("fits");
        buf.truncate(n);
        buf
    }

    /// A Sender Report for this peer's track, as SRTCP: at wallclock `ntp` its RTP clock reads `rtp_timestamp`.
    pub fn sender_report(&mut self, ntp: u64, rtp_timestamp: u32) -> Vec<u8> {
        let mut buf = vec![0u8; 128];
        let info =
            rtcp::SenderInfo { ssrc: self.ssrc, ntp, rtp_timestamp, packet_count: self.seq as u32, octet_count: 0 };
        let n = rtcp::write_sender_report(&mut buf, &info, &[]).expect("fits");
        self.srtcp_index += 1;
        let tx = self.tx.as_ref().expect("RTCP only after SRTP keys are set");
        let n = tx.protect_rtcp(&mut buf, n, self.srtcp_index).expect("fits");
        buf.truncate(n);
        buf
    }

    pub fn receive(&mut self, datagram: &[u8]) -> Incoming {
        self.receive_in_place(&mut datagram.to_vec())
    }

    /// As [`TestPeer::receive`], decrypting `datagram` in place: media costs no allocation (load generators).
    pub fn receive_in_place(&mut self, datagram: &mut [u8]) -> Incoming {
        match demux::classify(datagram) {
            Kind::Stun => self.receive_stun(datagram),
            Kind::Rtp => self.receive_rtp(datagram),
            Kind::Rtcp => self.receive_rtcp(datagram),
            Kind::Dtls => self.receive_dtls(datagram),
            _ => Incoming::Bad("not STUN, DTLS, RTP or RTCP"),
        }
    }

    fn receive_dtls(&mut self, buf: &[u8]) -> Incoming {
        let Some(endpoint) = self.dtls.as_mut().and_then(|d| d.endpoint.as_mut()) else {
            return Incoming::Bad("DTLS before the peer started its handshake");
        };
        if endpoint.handle_packet(buf).is_err() {
            return Incoming::Bad("DTLS handshake failed");
        }
        Incoming::Dtls(self.drain_dtls())
    }

    fn receive_stun(&self, buf: &[u8]) -> Incoming {
        let Ok(m) = Message::parse(buf) else { return Incoming::Bad("malformed STUN") };
        if m.msg_type != stun::BINDING_SUCCESS {
            return Incoming::Bad("not a binding success");
        }
        if m.check_integrity(self.server_pwd.as_bytes()).is_err() || m.check_fingerprint().is_err() {
            return Incoming::Bad("binding response failed integrity");
        }
        Incoming::BindingSuccess
    }

    fn receive_rtp(&mut self, buf: &mut [u8]) -> Incoming {
        let Ok(h) = RtpHeader::parse(buf) else { return Incoming::Bad("malformed RTP") };
        let at = match self.windows.iter().position(|(s, _)| *s == h.ssrc) {
            Some(i) => i,
            None => {
                self.windows.push((h.ssrc, ReplayWindow::default()));
                self.windows.len() - 1
            }
        };
        let window = &mut self.windows[at].1;
        let index = window.index_for(h.seq);
        if window.check(index).is_err() {
            return Incoming::Duplicate;
        }
        let Some(rx) = self.rx.as_ref() else { return Incoming::BeforeKeys };
        let transport_seq =
            h.extension(buf, 3).filter(|e| e.1 == 2).map(|(at, _)| u16::from_be_bytes([buf[at], buf[at + 1]]));
        let names_mid_or_rid = h.extensions(buf).any(|e| matches!(e.id, 4 | 10 | 11));
        let abs_send_time = h
            .extension(buf, 2)
            .filter(|e| e.1 == 3)
            .map(|(at, _)| u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]));
        let Ok(len) = rx.unprotect_rtp(buf, h.header_len, index) else {
            return Incoming::Bad("SRTP authentication failed");
        };
        window.record(index);
        let mut payload = &buf[h.header_len..len];
        let (mut ssrc, mut seq, mut via_rtx) = (h.ssrc, h.seq, false);
        if let Some(&(_, media)) = self.rtx.iter().find(|(rtx, _)| *rtx == h.ssrc) {
            via_rtx = true;
            let Ok(padding) = h.padding_len(&buf[..len]) else { return Incoming::Bad("bad RTP padding") };
            if padding > 0 && padding == payload.len() {
                return Incoming::Padding { transport_seq };
            }
            // RTX: the original sequence number, then the original payload.
            if payload.len() < 2 {
                return Incoming::Bad("RTX without its original sequence number");
            }
            (ssrc, seq) = (media, u16::from_be_bytes([payload[0], payload[1]]));
            payload = &payload[2..];
        }
        if self.raw {
            let Ok(padding) = h.padding_len(&buf[..len]) else { return Incoming::Bad("bad RTP padding") };
            let payload = payload[..payload.len().saturating_sub(padding)].to_vec();
            let (timestamp, marker, payload_type) = (h.timestamp, h.marker, h.payload_type);
            return Incoming::Rtp(RawRtp { ssrc, seq, timestamp, marker, payload_type, via_rtx, payload });
        }
        let (mut keyframe, mut temporal) = (None, None);
        if self.vp8 {
            // What `simulcast_packet` writes: with X, only the T flag and its TID byte.
            let extended = payload.first().is_some_and(|d| d & 0x80 != 0);
            let at = if extended { 3 } else { 1 };
            let Some(frame_header) = payload.get(at) else { return Incoming::Bad("VP8 payload too short") };
            keyframe = Some(frame_header & 0x01 == 0);
            temporal = extended.then(|| payload[2] >> 6);
            payload = &payload[at + 1..];
        }
        if payload.len() < PAYLOAD_TAG_LEN {
            return Incoming::Bad("payload lost its tag");
        }
        let tag = Tag {
            publisher: u32::from_be_bytes(payload[0..4].try_into().expect("4 bytes")),
            seq: u64::from_be_bytes(payload[4..12].try_into().expect("8 bytes")),
            sent_us: u64::from_be_bytes(payload[12..20].try_into().expect("8 bytes")),
        };
        // Without an early exit the comparison vectorises: a bench's generator checks every byte it receives.
        if !self.vp8 {
            let pattern = tag.seq as u8;
            let body = &payload[PAYLOAD_TAG_LEN..];
            let differs = body.iter().enumerate().fold(0u8, |acc, (i, b)| acc | (b ^ (i as u8 ^ pattern)));
            if differs != 0 {
                return Incoming::Bad("payload corrupted");
            }
        }
        Incoming::Media(Received {
            ssrc,
            seq,
            timestamp: h.timestamp,
            tag,
            keyframe,
            temporal,
            transport_seq,
            abs_send_time,
            via_rtx,
            names_mid_or_rid,
        })
    }

    fn receive_rtcp(&mut self, buf: &mut [u8]) -> Incoming {
        let Some(rx) = self.rx.as_ref() else { return Incoming::BeforeKeys };
        let Ok((len, _)) = rx.unprotect_rtcp(buf) else { return Incoming::Bad("SRTCP authentication failed") };
        let (mut senders, mut blocks) = (vec![], vec![]);
        for packet in rtcp::compound(&buf[..len]) {
            let Ok(packet) = packet else { return Incoming::Bad("malformed RTCP") };
            match (packet.packet_type, packet.count) {
                (rtcp::PSFB, rtcp::FMT_PLI) => {
                    return match rtcp::media_ssrc(&packet) {
                        Ok(media_ssrc) => Incoming::KeyframeRequest { media_ssrc },
                        Err(_) => Incoming::Bad("short PLI"),
                    };
                }
                (rtcp::RTPFB, rtcp::FMT_NACK) => {
                    return match (rtcp::media_ssrc(&packet), rtcp::nack_lost(&packet)) {
                        (Ok(media_ssrc), Ok(lost)) => Incoming::Nack { media_ssrc, lost: lost.collect() },
                        _ => Incoming::Bad("short NACK"),
                    };
                }
                (rtcp::RTPFB, rtcp::FMT_TWCC) => {
                    let mut packets = vec![];
                    return match crate::packet::twcc::read(&packet, &mut packets) {
                        Ok(()) => Incoming::TransportFeedback(packets),
                        Err(_) => Incoming::Bad("malformed transport-wide feedback"),
                    };
                }
                (rtcp::SR, _) => match rtcp::sender_report(&packet) {
                    Ok((info, b)) => {
                        senders.push(info);
                        blocks.extend(b);
                    }
                    Err(_) => return Incoming::Bad("short SR"),
                },
                (rtcp::RR, _) => match rtcp::receiver_report(&packet) {
                    Ok(b) => blocks.extend(b),
                    Err(_) => return Incoming::Bad("short RR"),
                },
                _ => return Incoming::Bad("unexpected RTCP packet type"),
            }
        }
        Incoming::Reports { senders, blocks }
    }
}

/// A participant of a test: its id in the core, its simulated browser and its address.
#[derive(Debug)]
pub struct Connected {
    pub id: ParticipantId,
    pub peer: TestPeer,
    pub addr: SocketAddr,
}

/// Adds `n` participants to `core`, with SRTP keys derived from their index (instead of DTLS) and one nominating
/// ICE check each from `127.0.0.1:<base_port + i>`: the shortcut for tests and benchmarks whose subject is not
/// the handshake. Participant `i` has ufrag `s<i>` and password `password-password-<i>`.
pub fn connect(core: &mut Core, profile: Profile, n: usize, base_port: u16, now: Instant) -> Vec<Connected> {
    let mut out = Transmits::with_capacity(4);
    (0..n)
        .map(|i| {
            let (ufrag, pwd) = (format!("s{i}"), format!("password-password-{i}"));
            let id = core.add_participant(IceCredentials { ufrag: ufrag.clone(), pwd: pwd.clone() }).expect("room");
            let (up, down) = (Keys::from_seed(profile, 2 * i as u64), Keys::from_seed(profile, 2 * i as u64 + 1));
            core.set_srtp_keys(id, profile, (&down.key, &down.salt), (&up.key, &up.salt)).expect("keys of the profile");
            let mut peer = TestPeer::new(i as u32, &ufrag, &pwd, profile, &up, &down);
            let addr = SocketAddr::from(([127, 0, 0, 1], base_port + i as u16));
            core.handle_receive(now, addr, &mut peer.binding_request(true), &mut out);
            out.clear();
            Connected { id, peer, addr }
        })
        .collect()
}

/// The address of an ICE candidate (an `a=candidate` value, with or without `candidate:`):
/// `candidate:<foundation> <component> <transport> <priority> <ip> <port> typ ...`.
pub fn candidate_address(candidate: &str) -> Option<SocketAddr> {
    let parts: Vec<&str> = candidate.split_ascii_whitespace().collect();
    let ip: std::net::IpAddr = parts.get(4)?.parse().ok()?;
    let port: u16 = parts.get(5)?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Microseconds in a duration, for payload timestamps.
pub fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet of `peer`'s media with payload byte `flip` (after the tag) changed before it is encrypted.
    fn media_with(peer: &mut TestPeer, flip: Option<usize>) -> Vec<u8> {
        let mut p = vec![0u8; 12 + 200 + peer.tx.as_ref().unwrap().profile().rtp_overhead()];
        let len = peer.write_media_plain(200, 1, &mut p);
        if let Some(at) = flip {
            p[12 + PAYLOAD_TAG_LEN + at] ^= 0x40;
        }
        let n = peer.tx.as_ref().unwrap().protect_rtp(&mut p, len, 12, peer.seq - 1).unwrap();
        p.truncate(n);
        p
    }

    #[test]
    fn a_payload_changed_on_the_way_is_reported_whichever_byte() {
        let profile = Profile::ALL[0];
        let keys = Keys { key: vec![7u8; profile.master_key_len()], salt: vec![9u8; profile.master_salt_len()] };
        let mut peer = TestPeer::new(1, "u", "p", profile, &keys, &keys);
        let mut intact = media_with(&mut peer, None);
        assert!(matches!(peer.receive_in_place(&mut intact), Incoming::Media(_)));
        for at in [0, 77, 200 - PAYLOAD_TAG_LEN - 1] {
            let mut changed = media_with(&mut peer, Some(at));
            assert!(matches!(peer.receive_in_place(&mut changed), Incoming::Bad("payload corrupted")), "byte {at}");
        }
    }
}
