//! Deterministic simulation: simulated browsers ([`TestPeer`]) and the [`Core`] exchange datagrams through a
//! seeded in-memory network with loss, delay, jitter (so reordering) and duplication, under a fake clock.
//!
//! Expectations are exact: the network records every datagram it drops, so each subscriber must receive every
//! packet of every publisher except those dropped on the uplink or on its own downlink; nothing else may be
//! missing, duplicated, corrupted or out of place. A failing run prints its seed; `SLUICE_SIM_SEED=<n>` reruns it
//! (DTLS randomness is seeded too, so a rerun is exact). `SIM_TRACE=1` prints every DTLS datagram and its fate.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_dataplane::core::{
    Core, CoreConfig, DropReason, DtlsFailure, DtlsIdentity, Event, IceCredentials, MediaKind, ParticipantId, RtxSpec,
    SubscriptionSpec, TrackId, TrackSpec, Transmits,
};
use sluice_dataplane::packet::demux::{self, Kind};
use sluice_dataplane::packet::rtp::RtpHeader;
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{Incoming, Keys, Received, TestPeer};

/// SplitMix64: small, seedable, good enough for network impairment.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

#[derive(Debug, Clone, Copy)]
struct Impairment {
    loss: f64,
    duplicate: f64,
    delay_us: u64,
    jitter_us: u64,
}

struct Datagram {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

struct Net {
    rng: Rng,
    impairment: Impairment,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    in_flight: HashMap<usize, Datagram>,
    next_id: usize,
    /// (destination, SSRC, RTP sequence number) of every RTP datagram the network dropped.
    lost_rtp: BTreeSet<(SocketAddr, u32, u16)>,
    /// RTP datagrams to drop the first time they are sent: (destination, SSRC, sequence number).
    drop_once: Vec<(SocketAddr, u32, u16)>,
    /// Last time something was delivered to each address.
    last_delivery: HashMap<SocketAddr, u64>,
}

impl Net {
    fn send(&mut self, now_us: u64, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        let trace = std::env::var("SIM_TRACE").is_ok() && demux::classify(&bytes) == Kind::Dtls;
        if demux::classify(&bytes) == Kind::Rtp
            && let Ok(h) = RtpHeader::parse(&bytes)
            && let Some(at) = self.drop_once.iter().position(|rule| *rule == (to, h.ssrc, h.seq))
        {
            self.drop_once.swap_remove(at);
            self.lost_rtp.insert((to, h.ssrc, h.seq));
            return;
        }
        if self.rng.chance(self.impairment.loss) {
            if trace {
                eprintln!("{now_us:>9} DTLS {from} -> {to} {} bytes LOST", bytes.len());
            }
            if demux::classify(&bytes) == Kind::Rtp
                && let Ok(h) = RtpHeader::parse(&bytes)
            {
                self.lost_rtp.insert((to, h.ssrc, h.seq));
            }
            return;
        }
        let copies = if self.rng.chance(self.impairment.duplicate) { 2 } else { 1 };
        if trace {
            eprintln!("{now_us:>9} DTLS {from} -> {to} {} bytes x{copies}", bytes.len());
        }
        for _ in 0..copies {
            let at = now_us + self.impairment.delay_us + self.rng.below(self.impairment.jitter_us);
            let id = self.next_id;
            self.next_id += 1;
            self.in_flight.insert(id, Datagram { from, to, bytes: bytes.clone() });
            self.queue.push(Reverse((at, id as u64, id)));
        }
    }

