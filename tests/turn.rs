//! `sluice turn` as a real process on loopback: interop with coturn's own load client (`turnutils_uclient`,
//! Debian package `coturn`) over UDP, TCP and TLS, and the security rules checked over real UDP sockets.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use sluice_turn::auth;
use sluice_turn::proto::{Message, Writer, attr, msg};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const SECRET: &str = "interop-secret-0123456789";
/// Every wait here is bounded by this.
const WAIT: Duration = Duration::from_secs(60);

struct Turn {
    child: Child,
    udp: SocketAddr,
    tcp: SocketAddr,
    tls: SocketAddr,
    metrics: String,
    _dir: tempfile::TempDir,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Turn {
    /// `sluice turn` on IPv4 loopback with the given extra `[turn]` keys.
    fn start(extra: &str) -> Turn {
        Turn::start_on("127.0.0.1", extra)
    }

    /// `sluice turn` listening on `host` (`127.0.0.1` or `[::1]`).
    fn start_on(host: &str, extra: &str) -> Turn {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("turn.toml");
        std::fs::write(
            &config,
            format!(
                "[turn]\nudp_listen = \"{host}:0\"\ntcp_listen = \"{host}:0\"\ntls_listen = \"{host}:0\"\n\
                 metrics_listen = \"127.0.0.1:0\"\nrelay_ip = \"127.0.0.1\"\nsecrets = [\"{SECRET}\"]\n{extra}\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars() {
            if key.starts_with("SLUICE_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--config")
            .arg(&config)
            .arg("turn")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sluice turn");
        let line = BufReader::new(child.stdout.take().unwrap()).lines().next().expect("a ready line").unwrap();
        // "Sluice TURN is ready: udp A tcp B tls C metrics D"
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| words[words.iter().position(|w| *w == key).unwrap() + 1].to_string();
        Turn {
            child,
            udp: after("udp").parse().unwrap(),
            tcp: after("tcp").parse().unwrap(),
            tls: after("tls").parse().unwrap(),
            metrics: format!("http://{}/metrics", after("metrics")),
            _dir: dir,
        }
    }

    /// One sample of `/metrics`, e.g. `sluice_turn_relayed_packets_total{direction="to_peer"}`.
    fn metric(&self, name: &str) -> u64 {
        // Workers publish their counters every 100 ms.
        std::thread::sleep(Duration::from_millis(250));
        let text = reqwest::blocking::get(&self.metrics).unwrap().text().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).map(|v| v.parse().unwrap()))
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
    }
}

/// What a `turnutils_uclient` run reported.
#[derive(Debug)]
struct UclientSummary {
    sent: u64,
    received: u64,
    lost: u64,
}

/// Runs coturn's load client against `port` on IPv4 loopback, bounded in time.
fn uclient(port: u16, args: &[&str]) -> UclientSummary {
    uclient_at("127.0.0.1", port, args)
}

fn uclient_at(host: &str, port: u16, args: &[&str]) -> UclientSummary {
    let mut child = Command::new("turnutils_uclient")
        .args(args)
        .args(["-W", SECRET, "-p", &port.to_string(), host])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run turnutils_uclient (Debian package coturn; tests/run.sh installs it)");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("turnutils_uclient {args:?} did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    let (sent, received, lost) = sluice_bench::turn::uclient_totals(&text)
        .unwrap_or_else(|| panic!("no summary from uclient {args:?}:\n{text}"));
    let summary = UclientSummary { sent, received, lost };
    println!("turnutils_uclient {args:?}: {summary:?}");
    summary
}

#[test]
fn coturn_client_relays_over_udp_tcp_and_tls_without_loss_on_io_uring() {
    relays_coturn_clients("uring");
}

#[test]
fn coturn_client_relays_over_udp_tcp_and_tls_without_loss_on_epoll() {
    relays_coturn_clients("mmsg");
}

/// Every kind of `turnutils_uclient` run through `sluice turn` on one UDP I/O path (`turn.io`).
fn relays_coturn_clients(io: &str) {
    // Peers are the other clients' relayed addresses, on loopback: allowed explicitly, as an operator would
    // allow a lab network.
    // On epoll the relay-to-relay datagrams of `-y` go through the kernel (no hairpin): both paths are covered.
    let hairpin = io == "uring";
    let turn = Turn::start(&format!("allow = [\"127.0.0.1\"]\nio = \"{io}\"\nhairpin = {hairpin}"));
    let runs: [(&str, u16, &[&str]); 5] = [
        (
            "UDP, channels, RTP/RTCP pairs (EVEN-PORT reservations)",
            turn.udp.port(),
            &["-y", "-m", "4", "-n", "50", "-l", "200"],
        ),
        ("UDP, Send/Data indications", turn.udp.port(), &["-y", "-s", "-m", "4", "-n", "50", "-l", "200"]),
        ("UDP, no RTCP pair", turn.udp.port(), &["-y", "-c", "-m", "4", "-n", "50", "-l", "1000"]),
        ("TCP", turn.tcp.port(), &["-y", "-t", "-m", "4", "-n", "50", "-l", "200"]),
        ("TLS", turn.tls.port(), &["-y", "-t", "-S", "-m", "4", "-n", "50", "-l", "200"]),
    ];
    let mut expected = 0;
    for (what, port, args) in runs {
        let s = uclient(port, args);
        assert!(s.sent >= 4 * 50, "{what}: sent only {} ({s:?})", s.sent);
        assert_eq!((s.received, s.lost), (s.sent, 0), "{what}: every message comes back");
        expected += s.sent;
    }
    // The relay counted what it carried: each message once towards the peer and once towards its client.
    assert!(turn.metric("sluice_turn_relayed_packets_total{direction=\"to_peer\"}") >= expected);
    assert!(turn.metric("sluice_turn_relayed_packets_total{direction=\"to_client\"}") >= expected);
    assert!(turn.metric("sluice_turn_allocations_total") >= 5 * 4, "at least one allocation per client per run");
    assert_eq!(turn.metric("sluice_turn_drops_total{reason=\"no_permission\"}"), 0);
    assert_eq!(turn.metric(&format!("sluice_turn_workers{{io=\"{io}\"}}")), 1, "the worker ran on {io}");
    // Over UDP every client-to-client message goes from one allocation to another of the one worker.
    let hairpinned = turn.metric("sluice_turn_hairpinned_packets_total");
    if hairpin {
        assert!(hairpinned >= 3 * 4 * 50, "UDP messages hairpinned: {hairpinned}");
    } else {
        assert_eq!(hairpinned, 0);
    }
}

#[test]
fn two_workers_share_an_ipv6_listener_and_reservations() {
    // Two workers split the clients by 5-tuple; an RTP allocation's RESERVATION-TOKEN is claimed by the RTCP
    // allocation's Allocate, which may land on the other worker.
    let turn = Turn::start_on("[::1]", "allow = [\"127.0.0.1\"]\nworkers = 2");
    for (what, port, args) in [
        ("UDP", turn.udp.port(), &["-y", "-m", "8", "-n", "30", "-l", "200"][..]),
        ("TCP", turn.tcp.port(), &["-y", "-t", "-m", "8", "-n", "30", "-l", "200"][..]),
    ] {
        let s = uclient_at("::1", port, args);
        assert!(s.sent >= 8 * 30, "{what}: sent only {} ({s:?})", s.sent);
        assert_eq!((s.received, s.lost), (s.sent, 0), "{what}: every message comes back");
    }
    assert_eq!(turn.metric("sluice_turn_responses_total{code=\"508\"}"), 0, "every reservation was found");
}

/// A minimal TURN client over one UDP socket, built on Sluice's STUN codec.
struct Client {
    socket: UdpSocket,
    server: SocketAddr,
    username: String,
    password: String,
    nonce: Vec<u8>,
    txid: u32,
}

impl Client {
    fn new(server: SocketAddr, user: &str, ttl_secs: i64) -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let expiry = (auth::unix_secs(SystemTime::now()) as i64 + ttl_secs) as u64;
        let username = format!("{expiry}:{user}");
        let password = auth::rest_password(SECRET, &username);
        Client { socket, server, username, password, nonce: Vec::new(), txid: 0 }
    }

