//! Chat at the protocol level (`docs/chat.md`): who receives what, history on join and over HTTP, edit and delete
//! rules, the chat mode and grants, limits, and polls; each with clients that try what they may not.

mod harness;

use harness::{Client, Harness, start};
use serde_json::{Value, json};
use sluice_controlplane::store::Role;

/// Joins with `token`; returns the client, its participant id and the `chat_history` it got.
async fn join(h: &Harness, meeting: &str, token: &str) -> (Client, String, Value) {
    let mut c = h.client().await;
    c.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token})).await;
    let welcome = c.expect("welcome").await;
    let history = c.expect("chat_history").await;
    (c, welcome["participant_id"].as_str().unwrap().to_string(), history)
}

async fn participant(h: &Harness, meeting: &str, user: &str) -> (Client, String, Value) {
    join(h, meeting, &h.token(meeting, user, Role::Participant)).await
}

fn bodies(messages: &Value) -> Vec<String> {
    messages.as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap().to_string()).collect()
}

async fn error(c: &mut Client) -> (String, String) {
    let e = c.expect("error").await;
    (e["code"].as_str().unwrap().to_string(), e["message"].as_str().unwrap().to_string())
}

async fn history_api(h: &Harness, meeting: &str, token: &str, query: &str) -> Value {
    let reply = reqwest::Client::new()
        .get(format!("{}/meetings/{meeting}/chat{query}", h.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    reply.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_reach_exactly_who_may_read_them_and_history_replays_them() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let (mut host, _, _) = join(&h, &meeting, &host_token).await;
    let (mut ann, ann_id, _) = participant(&h, &meeting, "ann").await;
    let (mut bob, bob_id, _) = participant(&h, &meeting, "bob").await;
    let (mut cy, _, _) = participant(&h, &meeting, "cy").await;

    ann.send(json!({"type": "chat_send", "body": "hello all"})).await;
    let mine = ann.expect("chat").await["message"].clone();
    assert_eq!(
        (mine["mine"].clone(), mine["from_name"].clone(), mine["to"].clone()),
        (json!(true), json!("ann"), json!("everyone"))
    );
    for c in [&mut host, &mut bob, &mut cy] {
        let m = c.expect("chat").await["message"].clone();
        assert_eq!(
            (m["body"].as_str(), m["mine"].as_bool(), m["from_participant_id"].as_str()),
            (Some("hello all"), Some(false), Some(ann_id.as_str()))
        );
    }

    // A private message: Bob gets it; Cy and the host do not (their next message is the public one after it).
    ann.send(json!({"type": "chat_send", "body": "psst", "to": bob_id})).await;
    let private = bob.expect("chat").await["message"].clone();
    assert_eq!(
        (private["to"].as_str(), private["to_name"].as_str(), private["body"].as_str()),
        (Some("participant"), Some("bob"), Some("psst"))
    );
    cy.send(json!({"type": "chat_send", "body": "help please", "to": "hosts"})).await;
    assert_eq!(host.expect("chat").await["message"]["body"], "help please");
    ann.send(json!({"type": "chat_send", "body": "after"})).await;
    assert_eq!(cy.expect("chat").await["message"]["body"], "help please", "the author gets their message to the hosts");
    assert_eq!(cy.expect("chat").await["message"]["body"], "after", "Cy never got the private message");
    assert_eq!(host.expect("chat").await["message"]["body"], "after", "hosts do not get private messages");
    assert_eq!(bob.expect("chat").await["message"]["body"], "after", "only hosts get messages to the hosts");

    // The author is the server's to say: a client naming one is refused.
    ann.send(json!({"type": "chat_send", "body": "x", "from_name": "Host"})).await;
    let (code, text) = error(&mut ann).await;
    assert_eq!(code, "bad_message");
    assert!(text.contains("from_name"), "{text}");

    // A late joiner gets what they may see, oldest first.
    let (_dee, _, history) = participant(&h, &meeting, "dee").await;
    assert_eq!(bodies(&history["messages"]), ["hello all", "after"]);
    assert_eq!(history["has_more"], false);
    // The same rule over HTTP, for each reader.
    let page = |user: &str| h.token(&meeting, user, Role::Participant);
    assert_eq!(bodies(&history_api(&h, &meeting, &page("dee"), "").await["messages"]), ["hello all", "after"]);
    assert_eq!(bodies(&history_api(&h, &meeting, &page("bob"), "").await["messages"]), ["hello all", "psst", "after"]);
    assert_eq!(
        bodies(&history_api(&h, &meeting, &page("cy"), "").await["messages"]),
        ["hello all", "help please", "after"]
    );
    assert_eq!(
        bodies(&history_api(&h, &meeting, &host_token, "").await["messages"]),
        ["hello all", "help please", "after"]
    );
    let reply = reqwest::Client::new().get(format!("{}/meetings/{meeting}/chat", h.base)).send().await.unwrap();
    assert_eq!(reply.status(), 401, "the history needs a token of the meeting");
    // A valid token of someone never let in (a link token while they wait, say) reads nothing.
    let never_in = reqwest::Client::new()
        .get(format!("{}/meetings/{meeting}/chat", h.base))
        .bearer_auth(page("eve"))
        .send()
        .await
        .unwrap();
    assert_eq!(never_in.status(), 403);
    // A removed user's token reads no more chat.
    let cy_id = cy.seen.iter().find(|m| m["type"] == "welcome").unwrap()["participant_id"].clone();
    host.send(json!({"type": "remove_participant", "participant_id": cy_id})).await;
    assert_eq!(cy.expect("close").await["code"], 4014);
    for path in ["chat", "files"] {
        let reply = reqwest::Client::new()
            .get(format!("{}/meetings/{meeting}/{path}", h.base))
            .bearer_auth(page("cy"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 403, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn history_pages_backwards_from_the_newest() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    // Written straight to the store: the socket's rate limit is not what this test is about.
    for i in 0..105 {
        h.store
            .add_chat_message(&sluice_controlplane::store::NewChatMessage {
                meeting_id: meeting.clone(),
                room: "main".into(),
                user_id: "ann".into(),
                participant_id: "p_ann".into(),
                name: "ann".into(),
                role: Role::Participant,
                body: format!("m{i}"),
                recipient: sluice_controlplane::store::Recipient::Everyone,
                file_id: None,
                created_at: sluice_controlplane::store::now(),
            })
            .await
            .unwrap();
    }
    let (_c, _, history) = participant(&h, &meeting, "cy").await;
    let got = bodies(&history["messages"]);
    assert_eq!(got.len(), 100);
    assert_eq!((got[0].as_str(), got[99].as_str()), ("m5", "m104"));
    assert_eq!(history["has_more"], true);
    let oldest = history["messages"][0]["id"].as_i64().unwrap();
    let token = h.token(&meeting, "cy", Role::Participant);
    let older = history_api(&h, &meeting, &token, &format!("?before={oldest}&limit=3")).await;
    assert_eq!(bodies(&older["messages"]), ["m2", "m3", "m4"]);
    assert_eq!(older["has_more"], true);
    let first = history_api(&h, &meeting, &token, &format!("?before={}", older["messages"][0]["id"])).await;
    assert_eq!(bodies(&first["messages"]), ["m0", "m1"]);
    assert_eq!(first["has_more"], false);
    let bad = reqwest::Client::new()
        .get(format!("{}/meetings/{meeting}/chat?limit=1000", h.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("200"));
}

#[tokio::test(flavor = "multi_thread")]
async fn authors_edit_and_delete_their_own_and_hosts_delete_any() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let (mut host, _, _) = join(&h, &meeting, &host_token).await;
    let (mut ann, _, _) = participant(&h, &meeting, "ann").await;
    let (mut bob, _, _) = participant(&h, &meeting, "bob").await;
    ann.send(json!({"type": "chat_send", "body": "teh plan"})).await;
    let id = bob.expect("chat").await["message"]["id"].as_i64().unwrap();
    host.expect("chat").await;

    ann.send(json!({"type": "chat_edit", "message_id": id, "body": "the plan"})).await;
    for c in [&mut ann, &mut bob, &mut host] {
        let m = c.expect("chat_updated").await["message"].clone();
        assert_eq!(m["body"], "the plan");
        assert!(m["edited_at"].is_string());
    }
    bob.send(json!({"type": "chat_edit", "message_id": id, "body": "hijacked"})).await;
    assert_eq!(error(&mut bob).await.0, "forbidden");
    bob.send(json!({"type": "chat_delete", "message_id": id})).await;
    assert_eq!(error(&mut bob).await.0, "forbidden");
    bob.send(json!({"type": "chat_edit", "message_id": 999_999, "body": "x"})).await;
    assert_eq!(error(&mut bob).await.0, "not_found");
    assert_eq!(h.store.chat_message(id).await.unwrap().unwrap().body, "the plan", "refusals change nothing");

    host.send(json!({"type": "chat_delete", "message_id": id})).await;
    for c in [&mut ann, &mut bob, &mut host] {
        let m = c.expect("chat_updated").await["message"].clone();
        assert_eq!((m["deleted"].as_bool(), m["body"].as_str()), (Some(true), Some("")));
    }
    ann.send(json!({"type": "chat_edit", "message_id": id, "body": "undelete"})).await;
    assert_eq!(error(&mut ann).await.0, "not_found");
    let (_, _, history) = participant(&h, &meeting, "cy").await;
    assert!(bodies(&history["messages"]).is_empty(), "deleted messages leave the history");

    // Own deletion, and a host cannot delete a private message they cannot see.
    let (mut dee, dee_id, _) = participant(&h, &meeting, "dee").await;
    ann.send(json!({"type": "chat_send", "body": "for dee", "to": dee_id})).await;
    let private = dee.expect("chat").await["message"]["id"].as_i64().unwrap();
    host.send(json!({"type": "chat_delete", "message_id": private})).await;
    assert_eq!(error(&mut host).await.0, "not_found");
    ann.send(json!({"type": "chat_delete", "message_id": private})).await;
    assert_eq!(dee.expect("chat_updated").await["message"]["deleted"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chat_mode_and_grants_decide_who_sends() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let (mut host, host_id, _) = join(&h, &meeting, &host_token).await;
    let (mut ann, ann_id, _) = participant(&h, &meeting, "ann").await;
    let (mut bob, bob_id, _) = participant(&h, &meeting, "bob").await;

    ann.send(json!({"type": "chat_mode", "mode": "off"})).await;
    assert_eq!(error(&mut ann).await.0, "forbidden", "a participant cannot change the mode");
    ann.send(json!({"type": "chat_send", "body": "before the mode"})).await;
    let earlier = host.expect("chat").await["message"]["id"].as_i64().unwrap();

    host.send(json!({"type": "chat_mode", "mode": "hosts_only"})).await;
    for c in [&mut host, &mut ann, &mut bob] {
        assert_eq!(c.expect("chat_mode").await["mode"], "hosts_only");
    }
    ann.send(json!({"type": "chat_send", "body": "to all"})).await;
    assert_eq!(error(&mut ann).await.0, "forbidden");
    // Nor can an edit of a message sent before say something new to everyone.
    ann.send(json!({"type": "chat_edit", "message_id": earlier, "body": "said again to all"})).await;
    assert_eq!(error(&mut ann).await.0, "forbidden");
    assert_eq!(h.store.chat_message(earlier).await.unwrap().unwrap().body, "before the mode");
    ann.send(json!({"type": "chat_send", "body": "to bob", "to": bob_id})).await;
    assert_eq!(error(&mut ann).await.0, "forbidden");
    ann.send(json!({"type": "chat_send", "body": "to the hosts", "to": "hosts"})).await;
    assert_eq!(host.expect("chat").await["message"]["body"], "to the hosts");
    ann.send(json!({"type": "chat_send", "body": "to the host", "to": host_id})).await;
    assert_eq!(host.expect("chat").await["message"]["body"], "to the host");
    host.send(json!({"type": "chat_send", "body": "hosts speak to all"})).await;
    assert_eq!(bob.expect("chat").await["message"]["body"], "hosts speak to all");
    // A joiner learns the mode in welcome.
    let mut late = h.client().await;
    late.send(
        json!({"type": "join", "v": 1, "meeting_id": meeting, "token": h.token(&meeting, "cy", Role::Participant)}),
    )
    .await;
    assert_eq!(late.expect("welcome").await["meeting"]["chat"], "hosts_only");

    // Off for everyone, through the HTTP API.
    let control = |mode: &str| {
        reqwest::Client::new()
            .post(format!("{}/meetings/{meeting}/control/chat-mode", h.base))
            .bearer_auth(&host_token)
            .json(&json!({"mode": mode}))
            .send()
    };
    assert_eq!(control("off").await.unwrap().status(), 204);
    assert_eq!(ann.expect("chat_mode").await["mode"], "off");
    host.send(json!({"type": "chat_send", "body": "anyone?"})).await;
    assert!(error(&mut host).await.1.contains("chat is off"));
    assert_eq!(control("everyone").await.unwrap().status(), 204);
    assert_eq!(ann.expect("chat_mode").await["mode"], "everyone");

    // A host revokes one person's chat grant.
    host.send(json!({"type": "set_grants", "participant_id": ann_id, "grants": {"chat": false}})).await;
    ann.expect("role_changed").await;
    ann.send(json!({"type": "chat_send", "body": "still here"})).await;
    assert_eq!(error(&mut ann).await.0, "forbidden");
    bob.send(json!({"type": "chat_send", "body": "bob can"})).await;
    assert_eq!(host.expect("chat").await["message"]["body"], "bob can");
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_are_named_and_nothing_is_dropped_silently() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut ann, _, _) = participant(&h, &meeting, "ann").await;
    ann.send(json!({"type": "chat_send", "body": "   "})).await;
    assert_eq!(error(&mut ann).await.0, "bad_message");
    ann.send(json!({"type": "chat_send", "body": "x".repeat(4001)})).await;
    let (code, text) = error(&mut ann).await;
    assert_eq!(code, "limit");
    assert!(text.contains("4000"), "{text}");
    ann.send(json!({"type": "chat_send", "body": "é".repeat(4000)})).await;
    assert_eq!(
        ann.expect("chat").await["message"]["body"].as_str().unwrap().chars().count(),
        4000,
        "characters, not bytes"
    );
    ann.send(json!({"type": "chat_send", "body": "hi", "to": "p_nobody"})).await;
    assert_eq!(error(&mut ann).await.0, "not_found");

    // A burst beyond the bucket: every message is either delivered or refused with rate_limited.
    for i in 0..20 {
        ann.send(json!({"type": "chat_send", "body": format!("burst {i}")})).await;
    }
    let (mut delivered, mut limited) = (0, 0);
    while delivered + limited < 20 {
        let m = ann.next().await;
        match m["type"].as_str().unwrap() {
            "chat" => delivered += 1,
            "error" => {
                assert_eq!(m["code"], "rate_limited", "{m}");
                limited += 1;
            }
            _ => {}
        }
    }
    assert!(limited >= 5 && delivered >= 9, "delivered {delivered}, limited {limited}");
}

#[tokio::test(flavor = "multi_thread")]
async fn polls_take_one_vote_each_and_show_results_as_configured() {
    let h = start().await;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let (mut host, _, _) = join(&h, &meeting, &host_token).await;
    let (mut ann, _, _) = participant(&h, &meeting, "ann").await;
    let (mut bob, _, _) = participant(&h, &meeting, "bob").await;

    ann.send(json!({"type": "poll_create", "question": "Mine?", "options": ["a", "b"]})).await;
    assert_eq!(error(&mut ann).await.0, "forbidden");
    host.send(json!({"type": "poll_create", "question": "One?", "options": ["only"]})).await;
    assert!(error(&mut host).await.1.contains("2 to 10"));

    host.send(json!({"type": "poll_create", "question": "Lunch?", "options": ["pizza", "sushi"], "results": "hosts"}))
        .await;
    let poll = ann.expect("poll").await["poll"].clone();
    assert_eq!((poll["counts"].clone(), poll["voters"].clone()), (Value::Null, json!(0)));
    let id = poll["id"].as_str().unwrap().to_string();
    host.expect("poll").await;
    bob.expect("poll").await;

    ann.send(json!({"type": "poll_vote", "poll_id": id, "option": 0})).await;
    let seen_by_ann = ann.expect("poll").await["poll"].clone();
    assert_eq!(
        (seen_by_ann["my_vote"].clone(), seen_by_ann["counts"].clone(), seen_by_ann["voters"].clone()),
        (json!(0), Value::Null, json!(1))
    );
    assert!(seen_by_ann.get("voted_by").is_none(), "only hosts see who voted");
    let seen_by_host = host.expect("poll").await["poll"].clone();
    assert_eq!(
        (seen_by_host["counts"].clone(), seen_by_host["voted_by"].clone()),
        (json!([1, 0]), json!([["ann"], []]))
    );
    bob.expect("poll").await;

    ann.send(json!({"type": "poll_vote", "poll_id": id, "option": 0})).await;
    assert!(error(&mut ann).await.1.contains("already voted"));
    ann.send(json!({"type": "poll_vote", "poll_id": id, "option": 7})).await;
    assert_eq!(error(&mut ann).await.0, "bad_message");
    ann.send(json!({"type": "poll_vote", "poll_id": id, "option": 1})).await;
    assert_eq!(host.expect("poll").await["poll"]["counts"], json!([0, 1]), "a changed vote moves, not adds");
    bob.send(json!({"type": "poll_vote", "poll_id": id, "option": 1})).await;
    assert_eq!(host.expect("poll").await["poll"]["counts"], json!([0, 2]));

    host.send(json!({"type": "poll_close", "poll_id": id})).await;
    // Ann's earlier updates (her changed vote, Bob's) come first.
    let mut closed = ann.expect("poll").await["poll"].clone();
    for _ in 0..3 {
        if closed["closed"] == true {
            break;
        }
        closed = ann.expect("poll").await["poll"].clone();
    }
    assert_eq!(
        (closed["closed"].clone(), closed["counts"].clone()),
        (json!(true), json!([0, 2])),
        "everyone sees the results once closed"
    );
    bob.send(json!({"type": "poll_vote", "poll_id": id, "option": 0})).await;
    assert_eq!(error(&mut bob).await.1, "the poll is closed");
    bob.send(json!({"type": "poll_vote", "poll_id": "poll_nope", "option": 0})).await;
    assert_eq!(error(&mut bob).await.0, "not_found");

    let (_, _, history) = participant(&h, &meeting, "cy").await;
    assert_eq!(history["polls"][0]["counts"], json!([0, 2]));
    assert_eq!(h.store.polls(&meeting, "main").await.unwrap()[0].votes.len(), 2, "votes are stored");
}