    fn due(&mut self, now_us: u64) -> Option<Datagram> {
        let Reverse((at, _, id)) = *self.queue.peek()?;
        if at > now_us {
            return None;
        }
        self.queue.pop();
        let d = self.in_flight.remove(&id).expect("queued datagrams are in flight");
        self.last_delivery.insert(d.to, now_us);
        Some(d)
    }
}

struct Peer {
    peer: TestPeer,
    addr: SocketAddr,
    /// Where this peer was before it moved; it still accepts what was in flight there.
    old_addr: Option<SocketAddr>,
    id: ParticipantId,
    connected: bool,
    /// Stops sending and ignores everything (a closed laptop).
    vanished: bool,
    /// Waiting for a binding success from a new address before sending media from it.
    moving: bool,
    received: Vec<Received>,
    bad: Vec<&'static str>,
    keyframe_requests: Vec<u32>,
    /// When this peer sent its first media packet (its RTP clock's zero).
    first_media_us: Option<u64>,
    sender_reports: Vec<(u64, sluice_dataplane::packet::rtcp::SenderInfo)>,
    report_blocks: Vec<(u64, sluice_dataplane::packet::rtcp::ReportBlock)>,
    /// NTP times of the Sender Reports this peer sent.
    sent_sr_ntps: Vec<u64>,
}

/// The simulation's wallclock: the core is told that `base` is this many seconds after the Unix epoch.
const WALLCLOCK_UNIX_SECS: u64 = 1_800_000_000;
const SR_INTERVAL_US: u64 = 1_000_000;

fn ntp_at(us: u64) -> u64 {
    let d = Duration::from_secs(WALLCLOCK_UNIX_SECS + 2_208_988_800) + Duration::from_micros(us);
    (d.as_secs() << 32) | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

struct World {
    seed: u64,
    core: Core,
    sfu: SocketAddr,
    peers: Vec<Peer>,
    tracks: Vec<TrackId>,
    net: Net,
    now_us: u64,
    base: Instant,
    out: Transmits,
    events: Vec<(u64, Event)>,
    /// Keys come from DTLS handshakes over the simulated network, not from the test.
    dtls: bool,
    /// Video tracks with NACK in both directions: subscribers NACK gaps, publishers answer from history.
    nack: bool,
    /// Per subscriber and SSRC, the highest sequence number received (for NACKing gaps).
    highest_seen: HashMap<(usize, u32), u16>,
}

const MEDIA_INTERVAL_US: u64 = 20_000;
const MEDIA_START_US: u64 = 500_000;
const KEEPALIVE_US: u64 = 500_000;
const CONNECT_RETRY_US: u64 = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repair {
    None,
    Nack,
    NackRtx,
}

/// Subscriber-side RTX SSRC for publisher `i`'s track.
fn rtx_ssrc(publisher: usize) -> u32 {
    0x3000_0000 + publisher as u32
}

/// Subscriber-side SSRC of publisher `i`'s track.
fn out_ssrc(publisher: usize) -> u32 {
    0x2000_0000 + publisher as u32
}

impl World {
    /// `peers` participants, each publishing one track that every other participant subscribes to; SRTP keys
    /// are given to both sides directly.
    fn new(seed: u64, peers: usize, impairment: Impairment) -> World {
        World::build(seed, peers, impairment, false, Repair::None)
    }

    /// The same, with SRTP keys from real DTLS-SRTP handshakes carried by the simulated network.
    fn with_dtls(seed: u64, peers: usize, impairment: Impairment) -> World {
        World::build(seed, peers, impairment, true, Repair::None)
    }

    /// Video tracks, with NACKs answered in both directions; `rtx`: subscribers negotiated RTX.
    fn with_nack(seed: u64, peers: usize, impairment: Impairment, rtx: bool) -> World {
        World::build(seed, peers, impairment, false, if rtx { Repair::NackRtx } else { Repair::Nack })
    }

    fn build(seed: u64, peers: usize, impairment: Impairment, dtls: bool, repair: Repair) -> World {
        let nack = repair != Repair::None;
        let profile = Profile::ALL[(seed % 3) as usize];
        let base = Instant::now();
        let identity = DtlsIdentity::generate_for_simulation(seed).unwrap();
        let mut core = Core::with_identity(CoreConfig { participants_max: 64, ..CoreConfig::default() }, identity);
        core.set_wallclock(base, Duration::from_secs(WALLCLOCK_UNIX_SECS));
        let sfu: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let mut list = Vec::new();
        let mut tracks = Vec::new();
        for i in 0..peers {
            let (ufrag, pwd) = (format!("srv{i}"), format!("server-password-{i}-{seed}"));
            let id = core.add_participant(IceCredentials { ufrag: ufrag.clone(), pwd: pwd.clone() }).unwrap();
            let peer = if dtls {
                let peer =
                    TestPeer::with_dtls(i as u32, &ufrag, &pwd, core.fingerprint(), Some(seed * 1000 + i as u64));
                core.expect_dtls(id, peer.fingerprint().unwrap(), base).unwrap();
                peer
            } else {
                let to_sfu = Keys::from_seed(profile, seed * 1000 + 2 * i as u64);
                let from_sfu = Keys::from_seed(profile, seed * 1000 + 2 * i as u64 + 1);
                core.set_srtp_keys(id, profile, (&from_sfu.key, &from_sfu.salt), (&to_sfu.key, &to_sfu.salt)).unwrap();
                TestPeer::new(i as u32, &ufrag, &pwd, profile, &to_sfu, &from_sfu)
            };
            let kind = if nack { MediaKind::Video } else { MediaKind::Audio };
            tracks.push(core.add_track(id, TrackSpec::single(peer.ssrc, kind)).unwrap());
            let mut peer = peer;
            if nack {
                peer.keep_history();
            }
            let addr: SocketAddr = format!("198.51.100.{}:5000", i + 10).parse().unwrap();
            list.push(Peer {
                peer,
                addr,
                old_addr: None,
                id,
                connected: false,
                vanished: false,
                moving: false,
                received: vec![],
                bad: vec![],
                keyframe_requests: vec![],
                first_media_us: None,
                sender_reports: vec![],
                report_blocks: vec![],
                sent_sr_ntps: vec![],
            });
        }
        if repair == Repair::NackRtx {
            for (s, subscriber) in list.iter_mut().enumerate() {
                for p in (0..peers).filter(|p| *p != s) {
                    subscriber.peer.expect_rtx(rtx_ssrc(p), out_ssrc(p));
                }
            }
        }
        for (s, subscriber) in list.iter().enumerate() {
            for (p, track) in tracks.iter().enumerate().filter(|(p, _)| *p != s) {
                let rtx = (repair == Repair::NackRtx).then_some(RtxSpec { ssrc: rtx_ssrc(p), payload_type: 97 });
                let spec = SubscriptionSpec { ssrc: out_ssrc(p), payload_type: None, rtx };
                core.subscribe(subscriber.id, *track, spec).unwrap();
            }
        }
        World {
            seed,
            core,
            sfu,
            peers: list,
            tracks,
            net: Net {
                rng: Rng(seed),
                impairment,
                queue: BinaryHeap::new(),
                in_flight: HashMap::new(),
                next_id: 0,
                lost_rtp: BTreeSet::new(),
                drop_once: vec![],
                last_delivery: HashMap::new(),
            },
            now_us: 0,
            base,
            out: Transmits::with_capacity(256),
            events: vec![],
            dtls,
            nack,
            highest_seen: HashMap::new(),
        }
    }

    fn connected_count(&self) -> usize {
        self.events.iter().filter(|(_, e)| matches!(e, Event::Connected { .. })).count()
    }

    /// Media starts when everyone can receive it: after a fixed delay with given keys, or once DTLS has finished
    /// on both sides for every participant (packets a browser gets before its keys are discarded, and the exact
    /// delivery check would count them missing).
    fn media_may_start(&self) -> bool {
        if self.dtls {
            self.connected_count() == self.peers.len() && self.peers.iter().all(|p| p.peer.srtp_ready())
        } else {
            self.now_us >= MEDIA_START_US
        }
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_micros(self.now_us)
    }

    fn flush(&mut self) {
        let sent: Vec<(SocketAddr, Vec<u8>)> = self.out.iter().map(|(to, b)| (to, b.to_vec())).collect();
        self.out.clear();
        for (to, bytes) in sent {
            self.net.send(self.now_us, self.sfu, to, bytes);
        }
    }

    fn peers_act(&mut self, send_media_until_us: u64) {
        let t = self.now_us;
        let now = self.now();
        let media_may_start = self.media_may_start();
        for (i, p) in self.peers.iter_mut().enumerate() {
            if p.vanished {
                continue;
            }
            let stagger = 1_000 * i as u64;
            let interval = if p.connected && !p.moving { KEEPALIVE_US } else { CONNECT_RETRY_US };
            if t % interval == stagger % interval {
                // Aggressive nomination: every check carries USE-CANDIDATE.
                let request = p.peer.binding_request(true);
                self.net.send(t, p.addr, self.sfu, request);
            }
            if p.connected && p.peer.fingerprint().is_some() && !p.peer.srtp_ready() {
                let records = if !p.peer.dtls_started() {
                    p.peer.start_dtls(now)
                } else if p.peer.dtls_timeout().is_some_and(|at| at <= now) {
                    p.peer.handle_dtls_timeout(now)
                } else {
                    vec![]
                };
                for record in records {
                    self.net.send(t, p.addr, self.sfu, record);
                }
            }
            let media_due = media_may_start && t < send_media_until_us && t % MEDIA_INTERVAL_US == stagger;
            if p.connected && !p.moving && p.peer.srtp_ready() && media_due {
                let media = p.peer.media(160, t);
                p.first_media_us.get_or_insert(t);
                self.net.send(t, p.addr, self.sfu, media);
            }
            // As a publisher: a Sender Report each second, RTP clock at 48 kHz from the first packet.
            if let Some(first) = p.first_media_us
                && t > first
                && (t - first).is_multiple_of(SR_INTERVAL_US)
                && !p.moving
            {
                let rtp = ((t - first) * 48 / 1_000) as u32;
                p.sent_sr_ntps.push(ntp_at(t));
                let sr = p.peer.sender_report(ntp_at(t), rtp);
                self.net.send(t, p.addr, self.sfu, sr);
            }
        }
    }

    fn deliver(&mut self) {
        while let Some(d) = self.net.due(self.now_us) {
            if d.to == self.sfu {
                let mut bytes = d.bytes;
                let now = self.now();
                self.core.handle_receive(now, d.from, &mut bytes, &mut self.out);
                self.flush();
                continue;
            }
            let Some(p) = self.peers.iter_mut().find(|p| p.addr == d.to || p.old_addr == Some(d.to)) else { continue };
            if p.vanished {
                continue;
            }
            match p.peer.receive(&d.bytes) {
                Incoming::BindingSuccess if d.to == p.addr => {
                    p.connected = true;
                    p.moving = false;
                }
                Incoming::BindingSuccess
                | Incoming::Duplicate
                | Incoming::Padding { .. }
                | Incoming::BeforeKeys
                | Incoming::TransportFeedback(_) => {}
                Incoming::Dtls(records) => {
                    for record in records {
                        self.net.send(self.now_us, p.addr, self.sfu, record);
                    }
                }
                Incoming::Media(r) => {
                    p.received.push(r);
                    if self.nack {
                        let s = self.peers.iter().position(|q| q.addr == d.to || q.old_addr == Some(d.to)).unwrap();
                        let highest = self.highest_seen.entry((s, r.ssrc)).or_insert(r.seq.wrapping_sub(1));
                        let gap = r.seq.wrapping_sub(*highest);
                        if (2..100).contains(&gap) {
                            let lost: Vec<u16> = (1..gap).map(|k| highest.wrapping_add(k)).collect();
                            let nack = self.peers[s].peer.nack(r.ssrc, &lost);
                            let from = self.peers[s].addr;
                            self.net.send(self.now_us, from, self.sfu, nack);
                        }
                        if gap < 0x8000 {
                            *self.highest_seen.get_mut(&(s, r.ssrc)).unwrap() = r.seq;
                        }
                    }
                }
                Incoming::Nack { lost, .. } => {
                    for seq in lost {
                        if let Some(again) = p.peer.resend(seq) {
                            self.net.send(self.now_us, p.addr, self.sfu, again);
                        }
                    }
                }
                Incoming::KeyframeRequest { media_ssrc } => p.keyframe_requests.push(media_ssrc),
                Incoming::Reports { senders, blocks } => {
                    p.sender_reports.extend(senders.into_iter().map(|s| (self.now_us, s)));
                    p.report_blocks.extend(blocks.into_iter().map(|b| (self.now_us, b)));
                }
                Incoming::Bad(why) => p.bad.push(why),
                Incoming::Rtp(_) => p.bad.push("a raw packet from a peer that checks payloads"),
            }
        }
    }

    fn tick(&mut self, send_media_until_us: u64) {
        self.peers_act(send_media_until_us);
        self.deliver();
        let now = self.now();
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now, &mut self.out);
            self.flush();
        }
        while self.core.has_handshake_work() {
            self.core.handle_handshakes(now, 8, &mut self.out);
            self.flush();
        }
        while let Some(e) = self.core.poll_event() {
            self.events.push((self.now_us, e));
        }
        self.now_us += 1_000;
    }

