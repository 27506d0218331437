//! One Store suite, run against both backends: embedded SQLite (a temp file) and a real PostgreSQL (a schema of
//! its own per test). Every case is an `async fn(&dyn Store)`; `both_backends!` makes a test per backend.

use std::sync::Arc;

use chrono::{Duration, Utc};
use sluice_controlplane::store::*;
use sluice_testkit::PgSchema;

struct Fixture {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<PgSchema>,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&options("sqlite://test.db"), dir.path()).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    Fixture { store, _dir: Some(dir), _schema: None }
}

async fn postgres() -> Fixture {
    let schema = PgSchema::create().await;
    let store = open(&options(&schema.url), std::path::Path::new("/nonexistent")).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    Fixture { store, _dir: None, _schema: Some(schema) }
}

fn options(url: &str) -> StoreOptions {
    StoreOptions {
        url: url.into(),
        max_connections: 4,
        connect_attempts: 2,
        connect_backoff: std::time::Duration::from_millis(100),
        statement_timeout: std::time::Duration::from_secs(10),
    }
}

macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test] async fn $case() { let f = super::sqlite().await; super::$case(&*f.store).await; })*
        }
        mod on_postgres {
            $(#[tokio::test] async fn $case() { let f = super::postgres().await; super::$case(&*f.store).await; })*
        }
    };
}

both_backends!(
    migrations_run_once,
    meetings_round_trip_and_ids_are_unique,
    a_meeting_ends_once,
    participants_join_leave_and_list,
    recordings_update_partially_and_list_in_order,
    analytics_events_keep_their_json,
    chat_pages_by_id,
    concurrent_writes_all_land,
    api_keys_verify_until_revoked,
    moderation_writes_roles_removals_and_settings,
);

fn meeting(id: &str) -> Meeting {
    Meeting {
        id: id.into(),
        host_id: "u_host".into(),
        created_at: now(),
        ended_at: None,
        settings: MeetingSettings { title: Some("Standup ☕".into()), max_participants: 12, ..Default::default() },
        recording_enabled: false,
    }
}

fn participant(meeting_id: &str, connection_id: &str, joined_at: chrono::DateTime<Utc>) -> Participant {
    Participant {
        meeting_id: meeting_id.into(),
        connection_id: connection_id.into(),
        user_id: format!("u_{connection_id}"),
        name: format!("Name {connection_id}"),
        role: Role::Participant,
        joined_at,
        left_at: None,
    }
}

async fn migrations_run_once(store: &dyn Store) {
    // `open` migrated already: another run applies nothing and reports the same version.
    let again = store.migrate().await.unwrap();
    assert_eq!(again.applied, Vec::<i64>::new());
    assert_eq!(again.version, MIGRATIONS_SQLITE.last().unwrap().version);
    store.ping().await.unwrap();
}

async fn meetings_round_trip_and_ids_are_unique(store: &dyn Store) {
    let m = meeting("abc-defg-hij");
    store.create_meeting(&m).await.unwrap();
    assert_eq!(store.meeting("abc-defg-hij").await.unwrap(), Some(m.clone()));
    assert_eq!(store.meeting("zzz-zzzz-zzz").await.unwrap(), None);
    let err = store.create_meeting(&m).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(store.set_recording_enabled("abc-defg-hij", true).await.unwrap());
    assert!(store.meeting("abc-defg-hij").await.unwrap().unwrap().recording_enabled);
    assert!(!store.set_recording_enabled("zzz-zzzz-zzz", true).await.unwrap());
}

async fn a_meeting_ends_once(store: &dyn Store) {
    store.create_meeting(&meeting("m-end")).await.unwrap();
    let at = now();
    assert!(store.end_meeting("m-end", at).await.unwrap());
    assert!(!store.end_meeting("m-end", at + Duration::seconds(5)).await.unwrap(), "second end is refused");
    assert_eq!(store.meeting("m-end").await.unwrap().unwrap().ended_at, Some(at));
    assert!(!store.end_meeting("missing", at).await.unwrap());
}

