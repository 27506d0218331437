//! The sans-IO server driven directly: requests built with the STUN writer, a fake clock, relays that only
//! hand out addresses. Real sockets and third-party clients are in `tests/turn.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::filter::{DENIED_V4, DENIED_V6};
use crate::proto::StunError;

const SECRET: &str = "test-secret-0123456789";
const OLD_SECRET: &str = "old-secret-0123456789";
const UNIX: u64 = 1_800_000_000;

#[derive(Debug, Default)]
struct FakeRelays {
    next: u32,
    open: Vec<RelayId>,
    reserved: Vec<([u8; 8], RelayId, SocketAddr)>,
}

impl Relays for FakeRelays {
    fn open(&mut self, family: Family, even_port: bool) -> std::io::Result<(RelayId, SocketAddr)> {
        self.next += 2;
        self.open.push(self.next);
        let port = 50_000 + self.next as u16 * 2 + u16::from(!even_port && self.next.is_multiple_of(3));
        let ip: IpAddr =
            if family == Family::V4 { "203.0.113.1".parse().unwrap() } else { "2001:db8::1".parse().unwrap() };
        Ok((self.next, SocketAddr::new(ip, port)))
    }

    fn open_reserving(&mut self, family: Family) -> std::io::Result<((RelayId, SocketAddr), [u8; 8])> {
        let (a, even) = self.open(family, true)?;
        self.next += 1;
        self.open.push(self.next);
        let token = [self.next as u8; 8];
        self.reserved.push((token, self.next, SocketAddr::new(even.ip(), even.port() + 1)));
        Ok(((a, even), token))
    }

    fn take_reserved(&mut self, token: &[u8]) -> Option<std::io::Result<(RelayId, SocketAddr)>> {
        let i = self.reserved.iter().position(|(t, _, _)| t[..] == *token)?;
        let (_, relay, addr) = self.reserved.swap_remove(i);
        Some(Ok((relay, addr)))
    }

    fn close(&mut self, relay: RelayId) {
        self.open.retain(|r| *r != relay);
    }
}

struct Fixture {
    server: Server,
    relays: FakeRelays,
    t0: Instant,
    out: Vec<u8>,
    txid: u8,
}

fn udp_client(last: u8) -> Client {
    Client {
        transport: Transport::Udp,
        remote: SocketAddr::from(([198, 51, 100, last], 40_000)),
        local: SocketAddr::from(([203, 0, 113, 1], 3478)),
        conn: 0,
    }
}

fn fixture(config: ServerConfig) -> Fixture {
    let t0 = Instant::now();
    let config = ServerConfig { secrets: vec![SECRET.into(), OLD_SECRET.into()], ..config };
    let quotas = Arc::new(Quotas::new(0, 0));
    Fixture {
        server: Server::new(config, [9; 32], quotas, t0),
        relays: FakeRelays::default(),
        t0,
        out: vec![0; 1500],
        txid: 0,
    }
}

type Attrs<'a> = &'a [(u16, &'a [u8])];

/// A user's REST credential under `secret`, expiring `ttl` seconds after `UNIX`.
fn credential(secret: &str, user: &str, ttl: i64) -> (String, String) {
    let username = format!("{}:{user}", (UNIX as i64 + ttl) as u64);
    let password = auth::rest_password(secret, &username);
    (username, password)
}

impl Fixture {
    fn now(&self, secs: u64) -> Now {
        Now { instant: self.t0 + Duration::from_secs(secs), unix: UNIX + secs }
    }

    fn next_txid(&mut self) -> [u8; 12] {
        self.txid += 1;
        [self.txid; 12]
    }

    fn send(&mut self, client: &Client, bytes: &[u8], at: u64) -> Action {
        let now = self.now(at);
        self.server.handle_client(now, client, bytes, &mut self.out, &mut self.relays)
    }

    /// The reply to `bytes`, parsed; panics if there is none.
    fn exchange(&mut self, client: &Client, bytes: &[u8], at: u64) -> Vec<u8> {
        match self.send(client, bytes, at) {
            Action::Reply(len) => self.out[..len].to_vec(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// A nonce, from the 401 to an unauthenticated Allocate.
    fn nonce(&mut self, client: &Client) -> Vec<u8> {
        let txid = self.next_txid();
        let request = message(msg::ALLOCATE_REQUEST, txid, &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])]);
        let reply = self.exchange(client, &request, 0);
        let m = Message::parse(&reply).unwrap();
        assert_eq!(error_code(&m), Some(401));
        assert_eq!(m.get(attr::REALM), Some(&b"sluice"[..]));
        m.get(attr::NONCE).unwrap().to_vec()
    }

    fn authed(
        &mut self,
        client: &Client,
        msg_type: u16,
        attrs: Attrs<'_>,
        user: &(String, String),
        at: u64,
    ) -> Vec<u8> {
        let nonce = self.nonce(client);
        let txid = self.next_txid();
        let request = signed(msg_type, txid, attrs, user, &nonce);
        self.exchange(client, &request, at)
    }

    fn allocate(&mut self, client: &Client, user: &(String, String)) -> SocketAddr {
        let reply = self.authed(client, msg::ALLOCATE_REQUEST, &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])], user, 0);
        let m = Message::parse(&reply).unwrap();
        assert_eq!(m.msg_type, msg::success(msg::ALLOCATE_REQUEST), "error {:?}", error_code(&m));
        m.check_integrity(&auth::long_term_key(&user.0, "sluice", &user.1)).expect("the success is signed");
        m.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap()
    }
}

