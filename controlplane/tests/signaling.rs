//! The signaling protocol without a browser: a real HTTP server and real dataplane workers in this process,
//! WebSocket clients that speak `docs/signaling.md` and answer offers with SDP written here (`harness/`).

mod harness;

use futures::SinkExt;
use serde_json::{Value, json};
use sluice_controlplane::store::Role;
use tokio_tungstenite::tungstenite::Message;

use harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_camera_is_offered_three_simulcast_layers_and_subscribers_choose_one() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut a, _) = h.joined(&meeting, "ann", &["microphone", "camera"]).await;
    let offer = a.expect("offer").await;
    let sdp = offer["sdp"].as_str().unwrap();
    let media: Vec<&str> = sdp.split("\r\nm=").skip(1).collect();
    assert!(!media[0].contains("a=simulcast"), "not for audio");
    assert!(media[1].contains("a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n"));
    // Answered as Chrome does: the layers by RID, no SSRC for the camera.
    let answer = answer_for(&offer, 10)
        .replace("a=ssrc:11 cname:x\r\n", "a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n");
    assert!(answer.contains("simulcast:send"), "{answer}");
    a.send(json!({"type": "answer", "revision": offer["revision"], "sdp": answer})).await;
    let (mut b, welcome) = h.joined(&meeting, "ben", &[]).await;
    // Ann's answer may still be in the room's hands when Ben joins: her tracks come in welcome or after it.
    let mut tracks = welcome["participants"][0]["tracks"].as_array().cloned().unwrap_or_default();
    while tracks.len() < 2 {
        tracks.push(b.expect("track_added").await["track"].clone());
    }
    let layers = |source: &str| tracks.iter().find(|t| t["source"] == source).unwrap()["layers"].clone();
    assert_eq!((layers("camera"), layers("microphone")), (json!(3), json!(1)));
    let camera = tracks.iter().find(|t| t["source"] == "camera").unwrap()["track_id"].as_str().unwrap().to_string();
    let offer_b = b.expect("offer").await;
    b.answer(&offer_b, 20).await;
    b.send(json!({"type": "set_layer", "track_id": camera, "layer": 0})).await;
    b.send(json!({"type": "set_layer", "track_id": camera, "layer": 3})).await;
    // The room handles messages in order: an error for the valid request would come first.
    let e = b.expect("error").await;
    assert_eq!(e["code"], "bad_message", "{e}");
    assert!(e["message"].as_str().unwrap().contains("has 3 layer(s)"), "{e}");
    b.send(json!({"type": "set_layer", "track_id": "t_nope", "layer": 0})).await;
    assert_eq!(b.expect("error").await["code"], "bad_state");

    // A screen share is not simulcast, and neither is anything in a meeting that turned it off.
    a.send(json!({"type": "publish", "source": "screen"})).await;
    let screen = a.expect("offer").await;
    let last = screen["sdp"].as_str().unwrap().split("\r\nm=").last().unwrap().to_string();
    assert!(last.starts_with("video") && !last.contains("a=simulcast"), "{last}");
    let (off, _) = h.meeting(json!({"simulcast": false})).await;
    let (mut c, _) = h.joined(&off, "cat", &["camera"]).await;
    let offer_c = c.expect("offer").await;
    assert!(!offer_c["sdp"].as_str().unwrap().contains("a=simulcast"));

    // A meeting that asks for SVC: the camera is offered VP9 first and no simulcast, and its section names the
    // scalability mode; the microphone's names none.
    let (svc, _) = h.meeting(json!({"video_svc": true})).await;
    let (mut d, _) = h.joined(&svc, "dee", &["microphone", "camera"]).await;
    let offer_d = d.expect("offer").await;
    let camera = offer_d["sdp"].as_str().unwrap().split("\r\nm=").last().unwrap().to_string();
    assert!(camera.starts_with("video 9 UDP/TLS/RTP/SAVPF 98 ") && !camera.contains("a=simulcast"), "{camera}");
    assert_eq!(offer_d["sections"][1]["scalability_mode"], "L3T3_KEY");
    assert_valid("server", &offer_d);
    assert_eq!(offer_d["sections"][0].get("scalability_mode"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_gets_a_welcome_an_offer_and_the_workers_candidates() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut a, welcome) = h.joined(&meeting, "ann", &["microphone", "camera"]).await;
    assert_eq!(welcome["v"], 1);
    assert_eq!(welcome["meeting_id"], meeting.as_str());
    assert_eq!(welcome["participants"], json!([]));
    assert_eq!((&welcome["grants"]["microphone"], &welcome["grants"]["camera"]), (&json!(true), &json!(true)));
    let offer = a.expect("offer").await;
    assert_eq!(offer["revision"], 1);
    let sections = offer["sections"].as_array().unwrap();
    assert_eq!(sections.len(), 2);
    assert_eq!((sections[0]["role"].as_str(), sections[0]["source"].as_str()), (Some("publish"), Some("microphone")));
    assert_eq!((sections[1]["role"].as_str(), sections[1]["source"].as_str()), (Some("publish"), Some("camera")));
    let sdp = offer["sdp"].as_str().unwrap();
    assert!(sdp.contains("a=ice-lite") && sdp.contains("a=group:BUNDLE 0 1") && sdp.contains("a=setup:actpass"));
    assert!(sdp.contains(&format!("a=fingerprint:sha-256 {}", h.runtime.fingerprint())));
    for codec in ["opus/48000/2", "VP8/90000", "VP9/90000", "H264/90000"] {
        assert!(sdp.contains(codec), "{codec} offered");
    }
    // Trickle: the worker's candidate, then the end of candidates.
    let candidate = a.expect("candidate").await;
    let worker_ports: Vec<u16> = (0..h.runtime.workers()).map(|w| h.runtime.local_addr(w).unwrap().port()).collect();
    let line = candidate["candidate"].as_str().unwrap();
    assert!(line.contains("127.0.0.1") && line.ends_with("typ host"), "{line}");
    let port: u16 = line.split(' ').nth(5).unwrap().parse().unwrap();
    assert!(worker_ports.contains(&port), "{line} names a worker's port {worker_ports:?}");
    assert_eq!(a.expect("candidate").await["candidate"], Value::Null);
    let rows = h.store.participants(&meeting, true).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].left_at.is_none() && rows[0].connection_id.starts_with("c_"));
}

