//! Who may do what, as an operator deploys it: the strict profile (API keys to create meetings, tokens only to
//! join, metrics on their own listener), creator tokens, revocation, request limits per source, and HTTPS with
//! reloads, redirects and HSTS. Each test starts its own `sluice serve` on loopback.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const WAIT: Duration = Duration::from_secs(30);

/// A `sluice` command with no configuration from the machine's environment, its ports the system's choice.
fn sluice(data_dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("SLUICE_") || key == "DATABASE_URL" {
            cmd.env_remove(key);
        }
    }
    cmd.arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .env("SLUICE_DATAPLANE__BASE_PORT", "0")
        .env("SLUICE_TURN__UDP_LISTEN", "127.0.0.1:0")
        .env("SLUICE_TURN__TCP_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied());
    cmd
}

struct Server {
    child: Child,
    /// The first lines it printed: the ready line, then any more it prints at start.
    lines: std::sync::mpsc::Receiver<String>,
    addr: String,
}

impl Server {
    fn start(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Server {
        let mut cmd = sluice(data_dir, env);
        cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn sluice");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = lines.recv_timeout(WAIT).expect("sluice serve printed its ready line");
        let addr = line.rsplit("HTTP API on ").next().unwrap().trim_end_matches(')').to_string();
        Server { child, lines, addr }
    }

    fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn https(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The address of the operations listener, from the line after the ready line.
    fn ops(&self) -> String {
        let line = self.lines.recv_timeout(WAIT).expect("the operations listener's line");
        line.split("http://").nth(1).and_then(|rest| rest.split('/').next()).expect("an address").to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run sluice")
}

/// `sluice apikey create` on the server's data directory: the key it printed.
fn create_key(data_dir: &Path, name: &str, scopes: &str) -> String {
    let out = run(sluice(data_dir, &[]).args(["apikey", "create", "--name", name, "--scope", scopes]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("sk_"), "{key}");
    key
}

async fn post(url: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn get_status(url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn message(body: &Value) -> String {
    body["error"]["message"].as_str().unwrap_or_default().to_string()
}

/// Sends `join` with `token` over signaling and returns the first message's type (`welcome`, or `error`).
async fn signaling_join(base: &str, meeting: &str, token: &str) -> String {
    let url = format!("{}/signaling", base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let join = json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token});
    ws.send(tokio_tungstenite::tungstenite::Message::text(join.to_string())).await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let next = tokio::time::timeout(deadline - Instant::now(), ws.next()).await.expect("an answer to join");
        match next {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                return v["type"].as_str().unwrap_or_default().to_string();
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => return format!("close {frame:?}"),
            Some(Ok(_)) => continue,
            other => return format!("ended {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_strict_profile_needs_keys_to_create_and_tokens_to_join() {
    let dir = tempfile::tempdir().unwrap();
    let strict = [
        ("SLUICE_ACCESS__CREATE_MEETINGS", "api_key"),
        ("SLUICE_ACCESS__JOIN_BY_LINK", "token_only"),
        ("SLUICE_HTTP__OPS_LISTEN", "127.0.0.1:0"),
    ];
    let server = Server::start(dir.path(), &strict, &[]);
    let ops = server.ops();
    let base = server.http();
    let app_key = create_key(dir.path(), "test app", "create_meetings,mint_tokens");
    let ops_key = create_key(dir.path(), "monitoring", "operate");

    // Creating: nothing, a malformed key, a key without the scope: refused, saying what is missing.
    let (status, body) = post(&format!("{base}/meetings"), None, json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert!(message(&body).contains("create_meetings"), "{body}");
    let (status, body) = post(&format!("{base}/meetings"), Some("sk_nonsense"), json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert!(message(&body).contains("malformed"), "{body}");
    let (status, body) = post(&format!("{base}/meetings"), Some(&ops_key), json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("lacks the create_meetings scope"), "{body}");
    let forged = format!("{}{}", &app_key[..app_key.len() - 1], if app_key.ends_with('a') { 'b' } else { 'a' });
    let (status, body) = post(&format!("{base}/meetings"), Some(&forged), json!({})).await;
    assert_eq!(status, 401, "a key with a wrong secret: {body}");
    let (status, created) = post(&format!("{base}/meetings"), Some(&app_key), json!({})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["meeting"]["id"].as_str().unwrap().to_string();

    // Joining by the link alone is refused; the application mints tokens, and they admit.
    let (status, body) = post(&format!("{base}/meetings/{id}/join"), None, json!({"name": "Eve"})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "join_by_link_disabled", "{body}");
    let (status, minted) = post(
        &format!("{base}/meetings/{id}/tokens"),
        Some(&app_key),
        json!({"name": "Ada", "user_id": "crm-42", "role": "participant"}),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    assert_eq!(minted["user_id"], "crm-42");
    assert!(minted["join_url"].as_str().unwrap().contains("#token="), "{minted}");
    assert_eq!(signaling_join(&base, &id, minted["token"].as_str().unwrap()).await, "welcome");
    let (status, body) =
        post(&format!("{base}/meetings/{id}/tokens"), Some(&ops_key), json!({"name": "Mallory"})).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(&format!("{base}/meetings/{id}/tokens"), None, json!({"name": "Mallory"})).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) =
        post(&format!("{base}/meetings/{id}/tokens"), Some(&app_key), json!({"name": "R", "role": "recorder"})).await;
    assert_eq!(status, 400, "{body}");

    // Reading a meeting needs an invitation too, and says nothing about unknown ids.
    for meeting_id in [id.as_str(), "bcd-fghj-kmn"] {
        let (status, body) = get_status(&format!("{base}/meetings/{meeting_id}"), None).await;
        assert_eq!(status, 401, "{meeting_id}: {body}");
    }
    let (status, _) = get_status(&format!("{base}/meetings/{id}"), minted["token"].as_str()).await;
    assert_eq!(status, 200);

    // Metrics: not on the public listener; on the operations one.
    let (status, body) = get_status(&format!("{base}/metrics"), Some(&ops_key)).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("ops_listen"), "{body}");
    let (status, body) = get_status(&format!("http://{ops}/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(body.contains("sluice_http_requests_total"), "{body}");

    // A revoked key stops working at the next request, though the server never restarted.
    let (status, _) = post(&format!("{base}/meetings"), Some(&app_key), json!({})).await;
    assert_eq!(status, 201);
    let key_id = app_key.split('_').nth(1).unwrap();
    let out = run(sluice(dir.path(), &[]).args(["apikey", "revoke", key_id]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = post(&format!("{base}/meetings"), Some(&app_key), json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert!(message(&body).contains("revoked"), "{body}");
    let out = run(sluice(dir.path(), &[]).args(["apikey", "list"]));
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listing.contains(key_id) && listing.contains("revoked_at\":\"20"), "{listing}");
    assert!(!listing.contains(&app_key[16..]), "the list shows no secret");
    let out = run(sluice(dir.path(), &[]).args(["apikey", "revoke", key_id]));
    assert!(!out.status.success(), "revoking twice is an error");
}

#[tokio::test]
async fn creator_tokens_and_keyed_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SLUICE_ACCESS__CREATE_MEETINGS", "creator_token"), ("SLUICE_ACCESS__METRICS", "key")];
    let server = Server::start(dir.path(), &env, &[]);
    let base = server.http();
    let out = run(sluice(dir.path(), &[]).args(["token", "--creator", "--user", "app-user-1"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let creator = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let (status, body) = post(&format!("{base}/meetings"), None, json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert!(message(&body).contains("creator token"), "{body}");
    let (status, created) = post(&format!("{base}/meetings"), Some(&creator), json!({})).await;
    assert_eq!(status, 201, "{created}");
    // A meeting's host token is no creator token.
    let host = created["host_token"].as_str().unwrap();
    let (status, body) = post(&format!("{base}/meetings"), Some(host), json!({})).await;
    assert_eq!(status, 401, "{body}");
    // Joining by link still works under the default join policy.
    let id = created["meeting"]["id"].as_str().unwrap();
    let (status, body) = post(&format!("{base}/meetings/{id}/join"), None, json!({"name": "Bo"})).await;
    assert_eq!(status, 200, "{body}");

    // An application mints creator tokens with its key.
    let key = create_key(dir.path(), "portal", "mint_tokens");
    let (status, minted) = post(&format!("{base}/creator-tokens"), Some(&key), json!({"user_id": "u-9"})).await;
    assert_eq!(status, 201, "{minted}");
    let (status, _) = post(&format!("{base}/meetings"), minted["creator_token"].as_str(), json!({})).await;
    assert_eq!(status, 201);

    // Metrics on the public listener need the operate scope.
    let (status, body) = get_status(&format!("{base}/metrics"), None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = get_status(&format!("{base}/metrics"), Some(&key)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("operate"), "{body}");
    let operator = create_key(dir.path(), "prometheus", "operate");
    let (status, body) = get_status(&format!("{base}/metrics"), Some(&operator)).await;
    assert_eq!(status, 200);
    assert!(body.contains("sluice_"), "{body}");
}

#[tokio::test]
async fn a_flood_from_one_source_is_refused_while_another_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SLUICE_LIMITS__PER_SOURCE_PER_SEC", "2"),
        ("SLUICE_LIMITS__PER_SOURCE_BURST", "10"),
        ("SLUICE_LIMITS__SIGNALING_SESSIONS_PER_SOURCE_MAX", "2"),
    ];
    let server = Server::start(dir.path(), &env, &[]);
    let base = server.http();
    let from = |ip: &str| reqwest::Client::builder().local_address(ip.parse::<IpAddr>().ok()).build().unwrap();
    let flooder = from("127.0.0.1");
    let other = from("127.0.0.2");
    let mut refused = None;
    for _ in 0..40 {
        let r = flooder.get(format!("{base}/healthz")).send().await.unwrap();
        if r.status() == 429 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("a 429 within 40 requests at a burst of 10");
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(flooder.get(format!("{base}/healthz")).send().await.unwrap().status(), 429, "still refused");
    let served = other.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(served.status(), 200, "another source is served meanwhile");

    // Signaling sessions: two from one source, the third refused before the upgrade.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let url = format!("{}/signaling", base.replacen("http", "ws", 1));
    let (_a, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (_b, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("a third session from one source: {other:?}"),
    }
}

/// The certificate a TLS server presents, as its SHA-256 fingerprint.
async fn served_fingerprint(url: &str) -> String {
    let client = reqwest::Client::builder().danger_accept_invalid_certs(true).tls_info(true).build().unwrap();
    let response = client.get(url).send().await.unwrap();
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS info");
    sluice_controlplane::tls::fingerprint(info.peer_certificate().expect("a certificate"))
}

#[tokio::test]
async fn https_serves_reloads_redirects_and_refuses_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (first, first_print) =
        sluice_controlplane::tls::self_signed(&certs.path().join("a"), &["localhost".into()]).unwrap();
    let (second, second_print) =
        sluice_controlplane::tls::self_signed(&certs.path().join("b"), &["localhost".into()]).unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let redirect_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redirect = format!("127.0.0.1:{redirect_port}");
    let env = [
        ("SLUICE_HTTP__TLS_CERT_FILE", cert.to_str().unwrap()),
        ("SLUICE_HTTP__TLS_KEY_FILE", key.to_str().unwrap()),
        ("SLUICE_HTTP__REDIRECT_LISTEN", redirect.as_str()),
    ];
    let server = Server::start(dir.path(), &env, &[]);
    let base = server.https();
    assert_eq!(served_fingerprint(&format!("{base}/healthz")).await, first_print);
    let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let r = client.post(format!("{base}/meetings")).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers()["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
    let created: Value = r.json().await.unwrap();
    assert!(created["join_url"].as_str().unwrap().starts_with("https://"), "{created}");
    assert!(reqwest::get(format!("http://{}/healthz", server.addr)).await.is_err(), "no plain HTTP on the TLS port");

    // The redirect listener sends plain HTTP to the HTTPS URL.
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_follow.get(format!("http://{redirect}/m/abc?name=x")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], format!("{base}/m/abc?name=x"));

    // New files and SIGHUP: the new certificate is served without a restart.
    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_fingerprint(&format!("{base}/healthz")).await != second_print {
        assert!(Instant::now() < deadline, "the new certificate was not served within 10 s of SIGHUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A certificate file that is not one stops start-up, naming the file.
    let garbage = certs.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let bad = [
        ("SLUICE_HTTP__TLS_CERT_FILE", garbage.to_str().unwrap()),
        ("SLUICE_HTTP__TLS_KEY_FILE", key.to_str().unwrap()),
    ];
    let out = run(sluice(dir.path(), &bad).args(["serve", "--listen", "127.0.0.1:0"]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http.tls_cert_file") && stderr.contains("garbage.pem"), "{stderr}");

    // --self-signed: HTTPS with a certificate kept in the data directory, its fingerprint printed.
    let trial = tempfile::tempdir().unwrap();
    let mut cmd = sluice(trial.path(), &[]);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--self-signed"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    assert!(stdout.starts_with("Sluice is ready: open https://"), "{stdout}");
    let addr = stdout.rsplit("HTTP API on ").next().unwrap().trim_end_matches(')').to_string();
    let printed = served_fingerprint(&format!("https://{addr}/healthz")).await;
    let _ = child.kill();
    let stderr = {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut text).unwrap();
        text
    };
    let _ = child.wait();
    assert!(stderr.contains(&printed), "the fingerprint is printed: {stderr}");
}

#[tokio::test]
async fn under_the_waiting_room_policy_a_link_admits_to_the_waiting_room_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("SLUICE_ACCESS__JOIN_BY_LINK", "waiting_room")], &[]);
    let base = server.http();
    let (status, created) = post(&format!("{base}/meetings"), None, json!({})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["meeting"]["id"].as_str().unwrap();
    assert_eq!(created["meeting"]["settings"]["waiting_room"], false, "the meeting itself has no waiting room");
    let (status, ticket) = post(&format!("{base}/meetings/{id}/join"), None, json!({"name": "Walk-in"})).await;
    assert_eq!(status, 200, "{ticket}");
    assert_eq!(signaling_join(&base, id, ticket["participant_token"].as_str().unwrap()).await, "waiting");
    // An application's invitation goes straight in; so does the host.
    let key = create_key(dir.path(), "portal", "mint_tokens");
    let (status, minted) = post(&format!("{base}/meetings/{id}/tokens"), Some(&key), json!({"name": "Invited"})).await;
    assert_eq!(status, 201, "{minted}");
    assert_eq!(signaling_join(&base, id, minted["token"].as_str().unwrap()).await, "welcome");
    assert_eq!(signaling_join(&base, id, created["host_token"].as_str().unwrap()).await, "welcome");
    // A key on the link endpoint must be a valid one.
    let (status, body) = post(&format!("{base}/meetings/{id}/join"), Some("sk_bad"), json!({"name": "X"})).await;
    assert_eq!(status, 401, "{body}");
}
