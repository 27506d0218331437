//! Host controls at protocol level and over HTTP: each by a host and a co-host, refused for a participant (who
//! gains nothing by sending them), on unknown or departed participants; removal, lock, roles, revoked grants,
//! raised hands. The browser tests check the media path with real pages.

mod harness;

use serde_json::{Value, json};
use sluice_controlplane::signaling::protocol::Source;
use sluice_controlplane::store::Role;

use harness::*;

/// A participant joined with `role`'s token, its welcome read.
async fn as_role(h: &Harness, meeting: &str, user: &str, role: Role, publish: &[&str]) -> (Client, String) {
    let mut c = h.client().await;
    let token = h.token(meeting, user, role);
    c.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token, "publish": publish})).await;
    let welcome = c.expect("welcome").await;
    (c, welcome["participant_id"].as_str().unwrap().to_string())
}

/// The host joined with the meeting's host token, its welcome read; and its participant id.
async fn host_joined(h: &Harness, meeting: &str, host_token: &str) -> (Client, String) {
    let mut host = h.client().await;
    host.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": host_token})).await;
    let welcome = host.expect("welcome").await;
    (host, welcome["participant_id"].as_str().unwrap().to_string())
}

async fn refused(c: &mut Client, code: &str, words: &str) {
    let e = c.expect("error").await;
    assert_eq!(e["code"], code, "{e}");
    assert!(e["message"].as_str().unwrap().contains(words), "{e}");
}

