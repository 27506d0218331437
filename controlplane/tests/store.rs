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
    chat_visibility_edits_files_and_polls,
    breakout_rooms_and_assignments,
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

fn chat(meeting_id: &str, user: &str, body: &str, recipient: Recipient) -> NewChatMessage {
    NewChatMessage {
        meeting_id: meeting_id.into(),
        room: MAIN_ROOM.into(),
        user_id: user.into(),
        participant_id: format!("p_{user}"),
        name: user.to_uppercase(),
        role: Role::Participant,
        body: body.into(),
        recipient,
        file_id: None,
        created_at: now(),
    }
}

fn page(meeting_id: &str, viewer: &str, host: bool, before: Option<i64>, limit: u32) -> ChatQuery {
    ChatQuery {
        meeting_id: meeting_id.into(),
        room: MAIN_ROOM.into(),
        viewer_user_id: viewer.into(),
        viewer_is_host: host,
        before,
        limit,
    }
}

async fn chat_pages_by_id(store: &dyn Store) {
    store.create_meeting(&meeting("m-c")).await.unwrap();
    let mut ids = vec![];
    for i in 0..5 {
        let msg = chat("m-c", "u1", &format!("hello {i} — ünïcode ✓"), Recipient::Everyone);
        let stored = store.add_chat_message(&msg).await.unwrap();
        assert_eq!(stored.body, msg.body);
        ids.push(stored.id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let newest = store.chat_history(&page("m-c", "u2", false, None, 2)).await.unwrap();
    assert_eq!(newest.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[4], ids[3]], "newest first");
    let older = store.chat_history(&page("m-c", "u2", false, Some(newest[1].id), 10)).await.unwrap();
    assert_eq!(older.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[2], ids[1], ids[0]]);
    assert_eq!(older[0].name, "U1");
    assert_eq!(older[0].role, Role::Participant);
    assert!(store.chat_history(&page("other", "u2", false, None, 10)).await.unwrap().is_empty());
}

