//! Congestion control with real browsers (issue 24, the shortened harness CI runs): Pia, Quinn and Rosa meet,
//! each with a simulcast camera. Rosa's downlink is then capped between what both cameras' lowest layers need
//! and what both top layers need (measured from Pia's encodings), with an htb class on this test's own loopback
//! matched on her browser's port (a 150 ms byte queue behind it): the server lowers the layer of at least one
//! camera she receives and tells her why (`layer_changed`, bandwidth), pauses nothing, her video keeps decoding,
//! and Quinn's view of Pia does not change. With the cap lifted, Rosa gets the top layers back
//! (probes find the room). The padding of those probes reaches Chromium and does it no harm. Capped below any
//! video, her videos are paused and her tiles say so; lifted, they come back.

use super::*;

/// Per received video: its MID, frame height and frames decoded.
const INBOUND_VIDEOS_SCRIPT: &str = r#"
    const pc = window.sluiceApp.client.pc;
    return pc.getStats().then((report) => {
        const out = [];
        report.forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'video') out.push([s.mid, s.frameHeight || 0, s.framesDecoded || 0]);
        });
        return out;
    });
"#;

/// Bytes sent of each simulcast encoding, lowest first (by frame height).
const LAYER_BYTES_SCRIPT: &str = r#"
    return window.sluiceApp.client.pc.getStats().then((report) => {
        const out = [];
        report.forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'video') out.push([s.frameHeight || 0, s.bytesSent || 0]); });
        return out.sort((a, b) => a[0] - b[0]).map((l) => l[1]);
    });
"#;

/// Bytes of audio received in all.
const AUDIO_BYTES_SCRIPT: &str = r#"
    return window.sluiceApp.client.pc.getStats().then((report) => {
        let bytes = 0;
        report.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') bytes += s.bytesReceived || 0; });
        return bytes;
    });
"#;

#[derive(Debug, Clone)]
struct Video {
    mid: String,
    height: u64,
    frames: u64,
}

async fn videos(browser: &Browser) -> Vec<Video> {
    let v = browser.eval(INBOUND_VIDEOS_SCRIPT).await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| Video {
            mid: v[0].as_str().unwrap_or("").to_string(),
            height: v[1].as_u64().unwrap_or(0),
            frames: v[2].as_u64().unwrap_or(0),
        })
        .collect()
}

/// The local UDP port of a browser's selected ICE pair.
async fn media_port(browser: &Browser) -> u16 {
    let port = browser
        .eval("return window.sluiceApp.client.pc.getStats().then((r) => { let port = null; r.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') port = r.get(s.localCandidateId)?.port; }); return port; })")
        .await;
    port.as_u64().expect("a selected candidate pair") as u16
}