async fn participants_join_leave_and_list(store: &dyn Store) {
    store.create_meeting(&meeting("m-p")).await.unwrap();
    let t0 = now();
    let (a, b, c) = (
        participant("m-p", "c1", t0),
        participant("m-p", "c2", t0 + Duration::seconds(1)),
        participant("m-p", "c3", t0 + Duration::seconds(2)),
    );
    for p in [&a, &b, &c] {
        store.add_participant(p).await.unwrap();
    }
    assert!(matches!(store.add_participant(&a).await.unwrap_err(), StoreError::Conflict(_)));
    let orphan = participant("no-such-meeting", "c9", t0);
    assert!(matches!(store.add_participant(&orphan).await.unwrap_err(), StoreError::Missing(_)));

    let left_at = t0 + Duration::seconds(10);
    assert!(store.participant_left("m-p", "c2", left_at).await.unwrap());
    assert!(!store.participant_left("m-p", "c2", left_at).await.unwrap(), "leaving twice keeps the first time");
    let active: Vec<_> = store.participants("m-p", true).await.unwrap().into_iter().map(|p| p.connection_id).collect();
    assert_eq!(active, ["c1", "c3"]);
    let all = store.participants("m-p", false).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0], a);
    assert_eq!(all[1].left_at, Some(left_at));

    assert_eq!(store.all_participants_left("m-p", left_at).await.unwrap(), 2);
    assert!(store.participants("m-p", true).await.unwrap().is_empty());
}

async fn recordings_update_partially_and_list_in_order(store: &dyn Store) {
    store.create_meeting(&meeting("m-r")).await.unwrap();
    let t0 = now();
    let rec = |id: &str, created_at| Recording {
        id: id.into(),
        meeting_id: "m-r".into(),
        s3_key: None,
        duration_ms: None,
        transcript_url: None,
        status: RecordingStatus::Recording,
        status_reason: None,
        created_at,
        updated_at: created_at,
    };
    store.create_recording(&rec("r1", t0)).await.unwrap();
    // One recording runs per meeting at a time, however close two start requests come.
    let twice = store.create_recording(&rec("r1b", t0)).await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "a second running recording: {twice:?}");

    let t1 = t0 + Duration::seconds(120);
    let processing = RecordingUpdate {
        status: Some(RecordingStatus::Processing),
        s3_key: Some("meetings/m-r/r1/composed.mp4".into()),
        duration_ms: Some(15_250),
        ..Default::default()
    };
    assert!(store.update_recording("r1", &processing, t1).await.unwrap());
    let ready = RecordingUpdate { status: Some(RecordingStatus::Ready), ..Default::default() };
    assert!(store.update_recording("r1", &ready, t1).await.unwrap());
    assert!(!store.update_recording("nope", &ready, t1).await.unwrap());
    // Once it stopped, the meeting can be recorded again.
    store.create_recording(&rec("r2", t0 + Duration::seconds(60))).await.unwrap();

    let r1 = store.recording("r1").await.unwrap().unwrap();
    assert_eq!(r1.status, RecordingStatus::Ready);
    assert_eq!(r1.s3_key.as_deref(), Some("meetings/m-r/r1/composed.mp4"), "a later update keeps earlier columns");
    assert_eq!(r1.duration_ms, Some(15_250));
    assert_eq!(r1.updated_at, t1);

    let ids: Vec<_> = store.recordings_of_meeting("m-r").await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["r2", "r1"], "newest first");
    let recording: Vec<_> =
        store.recordings_with_status(RecordingStatus::Recording).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(recording, ["r2"]);
    assert_eq!(store.recording("nope").await.unwrap(), None);
}

async fn analytics_events_keep_their_json(store: &dyn Store) {
    store.create_meeting(&meeting("m-a")).await.unwrap();
    let t0 = now();
    for i in 0..5 {
        let event = AnalyticsEvent {
            meeting_id: "m-a".into(),
            user_id: "u1".into(),
            event_type: "qoe".into(),
            metrics: serde_json::json!({ "rtt_ms": 20 + i, "loss": [0.0, 0.5], "codec": { "video": "VP8" } }),
            timestamp: t0 + Duration::milliseconds(i64::from(4 - i)),
        };
        store.add_analytics_event(&event).await.unwrap();
    }
    let events = store.analytics_events("m-a", 3).await.unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp), "oldest first");
    assert_eq!(events[0].metrics["rtt_ms"], 24);
    assert_eq!(events[0].metrics["codec"]["video"], "VP8");
}

