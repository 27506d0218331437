//! One worker: a pinned thread running the loop "commands, receive, relays in, timers, handshakes, send",
//! with a bound on each step so that no step starves the others.

use std::collections::VecDeque;
use std::io;
use std::net::UdpSocket;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use rtrb::{Consumer, Producer, RingBuffer};

use super::command::Command;
use super::io::{DatagramIo, IoKind, MmsgIo, RecvBatch, UringIo, slot_len};
use super::stats::{IoCounters, LatencyHistogram, WorkerSnapshot, thread_cpu_time};
use super::wake::Waker;
use super::{EventQueue, RelayRef, RuntimeConfig};
use crate::core::{Core, Event, Transmits};

/// Commands applied per loop turn: a burst of joins cannot hold up forwarding for longer than this many.
const COMMANDS_PER_TURN: usize = 64;
/// DTLS handshake steps per loop turn (each is a few ECDSA/ECDH operations, up to about a millisecond): a join
/// storm delays packets by at most this many steps per turn.
const HANDSHAKES_PER_TURN: usize = 4;
/// Relayed packets taken from each other worker per turn, so one busy neighbour cannot starve the socket.
const RELAYS_PER_TURN: usize = 256;
/// Receive slots per turn (datagrams, or GRO buffers of several).
const RECV_SLOTS: usize = 32;
/// The longest an idle worker sleeps; it also publishes its statistics at least this often.
const IDLE_WAIT: Duration = Duration::from_millis(50);
const PUBLISH_INTERVAL: Duration = Duration::from_millis(50);
/// Single-port mode: connected sockets one participant may have (one per candidate pair its browser tries).
const FLOWS_PER_PARTICIPANT: usize = 4;
/// Events held back while the control plane's queue is full; beyond this they are counted and dropped.
const PENDING_EVENTS_MAX: usize = 65_536;

/// What the control side and the other workers share with one worker. Only the worker writes the snapshot and
/// only between batches; the flags are touched once per loop turn, never per packet.
pub(super) struct Shared {
    pub(super) index: usize,
    pub(super) commands: ArrayQueue<Command>,
    pub(super) events: EventQueue,
    pub(super) events_waker: Arc<Waker>,
    pub(super) waker: Waker,
    /// Set while the worker waits in its I/O call: a worker that relays to it then wakes it.
    pub(super) sleeping: AtomicBool,
    pub(super) stop: AtomicBool,
    alive: AtomicBool,
    pub(super) participants: AtomicUsize,
    failure: Mutex<Option<String>>,
    snapshot: Mutex<WorkerSnapshot>,
}

impl Shared {
    pub(super) fn new(index: usize, config: &RuntimeConfig, events_waker: Arc<Waker>) -> io::Result<Shared> {
        Ok(Shared {
            index,
            commands: ArrayQueue::new(config.command_queue_capacity.max(1)),
            events: ArrayQueue::new(config.event_queue_capacity.max(1)),
            events_waker,
            waker: Waker::new()?,
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            participants: AtomicUsize::new(0),
            failure: Mutex::new(None),
            snapshot: Mutex::new(WorkerSnapshot { worker: index, alive: true, ..WorkerSnapshot::default() }),
        })
    }

    pub(super) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// The reason the worker failed, once.
    pub(super) fn take_failure(&self) -> Option<String> {
        self.failure.lock().ok()?.take()
    }

    pub(super) fn snapshot(&self) -> WorkerSnapshot {
        let mut s = self.snapshot.lock().map(|s| s.clone()).unwrap_or_default();
        s.worker = self.index;
        s.alive = self.is_alive();
        s
    }
}

/// The rings between every ordered pair of workers.
pub(super) struct Rings {
    /// `pairs[from][to]`.
    pairs: Vec<Vec<Option<RingPair>>>,
}

type RingPair = (Producer<RelayRef>, Consumer<RelayRef>);

pub(super) struct WorkerRings {
    /// Indexed by the receiving worker; `None` for itself.
    outbound: Vec<Option<Producer<RelayRef>>>,
    inbound: Vec<Consumer<RelayRef>>,
}

impl Rings {
    pub(super) fn new(n: usize, capacity: usize) -> Rings {
        let pairs = (0..n)
            .map(|from| (0..n).map(|to| (from != to).then(|| RingBuffer::new(capacity.max(1)))).collect())
            .collect();
        Rings { pairs }
    }

    /// Worker `i`'s producers (to every other worker) and consumers (from every other worker).
    pub(super) fn take(&mut self, i: usize) -> WorkerRings {
        let n = self.pairs.len();
        let mut outbound = Vec::with_capacity(n);
        let mut inbound = Vec::with_capacity(n);
        for other in 0..n {
            // Each pair is taken twice: its producer by `from`, its consumer by `to`.
            let producer = self.pairs[i][other].as_mut().map(|(p, _)| std::mem::replace(p, RingBuffer::new(1).0));
            outbound.push(producer);
            if let Some((_, c)) = self.pairs[other][i].as_mut() {
                inbound.push(std::mem::replace(c, RingBuffer::new(1).1));
            }
        }
        WorkerRings { outbound, inbound }
    }
}