fn message(msg_type: u16, txid: [u8; 12], attrs: Attrs<'_>) -> Vec<u8> {
    build(msg_type, txid, attrs, |_| Ok(()))
}

fn build(
    msg_type: u16,
    txid: [u8; 12],
    attrs: Attrs<'_>,
    tail: impl FnOnce(&mut Writer<'_>) -> Result<(), StunError>,
) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let mut w = Writer::new(&mut buf, msg_type, txid).unwrap();
    for (t, v) in attrs {
        w.attr(*t, v).unwrap();
    }
    tail(&mut w).unwrap();
    let len = w.len();
    buf.truncate(len);
    buf
}

fn signed(msg_type: u16, txid: [u8; 12], attrs: Attrs<'_>, user: &(String, String), nonce: &[u8]) -> Vec<u8> {
    let key = auth::long_term_key(&user.0, "sluice", &user.1);
    build(msg_type, txid, attrs, |w| {
        w.attr(attr::USERNAME, user.0.as_bytes())?.attr(attr::REALM, b"sluice")?.attr(attr::NONCE, nonce)?;
        w.integrity(&key)?;
        Ok(())
    })
}

fn xor_peer(peer: SocketAddr, txid: [u8; 12]) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let mut w = Writer::new(&mut buf, 0, txid).unwrap();
    w.xor_address(attr::XOR_PEER_ADDRESS, peer).unwrap();
    let len = w.len();
    buf[HEADER_LEN + 4..len].to_vec()
}

fn error_code(m: &Message<'_>) -> Option<u16> {
    m.get(attr::ERROR_CODE).map(|v| u16::from(v[2]) * 100 + u16::from(v[3]))
}

fn code_of(reply: &[u8]) -> u16 {
    let m = Message::parse(reply).unwrap();
    error_code(&m).unwrap_or(200)
}

#[test]
fn binding_answers_with_the_mapped_address() {
    let mut f = fixture(ServerConfig::default());
    let client = udp_client(7);
    let reply = f.exchange(&client, &message(msg::BINDING_REQUEST, [1; 12], &[]), 0);
    let m = Message::parse(&reply).unwrap();
    assert_eq!(m.msg_type, msg::BINDING_SUCCESS);
    assert_eq!(m.xor_address(attr::XOR_MAPPED_ADDRESS), Some(client.remote));
    assert!(!m.has(attr::SOFTWARE), "no SOFTWARE unless configured");
}

#[test]
fn allocate_is_challenged_then_granted_and_retransmissions_get_the_same_answer() {
    let mut f = fixture(ServerConfig::default());
    let client = udp_client(7);
    let user = credential(SECRET, "alice", 600);
    let relayed = f.allocate(&client, &user);
    assert_eq!(f.server.allocation_count(), 1);

    // Same transaction again: same relayed address, no second allocation.
    let txid = [f.txid; 12];
    let nonce = f.nonce(&client);
    let request = signed(msg::ALLOCATE_REQUEST, txid, &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])], &user, &nonce);
    let reply = f.exchange(&client, &request, 0);
    let m = Message::parse(&reply).unwrap();
    assert_eq!(error_code(&m), None);

    // A new Allocate on the same 5-tuple is a mismatch.
    let reply = f.authed(&client, msg::ALLOCATE_REQUEST, &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])], &user, 0);
    assert_eq!(code_of(&reply), 437);
    assert_eq!(f.relays.open.len(), 1);
    assert_ne!(relayed.port(), 0);
}

