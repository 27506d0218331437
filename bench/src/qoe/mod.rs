//! `sluice bench qoe`: what people see on impaired links, with real browsers (issue 24's harness). A publisher
//! (headless Chromium sending a moving 720p clip in simulcast) and several subscribers (headless Chromium,
//! nothing to send) meet on `sluice serve`, each in its own network namespace on one bridge (`net.rs`). One
//! subscriber's downlink follows a schedule of rate caps and random loss (RFC 8867 section 5.1's steps, say);
//! the others' stay clear. Every second each subscriber's `getStats()` gives the frame height and rate, freezes,
//! concealed audio, loss, round trip and bitrate, and the server's estimate of its downlink and the layer it
//! chose (`get_transport`, `layer_changed`). The result is a table, JSON and an SVG plot over time (`report.rs`).
//!
//! Needs root (namespaces, `tc`, `iptables`), `chromium`, `chromedriver` and `ffmpeg`. The process re-runs itself
//! inside the hub namespace it creates, so the server, the browsers and it share only that bridge.

mod net;
pub mod report;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::webdriver::{Browser, Chromedriver, Group};
use net::{Downlink, Netns, SERVER_IP};
pub use report::Report;

/// Set in the copy of this process that runs inside the hub namespace: the hub's name.
const HUB_ENV: &str = "SLUICEBENCH_QOE_HUB";
/// Every wait for the browsers is bounded by this.
const WAIT: Duration = Duration::from_secs(45);
const CHROMEDRIVER_PORT: u16 = 9515;
/// The hub namespace is this and the harness's process id; the browsers' add `-b<i>`.
const HUB_PREFIX: &str = "sluice-qoe-";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// RFC 8867 section 5.1's steps on one subscriber: unlimited, 1 Mbit/s, 350 kbit/s, unlimited.
    Rfc8867,
    /// 5% random loss and no cap.
    Loss,
    /// One step: unlimited, 1 Mbit/s, unlimited (CI's shortened run).
    Short,
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rfc8867" => Ok(Schedule::Rfc8867),
            "loss" => Ok(Schedule::Loss),
            "short" => Ok(Schedule::Short),
            other => Err(format!("unknown schedule {other:?}: expected rfc8867, loss or short")),
        }
    }
}

/// One step of a schedule, on the impaired subscriber's downlink.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub label: String,
    pub secs: u64,
    pub cap_bps: Option<u64>,
    pub loss_percent: u32,
}

impl Schedule {
    pub fn steps(self) -> Vec<Step> {
        let step = |label: &str, secs, cap_bps, loss_percent| Step { label: label.into(), secs, cap_bps, loss_percent };
        match self {
            Schedule::Rfc8867 => vec![
                step("unlimited", 20, None, 0),
                step("1 Mbit/s", 30, Some(1_000_000), 0),
                step("350 kbit/s", 30, Some(350_000), 0),
                step("unlimited again", 30, None, 0),
            ],
            Schedule::Loss => vec![step("unlimited", 15, None, 0), step("5% loss", 60, None, 5)],
            Schedule::Short => vec![
                step("unlimited", 10, None, 0),
                step("1 Mbit/s", 20, Some(1_000_000), 0),
                step("unlimited again", 25, None, 0),
            ],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub schedule: Schedule,
    /// Subscribers; the first one's downlink is impaired.
    pub subscribers: usize,
    /// The publisher's capture height: 720 (as the issue asks) or 360 (the web client's default).
    pub height: u32,
    /// The `sluice` binary to serve with.
    pub sluice: PathBuf,
}

/// One subscriber's figures at one second.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the schedule started.
    pub t: f64,
    pub subscriber: usize,
    pub step: usize,
    pub height: u64,
    pub fps: f64,
    pub frames_decoded: u64,
    /// Cumulative, as `getStats()` counts them.
    pub freezes: u64,
    pub freeze_secs: f64,
    pub packets_lost: i64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub concealed_samples: u64,
    pub audio_samples: u64,
    pub rtt_ms: Option<f64>,
    /// The server's estimate for this subscriber's downlink, and whether its link has shown a limit.
    pub estimate_bps: Option<u64>,
    pub limited: bool,
    /// The layer the server last said it sends (null: paused; absent: the one asked for) and why.
    pub layer: Option<Value>,
    pub layer_reason: Option<String>,
    /// The server said its video is paused (`layer_changed` with no layer).
    pub paused: bool,
    /// The heights the publisher sent this second (lowest first), which of them this is (by height, this or
    /// the previous second), and whether it is the top one.
    pub publisher_heights: Vec<u64>,
    pub layer_index: Option<usize>,
    pub at_top: bool,
}

/// One `getStats()` reading in the subscriber's page: the publisher's video and audio, the selected pair's
/// round trip, the server's `transport` answer and the last `layer_changed`.
const SAMPLE_SCRIPT: &str = r#"
    const c = window.sluiceApp && window.sluiceApp.client;
    if (!c || !c.pc) return null;
    return Promise.all([c.pc.getStats(), c.transport()]).then(([report, transport]) => {
        const out = { video: null, audio: null, rtt: null, transport, layer: null };
        report.forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'video' && (!out.video || (s.bytesReceived || 0) > out.video.bytes)) {
                out.video = { height: s.frameHeight || 0, fps: s.framesPerSecond || 0, frames: s.framesDecoded || 0,
                    freezes: s.freezeCount || 0, freeze_s: s.totalFreezesDuration || 0, lost: s.packetsLost || 0,
                    packets: s.packetsReceived || 0, bytes: s.bytesReceived || 0 };
            }
            if (s.type === 'inbound-rtp' && s.kind === 'audio') {
                out.audio = { concealed: s.concealedSamples || 0, samples: s.totalSamplesReceived || 0 };
            }
            if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && s.currentRoundTripTime !== undefined) {
                out.rtt = s.currentRoundTripTime * 1000;
            }
        });
        for (const l of c.receivedLayers.values()) out.layer = l;
        return out;
    });
