//! Replays the committed fuzz corpus (`dataplane/fuzz/corpus/<target>/`) and any saved crash inputs
//! (`dataplane/fuzz/regressions/<target>/`) through the fuzz entry points, so what the fuzzer found is checked
//! in every test run on stable Rust. A target with no corpus fails: an empty corpus would test nothing.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in [root.join("corpus").join(target), root.join("regressions").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| run(&data));
            assert!(result.is_ok(), "{target}: {} makes the target panic", path.display());
            count += 1;
        }
    }
    assert!(
        count >= 2,
        "{target}: only {count} corpus files; run `cargo run -p sluice-dataplane --example fuzz_seeds`"
    );
}

#[test]
fn stun_corpus() {
    replay("stun", sluice_dataplane::fuzz::stun);
}

#[test]
fn rtp_corpus() {
    replay("rtp", sluice_dataplane::fuzz::rtp);
}

#[test]
fn rtcp_corpus() {
    replay("rtcp", sluice_dataplane::fuzz::rtcp);
}

#[test]
fn srtp_corpus() {
    replay("srtp", sluice_dataplane::fuzz::srtp);
}

#[test]
fn core_corpus() {
    replay("core", sluice_dataplane::fuzz::core);
}

#[test]
fn dtls_corpus() {
    replay("dtls", sluice_dataplane::fuzz::dtls);
}
