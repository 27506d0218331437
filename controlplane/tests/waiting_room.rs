//! The waiting room at protocol level: who waits, what they get (nothing but `waiting`), what hosts see, and
//! that only a host's word lets anyone in; with a client that sends what it should not.

mod harness;

use std::time::Duration;

use serde_json::{Value, json};
use sluice_controlplane::store::Role;

use harness::*;

/// Joins with a participant token for `user`; returns the client and its first message.
async fn arrive(h: &Harness, meeting: &str, user: &str, publish: &[&str]) -> (Client, Value) {
    let mut c = h.client().await;
    let token = h.token(meeting, user, Role::Participant);
    c.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token, "publish": publish})).await;
    let first = c.next().await;
    (c, first)
}

/// Nothing arrives for `quiet` (the server sends a waiting person nothing).
async fn hears_nothing(c: &mut Client, quiet: Duration) {
    use futures::StreamExt;
    if let Ok(Some(Ok(m))) = tokio::time::timeout(quiet, c.ws.next()).await
        && m.is_text()
    {
        panic!("a waiting client was sent {m}");
    }
}

fn names(list: &Value) -> Vec<String> {
    list["waiting"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn joiners_wait_until_a_host_admits_or_denies_them() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({"waiting_room": true, "title": "Interviews"})).await;
    let (mut p2, first) = arrive(&h, &meeting, "pat", &["microphone", "camera"]).await;
    assert_eq!(first["type"], "waiting", "{first}");
    assert_eq!((first["title"].as_str(), first["name"].as_str()), (Some("Interviews"), Some("pat")));
    let p2_id = first["participant_id"].as_str().unwrap().to_string();
    // A waiting client that acts as if it were in gets refused and nothing else: no offer, no list.
    p2.send(json!({"type": "publish", "source": "screen"})).await;
    let refused = p2.expect("error").await;
    assert_eq!(refused["code"], "bad_state", "{refused}");
    p2.send(json!({"type": "admit", "participant_id": p2_id})).await;
    assert_eq!(p2.expect("error").await["code"], "bad_state");
    hears_nothing(&mut p2, Duration::from_millis(300)).await;
    let (mut p3, first) = arrive(&h, &meeting, "quinn", &[]).await;
    assert_eq!(first["type"], "waiting");
    let p3_id = first["participant_id"].as_str().unwrap().to_string();
    assert!(h.store.participants(&meeting, false).await.unwrap().is_empty(), "waiting is not being in the meeting");

    let mut host = h.client().await;
    host.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": host_token})).await;
    let welcome = host.expect("welcome").await;
    assert_eq!(welcome["participants"], json!([]), "the waiting are in nobody's participant list");
    let list = host.expect("waiting_list").await;
    assert_eq!(names(&list), ["pat", "quinn"], "in order of arrival");

    host.send(json!({"type": "admit", "participant_id": p2_id})).await;
    let welcome = p2.expect("welcome").await;
    assert_eq!(welcome["participant_id"], p2_id.as_str(), "the same id once admitted");
    p2.expect("offer").await;
    assert_eq!(host.expect("participant_joined").await["participant"]["participant_id"], p2_id.as_str());
    assert_eq!(names(&host.expect("waiting_list").await), ["quinn"]);

    // An admitted participant is no host: admitting or denying is refused, naming the grant, and nothing changes.
    p2.send(json!({"type": "admit", "participant_id": p3_id})).await;
    let refused = p2.expect("error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("host grant"), "{refused}");
    p2.send(json!({"type": "deny", "participant_id": p3_id})).await;
    assert_eq!(p2.expect("error").await["code"], "forbidden");
    hears_nothing(&mut p3, Duration::from_millis(300)).await;

    host.send(json!({"type": "admit", "participant_id": "p_nobody"})).await;
    assert_eq!(host.expect("error").await["code"], "bad_state");
    host.send(json!({"type": "deny", "participant_id": p3_id})).await;
    let closed = p3.expect("close").await;
    assert_eq!(closed["code"], 4013, "{closed}");
    assert_eq!(names(&host.expect("waiting_list").await), Vec::<String>::new());
    let rows = h.store.participants(&meeting, false).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.user_id.as_str()).collect::<Vec<_>>().len(), 2, "host and pat only: {rows:?}");
    assert!(rows.iter().all(|r| r.user_id != "quinn"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_waiting_keep_waiting_when_a_host_arrives_and_across_a_host_reconnect() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({"waiting_room": true})).await;
    let (mut early, first) = arrive(&h, &meeting, "early", &[]).await;
    assert_eq!(first["type"], "waiting");
    let mut host = h.client().await;
    host.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": host_token})).await;
    host.expect("welcome").await;
    assert_eq!(names(&host.expect("waiting_list").await), ["early"]);
    hears_nothing(&mut early, Duration::from_millis(300)).await;

    // The host's connection drops; the room (and its waiting list) outlives it.
    host.ws.close(None).await.unwrap();
    drop(host);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut host = h.client().await;
    host.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": host_token})).await;
    host.expect("welcome").await;
    assert_eq!(names(&host.expect("waiting_list").await), ["early"], "the list survives the host's reconnect");

    // The waiting person's own socket closing takes them off the list.
    let (gone, first) = arrive(&h, &meeting, "gone", &[]).await;
    assert_eq!(first["type"], "waiting");
    assert_eq!(names(&host.expect("waiting_list").await), ["early", "gone"]);
    drop(gone);
    assert_eq!(names(&host.expect("waiting_list").await), ["early"]);

    host.send(json!({"type": "admit_all"})).await;
    early.expect("welcome").await;
    // Once admitted, a reconnect of the same person goes straight in.
    drop(early);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_again, first) = arrive(&h, &meeting, "early", &[]).await;
    assert_eq!(first["type"], "welcome", "{first}");
    // Without the setting nobody waits.
    let (open, _) = h.meeting(json!({})).await;
    let (_c, first) = arrive(&h, &open, "free", &[]).await;
    assert_eq!(first["type"], "welcome");
}
