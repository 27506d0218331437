//! Loopback fan-out: one publisher to N subscribers through one Sluice worker, and through a bare UDP forwarder
//! on the same I/O path (no crypto, no logic) in the same run. For each it measures the forwarding thread's CPU
//! time per sent packet (from that thread's own rusage, so the load generator's share does not count) at
//! saturation, and time-in-SFU p50/p99 at half the rate it reached.
//!
//! The load generator runs on the calling thread (pin it with `generator_cpu`); the forwarder is pinned to
//! `worker_cpu`. Subscriber sockets are not drained while measuring: the kernel's loopback delivery to them is
//! charged to the sending thread either way, and it stops at a full receive queue for both systems alike.

use std::fmt::Write;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sluice_dataplane::core::{CoreConfig, DtlsIdentity, IceCredentials, MediaKind, SubscriptionSpec, TrackSpec};
use sluice_dataplane::runtime::{BareForwarder, IoMode, LatencyHistogram, Runtime, RuntimeConfig, WorkerSnapshot};
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{Incoming, Keys, TestPeer};

const PROFILE: Profile = Profile::AeadAes128Gcm;
/// RTP payload bytes per packet (a full video packet).
const PAYLOAD: usize = 1200;
/// The publisher sends in bursts this often (short, so that half load means small batches, not 1 ms bursts).
const TICK: Duration = Duration::from_micros(100);
/// Snapshots are published every 50 ms; waiting this long reads a fresh one.
const SETTLE: Duration = Duration::from_millis(120);

#[derive(Debug, Clone)]
pub struct Scenario {
    pub subscribers: usize,
    pub io: IoMode,
    pub gso: bool,
    /// Length of each measured phase.
    pub phase: Duration,
    /// Sent packets per second offered at saturation (input rate times fan-out).
    pub offered_pps: u64,
    pub worker_cpu: Option<usize>,
}

/// One system's figures in one scenario.
#[derive(Debug, Clone)]
pub struct Measured {
    pub system: &'static str,
    pub io: &'static str,
    pub sent: u64,
    pub cpu: Duration,
    /// Busy time of the forwarder's CPU over the same interval (thread plus the kernel's softirq work there).
    pub core_busy: Option<Duration>,
    /// Sent packets per second reached at saturation.
    pub pps: f64,
    /// Time-in-SFU at half that rate, upper bucket bounds, microseconds.
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

impl Measured {
    pub fn cpu_ns_per_packet(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.sent.max(1) as f64
    }

    /// Sent packets per second one fully busy core would reach at this cost.
    pub fn pps_per_core(&self) -> f64 {
        1e9 / self.cpu_ns_per_packet()
    }

    /// Like `cpu_ns_per_packet`, counting the whole core's busy time.
    pub fn core_ns_per_packet(&self) -> Option<f64> {
        self.core_busy.map(|b| b.as_nanos() as f64 / self.sent.max(1) as f64)
    }
}

/// The forwarding thread under test: a Sluice worker or the bare forwarder.
enum Subject {
    Sluice(Runtime),
    Bare(BareForwarder),
}

impl Subject {
    fn snapshot(&self) -> WorkerSnapshot {
        match self {
            Subject::Sluice(rt) => rt.snapshot(0).expect("worker 0"),
            Subject::Bare(b) => b.snapshot(),
        }
    }

    fn io(&self) -> &'static str {
        match self {
            Subject::Sluice(rt) => rt.io().label(),
            Subject::Bare(b) => b.io().label(),
        }
    }
}

/// The load generator's side: the publisher (its socket and SRTP state) and the subscribers' sockets.
struct Load {
    publisher: TestPeer,
    socket: UdpSocket,
    target: SocketAddr,
    subscribers: Vec<UdpSocket>,
    seq: u64,
}

impl Load {
    /// Sends at `pps_in` packets per second for `duration`, in bursts each tick.
    fn run(&mut self, pps_in: f64, duration: Duration) {
        let start = Instant::now();
        let mut due = 0.0f64;
        let mut tick = start;
        while tick.duration_since(start) < duration {
            due += pps_in * TICK.as_secs_f64();
            while due >= 1.0 {
                let packet = self.publisher.media(PAYLOAD, self.seq);
                self.seq += 1;
                // A full socket buffer drops here as it would on a wire; the forwarder's counters tell.
                let _ = self.socket.send_to(&packet, self.target);
                due -= 1.0;
            }
            tick += TICK;
            // Sleeping is too coarse for 100 us ticks; the generator has its own core(s) to spin on.
            while Instant::now() < tick {
                std::hint::spin_loop();
            }
        }
    }
}

fn bind_subscribers(n: usize) -> anyhow::Result<Vec<UdpSocket>> {
    (0..n)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").context("bind a subscriber socket")?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect()
}

