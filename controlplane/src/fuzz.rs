//! Fuzzing entry points for everything the control plane parses from the network: signaling messages and SDP
//! answers. The cargo-fuzz targets in `controlplane/fuzz/` call these; `tests/fuzz_corpus.rs` replays the
//! committed corpus and saved crash inputs in every test run. The property: no input panics.

use crate::sdp::parse_answer;
use crate::signaling::protocol::parse_client_message;

pub fn signaling_message(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_client_message(text);
    }
}

pub fn sdp_answer(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(answer) = parse_answer(text) {
        for section in &answer.sections {
            let _ = (
                section.send_codec(&crate::sdp::offer::uplink_codecs(sluice_dataplane::core::MediaKind::Video, None)),
                section.media_ssrc(),
                section.direction.sends(),
            );
        }
    }
}