pub(super) struct Setup {
    pub(super) cpu: Option<usize>,
    pub(super) io: IoKind,
    /// Taken by the I/O path when the worker starts.
    pub(super) socket: Option<UdpSocket>,
    pub(super) core: Core,
    pub(super) config: RuntimeConfig,
    pub(super) shared: Arc<Shared>,
    pub(super) peers: Vec<Arc<Shared>>,
    pub(super) rings: WorkerRings,
    /// Single-port mode's ufrag -> worker table.
    pub(super) directory: Option<Arc<super::Directory>>,
}

/// The worker thread's body: the loop, with a panic or an I/O failure turned into a reported failure.
pub(super) fn run(setup: Setup) {
    let shared = Arc::clone(&setup.shared);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| run_loop(setup)));
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("I/O failed: {e}")),
        Err(panic) => Some(match panic.downcast_ref::<&str>() {
            Some(s) => format!("panicked: {s}"),
            None => match panic.downcast_ref::<String>() {
                Some(s) => format!("panicked: {s}"),
                None => "panicked".to_string(),
            },
        }),
    };
    shared.alive.store(false, Ordering::Release);
    if let Ok(mut s) = shared.snapshot.lock() {
        s.alive = false;
    }
    // Queued commands are dropped, so their callers see the worker gone instead of waiting.
    while shared.commands.pop().is_some() {}
    if let Some(failure) = failure {
        if let Ok(mut f) = shared.failure.lock() {
            *f = Some(failure);
        }
        shared.events_waker.wake();
    }
}

fn run_loop(mut setup: Setup) -> io::Result<()> {
    if let Some(cpu) = setup.cpu {
        // Best effort: in a container the CPU may not be ours to pin to; the worker runs anyway.
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }
    // Room for a whole fan-out of one packet twice over: a batch is sent before it can overflow.
    let capacity = setup.config.core.subscribers_per_track_max.max(256) * 2;
    let waker = setup.shared.waker.fd();
    let (gso, gro) = (setup.config.gso, setup.config.gro);
    // The I/O path owns the socket; the setup keeps the rest.
    let socket = setup.socket.take().expect("a worker's socket is set up once");
    let local = socket.local_addr()?;
    match setup.io {
        IoKind::Mmsg => Worker::new(setup, MmsgIo::new(socket, waker, gso, gro, capacity)?, capacity, local).run(),
        IoKind::Uring => Worker::new(setup, UringIo::new(socket, waker, gso, gro, capacity)?, capacity, local).run(),
    }
}

struct Worker<I> {
    core: Core,
    io: I,
    out: Transmits,
    batch: RecvBatch,
    /// Send the batch once it holds this many datagrams, before a fan-out could overflow it.
    flush_at: usize,
    shared: Arc<Shared>,
    peers: Vec<Arc<Shared>>,
    outbound: Vec<Option<Producer<RelayRef>>>,
    inbound: Vec<Consumer<RelayRef>>,
    stats: IoCounters,
    latency: LatencyHistogram,
    /// When the oldest packet whose copies are in `out` arrived.
    oldest: Option<Instant>,
    pending_events: VecDeque<Event>,
    events_dropped: u64,
    next_publish: Instant,
    /// Single-port mode: the routing table, the shared local address, and the flows this worker took over.
    directory: Option<Arc<super::Directory>>,
    local: std::net::SocketAddr,
    flows: Vec<Flow>,
    next_flow: u32,
    config: RuntimeConfig,
}

/// A browser's flow this worker receives on its own connected socket (single-port mode).
struct Flow {
    id: u32,
    source: std::net::SocketAddr,
    ufrag: Box<str>,
}

impl<I: DatagramIo> Worker<I> {
    fn new(setup: Setup, io: I, capacity: usize, local: std::net::SocketAddr) -> Worker<I> {
        let gro = setup.config.gro;
        let mut core = setup.core;
        let now = Instant::now();
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        core.set_wallclock(now, since_epoch);
        Worker {
            core,
            io,
            out: Transmits::with_capacity(capacity),
            batch: RecvBatch::new(RECV_SLOTS, slot_len(gro)),
            flush_at: capacity / 2,
            shared: setup.shared,
            peers: setup.peers,
            outbound: setup.rings.outbound,
            inbound: setup.rings.inbound,
            stats: IoCounters::default(),
            latency: LatencyHistogram::default(),
            oldest: None,
            pending_events: VecDeque::with_capacity(1024),
            events_dropped: 0,
            next_publish: now,
            directory: setup.directory,
            local,
            flows: Vec::new(),
            next_flow: 0,
            config: setup.config,
        }
    }

