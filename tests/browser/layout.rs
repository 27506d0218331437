//! The meeting grid in Chromium, with 1, 2, 3, 5 and 9 people, on a 1280x800 laptop and a 390x844 phone: every
//! remote tile is on the page or reachable by scrolling, none is under the controls, each shows at least 90% of
//! its video frame at a size one can see, names are not over the middle of the picture, one's own camera is a
//! small picture-in-picture that covers nobody; pinning puts a person in the spotlight; the lobby's toggles and
//! level meter work and what was turned off there stays off in the meeting; tiles say when the link is weak;
//! past 25 others, the rest are on a second page.
//! The other people are WHIP publishers of small moving canvases from one page (cheaper than a browser each);
//! the viewer is a real meeting page. Screenshots of each size are saved, and axe-core checks the page.

use super::analytics::save_screenshot;
use super::whip::participant_token;
use super::*;

/// In the crowd page: one more WHIP publisher named by `token`, sending a 320x180 canvas that moves.
fn publish_script(meeting: &str, token: &str) -> String {
    publish_sized_script(meeting, token, 320, 180, 15)
}

/// As `publish_script`, a `width`x`height` canvas at `fps` frames a second.
fn publish_sized_script(meeting: &str, token: &str, width: u32, height: u32, fps: u32) -> String {
    let frame_ms = 1000 / fps;
    format!(
        r#"
        return (async () => {{
        const canvas = document.createElement('canvas');
        canvas.width = {width}; canvas.height = {height};
        const g = canvas.getContext('2d');
        let x = 0;
        const hue = Math.floor(Math.random() * 360);
        setInterval(() => {{ g.fillStyle = `hsl(${{hue}} 60% 30%)`; g.fillRect(0, 0, {width}, {height}); g.fillStyle = '#fff'; g.fillRect(x = (x + 4) % ({width} - 20), {height} / 3, 20, {height} / 3); }}, {frame_ms});
        const stream = canvas.captureStream({fps});
        const pc = new RTCPeerConnection();
        pc.addTransceiver(stream.getVideoTracks()[0], {{ direction: 'sendonly' }});
        await pc.setLocalDescription(await pc.createOffer());
        const response = await fetch('/whip/{meeting}', {{
            method: 'POST',
            headers: {{ 'content-type': 'application/sdp', authorization: 'Bearer {token}' }},
            body: pc.localDescription.sdp,
        }});
        const answer = await response.text();
        (window.crowd = window.crowd || []).push(pc);
        if (response.status === 201) await pc.setRemoteDescription({{ type: 'answer', sdp: answer }});
        return response.status;
        }})();
        "#
    )
}

/// The grid as the viewer sees it: problems found, and figures to print.
const GEOMETRY_SCRIPT: &str = r#"
    const $ = (id) => document.getElementById(id);
    const grid = $('grid');
    const g = grid.getBoundingClientRect();
    const controls = document.querySelector('#meeting > footer').getBoundingClientRect();
    const scrolls = getComputedStyle(grid).overflowY === 'auto';
    const problems = [];
    const widths = [];
    const remote = [...document.querySelectorAll('#grid .tile.camera:not(.self):not(.off-page), #spotlight .tile')];
    for (const t of remote) {
        const name = t.querySelector('.label').textContent;
        const r = t.getBoundingClientRect();
        const v = t.querySelector('video');
        // Its box: the grid (or the filmstrip it becomes), or the spotlight.
        const box = t.parentElement;
        const b = box.getBoundingClientRect();
        const style = getComputedStyle(box);
        const [x, y] = [style.overflowX === 'auto', style.overflowY === 'auto'];
        if ((r.left < b.left - 1 || r.right > b.right + 1) && !x) problems.push(`${name}: cut off sideways, no scrolling`);
        if ((r.top < b.top - 1 || r.bottom > b.bottom + 1) && !y) problems.push(`${name}: cut off, no scrolling`);
        if (r.top - b.top + box.scrollTop < -1 || r.bottom - b.top + box.scrollTop > box.scrollHeight + 1) problems.push(`${name}: beyond scrolling`);
        if (r.left - b.left + box.scrollLeft < -1 || r.right - b.left + box.scrollLeft > box.scrollWidth + 1) problems.push(`${name}: beyond scrolling sideways`);
        const top = Math.max(r.top, b.top), bottom = Math.min(r.bottom, b.bottom);
        if (bottom > top && bottom > controls.top + 1 && top < controls.bottom - 1) problems.push(`${name}: under the controls`);
        if (!v.videoWidth) { problems.push(`${name}: no picture yet`); continue; }
        const fit = getComputedStyle(v).objectFit;
        const scale = (fit === 'cover' ? Math.max : Math.min)(v.clientWidth / v.videoWidth, v.clientHeight / v.videoHeight);
        const shownW = Math.min(v.clientWidth, v.videoWidth * scale), shownH = Math.min(v.clientHeight, v.videoHeight * scale);
        const fraction = (shownW * shownH) / (v.videoWidth * scale * v.videoHeight * scale);
        if (fraction < 0.9) problems.push(`${name}: shows ${Math.round(fraction * 100)}% of the frame`);
        if (shownW < 140) problems.push(`${name}: only ${Math.round(shownW)} px wide`);
        widths.push(Math.round(shownW));
        const vr = v.getBoundingClientRect();
        const cx = vr.left + vr.width / 2, cy = vr.top + vr.height / 2;
        const l = t.querySelector('.label').getBoundingClientRect();
        if (cx >= l.left && cx <= l.right && cy >= l.top && cy <= l.bottom) problems.push(`${name}: the name is over the middle of the picture`);
    }
    const self = document.querySelector('.tile.self');
    const s = self.getBoundingClientRect();
    const pip = self.classList.contains('pip');
    if (remote.length && !pip && !document.getElementById('stage').classList.contains('spotlit')) problems.push('one\'s own camera is not small with others there');
    if (pip) {
        if (s.width > innerWidth / 3) problems.push(`the self-view is ${Math.round(s.width)} px wide`);
        for (const t of remote) {
            const r = t.getBoundingClientRect();
            const w = Math.min(r.right, s.right) - Math.max(r.left, s.left), h = Math.min(r.bottom, s.bottom, g.bottom) - Math.max(r.top, s.top, g.top);
            if (w > 1 && h > 1 && !scrolls) problems.push(`the self-view covers ${t.querySelector('.label').textContent}`);
        }
    }
    return { problems, remote: remote.length, widths, mode: window.sluiceApp.layout.mode, scrolls };
