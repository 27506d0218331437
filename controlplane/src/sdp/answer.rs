//! Reading a browser's SDP answer: only what Sluice needs from it, checked against the offer it answers. The same
//! reader takes a WHIP client's offer ([`parse_offer`]), where it also keeps what the answer must echo: each
//! section's media kind, its full `a=rtpmap` and `a=fmtp` values and its header extensions.
//!
//! From the session: the DTLS fingerprint and setup role, the ICE credentials. From each media section, in
//! order: its MID, whether it is accepted (port not 0), its direction, the payload types in preference order with
//! their encoding names, and the SSRCs it will send (the media SSRC, and its RTX SSRC from `a=ssrc-group:FID`).
//! Anything else is ignored. Every error names the line or section at fault; nothing here panics on any input.

use sluice_dataplane::core::Fingerprint;
use sluice_dataplane::packet::codec::Codec;

use super::offer::codec_named;

/// Answers longer than this are refused (a meeting's worth of sections is far smaller).
pub const ANSWER_LEN_MAX: usize = 256 * 1024;
/// Media sections in one answer.
pub const SECTIONS_MAX: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("the SDP is longer than {ANSWER_LEN_MAX} bytes")]
    TooLong,
    #[error("the SDP has more than {SECTIONS_MAX} media sections")]
    TooManySections,
    #[error("the SDP does not start with v=0")]
    NoVersion,
    #[error("the SDP has no a=fingerprint:sha-256 line")]
    NoFingerprint,
    #[error("a=fingerprint {0:?} is not a SHA-256 fingerprint")]
    BadFingerprint(String),
    #[error("a=setup:{0} is not allowed in an answer to our actpass offer: answer with setup:active")]
    BadSetup(String),
    #[error("a=setup:{0} is not allowed in an offer: the server is the DTLS server, offer setup:actpass or active")]
    BadOfferSetup(String),
    #[error("the SDP has no a=ice-ufrag and a=ice-pwd")]
    NoIceCredentials,
    #[error("line {line}: {reason}")]
    BadLine { line: usize, reason: &'static str },
    #[error("media section {index} has no a=mid")]
    NoMid { index: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// Whether the answerer sends media in this section.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerSection {
    pub mid: String,
    /// Port 0: the browser rejected (or stopped) this section.
    pub rejected: bool,
    pub direction: Direction,
    /// Payload types in the answer's order (the first is what the browser sends).
    pub formats: Vec<u8>,
    /// `a=rtpmap` entries: payload type and encoding name.
    pub rtpmap: Vec<(u8, String)>,
    /// SSRCs named by `a=ssrc` lines, in order of first appearance.
    pub ssrcs: Vec<u32>,
    /// The MID header extension (`a=extmap:... urn:ietf:params:rtp-hdrext:sdes:mid`) was accepted: packets say
    /// which section they belong to, so the section need not name its SSRC.
    pub mid_extension: bool,
    /// `a=ssrc-group:FID <media> <rtx>` pairs.
    pub fid: Vec<(u32, u32)>,
    /// RIDs the answerer sends as simulcast layers (`a=simulcast:send`, in its order), each with an
    /// `a=rid:<id> send` line. Empty without simulcast.
    pub send_rids: Vec<String>,
    /// RIDs of `a=rid:<id> send` lines.
    rid_lines: Vec<String>,
    /// The m-line's media (`audio`, `video`, `application`...), and what follows its port (protocol and formats).
    pub media: String,
    pub transport: String,
    /// `a=rtpmap` values whole (`96 VP8/90000`) and `a=fmtp` values (`96 max-fr=30`), by payload type.
    pub encodings: Vec<(u8, String)>,
    pub fmtp: Vec<(u8, String)>,
    /// `a=extmap` lines: ID and URI.
    pub extmap: Vec<(u8, String)>,
}

impl AnswerSection {
    /// The codec the browser will send: the first codec *of our offer* (`offered`, in its order) that the answer
    /// kept. Chrome as answerer sends the offerer's most preferred common codec, whatever order its answer lists;
    /// a client that wants VP9 or H.264 answers with only that one.
    pub fn send_codec(&self, offered: &[Codec]) -> Option<(Codec, u8)> {
        let kept: Vec<(Codec, u8)> = self
            .formats
            .iter()
            .filter_map(|pt| {
                let (_, name) = self.rtpmap.iter().find(|(p, _)| p == pt)?;
                codec_named(name).map(|c| (c, *pt))
            })
            .collect();
        offered.iter().find_map(|c| kept.iter().find(|(k, _)| k == c).copied())
    }

    /// The media SSRC the browser sends (not the RTX one of a FID group).
    pub fn media_ssrc(&self) -> Option<u32> {
        self.fid
            .first()
            .map(|(media, _)| *media)
            .or_else(|| self.ssrcs.iter().copied().find(|s| !self.fid.iter().any(|(_, rtx)| rtx == s)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub fingerprint: Fingerprint,
    pub ice_ufrag: String,
    pub ice_pwd: String,
    pub sections: Vec<AnswerSection>,
}

impl Answer {
    pub fn section(&self, mid: &str) -> Option<&AnswerSection> {
        self.sections.iter().find(|s| s.mid == mid)
    }
}

/// Parses an answer. Lines may end in CRLF or LF.
pub fn parse_answer(sdp: &str) -> Result<Answer, SdpError> {
    parse(sdp, false)
}

/// Parses a WHIP client's offer: as an answer, but its DTLS role may be `actpass` (we take the server's part).
pub fn parse_offer(sdp: &str) -> Result<Answer, SdpError> {
    parse(sdp, true)
}

fn parse(sdp: &str, offer: bool) -> Result<Answer, SdpError> {
    if sdp.len() > ANSWER_LEN_MAX {
        return Err(SdpError::TooLong);
    }
    if !sdp.trim_start().starts_with("v=0") {
        return Err(SdpError::NoVersion);
    }
    let mut fingerprint = None;
    let mut ufrag = None;
    let mut pwd = None;
    let mut sections: Vec<(Option<String>, AnswerSection)> = Vec::new();
    for (n, raw) in sdp.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let bad = |reason| SdpError::BadLine { line: n + 1, reason };
        if let Some(m) = line.strip_prefix("m=") {
            if sections.len() == SECTIONS_MAX {
                return Err(SdpError::TooManySections);
            }
            sections.push((None, media_line(m).ok_or_else(|| bad("an m= line needs media, port, proto, formats"))?));
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else { continue };
        let (key, value) = attr.split_once(':').unwrap_or((attr, ""));
        match key {
            "fingerprint" => {
                let (hash, hex) = value.split_once(' ').ok_or_else(|| bad("a=fingerprint needs a hash and a value"))?;
                if hash.eq_ignore_ascii_case("sha-256") {
                    let parsed =
                        Fingerprint::parse(hex.trim()).ok_or_else(|| SdpError::BadFingerprint(value.to_string()))?;
                    fingerprint.get_or_insert(parsed);
                }
            }
            // A rejected (port 0) section is read for its MID only: what else it says does not matter.
            _ if key != "mid" && sections.last().is_some_and(|(_, s)| s.rejected) => {}
            "setup" if offer && !matches!(value, "actpass" | "active") => {
                return Err(SdpError::BadOfferSetup(value.to_string()));
            }
            "setup" if !offer && !matches!(value, "active") => return Err(SdpError::BadSetup(value.to_string())),
            "ice-ufrag" => {
                ufrag.get_or_insert_with(|| value.to_string());
            }
            "ice-pwd" => {
                pwd.get_or_insert_with(|| value.to_string());
            }
            _ => {
                if let Some((mid, section)) = sections.last_mut() {
                    media_attribute(key, value, mid, section).map_err(bad)?;
                }
            }
        }
    }
    let fingerprint = fingerprint.ok_or(SdpError::NoFingerprint)?;
    let (Some(ice_ufrag), Some(ice_pwd)) = (ufrag, pwd) else { return Err(SdpError::NoIceCredentials) };
    let sections = sections
        .into_iter()
        .enumerate()
        .map(|(index, (mid, mut section))| {
            section.mid = mid.ok_or(SdpError::NoMid { index })?;
            let declared = std::mem::take(&mut section.rid_lines);
            section.send_rids.retain(|rid| declared.contains(rid));
            Ok(section)
        })
        .collect::<Result<_, _>>()?;
    Ok(Answer { fingerprint, ice_ufrag, ice_pwd, sections })
}

fn media_line(m: &str) -> Option<AnswerSection> {
    let mut parts = m.split_ascii_whitespace();
    let transport: String = m.splitn(3, ' ').nth(2).unwrap_or_default().chars().take(256).collect();
    let (media, port, _proto) = (parts.next()?, parts.next()?, parts.next()?);
    let port: u32 = port.split('/').next()?.parse().ok()?;
    // Formats that are not numbers (an application section's "webrtc-datachannel") are skipped.
    let formats = parts.filter_map(|f| f.parse().ok()).collect();
    Some(AnswerSection {
        mid: String::new(),
        rejected: port == 0,
        direction: Direction::SendRecv,
        formats,
        rtpmap: Vec::new(),
        ssrcs: Vec::new(),
        mid_extension: false,
        fid: Vec::new(),
        send_rids: Vec::new(),
        rid_lines: Vec::new(),
        media: media.chars().take(16).collect(),
        transport,
        encodings: Vec::new(),
        fmtp: Vec::new(),
        extmap: Vec::new(),
    })
}

fn media_attribute(
    key: &str,
    value: &str,
    mid: &mut Option<String>,
    section: &mut AnswerSection,
) -> Result<(), &'static str> {
    /// Bounds what one section can make us keep.
    const PER_SECTION_MAX: usize = 32;
    match key {
        "mid" => *mid = Some(value.to_string()),
        "sendrecv" => section.direction = Direction::SendRecv,
        "sendonly" => section.direction = Direction::SendOnly,
        "recvonly" => section.direction = Direction::RecvOnly,
        "inactive" => section.direction = Direction::Inactive,
        "rtpmap" if section.rtpmap.len() < PER_SECTION_MAX => {
            let (pt, encoding) = value.split_once(' ').ok_or("a=rtpmap needs a payload type and an encoding")?;
            let pt = pt.parse().map_err(|_| "a=rtpmap payload type is not a number")?;
            let name = encoding.split('/').next().unwrap_or_default().to_string();
            section.rtpmap.push((pt, name));
            section.encodings.push((pt, encoding.chars().take(64).collect()));
        }
        "fmtp" if section.fmtp.len() < PER_SECTION_MAX => {
            let (pt, params) = value.split_once(' ').ok_or("a=fmtp needs a payload type and parameters")?;
            let pt = pt.parse().map_err(|_| "a=fmtp payload type is not a number")?;
            section.fmtp.push((pt, params.chars().take(256).collect()));
        }
        "ssrc" if section.ssrcs.len() < PER_SECTION_MAX => {
            let ssrc = value.split(' ').next().unwrap_or_default();
            let ssrc: u32 = ssrc.parse().map_err(|_| "a=ssrc is not a 32-bit number")?;
            if !section.ssrcs.contains(&ssrc) {
                section.ssrcs.push(ssrc);
            }
        }
        "rid" if section.rid_lines.len() < PER_SECTION_MAX => {
            let mut parts = value.split_ascii_whitespace();
            let (id, direction) = (parts.next().ok_or("a=rid needs an id")?, parts.next());
            if direction == Some("send") {
                section.rid_lines.push(id.to_string());
            }
        }
        "simulcast" => section.send_rids = simulcast_send(value)?,
        "extmap" => {
            let mut parts = value.split_ascii_whitespace();
            let id = parts.next().unwrap_or_default();
            let uri = parts.next().unwrap_or_default();
            if uri == "urn:ietf:params:rtp-hdrext:sdes:mid" {
                section.mid_extension = true;
            }
            // `id/direction` is allowed; one-byte and two-byte IDs are 1 to 255.
            if let Ok(id) = id.split('/').next().unwrap_or_default().parse::<u8>()
                && section.extmap.len() < PER_SECTION_MAX
            {
                section.extmap.push((id, uri.chars().take(128).collect()));
            }
        }
        "ssrc-group" if section.fid.len() < PER_SECTION_MAX => {
            let mut parts = value.split(' ');
            if parts.next() == Some("FID") {
                let mut pair = parts.map(str::parse::<u32>);
                match (pair.next(), pair.next()) {
                    (Some(Ok(media)), Some(Ok(rtx))) => section.fid.push((media, rtx)),
                    _ => return Err("a=ssrc-group:FID needs two SSRCs"),
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The streams of `a=simulcast` (RFC 8853) the answerer sends: `send q;h;f` (in either order with `recv`), each
/// stream its first alternative (`q,x` is `q`), a leading `~` (paused at start) dropped.
fn simulcast_send(value: &str) -> Result<Vec<String>, &'static str> {
    let mut parts = value.split_ascii_whitespace();
    while let Some(direction) = parts.next() {
        let list = parts.next().ok_or("a=simulcast needs a list of RIDs after its direction")?;
        if direction == "send" {
            let rids: Vec<String> = list
                .split(';')
                .filter_map(|stream| stream.split(',').next())
                .map(|rid| rid.trim_start_matches('~').to_string())
                .filter(|rid| !rid.is_empty())
                .take(8)
                .collect();
            return Ok(rids);
        }
    }
    Ok(Vec::new())
}