    fn run_until(&mut self, end_us: u64, send_media_until_us: u64) {
        while self.now_us < end_us {
            self.tick(send_media_until_us);
        }
    }

    fn lost_to(&self, to: SocketAddr, ssrc: u32, seq: u64) -> bool {
        self.net.lost_rtp.contains(&(to, ssrc, seq as u16))
    }

    /// Every subscriber got exactly what it should from every publisher.
    fn check_delivery(&self, skip_subscribers: &[usize]) {
        let seed = self.seed;
        for (s, sub) in self.peers.iter().enumerate() {
            assert!(sub.bad.is_empty(), "seed {seed}: subscriber {s} received bad packets: {:?}", sub.bad);
            if skip_subscribers.contains(&s) {
                continue;
            }
            for (p, publisher) in self.peers.iter().enumerate().filter(|(p, _)| *p != s) {
                let got: Vec<&Received> = sub.received.iter().filter(|r| r.tag.publisher == p as u32).collect();
                for r in &got {
                    assert_eq!(r.ssrc, out_ssrc(p), "seed {seed}: subscriber-side SSRC");
                    assert_eq!(r.seq, r.tag.seq as u16, "seed {seed}: sequence number in step with the publisher's");
                    assert_eq!(r.timestamp, (r.tag.seq as u32).wrapping_mul(960), "seed {seed}: timestamp kept");
                }
                let got: BTreeSet<u64> = got.iter().map(|r| r.tag.seq).collect();
                let mut old_addrs = vec![sub.addr];
                old_addrs.extend(sub.old_addr);
                let expected: BTreeSet<u64> = (0..publisher.peer.sent())
                    .filter(|seq| !self.lost_to(self.sfu, publisher.peer.ssrc, *seq))
                    .filter(|seq| !old_addrs.iter().any(|a| self.lost_to(*a, out_ssrc(p), *seq)))
                    .collect();
                let missing: Vec<_> = expected.difference(&got).take(10).collect();
                let extra: Vec<_> = got.difference(&expected).take(10).collect();
                assert!(
                    missing.is_empty() && extra.is_empty(),
                    "seed {seed}: subscriber {s} from publisher {p}: missing {missing:?}, unexpected {extra:?} \
                     ({} sent, {} expected)",
                    publisher.peer.sent(),
                    expected.len()
                );
                assert!(
                    expected.len() as u64 * 10 > publisher.peer.sent() * 8,
                    "seed {seed}: the run carried media: subscriber {s} from publisher {p}: {} of {} sent expected",
                    expected.len(),
                    publisher.peer.sent()
                );
            }
        }
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("SLUICE_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SLUICE_SIM_SEED is a number")],
        Err(_) => (1..=6).collect(),
    }
}