async fn http(h: &Harness, method: reqwest::Method, path: &str, token: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{}{path}", h.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_participant_asking_for_host_controls_changes_nothing() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut ann, ann_id) = as_role(&h, &meeting, "ann", Role::Participant, &["microphone"]).await;
    let (mut bob, bob_id) = as_role(&h, &meeting, "bob", Role::Participant, &["microphone"]).await;
    let attempts = [
        json!({"type": "mute_participant", "participant_id": ann_id, "source": "microphone"}),
        json!({"type": "remove_participant", "participant_id": ann_id}),
        json!({"type": "set_role", "participant_id": bob_id, "role": "host"}),
        json!({"type": "set_grants", "participant_id": ann_id, "grants": {"microphone": false}}),
        json!({"type": "send_to_waiting_room", "participant_id": ann_id}),
        json!({"type": "mute_all"}),
        json!({"type": "lock", "locked": true}),
        json!({"type": "lower_hands"}),
        json!({"type": "end_meeting"}),
    ];
    for attempt in attempts {
        bob.send(attempt.clone()).await;
        refused(&mut bob, "forbidden", "needs the host grant").await;
    }
    // Nothing happened to Ann: she is still here, unmuted, and hears of no change.
    let roster = h.roster(&meeting).await;
    assert_eq!(roster.len(), 2, "{roster:?}");
    assert!(roster.iter().all(|r| r.held.is_empty() && r.role == Role::Participant), "{roster:?}");
    ann.send(json!({"type": "ping", "nonce": 7})).await;
    let next = ann.next().await;
    assert!(next["type"] == "pong" || next["type"] == "offer" || next["type"] == "participant_joined", "{next}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_mutes_and_only_a_hosts_request_lets_the_participant_unmute() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let (mut host, _) = host_joined(&h, &meeting, &host_token).await;
    let (mut pat, pat_id) = as_role(&h, &meeting, "pat", Role::Participant, &["microphone", "camera"]).await;
    let offer = pat.expect("offer").await;
    pat.answer(&offer, 100).await;
    host.expect("track_added").await;

    host.send(json!({"type": "mute_participant", "participant_id": pat_id, "source": "microphone"})).await;
    let muted = pat.expect("muted_by_host").await;
    assert_eq!((muted["source"].as_str(), muted["by"].as_str()), (Some("microphone"), Some("Host")));
    let seen = host.expect("track_muted").await;
    assert_eq!(seen["muted"], true);
    // A client that ignores the mute and unmutes itself is refused, and stays muted.
    pat.send(json!({"type": "mute", "source": "microphone", "muted": false})).await;
    refused(&mut pat, "forbidden", "when a host asks").await;
    let roster = h.roster(&meeting).await;
    let p = roster.iter().find(|r| r.participant_id == pat_id).unwrap();
    assert_eq!((p.held.clone(), p.muted.clone()), (vec![Source::Microphone], vec![Source::Microphone]));
    // A reconnect does not undo it either.
    drop(pat);
    let (mut pat, pat_id) = as_role(&h, &meeting, "pat", Role::Participant, &["microphone", "camera"]).await;
    let welcome = pat.seen.iter().find(|m| m["type"] == "welcome").unwrap().clone();
    assert_eq!(welcome["meeting"]["held"], json!(["microphone"]), "{welcome}");
    let offer = pat.expect("offer").await;
    let publishing: Vec<&str> = offer["sections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["role"] == "publish")
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(publishing, ["camera"], "no microphone section for a held microphone");
    pat.answer(&offer, 200).await;
    pat.send(json!({"type": "publish", "source": "microphone"})).await;
    refused(&mut pat, "forbidden", "when a host asks").await;

    host.send(json!({"type": "ask_unmute", "participant_id": pat_id, "source": "microphone"})).await;
    let asked = pat.expect("unmute_requested").await;
    assert_eq!(asked["source"], "microphone");
    pat.send(json!({"type": "publish", "source": "microphone"})).await;
    pat.expect("offer").await;
    let roster = h.roster(&meeting).await;
    assert!(roster.iter().find(|r| r.participant_id == pat_id).unwrap().held.is_empty());
    // Asking about what a host did not stop is an error that says so.
    host.send(json!({"type": "ask_unmute", "participant_id": pat_id, "source": "camera"})).await;
    refused(&mut host, "bad_state", "not muted by a host").await;
    host.send(json!({"type": "mute_participant", "participant_id": "p_gone", "source": "camera"})).await;
    refused(&mut host, "bad_state", "no participant").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removed_users_stay_out_and_a_locked_meeting_admits_only_hosts() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let (mut host, _) = host_joined(&h, &meeting, &host_token).await;
    let token = h.token(&meeting, "mal", Role::Participant);
    let mut mal = h.client().await;
    mal.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token})).await;
    let mal_id = mal.expect("welcome").await["participant_id"].as_str().unwrap().to_string();
    host.send(json!({"type": "remove_participant", "participant_id": mal_id})).await;
    assert_eq!(mal.expect("close").await["code"], 4014);
    let left = host.expect("participant_left").await;
    assert_eq!(left["reason"], "removed", "{left}");
    // The same token, and a fresh token for the same user id: both refused.
    for token in [token.clone(), h.token(&meeting, "mal", Role::Participant)] {
        let mut again = h.client().await;
        again.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token})).await;
        let closed = again.expect("close").await;
        assert_eq!(closed["code"], 4014, "{closed}");
    }
    assert!(h.store.is_removed(&meeting, "mal").await.unwrap(), "kept in the store");
    host.send(json!({"type": "remove_participant", "participant_id": mal_id})).await;
    refused(&mut host, "bad_state", "no participant").await;

    host.send(json!({"type": "lock", "locked": true})).await;
    host.expect("meeting_locked").await;
    let mut late = h.client().await;
    let late_token = h.token(&meeting, "late", Role::Participant);
    late.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": late_token})).await;
    assert_eq!(late.expect("close").await["code"], 4015);
    let stored = h.store.meeting(&meeting).await.unwrap().unwrap();
    assert!(stored.settings.locked, "the lock is a stored setting");
    let cohost = h.token(&meeting, "co", Role::CoHost);
    let mut co = h.client().await;
    co.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": cohost})).await;
    co.expect("welcome").await;
    host.send(json!({"type": "lock", "locked": false})).await;
    let (_late, _) = as_role(&h, &meeting, "late", Role::Participant, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_change_live_and_a_revoked_grant_closes_the_section() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let (mut host, host_id) = host_joined(&h, &meeting, &host_token).await;
    let (mut pat, pat_id) = as_role(&h, &meeting, "pat", Role::Participant, &["microphone", "camera"]).await;
    let offer = pat.expect("offer").await;
    pat.answer(&offer, 300).await;
    host.expect("track_added").await;

    // Revoke the camera: the publish section is closed in the next offer and the others lose the track.
    host.send(json!({"type": "set_grants", "participant_id": pat_id, "grants": {"camera": false}})).await;
    let changed = pat.expect("role_changed").await;
    assert_eq!(changed["grants"]["camera"], false, "{changed}");
    let offer = pat.expect("offer").await;
    let camera = offer["sections"].as_array().unwrap().iter().find(|s| s["source"] == "camera").unwrap().clone();
    assert_eq!(camera["role"], "closed", "{offer}");
    host.expect("track_removed").await;
    pat.answer(&offer, 300).await;
    pat.send(json!({"type": "publish", "source": "camera"})).await;
    refused(&mut pat, "forbidden", "no grant").await;

    // Co-host: may mute and admit, may not end the meeting, hand out roles or act on the host.
    host.send(json!({"type": "set_role", "participant_id": pat_id, "role": "co_host"})).await;
    assert_eq!(pat.expect("role_changed").await["role"], "co_host");
    let rows = h.store.participants(&meeting, true).await.unwrap();
    assert!(rows.iter().any(|r| r.user_id == "pat" && r.role == Role::CoHost), "persisted: {rows:?}");
    pat.send(json!({"type": "end_meeting"})).await;
    refused(&mut pat, "forbidden", "co-host cannot").await;
    pat.send(json!({"type": "mute_participant", "participant_id": host_id, "source": "microphone"})).await;
    refused(&mut pat, "forbidden", "cannot act on the host").await;
    let (mut viv, viv_id) = as_role(&h, &meeting, "viv", Role::Participant, &[]).await;
    pat.send(json!({"type": "mute_participant", "participant_id": viv_id, "source": "microphone"})).await;
    viv.expect("muted_by_host").await;
    pat.send(json!({"type": "set_role", "participant_id": viv_id, "role": "co_host"})).await;
    refused(&mut pat, "forbidden", "only the host").await;
    pat.send(json!({"type": "set_role", "participant_id": viv_id, "role": "viewer"})).await;
    assert_eq!(viv.expect("role_changed").await["role"], "viewer");

    // The host hands the role over and stays a co-host.
    host.send(json!({"type": "set_role", "participant_id": pat_id, "role": "host"})).await;
    // The host has earlier changes queued too (Pat to co-host, Viv to viewer): read until the former host's own.
    let mut roles = std::collections::HashMap::new();
    while !roles.contains_key(&host_id) {
        let m = host.expect("role_changed").await;
        roles.insert(m["participant_id"].as_str().unwrap().to_string(), m["role"].as_str().unwrap().to_string());
    }
    assert_eq!(roles[&pat_id], "host");
    assert_eq!(roles[&host_id], "co_host");

    // Raised hands keep their order; a host lowers them.
    viv.send(json!({"type": "raise_hand", "raised": true})).await;
    assert_eq!(pat.expect("hands").await["raised"], json!([viv_id]));
    host.send(json!({"type": "raise_hand", "raised": true})).await;
    assert_eq!(pat.expect("hands").await["raised"], json!([viv_id, host_id]), "in the order raised");
    viv.send(json!({"type": "raise_hand", "raised": true})).await;
    viv.send(json!({"type": "raise_hand", "raised": false})).await;
    assert_eq!(pat.expect("hands").await["raised"], json!([host_id]), "raising twice changes nothing");
    viv.send(json!({"type": "raise_hand", "raised": true})).await;
    assert_eq!(pat.expect("hands").await["raised"], json!([host_id, viv_id]));
    pat.send(json!({"type": "lower_hands"})).await;
    assert_eq!(pat.expect("hands").await["raised"], json!([]));
    viv.send(json!({"type": "react", "emoji": "<script>"})).await;
    refused(&mut viv, "bad_message", "reactions are one of").await;
    for _ in 0..3 {
        viv.send(json!({"type": "react", "emoji": "🎉"})).await;
    }
    viv.send(json!({"type": "react", "emoji": "🎉"})).await;
    refused(&mut viv, "limit", "one reaction a second").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_controls_over_http_with_a_host_token_and_not_a_participants() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({"title": "Board"})).await;
    let (mut pat, pat_id) = as_role(&h, &meeting, "pat", Role::Participant, &["microphone"]).await;
    let participant = h.token(&meeting, "pat", Role::Participant);
    let base = format!("/meetings/{meeting}");

    let (status, body) = http(&h, reqwest::Method::GET, &format!("{base}/participants"), &participant, json!({})).await;
    assert_eq!(status, 403, "{body}");
    let (status, roster) =
        http(&h, reqwest::Method::GET, &format!("{base}/participants"), &host_token, json!({})).await;
    assert_eq!(status, 200, "{roster}");
    assert_eq!(roster["live"][0]["participant_id"], pat_id.as_str(), "{roster}");
    assert_eq!(roster["history"][0]["user_id"], "pat", "{roster}");

    let mute = format!("{base}/participants/{pat_id}/mute");
    let (status, body) = http(&h, reqwest::Method::POST, &mute, &participant, json!({"source": "microphone"})).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = http(&h, reqwest::Method::POST, &mute, &host_token, json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("source"), "{body}");
    let (status, body) = http(&h, reqwest::Method::POST, &mute, &host_token, json!({"source": "microphone"})).await;
    assert_eq!(status, 204, "{body}");
    pat.expect("muted_by_host").await;
    let gone = format!("{base}/participants/p_nobody/remove");
    let (status, body) = http(&h, reqwest::Method::POST, &gone, &host_token, json!({})).await;
    assert_eq!(status, 404, "{body}");

    let (status, body) =
        http(&h, reqwest::Method::PATCH, &base, &host_token, json!({"settings": {"title": "Board, Q4"}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"]["title"], "Board, Q4");
    let (status, body) =
        http(&h, reqwest::Method::PATCH, &base, &host_token, json!({"settings": {"max_participants": 0}})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) =
        http(&h, reqwest::Method::PATCH, &base, &participant, json!({"settings": {"title": "mine"}})).await;
    assert_eq!(status, 403);

    let lock = format!("{base}/control/lock");
    let (status, body) = http(&h, reqwest::Method::POST, &lock, &host_token, json!({"locked": true})).await;
    assert_eq!(status, 204, "{body}");
    pat.expect("meeting_locked").await;
    let (status, body) =
        http(&h, reqwest::Method::POST, &format!("{base}/control/nonsense"), &host_token, json!({})).await;
    assert_eq!(status, 404, "{body}");
    let remove = format!("{base}/participants/{pat_id}/remove");
    let (status, body) = http(&h, reqwest::Method::POST, &remove, &host_token, json!({})).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(pat.expect("close").await["code"], 4014);
    let events = h.store.analytics_events(&meeting, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert!(kinds.contains(&"removed"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn controls_that_land_between_offer_and_answer_still_hold() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let (mut host, _) = host_joined(&h, &meeting, &host_token).await;
    let (mut pat, pat_id) = as_role(&h, &meeting, "pat", Role::Participant, &["microphone", "camera"]).await;
    let offer = pat.expect("offer").await;
    // Before Pat answers: the microphone is stopped and the camera's grant revoked.
    host.send(json!({"type": "mute_participant", "participant_id": pat_id, "source": "microphone"})).await;
    pat.expect("muted_by_host").await;
    host.send(json!({"type": "set_grants", "participant_id": pat_id, "grants": {"camera": false}})).await;
    pat.expect("role_changed").await;
    pat.answer(&offer, 400).await;
    let added = host.expect("track_added").await;
    assert_eq!(added["track"]["source"], "microphone", "only the microphone is published: {added}");
    assert_eq!(added["track"]["muted"], true, "and it arrives muted (blocked): {added}");
    let roster = h.roster(&meeting).await;
    let p = roster.iter().find(|r| r.participant_id == pat_id).unwrap();
    assert_eq!(p.held, vec![Source::Microphone]);
    let next = pat.expect("offer").await;
    let camera = next["sections"].as_array().unwrap().iter().find(|s| s["source"] == "camera").unwrap().clone();
    assert_eq!(camera["role"], "closed", "the camera's section closes: {next}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sent_back_removed_and_muted_people_do_not_slip_back_in() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let (mut host, _) = host_joined(&h, &meeting, &host_token).await;
    let (_ann, _ann_id) = as_role(&h, &meeting, "ann", Role::Participant, &[]).await;
    let (mut bob, bob_id) = as_role(&h, &meeting, "bob", Role::Participant, &[]).await;

    host.send(json!({"type": "mute_all"})).await;
    bob.expect("muted_by_host").await;
    let roster = h.roster(&meeting).await;
    for r in roster.iter().filter(|r| r.role == Role::Participant) {
        assert_eq!(r.held, vec![Source::Microphone], "{roster:?}");
    }
    assert!(roster.iter().find(|r| r.role == Role::Host).unwrap().held.is_empty(), "hosts are not muted");

    // Sent back to the waiting room: reconnecting with the same token waits again.
    host.send(json!({"type": "send_to_waiting_room", "participant_id": bob_id})).await;
    bob.expect("waiting").await;
    drop(bob);
    let mut bob = h.client().await;
    bob.send(
        json!({"type": "join", "v": 1, "meeting_id": meeting, "token": h.token(&meeting, "bob", Role::Participant)}),
    )
    .await;
    let first = bob.next().await;
    assert_eq!(first["type"], "waiting", "{first}");

    // Removed while waiting; then anonymous link joiners go through the waiting room.
    host.send(json!({"type": "remove_participant", "participant_id": first["participant_id"]})).await;
    assert_eq!(bob.expect("close").await["code"], 4014);
    let ticket: Value = reqwest::Client::new()
        .post(format!("{}/meetings/{meeting}/join", h.base))
        .json(&json!({"name": "bob again"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut link = h.client().await;
    link.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": ticket["participant_token"]})).await;
    let first = link.next().await;
    assert_eq!(first["type"], "waiting", "after a removal, link joiners wait for a host: {first}");

    // Locked: people already in reconnect; newcomers are refused.
    host.send(json!({"type": "lock", "locked": true})).await;
    host.expect("meeting_locked").await;
    let (_ann_again, _) = as_role(&h, &meeting, "ann", Role::Participant, &[]).await;
    let mut newcomer = h.client().await;
    newcomer
        .send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": h.token(&meeting, "new", Role::Participant)}))
        .await;
    assert_eq!(newcomer.expect("close").await["code"], 4015);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_host_and_a_co_host_cannot_end_the_meeting_over_http() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let (mut host, _) = host_joined(&h, &meeting, &host_token).await;
    let (_pat, pat_id) = as_role(&h, &meeting, "pat", Role::Participant, &[]).await;
    let co = h.token(&meeting, "co", Role::CoHost);
    let (status, body) = http(&h, reqwest::Method::DELETE, &format!("/meetings/{meeting}"), &co, json!({})).await;
    assert_eq!(status, 403, "{body}");
    // The host hands the role to Pat: the former host's token no longer ends or changes the meeting.
    host.send(json!({"type": "set_role", "participant_id": pat_id, "role": "host"})).await;
    host.expect("role_changed").await;
    let (status, body) = http(
        &h,
        reqwest::Method::PATCH,
        &format!("/meetings/{meeting}"),
        &host_token,
        json!({"settings": {"locked": false}}),
    )
    .await;
    assert_eq!(status, 200, "a co-host may still change settings: {body}");
    let (status, body) =
        http(&h, reqwest::Method::DELETE, &format!("/meetings/{meeting}"), &host_token, json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert!(h.store.meeting(&meeting).await.unwrap().unwrap().ended_at.is_none());
}
