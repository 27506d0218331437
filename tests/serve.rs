//! The `sluice` binary as a user runs it: `serve` with no configuration, on PostgreSQL, on S3; bad
//! configuration; an unreachable database; `migrate`; `token`. Each test starts its own process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_testkit::{PgSchema, S3Server};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// A `sluice` command with a clean environment: no configuration leaks in from the machine running the tests.
fn sluice(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("SLUICE_") || key == "DATABASE_URL" || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    // Tests run in parallel: the dataplane's and the relay's ports are the system's choice unless a test says
    // otherwise.
    cmd.arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .env("SLUICE_DATAPLANE__BASE_PORT", "0")
        .env("SLUICE_TURN__UDP_LISTEN", "127.0.0.1:0")
        .env("SLUICE_TURN__TCP_LISTEN", "127.0.0.1:0");
    cmd
}

/// A UDP port nobody uses right now.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts `sluice serve` on a free port and waits for its "ready" line.
    fn start(mut cmd: Command) -> Server {
        cmd.args(["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn sluice");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("sluice serve printed its ready line");
        let addr = line.rsplit("HTTP API on ").next().unwrap().trim_end_matches(')').to_string();
        assert!(line.starts_with("Sluice is ready: open http://"), "unexpected first line: {line}");
        Server { child, base: format!("http://{addr}") }
    }

    /// SIGTERM, and the exit status within a bound.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "sluice did not stop within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post_raw(url: &str, body: &'static str) -> (u16, Value) {
    // As `curl -d`: form content type, JSON body.
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run sluice")
}

