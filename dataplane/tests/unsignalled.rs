//! A stream the SDP did not name by SSRC (GStreamer's webrtcbin and other stacks answer without `a=ssrc`) is
//! learned from the first packet whose MID header extension names its section, then forwarded like any other.

use std::time::{Duration, Instant};

use sluice_dataplane::core::{Core, CoreConfig, DropReason, MediaKind, SubscriptionSpec, Tag, TrackSpec, Transmits};
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{self, Incoming};

#[test]
fn a_single_stream_named_by_its_mid_alone_is_learned_and_forwarded() {
    let mut core = Core::new(CoreConfig { participants_max: 4, ..CoreConfig::default() });
    let mut out = Transmits::with_capacity(16);
    let start = Instant::now();
    let mut peers = testpeer::connect(&mut core, Profile::AeadAes128Gcm, 2, 35_000, start);
    let spec = TrackSpec::by_mid(Tag::new("1").unwrap(), MediaKind::Video);
    let track = core.add_track(peers[0].id, spec).unwrap();
    core.subscribe(peers[1].id, track, SubscriptionSpec { ssrc: 0x6161, payload_type: None, rtx: None }).unwrap();
    peers[1].peer.expect_vp8();
    let mut now = start;
    let mut forwarded = 0;
    for k in 0..10u64 {
        now += Duration::from_millis(33);
        // A packet naming another section is not this stream.
        let mid = if k == 0 { "7" } else { "1" };
        let mut packet = peers[0].peer.simulcast_packet(mid, "", 0, Some(k == 1), 200, k * 33_000);
        let addr = peers[0].addr;
        core.handle_receive(now, addr, &mut packet, &mut out);
        for (_, bytes) in out.iter() {
            if matches!(peers[1].peer.receive(bytes), Incoming::Media(_)) {
                forwarded += 1;
            }
        }
        out.clear();
    }
    assert_eq!(core.counters().drops[DropReason::UnknownSsrc as usize], 1, "the packet naming another MID");
    assert_eq!(core.counters().ssrcs_learned, 1);
    let drops: Vec<(DropReason, u64)> =
        DropReason::ALL.iter().map(|r| (*r, core.counters().drops[*r as usize])).filter(|(_, n)| *n > 0).collect();
    assert_eq!(forwarded, 9, "drops: {drops:?}");
}