fn lossy() -> Impairment {
    Impairment { loss: 0.03, duplicate: 0.02, delay_us: 5_000, jitter_us: 30_000 }
}

#[test]
fn every_subscriber_gets_every_packet_the_network_did_not_lose() {
    for seed in seeds() {
        let mut w = World::new(seed, 5, lossy());
        w.run_until(10_000_000, 9_000_000);
        w.check_delivery(&[]);
        let c = w.core.counters();
        assert!(c.dropped(DropReason::Replay) > 0, "seed {seed}: network duplicates were refused by the replay window");
        assert_eq!(c.dropped(DropReason::AuthFailed), 0, "seed {seed}");
        assert_eq!(c.dropped(DropReason::UnknownSource), 0, "seed {seed}: media only after nomination");
        let nominated = w.events.iter().filter(|(_, e)| matches!(e, Event::Nominated { .. })).count();
        assert_eq!(nominated, 5, "seed {seed}: one nomination per participant");
    }
}

#[test]
fn a_vanished_participant_is_reported_gone_within_the_consent_timeout() {
    for seed in seeds() {
        let mut w = World::new(seed, 4, lossy());
        w.run_until(3_000_000, u64::MAX);
        w.peers[0].vanished = true;
        let vanished_at = w.now_us;
        w.run_until(40_000_000, 38_000_000);

        let gone: Vec<_> = w.events.iter().filter(|(_, e)| matches!(e, Event::Gone { .. })).collect();
        assert_eq!(gone.len(), 1, "seed {seed}: exactly the vanished participant is gone: {gone:?}");
        let (at, Event::Gone { participant }) = *gone[0] else { unreachable!() };
        assert_eq!(participant, w.peers[0].id, "seed {seed}");
        // Its last check left at most 500 ms before it vanished; consent runs out 30 s later, checked each second.
        let after = at - vanished_at;
        assert!((29_000_000..=31_500_000).contains(&after), "seed {seed}: reported after {after} us");
        let last_to_gone = w.net.last_delivery[&w.peers[0].addr];
        assert!(last_to_gone <= at + 100_000, "seed {seed}: nothing is sent to a gone participant");
        assert!(w.core.counters().fanout_not_ready > 0, "seed {seed}");
        w.check_delivery(&[0]);
    }
}

