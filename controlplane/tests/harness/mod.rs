//! The signaling tests' harness: a real HTTP server and real dataplane workers in the test's process, and
//! WebSocket clients that speak `docs/signaling.md` and answer offers with SDP written here. Each test file that
//! uses it says `mod harness;`; not every file uses every part.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sluice_controlplane::config::{AnalyticsConfig, AuthConfig, ChatConfig, DatabaseConfig, HttpConfig, StorageConfig};
use sluice_controlplane::server::{HttpServer, Services};
use sluice_controlplane::store::Role;
use sluice_controlplane::tokens::{TokenRequest, Tokens};
use sluice_dataplane::core::DtlsIdentity;
use sluice_dataplane::runtime::{IoMode, Runtime, RuntimeConfig};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
pub const WAIT: Duration = Duration::from_secs(5);

pub struct Harness {
    pub base: String,
    /// The data directory (local object storage is under `objects/`).
    pub dir: std::path::PathBuf,
    pub ws: String,
    pub tokens: Tokens,
    pub store: Arc<dyn sluice_controlplane::store::Store>,
    pub runtime: Arc<Runtime>,
    pub signaling: Arc<sluice_controlplane::signaling::Signaling>,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.runtime.stop(Duration::from_secs(2));
    }
}

pub async fn start() -> Harness {
    start_with(StorageConfig::default(), ChatConfig::default()).await
}

/// A harness whose object storage and chat settings are these.
pub async fn start_with(storage: StorageConfig, chat: ChatConfig) -> Harness {
    start_configured(DatabaseConfig::default(), storage, chat).await
}

/// A harness on this database (`postgres://...` for PostgreSQL).
pub async fn start_on(database: DatabaseConfig) -> Harness {
    start_configured(database, StorageConfig::default(), ChatConfig::default()).await
}

async fn start_configured(database: DatabaseConfig, storage: StorageConfig, chat: ChatConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let auth = AuthConfig { token_secret: SECRET.into(), ..AuthConfig::default() };
    let mut services = Services::open(&database, &storage, &auth, dir.path()).await.unwrap();
    services.chat = chat;
    // Clients here answer offers but never connect media: they are reported after 2 s, not 20.
    services.analytics = AnalyticsConfig { ice_timeout_secs: 2, ..AnalyticsConfig::default() };
    let config = RuntimeConfig {
        cores: vec![None, None],
        bind: "127.0.0.1".parse().unwrap(),
        base_port: 0,
        io: IoMode::Mmsg,
        ..RuntimeConfig::default()
    };
    let runtime = Arc::new(Runtime::start(config, DtlsIdentity::generate().unwrap()).unwrap());
    services.dataplane = Some(Arc::clone(&runtime));
    let (store, tokens) = (Arc::clone(&services.store), services.tokens.clone());
    let http = HttpConfig { listen: "127.0.0.1:0".parse().unwrap(), ..HttpConfig::default() };
    let server = HttpServer::bind(&http, services).await.unwrap();
    let addr = server.local_addr();
    let signaling = server.signaling();
    let shared = Arc::clone(&signaling);
    tokio::spawn(server.run(std::future::pending()));
    // The event pump, as `sluice serve` runs it.
    let pump = Arc::clone(&runtime);
    std::thread::spawn(move || {
        while pump.is_running() {
            while let Some(event) = pump.poll_event() {
                if let sluice_dataplane::runtime::RuntimeEvent::Core { worker, event } = event {
                    signaling.dataplane_event(worker, event);
                }
            }
            pump.wait_events(Duration::from_millis(50));
        }
    });
    Harness {
        base: format!("http://{addr}"),
        dir: dir.path().to_path_buf(),
        ws: format!("ws://{addr}/signaling"),
        tokens,
        store,
        runtime,
        signaling: shared,
        _dir: dir,
    }
}

