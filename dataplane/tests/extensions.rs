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
