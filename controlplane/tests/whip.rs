//! WHIP ingest over HTTP against a real server and dataplane: an offer is answered (ICE-lite, passive DTLS, the
//! worker's candidates, the client's payload types), the publisher is in the meeting and its tracks reach the
//! others' offers; DELETE ends it (only for its own user); one that never connects media is removed; bad
//! requests get the right status with a message.

mod harness;

use serde_json::{Value, json};
use sluice_controlplane::store::Role;

use harness::*;

const FINGERPRINT: &str =
    "EC:05:9A:67:6C:2B:45:1E:8B:0C:18:49:A3:4C:76:C4:3E:74:7D:38:C4:32:74:28:A0:B4:6D:9E:24:2E:33:31";

/// An offer as a WHIP encoder sends one: Opus and H.264 (its own payload type 102), SSRCs named, a data
/// channel section it does not need.
fn offer() -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE a v d\r\n\
         a=fingerprint:sha-256 {FINGERPRINT}\r\na=ice-ufrag:abcd\r\na=ice-pwd:efghijklmnopqrstuvwxyz12\r\na=setup:actpass\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:a\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
         a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=ssrc:1001 cname:enc\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:v\r\na=sendonly\r\na=rtpmap:102 H264/90000\r\n\
         a=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\na=ssrc:1002 cname:enc\r\n\
         m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:d\r\n"
    )
}

async fn post(h: &Harness, meeting: &str, token: Option<&str>, content_type: &str, body: &str) -> reqwest::Response {
    let mut request =
        reqwest::Client::new().post(format!("{}/whip/{meeting}", h.base)).header("content-type", content_type);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.body(body.to_string()).send().await.unwrap()
}

/// Where, with which token, headers and body; the status wanted and what its message says.
type PatchCase<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str, u16, &'a str);

/// A PATCH of `location`: its status and the error message, if any.
async fn patch(h: &Harness, location: &str, token: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut request = reqwest::Client::new().patch(format!("{}{location}", h.base)).bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body.to_string()).send().await.unwrap();
    let status = response.status().as_u16();
    let reply: Value = response.json().await.unwrap_or(Value::Null);
    (status, reply["error"]["message"].as_str().unwrap_or_default().to_string())
}