impl Harness {
    pub async fn meeting(&self, settings: Value) -> (String, String) {
        let reply: Value = reqwest::Client::new()
            .post(format!("{}/meetings", self.base))
            .json(&json!({"host_name": "Host", "settings": settings}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (reply["meeting"]["id"].as_str().unwrap().into(), reply["host_token"].as_str().unwrap().into())
    }

    pub fn token(&self, meeting: &str, user: &str, role: Role) -> String {
        self.tokens.mint(&TokenRequest {
            meeting_id: meeting.into(),
            user_id: user.into(),
            name: user.into(),
            role,
            ttl_secs: None,
        })
    }

    /// Who is in a meeting now, as the participants API reads it.
    pub async fn roster(&self, meeting: &str) -> Vec<sluice_controlplane::signaling::RosterEntry> {
        self.signaling.roster(meeting).await
    }

    pub async fn client(&self) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(&self.ws).await.unwrap();
        Client { ws, seen: Vec::new() }
    }

    /// A client joined with `publish`, its welcome read.
    pub async fn joined(&self, meeting: &str, user: &str, publish: &[&str]) -> (Client, Value) {
        let mut c = self.client().await;
        let token = self.token(meeting, user, Role::Participant);
        c.send(json!({"type": "join", "v": 1, "meeting_id": meeting, "token": token, "publish": publish})).await;
        let welcome = c.expect("welcome").await;
        (c, welcome)
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Every message received, for the schema check.
    pub seen: Vec<Value>,
}

impl Client {
    pub async fn send(&mut self, message: Value) {
        self.ws.send(Message::text(message.to_string())).await.unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_string())).await.unwrap();
    }

    /// The next JSON message, or the close frame as `{"type": "close", "code", "reason"}`.
    pub async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next()).await.expect("a message in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    self.seen.push(value.clone());
                    return value;
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or_default();
                    return json!({"type": "close", "code": code, "reason": reason});
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return json!({"type": "close", "code": 0, "reason": e.to_string()}),
                None => return json!({"type": "close", "code": 0, "reason": "ended"}),
            }
        }
    }

    /// Skips other messages until one of `kind` (bounded by WAIT per message).
    pub async fn expect(&mut self, kind: &str) -> Value {
        for _ in 0..50 {
            let m = self.next().await;
            if m["type"] == kind {
                return m;
            }
            assert_ne!(m["type"], "close", "closed while waiting for {kind}: {m}");
        }
        panic!("no {kind} message among the next 50");
    }

    /// Answers an offer as a browser would: sends on `publish` sections (SSRC `ssrc_base + index`), receives
    /// on `subscribe` ones. Returns the answer text sent.
    pub async fn answer(&mut self, offer: &Value, ssrc_base: u32) -> String {
        let sdp = answer_for(offer, ssrc_base);
        self.send(json!({"type": "answer", "revision": offer["revision"], "sdp": sdp})).await;
        sdp
    }
}

pub const FINGERPRINT: &str =
    "EC:05:6E:4D:75:C5:DB:84:C0:5F:51:4B:16:5B:94:74:85:A2:BC:57:4E:20:2C:30:15:74:AD:5C:26:AB:6F:57";

/// A browser-like answer to `offer` (an `offer` message).
pub fn answer_for(offer: &Value, ssrc_base: u32) -> String {
    let mut sdp = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    sdp +=
        &format!("a=fingerprint:sha-256 {FINGERPRINT}\r\na=ice-ufrag:abcd\r\na=ice-pwd:efghijklmnopqrstuvwxyz12\r\n");
    let offer_sdp = offer["sdp"].as_str().unwrap();
    let kinds: Vec<&str> = offer_sdp.lines().filter_map(|l| l.strip_prefix("m=")).collect();
    for (i, (section, m_line)) in offer["sections"].as_array().unwrap().iter().zip(kinds).enumerate() {
        let kind = m_line.split(' ').next().unwrap();
        let (pt, codec) = if kind == "audio" { (111, "opus/48000/2") } else { (96, "VP8/90000") };
        let port = if section["role"] == "closed" { 0 } else { 9 };
        sdp += &format!(
            "m={kind} {port} UDP/TLS/RTP/SAVPF {pt}\r\na=setup:active\r\na=mid:{}\r\n",
            section["mid"].as_str().unwrap()
        );
        sdp += &format!("a=rtpmap:{pt} {codec}\r\n");
        match section["role"].as_str().unwrap() {
            "publish" => sdp += &format!("a=sendonly\r\na=ssrc:{} cname:x\r\n", ssrc_base + i as u32),
            "subscribe" => sdp += "a=recvonly\r\n",
            _ => sdp += "a=inactive\r\n",
        }
    }
    sdp
}
