//! Files shared in chat, on both object storage backends (a local directory and a real S3-compatible server,
//! `s3s-fs`): streamed upload with the type read from the bytes, signed links that serve the same bytes,
//! private files, the size limit and broken uploads leaving nothing behind, deletion with the message, and
//! retention.

mod harness;

use futures::StreamExt;
use harness::{Client, Harness, start_with};
use serde_json::{Value, json};
use sluice_controlplane::blobs::Blobs;
use sluice_controlplane::config::{ChatConfig, StorageConfig, StorageKind};
use sluice_controlplane::store::Role;
use sluice_testkit::S3Server;

const LIMIT: u64 = 256 * 1024;

struct Setup {
    h: Harness,
    storage: StorageConfig,
    _s3: Option<S3Server>,
}

fn chat_config() -> ChatConfig {
    ChatConfig { file_size_max_bytes: LIMIT, sweep_interval_secs: 1, ..ChatConfig::default() }
}

async fn local() -> Setup {
    let storage = StorageConfig { part_size_bytes: 64 * 1024, ..StorageConfig::default() };
    Setup { h: start_with(storage.clone(), chat_config()).await, storage, _s3: None }
}

async fn s3() -> Setup {
    let server = S3Server::start();
    let storage = StorageConfig {
        kind: StorageKind::S3,
        bucket: server.bucket.clone(),
        endpoint: server.endpoint.clone(),
        access_key_id: server.access_key.clone(),
        secret_access_key: server.secret_key.clone(),
        part_size_bytes: 5 << 20,
        connect_attempts: 1,
        request_timeout_secs: 10,
        ..StorageConfig::default()
    };
    Setup { h: start_with(storage.clone(), chat_config()).await, storage, _s3: Some(server) }
}

macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod on_local_dir {
            $(#[tokio::test(flavor = "multi_thread")] async fn $case() { super::$case(super::local().await).await; })*
        }
        mod on_s3 {
            $(#[tokio::test(flavor = "multi_thread")] async fn $case() { super::$case(super::s3().await).await; })*
        }
    };
}

both_backends!(files_are_shared_typed_by_their_bytes_and_read_through_signed_links, refused_uploads_leave_nothing);

async fn join(h: &Harness, meeting: &str, user: &str) -> (Client, String, String) {
    let token = h.token(meeting, user, Role::Participant);
    let mut c = h.client().await;
    c.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token})).await;
    let id = c.expect("welcome").await["participant_id"].as_str().unwrap().to_string();
    c.expect("chat_history").await;
    (c, id, token)
}

/// A PNG signature and header, then noise: a file whose type only its bytes tell.
fn png(len: usize) -> Vec<u8> {
    let mut data = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0".to_vec();
    data.extend((0..len.saturating_sub(data.len())).map(|i| (i * 7 % 251) as u8));
    data
}

