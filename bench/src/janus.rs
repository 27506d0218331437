//! `--target janus`: the same synthetic participants through Janus's VideoRoom plugin (Debian's `janus` 1.1.2),
//! which the bench starts on loopback with a generated configuration (HTTP transport only, the VideoRoom plugin
//! only). Each participant talks to Janus as its JavaScript client does: a session and a handle per
//! PeerConnection over the HTTP API (long-poll events), `joinandconfigure` with an SDP offer to publish, a
//! subscriber handle with `join` and an SDP answer to receive. Janus runs full ICE, so the participant answers
//! Janus's connectivity checks too; it is the DTLS client on both legs (its offer says `setup:active`, its answer
//! to Janus's `actpass` too).
//!
//! Publishers join first and every participant then subscribes to the feeds of the others in its meeting, so
//! join ramps (`join-storm`) are not run against Janus.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use sluice_dataplane::core::Fingerprint;
use sluice_dataplane::packet::stun::{self, Message, Writer};
use sluice_dataplane::testpeer::{Incoming, TestPeer, candidate_address};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::clock::{RxClock, recv_stamped};
use crate::meeting::{Outcome, PAYLOAD_LEN, Report, Scenario, gather, summarize, udp_socket_on};

/// Janus answers HTTP within this after start; every wait for it is bounded by `WAIT`.
const START_WAIT: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(20);
const RETRY: Duration = Duration::from_millis(50);
/// ICE consent, as a browser keeps it.
const CONSENT_INTERVAL: Duration = Duration::from_secs(3);
/// Our ICE password on every leg (Janus checks our answers to its checks with it).
const ICE_PWD: &str = "bench-password-0123456789";
/// Where Debian installs Janus's modules.
const MODULES: &str = "/usr/lib/x86_64-linux-gnu/janus";

/// A Janus process with a generated configuration; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct JanusServer {
    child: Child,
    dir: PathBuf,
    pub url: String,
}

