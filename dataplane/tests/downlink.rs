//! Layer allocation against simulated links (issue 24), deterministic: a fake clock in 1 ms ticks, a publisher
//! sending three simulcast layers (about 150 kbit/s, 500 kbit/s and 1.5 Mbit/s at 30 fps, each keyframe when the
//! core asks), and two subscribers behind their own links (a rate cap with a 200 ms drop-tail queue, 20 ms
//! delay), each reporting transport-wide feedback every 100 ms as Chrome does. One subscriber's link follows RFC
//! 8867's schedule (unlimited, 1 Mbit/s, 350 kbit/s, unlimited); the other's stays unlimited. A counting
//! allocator checks that the core allocates nothing while estimating, allocating layers and probing.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_dataplane::core::{
    Core, CoreConfig, Event, LayerReason, RtxSpec, SubscriptionId, SubscriptionSpec, Tag, TrackSpec, Transmits,
};
use sluice_dataplane::packet::codec::Codec;
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{self, Connected, Incoming};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

const RIDS: [&str; 3] = ["q", "h", "f"];
/// Payload bytes per frame of each layer at 30 fps.
const FRAME_BYTES: [usize; 3] = [625, 2_080, 6_250];
const PACKET_PAYLOAD: usize = 1_000;
const DELAY_US: i64 = 20_000;
const QUEUE_MAX_US: i64 = 200_000;
const UNLIMITED: u64 = 50_000_000;

struct Link {
    rate_bps: u64,
    /// Random loss, per million packets, from a fixed-seed generator.
    loss_ppm: u64,
    rng: u64,
    free_at_us: i64,
    in_flight: VecDeque<(i64, Vec<u8>)>,
    dropped: u64,
}

impl Link {
    fn new() -> Link {
        Link {
            rate_bps: UNLIMITED,
            loss_ppm: 0,
            rng: 0x2545_f491_4f6c_dd1d,
            free_at_us: 0,
            in_flight: VecDeque::new(),
            dropped: 0,
        }
    }

    fn send(&mut self, now_us: i64, bytes: Vec<u8>) {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        if self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % 1_000_000 < self.loss_ppm {
            self.dropped += 1;
            return;
        }
        let start = self.free_at_us.max(now_us);
        if start - now_us > QUEUE_MAX_US {
            self.dropped += 1;
            return;
        }
        let done = start + (bytes.len() as u64 * 8 * 1_000_000 / self.rate_bps) as i64;
        self.free_at_us = done;
        self.in_flight.push_back((done + DELAY_US, bytes));
    }
}

struct Subscriber {
    peer: usize,
    sub: SubscriptionId,
    link: Link,
    /// Arrivals by transport-wide sequence number since the last feedback, and where the next feedback starts.
    arrived: HashMap<u16, i64>,
    base: Option<u16>,
    highest: Option<u16>,
    feedbacks: u8,
    /// The layer of the last media packet, and how many packets came since the last sample.
    layer: Option<u8>,
    /// (time in ms, layer or none for nothing received in the last 100 ms), every 100 ms.
    samples: Vec<(u64, Option<u8>)>,
    received_since: u64,
    padding: u64,
    /// (time in ms, layer, reason) of every layer change the core announced.
    changes: Vec<(u64, Option<u8>, LayerReason)>,
    /// The core's count of successful probes at each of those changes.
    probes_at_change: Vec<u64>,
    estimates: Vec<(u64, u64)>,
    /// (time in µs, bytes) of every datagram the core sent it, before its link.
    sent: Vec<(i64, usize)>,
    /// A receiver without transport-wide feedback: it sends this REMB every 500 ms instead.
    remb: Option<u64>,
    /// Media received (not RTX): when the publisher sent it (µs), its layer, temporal layer and sequence number.
    received: Vec<(i64, u8, Option<u8>, u16)>,
}

struct World {
    core: Core,
    out: Transmits,
    peers: Vec<Connected>,
    subscribers: Vec<Subscriber>,
    keyframe: [bool; 3],
    start: Instant,
    now_us: i64,
    frames: u64,
    /// A keyframe is this many times a frame's size (1: the same; real encoders' are 5 to 10 times).
    keyframe_factor: usize,
    /// How long the publisher takes to answer a keyframe request (0: the next frame), and when each layer's
    /// pending request came.
    keyframe_delay_us: i64,
    keyframe_requested: [Option<i64>; 3],
    /// Heap allocations made inside the core's calls after the first two seconds.
    core_allocations: u64,
}

