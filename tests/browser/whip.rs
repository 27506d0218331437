//! WHIP ingest (RFC 9725) into a meeting and WHEP playback out of it: Chromium speaking WHIP (a page that makes
//! a send-only offer, posts it to `/whip/{meeting}` with a participant token and applies the answer) is seen and
//! heard by a Chromium participant of the meeting and by a Chromium page playing it over WHEP (a receive-only
//! offer to `/whep/{meeting}?participant=<name>`); each leaves when its resource is deleted. Bad requests get the
//! right 4xx.

use super::*;

/// A participant token for `name` (the meeting lets anyone join by link).
pub(super) async fn participant_token(base: &str, meeting: &str, name: &str) -> String {
    let reply: Value = reqwest::Client::new()
        .post(format!("{base}/meetings/{meeting}/join"))
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["participant_token"].as_str().unwrap_or_else(|| panic!("no token: {reply}")).to_string()
}

/// In a page: a receive-only offer for one audio and one video, played over WHEP from `query`. Returns [status,
/// Location, Content-Type].
fn whep_script(meeting: &str, token: &str, query: &str) -> String {
    format!(
        r#"
        return (async () => {{
        const pc = new RTCPeerConnection();
        pc.addTransceiver('audio', {{ direction: 'recvonly' }});
        pc.addTransceiver('video', {{ direction: 'recvonly' }});
        await pc.setLocalDescription(await pc.createOffer());
        const response = await fetch('/whep/{meeting}?{query}', {{
            method: 'POST',
            headers: {{ 'content-type': 'application/sdp', authorization: 'Bearer {token}' }},
            body: pc.localDescription.sdp,
        }});
        const answer = await response.text();
        window.whep = {{ pc }};
        if (response.status === 201) await pc.setRemoteDescription({{ type: 'answer', sdp: answer }});
        return [response.status, response.headers.get('location'), response.headers.get('content-type'), answer.slice(0, 300)];
        }})();
        "#
    )
}

/// What the WHEP page decodes: [video frames, audio packets].
const WHEP_INBOUND_SCRIPT: &str = r#"
    return window.whep.pc.getStats().then((report) => {
        let frames = 0, audio = 0;
        report.forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
            if (s.type === 'inbound-rtp' && s.kind === 'audio') audio += s.packetsReceived || 0;
        });
        return [frames, audio];
    });
"#;

/// In a page: camera and microphone sent over WHIP. Returns [status, Location, Content-Type].
fn whip_script(meeting: &str, token: &str) -> String {
    format!(
        r#"
        return (async () => {{
        const stream = await navigator.mediaDevices.getUserMedia({{ audio: true, video: {{ width: 640, height: 360 }} }});
        const pc = new RTCPeerConnection();
        // The camera in three simulcast layers, as an encoder that offers simulcast sends it.
        const layers = [{{ rid: 'q', scaleResolutionDownBy: 4 }}, {{ rid: 'h', scaleResolutionDownBy: 2 }}, {{ rid: 'f' }}];
        for (const track of stream.getTracks()) {{
            pc.addTransceiver(track, track.kind === 'video' ? {{ direction: 'sendonly', sendEncodings: layers }} : {{ direction: 'sendonly' }});
        }}
        await pc.setLocalDescription(await pc.createOffer());
        const response = await fetch('/whip/{meeting}', {{
            method: 'POST',
            headers: {{ 'content-type': 'application/sdp', authorization: 'Bearer {token}' }},
            body: pc.localDescription.sdp,
        }});
        const answer = await response.text();
        window.whip = {{ pc }};
        if (response.status === 201) await pc.setRemoteDescription({{ type: 'answer', sdp: answer }});
        return [response.status, response.headers.get('location'), response.headers.get('content-type'), answer.slice(0, 300)];
        }})();
        "#
    )
}