    fn run(mut self) -> io::Result<()> {
        loop {
            self.stats.loop_turns += 1;
            let now = Instant::now();
            if self.shared.stop.load(Ordering::Acquire) {
                self.flush();
                self.publish();
                return Ok(());
            }
            self.run_commands(now);
            let mut timeout = self.wait_time(now);
            if !timeout.is_zero() {
                // Announce the sleep, then look again: a relay pushed before the announcement is seen here, one
                // pushed after it comes with a wake-up.
                self.shared.sleeping.store(true, Ordering::SeqCst);
                if self.has_queued_work() {
                    timeout = Duration::ZERO;
                }
            }
            self.batch.clear();
            let received = self.io.recv(&mut self.batch, timeout, &mut self.stats);
            self.shared.sleeping.store(false, Ordering::Relaxed);
            received?;
            let now = Instant::now();
            self.handle_batch(now);
            self.handle_relays(now);
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now, &mut self.out);
            }
            if self.core.has_handshake_work() {
                self.core.handle_handshakes(now, HANDSHAKES_PER_TURN, &mut self.out);
            }
            self.flush();
            self.forward_events();
            if now >= self.next_publish {
                self.publish();
                self.next_publish = now + PUBLISH_INTERVAL;
            }
        }
    }

    fn run_commands(&mut self, now: Instant) {
        for _ in 0..COMMANDS_PER_TURN {
            let Some(command) = self.shared.commands.pop() else { break };
            match command {
                Command::AdoptFlow { source, ufrag, mut datagram } => {
                    self.adopt_flow(source, ufrag);
                    self.core.handle_receive(now, source, &mut datagram, &mut self.out);
                }
                Command::RemoveParticipant { participant, .. } => {
                    if let Some(ufrag) = self.core.participant_ufrag(participant) {
                        let ufrag: Box<str> = ufrag.into();
                        self.drop_flows(&ufrag);
                    }
                    command.apply(&mut self.core, now, &mut self.out);
                }
                command => command.apply(&mut self.core, now, &mut self.out),
            }
        }
        self.shared.participants.store(self.core.participant_count(), Ordering::Relaxed);
    }

    /// Opens a socket connected to `source` on the shared address, so the kernel hands this worker the flow's
    /// datagrams from now on. Bounded per participant and in all.
    fn adopt_flow(&mut self, source: std::net::SocketAddr, ufrag: Box<str>) {
        let known = self.flows.iter().any(|f| f.source == source);
        let of_participant = self.flows.iter().filter(|f| f.ufrag == ufrag).count();
        let max = self.config.core.participants_max * FLOWS_PER_PARTICIPANT;
        if known || of_participant >= FLOWS_PER_PARTICIPANT || self.flows.len() >= max {
            return;
        }
        let id = self.next_flow;
        self.next_flow = self.next_flow.wrapping_add(1);
        let adopted = super::io::bind_flow(self.local, source, &self.config).and_then(|s| self.io.add_flow(id, s));
        match adopted {
            Ok(()) => {
                self.flows.push(Flow { id, source, ufrag });
                self.stats.flows_adopted += 1;
            }
            Err(_) => self.stats.flows_failed += 1,
        }
    }

    fn drop_flows(&mut self, ufrag: &str) {
        let io = &mut self.io;
        self.flows.retain(|f| {
            let keep = &*f.ufrag != ufrag;
            if !keep {
                io.remove_flow(f.id);
            }
            keep
        });
    }

    /// Single-port mode: an ICE check whose ufrag belongs to another worker goes there (with the flow);
    /// returns whether the datagram was handed on.
    fn route_elsewhere(&mut self, source: std::net::SocketAddr, datagram: &[u8]) -> bool {
        let Some(directory) = &self.directory else { return false };
        let Some(ufrag) = check_ufrag(datagram) else { return false };
        if self.core.knows_ufrag(ufrag) {
            return false;
        }
        let Some(owner) = directory.owner(ufrag).filter(|w| *w != self.shared.index) else { return false };
        let Some(peer) = self.peers.get(owner) else { return false };
        let command = Command::AdoptFlow { source, ufrag: ufrag.into(), datagram: datagram.to_vec() };
        if peer.commands.push(command).is_ok() {
            peer.waker.wake();
            self.stats.flows_routed += 1;
        }
        // Not pushed: the queue is full; the browser repeats its check.
        true
    }

    fn has_queued_work(&self) -> bool {
        !self.shared.commands.is_empty() || self.inbound.iter().any(|c| !c.is_empty())
    }

    /// How long the receive may wait: not at all with work queued, else until the core's next timer.
    fn wait_time(&self, now: Instant) -> Duration {
        if self.core.has_handshake_work() || self.has_queued_work() || !self.pending_events.is_empty() {
            return Duration::ZERO;
        }
        let timer = self.core.poll_timeout().map_or(IDLE_WAIT, |t| t.saturating_duration_since(now));
        timer.min(IDLE_WAIT).min(self.next_publish.saturating_duration_since(now).max(Duration::from_millis(1)))
    }

    fn handle_batch(&mut self, now: Instant) {
        let mut batch = std::mem::replace(&mut self.batch, RecvBatch::new(0, 0));
        for i in 0..batch.len() {
            let (meta, bytes) = batch.slot_mut(i);
            for datagram in bytes.chunks_mut(meta.stride.max(1)) {
                if self.out.len() >= self.flush_at || self.out.relays().len() >= self.flush_at {
                    self.flush();
                }
                if datagram.first().is_some_and(|b| *b < 4) && self.route_elsewhere(meta.source, datagram) {
                    continue;
                }
                self.core.handle_receive(now, meta.source, datagram, &mut self.out);
            }
        }
        if !self.out.is_empty() || !self.out.relays().is_empty() {
            self.oldest.get_or_insert(now);
        }
        self.batch = batch;
    }

    fn handle_relays(&mut self, now: Instant) {
        for k in 0..self.inbound.len() {
            for _ in 0..RELAYS_PER_TURN {
                let Ok(packet) = self.inbound[k].pop() else { break };
                if self.out.len() >= self.flush_at {
                    self.flush();
                }
                self.stats.relays_received += 1;
                self.core.handle_relay(now, &packet, &mut self.out);
                let received = packet.received();
                self.oldest = Some(self.oldest.map_or(received, |t| t.min(received)));
            }
        }
    }

    /// Hands relays to their workers, then sends the batch.
    fn flush(&mut self) {
        let mut woken = 0u64;
        for relay in self.out.relays() {
            let mut workers = relay.workers;
            while workers != 0 {
                let w = workers.trailing_zeros() as usize;
                workers &= workers - 1;
                let Some(Some(producer)) = self.outbound.get_mut(w) else { continue };
                match producer.push(Arc::clone(&relay.packet)) {
                    Ok(()) => {
                        self.stats.relays_sent += 1;
                        woken |= 1 << w;
                    }
                    Err(_) => self.stats.relay_queue_full += 1,
                }
            }
        }
        while woken != 0 {
            let w = woken.trailing_zeros() as usize;
            woken &= woken - 1;
            if self.peers[w].sleeping.load(Ordering::SeqCst) {
                self.peers[w].waker.wake();
            }
        }
        if !self.out.is_empty() {
            if let Err(e) = self.io.send(&self.out, &mut self.stats) {
                // The socket itself failed (not one destination): nothing of this batch went out.
                self.stats.send_failed += self.out.len() as u64;
                report_send_failure(&e);
            }
            if let Some(oldest) = self.oldest.take() {
                self.latency.record(oldest.elapsed());
            }
        }
        self.oldest = None;
        self.out.clear();
    }

    fn forward_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            if self.pending_events.len() < PENDING_EVENTS_MAX {
                self.pending_events.push_back(event);
            } else {
                self.events_dropped += 1;
            }
        }
        let mut pushed = false;
        while let Some(event) = self.pending_events.front() {
            if self.shared.events.push(*event).is_err() {
                break;
            }
            self.pending_events.pop_front();
            pushed = true;
        }
        if pushed {
            self.shared.events_waker.wake();
        }
    }

    fn publish(&mut self) {
        let Ok(mut s) = self.shared.snapshot.try_lock() else { return };
        s.participants = self.core.participant_count();
        s.core.clone_from(self.core.counters());
        s.io.clone_from(&self.stats);
        s.io.ring_occupancy.clear();
        s.io.ring_occupancy
            .extend(self.outbound.iter().map(|p| p.as_ref().map_or(0, |p| p.buffer().capacity() - p.slots())));
        s.time_in_sfu.clone_from(&self.latency);
        s.cpu_time = thread_cpu_time();
    }
}

/// The dataplane crate does not log; a send call failing as a whole (not one destination) is rare enough to note
/// on stderr.
fn report_send_failure(e: &io::Error) {
    eprintln!("sluice worker: send failed: {e}");
}

/// The local ufrag of an ICE Binding request (the part of USERNAME before the colon).
fn check_ufrag(datagram: &[u8]) -> Option<&str> {
    use crate::packet::stun;
    let message = stun::Message::parse(datagram).ok()?;
    if message.msg_type != stun::BINDING_REQUEST {
        return None;
    }
    let username = std::str::from_utf8(message.get(stun::attr::USERNAME)?).ok()?;
    username.split(':').next()
}
