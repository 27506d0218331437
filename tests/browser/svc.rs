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
        let deadline = Instant::now() + WAIT;
        let sent = loop {
            let sent = ria.eval(OUTBOUND_SCRIPT).await;
            let streams = sent.as_array().cloned().unwrap_or_default();
            // Chromium reports the mode it runs: L3T3_KEY, or L2T3_KEY where the lowest of three spatial layers
            // would be too small (this test's 640x360 camera).
            let mode = streams.first().and_then(|s| s["mode"].as_str()).unwrap_or("");
            let spatial = matches!(mode, "L3T3_KEY" | "L2T3_KEY");
            if streams.len() == 1 && spatial && streams[0]["frames"].as_u64() > Some(0) {
                break streams[0].clone();
            }
            assert!(Instant::now() < deadline, "Ria sends {sent}, wanted one VP9 stream with spatial layers");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        println!("Ria's camera: {sent}");
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