    fn next_txid(&mut self) -> [u8; 12] {
        self.txid += 1;
        let mut t = [0u8; 12];
        t[..4].copy_from_slice(&self.txid.to_be_bytes());
        t[4..8].copy_from_slice(&std::process::id().to_be_bytes());
        t
    }

    /// Sends a request (signed once a nonce is known) and returns the response's bytes.
    fn request(&mut self, msg_type: u16, attrs: &[(u16, Vec<u8>)], signed: bool) -> Vec<u8> {
        let txid = self.next_txid();
        let mut buf = [0u8; 1500];
        let mut w = Writer::new(&mut buf, msg_type, txid).unwrap();
        for (t, v) in attrs {
            w.attr(*t, v).unwrap();
        }
        if signed {
            let key = auth::long_term_key(&self.username, "sluice", &self.password);
            w.attr(attr::USERNAME, self.username.as_bytes()).unwrap();
            w.attr(attr::REALM, b"sluice").unwrap();
            w.attr(attr::NONCE, &self.nonce).unwrap();
            w.integrity(&key).unwrap();
        }
        let len = w.len();
        self.socket.send_to(&buf[..len], self.server).unwrap();
        let mut reply = [0u8; 1500];
        loop {
            let (n, _) = self.socket.recv_from(&mut reply).expect("an answer within 2 s");
            let m = Message::parse(&reply[..n]).unwrap();
            if m.transaction_id == txid {
                if let Some(nonce) = m.get(attr::NONCE) {
                    self.nonce = nonce.to_vec();
                }
                return reply[..n].to_vec();
            }
        }
    }