async fn chat_pages_by_id(store: &dyn Store) {
    store.create_meeting(&meeting("m-c")).await.unwrap();
    let mut ids = vec![];
    for i in 0..5 {
        let msg = NewChatMessage {
            meeting_id: "m-c".into(),
            user_id: "u1".into(),
            name: "Ada".into(),
            body: format!("hello {i} — ünïcode ✓"),
            attachment_key: (i == 2).then(|| "chat/m-c/file.pdf".to_string()),
            created_at: now(),
        };
        let stored = store.add_chat_message(&msg).await.unwrap();
        assert_eq!(stored.body, msg.body);
        ids.push(stored.id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let first = store.chat_messages("m-c", 0, 2).await.unwrap();
    assert_eq!(first.iter().map(|m| m.id).collect::<Vec<_>>(), ids[..2]);
    let rest = store.chat_messages("m-c", first[1].id, 10).await.unwrap();
    assert_eq!(rest.iter().map(|m| m.id).collect::<Vec<_>>(), ids[2..]);
    assert_eq!(rest[0].attachment_key.as_deref(), Some("chat/m-c/file.pdf"));
    assert!(store.chat_messages("other", 0, 10).await.unwrap().is_empty());
}

async fn concurrent_writes_all_land(store: &dyn Store) {
    // Shared across tasks the way the HTTP handlers share it.
    let m = meeting("m-x");
    store.create_meeting(&m).await.unwrap();
    let joins = (0..32).map(|i| {
        let p = participant("m-x", &format!("c{i:02}"), now());
        async move { store.add_participant(&p).await }
    });
    for result in futures::future::join_all(joins).await {
        result.unwrap();
    }
    assert_eq!(store.participants("m-x", true).await.unwrap().len(), 32);
}

/// A key verifies against what the store keeps (only its hash), and stops at once when revoked.
async fn api_keys_verify_until_revoked(store: &dyn Store) {
    use sluice_controlplane::apikeys::{self, KeyError, Scope};
    let new = apikeys::generate("portal", &[Scope::CreateMeetings, Scope::MintTokens]).unwrap();
    store.create_api_key(&new.row).await.unwrap();
    let other = apikeys::generate("monitoring", &[Scope::Operate]).unwrap();
    store.create_api_key(&other.row).await.unwrap();
    assert!(matches!(store.create_api_key(&new.row).await, Err(StoreError::Conflict(_))));

    let stored = store.api_key(&new.row.id).await.unwrap().unwrap();
    assert_eq!(stored, new.row, "read back as written");
    assert!(!stored.secret_hash.is_empty() && !new.key.contains(&stored.secret_hash));
    let key = apikeys::verify(store, &new.key).await.unwrap();
    assert_eq!((key.name.as_str(), key.allows(Scope::MintTokens), key.allows(Scope::Operate)), ("portal", true, false));
    let last = if new.key.ends_with('x') { 'y' } else { 'x' };
    let wrong_secret = format!("{}{last}", &new.key[..new.key.len() - 1]);
    assert!(matches!(apikeys::verify(store, &wrong_secret).await, Err(KeyError::Unknown(_))));

    let listed: Vec<String> = store.api_keys().await.unwrap().into_iter().map(|k| k.name).collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&"portal".to_string()) && listed.contains(&"monitoring".to_string()));

    assert!(store.revoke_api_key(&new.row.id, now()).await.unwrap());
    assert!(!store.revoke_api_key(&new.row.id, now()).await.unwrap(), "once");
    assert!(!store.revoke_api_key("nosuchkey123", now()).await.unwrap());
    assert!(matches!(apikeys::verify(store, &new.key).await, Err(KeyError::Revoked(_))));
    assert!(apikeys::verify(store, &other.key).await.is_ok(), "another key is untouched");
}

/// What host controls write: a connection's new role, a removal (idempotent, per user), new settings.
async fn moderation_writes_roles_removals_and_settings(store: &dyn Store) {
    let m = meeting("mod-erat-ion");
    store.create_meeting(&m).await.unwrap();
    store.add_participant(&participant(&m.id, "c1", now())).await.unwrap();
    assert!(store.set_participant_role(&m.id, "c1", Role::CoHost).await.unwrap());
    assert!(!store.set_participant_role(&m.id, "nope", Role::CoHost).await.unwrap());
    assert_eq!(store.participants(&m.id, true).await.unwrap()[0].role, Role::CoHost);

    assert!(!store.is_removed(&m.id, "u_bad").await.unwrap());
    assert!(!store.any_removal(&m.id).await.unwrap());
    store.add_removal(&m.id, "u_bad", "Host", now()).await.unwrap();
    store.add_removal(&m.id, "u_bad", "Host", now()).await.unwrap();
    assert!(store.is_removed(&m.id, "u_bad").await.unwrap());
    assert!(store.any_removal(&m.id).await.unwrap());
    assert!(!store.is_removed(&m.id, "u_good").await.unwrap(), "by user id");
    assert!(!store.is_removed("othe-rmee-ting", "u_bad").await.unwrap(), "by meeting");

    let settings = MeetingSettings { locked: true, description: Some("<b>agenda</b>".into()), ..m.settings.clone() };
    assert!(store.set_meeting_settings(&m.id, &settings).await.unwrap());
    assert_eq!(store.meeting(&m.id).await.unwrap().unwrap().settings, settings, "read back as written");
    assert!(!store.set_meeting_settings("none-none-non", &settings).await.unwrap());
}
