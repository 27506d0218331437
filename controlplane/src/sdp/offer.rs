//! The SDP offers Sluice writes (JSEP, RFC 8829): one BUNDLE transport per participant, ICE-lite, DTLS with
//! `setup:actpass` (the browser becomes the DTLS client), RTCP-mux. The server writes every offer, so it picks
//! every MID, payload type and header extension id; the browser's answer only confirms them.
//!
//! Two kinds of media section:
//! - **uplink** (`a=recvonly`): the browser sends one source (microphone, camera, screen) here. Every codec we
//!   forward is offered; the browser's answer puts the one it will send first.
//! - **downlink** (`a=sendonly`): one track of another participant, with the publisher's codec and payload type,
//!   our SSRC (and an RTX SSRC for video), and `a=msid` naming the publisher and the track.
//!
//! A removed section stays in every later offer, rejected (port 0) and out of the BUNDLE group, as JSEP requires.

use std::fmt::Write;

use sluice_dataplane::core::{ExtensionIds, Fingerprint, MediaKind};
use sluice_dataplane::packet::codec::Codec;

/// RTX payload type for each video payload type we offer (`apt=`).
const VIDEO_CODECS: [(Codec, u8, u8); 3] = [(Codec::Vp8, 96, 97), (Codec::Vp9, 98, 99), (Codec::H264, 102, 103)];
const OPUS_PT: u8 = 111;

pub(crate) const URI_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
pub(crate) const URI_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
pub(crate) const URI_REPAIRED_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
pub(crate) const URI_ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
pub(crate) const URI_TRANSPORT_CC: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// RFC 6464: the level of each audio packet, which tells the server who is talking.
pub(crate) const URI_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// The codecs an uplink section of `kind` offers, most preferred first: `prefer` (if we forward it), then VP8,
/// VP9, H.264. Chrome as answerer sends the first of these it supports, whatever its answer's order.
pub fn uplink_codecs(kind: MediaKind, prefer: Option<Codec>) -> Vec<Codec> {
    match kind {
        MediaKind::Audio => vec![Codec::Opus],
        MediaKind::Video => {
            let mut codecs: Vec<Codec> = VIDEO_CODECS.iter().map(|(c, _, _)| *c).collect();
            if let Some(at) = codecs.iter().position(|c| Some(*c) == prefer) {
                let first = codecs.remove(at);
                codecs.insert(0, first);
            }
            codecs
        }
    }
}

/// The payload type Sluice uses for a codec (the same in every offer, so forwarding never rewrites it).
pub fn payload_type(codec: Codec) -> u8 {
    match codec {
        Codec::Opus => OPUS_PT,
        _ => VIDEO_CODECS.iter().find(|(c, _, _)| *c == codec).map_or(96, |(_, pt, _)| *pt),
    }
}

/// The RTX payload type paired with a video codec.
pub fn rtx_payload_type(codec: Codec) -> Option<u8> {
    VIDEO_CODECS.iter().find(|(c, _, _)| *c == codec).map(|(_, _, rtx)| *rtx)
}

/// The codec an `a=rtpmap` encoding name names, if we forward it.
pub fn codec_named(name: &str) -> Option<Codec> {
    match name.to_ascii_lowercase().as_str() {
        "opus" => Some(Codec::Opus),
        "vp8" => Some(Codec::Vp8),
        "vp9" => Some(Codec::Vp9),
        "h264" => Some(Codec::H264),
        _ => None,
    }
}

/// One media section of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub mid: String,
    pub kind: MediaKind,
    pub role: SectionRole,
    /// Uplink video: the codec offered first (the publisher's choice); `None` for VP8.
    pub prefer: Option<Codec>,
    /// Uplink video: ask for [`SIMULCAST_RIDS`] (`a=simulcast:recv`), which a browser answering sends as that many
    /// encodings at 1/4, 1/2 and full resolution.
    pub simulcast: bool,
}

/// The RIDs of the simulcast layers we ask for, lowest quality first (quarter, half, full).
pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionRole {
    /// The browser sends here.
    Uplink,
    /// We send one track here.
    Downlink(Downlink),
    /// Removed: kept, rejected, for the m-line order.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downlink {
    pub codec: Codec,
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    /// `a=msid` stream id: the publisher, so a browser groups a person's audio and video.
    pub stream_id: String,
    /// `a=msid` track id.
    pub track_id: String,
}

