//! Real meetings in real headless Chromium: the server (`sluice serve`), chromedriver and every browser run in a
//! fresh network namespace that holds only loopback (`../shared/testing/real-clients.md`), so nothing leaves
//! the machine. Each test re-runs itself inside its own namespace; browsers are driven through chromedriver's
//! WebDriver HTTP API and report what they decoded from `RTCPeerConnection.getStats()`.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "browser/analytics.rs"]
mod analytics;
#[path = "browser/breakouts.rs"]
mod breakouts;
#[path = "browser/chat.rs"]
mod chat;
#[path = "browser/congestion.rs"]
mod congestion;
#[path = "browser/devices.rs"]
mod devices;
#[path = "browser/firefox.rs"]
mod firefox;
#[path = "browser/layout.rs"]
mod layout;
#[path = "browser/screens.rs"]
mod screens;
#[path = "browser/svc.rs"]
mod svc;
#[path = "browser/whip.rs"]
mod whip;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const INSIDE: &str = "SLUICE_E2E_INSIDE";
/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(30);

/// Runs `test` inside a fresh network namespace holding only loopback (`sluice_testkit::in_fresh_netns`), one
/// test at a time.
fn in_fresh_netns(test: &str, body: impl AsyncFnOnce()) {
    let _turn = one_at_a_time();
    sluice_testkit::in_fresh_netns(test, body)
}

/// One meeting at a time: several sets of browsers on a small machine would measure the machine, not Sluice.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The namespace holding the server, for a test body running behind the NAT.
const PUBLIC_NS: &str = "SLUICE_E2E_PUBLIC_NS";
/// The server's address on the public side of the NAT (TEST-NET-3, only inside the test's namespaces).
const PUBLIC_IP: &str = "203.0.113.1";

