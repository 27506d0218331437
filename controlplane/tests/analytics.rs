//! Analytics at the protocol level (`docs/analytics.md`): refused joins and media that never connects leave the
//! right events, stats summaries are checked, rate-limited and sampled with bounded volume, the API answers hosts
//! and operators only, and `/metrics` names every metric of the monitoring list.

mod harness;

use std::time::Duration;

use harness::{Harness, start};
use serde_json::{Value, json};
use sluice_controlplane::store::{AnalyticsEvent, Role};

async fn events(h: &Harness, meeting: &str) -> Vec<AnalyticsEvent> {
    h.store.analytics_events(meeting, 10_000).await.unwrap()
}

/// Waits (bounded) until the meeting has an event of `kind` matching `pred`.
async fn wait_event(h: &Harness, meeting: &str, kind: &str, pred: impl Fn(&Value) -> bool) -> AnalyticsEvent {
    for _ in 0..100 {
        if let Some(e) = events(h, meeting).await.into_iter().find(|e| e.event_type == kind && pred(&e.metrics)) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {kind} event; have {:?}", events(h, meeting).await.iter().map(|e| &e.event_type).collect::<Vec<_>>());
}

fn stats(ttff: Option<f64>) -> Value {
    let mut s = json!({"type": "stats", "candidate": {"type": "relay", "protocol": "udp"}, "tracks": [
        {"mid": "0", "direction": "outbound", "kind": "audio", "packets": 500, "bytes": 40000, "rtt_ms": 12.5,
         "bitrate_kbps": 32.0},
        {"mid": "1", "direction": "inbound", "kind": "video", "packets": 990, "lost": 10, "jitter_ms": 4.0,
         "bitrate_kbps": 900.0, "frames_decoded": 300, "fps": 30.0, "width": 640, "height": 360}
    ]});
    if let Some(t) = ttff {
        s["ttff_ms"] = json!(t);
    }
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_joins_and_media_that_never_connects_leave_events() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let mut bad = h.client().await;
    bad.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": "not-a-token"})).await;
    assert_eq!(bad.expect("close").await["code"], 4001);
    wait_event(&h, &meeting, "join_failed", |m| m["reason"] == "bad_token").await;

    // Joins (the harness answers offers but never runs ICE): the media never connects.
    let (mut ann, welcome) = h.joined(&meeting, "ann", &[]).await;
    let id = welcome["participant_id"].as_str().unwrap().to_string();
    let ok = wait_event(&h, &meeting, "join_succeeded", |m| m["participant_id"] == id.as_str()).await;
    assert_eq!(ok.user_id, "ann");
    assert!(ok.metrics["join_ms"].as_u64().unwrap() < 5000);
    let failed = wait_event(&h, &meeting, "ice_failed", |m| m["participant_id"] == id.as_str()).await;
    assert_eq!(failed.metrics["reason"], "ice_timeout");
    ann.send(json!({"type": "leave"})).await;
    let left = wait_event(&h, &meeting, "left", |m| m["participant_id"] == id.as_str()).await;
    assert_eq!(left.metrics["reason"], "left");
    let kinds: Vec<String> = events(&h, &meeting).await.into_iter().map(|e| e.event_type).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "join_attempted").count(), 1, "the bad token named no user: {kinds:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_summaries_are_checked_rate_limited_and_sampled() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut ann, welcome) = h.joined(&meeting, "ann", &["microphone"]).await;
    let id = welcome["participant_id"].as_str().unwrap().to_string();
    ann.send(stats(Some(812.0))).await;
    let ff = wait_event(&h, &meeting, "first_frame", |_| true).await;
    assert_eq!(ff.metrics["ttff_ms"], 812.0);
    let c = wait_event(&h, &meeting, "candidate", |_| true).await;
    assert_eq!((c.metrics["type"].as_str(), c.metrics["protocol"].as_str()), (Some("relay"), Some("udp")));
    let q = wait_event(&h, &meeting, "quality", |_| true).await;
    assert_eq!(q.metrics["participant_id"], id.as_str());
    assert_eq!(q.metrics["browser"]["bitrate_in_kbps"], 900.0);
    assert_eq!(q.metrics["browser"]["loss_in"], 0.01);
    assert_eq!(q.metrics["browser"]["rtt_ms"], 12.5);
    assert!(q.metrics["server"]["packets_in"].is_u64(), "the dataplane's figures join the browser's: {}", q.metrics);

    // A second summary at once is allowed (a burst of 2) but writes no second sample; a third is refused.
    ann.send(stats(Some(99.0))).await;
    ann.send(stats(None)).await;
    assert_eq!(ann.expect("error").await["code"], "rate_limited");
    // Malformed and oversized ones are refused, saying why.
    ann.send(json!({"type": "stats", "tracks": [], "ip": "192.0.2.1"})).await;
    let e = ann.expect("error").await;
    assert_eq!(e["code"], "bad_message");
    assert!(e["message"].as_str().unwrap().contains("ip"), "{e}");
    let padded = format!("{{\"type\": \"stats\", \"tracks\": [] {}}}", " ".repeat(17_000));
    ann.send_raw(&padded).await;
    let e = ann.expect("error").await;
    assert_eq!(e["code"], "limit");
    assert!(e["message"].as_str().unwrap().contains("16384"), "{e}");

    let all = events(&h, &meeting).await;
    let count = |kind: &str| all.iter().filter(|e| e.event_type == kind).count();
    assert_eq!((count("quality"), count("first_frame"), count("candidate")), (1, 1, 1), "bounded volume");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_transport_answers_from_the_dataplane_and_is_rate_limited() {
    let h = start().await;
    let (meeting, _) = h.meeting(json!({})).await;
    let (mut ann, _) = h.joined(&meeting, "ann", &[]).await;
    ann.send(json!({"type": "get_transport"})).await;
    let t = ann.expect("transport").await;
    // Media never connected here: no feedback yet, so no estimate, and no limit seen.
    assert!(t["estimate_bps"].is_null() && t["acked_bps"].is_null(), "{t}");
    assert_eq!(t["limited"], false);
    // A client asking in a loop is refused, saying how often it may ask.
    ann.send(json!({"type": "get_transport"})).await;
    let e = ann.expect("error").await;
    assert_eq!(e["code"], "rate_limited");
    assert!(e["message"].as_str().unwrap().contains("250 ms"), "{e}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    ann.send(json!({"type": "get_transport", "extra": 1})).await;
    assert_eq!(ann.expect("error").await["code"], "bad_message", "unknown fields are refused");
    ann.send(json!({"type": "get_transport"})).await;
    assert_eq!(ann.expect("transport").await["limited"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_hosts_and_operators_and_refuses_participants() {
    api_case(start().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_hosts_and_operators_on_postgres() {
    let schema = sluice_testkit::PgSchema::create().await;
    let database = sluice_controlplane::config::DatabaseConfig { url: schema.url.clone(), ..Default::default() };
    api_case(harness::start_on(database).await).await;
}

/// Events written by a meeting's room, read back through the API (on the harness's store backend).
async fn api_case(h: Harness) {
    let (meeting, host_token) = h.meeting(json!({"title": "Weekly"})).await;
    let (mut ann, _) = h.joined(&meeting, "ann", &[]).await;
    ann.send(stats(Some(500.0))).await;
    wait_event(&h, &meeting, "quality", |_| true).await;
    let base = h.base.clone();
    let get = |path: String, token: String| {
        let base = base.clone();
        async move { reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap() }
    };
    let participant = h.token(&meeting, "ann", Role::Participant);
    let refused = get(format!("/meetings/{meeting}/analytics"), participant.clone()).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("host"));
    let report: Value = get(format!("/meetings/{meeting}/analytics"), host_token.clone()).await.json().await.unwrap();
    assert_eq!(report["title"], "Weekly");
    assert_eq!(report["summary"]["ttff_ms_p50"], 500.0);
    assert_eq!(report["summary"]["relay_share"], 1.0);
    assert_eq!(report["participants"][0]["name"], "ann");
    assert_eq!(report["participants"][0]["samples"].as_array().unwrap().len(), 1);

    let operator = h.tokens.mint_operator("ops", None);
    assert_eq!(get(format!("/meetings/{meeting}/analytics"), operator.clone()).await.status(), 200);
    let everything = get("/analytics".into(), host_token.clone()).await;
    assert_eq!(everything.status(), 403, "a host token reads its meeting, not the deployment");
    assert!(everything.text().await.unwrap().contains("operator"));
    let deployment: Value = get("/analytics".into(), operator).await.json().await.unwrap();
    assert!(deployment["totals"]["joins_succeeded"].as_u64().unwrap() >= 1);
    assert!(deployment["meetings"].as_array().unwrap().iter().any(|m| m["meeting_id"] == meeting.as_str()));
    assert_eq!(get("/analytics".into(), participant).await.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_name_every_figure_of_the_monitoring_list() {
    let h = start().await;
    let text = reqwest::get(format!("{}/metrics", h.base)).await.unwrap().text().await.unwrap();
    for name in [
        "sluice_joins_total",
        "sluice_join_duration_seconds",
        "sluice_time_to_first_frame_seconds",
        "sluice_ice_connected_total",
        "sluice_ice_connect_seconds",
        "sluice_ice_failures_total",
        "sluice_packet_loss_ratio",
        "sluice_jitter_seconds",
        "sluice_rtt_seconds",
        "sluice_recordings_total",
        "sluice_transcription_latency_seconds",
        "sluice_dataplane_cpu_seconds_total",
        "sluice_dataplane_bytes_received_total",
    ] {
        assert!(
            text.contains(&format!("\n{name}")) || text.contains(&format!("# TYPE {name} ")),
            "/metrics lacks {name}"
        );
    }
    assert!(!text.contains("participant_id=") && !text.contains("meeting="), "no label per participant or meeting");
}
