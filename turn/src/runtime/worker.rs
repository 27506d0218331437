//! One relay worker: a thread that owns its share of the listeners (`SO_REUSEPORT`), the relay sockets of the
//! allocations it made, its TCP/TLS connections and its `Server`. Two I/O paths: io_uring (`ring.rs`: armed
//! multishot receives on every UDP socket, sends to peers submitted once per turn, the epoll set watched through
//! the ring) where the kernel has it, else epoll readiness (mio, edge triggered) with `recvmmsg` per ready socket
//! and a `sendto` per packet to a peer. Replies to UDP clients go in `sendmmsg` batches on both. Workers share
//! nothing but the quota counters, which only Allocate and an allocation's end touch.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use io_uring::cqueue;
use mio::event::Event;
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Registry, Token};

use super::batch::{BATCH, RecvBatch, SendBatch};
use super::conn::{Conn, ReadOutcome};
use super::hairpin::Hairpin;
use super::ring::{
    Datagram, PEER_DATA_MAX, Queued, Ring, RingRelays, TAG_CANCEL, TAG_CLIENT, TAG_EPOLL, TAG_RELAY, TAG_SEND,
};
use crate::server::{
    Action, Client, Family, Now, PEER_HEADROOM, PEER_TAILROOM, RESERVATION_LIFETIME, RelayId, Relays, Server, Transport,
};
use crate::stats::{DropReason, Stats};

pub(super) const UDP: Token = Token(0);
pub(super) const TCP: Token = Token(1);
pub(super) const TLS: Token = Token(2);
pub(super) const WAKER: Token = Token(3);
const RELAY_BASE: usize = 1 << 30;
const CONN_BASE: usize = 1 << 29;

/// `recvmmsg` calls on one socket per loop turn, so one busy socket cannot starve the others.
const BATCHES_PER_TURN: usize = 8;
/// Longest sleep in `epoll_wait`: stop requests and statistics are looked at least this often.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// How often counters are published for `/metrics`.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// Attempts at a random free port in the relay range before an Allocate gets 508.
const PORT_ATTEMPTS: usize = 64;

/// Ports reserved by EVEN-PORT with the R bit, shared by every worker: the Allocate that claims one may arrive
/// on another worker (another 5-tuple). The socket is not in any worker's epoll until it is claimed. Touched
/// only by Allocate and a once-a-second sweep.
#[derive(Debug, Default)]
pub(super) struct Reservations {
    held: Mutex<Vec<Reserved>>,
}

#[derive(Debug)]
struct Reserved {
    token: [u8; 8],
    socket: std::net::UdpSocket,
    expires: Instant,
}

/// Reservations held at once, for the whole relay.
const MAX_RESERVATIONS: usize = 1024;

impl Reservations {
    fn hold(&self, socket: std::net::UdpSocket) -> io::Result<[u8; 8]> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.len() >= MAX_RESERVATIONS {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let token = super::random_bytes::<8>();
        held.push(Reserved { token, socket, expires: Instant::now() + RESERVATION_LIFETIME });
        Ok(token)
    }

    fn take(&self, token: &[u8]) -> Option<std::net::UdpSocket> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let i = held.iter().position(|r| r.token[..] == *token && r.expires > now)?;
        Some(held.swap_remove(i).socket)
    }

    /// Closes the reservations nobody claimed in time.
    fn sweep(&self) {
        if let Ok(mut held) = self.held.try_lock() {
            let now = Instant::now();
            held.retain(|r| r.expires > now);
        }
    }
}

#[derive(Debug)]
pub(super) struct Setup {
    pub poll: Poll,
    pub server: Server,
    pub udp: Option<UdpSocket>,
    pub tcp: Option<TcpListener>,
    pub tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    pub relay_v4: IpAddr,
    pub relay_v6: Option<IpAddr>,
    pub ports: (u16, u16),
    pub max_connections: usize,
    pub stop: Arc<AtomicBool>,
    pub published: Arc<Mutex<Stats>>,
    pub reservations: Arc<Reservations>,
    pub seed: u64,
    /// Run on io_uring (the caller checked the kernel has it).
    pub uring: bool,
    /// Datagrams between two of the worker's allocations skip the kernel (`hairpin.rs`).
    pub hairpin: bool,
}