impl JanusServer {
    /// Writes the configuration into `dir` and starts `janus` with its HTTP API on `127.0.0.1:<port>`.
    pub fn start(dir: &Path) -> anyhow::Result<JanusServer> {
        std::fs::create_dir_all(dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        write_config(dir, port)?;
        let log = std::fs::File::create(dir.join("janus.log"))?;
        let child = Command::new("janus")
            .arg("-F")
            .arg(dir)
            .arg("-C")
            .arg(dir.join("janus.jcfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start janus (Debian package janus; tests/run.sh installs it)")?;
        let server = JanusServer { child, dir: dir.to_path_buf(), url: format!("http://127.0.0.1:{port}/janus") };
        let deadline = Instant::now() + START_WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("janus did not answer on port {port} within {START_WAIT:?}; its log: {}", server.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("janus.log")).unwrap_or_default();
        log.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ")
    }
}

impl Drop for JanusServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HTTP transport on loopback and the VideoRoom plugin, nothing else (the streaming plugin would open ports
/// on every interface; the other transports and event handlers are not needed).
fn write_config(dir: &Path, port: u16) -> std::io::Result<()> {
    let plugins = [
        "audiobridge",
        "echotest",
        "nosip",
        "recordplay",
        "sip",
        "streaming",
        "textroom",
        "videocall",
        "voicemail",
        "lua",
        "duktape",
    ];
    let transports = ["websockets", "rabbitmq", "mqtt", "nanomsg", "pfunix"];
    let events = ["gelfevh", "mqttevh", "nanomsgevh", "rabbitmqevh", "sampleevh", "wsevh"];
    let list = |names: &[&str]| names.iter().map(|n| format!("libjanus_{n}.so")).collect::<Vec<_>>().join(",");
    std::fs::write(
        dir.join("janus.jcfg"),
        format!(
            "general: {{\n configs_folder = \"{d}\"\n plugins_folder = \"{MODULES}/plugins\"\n \
             transports_folder = \"{MODULES}/transports\"\n events_folder = \"{MODULES}/events\"\n \
             loggers_folder = \"{MODULES}/loggers\"\n debug_level = 3\n session_timeout = 120\n}}\n\
             plugins: {{ disable = \"{}\" }}\ntransports: {{ disable = \"{}\" }}\n\
             events: {{ disable = \"{}\" }}\nloggers: {{ disable = \"libjanus_jsonlog.so\" }}\n",
            list(&plugins),
            list(&transports),
            list(&events),
            d = dir.display(),
        ),
    )?;
    std::fs::write(
        dir.join("janus.transport.http.jcfg"),
        format!(
            "general: {{\n base_path = \"/janus\"\n http = true\n port = {port}\n ip = \"127.0.0.1\"\n https = false\n}}\n\
             admin: {{ admin_http = false }}\n"
        ),
    )?;
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: { }\n")
}

/// One Janus session with one handle on the VideoRoom plugin, and the events Janus pushes to it.
struct Handle {
    http: reqwest::Client,
    url: String,
    events: mpsc::Receiver<Value>,
    _poller: tokio::task::AbortHandle,
}

impl Handle {
    async fn open(http: &reqwest::Client, base: &str) -> anyhow::Result<Handle> {
        let session = call(http, base, json!({"janus": "create"})).await?["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("no session id"))?;
        let session_url = format!("{base}/{session}");
        let handle = call(http, &session_url, json!({"janus": "attach", "plugin": "janus.plugin.videoroom"})).await?["data"]
            ["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("no handle id"))?;
        let (tx, events) = mpsc::channel(64);
        let poll_http = http.clone();
        let poll_url = format!("{session_url}?maxev=10");
        let poller = tokio::spawn(async move {
            // Janus's long poll answers within 30 s; each request also keeps the session alive.
            while let Ok(reply) = poll_http.get(&poll_url).send().await {
                let Ok(batch) = reply.json::<Value>().await else { break };
                let items = match batch {
                    Value::Array(items) => items,
                    one => vec![one],
                };
                for e in items {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Handle {
            http: http.clone(),
            url: format!("{session_url}/{handle}"),
            events,
            _poller: poller.abort_handle(),
        })
    }

    /// A plugin request; the synchronous answer's plugin data.
    async fn request(&self, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let mut message = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            message["jsep"] = jsep;
        }
        call(&self.http, &self.url, message).await
    }

    /// Waits for the plugin event carrying a JSEP (an answer to our offer, or Janus's offer).
    async fn jsep_event(&mut self) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| anyhow!("janus sent no SDP within {WAIT:?}"))?
                .ok_or_else(|| anyhow!("janus's event stream ended"))?;
            if let Some(error) = e["plugindata"]["data"]["error"].as_str() {
                bail!("janus: {error}");
            }
            if e["jsep"]["sdp"].is_string() {
                return Ok(e);
            }
        }
    }
}

/// A Janus API call; Janus errors become errors.
async fn call(http: &reqwest::Client, url: &str, mut body: Value) -> anyhow::Result<Value> {
    body["transaction"] = json!(format!("{:x}", rand_u64()));
    let reply: Value = http.post(url).json(&body).send().await.context("janus HTTP API")?.json().await?;
    if reply["janus"] == "error" {
        bail!("janus: {}", reply["error"]["reason"]);
    }
    if let Some(error) = reply["plugindata"]["data"]["error"].as_str() {
        bail!("janus: {error}");
    }
    Ok(reply)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// One PeerConnection's worth of transport: a socket, the simulated browser, Janus's address.
struct Leg {
    socket: UdpSocket,
    peer: TestPeer,
    janus: SocketAddr,
    connected: bool,
}

impl Leg {
    /// Connects: ICE checks both ways until DTLS is done, within `WAIT`.
    async fn connect(&mut self, buf: &mut [u8]) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        let mut next_retry = Instant::now();
        while !self.connected {
            let now = Instant::now();
            if now > deadline {
                bail!("not connected to janus within {WAIT:?}");
            }
            if now >= next_retry {
                next_retry = now + RETRY;
                let out = if !self.peer.dtls_started() {
                    vec![self.peer.binding_request(true)]
                } else if self.peer.dtls_timeout().is_some_and(|t| t <= now) {
                    self.peer.handle_dtls_timeout(now)
                } else {
                    vec![]
                };
                for d in out {
                    let _ = self.socket.send_to(&d, self.janus).await;
                }
            }
            if let Ok(Ok((n, from))) = tokio::time::timeout(RETRY, self.socket.recv_from(buf)).await {
                self.receive(&buf[..n], from).await;
            }
        }
        Ok(())
    }

    /// Handles one datagram: answers Janus's ICE checks, drives DTLS; returns media.
    async fn receive(&mut self, datagram: &[u8], from: SocketAddr) -> Option<Incoming> {
        if let Some(answer) = answer_check(datagram, from, self.peer.ice_ufrag()) {
            if !answer.is_empty() {
                let _ = self.socket.send_to(&answer, from).await;
            }
            return None;
        }
        match self.peer.receive(datagram) {
            Incoming::BindingSuccess if !self.peer.dtls_started() => {
                for record in self.peer.start_dtls(Instant::now()) {
                    let _ = self.socket.send_to(&record, self.janus).await;
                }
                None
            }
            Incoming::Dtls(records) => {
                for record in records {
                    let _ = self.socket.send_to(&record, self.janus).await;
                }
                self.connected = self.peer.srtp_ready();
                None
            }
            other => Some(other),
        }
    }
}

/// The success response to a connectivity check Janus sends us (full ICE), or `None` if `datagram` is not one.
fn answer_check(datagram: &[u8], from: SocketAddr, ufrag: &str) -> Option<Vec<u8>> {
    let m = Message::parse(datagram).ok()?;
    if m.msg_type != stun::BINDING_REQUEST {
        return None;
    }
    let username = m.get(stun::attr::USERNAME)?;
    if !username.starts_with(format!("{ufrag}:").as_bytes()) || m.check_integrity(ICE_PWD.as_bytes()).is_err() {
        // Not for us, or forged: dropped, as a browser drops it.
        return Some(Vec::new());
    }
    let mut buf = vec![0u8; 256];
    let mut w = Writer::new(&mut buf, stun::BINDING_SUCCESS, m.transaction_id).ok()?;
    w.xor_address(stun::attr::XOR_MAPPED_ADDRESS, from).ok()?.integrity(ICE_PWD.as_bytes()).ok()?.fingerprint().ok()?;
    let n = w.len();
    buf.truncate(n);
    Some(buf)
}

/// What an SDP from Janus says about its end: ICE credentials, certificate fingerprint, an IPv4 UDP candidate
/// (loopback if it has one).
fn remote_of(sdp: &str) -> anyhow::Result<(String, String, Fingerprint, SocketAddr)> {
    let attr = |key: &str| sdp.lines().find_map(|l| l.trim().strip_prefix(key)).map(str::trim).map(String::from);
    let (Some(ufrag), Some(pwd), Some(fp)) = (attr("a=ice-ufrag:"), attr("a=ice-pwd:"), attr("a=fingerprint:sha-256 "))
    else {
        bail!("janus's SDP lacks ICE credentials or a fingerprint");
    };
    let fingerprint = Fingerprint::parse(&fp).ok_or_else(|| anyhow!("bad fingerprint {fp}"))?;
    let candidates: Vec<SocketAddr> = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a="))
        .filter(|c| c.split_ascii_whitespace().nth(2).is_some_and(|t| t.eq_ignore_ascii_case("udp")))
        .filter_map(candidate_address)
        .filter(SocketAddr::is_ipv4)
        .collect();
    let janus = candidates
        .iter()
        .find(|a| a.ip().is_loopback())
        .or(candidates.first())
        .copied()
        .ok_or_else(|| anyhow!("janus's SDP has no IPv4 UDP candidate"))?;
    Ok((ufrag, pwd, fingerprint, janus))
}

/// The address the participants use with Janus: this machine's first non-loopback IPv4 address. Janus (libnice)
/// gathers no loopback candidates and pairs none with a loopback candidate of ours.
fn local_address() -> anyhow::Result<IpAddr> {
    sluice_turn::runtime::machine_addresses().into_iter().find(|ip| ip.is_ipv4() && !ip.is_loopback()).ok_or_else(
        || anyhow!("this machine has no non-loopback IPv4 address, and Janus gathers no loopback candidates"),
    )
}

/// Our offer to publish one video stream (the test payload rides as VP8 on payload type 111).
fn publish_offer(leg: SocketAddr, peer: &TestPeer) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=msid-semantic: WMS *\r\n\
         m=video {port} UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 {ip}\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n\
         a=ice-ufrag:{}\r\na=ice-pwd:{ICE_PWD}\r\na=fingerprint:sha-256 {}\r\na=setup:active\r\n\
         a=rtpmap:111 VP8/90000\r\na=ssrc:{} cname:bench\r\n\
         a=candidate:1 1 udp 2130706431 {ip} {port} typ host\r\na=end-of-candidates\r\n",
        peer.ice_ufrag(),
        peer.fingerprint().expect("a DTLS peer"),
        peer.ssrc,
        ip = leg.ip(),
        port = leg.port(),
    )
}

/// Our answer to Janus's subscriber offer: receive every section it offers, in its first codec.
fn subscribe_answer(offer: &str, leg: SocketAddr, peer: &TestPeer) -> String {
    let (ip, leg_port) = (leg.ip(), leg.port());
    let mut answer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=msid-semantic: WMS *\r\n\
         a=fingerprint:sha-256 {}\r\n",
        peer.fingerprint().expect("a DTLS peer")
    );
    let mids: Vec<String> = offer.lines().filter_map(|l| l.trim().strip_prefix("a=mid:")).map(String::from).collect();
    answer += &format!("a=group:BUNDLE {}\r\n", mids.join(" "));
    let mut section = String::new();
    let flush = |section: &mut String, answer: &mut String| {
        answer.push_str(section);
        section.clear();
    };
    for line in offer.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            flush(&mut section, &mut answer);
            let mut parts = m.split(' ');
            let kind = parts.next().unwrap_or("video");
            let pt = parts.nth(2).unwrap_or("96");
            section = format!(
                "m={kind} {leg_port} UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 {ip}\r\na=recvonly\r\na=rtcp-mux\r\n\
                 a=ice-ufrag:{}\r\na=ice-pwd:{ICE_PWD}\r\na=setup:active\r\n\
                 a=candidate:1 1 udp 2130706431 {ip} {leg_port} typ host\r\na=end-of-candidates\r\n",
                peer.ice_ufrag()
            );
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            section += &format!("a=mid:{mid}\r\n");
        } else if line.starts_with("a=rtpmap:") && !section.contains("a=rtpmap:") {
            section += &format!("{line}\r\n");
        }
    }
    flush(&mut section, &mut answer);
    answer
}