    /// Allocate with the 401 round trip first, as real clients do; returns the response code.
    fn allocate(&mut self, extra: &[(u16, Vec<u8>)]) -> u16 {
        let mut attrs = vec![(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])];
        attrs.extend_from_slice(extra);
        let challenge = self.request(msg::ALLOCATE_REQUEST, &attrs, false);
        assert_eq!(code(&challenge), 401, "an unauthenticated Allocate is challenged");
        code(&self.request(msg::ALLOCATE_REQUEST, &attrs, true))
    }

    /// XOR-PEER-ADDRESS for the next request (IPv6 addresses are XORed with its transaction ID).
    fn peer_attr(&mut self, peer: SocketAddr) -> Vec<u8> {
        let next = {
            let mut t = [0u8; 12];
            t[..4].copy_from_slice(&(self.txid + 1).to_be_bytes());
            t[4..8].copy_from_slice(&std::process::id().to_be_bytes());
            t
        };
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf, 0, next).unwrap();
        w.xor_address(attr::XOR_PEER_ADDRESS, peer).unwrap();
        let len = w.len();
        buf[24..len].to_vec()
    }

    fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        let txid = self.next_txid();
        let mut buf = [0u8; 1500];
        let mut w = Writer::new(&mut buf, msg::SEND_INDICATION, txid).unwrap();
        w.xor_address(attr::XOR_PEER_ADDRESS, peer).unwrap().attr(attr::DATA, data).unwrap();
        let len = w.len();
        self.socket.send_to(&buf[..len], self.server).unwrap();
    }
}

fn code(reply: &[u8]) -> u16 {
    let m = Message::parse(reply).unwrap();
    m.get(attr::ERROR_CODE).map_or(200, |v| u16::from(v[2]) * 100 + u16::from(v[3]))
}

#[test]
fn credentials_nonces_and_quotas_are_enforced() {
    let turn = Turn::start("user_quota = 2");
    // Expired credential: 401.
    let mut expired = Client::new(turn.udp, "eve", -10);
    assert_eq!(expired.allocate(&[]), 401);
    // Wrong secret: 401.
    let mut forged = Client::new(turn.udp, "eve", 600);
    forged.password = auth::rest_password("some-other-secret-xyz", &forged.username);
    assert_eq!(forged.allocate(&[]), 401);
    // A nonce we did not issue: 438, with a fresh one that then works.
    let mut alice = Client::new(turn.udp, "alice", 600);
    alice.nonce = b"00000000ffffffffffffffff".to_vec();
    let reply = alice.request(msg::ALLOCATE_REQUEST, &[(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])], true);
    assert_eq!(code(&reply), 438);
    assert_eq!(
        code(&alice.request(msg::ALLOCATE_REQUEST, &[(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])], true)),
        200
    );
    // Quota: two allocations per user, the third is 486.
    let mut second = Client::new(turn.udp, "alice", 600);
    assert_eq!(second.allocate(&[]), 200);
    let mut third = Client::new(turn.udp, "alice", 600);
    assert_eq!(third.allocate(&[]), 486);
    assert_eq!(turn.metric("sluice_turn_quota_hits_total{quota=\"user\"}"), 1);
    // Four challenges (every client but the one that came with a nonce) and two refused credentials.
    assert_eq!(turn.metric("sluice_turn_responses_total{code=\"401\"}"), 4 + 2);
    assert_eq!(turn.metric("sluice_turn_responses_total{code=\"438\"}"), 1);
    assert_eq!(turn.metric("sluice_turn_allocations_active"), 2);
}