/// The relay sockets of one worker's allocations.
#[derive(Debug)]
struct RelaySockets {
    registry: Registry,
    sockets: Vec<Option<UdpSocket>>,
    /// By relay id: its relayed address.
    addrs: Vec<SocketAddr>,
    /// Relayed address to relay id, for hairpinning (`None` when it is off).
    local: Option<rustc_hash::FxHashMap<SocketAddr, RelayId>>,
    hairpin: Hairpin,
    free: Vec<RelayId>,
    v4: IpAddr,
    v6: Option<IpAddr>,
    ports: (u16, u16),
    rng: u64,
    reservations: Arc<Reservations>,
    /// On the io_uring path: the sockets' receives and the queued sends.
    ring: Option<RingRelays>,
}

impl RelaySockets {
    fn random_port(&mut self, even: bool) -> u16 {
        // xorshift64: port choice needs to be unpredictable to off-path guessers only loosely (RFC 8656
        // section 7.2 asks for randomised ports); the seed comes from the OS.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let span = u64::from(self.ports.1 - self.ports.0) + 1;
        let port = self.ports.0 + (self.rng % span) as u16;
        if even { port & !1 } else { port }
    }

    fn send(&mut self, relay: RelayId, bytes: &[u8], peer: SocketAddr) -> bool {
        let Some(socket) = self.sockets.get(relay as usize).and_then(Option::as_ref) else { return false };
        if self.local.as_ref().is_some_and(|local| local.contains_key(&peer))
            && self.hairpin.push(peer, self.addrs[relay as usize], bytes)
        {
            return true;
        }
        match self.ring.as_mut().map(|r| r.sends.queue(socket.as_raw_fd(), bytes, peer)) {
            Some(Queued::Yes) => true,
            Some(Queued::Full) => false,
            Some(Queued::TooLarge) | None => socket.send_to(bytes, peer).is_ok(),
        }
    }
}

impl RelaySockets {
    /// Registers a bound socket as a relay.
    fn adopt(&mut self, std_socket: std::net::UdpSocket) -> io::Result<(RelayId, SocketAddr)> {
        std_socket.set_nonblocking(true)?;
        let mut socket = UdpSocket::from_std(std_socket);
        let local = socket.local_addr()?;
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.sockets.push(None);
                self.addrs.push(local);
                (self.sockets.len() - 1) as RelayId
            }
        };
        match &mut self.ring {
            Some(ring) => ring.opened(id),
            None => {
                if let Err(e) = self.registry.register(&mut socket, Token(RELAY_BASE + id as usize), Interest::READABLE)
                {
                    self.free.push(id);
                    return Err(e);
                }
            }
        }
        self.sockets[id as usize] = Some(socket);
        self.addrs[id as usize] = local;
        if let Some(map) = &mut self.local {
            map.insert(local, id);
        }
        Ok((id, local))
    }
}

impl Relays for RelaySockets {
    fn open(&mut self, family: Family, even_port: bool) -> io::Result<(RelayId, SocketAddr)> {
        let ip = match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6.ok_or(io::ErrorKind::AddrNotAvailable)?,
        };
        let mut last = io::Error::from(io::ErrorKind::AddrInUse);
        for _ in 0..PORT_ATTEMPTS {
            let port = self.random_port(even_port);
            if port < self.ports.0 {
                continue;
            }
            let std_socket = match std::net::UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    last = e;
                    continue;
                }
                Err(e) => return Err(e),
            };
            return self.adopt(std_socket);
        }
        Err(last)
    }

    fn open_reserving(&mut self, family: Family) -> io::Result<((RelayId, SocketAddr), [u8; 8])> {
        let ip = match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6.ok_or(io::ErrorKind::AddrNotAvailable)?,
        };
        for _ in 0..PORT_ATTEMPTS {
            let even = self.random_port(true);
            if even < self.ports.0 || even >= self.ports.1 {
                continue;
            }
            let Ok(first) = std::net::UdpSocket::bind(SocketAddr::new(ip, even)) else { continue };
            let Ok(second) = std::net::UdpSocket::bind(SocketAddr::new(ip, even + 1)) else { continue };
            let token = self.reservations.hold(second)?;
            return Ok((self.adopt(first)?, token));
        }
        Err(io::ErrorKind::AddrInUse.into())
    }

    fn take_reserved(&mut self, token: &[u8]) -> Option<io::Result<(RelayId, SocketAddr)>> {
        let socket = self.reservations.take(token)?;
        Some(self.adopt(socket))
    }

    fn close(&mut self, relay: RelayId) {
        let Some(mut socket) = self.sockets.get_mut(relay as usize).and_then(Option::take) else { return };
        if let Some(map) = &mut self.local {
            map.remove(&self.addrs[relay as usize]);
        }
        match &mut self.ring {
            // The id is free once the socket's receive has ended (`RingRelays::ended`, `release_unarmed`).
            Some(ring) => ring.closed(relay, socket),
            None => {
                let _ = self.registry.deregister(&mut socket);
                self.free.push(relay);
            }
        }
    }
}