#[test]
fn credentials_are_checked_expiry_secret_rotation_and_stale_nonces() {
    let mut f = fixture(ServerConfig::default());
    let transport = [(attr::REQUESTED_TRANSPORT, &[17u8, 0, 0, 0][..])];
    let wrong = credential("not-our-secret-at-all", "mallory", 600);
    assert_eq!(code_of(&f.authed(&udp_client(1), msg::ALLOCATE_REQUEST, &transport, &wrong, 0)), 401);
    let expired = credential(SECRET, "bob", -1);
    let reply = f.authed(&udp_client(2), msg::ALLOCATE_REQUEST, &transport, &expired, 0);
    assert_eq!(code_of(&reply), 401);
    assert!(String::from_utf8_lossy(&reply).contains("Credential expired"));
    // The previous secret still verifies during a rotation.
    f.allocate(&udp_client(3), &credential(OLD_SECRET, "carol", 600));

    // A nonce older than its lifetime is stale: 438 with a fresh nonce.
    let client = udp_client(4);
    let user = credential(SECRET, "dave", 7200);
    let nonce = f.nonce(&client);
    let request = signed(msg::ALLOCATE_REQUEST, [77; 12], &transport, &user, &nonce);
    let reply = f.exchange(&client, &request, 601);
    let m = Message::parse(&reply).unwrap();
    assert_eq!(error_code(&m), Some(438));
    let fresh = m.get(attr::NONCE).unwrap().to_vec();
    assert_ne!(fresh, nonce);
    let request = signed(msg::ALLOCATE_REQUEST, [78; 12], &transport, &user, &fresh);
    assert_eq!(code_of(&f.exchange(&client, &request, 601)), 200);
    // A nonce issued to another address is not accepted either.
    let request = signed(msg::ALLOCATE_REQUEST, [79; 12], &transport, &user, &fresh);
    assert_eq!(code_of(&f.exchange(&udp_client(5), &request, 601)), 438);
}

#[test]
fn quota_refuses_with_486_and_ending_an_allocation_frees_it() {
    let mut f = fixture(ServerConfig::default());
    f.server.quotas = Arc::new(Quotas::new(1, 0));
    let user = credential(SECRET, "erin", 600);
    f.allocate(&udp_client(1), &user);
    let transport = [(attr::REQUESTED_TRANSPORT, &[17u8, 0, 0, 0][..])];
    assert_eq!(code_of(&f.authed(&udp_client(2), msg::ALLOCATE_REQUEST, &transport, &user, 0)), 486);
    assert_eq!(f.server.stats.quota_user, 1);
    // Refresh with LIFETIME 0 deletes the allocation, closes its relay and frees the quota.
    let reply = f.authed(&udp_client(1), msg::REFRESH_REQUEST, &[(attr::LIFETIME, &[0, 0, 0, 0])], &user, 0);
    assert_eq!(code_of(&reply), 200);
    assert!(f.relays.open.is_empty());
    f.allocate(&udp_client(2), &user);
}

#[test]
fn transport_other_than_udp_is_442_and_unknown_required_attributes_are_420() {
    let mut f = fixture(ServerConfig::default());
    let user = credential(SECRET, "frank", 600);
    let reply =
        f.authed(&udp_client(1), msg::ALLOCATE_REQUEST, &[(attr::REQUESTED_TRANSPORT, &[6, 0, 0, 0])], &user, 0);
    assert_eq!(code_of(&reply), 442);
    let request = message(msg::ALLOCATE_REQUEST, [3; 12], &[(0x0030, &[1, 2, 3, 4])]);
    let reply = f.exchange(&udp_client(1), &request, 0);
    let m = Message::parse(&reply).unwrap();
    assert_eq!(error_code(&m), Some(420));
    assert_eq!(m.get(attr::UNKNOWN_ATTRIBUTES), Some(&[0x00, 0x30][..]));
}

