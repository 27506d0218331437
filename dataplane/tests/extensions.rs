//! The header extensions the SFU owns are rewritten per subscriber: the transport-wide sequence number counts
//! every packet we send one participant, across all the tracks it receives (so its congestion controller's
//! feedback describes our transport, not the publishers'), and abs-send-time carries our send time.

use std::time::{Duration, Instant};

use sluice_dataplane::core::{Core, CoreConfig, MediaKind, SubscriptionSpec, TrackSpec, Transmits};
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{self, Incoming};

#[test]
fn transport_sequence_numbers_count_our_packets_per_subscriber_and_abs_send_time_is_ours() {
    let profile = Profile::AeadAes128Gcm;
    let mut core = Core::new(CoreConfig { participants_max: 4, ..CoreConfig::default() });
    let mut out = Transmits::with_capacity(16);
    let start = Instant::now();
    // The wallclock: 1_800_000_000 s after the Unix epoch at `start`.
    core.set_wallclock(start, Duration::from_secs(1_800_000_000));
    let mut peers = testpeer::connect(&mut core, profile, 3, 31_000, start);
    // Participants 0 and 1 publish; 2 subscribes to both.
    for p in 0..2 {
        let track = core.add_track(peers[p].id, TrackSpec::single(peers[p].peer.ssrc, MediaKind::Video)).unwrap();
        core.subscribe(peers[2].id, track, SubscriptionSpec { ssrc: 0x7000 + p as u32, payload_type: None, rtx: None })
            .unwrap();
    }
    let mut received = vec![];
    let mut now = start;
    for k in 0..20u16 {
        now += Duration::from_millis(10);
        let p = usize::from(k % 2);
        // Publishers number their own transports; the SFU must not pass those numbers on.
        let mut packet = peers[p].peer.media_with_extensions(300, u64::from(k), 40_000 + 7 * k + p as u16, 0x00ab_cdef);
        let addr = peers[p].addr;
        core.handle_receive(now, addr, &mut packet, &mut out);
        let sent: Vec<Vec<u8>> = out.iter().map(|(_, b)| b.to_vec()).collect();
        out.clear();
        for bytes in sent {
            match peers[2].peer.receive(&bytes) {
                Incoming::Media(r) => received.push((now, r)),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(received.len(), 20);
    for (i, (at, r)) in received.iter().enumerate() {
        assert_eq!(r.transport_seq, Some(i as u16), "one counter for the subscriber's transport, across tracks");
        let since = at.duration_since(start) + Duration::from_secs(1_800_000_000 + 2_208_988_800);
        let ntp = (since.as_secs() << 32) | ((u64::from(since.subsec_nanos()) << 32) / 1_000_000_000);
        assert_eq!(r.abs_send_time, Some(((ntp >> 14) & 0x00ff_ffff) as u32), "our send time, 6.18 fixed point");
    }
}

#[test]
fn publishers_get_transport_wide_feedback_on_when_their_packets_arrived() {
    let profile = Profile::AeadAes128Gcm;
    let mut core = Core::new(CoreConfig { participants_max: 4, ..CoreConfig::default() });
    let mut out = Transmits::with_capacity(16);
    let start = Instant::now();
    let mut peers = testpeer::connect(&mut core, profile, 1, 32_000, start);
    let publisher = &mut peers[0];
    core.add_track(publisher.id, TrackSpec::single(publisher.peer.ssrc, MediaKind::Video)).unwrap();
    // Transport numbers 500..510 sent 7 ms apart; 503 and 507 are lost on the way.
    let mut arrived = vec![];
    let mut now = start;
    for k in 0..10u16 {
        now += Duration::from_millis(7);
        let packet = publisher.peer.media_with_extensions(200, u64::from(k), 500 + k, 0);
        if k == 3 || k == 7 {
            continue;
        }
        core.handle_receive(now, publisher.addr, &mut packet.clone(), &mut out);
        arrived.push((500 + k, now));
    }
    out.clear();
    now += Duration::from_millis(150);
    core.handle_timeout(now, &mut out);
    let mut feedback = vec![];
    for (to, bytes) in out.iter() {
        assert_eq!(to, publisher.addr);
        if let Incoming::TransportFeedback(packets) = publisher.peer.receive(bytes) {
            feedback.extend(packets);
        }
    }
    assert_eq!(core.counters().transport_feedback_sent, 1);
    let seqs: Vec<u16> = feedback.iter().map(|p| p.seq).collect();
    assert_eq!(seqs, (500..510).collect::<Vec<_>>(), "every number from the first to the last seen");
    for p in &feedback {
        let expected = arrived.iter().find(|(seq, _)| *seq == p.seq);
        assert_eq!(p.arrival_us.is_some(), expected.is_some(), "packet {} reported {:?}", p.seq, p.arrival_us);
    }
    // Arrival times keep their spacing (the reference is arbitrary): 7 ms apart, to 250 µs.
    let times: Vec<i64> = feedback.iter().filter_map(|p| p.arrival_us).collect();
    for (pair, truth) in times.windows(2).zip(arrived.windows(2)) {
        let want = truth[1].1.duration_since(truth[0].1).as_micros() as i64;
        assert!((pair[1] - pair[0] - want).abs() < 250, "{} vs {want}", pair[1] - pair[0]);
    }
}