/// Everything one participant's offer says.
#[derive(Debug, Clone)]
pub struct OfferParams<'a> {
    /// `o=` session id: constant for the participant's connection.
    pub session_id: u64,
    /// `o=` version: one more for each offer on that connection.
    pub version: u64,
    pub ice_ufrag: &'a str,
    pub ice_pwd: &'a str,
    pub fingerprint: Fingerprint,
    pub extensions: ExtensionIds,
    /// Candidates written into the SDP (`a=candidate` lines); with trickle they go in `candidate` messages instead.
    pub candidates: &'a [String],
    pub sections: &'a [Section],
}

/// Writes the offer. Sections are written in order; the first that is not rejected tags the BUNDLE group.
pub fn write_offer(p: &OfferParams<'_>) -> String {
    let mut s = String::with_capacity(600 + p.sections.len() * 900);
    let bundled: Vec<&str> =
        p.sections.iter().filter(|s| s.role != SectionRole::Rejected).map(|s| s.mid.as_str()).collect();
    line(&mut s, format_args!("v=0"));
    line(&mut s, format_args!("o=- {} {} IN IP4 0.0.0.0", p.session_id, p.version));
    line(&mut s, format_args!("s=sluice"));
    line(&mut s, format_args!("t=0 0"));
    line(&mut s, format_args!("a=ice-lite"));
    if !bundled.is_empty() {
        line(&mut s, format_args!("a=group:BUNDLE {}", bundled.join(" ")));
    }
    line(&mut s, format_args!("a=msid-semantic: WMS *"));
    for section in p.sections {
        write_section(&mut s, p, section);
    }
    s
}

fn write_section(s: &mut String, p: &OfferParams<'_>, section: &Section) {
    let media = match section.kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    };
    let formats = formats(section);
    let port = if section.role == SectionRole::Rejected { 0 } else { 9 };
    let list: Vec<String> = formats.iter().map(u8::to_string).collect();
    line(s, format_args!("m={media} {port} UDP/TLS/RTP/SAVPF {}", list.join(" ")));
    line(s, format_args!("c=IN IP4 0.0.0.0"));
    line(s, format_args!("a=mid:{}", section.mid));
    if section.role == SectionRole::Rejected {
        // Closed for good, but complete: strict parsers (GStreamer's webrtcbin) refuse a section whose payload
        // types are not mapped or that lacks the transport lines, even at port 0.
        line(s, format_args!("a=inactive"));
        line(s, format_args!("a=ice-ufrag:{}", p.ice_ufrag));
        line(s, format_args!("a=ice-pwd:{}", p.ice_pwd));
        line(s, format_args!("a=fingerprint:sha-256 {}", p.fingerprint));
        line(s, format_args!("a=setup:actpass"));
        line(s, format_args!("a=rtcp-mux"));
        match section.kind {
            MediaKind::Audio => write_codec(s, Codec::Opus, false),
            MediaKind::Video => {
                uplink_codecs(MediaKind::Video, section.prefer).into_iter().for_each(|c| write_codec(s, c, false))
            }
        }
        return;
    }
    line(s, format_args!("a=rtcp:9 IN IP4 0.0.0.0"));
    line(s, format_args!("a=ice-ufrag:{}", p.ice_ufrag));
    line(s, format_args!("a=ice-pwd:{}", p.ice_pwd));
    line(s, format_args!("a=ice-options:trickle"));
    line(s, format_args!("a=fingerprint:sha-256 {}", p.fingerprint));
    line(s, format_args!("a=setup:actpass"));
    for candidate in p.candidates {
        line(s, format_args!("a={candidate}"));
    }
    write_extensions(s, p.extensions, section);
    line(s, format_args!("a=rtcp-mux"));
    line(s, format_args!("a=rtcp-rsize"));
    match &section.role {
        SectionRole::Uplink => {
            line(s, format_args!("a=recvonly"));
            match section.kind {
                MediaKind::Audio => write_codec(s, Codec::Opus, false),
                MediaKind::Video => {
                    uplink_codecs(MediaKind::Video, section.prefer).into_iter().for_each(|c| write_codec(s, c, false));
                    if section.simulcast {
                        SIMULCAST_RIDS.iter().for_each(|rid| line(s, format_args!("a=rid:{rid} recv")));
                        line(s, format_args!("a=simulcast:recv {}", SIMULCAST_RIDS.join(";")));
                    }
                }
            }
        }
        SectionRole::Downlink(d) => {
            line(s, format_args!("a=sendonly"));
            line(s, format_args!("a=msid:{} {}", d.stream_id, d.track_id));
            write_codec(s, d.codec, d.rtx_ssrc.is_some());
            if let Some(rtx) = d.rtx_ssrc {
                line(s, format_args!("a=ssrc-group:FID {} {rtx}", d.ssrc));
            }
            for ssrc in std::iter::once(d.ssrc).chain(d.rtx_ssrc) {
                line(s, format_args!("a=ssrc:{ssrc} cname:{}", d.stream_id));
                line(s, format_args!("a=ssrc:{ssrc} msid:{} {}", d.stream_id, d.track_id));
            }
        }
        SectionRole::Rejected => unreachable!("returned above"),
    }
}