pub(super) struct Worker {
    poll: Poll,
    server: Server,
    udp: Option<(UdpSocket, SocketAddr)>,
    tcp: Option<TcpListener>,
    tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    relays: RelaySockets,
    conns: Vec<Option<Conn>>,
    free_conns: Vec<usize>,
    max_connections: usize,
    client_rx: RecvBatch,
    peer_rx: RecvBatch,
    tx: SendBatch,
    /// Scratch for replies to stream clients.
    reply: Box<[u8; 1500]>,
    stop: Arc<AtomicBool>,
    published: Arc<Mutex<Stats>>,
}

impl Worker {
    pub(super) fn new(setup: Setup) -> io::Result<Worker> {
        let Setup {
            poll,
            server,
            udp,
            tcp,
            tls,
            relay_v4,
            relay_v6,
            ports,
            max_connections,
            stop,
            published,
            reservations,
            seed,
            uring,
            hairpin,
        } = setup;
        let registry = poll.registry().try_clone()?;
        let udp = match udp {
            Some(socket) => {
                let local = socket.local_addr()?;
                Some((socket, local))
            }
            None => None,
        };
        let mut tcp = tcp;
        if let Some(listener) = &mut tcp {
            poll.registry().register(listener, TCP, Interest::READABLE)?;
        }
        let mut tls = tls;
        if let Some((listener, _)) = &mut tls {
            poll.registry().register(listener, TLS, Interest::READABLE)?;
        }
        Ok(Worker {
            poll,
            server,
            udp,
            tcp,
            tls,
            relays: RelaySockets {
                registry,
                sockets: Vec::new(),
                addrs: Vec::new(),
                local: hairpin.then(rustc_hash::FxHashMap::default),
                hairpin: Hairpin::default(),
                free: Vec::new(),
                v4: relay_v4,
                v6: relay_v6,
                ports,
                rng: seed | 1,
                reservations,
                ring: uring.then(RingRelays::default),
            },
            conns: Vec::new(),
            free_conns: Vec::new(),
            max_connections,
            client_rx: RecvBatch::new(0, 0),
            peer_rx: RecvBatch::new(PEER_HEADROOM, PEER_TAILROOM),
            tx: SendBatch::default(),
            reply: Box::new([0; 1500]),
            stop,
            published,
        })
    }

    pub(super) fn run(mut self) {
        if self.relays.ring.is_some() {
            let listener = self.udp.as_ref().map(|(s, _)| s.as_raw_fd());
            match Ring::new(self.poll.as_raw_fd(), listener) {
                Ok(ring) => return self.run_ring(ring),
                Err(e) => {
                    tracing::warn!(error = %e, "TURN worker cannot set up io_uring; it uses epoll");
                    self.relays.ring = None;
                }
            }
        }
        self.run_epoll();
    }