#[test]
fn denied_peers_are_refused_and_allowed_ones_reached() {
    let turn = Turn::start("relay_ipv6 = \"::1\"\nallow = [\"127.0.0.1\"]");
    let mut v4 = Client::new(turn.udp, "bob", 600);
    assert_eq!(v4.allocate(&[]), 200);
    let mut v6 = Client::new(turn.udp, "bob", 600);
    assert_eq!(v6.allocate(&[(attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0])]), 200);
    let v4_peers = [
        "127.0.0.2",
        "0.0.0.0",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "192.0.2.1",
    ];
    let v6_peers = [
        "::1",
        "::",
        "::ffff:127.0.0.2",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.2",
        "64:ff9b::a00:1",
        "fe80::1",
        "fd00::1",
        "ff02::1",
        "2001:db8::1",
    ];
    let mut denials = 0;
    for (client, peers) in [(&mut v4, &v4_peers[..]), (&mut v6, &v6_peers[..])] {
        for ip in peers {
            let peer = SocketAddr::new(ip.parse().unwrap(), 9);
            let value = client.peer_attr(peer);
            let reply = client.request(msg::CREATE_PERMISSION_REQUEST, &[(attr::XOR_PEER_ADDRESS, value)], true);
            assert_eq!(code(&reply), 403, "CreatePermission to {ip}");
            let value = client.peer_attr(peer);
            let reply = client.request(
                msg::CHANNEL_BIND_REQUEST,
                &[(attr::CHANNEL_NUMBER, vec![0x40, 0x01, 0, 0]), (attr::XOR_PEER_ADDRESS, value)],
                true,
            );
            assert_eq!(code(&reply), 403, "ChannelBind to {ip}");
            client.send_indication(peer, b"must not leave");
            denials += 3;
        }
    }
    // Positive control: an allowed peer (on the allow list) gets the data.
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let value = v4.peer_attr(peer_addr);
    assert_eq!(code(&v4.request(msg::CREATE_PERMISSION_REQUEST, &[(attr::XOR_PEER_ADDRESS, value)], true)), 200);
    v4.send_indication(peer_addr, b"hello peer");
    let mut buf = [0u8; 64];
    let (n, _) = peer.recv_from(&mut buf).expect("the allowed peer receives the data");
    assert_eq!(&buf[..n], b"hello peer");
    let deadline = Instant::now() + Duration::from_secs(2);
    let counted = || -> u64 {
        let text = reqwest::blocking::get(&turn.metrics).unwrap().text().unwrap();
        text.lines()
            .filter(|l| l.starts_with("sluice_turn_denials_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    while counted() < denials && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(counted(), denials, "every refusal counted by range");
}

/// Floods the relay with 1000 unauthenticated requests (Binding and Allocate) from one socket; returns bytes
/// sent, bytes answered and the flood's duration.
fn unauthenticated_flood(turn: &Turn) -> (usize, usize, Duration) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let started = Instant::now();
    let (mut bytes_in, mut bytes_out) = (0usize, 0usize);
    let mut buf = [0u8; 1500];
    for i in 0..1000u32 {
        let mut txid = [0u8; 12];
        txid[..4].copy_from_slice(&i.to_be_bytes());
        let mut request = [0u8; 64];
        let msg_type = if i % 2 == 0 { msg::BINDING_REQUEST } else { msg::ALLOCATE_REQUEST };
        let mut w = Writer::new(&mut request, msg_type, txid).unwrap();
        if msg_type == msg::ALLOCATE_REQUEST {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
        }
        let len = w.len();
        socket.send_to(&request[..len], turn.udp).unwrap();
        bytes_in += len;
    }
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        bytes_out += n;
    }
    // Until the last answer could have been sent: the allowance refills continuously meanwhile.
    let elapsed = started.elapsed();
    println!(
        "unauthenticated flood: {bytes_in} bytes in, {bytes_out} bytes out ({:.3})",
        bytes_out as f64 / bytes_in as f64
    );
    (bytes_in, bytes_out, elapsed)
}

