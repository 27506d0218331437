//! The control plane's sections of the configuration file. The binary composes them with the other components'
//! sections into one `Config` (TOML file < `SLUICE_*` environment < flags).

use std::net::SocketAddr;
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
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: String::new(),
            body_limit_bytes: 1 << 20,
            request_timeout_secs: 30,
        }
    }
}

impl HttpConfig {
    /// `public_url`, or `http://<listen>` with an unspecified address replaced by loopback.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        if !self.public_url.is_empty() {
            return self.public_url.trim_end_matches('/').to_string();
        }
        let host = match bound.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
            ip if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{}", bound.port())
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
