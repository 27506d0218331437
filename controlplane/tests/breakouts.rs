//! Breakout rooms at the protocol level (`docs/breakouts.md`): moves are the server's (sections closed and
//! opened on the same connection), random assignment is even, pre-assignment places a late joiner, hosts visit
//! and broadcast, the timer closes the rooms by itself, and participants cannot move themselves unless allowed.

mod harness;

use harness::{Client, Harness, start};
use serde_json::{Value, json};
use sluice_controlplane::store::Role;

struct Person {
    c: Client,
    id: String,
}

async fn host(h: &Harness, meeting: &str, token: &str) -> Person {
    let mut c = h.client().await;
    c.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token})).await;
    let id = c.expect("welcome").await["participant_id"].as_str().unwrap().to_string();
    Person { c, id }
}

/// A participant publishing a microphone, its first offer answered.
async fn publisher(h: &Harness, meeting: &str, user: &str, ssrc: u32) -> Person {
    let (mut c, welcome) = h.joined(meeting, user, &["microphone"]).await;
    let offer = c.expect("offer").await;
    c.answer(&offer, ssrc).await;
    Person { c, id: welcome["participant_id"].as_str().unwrap().to_string() }
}

/// The publishers whose tracks an offer's open subscribe sections carry.
fn receiving(offer: &Value) -> Vec<String> {
    let mut from: Vec<String> = offer["sections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["role"] == "subscribe")
        .map(|s| s["participant_id"].as_str().unwrap().to_string())
        .collect();
    from.sort();
    from.dedup();
    from
}

/// Answers offers until one subscribes to exactly `want` (bounded); returns it.
async fn settle(p: &mut Person, want: &[String], ssrc: u32) -> Value {
    let mut want: Vec<String> = want.to_vec();
    want.sort();
    let mut last = Value::Null;
    for _ in 0..8 {
        let offer = p.c.expect("offer").await;
        p.c.answer(&offer, ssrc).await;
        if receiving(&offer) == want {
            return offer;
        }
        last = offer;
    }
    panic!("no offer subscribing to {want:?}; last: {:?}", receiving(&last));
}

/// Answers offers until none comes for 300 ms (bounded): no offer is outstanding afterwards.
async fn quiesce(p: &mut Person, ssrc: u32) {
    for _ in 0..20 {
        match tokio::time::timeout(std::time::Duration::from_millis(300), p.c.expect("offer")).await {
            Ok(offer) => {
                p.c.answer(&offer, ssrc).await;
            }
            Err(_) => return,
        }
    }
    panic!("offers kept coming");
}

async fn control(h: &Harness, meeting: &str, token: &str, action: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/meetings/{meeting}/breakouts/{action}", h.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn state(h: &Harness, meeting: &str, token: &str) -> Value {
    let reply = reqwest::Client::new()
        .get(format!("{}/meetings/{meeting}/breakouts", h.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    reply.json().await.unwrap()
}

async fn error(c: &mut Client) -> String {
    c.expect("error").await["code"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_move_reroutes_media_on_the_same_connection_and_closing_brings_everyone_back() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let mut hana = host(&h, &meeting, &host_token).await;
    let mut a = publisher(&h, &meeting, "ann", 100).await;
    let mut b = publisher(&h, &meeting, "bob", 200).await;
    let mut c = publisher(&h, &meeting, "cy", 300).await;
    let mut d = publisher(&h, &meeting, "dee", 400).await;
    let (aid, bid, cid, did) = (a.id.clone(), b.id.clone(), c.id.clone(), d.id.clone());
    settle(&mut a, &[bid.clone(), cid.clone(), did.clone()], 100).await;

    // A participant cannot run breakouts.
    a.c.send(json!({"type": "breakout_create", "count": 2})).await;
    assert_eq!(error(&mut a.c).await, "forbidden");
    hana.c.send(json!({"type": "breakout_open"})).await;
    assert_eq!(error(&mut hana.c).await, "bad_state", "opening with no rooms");

    hana.c.send(json!({"type": "breakout_create", "rooms": ["Design", "Ops"]})).await;
    let rooms = hana.c.expect("breakouts").await;
    let (design, ops) = (rooms["rooms"][0]["room_id"].clone(), rooms["rooms"][1]["room_id"].clone());
    let participant_view = a.c.expect("breakouts").await;
    assert!(participant_view["rooms"][0].get("participants").is_none(), "participants see names only");
    hana.c.send(json!({"type": "breakout_assign", "participant_id": a.id, "room_id": "b_nope"})).await;
    assert_eq!(error(&mut hana.c).await, "not_found");
    hana.c.send(json!({"type": "breakout_assign", "participant_id": "p_nobody", "room_id": design})).await;
    assert_eq!(error(&mut hana.c).await, "not_found");
    for (p, room) in [(&a, &design), (&b, &design), (&c, &ops), (&d, &ops)] {
        hana.c.send(json!({"type": "breakout_assign", "participant_id": p.id, "room_id": room})).await;
    }
    hana.c.send(json!({"type": "breakout_open", "countdown_secs": 0})).await;

    let moved = a.c.expect("room_changed").await;
    assert_eq!((moved["room_id"].clone(), moved["room_name"].as_str()), (design.clone(), Some("Design")));
    assert!(moved["participants"].as_array().unwrap().is_empty(), "Ann moved first: Design was empty");
    let moved = b.c.expect("room_changed").await;
    let mates: Vec<&str> =
        moved["participants"].as_array().unwrap().iter().map(|p| p["participant_id"].as_str().unwrap()).collect();
    assert_eq!(mates, [aid.as_str()], "Bob finds Ann there, nobody else");
    // The same connection: a renegotiation whose open subscribe sections are Bob's only.
    settle(&mut a, std::slice::from_ref(&bid), 100).await;
    settle(&mut c, std::slice::from_ref(&did), 300).await;
    let view = state(&h, &meeting, &host_token).await;
    assert_eq!(view["open"], true);
    let people = |room: &Value| -> Vec<String> {
        let mut ids: Vec<String> = room["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["participant_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let mut ab = vec![aid.clone(), bid.clone()];
    ab.sort();
    assert_eq!(people(&view["rooms"][0]), ab);

    // Chat is per room.
    a.c.send(json!({"type": "chat_send", "body": "design only"})).await;
    assert_eq!(b.c.expect("chat").await["message"]["body"], "design only");
    c.c.send(json!({"type": "chat_send", "body": "ops only"})).await;
    assert_eq!(c.c.expect("chat").await["message"]["body"], "ops only");
    assert_eq!(d.c.expect("chat").await["message"]["body"], "ops only", "Dee did not get Design's message first");

    // Nobody in Ops heard of anything in Design after the rooms opened (people, tracks, hands, reactions).
    a.c.send(json!({"type": "raise_hand", "raised": true})).await;
    a.c.send(json!({"type": "react", "emoji": "👍"})).await;
    assert_eq!(b.c.expect("reaction").await["participant_id"], aid.as_str());
    c.c.send(json!({"type": "chat_send", "body": "ops marker"})).await;
    c.c.expect("chat").await;
    d.c.send(json!({"type": "ping", "nonce": 7})).await;
    d.c.expect("pong").await;
    let opened_at = d.c.seen.iter().rposition(|m| m["type"] == "room_changed").expect("Dee moved");
    for m in &d.c.seen[opened_at..] {
        let text = m.to_string();
        assert!(!text.contains(aid.as_str()) && !text.contains(bid.as_str()), "Dee, in Ops, was told of Design: {m}");
    }

    // Participants cannot move themselves unless allowed.
    a.c.send(json!({"type": "breakout_join", "room_id": ops})).await;
    assert_eq!(error(&mut a.c).await, "forbidden");
    a.c.send(json!({"type": "breakout_join", "room_id": "main"})).await;
    assert_eq!(error(&mut a.c).await, "forbidden");

    // Help, a visit, a broadcast.
    a.c.send(json!({"type": "ask_help"})).await;
    let help = hana.c.expect("help_requested").await;
    assert_eq!((help["room_name"].as_str(), help["participant_id"].as_str()), (Some("Design"), Some(a.id.as_str())));
    hana.c.send(json!({"type": "breakout_join", "room_id": ops})).await;
    assert_eq!(hana.c.expect("room_changed").await["room_name"], "Ops");
    let mut joined = Vec::new();
    while !joined.contains(&hana.id) {
        assert!(joined.len() < 4, "no participant_joined for the visiting host: {joined:?}");
        joined.push(
            c.c.expect("participant_joined").await["participant"]["participant_id"].as_str().unwrap().to_string(),
        );
    }
    hana.c.send(json!({"type": "breakout_broadcast", "text": "five minutes left"})).await;
    for p in [&mut a, &mut b, &mut c, &mut d] {
        assert_eq!(p.c.expect("broadcast").await["text"], "five minutes left");
    }
    hana.c.send(json!({"type": "breakout_join", "room_id": "main"})).await;
    assert_eq!(hana.c.expect("room_changed").await["room_id"], "main");

    // Closing: everyone back, receiving everyone again.
    hana.c.send(json!({"type": "breakout_close"})).await;
    assert_eq!(a.c.expect("breakouts_closing").await["seconds"], 0);
    assert_eq!(a.c.expect("room_changed").await["room_id"], "main");
    settle(&mut a, &[bid, cid, did], 100).await;
    assert_eq!(state(&h, &meeting, &host_token).await["open"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn random_assignment_is_even_and_leaves_hosts_in_the_main_room() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let _hana = host(&h, &meeting, &host_token).await;
    let mut people = Vec::new();
    for i in 0..5 {
        people.push(h.joined(&meeting, &format!("u{i}"), &[]).await.0);
    }
    assert_eq!(control(&h, &meeting, &host_token, "create", json!({"count": 2})).await.status(), 204);
    assert_eq!(control(&h, &meeting, &host_token, "random", json!({})).await.status(), 204);
    assert_eq!(control(&h, &meeting, &host_token, "open", json!({})).await.status(), 204);
    let view = state(&h, &meeting, &host_token).await;
    let mut sizes: Vec<usize> =
        view["rooms"].as_array().unwrap().iter().map(|r| r["participants"].as_array().unwrap().len()).collect();
    sizes.sort();
    assert_eq!(sizes, [2, 3]);
    assert_eq!(view["main"].as_array().unwrap().len(), 1, "the host stays");
    let participant = h.token(&meeting, "u0", Role::Participant);
    assert_eq!(control(&h, &meeting, &participant, "close", json!({})).await.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preassigned_late_joiner_goes_straight_to_their_room() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    // Before anyone joins: stored.
    assert_eq!(control(&h, &meeting, &host_token, "create", json!({"rooms": ["Red", "Blue"]})).await.status(), 204);
    let rooms = state(&h, &meeting, &host_token).await;
    let blue = rooms["rooms"][1]["room_id"].as_str().unwrap().to_string();
    let bad = control(&h, &meeting, &host_token, "assign", json!({"user_id": "late", "room_id": "b_nope"})).await;
    assert_eq!(bad.status(), 404);
    assert_eq!(
        control(&h, &meeting, &host_token, "assign", json!({"user_id": "late", "room_id": blue})).await.status(),
        204
    );
    assert_eq!(state(&h, &meeting, &host_token).await["assignments"]["late"], blue.as_str());
    assert_eq!(control(&h, &meeting, &host_token, "open", json!({})).await.status(), 409, "opening needs people");

    let _hana = host(&h, &meeting, &host_token).await;
    assert_eq!(control(&h, &meeting, &host_token, "open", json!({"allow_return": true})).await.status(), 204);
    let (mut late, welcome) = h.joined(&meeting, "late", &[]).await;
    assert_eq!(
        (welcome["meeting"]["room_id"].as_str(), welcome["meeting"]["room_name"].as_str()),
        (Some(blue.as_str()), Some("Blue"))
    );
    assert!(welcome["participants"].as_array().unwrap().is_empty(), "nobody else is in Blue");
    // Allowed back to the main room, not into another one.
    late.send(json!({"type": "breakout_join", "room_id": rooms["rooms"][0]["room_id"]})).await;
    assert_eq!(error(&mut late).await, "forbidden");
    late.send(json!({"type": "breakout_join", "room_id": "main"})).await;
    assert_eq!(late.expect("room_changed").await["room_id"], "main");
    // A reconnect lands where they were (the main room they went back to), not in their assigned room.
    let (_again, welcome) = h.joined(&meeting, "late", &[]).await;
    assert_eq!(welcome["meeting"]["room_id"], "main");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timer_warns_and_closes_the_rooms_by_itself() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let mut hana = host(&h, &meeting, &host_token).await;
    let (mut ann, welcome) = h.joined(&meeting, "ann", &[]).await;
    let ann_id = welcome["participant_id"].clone();
    hana.c.send(json!({"type": "breakout_create", "count": 1})).await;
    let room = hana.c.expect("breakouts").await["rooms"][0]["room_id"].clone();
    hana.c.send(json!({"type": "breakout_extend", "secs": 60})).await;
    assert_eq!(error(&mut hana.c).await, "bad_state", "no timer to extend");
    hana.c.send(json!({"type": "breakout_assign", "participant_id": ann_id, "room_id": room})).await;
    hana.c.send(json!({"type": "breakout_open", "duration_secs": 2, "countdown_secs": 1, "self_select": true})).await;
    assert_eq!(ann.expect("room_changed").await["room_id"], room);
    let timer = ann.expect("breakout_timer").await;
    assert!(timer["remaining_secs"].as_u64().unwrap() <= 2);
    assert_eq!(ann.expect("breakout_timer").await["warning"], true, "a timer shorter than the warning warns at once");
    let started = std::time::Instant::now();
    assert_eq!(ann.expect("breakouts_closing").await["seconds"], 1);
    assert_eq!(ann.expect("room_changed").await["room_id"], "main");
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(4), "closed {took:?} after the warning");
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_moves_reuse_closed_sections_instead_of_growing_the_sdp() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let mut hana = host(&h, &meeting, &host_token).await;
    let mut a = publisher(&h, &meeting, "ann", 100).await;
    let mut b = publisher(&h, &meeting, "bob", 200).await;
    let (aid, bid) = (a.id.clone(), b.id.clone());
    settle(&mut a, std::slice::from_ref(&bid), 100).await;
    hana.c.send(json!({"type": "breakout_create", "count": 2})).await;
    let rooms = hana.c.expect("breakouts").await;
    let (one, two) = (rooms["rooms"][0]["room_id"].clone(), rooms["rooms"][1]["room_id"].clone());
    hana.c.send(json!({"type": "breakout_assign", "participant_id": aid, "room_id": one})).await;
    hana.c.send(json!({"type": "breakout_assign", "participant_id": bid, "room_id": two})).await;
    let mut sizes = Vec::new();
    for _ in 0..5 {
        hana.c.send(json!({"type": "breakout_open", "countdown_secs": 0})).await;
        settle(&mut a, &[], 100).await;
        settle(&mut b, &[], 200).await;
        quiesce(&mut a, 100).await;
        quiesce(&mut b, 200).await;
        hana.c.send(json!({"type": "breakout_close"})).await;
        let offer = settle(&mut a, std::slice::from_ref(&bid), 100).await;
        settle(&mut b, std::slice::from_ref(&aid), 200).await;
        quiesce(&mut a, 100).await;
        quiesce(&mut b, 200).await;
        sizes.push(offer["sections"].as_array().unwrap().len());
    }
    // The first cycles add sections (closed ones are reused only once an answer has seen them closed); then
    // every cycle reuses them: the offer stops growing.
    assert!(sizes[2..].iter().all(|n| *n == sizes[2]), "sections per cycle: {sizes:?}");
}
