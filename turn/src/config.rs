//! The `[turn]` section of the configuration file.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::filter::{Cidr, PeerFilter};
use crate::server::ServerConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// Whether `sluice serve` runs the relay (`sluice turn` always does).
    pub enabled: bool,
    /// UDP listener for STUN and TURN; empty disables it.
    pub udp_listen: String,
    /// TCP listener; empty disables it.
    pub tcp_listen: String,
    /// TLS listener (TURN over TLS, `turns:`); empty disables it.
    pub tls_listen: String,
    /// PEM certificate chain and private key for TLS. Empty: a self-signed certificate is generated at start-up
    /// (browsers will not accept it; use it for tests only).
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    /// Address relay sockets bind to and that is handed to clients as their relayed address. Unspecified: this
    /// machine's first non-loopback IPv4 address (loopback when it has none).
    pub relay_ip: IpAddr,
    /// IPv6 address for RFC 6156 relays (REQUESTED-ADDRESS-FAMILY IPv6); empty: no IPv6 relays.
    pub relay_ipv6: String,
    /// Port range for relayed addresses.
    pub min_port: u16,
    pub max_port: u16,
    pub realm: String,
    /// Shared secrets of the TURN REST API scheme; the first mints credentials, every one verifies (rotation).
    /// Empty: one is generated once and kept in `<data_dir>/turn_secret`.
    pub secrets: Vec<String>,
    /// Lifetime of the credentials handed to joining participants.
    pub credential_ttl_secs: u64,
    /// TURN URLs handed to browsers. Empty: `turn:<relay ip>:<port>` for UDP and TCP.
    pub urls: Vec<String>,
    /// Peer addresses or CIDR blocks relayed to even inside the denied special-purpose ranges. `sluice serve`
    /// adds the SFU's own media addresses.
    pub allow: Vec<String>,
    /// Peer addresses or blocks always denied.
    pub deny: Vec<String>,
    /// Allocations one user may hold at once (0: no limit), and all users together.
    pub user_quota: usize,
    pub total_quota: usize,
    /// Relayed bytes per second per allocation, and per worker (0: no limit).
    pub allocation_bps: u64,
    pub total_bps: u64,
    /// Unauthenticated requests per second per source address, and the burst allowed.
    pub unauth_rate: u64,
    pub unauth_burst: u64,
    /// Bytes an unauthenticated source may be sent beyond what it sent (per second; see docs/turn.md).
    pub response_allowance_bytes: u64,
    pub max_lifetime_secs: u64,
    pub nonce_lifetime_secs: u64,
    /// Permissions and channels per allocation.
    pub max_permissions: usize,
    pub max_channels: usize,
    /// TCP and TLS connections per worker.
    pub max_connections: usize,
    /// SOFTWARE attribute in responses; empty sends none.
    pub software: String,
    /// `sluice turn` alone serves `/metrics` and `/healthz` here (`sluice serve` has them on its HTTP port);
    /// empty disables it.
    pub metrics_listen: String,
    /// Relay worker threads (each with its own share of the listeners through `SO_REUSEPORT`).
    pub workers: usize,
    /// CPUs to pin the workers to, one per worker; empty: not pinned.
    pub cores: Vec<usize>,
    /// UDP I/O path: `auto` (io_uring where the kernel allows it, else epoll with `recvmmsg`/`sendmmsg`),
    /// `uring` (refuse to start without it) or `mmsg`.
    pub io: String,
    /// Datagrams between two allocations of one worker go from one to the other in memory, not through the
    /// kernel (`docs/turn.md`).
    pub hairpin: bool,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            enabled: true,
            udp_listen: "0.0.0.0:3478".into(),
            tcp_listen: "0.0.0.0:3478".into(),
            tls_listen: String::new(),
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
            relay_ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            relay_ipv6: String::new(),
            min_port: 49152,
            max_port: 65535,
            realm: "sluice".into(),
            secrets: Vec::new(),
            credential_ttl_secs: 12 * 3600,
            urls: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            user_quota: 10,
            total_quota: 10_000,
            allocation_bps: 5_000_000,
            total_bps: 0,
            unauth_rate: 100,
            unauth_burst: 200,
            response_allowance_bytes: 4096,
            max_lifetime_secs: 3600,
            nonce_lifetime_secs: 600,
            max_permissions: 32,
            max_channels: 32,
            max_connections: 4096,
            software: String::new(),
            metrics_listen: "127.0.0.1:9479".into(),
            workers: 1,
            cores: Vec::new(),
            io: "auto".into(),
            hairpin: true,
        }
    }
}

impl TurnConfig {
    /// The sans-IO server's settings, or what is wrong with this section. `secrets` must be resolved already.
    pub fn server_config(&self, secrets: Vec<String>) -> Result<ServerConfig, String> {
        let parse = |key: &str, list: &[String]| -> Result<Vec<Cidr>, String> {
            list.iter().map(|s| s.parse::<Cidr>().map_err(|e| format!("turn.{key}: {e}"))).collect()
        };
        if secrets.is_empty() || secrets.iter().any(|s| s.len() < 16) {
            return Err("turn.secrets: every secret must be at least 16 characters".into());
        }
        if self.min_port == 0 || self.min_port > self.max_port {
            return Err(format!("turn.min_port {} and max_port {} make no range", self.min_port, self.max_port));
        }
        if self.realm.is_empty() || self.realm.len() > 127 {
            return Err("turn.realm: 1 to 127 characters".into());
        }
        Ok(ServerConfig {
            realm: self.realm.clone(),
            secrets,
            nonce_lifetime: Duration::from_secs(self.nonce_lifetime_secs.clamp(30, 86_400)),
            default_lifetime: Duration::from_secs(600.min(self.max_lifetime_secs.max(60))),
            max_lifetime: Duration::from_secs(self.max_lifetime_secs.max(60)),
            max_permissions: self.max_permissions.clamp(1, 1024),
            max_channels: self.max_channels.clamp(1, 4096),
            allocation_bps: self.allocation_bps,
            total_bps: self.total_bps,
            unauth_rate: self.unauth_rate,
            unauth_burst: self.unauth_burst.max(1),
            response_allowance: self.response_allowance_bytes,
            software: (!self.software.is_empty()).then(|| self.software.clone()),
            filter: PeerFilter::new(parse("allow", &self.allow)?, parse("deny", &self.deny)?),
            ..ServerConfig::default()
        })
    }

    pub fn listen_addr(key: &str, value: &str) -> Result<Option<SocketAddr>, String> {
        if value.is_empty() {
            return Ok(None);
        }
        value.parse().map(Some).map_err(|_| format!("turn.{key}: {value:?} is not an address:port"))
    }

    pub fn relay_ipv6_addr(&self) -> Result<Option<IpAddr>, String> {
        if self.relay_ipv6.is_empty() {
            return Ok(None);
        }
        match self.relay_ipv6.parse::<IpAddr>() {
            Ok(ip @ IpAddr::V6(_)) => Ok(Some(ip)),
            _ => Err(format!("turn.relay_ipv6: {:?} is not an IPv6 address", self.relay_ipv6)),
        }
    }
}
