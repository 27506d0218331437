//! Breakout rooms in real Chromium: a host runs them from the web client; after opening, each of four people
//! decodes exactly their room-mate, on the same `RTCPeerConnection`; closing brings everyone back to decoding
//! the other three; a timer of a few seconds ends the rooms by itself.

use super::*;

/// Per inbound video stream: its MID, the participant the server says it carries, and frames decoded.
const VIDEO_BY_PUBLISHER: &str = r#"
    const app = window.sluiceApp;
    const pc = app.client && app.client.pc;
    if (!pc) return [];
    return pc.getStats().then((report) => {
        const out = [];
        report.forEach((s) => {
            if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
            const info = s.mid !== undefined ? app.client.sections.get(s.mid) : null;
            out.push({mid: s.mid, from: (info && info.participant_id) || null, frames: s.framesDecoded || 0});
        });
        return out;
    });
"#;

/// The publishers whose video a browser is decoding now: frames grew over one second.
async fn decoding_from(browser: &Browser) -> Vec<String> {
    let frames = |v: Value| -> std::collections::HashMap<String, (String, u64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let mid = s["mid"].as_str().unwrap_or_default().to_string();
                (mid, (s["from"].as_str().unwrap_or_default().to_string(), s["frames"].as_u64().unwrap_or(0)))
            })
            .collect()
    };
    let before = frames(browser.eval(VIDEO_BY_PUBLISHER).await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let after = frames(browser.eval(VIDEO_BY_PUBLISHER).await);
    let mut from: Vec<String> = after
        .iter()
        .filter(|(mid, (_, n))| *n > before.get(*mid).map_or(0, |b| b.1))
        .map(|(_, (who, _))| who.clone())
        .collect();
    from.sort();
    from.dedup();
    from
}

/// Waits until `browser` decodes video from exactly `want` (bounded).
async fn wait_decoding_exactly(browser: &Browser, who: &str, want: &[&String]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let deadline = Instant::now() + WAIT;
    loop {
        let now = decoding_from(browser).await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{who} decodes {now:?}, not {want:?}");
    }
}

/// RTP packets the SFU forwarded per datagram it received, over two seconds (from `/metrics`): it scales with
/// how many receive each packet (three people when four are together, one in rooms of two).
async fn forwarding_ratio(base: &str) -> f64 {
    let sample = || async {
        let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
        let sum = |name: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        (sum("sluice_dataplane_rtp_forwarded_total"), sum("sluice_dataplane_datagrams_received_total"))
    };
    let (f0, r0) = sample().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (f1, r1) = sample().await;
    (f1 - f0) / (r1 - r0).max(1.0)
}

async fn room(browser: &Browser) -> String {
    browser.eval("return window.sluiceApp.room").await.as_str().unwrap_or_default().to_string()
}

