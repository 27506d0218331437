//! `sluice bench meeting`: synthetic participants join a meeting through the documented signaling protocol
//! exactly as a browser does (HTTP join ticket, WebSocket, SDP answer, ICE, DTLS-SRTP over real UDP), publish
//! tagged media, receive everyone else's, and report joins, time to first media, loss and one-way delay through
//! the SFU, and the server's CPU time per forwarded packet (read from its own process, so ours does not count).
//!
//! One tokio task per participant: enough for tens of participants on loopback. The many-core generator the
//! load-generator issue asks for builds on the same participant logic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sluice_dataplane::core::Fingerprint;
use sluice_dataplane::testpeer::{Incoming, TestPeer, candidate_address};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

use crate::batch::BatchSocket;
use crate::engine::{Engines, MediaJob, MediaResult};

/// Bytes of payload per media packet (a typical video packet).
pub(crate) const PAYLOAD_LEN: usize = 1_000;
/// ICE checks and DTLS retransmissions are retried this often until the path is up.
const RETRY: Duration = Duration::from_millis(50);
/// Every wait for the server is bounded by this.
const WAIT: Duration = Duration::from_secs(15);
/// Signaling pings, as `sluice-client.js` sends them: the server closes a session silent for 15 s, and with a
/// join ramp the first participants wait longer than that for media.
const PING_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Scenario {
    /// The server's HTTP base URL.
    pub base_url: String,
    pub participants: usize,
    /// The first `publishers` participants publish a camera track; the rest only subscribe.
    pub publishers: usize,
    pub duration: Duration,
    /// Packets per second per publisher.
    pub pps: u32,
    /// Meetings of `participants` each, run at once (`many-small`).
    pub meetings: usize,
    /// Joins are spread evenly over this long (`join-storm`: 200 joins in 10 s); zero: all at once.
    pub ramp: Duration,
    /// Through bare UDP forwarders instead of Sluice (`bare.rs`): the floor.
    pub bare_udp: bool,
    /// Publishers send VP8-shaped frames in three simulcast layers ([`LAYERS`]) instead of `pps` single packets;
    /// subscribers receive the top layer.
    pub simulcast: bool,
}

/// One simulcast layer as Chrome sends a 720p camera by default: RID, bit rate, frames per second.
pub(crate) struct Layer {
    pub(crate) rid: &'static str,
    kbps: u32,
    fps: u32,
}

/// Quarter, half and full resolution, lowest first (the RIDs Sluice offers).
pub(crate) const LAYERS: [Layer; 3] = [
    Layer { rid: "q", kbps: 150, fps: 30 },
    Layer { rid: "h", kbps: 500, fps: 30 },
    Layer { rid: "f", kbps: 1_500, fps: 30 },
];
/// A keyframe is this many times a delta frame's size.
const KEYFRAME_SCALE: usize = 4;
/// Payload bytes per packet at most, as a browser packetizes for a 1200-byte MTU budget.
const PACKET_PAYLOAD_MAX: usize = 1_100;
/// Frames per second of every layer, and so the simulcast sender's tick.
pub(crate) const FRAME_RATE: u32 = 30;
/// Room for one frame's packets back to back: a top-layer keyframe is 23 packets of about 1,150 bytes.
pub(crate) const FRAME_BYTES_MAX: usize = 64 * 1024;

impl Layer {
    /// The payload size of each packet of one frame, and how many packets it takes.
    pub(crate) fn packets(&self, keyframe: bool) -> (usize, usize) {
        let bytes = (self.kbps as usize * 1000 / 8 / self.fps as usize) * if keyframe { KEYFRAME_SCALE } else { 1 };
        let count = bytes.div_ceil(PACKET_PAYLOAD_MAX).max(1);
        (bytes / count, count)
    }
}

