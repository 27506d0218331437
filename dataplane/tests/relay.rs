//! Cross-worker fan-out, sans-IO: a track published on core A is decrypted once there and relayed to core B,
//! whose mirror encrypts for B's subscribers. Keyframe requests and NACKs of B's subscribers are answered, and a
//! pool held by a slow worker ends in counted drops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_dataplane::core::{
    Core, CoreConfig, DropReason, Event, MediaKind, RelayPacket, SubscriptionSpec, TrackSpec, Transmits,
};
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{self, Connected, Incoming};

const KEY: u64 = 7;
const SUB_SSRC: u32 = 0x7000;

struct Meeting {
    a: Core,
    b: Core,
    a_peers: Vec<Connected>,
    b_peers: Vec<Connected>,
    now: Instant,
}

/// A: the publisher and one local subscriber. B: three subscribers of the mirror.
fn meeting(config: CoreConfig) -> Meeting {
    let now = Instant::now();
    let profile = Profile::AeadAes128Gcm;
    let mut a = Core::new(config.clone());
    let mut b = Core::new(config);
    let a_peers = testpeer::connect(&mut a, profile, 2, 31_000, now);
    let b_peers = testpeer::connect(&mut b, profile, 3, 32_000, now);
    let spec = TrackSpec::single(a_peers[0].peer.ssrc, MediaKind::Video);
    let track = a.add_track(a_peers[0].id, spec).unwrap();
    let sub = SubscriptionSpec { ssrc: SUB_SSRC, payload_type: None, rtx: None };
    a.subscribe(a_peers[1].id, track, sub).unwrap();
    a.relay_track(track, KEY, 1).unwrap();
    let mirror = b.add_mirror_track(KEY, spec).unwrap();
    for p in &b_peers {
        b.subscribe(p.id, mirror, sub).unwrap();
    }
    Meeting { a, b, a_peers, b_peers, now }
}

fn deliver(out: &mut Transmits, peers: &mut [Connected]) -> Vec<(usize, Incoming)> {
    let got = out
        .iter()
        .map(|(to, bytes)| {
            let i = peers.iter().position(|p| p.addr == to).expect("sent to a participant");
            (i, peers[i].peer.receive(bytes))
        })
        .collect();
    out.clear();
    got
}

#[test]
fn a_relayed_track_reaches_every_worker_decrypted_once() {
    let mut m = meeting(CoreConfig::default());
    let (mut out_a, mut out_b) = (Transmits::with_capacity(64), Transmits::with_capacity(64));
    let mut seqs: Vec<Vec<u16>> = vec![Vec::new(); 4];
    for n in 0..100u64 {
        let from: SocketAddr = m.a_peers[0].addr;
        let mut packet = m.a_peers[0].peer.media(1000, n);
        m.a.handle_receive(m.now, from, &mut packet, &mut out_a);
        assert_eq!(out_a.relays().len(), 1, "one relay per packet, whatever the subscribers on B");
        assert_eq!(out_a.relays()[0].workers, 1 << 1);
        let relayed: Vec<Arc<RelayPacket>> = out_a.relays().iter().map(|r| Arc::clone(&r.packet)).collect();
        for (i, incoming) in deliver(&mut out_a, &mut m.a_peers) {
            let Incoming::Media(r) = incoming else { panic!("A's subscriber got {incoming:?}") };
            seqs[i - 1].push(r.seq);
        }
        for packet in relayed {
            m.b.handle_relay(m.now, &packet, &mut out_b);
        }
        for (i, incoming) in deliver(&mut out_b, &mut m.b_peers) {
            let Incoming::Media(r) = incoming else { panic!("B's subscriber got {incoming:?}") };
            assert_eq!((r.ssrc, r.tag.seq), (SUB_SSRC, n));
            seqs[i + 1].push(r.seq);
        }
        m.now += Duration::from_millis(10);
    }
    for s in &seqs {
        assert_eq!(s.len(), 100, "every subscriber on both workers got every packet");
        assert!(s.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "gap-free: {s:?}");
    }
    assert_eq!(m.a.counters().rtp_in, 100);
    assert_eq!(m.b.counters().rtp_in, 0, "B decrypted nothing");
    assert_eq!(m.b.counters().relays_in, 100);
    assert_eq!(m.b.counters().rtp_out, 300);
}