#[test]
fn breakout_rooms_move_people_on_the_same_connection() {
    in_fresh_netns("breakouts::breakout_rooms_move_people_on_the_same_connection", async || {
        let dir = tempfile::tempdir().unwrap();
        let (_server, base) = start_server_with(dir.path(), &[]);
        let (_chromedriver, driver) = start_chromedriver().await;
        let (id, host_token) = create_meeting(&base, "Hana").await;
        let hana = Browser::launch(&driver).await;
        hana.goto(&format!("{base}/m/{id}?name=Hana#token={host_token}")).await;
        let mut people = vec![("Hana", hana)];
        for name in ["Ann", "Bob", "Cy"] {
            let b = Browser::launch(&driver).await;
            b.goto(&format!("{base}/m/{id}?name={name}")).await;
            people.push((name, b));
        }
        let mut ids = Vec::new();
        for (name, b) in &people {
            wait_decoding(b, name, 3, 3).await;
            ids.push(participant_id(b).await);
            b.eval("window.__pcBefore = window.sluiceApp.client.pc; return true").await;
        }

        let together = forwarding_ratio(&base).await;
        // The host creates two rooms and puts Hana with Ann, Bob with Cy, from the web client.
        let hana = &people[0].1;
        hana.eval(
            "document.getElementById('breakouts-toggle').click(); \
             document.getElementById('breakout-count').value = '2'; \
             document.getElementById('breakout-create').click(); return true",
        )
        .await;
        wait_true(
            hana,
            "the rooms are listed",
            "return document.querySelectorAll('#breakout-rooms .breakout-room').length === 2",
        )
        .await;
        for (who, room) in [(0, "Room 1"), (1, "Room 1"), (2, "Room 2"), (3, "Room 2")] {
            let assign = format!(
                "const s = document.querySelector('select.breakout-assign[data-participant=\"{}\"]'); if (!s) return false; \
                 const o = [...s.options].find((o) => o.textContent === '{room}'); if (!o) return false; \
                 if (s.value !== o.value) {{ s.value = o.value; s.dispatchEvent(new Event('change')); }} return true;",
                ids[who]
            );
            wait_true(hana, &format!("assign {who} to {room}"), &assign).await;
            // Each assignment re-renders the panel from the server's answer: wait for it before the next.
            wait_true(
                hana,
                "the assignment shows",
                &format!(
                    "const s = document.querySelector('select.breakout-assign[data-participant=\"{}\"]'); \
                 return !!s && s.options[s.selectedIndex].textContent === '{room}'",
                    ids[who]
                ),
            )
            .await;
        }
        let before: Vec<Vec<String>> = {
            let mut all = Vec::new();
            for (_, b) in &people {
                let v = b.eval(VIDEO_BY_PUBLISHER).await;
                all.push(
                    v.as_array().unwrap().iter().map(|s| s["mid"].as_str().unwrap_or_default().to_string()).collect(),
                );
            }
            all
        };
        let opened = Instant::now();
        hana.eval("document.getElementById('breakout-open').click(); return true").await;

        // Ann's first frame from her new room-mate, on a section the move added.
        let ann = &people[1].1;
        let first_frame = loop {
            let v = ann.eval(VIDEO_BY_PUBLISHER).await;
            let fresh = v.as_array().unwrap().iter().any(|s| {
                s["from"] == ids[0].as_str()
                    && !before[1].contains(&s["mid"].as_str().unwrap_or_default().to_string())
                    && s["frames"].as_u64().unwrap_or(0) > 0
            });
            if fresh {
                break opened.elapsed();
            }
            assert!(opened.elapsed() < WAIT, "Ann decoded nothing from Hana's new section");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        println!(
            "breakouts: {} ms from the host's open to Ann's first frame from her room-mate",
            first_frame.as_millis()
        );

        let pairs = [(0, 1), (1, 0), (2, 3), (3, 2)];
        for (me, mate) in pairs {
            let (name, b) = &people[me];
            wait_decoding_exactly(b, name, &[&ids[mate]]).await;
            assert_ne!(room(b).await, "main", "{name} is in a breakout room");
            assert_eq!(
                b.eval("return window.__pcBefore === window.sluiceApp.client.pc").await,
                true,
                "{name} kept the connection"
            );
        }

        // The dataplane forwards within rooms only: each packet to one room-mate, not to three people.
        let apart = forwarding_ratio(&base).await;
        println!(
            "breakouts: RTP forwarded per datagram received: {together:.2} all together, {apart:.2} in rooms of two"
        );
        // Each packet went to three people, now to one (the received count includes RTCP, so not exactly 3x).
        assert!(apart * 2.0 < together, "forwarding ratio {together:.2} together, {apart:.2} apart");

        // Closing: after the countdown everyone is back and decodes the other three.
        hana.eval("document.getElementById('breakout-close').click(); return true").await;
        for (me, (name, b)) in people.iter().enumerate() {
            wait_true(b, &format!("{name} is back"), "return window.sluiceApp.room === 'main'").await;
            let others: Vec<&String> = ids.iter().enumerate().filter(|(i, _)| *i != me).map(|(_, id)| id).collect();
            wait_decoding_exactly(b, name, &others).await;
            assert_eq!(b.eval("return window.__pcBefore === window.sluiceApp.client.pc").await, true);
        }

        // A timer of three seconds closes the rooms by itself (opened through the API, with a 1 s countdown).
        let open = reqwest::Client::new()
            .post(format!("{base}/meetings/{id}/breakouts/open"))
            .bearer_auth(&host_token)
            .json(&json!({"duration_secs": 3, "countdown_secs": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(open.status(), 204);
        for (name, b) in &people {
            wait_true(b, &format!("{name} moved by the timer's rooms"), "return window.sluiceApp.room !== 'main'")
                .await;
        }
        let started = Instant::now();
        for (name, b) in &people {
            wait_true(b, &format!("{name} back when the timer ends"), "return window.sluiceApp.room === 'main'").await;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the timer closed the rooms in {:?}", started.elapsed());
        for (_, b) in people {
            b.close().await;
        }
    });
}
