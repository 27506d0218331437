//! Recording downloads over HTTP: `GET /recordings/{id}/files/{name}` streams the object from storage, whole or
//! by range (players seek with ranges), with the lengths and ranges a player relies on.

use chrono::Utc;
use serde_json::{Value, json};
use sluice_controlplane::config::{AuthConfig, DatabaseConfig, HttpConfig, StorageConfig};
use sluice_controlplane::recording::storage_prefix;
use sluice_controlplane::server::{HttpServer, Services};
use sluice_controlplane::store::{Recording, RecordingStatus};

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

#[tokio::test]
async fn a_recording_file_downloads_whole_and_by_range() {
    let dir = tempfile::tempdir().unwrap();
    let auth = AuthConfig { token_secret: SECRET.into(), ..AuthConfig::default() };
    let services =
        Services::open(&DatabaseConfig::default(), &StorageConfig::default(), &auth, dir.path()).await.unwrap();
    let (store, blobs) = (services.store.clone(), services.blobs.clone());
    let http = HttpConfig { listen: "127.0.0.1:0".parse().unwrap(), ..HttpConfig::default() };
    let server = HttpServer::bind(&http, services).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    tokio::spawn(server.run(std::future::pending()));

    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{base}/meetings"))
        .json(&json!({"host_name": "Ada"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let meeting = created["meeting"]["id"].as_str().unwrap();
    let host = created["host_token"].as_str().unwrap();
    let now = Utc::now();
    let recording = Recording {
        id: "r_files_test".into(),
        meeting_id: meeting.into(),
        s3_key: None,
        duration_ms: Some(1000),
        transcript_url: None,
        status: RecordingStatus::Ready,
        status_reason: None,
        created_at: now,
        updated_at: now,
    };
    store.create_recording(&recording).await.unwrap();
    // Larger than one storage read, so the body arrives as a stream of chunks.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    blobs.put(&format!("{}/composed.mp4", storage_prefix(meeting, &recording.id)), data.clone().into()).await.unwrap();
    let url = format!("{base}/recordings/{}/files/composed.mp4", recording.id);

    let whole = client.get(&url).bearer_auth(host).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    let header = |r: &reqwest::Response, name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(header(&whole, "content-length"), Some(data.len().to_string()));
    assert_eq!(header(&whole, "content-type").as_deref(), Some("video/mp4"));
    assert_eq!(header(&whole, "accept-ranges").as_deref(), Some("bytes"));
    assert!(whole.bytes().await.unwrap()[..] == data[..], "the whole file, byte for byte");

    for (range, span) in
        [("bytes=100-199", 100..200), ("bytes=299000-", 299_000..300_000), ("bytes=-10", 299_990..300_000)]
    {
        let part = client.get(&url).bearer_auth(host).header("range", range).send().await.unwrap();
        assert_eq!(part.status(), 206, "{range}");
        assert_eq!(header(&part, "content-range"), Some(format!("bytes {}-{}/300000", span.start, span.end - 1)));
        assert_eq!(header(&part, "content-length"), Some(span.len().to_string()), "{range}");
        assert!(part.bytes().await.unwrap()[..] == data[span.clone()], "{range}");
    }
    // A range whose last byte comes before its first is ignored (RFC 9110): the whole file.
    let reversed = client.get(&url).bearer_auth(host).header("range", "bytes=500-100").send().await.unwrap();
    assert_eq!(reversed.status(), 200);
    assert_eq!(reversed.bytes().await.unwrap().len(), data.len());
    let head = client.head(&url).bearer_auth(host).send().await.unwrap();
    assert_eq!((head.status().as_u16(), header(&head, "content-length")), (200, Some(data.len().to_string())));
    let beyond = client.get(&url).bearer_auth(host).header("range", "bytes=400000-").send().await.unwrap();
    assert_eq!((beyond.status().as_u16(), header(&beyond, "content-range")), (416, Some("bytes */300000".into())));
    let missing = client.get(format!("{base}/recordings/{}/files/nope.mp4", recording.id)).bearer_auth(host).send();
    assert_eq!(missing.await.unwrap().status(), 404);
}