"#;

/// The publisher's encodings: [rid, frame height, frames per second, why the encoder is limited].
const PUBLISHER_SCRIPT: &str = r#"
    return window.sluiceApp.client.pc.getStats().then((report) => {
        const out = [];
        report.forEach((s) => {
            if (s.type === 'outbound-rtp' && s.kind === 'video') {
                out.push([s.rid || '', s.frameHeight || 0, s.framesPerSecond || 0, s.qualityLimitationReason || '']);
            }
        });
        return out.sort((a, b) => a[1] - b[1]);
    });
"#;

/// Runs the harness: from outside, makes the hub namespace and runs itself in it; inside, the meeting.
pub async fn run(options: &Options) -> anyhow::Result<Option<Report>> {
    if let Ok(hub) = std::env::var(HUB_ENV) {
        // Interrupted, the namespaces and processes are dropped (and so removed) on the way out.
        return tokio::select! {
            report = inside(options, &hub) => report.map(Some),
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        };
    }
    if unsafe { libc::geteuid() } != 0 {
        bail!("sluice bench qoe needs root: it makes network namespaces and impairs links with tc and iptables");
    }
    for tool in ["chromium", "chromedriver", "ffmpeg", "tc", "iptables"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).stdout(Stdio::null()).status();
        if !found.is_ok_and(|s| s.success()) {
            bail!("sluice bench qoe needs {tool} (tests/run.sh installs it)");
        }
    }
    net::remove_stale(HUB_PREFIX);
    let hub = Netns::add(format!("{HUB_PREFIX}{}", std::process::id()))?;
    let mut inner = tokio::process::Command::new("ip")
        .args(["netns", "exec", &hub.0])
        .arg(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(HUB_ENV, &hub.0)
        .spawn()?;
    let status = tokio::select! {
        status = inner.wait() => status?,
        _ = tokio::signal::ctrl_c() => {
            // The copy inside got the interrupt too and cleans up after itself; then the hub goes.
            if tokio::time::timeout(Duration::from_secs(10), inner.wait()).await.is_err() {
                let _ = inner.kill().await;
            }
            bail!("interrupted");
        }
    };
    if !status.success() {
        bail!("the harness failed inside its namespace ({status})");
    }
    Ok(None)
}

