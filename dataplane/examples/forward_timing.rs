//! A plain timing loop beside the criterion benchmark, alternating the floor (bare AES-128-GCM) and the
//! forwarding path in rounds so both see the same machine conditions:
//!
//!     cargo run --release -p sluice-dataplane --example forward_timing -- 10 [gcm|gcm256|cm] [ext]
//!
//! Prints ns per sent packet for both and their ratio, per round and as the median.

use std::hint::black_box;
use std::time::Instant;

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sluice_dataplane::core::{Core, CoreConfig, MediaKind, SubscriptionSpec, TrackSpec, Transmits};
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer;

const PAYLOAD: usize = 1200;
const ROUNDS: usize = 7;
const PACKETS: usize = 4_000;

fn main() {
    let n: usize = std::env::args().nth(1).map_or(10, |a| a.parse().expect("subscriber count"));
    // `ext` as third argument: packets carry the transport-wide sequence number and abs-send-time extensions.
    let extensions = std::env::args().nth(3).as_deref() == Some("ext");
    let profile = match std::env::args().nth(2).as_deref() {
        Some("cm") => Profile::Aes128CmHmacSha1_80,
        Some("gcm256") => Profile::AeadAes256Gcm,
        _ => Profile::AeadAes128Gcm,
    };
    let mut core = Core::new(CoreConfig { participants_max: n + 1, ..CoreConfig::default() });
    let mut out = Transmits::with_capacity(n + 8);
    let now = Instant::now();
    let mut peers = testpeer::connect(&mut core, profile, n + 1, 1_024, now);
    let testpeer::Connected { id: publisher_id, peer: mut publisher, addr } = peers.remove(0);
    let track = core.add_track(publisher_id, TrackSpec::single(publisher.ssrc, MediaKind::Video)).unwrap();
    for (i, p) in peers.iter().enumerate() {
        core.subscribe(p.id, track, SubscriptionSpec { ssrc: 0x4000 + i as u32, payload_type: None, rtx: None })
            .unwrap();
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7u8; 16]).unwrap());
    let mut payload = vec![0u8; PAYLOAD];
    let mut ratios = vec![];
    let mut t = 0u64;
    for round in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..PACKETS * n {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
            let tag = key
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&[0u8; 12]), &mut payload)
                .unwrap();
            let _ = black_box(tag);
        }
        let floor_ns = start.elapsed().as_nanos() as f64 / (PACKETS * n) as f64;

        let mut packets: Vec<Vec<u8>> = (0..PACKETS)
            .map(|_| {
                t += 1;
                if extensions {
                    publisher.media_with_extensions(PAYLOAD, t, t as u16, 0)
                } else {
                    publisher.media(PAYLOAD, t)
                }
            })
            .collect();
        let sent_before = core.counters().rtp_out;
        let start = Instant::now();
        for p in packets.iter_mut() {
            out.clear();
            core.handle_receive(now, addr, p, &mut out);
        }
        let elapsed = start.elapsed();
        let sent = core.counters().rtp_out - sent_before;
        assert_eq!(sent, (PACKETS * n) as u64, "every packet reached every subscriber");
        let forward_ns = elapsed.as_nanos() as f64 / sent as f64;
        println!(
            "round {round}: floor {floor_ns:.0} ns, forward {forward_ns:.0} ns per sent packet, ratio {:.2}",
            forward_ns / floor_ns
        );
        ratios.push((forward_ns / floor_ns, floor_ns, forward_ns));
    }
    ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, floor, forward) = ratios[ROUNDS / 2];
    println!(
        "{profile:?} 1 -> {n}: median ratio {ratio:.2} (floor {floor:.0} ns, forward {forward:.0} ns per sent packet)"
    );
}