#[tokio::test(flavor = "multi_thread")]
async fn published_tracks_reach_the_others_by_renegotiation_and_leaving_is_seen() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut a, _) = h.joined(&meeting, "ann", &["microphone", "camera"]).await;
    let offer = a.expect("offer").await;
    a.answer(&offer, 1000).await;

    let (mut b, welcome) = h.joined(&meeting, "ben", &["microphone"]).await;
    let ann = &welcome["participants"][0];
    assert_eq!(ann["name"], "ann");
    let sources: Vec<&str> = ann["tracks"].as_array().unwrap().iter().map(|t| t["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["microphone", "camera"], "Ann's answer published both");
    let offer_b = b.expect("offer").await;
    let roles: Vec<(&str, &str)> = offer_b["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["role"].as_str().unwrap(), s["source"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, [("publish", "microphone"), ("subscribe", "microphone"), ("subscribe", "camera")]);
    let sdp = offer_b["sdp"].as_str().unwrap();
    assert!(sdp.contains("a=sendonly") && sdp.contains("a=ssrc-group:FID"), "a video downlink has RTX");
    assert!(sdp.contains(&format!("a=msid:{} ", ann["participant_id"].as_str().unwrap())));
    assert_eq!(a.expect("participant_joined").await["participant"]["name"], "ben");
    b.answer(&offer_b, 2000).await;

    // Ben's microphone reaches Ann: an event, then a new offer with a subscribe section.
    let added = a.expect("track_added").await;
    assert_eq!(added["track"]["source"], "microphone");
    let offer_a2 = a.expect("offer").await;
    assert_eq!(offer_a2["revision"], 2);
    let last = offer_a2["sections"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["role"].as_str(), last["track_id"].clone()),
        (Some("subscribe"), added["track"]["track_id"].clone())
    );
    a.answer(&offer_a2, 1000).await;

    // Ben leaves: Ann is told, her section for his track is closed, his row gets left_at.
    b.send(json!({"type": "leave"})).await;
    let left = a.expect("participant_left").await;
    assert_eq!(left["reason"], "left");
    let removed = a.expect("track_removed").await;
    assert_eq!(removed["track_id"], added["track"]["track_id"]);
    let offer_a3 = a.expect("offer").await;
    let closed = offer_a3["sections"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(closed["role"], "closed");
    assert!(offer_a3["sdp"].as_str().unwrap().contains("m=audio 0 "), "the closed section is rejected");
    assert!(offer_a3["sdp"].as_str().unwrap().contains("a=group:BUNDLE 0 1\r\n"), "and out of the BUNDLE group");
    let rows = h.store.participants(&meeting, false).await.unwrap();
    let ben = rows.iter().find(|r| r.name == "ben").unwrap();
    assert!(ben.left_at.is_some(), "left_at is set");
}

#[tokio::test(flavor = "multi_thread")]
async fn offers_wait_for_the_outstanding_answer_so_they_never_cross() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut a, _) = h.joined(&meeting, "ann", &["microphone"]).await;
    let first = a.expect("offer").await;
    // Ann asks to share her screen before answering: no second offer until the first is answered.
    a.send(json!({"type": "publish", "source": "screen"})).await;
    a.send(json!({"type": "ping", "nonce": 7})).await;
    assert_eq!(a.expect("pong").await["nonce"], 7, "nothing but candidates came before the pong");
    // A stale revision is refused and changes nothing.
    a.send(json!({"type": "answer", "revision": 9, "sdp": answer_for(&first, 1)})).await;
    let stale = a.expect("error").await;
    assert_eq!(stale["code"], "stale_answer");
    a.answer(&first, 1).await;
    let second = a.expect("offer").await;
    assert_eq!(second["revision"], 2);
    let screen = &second["sections"][1];
    assert_eq!((screen["role"].as_str(), screen["source"].as_str()), (Some("publish"), Some("screen")));
    a.answer(&second, 1).await;
    a.send(json!({"type": "publish", "source": "screen"})).await;
    assert_eq!(a.expect("error").await["code"], "bad_state", "already publishing the screen");
    a.send(json!({"type": "unpublish", "source": "screen"})).await;
    let third = a.expect("offer").await;
    assert_eq!(third["sections"][1]["role"], "closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_messages_get_an_error_that_names_the_problem() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut a, _) = h.joined(&meeting, "ann", &["microphone"]).await;
    let offer = a.expect("offer").await;
    let cases: [(&str, &str, &str); 6] = [
        ("not json", "bad_message", "expected"),
        (r#"{"no_type": 1}"#, "bad_message", "\"type\""),
        (r#"{"type": "dance"}"#, "bad_message", "unknown variant `dance`"),
        (r#"{"type": "publish"}"#, "bad_message", "missing field `source`"),
        (r#"{"type": "publish", "source": "hologram"}"#, "bad_message", "unknown variant `hologram`"),
        (r#"{"type": "mute", "source": "camera", "muted": true, "extra": 1}"#, "bad_message", "unknown field `extra`"),
    ];
    for (text, code, says) in cases {
        a.send_raw(text).await;
        let error = a.expect("error").await;
        assert_eq!(error["code"], code, "{text}: {error}");
        assert!(error["message"].as_str().unwrap().contains(says), "{text}: {error}");
    }
    // A message six times the server's read buffer still arrives whole.
    a.send_raw(&format!(r#"{{"type": "dance", "pad": "{}"}}"#, "x".repeat(100_000))).await;
    let error = a.expect("error").await;
    assert!(error["message"].as_str().unwrap().contains("unknown variant `dance`"), "{error}");
    a.send(json!({"type": "answer", "revision": offer["revision"], "sdp": "v=0\r\na=setup:active\r\n"})).await;
    let error = a.expect("error").await;
    assert_eq!(error["code"], "bad_sdp");
    assert!(error["message"].as_str().unwrap().contains("fingerprint"), "{error}");
    // A refused answer is followed by a fresh offer, so negotiation goes on.
    let again = a.expect("offer").await;
    assert_eq!(again["revision"], 2);
    let passive = answer_for(&again, 1).replace("setup:active", "setup:passive");
    a.send(json!({"type": "answer", "revision": 2, "sdp": passive})).await;
    assert!(a.expect("error").await["message"].as_str().unwrap().contains("setup:passive"));
    let third = a.expect("offer").await;
    a.answer(&third, 1).await;
    a.send(json!({"type": "ping", "nonce": 5})).await;
    assert_eq!(a.expect("pong").await["nonce"], 5);
    assert!(a.seen.iter().filter(|m| m["type"] == "offer").count() == 3, "no offer after a good answer");
    a.send(json!({"type": "mute", "source": "camera", "muted": true})).await;
    assert_eq!(a.expect("error").await["code"], "bad_state", "not publishing a camera");
    a.send(json!({"type": "end_meeting"})).await;
    assert_eq!(a.expect("error").await["code"], "forbidden", "a participant cannot end the meeting");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_joins_close_with_the_documented_codes() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({"max_participants": 1})).await;
    let (other, _) = h.meeting(json!({})).await;
    let good = h.token(&meeting, "ann", Role::Participant);
    let cases = [
        (json!({"type": "join", "v": 1, "meeting_id": meeting, "token": "x.y.z"}), 4001, "token is invalid"),
        (json!({"type": "join", "v": 1, "meeting_id": other, "token": good}), 4001, "another meeting"),
        (json!({"type": "join", "v": 2, "meeting_id": meeting, "token": good}), 4000, "version 2"),
        (json!({"type": "ping"}), 4000, "first message must be join"),
        (
            json!({"type": "join", "v": 1, "meeting_id": meeting, "token": h.token(&meeting, "vic", Role::Viewer), "publish": ["camera"]}),
            4003,
            "publishing",
        ),
        (
            json!({"type": "join", "v": 1, "meeting_id": "zzz-zzzz-zzz", "token": h.token("zzz-zzzz-zzz", "x", Role::Participant)}),
            4004,
            "does not exist",
        ),
    ];
    for (join, code, says) in cases {
        let mut c = h.client().await;
        c.send(join.clone()).await;
        let closed = c.next().await;
        assert_eq!(closed["type"], "close", "{join}: {closed}");
        assert_eq!(closed["code"], code, "{join}: {closed}");
        assert!(closed["reason"].as_str().unwrap().contains(says), "{join}: {closed}");
    }
    // The meeting holds one participant; its recorder takes no seat, before or after.
    let mut recorder = h.client().await;
    let token = h.token(&meeting, "recorder-1", Role::Recorder);
    recorder.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token})).await;
    recorder.expect("welcome").await;
    let (_a, _) = h.joined(&meeting, "ann", &[]).await;
    drop(recorder);
    let mut recorder = h.client().await;
    let token = h.token(&meeting, "recorder-2", Role::Recorder);
    recorder.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token})).await;
    recorder.expect("welcome").await;
    let mut c = h.client().await;
    c.send(
        json!({"type": "join", "v": 1, "meeting_id": meeting, "token": h.token(&meeting, "ben", Role::Participant)}),
    )
    .await;
    assert_eq!(c.next().await["code"], 4009);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_user_joining_again_replaces_the_first_connection() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut a, _) = h.joined(&meeting, "ann", &[]).await;
    let (mut watcher, _) = h.joined(&meeting, "ben", &[]).await;
    let (_a2, welcome) = h.joined(&meeting, "ann", &[]).await;
    assert_eq!(welcome["participants"].as_array().unwrap().len(), 1, "only Ben besides the new Ann");
    let closed = loop {
        let m = a.next().await;
        if m["type"] == "close" {
            break m;
        }
    };
    assert_eq!(closed["code"], 4010);
    assert_eq!(watcher.expect("participant_left").await["reason"], "replaced");
    assert_eq!(watcher.expect("participant_joined").await["participant"]["name"], "ann");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_ends_the_meeting_for_everyone() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let (mut a, _) = h.joined(&meeting, "ann", &[]).await;
    let http = reqwest::Client::new();
    let url = format!("{}/meetings/{meeting}", h.base);
    let ann_token = h.token(&meeting, "ann2", Role::Participant);
    let r = http.delete(&url).bearer_auth(&ann_token).send().await.unwrap();
    assert_eq!(r.status(), 403, "a participant token cannot end it");
    let r = http.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.delete(&url).bearer_auth(&host_token).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(a.expect("meeting_ended").await["reason"], "the host ended the meeting");
    assert_eq!(a.next().await["code"], 4011);
    assert_eq!(http.delete(&url).bearer_auth(&host_token).send().await.unwrap().status(), 410);
    let join = http.post(format!("{url}/join")).json(&json!({"name": "late"})).send().await.unwrap();
    assert_eq!(join.status(), 410);
    let mut late = h.client().await;
    late.send(
        json!({"type": "join", "v": 1, "meeting_id": meeting, "token": h.token(&meeting, "late", Role::Participant)}),
    )
    .await;
    assert_eq!(late.next().await["code"], 4011);
    assert!(h.store.participants(&meeting, true).await.unwrap().is_empty(), "everyone's left_at is set");
}

