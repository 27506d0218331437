//! SDP for the server-side offer (see `docs/signaling.md`): [`offer::write_offer`] writes what we offer,
//! [`answer::parse_answer`] reads what the browser answers.

pub mod answer;
pub mod offer;
pub mod whip;

pub use answer::{Answer, AnswerSection, Direction, SdpError, parse_answer, parse_offer};
pub use offer::{Downlink, OfferParams, Section, SectionRole, write_offer};

#[cfg(test)]
mod tests {
    use sluice_dataplane::core::{ExtensionIds, Fingerprint, MediaKind};
    use sluice_dataplane::packet::codec::Codec;

    use super::*;

    const CHROME_ANSWER: &str = include_str!("../../tests/fixtures/chrome-156-answer.sdp");

    fn params<'a>(sections: &'a [Section], candidates: &'a [String]) -> OfferParams<'a> {
        OfferParams {
            session_id: 42,
            version: 3,
            ice_ufrag: "ufrag",
            ice_pwd: "a-password-of-24-chars!!",
            fingerprint: Fingerprint([0xab; 32]),
            extensions: ExtensionIds::default(),
            candidates,
            sections,
        }
    }

    fn sections() -> Vec<Section> {
        let downlink = Downlink {
            codec: Codec::Vp8,
            ssrc: 11,
            rtx_ssrc: Some(12),
            stream_id: "p_a".into(),
            track_id: "t_a".into(),
        };
        vec![
            Section {
                mid: "0".into(),
                kind: MediaKind::Audio,
                role: SectionRole::Uplink,
                prefer: None,
                simulcast: false,
            },
            Section {
                mid: "1".into(),
                kind: MediaKind::Video,
                role: SectionRole::Downlink(downlink),
                prefer: None,
                simulcast: false,
            },
            Section {
                mid: "2".into(),
                kind: MediaKind::Video,
                role: SectionRole::Rejected,
                prefer: None,
                simulcast: false,
            },
            Section {
                mid: "3".into(),
                kind: MediaKind::Video,
                role: SectionRole::Uplink,
                prefer: None,
                simulcast: true,
            },
        ]
    }

    #[test]
    fn the_offer_bundles_live_sections_and_rejects_removed_ones() {
        let sections = sections();
        let sdp = write_offer(&params(&sections, &[]));
        assert!(sdp.starts_with("v=0\r\no=- 42 3 IN IP4 0.0.0.0\r\n"));
        assert!(sdp.contains("\r\na=ice-lite\r\n") && sdp.contains("a=group:BUNDLE 0 1 3\r\n"));
        assert!(sdp.lines().all(|l| !l.is_empty()), "no empty lines");
        let media: Vec<&str> = sdp.split("\r\nm=").skip(1).collect();
        assert_eq!(media.len(), 4);
        assert!(media[0].starts_with("audio 9 UDP/TLS/RTP/SAVPF 111\r\n") && media[0].contains("a=recvonly"));
        assert!(media[1].starts_with("video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"));
        for line in
            ["a=sendonly", "a=msid:p_a t_a", "a=ssrc-group:FID 11 12", "a=ssrc:11 cname:p_a", "a=fmtp:97 apt=96"]
        {
            assert!(media[1].contains(line), "{line} in {}", media[1]);
        }
        assert!(!media[1].contains("rtp-stream-id"), "RID extensions only on uplink video");
        assert!(!media[0].contains("a=rid") && !media[1].contains("a=simulcast"), "simulcast only where asked");
        assert!(media[3].contains("a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n"));
        assert!(media[3].contains("rtp-stream-id"), "RIDs travel in a header extension");
        // A closed section: port 0, out of the BUNDLE group, inactive, and still complete for strict parsers
        // (GStreamer's webrtcbin refuses one without its transport lines or with unmapped payload types).
        assert!(media[2].starts_with("video 0 ") && media[2].contains("a=inactive"), "{}", media[2]);
        let formats: Vec<&str> = media[2].lines().next().unwrap().split(' ').skip(3).collect();
        for pt in &formats {
            assert!(media[2].contains(&format!("a=rtpmap:{pt} ")), "payload type {pt} mapped in {}", media[2]);
        }
        assert!(media[2].contains("a=ice-ufrag:") && media[2].contains("a=rtcp-mux"), "{}", media[2]);
        assert!(!media[2].contains("a=candidate") && !media[2].contains("a=ssrc"), "{}", media[2]);
        assert_eq!(sdp.matches(&format!("a=fingerprint:sha-256 {}", Fingerprint([0xab; 32]))).count(), 4);
        let with = write_offer(&params(&sections, &["candidate:1 1 udp 1 127.0.0.1 9 typ host".into()]));
        assert_eq!(with.matches("a=candidate:1 1 udp").count(), 3, "one per live section");
    }