/// Runs `test` in a client namespace behind a symmetric NAT: `cli` (10.77.0.2) routes through `nat`, which
/// masquerades with a new random port per destination (`--random-fully`) and lets in only replies, towards
/// `pub` (203.0.113.1), where the body starts the server (its namespace name is passed in). Nothing outside
/// these namespaces is reached.
fn behind_symmetric_nat(test: &str, body: impl AsyncFnOnce(&str)) {
    if std::env::var_os(INSIDE).is_some() {
        let public = std::env::var(PUBLIC_NS).expect("the public namespace's name");
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        return rt.block_on(body(&public));
    }
    let _turn = one_at_a_time();
    let tag = format!("{}-{}", std::process::id(), test.len());
    let [public, nat, client] = ["pub", "nat", "cli"].map(|role| format!("sluice-{role}-{tag}"));
    let mut guards = Vec::new();
    for ns in [&public, &nat, &client] {
        sh(&["ip", "netns", "add", ns]);
        guards.push(NetnsGuard(ns.clone()));
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    sh(&["ip", "link", "add", "wan0", "netns", &nat, "type", "veth", "peer", "name", "pub0", "netns", &public]);
    sh(&["ip", "link", "add", "lan0", "netns", &nat, "type", "veth", "peer", "name", "cli0", "netns", &client]);
    for (ns, dev, addr) in [
        (&public, "pub0", "203.0.113.1/24"),
        (&nat, "wan0", "203.0.113.2/24"),
        (&nat, "lan0", "10.77.0.1/24"),
        (&client, "cli0", "10.77.0.2/24"),
    ] {
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    // Only the public side is routed (through the NAT); nothing else exists for the browsers to try.
    sh(&["ip", "-n", &client, "route", "add", "203.0.113.0/24", "via", "10.77.0.1"]);
    let in_nat = |args: &[&str]| sh(&[&["ip", "netns", "exec", &nat][..], args].concat());
    in_nat(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    in_nat(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        "10.77.0.0/24",
        "-o",
        "wan0",
        "-j",
        "MASQUERADE",
        "--random-fully",
    ]);
    in_nat(&["iptables", "-P", "FORWARD", "DROP"]);
    in_nat(&["iptables", "-A", "FORWARD", "-i", "lan0", "-o", "wan0", "-j", "ACCEPT"]);
    in_nat(&[
        "iptables",
        "-A",
        "FORWARD",
        "-i",
        "wan0",
        "-o",
        "lan0",
        "-m",
        "conntrack",
        "--ctstate",
        "ESTABLISHED,RELATED",
        "-j",
        "ACCEPT",
    ]);
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("ip")
        .args(["netns", "exec", &client])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .env(PUBLIC_NS, &public)
        .status()
        .unwrap();
    assert!(status.success(), "{test} failed behind its NAT (output above)");
}

/// Runs a set-up command; it must succeed.
fn sh(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(status.success(), "{args:?} failed (the NAT test needs root, iproute2 and iptables)");
}

struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A child process killed when dropped; with `group`, its whole process group (chromedriver and the browsers
/// it started), so no browser outlives a failed test.
struct Process(Child, bool);

impl Drop for Process {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sluice serve` with embedded defaults in a temp directory; returns it and its base URL.
fn start_server_with(data_dir: &Path, env: &[(&str, &str)]) -> (Process, String) {
    start_server_in(None, "127.0.0.1:0", data_dir, env)
}

/// `sluice serve` listening on `listen`, in the network namespace `netns` if given.
fn start_server_in(netns: Option<&str>, listen: &str, data_dir: &Path, env: &[(&str, &str)]) -> (Process, String) {
    let mut env = env.to_vec();
    env.insert(0, ("SLUICE_DATAPLANE__BASE_PORT", "0"));
    let (process, line) = spawn_sluice(netns, data_dir, &["serve", "--listen", listen], &env);
    let addr = line.rsplit("HTTP API on ").next().unwrap().trim_end_matches(')').to_string();
    (process, format!("http://{addr}"))
}

/// `sluice --data-dir <data_dir> <args>` with no configuration from this machine's environment but `env`, in the
/// network namespace `netns` if given; returns it and the first line it printed (its ready line).
fn spawn_sluice(netns: Option<&str>, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Process, String) {
    let mut cmd = match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, BIN]);
            cmd
        }
        None => Command::new(BIN),
    };
    for (key, _) in std::env::vars() {
        if key.starts_with("SLUICE_") || key == "DATABASE_URL" {
            cmd.env_remove(key);
        }
    }
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", std::env::var("SLUICE_E2E_LOG").unwrap_or_else(|_| "warn".into()))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn sluice {args:?}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout).lines().next().expect("sluice printed its ready line").unwrap();
    (Process(child, false), line)
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// chromedriver on a free port, ready for sessions.
async fn start_chromedriver() -> (Process, String) {
    let port = free_tcp_port();
    let child = Command::new("chromedriver")
        .process_group(0)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run chromedriver (package chromium-driver)");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + WAIT;
    while reqwest::get(format!("{url}/status")).await.is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not answer within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (Process(child, true), url)
}

/// One headless Chromium, driven over WebDriver.
struct Browser {
    http: reqwest::Client,
    session: String,
    /// A WebDriver server of this browser's own (geckodriver drives one session at a time), stopped first.
    _driver: Option<Process>,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn launch(driver: &str) -> Browser {
        Browser::launch_with(driver, &[]).await
    }

    /// As `launch`, with more command-line switches.
    async fn launch_with(driver: &str, extra: &[String]) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = sluice_bench::webdriver::HEADLESS_SWITCHES
            .iter()
            .chain(&[
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                "--auto-select-desktop-capture-source=Entire screen",
                "--window-size=1280,800",
            ])
            .map(|a| a.to_string())
            .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend_from_slice(extra);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let http = reqwest::Client::new();
        let reply: Value =
            http.post(format!("{driver}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = reply["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {reply}"));
        Browser { http, session: format!("{driver}/session/{id}"), _driver: None, _profile: profile }
    }

    async fn goto(&self, url: &str) {
        let r = self.http.post(format!("{}/url", self.session)).json(&json!({"url": url})).send().await.unwrap();
        assert!(r.status().is_success(), "navigate to {url}: {}", r.text().await.unwrap());
    }

    /// Sets the viewport as a device would: `mobile` emulates a phone (touch, its pixel ratio); otherwise a
    /// desktop window of that size.
    async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        let params = json!({"width": width, "height": height, "deviceScaleFactor": if mobile { 3 } else { 1 }, "mobile": mobile});
        let body = json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": params});
        let r = self.http.post(format!("{}/goog/cdp/execute", self.session)).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "viewport {width}x{height}: {}", r.text().await.unwrap());
        let touch = json!({"cmd": "Emulation.setTouchEmulationEnabled", "params": {"enabled": mobile}});
        self.http.post(format!("{}/goog/cdp/execute", self.session)).json(&touch).send().await.unwrap();
    }

    /// Clicks the element `css` selects as a person would (a WebDriver click: a real input event, which
    /// counts as a user gesture, unlike a script's `click()`).
    async fn click_css(&self, css: &str) {
        let found: Value = self
            .http
            .post(format!("{}/element", self.session))
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let element = found["value"].as_object().and_then(|o| o.values().next()).and_then(Value::as_str);
        let element = element.unwrap_or_else(|| panic!("no element {css}: {found}"));
        let r =
            self.http.post(format!("{}/element/{element}/click", self.session)).json(&json!({})).send().await.unwrap();
        assert!(r.status().is_success(), "click {css}: {}", r.text().await.unwrap());
    }

    /// Runs `script` as a function body (it may `return` a promise, which WebDriver awaits) and returns its value.
    async fn eval(&self, script: &str) -> Value {
        let body = json!({"script": script, "args": []});
        let reply: Value = self
            .http
            .post(format!("{}/execute/sync", self.session))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(error) = reply["value"].get("error") {
            panic!("script failed: {error}: {}", reply["value"]["message"]);
        }
        reply["value"].clone()
    }

    /// What this browser receives: per inbound stream, its kind, frames decoded and audio samples.
    async fn inbound(&self) -> Vec<Inbound> {
        let v = self.eval(STATS_SCRIPT).await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| Inbound {
                        kind: s["kind"].as_str().unwrap_or_default().to_string(),
                        frames: s["frames"].as_u64().unwrap_or(0),
                        samples: s["samples"].as_u64().unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The browser's processes: every process started with this browser's profile directory (Chromium's
    /// `--user-data-dir=DIR`, Firefox's `-profile DIR`).
    fn processes(&self) -> Vec<String> {
        let dir = self._profile.path().display().to_string();
        let marker = format!("--user-data-dir={dir}");
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == marker.as_bytes() || arg == dir.as_bytes()))
            })
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect()
    }

    /// Sends `signal` to every process of this browser.
    fn signal(&self, signal: &str) {
        let pids = self.processes();
        assert!(!pids.is_empty(), "found the browser's processes");
        let _ = Command::new("kill").arg(format!("-{signal}")).args(&pids).status();
    }

    async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

const STATS_SCRIPT: &str = r#"
    const pc = window.sluiceApp && window.sluiceApp.client && window.sluiceApp.client.pc;
    if (!pc) return [];
    return pc.getStats().then((report) => {
        const out = [];
        report.forEach((s) => {
            // Firefox has no totalSamplesReceived: audio packets received stand in for it there.
            if (s.type === 'inbound-rtp') out.push({kind: s.kind, frames: s.framesDecoded || 0, samples: s.totalSamplesReceived || s.packetsReceived || 0});
        });
        return out;
    });
"#;

/// The state of a browser's connection, printed when a wait fails.
const DIAGNOSE_SCRIPT: &str = r#"
    const app = window.sluiceApp;
    const pc = app && app.client && app.client.pc;
    return JSON.stringify({
        page: document.body.innerText.slice(0, 300), url: location.href,
        errors: app && app.errors,
        firstFrameMs: app && app.firstFrameMs,
        connection: pc && pc.connectionState, ice: pc && pc.iceConnectionState, signaling: pc && pc.signalingState,
        transceivers: pc && pc.getTransceivers().map((t) => [t.mid, t.direction, t.currentDirection]),
        // The first sections only: a long meeting's SDP would drown the message.
        remote: pc && pc.remoteDescription && pc.remoteDescription.sdp.slice(0, 3000),
        local: pc && pc.localDescription && pc.localDescription.sdp.slice(0, 3000),
    });
"#;

#[derive(Debug, Clone)]
struct Inbound {
    kind: String,
    frames: u64,
    samples: u64,
}

fn decoding_videos(inbound: &[Inbound]) -> usize {
    inbound.iter().filter(|s| s.kind == "video" && s.frames > 0).count()
}

fn frames(inbound: &[Inbound]) -> u64 {
    inbound.iter().filter(|s| s.kind == "video").map(|s| s.frames).sum()
}

fn samples(inbound: &[Inbound]) -> u64 {
    inbound.iter().filter(|s| s.kind == "audio").map(|s| s.samples).sum()
}

/// Waits until `browser` decodes at least `videos` video streams and receives audio from `audios` streams.
async fn wait_decoding(browser: &Browser, who: &str, videos: usize, audios: usize) -> Vec<Inbound> {
    let deadline = Instant::now() + WAIT;
    loop {
        let inbound = browser.inbound().await;
        let hearing = inbound.iter().filter(|s| s.kind == "audio" && s.samples > 0).count();
        if decoding_videos(&inbound) >= videos && hearing >= audios {
            return inbound;
        }
        if Instant::now() > deadline {
            let log = browser.eval(DIAGNOSE_SCRIPT).await;
            panic!("{who} decodes {inbound:?} after {WAIT:?}, wanted {videos} videos and {audios} audios ({log})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Frames and samples keep growing over a second: media flows, it did not just start and stop.
async fn assert_growing(browser: &Browser, who: &str) {
    let before = browser.inbound().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = browser.inbound().await;
    assert!(frames(&after) > frames(&before), "{who}: video frames stopped growing: {before:?} -> {after:?}");
    assert!(samples(&after) > samples(&before), "{who}: audio samples stopped growing: {before:?} -> {after:?}");
}

async fn print_first_frames(browser: &Browser, who: &str) {
    let times = |v: Value| -> Vec<u64> {
        let mut t: Vec<u64> = v.as_object().map(|o| o.values().filter_map(Value::as_u64).collect()).unwrap_or_default();
        t.sort_unstable();
        t
    };
    let from_join = times(browser.eval("return window.sluiceApp.firstFrameMs").await);
    let from_track = times(browser.eval("return window.sluiceApp.trackToFrameMs").await);
    assert!(!from_join.is_empty(), "{who} recorded no first frame");
    println!(
        "{who}: {} ms from join to first decoded frame; per remote video, from its track arriving: {from_track:?} ms",
        from_join[0]
    );
}

/// A server, a chromedriver and a meeting, inside the test's namespace.
struct Stage {
    base: String,
    driver: String,
    id: String,
    /// The meeting's host token (from its creation).
    host_token: String,
    _server: Process,
    _chromedriver: Process,
    _dir: tempfile::TempDir,
}

impl Stage {
    async fn start(env: &[(&str, &str)]) -> Stage {
        let dir = tempfile::tempdir().unwrap();
        let (server, base) = start_server_with(dir.path(), env);
        let (chromedriver, driver) = start_chromedriver().await;
        let (id, host_token) = create_meeting(&base, "Host").await;
        Stage { base, driver, id, host_token, _server: server, _chromedriver: chromedriver, _dir: dir }
    }

    /// A new browser that opens the meeting's deep link under `name`.
    async fn join(&self, name: &str) -> Browser {
        self.join_with(name, "").await
    }

    /// As `join`, with more query parameters (`&codec=VP9`).
    async fn join_with(&self, name: &str, query: &str) -> Browser {
        let browser = Browser::launch(&self.driver).await;
        browser.goto(&format!("{}/m/{}?name={name}{query}", self.base, self.id)).await;
        browser
    }

    async fn meeting(&self) -> Value {
        reqwest::get(format!("{}/meetings/{}", self.base, self.id)).await.unwrap().json().await.unwrap()
    }
}

/// True in a page once no element names `participant` any more.
fn gone_script(participant: &str) -> String {
    format!("return !document.querySelector('[data-participant=\"{participant}\"]')")
}

async fn create_meeting(base: &str, host: &str) -> (String, String) {
    create_meeting_with(base, json!({"host_name": host, "settings": {"title": "e2e"}})).await
}

/// `POST /meetings` with `body`: the meeting id and the host's token.
async fn create_meeting_with(base: &str, body: Value) -> (String, String) {
    let reply: Value =
        reqwest::Client::new().post(format!("{base}/meetings")).json(&body).send().await.unwrap().json().await.unwrap();
    (reply["meeting"]["id"].as_str().unwrap().to_string(), reply["host_token"].as_str().unwrap().to_string())
}

/// axe-core (vendored into the tests only: `tests/browser/vendor/axe-core`) run on the page as it is now: its
/// serious and critical violations, each as "rule: element: what is wrong".
async fn accessibility_problems(browser: &Browser) -> Vec<String> {
    const AXE: &str = include_str!("browser/vendor/axe-core/axe.min.js");
    // The page's CSP allows no inline script or eval: WebDriver runs the library itself as the script's body.
    browser.eval(&format!("{AXE}\n;return typeof window.axe")).await;
    let found = browser
        .eval(
            r#"return window.axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations
                .filter((v) => v.impact === 'serious' || v.impact === 'critical')
                .flatMap((v) => v.nodes.slice(0, 4).map((n) => `${v.id} (${v.impact}): ${n.target.join(' ')}: ${(n.failureSummary || "").replace(/\s+/g, ' ')}`)))"#,
        )
        .await;
    found.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Fails with every serious or critical accessibility problem axe-core finds on `screen`.
async fn assert_accessible(browser: &Browser, screen: &str) {
    let problems = accessibility_problems(browser).await;
    assert!(problems.is_empty(), "accessibility of {screen}:\n{}", problems.join("\n"));
    println!("axe-core: no serious or critical problem on {screen}");
}

async fn participant_id(browser: &Browser) -> String {
    browser.eval("return window.sluiceApp.selfId").await.as_str().unwrap_or_default().to_string()
}

/// Waits until `script` (a function body) returns true in `browser`.
async fn wait_true(browser: &Browser, what: &str, script: &str) {
    let deadline = Instant::now() + WAIT;
    while browser.eval(script).await != Value::Bool(true) {
        assert!(Instant::now() < deadline, "{what}: not true within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn two_participants_see_and_hear_each_other() {
    in_fresh_netns("two_participants_see_and_hear_each_other", async || {
        let stage = Stage::start(&[]).await;
        let alice = stage.join("Alice").await;
        let bob = stage.join("Bob").await;
        wait_decoding(&alice, "Alice", 1, 1).await;
        wait_decoding(&bob, "Bob", 1, 1).await;
        assert_growing(&alice, "Alice").await;
        assert_growing(&bob, "Bob").await;
        print_first_frames(&alice, "Alice").await;
        print_first_frames(&bob, "Bob").await;
        // The grid shows the other by name.
        wait_true(
            &alice,
            "Alice's grid shows Bob",
            "return [...document.querySelectorAll('#grid .tile .label')].some((l) => l.textContent.startsWith('Bob'))",
        )
        .await;
        let meeting = stage.meeting().await;
        assert_eq!(meeting["active_participants"], 2, "{meeting}");
        alice.close().await;
        bob.close().await;
    });
}

#[test]
fn three_participants_share_a_screen_and_one_leaves() {
    in_fresh_netns("three_participants_share_a_screen_and_one_leaves", async || {
        let stage = Stage::start(&[]).await;
        let names = ["Ann", "Ben", "Cat"];
        let mut browsers = Vec::new();
        for name in names {
            browsers.push(stage.join(name).await);
        }
        for (b, name) in browsers.iter().zip(names) {
            wait_decoding(b, name, 2, 2).await;
        }
        for (b, name) in browsers.iter().zip(names) {
            print_first_frames(b, name).await;
        }

        // Ann shares her screen: Ben and Cat decode a third video, shown in the spotlight.
        browsers[0].eval("document.getElementById('share').click(); return true").await;
        for (b, name) in browsers.iter().zip(names).skip(1) {
            wait_decoding(b, name, 3, 2).await;
            wait_true(
                b,
                &format!("{name} spotlights the screen"),
                "return document.querySelectorAll('#spotlight .tile.screen').length === 1",
            )
            .await;
        }

        // Cat leaves: gone from the others' grids within seconds.
        let cat = participant_id(&browsers[2]).await;
        browsers[2].eval("document.getElementById('leave').click(); return true").await;
        let gone = gone_script(&cat);
        let left_at = Instant::now();
        for (b, name) in browsers.iter().zip(names).take(2) {
            wait_true(b, &format!("Cat gone from {name}'s view"), &gone).await;
        }
        println!("a leaving participant disappeared from both others' views in {:?}", left_at.elapsed());
        let meeting = stage.meeting().await;
        assert_eq!(meeting["active_participants"], 2, "Cat's row has left_at: {meeting}");
        for b in browsers {
            b.close().await;
        }
    });
}

#[test]
fn a_rejoin_with_the_same_name_works_and_a_bad_token_is_refused() {
    in_fresh_netns("a_rejoin_with_the_same_name_works_and_a_bad_token_is_refused", async || {
        let stage = Stage::start(&[]).await;
        let dee = stage.join("Dee").await;
        let eve = stage.join("Eve").await;
        wait_decoding(&dee, "Dee", 1, 1).await;
        let first = participant_id(&eve).await;

        // Eve closes her browser and comes back under the same name.
        eve.close().await;
        let gone = gone_script(&first);
        wait_true(&dee, "Eve's first connection gone from Dee's view", &gone).await;
        let eve = stage.join("Eve").await;
        wait_decoding(&eve, "Eve again", 1, 1).await;
        let before = frames(&dee.inbound().await);
        wait_true(
            &dee,
            "Dee sees Eve again",
            "return [...document.querySelectorAll('#grid .tile .label')].some((l) => l.textContent.startsWith('Eve'))",
        )
        .await;
        let deadline = Instant::now() + WAIT;
        while frames(&dee.inbound().await) <= before {
            assert!(Instant::now() < deadline, "Dee decodes no frames from the rejoined Eve");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        // A forged token: the socket closes with 4001 and a reason that says why.
        let script = format!(
            r#"return new Promise((resolve) => {{
                const ws = new WebSocket('{ws}/signaling');
                ws.onopen = () => ws.send(JSON.stringify({{type: 'join', v: 1, meeting_id: '{id}', token: 'not.a.token'}}));
                ws.onclose = (e) => resolve({{code: e.code, reason: e.reason}});
            }});"#,
            ws = stage.base.replacen("http", "ws", 1),
            id = stage.id
        );
        let closed = dee.eval(&script).await;
        assert_eq!(closed["code"], 4001, "{closed}");
        assert!(closed["reason"].as_str().unwrap().contains("token is invalid"), "{closed}");
        dee.close().await;
        eve.close().await;
    });
}

/// The waiting room from the web client: two people wait and decode nothing, the host sees both, admits one (who
/// then sees and is seen) and denies the other (who is told).
#[test]
fn the_waiting_room_lets_in_only_whom_the_host_admits() {
    in_fresh_netns("the_waiting_room_lets_in_only_whom_the_host_admits", async || {
        let dir = tempfile::tempdir().unwrap();
        let (_server, base) = start_server_with(dir.path(), &[]);
        let (_chromedriver, driver) = start_chromedriver().await;
        let settings = json!({"host_name": "Hana", "settings": {"waiting_room": true, "title": "Interviews"}});
        let (id, host_token) = create_meeting_with(&base, settings).await;
        let pat = Browser::launch(&driver).await;
        pat.goto(&format!("{base}/m/{id}?name=Pat")).await;
        let quinn = Browser::launch(&driver).await;
        quinn.goto(&format!("{base}/m/{id}?name=Quinn")).await;
        let waiting_shown = "const w = document.getElementById('waiting'); \
            return !!w && !w.hidden && getComputedStyle(w).display !== 'none' && w.innerText.includes('Interviews') \
            && getComputedStyle(document.getElementById('meeting')).display === 'none'";
        wait_true(&pat, "Pat sees the waiting screen", waiting_shown).await;
        wait_true(&quinn, "Quinn sees the waiting screen", waiting_shown).await;
        assert_accessible(&quinn, "the waiting screen").await;

        let hana = Browser::launch(&driver).await;
        hana.goto(&format!("{base}/m/{id}?name=Hana#token={host_token}")).await;
        wait_true(&hana, "Hana sees both waiting", "return document.querySelectorAll('#waiting-list li').length === 2")
            .await;
        assert_accessible(&hana, "the host's waiting list").await;
        assert_eq!(decoding_videos(&pat.inbound().await), 0, "Pat decodes nothing while waiting");
        assert_eq!(decoding_videos(&hana.inbound().await), 0, "nobody is in yet");
        let click = |name: &str, button: &str| {
            format!(
                "const li = [...document.querySelectorAll('#waiting-list li')].find((l) => l.textContent.includes('{name}')); \
                 if (!li) return false; [...li.querySelectorAll('button')].find((b) => b.textContent === '{button}').click(); return true;"
            )
        };
        assert_eq!(hana.eval(&click("Pat", "Admit")).await, Value::Bool(true));
        wait_decoding(&pat, "Pat", 1, 1).await;
        wait_decoding(&hana, "Hana", 1, 1).await;
        assert_eq!(hana.eval(&click("Quinn", "Deny")).await, Value::Bool(true));
        wait_true(
            &quinn,
            "Quinn is told",
            "const e = document.getElementById('ended'); return !e.hidden && e.innerText.includes('did not let you in')",
        )
        .await;
        assert_eq!(decoding_videos(&quinn.inbound().await), 0);
        wait_true(&hana, "the list empties", "return document.getElementById('waiting-room').hidden").await;
        for b in [pat, quinn, hana] {
            b.close().await;
        }
    });
}

/// Audio packets received from each publisher (by participant id), and this page's own audio packets sent.
const AUDIO_PACKETS_SCRIPT: &str = r#"
    const app = window.sluiceApp;
    const pc = app.client && app.client.pc;
    if (!pc) return {received: {}, sent: 0};
    return pc.getStats().then((report) => {
        const received = {};
        let sent = 0;
        report.forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'audio') {
                const t = pc.getTransceivers().find((t) => t.receiver.track && t.receiver.track.id === s.trackIdentifier);
                const info = t && app.client.sections.get(t.mid);
                const who = (info && info.participant_id) || s.trackIdentifier;
                received[who] = (received[who] || 0) + (s.packetsReceived || 0);
            }
            if (s.type === 'outbound-rtp' && s.kind === 'audio') sent += s.packetsSent || 0;
        });
        return {received, sent};
    });
"#;

/// Host controls from the web client, enforced by the server: a muted participant whose page ignores the mute
/// and keeps sending reaches nobody; a removed one cannot come back with the same token or a new one for the
/// same user; a locked meeting refuses a newcomer.
#[test]
fn host_controls_hold_against_a_page_that_ignores_them() {
    in_fresh_netns("host_controls_hold_against_a_page_that_ignores_them", async || {
        let dir = tempfile::tempdir().unwrap();
        let (_server, base) = start_server_with(dir.path(), &[]);
        let (_chromedriver, driver) = start_chromedriver().await;
        let (id, host_token) = create_meeting_with(&base, json!({"host_name": "Hana"})).await;
        let hana = Browser::launch(&driver).await;
        hana.goto(&format!("{base}/m/{id}?name=Hana#token={host_token}")).await;
        let pat = Browser::launch(&driver).await;
        pat.goto(&format!("{base}/m/{id}?name=Pat")).await;
        wait_decoding(&hana, "Hana", 1, 1).await;
        wait_decoding(&pat, "Pat", 1, 1).await;
        let pat_id = participant_id(&pat).await;
        // Pat's page ignores mutes: it keeps its microphone on whatever it is told.
        pat.eval("setInterval(() => { const t = window.sluiceApp.client.local.microphone; if (t) t.enabled = true; }, 20); return true;").await;
        let received_from_pat = async || -> (u64, u64) {
            let v = hana.eval(AUDIO_PACKETS_SCRIPT).await;
            let mine = pat.eval(AUDIO_PACKETS_SCRIPT).await;
            (v["received"][&pat_id].as_u64().unwrap_or(0), mine["sent"].as_u64().unwrap_or(0))
        };
        let (before, _) = received_from_pat().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(received_from_pat().await.0 > before, "Hana hears Pat before the mute");

        // Hana mutes Pat from the people list.
        hana.eval("document.getElementById('people').hidden = false; window.confirm = () => true; return true;").await;
        let act = |label: &str| {
            format!(
                "const li = document.querySelector('#people-list li[data-participant=\"{pat_id}\"]'); if (!li) return false; \
                 li.querySelector('details').open = true; \
                 const b = [...li.querySelectorAll('button')].find((b) => b.textContent === '{label}'); \
                 if (!b) return false; b.click(); return true;"
            )
        };
        wait_true(&hana, "Hana can mute Pat", &act("Mute")).await;
        wait_true(
            &pat,
            "Pat is told",
            "return document.getElementById('notice').textContent.includes('stopped your microphone')",
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (received_a, sent_a) = received_from_pat().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (received_b, sent_b) = received_from_pat().await;
        assert!(sent_b > sent_a + 20, "Pat's page keeps sending audio: {sent_a} -> {sent_b}");
        assert_eq!(received_b, received_a, "no audio from Pat reaches Hana once muted ({received_a} -> {received_b})");
        let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
        let blocked: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("sluice_dataplane_drops_total") && l.contains("reason=\"blocked\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(blocked > 20.0, "the dataplane counts what it drops: {blocked}");
        // Pat's own unmute is refused by the server while no host asked.
        pat.eval("window.sluiceApp.client.setMuted('microphone', false); return true;").await;
        wait_true(
            &pat,
            "Pat's unmute is refused",
            "return window.sluiceApp.errors.some((e) => e.includes('when a host asks'))",
        )
        .await;

        // Removed: out now, and not back with the same token or a fresh one for the same user.
        wait_true(&hana, "Hana removes Pat", &act("Remove")).await;
        wait_true(
            &pat,
            "Pat is told",
            "const e = document.getElementById('ended'); return !e.hidden && e.innerText.includes('removed you')",
        )
        .await;
        let history: Value = reqwest::Client::new()
            .get(format!("{base}/meetings/{id}/participants"))
            .bearer_auth(&host_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let user = history["history"].as_array().unwrap().iter().find(|p| p["name"] == "Pat").unwrap()["user_id"]
            .as_str()
            .unwrap()
            .to_string();
        pat.goto(&format!("{base}/m/{id}?name=Pat")).await;
        wait_true(&pat, "the same token is refused", "return document.body.innerText.includes('removed you')").await;
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["token", "--meeting", &id, "--user", &user, "--name", "Pat"])
            .output()
            .unwrap();
        let fresh = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let again = Browser::launch(&driver).await;
        again.goto(&format!("{base}/m/{id}?name=Pat#token={fresh}")).await;
        wait_true(
            &again,
            "a new token for the same user is refused",
            "return document.body.innerText.includes('removed you')",
        )
        .await;
        assert_eq!(decoding_videos(&again.inbound().await), 0);

        // Locked: a newcomer is refused and told why.
        hana.eval("document.getElementById('lock').click(); return true;").await;
        wait_true(&hana, "the meeting shows locked", "return !document.getElementById('locked-badge').hidden").await;
        let quinn = Browser::launch(&driver).await;
        quinn.goto(&format!("{base}/m/{id}?name=Quinn")).await;
        wait_true(
            &quinn,
            "Quinn is told",
            "return document.body.innerText.toLowerCase().includes('meeting is locked')",
        )
        .await;
        for b in [hana, pat, again, quinn] {
            b.close().await;
        }
    });
}

/// A third-party WebRTC stack written from the docs alone: GStreamer's webrtcbin (`tests/gst/client.py`), stock
/// (its own RSA 2048 DTLS certificate, libnice's Binding-indication keepalives), in one meeting with Chromium, each
/// decoding the other, for longer than the consent timeout.
#[test]
fn gstreamer_webrtcbin_and_chromium_decode_each_other() {
    in_fresh_netns("gstreamer_webrtcbin_and_chromium_decode_each_other", async || {
        let stage = Stage::start(&[]).await;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gst/client.py");
        let gst = Command::new("/usr/bin/python3")
            .args([script, &stage.base, &stage.id, "Gst", "16"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "run the GStreamer client (python3-gi, gstreamer1.0-plugins-bad and -nice; tests/run.sh installs them)",
            );
        let chrome = stage.join("Chrome").await;
        wait_decoding(&chrome, "Chrome", 1, 1).await;
        // Past the dataplane's consent timeout (10 s): libnice keeps the pair with indications and media.
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_growing(&chrome, "Chrome").await;
        let out = tokio::task::spawn_blocking(move || gst.wait_with_output()).await.unwrap().unwrap();
        let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
        let counts: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("the client's counts ({e}): {line:?}"));
        assert!(counts["video_frames"].as_u64().unwrap_or(0) > 50, "webrtcbin decodes Chrome's video: {counts}");
        assert!(counts["audio_buffers"].as_u64().unwrap_or(0) > 50, "and its audio: {counts}");
        assert_eq!(counts["errors"], json!([]), "{counts}");
        chrome.close().await;
    });
}

/// The strict profile over HTTPS, as a public deployment runs it: an application creates the meeting with its
/// API key and mints each person an invitation; the browsers open those links over `https://` and signal over
/// `wss://` (the certificate is the server's self-signed one, which only this test's browsers are told to accept).
#[test]
fn a_meeting_over_https_with_application_invitations() {
    in_fresh_netns("a_meeting_over_https_with_application_invitations", async || {
        let dir = tempfile::tempdir().unwrap();
        let strict = [("SLUICE_ACCESS__CREATE_MEETINGS", "api_key"), ("SLUICE_ACCESS__JOIN_BY_LINK", "token_only")];
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["apikey", "create", "--name", "e2e app", "--scope", "create_meetings,mint_tokens"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let mut env = strict.to_vec();
        env.insert(0, ("SLUICE_DATAPLANE__BASE_PORT", "0"));
        let (_server, line) =
            spawn_sluice(None, dir.path(), &["serve", "--listen", "127.0.0.1:0", "--self-signed"], &env);
        assert!(line.starts_with("Sluice is ready: open https://"), "{line}");
        let base = format!("https://{}", line.rsplit("HTTP API on ").next().unwrap().trim_end_matches(')'));
        let api = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
        let created: Value = api
            .post(format!("{base}/meetings"))
            .bearer_auth(&key)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["meeting"]["id"].as_str().expect("a meeting").to_string();
        let invite = async |name: &str| -> String {
            let minted: Value = api
                .post(format!("{base}/meetings/{id}/tokens"))
                .bearer_auth(&key)
                .json(&json!({"name": name}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            minted["join_url"].as_str().unwrap_or_else(|| panic!("an invitation: {minted}")).to_string()
        };
        let (_chromedriver, driver) = start_chromedriver().await;
        let trusting = ["--ignore-certificate-errors".to_string()];
        let ivy = Browser::launch_with(&driver, &trusting).await;
        ivy.goto(&invite("Ivy").await).await;
        let jon = Browser::launch_with(&driver, &trusting).await;
        jon.goto(&invite("Jon").await).await;
        wait_decoding(&ivy, "Ivy", 1, 1).await;
        wait_decoding(&jon, "Jon", 1, 1).await;
        let page =
            ivy.eval("return [location.protocol, location.hash, window.sluiceApp.client.signalingUrl || '']").await;
        assert_eq!(page[0], "https:", "{page}");
        assert_eq!(page[1], "", "the token is taken out of the address bar: {page}");
        assert!(page[2].as_str().unwrap().starts_with("wss://"), "{page}");

        // The same link without its token: the page says joining by link is off, and nothing connects.
        let kim = Browser::launch_with(&driver, &trusting).await;
        kim.goto(&format!("{base}/m/{id}?name=Kim")).await;
        wait_true(&kim, "Kim is told why", "return document.body.innerText.includes('joining by the meeting')").await;
        assert!(decoding_videos(&kim.inbound().await) == 0);
        ivy.close().await;
        jon.close().await;
        kim.close().await;
    });
}

#[test]
fn a_vanished_participant_is_removed_within_seconds() {
    in_fresh_netns("a_vanished_participant_is_removed_within_seconds", async || {
        let stage = Stage::start(&[]).await;
        let fay = stage.join("Fay").await;
        let gus = stage.join("Gus").await;
        wait_decoding(&fay, "Fay", 1, 1).await;
        let gone_id = participant_id(&gus).await;

        // Gus's browser freezes: no leave, no socket close, no ICE answers. Consent and signaling liveness notice.
        gus.signal("STOP");
        let frozen = Instant::now();
        let gone = gone_script(&gone_id);
        wait_true(&fay, "the frozen Gus gone from Fay's view", &gone).await;
        let took = frozen.elapsed();
        println!("a vanished participant was removed from the others' view in {took:?}");
        assert!(took < Duration::from_secs(20), "removed after {took:?}");
        let meeting = stage.meeting().await;
        assert_eq!(meeting["active_participants"], 1, "Gus's row has left_at: {meeting}");
        gus.signal("KILL");
        fay.close().await;
    });
}

#[test]
fn clients_reconnect_after_a_network_blip_without_reloading() {
    in_fresh_netns("clients_reconnect_after_a_network_blip_without_reloading", async || {
        let stage = Stage::start(&[]).await;
        let hal = stage.join("Hal").await;
        let ivy = stage.join("Ivy").await;
        wait_decoding(&hal, "Hal", 1, 1).await;
        wait_decoding(&ivy, "Ivy", 1, 1).await;
        for b in [&hal, &ivy] {
            b.eval("window.notReloaded = true; window.sluiceApp.reconnected = 0; window.sluiceApp.client.addEventListener('reconnected', () => window.sluiceApp.reconnected++); return true").await;
        }

        // Every signaling connection is cut (the kernel aborts the browsers' TCP sockets to the server).
        let port = stage.base.rsplit(':').next().unwrap();
        let status =
            Command::new("ss").args(["-K", "dst", "127.0.0.1", "dport", "=", &format!(":{port}")]).output().unwrap();
        assert!(status.status.success(), "ss -K: {}", String::from_utf8_lossy(&status.stderr));
        for (b, name) in [(&hal, "Hal"), (&ivy, "Ivy")] {
            wait_true(b, &format!("{name} reconnected"), "return window.sluiceApp.reconnected >= 1").await;
            assert_eq!(
                b.eval("return window.notReloaded === true").await,
                Value::Bool(true),
                "{name}'s page was not reloaded"
            );
        }
        // New peer connections: media flows again both ways.
        wait_decoding(&hal, "Hal after the blip", 1, 1).await;
        wait_decoding(&ivy, "Ivy after the blip", 1, 1).await;
        assert_growing(&hal, "Hal after the blip").await;
        let meeting = stage.meeting().await;
        assert_eq!(meeting["active_participants"], 2, "the old connections left, the new ones are in: {meeting}");
        hal.close().await;
        ivy.close().await;
    });
}

#[test]
fn two_browsers_on_two_workers_sharing_one_port() {
    in_fresh_netns("two_browsers_on_two_workers_sharing_one_port", async || {
        let stage =
            Stage::start(&[("SLUICE_DATAPLANE__WORKERS", "2"), ("SLUICE_DATAPLANE__SINGLE_PORT", "true")]).await;
        let jon = stage.join("Jon").await;
        let kim = stage.join("Kim").await;
        wait_decoding(&jon, "Jon", 1, 1).await;
        wait_decoding(&kim, "Kim", 1, 1).await;
        assert_growing(&jon, "Jon").await;
        assert_growing(&kim, "Kim").await;
        // Both browsers were given the same server port (the candidates trickled into their remote descriptions)...
        let port = r#"return window.sluiceApp.client.pc.remoteDescription.sdp.split('\r\n')
            .filter((l) => l.startsWith('a=candidate:')).map((l) => l.split(' ')[5])"#;
        let (jon_ports, kim_ports) = (jon.eval(port).await, kim.eval(port).await);
        assert!(jon_ports.as_array().is_some_and(|p| !p.is_empty()), "{jon_ports}");
        assert_eq!(jon_ports, kim_ports, "one port for both workers");
        // ...and both workers hold one participant each behind it.
        let metrics = reqwest::get(format!("{}/metrics", stage.base)).await.unwrap().text().await.unwrap();
        let participants: Vec<&str> =
            metrics.lines().filter(|l| l.starts_with("sluice_dataplane_participants{")).collect();
        assert_eq!(participants.len(), 2, "{participants:?}");
        assert!(participants.iter().all(|l| l.ends_with(" 1")), "one participant per worker: {participants:?}");
        jon.close().await;
        kim.close().await;
    });
}

/// The codecs of what `browser` decodes, from `inbound-rtp` stats.
async fn inbound_video_codecs(browser: &Browser) -> Vec<String> {
    let script = r#"
        const pc = window.sluiceApp.client.pc;
        return pc.getStats().then((report) => {
            const out = [];
            report.forEach((s) => {
                if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0 && report.get(s.codecId)) {
                    out.push(report.get(s.codecId).mimeType);
                }
            });
            return out;
        });
    "#;
    let v = browser.eval(script).await;
    v.as_array().map(|a| a.iter().filter_map(|c| c.as_str().map(String::from)).collect()).unwrap_or_default()
}

#[test]
fn vp9_and_vp8_publishers_are_forwarded_in_their_own_codecs() {
    in_fresh_netns("vp9_and_vp8_publishers_are_forwarded_in_their_own_codecs", async || {
        let stage = Stage::start(&[]).await;
        let lea = stage.join_with("Lea", "&codec=VP9").await;
        let max = stage.join("Max").await;
        wait_decoding(&lea, "Lea", 1, 1).await;
        wait_decoding(&max, "Max", 1, 1).await;
        assert_growing(&max, "Max").await;
        // Max decodes Lea's VP9; Lea decodes Max's VP8: each subscriber gets the publisher's codec.
        assert_eq!(inbound_video_codecs(&max).await, ["video/VP9"]);
        assert_eq!(inbound_video_codecs(&lea).await, ["video/VP8"]);
        lea.close().await;
        max.close().await;
    });
}

/// What a browser sends of its camera: per simulcast encoding (by RID), frames encoded and the frame height.
const OUTBOUND_LAYERS_SCRIPT: &str = r#"
    const pc = window.sluiceApp.client.pc;
    return pc.getStats().then((report) => {
        const out = {};
        report.forEach((s) => {
            if (s.type === 'outbound-rtp' && s.kind === 'video') out[s.rid || '-'] = [s.framesEncoded || 0, s.frameHeight || 0];
        });
        return out;
    });
"#;

/// The frame height of the one video a browser receives.
const INBOUND_HEIGHT_SCRIPT: &str = r#"
    const pc = window.sluiceApp.client.pc;
    return pc.getStats().then((report) => {
        let height = 0;
        report.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') height = s.frameHeight || 0; });
        return height;
    });
"#;

/// Waits until `browser` decodes video `height` pixels tall.
async fn wait_height(browser: &Browser, who: &str, height: impl Fn(u64) -> bool, what: &str) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = browser.eval(INBOUND_HEIGHT_SCRIPT).await.as_u64().unwrap_or(0);
        if height(now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{who} decodes video {now} pixels tall after {WAIT:?}, wanted {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[test]
fn a_simulcast_camera_reaches_each_subscriber_in_the_layer_it_asks_for() {
    in_fresh_netns("a_simulcast_camera_reaches_each_subscriber_in_the_layer_it_asks_for", async || {
        let stage = Stage::start(&[]).await;
        let pia = stage.join("Pia").await;
        let quinn = stage.join("Quinn").await;
        wait_decoding(&quinn, "Quinn", 1, 1).await;
        // Pia's browser answered the offer's simulcast: it encodes several layers of its camera.
        let deadline = Instant::now() + WAIT;
        let layers = loop {
            let layers = pia.eval(OUTBOUND_LAYERS_SCRIPT).await;
            let sending = layers.as_object().map_or(0, |o| o.values().filter(|v| v[0].as_u64() > Some(0)).count());
            if sending >= 2 {
                break layers;
            }
            assert!(Instant::now() < deadline, "Pia sends {layers}, wanted at least two simulcast layers");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        println!("Pia's camera layers (frames encoded, height): {layers}");
        assert!(layers.get("-").is_none(), "every encoding has a RID: {layers}");
        let top = layers.as_object().unwrap().values().filter_map(|v| v[1].as_u64()).max().unwrap();
        let track = quinn
            .eval("return [...document.querySelectorAll('.tile.camera')].map((t) => t.dataset.trackId).find((t) => t)")
            .await;
        let track = track.as_str().expect("Quinn has a tile for Pia's camera").to_string();
        assert_eq!(
            quinn.eval(&format!("return window.sluiceApp.client.participants.values().next().value.tracks.find((t) => t.track_id === '{track}').layers")).await,
            json!(3),
            "track_added says three layers"
        );

        // The lowest layer, then the top one again: what Quinn decodes follows, without renegotiating.
        quinn.eval(&format!("window.sluiceApp.client.setLayer('{track}', 0); return true")).await;
        let low = wait_height(&quinn, "Quinn", |h| h > 0 && h < top, "a lower layer").await;
        assert_growing(&quinn, "Quinn").await;
        quinn.eval(&format!("window.sluiceApp.client.setLayer('{track}', 2); return true")).await;
        wait_height(&quinn, "Quinn", |h| h == top, "the top layer").await;
        println!("Quinn decoded Pia's camera at {low} pixels on layer 0 and {top} on layer 2");
        assert_growing(&quinn, "Quinn").await;
        assert!(quinn.eval("return window.sluiceApp.errors").await.as_array().is_none_or(Vec::is_empty));
        pia.close().await;
        quinn.close().await;
    });
}

/// The type of the local candidate of the selected ICE pair (`host`, `srflx`, `relay`).
const SELECTED_CANDIDATE_SCRIPT: &str = r#"
    const pc = window.sluiceApp.client.pc;
    return pc.getStats().then((report) => {
        let pair = null;
        report.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId); });
        const local = pair && report.get(pair.localCandidateId);
        return local ? local.candidateType : null;
    });
"#;

#[test]
fn browsers_behind_a_symmetric_nat_meet_through_the_relay() {
    behind_symmetric_nat("browsers_behind_a_symmetric_nat_meet_through_the_relay", async |public: &str| {
        let dir = tempfile::tempdir().unwrap();
        let listen = format!("{PUBLIC_IP}:0");
        let (_server, base) =
            start_server_in(Some(public), &listen, dir.path(), &[("SLUICE_TURN__RELAY_IP", PUBLIC_IP)]);
        let (_chromedriver, driver) = start_chromedriver().await;
        let (id, _) = create_meeting(&base, "Host").await;
        // Cameras need a secure context; this origin is plain HTTP on a test address.
        let secure = [format!("--unsafely-treat-insecure-origin-as-secure={base}")];
        let mut browsers = Vec::new();
        for name in ["Nat", "Ola"] {
            let browser = Browser::launch_with(&driver, &secure).await;
            // `ice=relay`: the browser offers only relayed candidates, as behind a firewall that allows nothing
            // else; the server's TURN credentials come in `welcome`.
            browser.goto(&format!("{base}/m/{id}?name={name}&ice=relay")).await;
            browsers.push(browser);
        }
        for (browser, name) in browsers.iter().zip(["Nat", "Ola"]) {
            wait_decoding(browser, name, 1, 1).await;
            assert_growing(browser, name).await;
            print_first_frames(browser, name).await;
            let candidate = browser.eval(SELECTED_CANDIDATE_SCRIPT).await;
            assert_eq!(candidate, "relay", "{name}'s media goes through the relay");
        }
        let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
        let value = |name: &str| -> u64 {
            metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0)
        };
        assert!(value("sluice_turn_allocations_active") >= 2, "{metrics}");
        assert!(
            value("sluice_turn_relayed_packets_total{direction=\"to_peer\"}") > 100,
            "media relayed towards the SFU"
        );
        assert!(
            value("sluice_turn_relayed_packets_total{direction=\"to_client\"}") > 100,
            "media relayed to the browsers"
        );
        println!(
            "relayed: {} to the SFU, {} to the browsers",
            value("sluice_turn_relayed_packets_total{direction=\"to_peer\"}"),
            value("sluice_turn_relayed_packets_total{direction=\"to_client\"}")
        );
        for browser in browsers {
            browser.close().await;
        }
    });
}

/// The sentence the speaking participant says (espeak-ng), and the words of it a transcript must share.
/// PocketSphinx's small model is rough on synthetic speech; this sentence, in espeak-ng's US voice, is one it
/// mostly gets.
const SENTENCE: &str = "good morning everyone. please open the report and check the numbers.";

/// Media files for Chromium's fake capture devices: the sentence as a 48 kHz WAV with a pause after it (the
/// device loops it), and a moving test pattern as Y4M.
fn fake_media(dir: &Path) -> (String, String) {
    let speech = dir.join("speech.wav");
    let raw = dir.join("speech-raw.wav");
    let ok = Command::new("espeak-ng").args(["-v", "en-us", "-s", "150", "-w"]).arg(&raw).arg(SENTENCE).status();
    assert!(ok.is_ok_and(|s| s.success()), "espeak-ng (Debian package espeak-ng) could not speak");
    let ok = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&raw)
        .args(["-af", "apad=pad_dur=1.5", "-ar", "48000", "-ac", "1", "-c:a", "pcm_s16le"])
        .arg(&speech)
        .status();
    assert!(ok.is_ok_and(|s| s.success()), "ffmpeg could not convert the speech");
    let video = dir.join("pattern.y4m");
    let ok = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=25"])
        .args(["-t", "3", "-pix_fmt", "yuv420p"])
        .arg(&video)
        .status();
    assert!(ok.is_ok_and(|s| s.success()), "ffmpeg could not make the test video");
    (speech.display().to_string(), video.display().to_string())
}

/// A meeting that allows recording: its id and the host's token.
async fn create_recordable_meeting(base: &str, host: &str) -> (String, String) {
    create_meeting_with(base, json!({"host_name": host, "recording_enabled": true, "settings": {"title": "recorded"}}))
        .await
}

async fn recording_action(base: &str, meeting: &str, action: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/meetings/{meeting}/recording/{action}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Alice and Bob in a new recordable meeting, decoding each other, and the host's recording started: the
/// meeting id, the host token, both browsers and the recording id.
async fn two_being_recorded(base: &str, driver: &str) -> (String, String, Browser, Browser, String) {
    let (id, host_token) = create_recordable_meeting(base, "Host").await;
    let alice = Browser::launch(driver).await;
    alice.goto(&format!("{base}/m/{id}?name=Alice")).await;
    let bob = Browser::launch(driver).await;
    bob.goto(&format!("{base}/m/{id}?name=Bob")).await;
    wait_decoding(&bob, "Bob", 1, 1).await;
    let (status, started) = recording_action(base, &id, "start", &host_token).await;
    assert_eq!(status, 201, "{started}");
    let recording = started["id"].as_str().unwrap().to_string();
    (id, host_token, alice, bob, recording)
}

/// Polls the recording until `done` holds for it (bounded).
async fn wait_recording(base: &str, id: &str, token: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let r: Value = reqwest::Client::new()
            .get(format!("{base}/recordings/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&r) {
            return r;
        }
        assert!(r["status"] != "failed", "the recording failed: {r}");
        assert!(Instant::now() < deadline, "the recording is not {what} after 180 s: {r}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn download(url: &str, token: &str, to: &Path) -> usize {
    let r = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    let bytes = r.bytes().await.unwrap();
    std::fs::write(to, &bytes).unwrap();
    bytes.len()
}

/// ffprobe's view of a file: codec names by stream type, and the container's duration in seconds.
fn probe(file: &Path) -> (Vec<(String, String)>, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_type,codec_name:format=duration", "-of", "json"])
        .arg(file)
        .output()
        .expect("run ffprobe (Debian package ffmpeg)");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("ffprobe: {out:?}"));
    let streams = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["codec_type"].as_str().unwrap().to_string(), s["codec_name"].as_str().unwrap().to_string()))
        .collect();
    (streams, v["format"]["duration"].as_str().unwrap_or("0").parse().unwrap())
}

/// Words of `text` that carry meaning (the recogniser may miss or add the small ones).
fn content_words(text: &str) -> std::collections::BTreeSet<String> {
    const SMALL: &[&str] = &["a", "an", "the", "is", "are", "this", "we", "of", "to", "and", "it", "in", "on"];
    text.split(|c: char| !c.is_ascii_alphabetic())
        .map(str::to_ascii_lowercase)
        .filter(|w| w.len() > 1 && !SMALL.contains(&w.as_str()))
        .collect()
}

#[test]
fn a_host_records_a_meeting_and_plays_it_back_with_subtitles() {
    in_fresh_netns("a_host_records_a_meeting_and_plays_it_back_with_subtitles", async || {
        let media = tempfile::tempdir().unwrap();
        let (speech, video) = fake_media(media.path());
        // Recordings go to a real S3-compatible server, as multipart uploads.
        let s3 = sluice_testkit::S3Server::start();
        let dir = tempfile::tempdir().unwrap();
        let (_server, base) = start_server_with(
            dir.path(),
            &[
                ("SLUICE_STORAGE__KIND", "s3"),
                ("SLUICE_STORAGE__BUCKET", &s3.bucket),
                ("SLUICE_STORAGE__ENDPOINT", &s3.endpoint),
                ("AWS_ACCESS_KEY_ID", &s3.access_key),
                ("AWS_SECRET_ACCESS_KEY", &s3.secret_key),
            ],
        );
        let (_chromedriver, driver) = start_chromedriver().await;
        let (id, host_token) = create_recordable_meeting(&base, "Alice").await;
        let speaker_args = [
            format!("--use-file-for-fake-audio-capture={speech}"),
            format!("--use-file-for-fake-video-capture={video}"),
        ];
        // Alice is the host: her tab holds the host token, as when she creates the meeting on the landing page.
        let alice = Browser::launch_with(&driver, &speaker_args).await;
        alice.goto(&format!("{base}/")).await;
        alice.eval(&format!("sessionStorage.setItem('sluice.token.{id}', '{host_token}'); return true")).await;
        // Original sound: the speech reaches the recorder without the browser's echo cancelling, noise suppression
        // and gain control, which treat synthetic speech differently from run to run (the transcript varied with
        // them between a full sentence and no word of it).
        alice.goto(&format!("{base}/m/{id}?name=Alice&audio=original")).await;
        // Bob publishes H.264 (recorded into MP4), Alice VP8 (into WebM).
        let bob = Browser::launch(&driver).await;
        bob.goto(&format!("{base}/m/{id}?name=Bob&codec=H264")).await;
        wait_decoding(&alice, "Alice", 1, 1).await;
        wait_decoding(&bob, "Bob", 1, 1).await;
        assert_eq!(inbound_video_codecs(&alice).await, vec!["video/H264".to_string()], "Bob sends H.264");
        let processing = alice
            .eval(
                "const s = window.sluiceApp.client.pc.getSenders().find(s => s.track && s.track.kind === 'audio')\
                 .track.getSettings(); return [s.echoCancellation, s.noiseSuppression, s.autoGainControl];",
            )
            .await;
        assert_eq!(processing, json!([false, false, false]), "?audio=original turns the browser's processing off");

        // The host records from the web client; Bob, not a host, has no Record button.
        wait_true(&alice, "Alice has a Record button", "return !document.getElementById('record').hidden").await;
        assert_eq!(bob.eval("return document.getElementById('record').hidden").await, Value::Bool(true));
        alice.eval("document.getElementById('record').click(); return true").await;
        // Starting asks first; everyone is then told the meeting is recorded.
        wait_true(&alice, "Alice is asked to confirm", "return document.getElementById('confirm').open").await;
        alice.eval("document.getElementById('confirm-ok').click(); return true").await;
        let began = Instant::now();
        // Everyone sees that the meeting is recorded.
        for (b, who) in [(&alice, "Alice"), (&bob, "Bob")] {
            wait_true(
                b,
                &format!("{who} sees the recording badge"),
                "return !document.getElementById('recording-badge').hidden",
            )
            .await;
        }
        wait_true(
            &bob,
            "Bob is told the meeting is recorded",
            "return document.getElementById('notice').textContent.includes('being recorded')",
        )
        .await;
        let list: Value = reqwest::Client::new()
            .get(format!("{base}/meetings/{id}/recordings"))
            .bearer_auth(&host_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
        assert_eq!(list[0]["status"], "recording", "{list}");
        let recording = list[0]["id"].as_str().unwrap().to_string();
        // Chat while recording: the public message is exported beside the recording, the private one is not.
        let alice_id = participant_id(&alice).await;
        bob.eval(&format!(
            "window.sluiceApp.client.sendChat('said while recording');              window.sluiceApp.client.sendChat('not for the record', '{alice_id}'); return true"
        ))
        .await;
        wait_true(
            &alice,
            "Alice gets both messages",
            "return document.querySelectorAll('#chat-messages li.chat-message').length === 2",
        )
        .await;
        tokio::time::sleep(Duration::from_secs(15).saturating_sub(began.elapsed())).await;
        wait_true(
            &alice,
            "the button offers to stop",
            "return document.getElementById('record').getAttribute('aria-pressed') === 'true'",
        )
        .await;
        alice.eval("document.getElementById('record').click(); return true").await;
        let recorded = began.elapsed().as_secs_f64();
        for (b, who) in [(&alice, "Alice"), (&bob, "Bob")] {
            wait_true(
                b,
                &format!("{who}'s badge goes away"),
                "return document.getElementById('recording-badge').hidden",
            )
            .await;
        }

        let ready = wait_recording(&base, &recording, &host_token, "ready", |r| r["status"] == "ready").await;
        println!("recording ready: {ready}");
        let fetch = |url: &str| reqwest::Client::new().get(url).bearer_auth(&host_token).send();
        let chat = fetch(ready["chat_url"].as_str().unwrap()).await.unwrap().text().await.unwrap();
        println!("chat.txt:\n{chat}");
        assert!(chat.contains("] Bob: said while recording"), "{chat}");
        assert!(!chat.contains("not for the record"), "private messages are not exported: {chat}");
        let lines: Value = fetch(ready["chat_json_url"].as_str().unwrap()).await.unwrap().json().await.unwrap();
        assert_eq!(lines.as_array().map(Vec::len), Some(1), "{lines}");
        assert!(lines[0]["offset_ms"].as_i64().unwrap() > 0, "{lines}");
        let mp4 = media.path().join("composed.mp4");
        download(ready["file_url"].as_str().unwrap(), &host_token, &mp4).await;
        let (streams, duration) = probe(&mp4);
        assert!(streams.contains(&("video".into(), "h264".into())), "{streams:?}");
        assert!(streams.contains(&("audio".into(), "aac".into())), "{streams:?}");
        assert!((duration - recorded).abs() <= 1.0, "the MP4 lasts {duration} s; the recording ran {recorded:.1} s");
        assert!((ready["duration_ms"].as_f64().unwrap() / 1000.0 - recorded).abs() <= 1.0, "{ready}");

        // Per-track files: both voices and both cameras, in the bucket.
        let stored = s3.root.path().join(&s3.bucket).join(format!("recordings/{id}/{recording}"));
        let tracks: Vec<String> = std::fs::read_dir(stored.join("tracks"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
            .unwrap_or_default();
        for (name, source) in [("Alice", "microphone"), ("Alice", "camera"), ("Bob", "microphone"), ("Bob", "camera")] {
            assert!(
                tracks.iter().any(|t| t.contains(name) && t.contains(source)),
                "no {name} {source} file in {tracks:?}"
            );
        }
        let camera =
            stored.join("tracks").join(tracks.iter().find(|t| t.contains("Alice") && t.contains("camera")).unwrap());
        let (streams, track_duration) = probe(&camera);
        assert_eq!(streams, vec![("video".to_string(), "vp8".to_string())]);
        assert!(track_duration > recorded - 4.0, "Alice's camera file lasts {track_duration} s");
        assert!(stored.join("composed.mp4").is_file(), "the MP4 is in the bucket");
        let listed = ready["track_urls"].as_array().map_or(0, Vec::len);
        assert_eq!(listed, tracks.len(), "the API lists every track file: {ready}");
        let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
        let multipart = metrics
            .lines()
            .find_map(|l| l.strip_prefix("sluice_storage_multipart_uploads_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(multipart >= 5.0, "the MP4 and four track files went up as multipart uploads: {multipart}");

        // The transcript: cues for Alice that share words with what she said.
        let done = wait_recording(&base, &recording, &host_token, "transcribed", |r| r["vtt_url"].is_string()).await;
        let vtt = reqwest::Client::new()
            .get(done["vtt_url"].as_str().unwrap())
            .bearer_auth(&host_token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        println!("transcript:\n{vtt}");
        assert!(vtt.starts_with("WEBVTT"), "{vtt}");
        let alice_said: String = vtt.lines().filter_map(|l| l.strip_prefix("<v Alice>")).collect::<Vec<_>>().join(" ");
        let shared: Vec<String> = content_words(&alice_said).intersection(&content_words(SENTENCE)).cloned().collect();
        assert!(shared.len() >= 2, "Alice's cues ({alice_said:?}) share too few words with the sentence: {shared:?}");

        // The meeting's Recordings page lists it; its link is the share link, and the player plays the MP4 with
        // its subtitles.
        alice.goto(&format!("{base}/m/{id}/recordings")).await;
        wait_true(&alice, "the Recordings page lists the recording", "return !!document.querySelector('#list a')")
            .await;
        let share = alice.eval("return document.querySelector('#list a').href").await.as_str().unwrap().to_string();
        assert!(share.contains(&format!("/recordings/{recording}/play?share=")), "{share}");
        // The share link works with no account, in a browser that never joined.
        bob.goto(&share).await;
        wait_true(&bob, "the player shows", "return !document.getElementById('player').hidden").await;
        let played = bob
            .eval(
                "const v = document.getElementById('video'); v.muted = true;
                 return v.play().then(() => new Promise((ok) => setTimeout(() => ok({
                   t: v.currentTime, errors: window.sluicePlayer.errors,
                   track: v.textTracks.length > 0 ? v.textTracks[0].mode : null,
                   cues: v.textTracks.length > 0 && v.textTracks[0].cues ? v.textTracks[0].cues.length : 0,
                 }), 2500)), (e) => ({error: String(e), errors: window.sluicePlayer.errors}));",
            )
            .await;
        println!("playback: {played}");
        assert!(played["t"].as_f64().unwrap_or(0.0) > 1.0, "currentTime did not advance: {played}");
        assert!(played["cues"].as_u64().unwrap_or(0) > 0, "the subtitle track did not load: {played}");
        alice.close().await;
        bob.close().await;
    });
}

#[test]
fn a_recording_interrupted_by_a_crash_completes_after_restart() {
    in_fresh_netns("a_recording_interrupted_by_a_crash_completes_after_restart", async || {
        let dir = tempfile::tempdir().unwrap();
        let (server, base) = start_server_with(dir.path(), &[("SLUICE_RECORDER__TRANSCRIPTION__BACKEND", "none")]);
        let (_chromedriver, driver) = start_chromedriver().await;
        let (_id, host_token, alice, bob, recording) = two_being_recorded(&base, &driver).await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        // The recorder dies with the server, mid-recording, without any chance to tidy up.
        drop(server);
        alice.close().await;
        bob.close().await;
        let (_server, base) = start_server_with(dir.path(), &[("SLUICE_RECORDER__TRANSCRIPTION__BACKEND", "none")]);
        let ready = wait_recording(&base, &recording, &host_token, "ready", |r| r["status"] == "ready").await;
        let seconds = ready["duration_ms"].as_f64().unwrap() / 1000.0;
        assert!(seconds > 5.0 && seconds < 10.0, "the recording kept what was received before the crash: {ready}");
        let mp4 = dir.path().join("after-crash.mp4");
        download(ready["file_url"].as_str().unwrap(), &host_token, &mp4).await;
        let (streams, duration) = probe(&mp4);
        assert!(
            streams.contains(&("video".into(), "h264".into())) && (duration - seconds).abs() <= 1.0,
            "{streams:?} {duration}"
        );
    });
}

/// `sluice recorder` alone with `env`; returns it and its job API's base URL.
fn start_recorder(data_dir: &Path, env: &[(&str, &str)]) -> (Process, String) {
    let mut env = env.to_vec();
    env.insert(0, ("SLUICE_RECORDER__LISTEN", "127.0.0.1:0"));
    let (process, line) = spawn_sluice(None, data_dir, &["recorder"], &env);
    assert!(line.starts_with("Sluice recorder is ready: jobs on "), "{line}");
    (process, line.rsplit(' ').next().unwrap().to_string())
}

#[test]
fn a_separate_recorder_process_records_a_meeting() {
    in_fresh_netns("a_separate_recorder_process_records_a_meeting", async || {
        // One deployment: the same database, object storage and token secret; the recorder in its own process
        // with its own spool.
        let shared = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", shared.path().join("sluice.db").display());
        let objects = shared.path().join("objects").display().to_string();
        let common = [
            ("SLUICE_DATABASE__URL", db.as_str()),
            ("SLUICE_STORAGE__PATH", objects.as_str()),
            ("SLUICE_AUTH__TOKEN_SECRET", "a-shared-secret-of-at-least-32-bytes-0123456789"),
            ("SLUICE_RECORDER__TRANSCRIPTION__BACKEND", "none"),
        ];
        let recorder_dir = tempfile::tempdir().unwrap();
        let (_recorder, jobs) = start_recorder(recorder_dir.path(), &common);
        let server_dir = tempfile::tempdir().unwrap();
        let mut env = common.to_vec();
        env.push(("SLUICE_RECORDER__REMOTE_URL", &jobs));
        let (_server, base) = start_server_with(server_dir.path(), &env);

        // The recorder takes jobs only with a recorder token the deployment minted.
        let forged =
            json!({"recording_id": "r_x", "meeting_id": "abc-defg-hij", "token": "forged", "signaling_url": "ws://x"});
        let r = reqwest::Client::new().post(format!("{jobs}/jobs")).json(&forged).send().await.unwrap();
        assert_eq!(r.status(), 401, "a job with a forged token");

        let (_chromedriver, driver) = start_chromedriver().await;
        let (id, host_token, alice, bob, recording) = two_being_recorded(&base, &driver).await;
        let began = Instant::now();
        wait_true(
            &alice,
            "Alice sees the recording badge",
            "return !document.getElementById('recording-badge').hidden",
        )
        .await;
        assert!(recorder_dir.path().join("spool").join(&recording).is_dir(), "the recorder process spools it");
        assert!(!server_dir.path().join("spool").join(&recording).exists(), "the server does not");
        tokio::time::sleep(Duration::from_secs(6)).await;
        let (status, stopped) = recording_action(&base, &id, "stop", &host_token).await;
        let recorded = began.elapsed().as_secs_f64();
        assert_eq!(status, 200, "{stopped}");
        let ready = wait_recording(&base, &recording, &host_token, "ready", |r| r["status"] == "ready").await;
        let mp4 = shared.path().join("out.mp4");
        download(ready["file_url"].as_str().unwrap(), &host_token, &mp4).await;
        let (streams, duration) = probe(&mp4);
        assert!(streams.contains(&("video".into(), "h264".into())), "{streams:?}");
        assert!((duration - recorded).abs() <= 1.0, "the MP4 lasts {duration} s; the recording ran {recorded:.1} s");
        alice.close().await;
        bob.close().await;
    });
}