impl World {
    fn new() -> World {
        let mut core = Core::new(CoreConfig { participants_max: 4, ..CoreConfig::default() });
        let start = Instant::now();
        let mut peers = testpeer::connect(&mut core, Profile::AeadAes128Gcm, 3, 32_000, start);
        peers[0].peer.send_transport_cc();
        let rids: Vec<Tag> = RIDS.iter().map(|r| Tag::new(r).unwrap()).collect();
        let track =
            core.add_track(peers[0].id, TrackSpec::simulcast(Tag::new("0").unwrap(), &rids, Codec::Vp8)).unwrap();
        let mut subscribers = Vec::new();
        for (peer, p) in peers.iter_mut().enumerate().skip(1) {
            let rtx = RtxSpec { ssrc: 0x5100 + peer as u32, payload_type: 97 };
            let spec = SubscriptionSpec { ssrc: 0x5000 + peer as u32, payload_type: None, rtx: Some(rtx) };
            let sub = core.subscribe(p.id, track, spec).unwrap();
            p.peer.expect_vp8();
            p.peer.expect_rtx(rtx.ssrc, spec.ssrc);
            subscribers.push(Subscriber {
                peer,
                sub,
                link: Link::new(),
                arrived: HashMap::new(),
                base: None,
                highest: None,
                feedbacks: 0,
                layer: None,
                samples: Vec::new(),
                received_since: 0,
                padding: 0,
                changes: Vec::new(),
                probes_at_change: Vec::new(),
                estimates: Vec::new(),
                sent: Vec::new(),
                remb: None,
                received: Vec::new(),
            });
        }
        World {
            core,
            out: Transmits::with_capacity(256),
            peers,
            subscribers,
            keyframe: [true; 3],
            start,
            now_us: 0,
            frames: 0,
            keyframe_factor: 1,
            keyframe_delay_us: 0,
            keyframe_requested: [None; 3],
            core_allocations: 0,
        }
    }

    fn now(&self) -> Instant {
        self.start + Duration::from_micros(self.now_us as u64)
    }

    /// Runs `call` on the core, counting what it allocates once warmed up.
    fn core<T>(&mut self, call: impl FnOnce(&mut Core, &mut Transmits) -> T) -> T {
        let before = allocations();
        let result = call(&mut self.core, &mut self.out);
        if self.now_us > 2_000_000 {
            self.core_allocations += allocations() - before;
        }
        result
    }

