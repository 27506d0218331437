//! The control plane's sections of the configuration file. The binary composes them with the other components'
//! sections into one `Config` (TOML file < `SLUICE_*` environment < flags).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::StoreOptions;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the HTTP API, signaling and web client listen on.
    pub listen: SocketAddr,
    /// The URL people's browsers reach this server at, used in join links. Empty: derived from `listen`.
    pub public_url: String,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// A request that takes longer is answered 408.
    pub request_timeout_secs: u64,
    /// PEM certificate chain and private key: with both set, `listen` speaks HTTPS (and WSS) only. Reloaded on
    /// SIGHUP and when either file changes.
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    /// Serve HTTPS with a certificate generated for this machine (kept in `<data_dir>/self-signed/`), for a
    /// quick trial on a LAN; browsers warn about it. `sluice serve --self-signed`.
    pub self_signed: bool,
    /// With TLS on: a second, plain-HTTP listener that answers every request with a redirect to the HTTPS
    /// URL. Empty: none.
    pub redirect_listen: String,
    /// With TLS on: `Strict-Transport-Security: max-age=<this>` on every response; 0 sends none.
    pub hsts_max_age_secs: u64,
    /// A separate listener for `/metrics`, `/healthz` and `/readyz` (an address only the monitoring network
    /// reaches). When set, `/metrics` is not served on `listen`. Empty: none.
    pub ops_listen: String,
    /// Reverse proxies whose `X-Forwarded-For` is believed: a request from one of these addresses is counted
    /// against the client address the proxy names. Empty: the peer address is the source.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: String::new(),
            body_limit_bytes: 1 << 20,
            request_timeout_secs: 30,
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
            self_signed: false,
            redirect_listen: String::new(),
            hsts_max_age_secs: 365 * 24 * 3600,
            ops_listen: String::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// Whether `listen` speaks TLS.
    pub fn tls(&self) -> bool {
        self.self_signed || !self.tls_cert_file.as_os_str().is_empty() || !self.tls_key_file.as_os_str().is_empty()
    }

    /// `public_url`, or `http(s)://<listen>` with an unspecified address replaced by loopback.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        if !self.public_url.is_empty() {
            return self.public_url.trim_end_matches('/').to_string();
        }
        let scheme = if self.tls() { "https" } else { "http" };
        let host = match bound.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
            ip if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        format!("{scheme}://{host}:{}", bound.port())
    }

    /// An optional listener address (`redirect_listen`, `ops_listen`): empty is none; anything else must parse.
    pub fn optional_addr(key: &str, value: &str) -> Result<Option<SocketAddr>, String> {
        if value.trim().is_empty() {
            return Ok(None);
        }
        value
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| format!("http.{key} {value:?} is not an address like 0.0.0.0:80: {e}"))
    }
}

/// Who may create meetings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreatePolicy {
    /// Anyone who reaches the HTTP API (the embedded default: a laptop, a trial).
    Anyone,
    /// Holders of an API key with the `create_meetings` scope.
    ApiKey,
    /// Holders of a creator token (`sluice token --creator`, or `POST /creator-tokens` with a `mint_tokens` key),
    /// or of an API key with the `create_meetings` scope.
    CreatorToken,
}

/// Who may join a meeting by its link alone (`POST /meetings/{id}/join`, what the web page does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinPolicy {
    /// Anyone with the link gets a participant token.
    Anyone,
    /// Only a token an application minted (with the token secret, or through `POST /meetings/{id}/tokens` or
    /// `POST /meetings/{id}/join` with a `mint_tokens` key) admits; the link alone is refused.
    TokenOnly,
    /// Anyone with the link gets a token, but waits in the meeting's waiting room until a host admits them;
    /// tokens an application minted go straight in.
    WaitingRoom,
}

/// Who may read `/metrics` on the public listener (with `http.ops_listen` set it is not served there at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsPolicy {
    Public,
    /// An API key with the `operate` scope.
    Key,
}

