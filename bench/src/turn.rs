//! TURN relay benchmark: `sluice turn` and coturn 4.6.1 (Debian's `turnserver`) on loopback under the same load
//! from coturn's own client (`turnutils_uclient`, several processes since each is paced and single-threaded),
//! run alternately in one invocation. Reported per server: messages relayed per second, relayed packets per
//! CPU-second of the server process (from its own `/proc/<pid>/stat`, so the clients' CPU does not count), and
//! round-trip time through the relay from a separate probe (two allocations pinging over channels) running
//! during the load.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde::Serialize;
use sluice_turn::auth;
use sluice_turn::proto::{ChannelData, Message, Writer, attr, msg};

use crate::meeting::process_cpu_ns;

const SECRET: &str = "bench-secret-0123456789";

#[derive(Debug, Clone)]
pub struct Scenario {
    /// `turnutils_uclient` processes run at once.
    pub processes: usize,
    /// Client pairs per process (`-m`).
    pub clients: usize,
    /// Messages per client (`-n`).
    pub messages: usize,
    /// Message size in bytes (`-l`).
    pub bytes: usize,
    /// Interval between a client's messages in ms (`-z`).
    pub interval_ms: u32,
    /// Alternating rounds (Sluice, coturn, Sluice, coturn, ...).
    pub rounds: usize,
    /// The `sluice` binary to run as `sluice turn`.
    pub sluice: PathBuf,
    /// Relay worker threads for `sluice turn`.
    pub sluice_workers: usize,
    /// Variants of `sluice turn` run beside the default one in every round.
    pub variants: Vec<Variant>,
}

/// A variant of `sluice turn`'s settings, run as its own target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `turn.io = "mmsg"`: epoll with `recvmmsg`/`sendmmsg`.
    Mmsg,
    /// `turn.hairpin = false`: relay-to-relay datagrams through the kernel.
    NoHairpin,
}

impl std::str::FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mmsg" => Ok(Variant::Mmsg),
            "no-hairpin" => Ok(Variant::NoHairpin),
            other => Err(format!("unknown variant {other:?}: expected mmsg or no-hairpin")),
        }
    }
}

impl Variant {
    fn target(self) -> &'static str {
        match self {
            Variant::Mmsg => "sluice-mmsg",
            Variant::NoHairpin => "sluice-no-hairpin",
        }
    }

    /// The `[turn]` keys it sets.
    fn keys(self) -> &'static str {
        match self {
            Variant::Mmsg => "io = \"mmsg\"\n",
            Variant::NoHairpin => "hairpin = false\n",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    pub round: usize,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub lost: u64,
    pub seconds: f64,
    pub server_cpu_seconds: f64,
    /// Each message is relayed twice (client to peer, peer to client).
    pub relayed_packets_per_second: f64,
    pub relayed_packets_per_cpu_second: f64,
    pub rtt_us_p50: u64,
    pub rtt_us_p99: u64,
    pub probe_pings: u64,
    pub probe_lost: u64,
}

