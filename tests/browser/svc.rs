//! VP9 SVC with real browsers (issue 24): in a meeting with `video_svc`, Ria's Chromium sends her camera as one
//! VP9 stream with spatial layers (L3T3_KEY asked; Chromium runs L2T3_KEY at this test's 640x360), not simulcast
//! encodings, and Sam, who receives it, decodes the
//! spatial layer he asks for: a smaller picture on layer 0, the full one on the top layer, frames decoding
//! throughout. That needs the server to drop the layers above his, close each of his pictures with the marker
//! bit on his top layer, and move him at the right pictures.

use super::*;

/// What a browser sends of its camera: per outbound video stream, its RID, scalability mode, frames encoded and
/// frame height, and the codec.
const OUTBOUND_SCRIPT: &str = r#"
    const pc = window.sluiceApp.client.pc;
    return pc.getStats().then((report) => {
        const out = [];
        report.forEach((s) => {
            if (s.type !== 'outbound-rtp' || s.kind !== 'video') return;
            const codec = report.get(s.codecId);
            out.push({ rid: s.rid || null, mode: s.scalabilityMode || null, frames: s.framesEncoded || 0,
                       height: s.frameHeight || 0, codec: codec ? codec.mimeType : null });
        });
        return out;
    });
"#;

/// Waits until `browser` sends its camera as one VP9 stream with spatial layers; returns what getStats says of it.
async fn wait_svc_sent(browser: &Browser, who: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let sent = browser.eval(OUTBOUND_SCRIPT).await;
        let streams = sent.as_array().cloned().unwrap_or_default();
        // Chromium reports the mode it runs: L3T3_KEY, or L2T3_KEY where the lowest of three spatial layers would
        // be too small (this test's 640x360 camera).
        let mode = streams.first().and_then(|s| s["mode"].as_str()).unwrap_or("");
        let spatial = matches!(mode, "L3T3_KEY" | "L2T3_KEY");
        if streams.len() == 1 && spatial && streams[0]["frames"].as_u64() > Some(0) {
            return streams[0].clone();
        }
        assert!(Instant::now() < deadline, "{who} sends {sent}, wanted one VP9 stream with spatial layers");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The width and height of every frame libvpx decodes from `file` (as a browser decodes VP9), and the errors it
/// reported.
fn decoded_sizes(file: &Path) -> (Vec<(u64, u64)>, String) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "info", "-c:v", "libvpx-vp9", "-i"])
        .arg(file)
        .args(["-vf", "showinfo", "-f", "null", "-"])
        .output()
        .expect("run ffmpeg (Debian package ffmpeg)");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ffmpeg: {log}");
    // showinfo: one line per frame with " s:WxH ".
    let sizes = log
        .lines()
        .filter(|l| l.contains("Parsed_showinfo") && l.contains(" n:"))
        .filter_map(|l| {
            let (w, h) = l.split(" s:").nth(1)?.split_whitespace().next()?.split_once('x')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .collect();
    let errors =
        log.lines().filter(|l| l.to_lowercase().contains("error") || l.contains("corrupt")).collect::<Vec<_>>();
    (sizes, errors.join("\n"))
}

#[test]
fn an_svc_camera_is_recorded_whole_at_its_top_spatial_layer() {
    in_fresh_netns("svc::an_svc_camera_is_recorded_whole_at_its_top_spatial_layer", async || {
        let stage = Stage::start(&[]).await;
        let body = json!({"host_name": "Host", "recording_enabled": true, "settings": {"video_svc": true}});
        let (meeting, host_token) = create_meeting_with(&stage.base, body).await;
        let ria = Browser::launch(&stage.driver).await;
        ria.goto(&format!("{}/m/{meeting}?name=Ria", stage.base)).await;
        let sam = Browser::launch(&stage.driver).await;
        sam.goto(&format!("{}/m/{meeting}?name=Sam", stage.base)).await;
        wait_decoding(&sam, "Sam", 1, 1).await;
        let top = wait_svc_sent(&ria, "Ria").await["height"].as_u64().unwrap();
        let (status, started) = recording_action(&stage.base, &meeting, "start", &host_token).await;
        assert_eq!(status, 201, "{started}");
        let recording = started["id"].as_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let (status, stopped) = recording_action(&stage.base, &meeting, "stop", &host_token).await;
        assert_eq!(status, 200, "{stopped}");
        let ready = wait_recording(&stage.base, &recording, &host_token, "ready", |r| r["status"] == "ready").await;
        let files = tempfile::tempdir().unwrap();
        let cameras: Vec<String> = ready["track_urls"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|u| u.as_str().filter(|u| u.contains("camera")).map(String::from))
            .collect();
        assert_eq!(cameras.len(), 2, "both cameras recorded: {ready}");
        for (i, url) in cameras.iter().enumerate() {
            let file = files.path().join(format!("camera{i}.webm"));
            download(url, &host_token, &file).await;
            // Every picture decodes, at the size of its top spatial layer: the recorder kept each picture's
            // layers together (the top one alone does not decode).
            let (sizes, errors) = decoded_sizes(&file);
            println!(
                "{url}: {} frames decoded, sizes {:?}",
                sizes.len(),
                sizes.iter().collect::<std::collections::BTreeSet<_>>()
            );
            assert!(errors.trim().is_empty(), "libvpx: {errors}");
            assert!(sizes.len() >= 60, "{} frames in 6 s", sizes.len());
            assert!(sizes.iter().all(|(_, h)| *h == top), "frames not all {top} tall: {sizes:?}");
        }
        // And the composed recording has its video.
        let mp4 = files.path().join("composed.mp4");
        download(ready["file_url"].as_str().unwrap(), &host_token, &mp4).await;
        let (streams, duration) = probe(&mp4);
        assert!(
            streams.contains(&("video".to_string(), "h264".to_string())) && duration > 4.0,
            "{streams:?} {duration}"
        );
        ria.close().await;
        sam.close().await;
    });
}

#[test]
fn an_svc_camera_reaches_each_subscriber_in_the_spatial_layers_it_asks_for() {
    in_fresh_netns("svc::an_svc_camera_reaches_each_subscriber_in_the_spatial_layers_it_asks_for", async || {
        let stage = Stage::start(&[]).await;
        let body = json!({"host_name": "Host", "settings": {"title": "svc", "video_svc": true}});
        let (meeting, _) = create_meeting_with(&stage.base, body).await;
        let join = async |name: &str| {
            let browser = Browser::launch(&stage.driver).await;
            browser.goto(&format!("{}/m/{meeting}?name={name}", stage.base)).await;
            browser
        };
        let ria = join("Ria").await;
        let sam = join("Sam").await;
        wait_decoding(&sam, "Sam", 1, 1).await;

        // Ria's browser sends one VP9 stream with spatial layers, as the server asked.
        let sent = wait_svc_sent(&ria, "Ria").await;
        println!("Ria's camera: {sent}");
        let asked = ria
            .eval("const t = window.sluiceApp.client.pc.getTransceivers().find((t) => t.sender.track && t.sender.track.kind === 'video'); return t.sender.getParameters().encodings.map((e) => e.scalabilityMode)")
            .await;
        // The sender keeps the mode asked for (what runs is in the stats): a renegotiation does not set it again.
        assert_eq!(asked, json!(["L3T3_KEY"]), "the sender's parameters");
        assert_eq!(sent["codec"], "video/VP9");
        assert_eq!(sent["rid"], Value::Null, "not simulcast");
        let top = sent["height"].as_u64().unwrap();
        assert_eq!(inbound_video_codecs(&sam).await, ["video/VP9"]);
        let track = sam
            .eval("return [...document.querySelectorAll('.tile.camera')].map((t) => t.dataset.trackId).find((t) => t)")
            .await;
        let track = track.as_str().expect("Sam has a tile for Ria's camera").to_string();
        let layers = format!(
            "return window.sluiceApp.client.participants.values().next().value.tracks.find((t) => t.track_id === '{track}').layers"
        );
        assert_eq!(sam.eval(&layers).await, json!(3), "track_added says three layers");

        // The lowest spatial layer, then the top one: what Sam decodes follows, in the same stream.
        sam.eval(&format!("window.sluiceApp.client.setLayer('{track}', 0); return true")).await;
        let low = wait_height(&sam, "Sam", |h| h > 0 && h < top, "a lower spatial layer").await;
        assert_growing(&sam, "Sam").await;
        sam.eval(&format!("window.sluiceApp.client.setLayer('{track}', 2); return true")).await;
        wait_height(&sam, "Sam", |h| h == top, "the top spatial layer").await;
        assert_growing(&sam, "Sam").await;
        println!("Sam decoded Ria's camera at {low} pixels on layer 0 and {top} on layer 2");
        assert!(sam.eval("return window.sluiceApp.errors").await.as_array().is_none_or(Vec::is_empty));
        // One stream up, whatever each subscriber takes: still exactly one outbound video at Ria.
        assert_eq!(ria.eval(OUTBOUND_SCRIPT).await.as_array().map(Vec::len), Some(1));
        ria.close().await;
        sam.close().await;
    });
}
