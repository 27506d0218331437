//! The object storage suite, run against both backends: a local directory and a real S3-compatible server
//! (`s3s-fs` on loopback, which checks request signatures).

use std::io::Write;

use bytes::Bytes;
use futures::TryStreamExt;
use sluice_controlplane::blobs::{BlobError, Blobs};
use sluice_controlplane::config::{StorageConfig, StorageKind};
use sluice_testkit::S3Server;

/// S3's smallest allowed part; a file of 2.4 parts goes up in 3.
const PART: usize = 5 << 20;

struct Fixture {
    blobs: Blobs,
    dir: tempfile::TempDir,
    s3: Option<S3Server>,
}

fn local() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig { part_size_bytes: PART, ..Default::default() };
    Fixture { blobs: Blobs::open(&config, dir.path()).unwrap(), dir, s3: None }
}

fn s3_config(s3: &S3Server) -> StorageConfig {
    StorageConfig {
        kind: StorageKind::S3,
        bucket: s3.bucket.clone(),
        endpoint: s3.endpoint.clone(),
        access_key_id: s3.access_key.clone(),
        secret_access_key: s3.secret_key.clone(),
        part_size_bytes: PART,
        upload_concurrency: 3,
        connect_attempts: 1,
        request_timeout_secs: 10,
        ..Default::default()
    }
}

fn s3() -> Fixture {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    Fixture { blobs: Blobs::open(&s3_config(&server), dir.path()).unwrap(), dir, s3: Some(server) }
}

macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod on_local_dir {
            $(#[tokio::test] async fn $case() { super::$case(&super::local()).await; })*
        }
        mod on_s3 {
            $(#[tokio::test] async fn $case() { super::$case(&super::s3()).await; })*
        }
    };
}

both_backends!(small_objects_round_trip, large_files_go_up_in_parallel_parts, missing_and_bad_keys_are_clear_errors);

/// Deterministic, not repetitive (so a part mix-up would show).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn small_objects_round_trip(f: &Fixture) {
    let b = &f.blobs;
    b.check().await.unwrap();
    b.put("meetings/m1/chat/a.txt", Bytes::from_static(b"hello")).await.unwrap();
    b.put("meetings/m1/chat/b.txt", Bytes::from_static(b"world!")).await.unwrap();
    b.put("meetings/m2/other.txt", Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(b.get("meetings/m1/chat/a.txt").await.unwrap(), Bytes::from_static(b"hello"));
    let range: Vec<Bytes> =
        b.stream_range("meetings/m1/chat/b.txt", 1..4, None).await.unwrap().try_collect().await.unwrap();
    assert_eq!(Bytes::from(range.concat()), Bytes::from_static(b"orl"));
    assert_eq!(b.head("meetings/m1/chat/b.txt").await.unwrap().unwrap().size, 6);
    let listed: Vec<String> =
        b.list("meetings/m1").await.unwrap().into_iter().map(|m| m.location.to_string()).collect();
    assert_eq!(listed, ["meetings/m1/chat/a.txt", "meetings/m1/chat/b.txt"]);
    b.delete("meetings/m1/chat/a.txt").await.unwrap();
    b.delete("meetings/m1/chat/a.txt").await.unwrap();
    assert!(b.head("meetings/m1/chat/a.txt").await.unwrap().is_none());
    if let Some(s3) = &f.s3 {
        // It really is in the S3 server's store, not anywhere of ours.
        let on_server = s3.root.path().join(&s3.bucket).join("meetings/m1/chat/b.txt");
        assert_eq!(std::fs::read(on_server).unwrap(), b"world!");
    }
}

async fn large_files_go_up_in_parallel_parts(f: &Fixture) {
    let data = pattern(PART * 2 + PART / 2);
    let path = f.dir.path().join("recording.mp4");
    std::fs::File::create(&path).unwrap().write_all(&data).unwrap();
    let size = f.blobs.put_file("meetings/m1/rec/composed.mp4", &path).await.unwrap();
    assert_eq!(size, data.len() as u64);
    let back = f.blobs.get("meetings/m1/rec/composed.mp4").await.unwrap();
    assert!(back.len() == data.len() && back[..] == data[..], "the object equals the file, byte for byte");

    if let Some(s3) = &f.s3 {
        // S3 gives a multipart object the ETag "<md5 of part md5s>-<parts>".
        let etag = f.blobs.head("meetings/m1/rec/composed.mp4").await.unwrap().unwrap().e_tag.unwrap_or_default();
        assert!(etag.trim_matches('"').ends_with("-3"), "expected a 3-part multipart ETag, got {etag}");
        let on_server = s3.root.path().join(&s3.bucket).join("meetings/m1/rec/composed.mp4");
        assert_eq!(std::fs::metadata(on_server).unwrap().len(), data.len() as u64);
    }

    // Downloads stream: a range arrives in several chunks, never as one buffer of the whole.
    let span = 1000..(PART * 2) as u64;
    let chunks: Vec<Bytes> = f
        .blobs
        .stream_range("meetings/m1/rec/composed.mp4", span.clone(), None)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(chunks.len() > 1, "{} chunk(s)", chunks.len());
    let joined: Vec<u8> = chunks.concat();
    assert!(joined[..] == data[span.start as usize..span.end as usize], "the streamed range equals the file's");
    let err = f.blobs.stream_range("meetings/none/x", 0..1, None).await.err().expect("no such object");
    assert!(matches!(err, BlobError::NotFound(ref k) if k == "meetings/none/x"), "{err:?}");

    let small = f.dir.path().join("small.vtt");
    std::fs::write(&small, "WEBVTT\n").unwrap();
    assert_eq!(f.blobs.put_file("meetings/m1/rec/t.vtt", &small).await.unwrap(), 7);
    assert_eq!(f.blobs.get("meetings/m1/rec/t.vtt").await.unwrap(), Bytes::from_static(b"WEBVTT\n"));
}

async fn missing_and_bad_keys_are_clear_errors(f: &Fixture) {
    let err = f.blobs.get("meetings/none/x").await.unwrap_err();
    assert!(matches!(err, BlobError::NotFound(ref k) if k == "meetings/none/x"), "{err:?}");
    let err = f.blobs.put("../escape", Bytes::new()).await.unwrap_err();
    assert!(matches!(err, BlobError::BadKey { .. }), "{err:?}");
    let err = f.blobs.put_file("x/y", &f.dir.path().join("no-such-file")).await.unwrap_err();
    assert!(err.to_string().contains("no-such-file"), "{err}");
}

#[tokio::test]
async fn s3_with_wrong_credentials_or_no_server_is_refused_clearly() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = s3_config(&server);
    config.secret_access_key = "not-the-secret".into();
    let blobs = Blobs::open(&config, dir.path()).unwrap();
    assert!(blobs.put("k", Bytes::from_static(b"v")).await.is_err(), "a bad signature must be refused");

    config = s3_config(&server);
    config.endpoint = format!("http://127.0.0.1:{}", sluice_testkit::free_port());
    let blobs = Blobs::open(&config, dir.path()).unwrap();
    let err = blobs.wait_reachable(2, std::time::Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(err, BlobError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1"), "names the endpoint: {err}");

    config = s3_config(&server);
    config.part_size_bytes = 1 << 20;
    let err = Blobs::open(&config, dir.path()).unwrap_err();
    assert!(err.to_string().contains("5 MiB"), "{err}");
}
