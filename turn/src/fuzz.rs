//! Fuzz entry points (the cargo-fuzz crate in `turn/fuzz/` calls these; `turn/tests/fuzz_corpus.rs` replays the
//! corpus in every test run). Each feeds arbitrary bytes to a parser and to the whole server; nothing may panic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

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

    fn open_pair(&mut self, family: Family) -> std::io::Result<[(RelayId, SocketAddr); 2]> {
        Ok([self.open(family, true)?, self.open(family, false)?])
    }

    fn close(&mut self, _: RelayId) {}
}

/// The whole server: the input as a client datagram, then as a peer datagram on every relay.
pub fn server(data: &[u8]) {
    let now = Now { instant: Instant::now(), unix: UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs()) };
    let config = ServerConfig { secrets: vec!["fuzzing-secret-0123456789".into()], ..ServerConfig::default() };
    let mut server = Server::new(config, [1; 32], Arc::new(Quotas::new(0, 0)), now.instant);
    let mut relays = NoSockets::default();
    let client = Client {
        transport: if data.first().is_some_and(|b| b & 1 == 1) { Transport::Tcp } else { Transport::Udp },
        remote: SocketAddr::from(([198, 51, 100, 1], 40_000)),
        local: SocketAddr::from(([203, 0, 113, 1], 3478)),
        conn: 0,
    };
    let mut out = [0u8; 1500];
    let _ = server.handle_client(now, &client, data, &mut out, &mut relays);
    let mut buf = vec![0u8; PEER_HEADROOM + data.len().min(1400) + PEER_TAILROOM];
    let len = data.len().min(1400);
    buf[PEER_HEADROOM..PEER_HEADROOM + len].copy_from_slice(&data[..len]);
    for relay in 0..=relays.0 {
        let _ = server.handle_peer(now.instant, relay, client.remote, &mut buf, PEER_HEADROOM..PEER_HEADROOM + len);
    }
    server.handle_timeout(now.instant + Duration::from_secs(3600), &mut relays);
}
