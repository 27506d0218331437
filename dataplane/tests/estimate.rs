//! The core's bandwidth estimate for a subscriber (issue 24, first part): what it forwards is recorded by
//! transport-wide sequence number, the subscriber's transport-wide feedback is read against it, and the estimate
//! and acknowledged rate show in its stats: near the rate sent while delays are steady, and down when the
//! subscriber reports a queue that grows.

use std::time::{Duration, Instant};

use sluice_dataplane::core::{Core, CoreConfig, MediaKind, SubscriptionSpec, TrackSpec, Transmits};
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{self, Incoming};

/// 1000-byte packets every 8 ms (about 1 Mbit/s with headers) for `packets`, reported every 100 ms by the
/// subscriber with arrival times `delay(i)` µs after they were sent. Returns the last stats' estimate and acked
/// rate.
fn run(delay: impl Fn(u64) -> i64, packets: u64) -> (Option<u64>, Option<u64>) {
    let profile = Profile::AeadAes128Gcm;
    let mut core = Core::new(CoreConfig { participants_max: 4, ..CoreConfig::default() });
    let mut out = Transmits::with_capacity(16);
    let start = Instant::now();
    let mut peers = testpeer::connect(&mut core, profile, 2, 31_400, start);
    let track = core.add_track(peers[0].id, TrackSpec::single(peers[0].peer.ssrc, MediaKind::Video)).unwrap();
    core.subscribe(peers[1].id, track, SubscriptionSpec { ssrc: 0x7000, payload_type: None, rtx: None }).unwrap();
    let (mut pending, mut base, mut feedbacks) = (Vec::new(), None::<u16>, 0u8);
    let mut now = start;
    for i in 0..packets {
        now += Duration::from_millis(8);
        let mut packet = peers[0].peer.media_with_extensions(1000, i, i as u16, 0);
        core.handle_receive(now, peers[0].addr, &mut packet, &mut out);
        let sent: Vec<Vec<u8>> = out.iter().map(|(_, b)| b.to_vec()).collect();
        out.clear();
        for bytes in sent {
            if let Incoming::Media(r) = peers[1].peer.receive(&bytes) {
                let seq = r.transport_seq.expect("our transport-wide number");
                base.get_or_insert(seq);
                let sent_us = (i as i64 + 1) * 8_000;
                pending.push(Some(sent_us + delay(i)));
            }
        }
        // Every 100 ms, as Chrome: everything since the last report.
        if i % 12 == 11 && !pending.is_empty() {
            let feedback = peers[1].peer.transport_feedback(base.unwrap(), feedbacks, &pending);
            core.handle_receive(now, peers[1].addr, &mut feedback.clone(), &mut out);
            out.clear();
            base = Some(base.unwrap().wrapping_add(pending.len() as u16));
            pending.clear();
            feedbacks = feedbacks.wrapping_add(1);
        }
    }
    let stats = core.participant_stats(peers[1].id).unwrap();
    (stats.estimate_bps, stats.acked_bps)
}

#[test]
fn a_subscribers_feedback_gives_its_estimate_and_acknowledged_rate() {
    let (estimate, acked) = run(|_| 20_000, 500);
    let (estimate, acked) = (estimate.expect("an estimate once feedback came"), acked.expect("an acked rate"));
    println!("steady: estimate {estimate} bit/s, acknowledged {acked} bit/s");
    // 1000 bytes of payload plus headers and tag every 8 ms.
    assert!((900_000..=1_200_000).contains(&acked), "acked {acked}");
    assert!(estimate >= 300_000, "no congestion: the estimate does not fall: {estimate}");
}

#[test]
fn a_queue_that_grows_brings_the_estimate_under_what_gets_through() {
    // From packet 200 on, each packet waits 2 ms longer than the one before: the link cannot carry the rate.
    let (estimate, acked) = run(|i| 20_000 + 2_000 * i.saturating_sub(200) as i64, 400);
    let (estimate, acked) = (estimate.unwrap(), acked.unwrap());
    println!("growing queue: estimate {estimate} bit/s, acknowledged {acked} bit/s");
    assert!(estimate < acked, "overuse: the estimate goes under the acknowledged rate ({estimate} vs {acked})");
}
