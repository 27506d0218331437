//! The sans-IO TURN server of one worker (RFC 8656 over RFC 8489, with RFC 6156 IPv6 relays): allocations,
//! permissions, channels, authentication and limits. It knows no socket and no clock: time comes in as `Now`,
//! datagrams come in as bytes, and each call returns one `Action` for the shell to carry out. Relayed
//! transport addresses are opened and closed through the shell's `Relays`.
//!
//! Call order: `handle_client` for every datagram or stream message from a client, `handle_peer` for every
//! datagram arriving on a relayed address, and `handle_timeout` at `poll_timeout` (once a second is enough).

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::auth::{self, LongTermKey, Nonces};
use crate::filter::{PeerFilter, Verdict};
use crate::limits::{QuotaError, Quotas, ResponseBudget, SourceRateLimit, TokenBucket};
use crate::proto::{self, ChannelData, HEADER_LEN, Kind, Message, Writer, attr, msg};
use crate::stats::{DropReason, Stats};

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// A client's 5-tuple as the shell sees it; `conn` names the TCP/TLS connection (0 for UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client {
    pub transport: Transport,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub conn: u32,
}

/// The shell's handle of one relayed transport address (a UDP socket).
pub type RelayId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// The shell's side of allocations: it owns the relay sockets.
pub trait Relays {
    /// Opens a relayed transport address of `family` (an even port if asked).
    fn open(&mut self, family: Family, even_port: bool) -> std::io::Result<(RelayId, SocketAddr)>;
    /// Opens an even port for an allocation and keeps the odd port above it reserved for `RESERVATION_LIFETIME`
    /// under a new, unguessable token (EVEN-PORT with the R bit: RTP and RTCP). Reservations belong to the whole
    /// relay, not one worker: the token's Allocate may come over another 5-tuple, so another worker.
    fn open_reserving(&mut self, family: Family) -> std::io::Result<((RelayId, SocketAddr), [u8; 8])>;
    /// The port reserved under `token`, now a relay of this worker; `None` if the token is unknown or expired.
    fn take_reserved(&mut self, token: &[u8]) -> Option<std::io::Result<(RelayId, SocketAddr)>>;
    fn close(&mut self, relay: RelayId);
}

/// The present, as a monotonic instant and as Unix seconds (credentials and nonces carry wall-clock expiries).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub unix: u64,
}

impl Now {
    pub fn system() -> Now {
        Now { instant: Instant::now(), unix: auth::unix_secs(std::time::SystemTime::now()) }
    }
}

/// What the shell does with one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to send (consumed, or dropped and counted).
    None,
    /// Send `out[..len]` back to the client the input came from.
    Reply(usize),
    /// Send `input[range]` from the relay to the peer.
    ToPeer { relay: RelayId, peer: SocketAddr, range: Range<usize> },
    /// Send `buf[range]` to the client (from `handle_peer`).
    ToClient { client: Client, range: Range<usize> },
}

/// Bytes `handle_peer` needs in front of the peer's data for a Data indication's header (IPv6 peer).
pub const PEER_HEADROOM: usize = HEADER_LEN + 4 + 20 + 4;
/// Bytes it needs after the data for padding to 4.
pub const PEER_TAILROOM: usize = 3;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub realm: String,
    /// REST API secrets; the first mints, all verify.
    pub secrets: Vec<String>,
    pub nonce_lifetime: Duration,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    pub permission_lifetime: Duration,
    pub channel_lifetime: Duration,
    /// Per allocation.
    pub max_permissions: usize,
    pub max_channels: usize,
    /// Relayed bytes per second per allocation, each direction counted; 0 is unlimited.
    pub allocation_bps: u64,
    /// Relayed bytes per second through this worker; 0 is unlimited.
    pub total_bps: u64,
    /// Unauthenticated requests per second per source address, and the burst.
    pub unauth_rate: u64,
    pub unauth_burst: u64,
    /// Bytes an unauthenticated source may receive beyond what it sent (refilled per second).
    pub response_allowance: u64,
    /// SOFTWARE attribute in responses; none by default (it tells attackers the version).
    pub software: Option<String>,
    pub filter: PeerFilter,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            realm: "sluice".into(),
            secrets: Vec::new(),
            nonce_lifetime: Duration::from_secs(600),
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            max_permissions: 32,
            max_channels: 32,
            allocation_bps: 0,
            total_bps: 0,
            unauth_rate: 100,
            unauth_burst: 200,
            response_allowance: 4096,
            software: None,
            filter: PeerFilter::default(),
        }
    }
}