    fn run_epoll(mut self) {
        if let Some((socket, _)) = &mut self.udp
            && let Err(e) = self.poll.registry().register(socket, UDP, Interest::READABLE)
        {
            tracing::error!(error = %e, "TURN worker cannot watch its UDP listener; it stops");
            return;
        }
        self.server.stats.workers_epoll = 1;
        let mut events = Events::with_capacity(1024);
        let mut ready_relays: Vec<RelayId> = Vec::with_capacity(1024);
        let mut still_ready: Vec<RelayId> = Vec::with_capacity(1024);
        // Whether a relay is in `ready_relays` already: a busy socket's new readiness must not list it twice.
        let mut listed: Vec<bool> = Vec::new();
        let mut ready_conns: Vec<usize> = Vec::with_capacity(256);
        let mut udp_ready = false;
        let mut next_publish = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let busy = udp_ready || !ready_relays.is_empty();
            let wait = if busy {
                Duration::ZERO
            } else {
                self.server.poll_timeout().saturating_duration_since(now).min(MAX_WAIT)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "TURN worker cannot wait for events; it stops");
                break;
            }
            for event in events.iter() {
                match event.token() {
                    UDP => udp_ready = true,
                    Token(t) if t >= RELAY_BASE => {
                        let relay = t - RELAY_BASE;
                        if listed.len() <= relay {
                            listed.resize(relay + 1, false);
                        }
                        if !std::mem::replace(&mut listed[relay], true) {
                            ready_relays.push(relay as RelayId);
                        }
                    }
                    _ => self.stream_event(event, &mut ready_conns),
                }
            }
            let now = Now::system();
            if udp_ready {
                udp_ready = self.drain_clients(now);
            }
            still_ready.clear();
            for &relay in &ready_relays {
                if self.drain_relay(now.instant, relay) {
                    still_ready.push(relay);
                } else {
                    listed[relay as usize] = false;
                }
            }
            std::mem::swap(&mut ready_relays, &mut still_ready);
            for id in ready_conns.drain(..) {
                self.read_conn(now, id);
            }
            self.deliver_hairpinned(now.instant);
            self.end_turn(now.instant, &mut next_publish);
        }
        self.server.close_all(&mut self.relays);
        self.publish();
    }

    /// The io_uring loop: arm, submit and wait in one `enter`, then handle every completion.
    fn run_ring(mut self, mut ring: Ring) {
        self.server.stats.workers_uring = 1;
        let mut events = Events::with_capacity(1024);
        let mut ready_conns: Vec<usize> = Vec::with_capacity(256);
        let mut completions = [(0u64, 0i32, 0u32); 64];
        let mut next_publish = Instant::now();
        // Looked at once first: the listeners may have connections waiting already.
        let mut epoll_ready = true;
        while !self.stop.load(Ordering::Relaxed) {
            if std::mem::take(&mut epoll_ready) {
                match self.poll.poll(&mut events, Some(Duration::ZERO)) {
                    // The ring's watch fires on new readiness only: events left behind are read next turn.
                    Ok(()) => epoll_ready = events.iter().count() == events.capacity(),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => epoll_ready = true,
                    Err(e) => {
                        tracing::error!(error = %e, "TURN worker cannot read its events; it stops");
                        break;
                    }
                }
                for event in events.iter() {
                    self.stream_event(event, &mut ready_conns);
                }
                let now = Now::system();
                for id in ready_conns.drain(..) {
                    self.read_conn(now, id);
                }
            }
            let wait = self.server.poll_timeout().saturating_duration_since(Instant::now()).min(MAX_WAIT);
            if let Err(e) = self.submit(&mut ring, wait) {
                tracing::error!(error = %e, "TURN worker's io_uring failed; it stops");
                break;
            }
            let now = Now::system();
            loop {
                let n = ring.completions(&mut completions);
                if n == 0 {
                    break;
                }
                for &(tag, result, flags) in &completions[..n] {
                    epoll_ready |= self.completion(&mut ring, now, tag, result, flags);
                }
                let sends = &self.relays.ring.as_ref().expect("ring mode").sends;
                if sends.room() < completions.len() {
                    // Buffers given back first: receives that ended for want of them are armed again here.
                    ring.bufs.publish();
                    if let Err(e) = self.submit(&mut ring, Duration::ZERO) {
                        tracing::warn!(error = %e, "TURN worker could not submit its sends");
                    }
                }
            }
            ring.bufs.publish();
            self.deliver_hairpinned(now.instant);
            self.end_turn(now.instant, &mut next_publish);
        }
        self.server.close_all(&mut self.relays);
        self.publish();
    }

    /// Arms what needs it, queues the sends and enters the ring, waiting up to `wait` for a completion.
    fn submit(&mut self, ring: &mut Ring, wait: Duration) -> io::Result<()> {
        let RelaySockets { sockets, ring: relays, free, .. } = &mut self.relays;
        let relays = relays.as_mut().expect("ring mode");
        ring.arm(relays, |id| sockets.get(id as usize).and_then(Option::as_ref).map(AsRawFd::as_raw_fd))?;
        ring.push_sends(&mut relays.sends)?;
        ring.enter(wait)?;
        relays.release_unarmed(free);
        Ok(())
    }

    /// One completion; true if the epoll set has events.
    fn completion(&mut self, ring: &mut Ring, now: Now, tag: u64, result: i32, flags: u32) -> bool {
        let more = cqueue::more(flags);
        match tag {
            TAG_EPOLL => {
                if !more {
                    ring.ended(tag);
                }
                return true;
            }
            TAG_CANCEL => {}
            TAG_CLIENT => {
                if !more {
                    ring.ended(tag);
                }
                self.ring_client(ring, now, result, flags);
            }
            TAG_RELAY..TAG_SEND => {
                let relay = (tag - TAG_RELAY) as RelayId;
                self.ring_peer(ring, now.instant, relay, result, flags);
                if !more && let Some(relays) = self.relays.ring.as_mut() {
                    relays.ended(relay);
                }
            }
            TAG_SEND.. => {
                if let Some(relays) = self.relays.ring.as_mut()
                    && !relays.sends.done(tag, result)
                {
                    self.server.stats.drop(DropReason::SendFailed);
                }
            }
            _ => {}
        }
        false
    }

    /// A datagram from a client on the UDP listener, in a ring buffer.
    fn ring_client(&mut self, ring: &mut Ring, now: Now, result: i32, flags: u32) {
        let Some(received) = self.received(ring, result, flags) else { return };
        if let Some((socket, local)) = &self.udp {
            let (fd, local) = (socket.as_raw_fd(), *local);
            let input = &ring.bufs.buffer(received.bid)[received.data];
            let client = Client { transport: Transport::Udp, remote: received.source, local, conn: 0 };
            client_datagram(&mut self.server, &mut self.tx, &mut self.relays, fd, now, &client, input);
        }
        ring.bufs.give(received.bid);
    }

    /// A datagram from a peer on a relay socket, in a ring buffer (whose address part before the data takes the
    /// header for the client).
    fn ring_peer(&mut self, ring: &mut Ring, now: Instant, relay: RelayId, result: i32, flags: u32) {
        let Some(received) = self.received(ring, result, flags) else { return };
        if received.data.len() > PEER_DATA_MAX {
            self.server.stats.drop(DropReason::Oversized);
            ring.bufs.give(received.bid);
            return;
        }
        let buf = ring.bufs.buffer_mut(received.bid);
        if let Action::ToClient { client, range } =
            self.server.handle_peer(now, relay, received.source, buf, received.data)
        {
            deliver(&self.udp, &mut self.tx, &mut self.conns, &mut self.server, &client, &buf[range]);
        }
        ring.bufs.give(received.bid);
    }

    /// The datagram of a receive completion, or `None` with its buffer (if any) given back.
    fn received(&mut self, ring: &mut Ring, result: i32, flags: u32) -> Option<super::ring::Received> {
        match ring.datagram(result, flags) {
            Datagram::Received(received) => Some(received),
            Datagram::Oversized(bid) => {
                self.server.stats.drop(DropReason::Oversized);
                ring.bufs.give(bid);
                None
            }
            Datagram::Nothing(bid) => {
                if let Some(bid) = bid {
                    ring.bufs.give(bid);
                }
                None
            }
        }
    }

    /// An event of the TCP or TLS listeners, a connection or the waker.
    fn stream_event(&mut self, event: &Event, ready_conns: &mut Vec<usize>) {
        match event.token() {
            TCP => self.accept(false),
            TLS => self.accept(true),
            Token(t) if (CONN_BASE..RELAY_BASE).contains(&t) => {
                let id = t - CONN_BASE;
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    ready_conns.push(id);
                } else if event.is_writable() {
                    self.flush_conn(id);
                }
            }
            _ => {}
        }
    }

    /// Datagrams one of this worker's allocations sent to another's relayed address, delivered to the second as
    /// if they had arrived on its socket.
    fn deliver_hairpinned(&mut self, now: Instant) {
        while let Some(waiting) = self.relays.hairpin.front() {
            let to = self.relays.local.as_ref().and_then(|local| local.get(&waiting.to)).copied();
            let (buf, data) = self.relays.hairpin.slot(&waiting);
            match to {
                // Closed since: the kernel would have had no socket for it either.
                None => self.server.stats.drop(DropReason::UnknownRelay),
                Some(to) => {
                    if let Action::ToClient { client, range } =
                        self.server.handle_peer(now, to, waiting.from, buf, data)
                    {
                        self.server.stats.hairpinned += 1;
                        deliver(&self.udp, &mut self.tx, &mut self.conns, &mut self.server, &client, &buf[range]);
                    }
                }
            }
            self.relays.hairpin.pop();
        }
    }

    /// What every loop turn ends with: replies out, timers, statistics.
    fn end_turn(&mut self, now: Instant, next_publish: &mut Instant) {
        self.flush_udp();
        self.flush_all_conns();
        if now >= self.server.poll_timeout() {
            self.relays.reservations.sweep();
        }
        self.server.handle_timeout(now, &mut self.relays);
        if now >= *next_publish {
            self.publish();
            *next_publish = now + PUBLISH_INTERVAL;
        }
    }

    fn publish(&mut self) {
        if let Ok(mut shared) = self.published.try_lock() {
            shared.clone_from(&self.server.stats);
        }
    }

    /// Datagrams from clients on the UDP listener; true if some may still be waiting.
    fn drain_clients(&mut self, now: Now) -> bool {
        let Some((socket, local)) = &self.udp else { return false };
        let (fd, local) = (socket.as_raw_fd(), *local);
        for _ in 0..BATCHES_PER_TURN {
            let n = match self.client_rx.recv(fd) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "TURN UDP receive failed");
                    return false;
                }
            };
            for i in 0..n {
                let Some((remote, buf, range)) = self.client_rx.datagram(i) else { continue };
                let client = Client { transport: Transport::Udp, remote, local, conn: 0 };
                client_datagram(&mut self.server, &mut self.tx, &mut self.relays, fd, now, &client, &buf[range]);
            }
            if n < BATCH {
                return false;
            }
        }
        true
    }

    /// Datagrams from peers on one relay socket; true if some may still be waiting.
    fn drain_relay(&mut self, now: Instant, relay: RelayId) -> bool {
        let Some(fd) = self.relays.sockets.get(relay as usize).and_then(Option::as_ref).map(AsRawFd::as_raw_fd) else {
            return false;
        };
        for _ in 0..BATCHES_PER_TURN {
            let n = match self.peer_rx.recv(fd) {
                Ok(n) => n,
                Err(_) => return false,
            };
            for i in 0..n {
                let Some((peer, buf, range)) = self.peer_rx.datagram(i) else { continue };
                let Action::ToClient { client, range } = self.server.handle_peer(now, relay, peer, &mut buf[..], range)
                else {
                    continue;
                };
                deliver(&self.udp, &mut self.tx, &mut self.conns, &mut self.server, &client, &buf[range]);
            }
            if n < BATCH {
                return false;
            }
        }
        true
    }

    fn flush_udp(&mut self) {
        if let Some((socket, _)) = &self.udp {
            let dropped = self.tx.flush(socket.as_raw_fd());
            count_failed(&mut self.server, dropped);
        }
    }

    fn accept(&mut self, tls: bool) {
        loop {
            let listener = if tls { self.tls.as_ref().map(|(l, _)| l) } else { self.tcp.as_ref() };
            let Some(listener) = listener else { return };
            let (mut stream, remote) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "TURN accept failed");
                    return;
                }
            };
            let open = self.conns.len() - self.free_conns.len();
            if open >= self.max_connections {
                continue;
            }
            let Ok(local) = stream.local_addr() else { continue };
            let id = self.free_conns.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if self
                .poll
                .registry()
                .register(&mut stream, Token(CONN_BASE + id), Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                self.free_conns.push(id);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let transport = if tls { Transport::Tls } else { Transport::Tcp };
            let client = Client { transport, remote, local, conn: id as u32 };
            let config = if tls { self.tls.as_ref().map(|(_, c)| Arc::clone(c)) } else { None };
            match Conn::new(stream, client, config) {
                Ok(conn) => {
                    self.conns[id] = Some(conn);
                    self.server.stats.connections_accepted += 1;
                    self.server.stats.connections_open += 1;
                }
                Err(_) => self.free_conns.push(id),
            }
        }
    }

    fn read_conn(&mut self, now: Now, id: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) else { return };
            let outcome = conn.read();
            let mut pos = 0;
            let mut broken = outcome == ReadOutcome::Closed;
            loop {
                let Some(conn) = self.conns[id].as_ref() else { return };
                let frame = match conn.next_frame(pos) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(()) => {
                        self.server.stats.drop(DropReason::Malformed);
                        broken = true;
                        break;
                    }
                };
                pos = frame.end;
                let client = conn.client;
                let input = conn.frame(frame);
                match self.server.handle_client(now, &client, input, &mut self.reply[..], &mut self.relays) {
                    Action::Reply(len) => {
                        let conn = self.conns[id].as_mut().expect("checked above");
                        if !conn.queue(&self.reply[..len]) {
                            self.server.stats.drop(DropReason::QueueFull);
                        }
                    }
                    Action::ToPeer { relay, peer, range } => {
                        if !self.relays.send(relay, &input[range], peer) {
                            self.server.stats.drop(DropReason::SendFailed);
                        }
                    }
                    Action::ToClient { .. } | Action::None => {}
                }
            }
            if broken {
                self.close_conn(id);
                return;
            }
            let conn = self.conns[id].as_mut().expect("not closed above");
            conn.consume(pos);
            if outcome != ReadOutcome::Full {
                return;
            }
        }
    }

    fn flush_conn(&mut self, id: usize) {
        let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) else { return };
        if conn.flush().is_err() {
            self.close_conn(id);
        }
    }

    fn flush_all_conns(&mut self) {
        for id in 0..self.conns.len() {
            if self.conns[id].as_ref().is_some_and(Conn::has_output) {
                self.flush_conn(id);
            }
        }
    }

    fn close_conn(&mut self, id: usize) {
        let Some(mut conn) = self.conns.get_mut(id).and_then(Option::take) else { return };
        let _ = conn.flush();
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.server.client_gone(&conn.client, &mut self.relays);
        self.server.stats.connections_open -= 1;
        self.free_conns.push(id);
    }
}

