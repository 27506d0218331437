//! The recorder in the meeting: it joins through the documented signaling protocol with a recorder token
//! (subscribe only), answers every offer by receiving each track, connects over ICE, DTLS-SRTP and UDP like a
//! browser, and spools every frame it receives. Losses are NACKed, and a video track that lost a frame asks for a
//! keyframe (PLI), as a browser would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sluice_dataplane::core::Fingerprint;
use sluice_dataplane::testpeer::{Incoming, RawRtp, TestPeer, candidate_address};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::depacketize::Assembler;
use crate::jitter::{Released, Reorder};
use crate::spool::{Codec, Frame, Spool, TrackHeader, TrackWriter};

/// ICE checks and DTLS retransmissions until the path is up.
const RETRY: Duration = Duration::from_millis(50);
/// Joining and connecting are bounded by this.
const CONNECT_WAIT: Duration = Duration::from_secs(20);
/// Signaling pings and ICE consent checks, as the web client sends them.
const PING_INTERVAL: Duration = Duration::from_secs(5);
const CONSENT_INTERVAL: Duration = Duration::from_secs(3);
/// Housekeeping: releasing held packets, NACKs, PLIs.
const TICK: Duration = Duration::from_millis(20);
/// How long a hole holds later packets back waiting for its retransmission.
const REORDER_WAIT: Duration = Duration::from_millis(250);
/// Keyframe requests for one track at most this often.
const PLI_INTERVAL: Duration = Duration::from_millis(500);
/// Received frames reach the kernel this often (a crash of the process then loses at most this much) and the
/// disk less often.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
const SYNC_INTERVAL: Duration = Duration::from_secs(5);
/// A recorder whose signaling connection fails (not closed by the server) joins again, this many times at most
/// in one recording, after this wait.
const REJOINS_MAX: u32 = 10;
const REJOIN_WAIT: Duration = Duration::from_secs(1);
/// Tracks one recording takes at most, over all its connections.
const TRACKS_MAX: usize = 256;
/// The server pings every 5 s: this long without a word from it, the connection is taken for lost (a silent
/// network cut sends no reset).
const SILENCE_MAX: Duration = Duration::from_secs(15);
/// Close codes after which the server expects a client to join again (`docs/signaling.md`): timeout, renew,
/// too fast or too slow, unavailable; and 1001, going away. Any other close from the server ends the recording.
const CLOSES_TO_REJOIN: [u16; 5] = [1001, 4008, 4012, 4029, 4503];

/// Why the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The host stopped the recording.
    Stopped,
    /// The meeting ended (or the server closed the session); the recording ends with it.
    MeetingOver(String),
}

/// How one signaling connection ended.
enum Attendance {
    Over(Ended),
    /// The connection failed or could not be made: the recorder may join again. `welcomed`: it had joined (false
    /// also when its media never connected); a first connection that was not is the recording's failure.
    Dropped {
        why: String,
        welcomed: bool,
    },
}

/// What the recorder knows about one receive section.
struct Track {
    header: TrackHeader,
    ssrc: u32,
    writer: Option<TrackWriter>,
    reorder: Reorder<RawRtp>,
    assembler: Assembler,
    last_pli: Option<Instant>,
}

pub struct Session<'a> {
    spool: &'a Spool,
    names: HashMap<String, String>,
    /// By mid.
    tracks: HashMap<String, Track>,
    /// SSRC -> mid.
    by_ssrc: HashMap<u32, String>,
    spooled: usize,
    /// Tracks taken so far in this recording, for [`TRACKS_MAX`].
    taken: usize,
    released: Vec<Released<RawRtp>>,
    pub frames: u64,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("tracks", &self.tracks.len()).field("frames", &self.frames).finish()
    }
}

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