#[derive(Debug)]
struct Permission {
    ip: IpAddr,
    expires: Instant,
}

#[derive(Debug)]
struct Channel {
    number: u16,
    peer: SocketAddr,
    expires: Instant,
}

/// How long a reserved port waits for its Allocate (RFC 8656 section 7.2 suggests 30 seconds).
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Allocation {
    client: Client,
    relay: RelayId,
    relayed: SocketAddr,
    username: String,
    user: String,
    key: LongTermKey,
    expires: Instant,
    permissions: Vec<Permission>,
    channels: Vec<Channel>,
    bucket: TokenBucket,
    allocate_txid: [u8; 12],
}

impl Allocation {
    fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.iter().any(|p| p.ip == ip && p.expires > now)
    }

    fn channel(&self, number: u16, now: Instant) -> Option<&Channel> {
        self.channels.iter().find(|c| c.number == number && c.expires > now)
    }

    fn channel_of_peer(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        self.channels.iter().find(|c| c.peer == peer && c.expires > now).map(|c| c.number)
    }

    fn family(&self) -> Family {
        if self.relayed.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// How a request is answered: an error code and reason, signed or not.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    code: u16,
    reason: &'static str,
}

const fn refuse(code: u16, reason: &'static str) -> Refusal {
    Refusal { code, reason }
}

/// A request that passed authentication.
#[derive(Debug, Clone, Copy)]
struct Authed<'m> {
    message: Message<'m>,
    key: LongTermKey,
    username: &'m str,
}

#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    nonces: Nonces,
    quotas: Arc<Quotas>,
    allocations: Vec<Option<Allocation>>,
    free: Vec<usize>,
    by_client: FxHashMap<Client, usize>,
    by_relay: FxHashMap<RelayId, usize>,
    total_bucket: TokenBucket,
    unauth: SourceRateLimit,
    budget: ResponseBudget,
    next_sweep: Instant,
    /// Data indications sent, numbering their transaction IDs (indications get no answer, so IDs only need to
    /// differ).
    indications: u64,
    pub stats: Stats,
}