#[test]
fn another_users_credential_on_an_allocation_is_441() {
    let mut f = fixture(ServerConfig::default());
    let client = udp_client(1);
    f.allocate(&client, &credential(SECRET, "gina", 600));
    let other = credential(SECRET, "hank", 600);
    assert_eq!(code_of(&f.authed(&client, msg::REFRESH_REQUEST, &[], &other, 0)), 441);
    // And a Refresh where there is no allocation is 437.
    assert_eq!(code_of(&f.authed(&udp_client(2), msg::REFRESH_REQUEST, &[], &other, 0)), 437);
}

/// An address inside a range: its first plus one (IPv4) or two (IPv6, so `::/96` gives `::2`, not `::1`).
fn inside(range: &crate::filter::Range) -> IpAddr {
    let base: IpAddr = range.cidr.to_string().split('/').next().unwrap().parse().unwrap();
    match base {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) + 1).into()),
        IpAddr::V6(v6) if range.cidr.to_string().ends_with("/128") => IpAddr::V6(v6),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) + 2).into()),
    }
}

#[test]
fn every_denied_range_is_refused_for_permissions_channels_and_send() {
    // Each case fetches a nonce without credentials; lift the limits on that for this many cases.
    let mut f = fixture(ServerConfig { unauth_rate: 0, response_allowance: 1 << 30, ..ServerConfig::default() });
    let v4_client = udp_client(1);
    let v6_client = udp_client(2);
    let user = credential(SECRET, "ivan", 600);
    f.allocate(&v4_client, &user);
    let reply = f.authed(
        &v6_client,
        msg::ALLOCATE_REQUEST,
        &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]), (attr::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0])],
        &user,
        0,
    );
    assert_eq!(code_of(&reply), 200);
    let mut cases: Vec<(Client, IpAddr, &str)> = Vec::new();
    for range in DENIED_V4 {
        let ip = inside(range);
        cases.push((v4_client, ip, range.name));
        let IpAddr::V4(v4) = ip else { unreachable!() };
        cases.push((v6_client, IpAddr::V6(v4.to_ipv6_mapped()), range.name));
    }
    for range in DENIED_V6 {
        let ip = inside(range);
        let name = match crate::filter::normalize(ip) {
            IpAddr::V4(v4) if range.name == "ipv4_compatible" => {
                DENIED_V4.iter().find(|r| r.cidr.contains(IpAddr::V4(v4))).map_or(range.name, |r| r.name)
            }
            _ => range.name,
        };
        cases.push((v6_client, ip, name));
    }
    for (client, ip, name) in &cases {
        let peer = SocketAddr::new(*ip, 5000);
        let before = f.server.stats.denied(name);
        let nonce = f.nonce(client);
        let txid_used = f.next_txid();
        let value = xor_peer(peer, txid_used);
        // CreatePermission.
        let request =
            signed(msg::CREATE_PERMISSION_REQUEST, txid_used, &[(attr::XOR_PEER_ADDRESS, &value)], &user, &nonce);
        assert_eq!(code_of(&f.exchange(client, &request, 0)), 403, "CreatePermission {ip} ({name})");
        // ChannelBind.
        let request = signed(
            msg::CHANNEL_BIND_REQUEST,
            txid_used,
            &[(attr::CHANNEL_NUMBER, &[0x40, 0x01, 0, 0]), (attr::XOR_PEER_ADDRESS, &value)],
            &user,
            &nonce,
        );
        assert_eq!(code_of(&f.exchange(client, &request, 0)), 403, "ChannelBind {ip} ({name})");
        // Send indication: dropped and counted under the range's name.
        let request = message(msg::SEND_INDICATION, txid_used, &[(attr::XOR_PEER_ADDRESS, &value), (attr::DATA, b"x")]);
        assert_eq!(f.send(client, &request, 0), Action::None, "Send {ip}");
        assert_eq!(f.server.stats.denied(name), before + 3, "{ip} counted as {name}");
    }
    assert!(cases.len() > 50);
}

