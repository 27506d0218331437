//! Simulcast: a publisher sends three VP8 layers whose SSRCs the core learns from the MID and RID header
//! extensions; a subscriber starts on the top layer and is moved to the bottom one. Its stream must stay
//! gap-free, with increasing timestamps, and switch exactly at a keyframe of the new layer, which the core asks
//! the publisher for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_dataplane::core::{Core, CoreConfig, DropReason, SubscriptionSpec, Tag, TrackSpec, Transmits};
use sluice_dataplane::packet::codec::Codec;
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{self, Incoming, Received, TestPeer};

const RIDS: [&str; 3] = ["q", "h", "f"];
/// A keyframe on every layer each this many frames, besides those the SFU asks for.
const KEYFRAME_EVERY: u64 = 90;

struct Setup {
    core: Core,
    out: Transmits,
    publisher: TestPeer,
    subscriber: TestPeer,
    pub_addr: SocketAddr,
    sub_addr: SocketAddr,
    now: Instant,
}

fn setup() -> (Setup, sluice_dataplane::core::SubscriptionId) {
    let profile = Profile::AeadAes128Gcm;
    let mut core = Core::new(CoreConfig { participants_max: 4, ..CoreConfig::default() });
    let out = Transmits::with_capacity(32);
    let now = Instant::now();
    let mut peers = testpeer::connect(&mut core, profile, 2, 30_000, now);
    let rids: Vec<Tag> = RIDS.iter().map(|r| Tag::new(r).unwrap()).collect();
    let spec = TrackSpec::simulcast(Tag::new("0").unwrap(), &rids, Codec::Vp8);
    let track = core.add_track(peers[0].id, spec).unwrap();
    let sub =
        core.subscribe(peers[1].id, track, SubscriptionSpec { ssrc: 0x5000, payload_type: None, rtx: None }).unwrap();
    let testpeer::Connected { peer: subscriber, addr: sub_addr, .. } = peers.pop().unwrap();
    let testpeer::Connected { peer: publisher, addr: pub_addr, .. } = peers.pop().unwrap();
    let mut s = Setup { core, out, publisher, subscriber, pub_addr, sub_addr, now };
    s.subscriber.expect_vp8();
    (s, sub)
}

#[derive(Default)]
struct Seen {
    received: Vec<Received>,
    /// Layers the SFU asked the publisher for a keyframe of.
    plis: Vec<u8>,
}

/// Sends `frames` frames on all three layers (one packet each), delivering what the core sends.
fn run(s: &mut Setup, seen: &mut Seen, frames: u64, first_frame: u64, keyframe_asked: &mut [bool; 3]) {
    run_layers(s, seen, frames, first_frame, keyframe_asked, &[0, 1, 2]);
}

/// As [`run`], sending only `layers` (the others paused, as a browser does while its bandwidth estimate is low).
fn run_layers(
    s: &mut Setup,
    seen: &mut Seen,
    frames: u64,
    first_frame: u64,
    keyframe_asked: &mut [bool; 3],
    layers: &[u8],
) {
    for frame in first_frame..first_frame + frames {
        for &layer in layers {
            let keyframe = frame % KEYFRAME_EVERY == 0 || std::mem::take(&mut keyframe_asked[usize::from(layer)]);
            let mut packet = s.publisher.simulcast_media("0", RIDS[usize::from(layer)], layer, keyframe, frame);
            s.core.handle_receive(s.now, s.pub_addr, &mut packet, &mut s.out);
        }
        s.now += Duration::from_millis(33);
        if s.core.poll_timeout().is_some_and(|t| t <= s.now) {
            s.core.handle_timeout(s.now, &mut s.out);
        }
        deliver(s, seen, keyframe_asked);
    }
}

fn deliver(s: &mut Setup, seen: &mut Seen, keyframe_asked: &mut [bool; 3]) {
    let sent: Vec<(SocketAddr, Vec<u8>)> = s.out.iter().map(|(a, b)| (a, b.to_vec())).collect();
    s.out.clear();
    for (to, bytes) in sent {
        if to == s.sub_addr {
            match s.subscriber.receive(&bytes) {
                Incoming::Media(r) => seen.received.push(r),
                Incoming::Reports { .. } => {}
                other => panic!("subscriber got {other:?}"),
            }
        } else if to == s.pub_addr
            && let Incoming::KeyframeRequest { media_ssrc } = s.publisher.receive(&bytes)
        {
            let layer = (0..3u8).find(|l| s.publisher.layer_ssrc(*l) == media_ssrc).expect("a layer's SSRC");
            keyframe_asked[usize::from(layer)] = true;
            seen.plis.push(layer);
        }
    }
}

