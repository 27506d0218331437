//! The SDP answer to a WHIP client's offer (RFC 9725) or a WHEP player's: Sluice is the answerer here, ICE-lite
//! with all its candidates in the answer (clients need not trickle), the DTLS server (`setup:passive`), receiving
//! (WHIP) or sending (WHEP) one codec per section at the client's own payload type.
//!
//! Header extensions must keep the IDs the offer gave them (RFC 8285), and the dataplane reads them at fixed IDs
//! (`ExtensionIds`): an extension is accepted only where the offer's ID is ours, and simply left out otherwise
//! (then the stream is known by its `a=ssrc`).

use sluice_dataplane::core::{ExtensionIds, Fingerprint, MediaKind};
use sluice_dataplane::packet::codec::Codec;

use super::answer::AnswerSection;
use super::offer::{URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, URI_REPAIRED_RID, URI_RID, URI_TRANSPORT_CC, line};

/// One offered section, as answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Received: the codec and the client's payload type for it, and the simulcast layers taken (their RIDs,
    /// lowest quality first; empty for one encoding).
    Receive { kind: MediaKind, codec: Codec, payload_type: u8, rids: Vec<String> },
    /// Sent (WHEP): one track of the meeting, under our SSRC, at the client's payload type.
    Send { kind: MediaKind, codec: Codec, payload_type: u8, ssrc: u32, stream_id: String, track_id: String },
    /// Refused (port 0): a kind or direction we do not take, or a second section of a kind.
    Refused,
}

#[derive(Debug)]
pub struct WhipAnswerParams<'a> {
    pub session_id: u64,
    pub ice_ufrag: &'a str,
    pub ice_pwd: &'a str,
    pub fingerprint: Fingerprint,
    pub extensions: ExtensionIds,
    /// The worker's candidates (`candidate:...`).
    pub candidates: &'a [String],
    /// The offer's sections, in order, with what we do with each.
    pub sections: &'a [(&'a AnswerSection, Taken)],
}

/// The extensions of `offered` we accept: those whose ID is the one the dataplane reads.
pub fn accepted_extensions(offered: &AnswerSection, ids: ExtensionIds) -> Vec<(u8, &'static str)> {
    [
        (ids.mid, URI_MID),
        (ids.abs_send_time, URI_ABS_SEND_TIME),
        (ids.transport_cc, URI_TRANSPORT_CC),
        (ids.rid, URI_RID),
        (ids.repaired_rid, URI_REPAIRED_RID),
        (ids.audio_level, URI_AUDIO_LEVEL),
    ]
    .into_iter()
    .filter(|(id, uri)| offered.extmap.iter().any(|(i, u)| i == id && u == uri))
    .collect()
}