/// What one participant saw.
#[derive(Debug, Default, Clone)]
pub(crate) struct Outcome {
    pub(crate) meeting: usize,
    pub(crate) joined: bool,
    /// When `welcome` came, from the bench's start.
    pub(crate) joined_at_ms: f64,
    pub(crate) join_ms: f64,
    pub(crate) first_media_ms: Option<f64>,
    pub(crate) sent: u64,
    /// Simulcast: the stream every subscriber should receive of this publisher (its top layer), as its tag's
    /// publisher id and the packets sent on it. Without simulcast, everything sent, tagged with the participant's
    /// index.
    pub(crate) forwarded: Option<(u32, u64)>,
    /// Received per publisher id.
    pub(crate) received: Vec<(u32, u64)>,
    pub(crate) delays_us: Vec<u64>,
    pub(crate) error: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// `sluice`, or `bare-udp` for the floor.
    pub target: String,
    pub meetings: usize,
    /// Per meeting.
    pub participants: usize,
    pub publishers: usize,
    pub joined: usize,
    pub join_success_percent: f64,
    /// Joins completed per second, from the bench's start to the last `welcome`.
    pub joins_per_second: f64,
    pub errors: Vec<String>,
    pub join_ms_p50: f64,
    pub join_ms_max: f64,
    pub first_media_ms_p50: f64,
    pub first_media_ms_max: f64,
    pub sent: u64,
    /// Copies every subscriber should have received.
    pub expected: u64,
    pub received: u64,
    pub loss_percent: f64,
    pub delay_us_p50: u64,
    pub delay_us_p99: u64,
    pub delay_us_p999: u64,
    /// The server process's CPU time (user + system) during the media phase, per packet it forwarded.
    pub server_cpu_ns_per_forwarded: Option<f64>,
    /// Sluice only: the same for its dataplane workers' threads alone (the rest is the control plane: signaling
    /// sessions, meetings, metrics).
    pub server_worker_cpu_ns_per_forwarded: Option<f64>,
    /// The bench's own CPU time during the media phase, per packet it sent or received: below the server's
    /// per forwarded packet, one core of generator drives more than one core of server.
    pub generator_cpu_ns_per_packet: Option<f64>,
}

/// A process's CPU time over the media phase: read by a timer when it starts, and by [`CpuWindow::end`].
pub(crate) struct CpuWindow {
    pid: u32,
    /// Only the threads whose names start with this.
    threads: Option<&'static str>,
    before: Arc<std::sync::Mutex<Option<u64>>>,
}

impl CpuWindow {
    pub(crate) fn from(pid: u32, start: Instant) -> CpuWindow {
        CpuWindow::of_threads(pid, None, start)
    }

    /// The threads of `pid` named `threads*` (all of them with `None`).
    pub(crate) fn of_threads(pid: u32, threads: Option<&'static str>, start: Instant) -> CpuWindow {
        let before = Arc::new(std::sync::Mutex::new(None));
        let reading = Arc::clone(&before);
        tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            *reading.lock().expect("cpu") = threads_cpu_ns(pid, threads);
        });
        CpuWindow { pid, threads, before }
    }

    /// This process (the generator).
    pub(crate) fn generator(start: Instant) -> CpuWindow {
        CpuWindow::from(std::process::id(), start)
    }

    pub(crate) fn end(&self) -> Option<u64> {
        let before = (*self.before.lock().expect("cpu"))?;
        Some(threads_cpu_ns(self.pid, self.threads)?.saturating_sub(before))
    }
}

impl Report {
    /// Adds the generator's CPU per packet from its CPU time over the media phase.
    pub(crate) fn with_generator_cpu(mut self, ns: Option<u64>) -> Report {
        let packets = self.sent + self.received;
        self.generator_cpu_ns_per_packet = ns.filter(|_| packets > 0).map(|ns| ns as f64 / packets as f64);
        self
    }
}

