//! The runtime over real UDP on loopback, on both I/O paths: simulated browsers (the core's test peers, each with
//! its own socket) join workers, one meeting spans all workers, and failures (a full ring, a dead worker) end in
//! counted drops and clean errors. Every wait is bounded.

#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sluice_dataplane::core::{
    CoreConfig, DropReason, Event, IceCredentials, MediaKind, ParticipantId, SubscriptionSpec, TrackId, TrackSpec,
};
use sluice_dataplane::runtime::{Fault, IoMode, Runtime, RuntimeConfig, RuntimeError, RuntimeEvent};
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{Incoming, Keys, TestPeer};

const PROFILE: Profile = Profile::AeadAes128Gcm;
const SUB_SSRC: u32 = 0x5000;
/// The longest any test waits for packets.
const DEADLINE: Duration = Duration::from_secs(10);

fn runtime(io: IoMode, workers: usize, tweak: impl FnOnce(&mut RuntimeConfig)) -> Runtime {
    let mut config = RuntimeConfig {
        cores: vec![None; workers],
        bind: "127.0.0.1".parse().unwrap(),
        base_port: 0,
        io,
        core: CoreConfig { participants_max: 256, ..CoreConfig::default() },
        ..RuntimeConfig::default()
    };
    tweak(&mut config);
    let identity = sluice_dataplane::core::DtlsIdentity::generate().unwrap();
    Runtime::start(config, identity).expect("start the runtime")
}

/// A simulated browser with its own UDP socket.
struct Peer {
    peer: TestPeer,
    socket: UdpSocket,
    worker: usize,
    id: ParticipantId,
    server: SocketAddr,
}

impl Peer {
    /// Joins worker `worker` with keys set directly (the subject here is forwarding, not DTLS), and nominates.
    fn join(rt: &Runtime, worker: usize, n: u32) -> Peer {
        let (ufrag, pwd) = (format!("u{n}"), format!("password-password-{n}"));
        let id = rt.add_participant(worker, IceCredentials { ufrag: ufrag.clone(), pwd: pwd.clone() }).unwrap();
        let (up, down) = (Keys::from_seed(PROFILE, 2 * u64::from(n)), Keys::from_seed(PROFILE, 2 * u64::from(n) + 1));
        rt.set_srtp_keys(worker, id, PROFILE, (&down.key, &down.salt), (&up.key, &up.salt)).unwrap();
        let peer = TestPeer::new(n, &ufrag, &pwd, PROFILE, &up, &down);
        Peer::connect(rt, worker, id, peer)
    }

    fn connect(rt: &Runtime, worker: usize, id: ParticipantId, mut peer: TestPeer) -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let server = rt.local_addr(worker).unwrap();
        let deadline = Instant::now() + DEADLINE;
        let mut buf = [0u8; 2048];
        loop {
            assert!(Instant::now() < deadline, "no ICE answer from worker {worker}");
            socket.send_to(&peer.binding_request(true), server).unwrap();
            if let Ok(n) = socket.recv(&mut buf)
                && peer.receive(&buf[..n]) == Incoming::BindingSuccess
            {
                break;
            }
        }
        socket.set_nonblocking(true).unwrap();
        Peer { peer, socket, worker, id, server }
    }

    fn send_media(&mut self, n: u64) {
        let packet = self.peer.media(1000, n);
        self.socket.send_to(&packet, self.server).unwrap();
    }
}

/// Publishes a video track on `publisher`'s worker and subscribes every peer in `subscribers` to it, on its own
/// worker (through a mirror when that is another worker).
fn meeting(rt: &Runtime, publisher: &Peer, subscribers: &[Peer]) -> TrackId {
    let spec = TrackSpec::single(publisher.peer.ssrc, MediaKind::Video);
    let track = rt.add_track(publisher.worker, publisher.id, spec).unwrap();
    for s in subscribers {
        let local = rt.track_on(publisher.worker, track, spec, s.worker).unwrap();
        rt.subscribe(s.worker, s.id, local, SubscriptionSpec { ssrc: SUB_SSRC, payload_type: None, rtx: None })
            .unwrap();
    }
    track
}