    /// Runs until `until_ms`, with the first subscriber's link capped at `rate_bps`.
    fn run(&mut self, until_ms: u64, rate_bps: u64) {
        self.subscribers[0].link.rate_bps = rate_bps;
        while self.now_us < until_ms as i64 * 1_000 {
            self.now_us += 1_000;
            let now = self.now();
            if self.now_us >= (self.frames as i64 * 100_000) / 3 {
                self.frames += 1;
                self.send_frame(now);
            }
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core(|core, out| core.handle_timeout(now, out));
            }
            self.route();
            self.deliver();
            if self.now_us % 100_000 == 0 {
                self.feedback_and_sample();
            }
        }
    }

    fn send_frame(&mut self, now: Instant) {
        let frame_us = self.now_us as u64;
        for layer in 0..3u8 {
            let requested = &mut self.keyframe_requested[usize::from(layer)];
            if requested.is_some_and(|at| at + self.keyframe_delay_us <= self.now_us) {
                *requested = None;
                self.keyframe[usize::from(layer)] = true;
            }
            let keyframe = std::mem::take(&mut self.keyframe[usize::from(layer)]);
            let factor = if keyframe { self.keyframe_factor } else { 1 };
            let mut left = FRAME_BYTES[usize::from(layer)] * factor;
            let mut first = true;
            while left > 0 {
                let len = left.min(PACKET_PAYLOAD);
                left -= len;
                let start = first.then_some(keyframe);
                first = false;
                let rid = RIDS[usize::from(layer)];
                let mut packet = self.peers[0].peer.simulcast_packet("0", rid, layer, start, len, frame_us);
                let from = self.peers[0].addr;
                self.core(|core, out| core.handle_receive(now, from, &mut packet, out));
                self.route();
            }
        }
    }

    /// What the core sent: to the publisher at once, to each subscriber through its link.
    fn route(&mut self) {
        let sent: Vec<(SocketAddr, Vec<u8>)> = self.out.iter().map(|(a, b)| (a, b.to_vec())).collect();
        self.out.clear();
        for (addr, bytes) in sent {
            if addr == self.peers[0].addr {
                if let Incoming::KeyframeRequest { media_ssrc } = self.peers[0].peer.receive(&bytes)
                    && let Some(layer) = (0..3u8).find(|l| self.peers[0].peer.layer_ssrc(*l) == media_ssrc)
                {
                    self.keyframe_requested[usize::from(layer)].get_or_insert(self.now_us);
                }
                continue;
            }
            if let Some(s) = self.subscribers.iter_mut().find(|s| self.peers[s.peer].addr == addr) {
                s.sent.push((self.now_us, bytes.len()));
                s.link.send(self.now_us, bytes);
            }
        }
        let at = self.now_us as u64 / 1_000;
        while let Some(event) = self.core(|core, _| core.poll_event()) {
            let probes = self.core.counters().probes_succeeded;
            if let Event::LayerChanged { subscription, layer, reason, .. } = event
                && let Some(s) = self.subscribers.iter_mut().find(|s| s.sub == subscription)
            {
                s.changes.push((at, layer, reason));
                s.probes_at_change.push(probes);
            }
        }
    }

    fn deliver(&mut self) {
        for s in &mut self.subscribers {
            while s.link.in_flight.front().is_some_and(|(t, _)| *t <= self.now_us) {
                let (arrival, bytes) = s.link.in_flight.pop_front().unwrap();
                let seq = match self.peers[s.peer].peer.receive(&bytes) {
                    Incoming::Media(r) => {
                        if !r.via_rtx {
                            let layer = (r.tag.publisher >> 8) as u8;
                            s.layer = Some(layer);
                            s.received_since += 1;
                            s.received.push((r.tag.sent_us as i64, layer, r.temporal, r.seq));
                        }
                        r.transport_seq
                    }
                    Incoming::Padding { transport_seq } => {
                        s.padding += 1;
                        transport_seq
                    }
                    Incoming::Bad(why) => panic!("subscriber {} got a bad packet: {why}", s.peer),
                    _ => None,
                };
                if let Some(seq) = seq {
                    s.arrived.insert(seq, arrival);
                    s.base.get_or_insert(seq);
                    let newer = s.highest.is_none_or(|h| (seq.wrapping_sub(h) as i16) > 0);
                    if newer {
                        s.highest = Some(seq);
                    }
                }
            }
        }
    }

    fn feedback_and_sample(&mut self) {
        let now = self.now();
        let at = self.now_us as u64 / 1_000;
        for i in 0..self.subscribers.len() {
            let s = &mut self.subscribers[i];
            let sample = (s.received_since > 0).then_some(s.layer).flatten();
            s.samples.push((at, sample));
            s.received_since = 0;
            if let Some(bitrate) = s.remb {
                if self.now_us % 500_000 == 0 {
                    let (peer, ssrc) = (s.peer, 0x5000 + s.peer as u32);
                    let mut remb = self.peers[peer].peer.remb(bitrate, &[ssrc]);
                    let addr = self.peers[peer].addr;
                    self.core(|core, out| core.handle_receive(now, addr, &mut remb, out));
                    self.route();
                }
                let id = self.peers[self.subscribers[i].peer].id;
                let estimate = self.core.participant_stats(id).unwrap().estimate_bps.unwrap_or(0);
                self.subscribers[i].estimates.push((at, estimate));
                continue;
            }
            let (Some(base), Some(highest)) = (s.base, s.highest) else { continue };
            if highest.wrapping_sub(base) >= 0x8000 {
                continue; // nothing new since the last feedback
            }
            let n = highest.wrapping_sub(base) as usize + 1;
            let arrivals: Vec<Option<i64>> = (0..n).map(|k| s.arrived.remove(&base.wrapping_add(k as u16))).collect();
            let mut feedback = self.peers[s.peer].peer.transport_feedback(base, s.feedbacks, &arrivals);
            s.feedbacks = s.feedbacks.wrapping_add(1);
            s.base = Some(highest.wrapping_add(1));
            let addr = self.peers[s.peer].addr;
            self.core(|core, out| core.handle_receive(now, addr, &mut feedback, out));
            let id = self.peers[self.subscribers[i].peer].id;
            let estimate = self.core.participant_stats(id).unwrap().estimate_bps.unwrap_or(0);
            self.subscribers[i].estimates.push((at, estimate));
            self.route();
        }
    }
}