/// Runs the scenario against the server at `base_url`; `server_pid` (a local process) adds its CPU figures.
/// With `bare_udp`, runs it through bare forwarders instead (`base_url` is not used).
pub async fn run(scenario: &Scenario, server_pid: Option<u32>) -> anyhow::Result<Report> {
    if scenario.bare_udp {
        return crate::bare::run(scenario).await;
    }
    let http = reqwest::Client::new();
    let meetings = scenario.meetings.max(1);
    let mut meeting_ids = Vec::with_capacity(meetings);
    for _ in 0..meetings {
        let created: Value = http
            .post(format!("{}/meetings", scenario.base_url))
            .json(&json!({"host_name": "bench", "settings": {"title": "bench", "max_participants": scenario.participants.max(1)}}))
            .send()
            .await
            .context("create a meeting")?
            .json()
            .await?;
        let id = created["meeting"]["id"].as_str().ok_or_else(|| anyhow!("no meeting id in {created}"))?;
        meeting_ids.push(id.to_string());
    }
    let total = scenario.participants * meetings;
    let epoch = Instant::now();
    // Everyone joins (spread over the ramp), connects, then media starts at the same moment for all, for
    // `duration`.
    let media_start =
        epoch + Duration::from_secs(2) + scenario.ramp + Duration::from_millis(20 * scenario.participants as u64);
    let media_end = media_start + scenario.duration;
    let cpu_before = Arc::new(std::sync::Mutex::new(None));
    let generator = CpuWindow::generator(media_start);
    let workers = server_pid.map(|pid| CpuWindow::of_threads(pid, Some("sluice-worker"), media_start));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let engines = Arc::new(Engines::start(threads).context("start the media engine")?);
    let mut tasks = Vec::new();
    for k in 0..total {
        let (m, i) = (k / scenario.participants, k % scenario.participants);
        let ctx = Participant {
            index: k as u32,
            publish: i < scenario.publishers,
            base_url: scenario.base_url.clone(),
            meeting: meeting_ids[m].clone(),
            epoch,
            start_at: epoch + scenario.ramp.mul_f64(k as f64 / total as f64),
            media_start,
            media_end,
            pps: scenario.pps.max(1),
            simulcast: scenario.simulcast,
            engines: Arc::clone(&engines),
        };
        tasks.push(tokio::spawn(async move {
            let mut outcome = Outcome { meeting: m, ..Outcome::default() };
            if let Err(e) = ctx.run(&mut outcome).await {
                outcome.error = Some(format!("participant {}: {e:#}", ctx.index));
            }
            outcome
        }));
    }
    if let Some(pid) = server_pid {
        let cpu_before = Arc::clone(&cpu_before);
        tokio::spawn(async move {
            tokio::time::sleep_until(media_start.into()).await;
            *cpu_before.lock().expect("cpu") = process_cpu_ns(pid);
        });
    }
    tokio::time::sleep_until(media_end.into()).await;
    // The workers first: read after the whole process, they could show more than it.
    let worker_cpu = workers.and_then(|w| w.end());
    let cpu_after = server_pid.and_then(process_cpu_ns);
    let generator_cpu = generator.end();
    let (outcomes, cpu) = gather(tasks, &cpu_before, cpu_after).await;
    let mut report = summarize(scenario, &outcomes, cpu).with_generator_cpu(generator_cpu);
    report.server_worker_cpu_ns_per_forwarded =
        worker_cpu.filter(|_| report.received > 0).map(|ns| ns as f64 / report.received as f64);
    Ok(report)
}

/// Every participant's outcome (a task that panicked counts as failed), and the server's CPU time over the media
/// phase from its readings at the start (`before`, taken by a timer) and the end.
pub(crate) async fn gather(
    tasks: Vec<tokio::task::JoinHandle<Outcome>>,
    before: &std::sync::Mutex<Option<u64>>,
    after: Option<u64>,
) -> (Vec<Outcome>, Option<u64>) {
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|e| Outcome { error: Some(e.to_string()), ..Outcome::default() }));
    }
    let cpu = match (*before.lock().expect("cpu"), after) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    (outcomes, cpu)
}