    #[test]
    fn chromes_answer_names_its_ssrcs_codecs_and_directions() {
        let answer = parse_answer(CHROME_ANSWER).unwrap();
        assert_eq!(answer.fingerprint.to_string().len(), 95);
        assert_eq!((answer.ice_ufrag.as_str(), answer.ice_pwd.as_str()), ("g1Vs", "YsuBP+FSpM3MiYtyzZNip8qJ"));
        let mids: Vec<&str> = answer.sections.iter().map(|s| s.mid.as_str()).collect();
        assert_eq!(mids, ["0", "1", "2"]);
        let (audio, video, down) = (&answer.sections[0], &answer.sections[1], &answer.sections[2]);
        assert_eq!(
            (audio.direction, audio.media_ssrc(), audio.send_codec(&offer::uplink_codecs(MediaKind::Audio, None))),
            (Direction::SendOnly, Some(4273401687), Some((Codec::Opus, 111)))
        );
        assert_eq!(
            (video.media_ssrc(), video.send_codec(&offer::uplink_codecs(MediaKind::Video, None))),
            (Some(3499153755), Some((Codec::Vp8, 96)))
        );
        assert_eq!((down.direction, down.media_ssrc()), (Direction::RecvOnly, None));
        assert!(!answer.sections.iter().any(|s| s.rejected));
    }

    #[test]
    fn the_send_codec_is_the_offers_first_that_the_answer_kept() {
        let video = &offer::uplink_codecs(MediaKind::Video, None);
        let reordered =
            CHROME_ANSWER.replace("m=video 9 UDP/TLS/RTP/SAVPF 96 98 102", "m=video 9 UDP/TLS/RTP/SAVPF 98 102 96");
        assert_eq!(parse_answer(&reordered).unwrap().sections[1].send_codec(video), Some((Codec::Vp8, 96)));
        let only_vp9 = CHROME_ANSWER.replace("m=video 9 UDP/TLS/RTP/SAVPF 96 98 102", "m=video 9 UDP/TLS/RTP/SAVPF 98");
        assert_eq!(parse_answer(&only_vp9).unwrap().sections[1].send_codec(video), Some((Codec::Vp9, 98)));
        let nothing_we_forward =
            CHROME_ANSWER.replace("m=video 9 UDP/TLS/RTP/SAVPF 96 98 102", "m=video 9 UDP/TLS/RTP/SAVPF 45");
        assert_eq!(parse_answer(&nothing_we_forward).unwrap().sections[1].send_codec(video), None);
    }

    #[test]
    fn fid_groups_tell_the_media_ssrc_from_its_rtx() {
        let sdp = CHROME_ANSWER.replace(
            "a=ssrc:3499153755 cname:TFBpeM03/UekJFbN\r\n",
            "a=ssrc-group:FID 5 6\r\na=ssrc:6 cname:x\r\na=ssrc:5 cname:x\r\n",
        );
        let answer = parse_answer(&sdp).unwrap();
        assert_eq!(answer.sections[1].media_ssrc(), Some(5));
        assert_eq!(answer.sections[1].fid, vec![(5, 6)]);
    }

    #[test]
    fn a_simulcast_answer_names_its_layers_in_order() {
        let simulcast = "a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n";
        let sdp = CHROME_ANSWER.replace("a=ssrc:3499153755 cname:TFBpeM03/UekJFbN\r\n", simulcast);
        let answer = parse_answer(&sdp).unwrap();
        assert_eq!(answer.sections[1].send_rids, ["q", "h", "f"]);
        assert_eq!(answer.sections[1].media_ssrc(), None, "layers are known by RID, not SSRC");
        assert!(answer.sections[0].send_rids.is_empty());
        // Alternatives, paused streams, either direction first; a RID without its a=rid line is not a layer.
        let odd = sdp.replace("a=simulcast:send q;h;f", "a=simulcast:recv 1 send ~q,x;h;z");
        assert_eq!(parse_answer(&odd).unwrap().sections[1].send_rids, ["q", "h"]);
        let broken = sdp.replace("a=simulcast:send q;h;f", "a=simulcast:send");
        assert!(parse_answer(&broken).unwrap_err().to_string().contains("a=simulcast needs a list"));
    }

    #[test]
    fn bad_answers_are_refused_with_the_reason() {
        let cases = [
            ("", "v=0"),
            ("v=0\r\na=ice-ufrag:a\r\na=ice-pwd:b\r\n", "fingerprint"),
            (&CHROME_ANSWER.replace("setup:active", "setup:passive"), "setup:passive"),
            (&CHROME_ANSWER.replace("a=mid:1\r\n", ""), "media section 1 has no a=mid"),
            (&CHROME_ANSWER.replace("a=ssrc:4273401687", "a=ssrc:nope"), "line"),
            (&CHROME_ANSWER.replace("sha-256 EC:05", "sha-256 XX:05"), "not a SHA-256"),
            (&"a".repeat(answer::ANSWER_LEN_MAX + 1), "longer"),
        ];
        for (sdp, says) in cases {
            let e = parse_answer(sdp).unwrap_err().to_string();
            assert!(e.contains(says), "{says:?} in {e:?}");
        }
    }
}
