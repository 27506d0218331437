//! VP9 SVC (RFC 9628): a publisher sends one stream with three spatial layers (an L3T3_KEY structure: every
//! picture has all three, the keyframe's upper layers predict from the ones below, after that each layer only
//! from itself), and each subscriber gets the spatial layers up to the one it asks for or its bandwidth allows:
//! upper layers dropped without a gap in sequence numbers, the marker bit on the last packet of its top layer, a
//! move down at any picture start and a move up at a keyframe, which the core asks for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_dataplane::core::{
    Core, CoreConfig, Event, LayerReason, MediaKind, RtxSpec, SubscriptionId, SubscriptionSpec, TrackSpec, Transmits,
};
use sluice_dataplane::packet::codec::Codec;
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{self, Connected, Incoming, RawRtp};

const VP9_PT: u8 = 98;
/// Packets per spatial layer frame and their payload bytes: about 100, 250 and 700 kbit/s at 30 fps.
const PACKETS: [usize; 3] = [1, 2, 3];
const PACKET_BYTES: [usize; 3] = [417, 521, 972];
const SUBSCRIBERS: usize = 4;

struct World {
    core: Core,
    out: Transmits,
    peers: Vec<Connected>,
    subs: Vec<SubscriptionId>,
    received: Vec<Vec<RawRtp>>,
    /// Retransmissions (RTX, unwrapped) each subscriber received.
    resent: Vec<Vec<RawRtp>>,
    now: Instant,
    picture: u16,
    keyframe_due: bool,
    plis: u32,
    changes: Vec<(SubscriptionId, Option<u8>, LayerReason)>,
}

/// One packet's VP9 payload: the descriptor (I with a 15-bit PictureID, P, L, B, E; TID/U/SID/D; TL0PICIDX),
/// then bytes naming the spatial layer and the picture, then filler.
fn vp9(picture: u16, spatial: u8, begin: bool, end: bool, keyframe: bool, len: usize) -> Vec<u8> {
    let d = 0x80 | 0x20 | if keyframe { 0 } else { 0x40 } | if begin { 0x08 } else { 0 } | if end { 0x04 } else { 0 };
    let temporal = [0u8, 2, 1, 2][usize::from(picture) % 4];
    let inter_layer = u8::from(keyframe && spatial > 0);
    let layers = (temporal << 5) | (spatial << 1) | inter_layer;
    let mut p = vec![d, 0x80 | (picture >> 8) as u8, picture as u8, layers, (picture / 4) as u8, spatial];
    p.extend_from_slice(&picture.to_be_bytes());
    p.resize(len, 0xaa);
    p
}

impl World {
    fn new() -> World {
        let mut core = Core::new(CoreConfig { participants_max: 8, ..CoreConfig::default() });
        let now = Instant::now();
        let mut peers = testpeer::connect(&mut core, Profile::AeadAes128Gcm, 1 + SUBSCRIBERS, 31_000, now);
        let spec =
            TrackSpec::single(peers[0].peer.ssrc, MediaKind::Video).with_codec(Codec::Vp9).with_spatial_layers(3);
        let track = core.add_track(peers[0].id, spec).unwrap();
        peers[0].peer.send_transport_cc();
        let mut subs = Vec::new();
        for (i, p) in peers.iter_mut().enumerate().skip(1) {
            let rtx = RtxSpec { ssrc: 0x7100 + i as u32, payload_type: 99 };
            let spec = SubscriptionSpec { ssrc: 0x7000 + i as u32, payload_type: None, rtx: Some(rtx) };
            subs.push(core.subscribe(p.id, track, spec).unwrap());
            p.peer.deliver_raw();
            p.peer.expect_rtx(rtx.ssrc, spec.ssrc);
        }
        World {
            core,
            out: Transmits::with_capacity(64),
            peers,
            subs,
            received: (0..SUBSCRIBERS).map(|_| Vec::new()).collect(),
            resent: (0..SUBSCRIBERS).map(|_| Vec::new()).collect(),
            now,
            picture: 0,
            keyframe_due: true,
            plis: 0,
            changes: Vec::new(),
        }
    }

    /// Sends `pictures` pictures, 30 a second, each of all three spatial layers; a keyframe when asked.
    fn run(&mut self, pictures: u32) {
        for _ in 0..pictures {
            let keyframe = std::mem::take(&mut self.keyframe_due);
            let (picture, timestamp) = (self.picture, u32::from(self.picture) * 3_000);
            self.picture += 1;
            for spatial in 0..3u8 {
                let n = PACKETS[usize::from(spatial)];
                for k in 0..n {
                    let (begin, end) = (k == 0, k + 1 == n);
                    let payload = vp9(picture, spatial, begin, end, keyframe, PACKET_BYTES[usize::from(spatial)]);
                    let marker = spatial == 2 && end;
                    let mut packet = self.peers[0].peer.video_packet(VP9_PT, marker, timestamp, &payload);
                    let from = self.peers[0].addr;
                    self.core.handle_receive(self.now, from, &mut packet, &mut self.out);
                    self.route();
                }
            }
            self.now += Duration::from_micros(33_333);
            if self.core.poll_timeout().is_some_and(|t| t <= self.now) {
                self.core.handle_timeout(self.now, &mut self.out);
                self.route();
            }
        }
    }