/// The access policies: who may create meetings, join them, and read metrics. The defaults are the embedded,
/// zero-configuration behaviour; `docs/security.md` has the production profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    pub create_meetings: CreatePolicy,
    pub join_by_link: JoinPolicy,
    pub metrics: MetricsPolicy,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            create_meetings: CreatePolicy::Anyone,
            join_by_link: JoinPolicy::Anyone,
            metrics: MetricsPolicy::Public,
        }
    }
}

/// Analytics (`docs/analytics.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// `analytics_events` rows older than this are deleted (0: kept).
    pub retention_days: u32,
    /// A participant whose media is not connected this long after `welcome` gets an `ice_failed` event.
    pub ice_timeout_secs: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig { retention_days: 90, ice_timeout_secs: 20 }
    }
}

/// Files shared in chat (`docs/chat.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// The largest file one upload may carry; more is refused with 413 and nothing is kept.
    pub file_size_max_bytes: u64,
    /// Files are deleted this many days after upload (0: kept as long as their message).
    pub file_retention_days: u32,
    /// How long a signed download link works.
    pub link_ttl_secs: u64,
    /// How often expired files are looked for.
    pub sweep_interval_secs: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            file_size_max_bytes: 25 << 20,
            file_retention_days: 30,
            link_ttl_secs: 300,
            sweep_interval_secs: 3600,
        }
    }
}

/// Request limits on the HTTP API and signaling. A rate of 0 turns that limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests per second per source address (every HTTP request, WebSocket upgrades included), and the burst
    /// allowed above it. Requests with a valid API key count against the key instead.
    pub per_source_per_sec: u32,
    pub per_source_burst: u32,
    /// Requests per second per API key, and the burst.
    pub per_key_per_sec: u32,
    pub per_key_burst: u32,
    /// Signaling WebSockets open at once, in all, and from one source address.
    pub signaling_sessions_max: usize,
    pub signaling_sessions_per_source_max: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            per_source_per_sec: 50,
            per_source_burst: 500,
            per_key_per_sec: 200,
            per_key_burst: 2000,
            signaling_sessions_max: 20_000,
            signaling_sessions_per_source_max: 1_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (relative to the data directory) or `postgres://USER:PASSWORD@HOST:PORT/DB`.
    /// The `DATABASE_URL` environment variable sets it too.
    pub url: String,
    /// PostgreSQL connection pool size.
    pub max_connections: usize,
    /// Attempts to reach the database at start-up before giving up.
    pub connect_attempts: u32,
    /// First wait between attempts; doubles up to 8x.
    pub connect_backoff_ms: u64,
    pub statement_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://sluice.db".into(),
            max_connections: 16,
            connect_attempts: 5,
            connect_backoff_ms: 500,
            statement_timeout_ms: 10_000,
        }
    }
}

impl DatabaseConfig {
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            url: self.url.clone(),
            max_connections: self.max_connections,
            connect_attempts: self.connect_attempts,
            connect_backoff: Duration::from_millis(self.connect_backoff_ms),
            statement_timeout: Duration::from_millis(self.statement_timeout_ms),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// A directory on local disk.
    Local,
    /// Amazon S3 or any S3-compatible service.
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub kind: StorageKind,
    /// With `kind = "local"`: the directory (relative to the data directory).
    pub path: String,
    /// With `kind = "s3"`: the bucket.
    pub bucket: String,
    /// With `kind = "s3"`: an S3-compatible endpoint (MinIO, Ceph, ...). Empty: AWS.
    pub endpoint: String,
    pub region: String,
    /// With `kind = "s3"`: credentials. Empty: from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` or the
    /// instance's role.
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Objects at least this large go up as multipart uploads of parts this large (S3's minimum is 5 MiB).
    pub part_size_bytes: usize,
    /// Parts of one multipart upload in flight at once.
    pub upload_concurrency: usize,
    /// Attempts to reach the bucket at start-up before giving up.
    pub connect_attempts: u32,
    pub request_timeout_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            kind: StorageKind::Local,
            path: "objects".into(),
            bucket: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            part_size_bytes: 8 << 20,
            upload_concurrency: 4,
            connect_attempts: 5,
            request_timeout_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret for meeting tokens, at least 32 bytes. Empty: a random secret is generated once and kept in
    /// `<data_dir>/token_secret`, so tokens survive restarts. Several nodes must share one.
    pub token_secret: String,
    /// Lifetime of the tokens the server mints.
    pub token_ttl_secs: u64,
    /// Issuer (`iss`) written into and required of every token.
    pub issuer: String,
    /// `HS256` (a shared secret) or `EdDSA` (Ed25519 key pair in PEM files; a node can verify with the public
    /// key alone while another service mints).
    pub algorithm: String,
    pub eddsa_private_key_file: std::path::PathBuf,
    pub eddsa_public_key_file: std::path::PathBuf,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_secret: String::new(),
            token_ttl_secs: 6 * 3600,
            issuer: "sluice".into(),
            algorithm: "HS256".into(),
            eddsa_private_key_file: std::path::PathBuf::new(),
            eddsa_public_key_file: std::path::PathBuf::new(),
        }
    }
}