/// One datagram from a UDP client: its reply queued on the listener's batch, or its data sent to a peer.
fn client_datagram(
    server: &mut Server,
    tx: &mut SendBatch,
    relays: &mut RelaySockets,
    fd: std::os::fd::RawFd,
    now: Now,
    client: &Client,
    input: &[u8],
) {
    if tx.is_full() {
        let dropped = tx.flush(fd);
        count_failed(server, dropped);
    }
    match server.handle_client(now, client, input, tx.slot(), relays) {
        Action::Reply(len) => tx.commit(len, client.remote),
        Action::ToPeer { relay, peer, range } => {
            if !relays.send(relay, &input[range], peer) {
                server.stats.drop(DropReason::SendFailed);
            }
        }
        Action::ToClient { .. } | Action::None => {}
    }
}

/// Queues `bytes` for a client: into the UDP send batch, or onto its connection.
fn deliver(
    udp: &Option<(UdpSocket, SocketAddr)>,
    tx: &mut SendBatch,
    conns: &mut [Option<Conn>],
    server: &mut Server,
    client: &Client,
    bytes: &[u8],
) {
    match client.transport {
        Transport::Udp => {
            let Some((socket, _)) = udp else { return };
            if tx.is_full() {
                let dropped = tx.flush(socket.as_raw_fd());
                count_failed(server, dropped);
            }
            tx.push(bytes, client.remote);
        }
        Transport::Tcp | Transport::Tls => {
            let queued = conns.get_mut(client.conn as usize).and_then(Option::as_mut).is_some_and(|c| c.queue(bytes));
            if !queued {
                server.stats.drop(DropReason::QueueFull);
            }
        }
    }
}

fn count_failed(server: &mut Server, dropped: usize) {
    for _ in 0..dropped {
        server.stats.drop(DropReason::SendFailed);
    }
}
