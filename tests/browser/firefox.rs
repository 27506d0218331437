//! Firefox in meetings, from the same page Chromium uses: Debian's `firefox-esr` driven by `geckodriver`. Firefox
//! runs its own ICE (nICEr), DTLS (NSS) and simulcast (it answers the offer's `a=simulcast:recv` with its own
//! RIDs), so these tests cover code paths Chromium does not.
//!
//! Firefox gathers no candidates on loopback (whatever `media.peerconnection.ice.loopback` says) and none at
//! all without a default route, so these namespaces also hold an interface with a private address and a default
//! route through it (`in_fresh_netns_with`): one end of a veth pair whose other end is in the namespace too, so
//! nothing leaves it. (In a namespace with only loopback, Firefox's peer connection fails at once, the page
//! gives up with 4008 "no network path": what the interop issue saw as "Firefox cannot join".)

use super::*;

/// The private address Firefox and the server meet on, inside the test's namespace only.
const LAN: &str = "10.99.0.1/24";

fn in_netns_with_lan(test: &str, body: impl AsyncFnOnce()) {
    let _turn = one_at_a_time();
    sluice_testkit::in_fresh_netns_with(test, Some(LAN), body)
}

/// `geckodriver` from `PATH` or Cargo's bin directory (`cargo install geckodriver`, as `tests/run.sh` does).
fn geckodriver_binary() -> std::path::PathBuf {
    let on_path = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("geckodriver")).find(|p| p.is_file()));
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin/geckodriver"))
        .filter(|p| p.is_file());
    on_path.or(cargo_bin).expect("geckodriver is not installed: run `cargo install geckodriver` (tests/run.sh does)")
}

impl Browser {
    /// One headless Firefox with a fresh profile and a geckodriver of its own: fake camera and microphone with
    /// no prompt, host candidates by address (no mDNS names), autoplay allowed.
    async fn launch_firefox() -> Browser {
        let port = free_tcp_port();
        let child = Command::new(geckodriver_binary())
            .process_group(0)
            .args(["--port", &port.to_string(), "--log", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run geckodriver");
        let driver = Process(child, true);
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "geckodriver did not answer within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "firefox",
            "moz:firefoxOptions": {
                "binary": "/usr/bin/firefox-esr",
                "args": ["-headless", "-profile", profile.path()],
                "prefs": {
                    "media.navigator.streams.fake": true,
                    "media.navigator.permission.disabled": true,
                    "media.peerconnection.ice.obfuscate_host_addresses": false,
                    "media.peerconnection.ice.loopback": true,
                    "media.autoplay.default": 0,
                    "browser.shell.checkDefaultBrowser": false,
                    "datareporting.policy.dataSubmissionEnabled": false,
                    "app.update.disabledForTesting": true,
                },
            },
        }}});
        let http = reqwest::Client::new();
        let reply: Value = http.post(format!("{url}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = reply["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no Firefox session: {reply}"));
        Browser { http, session: format!("{url}/session/{id}"), _driver: Some(driver), _profile: profile }
    }
}

impl Stage {
    /// A new Firefox that opens the meeting's deep link under `name`.
    async fn join_firefox(&self, name: &str) -> Browser {
        let browser = Browser::launch_firefox().await;
        browser.goto(&format!("{}/m/{}?name={name}", self.base, self.id)).await;
        browser
    }
}

/// The track id of the one camera tile a page shows.
async fn camera_track(browser: &Browser, who: &str) -> String {
    let track = browser
        .eval("return [...document.querySelectorAll('.tile.camera')].map((t) => t.dataset.trackId).find((t) => t)")
        .await;
    track.as_str().unwrap_or_else(|| panic!("{who} shows no remote camera tile")).to_string()
}

/// Waits until `browser` encodes at least two simulcast layers of its camera, each with a RID; returns the
/// tallest layer's height.
async fn wait_simulcast(browser: &Browser, who: &str) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let layers = browser.eval(OUTBOUND_LAYERS_SCRIPT).await;
        let sending = layers.as_object().map_or(0, |o| o.values().filter(|v| v[0].as_u64() > Some(0)).count());
        if sending >= 2 {
            println!("{who}'s camera layers (frames encoded, height): {layers}");
            assert!(layers.get("-").is_none(), "every encoding of {who}'s camera has a RID: {layers}");
            return layers.as_object().unwrap().values().filter_map(|v| v[1].as_u64()).max().unwrap();
        }
        assert!(Instant::now() < deadline, "{who} sends {layers}, wanted at least two simulcast layers");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `viewer` asks for the lowest layer of the camera it receives, then the top one: what it decodes follows.