/// Runs the scenario through `janus` (already started), measuring its CPU time over the media phase.
pub async fn run(scenario: &Scenario, janus: &JanusServer) -> anyhow::Result<Report> {
    if !scenario.ramp.is_zero() {
        bail!("join ramps are not run against janus (publishers join before subscribers there)");
    }
    let http = reqwest::Client::new();
    let meetings = scenario.meetings.max(1);
    let admin = Handle::open(&http, &janus.url).await?;
    for m in 0..meetings {
        let create = json!({"request": "create", "room": room(m), "publishers": scenario.participants.max(1), "bitrate": 0, "videocodec": "vp8", "notify_joining": false});
        admin.request(create, None).await.context("create a janus room")?;
    }
    let total = scenario.participants * meetings;
    let epoch = Instant::now();
    let media_start = epoch + Duration::from_secs(3) + Duration::from_millis(40 * scenario.participants as u64);
    let media_end = media_start + scenario.duration;
    // Feed ids by meeting, published once every publisher of the meeting has joined.
    let feeds: Vec<(watch::Sender<Feeds>, watch::Receiver<Feeds>)> =
        (0..meetings).map(|_| watch::channel(None)).collect();
    let (joined_tx, mut joined_rx) = mpsc::channel::<(usize, u32, u64)>(total.max(1));
    let mut tasks = Vec::new();
    for k in 0..total {
        let (m, i) = (k / scenario.participants, k % scenario.participants);
        let ctx = JanusParticipant {
            index: k as u32,
            meeting: m,
            publish: i < scenario.publishers,
            url: janus.url.clone(),
            epoch,
            media_start,
            media_end,
            pps: scenario.pps.max(1),
        };
        let (joined, feeds) = (joined_tx.clone(), feeds[m].1.clone());
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcome = Outcome { meeting: m, ..Outcome::default() };
            if let Err(e) = ctx.run(&http, joined, feeds, &mut outcome).await {
                outcome.error = Some(format!("participant {}: {e:#}", ctx.index));
            }
            outcome
        }));
    }
    drop(joined_tx);
    let mut by_meeting: Vec<Vec<(u32, u64)>> = vec![Vec::new(); meetings];
    let publishers = scenario.publishers.min(scenario.participants);
    let joined_by = tokio::time::Instant::now() + WAIT;
    while by_meeting.iter().any(|f| f.len() < publishers) {
        match tokio::time::timeout_at(joined_by, joined_rx.recv()).await {
            Ok(Some((m, index, feed))) => {
                by_meeting[m].push((index, feed));
                if by_meeting[m].len() == publishers {
                    let _ = feeds[m].0.send(Some(by_meeting[m].clone()));
                }
            }
            _ => break,
        }
    }
    for (m, f) in by_meeting.iter().enumerate() {
        if f.len() < publishers {
            // Subscribe to whoever made it; the failures are in the outcomes.
            let _ = feeds[m].0.send(Some(f.clone()));
        }
    }
    let cpu_before = Arc::new(std::sync::Mutex::new(None));
    {
        let (cpu_before, pid) = (Arc::clone(&cpu_before), janus.pid());
        tokio::spawn(async move {
            tokio::time::sleep_until(media_start.into()).await;
            *cpu_before.lock().expect("cpu") = crate::meeting::process_cpu_ns(pid);
        });
    }
    let generator = crate::meeting::CpuWindow::generator(media_start);
    tokio::time::sleep_until(media_end.into()).await;
    let cpu_after = crate::meeting::process_cpu_ns(janus.pid());
    let generator_cpu = generator.end();
    let (outcomes, cpu) = gather(tasks, &cpu_before, cpu_after).await;
    let mut report = summarize(scenario, &outcomes, cpu).with_generator_cpu(generator_cpu);
    report.target = "janus".into();
    Ok(report)
}