async fn upload(h: &Harness, meeting: &str, token: &str, query: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/meetings/{meeting}/files{query}", h.base))
        .bearer_auth(token)
        // The client's claim, which the server ignores.
        .header("content-type", "text/html")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn link(h: &Harness, meeting: &str, token: &str, file: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/meetings/{meeting}/files/{file}/link", h.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// The meeting's chat objects in storage.
async fn objects(storage: &StorageConfig, h: &Harness, meeting: &str) -> Vec<String> {
    let blobs = Blobs::open(storage, &h.dir).unwrap();
    blobs.list(&format!("meetings/{meeting}/chat")).await.unwrap().into_iter().map(|o| o.location.to_string()).collect()
}

async fn files_are_shared_typed_by_their_bytes_and_read_through_signed_links(s: Setup) {
    let h = &s.h;
    let (meeting, host_token) = h.meeting(json!({})).await;
    let (mut host, _, _) = {
        let mut c = h.client().await;
        c.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": host_token})).await;
        c.expect("welcome").await;
        (c, (), ())
    };
    let (_ann, _, ann_token) = join(h, &meeting, "ann").await;
    let (mut bob, bob_id, bob_token) = join(h, &meeting, "bob").await;
    let (_cy, _, cy_token) = join(h, &meeting, "cy").await;

    let data = png(200 * 1024);
    let name = "../../<img src=x onerror=alert(1)>.png";
    let reply = upload(h, &meeting, &ann_token, &format!("?name={}", urlencode(name)), data.clone()).await;
    assert_eq!(reply.status(), 201);
    let uploaded: Value = reply.json().await.unwrap();
    let file = &uploaded["file"];
    assert_eq!(file["name"], "<img src=x onerror=alert(1)>.png", "a display name, never a path");
    assert_eq!((file["content_type"].as_str(), file["preview"].as_bool()), (Some("image/png"), Some(true)));
    assert_eq!(file["size"], data.len());
    let shared = bob.expect("chat").await["message"].clone();
    assert_eq!(shared["file"], *file);
    let file_id = file["id"].as_str().unwrap().to_string();

    let links: Value = link(h, &meeting, &bob_token, &file_id).await.json().await.unwrap();
    let got = reqwest::get(links["url"].as_str().unwrap()).await.unwrap();
    assert_eq!(got.status(), 200);
    let headers = got.headers().clone();
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice(), "the same bytes back");
    let preview = reqwest::get(links["preview_url"].as_str().unwrap()).await.unwrap();
    assert!(preview.headers()["content-disposition"].to_str().unwrap().starts_with("inline;"));
    let forged = links["url"].as_str().unwrap().replace("d=attachment", "d=inline");
    assert_eq!(reqwest::get(forged).await.unwrap().status(), 403, "the signature covers the disposition");

    // A text file that claims to be HTML is text, served as an attachment with no preview.
    let reply = upload(h, &meeting, &ann_token, "?name=page.html", b"<script>alert(1)</script>".to_vec()).await;
    let text: Value = reply.json().await.unwrap();
    assert_eq!(text["file"]["content_type"], "text/plain; charset=utf-8");
    assert_eq!(text["file"]["preview"], false);
    let text_links: Value =
        link(h, &meeting, &cy_token, text["file"]["id"].as_str().unwrap()).await.json().await.unwrap();
    assert!(text_links["preview_url"].is_null());

    // A private file: its recipient reads it, nobody else even learns of it.
    let reply = upload(h, &meeting, &ann_token, &format!("?name=secret.png&to={bob_id}"), png(1000)).await;
    assert_eq!(reply.status(), 201);
    let secret: Value = reply.json().await.unwrap();
    let secret_id = secret["file"]["id"].as_str().unwrap();
    assert_eq!(link(h, &meeting, &bob_token, secret_id).await.status(), 200);
    assert_eq!(link(h, &meeting, &cy_token, secret_id).await.status(), 404);
    assert_eq!(link(h, &meeting, &host_token, secret_id).await.status(), 404);
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/meetings/{meeting}/files", h.base))
        .bearer_auth(&cy_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["<img src=x onerror=alert(1)>.png", "page.html"]);
    let hosts_list: Value = reqwest::Client::new()
        .get(format!("{}/meetings/{meeting}/files", h.base))
        .bearer_auth(&host_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hosts_list.as_array().unwrap().len(), 2, "the host does not list the private file either");

    // A host deletes the message: the file goes with it, links stop working.
    host.send(json!({"type": "chat_delete", "message_id": shared["id"]})).await;
    host.expect("chat_updated").await;
    let key = format!("meetings/{meeting}/chat/{file_id}");
    let mut gone = false;
    for _ in 0..50 {
        if !objects(&s.storage, h, &meeting).await.contains(&key) {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the object is deleted with its message");
    assert_eq!(reqwest::get(links["url"].as_str().unwrap()).await.unwrap().status(), 404);
    assert_eq!(link(h, &meeting, &bob_token, &file_id).await.status(), 404);
}

async fn refused_uploads_leave_nothing(s: Setup) {
    let h = &s.h;
    let (meeting, _) = h.meeting(json!({})).await;
    let (_ann, _, ann_token) = join(h, &meeting, "ann").await;

    // Over the limit with an honest Content-Length: refused before a byte is stored.
    let reply = upload(h, &meeting, &ann_token, "?name=big.png", png(LIMIT as usize + 1)).await;
    assert_eq!(reply.status(), 413);
    assert!(reply.text().await.unwrap().contains(&LIMIT.to_string()));
    // Over the limit without one (a chunked body): counted as it arrives, the upload aborted.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..6).map(|_| Ok(vec![7u8; 64 * 1024])).collect();
    let reply = reqwest::Client::new()
        .post(format!("{}/meetings/{meeting}/files?name=stream.bin", h.base))
        .bearer_auth(&ann_token)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413);
    // Broken off half-way.
    let broken = futures::stream::iter(vec![Ok(vec![1u8; 64 * 1024])]).chain(futures::stream::once(async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        Err(std::io::Error::other("the client went away"))
    }));
    let sent = reqwest::Client::new()
        .post(format!("{}/meetings/{meeting}/files?name=broken.bin", h.base))
        .bearer_auth(&ann_token)
        .body(reqwest::Body::wrap_stream(broken))
        .send()
        .await;
    assert!(sent.is_err() || sent.unwrap().status().is_client_error());
    // Empty, not in the meeting, no token.
    assert_eq!(upload(h, &meeting, &ann_token, "?name=empty", Vec::new()).await.status(), 400);
    let outsider = h.token(&meeting, "dee", Role::Participant);
    assert_eq!(upload(h, &meeting, &outsider, "?name=a.png", png(100)).await.status(), 404);
    let anonymous = reqwest::Client::new()
        .post(format!("{}/meetings/{meeting}/files?name=a.png", h.base))
        .body(png(100))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Nothing of any of them is in storage, whole or in parts, and no message names one.
    let mut leftovers = Vec::new();
    for _ in 0..50 {
        leftovers = objects(&s.storage, h, &meeting).await;
        leftovers.extend(staged(&s, &meeting));
        if leftovers.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    // No file row either (every row has an expiry under the default retention: ask for all of them).
    let far = sluice_controlplane::store::now() + chrono::Duration::days(3650);
    let rows = h.store.expired_chat_files(far, 100).await.unwrap();
    assert!(rows.iter().all(|f| f.meeting_id != meeting), "rows left behind: {rows:?}");
}

/// Files a local multipart upload stages beside its key (`<key>#<n>`), which `list` does not show.
fn staged(s: &Setup, meeting: &str) -> Vec<String> {
    if s.storage.kind != StorageKind::Local {
        return Vec::new();
    }
    let dir = s.h.dir.join("objects").join("meetings").join(meeting).join("chat");
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_deletes_expired_files() {
    let s = local().await;
    let h = &s.h;
    let (meeting, _) = h.meeting(json!({})).await;
    let (_ann, _, ann_token) = join(h, &meeting, "ann").await;
    let reply: Value = upload(h, &meeting, &ann_token, "?name=old.png", png(1000)).await.json().await.unwrap();
    let id = reply["file"]["id"].as_str().unwrap().to_string();
    let mut file = h.store.chat_file(&id).await.unwrap().unwrap();
    assert!(file.expires_at.is_some(), "retention is on by default");
    // Age it: a second file row with a past expiry stands in for one uploaded 30 days ago.
    file.id = "f_aged".into();
    file.object_key = format!("meetings/{meeting}/chat/f_aged");
    file.expires_at = Some(sluice_controlplane::store::now() - chrono::Duration::seconds(1));
    Blobs::open(&s.storage, &h.dir).unwrap().put(&file.object_key, png(100).into()).await.unwrap();
    h.store.add_chat_file(&file).await.unwrap();
    let mut swept = false;
    for _ in 0..50 {
        if h.store.chat_file("f_aged").await.unwrap().unwrap().deleted_at.is_some() {
            swept = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(swept, "the sweeper (every second here) deletes the expired file");
    let left = objects(&s.storage, h, &meeting).await;
    assert_eq!(left, [format!("meetings/{meeting}/chat/{id}")], "only the unexpired object remains");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