/// Reads every subscriber's socket until each has `want` media packets or the deadline passes; returns the
/// publisher sequence numbers (tags) each got, in arrival order.
fn collect(subscribers: &mut [Peer], want: usize, within: Duration) -> Vec<Vec<u64>> {
    let mut got = vec![Vec::new(); subscribers.len()];
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline && got.iter().any(|g| g.len() < want) {
        let mut idle = true;
        for (i, s) in subscribers.iter_mut().enumerate() {
            while let Ok(n) = s.socket.recv(&mut buf) {
                idle = false;
                if let Incoming::Media(r) = s.peer.receive(&buf[..n]) {
                    assert_eq!(r.ssrc, SUB_SSRC);
                    got[i].push(r.tag.seq);
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

fn join_many(rt: &Runtime, count: u32, first: u32) -> Vec<Peer> {
    (0..count).map(|i| Peer::join(rt, i as usize % rt.workers(), first + i)).collect()
}

fn wait_for_failure(rt: &Runtime) -> Option<(usize, String)> {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        while let Some(event) = rt.poll_event() {
            if let RuntimeEvent::WorkerFailed { worker, reason } = event {
                return Some((worker, reason));
            }
        }
        rt.wait_events(Duration::from_millis(20));
    }
    None
}

fn meeting_spans_all_workers(io: IoMode) {
    let rt = runtime(io, 3, |_| {});
    let mut publisher = Peer::join(&rt, 0, 0);
    let mut subscribers = join_many(&rt, 6, 1);
    meeting(&rt, &publisher, &subscribers);
    for n in 0..50 {
        publisher.send_media(n);
        std::thread::sleep(Duration::from_millis(2));
    }
    let got = collect(&mut subscribers, 50, DEADLINE);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(*g, (0..50).collect::<Vec<u64>>(), "subscriber {i} on worker {}", subscribers[i].worker);
    }
    let counters: Vec<_> = (0..3).map(|w| rt.counters(w).unwrap()).collect();
    assert_eq!(counters[0].rtp_in, 50, "decrypted once, on the publisher's worker");
    assert_eq!((counters[1].rtp_in, counters[2].rtp_in), (0, 0));
    assert_eq!((counters[1].relays_in, counters[2].relays_in), (50, 50));
    // Snapshots are published every 50 ms.
    std::thread::sleep(Duration::from_millis(120));
    let s: Vec<_> = (0..3).map(|w| rt.snapshot(w).unwrap()).collect();
    assert_eq!(s[0].core.rtp_in, 50);
    for (w, s) in s.iter().enumerate().skip(1) {
        assert_eq!(s.core.rtp_in, 0);
        assert_eq!(s.io.relays_received, 50, "worker {w}");
    }
    assert_eq!(s[0].io.relays_sent, 100);
    assert!(s.iter().all(|s| s.io.send_failed == 0));
}

fn hundreds_of_subscribers_over_two_workers(io: IoMode) {
    const SUBSCRIBERS: u32 = 200;
    const PACKETS: u64 = 20;
    let rt = runtime(io, 2, |_| {});
    let mut publisher = Peer::join(&rt, 0, 0);
    let mut subscribers = join_many(&rt, SUBSCRIBERS, 1);
    meeting(&rt, &publisher, &subscribers);
    for n in 0..PACKETS {
        publisher.send_media(n);
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = collect(&mut subscribers, PACKETS as usize, DEADLINE);
    let complete = got.iter().filter(|g| **g == (0..PACKETS).collect::<Vec<_>>()).count();
    assert_eq!(complete, SUBSCRIBERS as usize, "every subscriber got every packet, in order");
    std::thread::sleep(Duration::from_millis(120));
    let forwarded: u64 = (0..2).map(|w| rt.snapshot(w).unwrap().core.rtp_out).sum();
    assert_eq!(forwarded, u64::from(SUBSCRIBERS) * PACKETS);
    let s = rt.snapshot(1).unwrap();
    assert!(s.time_in_sfu.count > 0, "time in SFU is sampled");
}

fn dtls_through_the_runtime(io: IoMode) {
    let rt = runtime(io, 2, |_| {});
    let mut peers = Vec::new();
    for (n, worker) in [(0u32, 0usize), (1, 1)] {
        let (ufrag, pwd) = (format!("d{n}"), format!("password-password-d{n}"));
        let id = rt.add_participant(worker, IceCredentials { ufrag: ufrag.clone(), pwd: pwd.clone() }).unwrap();
        let peer = TestPeer::with_dtls(n, &ufrag, &pwd, rt.fingerprint(), None);
        rt.expect_dtls(worker, id, peer.fingerprint().unwrap()).unwrap();
        peers.push(Peer::connect(&rt, worker, id, peer));
    }
    let deadline = Instant::now() + DEADLINE;
    let mut buf = [0u8; 4096];
    for p in &mut peers {
        for record in p.peer.start_dtls(Instant::now()) {
            p.socket.send_to(&record, p.server).unwrap();
        }
    }
    while !peers.iter().all(|p| p.peer.srtp_ready()) {
        assert!(Instant::now() < deadline, "DTLS did not finish");
        for p in &mut peers {
            while let Ok(n) = p.socket.recv(&mut buf) {
                if let Incoming::Dtls(records) = p.peer.receive(&buf[..n]) {
                    for record in records {
                        p.socket.send_to(&record, p.server).unwrap();
                    }
                }
            }
            if p.peer.dtls_timeout().is_some_and(|t| t <= Instant::now()) {
                for record in p.peer.handle_dtls_timeout(Instant::now()) {
                    p.socket.send_to(&record, p.server).unwrap();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut connected = HashMap::new();
    while connected.len() < 2 {
        assert!(Instant::now() < deadline, "no Connected events: {connected:?}");
        while let Some(event) = rt.poll_event() {
            if let RuntimeEvent::Core { worker, event: Event::Connected { participant } } = event {
                connected.insert(worker, participant);
            }
        }
        rt.wait_events(Duration::from_millis(20));
    }
    assert_eq!(connected, HashMap::from([(0, peers[0].id), (1, peers[1].id)]));
    let mut publisher = peers.remove(0);
    meeting(&rt, &publisher, &peers);
    for n in 0..10 {
        publisher.send_media(n);
    }
    assert_eq!(collect(&mut peers, 10, DEADLINE)[0], (0..10).collect::<Vec<_>>());
}

fn a_full_ring_drops_and_counts(io: IoMode) {
    let rt = runtime(io, 2, |c| c.relay_ring_capacity = 4);
    let mut publisher = Peer::join(&rt, 0, 0);
    let mut subscribers = vec![Peer::join(&rt, 1, 1), Peer::join(&rt, 0, 2)];
    meeting(&rt, &publisher, &subscribers);
    rt.inject_fault(1, Fault::Stall(Duration::from_millis(400))).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    for n in 0..40 {
        publisher.send_media(n);
        std::thread::sleep(Duration::from_millis(1));
    }
    let got = collect(&mut subscribers, 40, Duration::from_secs(2));
    assert_eq!(got[1].len(), 40, "the publisher's own worker is not held up");
    assert!(got[0].len() >= 4 && got[0].len() < 40, "the stalled worker got what its ring held: {}", got[0].len());
    std::thread::sleep(Duration::from_millis(120));
    let dropped = rt.snapshot(0).unwrap().dropped(DropReason::QueueFull);
    assert_eq!(dropped as usize, 40 - got[0].len(), "every packet that did not fit is counted");
    for n in 40..50 {
        publisher.send_media(n);
        std::thread::sleep(Duration::from_millis(2));
    }
    let after = collect(&mut subscribers[..1], 10, DEADLINE);
    assert_eq!(after[0], (40..50).collect::<Vec<_>>(), "relaying resumes");
}

fn a_dead_worker_is_reported_and_the_rest_serve_on(io: IoMode) {
    let rt = runtime(io, 2, |c| c.relay_ring_capacity = 4);
    let mut publisher = Peer::join(&rt, 0, 0);
    let mut subscribers = vec![Peer::join(&rt, 0, 1), Peer::join(&rt, 1, 2)];
    meeting(&rt, &publisher, &subscribers);
    rt.inject_fault(1, Fault::Panic).unwrap();
    let (worker, reason) = wait_for_failure(&rt).expect("the failure is reported");
    assert_eq!(worker, 1);
    assert!(reason.contains("fault injected"), "{reason}");
    let started = Instant::now();
    let refused = rt.add_participant(1, IceCredentials { ufrag: "late".into(), pwd: "password-password-late".into() });
    assert!(matches!(refused, Err(RuntimeError::WorkerDead(1))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "a dead worker's calls fail at once");
    assert_eq!(rt.least_loaded_worker(), Some(0), "new participants go to live workers");
    assert!(!rt.snapshot(1).unwrap().alive);
    for n in 0..20 {
        publisher.send_media(n);
        std::thread::sleep(Duration::from_millis(2));
    }
    let got = collect(&mut subscribers[..1], 20, DEADLINE);
    assert_eq!(got[0], (0..20).collect::<Vec<_>>(), "the live worker's subscriber still gets everything");
    let deadline = Instant::now() + DEADLINE;
    while rt.snapshot(0).unwrap().dropped(DropReason::QueueFull) < 16 {
        assert!(Instant::now() < deadline, "relays to the dead worker are dropped and counted");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(rt.stop(Duration::from_secs(2)).is_empty(), "the live worker stops in time");
    assert!(!rt.snapshot(0).unwrap().alive);
}

fn metrics_name_every_worker(io: IoMode) {
    let rt = runtime(io, 2, |_| {});
    let mut publisher = Peer::join(&rt, 0, 0);
    let mut subscribers = vec![Peer::join(&rt, 1, 1)];
    meeting(&rt, &publisher, &subscribers);
    publisher.send_media(0);
    assert_eq!(collect(&mut subscribers, 1, DEADLINE)[0], vec![0]);
    std::thread::sleep(Duration::from_millis(120));
    let mut text = String::new();
    rt.render_metrics(&mut text);
    assert!(text.contains("sluice_dataplane_rtp_forwarded_total{worker=\"1\"} 1"), "{text}");
    assert!(text.contains("sluice_dataplane_relays_sent_total{worker=\"0\"} 1"), "{text}");
    assert!(text.contains("sluice_dataplane_time_in_sfu_seconds_count{worker=\"1\"}"), "{text}");
    assert!(text.contains("sluice_dataplane_worker_up{worker=\"0\"} 1"), "{text}");
}

fn bursts_go_out_as_gso_runs(io: IoMode) {
    for gso in [true, false] {
        let rt = runtime(io, 1, |c| c.gso = gso);
        let mut publisher = Peer::join(&rt, 0, 0);
        let mut subscribers = join_many(&rt, 3, 1);
        meeting(&rt, &publisher, &subscribers);
        // Stall the worker so that the burst waits in its socket and is received as one batch.
        rt.inject_fault(0, Fault::Stall(Duration::from_millis(100))).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        for n in 0..64 {
            publisher.send_media(n);
        }
        let got = collect(&mut subscribers, 64, DEADLINE);
        for g in &got {
            assert_eq!(*g, (0..64).collect::<Vec<_>>(), "gso {gso}: in order, none lost");
        }
        std::thread::sleep(Duration::from_millis(120));
        let s = rt.snapshot(0).unwrap();
        assert_eq!(s.core.rtp_out, 3 * 64, "gso {gso}");
        assert!(s.io.datagrams_sent >= 3 * 64 && s.io.send_failed == 0, "gso {gso}: {:?}", s.io);
        if gso {
            assert!(s.io.gso_sends > 0 && s.io.gso_datagrams > 64, "runs per subscriber: {:?}", s.io);
        } else {
            assert_eq!(s.io.gso_sends, 0);
        }
    }
}

/// Single-port mode: every worker on one UDP port. The kernel spreads flows over the workers' sockets by hash;
/// each flow's first ICE check reaches the worker owning its ufrag, which takes the flow over, and the meeting
/// works as with one port per worker. A participant who leaves takes its flow socket along.
fn one_port_for_all_workers(io: IoMode) {
    let rt = runtime(io, 3, |c| c.single_port = true);
    assert!(rt.single_port());
    let port = rt.local_addr(0).unwrap().port();
    assert!((0..3).all(|w| rt.local_addr(w).unwrap().port() == port), "one port");
    let mut publisher = Peer::join(&rt, 0, 0);
    let mut subscribers = join_many(&rt, 11, 1);
    meeting(&rt, &publisher, &subscribers);
    for n in 0..40 {
        publisher.send_media(n);
        std::thread::sleep(Duration::from_millis(2));
    }
    let got = collect(&mut subscribers, 40, DEADLINE);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(*g, (0..40).collect::<Vec<u64>>(), "subscriber {i} on worker {}", subscribers[i].worker);
    }
    let counters: Vec<_> = (0..3).map(|w| rt.counters(w).unwrap()).collect();
    assert_eq!(counters[0].rtp_in, 40, "the publisher's packets reach its own worker only");
    std::thread::sleep(Duration::from_millis(120));
    let s: Vec<_> = (0..3).map(|w| rt.snapshot(w).unwrap()).collect();
    let routed: u64 = s.iter().map(|s| s.io.flows_routed).sum();
    let adopted: u64 = s.iter().map(|s| s.io.flows_adopted).sum();
    // 12 flows over 3 sockets: the chance that the kernel's hash put every one on its owner is 3^-12.
    assert!(routed > 0, "some flows landed on another worker and were routed");
    // A browser repeating its check before the takeover is routed twice; the flow is still taken over once.
    assert!(adopted >= 1 && adopted <= routed && adopted <= 12, "routed {routed}, adopted {adopted}");
    let rtp_in: u64 = counters.iter().map(|c| c.rtp_in).sum();
    assert_eq!(rtp_in, 40, "no media was decrypted on a worker that does not own it");
    for (w, s) in s.iter().enumerate() {
        assert_eq!(s.core.dropped(DropReason::StunUnknownUser), 0, "worker {w} answered only its own checks");
    }
    // Leaving closes the participant's flow socket: the port stays usable and the others keep receiving.
    let leaving = subscribers.pop().unwrap();
    rt.remove_participant(leaving.worker, leaving.id).unwrap();
    for n in 40..50 {
        publisher.send_media(n);
        std::thread::sleep(Duration::from_millis(2));
    }
    let got = collect(&mut subscribers, 10, DEADLINE);
    assert!(got.iter().all(|g| *g == (40..50).collect::<Vec<u64>>()), "{got:?}");
}

macro_rules! on_both_paths {
    ($($name:ident),*) => {
        mod mmsg {
            $(#[test] fn $name() { super::$name(sluice_dataplane::runtime::IoMode::Mmsg) })*
        }
        mod uring {
            $(#[test] fn $name() { super::$name(sluice_dataplane::runtime::IoMode::Uring) })*
        }
    };
}

on_both_paths!(
    meeting_spans_all_workers,
    hundreds_of_subscribers_over_two_workers,
    dtls_through_the_runtime,
    a_full_ring_drops_and_counts,
    a_dead_worker_is_reported_and_the_rest_serve_on,
    metrics_name_every_worker,
    bursts_go_out_as_gso_runs,
    one_port_for_all_workers
);

#[test]
fn auto_picks_io_uring_here_and_mmsg_is_forced() {
    // This machine kind's kernel allows io_uring (checked: /proc/sys/kernel/io_uring_disabled is 0).
    let auto = runtime(IoMode::Auto, 1, |_| {});
    let forced = runtime(IoMode::Mmsg, 1, |_| {});
    assert_eq!(forced.io(), sluice_dataplane::runtime::IoKind::Mmsg);
    let uring_allowed = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").map_or(true, |s| s.trim() == "0");
    if uring_allowed {
        assert_eq!(auto.io(), sluice_dataplane::runtime::IoKind::Uring);
    }
}