/// A meeting's publishers once they have all joined: (participant index, Janus feed id).
type Feeds = Option<Vec<(u32, u64)>>;

fn room(meeting: usize) -> u64 {
    9000 + meeting as u64
}

struct JanusParticipant {
    index: u32,
    meeting: usize,
    publish: bool,
    url: String,
    epoch: Instant,
    media_start: Instant,
    media_end: Instant,
    pps: u32,
}

impl JanusParticipant {
    async fn run(
        &self,
        http: &reqwest::Client,
        joined: mpsc::Sender<(usize, u32, u64)>,
        mut feeds: watch::Receiver<Feeds>,
        outcome: &mut Outcome,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut buf = vec![0u8; 2048];
        let mut publisher = None;
        if self.publish {
            let mut handle = Handle::open(http, &self.url).await?;
            // Janus's credentials come with its answer; the offer needs our certificate first.
            let mut peer = TestPeer::with_dtls(self.index, "", "", Fingerprint([0; 32]), None);
            let socket = udp_socket_on(local_address()?)?;
            let offer = publish_offer(socket.local_addr()?, &peer);
            let join = json!({"request": "joinandconfigure", "room": room(self.meeting), "ptype": "publisher", "display": format!("bench-{}", self.index), "audio": false, "video": true});
            handle.request(join, Some(json!({"type": "offer", "sdp": offer}))).await?;
            let event = handle.jsep_event().await?;
            let feed =
                event["plugindata"]["data"]["id"].as_u64().ok_or_else(|| anyhow!("janus gave no feed id: {event}"))?;
            let (ufrag, pwd, fingerprint, janus) = remote_of(event["jsep"]["sdp"].as_str().unwrap_or_default())?;
            peer.set_remote(&ufrag, &pwd, fingerprint);
            let mut leg = Leg { socket, peer, janus, connected: false };
            leg.connect(&mut buf).await?;
            let _ = joined.send((self.meeting, self.index, feed)).await;
            publisher = Some((handle, leg));
        }
        outcome.joined = true;
        outcome.join_ms = started.elapsed().as_secs_f64() * 1000.0;
        outcome.joined_at_ms = self.epoch.elapsed().as_secs_f64() * 1000.0;
        let list = loop {
            if let Some(list) = feeds.borrow().clone() {
                break list;
            }
            tokio::time::timeout(WAIT, feeds.changed()).await.map_err(|_| anyhow!("publishers did not join"))??;
        };
        let others: Vec<u64> = list.iter().filter(|(i, _)| *i != self.index).map(|(_, f)| *f).collect();
        let mut subscriber = None;
        if !others.is_empty() {
            let mut handle = Handle::open(http, &self.url).await?;
            let streams: Vec<Value> = others.iter().map(|f| json!({"feed": f})).collect();
            handle
                .request(
                    json!({"request": "join", "room": room(self.meeting), "ptype": "subscriber", "streams": streams}),
                    None,
                )
                .await?;
            let event = handle.jsep_event().await?;
            let offer = event["jsep"]["sdp"].as_str().unwrap_or_default().to_string();
            let (ufrag, pwd, fingerprint, janus) = remote_of(&offer)?;
            let mut peer = TestPeer::with_dtls(self.index | 0x4000_0000, &ufrag, &pwd, fingerprint, None);
            peer.set_ice_controlled();
            let mut leg = Leg { socket: udp_socket_on(local_address()?)?, peer, janus, connected: false };
            let answer = subscribe_answer(&offer, leg.socket.local_addr()?, &leg.peer);
            handle.request(json!({"request": "start"}), Some(json!({"type": "answer", "sdp": answer}))).await?;
            leg.connect(&mut buf).await?;
            subscriber = Some((handle, leg));
        }
        self.media(publisher.as_mut().map(|p| &mut p.1), subscriber.as_mut().map(|s| &mut s.1), started, outcome).await
    }