#[tokio::test(flavor = "multi_thread")]
async fn join_tickets_are_participant_tokens_for_open_meetings() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let http = reqwest::Client::new();
    let r =
        http.post(format!("{}/meetings/{meeting}/join", h.base)).json(&json!({"name": " Zoe "})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ticket: Value = r.json().await.unwrap();
    assert_eq!(ticket["role"], "participant");
    assert!(ticket["signaling_url"].as_str().unwrap().ends_with("/signaling"));
    let claims = h.tokens.verify(ticket["participant_token"].as_str().unwrap(), &meeting).unwrap();
    assert_eq!((claims.name.as_str(), claims.role, claims.grants.host), ("Zoe", Role::Participant, false));
    let r = http.post(format!("{}/meetings/{meeting}/join", h.base)).json(&json!({"name": ""})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r =
        http.post(format!("{}/meetings/bcd-fghj-kmn/join", h.base)).json(&json!({"name": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_flood_closes_the_socket() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut a, _) = h.joined(&meeting, "ann", &[]).await;
    // The bucket holds 50 and refills 20 a second: 70 at once is too many. (The server reads, and discards,
    // the rest while it closes, so every send here succeeds.)
    for n in 0..70 {
        a.ws.send(Message::text(json!({"type": "ping", "nonce": n}).to_string())).await.unwrap();
    }
    let closed = loop {
        let m = a.next().await;
        if m["type"] == "close" {
            break m;
        }
    };
    assert_eq!(closed["code"], 4029, "{closed}");
}

fn schema(direction: &str, kind: &str) -> jsonschema::Validator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../docs/schemas/signaling/{direction}/{kind}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn assert_valid(direction: &str, message: &Value) {
    let kind = message["type"].as_str().unwrap();
    let validator = schema(direction, kind);
    let errors: Vec<String> = validator.iter_errors(message).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{direction}/{kind}.json refuses {message}: {errors:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_matches_its_documented_json_schema() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let sent = |m: Value| {
        assert_valid("client", &m);
        m
    };
    let mut a = h.client().await;
    let token = h.token(&meeting, "ann", Role::Participant);
    a.send(sent(
        json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token, "publish": ["microphone", "camera"]}),
    ))
    .await;
    let offer = a.expect("offer").await;
    a.expect("candidate").await;
    let sdp = answer_for(&offer, 10);
    a.send(sent(json!({"type": "answer", "revision": offer["revision"], "sdp": sdp}))).await;
    a.send(sent(
        json!({"type": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdp_mid": "0"}),
    ))
    .await;
    a.send(sent(json!({"type": "ping", "nonce": 1}))).await;
    a.expect("pong").await;
    let (mut b, _) = h.joined(&meeting, "ben", &[]).await;
    let offer_b = b.expect("offer").await;
    b.answer(&offer_b, 20).await;
    a.send(sent(json!({"type": "mute", "source": "camera", "muted": true}))).await;
    let muted = b.expect("track_muted").await;
    b.send(sent(json!({"type": "set_layer", "track_id": muted["track_id"], "layer": 0}))).await;
    a.send(sent(json!({"type": "publish", "source": "screen"}))).await;
    let screen_offer = a.expect("offer").await;
    a.answer(&screen_offer, 10).await;
    b.expect("track_added").await;
    a.send(sent(json!({"type": "unpublish", "source": "screen"}))).await;
    b.expect("track_removed").await;
    a.send(json!({"type": "publish", "source": "screen"})).await;
    a.send(json!({"type": "publish", "source": "screen"})).await;
    a.expect("error").await;
    let mut c = h.client().await;
    c.send(sent(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": host_token}))).await;
    let host_id = c.expect("welcome").await["participant_id"].clone();
    a.expect("participant_joined").await;
    // Chat and polls.
    a.send(sent(json!({"type": "chat_send", "body": "hi"}))).await;
    let chat_id = c.expect("chat").await["message"]["id"].clone();
    a.send(sent(json!({"type": "chat_send", "body": "just you", "to": host_id}))).await;
    c.expect("chat").await;
    a.send(sent(json!({"type": "chat_edit", "message_id": chat_id, "body": "hello"}))).await;
    c.expect("chat_updated").await;
    a.send(sent(json!({"type": "chat_delete", "message_id": chat_id}))).await;
    c.expect("chat_updated").await;
    c.send(sent(json!({"type": "chat_mode", "mode": "everyone"}))).await;
    a.expect("chat_mode").await;
    c.send(sent(
        json!({"type": "poll_create", "question": "Q?", "options": ["x", "y"], "anonymous": false, "results": "live"}),
    ))
    .await;
    let poll_id = a.expect("poll").await["poll"]["id"].clone();
    a.send(sent(json!({"type": "poll_vote", "poll_id": poll_id, "option": 1}))).await;
    a.expect("poll").await;
    c.send(sent(json!({"type": "poll_close", "poll_id": poll_id}))).await;
    a.expect("poll").await;
    // Breakout rooms.
    let a_id = a.seen.iter().find(|m| m["type"] == "welcome").unwrap()["participant_id"].clone();
    c.send(sent(json!({"type": "breakout_create", "rooms": ["One"]}))).await;
    let room = c.expect("breakouts").await["rooms"][0]["room_id"].clone();
    c.send(sent(json!({"type": "breakout_create", "count": 1}))).await;
    let room2 = c.expect("breakouts").await["rooms"][0]["room_id"].clone();
    assert_ne!(room, room2);
    c.send(sent(json!({"type": "breakout_assign", "participant_id": a_id, "room_id": room2}))).await;
    c.send(sent(json!({"type": "breakout_assign_random"}))).await;
    c.send(sent(json!({"type": "breakout_open", "duration_secs": 600, "allow_return": true, "countdown_secs": 0})))
        .await;
    a.expect("room_changed").await;
    a.expect("breakout_timer").await;
    c.send(sent(json!({"type": "breakout_extend", "secs": 60}))).await;
    c.send(sent(json!({"type": "breakout_broadcast", "text": "hello rooms"}))).await;
    a.expect("broadcast").await;
    a.send(sent(json!({"type": "ask_help"}))).await;
    c.expect("help_requested").await;
    a.send(sent(json!({"type": "breakout_join", "room_id": "main"}))).await;
    a.send(sent(json!({"type": "stats", "ttff_ms": 640.5, "candidate": {"type": "host", "protocol": "udp"},
        "tracks": [{"mid": "0", "direction": "outbound", "kind": "audio", "packets": 10, "bytes": 900, "rtt_ms": 3.5}]})))
    .await;
    a.expect("room_changed").await;
    c.send(sent(json!({"type": "breakout_close"}))).await;
    a.expect("breakouts_closing").await;
    b.send(sent(json!({"type": "leave"}))).await;
    a.expect("participant_left").await;
    c.send(sent(json!({"type": "end_meeting"}))).await;
    a.expect("meeting_ended").await;
    sent(json!({"type": "candidate", "candidate": null}));

    // The waiting room's messages, in a meeting that has one.
    let (lobby, lobby_host) = h.meeting(json!({"waiting_room": true, "title": "Interviews"})).await;
    let mut d = h.client().await;
    d.send(sent(
        json!({"type": "join", "v": 1, "meeting_id": lobby, "token": h.token(&lobby, "dee", Role::Participant)}),
    ))
    .await;
    let waiting = d.expect("waiting").await;
    let mut w = h.client().await;
    w.send(sent(
        json!({"type": "join", "v": 1, "meeting_id": lobby, "token": h.token(&lobby, "wes", Role::Participant)}),
    ))
    .await;
    w.expect("waiting").await;
    let mut e = h.client().await;
    e.send(sent(json!({"type": "join", "v": 1, "meeting_id": lobby, "token": lobby_host}))).await;
    e.expect("waiting_list").await;
    e.send(sent(json!({"type": "deny", "participant_id": "p_nobody"}))).await;
    e.expect("error").await;
    e.send(sent(json!({"type": "admit", "participant_id": waiting["participant_id"]}))).await;
    d.expect("welcome").await;
    e.send(sent(json!({"type": "admit_all"}))).await;
    w.expect("welcome").await;
    // Host controls, hands and reactions.
    let dee = waiting["participant_id"].clone();
    let wes = w.seen.iter().find(|m| m["type"] == "welcome").unwrap()["participant_id"].clone();
    e.send(sent(json!({"type": "mute_participant", "participant_id": dee, "source": "microphone"}))).await;
    d.expect("muted_by_host").await;
    e.send(sent(json!({"type": "ask_unmute", "participant_id": dee, "source": "microphone"}))).await;
    d.expect("unmute_requested").await;
    e.send(sent(json!({"type": "set_grants", "participant_id": dee, "grants": {"screen": false}}))).await;
    d.expect("role_changed").await;
    e.send(sent(json!({"type": "set_role", "participant_id": wes, "role": "co_host"}))).await;
    w.expect("role_changed").await;
    d.send(sent(json!({"type": "raise_hand", "raised": true}))).await;
    e.expect("hands").await;
    d.send(sent(json!({"type": "react", "emoji": "👏"}))).await;
    e.expect("reaction").await;
    e.send(sent(json!({"type": "lower_hands"}))).await;
    e.send(sent(json!({"type": "mute_all"}))).await;
    e.send(sent(json!({"type": "lock", "locked": true}))).await;
    d.expect("meeting_locked").await;
    e.send(sent(json!({"type": "send_to_waiting_room", "participant_id": dee}))).await;
    d.expect("waiting").await;
    e.send(sent(json!({"type": "remove_participant", "participant_id": dee}))).await;
    assert_eq!(d.expect("close").await["code"], 4014);

    let mut kinds = std::collections::BTreeSet::new();
    for m in a.seen.iter().chain(&b.seen).chain(&c.seen).chain(&d.seen).chain(&w.seen).chain(&e.seen) {
        assert_valid("server", m);
        kinds.insert(m["type"].as_str().unwrap().to_string());
    }
    let documented: std::collections::BTreeSet<String> =
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas/signaling/server"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".json").to_string())
            .collect();
    let unseen: Vec<&String> = documented.difference(&kinds).collect();
    // `connection` needs a real DTLS handshake: the browser tests see it.
    assert_eq!(unseen, ["connection"], "server messages this test did not see");
    assert!(kinds.is_subset(&documented), "a server message without a schema: {kinds:?}");
    // Schemas refuse what the server refuses.
    let refused = [
        json!({"type": "join", "v": 1}),
        json!({"type": "publish", "source": "hologram"}),
        json!({"type": "leave", "x": 1}),
    ];
    for m in refused {
        let kind = m["type"].as_str().unwrap();
        assert!(!schema("client", kind).is_valid(&m), "{m} should not validate");
        assert!(sluice_controlplane::signaling::protocol::parse_client_message(&m.to_string()).is_err());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_client_and_the_api_description_are_served_from_the_binary() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let get = |path: String| async move { reqwest::get(path).await.unwrap() };
    let landing = get(format!("{}/", h.base)).await;
    assert!(landing.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(landing.headers().contains_key("content-security-policy"));
    assert!(landing.text().await.unwrap().contains("Start a meeting"));
    let page = get(format!("{}/m/{meeting}", h.base)).await.text().await.unwrap();
    assert!(page.contains("/assets/app.js") && page.contains("id=\"share\""));
    let assets = ["sluice-client.js", "app.js", "landing.js", "style.css", "stats.js", "connection.js", "charts.js"];
    for asset in assets.into_iter().chain(["dashboard.js", "dashboard.css"]) {
        let r = get(format!("{}/assets/{asset}", h.base)).await;
        assert_eq!(r.status(), 200, "{asset}");
    }
    for path in ["/dashboard", "/dashboard/m/abc-defg-hij"] {
        let r = get(format!("{}{path}", h.base)).await;
        assert!(r.headers().contains_key("content-security-policy"), "{path}");
        assert!(r.text().await.unwrap().contains("/assets/dashboard.js"), "{path}");
    }
    let client = get(format!("{}/assets/sluice-client.js", h.base)).await.text().await.unwrap();
    assert!(client.contains("export class SluiceClient"));
    assert_eq!(get(format!("{}/assets/nope.js", h.base)).await.status(), 404);
    let api: Value = get(format!("{}/openapi.json", h.base)).await.json().await.unwrap();
    assert_eq!(api["openapi"], "3.1.0");
    for path in ["/meetings", "/meetings/{id}", "/meetings/{id}/join", "/signaling"] {
        assert!(api["paths"][path].is_object(), "{path} documented");
    }
    assert!(api["paths"]["/meetings/{id}"]["delete"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_share_stopped_before_its_answer_is_closed_and_can_start_again() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut a, _) = h.joined(&meeting, "ann", &["microphone"]).await;
    let first = a.expect("offer").await;
    a.send(json!({"type": "publish", "source": "screen"})).await;
    a.send(json!({"type": "unpublish", "source": "screen"})).await;
    a.answer(&first, 1).await;
    let second = a.expect("offer").await;
    let roles: Vec<&str> = second["sections"].as_array().unwrap().iter().map(|s| s["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["publish", "closed"], "the unanswered screen section is closed");
    a.answer(&second, 1).await;
    a.send(json!({"type": "publish", "source": "screen"})).await;
    let third = a.expect("offer").await;
    // The answered, closed m-line is recycled (JSEP 5.2.2): the new share takes its place under a fresh MID, so
    // the SDP does not grow.
    let sections = third["sections"].as_array().unwrap();
    assert_eq!(sections.len(), 2, "{third}");
    let last = sections.last().unwrap().clone();
    assert_eq!(
        (last["role"].as_str(), last["source"].as_str(), last["mid"].as_str()),
        (Some("publish"), Some("screen"), Some("2"))
    );
    // A browser that rejects a section (port 0) gets it closed in the next offer.
    let rejecting = answer_for(&third, 1).replace("m=video 9 ", "m=video 0 ");
    a.send(json!({"type": "answer", "revision": third["revision"], "sdp": rejecting})).await;
    let fourth = a.expect("offer").await;
    assert_eq!(
        (fourth["sections"][1]["mid"].as_str(), fourth["sections"][1]["role"].as_str()),
        (Some("2"), Some("closed")),
        "{fourth}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_publishers_video_codec_is_offered_first() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let mut a = h.client().await;
    let token = h.token(&meeting, "ann", Role::Participant);
    a.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token, "publish": ["camera"], "video_codec": "vp9"}))
        .await;
    let offer = a.expect("offer").await;
    assert!(offer["sdp"].as_str().unwrap().contains("m=video 9 UDP/TLS/RTP/SAVPF 98 96 102\r\n"), "{offer}");
    // The answer lists VP8 first and keeps VP9, as Chrome's may: the offer's order decides, so the track is VP9
    // and a subscriber is offered VP9.
    let sdp = answer_for(&offer, 1)
        .replace("m=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "m=video 9 UDP/TLS/RTP/SAVPF 96 98\r\n")
        .replace("a=rtpmap:96 VP8/90000\r\n", "a=rtpmap:96 VP8/90000\r\na=rtpmap:98 VP9/90000\r\n");
    a.send(json!({"type": "answer", "revision": offer["revision"], "sdp": sdp})).await;
    let (mut b, _) = h.joined(&meeting, "ben", &[]).await;
    let offer_b = b.expect("offer").await;
    assert!(offer_b["sdp"].as_str().unwrap().contains("m=video 9 UDP/TLS/RTP/SAVPF 98 99\r\n"), "{offer_b}");
    let mut c = h.client().await;
    c.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": h.token(&meeting, "cy", Role::Participant), "video_codec": "av1"}))
        .await;
    let closed = c.next().await;
    assert_eq!(closed["code"], 4000, "{closed}");
    assert!(closed["reason"].as_str().unwrap().contains("unknown variant `av1`"), "{closed}");
}