impl Subscriber {
    /// The first time from `from_ms` on that it received `layer` and kept it to `until_ms`.
    fn settled_at(&self, layer: u8, from_ms: u64, until_ms: u64) -> Option<u64> {
        let window: Vec<&(u64, Option<u8>)> =
            self.samples.iter().filter(|(t, _)| (from_ms..until_ms).contains(t)).collect();
        let last_other = window.iter().rposition(|(_, l)| *l != Some(layer));
        match last_other {
            None => window.first().map(|(t, _)| *t),
            Some(i) => window.get(i + 1).map(|(t, _)| *t),
        }
    }

    fn frozen_samples(&self, from_ms: u64, until_ms: u64) -> usize {
        self.samples.iter().filter(|(t, l)| (from_ms..until_ms).contains(t) && l.is_none()).count()
    }

    fn estimate_range(&self, from_ms: u64, until_ms: u64) -> (u64, u64) {
        let e = self.estimates.iter().filter(|(t, _)| (from_ms..until_ms).contains(t)).map(|(_, e)| *e);
        (e.clone().min().unwrap_or(0), e.max().unwrap_or(0))
    }

    /// The most bytes the core sent it within any `window_us` from `from_us` on.
    fn peak_bytes(&self, from_us: i64, window_us: i64) -> usize {
        let sent: Vec<&(i64, usize)> = self.sent.iter().filter(|(t, _)| *t >= from_us).collect();
        let (mut peak, mut sum, mut first) = (0, 0, 0);
        for (last, (t, len)) in sent.iter().enumerate() {
            sum += len;
            while sent[first].0 <= t - window_us {
                sum -= sent[first].1;
                first += 1;
            }
            peak = peak.max(sum);
            debug_assert!(first <= last);
        }
        peak
    }

    fn report(&self, name: &str) {
        let layers: String =
            self.samples.iter().step_by(5).map(|(_, l)| l.map_or('-', |l| char::from(b'0' + l))).collect();
        println!("{name}: layers every 0.5 s: {layers}");
        println!(
            "{name}: changes {:?}; padding packets {}; link drops {}",
            self.changes, self.padding, self.link.dropped
        );
        let est: Vec<String> =
            self.estimates.iter().step_by(10).map(|(_, e)| format!("{:.2}", *e as f64 / 1e6)).collect();
        println!("{name}: estimate every second (Mbit/s): {}", est.join(" "));
    }
}