/// Payload types on the m-line, in preference order.
fn formats(section: &Section) -> Vec<u8> {
    match (&section.role, section.kind) {
        (SectionRole::Downlink(d), _) => {
            let mut f = vec![payload_type(d.codec)];
            f.extend(d.rtx_ssrc.and_then(|_| rtx_payload_type(d.codec)));
            f
        }
        (_, MediaKind::Audio) => vec![OPUS_PT],
        (_, MediaKind::Video) => {
            uplink_codecs(MediaKind::Video, section.prefer).into_iter().map(payload_type).collect()
        }
    }
}

fn write_extensions(s: &mut String, ids: ExtensionIds, section: &Section) {
    line(s, format_args!("a=extmap:{} {URI_MID}", ids.mid));
    line(s, format_args!("a=extmap:{} {URI_ABS_SEND_TIME}", ids.abs_send_time));
    line(s, format_args!("a=extmap:{} {URI_TRANSPORT_CC}", ids.transport_cc));
    if section.kind == MediaKind::Audio && section.role == SectionRole::Uplink {
        line(s, format_args!("a=extmap:{} {URI_AUDIO_LEVEL}", ids.audio_level));
    }
    if section.kind == MediaKind::Video && section.role == SectionRole::Uplink {
        line(s, format_args!("a=extmap:{} {URI_RID}", ids.rid));
        line(s, format_args!("a=extmap:{} {URI_REPAIRED_RID}", ids.repaired_rid));
    }
}

fn write_codec(s: &mut String, codec: Codec, with_rtx: bool) {
    let pt = payload_type(codec);
    match codec {
        Codec::Opus => {
            line(s, format_args!("a=rtpmap:{pt} opus/48000/2"));
            line(s, format_args!("a=rtcp-fb:{pt} transport-cc"));
            line(s, format_args!("a=fmtp:{pt} minptime=10;useinbandfec=1"));
            return;
        }
        Codec::Vp8 => line(s, format_args!("a=rtpmap:{pt} VP8/90000")),
        Codec::Vp9 => {
            line(s, format_args!("a=rtpmap:{pt} VP9/90000"));
            line(s, format_args!("a=fmtp:{pt} profile-id=0"));
        }
        Codec::H264 => {
            line(s, format_args!("a=rtpmap:{pt} H264/90000"));
            line(s, format_args!("a=fmtp:{pt} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"));
        }
    }
    // goog-remb for receivers without transport-wide feedback (their REMB is then the estimate).
    for fb in ["transport-cc", "goog-remb", "ccm fir", "nack", "nack pli"] {
        line(s, format_args!("a=rtcp-fb:{pt} {fb}"));
    }
    if let (true, Some(rtx)) = (with_rtx, rtx_payload_type(codec)) {
        line(s, format_args!("a=rtpmap:{rtx} rtx/90000"));
        line(s, format_args!("a=fmtp:{rtx} apt={pt}"));
    }
}

pub(crate) fn line(s: &mut String, args: std::fmt::Arguments<'_>) {
    s.write_fmt(args).expect("writing to a String does not fail");
    s.push_str("\r\n");
}

/// An ICE host candidate line (RFC 8839), without the `a=` prefix: `candidate:<foundation> 1 udp <priority> ...`.
pub fn host_candidate(foundation: u32, address: std::net::SocketAddr) -> String {
    // Host type preference 126, local preference by order, component 1 (RFC 8445 section 5.1.2.1).
    let priority = (126u32 << 24) | ((65_535 - foundation.min(65_535)) << 8) | 255;
    format!("candidate:{foundation} 1 udp {priority} {} {} typ host", address.ip(), address.port())
}