#[test]
fn a_mirror_asks_the_publishers_worker_for_keyframes_and_answers_nacks_itself() {
    let mut m = meeting(CoreConfig::default());
    let (mut out_a, mut out_b) = (Transmits::with_capacity(64), Transmits::with_capacity(64));
    let mut got = Vec::new();
    for n in 0..10u64 {
        let from = m.a_peers[0].addr;
        let mut packet = m.a_peers[0].peer.media(500, n);
        m.a.handle_receive(m.now, from, &mut packet, &mut out_a);
        let relayed: Vec<_> = out_a.relays().iter().map(|r| Arc::clone(&r.packet)).collect();
        out_a.clear();
        for packet in relayed {
            m.b.handle_relay(m.now, &packet, &mut out_b);
        }
        // Subscriber 0 on B loses packet 4 on its way.
        let lost_on_the_way: Vec<(SocketAddr, Vec<u8>)> = out_b.iter().map(|(to, b)| (to, b.to_vec())).collect();
        out_b.clear();
        for (to, bytes) in lost_on_the_way {
            if to == m.b_peers[0].addr && n != 4 {
                let decrypted = m.b_peers[0].peer.receive(&bytes);
                let Incoming::Media(r) = decrypted else { panic!("got {decrypted:?}") };
                got.push(r);
            }
        }
    }
    // A PLI from a subscriber on B becomes an event there, and a PLI to the publisher from A.
    let from = m.b_peers[0].addr;
    let mut pli = m.b_peers[0].peer.pli(SUB_SSRC);
    m.b.handle_receive(m.now, from, &mut pli, &mut out_b);
    assert!(out_b.is_empty(), "B has no publisher to send a PLI to");
    let events: Vec<Event> =
        std::iter::from_fn(|| m.b.poll_event()).filter(|e| !matches!(e, Event::Nominated { .. })).collect();
    assert_eq!(events, vec![Event::KeyframeNeeded { key: KEY, layer: 0 }]);
    m.a.request_relayed_keyframe(m.now, KEY, 0, &mut out_a);
    let at_publisher = deliver(&mut out_a, &mut m.a_peers);
    let want = m.a_peers[0].peer.ssrc;
    assert!(matches!(at_publisher[..], [(0, Incoming::KeyframeRequest { media_ssrc })] if media_ssrc == want));
    // A NACK from B's subscriber is answered from B's own copy of the packets.
    let lost = got[3].seq.wrapping_add(1);
    assert_eq!(got[4].seq, lost.wrapping_add(1));
    let mut nack = m.b_peers[0].peer.nack(SUB_SSRC, &[lost]);
    m.b.handle_receive(m.now, from, &mut nack, &mut out_b);
    let again = deliver(&mut out_b, &mut m.b_peers);
    assert!(
        matches!(again[..], [(0, Incoming::Media(r))] if r.seq == lost && r.tag.seq == 4),
        "retransmitted from the mirror: {again:?}"
    );
}

#[test]
fn a_pool_held_by_a_slow_worker_drops_and_counts_then_recovers() {
    let mut m = meeting(CoreConfig { relay_pool_packets: 4, ..CoreConfig::default() });
    let mut out = Transmits::with_capacity(64);
    let mut held = Vec::new();
    for n in 0..6u64 {
        let from = m.a_peers[0].addr;
        let mut packet = m.a_peers[0].peer.media(500, n);
        m.a.handle_receive(m.now, from, &mut packet, &mut out);
        held.extend(out.relays().iter().map(|r| Arc::clone(&r.packet)));
        out.clear();
    }
    assert_eq!(held.len(), 4, "the pool has four packets");
    assert_eq!(m.a.counters().dropped(DropReason::RelayPoolEmpty), 2);
    assert_eq!(m.a.counters().rtp_out, 6, "local subscribers do not suffer");
    held.clear();
    let from = m.a_peers[0].addr;
    let mut packet = m.a_peers[0].peer.media(500, 6);
    m.a.handle_receive(m.now, from, &mut packet, &mut out);
    assert_eq!(out.relays().len(), 1, "released packets are reused");
}