#[test]
fn each_subscriber_gets_the_layers_its_link_carries_and_recovers_when_it_clears() {
    let mut w = World::new();
    w.run(8_000, UNLIMITED);
    w.run(23_000, 1_000_000);
    w.run(38_000, 350_000);
    w.run(58_000, UNLIMITED);
    let (capped, other) = (&w.subscribers[0], &w.subscribers[1]);
    capped.report("capped");
    other.report("other");
    let counters = w.core.counters();
    println!(
        "downgrades {} upgrades {} pauses {} probes {} padding {}",
        counters.bandwidth_downgrades,
        counters.bandwidth_upgrades,
        counters.bandwidth_pauses,
        counters.probes,
        counters.padding_sent
    );

    // Unconstrained: the top layer, nothing announced.
    let top = capped.settled_at(2, 0, 8_000).expect("the top layer while unlimited");
    assert!(top <= 5_000, "top layer at {top} ms");
    assert!(capped.changes.iter().all(|(t, ..)| *t >= 8_000), "{:?}", capped.changes);

    // 1 Mbit/s: the middle layer (500 kbit/s) within 4 s, for good.
    let middle = capped.settled_at(1, 8_000, 23_000).expect("the middle layer under 1 Mbit/s");
    assert!(middle <= 12_000, "middle layer at {middle} ms");
    // The estimate within 10% of the cap 2 s after the step, and there to the next one.
    let (low, high) = capped.estimate_range(10_000, 23_000);
    assert!(low >= 900_000 && high <= 1_100_000, "estimate under a 1 Mbit/s cap: {low}..{high}");
    assert!(capped.frozen_samples(8_000, 23_000) <= 10, "at most a second without video after the step");

    // 350 kbit/s: the lowest layer, never paused.
    let lowest = capped.settled_at(0, 23_000, 38_000).expect("the lowest layer under 350 kbit/s");
    assert!(lowest <= 27_000, "lowest layer at {lowest} ms");
    let (low, high) = capped.estimate_range(25_000, 38_000);
    assert!(low >= 280_000 && high <= 385_000, "estimate under a 350 kbit/s cap (within 20%): {low}..{high}");
    assert_eq!(counters.bandwidth_pauses, 0);

    // Cap lifted: back to the top within 10 s, with probes.
    let back = capped.settled_at(2, 38_000, 58_000).expect("back to the top layer");
    assert!(back <= 48_000, "top layer again at {back} ms");
    assert!(capped.padding > 0 && counters.probes > 0);
    assert!(counters.probes_succeeded >= 1, "the probes that brought the top layer back");
    assert!(counters.probes_failed >= 1, "probes under the cap found no room");
    assert!(capped.changes.iter().any(|(_, l, r)| *l == Some(1) && *r == LayerReason::Bandwidth));
    assert!(capped.changes.iter().any(|(_, l, r)| *l == Some(2) && *r == LayerReason::Requested));

    assert!(capped.changes.len() <= 5, "few switches: {:?}", capped.changes);
    // Every move up came after a probe succeeded since the move before it: upgrades wait for a probe to confirm
    // the room, not for the estimate alone.
    for i in 1..capped.changes.len() {
        if capped.changes[i].1 > capped.changes[i - 1].1 {
            let (before, at) = (capped.probes_at_change[i - 1], capped.probes_at_change[i]);
            assert!(
                at > before,
                "upgrade at {} ms with no probe confirmed since: {:?}",
                capped.changes[i].0,
                capped.changes
            );
        }
    }
    assert_eq!(w.core_allocations, 0, "the core allocated while estimating, allocating and probing");

    // The other subscriber saw none of it.
    let other_top = other.settled_at(2, 0, 58_000).expect("the other subscriber keeps the top layer");
    assert!(other_top <= 5_000, "{other_top}");
    assert!(other.changes.is_empty(), "{:?}", other.changes);
}

#[test]
fn random_loss_alone_keeps_the_top_layer() {
    let mut w = World::new();
    w.subscribers[0].link.loss_ppm = 50_000;
    w.run(30_000, UNLIMITED);
    let s = &w.subscribers[0];
    s.report("5% loss");
    let top = s.samples.iter().filter(|(t, l)| *t >= 5_000 && *l == Some(2)).count();
    let all = s.samples.iter().filter(|(t, _)| *t >= 5_000).count();
    assert!(top * 100 >= all * 90, "top layer {top} of {all} samples");
    assert_eq!(s.frozen_samples(5_000, 30_000), 0);
    assert!(s.link.dropped > 100, "the link did lose packets: {}", s.link.dropped);
}

#[test]
fn a_link_too_slow_for_any_layer_pauses_the_track_and_resumes_it_when_it_clears() {
    let mut w = World::new();
    w.run(8_000, UNLIMITED);
    w.run(23_000, 100_000);
    w.run(43_000, UNLIMITED);
    let s = &w.subscribers[0];
    s.report("100 kbit/s");
    let paused = s.changes.iter().find(|(t, l, _)| (8_000..23_000).contains(t) && l.is_none());
    let (paused_at, _, reason) = paused.expect("paused under 100 kbit/s, announced");
    assert_eq!(*reason, LayerReason::Bandwidth);
    assert!(*paused_at <= 14_000, "paused at {paused_at} ms");
    assert!(s.frozen_samples(18_000, 23_000) >= 45, "nothing forwarded while paused");
    assert!(w.core.counters().fanout_paused > 0 && w.core.counters().bandwidth_pauses >= 1);
    let resumed = s.changes.iter().find(|(t, l, _)| *t >= 23_000 && l.is_some()).expect("resumed");
    assert!(resumed.0 <= 33_000, "resumed at {} ms", resumed.0);
    let top = s.settled_at(2, 23_000, 43_000).expect("back to the top");
    assert!(top <= 38_000, "top again at {top} ms");
    assert_eq!(w.subscribers[1].changes, [], "the other subscriber saw nothing");
}