/// How often expiries are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl Server {
    pub fn new(config: ServerConfig, nonce_key: [u8; 32], quotas: Arc<Quotas>, now: Instant) -> Server {
        let total_bucket = TokenBucket::new(config.total_bps, config.total_bps, now);
        Server {
            nonces: Nonces::new(nonce_key, config.nonce_lifetime),
            unauth: SourceRateLimit::new(config.unauth_rate, config.unauth_burst),
            budget: ResponseBudget::new(config.response_allowance, now),
            config,
            quotas,
            allocations: Vec::new(),
            free: Vec::new(),
            by_client: FxHashMap::default(),
            by_relay: FxHashMap::default(),
            total_bucket,
            next_sweep: now + SWEEP_INTERVAL,
            indications: 0,
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn allocation_count(&self) -> usize {
        self.by_client.len()
    }

    /// One datagram (UDP) or one framed message (TCP/TLS) from a client. Replies are written into `out`.
    pub fn handle_client(
        &mut self,
        now: Now,
        client: &Client,
        input: &[u8],
        out: &mut [u8],
        relays: &mut dyn Relays,
    ) -> Action {
        match proto::classify(input) {
            Kind::ChannelData => self.channel_data(now.instant, client, input),
            Kind::Stun => match Message::parse(input) {
                Ok(m) if m.check_fingerprint().is_err() => self.dropped(DropReason::BadFingerprint),
                Ok(m) if msg::is_request(m.msg_type) => self.request(now, client, m, out, relays),
                Ok(m) if m.msg_type == msg::SEND_INDICATION => self.send_indication(now.instant, client, m),
                Ok(_) => self.dropped(DropReason::Unexpected),
                Err(_) => self.dropped(DropReason::Malformed),
            },
            Kind::Other => self.dropped(DropReason::Malformed),
        }
    }

    /// One datagram from `peer` on `relay`; the data is `buf[data]`, with `PEER_HEADROOM` bytes free before it
    /// and `PEER_TAILROOM` after, where the header for the client is written.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relay: RelayId,
        peer: SocketAddr,
        buf: &mut [u8],
        data: Range<usize>,
    ) -> Action {
        debug_assert!(data.start >= PEER_HEADROOM && data.end + PEER_TAILROOM <= buf.len());
        let Some(&index) = self.by_relay.get(&relay) else { return self.dropped(DropReason::UnknownRelay) };
        let alloc = self.allocations[index].as_mut().expect("by_relay points at live allocations");
        if !alloc.permitted(peer.ip(), now) {
            return self.dropped(DropReason::NoPermission);
        }
        let len = data.len();
        if !alloc.bucket.take(len as u64, now) || !self.total_bucket.take(len as u64, now) {
            return self.dropped(DropReason::Bandwidth);
        }
        let client = alloc.client;
        let range = match alloc.channel_of_peer(peer, now) {
            Some(channel) => {
                let start = data.start - proto::CHANNEL_HEADER_LEN;
                buf[start..start + 2].copy_from_slice(&channel.to_be_bytes());
                buf[start + 2..start + 4].copy_from_slice(&(len as u16).to_be_bytes());
                // Over a stream, ChannelData is padded to 4 bytes (RFC 8656 section 12.5); over UDP it need not be.
                let end = if client.transport.is_stream() { pad(buf, data.end, len) } else { data.end };
                start..end
            }
            None => {
                self.indications += 1;
                data_indication(buf, data.clone(), peer, self.indications)
            }
        };
        self.stats.to_client_packets += 1;
        self.stats.to_client_bytes += len as u64;
        Action::ToClient { client, range }
    }

    /// When `handle_timeout` wants to run next.
    pub fn poll_timeout(&self) -> Instant {
        self.next_sweep
    }

    /// Ends expired allocations (closing their relays) and forgets expired permissions and channels.
    pub fn handle_timeout(&mut self, now: Instant, relays: &mut dyn Relays) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        for index in 0..self.allocations.len() {
            let Some(alloc) = self.allocations[index].as_mut() else { continue };
            if alloc.expires <= now {
                self.end_allocation(index, relays);
                continue;
            }
            alloc.permissions.retain(|p| p.expires > now);
            alloc.channels.retain(|c| c.expires > now);
        }
    }

    /// Ends the allocations of a client whose TCP/TLS connection closed (RFC 8656 section 4: the allocation
    /// lives as long as its connection).
    pub fn client_gone(&mut self, client: &Client, relays: &mut dyn Relays) {
        if let Some(&index) = self.by_client.get(client) {
            self.end_allocation(index, relays);
        }
    }

    /// Ends every allocation (shutdown).
    pub fn close_all(&mut self, relays: &mut dyn Relays) {
        for index in 0..self.allocations.len() {
            if self.allocations[index].is_some() {
                self.end_allocation(index, relays);
            }
        }
    }

    fn dropped(&mut self, reason: DropReason) -> Action {
        self.stats.drop(reason);
        Action::None
    }

    fn channel_data(&mut self, now: Instant, client: &Client, input: &[u8]) -> Action {
        let Ok(cd) = ChannelData::parse(input) else { return self.dropped(DropReason::Malformed) };
        let Some(&index) = self.by_client.get(client) else { return self.dropped(DropReason::NoAllocation) };
        let alloc = self.allocations[index].as_mut().expect("by_client points at live allocations");
        let Some(channel) = alloc.channel(cd.channel, now) else { return self.dropped(DropReason::NoChannel) };
        let peer = channel.peer;
        if !alloc.permitted(peer.ip(), now) {
            return self.dropped(DropReason::NoPermission);
        }
        self.relay_to_peer(now, index, peer, cd.offset..cd.offset + cd.data.len())
    }

    fn send_indication(&mut self, now: Instant, client: &Client, m: Message<'_>) -> Action {
        let Some(&index) = self.by_client.get(client) else { return self.dropped(DropReason::NoAllocation) };
        let (Some(peer), Some(data)) = (m.xor_address(attr::XOR_PEER_ADDRESS), m.get(attr::DATA)) else {
            return self.dropped(DropReason::Malformed);
        };
        if let Verdict::Denied(range) = self.config.filter.check(peer) {
            self.stats.denial(range);
            return self.dropped(DropReason::DeniedPeer);
        }
        let alloc = self.allocations[index].as_ref().expect("by_client points at live allocations");
        if !alloc.permitted(peer.ip(), now) {
            return self.dropped(DropReason::NoPermission);
        }
        let start = data.as_ptr() as usize - m.bytes().as_ptr() as usize;
        self.relay_to_peer(now, index, peer, start..start + data.len())
    }

    fn relay_to_peer(&mut self, now: Instant, index: usize, peer: SocketAddr, range: Range<usize>) -> Action {
        let alloc = self.allocations[index].as_mut().expect("callers pass live allocations");
        let len = range.len() as u64;
        if !alloc.bucket.take(len, now) || !self.total_bucket.take(len, now) {
            return self.dropped(DropReason::Bandwidth);
        }
        self.stats.to_peer_packets += 1;
        self.stats.to_peer_bytes += len;
        Action::ToPeer { relay: alloc.relay, peer, range }
    }

    fn request(
        &mut self,
        now: Now,
        client: &Client,
        m: Message<'_>,
        out: &mut [u8],
        relays: &mut dyn Relays,
    ) -> Action {
        if let Some(unknown) = unknown_required(&m) {
            return self.unsigned_refusal(now, client, &m, refuse(420, "Unknown Attribute"), Some(unknown), out);
        }
        if m.msg_type == msg::BINDING_REQUEST {
            return self.binding(now, client, &m, out);
        }
        if !matches!(
            m.msg_type,
            msg::ALLOCATE_REQUEST | msg::REFRESH_REQUEST | msg::CREATE_PERMISSION_REQUEST | msg::CHANNEL_BIND_REQUEST
        ) {
            return self.unsigned_refusal(now, client, &m, refuse(400, "Unknown method"), None, out);
        }
        let authed = match self.authenticate(now, client, &m) {
            Ok(authed) => authed,
            Err(refusal) => return self.unsigned_refusal(now, client, &m, refusal, None, out),
        };
        let result = match m.msg_type {
            msg::ALLOCATE_REQUEST => self.allocate(now.instant, client, &authed, relays),
            msg::REFRESH_REQUEST => self.refresh(now.instant, client, &authed, relays),
            msg::CREATE_PERMISSION_REQUEST => self.create_permission(now.instant, client, &authed),
            _ => self.channel_bind(now.instant, client, &authed),
        };
        let len = match result {
            Ok(Success::Allocated { relayed, lifetime, reservation }) => self.signed_success(&authed, out, |w| {
                w.xor_address(attr::XOR_RELAYED_ADDRESS, relayed)?
                    .attr(attr::LIFETIME, &lifetime.to_be_bytes())?
                    .xor_address(attr::XOR_MAPPED_ADDRESS, client.remote)?;
                if let Some(token) = reservation {
                    w.attr(attr::RESERVATION_TOKEN, &token)?;
                }
                Ok(())
            }),
            Ok(Success::Lifetime(lifetime)) => {
                self.signed_success(&authed, out, |w| w.attr(attr::LIFETIME, &lifetime.to_be_bytes()).map(|_| ()))
            }
            Ok(Success::Empty) => self.signed_success(&authed, out, |_| Ok(())),
            Err(refusal) => self.signed_refusal(&authed, refusal, out),
        };
        match len {
            Some(len) => Action::Reply(len),
            None => Action::None,
        }
    }

    fn binding(&mut self, now: Now, client: &Client, m: &Message<'_>, out: &mut [u8]) -> Action {
        let software = self.config.software.as_deref();
        let fingerprint = m.has(attr::FINGERPRINT);
        let Some(len) = write(out, msg::success(msg::BINDING_REQUEST), m.transaction_id, |w| {
            w.xor_address(attr::XOR_MAPPED_ADDRESS, client.remote)?;
            if let Some(s) = software {
                w.attr(attr::SOFTWARE, s.as_bytes())?;
            }
            if fingerprint {
                w.fingerprint()?;
            }
            Ok(())
        }) else {
            return self.dropped(DropReason::Malformed);
        };
        if !self.admit_unauthenticated(now.instant, client, m.bytes().len(), len) {
            return Action::None;
        }
        self.stats.bindings += 1;
        Action::Reply(len)
    }

    /// The rate limit and the amplification budget for answers to requests not (yet) authenticated. Over a
    /// stream the source address is proven by the handshake, so only UDP needs the budget.
    fn admit_unauthenticated(
        &mut self,
        now: Instant,
        client: &Client,
        request_len: usize,
        response_len: usize,
    ) -> bool {
        if client.transport.is_stream() {
            return true;
        }
        if !self.unauth.allow(client.remote.ip(), now) {
            self.stats.drop(DropReason::RateLimited);
            return false;
        }
        if !self.budget.admit(client.remote.ip(), request_len, response_len, now) {
            self.stats.drop(DropReason::Amplification);
            return false;
        }
        true
    }

    /// Checks the long-term credential (RFC 8489 section 9.2.4) under the REST scheme.
    fn authenticate<'m>(&mut self, now: Now, client: &Client, m: &Message<'m>) -> Result<Authed<'m>, Refusal> {
        if !m.has(attr::MESSAGE_INTEGRITY) {
            return Err(refuse(401, "Unauthorized"));
        }
        let (Some(username), Some(_realm), Some(nonce)) =
            (m.get(attr::USERNAME), m.get(attr::REALM), m.get(attr::NONCE))
        else {
            return Err(refuse(400, "Missing USERNAME, REALM or NONCE"));
        };
        if !self.nonces.check(nonce, client.remote.ip(), now.unix) {
            return Err(refuse(438, "Stale Nonce"));
        }
        let username = std::str::from_utf8(username).map_err(|_| refuse(401, "Unauthorized"))?;
        match auth::username_expiry(username) {
            None => return Err(refuse(401, "Unauthorized")),
            Some(expiry) if expiry < now.unix => return Err(refuse(401, "Credential expired")),
            Some(_) => {}
        }
        // A request on an existing allocation is checked against the key it was created with first.
        if let Some(alloc) = self.by_client.get(client).and_then(|i| self.allocations[*i].as_ref())
            && alloc.username == username
            && m.check_integrity(&alloc.key).is_ok()
        {
            return Ok(Authed { message: *m, key: alloc.key, username });
        }
        for secret in &self.config.secrets {
            let key = auth::long_term_key(username, &self.config.realm, &auth::rest_password(secret, username));
            if m.check_integrity(&key).is_ok() {
                return Ok(Authed { message: *m, key, username });
            }
        }
        Err(refuse(401, "Unauthorized"))
    }

    fn allocate(
        &mut self,
        now: Instant,
        client: &Client,
        a: &Authed<'_>,
        relays: &mut dyn Relays,
    ) -> Result<Success, Refusal> {
        let m = &a.message;
        if let Some(&index) = self.by_client.get(client) {
            let alloc = self.allocations[index].as_ref().expect("by_client points at live allocations");
            // A retransmitted Allocate gets the same answer (RFC 8656 section 7.2).
            if alloc.allocate_txid == m.transaction_id && alloc.username == a.username {
                let lifetime = alloc.expires.saturating_duration_since(now).as_secs() as u32;
                return Ok(Success::Allocated { relayed: alloc.relayed, lifetime, reservation: None });
            }
            return Err(refuse(437, "Allocation Mismatch"));
        }
        match m.get(attr::REQUESTED_TRANSPORT) {
            None => return Err(refuse(400, "Missing REQUESTED-TRANSPORT")),
            Some(v) if v.first() != Some(&proto::PROTOCOL_UDP) => {
                return Err(refuse(442, "Unsupported Transport Protocol"));
            }
            Some(_) => {}
        }
        let reserved = match m.get(attr::RESERVATION_TOKEN) {
            None => None,
            Some(_) if m.has(attr::EVEN_PORT) || m.has(attr::REQUESTED_ADDRESS_FAMILY) => {
                return Err(refuse(400, "RESERVATION-TOKEN with EVEN-PORT or REQUESTED-ADDRESS-FAMILY"));
            }
            // A token not held (unknown or expired) is 508 (RFC 8656 section 7.2).
            Some(token) => match relays.take_reserved(token) {
                Some(Ok(reserved)) => Some(reserved),
                _ => return Err(refuse(508, "Insufficient Capacity")),
            },
        };
        // Without REQUESTED-ADDRESS-FAMILY the relayed address is IPv4, whatever the client's family
        // (RFC 6156 section 4.2, RFC 8656 section 7.2).
        let family = match m.get(attr::REQUESTED_ADDRESS_FAMILY).map(|v| v.first().copied()) {
            None => Family::V4,
            Some(Some(0x01)) => Family::V4,
            Some(Some(0x02)) => Family::V6,
            Some(_) => return Err(refuse(440, "Address Family not Supported")),
        };
        let even_port = m.get(attr::EVEN_PORT).map(|v| v.first().is_some_and(|b| b & 0x80 != 0));
        let lifetime = self.lifetime(m);
        let mut reservation = None;
        let user = a.username.split_once(':').map_or(a.username, |(expiry, user)| {
            if expiry.bytes().all(|b| b.is_ascii_digit()) { user } else { expiry }
        });
        if let Err(e) = self.quotas.acquire(user) {
            match e {
                QuotaError::User => self.stats.quota_user += 1,
                QuotaError::Total => self.stats.quota_total += 1,
            }
            // A reservation taken for this request goes back to the shell, not into a leak.
            if let Some((relay, _)) = reserved {
                relays.close(relay);
            }
            return Err(refuse(486, "Allocation Quota Reached"));
        }
        let opened = match (reserved, even_port) {
            (Some(reserved), _) => Ok(reserved),
            (None, Some(true)) => relays.open_reserving(family).map(|(even, token)| {
                reservation = Some(token);
                even
            }),
            (None, even) => relays.open(family, even.is_some()),
        };
        let (relay, relayed) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                self.quotas.release(user);
                return Err(
                    if e.kind() == std::io::ErrorKind::AddrNotAvailable || e.kind() == std::io::ErrorKind::Unsupported {
                        refuse(440, "Address Family not Supported")
                    } else {
                        refuse(508, "Insufficient Capacity")
                    },
                );
            }
        };
        let alloc = Allocation {
            client: *client,
            relay,
            relayed,
            username: a.username.to_string(),
            user: user.to_string(),
            key: a.key,
            expires: now + lifetime,
            permissions: Vec::with_capacity(self.config.max_permissions),
            channels: Vec::with_capacity(self.config.max_channels),
            bucket: TokenBucket::new(self.config.allocation_bps, self.config.allocation_bps, now),
            allocate_txid: m.transaction_id,
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.allocations[i] = Some(alloc);
                i
            }
            None => {
                self.allocations.push(Some(alloc));
                self.allocations.len() - 1
            }
        };
        self.by_client.insert(*client, index);
        self.by_relay.insert(relay, index);
        self.stats.allocations_created += 1;
        self.stats.allocations_active += 1;
        Ok(Success::Allocated { relayed, lifetime: lifetime.as_secs() as u32, reservation })
    }

    fn lifetime(&self, m: &Message<'_>) -> Duration {
        match m.get(attr::LIFETIME).and_then(proto::u32_value) {
            None => self.config.default_lifetime,
            Some(secs) => {
                Duration::from_secs(u64::from(secs)).clamp(self.config.default_lifetime, self.config.max_lifetime)
            }
        }
    }

    /// The caller's allocation, if the credential is the one that made it.
    fn own_allocation(&self, client: &Client, a: &Authed<'_>) -> Result<usize, Refusal> {
        let &index = self.by_client.get(client).ok_or(refuse(437, "Allocation Mismatch"))?;
        let alloc = self.allocations[index].as_ref().expect("by_client points at live allocations");
        if alloc.username != a.username {
            return Err(refuse(441, "Wrong Credentials"));
        }
        Ok(index)
    }

    fn refresh(
        &mut self,
        now: Instant,
        client: &Client,
        a: &Authed<'_>,
        relays: &mut dyn Relays,
    ) -> Result<Success, Refusal> {
        let index = self.own_allocation(client, a)?;
        let requested = a.message.get(attr::LIFETIME).and_then(proto::u32_value);
        if requested == Some(0) {
            self.end_allocation(index, relays);
            return Ok(Success::Lifetime(0));
        }
        let lifetime = self.lifetime(&a.message);
        let alloc = self.allocations[index].as_mut().expect("own_allocation returns live allocations");
        alloc.expires = now + lifetime;
        Ok(Success::Lifetime(lifetime.as_secs() as u32))
    }

    /// Checks a peer address for a permission (`with_port` false: the port means nothing there) or a channel:
    /// family, then the filter.
    fn check_peer(&mut self, index: usize, peer: SocketAddr, with_port: bool) -> Result<(), Refusal> {
        let alloc = self.allocations[index].as_ref().expect("callers pass live allocations");
        let family = if peer.is_ipv4() { Family::V4 } else { Family::V6 };
        if family != alloc.family() {
            return Err(refuse(443, "Peer Address Family Mismatch"));
        }
        let verdict =
            if with_port { self.config.filter.check(peer) } else { self.config.filter.check_permission(peer.ip()) };
        if let Verdict::Denied(range) = verdict {
            self.stats.denial(range);
            return Err(refuse(403, "Forbidden"));
        }
        Ok(())
    }

    fn create_permission(&mut self, now: Instant, client: &Client, a: &Authed<'_>) -> Result<Success, Refusal> {
        let index = self.own_allocation(client, a)?;
        let peers = a.message.attributes().flatten().filter(|x| x.attr_type == attr::XOR_PEER_ADDRESS);
        let mut count = 0;
        // Every address is checked before any is installed: the request succeeds or changes nothing.
        for peer in peers.clone() {
            let peer = peer_address(peer.value, &a.message).ok_or(refuse(400, "Bad XOR-PEER-ADDRESS"))?;
            self.check_peer(index, peer, false)?;
            count += 1;
        }
        if count == 0 {
            return Err(refuse(400, "Missing XOR-PEER-ADDRESS"));
        }
        for peer in peers {
            let peer = peer_address(peer.value, &a.message).expect("checked above");
            self.permit(index, peer.ip(), now)?;
        }
        Ok(Success::Empty)
    }

    fn permit(&mut self, index: usize, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let lifetime = self.config.permission_lifetime;
        let max = self.config.max_permissions;
        let alloc = self.allocations[index].as_mut().expect("callers pass live allocations");
        if let Some(p) = alloc.permissions.iter_mut().find(|p| p.ip == ip) {
            p.expires = now + lifetime;
            return Ok(());
        }
        alloc.permissions.retain(|p| p.expires > now);
        if alloc.permissions.len() >= max {
            return Err(refuse(508, "Insufficient Capacity"));
        }
        alloc.permissions.push(Permission { ip, expires: now + lifetime });
        self.stats.permissions_created += 1;
        Ok(())
    }

    fn channel_bind(&mut self, now: Instant, client: &Client, a: &Authed<'_>) -> Result<Success, Refusal> {
        let index = self.own_allocation(client, a)?;
        let number = a
            .message
            .get(attr::CHANNEL_NUMBER)
            .filter(|v| v.len() == 4)
            .map(|v| u16::from_be_bytes([v[0], v[1]]))
            .filter(|n| (proto::CHANNEL_MIN..=proto::CHANNEL_MAX).contains(n))
            .ok_or(refuse(400, "Bad CHANNEL-NUMBER"))?;
        let peer = a.message.xor_address(attr::XOR_PEER_ADDRESS).ok_or(refuse(400, "Missing XOR-PEER-ADDRESS"))?;
        self.check_peer(index, peer, true)?;
        let (lifetime, max) = (self.config.channel_lifetime, self.config.max_channels);
        let alloc = self.allocations[index].as_mut().expect("own_allocation returns live allocations");
        // A channel stays bound to one peer, and a peer to one channel (RFC 8656 section 11.2).
        if alloc.channels.iter().any(|c| (c.number == number) != (c.peer == peer)) {
            return Err(refuse(400, "Channel or peer already bound"));
        }
        match alloc.channels.iter_mut().find(|c| c.number == number) {
            Some(c) => c.expires = now + lifetime,
            None => {
                if alloc.channels.len() >= max {
                    return Err(refuse(508, "Insufficient Capacity"));
                }
                alloc.channels.push(Channel { number, peer, expires: now + lifetime });
                self.stats.channels_bound += 1;
            }
        }
        self.permit(index, peer.ip(), now)?;
        Ok(Success::Empty)
    }

    fn end_allocation(&mut self, index: usize, relays: &mut dyn Relays) {
        let Some(alloc) = self.allocations[index].take() else { return };
        self.by_client.remove(&alloc.client);
        self.by_relay.remove(&alloc.relay);
        relays.close(alloc.relay);
        self.quotas.release(&alloc.user);
        self.free.push(index);
        self.stats.allocations_ended += 1;
        self.stats.allocations_active -= 1;
    }

    fn signed_success(
        &mut self,
        a: &Authed<'_>,
        out: &mut [u8],
        body: impl FnOnce(&mut Writer<'_>) -> Result<(), proto::StunError>,
    ) -> Option<usize> {
        let software = self.config.software.as_deref();
        let fingerprint = a.message.has(attr::FINGERPRINT);
        let len = write(out, msg::success(a.message.msg_type), a.message.transaction_id, |w| {
            body(w)?;
            if let Some(s) = software {
                w.attr(attr::SOFTWARE, s.as_bytes())?;
            }
            w.integrity(&a.key)?;
            if fingerprint {
                w.fingerprint()?;
            }
            Ok(())
        });
        if len.is_some() {
            self.stats.response(200);
        }
        len
    }

    /// An error to an authenticated request: signed with the caller's key.
    fn signed_refusal(&mut self, a: &Authed<'_>, refusal: Refusal, out: &mut [u8]) -> Option<usize> {
        let fingerprint = a.message.has(attr::FINGERPRINT);
        let len = write(out, msg::error(a.message.msg_type), a.message.transaction_id, |w| {
            w.error_code(refusal.code, refusal.reason)?.integrity(&a.key)?;
            if fingerprint {
                w.fingerprint()?;
            }
            Ok(())
        });
        if len.is_some() {
            self.stats.response(refusal.code);
        }
        len
    }

    /// An error to a request that is not (or not yet) authenticated: 401 and 438 carry REALM and a fresh NONCE
    /// (RFC 8489 section 9.2.4); nothing is signed; the answer passes the rate limit and amplification budget.
    fn unsigned_refusal(
        &mut self,
        now: Now,
        client: &Client,
        m: &Message<'_>,
        refusal: Refusal,
        unknown: Option<u16>,
        out: &mut [u8],
    ) -> Action {
        let challenge = matches!(refusal.code, 401 | 438);
        let nonce = self.nonces.issue(client.remote.ip(), now.unix);
        let realm = self.config.realm.as_str();
        let Some(len) = write(out, msg::error(m.msg_type), m.transaction_id, |w| {
            w.error_code(refusal.code, refusal.reason)?;
            if let Some(attr_type) = unknown {
                w.attr(attr::UNKNOWN_ATTRIBUTES, &attr_type.to_be_bytes())?;
            }
            if challenge {
                w.attr(attr::REALM, realm.as_bytes())?.attr(attr::NONCE, &nonce)?;
            }
            Ok(())
        }) else {
            return self.dropped(DropReason::Malformed);
        };
        if !self.admit_unauthenticated(now.instant, client, m.bytes().len(), len) {
            return Action::None;
        }
        self.stats.response(refusal.code);
        Action::Reply(len)
    }
}