#[test]
fn a_participant_that_changes_network_keeps_its_meeting() {
    for seed in seeds() {
        let mut w = World::new(seed, 3, lossy());
        w.run_until(3_000_000, u64::MAX);
        let p = &mut w.peers[1];
        p.old_addr = Some(p.addr);
        p.addr = "203.0.113.77:6000".parse().unwrap();
        p.moving = true;
        w.run_until(8_000_000, 7_000_000);
        let nominations: Vec<_> = w
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Nominated { participant, address } if *participant == w.peers[1].id => Some(*address),
                _ => None,
            })
            .collect();
        assert_eq!(nominations.last(), Some(&w.peers[1].addr), "seed {seed}: the new address is selected");
        w.check_delivery(&[]);
    }
}

#[test]
fn keyframe_requests_from_many_subscribers_reach_the_publisher_once_per_interval() {
    let seed = 7;
    let mut w = World::new(seed, 21, Impairment { loss: 0.0, duplicate: 0.0, delay_us: 1_000, jitter_us: 1 });
    w.run_until(1_000_000, 0);
    // Twenty subscribers ask for publisher 0's keyframe at the same moment.
    for s in 1..21 {
        let pli = w.peers[s].peer.pli(out_ssrc(0));
        w.net.send(w.now_us, w.peers[s].addr, w.sfu, pli);
    }
    w.run_until(1_200_000, 0);
    assert_eq!(w.peers[0].keyframe_requests, vec![w.peers[0].peer.ssrc], "one PLI, for the publisher's own SSRC");
    assert_eq!(w.core.counters().keyframe_requests_limited, 19);
    let limited_before = 19;
    // Still inside the interval: limited. After it, a new request goes through.
    let pli = w.peers[3].peer.pli(out_ssrc(0));
    w.net.send(w.now_us, w.peers[3].addr, w.sfu, pli);
    w.run_until(1_300_000, 0);
    assert_eq!(w.peers[0].keyframe_requests.len(), 1);
    w.run_until(1_600_000, 0);
    let pli = w.peers[3].peer.pli(out_ssrc(0));
    w.net.send(w.now_us, w.peers[3].addr, w.sfu, pli);
    w.run_until(1_700_000, 0);
    assert_eq!(w.peers[0].keyframe_requests.len(), 2);
    assert_eq!(w.core.counters().keyframe_requests_limited, limited_before + 1);
    assert!(w.peers.iter().all(|p| p.bad.is_empty()));
}