#[test]
fn channel_data_and_send_reach_the_peer_and_peer_data_comes_back() {
    let mut f = fixture(ServerConfig::default());
    let client = udp_client(1);
    let user = credential(SECRET, "judy", 600);
    f.allocate(&client, &user);
    let relay = f.relays.open[0];
    let peer: SocketAddr = "8.8.8.8:5000".parse().unwrap();
    let nonce = f.nonce(&client);

    // Before a permission, Send is dropped.
    let txid = [50; 12];
    let send =
        message(msg::SEND_INDICATION, txid, &[(attr::XOR_PEER_ADDRESS, &xor_peer(peer, txid)), (attr::DATA, b"hello")]);
    assert_eq!(f.send(&client, &send, 0), Action::None);
    assert_eq!(f.server.stats.dropped(DropReason::NoPermission), 1);

    let txid = [51; 12];
    let request = signed(
        msg::CHANNEL_BIND_REQUEST,
        txid,
        &[(attr::CHANNEL_NUMBER, &[0x40, 0x00, 0, 0]), (attr::XOR_PEER_ADDRESS, &xor_peer(peer, txid))],
        &user,
        &nonce,
    );
    assert_eq!(code_of(&f.exchange(&client, &request, 0)), 200);

    // Send now passes: the DATA value is what goes to the peer.
    match f.send(&client, &send, 1) {
        Action::ToPeer { relay: r, peer: p, range } => {
            assert_eq!((r, p), (relay, peer));
            assert_eq!(&send[range], b"hello");
        }
        other => panic!("{other:?}"),
    }
    // ChannelData.
    let cd = [0x40, 0x00, 0x00, 0x03, b'a', b'b', b'c', 0];
    match f.send(&client, &cd, 1) {
        Action::ToPeer { relay: r, peer: p, range } => {
            assert_eq!((r, p, &cd[range]), (relay, peer, &b"abc"[..]));
        }
        other => panic!("{other:?}"),
    }
    // An unbound channel is dropped.
    assert_eq!(f.send(&client, &[0x40, 0x09, 0, 1, 7, 0, 0, 0], 1), Action::None);
    assert_eq!(f.server.stats.dropped(DropReason::NoChannel), 1);

    // From the bound peer: ChannelData.
    let mut buf = vec![0u8; PEER_HEADROOM + 5 + PEER_TAILROOM];
    buf[PEER_HEADROOM..PEER_HEADROOM + 5].copy_from_slice(b"world");
    let data = PEER_HEADROOM..PEER_HEADROOM + 5;
    match f.server.handle_peer(f.t0, relay, peer, &mut buf, data.clone()) {
        Action::ToClient { client: c, range } => {
            assert_eq!(c, client);
            assert_eq!(&buf[range], &[0x40, 0x00, 0x00, 0x05, b'w', b'o', b'r', b'l', b'd']);
        }
        other => panic!("{other:?}"),
    }
    // From the same IP on another port (permission, no channel): a Data indication.
    let other_port: SocketAddr = "8.8.8.8:6000".parse().unwrap();
    match f.server.handle_peer(f.t0, relay, other_port, &mut buf, data.clone()) {
        Action::ToClient { range, .. } => {
            let m = Message::parse(&buf[range]).unwrap();
            assert_eq!(m.msg_type, msg::DATA_INDICATION);
            assert_eq!(m.xor_address(attr::XOR_PEER_ADDRESS), Some(other_port));
            assert_eq!(m.get(attr::DATA), Some(&b"world"[..]));
        }
        other => panic!("{other:?}"),
    }
    // From an address without a permission: dropped.
    assert_eq!(f.server.handle_peer(f.t0, relay, "9.9.9.9:1".parse().unwrap(), &mut buf, data.clone()), Action::None);
    assert_eq!(f.server.stats.dropped(DropReason::NoPermission), 2);
    // Permissions expire after 300 s, channels after 600 s.
    let later = f.t0 + Duration::from_secs(301);
    f.server.handle_timeout(later, &mut f.relays);
    assert_eq!(f.server.handle_peer(later, relay, peer, &mut buf, data), Action::None);
    assert_eq!((f.server.stats.to_peer_packets, f.server.stats.to_client_packets), (2, 2));
}

