//! Replays the committed fuzz corpus (`turn/fuzz/corpus/<target>/`) and any saved crash inputs
//! (`turn/fuzz/regressions/<target>/`) through the fuzz entry points on stable Rust in every test run. A target
//! with too small a corpus fails: an empty corpus would test nothing.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in [root.join("corpus").join(target), root.join("regressions").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| run(&data));
            assert!(result.is_ok(), "{target}: {} makes the target panic", path.display());
            // Every prefix and every single-byte corruption too: cheap, and it walks the error paths.
            for cut in 0..data.len() {
                run(&data[..cut]);
            }
            let mut corrupt = data.clone();
            for i in 0..corrupt.len() {
                corrupt[i] ^= 0x5a;
                run(&corrupt);
                corrupt[i] ^= 0x5a;
            }
            count += 1;
        }
    }
    assert!(
        count >= 4,
        "{target}: only {count} corpus files; run `cargo run -p sluice-turn --example turn_fuzz_seeds`"
    );
    count
}

#[test]
fn message_corpus() {
    replay("message", sluice_turn::fuzz::parse);
}

#[test]
fn server_corpus() {
    replay("server", sluice_turn::fuzz::server);
}

#[test]
fn server_seeds_reach_allocations_and_both_relay_directions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/server");
    let seed = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let send = sluice_turn::fuzz::run_session(&seed("seed-00"));
    assert_eq!(send.allocations_created, 1, "{send:?}");
    assert_eq!(send.permissions_created, 1);
    assert!(send.to_peer_packets >= 1 && send.to_client_packets >= 1, "{send:?}");
    let channel = sluice_turn::fuzz::run_session(&seed("seed-01"));
    assert_eq!(channel.channels_bound, 1);
    assert!(channel.denied("loopback") >= 1, "the denied ChannelBind is counted: {channel:?}");
}