async fn delete(h: &Harness, location: &str, token: &str) -> u16 {
    let url = format!("{}{location}", h.base);
    reqwest::Client::new().delete(url).bearer_auth(token).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offer_is_answered_and_the_publisher_is_in_the_meeting_until_deleted() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut ann, _) = h.joined(&meeting, "ann", &[]).await;
    let token = h.token(&meeting, "obs", Role::Participant);
    let response = post(&h, &meeting, Some(&token), "application/sdp", &offer()).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["content-type"], "application/sdp");
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("/whip/{meeting}/p_")), "{location}");
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let answer = response.text().await.unwrap();
    for line in [
        "a=ice-lite",
        "a=group:BUNDLE a v\r\n",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
        "m=video 9 UDP/TLS/RTP/SAVPF 102\r\n",
        "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f",
        "a=setup:passive",
        "a=candidate:",
        "a=end-of-candidates",
        "a=recvonly",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n",
    ] {
        assert!(answer.contains(line), "{line:?} in {answer}");
    }
    assert!(!answer.contains("a=setup:actpass"), "{answer}");

    // Ann sees a participant named by the token, publishing a microphone and a camera, offered to her.
    let joined = ann.expect("participant_joined").await;
    assert_eq!(joined["participant"]["name"], "obs", "{joined}");
    // Its tracks, and an offer to receive them (the offer goes out with the first, so it may come between).
    let (mut sources, mut offered) = (Vec::new(), None);
    for _ in 0..20 {
        let m = ann.next().await;
        match m["type"].as_str() {
            Some("track_added") => sources.push(m["track"]["source"].as_str().unwrap().to_string()),
            Some("offer") => offered = Some(m),
            _ => {}
        }
        if sources.len() == 2 && offered.is_some() {
            break;
        }
    }
    sources.sort();
    assert_eq!(sources, ["camera", "microphone"]);
    let offered = offered.expect("an offer to receive the encoder");
    let sdp = offered["sdp"].as_str().unwrap();
    assert!(sdp.contains("opus/48000"), "Ann is offered the encoder's audio: {sdp}");
    assert!(h.roster(&meeting).await.iter().any(|p| p.name == "obs"));
    // A second session on the same token is refused; the first goes on.
    let second = post(&h, &meeting, Some(&token), "application/sdp", &offer()).await;
    assert_eq!(second.status(), 409);
    let reply: Value = second.json().await.unwrap();
    assert!(reply["error"]["message"].as_str().unwrap().contains("already"), "{reply}");

    // PATCH (RFC 9725 section 4.3): trickled candidates are taken, with or without the ETag; an ICE restart is
    // refused; each bad request says what was wrong.
    let frag = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\n\
                a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n";
    let sdpfrag = ("content-type", "application/trickle-ice-sdpfrag");
    let mallory = h.token(&meeting, "mallory", Role::Participant);
    let unknown = format!("/whip/{meeting}/p_nope");
    let cases: [PatchCase; 8] = [
        (&location, &token, vec![sdpfrag, ("if-match", &etag)], frag, 204, ""),
        (&location, &token, vec![sdpfrag], frag, 204, ""),
        (&location, &token, vec![sdpfrag, ("if-match", "*")], frag, 422, "ICE restarts are not supported"),
        (&location, &token, vec![sdpfrag, ("if-match", "\"other\"")], frag, 412, "ETag"),
        (&location, &token, vec![("content-type", "application/sdp")], frag, 415, "trickle-ice-sdpfrag"),
        (&location, &token, vec![sdpfrag], "a=candidate:1 1 udp\r\n", 400, "too few fields"),
        (&location, &mallory, vec![sdpfrag], frag, 404, "no WHIP or WHEP session"),
        (&unknown, &token, vec![sdpfrag], frag, 404, "no WHIP or WHEP session"),
    ];
    for (at, who, headers, body, want, says) in cases {
        let (status, message) = patch(&h, at, who, &headers, body).await;
        assert_eq!(status, want, "{headers:?} {body:?}: {message}");
        assert!(message.contains(says), "{says:?} in {message:?}");
    }

    // Another user's token does not end it; the encoder's does, once.
    assert_eq!(delete(&h, &location, &mallory).await, 404);
    assert_eq!(delete(&h, &location, &token).await, 200);
    let left = ann.expect("participant_left").await;
    assert_eq!(left["participant_id"].as_str(), location.rsplit('/').next(), "{left}");
    assert_eq!(delete(&h, &location, &token).await, 404);
    assert!(!h.roster(&meeting).await.iter().any(|p| p.name == "obs"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publisher_whose_media_never_connects_is_removed() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let token = h.token(&meeting, "obs", Role::Participant);
    assert_eq!(post(&h, &meeting, Some(&token), "application/sdp", &offer()).await.status(), 201);
    assert!(h.roster(&meeting).await.iter().any(|p| p.name == "obs"));
    // The harness reports media that has not connected after 2 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.roster(&meeting).await.iter().any(|p| p.name == "obs") {
        assert!(std::time::Instant::now() < deadline, "the unconnected WHIP publisher is still in");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_whip_requests_get_the_right_status_and_say_why() {
    let h = start().await;
    let (meeting, host) = h.meeting(json!({})).await;
    let token = h.token(&meeting, "obs", Role::Participant);
    let viewer = h.token(&meeting, "vic", Role::Viewer);
    let other_meeting = h.meeting(json!({})).await.0;
    let foreign = h.token(&other_meeting, "obs", Role::Participant);
    let no_ssrc = offer().replace("a=ssrc:1001 cname:enc\r\n", "").replace("a=extmap:4 ", "a=extmap:7 ");
    let only_speex = offer().replace("111 opus/48000/2", "111 speex/16000");
    let passive = offer().replace("a=setup:actpass", "a=setup:passive");
    /// Token, content type, body, meeting, the status wanted and what its message says.
    type Case<'a> = (Option<&'a str>, &'a str, String, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        (Some(&token), "text/plain", offer(), &meeting, 415, "application/sdp"),
        (None, "application/sdp", offer(), &meeting, 401, "Bearer"),
        (Some("not-a-token"), "application/sdp", offer(), &meeting, 401, ""),
        (Some(&foreign), "application/sdp", offer(), &meeting, 401, ""),
        (Some(&viewer), "application/sdp", offer(), &meeting, 403, "may not publish"),
        (Some(&token), "application/sdp", "hello".into(), &meeting, 400, "v=0"),
        (Some(&token), "application/sdp", passive, &meeting, 400, "setup:passive"),
        (Some(&token), "application/sdp", no_ssrc, &meeting, 400, "no SSRC"),
        (Some(&token), "application/sdp", only_speex, &meeting, 400, "no codec we forward"),
        (Some(&token), "application/sdp", offer(), "zzz-zzzz-zzz", 404, "does not exist"),
    ];
    for (token, content_type, body, meeting, status, says) in cases {
        let response = post(&h, meeting, token, content_type, &body).await;
        assert_eq!(response.status(), status, "{says:?}");
        let reply: Value = response.json().await.unwrap();
        assert!(reply["error"]["message"].as_str().unwrap().contains(says), "{says:?} in {reply}");
    }
    assert!(h.roster(&meeting).await.is_empty(), "no refused request seated anyone");
    // A resource that does not exist, and an ended meeting.
    assert_eq!(delete(&h, &format!("/whip/{meeting}/p_nope"), &token).await, 404);
    let ended = reqwest::Client::new()
        .delete(format!("{}/meetings/{meeting}", h.base))
        .bearer_auth(&host)
        .send()
        .await
        .unwrap()
        .status();
    assert!(ended.is_success(), "{ended}");
    assert_eq!(post(&h, &meeting, Some(&token), "application/sdp", &offer()).await.status(), 410);
}

/// A WHEP player's offer: receive-only Opus, and VP8 (96) and H.264 (102) video.
fn player_offer() -> String {
    format!(
        "v=0\r\no=- 3 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
         a=fingerprint:sha-256 {FINGERPRINT}\r\na=ice-ufrag:wxyz\r\na=ice-pwd:efghijklmnopqrstuvwxyz12\r\na=setup:actpass\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 109\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\na=rtpmap:109 opus/48000/2\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 120 102\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=recvonly\r\na=rtpmap:120 VP8/90000\r\n\
         a=rtpmap:102 H264/90000\r\n"
    )
}

async fn play(h: &Harness, meeting: &str, query: &str, token: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/whep/{meeting}?{query}", h.base))
        .header("content-type", "application/sdp")
        .bearer_auth(token)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whep_player_gets_a_participants_camera_and_microphone_at_its_payload_types() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let token = h.token(&meeting, "watcher", Role::Viewer);
    // Nobody in the meeting yet: nothing to watch.
    let empty = play(&h, &meeting, "", &token, &player_offer()).await;
    assert_eq!(empty.status(), 404);
    let (mut ann, _) = h.joined(&meeting, "ann", &["microphone", "camera"]).await;
    let offer = ann.expect("offer").await;
    ann.answer(&offer, 500).await;
    // Ann's answer reaches her room on its own connection: until it has, she publishes nothing to watch.
    let deadline = std::time::Instant::now() + WAIT;
    let response = loop {
        let response = play(&h, &meeting, "participant=ann", &token, &player_offer()).await;
        if response.status() == 201 {
            break response;
        }
        assert!(std::time::Instant::now() < deadline, "never answered: {}", response.text().await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("/whep/{meeting}/p_")), "{location}");
    let answer = response.text().await.unwrap();
    for line in [
        "m=audio 9 UDP/TLS/RTP/SAVPF 109\r\n",
        "m=video 9 UDP/TLS/RTP/SAVPF 120\r\n",
        "a=rtpmap:120 VP8/90000",
        "a=sendonly",
        "a=ssrc:",
        "a=setup:passive",
        "a=candidate:",
        "a=group:BUNDLE 0 1\r\n",
    ] {
        assert!(answer.contains(line), "{line:?} in {answer}");
    }
    assert!(!answer.contains("a=recvonly"), "{answer}");

    // Refusals: whom it names, what it asks, what its offer can decode, and who asks.
    let cases = [
        ("participant=nobody", player_offer(), &token, 404, "nobody named"),
        ("source=screen", player_offer(), &token, 404, "nobody is sharing"),
        ("source=camera", player_offer(), &token, 400, "screen or speaker"),
        ("participant=ann&source=screen", player_offer(), &token, 400, "not both"),
        (
            "participant=ann",
            player_offer().replace("120 102", "102").replace("a=rtpmap:120 VP8/90000\r\n", ""),
            &token,
            400,
            "does not offer",
        ),
    ];
    for (query, body, token, status, says) in cases {
        let response = play(&h, &meeting, query, token, &body).await;
        assert_eq!(response.status(), status, "{query}");
        let reply: Value = response.json().await.unwrap();
        assert!(reply["error"]["message"].as_str().unwrap().contains(says), "{says:?} in {reply}");
    }
    let delete_status = delete(&h, &location, &token).await;
    assert_eq!(delete_status, 200);
    assert_eq!(delete(&h, &location, &token).await, 404);
}