fn publisher_peer(ufrag: &str, pwd: &str) -> TestPeer {
    let (up, down) = (Keys::from_seed(PROFILE, 0), Keys::from_seed(PROFILE, 1));
    TestPeer::new(0, ufrag, pwd, PROFILE, &up, &down)
}

/// Starts one Sluice worker with a publisher and `n` subscribers, all connected.
fn sluice(scenario: &Scenario) -> anyhow::Result<(Subject, Load)> {
    let config = RuntimeConfig {
        cores: vec![scenario.worker_cpu],
        bind: "127.0.0.1".parse()?,
        base_port: 0,
        io: scenario.io,
        gso: scenario.gso,
        core: CoreConfig {
            participants_max: scenario.subscribers + 8,
            subscribers_per_track_max: scenario.subscribers.max(16),
            ..CoreConfig::default()
        },
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(config, DtlsIdentity::generate()?)?;
    let server = rt.local_addr(0)?;
    let mut sockets = Vec::new();
    let mut ids = Vec::new();
    let mut peers = Vec::new();
    for i in 0..=scenario.subscribers {
        let (ufrag, pwd) = (format!("b{i}"), format!("password-password-{i}"));
        let id = rt.add_participant(0, IceCredentials { ufrag: ufrag.clone(), pwd: pwd.clone() })?;
        let (up, down) = (Keys::from_seed(PROFILE, 2 * i as u64), Keys::from_seed(PROFILE, 2 * i as u64 + 1));
        rt.set_srtp_keys(0, id, PROFILE, (&down.key, &down.salt), (&up.key, &up.salt))?;
        let peer = TestPeer::new(i as u32, &ufrag, &pwd, PROFILE, &up, &down);
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_nonblocking(true)?;
        ids.push(id);
        peers.push(peer);
        sockets.push(socket);
    }
    connect_all(&mut peers, &sockets, server)?;
    let publisher = peers.remove(0);
    let spec = TrackSpec::single(publisher.ssrc, MediaKind::Video);
    let track = rt.add_track(0, ids[0], spec)?;
    for id in &ids[1..] {
        rt.subscribe(0, *id, track, SubscriptionSpec { ssrc: 0x5000, payload_type: None, rtx: None })?;
    }
    let socket = sockets.remove(0);
    let load = Load { publisher, socket, target: server, subscribers: sockets, seq: 0 };
    Ok((Subject::Sluice(rt), load))
}

/// ICE for every peer: a nominating check each, until each has its answer.
fn connect_all(peers: &mut [TestPeer], sockets: &[UdpSocket], server: SocketAddr) -> anyhow::Result<()> {
    let mut done = vec![false; peers.len()];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 2048];
    while done.iter().any(|d| !d) {
        if Instant::now() > deadline {
            bail!("{} of {} peers got no ICE answer", done.iter().filter(|d| !**d).count(), peers.len());
        }
        for (i, peer) in peers.iter_mut().enumerate().filter(|(i, _)| !done[*i]) {
            sockets[i].send_to(&peer.binding_request(true), server)?;
        }
        std::thread::sleep(Duration::from_millis(20));
        for (i, peer) in peers.iter_mut().enumerate() {
            while let Ok(n) = sockets[i].recv(&mut buf) {
                if peer.receive(&buf[..n]) == Incoming::BindingSuccess {
                    done[i] = true;
                }
            }
        }
    }
    Ok(())
}

/// Starts the bare forwarder towards `n` subscriber sockets.
fn bare(scenario: &Scenario) -> anyhow::Result<(Subject, Load)> {
    let subscribers = bind_subscribers(scenario.subscribers)?;
    let destinations = subscribers.iter().map(UdpSocket::local_addr).collect::<Result<Vec<_>, _>>()?;
    let forwarder =
        BareForwarder::start(scenario.io, scenario.gso, "127.0.0.1:0".parse()?, scenario.worker_cpu, destinations)?;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let publisher = publisher_peer("bare", "password-password-bare");
    let load = Load { publisher, socket, target: forwarder.local_addr(), subscribers, seq: 0 };
    Ok((Subject::Bare(forwarder), load))
}

/// Waits (up to 20 s) until the backlog saturation left in the forwarder's socket is sent.
fn drain(subject: &Subject) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = subject.snapshot().io.datagrams_sent;
    while Instant::now() < deadline {
        std::thread::sleep(SETTLE);
        let now = subject.snapshot().io.datagrams_sent;
        if now == last {
            return;
        }
        last = now;
    }
}

/// Busy time of one CPU (everything but idle and iowait) from `/proc/stat`: the forwarder's thread and the
/// kernel's work on its behalf there (softirq network processing that does not run in the thread's context).
fn cpu_busy(cpu: Option<usize>) -> Option<Duration> {
    let cpu = cpu?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.split_whitespace().next() == Some(&format!("cpu{cpu}")))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = ticks.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).take(7).map(|(_, v)| v).sum();
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(busy * 10))
}

