//! The meeting page's screens in Chromium: exactly one shown at a time (judged by computed style and box, not by
//! the `hidden` attribute), each saying what happened and offering what comes next; a confirmation before
//! ending the meeting for everyone; error pages for browsers and JSON errors for API clients. A screenshot of
//! each screen is saved beside the test's output.

use super::analytics::save_screenshot;
use super::*;

/// The page's top-level screens that are drawn: displayed, visible and with a box.
const SHOWN_SCRIPT: &str = r#"
    return ['lobby', 'meeting', 'waiting', 'ended'].filter((id) => {
        const el = document.getElementById(id);
        const style = getComputedStyle(el);
        const box = el.getBoundingClientRect();
        return style.display !== 'none' && style.visibility !== 'hidden' && box.width > 0 && box.height > 0;
    });
"#;

/// Waits until `screen` is the only screen drawn.
async fn wait_only(browser: &Browser, who: &str, screen: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let shown = browser.eval(SHOWN_SCRIPT).await;
        if shown == json!([screen]) {
            return;
        }
        assert!(Instant::now() < deadline, "{who} shows {shown} after {WAIT:?}, wanted only {screen}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The end screen's title, and whether it offers to rejoin.
async fn end_screen(browser: &Browser) -> (String, bool) {
    let v = browser
        .eval("return [document.getElementById('ended-title').textContent, !document.getElementById('rejoin').hidden]")
        .await;
    (v[0].as_str().unwrap().to_string(), v[1].as_bool().unwrap())
}

async fn click(browser: &Browser, id: &str) {
    browser.eval(&format!("document.getElementById('{id}').click(); return true")).await;
}

#[test]
fn each_screen_is_shown_alone_and_offers_what_comes_next() {
    in_fresh_netns("screens::each_screen_is_shown_alone_and_offers_what_comes_next", async || {
        let stage = Stage::start(&[]).await;
        let (id, host_token) = create_meeting(&stage.base, "Hana").await;

        // Starting a meeting on the landing page: the host goes through the lobby (name filled in), then in as host.
        let host = Browser::launch(&stage.driver).await;
        host.goto(&format!("{}/", stage.base)).await;
        wait_true(&host, "the landing page shows", "return !!document.getElementById('create')").await;
        assert_accessible(&host, "the landing page").await;
        host.eval("const f = document.getElementById('create'); f.elements.name.value = 'Hedy'; f.elements.title.value = 'Standup'; f.requestSubmit(); return true").await;
        wait_only(&host, "the new host in the lobby", "lobby").await;
        assert_eq!(host.eval("return document.querySelector('#join input[name=name]').value").await, "Hedy");
        host.eval("document.querySelector('#join button[type=submit]').click(); return true").await;
        wait_only(&host, "the new host in the meeting", "meeting").await;
        wait_true(&host, "the host has End for all", "return !document.getElementById('end').hidden").await;
        host.close().await;

        // A link to no meeting: one screen saying so, with a way to start one, not a lobby.
        let lou = Browser::launch(&stage.driver).await;
        lou.goto(&format!("{}/m/zzz-zzzz-zzz", stage.base)).await;
        wait_only(&lou, "Lou on an unknown meeting", "ended").await;
        assert_eq!(end_screen(&lou).await, ("Meeting not found".to_string(), false));
        assert_eq!(lou.eval("return document.getElementById('new-meeting').getAttribute('href')").await, "/");
        save_screenshot(&lou, "screen-unknown-meeting").await;
        assert_accessible(&lou, "the unknown-meeting screen").await;

        // The lobby, then the meeting.
        lou.goto(&format!("{}/m/{id}", stage.base)).await;
        wait_only(&lou, "Lou in the lobby", "lobby").await;
        save_screenshot(&lou, "screen-lobby").await;
        assert_accessible(&lou, "the lobby").await;
        lou.eval("document.querySelector('#join input[name=name]').value = 'Lou'; document.querySelector('#join button[type=submit]').click(); return true").await;
        wait_only(&lou, "Lou in the meeting", "meeting").await;
        let hana = Browser::launch(&stage.driver).await;
        hana.goto(&format!("{}/m/{id}?name=Hana#token={host_token}", stage.base)).await;
        wait_only(&hana, "Hana in the meeting", "meeting").await;
        wait_decoding(&lou, "Lou", 1, 1).await;
        save_screenshot(&lou, "screen-meeting").await;
        assert_accessible(&lou, "the meeting").await;

        // The Recordings link works in a new tab (which shares no storage with the meeting's), titled by the
        // meeting; the token it carries is gone from the address bar.
        let link = lou.eval("return document.getElementById('recordings-link').href").await;
        let list = Browser::launch(&stage.driver).await;
        list.goto(link.as_str().unwrap()).await;
        wait_true(
            &list,
            "the list page says there is nothing yet",
            "return document.querySelector('.problem').textContent === 'No recordings yet.'",
        )
        .await;
        assert_eq!(list.eval("return document.getElementById('heading').textContent").await, "Recordings of e2e");
        assert_accessible(&list, "the recordings list").await;
        assert_eq!(list.eval("return location.hash").await, "", "the token is out of the address bar");
        list.close().await;

        // Leaving: the meeting is gone from the page, and rejoining brings the lobby back, name kept.
        click(&lou, "leave").await;
        wait_only(&lou, "Lou after leaving", "ended").await;
        assert_eq!(end_screen(&lou).await, ("You left the meeting".to_string(), true));
        save_screenshot(&lou, "screen-left").await;
        assert_accessible(&lou, "the left screen").await;
        click(&lou, "rejoin").await;
        wait_only(&lou, "Lou rejoining", "lobby").await;
        assert_eq!(lou.eval("return document.querySelector('#join input[name=name]').value").await, "Lou");
        lou.eval("document.querySelector('#join button[type=submit]').click(); return true").await;
        wait_only(&lou, "Lou back in the meeting", "meeting").await;
        wait_decoding(&lou, "Lou back in the meeting", 1, 1).await;

        // "End for all" asks first: cancelling keeps everyone in.
        wait_true(&hana, "Hana has End for all", "return !document.getElementById('end').hidden").await;
        click(&hana, "end").await;
        wait_true(&hana, "Hana is asked to confirm", "return document.getElementById('confirm').open").await;
        save_screenshot(&hana, "screen-confirm-end").await;
        assert_accessible(&hana, "the End-for-all confirmation").await;
        hana.eval("document.querySelector('#confirm button[value=cancel]').click(); return true").await;
        wait_true(&hana, "the question goes away", "return !document.getElementById('confirm').open").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        wait_only(&lou, "Lou, after Hana cancelled", "meeting").await;
        assert_eq!(stage_meeting(&stage.base, &id).await["ended_at"], Value::Null, "cancel ended nothing");
        // Hana leaves, and nobody else can run the meeting: she is asked whom to make host, and Lou becomes host.
        click(&hana, "leave").await;
        wait_true(&hana, "Hana is asked whom to make host", "return document.getElementById('handover').open").await;
        let offered = hana.eval("return [...document.getElementById('handover-to').options].map((o) => o.text)").await;
        assert_eq!(offered, json!(["Lou"]), "{offered}");
        save_screenshot(&hana, "screen-handover").await;
        assert_accessible(&hana, "the hand-over question").await;
        click(&hana, "handover-ok").await;
        wait_only(&hana, "Hana after leaving", "ended").await;
        wait_true(&lou, "Lou is host now", "return !document.getElementById('end').hidden && window.sluiceApp.participants.get(window.sluiceApp.selfId).role === 'host'").await;
        click(&lou, "end").await;
        wait_true(&lou, "Lou is asked to confirm", "return document.getElementById('confirm').open").await;
        click(&lou, "confirm-ok").await;
        wait_only(&lou, "Lou after the end", "ended").await;
        assert_eq!(end_screen(&lou).await, ("The meeting has ended".to_string(), false));
        save_screenshot(&lou, "screen-ended").await;
        assert_accessible(&lou, "the ended screen").await;
        assert!(stage_meeting(&stage.base, &id).await["ended_at"].is_string());

        // A link whose token is not valid: said in words, no rejoin.
        let (other, _) = create_meeting(&stage.base, "Host").await;
        lou.goto(&format!("{}/m/{other}?name=Lou#token=not.a.token", stage.base)).await;
        wait_only(&lou, "Lou with a bad link", "ended").await;
        assert_eq!(end_screen(&lou).await, ("This link is not valid".to_string(), false));
        let reason = lou.eval("return document.getElementById('ended-reason').textContent").await;
        assert!(!reason.as_str().unwrap().contains("InvalidToken"), "user wording, not the error's name: {reason}");
        save_screenshot(&lou, "screen-bad-link").await;
        assert_accessible(&lou, "the bad-link screen").await;

        // Addresses that are not there: a page for a browser, JSON for an API client.
        for path in ["/m/", "/no/such/page"] {
            lou.goto(&format!("{}{path}", stage.base)).await;
            assert_eq!(lou.eval("return document.querySelector('h1').textContent").await, "Page not found", "{path}");
            assert_eq!(lou.eval("return document.querySelector('a[href=\"/\"]') !== null").await, true);
            let http = reqwest::Client::new();
            let page = http.get(format!("{}{path}", stage.base)).header("accept", "text/html").send().await.unwrap();
            assert_eq!(page.status(), 404);
            assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
            let api = http.get(format!("{}{path}", stage.base)).send().await.unwrap();
            assert_eq!(api.status(), 404);
            let body: Value = api.json().await.unwrap();
            assert_eq!(body["error"]["code"], "not_found", "{body}");
        }
        save_screenshot(&lou, "screen-not-found").await;
        assert_accessible(&lou, "the not-found page").await;
        lou.close().await;
        hana.close().await;
    });
}

async fn stage_meeting(base: &str, id: &str) -> Value {
    reqwest::get(format!("{base}/meetings/{id}")).await.unwrap().json().await.unwrap()
}

/// Shown fraction of each remote camera's frame in its tile: 1 when the whole frame is letterboxed in, less when
/// the tile crops it (`object-fit: cover`).
const SHOWN_FRACTION_SCRIPT: &str = r#"
    return [...document.querySelectorAll('#grid .tile.camera:not(.self) video')].filter((v) => v.videoWidth > 0).map((v) => {
        const box = v.getBoundingClientRect();
        const fit = getComputedStyle(v).objectFit;
        const videoAspect = v.videoWidth / v.videoHeight, boxAspect = box.width / box.height;
        return fit === 'cover' ? Math.min(videoAspect / boxAspect, boxAspect / videoAspect) : 1;
    });
"#;

/// The texts of the short notices a page shows.
async fn toasts(browser: &Browser) -> Vec<String> {
    let v = browser.eval("return [...document.querySelectorAll('#toasts > div')].map((l) => l.textContent)").await;
    v.as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
}

async fn wait_toast(browser: &Browser, who: &str, text: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let shown = toasts(browser).await;
        if shown.iter().any(|t| t.contains(text)) {
            return;
        }
        assert!(Instant::now() < deadline, "{who} shows notices {shown:?} after {WAIT:?}, wanted one with {text:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_meeting_view_says_who_came_and_went_and_shows_whole_faces() {
    in_fresh_netns("screens::the_meeting_view_says_who_came_and_went_and_shows_whole_faces", async || {
        let stage = Stage::start(&[]).await;
        let ann = stage.join("Ann").await;
        wait_only(&ann, "Ann in the meeting", "meeting").await;
        let bo = stage.join("Bo").await;
        wait_toast(&ann, "Ann", "Bo joined").await;
        wait_decoding(&ann, "Ann", 1, 1).await;
        wait_decoding(&bo, "Bo", 1, 1).await;

        // Whole frames in every tile; one's own camera mirrored.
        let fractions = ann.eval(SHOWN_FRACTION_SCRIPT).await;
        let fractions: Vec<f64> = fractions.as_array().unwrap().iter().map(|f| f.as_f64().unwrap()).collect();
        assert!(!fractions.is_empty() && fractions.iter().all(|f| *f >= 0.9), "shown fractions {fractions:?}");
        let mirror =
            ann.eval("return getComputedStyle(document.querySelector('.tile.self.camera video')).transform").await;
        assert_eq!(mirror, "matrix(-1, 0, 0, 1, 0, 0)", "the self-view is mirrored");
        let other = ann
            .eval("return getComputedStyle(document.querySelector('.tile.camera:not(.self) video')).transform")
            .await;
        assert_eq!(other, "none", "others are not mirrored");

        // Muting shows on one's own tile, and on the others' view of it.
        click(&ann, "mic").await;
        wait_true(
            &ann,
            "Ann's tile says she is muted",
            "return document.querySelector('.tile.self.camera .label').textContent.includes('muted')",
        )
        .await;
        wait_true(
            &bo,
            "Bo sees Ann muted",
            "return [...document.querySelectorAll('.tile.camera .label')].some((l) => l.textContent.startsWith('Ann') && l.textContent.includes('muted'))",
        )
        .await;
        click(&ann, "mic").await;
        wait_true(
            &ann,
            "Ann's tile drops muted",
            "return !document.querySelector('.tile.self.camera .label').textContent.includes('muted')",
        )
        .await;

        // Copying the link says so (or shows the link where the clipboard is refused).
        click(&ann, "copy-link").await;
        let deadline = Instant::now() + WAIT;
        loop {
            let shown = toasts(&ann).await;
            if shown.iter().any(|t| t == "Link copied" || t.contains(&format!("/m/{}", stage.id))) {
                break;
            }
            assert!(Instant::now() < deadline, "no feedback for Copy link: {shown:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Bo leaves: Ann is told.
        click(&bo, "leave").await;
        wait_toast(&ann, "Ann", "Bo left").await;
        save_screenshot(&ann, "screen-meeting-notice").await;
        ann.close().await;
        bo.close().await;
    });
}