#[test]
fn a_subscriber_moves_between_layers_at_keyframes_without_gaps() {
    let (mut s, sub) = setup();
    let mut seen = Seen::default();
    let mut asked = [false; 3];
    run(&mut s, &mut seen, 60, 0, &mut asked);
    assert_eq!(s.core.counters().ssrcs_learned, 3, "each layer's SSRC learned from MID/RID");
    let before = seen.received.len();
    assert_eq!(before, 60, "the top layer from its first keyframe on");
    assert!(seen.received.iter().all(|r| r.tag.publisher == 0x200), "layer 2 only");

    // The subscriber's window shrinks: the bottom layer, please.
    let now = s.now;
    s.core.set_layer(now, sub, 0, &mut s.out).unwrap();
    deliver(&mut s, &mut seen, &mut asked);
    assert_eq!(seen.plis, vec![0], "a keyframe of layer 0 was requested");
    run(&mut s, &mut seen, 60, 60, &mut asked);

    let after = &seen.received[before..];
    assert!(after[0].tag.publisher == 0x000 && after[0].keyframe == Some(true), "the switch lands on a keyframe");
    assert!(after.iter().all(|r| r.tag.publisher == 0x000), "layer 0 only after the switch");
    for pair in seen.received.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq.wrapping_add(1), "no gap or repeat in sequence numbers");
        let step = pair[1].timestamp.wrapping_sub(pair[0].timestamp);
        assert!(step > 0 && step < 0x8000_0000, "timestamps advance");
        assert_eq!(pair[1].ssrc, 0x5000);
    }
    assert!(seen.received.iter().all(|r| !r.names_mid_or_rid), "the publisher's MID and RID are not forwarded");
    assert_eq!(s.core.counters().layer_switches, 2, "the first layer, then the move");
    assert!(s.core.counters().fanout_other_layer > 0);
    assert_eq!(s.core.counters().dropped(DropReason::UnknownSsrc), 0);
    assert!(s.core.set_layer(now, sub, 3, &mut s.out).is_err(), "there is no layer 3");
}

#[test]
fn a_subscription_gets_the_best_layer_being_sent_and_moves_up_when_its_own_starts() {
    let (mut s, _) = setup();
    let mut seen = Seen::default();
    let mut asked = [false; 3];
    // The publisher's bandwidth estimate is still low: the top layer is not sent. Its periodic keyframes are
    // far apart, so the middle layer's first delta frames make the core ask for one.
    run_layers(&mut s, &mut seen, 30, 1, &mut asked, &[0, 1]);
    assert!(seen.plis.contains(&1), "a keyframe of the best layer being sent was asked for: {:?}", seen.plis);
    assert!(!seen.received.is_empty(), "the subscription did not wait for a layer that is not coming");
    assert!(seen.received.iter().all(|r| r.tag.publisher == 0x100), "the middle layer, the best being sent");
    assert_eq!(seen.received[0].keyframe, Some(true), "starting at a keyframe");
    let before = seen.received.len();

    // The top layer starts (delta frames first): the subscription moves up at its keyframe, which is asked for.
    run_layers(&mut s, &mut seen, 30, 31, &mut asked, &[0, 1, 2]);
    assert!(seen.plis.contains(&2), "a keyframe of the top layer was asked for: {:?}", seen.plis);
    let after = &seen.received[before..];
    let up = after.iter().position(|r| r.tag.publisher == 0x200).expect("the top layer arrives");
    assert_eq!(after[up].keyframe, Some(true), "the move lands on a keyframe");
    assert!(after[up..].iter().all(|r| r.tag.publisher == 0x200), "and stays there");

    // The top layer pauses again: after a second without it, the middle layer's keyframe takes over.
    let mut frames = 61;
    while seen.received.last().is_none_or(|r| r.tag.publisher != 0x100) && frames < 200 {
        run_layers(&mut s, &mut seen, 1, frames, &mut asked, &[0, 1]);
        frames += 1;
    }
    assert_eq!(seen.received.last().map(|r| r.tag.publisher), Some(0x100), "back to the middle layer");
    let paused_for = Duration::from_millis(33) * (frames - 61) as u32;
    assert!(paused_for <= Duration::from_millis(1_600), "the fallback took {paused_for:?}");
    for pair in seen.received.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq.wrapping_add(1), "no gap or repeat in sequence numbers");
    }
}

#[test]
fn packets_naming_no_announced_layer_are_refused() {
    let (mut s, _) = setup();
    let mut packet = s.publisher.simulcast_media("9", "q", 0, true, 0);
    s.core.handle_receive(s.now, s.pub_addr, &mut packet, &mut s.out);
    let mut packet = s.publisher.simulcast_media("0", "x", 1, true, 0);
    s.core.handle_receive(s.now, s.pub_addr, &mut packet, &mut s.out);
    assert_eq!(s.core.counters().dropped(DropReason::UnknownSsrc), 2);
    assert_eq!(s.core.counters().ssrcs_learned, 0);
}