async fn switch_layers(viewer: &Browser, who: &str, top: u64) {
    let track = camera_track(viewer, who).await;
    viewer.eval(&format!("window.sluiceApp.client.setLayer('{track}', 0); return true")).await;
    let low = wait_height(viewer, who, |h| h > 0 && h < top, "a lower layer").await;
    let before = frames(&viewer.inbound().await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if frames(&viewer.inbound().await) <= before {
        let v = viewer.eval("return window.sluiceApp.client.pc.getStats().then((r) => { const o = []; r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') o.push(s); }); return JSON.stringify(o); })").await;
        panic!("{who} stalled after the switch: {v}");
    }
    viewer.eval(&format!("window.sluiceApp.client.setLayer('{track}', 2); return true")).await;
    wait_height(viewer, who, |h| h == top, "the top layer").await;
    println!("{who} decoded {low} pixels on layer 0 and {top} on layer 2");
}

async fn no_page_errors(browser: &Browser, who: &str) {
    let errors = browser.eval("return window.sluiceApp.errors").await;
    assert!(errors.as_array().is_none_or(Vec::is_empty), "{who}'s page reported errors: {errors}");
}

#[test]
fn firefox_and_chromium_meet_with_simulcast_both_ways_and_a_screen_share() {
    in_netns_with_lan("firefox::firefox_and_chromium_meet_with_simulcast_both_ways_and_a_screen_share", async || {
        let stage = Stage::start(&[]).await;
        let fox = stage.join_firefox("Fox").await;
        let cleo = stage.join("Cleo").await;
        wait_decoding(&fox, "Fox (Firefox)", 1, 1).await;
        wait_decoding(&cleo, "Cleo (Chromium)", 1, 1).await;
        assert_growing(&fox, "Fox (Firefox)").await;
        assert_growing(&cleo, "Cleo (Chromium)").await;
        print_first_frames(&fox, "Fox (Firefox)").await;

        // Simulcast from Firefox (its RIDs, answered to the offer's simulcast) and to Firefox (Chromium's): each
        // side picks the other's layer and decodes what it picked.
        let fox_top = wait_simulcast(&fox, "Fox (Firefox)").await;
        let cleo_top = wait_simulcast(&cleo, "Cleo (Chromium)").await;
        switch_layers(&cleo, "Cleo viewing Fox", fox_top).await;
        switch_layers(&fox, "Fox viewing Cleo", cleo_top).await;

        // A screen shared from Chromium reaches Firefox as a second video, in the spotlight.
        cleo.eval("document.getElementById('share').click(); return true").await;
        wait_decoding(&fox, "Fox with Cleo's screen", 2, 1).await;
        wait_true(
            &fox,
            "Fox spotlights the screen",
            "return document.querySelectorAll('#spotlight .tile.screen').length === 1",
        )
        .await;
        assert_growing(&fox, "Fox with Cleo's screen").await;
        no_page_errors(&fox, "Fox").await;
        no_page_errors(&cleo, "Cleo").await;
        let meeting = stage.meeting().await;
        assert_eq!(meeting["active_participants"], 2, "{meeting}");
        fox.close().await;
        cleo.close().await;
    });
}

#[test]
fn three_firefox_participants_meet_and_reconnect_after_a_blip() {
    in_netns_with_lan("firefox::three_firefox_participants_meet_and_reconnect_after_a_blip", async || {
        let stage = Stage::start(&[]).await;
        let names = ["Fay", "Finn", "Flo"];
        let mut browsers = Vec::new();
        for name in names {
            browsers.push(stage.join_firefox(name).await);
        }
        for (b, name) in browsers.iter().zip(names) {
            wait_decoding(b, name, 2, 2).await;
        }
        for (b, name) in browsers.iter().zip(names) {
            assert_growing(b, name).await;
            b.eval("window.notReloaded = true; window.sluiceApp.reconnected = 0; window.sluiceApp.client.addEventListener('reconnected', () => window.sluiceApp.reconnected++); return true").await;
        }

        // Every signaling connection is cut (the kernel aborts the browsers' TCP sockets to the server): each page
        // reconnects on a new socket and peer connection, without reloading, and media flows again.
        let port = stage.base.rsplit(':').next().unwrap();
        let status =
            Command::new("ss").args(["-K", "dst", "127.0.0.1", "dport", "=", &format!(":{port}")]).output().unwrap();
        assert!(status.status.success(), "ss -K: {}", String::from_utf8_lossy(&status.stderr));
        for (b, name) in browsers.iter().zip(names) {
            wait_true(b, &format!("{name} reconnected"), "return window.sluiceApp.reconnected >= 1").await;
            assert_eq!(b.eval("return window.notReloaded === true").await, Value::Bool(true), "{name} reloaded");
        }
        for (b, name) in browsers.iter().zip(names) {
            wait_decoding(b, &format!("{name} after the blip"), 2, 2).await;
            assert_growing(b, &format!("{name} after the blip")).await;
            no_page_errors(b, name).await;
        }
        let meeting = stage.meeting().await;
        assert_eq!(meeting["active_participants"], 3, "the old connections left, the new ones are in: {meeting}");
        for b in browsers {
            b.close().await;
        }
    });
}