#[test]
fn forged_and_unknown_traffic_is_counted_and_dropped() {
    let mut w = World::new(3, 2, Impairment { loss: 0.0, duplicate: 0.0, delay_us: 1_000, jitter_us: 1 });
    w.run_until(1_000_000, u64::MAX);
    let now = w.now();
    let stranger: SocketAddr = "203.0.113.9:9".parse().unwrap();
    let mut media = w.peers[0].peer.media(100, 0);
    w.core.handle_receive(now, stranger, &mut media.clone(), &mut w.out);
    assert_eq!(w.core.counters().dropped(DropReason::UnknownSource), 1);
    let last = media.len() - 1;
    media[last] ^= 1;
    w.core.handle_receive(now, w.peers[0].addr, &mut media, &mut w.out);
    assert_eq!(w.core.counters().dropped(DropReason::AuthFailed), 1);
    w.core.handle_receive(now, w.peers[0].addr, &mut [0x80, 96, 0], &mut w.out);
    assert_eq!(w.core.counters().dropped(DropReason::MalformedRtp), 1);
    let mut check = w.peers[1].peer.binding_request(true);
    // Inside MESSAGE-INTEGRITY's value (the last 32 bytes are MI's 24 and FINGERPRINT's 8).
    let inside_mac = check.len() - 20;
    check[inside_mac] ^= 1;
    w.core.handle_receive(now, stranger, &mut check, &mut w.out);
    assert_eq!(w.core.counters().dropped(DropReason::StunAuthFailed), 1, "a forged check cannot move a participant");
    w.core.handle_receive(now, stranger, &mut [22, 0xfe, 0xfd, 0, 0], &mut w.out);
    assert_eq!(w.core.counters().dropped(DropReason::UnknownSource), 2, "DTLS only from a checked address");
    w.core.handle_receive(now, stranger, &mut [0x40, 0, 0, 0], &mut w.out);
    assert_eq!(w.core.counters().dropped(DropReason::UnknownProtocol), 1);
    assert!(w.out.is_empty(), "nothing answered any of it");
    let _ = &w.tracks;
}