async fn inside(options: &Options, hub: &str) -> anyhow::Result<Report> {
    let namespaces = net::build(hub, options.subscribers + 1)?;
    let dir = tempfile::tempdir()?;
    let clip = dir.path().join("clip.mjpeg");
    make_clip(&clip, options.height)?;
    let (_server, base) = start_server(&options.sluice, dir.path())?;
    let meeting = create_meeting(&base).await?;
    let secure = format!("--unsafely-treat-insecure-origin-as-secure={base}");

    let mut drivers = Vec::new();
    for (i, ns) in namespaces.iter().enumerate() {
        drivers.push(Chromedriver::start(Some(&ns.0), &net::browser_ip(i), CHROMEDRIVER_PORT, &[SERVER_IP]).await?);
    }
    let publisher_args = vec![
        secure.clone(),
        "--use-fake-device-for-media-stream".into(),
        "--use-fake-ui-for-media-stream".into(),
        format!("--use-file-for-fake-video-capture={}", clip.display()),
    ];
    let publisher = Browser::launch(&drivers[0], &publisher_args).await?;
    publisher.goto(&format!("{base}/m/{meeting}?name=Publisher&video={}p", options.height)).await?;
    // Subscribers have no devices: they send nothing, so the machine's cores go to the publisher's encoder.
    let mut subscribers = Vec::new();
    for (i, driver) in drivers.iter().enumerate().skip(1) {
        // A full-HD window: the web client asks for the layer its tile is tall enough for.
        let args = [secure.clone(), "--use-fake-ui-for-media-stream".into(), "--window-size=1920,1080".into()];
        let b = Browser::launch(driver, &args).await?;
        b.goto(&format!("{base}/m/{meeting}?name=Subscriber%20{i}")).await?;
        subscribers.push(b);
    }
    let (top, ttff_ms) = wait_for_video(&subscribers).await?;
    // Where the time went: from the page's join to its video track, and from the track to its first frame.
    let mut track_to_frame = Vec::new();
    for b in &subscribers {
        let v = b.eval("return Math.min(...Object.values(window.sluiceApp.trackToFrameMs))").await?;
        track_to_frame.push(v.as_f64().unwrap_or(f64::NAN));
    }
    println!(
        "qoe: {} subscribers decode the publisher at {top} pixels; time to first frame {ttff_ms:?} ms (of which \
         from the track to its first frame {track_to_frame:?} ms)",
        subscribers.len()
    );
    let encodings_at_start = publisher.eval(PUBLISHER_SCRIPT).await?;
    println!("qoe: the publisher sends [rid, height, fps, limitation] {encodings_at_start}");

    let mut downlink = Downlink::new(1, &namespaces[1]);
    let steps = options.schedule.steps();
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut next = start;
    let mut previous_heights: Vec<u64> = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        downlink.set(step.cap_bps, step.loss_percent)?;
        println!("qoe: {:>5.1} s  {}", start.elapsed().as_secs_f64(), step.label);
        let end = next + Duration::from_secs(step.secs);
        while next < end {
            next += Duration::from_secs(1);
            let (sent, readings) = futures::future::join(
                publisher.eval(PUBLISHER_SCRIPT),
                futures::future::join_all(subscribers.iter().map(|b| b.eval(SAMPLE_SCRIPT))),
            )
            .await;
            let t = start.elapsed().as_secs_f64();
            // The heights the publisher sends now, lowest first: a received height is a layer of this second's
            // or the previous second's (a switch shows at the next keyframe).
            let heights: Vec<u64> =
                sent?.as_array().into_iter().flatten().filter_map(|e| e[1].as_u64()).filter(|h| *h > 0).collect();
            for (subscriber, reading) in readings.into_iter().enumerate() {
                if let Some(mut sample) = sample(t, subscriber, index, &reading?) {
                    sample.layer_index = [&heights, &previous_heights]
                        .iter()
                        .find_map(|list| list.iter().position(|h| *h == sample.height));
                    sample.at_top = sample.layer_index.is_some_and(|i| i + 1 == heights.len().max(1))
                        || (sample.height > 0 && heights.last().is_some_and(|top| sample.height >= *top))
                        || (sample.height > 0 && previous_heights.last() == Some(&sample.height));
                    sample.publisher_heights = heights.clone();
                    samples.push(sample);
                }
            }
            previous_heights = heights;
            tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        }
    }
    downlink.set(None, 0)?;
    let metrics = reqwest::get(format!("{base}/metrics")).await?.text().await?;
    let errors = publisher.eval("return window.sluiceApp.errors").await?;
    let encodings = publisher.eval(PUBLISHER_SCRIPT).await?;
    println!("qoe: at the end the publisher sends {encodings}");
    publisher.close().await;
    for b in subscribers {
        b.close().await;
    }
    Ok(Report::new(options, steps, top, ttff_ms, samples, &metrics, errors))
}

/// A moving 720p (or `height`p) clip for Chromium's fake camera: ffmpeg's testsrc2, 10 s of MJPEG (looped).
fn make_clip(path: &std::path::Path, height: u32) -> anyhow::Result<()> {
    let size = format!("testsrc2=size={}x{height}:rate=30", height * 16 / 9);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", &size, "-t", "10", "-q:v", "5"])
        .arg(path)
        .status()
        .context("ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg could not make the clip");
    }
    Ok(())
}

