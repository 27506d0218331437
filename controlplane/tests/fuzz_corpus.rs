//! Replays the fuzz corpus (`controlplane/fuzz/corpus/<target>/`) and saved crash inputs
//! (`controlplane/fuzz/regressions/<target>/`) through the fuzz entry points, and feeds them arbitrary input:
//! nothing a peer sends may panic the parsers.

use std::path::Path;

use proptest::prelude::*;
use sluice_controlplane::fuzz;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for entry in entries.flatten() {
            run(&std::fs::read(entry.path()).unwrap());
            count += 1;
        }
    }
    count
}

#[test]
fn the_committed_corpus_replays_without_panics() {
    assert!(replay("signaling_message", fuzz::signaling_message) >= 6);
    assert!(replay("sdp_answer", fuzz::sdp_answer) >= 1);
    assert!(replay("sdp_offer", fuzz::sdp_offer) >= 1);
}

proptest! {
    #[test]
    fn arbitrary_messages_never_panic(text in ".{0,400}") {
        fuzz::signaling_message(text.as_bytes());
    }

    #[test]
    fn arbitrary_sdp_lines_never_panic(lines in proptest::collection::vec("(v=0|m=|a=|a=ssrc:|a=ssrc-group:FID |a=rtpmap:|a=fingerprint:sha-256 |a=mid:|a=setup:|a=extmap:|a=fmtp:)[ -~]{0,40}", 0..40)) {
        let text = lines.join("\r\n");
        fuzz::sdp_answer(text.as_bytes());
        fuzz::sdp_answer(format!("v=0\r\n{text}").as_bytes());
        fuzz::sdp_offer(format!("v=0\r\n{text}").as_bytes());
    }
}