    fn route(&mut self) {
        let sent: Vec<(SocketAddr, Vec<u8>)> = self.out.iter().map(|(a, b)| (a, b.to_vec())).collect();
        self.out.clear();
        for (addr, bytes) in sent {
            if addr == self.peers[0].addr {
                if let Incoming::KeyframeRequest { .. } = self.peers[0].peer.receive(&bytes) {
                    self.keyframe_due = true;
                    self.plis += 1;
                }
                continue;
            }
            let i = self.peers.iter().position(|p| p.addr == addr).expect("a known peer") - 1;
            match self.peers[i + 1].peer.receive(&bytes) {
                Incoming::Rtp(rtp) if rtp.via_rtx => self.resent[i].push(rtp),
                Incoming::Rtp(rtp) => self.received[i].push(rtp),
                Incoming::Bad(why) => panic!("subscriber {i} got a bad packet: {why}"),
                _ => {}
            }
        }
        while let Some(event) = self.core.poll_event() {
            if let Event::LayerChanged { subscription, layer, reason, .. } = event {
                self.changes.push((subscription, layer, reason));
            }
        }
    }

    fn set_layer(&mut self, subscriber: usize, layer: u8) {
        self.core.set_layer(self.now, self.subs[subscriber], layer, &mut self.out).unwrap();
        self.route();
    }

    /// A REMB from `subscriber` for its stream.
    fn remb(&mut self, subscriber: usize, bitrate_bps: u64) {
        let ssrc = 0x7001 + subscriber as u32;
        let mut remb = self.peers[subscriber + 1].peer.remb(bitrate_bps, &[ssrc]);
        let from = self.peers[subscriber + 1].addr;
        self.core.handle_receive(self.now, from, &mut remb, &mut self.out);
        self.route();
    }
}

/// A received packet's spatial layer, picture, and whether it begins a keyframe picture.
fn describe(p: &RawRtp) -> (u8, u16, bool) {
    let d = p.payload[0];
    let spatial = (p.payload[3] >> 1) & 0x07;
    let picture = u16::from_be_bytes([p.payload[6], p.payload[7]]);
    (spatial, picture, spatial == 0 && d & 0x08 != 0 && d & 0x40 == 0)
}

/// Sequence numbers go up by one, timestamps never back, the marker bit is on exactly the packets that end a
/// picture for this subscriber: the end (E) of the highest spatial layer it got of that picture.
fn assert_well_formed(name: &str, packets: &[RawRtp]) {
    assert!(!packets.is_empty(), "{name} received nothing");
    for pair in packets.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq.wrapping_add(1), "{name}: a gap or a repeat");
        assert!(pair[1].timestamp.wrapping_sub(pair[0].timestamp) < 0x8000_0000, "{name}: timestamp went back");
    }
    for (i, p) in packets.iter().enumerate() {
        let (spatial, picture, _) = describe(p);
        let last_of_picture = packets.get(i + 1).is_none_or(|next| describe(next).1 != picture);
        let ends_layer = p.payload[0] & 0x04 != 0;
        if i + 1 < packets.len() {
            assert_eq!(p.marker, last_of_picture && ends_layer, "{name}: marker of picture {picture} layer {spatial}");
        }
    }
}