/// `sluice serve` on the bridge, with embedded defaults in `dir`; returns it and its base URL.
fn start_server(sluice: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<(Group, String)> {
    use std::io::BufRead;
    let mut cmd = Command::new(sluice);
    for (key, _) in std::env::vars() {
        if key.starts_with("SLUICE_") || key == "DATABASE_URL" {
            cmd.env_remove(key);
        }
    }
    cmd.arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", &format!("{SERVER_IP}:0")])
        .env("SLUICE_DATAPLANE__BIND", SERVER_IP)
        .env("SLUICE_DATAPLANE__BASE_PORT", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    let mut server = Group::spawn(cmd)?;
    let stdout = server.child().stdout.take().context("the server's output")?;
    // Its first line says where it listens; a server that never says is given up on.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::io::BufReader::new(stdout).lines().next());
    });
    let line = rx
        .recv_timeout(WAIT)
        .context("sluice serve printed nothing within 45 s")?
        .context("sluice serve printed nothing")??;
    let Some(addr) = line.rsplit("HTTP API on ").next().filter(|_| line.contains("HTTP API on ")) else {
        bail!("unexpected first line from sluice serve: {line}");
    };
    Ok((server, format!("http://{}", addr.trim_end_matches(')'))))
}

async fn create_meeting(base: &str) -> anyhow::Result<String> {
    let body = json!({"host_name": "QoE", "settings": {"title": "QoE harness"}});
    let reply: Value = reqwest::Client::new().post(format!("{base}/meetings")).json(&body).send().await?.json().await?;
    reply["meeting"]["id"].as_str().map(str::to_string).context("no meeting id in the reply")
}

/// Pins the publisher's tile (as a person watching one speaker would): the web client asks for the layer a tile
/// is tall enough for, and in a grid of four a tile is not.
const PIN_SCRIPT: &str = r#"
    const tile = [...document.querySelectorAll('.tile')].find((t) => t.dataset.source === 'camera' && t.textContent.includes('Publisher'));
    if (!tile) return false;
    if (!tile.classList.contains('pinned')) tile.querySelector('.pin')?.click();
    return tile.classList.contains('pinned');
"#;

/// Waits until every subscriber has the publisher pinned and decodes its video at one height; returns it and
/// each subscriber's time to first frame.
async fn wait_for_video(subscribers: &[Browser]) -> anyhow::Result<(u64, Vec<f64>)> {
    let deadline = Instant::now() + WAIT;
    for b in subscribers {
        while b.eval(PIN_SCRIPT).await? != Value::Bool(true) {
            if Instant::now() > deadline {
                bail!("no publisher's tile to pin within {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let heights = loop {
        let mut heights = Vec::new();
        for b in subscribers {
            let v = b.eval(SAMPLE_SCRIPT).await?;
            heights.push(v["video"]["height"].as_u64().unwrap_or(0));
        }
        let top = heights.iter().copied().max().unwrap_or(0);
        if top > 0 && heights.iter().all(|h| *h == top) {
            break heights;
        }
        if Instant::now() > deadline {
            bail!("the subscribers did not all decode video within {WAIT:?}: heights {heights:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut ttff = Vec::new();
    for b in subscribers {
        let first = b.eval("return Math.min(...Object.values(window.sluiceApp.firstFrameMs))").await?;
        ttff.push(first.as_f64().unwrap_or(f64::NAN));
    }
    Ok((heights[0], ttff))
}

fn sample(t: f64, subscriber: usize, step: usize, v: &Value) -> Option<Sample> {
    let video = v.get("video")?;
    let u = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let layer = v["layer"].as_object();
    Some(Sample {
        t,
        subscriber,
        step,
        height: u(video, "height"),
        fps: video["fps"].as_f64().unwrap_or(0.0),
        frames_decoded: u(video, "frames"),
        freezes: u(video, "freezes"),
        freeze_secs: video["freeze_s"].as_f64().unwrap_or(0.0),
        packets_lost: video["lost"].as_i64().unwrap_or(0),
        packets_received: u(video, "packets"),
        bytes_received: u(video, "bytes"),
        concealed_samples: u(&v["audio"], "concealed"),
        audio_samples: u(&v["audio"], "samples"),
        rtt_ms: v["rtt"].as_f64(),
        estimate_bps: v["transport"]["estimate_bps"].as_u64(),
        limited: v["transport"]["limited"].as_bool().unwrap_or(false),
        layer: layer.map(|l| l["layer"].clone()),
        layer_reason: layer.and_then(|l| l["reason"].as_str().map(str::to_string)),
        paused: layer.is_some_and(|l| l["layer"].is_null()),
        publisher_heights: Vec::new(),
        layer_index: None,
        at_top: false,
    })
}