#[test]
fn keyframe_bursts_to_a_capped_subscriber_leave_paced() {
    let mut w = World::new();
    w.keyframe_factor = 8;
    w.run(8_000, UNLIMITED);
    w.run(20_000, 1_000_000);
    // A keyframe of every layer each second: bursts of 8 frames' worth in one millisecond.
    for second in 20..30 {
        w.keyframe = [true; 3];
        w.run(second * 1_000 + 1_000, 1_000_000);
    }
    let (capped, other) = (&w.subscribers[0], &w.subscribers[1]);
    capped.report("capped, big keyframes");
    let counters = w.core.counters();
    let (paced, waited_ms) = (counters.paced, counters.pacer_wait_us / counters.paced.max(1) / 1_000);
    println!("paced {paced} packets, {waited_ms} ms each on average; link drops {}", capped.link.dropped);
    assert!(paced > 0, "nothing waited in the pacer");
    assert!(waited_ms < 100, "paced packets waited {waited_ms} ms on average");

    // What left for the capped subscriber in any 10 ms: at most the pacing rate's share plus its 20 ms burst
    // allowance and one packet. The middle layer's keyframe alone (16.6 kB) is over it.
    let (_, estimate) = capped.estimate_range(20_000, 30_000);
    let rate = estimate as f64 * 2.5;
    let bound = (rate * 0.030 / 8.0) as usize + 1_500;
    let peak = capped.peak_bytes(20_000_000, 10_000);
    println!("peak in 10 ms: capped {peak} bytes (bound {bound}), unlimited {}", other.peak_bytes(20_000_000, 10_000));
    assert!(FRAME_BYTES[1] * 8 > bound, "the test's keyframes must exceed the bound");
    assert!(peak <= bound, "{peak} bytes left within 10 ms, more than pacing at {rate} bit/s allows ({bound})");
    assert_eq!(capped.frozen_samples(20_000, 30_000), 0, "video kept coming while paced");
    // The unlimited subscriber is not paced: its top layer's keyframes go at once.
    assert!(other.peak_bytes(20_000_000, 10_000) >= FRAME_BYTES[2] * 8);
    assert_eq!(w.core_allocations, 0, "the core allocated while pacing");
}

#[test]
fn a_subscriber_without_transport_wide_feedback_gets_the_layers_its_remb_allows() {
    let mut w = World::new();
    w.subscribers[0].remb = Some(20_000_000);
    w.run(8_000, UNLIMITED);
    w.subscribers[0].remb = Some(800_000);
    w.run(20_000, UNLIMITED);
    w.subscribers[0].remb = Some(250_000);
    w.run(32_000, UNLIMITED);
    w.subscribers[0].remb = Some(20_000_000);
    w.run(45_000, UNLIMITED);
    let s = &w.subscribers[0];
    s.report("REMB");
    assert!(w.core.counters().rembs_in >= 80, "REMBs read: {}", w.core.counters().rembs_in);
    let top = s.settled_at(2, 0, 8_000).expect("the top layer while REMB allows it");
    assert!(top <= 5_000, "top layer at {top} ms");
    assert!(s.changes.iter().all(|(t, ..)| *t >= 8_000), "{:?}", s.changes);
    let middle = s.settled_at(1, 8_000, 20_000).expect("the middle layer under an 800 kbit/s REMB");
    assert!(middle <= 10_000, "middle layer at {middle} ms");
    let lowest = s.settled_at(0, 20_000, 32_000).expect("the lowest layer under a 250 kbit/s REMB");
    assert!(lowest <= 22_000, "lowest layer at {lowest} ms");
    // Up again once REMB allows it, after the hold that follows a downgrade.
    let back = s.settled_at(2, 32_000, 45_000).expect("the top layer again");
    assert!(back <= 34_000, "top layer again at {back} ms");
    assert_eq!(s.padding, 0, "no probes towards a subscriber that reports no arrivals");
    assert!(s.changes.iter().any(|(_, l, r)| *l == Some(0) && *r == LayerReason::Bandwidth));
    // Its estimate is what it says.
    let (low, high) = s.estimate_range(25_000, 32_000);
    assert!(low == 250_000 && high == 250_000, "{low}..{high}");
    // The subscriber with transport-wide feedback ignores nothing and loses nothing.
    assert!(w.subscribers[1].changes.is_empty(), "{:?}", w.subscribers[1].changes);
}

