//! The header extensions the SFU owns are rewritten per subscriber: the transport-wide sequence number counts
//! every packet we send one participant, across all the tracks it receives (so its congestion controller's
//! feedback describes our transport, not the publishers'), and abs-send-time carries our send time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_dataplane::core::{Core, CoreConfig, IceCredentials, MediaKind, SubscriptionSpec, TrackSpec, Transmits};
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{Incoming, Keys, TestPeer};

#[test]
fn transport_sequence_numbers_count_our_packets_per_subscriber_and_abs_send_time_is_ours() {
    let profile = Profile::AeadAes128Gcm;
    let mut core = Core::new(CoreConfig { participants_max: 4, ..CoreConfig::default() });
    let mut out = Transmits::with_capacity(16);
    let start = Instant::now();
    // The wallclock: 1_800_000_000 s after the Unix epoch at `start`.
    core.set_wallclock(start, Duration::from_secs(1_800_000_000));
    let mut peers = vec![];
    for i in 0..3u32 {
        let (ufrag, pwd) = (format!("s{i}"), format!("password-password-{i}"));
        let id = core.add_participant(IceCredentials { ufrag: ufrag.clone(), pwd: pwd.clone() }).unwrap();
        let (up, down) = (Keys::from_seed(profile, u64::from(2 * i)), Keys::from_seed(profile, u64::from(2 * i + 1)));
        core.set_srtp_keys(id, profile, (&down.key, &down.salt), (&up.key, &up.salt)).unwrap();
        let mut peer = TestPeer::new(i, &ufrag, &pwd, profile, &up, &down);
        let addr: SocketAddr = format!("127.0.0.1:{}", 31_000 + i).parse().unwrap();
        core.handle_receive(start, addr, &mut peer.binding_request(true), &mut out);
        out.clear();
        peers.push((id, peer, addr));
    }
    // Participants 0 and 1 publish; 2 subscribes to both.
    for p in 0..2 {
        let track = core.add_track(peers[p].0, TrackSpec::single(peers[p].1.ssrc, MediaKind::Video)).unwrap();
        core.subscribe(peers[2].0, track, SubscriptionSpec { ssrc: 0x7000 + p as u32, payload_type: None, rtx: None })
            .unwrap();
    }
    let mut received = vec![];
    let mut now = start;
    for k in 0..20u16 {
        now += Duration::from_millis(10);
        let p = usize::from(k % 2);
        // Publishers number their own transports; the SFU must not pass those numbers on.
        let mut packet = peers[p].1.media_with_extensions(300, u64::from(k), 40_000 + 7 * k + p as u16, 0x00ab_cdef);
        let addr = peers[p].2;
        core.handle_receive(now, addr, &mut packet, &mut out);
        let sent: Vec<Vec<u8>> = out.iter().map(|(_, b)| b.to_vec()).collect();
        out.clear();
        for bytes in sent {
            match peers[2].1.receive(&bytes) {
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