#[derive(Debug)]
enum Success {
    Allocated { relayed: SocketAddr, lifetime: u32, reservation: Option<[u8; 8]> },
    Lifetime(u32),
    Empty,
}

/// Writes one STUN message into `out`; `None` if it does not fit (cannot happen with a 1500-byte buffer).
fn write(
    out: &mut [u8],
    msg_type: u16,
    transaction_id: [u8; 12],
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), proto::StunError>,
) -> Option<usize> {
    let mut w = Writer::new(out, msg_type, transaction_id).ok()?;
    body(&mut w).ok()?;
    Some(w.len())
}

/// The first comprehension-required attribute this server does not understand.
fn unknown_required(m: &Message<'_>) -> Option<u16> {
    m.attributes().flatten().map(|a| a.attr_type).find(|t| *t < 0x8000 && !attr::UNDERSTOOD.contains(t))
}

/// Decodes one XOR-PEER-ADDRESS value (there may be several in CreatePermission).
fn peer_address(value: &[u8], m: &Message<'_>) -> Option<SocketAddr> {
    let mut buf = [0u8; HEADER_LEN + 24];
    if value.len() > 20 {
        return None;
    }
    let mut w = Writer::new(&mut buf, 0, m.transaction_id).ok()?;
    w.attr(attr::XOR_PEER_ADDRESS, value).ok()?;
    let len = w.len();
    Message::parse(&buf[..len]).ok()?.xor_address(attr::XOR_PEER_ADDRESS)
}

