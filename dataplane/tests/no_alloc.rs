//! The packet path allocates nothing: after warm-up, forwarding media to subscribers, answering ICE checks,
//! limiting keyframe requests and running timers make zero heap allocations. A counting global allocator
//! (this test file is its own binary) counts allocations made on this thread.

use std::time::{Duration, Instant};

use sluice_dataplane::core::{Core, CoreConfig, MediaKind, SubscriptionSpec, TrackSpec, Transmits};
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{self, Incoming};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

const SUBSCRIBERS: usize = 10;

fn run(profile: Profile) {
    let mut core = Core::new(CoreConfig { participants_max: 16, ..CoreConfig::default() });
    let mut out = Transmits::with_capacity(64);
    let start = Instant::now();
    // With a wallclock the timers also send Sender and Receiver Reports: covered below.
    core.set_wallclock(start, Duration::from_secs(1_800_000_000));
    let mut peers = testpeer::connect(&mut core, profile, SUBSCRIBERS + 1, 20_000, start);
    let track = core.add_track(peers[0].id, TrackSpec::single(peers[0].peer.ssrc, MediaKind::Video)).unwrap();
    for (i, p) in peers.iter().enumerate().skip(1) {
        core.subscribe(p.id, track, SubscriptionSpec { ssrc: 0x3000 + i as u32, payload_type: Some(96), rtx: None })
            .unwrap();
    }

    // Everything the measured loop feeds in is built first: the test peers allocate, the core must not.
    let (publisher_addr, subscriber_addr) = (peers[0].addr, peers[1].addr);
    // With transport-wide sequence numbers and abs-send-time, so their rewriting and our feedback are covered.
    let mut media: Vec<Vec<u8>> =
        (0..2_000).map(|i| peers[0].peer.media_with_extensions(1_100, i, i as u16, 0)).collect();
    let mut checks: Vec<Vec<u8>> = (0..100).map(|_| peers[1].peer.binding_request(false)).collect();
    let mut plis: Vec<Vec<u8>> = (0..100).map(|_| peers[1].peer.pli(0x3001)).collect();
    // The subscriber's transport-wide feedback on the 20 packets before each: read into the estimator.
    let mut feedbacks: Vec<Vec<u8>> = (0..100u16)
        .map(|k| {
            let base = (k * 20).wrapping_sub(20);
            let arrivals: Vec<Option<i64>> = (0..20).map(|j| Some(i64::from(base.wrapping_add(j)) * 2_000)).collect();
            peers[1].peer.transport_feedback(base, k as u8, &arrivals)
        })
        .collect();

    let mut now = start;
    let mut step = |core: &mut Core, out: &mut Transmits, i: usize, now: Instant| {
        core.handle_receive(now, publisher_addr, &mut media[i], out);
        if i.is_multiple_of(20) {
            core.handle_receive(now, subscriber_addr, &mut checks[i / 20], out);
            core.handle_receive(now, subscriber_addr, &mut plis[i / 20], out);
            core.handle_receive(now, subscriber_addr, &mut feedbacks[i / 20], out);
        }
        if core.poll_timeout().is_some_and(|t| t <= now) {
            core.handle_timeout(now, out);
        }
        while core.poll_event().is_some() {}
    };
    for i in 0..500 {
        step(&mut core, &mut out, i, now);
        out.clear();
    }
    let forwarded_before = core.counters().rtp_out;
    let before = allocations();
    for i in 500..2_000 {
        now += Duration::from_millis(2);
        step(&mut core, &mut out, i, now);
        out.clear();
    }
    let made = allocations() - before;
    let forwarded = core.counters().rtp_out - forwarded_before;
    assert_eq!(forwarded, 1_500 * SUBSCRIBERS as u64, "{profile:?}: every packet reached every subscriber");
    let c = core.counters();
    assert!(c.keyframe_requests_forwarded > 0 && c.stun_out > SUBSCRIBERS as u64 + 1);
    assert!(c.receiver_reports_sent > 0, "the measured loop ran the report timer");
    assert!(c.transport_feedback_sent > 0, "and the transport-wide feedback timer");
    assert_eq!(made, 0, "{profile:?}: {made} heap allocations while forwarding {forwarded} packets");
    let estimate = core.participant_stats(peers[1].id).unwrap().estimate_bps;
    assert!(estimate.is_some(), "{profile:?}: the subscriber's feedback was read into its estimate");

    // And what was forwarded is real SRTP the subscriber can open.
    core.handle_receive(now, publisher_addr, &mut peers[0].peer.media(1_100, 9), &mut out);
    let (_, datagram) = out.iter().find(|(to, _)| *to == subscriber_addr).unwrap();
    assert!(matches!(peers[1].peer.receive(datagram), Incoming::Media(_)));
}

#[test]
fn forwarding_allocates_nothing_per_packet() {
    run(Profile::AeadAes128Gcm);
    run(Profile::Aes128CmHmacSha1_80);
}
