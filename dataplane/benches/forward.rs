//! Time per forwarded packet through the core: one publisher to N subscribers, 1200-byte payloads, every SRTP
//! suite, next to bare AES-128-GCM on the same payload in the same run (the floor the core is measured
//! against) and each suite's SRTP protect alone. Criterion reports time per *sent* packet (throughput in elements = subscribers).
//!
//!     cargo bench -p sluice-dataplane --bench forward

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sluice_dataplane::core::{Core, CoreConfig, MediaKind, SubscriptionSpec, TrackSpec, Transmits};
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{self, TestPeer};

const PAYLOAD: usize = 1200;

/// A core with one publisher and `n` connected subscribers; returns it with the publisher's test peer.
fn setup(profile: Profile, n: usize) -> (Core, TestPeer, SocketAddr, Transmits) {
    let mut core = Core::new(CoreConfig { participants_max: n + 1, ..CoreConfig::default() });
    let mut peers = testpeer::connect(&mut core, profile, n + 1, 1_024, Instant::now());
    let publisher = peers.remove(0);
    let track = core.add_track(publisher.id, TrackSpec::single(publisher.peer.ssrc, MediaKind::Video)).unwrap();
    for (i, p) in peers.iter().enumerate() {
        let spec = SubscriptionSpec { ssrc: 0x4000 + i as u32, payload_type: None, rtx: None };
        core.subscribe(p.id, track, spec).unwrap();
    }
    (core, publisher.peer, publisher.addr, Transmits::with_capacity(n + 8))
}

/// Measures 1 publisher -> `n` subscribers, one incoming packet per iteration made by `packet` (setup, not
/// timed), and checks afterwards that every iteration reached every subscriber.
fn bench_fan_out(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    profile: Profile,
    n: usize,
    packet: fn(&mut TestPeer, u64) -> Vec<u8>,
) {
    let (mut core, mut publisher, addr, mut out) = setup(profile, n);
    let (mut t, mut calls) = (0u64, 0u64);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("{profile:?}/{n}_subscribers"), |b| {
        b.iter_batched_ref(
            || {
                t += 1;
                packet(&mut publisher, t)
            },
            |packet| {
                calls += 1;
                out.clear();
                core.handle_receive(Instant::now(), addr, packet, &mut out);
                black_box(out.len());
            },
            BatchSize::SmallInput,
        );
    });
    let c = core.counters();
    assert_eq!(c.drops.iter().sum::<u64>(), 0, "the benchmark forwards, it does not drop");
    assert_eq!(c.rtp_out, calls * n as u64, "every packet went to every subscriber, encrypted");
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward_1200B");
    for profile in Profile::ALL {
        for n in [1usize, 10, 100] {
            bench_fan_out(&mut group, profile, n, |peer, t| peer.media(PAYLOAD, t));
        }
    }
    group.finish();

    // The same with the transport-wide sequence number and abs-send-time extensions Chrome sends: their rewrite
    // per subscriber and the arrival recording for our feedback are on the path too.
    let mut group = c.benchmark_group("forward_1200B_with_extensions");
    for n in [10usize, 100] {
        bench_fan_out(&mut group, Profile::AeadAes128Gcm, n, |peer, t| {
            peer.media_with_extensions(PAYLOAD, t, t as u16, 0)
        });
    }
    group.finish();
}

/// The floor: AES-128-GCM sealing the same payload in place, nothing else.
fn bare_gcm(c: &mut Criterion) {
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7u8; 16]).unwrap());
    let header = [0x80u8; 12];
    let mut payload = vec![0u8; PAYLOAD];
    let mut counter = 0u64;
    let mut group = c.benchmark_group("floor_1200B");
    group.throughput(Throughput::Elements(1));
    group.bench_function("aes128gcm_seal", |b| {
        b.iter(|| {
            counter += 1;
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&counter.to_be_bytes());
            let tag = key
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&header), &mut payload)
                .unwrap();
            let _ = black_box(tag);
        });
    });
    // Each suite's own cost in our SRTP, with nothing of the SFU around it.
    for profile in Profile::ALL {
        let (key, salt) = (vec![3u8; profile.master_key_len()], vec![5u8; profile.master_salt_len()]);
        let ctx = sluice_dataplane::srtp::Context::new(profile, &key, &salt).unwrap();
        let mut packet = vec![0u8; 12 + PAYLOAD + profile.rtp_overhead()];
        packet[0] = 0x80;
        let mut index = 0u64;
        group.bench_function(format!("srtp_protect/{profile:?}"), |b| {
            b.iter(|| {
                index += 1;
                black_box(ctx.protect_rtp(&mut packet, 12 + PAYLOAD, 12, index).unwrap());
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bare_gcm, forward);
criterion_main!(benches);