    /// Sends (publisher leg) and receives (subscriber leg) until the media phase ends.
    async fn media(
        &self,
        mut up: Option<&mut Leg>,
        mut down: Option<&mut Leg>,
        started: Instant,
        outcome: &mut Outcome,
    ) -> anyhow::Result<()> {
        let interval = Duration::from_secs_f64(1.0 / f64::from(self.pps));
        let mut next_send = self.media_start;
        let mut next_consent = Instant::now() + CONSENT_INTERVAL;
        let (mut up_buf, mut down_buf) = (vec![0u8; 2048], vec![0u8; 2048]);
        let clock = RxClock::new(self.epoch);
        let end = self.media_end + Duration::from_millis(300);
        loop {
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            if now >= next_consent {
                next_consent = now + CONSENT_INTERVAL;
                for leg in [up.as_deref_mut(), down.as_deref_mut()].into_iter().flatten() {
                    let check = leg.peer.binding_request(true);
                    let _ = leg.socket.send_to(&check, leg.janus).await;
                }
            }
            if let Some(leg) = up.as_deref_mut()
                && now >= next_send
            {
                if now < self.media_end {
                    let packet = leg.peer.media(PAYLOAD_LEN, self.epoch.elapsed().as_micros() as u64);
                    let _ = leg.socket.send_to(&packet, leg.janus).await;
                    outcome.sent += 1;
                }
                next_send = (next_send + interval).max(now);
            }
            let wake = [next_send, next_consent, end].into_iter().filter(|t| *t > now).min().unwrap_or(end);
            tokio::select! {
                r = recv(up.as_deref(), &mut up_buf) => {
                    if let (Some(leg), Some((n, from, _))) = (up.as_deref_mut(), r) {
                        leg.receive(&up_buf[..n], from).await;
                    }
                }
                r = recv(down.as_deref(), &mut down_buf) => {
                    if let (Some(leg), Some((n, from, stamp))) = (down.as_deref_mut(), r)
                        && let Some(Incoming::Media(m)) = leg.receive(&down_buf[..n], from).await
                    {
                        outcome.delays_us.push(clock.received_us(stamp).saturating_sub(m.tag.sent_us));
                        outcome.first_media_ms.get_or_insert(started.elapsed().as_secs_f64() * 1000.0);
                        match outcome.received.iter_mut().find(|(p, _)| *p == m.tag.publisher) {
                            Some((_, n)) => *n += 1,
                            None => outcome.received.push((m.tag.publisher, 1)),
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }
}

/// A leg's socket receive with its kernel timestamp, or never when there is no leg.
async fn recv(leg: Option<&Leg>, buf: &mut [u8]) -> Option<(usize, SocketAddr, Option<Duration>)> {
    match leg {
        Some(leg) => recv_stamped(&leg.socket, buf).await.ok(),
        None => std::future::pending().await,
    }
}