#[test]
fn channel_data_over_a_stream_is_padded() {
    let mut f = fixture(ServerConfig::default());
    let client = Client { transport: Transport::Tcp, conn: 3, ..udp_client(1) };
    let user = credential(SECRET, "kim", 600);
    f.allocate(&client, &user);
    let relay = f.relays.open[0];
    let peer: SocketAddr = "8.8.8.8:5000".parse().unwrap();
    let reply = f.authed(
        &client,
        msg::CHANNEL_BIND_REQUEST,
        &[(attr::CHANNEL_NUMBER, &[0x40, 0x00, 0, 0]), (attr::XOR_PEER_ADDRESS, &xor_peer(peer, [f.txid + 2; 12]))],
        &user,
        0,
    );
    assert_eq!(code_of(&reply), 200);
    let mut buf = vec![0xffu8; PEER_HEADROOM + 5 + PEER_TAILROOM];
    match f.server.handle_peer(f.t0, relay, peer, &mut buf, PEER_HEADROOM..PEER_HEADROOM + 5) {
        Action::ToClient { range, .. } => assert_eq!(range.len(), 12, "4 header + 5 data + 3 padding"),
        other => panic!("{other:?}"),
    }
    // The allocation lives as long as its connection.
    f.server.client_gone(&client, &mut f.relays);
    assert_eq!(f.server.allocation_count(), 0);
}

#[test]
fn allocations_expire_and_close_their_relays() {
    let mut f = fixture(ServerConfig::default());
    f.allocate(&udp_client(1), &credential(SECRET, "lee", 600));
    f.server.handle_timeout(f.t0 + Duration::from_secs(599), &mut f.relays);
    assert_eq!(f.relays.open.len(), 1);
    f.server.handle_timeout(f.t0 + Duration::from_secs(601), &mut f.relays);
    assert!(f.relays.open.is_empty());
    assert_eq!((f.server.stats.allocations_active, f.server.stats.allocations_ended), (0, 1));
}

#[test]
fn even_port_reservation_is_handed_to_the_token_holder() {
    let mut f = fixture(ServerConfig::default());
    let user = credential(SECRET, "mo", 600);
    let reply = f.authed(
        &udp_client(1),
        msg::ALLOCATE_REQUEST,
        &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]), (attr::EVEN_PORT, &[0x80])],
        &user,
        0,
    );
    let m = Message::parse(&reply).unwrap();
    let relayed = m.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap();
    assert_eq!(relayed.port() % 2, 0);
    let token = m.get(attr::RESERVATION_TOKEN).unwrap().to_vec();
    let reply = f.authed(
        &udp_client(2),
        msg::ALLOCATE_REQUEST,
        &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]), (attr::RESERVATION_TOKEN, &token)],
        &user,
        0,
    );
    let m = Message::parse(&reply).unwrap();
    assert_eq!(m.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap().port(), relayed.port() + 1);
    // A token is used once.
    let reply = f.authed(
        &udp_client(3),
        msg::ALLOCATE_REQUEST,
        &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]), (attr::RESERVATION_TOKEN, &token)],
        &user,
        0,
    );
    assert_eq!(code_of(&reply), 508);
}

#[test]
fn unauthenticated_answers_never_amplify_a_flood() {
    let mut f = fixture(ServerConfig { unauth_rate: 0, ..ServerConfig::default() });
    let client = udp_client(9);
    let (mut bytes_in, mut bytes_out) = (0usize, 0usize);
    for i in 0..2000u32 {
        let mut txid = [0u8; 12];
        txid[..4].copy_from_slice(&i.to_be_bytes());
        let request = if i % 2 == 0 {
            message(msg::ALLOCATE_REQUEST, txid, &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])])
        } else {
            message(msg::BINDING_REQUEST, txid, &[])
        };
        bytes_in += request.len();
        if let Action::Reply(len) = f.send(&client, &request, 0) {
            bytes_out += len;
        }
    }
    let allowance = ServerConfig::default().response_allowance as usize;
    assert!(bytes_out <= bytes_in + allowance, "sent {bytes_out} for {bytes_in}");
    assert!(bytes_out > bytes_in / 2, "the flood's own bytes still buy answers: {bytes_out} of {bytes_in}");
    assert!(f.server.stats.dropped(DropReason::Amplification) > 0);
}