/// Zero-pads `buf` after `end` to a multiple of 4 of `len`; returns the padded end.
fn pad(buf: &mut [u8], end: usize, len: usize) -> usize {
    let padded = len.div_ceil(4) * 4 - len;
    buf[end..end + padded].fill(0);
    end + padded
}

/// Writes a Data indication (XOR-PEER-ADDRESS, DATA) around `buf[data]`, in the headroom before it; returns
/// the message's range.
fn data_indication(buf: &mut [u8], data: Range<usize>, peer: SocketAddr, seq: u64) -> Range<usize> {
    let len = data.len();
    let addr_len = if peer.is_ipv4() { 8 } else { 20 };
    let header = HEADER_LEN + 4 + addr_len + 4;
    let start = data.start - header;
    let end = pad(buf, data.end, len);
    let mut txid = [0u8; 12];
    txid[4..].copy_from_slice(&seq.to_be_bytes());
    {
        let mut w = Writer::new(&mut buf[start..start + HEADER_LEN + 4 + addr_len], msg::DATA_INDICATION, txid)
            .expect("the headroom holds the header");
        w.xor_address(attr::XOR_PEER_ADDRESS, peer).expect("the headroom holds the address");
    }
    let at = start + HEADER_LEN + 4 + addr_len;
    buf[at..at + 2].copy_from_slice(&attr::DATA.to_be_bytes());
    buf[at + 2..at + 4].copy_from_slice(&(len as u16).to_be_bytes());
    let body = (end - start - HEADER_LEN) as u16;
    buf[start + 2..start + 4].copy_from_slice(&body.to_be_bytes());
    start..end
}

#[cfg(test)]
mod tests;