#[tokio::test]
async fn serve_with_no_configuration_creates_and_keeps_meetings() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(sluice(dir.path()));

    let (status, created) = post_raw(&format!("{}/meetings", server.base), "{}").await;
    assert_eq!(status, 201, "{created}");
    let id = created["meeting"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["join_url"], format!("{}/m/{id}", server.base));
    assert_eq!(created["host_token"].as_str().unwrap().split('.').count(), 3, "a JWT");

    let (status, body) = get(&format!("{}/meetings/{id}", server.base)).await;
    assert_eq!(status, 200, "{body}");
    let meeting: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (meeting["id"].as_str(), meeting["settings"]["max_participants"].as_u64()),
        (Some(id.as_str()), Some(100))
    );

    let (status, body) = get(&format!("{}/readyz", server.base)).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["status"].clone()), (200, json!("ready")));
    let (_, metrics) = get(&format!("{}/metrics", server.base)).await;
    assert!(
        metrics.contains(r#"sluice_http_requests_total{method="POST",route="/meetings",status="201"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("sluice_meetings_created_total 1"), "{metrics}");

    assert_eq!(server.stop().code(), Some(0), "SIGTERM stops cleanly");
    assert!(dir.path().join("sluice.db").is_file(), "the embedded database lives in the data directory");

    // A restart on the same data directory still has the meeting.
    let server = Server::start(sluice(dir.path()));
    let (status, _) = get(&format!("{}/meetings/{id}", server.base)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn serve_runs_the_turn_relay_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut cmd = sluice(dir.path());
    cmd.env("SLUICE_TURN__UDP_LISTEN", format!("127.0.0.1:{port}"));
    let server = Server::start(cmd);
    // A STUN Binding request (RFC 8489) to the embedded relay is answered with our mapped address.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut request = [0u8; 20];
    request[1] = 0x01;
    request[4..8].copy_from_slice(&0x2112_a442u32.to_be_bytes());
    request[8..20].copy_from_slice(b"sluice-probe");
    probe.send_to(&request, ("127.0.0.1", port)).unwrap();
    let mut reply = [0u8; 128];
    let (n, _) = probe.recv_from(&mut reply).expect("the relay answers a Binding request");
    assert_eq!(&reply[..2], &[0x01, 0x01], "Binding success");
    assert_eq!(&reply[8..20], b"sluice-probe");
    assert!(n >= 32);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, metrics) = get(&format!("{}/metrics", server.base)).await;
        if metrics.contains("sluice_turn_bindings_total 1") {
            break;
        }
        assert!(Instant::now() < deadline, "no TURN metrics on /metrics:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The generated REST secret is kept private.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("turn_secret")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(server.stop().success());
}

#[tokio::test]
async fn serve_runs_the_dataplane_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut cmd = sluice(dir.path());
    cmd.env("SLUICE_DATAPLANE__BASE_PORT", port.to_string())
        .env("SLUICE_DATAPLANE__WORKERS", "1")
        .args(["--log", "warn"]);
    let server = Server::start(cmd);
    // Not STUN, DTLS, RTP or RTCP: the worker drops it and counts why.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.send_to(&[0xff; 24], ("127.0.0.1", port)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, metrics) = get(&format!("{}/metrics", server.base)).await;
        if metrics.contains(r#"sluice_dataplane_drops_total{worker="0",reason="unknown_protocol"} 1"#) {
            assert!(metrics.contains(r#"sluice_dataplane_worker_up{worker="0"} 1"#), "{metrics}");
            assert!(metrics.contains("sluice_dataplane_time_in_sfu_seconds_bucket"), "{metrics}");
            break;
        }
        assert!(Instant::now() < deadline, "the worker on UDP {port} did not count the datagram: {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = get(&format!("{}/readyz", server.base)).await;
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, ready["dataplane"].as_str()), (200, Some("ok")), "{body}");
    assert_eq!(server.stop().code(), Some(0), "SIGTERM stops HTTP and the workers");
}

#[test]
fn a_bad_io_path_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(sluice(dir.path()).args(["serve", "--listen", "127.0.0.1:0", "--io", "dpdk"]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dataplane.io") && stderr.contains("dpdk"), "{stderr}");
}

#[tokio::test]
async fn bad_requests_get_a_json_error_that_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(sluice(dir.path()));
    let url = format!("{}/meetings", server.base);

    let (status, body) = post_raw(&url, "{not json").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    let (status, body) = post_raw(&url, r#"{"setings": {}}"#).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("unknown field `setings`"), "{body}");
    let (status, body) = post_raw(&url, r#"{"settings": {"max_participants": 0}}"#).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("max_participants"), "{body}");
    let (status, body) = post_raw(&url, r#"{"host_name": "   "}"#).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = get(&format!("{}/meetings/zzz-zzzz-zzz", server.base)).await;
    assert_eq!(status, 404);
    assert!(body.contains("zzz-zzzz-zzz") && body.contains("not_found"), "{body}");
    let (status, body) = get(&format!("{}/no/such/path", server.base)).await;
    assert_eq!(status, 404, "{body}");
    let r = reqwest::Client::new().delete(format!("{}/healthz", server.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
}

#[tokio::test]
async fn serve_on_postgres_writes_the_rows_there() {
    let schema = PgSchema::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = sluice(dir.path());
    cmd.env("DATABASE_URL", &schema.url);
    let server = Server::start(cmd);
    let (status, created) = post_raw(&format!("{}/meetings", server.base), r#"{"settings": {"title": "Board"}}"#).await;
    assert_eq!(status, 201, "{created}");
    let id = created["meeting"]["id"].as_str().unwrap();

    let row = schema
        .client()
        .await
        .query_one("SELECT host_id, settings_json FROM meetings WHERE id = $1", &[&id])
        .await
        .unwrap();
    let (host_id, settings): (String, Value) = (row.get(0), row.get(1));
    assert_eq!(host_id, created["meeting"]["host_id"].as_str().unwrap());
    assert_eq!(settings["title"], "Board");
    assert!(!dir.path().join("sluice.db").exists(), "no SQLite file when PostgreSQL is configured");
}

#[tokio::test]
async fn serve_with_s3_storage_reports_ready() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = sluice(dir.path());
    cmd.env("SLUICE_STORAGE__KIND", "s3")
        .env("SLUICE_STORAGE__BUCKET", &s3.bucket)
        .env("SLUICE_STORAGE__ENDPOINT", &s3.endpoint)
        .env("AWS_ACCESS_KEY_ID", &s3.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key);
    let server = Server::start(cmd);
    let (status, body) = get(&format!("{}/readyz", server.base)).await;
    assert_eq!(status, 200, "{body}");
    drop(s3);
    let (status, body) = get(&format!("{}/readyz", server.base)).await;
    assert_eq!(status, 503, "storage gone: {body}");
    assert!(body.contains("\"database\":\"ok\""), "{body}");
}

#[test]
fn bad_configuration_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(sluice(dir.path()).env("SLUICE_HTTP__LISTEN", "nonsense").args(["serve", "--print-config"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("http.listen") && stderr.contains("SLUICE_HTTP__LISTEN"), "{stderr}");

    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, "[storage]\nkind = \"ftp\"\n").unwrap();
    let out = run(sluice(dir.path()).arg("--config").arg(&file).arg("serve"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("storage.kind") && stderr.contains("sluice.toml") && stderr.contains("ftp"), "{stderr}");

    // The test suite's own variables are not configuration; a misspelt real one is an error.
    let out = run(sluice(dir.path()).env("SLUICE_TEST_ANYTHING", "x").args(["serve", "--print-config"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(sluice(dir.path()).env("SLUICE_HTTP__LISTN", "x").args(["serve", "--print-config"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SLUICE_HTTP__LISTN"));

    std::fs::write(&file, "[http]\nlisten = \"127.0.0.1:9999\"\n").unwrap();
    let out = run(sluice(dir.path()).arg("--config").arg(&file).args(["serve", "--print-config"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen = \"127.0.0.1:9999\""));
}

#[test]
fn an_unreachable_database_is_a_clear_error_within_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let port = sluice_testkit::free_port();
    let started = Instant::now();
    let out = run(sluice(dir.path())
        .env("DATABASE_URL", format!("postgres://postgres@127.0.0.1:{port}/nothing"))
        .env("SLUICE_DATABASE__CONNECT_ATTEMPTS", "2")
        .env("SLUICE_DATABASE__CONNECT_BACKOFF_MS", "100")
        .arg("serve"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot open the database") && stderr.contains(&port.to_string()), "{stderr}");
    assert!(stderr.to_lowercase().contains("refused"), "says why: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());

    let out = run(sluice(dir.path()).env("DATABASE_URL", "mysql://x").arg("migrate"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not supported"));
}

#[tokio::test]
async fn migrate_is_idempotent_and_token_mints_what_the_server_accepts() {
    let schema = PgSchema::create().await;
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = run(sluice(dir.path()).env("DATABASE_URL", &schema.url).arg("migrate"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let latest = sluice_controlplane::store::MIGRATIONS_POSTGRES.last().unwrap().version;
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(&format!("schema is at version {latest}")), "{said}");
    }
    let count: i64 =
        schema.client().await.query_one("SELECT count(*) FROM schema_migrations", &[]).await.unwrap().get(0);
    assert_eq!(count, sluice_controlplane::store::MIGRATIONS_POSTGRES.len() as i64);

    let out = run(sluice(dir.path()).args(["token", "--meeting", "abc-defg-hij", "--role", "host", "--name", "Ada"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // Signed with the secret the server keeps in its data directory.
    let config = sluice_controlplane::config::AuthConfig::default();
    let tokens = sluice_controlplane::tokens::Tokens::from_config(&config, dir.path()).unwrap();
    let claims = tokens.verify(&token, "abc-defg-hij").unwrap();
    assert_eq!((claims.name.as_str(), claims.grants.host), ("Ada", true));

    let out = run(sluice(dir.path()).args(["token", "--meeting", "m", "--role", "emperor"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role"));
}

#[tokio::test]
async fn recording_requests_that_do_not_fit_get_a_clear_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(sluice(dir.path()));
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let create = |body: Value| http.post(format!("{base}/meetings")).json(&body).send();
    let m: Value = create(json!({"recording_enabled": true})).await.unwrap().json().await.unwrap();
    let (id, host) = (m["meeting"]["id"].as_str().unwrap().to_string(), m["host_token"].as_str().unwrap().to_string());
    let ticket: Value = http
        .post(format!("{base}/meetings/{id}/join"))
        .json(&json!({"name": "Pat"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let guest = ticket["participant_token"].as_str().unwrap().to_string();
    let act = |meeting: &str, action: &str, token: Option<&str>| {
        let mut r = http.post(format!("{base}/meetings/{meeting}/recording/{action}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let message = |v: &Value| v["error"]["message"].as_str().unwrap_or_default().to_string();

    let (s, v) = act(&id, "stop", Some(&host)).await;
    assert_eq!(s, 409, "stop without start: {v}");
    assert!(message(&v).contains("not being recorded"), "{v}");
    let (s, v) = act(&id, "start", Some(&guest)).await;
    assert_eq!(s, 403, "a participant cannot record: {v}");
    assert!(message(&v).contains("only a host"), "{v}");
    let (s, v) = act(&id, "start", None).await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = act("zzz-zzzz-zzz", "start", Some(&host)).await;
    assert_eq!(s, 404, "an unknown meeting: {v}");
    let (s, started) = act(&id, "start", Some(&host)).await;
    assert_eq!(s, 201, "{started}");
    assert_eq!(started["status"], "recording");
    let (s, v) = act(&id, "start", Some(&host)).await;
    assert_eq!(s, 409, "start twice: {v}");
    assert!(message(&v).contains("already being recorded"), "{v}");

    let rid = started["id"].as_str().unwrap().to_string();
    let list: Value = http
        .get(format!("{base}/meetings/{id}/recordings"))
        .bearer_auth(&guest)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let r = http.get(format!("{base}/recordings/{rid}")).send().await.unwrap();
    assert_eq!(r.status(), 401, "reading a recording needs a token of its meeting");
    let r = http.get(format!("{base}/recordings/{rid}?share=forged")).send().await.unwrap();
    assert_eq!(r.status(), 401, "a forged share link");
    let r = http.get(format!("{base}/recordings/r_nope")).bearer_auth(&host).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let (s, v) = act(&id, "stop", Some(&host)).await;
    assert_eq!(s, 200, "{v}");
    // Nobody published anything: the recording fails, saying why.
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let r: Value =
            http.get(format!("{base}/recordings/{rid}")).bearer_auth(&host).send().await.unwrap().json().await.unwrap();
        if r["status"] == "failed" {
            break r;
        }
        assert!(r["status"] != "ready", "an empty recording cannot be ready: {r}");
        assert!(Instant::now() < deadline, "the empty recording did not end: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(failed["status_reason"].as_str().unwrap().contains("nothing was recorded"), "{failed}");

    // A meeting that does not allow recording, and one that has ended.
    let m: Value = create(json!({})).await.unwrap().json().await.unwrap();
    let (plain, plain_host) = (m["meeting"]["id"].as_str().unwrap(), m["host_token"].as_str().unwrap());
    let (s, v) = act(plain, "start", Some(plain_host)).await;
    assert_eq!(s, 403, "{v}");
    assert!(message(&v).contains("recording is not enabled"), "{v}");
    let r = http.delete(format!("{base}/meetings/{id}")).bearer_auth(&host).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (s, v) = act(&id, "start", Some(&host)).await;
    assert_eq!(s, 410, "an ended meeting: {v}");
}

/// A TCP proxy on loopback whose open connections can be cut (a reset, as a failure would make) or stalled (a
/// silent cut: the sockets stay open and nothing more goes through).
struct CuttableProxy {
    addr: std::net::SocketAddr,
    connections: Arc<Mutex<Vec<ProxiedConnection>>>,
}

/// A proxied connection's task, and whether it is stalled.
type ProxiedConnection = (tokio::task::JoinHandle<()>, Arc<AtomicBool>);

impl CuttableProxy {
    async fn start(upstream: String) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let list = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let stalled = Arc::new(AtomicBool::new(false));
                let flag = Arc::clone(&stalled);
                let task = tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    let ((in_read, in_write), (out_read, out_write)) = (inbound.into_split(), outbound.into_split());
                    tokio::join!(pipe(in_read, out_write, Arc::clone(&flag)), pipe(out_read, in_write, flag));
                });
                list.lock().unwrap().push((task, stalled));
            }
        });
        CuttableProxy { addr, connections }
    }

    /// Drops every connection open now, both ends, without a WebSocket close.
    fn cut(&self) -> usize {
        let open: Vec<_> = self.connections.lock().unwrap().drain(..).collect();
        open.iter().for_each(|(task, _)| task.abort());
        open.len()
    }

    /// Stops forwarding on every connection open now, keeping its sockets open.
    fn stall(&self) -> usize {
        let open = self.connections.lock().unwrap();
        open.iter().for_each(|(_, stalled)| stalled.store(true, Ordering::SeqCst));
        open.len()
    }
}

/// Copies one direction until it ends; once stalled, what arrives is held and never passed on.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.load(Ordering::SeqCst) {
            let _held = (from, to);
            return std::future::pending().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The next signaling message of type `kind`, within `wait`.
async fn next_of(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    kind: &str,
    wait: Duration,
) -> Value {
    use futures::StreamExt;
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, ws.next()).await.unwrap_or_else(|_| panic!("no {kind} in time"));
        match message {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                let m: Value = serde_json::from_str(&text).unwrap();
                if m["type"] == kind {
                    return m;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("the signaling connection ended waiting for {kind}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_recorder_joins_again_when_its_signaling_connection_drops_or_goes_silent() {
    const WAIT: Duration = Duration::from_secs(20);
    use futures::SinkExt;
    use sluice_controlplane::store::Role;
    use sluice_controlplane::tokens::{TokenRequest, Tokens};
    use sluice_recorder::session::{Ended, Session};
    use sluice_recorder::spool::Spool;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(sluice(dir.path()));
    let (status, created) = post_raw(&format!("{}/meetings", server.base), r#"{"host_name": "Ada"}"#).await;
    assert_eq!(status, 201, "{created}");
    let meeting = created["meeting"]["id"].as_str().unwrap().to_string();
    let host_token = created["host_token"].as_str().unwrap();
    let ws_url = format!("{}/signaling", server.base.replacen("http", "ws", 1));
    let (mut host, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let join = json!({"type": "join", "v": 1, "meeting_id": meeting, "token": host_token});
    host.send(tokio_tungstenite::tungstenite::Message::text(join.to_string())).await.unwrap();
    next_of(&mut host, "welcome", WAIT).await;

    // The recorder reaches the server through a proxy that the test cuts.
    let proxy = CuttableProxy::start(server.base.trim_start_matches("http://").to_string()).await;
    let tokens = Tokens::from_config(&sluice_controlplane::config::AuthConfig::default(), dir.path()).unwrap();
    let token = tokens.mint(&TokenRequest {
        meeting_id: meeting.clone(),
        user_id: "recorder-test".into(),
        name: "Recorder".into(),
        role: Role::Recorder,
        ttl_secs: None,
    });
    let spool_dir = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let url = format!("ws://{}/signaling", proxy.addr);
    let recording = {
        let (meeting, spool) = (meeting.clone(), Spool::open(spool_dir.path().to_path_buf()));
        tokio::spawn(async move { Session::new(&spool).run(&url, &meeting, &token, stopped).await })
    };
    let joined = next_of(&mut host, "participant_joined", WAIT).await;
    assert_eq!(
        (joined["participant"]["name"].as_str(), joined["participant"]["role"].as_str()),
        (Some("Recorder"), Some("recorder"))
    );

    assert_eq!(proxy.cut(), 1, "the recorder's signaling connection went through the proxy");
    let left = next_of(&mut host, "participant_left", WAIT).await;
    assert_eq!(
        (&left["participant_id"], left["reason"].as_str()),
        (&joined["participant"]["participant_id"], Some("connection_lost"))
    );
    let again = next_of(&mut host, "participant_joined", WAIT).await;
    assert_eq!(again["participant"]["name"], "Recorder", "the recorder joined again: {again}");
    assert!(!recording.is_finished(), "the recorder is still recording after the drop");

    // A silent cut: nothing arrives and no reset comes. Both ends give up after 15 s without a word (the
    // server with 4008, the recorder by itself), and the recorder joins again.
    assert_eq!(proxy.stall(), 1, "the recorder's second connection went through the proxy");
    let silent = Duration::from_secs(40);
    let left = next_of(&mut host, "participant_left", silent).await;
    assert_eq!(left["participant_id"], again["participant"]["participant_id"], "{left}");
    let third = next_of(&mut host, "participant_joined", silent).await;
    assert_eq!(third["participant"]["name"], "Recorder", "the recorder joined after the silence: {third}");
    assert!(!recording.is_finished(), "the recorder is still recording after the silence");

    stop.send(true).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), recording).await.unwrap().unwrap();
    assert_eq!(ended, Ok(Ended::Stopped));
}
