//! Liveness is any authenticated traffic (issue: non-browser stacks keep their ICE pair up with Binding
//! indications, and a peer that sends media is alive whatever its checks): a participant that sends only
//! indications, or only SRTP, stays; one that sends nothing, or only indications naming another ufrag, is gone
//! after the consent timeout.

use std::time::{Duration, Instant};

use sluice_dataplane::core::{Core, CoreConfig, DropReason, Event, MediaKind, TrackSpec, Transmits};
use sluice_dataplane::packet::stun;
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer;

const TIMEOUT: Duration = Duration::from_secs(10);

fn indication(username: Option<&str>) -> Vec<u8> {
    let mut buf = vec![0u8; 200];
    let len = {
        let mut w = stun::Writer::new(&mut buf, stun::BINDING_INDICATION, [7; 12]).unwrap();
        if let Some(user) = username {
            w.attr(stun::attr::USERNAME, user.as_bytes()).unwrap();
        }
        w.fingerprint().unwrap();
        w.len()
    };
    buf.truncate(len);
    buf
}

/// Runs `seconds` of one-per-second traffic from participant `who` (`what` makes each datagram, `None` sends
/// nothing) and returns whether the core declared it gone.
fn gone_after(mut what: impl FnMut(&mut testpeer::Connected, u64) -> Option<Vec<u8>>) -> (bool, u64) {
    let mut core = Core::new(CoreConfig { participants_max: 4, consent_timeout: TIMEOUT, ..CoreConfig::default() });
    let mut out = Transmits::with_capacity(16);
    let start = Instant::now();
    let mut peers = testpeer::connect(&mut core, Profile::AeadAes128Gcm, 1, 34_000, start);
    core.add_track(peers[0].id, TrackSpec::single(peers[0].peer.ssrc, MediaKind::Audio)).unwrap();
    let mut gone = false;
    for second in 1..=(3 * TIMEOUT.as_secs()) {
        let now = start + Duration::from_secs(second);
        if let Some(mut datagram) = what(&mut peers[0], second) {
            let addr = peers[0].addr;
            core.handle_receive(now, addr, &mut datagram, &mut out);
        }
        core.handle_timeout(now, &mut out);
        out.clear();
        while let Some(event) = core.poll_event() {
            gone |= matches!(event, Event::Gone { .. });
        }
    }
    (gone, core.counters().drops[DropReason::StunIndication as usize])
}

#[test]
fn indications_and_media_keep_a_participant_and_silence_does_not() {
    let (gone, _) = gone_after(|_, _| None);
    assert!(gone, "nothing at all for three timeouts: gone");
    let (gone, counted) = gone_after(|_, _| Some(indication(None)));
    assert!(!gone, "Binding indications from its address keep it");
    assert_eq!(counted, 30, "each indication is counted (not forwarded)");
    // `testpeer::connect` gives participant 0 our ufrag "s0".
    let (gone, _) = gone_after(|_, _| Some(indication(Some("s0:peer0"))));
    assert!(!gone, "indications naming its ufrag keep it");
    let (gone, _) = gone_after(|_, _| Some(indication(Some("someone-else:remote"))));
    assert!(gone, "indications naming another ufrag do not");
    let (gone, _) = gone_after(|p, s| Some(p.peer.media(100, s * 1_000_000)));
    assert!(!gone, "media that authenticates keeps it");
}
