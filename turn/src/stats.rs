//! The relay's counters: plain integers owned by one worker's `Server`, summed over workers for `/metrics`.

use std::fmt::Write;

/// Why a datagram or message was not relayed or answered. Every drop increments exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Not STUN, not ChannelData, or a STUN/ChannelData message that does not parse.
    Malformed,
    /// FINGERPRINT present and wrong.
    BadFingerprint,
    /// A STUN response or an indication other than Send sent to the server.
    Unexpected,
    /// ChannelData or Send from a 5-tuple with no allocation.
    NoAllocation,
    /// ChannelData on a channel that is not bound (or has expired).
    NoChannel,
    /// Data to or from a peer without a permission.
    NoPermission,
    /// Send to a peer in a denied range.
    DeniedPeer,
    /// Datagram on a relay whose allocation has gone.
    UnknownRelay,
    /// Over the allocation's or the worker's bandwidth cap.
    Bandwidth,
    /// Unauthenticated request over the per-source rate limit.
    RateLimited,
    /// The answer to an unauthenticated request would have exceeded what the source sent (amplification).
    Amplification,
    /// The socket or connection could not take the datagram (buffer full).
    SendFailed,
    /// A TCP or TLS connection's output buffer was full.
    QueueFull,
    /// A datagram larger than a receive buffer (io_uring path; 2 KB, above any MTU).
    Oversized,
}

impl DropReason {
    pub const ALL: [DropReason; 14] = [
        DropReason::Malformed,
        DropReason::BadFingerprint,
        DropReason::Unexpected,
        DropReason::NoAllocation,
        DropReason::NoChannel,
        DropReason::NoPermission,
        DropReason::DeniedPeer,
        DropReason::UnknownRelay,
        DropReason::Bandwidth,
        DropReason::RateLimited,
        DropReason::Amplification,
        DropReason::SendFailed,
        DropReason::QueueFull,
        DropReason::Oversized,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadFingerprint => "bad_fingerprint",
            DropReason::Unexpected => "unexpected",
            DropReason::NoAllocation => "no_allocation",
            DropReason::NoChannel => "no_channel",
            DropReason::NoPermission => "no_permission",
            DropReason::DeniedPeer => "denied_peer",
            DropReason::UnknownRelay => "unknown_relay",
            DropReason::Bandwidth => "bandwidth",
            DropReason::RateLimited => "rate_limited",
            DropReason::Amplification => "amplification",
            DropReason::SendFailed => "send_failed",
            DropReason::QueueFull => "queue_full",
            DropReason::Oversized => "oversized",
        }
    }
}

/// Response codes counted by code (200 is success).
pub const CODES: [u16; 14] = [200, 400, 401, 403, 420, 437, 438, 440, 441, 442, 443, 486, 500, 508];

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub drops: [u64; DropReason::ALL.len()],
    /// Responses sent, by `CODES` index.
    pub responses: [u64; CODES.len()],
    pub bindings: u64,
    pub allocations_created: u64,
    pub allocations_ended: u64,
    pub allocations_active: u64,
    pub permissions_created: u64,
    pub channels_bound: u64,
    /// Client -> peer through the relay.
    pub to_peer_packets: u64,
    pub to_peer_bytes: u64,
    /// Peer -> client through the relay.
    pub to_client_packets: u64,
    pub to_client_bytes: u64,
    /// Peers refused by the filter, by range name.
    pub denials: Vec<(&'static str, u64)>,
    pub quota_user: u64,
    pub quota_total: u64,
    /// TCP and TLS connections accepted, and currently open.
    pub connections_accepted: u64,
    pub connections_open: u64,
    /// Datagrams relayed from one allocation to another of the same worker without the kernel (also counted in
    /// both directions of the relayed packets).
    pub hairpinned: u64,
    /// Workers running on io_uring, and on epoll (a worker counts itself once its loop starts).
    pub workers_uring: u64,
    pub workers_epoll: u64,
}