impl<'a> Session<'a> {
    pub fn new(spool: &'a Spool) -> Session<'a> {
        Session {
            spool,
            names: HashMap::new(),
            tracks: HashMap::new(),
            by_ssrc: HashMap::new(),
            spooled: spool.tracks().map_or(0, |t| t.len()),
            taken: 0,
            released: Vec::new(),
            frames: 0,
        }
    }

    /// Joins `meeting_id` through `signaling_url` and records until `stop` turns true or the meeting ends. If the
    /// signaling connection fails (a network cut, a proxy restart) rather than being closed by the server, the
    /// recorder keeps what it has, joins again and records the tracks it is offered then, so a recording is not
    /// cut short by a dropped connection.
    pub async fn run(
        &mut self,
        signaling_url: &str,
        meeting_id: &str,
        token: &str,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Ended, String> {
        let mut rejoins = 0;
        loop {
            let attended = self.attend(signaling_url, meeting_id, token, &mut stop).await;
            // A connection's tracks end with it: what is held goes to the spool, and a new join offers new ones.
            self.drain()?;
            self.flush(true)?;
            self.tracks.clear();
            self.by_ssrc.clear();
            let why = match attended? {
                Attendance::Over(ended) => return Ok(ended),
                Attendance::Dropped { why, welcomed: false } if rejoins == 0 => return Err(why),
                Attendance::Dropped { why, .. } => why,
            };
            if rejoins == REJOINS_MAX {
                return Ok(Ended::MeetingOver(format!("signaling lost {rejoins} times, the last: {why}")));
            }
            rejoins += 1;
            tracing::warn!(
                meeting = meeting_id,
                why,
                rejoins,
                "the recorder lost its signaling connection; joining again"
            );
            tokio::select! {
                _ = tokio::time::sleep(REJOIN_WAIT) => {}
                _ = stop.wait_for(|stopped| *stopped) => return Ok(Ended::Stopped),
            }
        }
    }

    /// One signaling connection: joins, answers offers, records, until it ends.
    async fn attend(
        &mut self,
        signaling_url: &str,
        meeting_id: &str,
        token: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Attendance, String> {
        let dropped = |why: String, welcomed: bool| Ok(Attendance::Dropped { why, welcomed });
        let connect = tokio::time::timeout(CONNECT_WAIT, tokio_tungstenite::connect_async(signaling_url));
        // A stop (or its sender gone) ends the wait; `wait_for` ignores changes that are not a stop.
        let connected = tokio::select! {
            c = connect => c,
            _ = stop.wait_for(|stopped| *stopped) => return Ok(Attendance::Over(Ended::Stopped)),
        };
        let mut ws = match connected {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => return dropped(format!("cannot connect to {signaling_url}: {e}"), false),
            Err(_) => {
                return dropped(
                    format!("the signaling socket {signaling_url} did not answer within {CONNECT_WAIT:?}"),
                    false,
                );
            }
        };
        let join = json!({"type": "join", "v": 1, "meeting_id": meeting_id, "token": token, "publish": []});
        if let Err(e) = ws.send(Message::text(join.to_string())).await {
            return dropped(format!("the signaling socket failed: {e}"), false);
        }
        let mut welcomed = false;
        let mut last_heard = Instant::now();
        let socket = UdpSocket::bind("0.0.0.0:0").await.map_err(|e| format!("a UDP socket: {e}"))?;
        let mut peer: Option<TestPeer> = None;
        let mut server: Option<SocketAddr> = None;
        let mut connected = false;
        // When the first track to receive was offered: media must connect within CONNECT_WAIT of it.
        let mut first_track: Option<Instant> = None;
        let mut next_retry = Instant::now();
        let mut next_ping = Instant::now() + PING_INTERVAL;
        let mut next_consent = Instant::now() + CONSENT_INTERVAL;
        let mut next_flush = Instant::now() + FLUSH_INTERVAL;
        let mut next_sync = Instant::now() + SYNC_INTERVAL;
        let mut tick = tokio::time::interval(TICK);
        let mut buf = vec![0u8; 2048];
        let ended = loop {
            let now = Instant::now();
            if let (Some(p), false) = (peer.as_mut(), connected) {
                if first_track.is_some_and(|t| now > t + CONNECT_WAIT) {
                    // Counted as not joined: the first connection fails the recording, a rejoin tries again.
                    let why = format!("media did not connect within {CONNECT_WAIT:?} of the first track");
                    break Attendance::Dropped { why, welcomed: false };
                }
                if now >= next_retry {
                    next_retry = now + RETRY;
                    if !p.dtls_started() {
                        send(&socket, server, &p.binding_request(true)).await;
                    } else if p.dtls_timeout().is_some_and(|t| t <= now) {
                        for record in p.handle_dtls_timeout(now) {
                            send(&socket, server, &record).await;
                        }
                    }
                }
            }
            if now.duration_since(last_heard) > SILENCE_MAX {
                break Attendance::Dropped {
                    why: format!("nothing heard from the server for {SILENCE_MAX:?}"),
                    welcomed,
                };
            }
            if now >= next_ping {
                next_ping = now + PING_INTERVAL;
                if let Err(e) = ws.send(Message::text(json!({"type": "ping"}).to_string())).await {
                    break Attendance::Dropped { why: format!("the signaling socket failed: {e}"), welcomed };
                }
            }
            if let (Some(p), true) = (peer.as_mut(), connected)
                && now >= next_consent
            {
                next_consent = now + CONSENT_INTERVAL;
                send(&socket, server, &p.binding_request(true)).await;
            }
            if now >= next_flush {
                next_flush = now + FLUSH_INTERVAL;
                let sync = now >= next_sync;
                if sync {
                    next_sync = now + SYNC_INTERVAL;
                }
                self.flush(sync)?;
            }
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break Attendance::Over(Ended::Stopped);
                    }
                }
                message = ws.next() => {
                    last_heard = Instant::now();
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(frame))) => {
                            let code = frame.as_ref().map(|f| u16::from(f.code));
                            let why = frame.map_or("the server closed the session".into(), |f| format!("{} ({})", f.reason, f.code));
                            if code.is_some_and(|c| CLOSES_TO_REJOIN.contains(&c)) {
                                break Attendance::Dropped { why, welcomed };
                            }
                            break Attendance::Over(Ended::MeetingOver(why));
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => break Attendance::Dropped { why: format!("the signaling socket failed: {e}"), welcomed },
                        None => break Attendance::Dropped { why: "the signaling socket closed".into(), welcomed },
                    };
                    let m: Value = serde_json::from_str(&text).map_err(|e| format!("bad message from the server: {e}"))?;
                    match m["type"].as_str() {
                        Some("welcome") => {
                            welcomed = true;
                            for p in m["participants"].as_array().into_iter().flatten() {
                                self.learn_name(p);
                            }
                        }
                        Some("participant_joined") => self.learn_name(&m["participant"]),
                        Some("offer") => {
                            let answer = self.answer(&m, &mut peer)?;
                            if first_track.is_none() && !self.tracks.is_empty() {
                                first_track = Some(Instant::now());
                            }
                            if let Err(e) = ws.send(Message::text(answer.to_string())).await {
                                break Attendance::Dropped { why: format!("the signaling socket failed: {e}"), welcomed };
                            }
                        }
                        Some("candidate") if server.is_none() => server = m["candidate"].as_str().and_then(candidate_address),
                        Some("meeting_ended") => {
                            break Attendance::Over(Ended::MeetingOver(m["reason"].as_str().unwrap_or("the meeting ended").to_string()));
                        }
                        Some("error") => tracing::warn!(message = %m, "the server reported an error to the recorder"),
                        _ => {}
                    }
                }
                received = socket.recv_from(&mut buf) => {
                    let (n, from) = received.map_err(|e| format!("UDP receive: {e}"))?;
                    if server.is_some_and(|s| s != from) {
                        continue;
                    }
                    let Some(p) = peer.as_mut() else { continue };
                    match p.receive(&buf[..n]) {
                        Incoming::BindingSuccess if !p.dtls_started() => {
                            for record in p.start_dtls(Instant::now()) { send(&socket, server, &record).await; }
                        }
                        Incoming::Dtls(records) => {
                            for record in records { send(&socket, server, &record).await; }
                            connected = p.srtp_ready();
                        }
                        Incoming::Rtp(rtp) => self.receive(rtp, Instant::now())?,
                        Incoming::Bad(why) => tracing::debug!(why, "the recorder dropped a datagram"),
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    if let (Some(p), true) = (peer.as_mut(), connected) {
                        for datagram in self.housekeeping(p, Instant::now())? {
                            send(&socket, server, &datagram).await;
                        }
                    }
                }
            }
        };
        if let Attendance::Over(_) = ended {
            let _ = ws.send(Message::text(json!({"type": "leave"}).to_string())).await;
            let _ = ws.close(None).await;
        }
        Ok(ended)
    }

    fn learn_name(&mut self, p: &Value) {
        if let (Some(id), Some(name)) = (p["participant_id"].as_str(), p["name"].as_str()) {
            self.names.insert(id.to_string(), name.to_string());
        }
    }

    /// Answers an offer: receive every subscribe section in its offered codec, close the rest.
    fn answer(&mut self, offer: &Value, peer: &mut Option<TestPeer>) -> Result<Value, String> {
        let sdp = offer["sdp"].as_str().unwrap_or_default();
        let sections = parse_sections(sdp);
        let infos: Vec<&Value> = offer["sections"].as_array().into_iter().flatten().collect();
        let attr = |key: &str| sdp.lines().find_map(|l| l.trim().strip_prefix(key)).map(str::trim).map(String::from);
        if peer.is_none()
            && let (Some(ufrag), Some(pwd), Some(fp)) =
                (attr("a=ice-ufrag:"), attr("a=ice-pwd:"), attr("a=fingerprint:sha-256 "))
        {
            let fingerprint = Fingerprint::parse(&fp).ok_or_else(|| format!("bad fingerprint in the offer: {fp}"))?;
            let mut p = TestPeer::with_dtls(0, &ufrag, &pwd, fingerprint, None);
            p.deliver_raw();
            *peer = Some(p);
        }
        let fingerprint = match peer.as_ref().and_then(TestPeer::fingerprint) {
            Some(f) => f.to_string(),
            None => {
                sluice_dataplane::core::DtlsIdentity::generate().map_err(|e| e.to_string())?.fingerprint().to_string()
            }
        };
        let mut answer = format!(
            "v=0\r\no=- 1 {} IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 {fingerprint}\r\n\
             a=ice-ufrag:peer0\r\na=ice-pwd:recorder-password-0123456789\r\n",
            offer["revision"]
        );
        for (section, info) in sections.iter().zip(infos.iter().copied().chain(std::iter::repeat(&Value::Null))) {
            let receive = info["role"] == "subscribe" && section.codec.is_some();
            let (pt, codec_line) = section.codec.clone().map_or((0, String::new()), |(pt, line, _)| (pt, line));
            let port = if receive { 9 } else { 0 };
            answer += &format!(
                "m={} {port} UDP/TLS/RTP/SAVPF {pt}\r\na=setup:active\r\na=mid:{}\r\n",
                section.kind, section.mid
            );
            if !receive {
                answer += "a=inactive\r\n";
                continue;
            }
            answer += &format!("a=rtpmap:{pt} {codec_line}\r\na=recvonly\r\na=rtcp-mux\r\n");
            answer += &format!("a=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} nack pli\r\n");
            if let Some(rtx_pt) = section.rtx_pt {
                answer += &format!("a=rtpmap:{rtx_pt} rtx/90000\r\na=fmtp:{rtx_pt} apt={pt}\r\n");
            }
            self.expect(section, info, peer.as_mut());
        }
        Ok(json!({"type": "answer", "revision": offer["revision"], "sdp": answer}))
    }

    /// Starts keeping a receive section's track, once.
    fn expect(&mut self, section: &Section, info: &Value, peer: Option<&mut TestPeer>) {
        if self.tracks.contains_key(&section.mid) || self.taken >= TRACKS_MAX {
            return;
        }
        let (Some((_, _, codec)), Some(ssrc)) = (section.codec.clone(), section.ssrc) else { return };
        let participant_id = info["participant_id"].as_str().unwrap_or_default().to_string();
        let header = TrackHeader {
            track_id: info["track_id"].as_str().unwrap_or_default().to_string(),
            name: self.names.get(&participant_id).cloned().unwrap_or_else(|| participant_id.clone()),
            participant_id,
            source: info["source"].as_str().unwrap_or("camera").to_string(),
            codec,
        };
        if let (Some(p), Some(rtx)) = (peer, section.rtx_ssrc) {
            p.expect_rtx(rtx, ssrc);
        }
        self.by_ssrc.insert(ssrc, section.mid.clone());
        let track = Track {
            header,
            ssrc,
            writer: None,
            reorder: Reorder::new(REORDER_WAIT),
            assembler: Assembler::new(codec),
            last_pli: None,
        };
        self.tracks.insert(section.mid.clone(), track);
        self.taken += 1;
    }

    fn receive(&mut self, rtp: RawRtp, now: Instant) -> Result<(), String> {
        let Some(mid) = self.by_ssrc.get(&rtp.ssrc).cloned() else { return Ok(()) };
        let track = self.tracks.get_mut(&mid).expect("every mapped SSRC has its track");
        track.reorder.push(rtp.seq, now, rtp);
        self.release_track_of(&mid, now)
    }

    /// Moves what the track's reorder buffer lets go into frames, and frames into the spool.
    fn release_track_of(&mut self, mid: &str, now: Instant) -> Result<(), String> {
        let Some(track) = self.tracks.get_mut(mid) else { return Ok(()) };
        track.reorder.release(now, &mut self.released);
        for r in self.released.drain(..) {
            let assembled = match r {
                Released::Gap => {
                    track.assembler.gap();
                    None
                }
                Released::Packet(p) => track.assembler.push(p.timestamp, p.marker, &p.payload),
            };
            let Some(a) = assembled else { continue };
            if track.writer.is_none() {
                let n = self.spooled;
                self.spooled += 1;
                track.writer = Some(self.spool.add_track(n, &track.header).map_err(|e| e.to_string())?);
            }
            let frame =
                Frame { keyframe: a.keyframe, rtp_timestamp: a.rtp_timestamp, arrival_us: unix_us(), data: a.data };
            track.writer.as_mut().expect("just opened").write(&frame).map_err(|e| e.to_string())?;
            self.frames += 1;
        }
        Ok(())
    }

    /// Releases held packets whose wait is over; returns the NACKs and PLIs to send.
    fn housekeeping(&mut self, peer: &mut TestPeer, now: Instant) -> Result<Vec<Vec<u8>>, String> {
        let mids: Vec<String> = self.tracks.keys().cloned().collect();
        let mut out = Vec::new();
        for mid in mids {
            self.release_track_of(&mid, now)?;
            let track = self.tracks.get_mut(&mid).expect("listed");
            let lost = track.reorder.to_nack(now);
            if !lost.is_empty() {
                out.push(peer.nack(track.ssrc, &lost));
            }
            if track.assembler.needs_keyframe() && track.last_pli.is_none_or(|t| now.duration_since(t) >= PLI_INTERVAL)
            {
                track.last_pli = Some(now);
                out.push(peer.pli(track.ssrc));
            }
        }
        Ok(out)
    }

    /// At the end: whatever is held goes out as if its wait were over.
    fn drain(&mut self) -> Result<(), String> {
        let later = Instant::now() + REORDER_WAIT * 2;
        let mids: Vec<String> = self.tracks.keys().cloned().collect();
        for mid in mids {
            self.release_track_of(&mid, later)?;
        }
        Ok(())
    }

    fn flush(&mut self, sync: bool) -> Result<(), String> {
        for w in self.tracks.values_mut().filter_map(|t| t.writer.as_mut()) {
            if sync { w.sync() } else { w.flush() }.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// One m-section of an offer, as far as the recorder needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub kind: String,
    pub mid: String,
    /// Payload type, `a=rtpmap` value, codec: the first codec of the section we record.
    pub codec: Option<(u8, String, Codec)>,
    pub rtx_pt: Option<u8>,
    pub ssrc: Option<u32>,
    pub rtx_ssrc: Option<u32>,
}

/// The offer's m-sections in order.
pub fn parse_sections(sdp: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            out.push(Section { kind: m.split(' ').next().unwrap_or("video").to_string(), ..Section::default() });
            continue;
        }
        let Some(s) = out.last_mut() else { continue };
        if let Some(mid) = line.strip_prefix("a=mid:") {
            s.mid = mid.to_string();
        } else if let Some(map) = line.strip_prefix("a=rtpmap:") {
            let Some((pt, value)) = map.split_once(' ') else { continue };
            let Ok(pt) = pt.parse::<u8>() else { continue };
            let name = value.split('/').next().unwrap_or_default();
            if name.eq_ignore_ascii_case("rtx") {
                s.rtx_pt.get_or_insert(pt);
            } else if let (None, Some(codec)) = (&s.codec, Codec::from_rtpmap(name)) {
                s.codec = Some((pt, value.to_string(), codec));
            }
        } else if let Some(group) = line.strip_prefix("a=ssrc-group:FID ") {
            let mut ssrcs = group.split_ascii_whitespace().filter_map(|x| x.parse::<u32>().ok());
            if let (Some(media), Some(rtx)) = (ssrcs.next(), ssrcs.next()) {
                (s.ssrc, s.rtx_ssrc) = (Some(media), Some(rtx));
            }
        } else if let Some(ssrc) = line.strip_prefix("a=ssrc:")
            && s.ssrc.is_none()
        {
            s.ssrc = ssrc.split(' ').next().and_then(|x| x.parse().ok());
        }
    }
    out
}

async fn send(socket: &UdpSocket, to: Option<SocketAddr>, datagram: &[u8]) {
    if let Some(to) = to {
        let _ = socket.send_to(datagram, to).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_sections_give_codec_ssrc_and_rtx() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n\
                   a=ssrc:1234 cname:x\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n\
                   a=rtpmap:97 rtx/90000\r\na=ssrc-group:FID 55 66\r\na=ssrc:55 cname:x\r\na=ssrc:66 cname:x\r\n\
                   m=video 0 UDP/TLS/RTP/SAVPF 98\r\na=mid:2\r\na=rtpmap:98 AV1/90000\r\n";
        let s = parse_sections(sdp);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].codec, Some((111, "opus/48000/2".into(), Codec::Opus)));
        assert_eq!((s[0].ssrc, s[0].rtx_ssrc), (Some(1234), None));
        assert_eq!(s[1].codec.as_ref().map(|c| c.2), Some(Codec::Vp8));
        assert_eq!((s[1].ssrc, s[1].rtx_ssrc, s[1].rtx_pt), (Some(55), Some(66), Some(97)));
        assert_eq!(s[2].codec, None, "a codec we do not record");
    }
}