#[test]
fn unauthenticated_traffic_is_not_amplified() {
    // Default: answers are paid by the source's requests, plus an allowance of 4096 bytes refilled per second.
    let turn = Turn::start("unauth_rate = 0");
    let (bytes_in, bytes_out, elapsed) = unauthenticated_flood(&turn);
    let allowance = (4096.0 * (1.0 + elapsed.as_secs_f64())) as usize;
    assert!(bytes_out > bytes_in / 2, "the flood's own bytes pay for answers: {bytes_out} of {bytes_in}");
    assert!(bytes_out <= bytes_in + allowance, "amplified: {bytes_out} bytes out for {bytes_in} in");
    assert!(turn.metric("sluice_turn_drops_total{reason=\"amplification\"}") > 0);
    drop(turn);
    // Without an allowance: never more out than in.
    let strict = Turn::start("unauth_rate = 0\nresponse_allowance_bytes = 0");
    let (bytes_in, bytes_out, _) = unauthenticated_flood(&strict);
    assert!(bytes_out > 0 && bytes_out <= bytes_in, "amplification ratio {:.3}", bytes_out as f64 / bytes_in as f64);
}

#[test]
fn bad_turn_settings_are_refused_naming_the_key() {
    for (toml, key) in [
        ("[turn]\nsecrets = [\"short\"]\n", "turn.secrets"),
        ("[turn]\nsecrets = [\"long-enough-secret-123\"]\nallow = [\"10.0.0.0/40\"]\n", "turn.allow"),
        ("[turn]\nsecrets = [\"long-enough-secret-123\"]\nudp_listen = \"nowhere\"\n", "turn.udp_listen"),
        ("[turn]\nsecrets = [\"long-enough-secret-123\"]\nmin_port = 60000\nmax_port = 50000\n", "turn.min_port"),
        ("[turn]\nsecrets = [\"long-enough-secret-123\"]\nio = \"fastest\"\n", "turn.io"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("turn.toml");
        std::fs::write(&config, toml).unwrap();
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--config")
            .arg(&config)
            .arg("turn")
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml} was accepted");
        assert!(stderr.contains(key), "{toml}: the error names {key}: {stderr}");
    }
}

/// Allocates (with the 401 round trip) and returns the relayed address.
fn relayed_address(client: &mut Client) -> SocketAddr {
    let attrs = [(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])];
    assert_eq!(code(&client.request(msg::ALLOCATE_REQUEST, &attrs, false)), 401);
    let reply = client.request(msg::ALLOCATE_REQUEST, &attrs, true);
    Message::parse(&reply).unwrap().xor_address(attr::XOR_RELAYED_ADDRESS).expect("an allocation")
}

/// The data of the next Data indication `client` receives, if one comes within its read timeout.
fn next_data(client: &Client) -> Option<(SocketAddr, Vec<u8>)> {
    let mut buf = [0u8; 1500];
    let (n, _) = client.socket.recv_from(&mut buf).ok()?;
    let m = Message::parse(&buf[..n]).ok()?;
    Some((m.xor_address(attr::XOR_PEER_ADDRESS)?, m.get(attr::DATA)?.to_vec()))
}

#[test]
fn two_allocations_of_one_server_reach_each_other_only_with_both_permissions() {
    for hairpin in [true, false] {
        let turn = Turn::start(&format!("allow = [\"127.0.0.1\"]\nhairpin = {hairpin}"));
        let mut alice = Client::new(turn.udp, "alice", 600);
        let mut bob = Client::new(turn.udp, "bob", 600);
        bob.socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let (alice_relay, bob_relay) = (relayed_address(&mut alice), relayed_address(&mut bob));
        let value = alice.peer_attr(bob_relay);
        assert_eq!(code(&alice.request(msg::CREATE_PERMISSION_REQUEST, &[(attr::XOR_PEER_ADDRESS, value)], true)), 200);
        // Bob has no permission for Alice's relayed address: his allocation drops what she sends.
        alice.send_indication(bob_relay, b"not yet");
        assert_eq!(next_data(&bob), None, "hairpin {hairpin}: delivered without Bob's permission");
        let value = bob.peer_attr(alice_relay);
        assert_eq!(code(&bob.request(msg::CREATE_PERMISSION_REQUEST, &[(attr::XOR_PEER_ADDRESS, value)], true)), 200);
        alice.send_indication(bob_relay, b"hello bob");
        assert_eq!(
            next_data(&bob),
            Some((alice_relay, b"hello bob".to_vec())),
            "hairpin {hairpin}: from Alice's relayed address"
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(turn.metric("sluice_turn_drops_total{reason=\"no_permission\"}"), 1, "hairpin {hairpin}");
        let hairpinned = turn.metric("sluice_turn_hairpinned_packets_total");
        assert_eq!(hairpinned, u64::from(hairpin), "hairpin {hairpin}: the datagram's path");
    }
}