"#;

/// Waits until the viewer shows `remote` remote tiles with no problem (pictures arrive, and the layout follows a
/// new size within a frame or two), failing with what it shows if that does not happen in time.
async fn check(viewer: &Browser, remote: usize, size: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = viewer.eval(GEOMETRY_SCRIPT).await;
        if seen["remote"] == remote && seen["problems"].as_array().is_some_and(Vec::is_empty) {
            println!("{} people at {size}: {seen}", remote + 1);
            return seen;
        }
        assert!(Instant::now() < deadline, "{} people at {size}: after {WAIT:?} {seen}", remote + 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[test]
fn the_grid_shows_everyone_whole_on_a_laptop_and_a_phone() {
    in_fresh_netns("layout::the_grid_shows_everyone_whole_on_a_laptop_and_a_phone", async || {
        let stage = Stage::start(&[]).await;
        let (base, id) = (stage.base.clone(), stage.id.clone());

        // The lobby: the level meter moves with the (fake, beeping) microphone; the camera is turned off there.
        let viewer = Browser::launch(&stage.driver).await;
        viewer.goto(&format!("{base}/m/{id}")).await;
        wait_true(&viewer, "the lobby's meter moves", "return (window.sluiceApp.lobbyLevelMax || 0) > 0.02").await;
        viewer.click_css("#lobby-cam").await;
        assert_eq!(
            viewer.eval("return document.getElementById('lobby-cam').getAttribute('aria-pressed')").await,
            "true"
        );
        assert_eq!(
            viewer.eval("return document.getElementById('preview').srcObject.getVideoTracks()[0].enabled").await,
            false
        );
        assert_accessible(&viewer, "the lobby").await;
        viewer.eval("const f = document.getElementById('join'); f.elements.name.value = 'Vera with a rather long name that goes on'; f.requestSubmit(); return true").await;
        wait_true(&viewer, "Vera is in with her camera off", "return !!window.sluiceApp.client && window.sluiceApp.client.muted.camera === true && document.getElementById('cam').getAttribute('aria-pressed') === 'true'").await;
        wait_true(
            &viewer,
            "her own tile says so",
            "return document.querySelector('.tile.self').classList.contains('camera-off')",
        )
        .await;
        // The server holds her camera muted too (she turned it off before it was even published).
        let deadline = Instant::now() + WAIT;
        loop {
            let roster: Value = reqwest::Client::new()
                .get(format!("{base}/meetings/{id}/participants"))
                .bearer_auth(&stage.host_token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let vera = roster["live"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"].as_str().unwrap_or_default().starts_with("Vera"))
                .cloned();
            if vera.as_ref().is_some_and(|v| v["muted"] == json!(["camera"])) {
                break;
            }
            assert!(Instant::now() < deadline, "the server has Vera as {vera:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Back on: the rest of the test needs her camera.
        viewer.click_css("#cam").await;

        let crowd = Browser::launch(&stage.driver).await;
        crowd.goto(&format!("{base}/")).await;
        let mut people = 1;
        for target in [1usize, 2, 3, 5, 9] {
            while people < target {
                let token =
                    participant_token(&base, &id, &format!("Guest {people} of the crowd with a long name")).await;
                assert_eq!(crowd.eval(&publish_script(&id, &token)).await, 201);
                people += 1;
            }
            for (width, height, mobile, size) in [(1280, 800, false, "1280x800"), (390, 844, true, "390x844")] {
                viewer.viewport(width, height, mobile).await;
                let seen = check(&viewer, target - 1, size).await;
                if target == 2 && !mobile {
                    let w = seen["widths"][0].as_u64().unwrap();
                    assert!(w > 800, "one other person fills a laptop screen, not {w} px: {seen}");
                }
                if target == 9 {
                    save_screenshot(&viewer, &format!("layout-9-people-{size}")).await;
                }
            }
        }
        viewer.viewport(1280, 800, false).await;
        assert_accessible(&viewer, "the meeting with nine people").await;

        // Pinning puts a person in the spotlight, large, with the others in a strip; pinning again puts them back.
        viewer.eval("document.querySelector('#grid .tile.camera:not(.self) .pin').focus(); return true").await;
        viewer.click_css("#grid .tile.camera:not(.self) .pin").await;
        wait_true(&viewer, "the pinned tile is in the spotlight", "const t = document.querySelector('#spotlight .tile.pinned'); return !!t && t.getBoundingClientRect().width > 0.6 * document.getElementById('stage').clientWidth").await;
        let pinned = check(&viewer, 8, "1280x800, one pinned").await;
        assert_eq!(pinned["mode"], "spotlight");
        save_screenshot(&viewer, "layout-pinned").await;
        viewer.click_css("#spotlight .tile.pinned .pin").await;
        wait_true(
            &viewer,
            "the spotlight is empty again",
            "return document.getElementById('spotlight').childElementCount === 0",
        )
        .await;
        // Full screen, from a real click.
        viewer.eval("document.querySelector('#grid .tile.camera:not(.self) .fullscreen').focus(); return true").await;
        viewer.click_css("#grid .tile.camera:not(.self) .fullscreen").await;
        wait_true(
            &viewer,
            "a tile is full screen",
            "return document.fullscreenElement?.classList.contains('tile') === true",
        )
        .await;
        viewer.eval("document.exitFullscreen(); return true").await;

        // A weak link to the viewer (a fifth of the packets to her port dropped, in this test's own namespace):
        // the tiles say so, and stop saying so when the link is good again.
        let port = viewer
            .eval("return window.sluiceApp.client.pc.getStats().then((r) => { let port = null; r.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') port = r.get(s.localCandidateId)?.port; }); return String(port); })")
            .await;
        let port = port.as_str().unwrap().to_string();
        let rule = [
            "INPUT",
            "-p",
            "udp",
            "--dport",
            &port,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.2",
            "-j",
            "DROP",
        ];
        let iptables = |action: &str| {
            let status = std::process::Command::new("iptables").arg(action).args(rule).status().unwrap();
            assert!(status.success(), "iptables {action} {rule:?}");
        };
        assert!(
            viewer.eval("return document.querySelectorAll('.tile.weak').length").await == 0,
            "no mark on a good link"
        );
        iptables("-I");
        wait_true(
            &viewer,
            "the tiles say the connection is weak",
            "return [...document.querySelectorAll('#grid .tile.camera.weak .weak-badge')].filter((b) => { const r = b.getBoundingClientRect(), l = b.parentElement.getBoundingClientRect(); return r.width > 20 && r.right <= l.right + 1; }).length >= 4",
        )
        .await;
        save_screenshot(&viewer, "layout-weak").await;
        iptables("-D");
        wait_true(
            &viewer,
            "the marks go once the link is good",
            "return document.querySelectorAll('.tile.weak').length === 0",
        )
        .await;

        // More than a page: with 26 others, 25 are on the first page and the 26th on the second.
        for n in people..27 {
            let token = participant_token(&base, &id, &format!("Guest {n}")).await;
            assert_eq!(crowd.eval(&publish_sized_script(&id, &token, 160, 90, 5)).await, 201);
        }
        wait_true(
            &viewer,
            "two pages",
            "return window.sluiceApp.layout.pages === 2 && !document.getElementById('pager').hidden",
        )
        .await;
        let first = check(&viewer, 25, "1280x800, page 1 of 2").await;
        assert_eq!(first["mode"], "fit", "{first}");
        assert_eq!(viewer.eval("return document.getElementById('page-status').textContent").await, "Page 1 of 2");
        save_screenshot(&viewer, "layout-page-1-of-2").await;
        viewer.click_css("#page-next").await;
        check(&viewer, 1, "1280x800, page 2 of 2").await;
        assert_eq!(viewer.eval("return document.getElementById('page-status').textContent").await, "Page 2 of 2");
        viewer.click_css("#page-prev").await;
        check(&viewer, 25, "1280x800, back on page 1").await;
        crowd.close().await;
        viewer.close().await;
    });
}