/// The media dataplane: worker threads, their cores and UDP ports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Worker threads; 0 means one per core but one (left to the control plane), at least one.
    pub workers: usize,
    /// CPUs to pin workers to, one per worker (overrides `workers`). Empty: the cores chosen by `workers`.
    pub cores: Vec<usize>,
    /// Address the workers' UDP sockets bind to.
    pub bind: std::net::IpAddr,
    /// Addresses browsers reach the workers at, written into ICE candidates (a public address behind 1:1 NAT,
    /// say). Empty: the bind address, or every address of this machine when binding to all.
    pub announce: Vec<std::net::IpAddr>,
    /// Worker `i` listens on UDP `base_port + i`; 0 lets the system pick each port (tests).
    pub base_port: u16,
    /// Every worker on `base_port` alone (`SO_REUSEPORT`; each flow is routed to its worker on its first ICE
    /// check): one UDP port to open and announce.
    pub single_port: bool,
    /// `auto` (io_uring where the kernel allows it, else recvmmsg/sendmmsg), `uring` or `mmsg`.
    pub io: String,
    /// UDP GSO for runs of packets to one destination, where the kernel offers it.
    pub gso: bool,
    /// UDP GRO on receive, where the kernel offers it.
    pub gro: bool,
    /// A participant whose browser answers no ICE consent check for this long is removed (RFC 7675's 30 s is
    /// the browser's own limit for sending; the server can notice a vanished browser sooner).
    pub consent_timeout_secs: u64,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            workers: 0,
            cores: Vec::new(),
            bind: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            announce: Vec::new(),
            base_port: 40_000,
            single_port: false,
            io: "auto".into(),
            gso: true,
            gro: true,
            consent_timeout_secs: 10,
        }
    }
}

impl DataplaneConfig {
    /// The runtime's configuration, or what is wrong with this one.
    pub fn runtime_config(&self) -> Result<sluice_dataplane::runtime::RuntimeConfig, String> {
        use sluice_dataplane::runtime::{IoMode, RuntimeConfig, default_cores};
        let io: IoMode = self.io.parse().map_err(|e| format!("dataplane.io: {e}"))?;
        let cores = if !self.cores.is_empty() {
            self.cores.iter().map(|c| Some(*c)).collect()
        } else if self.workers > 0 {
            let available = default_cores();
            (0..self.workers).map(|i| available.get(i).copied().flatten()).collect()
        } else {
            default_cores()
        };
        if usize::from(self.base_port) + cores.len() > usize::from(u16::MAX) + 1 {
            return Err(format!("dataplane.base_port {} leaves no room for {} workers", self.base_port, cores.len()));
        }
        Ok(RuntimeConfig {
            cores,
            bind: self.bind,
            base_port: self.base_port,
            single_port: self.single_port,
            io,
            gso: self.gso,
            gro: self.gro,
            core: sluice_dataplane::core::CoreConfig {
                consent_timeout: std::time::Duration::from_secs(self.consent_timeout_secs.clamp(3, 300)),
                ..sluice_dataplane::core::CoreConfig::default()
            },
            ..RuntimeConfig::default()
        })
    }
}
