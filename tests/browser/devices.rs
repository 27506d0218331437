//! The meeting page follows who talks and changes devices in place, in Chromium: the active-speaker highlight
//! moves to whoever's (fake, beeping) microphone is on while the others' are off; keyboard shortcuts press the
//! buttons; switching the microphone in Settings replaces the sender's track on the same peer connection with no
//! renegotiation, and the others keep hearing it.

use super::*;

async fn press(browser: &Browser, key: &str) {
    browser
        .eval(&format!(
            "document.body.dispatchEvent(new KeyboardEvent('keydown', {{ key: '{key}', bubbles: true }})); return true"
        ))
        .await;
}

/// Waits until `viewer` highlights `speaker` (a participant id) as the one talking, on their tile too.
async fn wait_speaker(viewer: &Browser, who: &str, speaker: &str, name: &str) {
    wait_true(
        viewer,
        &format!("{who} shows {name} talking"),
        &format!(
            "return window.sluiceApp.activeSpeaker === '{speaker}' && [...document.querySelectorAll('.tile.camera.speaking')].map((t) => t.dataset.participant).join() === '{speaker}'"
        ),
    )
    .await;
}

#[test]
fn the_page_follows_who_talks_and_switches_the_microphone_in_place() {
    in_fresh_netns("devices::the_page_follows_who_talks_and_switches_the_microphone_in_place", async || {
        let stage = Stage::start(&[]).await;
        let names = ["Ann", "Bo", "Cy"];
        let mut browsers = Vec::new();
        for name in names {
            browsers.push(stage.join(name).await);
        }
        for (b, name) in browsers.iter().zip(names) {
            wait_decoding(b, name, 2, 2).await;
        }
        let (ann, bo, cy) = (&browsers[0], &browsers[1], &browsers[2]);
        let (ann_id, bo_id) = (participant_id(ann).await, participant_id(bo).await);

        // Bo and Cy mute with the keyboard; Ann's microphone alone beeps, and Cy sees her talking.
        for b in [bo, cy] {
            press(b, "m").await;
            wait_true(
                b,
                "the M key muted",
                "return document.getElementById('mic').getAttribute('aria-pressed') === 'true'",
            )
            .await;
        }
        wait_speaker(cy, "Cy", &ann_id, "Ann").await;
        // Ann mutes, Bo unmutes: the highlight follows.
        click_button(ann, "mic").await;
        press(bo, "m").await;
        wait_speaker(cy, "Cy", &bo_id, "Bo").await;
        wait_speaker(ann, "Ann", &bo_id, "Bo").await;

        // Bo switches microphones in Settings: a new track in the same sender, the same peer connection, no new
        // offer, and Cy still hears Bo.
        bo.eval("window.before = { pc: window.sluiceApp.client.pc, sdp: window.sluiceApp.client.pc.remoteDescription.sdp, track: window.sluiceApp.client.pc.getSenders().find((s) => s.track && s.track.kind === 'audio').track.id }; return true").await;
        click_button(bo, "settings-toggle").await;
        wait_true(
            bo,
            "Settings lists microphones",
            "return document.getElementById('settings-mic').options.length > 0",
        )
        .await;
        let mics = bo.eval("return [...document.getElementById('settings-mic').options].map((o) => o.text)").await;
        println!("Bo's microphones: {mics}");
        bo.eval("const s = document.getElementById('settings-mic'); s.selectedIndex = s.options.length - 1; s.dispatchEvent(new Event('change')); return true").await;
        wait_true(bo, "the microphone was switched", "return window.sluiceApp.deviceSwitches === 1").await;
        let kept = bo
            .eval("const pc = window.sluiceApp.client.pc; return [pc === window.before.pc, pc.remoteDescription.sdp === window.before.sdp, pc.getSenders().find((s) => s.track && s.track.kind === 'audio').track.id !== window.before.track, pc.connectionState]")
            .await;
        assert_eq!(kept, json!([true, true, true, "connected"]), "same connection, same SDP, a new track");
        bo.eval("document.querySelector('#settings button[value=close]').click(); return true").await;
        assert_growing(cy, "Cy after Bo switched microphones").await;
        wait_speaker(cy, "Cy after the switch", &bo_id, "Bo").await;
        for b in browsers {
            b.close().await;
        }
    });
}

async fn click_button(browser: &Browser, id: &str) {
    browser.eval(&format!("document.getElementById('{id}').click(); return true")).await;
}
