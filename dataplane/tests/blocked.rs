//! A track the control plane blocks (a host stopped it, or revoked the grant to publish it) is not forwarded: its
//! packets are decrypted, counted as `DropReason::Blocked` and dropped; unblocked, the same stream forwards again
//! without a gap in decryption.

use std::time::{Duration, Instant};

use sluice_dataplane::core::{Core, CoreConfig, DropReason, MediaKind, SubscriptionSpec, TrackSpec, Transmits};
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{self, Incoming};

#[test]
fn a_blocked_track_is_dropped_and_counted_until_unblocked() {
    let mut core = Core::new(CoreConfig { participants_max: 4, ..CoreConfig::default() });
    let mut out = Transmits::with_capacity(16);
    let start = Instant::now();
    let mut peers = testpeer::connect(&mut core, Profile::AeadAes128Gcm, 2, 33_000, start);
    let track = core.add_track(peers[0].id, TrackSpec::single(peers[0].peer.ssrc, MediaKind::Audio)).unwrap();
    core.subscribe(peers[1].id, track, SubscriptionSpec { ssrc: 0x5150, payload_type: None, rtx: None }).unwrap();
    let mut now = start;
    let mut send = |core: &mut Core, peers: &mut Vec<testpeer::Connected>, k: u64| -> usize {
        now += Duration::from_millis(20);
        let mut packet = peers[0].peer.media(160, k);
        let addr = peers[0].addr;
        core.handle_receive(now, addr, &mut packet, &mut out);
        let mut media = 0;
        for (_, bytes) in out.iter() {
            if matches!(peers[1].peer.receive(bytes), Incoming::Media(_)) {
                media += 1;
            }
        }
        out.clear();
        media
    };
    let forwarded: usize = (0..10).map(|k| send(&mut core, &mut peers, k)).sum();
    assert_eq!(forwarded, 10);

    core.block_track(track, true).unwrap();
    let forwarded: usize = (10..30).map(|k| send(&mut core, &mut peers, k)).sum();
    assert_eq!(forwarded, 0, "nothing of a blocked track reaches its subscriber");
    assert_eq!(core.counters().drops[DropReason::Blocked as usize], 20);
    assert_eq!(core.counters().drops[DropReason::AuthFailed as usize], 0, "still decrypted");

    core.block_track(track, false).unwrap();
    let forwarded: usize = (30..40).map(|k| send(&mut core, &mut peers, k)).sum();
    assert_eq!(forwarded, 10, "forwarding resumes on the same stream");
    core.remove_track(track).unwrap();
    assert!(core.block_track(track, true).is_err(), "an unknown track is an error");
}
