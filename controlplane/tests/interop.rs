//! What other WebRTC stacks send, at protocol level: an answer without `a=ssrc` (the stream is named by its MID
//! header extension), a rejected section full of attributes, and a client that answers the same unusable way
//! again and again (bounded, with backoff, then closed with 4016).

mod harness;

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_controlplane::store::Role;

use harness::*;

/// `answer` with its `a=ssrc` and `a=ssrc-group` lines taken out of publish sections and, when `mid_extension`,
/// the offer's MID header extension accepted there instead.
fn without_ssrcs(offer: &serde_json::Value, answer: &str, mid_extension: bool) -> String {
    let mid_line = offer["sdp"]
        .as_str()
        .unwrap()
        .lines()
        .find(|l| l.starts_with("a=extmap:") && l.ends_with("urn:ietf:params:rtp-hdrext:sdes:mid"))
        .expect("the offer proposes the MID extension")
        .to_string();
    let mut out = String::new();
    for line in answer.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with("a=ssrc") {
            continue;
        }
        out += line;
        out += "\r\n";
        if mid_extension && line == "a=sendonly" {
            out += &mid_line;
            out += "\r\n";
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_without_ssrcs_publishes_by_mid_when_the_mid_extension_is_accepted() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({"simulcast": false})).await;
    let (mut viewer, _) = h.joined(&meeting, "ann", &[]).await;
    let mut gst = h.client().await;
    let token = h.token(&meeting, "gst", Role::Participant);
    gst.send(
        json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token, "publish": ["microphone", "camera"]}),
    )
    .await;
    gst.expect("welcome").await;
    let offer = gst.expect("offer").await;
    let named = without_ssrcs(&offer, &answer_for(&offer, 10), true);
    gst.send(json!({"type": "answer", "revision": offer["revision"], "sdp": named})).await;
    let mut sources = vec![];
    for _ in 0..2 {
        let added = viewer.expect("track_added").await;
        sources.push(added["track"]["source"].as_str().unwrap().to_string());
    }
    sources.sort();
    assert_eq!(sources, ["camera", "microphone"]);

    // Without the extension either, nothing names the streams: nothing is published, and the error says why.
    let mut bare = h.client().await;
    let token = h.token(&meeting, "bare", Role::Participant);
    bare.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token, "publish": ["microphone"]})).await;
    let offer = bare.expect("offer").await;
    let answer = without_ssrcs(&offer, &answer_for(&offer, 20), false);
    bare.send(json!({"type": "answer", "revision": offer["revision"], "sdp": answer})).await;
    let refused = bare.expect("error").await;
    assert_eq!(refused["code"], "bad_sdp", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("MID header extension"), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_section_is_read_for_its_mid_only() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut c, _) = h.joined(&meeting, "ann", &["microphone", "camera"]).await;
    let offer = c.expect("offer").await;
    // The browser rejects the camera, and says things in that section we would refuse in a live one.
    let answer = answer_for(&offer, 10).replacen("m=video 9 ", "m=video 0 ", 1);
    let answer = answer.replace("a=setup:active\r\na=mid:1", "a=setup:actpass\r\na=mid:1\r\na=ssrc:notanumber x");
    c.send(json!({"type": "answer", "revision": offer["revision"], "sdp": answer})).await;
    // Accepted: the next offer (or none) comes without an error, and the camera's section is closed.
    c.send(json!({"type": "publish", "source": "screen"})).await;
    let next = c.expect("offer").await;
    assert!(c.seen.iter().all(|m| m["type"] != "error"), "{:?}", c.seen);
    let camera = next["sections"].as_array().unwrap().iter().find(|s| s["source"] == "camera").unwrap().clone();
    assert_eq!(camera["role"], "closed", "{next}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_keeps_answering_badly_is_closed_after_a_bounded_backoff() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut c, _) = h.joined(&meeting, "loop", &["microphone"]).await;
    let mut offer = c.expect("offer").await;
    let mut offers_at = vec![Instant::now()];
    let closed = loop {
        c.send(json!({"type": "answer", "revision": offer["revision"], "sdp": "v=0\r\nnot an answer\r\n"})).await;
        let m = loop {
            let m = c.next().await;
            if m["type"] == "offer" || m["type"] == "close" {
                break m;
            }
        };
        if m["type"] == "close" {
            break m;
        }
        offers_at.push(Instant::now());
        offer = m;
        assert!(offers_at.len() <= 5, "no more than 3 fresh offers after refusals");
    };
    assert_eq!(closed["code"], 4016, "{closed}");
    assert!(closed["reason"].as_str().unwrap().contains("answers in a row"), "{closed}");
    assert_eq!(offers_at.len(), 4, "the first offer and three retries");
    let gaps: Vec<Duration> = offers_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(200), "a first backoff: {gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(800) && gaps[2] > gaps[1], "doubling: {gaps:?}");
}
