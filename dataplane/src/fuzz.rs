//! Fuzz entry points, one per parser plus the whole core. The cargo-fuzz targets in `dataplane/fuzz/` call
//! these, and `dataplane/tests/fuzz_corpus.rs` replays the committed corpus through them in every test run, so a
//! crash found once stays fixed. Each must never panic, whatever the bytes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::core::{Core, CoreConfig, DtlsIdentity, IceCredentials, MediaKind, SubscriptionSpec, TrackSpec, Transmits};
use crate::packet::codec::Codec;
use crate::packet::{rtcp, rtp, stun};
use crate::srtp::{Context, Profile, ReplayWindow};
use crate::testpeer::{Keys, TestPeer};

/// STUN parsing, attribute lookup, integrity and fingerprint checks, and writing a response to what parsed.
pub fn stun(data: &[u8]) {
    let Ok(m) = stun::Message::parse(data) else { return };
    let _ = m.check_integrity(b"fuzz-password");
    let _ = m.check_fingerprint();
    let _ = m.xor_address(stun::attr::XOR_MAPPED_ADDRESS);
    for a in m.attributes().flatten() {
        let _ = m.get(a.attr_type);
    }
    let mut buf = [0u8; 256];
    if let Ok(mut w) = stun::Writer::new(&mut buf, stun::BINDING_SUCCESS, m.transaction_id) {
        let addr = SocketAddr::from(([192, 0, 2, 1], 3478));
        let _ = w
            .xor_address(stun::attr::XOR_MAPPED_ADDRESS, addr)
            .and_then(|w| w.integrity(b"k"))
            .and_then(|w| w.fingerprint());
    }
}

/// RTP header, extensions and padding.
pub fn rtp(data: &[u8]) {
    let Ok(h) = rtp::RtpHeader::parse(data) else { return };
    assert!(h.header_len <= data.len(), "a parsed header lies inside the packet");
    for e in h.extensions(data) {
        assert!(e.offset + e.len <= data.len(), "an extension lies inside the packet");
    }
    let _ = h.padding_len(data);
    // The payload parsers the fan-out runs: keyframe starts, and the picture indices it rewrites in a copy.
    let payload = &data[h.header_len..];
    for codec in [Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Opus] {
        let _ = codec.is_keyframe_start(payload);
        let mut rewriter = crate::core::PictureIdRewriter::default();
        rewriter.rewrite(codec, &[0x90, 0xe0, 0x80, 0x01, 0x01]);
        rewriter.switch_source();
        let mut copy = payload.to_vec();
        rewriter.rewrite(codec, payload).apply(&mut copy);
        assert_eq!(copy.len(), payload.len(), "a rewrite keeps the payload's length");
    }
}

/// Compound RTCP and every typed parser.
pub fn rtcp(data: &[u8]) {
    for p in rtcp::compound(data).flatten() {
        let _ = rtcp::sender_report(&p).map(|(_, b)| b.count());
        let _ = rtcp::receiver_report(&p).map(|b| b.count());
        let _ = rtcp::nack_lost(&p).map(|n| n.count());
        let _ = rtcp::fir_entries(&p).map(|f| f.count());
        let _ = rtcp::remb(&p).map(|(_, s)| s.count());
        let _ = rtcp::media_ssrc(&p);
        let mut results = Vec::new();
        let _ = crate::packet::twcc::read(&p, &mut results);
    }
}

/// SRTP and SRTCP unprotect of arbitrary bytes, all suites: authentication fails, nothing panics.
pub fn srtp(data: &[u8]) {
    for profile in Profile::ALL {
        let key = vec![7u8; profile.master_key_len()];
        let salt = vec![9u8; profile.master_salt_len()];
        let ctx = Context::new(profile, &key, &salt).expect("fixed keys have the right sizes");
        let mut buf = data.to_vec();
        if let Ok(h) = rtp::RtpHeader::parse(&buf) {
            let index = ReplayWindow::default().index_for(h.seq);
            let _ = ctx.unprotect_rtp(&mut buf, h.header_len, index);
        }
        let mut buf = data.to_vec();
        let _ = ctx.unprotect_rtcp(&mut buf);
    }
}