pub(crate) fn summarize(s: &Scenario, outcomes: &[Outcome], cpu_ns: Option<u64>) -> Report {
    let joined: Vec<&Outcome> = outcomes.iter().filter(|o| o.joined).collect();
    let mut join_ms: Vec<f64> = joined.iter().map(|o| o.join_ms).collect();
    let mut first: Vec<f64> = outcomes.iter().filter_map(|o| o.first_media_ms).collect();
    let mut delays: Vec<u64> = outcomes.iter().flat_map(|o| o.delays_us.iter().copied()).collect();
    join_ms.sort_by(f64::total_cmp);
    first.sort_by(f64::total_cmp);
    delays.sort_unstable();
    let sent_by: Vec<(u32, usize, u64)> = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let (tag, sent) = o.forwarded.unwrap_or((i as u32, o.sent));
            (tag, o.meeting, sent)
        })
        .collect();
    let mut expected = 0;
    let mut received = 0;
    for (i, o) in outcomes.iter().enumerate() {
        let same_meeting =
            sent_by.iter().enumerate().filter(|(j, (_, m, _))| *j != i && *m == o.meeting).map(|(_, s)| s);
        for &(publisher, _, sent) in same_meeting {
            if sent > 0 && o.joined {
                expected += sent;
                received += o.received.iter().filter(|(p, _)| *p == publisher).map(|(_, n)| n).sum::<u64>().min(sent);
            }
        }
    }
    let pct =
        |v: &[u64], q: f64| v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(0);
    let pctf = |v: &[f64], q: f64| {
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(0.0)
    };
    let last_join_s = joined.iter().map(|o| o.joined_at_ms).fold(0.0, f64::max) / 1000.0;
    Report {
        target: if s.bare_udp { "bare-udp" } else { "sluice" }.to_string(),
        meetings: s.meetings.max(1),
        participants: s.participants,
        publishers: s.publishers,
        joined: joined.len(),
        join_success_percent: 100.0 * joined.len() as f64 / outcomes.len().max(1) as f64,
        joins_per_second: if last_join_s > 0.0 { joined.len() as f64 / last_join_s } else { 0.0 },
        errors: outcomes.iter().filter_map(|o| o.error.clone()).collect(),
        join_ms_p50: pctf(&join_ms, 0.5),
        join_ms_max: join_ms.last().copied().unwrap_or(0.0),
        first_media_ms_p50: pctf(&first, 0.5),
        first_media_ms_max: first.last().copied().unwrap_or(0.0),
        sent: outcomes.iter().map(|o| o.sent).sum(),
        expected,
        received,
        loss_percent: if expected > 0 { 100.0 * (expected - received) as f64 / expected as f64 } else { 0.0 },
        delay_us_p50: pct(&delays, 0.5),
        delay_us_p99: pct(&delays, 0.99),
        delay_us_p999: pct(&delays, 0.999),
        server_cpu_ns_per_forwarded: cpu_ns.filter(|_| received > 0).map(|ns| ns as f64 / received as f64),
        server_worker_cpu_ns_per_forwarded: None,
        generator_cpu_ns_per_packet: None,
    }
}

/// CPU time of a process in nanoseconds: the sum of its threads' `/proc/<pid>/task/<tid>/schedstat` (time on
/// a CPU, in ns), else user + system from `/proc/<pid>/stat` (clock ticks of 10 ms, too coarse for short runs).
/// A thread that exits between two readings takes its time with it; the servers measured keep their threads.
pub(crate) fn process_cpu_ns(pid: u32) -> Option<u64> {
    threads_cpu_ns(pid, None)
}

/// [`process_cpu_ns`] of the threads whose names start with `prefix` (all with `None`; no fallback to the
/// process's own figures then).
fn threads_cpu_ns(pid: u32, prefix: Option<&str>) -> Option<u64> {
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        let total: u64 = tasks
            .flatten()
            .filter(|t| {
                prefix.is_none_or(|p| {
                    std::fs::read_to_string(t.path().join("comm")).is_ok_and(|name| name.starts_with(p))
                })
            })
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        if total > 0 {
            return Some(total);
        }
    }
    if prefix.is_some() {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / per_sec)
}

struct Participant {
    index: u32,
    publish: bool,
    base_url: String,
    meeting: String,
    epoch: Instant,
    /// When this participant asks to join (the ramp).
    start_at: Instant,
    media_start: Instant,
    media_end: Instant,
    pps: u32,
    simulcast: bool,
    engines: Arc<Engines>,
}

/// Media is still read this long after it stops: the last packets are on their way.
const MEDIA_TAIL: Duration = Duration::from_millis(300);