pub fn write_whip_answer(p: &WhipAnswerParams<'_>) -> String {
    let mut s = String::with_capacity(2048);
    line(&mut s, format_args!("v=0"));
    line(&mut s, format_args!("o=- {} 2 IN IP4 0.0.0.0", p.session_id));
    line(&mut s, format_args!("s=sluice"));
    line(&mut s, format_args!("t=0 0"));
    line(&mut s, format_args!("a=ice-lite"));
    let bundle: Vec<&str> =
        p.sections.iter().filter(|(_, t)| !matches!(t, Taken::Refused)).map(|(o, _)| o.mid.as_str()).collect();
    line(&mut s, format_args!("a=group:BUNDLE {}", bundle.join(" ")));
    for (offered, taken) in p.sections {
        let (kind, codec, pt, sending) = match taken {
            Taken::Receive { kind, codec, payload_type, .. } => (*kind, *codec, *payload_type, None),
            Taken::Send { kind, codec, payload_type, ssrc, stream_id, track_id } => {
                (*kind, *codec, *payload_type, Some((*ssrc, stream_id.as_str(), track_id.as_str())))
            }
            Taken::Refused => {
                // Rejected: the offer's m-line at port 0, its MID, nothing else needed (RFC 8829 5.3.1).
                line(&mut s, format_args!("m={} 0 {}", offered.media, offered.transport));
                line(&mut s, format_args!("c=IN IP4 0.0.0.0"));
                line(&mut s, format_args!("a=mid:{}", offered.mid));
                line(&mut s, format_args!("a=inactive"));
                continue;
            }
        };
        let media = if kind == MediaKind::Audio { "audio" } else { "video" };
        line(&mut s, format_args!("m={media} 9 UDP/TLS/RTP/SAVPF {pt}"));
        line(&mut s, format_args!("c=IN IP4 0.0.0.0"));
        line(&mut s, format_args!("a=mid:{}", offered.mid));
        line(&mut s, format_args!("a=ice-ufrag:{}", p.ice_ufrag));
        line(&mut s, format_args!("a=ice-pwd:{}", p.ice_pwd));
        line(&mut s, format_args!("a=fingerprint:sha-256 {}", p.fingerprint));
        line(&mut s, format_args!("a=setup:passive"));
        for candidate in p.candidates {
            line(&mut s, format_args!("a={candidate}"));
        }
        line(&mut s, format_args!("a=end-of-candidates"));
        for (id, uri) in accepted_extensions(offered, p.extensions) {
            line(&mut s, format_args!("a=extmap:{id} {uri}"));
        }
        line(&mut s, format_args!("a=rtcp-mux"));
        line(&mut s, format_args!("a=rtcp-rsize"));
        match sending {
            None => line(&mut s, format_args!("a=recvonly")),
            Some((ssrc, stream, track)) => {
                line(&mut s, format_args!("a=sendonly"));
                line(&mut s, format_args!("a=msid:{stream} {track}"));
                line(&mut s, format_args!("a=ssrc:{ssrc} cname:{stream}"));
                line(&mut s, format_args!("a=ssrc:{ssrc} msid:{stream} {track}"));
            }
        }
        let encoding = offered.encodings.iter().find(|(p, _)| *p == pt).map(|(_, e)| e.as_str());
        let fallback = match codec {
            Codec::Opus => "opus/48000/2",
            Codec::Vp8 => "VP8/90000",
            Codec::Vp9 => "VP9/90000",
            Codec::H264 => "H264/90000",
        };
        line(&mut s, format_args!("a=rtpmap:{pt} {}", encoding.unwrap_or(fallback)));
        // The client's parameters for its codec (H.264's profile and packetization mode, Opus's FEC) hold for
        // what it sends: echoed.
        if let Some((_, params)) = offered.fmtp.iter().find(|(p, _)| *p == pt) {
            line(&mut s, format_args!("a=fmtp:{pt} {params}"));
        }
        if let Taken::Receive { rids, .. } = taken
            && !rids.is_empty()
        {
            for rid in rids {
                line(&mut s, format_args!("a=rid:{rid} recv"));
            }
            line(&mut s, format_args!("a=simulcast:recv {}", rids.join(";")));
        }
        if kind == MediaKind::Video {
            for fb in ["ccm fir", "nack", "nack pli"] {
                line(&mut s, format_args!("a=rtcp-fb:{pt} {fb}"));
            }
        }
        if accepted_extensions(offered, p.extensions).iter().any(|(_, uri)| *uri == URI_TRANSPORT_CC) {
            line(&mut s, format_args!("a=rtcp-fb:{pt} transport-cc"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::parse_offer;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE a v d\r\n\
        a=fingerprint:sha-256 EC:05:9A:67:6C:2B:45:1E:8B:0C:18:49:A3:4C:76:C4:3E:74:7D:38:C4:32:74:28:A0:B4:6D:9E:24:2E:33:31\r\n\
        a=ice-ufrag:abcd\r\na=ice-pwd:efghijklmnopqrstuvwxyz12\r\na=setup:actpass\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
        a=fmtp:111 minptime=10;useinbandfec=1\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=ssrc:1 cname:x\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\na=mid:v\r\na=sendonly\r\na=rtpmap:102 H264/90000\r\n\
        a=fmtp:102 packetization-mode=1;profile-level-id=640c1f\r\na=rtpmap:103 rtx/90000\r\n\
        a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
        a=ssrc:2 cname:x\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:d\r\n";

    #[test]
    fn the_answer_takes_each_section_at_the_clients_payload_type_and_echoes_only_our_extension_ids() {
        let offer = parse_offer(OFFER).unwrap();
        assert_eq!(
            offer.sections.iter().map(|s| s.media.as_str()).collect::<Vec<_>>(),
            ["audio", "video", "application"]
        );
        let taken = [
            (
                &offer.sections[0],
                Taken::Receive { kind: MediaKind::Audio, codec: Codec::Opus, payload_type: 111, rids: vec![] },
            ),
            (
                &offer.sections[1],
                Taken::Receive {
                    kind: MediaKind::Video,
                    codec: Codec::H264,
                    payload_type: 102,
                    rids: vec!["lo".into(), "hi".into()],
                },
            ),
            (&offer.sections[2], Taken::Refused),
        ];
        let sdp = write_whip_answer(&WhipAnswerParams {
            session_id: 7,
            ice_ufrag: "u",
            ice_pwd: "p",
            fingerprint: Fingerprint([1; 32]),
            extensions: ExtensionIds::default(),
            candidates: &["candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host".to_string()],
            sections: &taken,
        });
        assert!(sdp.contains("a=ice-lite\r\na=group:BUNDLE a v\r\n"), "{sdp}");
        let media: Vec<&str> = sdp.split("\r\nm=").skip(1).collect();
        assert!(media[0].starts_with("audio 9 UDP/TLS/RTP/SAVPF 111\r\n") && media[0].contains("a=setup:passive"));
        assert!(media[0].contains("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid"), "ours: accepted");
        assert!(media[0].contains("a=fmtp:111 minptime=10;useinbandfec=1") && media[0].contains("a=recvonly"));
        assert!(media[0].contains("a=candidate:1 1 udp") && media[0].contains("a=end-of-candidates"));
        assert!(media[1].starts_with("video 9 UDP/TLS/RTP/SAVPF 102\r\n"), "{}", media[1]);
        assert!(media[1].contains("a=fmtp:102 packetization-mode=1;profile-level-id=640c1f"));
        assert!(!media[1].contains("sdes:mid"), "MID at ID 9 is not ours: left out");
        assert!(media[1].contains("a=extmap:3 ") && media[1].contains("a=rtcp-fb:102 transport-cc"));
        assert!(media[1].contains("a=rid:lo recv\r\na=rid:hi recv\r\na=simulcast:recv lo;hi\r\n"), "{}", media[1]);
        assert!(!media[0].contains("a=simulcast"), "one encoding: no simulcast lines");
        assert!(media[2].starts_with("application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"), "{}", media[2]);
        assert!(media[2].contains("a=mid:d\r\na=inactive"));
    }

    #[test]
    fn an_offer_may_be_actpass_or_active_but_not_passive() {
        assert!(parse_offer(OFFER).is_ok());
        assert!(parse_offer(&OFFER.replace("setup:actpass", "setup:active")).is_ok());
        let e = parse_offer(&OFFER.replace("setup:actpass", "setup:passive")).unwrap_err().to_string();
        assert!(e.contains("setup:passive"), "{e}");
        assert!(crate::sdp::parse_answer(OFFER).is_err(), "an answer must be active");
    }
}