#[test]
fn each_subscriber_gets_the_spatial_layers_it_asks_for_gap_free_and_well_marked() {
    let mut w = World::new();
    w.set_layer(0, 0);
    w.set_layer(1, 1);
    w.run(30);
    // Subscriber 3 moves down at once, then up again at the next keyframe.
    w.set_layer(3, 1);
    w.run(15);
    let plis_before = w.plis;
    w.set_layer(3, 2);
    let up_asked_at = w.picture;
    w.run(15);
    assert!(w.plis > plis_before, "moving up asked the publisher for a keyframe");

    let spatial_of = |i: usize| -> Vec<u8> { w.received[i].iter().map(|p| describe(p).0).collect() };
    for (i, top) in [(0usize, 0u8), (1, 1), (2, 2)] {
        let name = format!("subscriber at spatial layer {top}");
        assert_well_formed(&name, &w.received[i]);
        assert!(describe(&w.received[i][0]).2, "{name} started at a keyframe");
        assert_eq!(spatial_of(i).iter().max(), Some(&top), "{name}");
        // Every picture from the first keyframe on, each of its layers up to the top one, complete.
        let per_picture: usize = PACKETS[..=usize::from(top)].iter().sum();
        assert_eq!(w.received[i].len() % per_picture, 0, "{name}: whole pictures only");
    }
    // The one that moved: layer 2, then 1 from the picture after its request, then 2 again from a keyframe.
    let mover = &w.received[3];
    assert_well_formed("the subscriber that moved", mover);
    let last_top_before = mover.iter().rposition(|p| describe(p).0 == 2 && describe(p).1 < 30);
    let pictures_at_1: Vec<u16> =
        mover.iter().filter(|p| (30..up_asked_at).contains(&describe(p).1)).map(|p| describe(p).1).collect();
    assert!(mover.iter().filter(|p| (30..up_asked_at).contains(&describe(p).1)).all(|p| describe(p).0 <= 1));
    assert!(!pictures_at_1.is_empty() && last_top_before.is_some());
    let back_up = mover.iter().find(|p| describe(p).0 == 2 && describe(p).1 >= up_asked_at).expect("top layer again");
    let first_back = describe(back_up).1;
    let keyframe = mover.iter().find(|p| describe(p).1 == first_back && describe(p).0 == 0).map(describe).unwrap();
    assert!(keyframe.2, "moved up at picture {first_back}, not a keyframe");
    let moves: Vec<(Option<u8>, LayerReason)> =
        w.changes.iter().filter(|(s, ..)| *s == w.subs[3]).map(|(_, l, r)| (*l, *r)).collect();
    assert_eq!(moves, [(Some(1), LayerReason::Requested), (Some(2), LayerReason::Requested)]);
    let counters = w.core.counters();
    assert!(counters.fanout_other_layer > 0 && counters.fanout_stale == 0, "{counters:?}");
}

#[test]
fn a_nacked_packet_comes_back_as_it_was_first_sent() {
    let mut w = World::new();
    w.peers[0].peer.keep_history();
    w.set_layer(0, 1);
    w.run(20);
    // The last packet of layer 1 of some picture (its marker set by the core), and a packet before it.
    let received = w.received[0].clone();
    let marked = received.iter().rev().find(|p| p.marker).unwrap().clone();
    let plain = received[received.len() - 5].clone();
    let (ssrc, addr) = (0x7001, w.peers[1].addr);
    let mut nack = w.peers[1].peer.nack(ssrc, &[marked.seq, plain.seq]);
    w.core.handle_receive(w.now, addr, &mut nack, &mut w.out);
    w.route();
    let again = &w.resent[0];
    assert_eq!(again.len(), 2, "both retransmitted");
    assert!(marked.marker && !plain.marker);
    for original in [&marked, &plain] {
        let resent = again.iter().find(|p| p.seq == original.seq).expect("retransmitted");
        assert_eq!(
            (resent.marker, &resent.payload, resent.timestamp),
            (original.marker, &original.payload, original.timestamp)
        );
    }
}

#[test]
fn a_subscriber_short_of_bandwidth_gets_fewer_spatial_layers() {
    let mut w = World::new();
    w.run(90);
    // Layers cost about 100, 350 (with the one below) and 1050 kbit/s: 300 kbit/s is room for the lowest.
    w.remb(0, 300_000);
    let at = w.received[0].len();
    w.run(60);
    let after: Vec<u8> = w.received[0][at..].iter().skip(12).map(|p| describe(p).0).collect();
    assert_eq!(after.iter().max(), Some(&0), "only the lowest spatial layer fits");
    assert!(w.changes.contains(&(w.subs[0], Some(0), LayerReason::Bandwidth)), "{:?}", w.changes);
    assert_well_formed("the capped subscriber", &w.received[0][at..]);
    assert_eq!(w.received[1].iter().rev().take(30).map(|p| describe(p).0).max(), Some(2), "the others keep the top");
}

#[test]
fn a_vp9_stream_without_layers_in_an_svc_track_reaches_everyone_whole() {
    // A browser that cannot send SVC (Firefox) sends plain VP9 where SVC was asked for: no layer indices.
    let mut w = World::new();
    w.set_layer(0, 0);
    for picture in 0..30u16 {
        let keyframe = std::mem::take(&mut w.keyframe_due);
        let d = 0x80 | 0x08 | 0x04 | if keyframe { 0 } else { 0x40 };
        let mut payload = vec![d, 0x80 | (picture >> 8) as u8, picture as u8];
        payload.resize(400, 0xbb);
        let mut packet = w.peers[0].peer.video_packet(VP9_PT, true, u32::from(picture) * 3_000, &payload);
        let from = w.peers[0].addr;
        w.core.handle_receive(w.now, from, &mut packet, &mut w.out);
        w.route();
        w.now += Duration::from_micros(33_333);
    }
    for (i, received) in w.received.iter().enumerate() {
        assert_eq!(received.len(), 30, "subscriber {i} got every picture from the first keyframe");
        assert!(received.iter().all(|p| p.marker), "each packet ends its picture");
        for pair in received.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq.wrapping_add(1));
        }
    }
}