/// A short run at the offered rate to find what the forwarder reaches, then saturation just above that rate
/// (so its socket does not gather a backlog of seconds), then half that rate for latency.
fn measure(system: &'static str, subject: Subject, mut load: Load, scenario: &Scenario) -> anyhow::Result<Measured> {
    let fanout = scenario.subscribers as f64;
    let probe_start = subject.snapshot();
    let started = Instant::now();
    load.run(scenario.offered_pps as f64 / fanout, scenario.phase / 4);
    std::thread::sleep(SETTLE);
    let probe = subject.snapshot();
    let probed = (probe.io.datagrams_sent - probe_start.io.datagrams_sent) as f64 / started.elapsed().as_secs_f64();
    drain(&subject);
    let pps_in = (probed * 1.25 / fanout).max(1.0);
    let before = subject.snapshot();
    let busy_before = cpu_busy(scenario.worker_cpu);
    let started = Instant::now();
    load.run(pps_in, scenario.phase);
    std::thread::sleep(SETTLE);
    let after = subject.snapshot();
    let busy = cpu_busy(scenario.worker_cpu).zip(busy_before).map(|(a, b)| a.saturating_sub(b));
    let elapsed = started.elapsed().as_secs_f64();
    let sent = after.io.datagrams_sent - before.io.datagrams_sent;
    let cpu = after.cpu_time.saturating_sub(before.cpu_time);
    if sent == 0 {
        bail!("{system} sent nothing");
    }
    let reached = sent as f64 / elapsed;
    drain(&subject);
    // Half load: the rate it reached, halved, for latency.
    let before = subject.snapshot();
    load.run(reached / 2.0 / fanout, scenario.phase);
    std::thread::sleep(SETTLE);
    let after = subject.snapshot();
    let half: LatencyHistogram = after.time_in_sfu.since(&before.time_in_sfu);
    let delivered = load.subscribers.iter().filter(|s| s.recv(&mut [0u8; 2048]).is_ok()).count();
    if delivered < load.subscribers.len() {
        bail!("{system}: only {delivered} of {} subscribers received packets", load.subscribers.len());
    }
    Ok(Measured {
        system,
        io: subject.io(),
        sent,
        cpu,
        core_busy: busy,
        pps: reached,
        p50_us: half.quantile_us(0.5),
        p99_us: half.quantile_us(0.99),
    })
}

/// Pins the calling thread (the load generator) to every CPU but the forwarder's.
pub fn pin_generator(worker_cpu: Option<usize>) {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if let Some(other) = cores.iter().find(|c| Some(c.id) != worker_cpu) {
        core_affinity::set_for_current(*other);
    }
}

/// Runs Sluice and the bare forwarder in one scenario, Sluice first.
pub fn run(scenario: &Scenario) -> anyhow::Result<(Measured, Measured)> {
    let (subject, load) = sluice(scenario)?;
    let sluice = measure("sluice", subject, load, scenario)?;
    let (subject, load) = bare(scenario)?;
    let bare = measure("bare", subject, load, scenario)?;
    Ok((sluice, bare))
}

/// The Markdown table row header of [`row`].
pub const TABLE_HEADER: &str = "| N | io | GSO | Sluice ns/pkt | bare ns/pkt | ratio | core ns/pkt Sluice/bare (ratio) | \
Sluice pps/core | Sluice reached pps | bare reached pps | Sluice p50/p99 us | bare p50/p99 us |\n\
|---|---|---|---|---|---|---|---|---|---|---|---|";

pub fn row(scenario: &Scenario, s: &Measured, b: &Measured) -> String {
    let us = |v: Option<u64>| match v {
        None => "-".to_string(),
        Some(u64::MAX) => ">100000".to_string(),
        Some(v) => v.to_string(),
    };
    let q = |m: &Measured| format!("{}/{}", us(m.p50_us), us(m.p99_us));
    let core = match (s.core_ns_per_packet(), b.core_ns_per_packet()) {
        (Some(s), Some(b)) => format!("{s:.0}/{b:.0} ({:.2})", s / b),
        _ => "-".to_string(),
    };
    let mut line = String::new();
    let _ = write!(
        line,
        "| {} | {} | {} | {:.0} | {:.0} | {:.2} | {} | {:.0}k | {:.0}k | {:.0}k | {} | {} |",
        scenario.subscribers,
        s.io,
        if scenario.gso { "on" } else { "off" },
        s.cpu_ns_per_packet(),
        b.cpu_ns_per_packet(),
        s.cpu_ns_per_packet() / b.cpu_ns_per_packet(),
        core,
        s.pps_per_core() / 1e3,
        s.pps / 1e3,
        b.pps / 1e3,
        q(s),
        q(b),
    );
    line
}