#[test]
fn unauthenticated_requests_are_rate_limited_per_source() {
    let mut f = fixture(ServerConfig {
        unauth_rate: 5,
        unauth_burst: 5,
        response_allowance: 1 << 20,
        ..ServerConfig::default()
    });
    let answered = (0..50u8)
        .filter(|i| {
            matches!(f.send(&udp_client(1), &message(msg::BINDING_REQUEST, [*i; 12], &[]), 0), Action::Reply(_))
        })
        .count();
    assert_eq!(answered, 5);
    assert!(matches!(f.send(&udp_client(2), &message(msg::BINDING_REQUEST, [1; 12], &[]), 0), Action::Reply(_)));
    assert_eq!(f.server.stats.dropped(DropReason::RateLimited), 45);
}

#[test]
fn bandwidth_cap_drops_and_counts() {
    let mut f = fixture(ServerConfig { allocation_bps: 1000, ..ServerConfig::default() });
    let client = udp_client(1);
    let user = credential(SECRET, "ned", 600);
    f.allocate(&client, &user);
    let peer: SocketAddr = "8.8.8.8:5000".parse().unwrap();
    let reply = f.authed(
        &client,
        msg::CHANNEL_BIND_REQUEST,
        &[(attr::CHANNEL_NUMBER, &[0x40, 0x00, 0, 0]), (attr::XOR_PEER_ADDRESS, &xor_peer(peer, [f.txid + 2; 12]))],
        &user,
        0,
    );
    assert_eq!(code_of(&reply), 200);
    let mut cd = vec![0x40, 0x00, 0x01, 0x90];
    cd.resize(4 + 400, 0);
    let passed = (0..10).filter(|_| matches!(f.send(&client, &cd, 0), Action::ToPeer { .. })).count();
    assert_eq!(passed, 2, "1000 bytes of burst hold two 400-byte packets");
    assert_eq!(f.server.stats.dropped(DropReason::Bandwidth), 8);
}

#[test]
fn garbage_is_counted_not_answered() {
    let mut f = fixture(ServerConfig::default());
    for bytes in [
        &[0xffu8; 40][..],
        &[0x00, 0x01, 0x00],
        &[0x40, 0x00, 0x00, 0x09, 1],
        &[0x01, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ] {
        assert_eq!(f.send(&udp_client(1), bytes, 0), Action::None);
    }
    let s = &f.server.stats;
    assert_eq!(s.dropped(DropReason::Malformed) + s.dropped(DropReason::Unexpected), 4);
}

#[test]
fn a_reservation_refused_by_the_quota_is_closed_not_leaked() {
    let mut f = fixture(ServerConfig::default());
    f.server.quotas = Arc::new(Quotas::new(1, 0));
    let user = credential(SECRET, "olga", 600);
    let reply = f.authed(
        &udp_client(1),
        msg::ALLOCATE_REQUEST,
        &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]), (attr::EVEN_PORT, &[0x80])],
        &user,
        0,
    );
    let token = Message::parse(&reply).unwrap().get(attr::RESERVATION_TOKEN).unwrap().to_vec();
    assert_eq!(f.relays.open.len(), 2, "the allocation's port and the reserved one");
    let reply = f.authed(
        &udp_client(2),
        msg::ALLOCATE_REQUEST,
        &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]), (attr::RESERVATION_TOKEN, &token)],
        &user,
        0,
    );
    assert_eq!(code_of(&reply), 486);
    assert_eq!(f.relays.open.len(), 1, "the reserved port was closed");
}

#[test]
fn an_ipv6_client_gets_an_ipv4_relay_unless_it_asks_for_ipv6() {
    let mut f = fixture(ServerConfig::default());
    let v6_client = Client { remote: "[2001:db8::7]:40000".parse().unwrap(), ..udp_client(1) };
    let user = credential(SECRET, "pat", 600);
    assert!(f.allocate(&v6_client, &user).is_ipv4(), "RFC 6156: IPv4 without REQUESTED-ADDRESS-FAMILY");
    let reply = f.authed(
        &udp_client(2),
        msg::ALLOCATE_REQUEST,
        &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]), (attr::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0])],
        &user,
        0,
    );
    let m = Message::parse(&reply).unwrap();
    assert!(m.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap().is_ipv6());
    let reply = f.authed(
        &udp_client(3),
        msg::ALLOCATE_REQUEST,
        &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]), (attr::REQUESTED_ADDRESS_FAMILY, &[3, 0, 0, 0])],
        &user,
        0,
    );
    assert_eq!(code_of(&reply), 440);
}