#[test]
fn upper_temporal_layers_are_shed_while_a_downswitch_waits_for_its_keyframe() {
    let mut w = World::new();
    w.peers[0].peer.send_temporal_layers();
    // A real encoder answers a keyframe request a round trip and an encode later.
    w.keyframe_delay_us = 400_000;
    w.subscribers[0].remb = Some(20_000_000);
    w.run(8_000, UNLIMITED);
    w.subscribers[0].remb = Some(800_000);
    w.run(14_000, UNLIMITED);
    let (s, other) = (&w.subscribers[0], &w.subscribers[1]);
    s.report("shedding");
    let shed = w.core.counters().fanout_temporal_shed;
    let &(switched_ms, ..) = s
        .changes
        .iter()
        .find(|(t, l, r)| *t >= 8_000 && *l == Some(1) && *r == LayerReason::Bandwidth)
        .expect("down to the middle layer under an 800 kbit/s REMB");
    println!("switched at {switched_ms} ms; {shed} packets shed");
    // The last 300 ms before the switch are inside the wait (at least 400 ms): the top layer keeps coming, its
    // base temporal layer only.
    let waiting = (switched_ms as i64 - 300) * 1_000..switched_ms as i64 * 1_000;
    let top_in_wait = |r: &Vec<(i64, u8, Option<u8>, u16)>, temporal: fn(u8) -> bool| {
        r.iter().filter(|(t, l, tid, _)| waiting.contains(t) && *l == 2 && tid.is_some_and(temporal)).count()
    };
    assert!(top_in_wait(&s.received, |t| t == 0) >= 5, "the base temporal layer went on");
    assert_eq!(top_in_wait(&s.received, |t| t > 0), 0, "upper temporal layers were forwarded while waiting");
    assert!(top_in_wait(&other.received, |t| t > 0) >= 5, "the unconstrained subscriber lost nothing");
    assert!(shed >= 10, "{shed}");
    // What was shed left no gap: the subscriber saw every sequence number (its link loses nothing).
    let mut seqs: Vec<u64> = Vec::new();
    let mut last: Option<u64> = None;
    for &(.., seq) in &s.received {
        let index = match last {
            None => u64::from(seq) + (1 << 16),
            Some(prev) => (prev as i64 + i64::from(seq.wrapping_sub(prev as u16) as i16)) as u64,
        };
        last = Some(last.map_or(index, |l| l.max(index)));
        seqs.push(index);
    }
    seqs.sort_unstable();
    seqs.dedup();
    let span = seqs.last().unwrap() - seqs.first().unwrap() + 1;
    assert_eq!(span, seqs.len() as u64, "gaps in the output sequence numbers");
    assert_eq!(w.core_allocations, 0, "the core allocated while shedding");
}

#[test]
fn a_paused_video_comes_back_as_soon_as_its_lowest_layer_fits() {
    let mut w = World::new();
    w.run(8_000, UNLIMITED);
    w.run(20_000, 120_000);
    // Room for the lowest layer (about 150 kbit/s) with its headroom, not for more: it comes back while the cap
    // stays, once a probe has confirmed the room for it.
    w.run(45_000, 260_000);
    let s = &w.subscribers[0];
    s.report("paused, then 260 kbit/s");
    assert!(s.changes.iter().any(|(t, l, _)| (8_000..20_000).contains(t) && l.is_none()), "paused: {:?}", s.changes);
    let resumed = s.changes.iter().find(|(t, l, _)| *t >= 20_000 && *l == Some(0)).expect("the lowest layer back");
    assert!(resumed.0 <= 32_000, "resumed at {} ms", resumed.0);
    assert!(s.frozen_samples(35_000, 45_000) <= 5, "video keeps coming at 260 kbit/s");
}