async fn whip_post(base: &str, path: &str, token: Option<&str>, content_type: &str, body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(format!("{base}{path}")).header("content-type", content_type);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.body(body.to_string()).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[test]
fn a_browser_publishing_over_whip_is_seen_in_the_meeting_and_leaves_on_delete() {
    in_fresh_netns("whip::a_browser_publishing_over_whip_is_seen_in_the_meeting_and_leaves_on_delete", async || {
        let stage = Stage::start(&[]).await;
        let (base, id) = (stage.base.clone(), stage.id.clone());
        let token = participant_token(&base, &id, "Encoder").await;

        // Bad requests, each with its status and a message that says what was wrong.
        let offer_path = format!("/whip/{id}");
        let cases = [
            (whip_post(&base, &offer_path, Some(&token), "text/plain", "v=0").await, 415, "application/sdp"),
            (whip_post(&base, &offer_path, None, "application/sdp", "v=0").await, 401, "Bearer"),
            (whip_post(&base, &offer_path, Some(&token), "application/sdp", "hello").await, 400, "v=0"),
            (
                whip_post(&base, "/whip/zzz-zzzz-zzz", Some(&token), "application/sdp", "v=0").await,
                404,
                "does not exist",
            ),
        ];
        for ((status, body), want, says) in cases {
            assert_eq!(status, want, "{body}");
            assert!(body["error"]["message"].as_str().unwrap_or_default().contains(says), "{says:?} in {body}");
        }
        // A participant of the meeting, then the WHIP publisher.
        let vi = stage.join("Vi").await;
        wait_true(&vi, "Vi is in", "return !!(window.sluiceApp.client && window.sluiceApp.client.pc)").await;
        let encoder = Browser::launch(&stage.driver).await;
        encoder.goto(&format!("{base}/")).await;
        let reply = encoder.eval(&whip_script(&id, &token)).await;
        assert_eq!(reply[0], 201, "{reply}");
        let location = reply[1].as_str().unwrap().to_string();
        assert!(location.starts_with(&format!("/whip/{id}/p_")), "{reply}");
        assert_eq!(reply[2], "application/sdp", "{reply}");
        wait_true(&encoder, "the WHIP connection is up", "return window.whip.pc.connectionState === 'connected'").await;

        // Vi sees and hears it, under the token's name.
        wait_decoding(&vi, "Vi", 1, 1).await;
        assert_growing(&vi, "Vi").await;
        wait_true(
            &vi,
            "Vi's grid shows the encoder",
            "return [...document.querySelectorAll('#grid .tile .label')].some((l) => l.textContent.startsWith('Encoder'))",
        )
        .await;
        let encoder_id = location.rsplit('/').next().unwrap().to_string();
        assert!(reply[3].as_str().unwrap_or_default().contains("v=0"), "{reply}");

        // Its simulcast was taken: three layers, and Vi decodes the lowest when she asks for it.
        let camera = format!(
            "return window.sluiceApp.client.participants.get('{encoder_id}').tracks.find((t) => t.source === 'camera')"
        );
        let track = vi.eval(&camera).await;
        assert_eq!(track["layers"], 3, "{track}");
        let track_id = track["track_id"].as_str().unwrap().to_string();
        vi.eval(&format!("window.sluiceApp.client.setLayer('{track_id}', 0); return true")).await;
        wait_height(&vi, "Vi on the encoder's lowest layer", |h| h == 90, "90 pixels (a quarter of 360)").await;
        vi.eval(&format!("window.sluiceApp.client.setLayer('{track_id}', 2); return true")).await;
        wait_height(&vi, "Vi on a higher layer", |h| h > 90, "a higher layer").await;

        // A player watches the encoder over WHEP, from another page, with its own token.
        let player = Browser::launch(&stage.driver).await;
        player.goto(&format!("{base}/")).await;
        let watcher = participant_token(&base, &id, "Player").await;
        let nobody = player.eval(&whep_script(&id, &watcher, "participant=Nobody")).await;
        assert_eq!(nobody[0], 404, "{nobody}");
        let reply = player.eval(&whep_script(&id, &watcher, "participant=Encoder")).await;
        assert_eq!(reply[0], 201, "{reply}");
        assert!(reply[1].as_str().unwrap().starts_with(&format!("/whep/{id}/p_")), "{reply}");
        let (started, deadline) = (Instant::now(), Instant::now() + WAIT);
        loop {
            let seen = player.eval(WHEP_INBOUND_SCRIPT).await;
            if seen[0].as_u64() > Some(10) && seen[1].as_u64() > Some(10) {
                let after = started.elapsed();
                println!(
                    "the WHEP player decoded {} frames and got {} audio packets {after:?} after its answer",
                    seen[0], seen[1]
                );
                break;
            }
            assert!(Instant::now() < deadline, "the WHEP player receives {seen} after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let player_location = reply[1].as_str().unwrap().to_string();
        let status = reqwest::Client::new()
            .delete(format!("{base}{player_location}"))
            .bearer_auth(&watcher)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "the player's DELETE");
        player.close().await;

        // Someone else's token cannot end it; the publisher's can, once.
        let other = participant_token(&base, &id, "Mallory").await;
        let http = reqwest::Client::new();
        let status = http.delete(format!("{base}{location}")).bearer_auth(&other).send().await.unwrap().status();
        assert_eq!(status, 404, "another user's DELETE");
        let status = http.delete(format!("{base}{location}")).bearer_auth(&token).send().await.unwrap().status();
        assert_eq!(status, 200);
        wait_true(&vi, "the encoder's tile goes", &gone_script(&encoder_id)).await;
        let status = http.delete(format!("{base}{location}")).bearer_auth(&token).send().await.unwrap().status();
        assert_eq!(status, 404, "a second DELETE");
        let meeting = stage.meeting().await;
        assert_eq!(meeting["active_participants"], 1, "{meeting}");
        encoder.close().await;
        vi.close().await;
    });
}

/// Whom the WHEP player `player` (a participant id) watches, from the participants API.
async fn watching(stage: &Stage, player: &str) -> Option<String> {
    let roster: Value = reqwest::Client::new()
        .get(format!("{}/meetings/{}/participants", stage.base, stage.id))
        .bearer_auth(&stage.host_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let live = roster["live"].as_array().cloned().unwrap_or_default();
    let entry = live.iter().find(|p| p["participant_id"] == player)?;
    entry["watching"].as_str().map(str::to_string)
}

async fn wait_watching(stage: &Stage, player: &str, speaker: &str, name: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = watching(stage, player).await;
        if now.as_deref() == Some(speaker) {
            return;
        }
        assert!(Instant::now() < deadline, "the player watches {now:?}, not {name} ({speaker}), after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the WHEP page decodes: [frames decoded, keyframes decoded, audio packets, video receivers].
const WHEP_VIDEO_SCRIPT: &str = r#"
    return window.whep.pc.getStats().then((report) => {
        let frames = 0, keyframes = 0, audio = 0, streams = 0;
        report.forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'video') { frames += s.framesDecoded || 0; keyframes += s.keyFramesDecoded || 0; streams += 1; }
            if (s.type === 'inbound-rtp' && s.kind === 'audio') audio += s.packetsReceived || 0;
        });
        return [frames, keyframes, audio, streams];
    });
"#;

async fn whep_video(player: &Browser) -> [u64; 4] {
    let v = player.eval(WHEP_VIDEO_SCRIPT).await;
    std::array::from_fn(|i| v[i].as_u64().unwrap_or(0))
}

#[test]
fn a_whep_player_follows_whoever_talks() {
    in_fresh_netns("whip::a_whep_player_follows_whoever_talks", async || {
        let stage = Stage::start(&[]).await;
        let (base, id) = (stage.base.clone(), stage.id.clone());
        let (ann, bo) = (stage.join("Ann").await, stage.join("Bo").await);
        wait_decoding(&ann, "Ann", 1, 1).await;
        wait_decoding(&bo, "Bo", 1, 1).await;
        let (ann_id, bo_id) = (participant_id(&ann).await, participant_id(&bo).await);
        // Bo mutes: Ann's (fake, beeping) microphone alone is heard.
        bo.eval("document.getElementById('mic').click(); return true").await;
        wait_true(&bo, "Bo muted", "return document.getElementById('mic').getAttribute('aria-pressed') === 'true'")
            .await;

        let player = Browser::launch(&stage.driver).await;
        player.goto(&format!("{base}/")).await;
        let watcher = participant_token(&base, &id, "Player").await;
        let reply = player.eval(&whep_script(&id, &watcher, "source=speaker")).await;
        assert_eq!(reply[0], 201, "{reply}");
        let player_id = reply[1].as_str().unwrap().rsplit('/').next().unwrap().to_string();
        wait_watching(&stage, &player_id, &ann_id, "Ann").await;
        let deadline = Instant::now() + WAIT;
        let first = loop {
            let seen = whep_video(&player).await;
            if seen[0] > 10 && seen[2] > 10 {
                break seen;
            }
            assert!(Instant::now() < deadline, "the player decodes {seen:?} after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        println!("following Ann: {first:?} [frames, keyframes, audio packets, video streams]");

        // Ann mutes and Bo talks: the player's streams move to Bo, at a keyframe, on the same connection.
        ann.eval("document.getElementById('mic').click(); return true").await;
        bo.eval("document.getElementById('mic').click(); return true").await;
        let switched = Instant::now();
        wait_watching(&stage, &player_id, &bo_id, "Bo").await;
        println!("the player followed Bo {:?} after the microphones changed", switched.elapsed());
        let at_switch = whep_video(&player).await;
        let deadline = Instant::now() + WAIT;
        let after = loop {
            let seen = whep_video(&player).await;
            if seen[1] > first[1] && seen[0] > at_switch[0] + 30 && seen[2] > at_switch[2] + 30 {
                break seen;
            }
            assert!(Instant::now() < deadline, "after the switch the player decodes {seen:?} (at it {at_switch:?})");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        println!("following Bo: {after:?}");
        assert_eq!(after[3], 1, "one video stream throughout: {after:?}");
        let state = player.eval("return window.whep.pc.connectionState").await;
        assert_eq!(state, "connected");

        // Bo leaves: the player moves to Ann, who is still in, rather than losing its streams.
        bo.close().await;
        wait_watching(&stage, &player_id, &ann_id, "Ann after Bo left").await;
        let before = whep_video(&player).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let seen = whep_video(&player).await;
            if seen[0] > before[0] + 30 {
                break;
            }
            assert!(Instant::now() < deadline, "after Bo left the player decodes {seen:?} (then {before:?})");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        player.close().await;
        ann.close().await;
    });
}