impl Stats {
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn response(&mut self, code: u16) {
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            self.responses[i] += 1;
        }
    }

    pub fn responses_with(&self, code: u16) -> u64 {
        CODES.iter().position(|c| *c == code).map_or(0, |i| self.responses[i])
    }

    pub fn denial(&mut self, name: &'static str) {
        match self.denials.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => self.denials.push((name, 1)),
        }
    }

    pub fn denied(&self, name: &str) -> u64 {
        self.denials.iter().find(|(n, _)| *n == name).map_or(0, |(_, c)| *c)
    }

    /// Adds another worker's counters to these.
    pub fn add(&mut self, other: &Stats) {
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            *a += b;
        }
        for (a, b) in self.responses.iter_mut().zip(other.responses) {
            *a += b;
        }
        for (name, count) in &other.denials {
            match self.denials.iter_mut().find(|(n, _)| n == name) {
                Some((_, c)) => *c += count,
                None => self.denials.push((name, *count)),
            }
        }
        self.bindings += other.bindings;
        self.allocations_created += other.allocations_created;
        self.allocations_ended += other.allocations_ended;
        self.allocations_active += other.allocations_active;
        self.permissions_created += other.permissions_created;
        self.channels_bound += other.channels_bound;
        self.to_peer_packets += other.to_peer_packets;
        self.to_peer_bytes += other.to_peer_bytes;
        self.to_client_packets += other.to_client_packets;
        self.to_client_bytes += other.to_client_bytes;
        self.quota_user += other.quota_user;
        self.quota_total += other.quota_total;
        self.connections_accepted += other.connections_accepted;
        self.connections_open += other.connections_open;
        self.hairpinned += other.hairpinned;
        self.workers_uring += other.workers_uring;
        self.workers_epoll += other.workers_epoll;
    }

    /// Prometheus text exposition of these counters.
    pub fn render(&self, out: &mut String) {
        let mut line = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP sluice_turn_{name} {help}\n# TYPE sluice_turn_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "sluice_turn_{name}{labels} {value}");
            }
        };
        let one = |v: u64| vec![(String::new(), v)];
        line("allocations_active", "gauge", "Allocations that exist now.", &one(self.allocations_active));
        line(
            "hairpinned_packets_total",
            "counter",
            "Datagrams relayed between two allocations of one worker without the kernel.",
            &one(self.hairpinned),
        );
        line(
            "workers",
            "gauge",
            "Relay workers running, by UDP I/O path.",
            &[("{io=\"uring\"}".to_string(), self.workers_uring), ("{io=\"mmsg\"}".to_string(), self.workers_epoll)],
        );
        line("allocations_total", "counter", "Allocations created.", &one(self.allocations_created));
        line("allocations_ended_total", "counter", "Allocations deleted or expired.", &one(self.allocations_ended));
        line("permissions_total", "counter", "Permissions installed.", &one(self.permissions_created));
        line("channels_total", "counter", "Channels bound.", &one(self.channels_bound));
        line("bindings_total", "counter", "STUN Binding requests answered.", &one(self.bindings));
        let dir = |to_peer: u64, to_client: u64| {
            vec![("{direction=\"to_peer\"}".to_string(), to_peer), ("{direction=\"to_client\"}".to_string(), to_client)]
        };
        line(
            "relayed_packets_total",
            "counter",
            "Datagrams relayed.",
            &dir(self.to_peer_packets, self.to_client_packets),
        );
        line(
            "relayed_bytes_total",
            "counter",
            "Application bytes relayed.",
            &dir(self.to_peer_bytes, self.to_client_bytes),
        );
        let responses: Vec<_> =
            CODES.iter().zip(self.responses).map(|(c, n)| (format!("{{code=\"{c}\"}}"), n)).collect();
        line("responses_total", "counter", "Responses sent, by code (200 is success).", &responses);
        let denials: Vec<_> = self.denials.iter().map(|(n, c)| (format!("{{range=\"{n}\"}}"), *c)).collect();
        line("denials_total", "counter", "Peer addresses refused (403 or dropped Send), by range.", &denials);
        let quota = vec![
            ("{quota=\"user\"}".to_string(), self.quota_user),
            ("{quota=\"total\"}".to_string(), self.quota_total),
        ];
        line("quota_hits_total", "counter", "Allocations refused 486 by a quota.", &quota);
        let drops: Vec<_> =
            DropReason::ALL.iter().map(|r| (format!("{{reason=\"{}\"}}", r.label()), self.dropped(*r))).collect();
        line("drops_total", "counter", "Datagrams or messages dropped, by reason.", &drops);
        line("connections_total", "counter", "TCP and TLS connections accepted.", &one(self.connections_accepted));
        line("connections_open", "gauge", "TCP and TLS connections open.", &one(self.connections_open));
    }
}