/// Runs the rounds; every figure comes from this one invocation.
pub fn run(s: &Scenario) -> anyhow::Result<Vec<TargetReport>> {
    which("turnutils_uclient")?;
    which("turnserver")?;
    let mut reports = Vec::new();
    for round in 1..=s.rounds {
        let mut targets: Vec<(&str, Option<&str>)> = vec![("sluice", Some(""))];
        targets.extend(s.variants.iter().map(|v| (v.target(), Some(v.keys()))));
        targets.push(("coturn", None));
        for (target, keys) in targets {
            let dir = std::env::temp_dir().join(format!("sluice-bench-turn-{}-{target}-{round}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let server = match keys {
                Some(keys) => start_sluice(s, &dir, keys)?,
                None => start_coturn(&dir)?,
            };
            let report = measure(s, target, round, &server);
            drop(server);
            let _ = std::fs::remove_dir_all(&dir);
            let report = report?;
            eprintln!("{}", row(&report));
            reports.push(report);
        }
    }
    Ok(reports)
}

fn which(tool: &str) -> anyhow::Result<()> {
    let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output()?.status.success();
    if !found {
        bail!("{tool} is not installed: apt-get install coturn");
    }
    Ok(())
}

/// A server under test, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `sluice turn` with the per-user and per-address limits lifted: every benchmark client comes from 127.0.0.1
/// under one user, which no real deployment sees (coturn has no such limits by default).
fn start_sluice(s: &Scenario, dir: &Path, keys: &str) -> anyhow::Result<Server> {
    let config = dir.join("turn.toml");
    std::fs::write(
        &config,
        format!(
            "[turn]\nudp_listen = \"127.0.0.1:0\"\ntcp_listen = \"\"\nmetrics_listen = \"\"\nrelay_ip = \"127.0.0.1\"\n\
             secrets = [\"{SECRET}\"]\nallow = [\"127.0.0.1\"]\nallocation_bps = 0\nuser_quota = 0\n\
             total_quota = 0\nunauth_rate = 0\nresponse_allowance_bytes = 100000000\nworkers = {}\n{keys}",
            s.sluice_workers.max(1)
        ),
    )?;
    let mut child = Command::new(&s.sluice)
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(&config)
        .arg("turn")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .context("start sluice turn")?;
    let line =
        BufReader::new(child.stdout.take().context("its output")?).lines().next().context("its ready line")??;
    let udp = line.split_whitespace().skip_while(|w| *w != "udp").nth(1).context("udp address in the ready line")?;
    let port = udp.parse::<SocketAddr>()?.port();
    Ok(Server { child, port })
}

fn start_coturn(dir: &Path) -> anyhow::Result<Server> {
    let port = free_port()?;
    let empty = dir.join("empty.conf");
    std::fs::write(&empty, "")?;
    let child = Command::new("turnserver")
        .arg("-c")
        .arg(&empty)
        .args([&format!("--listening-port={port}"), "--use-auth-secret", &format!("--static-auth-secret={SECRET}")])
        .args(["--realm=test", "--no-tls", "--no-dtls", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
        .args(["--allow-loopback-peers", "--no-cli", "--min-port=49160", "--max-port=65000", "--no-tcp-relay"])
        .arg(format!("--pidfile={}", dir.join("turn.pid").display()))
        .arg(format!("--log-file={}", dir.join("turn.log").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start turnserver (Debian package coturn)")?;
    let server = Server { child, port };
    // Ready when it answers a STUN Binding request.
    let probe = UdpSocket::bind("127.0.0.1:0")?;
    probe.set_read_timeout(Some(Duration::from_millis(100)))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    let mut request = [0u8; 20];
    Writer::new(&mut request, msg::BINDING_REQUEST, [3; 12]).expect("20 bytes hold a header");
    loop {
        probe.send_to(&request, ("127.0.0.1", port))?;
        if probe.recv_from(&mut buf).is_ok() {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("turnserver did not answer on port {port} within 10 s");
        }
    }
}

fn measure(s: &Scenario, target: &str, round: usize, server: &Server) -> anyhow::Result<TargetReport> {
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || rtt_probe(addr, &stop))
    };
    // Give the probe its allocations before the load starts.
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.child.id();
    let cpu_before = process_cpu_ns(pid).context("the server's CPU time")?;
    let started = Instant::now();
    let clients: Vec<Child> = (0..s.processes)
        .map(|_| {
            Command::new("turnutils_uclient")
                .args(["-y", "-c", "-m", &s.clients.to_string(), "-n", &s.messages.to_string()])
                .args(["-l", &s.bytes.to_string(), "-z", &s.interval_ms.to_string(), "-W", SECRET])
                .args(["-p", &server.port.to_string(), "127.0.0.1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()
        .context("start turnutils_uclient")?;
    let mut sent = 0;
    let mut received = 0;
    let mut lost = 0;
    let limit = Duration::from_secs(120);
    for mut child in clients {
        while child.try_wait()?.is_none() {
            if started.elapsed() > limit {
                let _ = child.kill();
                bail!("turnutils_uclient ran over {limit:?} against {target}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        let (a, b, c) = uclient_totals(&text).with_context(|| format!("no totals from turnutils_uclient:\n{text}"))?;
        sent += a;
        received += b;
        lost += c;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = process_cpu_ns(pid).context("the server's CPU time")?.saturating_sub(cpu_before) as f64 / 1e9;
    stop.store(true, Ordering::Relaxed);
    let (mut rtts, pings) = probe.join().map_err(|_| anyhow::anyhow!("the probe panicked"))??;
    rtts.sort_unstable();
    let pct = |q: f64| rtts.get(((rtts.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
    let relayed = 2.0 * received as f64;
    Ok(TargetReport {
        target: target.to_string(),
        round,
        messages_sent: sent,
        messages_received: received,
        lost,
        seconds,
        server_cpu_seconds: cpu,
        relayed_packets_per_second: relayed / seconds,
        relayed_packets_per_cpu_second: if cpu > 0.0 { relayed / cpu } else { 0.0 },
        rtt_us_p50: pct(0.50),
        rtt_us_p99: pct(0.99),
        probe_pings: pings,
        probe_lost: pings - rtts.len() as u64,
    })
}

/// Sent, received and lost messages from a `turnutils_uclient` summary.
pub fn uclient_totals(text: &str) -> Option<(u64, u64, u64)> {
    let after = |key: &str| -> Option<u64> {
        text.lines().rev().find_map(|l| {
            let at = l.find(key)? + key.len();
            l[at..].trim_start_matches([' ', '=']).split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
    };
    Some((after("tot_send_msgs")?, after("tot_recv_msgs")?, after("Total lost packets")?))
}

/// One TURN client on its own socket, enough for the probe: allocate, bind a channel, ChannelData.
struct ProbeClient {
    socket: UdpSocket,
    server: SocketAddr,
    username: String,
    key: auth::LongTermKey,
    realm: Vec<u8>,
    nonce: Vec<u8>,
    txid: u8,
}

impl ProbeClient {
    fn allocate(server: SocketAddr) -> anyhow::Result<(ProbeClient, SocketAddr)> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        let expiry = auth::unix_secs(SystemTime::now()) + 3600;
        let username = format!("{expiry}:probe");
        let mut c =
            ProbeClient { socket, server, username, key: [0; 16], realm: Vec::new(), nonce: Vec::new(), txid: 0 };
        let transport = [(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])];
        let challenge = c.request(msg::ALLOCATE_REQUEST, &transport, false)?;
        let m = Message::parse(&challenge)?;
        c.realm = m.get(attr::REALM).context("REALM in the 401")?.to_vec();
        let realm = String::from_utf8_lossy(&c.realm).to_string();
        c.key = auth::long_term_key(&c.username, &realm, &auth::rest_password(SECRET, &c.username));
        let reply = c.request(msg::ALLOCATE_REQUEST, &transport, true)?;
        let relayed = Message::parse(&reply)?.xor_address(attr::XOR_RELAYED_ADDRESS).context("allocation refused")?;
        Ok((c, relayed))
    }

    fn request(&mut self, msg_type: u16, attrs: &[(u16, Vec<u8>)], signed: bool) -> anyhow::Result<Vec<u8>> {
        self.txid = self.txid.wrapping_add(1);
        let txid = [self.txid; 12];
        let mut buf = [0u8; 512];
        let mut w = Writer::new(&mut buf, msg_type, txid)?;
        for (t, v) in attrs {
            w.attr(*t, v)?;
        }
        if signed {
            w.attr(attr::USERNAME, self.username.as_bytes())?
                .attr(attr::REALM, &self.realm)?
                .attr(attr::NONCE, &self.nonce)?;
            w.integrity(&self.key)?;
        }
        let len = w.len();
        self.socket.send_to(&buf[..len], self.server)?;
        let mut reply = [0u8; 1500];
        loop {
            let (n, _) = self.socket.recv_from(&mut reply).context("no answer from the relay")?;
            let Ok(m) = Message::parse(&reply[..n]) else { continue };
            if m.transaction_id == txid {
                if let Some(nonce) = m.get(attr::NONCE) {
                    self.nonce = nonce.to_vec();
                }
                return Ok(reply[..n].to_vec());
            }
        }
    }

    fn bind(&mut self, peer: SocketAddr) -> anyhow::Result<()> {
        let mut value = [0u8; 64];
        let mut w = Writer::new(&mut value, 0, [self.txid.wrapping_add(1); 12])?;
        w.xor_address(attr::XOR_PEER_ADDRESS, peer)?;
        let len = w.len();
        let attrs = [(attr::CHANNEL_NUMBER, vec![0x40, 0x00, 0, 0]), (attr::XOR_PEER_ADDRESS, value[24..len].to_vec())];
        let reply = self.request(msg::CHANNEL_BIND_REQUEST, &attrs, true)?;
        if Message::parse(&reply)?.has(attr::ERROR_CODE) {
            bail!("ChannelBind refused");
        }
        Ok(())
    }
}

/// Pings between two allocations over channels until `stop`; returns the round trips (us) and pings sent.
fn rtt_probe(server: SocketAddr, stop: &AtomicBool) -> anyhow::Result<(Vec<u64>, u64)> {
    let (mut a, a_relayed) = ProbeClient::allocate(server)?;
    let (mut b, b_relayed) = ProbeClient::allocate(server)?;
    a.bind(b_relayed)?;
    b.bind(a_relayed)?;
    for c in [&a, &b] {
        c.socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    }
    let epoch = Instant::now();
    let mut rtts = Vec::with_capacity(20_000);
    let mut pings = 0u64;
    let mut buf = [0u8; 256];
    // Bounded: at most 20,000 pings, one every 2 ms.
    while !stop.load(Ordering::Relaxed) && pings < 20_000 {
        pings += 1;
        let mut frame = [0u8; 4 + 100];
        frame[..4].copy_from_slice(&[0x40, 0x00, 0x00, 100]);
        frame[4..12].copy_from_slice(&pings.to_be_bytes());
        frame[12..20].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
        a.socket.send_to(&frame, server)?;
        // B echoes what arrives on its channel.
        if let Ok((n, _)) = b.socket.recv_from(&mut buf)
            && let Ok(cd) = ChannelData::parse(&buf[..n])
        {
            let mut echo = [0u8; 4 + 100];
            echo[..4].copy_from_slice(&[0x40, 0x00, 0x00, 100]);
            echo[4..4 + cd.data.len().min(100)].copy_from_slice(&cd.data[..cd.data.len().min(100)]);
            b.socket.send_to(&echo, server)?;
        }
        while let Ok((n, _)) = a.socket.recv_from(&mut buf) {
            if let Ok(cd) = ChannelData::parse(&buf[..n])
                && cd.data.len() >= 16
            {
                let seq = u64::from_be_bytes(cd.data[..8].try_into().expect("8 bytes"));
                let sent = u64::from_be_bytes(cd.data[8..16].try_into().expect("8 bytes"));
                if seq == pings {
                    rtts.push((epoch.elapsed().as_nanos() as u64).saturating_sub(sent) / 1000);
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((rtts, pings))
}

pub const TABLE_HEADER: &str = "target            round  sent      received  lost  seconds  server CPU s  relayed pps  relayed/CPU-s  RTT p50 us  RTT p99 us";

pub fn row(r: &TargetReport) -> String {
    format!(
        "{:<17} {:>5}  {:>8}  {:>8}  {:>4}  {:>7.2}  {:>12.3}  {:>11.0}  {:>13.0}  {:>10}  {:>10}",
        r.target,
        r.round,
        r.messages_sent,
        r.messages_received,
        r.lost,
        r.seconds,
        r.server_cpu_seconds,
        r.relayed_packets_per_second,
        r.relayed_packets_per_cpu_second,
        r.rtt_us_p50,
        r.rtt_us_p99
    )
}

/// The middle value of sorted figures (the mean of the two middle ones for an even count).
fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The table, then Sluice's relayed packets per CPU-second over coturn's, round by round.
pub fn render(reports: &[TargetReport]) -> String {
    let mut out = String::new();
    out.push_str(TABLE_HEADER);
    out.push('\n');
    for r in reports {
        out.push_str(&row(r));
        out.push('\n');
    }
    // Rounds alternate, so each round's pair saw the same machine state: the ratio is taken per round.
    for target in ["sluice", "sluice-mmsg", "sluice-no-hairpin"] {
        let mut ratios: Vec<f64> = reports
            .iter()
            .filter(|r| r.target == target)
            .filter_map(|s| {
                let c = reports.iter().find(|c| c.target == "coturn" && c.round == s.round)?;
                (c.relayed_packets_per_cpu_second > 0.0)
                    .then(|| s.relayed_packets_per_cpu_second / c.relayed_packets_per_cpu_second)
            })
            .collect();
        if ratios.is_empty() {
            continue;
        }
        ratios.sort_by(f64::total_cmp);
        let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        out.push_str(&format!(
            "relayed packets per server CPU-second, {target}/coturn per round: {} (median {:.2})\n",
            shown.join(" "),
            median(&ratios)
        ));
    }
    out
}
