//! Fuzz entry points (the cargo-fuzz crate in `turn/fuzz/` calls these; `turn/tests/fuzz_corpus.rs` replays the
//! corpus in every test run). Each feeds arbitrary bytes to a parser and to the whole server; nothing may panic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::limits::Quotas;
use crate::proto::{ChannelData, Message, stream_frame_len};
use crate::server::{
    Client, Family, Now, PEER_HEADROOM, PEER_TAILROOM, RelayId, Relays, Server, ServerConfig, Transport,
};

/// STUN/TURN message and ChannelData parsers, and stream framing.
pub fn parse(data: &[u8]) {
    if let Ok(m) = Message::parse(data) {
        let _ = m.check_fingerprint();
        let _ = m.check_integrity(&[0; 16]);
        for a in m.attributes().flatten() {
            let _ = m.xor_address(a.attr_type);
        }
    }
    let _ = ChannelData::parse(data);
    let _ = stream_frame_len(data);
}

#[derive(Debug, Default)]
struct NoSockets(u32);

impl Relays for NoSockets {
    fn open(&mut self, _: Family, _: bool) -> std::io::Result<(RelayId, SocketAddr)> {
        self.0 += 1;
        Ok((self.0, SocketAddr::from(([203, 0, 113, 1], 50_000 + self.0 as u16))))
    }

    fn open_reserving(&mut self, family: Family) -> std::io::Result<((RelayId, SocketAddr), [u8; 8])> {
        let even = self.open(family, true)?;
        Ok((even, [7; 8]))
    }

    fn take_reserved(&mut self, token: &[u8]) -> Option<std::io::Result<(RelayId, SocketAddr)>> {
        (token == [7; 8]).then(|| self.open(Family::V4, false))
    }

    fn close(&mut self, _: RelayId) {}
}

/// Unix time and nonce key the server target runs at, so signed seeds in the corpus stay valid.
pub const FUZZ_UNIX: u64 = 1_800_000_000;
pub const FUZZ_NONCE_KEY: [u8; 32] = [1; 32];
pub const FUZZ_SECRET: &str = "fuzzing-secret-0123456789";
pub const FUZZ_CLIENT: SocketAddr =
    SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(198, 51, 100, 1), 40_000));

/// The whole server over a session: the input is a sequence of messages, each prefixed by its length (2 bytes,
/// big-endian). Each goes to the server as a client datagram, then as a datagram from a peer on every relay.
pub fn server(data: &[u8]) {
    let _ = run_session(data);
}

/// `server`, returning the counters (the corpus test checks that the seeds reach the relay paths).
pub fn run_session(data: &[u8]) -> crate::Stats {
    let t0 = Instant::now();
    let now = Now { instant: t0, unix: FUZZ_UNIX };
    let config = ServerConfig {
        secrets: vec![FUZZ_SECRET.into()],
        filter: crate::filter::PeerFilter::new(vec!["203.0.113.0/24".parse().expect("a CIDR")], Vec::new()),
        ..ServerConfig::default()
    };
    let mut server = Server::new(config, FUZZ_NONCE_KEY, Arc::new(Quotas::new(0, 0)), t0);
    let mut relays = NoSockets::default();
    let client = Client {
        transport: if data.first().is_some_and(|b| b & 0x80 != 0) { Transport::Tcp } else { Transport::Udp },
        remote: FUZZ_CLIENT,
        local: SocketAddr::from(([203, 0, 113, 1], 3478)),
        conn: 0,
    };
    let mut out = [0u8; 1500];
    let mut buf = vec![0u8; PEER_HEADROOM + 1400 + PEER_TAILROOM];
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let message = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let _ = server.handle_client(now, &client, message, &mut out, &mut relays);
        let n = message.len().min(1400);
        buf[PEER_HEADROOM..PEER_HEADROOM + n].copy_from_slice(&message[..n]);
        for relay in 0..=relays.0 {
            let peer = SocketAddr::from(([203, 0, 113, 9], 5000));
            let _ = server.handle_peer(now.instant, relay, peer, &mut buf, PEER_HEADROOM..PEER_HEADROOM + n);
        }
    }
    let stats = server.stats.clone();
    server.handle_timeout(t0 + Duration::from_secs(3600), &mut relays);
    server.close_all(&mut relays);
    stats
}