/// DTLS records (and whatever else) straight into a DTLS 1.2 server endpoint, as the core runs it: record
/// headers, fragments and handshake messages are parsed by dimpl; nothing may panic.
pub fn dtls(data: &[u8]) {
    thread_local! {
        static IDENTITY: DtlsIdentity = DtlsIdentity::generate_for_simulation(2).expect("an identity");
    }
    let now = Instant::now();
    let mut server = IDENTITY.with(|identity| identity.server(now));
    let _ = server.handle_timeout(now);
    let mut scratch = vec![0u8; 4096];
    // The input may hold several datagrams: split on a length prefix, as in `core`.
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        if server.handle_packet(&rest[2..2 + len]).is_err() {
            return;
        }
        rest = &rest[2 + len..];
        while !matches!(server.poll_output(&mut scratch), dimpl::Output::Timeout(_)) {}
    }
}

/// The whole core: one connected publisher and one subscriber; the input is a sequence of datagrams, each
/// prefixed by a byte choosing its source (publisher, subscriber or a stranger) and a 2-byte length. DTLS records
/// reach dimpl through the handshake step.
pub fn core(data: &[u8]) {
    thread_local! {
        static IDENTITY: DtlsIdentity = DtlsIdentity::generate_for_simulation(1).expect("an identity");
    }
    let identity = IDENTITY.with(Clone::clone);
    // Small tables: the fuzzer builds a core per input, and the limits' sizes do not change what is parsed.
    let config = CoreConfig {
        participants_max: 4,
        tracks_max: 4,
        subscriptions_max: 8,
        subscribers_per_track_max: 4,
        subscriptions_per_participant_max: 4,
        retransmission_buffer_packets: 16,
        ..CoreConfig::default()
    };
    let mut core = Core::with_identity(config, identity);
    let mut out = Transmits::with_capacity(16);
    let now = Instant::now();
    let sources = [
        SocketAddr::from(([127, 0, 0, 1], 1000)),
        SocketAddr::from(([127, 0, 0, 1], 2000)),
        SocketAddr::from(([127, 0, 0, 1], 3000)),
    ];
    let mut ids = vec![];
    for (i, source) in sources.iter().take(2).enumerate() {
        let (ufrag, pwd) = (format!("u{i}"), format!("password-password-{i}"));
        let id = core.add_participant(IceCredentials { ufrag: ufrag.clone(), pwd: pwd.clone() }).expect("room for two");
        let profile = Profile::ALL[i];
        let keys = Keys { key: vec![i as u8; profile.master_key_len()], salt: vec![1u8; profile.master_salt_len()] };
        core.set_srtp_keys(id, profile, (&keys.key, &keys.salt), (&keys.key, &keys.salt)).expect("fixed keys");
        let mut check = TestPeer::new(i as u32, &ufrag, &pwd, profile, &keys, &keys).binding_request(true);
        core.handle_receive(now, *source, &mut check, &mut out);
        ids.push(id);
    }
    let _ = core.expect_dtls(ids[1], crate::core::Fingerprint([0; 32]), now);
    let track = core.add_track(ids[0], TrackSpec::single(0x1000_0000, MediaKind::Video)).expect("a track");
    core.subscribe(ids[1], track, SubscriptionSpec { ssrc: 0x2000, payload_type: Some(96), rtx: None })
        .expect("a subscription");
    let mut rest = data;
    let mut t = now;
    while rest.len() >= 3 {
        let source = sources[usize::from(rest[0]) % sources.len()];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let mut datagram = rest[3..3 + len].to_vec();
        rest = &rest[3 + len..];
        out.clear();
        core.handle_receive(t, source, &mut datagram, &mut out);
        core.handle_handshakes(t, 4, &mut out);
        t += Duration::from_millis(10);
        if core.poll_timeout().is_some_and(|due| due <= t) {
            core.handle_timeout(t, &mut out);
        }
        while core.poll_event().is_some() {}
    }
}