#[test]
fn dtls_handshakes_over_a_lossy_network_then_every_packet_arrives() {
    for seed in seeds() {
        let mut w = World::with_dtls(seed, 4, lossy());
        w.run_until(12_000_000, 11_000_000);
        assert_eq!(w.connected_count(), 4, "seed {seed}: every handshake finished: {:?}", w.events);
        assert!(w.peers.iter().all(|p| p.peer.srtp_ready()), "seed {seed}");
        let failed = w.events.iter().filter(|(_, e)| matches!(e, Event::DtlsFailed { .. })).count();
        assert_eq!(failed, 0, "seed {seed}");
        w.check_delivery(&[]);
    }
}

#[test]
fn a_certificate_that_does_not_match_the_sdp_fingerprint_is_refused() {
    let mut w = World::with_dtls(11, 3, Impairment { loss: 0.0, duplicate: 0.0, delay_us: 2_000, jitter_us: 1 });
    // Participant 0's SDP named some other certificate.
    let impostor = DtlsIdentity::generate().unwrap().fingerprint();
    let base = w.now();
    w.core.expect_dtls(w.peers[0].id, impostor, base).unwrap();
    w.run_until(3_000_000, 0);
    let failures: Vec<_> = w
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::DtlsFailed { participant, reason } => Some((*participant, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(failures, vec![(w.peers[0].id, DtlsFailure::FingerprintMismatch)]);
    assert!(!w.peers[0].peer.srtp_ready(), "the impostor never gets keys");
    assert_eq!(w.connected_count(), 2, "the others connect");
}

#[test]
fn sender_and_receiver_reports_follow_the_publishers_clocks_and_the_real_losses() {
    for seed in seeds() {
        let mut w = World::new(seed, 3, lossy());
        w.run_until(8_000_000, 7_000_000);
        let ntp_to_us = |ntp: u64| {
            let secs = (ntp >> 32) - WALLCLOCK_UNIX_SECS - 2_208_988_800;
            secs * 1_000_000 + (((ntp & 0xffff_ffff) * 1_000_000) >> 32)
        };
        for (s, sub) in w.peers.iter().enumerate() {
            for (p, publisher) in w.peers.iter().enumerate().filter(|(p, _)| *p != s) {
                // Sender Reports for the stream we forward from p: RTP time consistent with p's own clock.
                let srs: Vec<_> = sub.sender_reports.iter().filter(|(_, r)| r.ssrc == out_ssrc(p)).collect();
                assert!(srs.len() >= 4, "seed {seed}: subscriber {s} got {} SRs for publisher {p}", srs.len());
                let first = publisher.first_media_us.unwrap();
                for (_, sr) in &srs {
                    let expected = ((ntp_to_us(sr.ntp) - first) * 48 / 1_000) as i64;
                    // The publisher's SR reached us up to 35 ms after it was sent: at most that much skew.
                    let skew = sr.rtp_timestamp as i64 - expected;
                    assert!((-48 * 40..=48 * 40).contains(&skew), "seed {seed}: SR RTP time off by {skew} ticks");
                    assert!(sr.packet_count > 0 && u64::from(sr.packet_count) <= publisher.peer.sent());
                }
                assert!(srs.windows(2).all(|w| w[0].1.packet_count <= w[1].1.packet_count));
            }
            // Receiver Reports to s as a publisher: losses are the uplink's real losses.
            let (at, block) = *sub.report_blocks.iter().rfind(|(_, b)| b.ssrc == sub.peer.ssrc).expect("an RR");
            let highest = u64::from(block.highest_seq);
            let lost_up_to_highest = (0..=highest).filter(|seq| w.lost_to(w.sfu, sub.peer.ssrc, *seq)).count() as i64;
            let in_flight_slack = 3;
            assert!(
                (i64::from(block.cumulative_lost) - lost_up_to_highest).abs() <= in_flight_slack,
                "seed {seed}: RR says {} lost, the network lost {lost_up_to_highest}",
                block.cumulative_lost
            );
            assert!(
                highest + 5 >= sub.peer.sent().min((at - sub.first_media_us.unwrap()) / MEDIA_INTERVAL_US),
                "seed {seed}"
            );
            assert!(
                sub.sent_sr_ntps.iter().any(|ntp| (ntp >> 16) as u32 == block.last_sr),
                "seed {seed}: LSR echoes a Sender Report this publisher sent"
            );
        }
        assert!(w.core.counters().sender_reports_sent > 0 && w.core.counters().receiver_reports_sent > 0);
    }
}

#[test]
fn nacks_repair_losses_on_the_uplink_and_on_a_downlink() {
    nack_scenario(false);
}

#[test]
fn nacks_repair_losses_with_rtx_retransmissions() {
    nack_scenario(true);
}

fn nack_scenario(rtx: bool) {
    let mut w = World::with_nack(5, 3, Impairment { loss: 0.0, duplicate: 0.0, delay_us: 5_000, jitter_us: 1 }, rtx);
    // Publisher 1's packet 50 is lost on the way to the SFU; publisher 2's packet 80 on the way to subscriber 0.
    w.net.drop_once.push((w.sfu, w.peers[1].peer.ssrc, 50));
    w.net.drop_once.push((w.peers[0].addr, out_ssrc(2), 80));
    w.run_until(4_000_000, 3_500_000);
    assert!(w.net.drop_once.is_empty(), "both drops happened");
    for (s, sub) in w.peers.iter().enumerate() {
        assert!(sub.bad.is_empty(), "{:?}", sub.bad);
        for (p, publisher) in w.peers.iter().enumerate().filter(|(p, _)| *p != s) {
            let got: BTreeSet<u64> =
                sub.received.iter().filter(|r| r.tag.publisher == p as u32).map(|r| r.tag.seq).collect();
            let all: BTreeSet<u64> = (0..publisher.peer.sent()).collect();
            let missing: Vec<_> = all.difference(&got).collect();
            assert!(missing.is_empty(), "subscriber {s} from publisher {p}: still missing {missing:?}");
        }
    }
    let repaired: Vec<_> = w.peers[0].received.iter().filter(|r| r.tag.publisher == 2 && r.tag.seq == 80).collect();
    assert_eq!(repaired.len(), 1);
    assert_eq!(repaired[0].via_rtx, rtx, "the repair came on the RTX stream exactly when RTX was negotiated");
    assert_eq!(repaired[0].ssrc, out_ssrc(2));
    let c = w.core.counters();
    assert!(c.nacks_sent >= 1, "the SFU asked publisher 1 again");
    assert!(c.retransmissions_sent >= 1, "the SFU resent packet 80 to subscriber 0");
}
