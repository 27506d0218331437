//! Fuzzing entry points for everything the control plane parses from the network: signaling messages, SDP
//! answers and WHIP offers (with the answer written to them). The cargo-fuzz targets in `controlplane/fuzz/` call these; `tests/fuzz_corpus.rs` replays the
//! committed corpus and saved crash inputs in every test run. The property: no input panics.

use crate::sdp::whip::{Taken, WhipAnswerParams, write_whip_answer};
use crate::sdp::{parse_answer, parse_offer};
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

/// A WHIP offer, and the answer written to it taking every audio and video section it can.
pub fn sdp_offer(data: &[u8]) {
    use sluice_dataplane::core::{ExtensionIds, Fingerprint, MediaKind};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(offer) = parse_offer(text) else { return };
    let sections: Vec<(&crate::sdp::AnswerSection, Taken)> = offer
        .sections
        .iter()
        .map(|s| {
            let kind = if s.media == "audio" { MediaKind::Audio } else { MediaKind::Video };
            let taken = s.send_codec(&crate::sdp::offer::uplink_codecs(kind, None)).map_or(
                Taken::Refused,
                |(codec, payload_type)| Taken::Receive {
                    kind,
                    codec,
                    payload_type,
                    rids: s.send_rids.iter().take(3).cloned().collect(),
                },
            );
            (s, taken)
        })
        .collect();
    let answer = write_whip_answer(&WhipAnswerParams {
        session_id: 1,
        ice_ufrag: "u",
        ice_pwd: "p",
        fingerprint: Fingerprint([0; 32]),
        extensions: ExtensionIds::default(),
        candidates: &[],
        sections: &sections,
    });
    assert!(answer.starts_with("v=0\r\n"), "the answer is SDP");
}