/// Private messages reach their author and recipient only; messages to the hosts, hosts; edits and deletions
/// stick; files join their messages; polls keep one vote per user.
async fn chat_visibility_edits_files_and_polls(store: &dyn Store) {
    store.create_meeting(&meeting("m-v")).await.unwrap();
    let bob = Recipient::User { user_id: "bob".into(), participant_id: "p_bob".into(), name: "Bob".into() };
    let public = store.add_chat_message(&chat("m-v", "ann", "hi all", Recipient::Everyone)).await.unwrap();
    let private = store.add_chat_message(&chat("m-v", "ann", "psst bob", bob.clone())).await.unwrap();
    let hosts = store.add_chat_message(&chat("m-v", "cy", "help", Recipient::Hosts)).await.unwrap();
    let seen = |viewer: &'static str, host: bool| async move {
        let mut ids: Vec<i64> =
            store.chat_history(&page("m-v", viewer, host, None, 50)).await.unwrap().iter().map(|m| m.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(seen("ann", false).await, vec![public.id, private.id]);
    assert_eq!(seen("bob", false).await, vec![public.id, private.id]);
    assert_eq!(seen("cy", false).await, vec![public.id, hosts.id], "the author sees their message to the hosts");
    assert_eq!(seen("dee", false).await, vec![public.id]);
    assert_eq!(seen("host", true).await, vec![public.id, hosts.id], "a host does not read private messages");
    let read = store.chat_message(private.id).await.unwrap().unwrap();
    assert_eq!(read.recipient, bob);

    assert!(store.edit_chat_message(public.id, "hi everyone", now()).await.unwrap());
    let edited = store.chat_message(public.id).await.unwrap().unwrap();
    assert_eq!(edited.body, "hi everyone");
    assert!(edited.edited_at.is_some());
    assert!(store.delete_chat_message(public.id, "Host", now()).await.unwrap());
    assert!(!store.delete_chat_message(public.id, "Host", now()).await.unwrap(), "deleted once");
    assert!(!store.edit_chat_message(public.id, "again", now()).await.unwrap(), "a deleted message stays deleted");
    assert_eq!(seen("dee", false).await, Vec::<i64>::new(), "deleted messages leave the history");

    let file = ChatFile {
        id: "f_1".into(),
        meeting_id: "m-v".into(),
        object_key: "meetings/m-v/chat/f_1".into(),
        name: "report.pdf".into(),
        content_type: "application/pdf".into(),
        size: 1234,
        user_id: "ann".into(),
        created_at: now(),
        expires_at: Some(now() - Duration::seconds(1)),
        deleted_at: None,
    };
    store.add_chat_file(&file).await.unwrap();
    let mut with_file = chat("m-v", "ann", "report.pdf", Recipient::Everyone);
    with_file.file_id = Some(file.id.clone());
    let posted = store.add_chat_message(&with_file).await.unwrap();
    assert_eq!(posted.file.as_ref(), Some(&file));
    assert_eq!(store.chat_files("m-v").await.unwrap(), vec![(file.clone(), posted.id)]);
    assert_eq!(store.expired_chat_files(now(), 10).await.unwrap(), vec![file.clone()]);
    assert!(store.delete_chat_file(&file.id, now()).await.unwrap());
    assert!(store.expired_chat_files(now(), 10).await.unwrap().is_empty());
    assert!(store.chat_files("m-v").await.unwrap().is_empty());
    assert_eq!(store.chat_message(posted.id).await.unwrap().unwrap().file, None, "a deleted file leaves its message");

    let from = now() - Duration::seconds(60);
    let exported = store.chat_public_between("m-v", from, now(), 100).await.unwrap();
    assert_eq!(exported.iter().map(|m| m.id).collect::<Vec<_>>(), vec![posted.id], "public and not deleted only");

    let poll = Poll {
        id: "poll_1".into(),
        meeting_id: "m-v".into(),
        room: MAIN_ROOM.into(),
        question: "Lunch?".into(),
        options: vec!["pizza".into(), "sushi".into()],
        anonymous: false,
        results: PollResults::Hosts,
        created_by: "Host".into(),
        created_at: now(),
        closed_at: None,
        votes: vec![],
    };
    store.create_poll(&poll).await.unwrap();
    let vote = |user: &str, choice| PollVote { user_id: user.into(), name: user.into(), choice, voted_at: now() };
    store.vote("poll_1", &vote("ann", 0)).await.unwrap();
    store.vote("poll_1", &vote("bob", 0)).await.unwrap();
    store.vote("poll_1", &vote("ann", 1)).await.unwrap();
    assert!(store.close_poll("poll_1", now()).await.unwrap());
    assert!(!store.close_poll("poll_1", now()).await.unwrap());
    let polls = store.polls("m-v", MAIN_ROOM).await.unwrap();
    assert_eq!(polls.len(), 1);
    assert_eq!(polls[0].options, poll.options);
    assert!(polls[0].closed_at.is_some());
    let mut votes: Vec<(String, u32)> = polls[0].votes.iter().map(|v| (v.user_id.clone(), v.choice)).collect();
    votes.sort();
    assert_eq!(votes, vec![("ann".into(), 1), ("bob".into(), 0)], "a second vote replaces the first");
    assert!(store.polls("m-v", "breakout-1").await.unwrap().is_empty());
}

async fn breakout_rooms_and_assignments(store: &dyn Store) {
    store.create_meeting(&meeting("m-b")).await.unwrap();
    let rooms = |names: &[&str]| -> Vec<BreakoutRoom> {
        names.iter().enumerate().map(|(i, n)| BreakoutRoom { id: format!("b{i}-{n}"), name: n.to_string() }).collect()
    };
    let first = rooms(&["Zeta", "Alpha"]);
    store.set_breakout_rooms("m-b", &first, now()).await.unwrap();
    assert_eq!(store.breakout_rooms("m-b").await.unwrap(), first, "in the order given");
    store.assign_breakout("m-b", "ann", Some("b0-Zeta")).await.unwrap();
    store.assign_breakout("m-b", "bob", Some("b0-Zeta")).await.unwrap();
    store.assign_breakout("m-b", "ann", Some("b1-Alpha")).await.unwrap();
    assert_eq!(
        store.breakout_assignments("m-b").await.unwrap(),
        vec![("ann".to_string(), "b1-Alpha".to_string()), ("bob".to_string(), "b0-Zeta".to_string())]
    );
    store.assign_breakout("m-b", "bob", None).await.unwrap();
    assert_eq!(store.breakout_assignments("m-b").await.unwrap().len(), 1);
    assert!(store.assign_breakout("m-b", "cy", Some("b9-none")).await.is_err(), "the room must exist");
    // New rooms replace the old ones and their assignments.
    store.set_breakout_rooms("m-b", &rooms(&["One"]), now()).await.unwrap();
    assert_eq!(store.breakout_rooms("m-b").await.unwrap().len(), 1);
    assert!(store.breakout_assignments("m-b").await.unwrap().is_empty());
    assert!(store.breakout_rooms("other").await.unwrap().is_empty());
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