/// Caps what reaches `port` on this namespace's loopback at `bps`, behind a 150 ms byte queue.
fn cap_port(port: u16, bps: u64) {
    let (port, rate, queue) = (port.to_string(), format!("{bps}bit"), format!("{}", (bps / 8 * 15 / 100).max(6_000)));
    tc(&["qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10"]);
    tc(&[
        "class", "add", "dev", "lo", "parent", "1:", "classid", "1:20", "htb", "rate", &rate, "ceil", &rate, "quantum",
        "1514",
    ]);
    tc(&["qdisc", "add", "dev", "lo", "parent", "1:20", "handle", "20:", "bfifo", "limit", &queue]);
    let filter = ["filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "u32", "match", "ip", "dport"];
    tc(&[&filter[..], &[&port, "0xffff", "flowid", "1:20"]].concat());
}

fn uncap() {
    tc(&["qdisc", "del", "dev", "lo", "root"]);
}

fn tc(args: &[&str]) {
    let status = std::process::Command::new("tc").args(args).status().expect("tc runs");
    assert!(status.success(), "tc {args:?}");
}

/// Waits until every video `browser` receives is decoded `top` pixels tall, with at least ten new frames each
/// (a paused video keeps its last height); returns how long it took.
async fn wait_all_top(browser: &Browser, top: u64, within: Duration) -> Duration {
    let start = Instant::now();
    let first = videos(browser).await;
    loop {
        let v = videos(browser).await;
        let fresh = |now: &Video| first.iter().find(|f| f.mid == now.mid).is_none_or(|f| now.frames >= f.frames + 10);
        if v.len() >= 2 && v.iter().all(|v| v.height == top && fresh(v)) {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not all at {top} pixels within {within:?}: {v:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[test]
fn a_subscriber_on_a_slow_link_gets_lower_layers_and_the_others_do_not_notice() {
    in_fresh_netns(
        "congestion::a_subscriber_on_a_slow_link_gets_lower_layers_and_the_others_do_not_notice",
        async || {
            let stage = Stage::start(&[]).await;
            let pia = stage.join("Pia").await;
            let quinn = stage.join("Quinn").await;
            let rosa = stage.join("Rosa").await;
            for (b, name) in [(&pia, "Pia"), (&quinn, "Quinn"), (&rosa, "Rosa")] {
                wait_decoding(b, name, 2, 2).await;
            }
            // Everyone on the top layers first (the fake camera's full height).
            let top = {
                let deadline = Instant::now() + WAIT;
                loop {
                    let heights: Vec<u64> = videos(&rosa).await.iter().map(|v| v.height).collect();
                    let max = heights.iter().copied().max().unwrap_or(0);
                    if heights.len() == 2 && max > 0 && heights.iter().all(|h| *h == max) && max >= 240 {
                        break max;
                    }
                    assert!(Instant::now() < deadline, "Rosa's videos at {heights:?}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            };
            wait_all_top(&quinn, top, WAIT).await;
            // What each of Pia's layers costs, and what Rosa's audio does, over two seconds.
            let rates_before = (pia.eval(LAYER_BYTES_SCRIPT).await, rosa.eval(AUDIO_BYTES_SCRIPT).await);
            tokio::time::sleep(Duration::from_secs(2)).await;
            let rates_after = (pia.eval(LAYER_BYTES_SCRIPT).await, rosa.eval(AUDIO_BYTES_SCRIPT).await);
            let bps = |a: &Value, b: &Value| (a.as_u64().unwrap_or(0).saturating_sub(b.as_u64().unwrap_or(0))) * 8 / 2;
            let layers: Vec<u64> = rates_after
                .0
                .as_array()
                .unwrap()
                .iter()
                .zip(rates_before.0.as_array().unwrap())
                .map(|(a, b)| bps(a, b))
                .collect();
            let audio = bps(&rates_after.1, &rates_before.1);
            // Chrome sends fewer layers than it negotiated at small capture sizes: the lowest one sent.
            let low = layers.iter().copied().find(|b| *b > 0).unwrap();
            let high = *layers.last().unwrap();
            // Both cameras' lowest layers must fit what the estimate settles at (about 0.85 of the cap, less the
            // audio, with 10% to spare), and both top layers must not.
            let (fits_low, fits_top) = ((2 * low + audio) * 100 / 75, 2 * high + audio);
            assert!(fits_low < fits_top, "Pia's layers {layers:?} bit/s are too alike to tell a cap apart");
            let cap = (fits_low + fits_top) / 2;
            println!(
                "Pia's layers cost {layers:?} bit/s, Rosa's audio {audio} bit/s; capping her downlink at {cap} bit/s"
            );
            let port = media_port(&rosa).await;
            cap_port(port, cap);
            let capped_at = Instant::now();

            // A lower layer for at least one camera, announced with its reason.
            let lowered = {
                let deadline = Instant::now() + WAIT;
                loop {
                    let v = videos(&rosa).await;
                    if v.iter().any(|v| v.height > 0 && v.height < top) {
                        break capped_at.elapsed();
                    }
                    assert!(Instant::now() < deadline, "Rosa still gets {v:?} under a {cap} bit/s cap");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            };
            wait_true(
                &rosa,
                "Rosa is told her layer changed for bandwidth",
                "return [...window.sluiceApp.client.receivedLayers.values()].some((l) => l.reason === 'bandwidth')",
            )
            .await;
            assert_growing(&rosa, "Rosa").await;
            // The server's view of her downlink (`get_transport`), as her connection details show it.
            let transport = rosa.eval("return window.sluiceApp.client.transport()").await;
            let estimate = transport["estimate_bps"].as_u64().unwrap_or(0);
            assert!(
                transport["limited"] == true && estimate > 0 && estimate < cap * 12 / 10,
                "{transport} under {cap}"
            );
            rosa.click_css("#connection-toggle").await;
            wait_true(
                &rosa,
                "her connection details show the server's receive estimate, limited",
                "return /receive estimate [0-9.]+ (kbit|Mbit)\\/s \\(limited\\)/.test(document.querySelector('#connection-details .connection-path')?.textContent || '')",
            )
            .await;
            rosa.click_css("#connection-close").await;
            let during = videos(&rosa).await;
            println!("capped: a lower layer {:.1} s after the cap; Rosa decodes {during:?}", lowered.as_secs_f64());
            // Quinn never noticed: top layers, nothing announced for bandwidth.
            wait_all_top(&quinn, top, Duration::from_secs(1)).await;
            assert_eq!(
            quinn.eval("return [...window.sluiceApp.client.receivedLayers.values()].filter((l) => l.reason === 'bandwidth').length").await,
            0
        );
            // Five seconds under the cap, one line a second: what she decodes and what the server said.
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let layers =
                    rosa.eval("return JSON.stringify([...window.sluiceApp.client.receivedLayers.values()])").await;
                println!("capped: {:?} {}", videos(&rosa).await, layers.as_str().unwrap_or(""));
            }
            assert_eq!(
                rosa.eval(
                    "return [...window.sluiceApp.client.receivedLayers.values()].filter((l) => l.layer === null).length"
                )
                .await,
                0,
                "both lowest layers fit the cap: nothing is paused"
            );
            let steady = videos(&rosa).await;
            assert!(steady.iter().all(|v| v.frames > 0), "{steady:?}");
            assert_growing(&rosa, "Rosa").await;

            // Cap lifted: the top layers come back.
            uncap();
            let back = wait_all_top(&rosa, top, Duration::from_secs(45)).await;
            println!("cap lifted: both cameras at {top} pixels again after {:.1} s", back.as_secs_f64());
            assert_growing(&rosa, "Rosa").await;

            // Too slow for any video: paused, and her tiles say so; then back.
            cap_port(port, 60_000);
            wait_true(
            &rosa,
            "Rosa's tiles say the video is paused for her slow connection",
            "return [...window.sluiceApp.client.receivedLayers.values()].some((l) => l.layer === null && l.reason === 'bandwidth') && [...document.querySelectorAll('.tile .paused-badge')].some((b) => b.textContent === 'video paused: slow connection' && b.getBoundingClientRect().width > 0)",
        )
        .await;
            wait_true(
                &rosa,
                "Rosa's connection indicator says poor while a video is paused for her bandwidth",
                "return document.getElementById('quality').classList.contains('poor')",
            )
            .await;
            super::analytics::save_screenshot(&rosa, "congestion-paused").await;
            uncap();
            let resumed = wait_all_top(&rosa, top, Duration::from_secs(45)).await;
            println!(
                "60 kbit/s: paused; lifted: both cameras at {top} pixels again after {:.1} s",
                resumed.as_secs_f64()
            );
            wait_true(
                &rosa,
                "the paused marks go",
                "return document.querySelectorAll('.tile .paused-badge').length === 0",
            )
            .await;
            assert_growing(&rosa, "Rosa").await;
            let metrics = reqwest::get(format!("{}/metrics", stage.base)).await.unwrap().text().await.unwrap();
            let total = |name: &str| -> u64 {
                metrics
                    .lines()
                    .filter(|l| l.starts_with(name))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum()
            };
            let (down, up, probes, padding) = (
                total("sluice_dataplane_bandwidth_downgrades_total"),
                total("sluice_dataplane_bandwidth_upgrades_total"),
                total("sluice_dataplane_probes_total"),
                total("sluice_dataplane_padding_sent_total"),
            );
            println!("downgrades {down}, upgrades {up}, probes {probes}, padding packets {padding}");
            assert!(down >= 1 && up >= 1 && probes >= 1 && padding > 0, "{down} {up} {probes} {padding}");
            for (b, name) in [(&pia, "Pia"), (&quinn, "Quinn"), (&rosa, "Rosa")] {
                assert!(b.eval("return window.sluiceApp.errors").await.as_array().is_none_or(Vec::is_empty), "{name}");
            }
            pia.close().await;
            quinn.close().await;
            rosa.close().await;
        },
    );
}