/// Waits for datagrams on the socket while this task still has it (until the engine takes it).
async fn recv_some(io: &mut Option<BatchSocket>) -> std::io::Result<usize> {
    match io {
        Some(io) => io.recv().await,
        None => std::future::pending().await,
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Participant {
    async fn run(&self, outcome: &mut Outcome) -> anyhow::Result<()> {
        tokio::time::sleep_until(self.start_at.into()).await;
        let started = Instant::now();
        let ticket: Value = reqwest::Client::new()
            .post(format!("{}/meetings/{}/join", self.base_url, self.meeting))
            .json(&json!({"name": format!("bench-{}", self.index)}))
            .send()
            .await?
            .json()
            .await?;
        let token = ticket["participant_token"].as_str().ok_or_else(|| anyhow!("no token: {ticket}"))?;
        let url = format!("{}/signaling", self.base_url.replacen("http", "ws", 1));
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.context("connect the signaling socket")?;
        let publish: Vec<&str> = if self.publish { vec!["camera"] } else { vec![] };
        let join = json!({"type": "join", "v": 1, "meeting_id": self.meeting, "token": token, "publish": publish});
        ws.send(Message::text(join.to_string())).await?;
        // ICE and DTLS run here; once connected, the socket and the peer go to the media engine.
        let mut io = Some(BatchSocket::new(udp_socket()?)?);
        let mut peer: Option<TestPeer> = None;
        // Our certificate's fingerprint, for answers after the peer has gone to the engine.
        let mut ours: Option<String> = None;
        let mut server: Option<SocketAddr> = None;
        let mut next_retry = Instant::now();
        let mut next_ping = Instant::now() + PING_INTERVAL;
        // Simulcast: the publish section's MID (the RID and MID header extensions name the layers).
        let mut camera_mid: Option<String> = None;
        let mut media: Option<tokio::sync::oneshot::Receiver<MediaResult>> = None;
        let end = self.media_end + MEDIA_TAIL;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            if media.is_none() && now > started + WAIT {
                bail!("not connected within {WAIT:?}");
            }
            if let (Some(p), Some(io)) = (peer.as_mut(), io.as_ref())
                && now >= next_retry
            {
                next_retry = now + RETRY;
                if !p.dtls_started() {
                    let check = p.binding_request(true);
                    send(io.socket(), server, &check).await;
                } else if p.dtls_timeout().is_some_and(|t| t <= now) {
                    for record in p.handle_dtls_timeout(now) {
                        send(io.socket(), server, &record).await;
                    }
                }
            }
            if now >= next_ping {
                next_ping = now + PING_INTERVAL;
                ws.send(Message::text(json!({"type": "ping"}).to_string())).await?;
            }
            let wake = [next_retry, next_ping, end].into_iter().filter(|t| *t > now).min().unwrap_or(now + RETRY);
            tokio::select! {
                message = ws.next() => {
                    let Some(Ok(Message::Text(text))) = message else {
                        if let Some(Ok(Message::Close(frame))) = &message {
                            bail!("the server closed the signaling socket: {frame:?}");
                        }
                        if matches!(message, Some(Ok(_))) { continue; }
                        bail!("the signaling socket closed: {message:?}");
                    };
                    let m: Value = serde_json::from_str(&text)?;
                    match m["type"].as_str() {
                        Some("welcome") => {
                            outcome.joined = true;
                            outcome.join_ms = started.elapsed().as_secs_f64() * 1000.0;
                            outcome.joined_at_ms = self.epoch.elapsed().as_secs_f64() * 1000.0;
                        }
                        Some("offer") => {
                            if let Some(mid) = self.answer(&mut ws, &m, &mut peer, &mut ours).await? {
                                camera_mid = Some(mid);
                            }
                        }
                        Some("candidate") if server.is_none() => {
                            server = m["candidate"].as_str().and_then(candidate_address);
                        }
                        Some("error") => bail!("server error: {m}"),
                        _ => {}
                    }
                }
                received = recv_some(&mut io) => {
                    let n = received?;
                    let (Some(p), Some(batch)) = (peer.as_mut(), io.as_mut()) else { continue };
                    let mut connected = false;
                    for i in 0..n {
                        match p.receive_in_place(batch.datagram(i).0) {
                            Incoming::BindingSuccess if !p.dtls_started() => {
                                for record in p.start_dtls(Instant::now()) { send(batch.socket(), server, &record).await; }
                            }
                            Incoming::Dtls(records) => {
                                for record in records { send(batch.socket(), server, &record).await; }
                                connected = p.srtp_ready();
                            }
                            _ => {}
                        }
                    }
                    if connected {
                        let (done, result) = tokio::sync::oneshot::channel();
                        let job = MediaJob {
                            index: self.index,
                            peer: peer.take().expect("connected"),
                            socket: io.take().expect("connected").into_std()?,
                            server: server.ok_or_else(|| anyhow!("connected without the server's address"))?,
                            publish: self.publish,
                            simulcast_mid: camera_mid.clone().filter(|_| self.simulcast),
                            pps: self.pps,
                            epoch: self.epoch,
                            media_start: self.media_start,
                            media_end: self.media_end,
                            until: end,
                            done,
                        };
                        self.engines.submit(job).map_err(anyhow::Error::msg)?;
                        media = Some(result);
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        let _ = ws.send(Message::text(json!({"type": "leave"}).to_string())).await;
        let Some(result) = media else { bail!("never connected") };
        let result = result.await.map_err(|_| anyhow!("the media engine dropped this participant"))?;
        outcome.sent = result.sent;
        outcome.forwarded = result.forwarded;
        outcome.received = result.received;
        outcome.delays_us = result.delays_us;
        outcome.first_media_ms =
            result.first_media.map(|t| t.saturating_duration_since(started).as_secs_f64() * 1000.0);
        Ok(())
    }

    /// Answers an offer as `docs/signaling.md` says: send on publish sections (simulcast where asked for and the
    /// scenario wants it), receive on subscribe sections. Returns the MID of a simulcast publish section.
    async fn answer(
        &self,
        ws: &mut Ws,
        offer: &Value,
        peer: &mut Option<TestPeer>,
        ours: &mut Option<String>,
    ) -> anyhow::Result<Option<String>> {
        let sdp = offer["sdp"].as_str().unwrap_or_default();
        let attr = |key: &str| sdp.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).map(String::from);
        let live = offer["sections"].as_array().into_iter().flatten().any(|s| s["role"] != "closed");
        let credentials = (attr("a=ice-ufrag:"), attr("a=ice-pwd:"), attr("a=fingerprint:sha-256 "));
        let ours = match credentials {
            // The peer exists, or has gone to the media engine: its certificate stays.
            _ if ours.is_some() => ours.clone().expect("checked"),
            (Some(ufrag), Some(pwd), Some(fp)) => {
                let fingerprint = Fingerprint::parse(&fp).ok_or_else(|| anyhow!("bad fingerprint {fp}"))?;
                let p = peer.get_or_insert_with(|| {
                    let mut p = TestPeer::with_dtls(self.index, &ufrag, &pwd, fingerprint, None);
                    if self.simulcast {
                        // Payloads start with a VP8 descriptor, before the tag.
                        p.expect_vp8();
                    }
                    p
                });
                let fingerprint = p.fingerprint().expect("a DTLS peer").to_string();
                *ours = Some(fingerprint.clone());
                fingerprint
            }
            // Every section closed (their publishers left): nothing to connect; answer as a browser would, with
            // a certificate of our own until a live section comes.
            _ if !live => match peer.as_ref().and_then(TestPeer::fingerprint) {
                Some(f) => f.to_string(),
                None => sluice_dataplane::core::DtlsIdentity::generate()
                    .map_err(|e| anyhow!("a DTLS certificate: {e}"))?
                    .fingerprint()
                    .to_string(),
            },
            _ => bail!("the offer lacks ICE credentials or a fingerprint"),
        };
        let ssrc = 0x1000_0000 + self.index;
        let mut answer = format!(
            "v=0\r\no=- 1 {} IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 {ours}\r\n\
             a=ice-ufrag:peer{}\r\na=ice-pwd:bench-password-0123456789\r\n",
            offer["revision"], self.index
        );
        // Each media section's text, from its m= line on.
        let media: Vec<&str> = sdp.split("\r\nm=").skip(1).collect();
        let mut simulcast_mid = None;
        for (section, m_line) in offer["sections"].as_array().into_iter().flatten().zip(media) {
            let kind = m_line.split(' ').next().unwrap_or("video");
            let (pt, codec) = if kind == "audio" { (111, "opus/48000/2") } else { (96, "VP8/90000") };
            let port = if section["role"] == "closed" { 0 } else { 9 };
            let mid = section["mid"].as_str().unwrap_or_default();
            answer += &format!(
                "m={kind} {port} UDP/TLS/RTP/SAVPF {pt}\r\na=setup:active\r\na=mid:{mid}\r\na=rtpmap:{pt} {codec}\r\n"
            );
            let asks_simulcast = m_line.contains("a=simulcast:recv q;h;f");
            answer += match section["role"].as_str() {
                Some("publish") if self.simulcast && asks_simulcast => {
                    simulcast_mid = Some(mid.to_string());
                    let rids: Vec<&str> = LAYERS.iter().map(|l| l.rid).collect();
                    let lines: String = rids.iter().map(|r| format!("a=rid:{r} send\r\n")).collect();
                    format!("a=sendonly\r\n{lines}a=simulcast:send {}\r\n", rids.join(";"))
                }
                Some("publish") => format!("a=sendonly\r\na=ssrc:{ssrc} cname:bench\r\n"),
                Some("subscribe") => "a=recvonly\r\n".to_string(),
                _ => "a=inactive\r\n".to_string(),
            }
            .as_str();
        }
        let message = json!({"type": "answer", "revision": offer["revision"], "sdp": answer});
        ws.send(Message::text(message.to_string())).await?;
        Ok(simulcast_mid)
    }
}

/// A loopback socket with a big receive buffer: a subscriber reads in bursts between other work.
pub(crate) fn udp_socket() -> anyhow::Result<UdpSocket> {
    udp_socket_on(std::net::Ipv4Addr::LOCALHOST.into())
}

/// As [`udp_socket`], on `ip`.
pub(crate) fn udp_socket_on(ip: std::net::IpAddr) -> anyhow::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind((ip, 0))?;
    let sock = socket2::SockRef::from(&socket);
    let _ = sock.set_recv_buffer_size(4 << 20);
    // One-way delay is taken from the kernel's receive timestamps (see `clock`).
    crate::clock::enable_timestamps(&socket)?;
    socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(socket)?)
}

async fn send(socket: &UdpSocket, to: Option<SocketAddr>, datagram: &[u8]) {
    if let Some(to) = to {
        let _ = socket.send_to(datagram, to).await;
    }
}

/// The report as a table of one row per figure, for people.
/// Sluice against each other target (the bare-UDP floor, Janus), round by round (runs alternate: Sluice, bare,
/// Janus, Sluice, ...): CPU per forwarded packet and one-way delay, as ratios other / Sluice for Janus (how many
/// times Sluice's efficiency) and Sluice / bare for the floor (how far above the machine's limit).
pub fn compare(reports: &[Report]) -> String {
    let mut out = String::new();
    let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}", a / b) } else { "n/a".to_string() };
    for other in ["bare-udp", "janus"] {
        let sluice = reports.iter().filter(|r| r.target == "sluice");
        let them: Vec<&Report> = reports.iter().filter(|r| r.target == other).collect();
        if them.is_empty() {
            continue;
        }
        let (label, floor) = if other == "bare-udp" { ("sluice / bare-udp", true) } else { ("janus / sluice", false) };
        out.push_str(&format!("{label}, per round: CPU per forwarded packet, one-way delay p50, p99\n"));
        for (round, (s, o)) in sluice.zip(them).enumerate() {
            let (num, den) = if floor { (s, o) } else { (o, s) };
            let cpu = match (num.server_cpu_ns_per_forwarded, den.server_cpu_ns_per_forwarded) {
                (Some(a), Some(b)) => format!("{} ({a:.0} / {b:.0} ns)", ratio(a, b)),
                _ => "n/a".to_string(),
            };
            out.push_str(&format!(
                "round {}: CPU {cpu}, delay p50 {} ({} / {} us), p99 {} ({} / {} us), loss {:.3}% / {:.3}%\n",
                round + 1,
                ratio(num.delay_us_p50 as f64, den.delay_us_p50 as f64),
                num.delay_us_p50,
                den.delay_us_p50,
                ratio(num.delay_us_p99 as f64, den.delay_us_p99 as f64),
                num.delay_us_p99,
                den.delay_us_p99,
                num.loss_percent,
                den.loss_percent,
            ));
        }
    }
    out
}

pub fn render(r: &Report) -> String {
    let mut cpu = r.server_cpu_ns_per_forwarded.map_or("n/a".to_string(), |ns| format!("{ns:.0} ns"));
    if let Some(ns) = r.server_worker_cpu_ns_per_forwarded {
        cpu += &format!(" (dataplane workers {ns:.0} ns)");
    }
    let generator = r.generator_cpu_ns_per_packet.map_or("n/a".to_string(), |ns| format!("{ns:.0} ns"));
    format!(
        "target {}\nmeetings {} of {} participants (publishers {}), joined {} ({:.1}%, {:.1} joins/s)\n\
         join p50/max            {:.0} / {:.0} ms\n\
         first media p50/max     {:.0} / {:.0} ms\n\
         sent / expected / recv  {} / {} / {} (loss {:.3}%)\n\
         one-way delay p50/p99/p99.9  {} / {} / {} us\n\
         server CPU per forwarded packet  {cpu}\n\
         generator CPU per packet sent or received  {generator}\n",
        r.target,
        r.meetings,
        r.participants,
        r.publishers,
        r.joined,
        r.join_success_percent,
        r.joins_per_second,
        r.join_ms_p50,
        r.join_ms_max,
        r.first_media_ms_p50,
        r.first_media_ms_max,
        r.sent,
        r.expected,
        r.received,
        r.loss_percent,
        r.delay_us_p50,
        r.delay_us_p99,
        r.delay_us_p999,
    )
}
