//! The thread-per-core shell around the sans-IO [`Core`]: one pinned worker thread per configured core, each
//! owning its UDP socket, its I/O loop (io_uring, or `recvmmsg`/`sendmmsg`), its core (participants, tracks,
//! timers) and its buffers. Nothing on the packet path takes a lock or touches an atomic another core writes;
//! workers meet only at bounded single-producer rings that carry read-only relayed packets (see
//! `core::relay`).
//!
//! The control plane talks to workers through bounded command queues ([`Command`]) and reads their events and
//! statistics; a full queue is an error it sees, never a stalled worker.

mod bare;
mod command;
mod io;
mod stats;
mod wake;
mod worker;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::core::{
    Core, CoreConfig, CoreError, DtlsIdentity, Event, Fingerprint, IceCredentials, ParticipantId, RELAY_WORKERS_MAX,
    RelayKey, RelayPacket, SubscriptionId, SubscriptionSpec, TrackId, TrackSpec,
};
use crate::srtp::Profile;

pub use bare::BareForwarder;
pub use command::{Command, Fault, Reply};
pub use io::{BufRing, IoKind, IoMode, control_message, parse_sockaddr, uring_probe};
pub use stats::{IoCounters, LATENCY_BOUNDS_US, LatencyHistogram, WorkerSnapshot, thread_cpu_time};
use wake::Waker;

/// How long a control call waits for its worker's answer. A live worker answers within one loop turn (well
/// under a millisecond); this is only reached when a worker is stuck or dead.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The CPU of each worker (pinned there), or `None` entries for unpinned workers. Its length is the number of
    /// workers.
    pub cores: Vec<Option<usize>>,
    /// The address workers listen on.
    pub bind: IpAddr,
    /// Worker `i` listens on `base_port + i`; 0 lets the system choose each port (tests).
    pub base_port: u16,
    /// All workers share `base_port` (`SO_REUSEPORT`): a flow the kernel hands to the wrong worker is routed on
    /// its first ICE check to the worker that owns its ufrag, which takes the flow over with a socket connected
    /// to the browser's address (the kernel prefers it for that flow from then on). One port to open in
    /// firewalls and to announce.
    pub single_port: bool,
    pub io: IoMode,
    /// Use UDP GSO for runs of datagrams to one destination (when the kernel offers it).
    pub gso: bool,
    /// Use UDP GRO on receive (when the kernel offers it).
    pub gro: bool,
    pub core: CoreConfig,
    /// Slots of each worker-to-worker ring.
    pub relay_ring_capacity: usize,
    /// Commands waiting per worker.
    pub command_queue_capacity: usize,
    /// Events waiting per worker before the worker holds them back.
    pub event_queue_capacity: usize,
    /// Socket buffers, asked for (the kernel may cap them at `net.core.{r,w}mem_max`).
    pub socket_buffer_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cores: default_cores(),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            base_port: 40_000,
            single_port: false,
            io: IoMode::Auto,
            gso: true,
            gro: true,
            core: CoreConfig::default(),
            relay_ring_capacity: 4096,
            command_queue_capacity: 1024,
            event_queue_capacity: 4096,
            socket_buffer_bytes: 8 << 20,
        }
    }
}

/// All cores but one (left to the control plane and the kernel's network processing), at least one.
pub fn default_cores() -> Vec<Option<usize>> {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    if ids.len() <= 1 {
        return vec![ids.first().map(|c| c.id)];
    }
    ids.iter().skip(1).map(|c| Some(c.id)).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the runtime needs 1 to {RELAY_WORKERS_MAX} workers, not {0}")]
    Workers(usize),
    #[error("no worker {0}")]
    NoWorker(usize),
    #[error("worker {worker} cannot bind UDP {addr}: {source}")]
    Bind { worker: usize, addr: SocketAddr, source: std::io::Error },
    #[error("io_uring is not available here: {0}")]
    UringUnavailable(std::io::Error),
    #[error("worker {worker} did not start: {source}")]
    Start { worker: usize, source: std::io::Error },
    #[error("worker {0}'s command queue is full")]
    QueueFull(usize),
    #[error("worker {0} is not running (it stopped or failed)")]
    WorkerDead(usize),
    #[error("worker {0} did not answer in time")]
    Timeout(usize),
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// What the runtime tells the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    /// An event of one worker's core (keyframe requests between workers are handled inside the runtime).
    Core { worker: usize, event: Event },
    /// A worker's thread panicked or its I/O failed: its participants are gone and must reconnect elsewhere.
    WorkerFailed { worker: usize, reason: String },
}

/// What the control side holds of one worker.
struct WorkerHandle {
    shared: Arc<worker::Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    local_addr: SocketAddr,
}

/// A track relayed across workers: where it is published.
#[derive(Debug, Clone, Copy)]
struct RelayRoute {
    worker: usize,
    track: TrackId,
}

/// The running dataplane: its workers and the control plane's side of their queues.
pub struct Runtime {
    workers: Vec<WorkerHandle>,
    fingerprint: Fingerprint,
    io: IoKind,
    relays: Mutex<HashMap<RelayKey, RelayRoute>>,
    next_relay_key: std::sync::atomic::AtomicU64,
    /// Signalled by workers when they queue events.
    events_waker: Arc<Waker>,
    /// Single-port mode: which worker owns each ufrag.
    directory: Option<Arc<Directory>>,
    /// Each participant's ufrag, to take it out of the directory when the participant goes.
    ufrags: Mutex<HashMap<(usize, ParticipantId), Box<str>>>,
}

/// Single-port mode's routing table: ufrag -> owning worker. Written by the control side on joins and leaves,
/// read by a worker only for an ICE check whose ufrag it does not know (a flow's first packets), never per
/// media packet.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    owners: std::sync::RwLock<HashMap<Box<str>, usize>>,
}

impl Directory {
    fn insert(&self, ufrag: &str, worker: usize) {
        self.owners.write().expect("directory").insert(ufrag.into(), worker);
    }

    fn remove(&self, ufrag: &str) {
        self.owners.write().expect("directory").remove(ufrag);
    }

    pub(crate) fn owner(&self, ufrag: &str) -> Option<usize> {
        self.owners.read().ok()?.get(ufrag).copied()
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("workers", &self.workers.len()).field("io", &self.io).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Binds every worker's socket, probes the I/O path and starts the workers.
    pub fn start(config: RuntimeConfig, identity: DtlsIdentity) -> Result<Runtime, RuntimeError> {
        let n = config.cores.len();
        if n == 0 || n > RELAY_WORKERS_MAX {
            return Err(RuntimeError::Workers(n));
        }
        let io = io::choose(config.io)?;
        let events_waker = Arc::new(Waker::new().map_err(|source| RuntimeError::Start { worker: 0, source })?);
        let mut sockets: Vec<std::net::UdpSocket> = Vec::with_capacity(n);
        for worker in 0..n {
            let port = match (config.single_port, sockets.first()) {
                // Every worker joins the first one's port (chosen by the system when base_port is 0).
                (true, Some(first)) => {
                    first.local_addr().map_err(|source| RuntimeError::Start { worker, source })?.port()
                }
                (true, None) => config.base_port,
                (false, _) if config.base_port == 0 => 0,
                (false, _) => config.base_port + worker as u16,
            };
            let addr = SocketAddr::new(config.bind, port);
            let socket = io::bind(addr, &config, config.single_port).map_err(|source| RuntimeError::Bind {
                worker,
                addr,
                source,
            })?;
            sockets.push(socket);
        }
        let directory = config.single_port.then(|| Arc::new(Directory::default()));
        let shared: Vec<Arc<worker::Shared>> = (0..n)
            .map(|i| {
                worker::Shared::new(i, &config, Arc::clone(&events_waker))
                    .map(Arc::new)
                    .map_err(|source| RuntimeError::Start { worker: i, source })
            })
            .collect::<Result<_, _>>()?;
        let mut rings = worker::Rings::new(n, config.relay_ring_capacity);
        let mut workers = Vec::with_capacity(n);
        for (i, socket) in sockets.into_iter().enumerate() {
            let local_addr = socket.local_addr().map_err(|source| RuntimeError::Start { worker: i, source })?;
            let core = Core::with_identity(config.core.clone(), identity.clone());
            let setup = worker::Setup {
                cpu: config.cores[i],
                io,
                socket: Some(socket),
                core,
                config: config.clone(),
                shared: Arc::clone(&shared[i]),
                peers: shared.clone(),
                rings: rings.take(i),
                directory: directory.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("sluice-worker-{i}"))
                .spawn(move || worker::run(setup))
                .map_err(|source| RuntimeError::Start { worker: i, source })?;
            workers.push(WorkerHandle { shared: Arc::clone(&shared[i]), thread: Mutex::new(Some(thread)), local_addr });
        }
        let runtime = Runtime {
            workers,
            fingerprint: identity.fingerprint(),
            io,
            relays: Mutex::new(HashMap::new()),
            next_relay_key: std::sync::atomic::AtomicU64::new(1),
            events_waker,
            directory,
            ufrags: Mutex::new(HashMap::new()),
        };
        for w in 0..n {
            runtime.call(w, |reply| Command::Ready { reply })?;
        }
        Ok(runtime)
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The I/O path chosen at start.
    pub fn io(&self) -> IoKind {
        self.io
    }

    /// The DTLS certificate's fingerprint all workers present (for `a=fingerprint`).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Where worker `worker` listens: the candidate the browsers of its participants are given.
    pub fn local_addr(&self, worker: usize) -> Result<SocketAddr, RuntimeError> {
        Ok(self.handle(worker)?.local_addr)
    }

    /// The live worker with the fewest participants: where the control plane places the next one.
    pub fn least_loaded_worker(&self) -> Option<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.shared.is_alive())
            .min_by_key(|(i, w)| (w.shared.participants.load(Ordering::Relaxed), *i))
            .map(|(i, _)| i)
    }

    /// Whether any worker still runs.
    pub fn is_running(&self) -> bool {
        self.workers.iter().any(|w| w.shared.is_alive())
    }

    fn handle(&self, worker: usize) -> Result<&WorkerHandle, RuntimeError> {
        self.workers.get(worker).ok_or(RuntimeError::NoWorker(worker))
    }

    /// Queues a command without waiting for anything.
    pub fn send(&self, worker: usize, command: Command) -> Result<(), RuntimeError> {
        let w = self.handle(worker)?;
        if !w.shared.is_alive() {
            return Err(RuntimeError::WorkerDead(worker));
        }
        w.shared.commands.push(command).map_err(|_| RuntimeError::QueueFull(worker))?;
        w.shared.waker.wake();
        Ok(())
    }

    /// Sends a command and waits for its answer (blocking; from async code, call it in `spawn_blocking`).
    pub fn call<T>(&self, worker: usize, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, RuntimeError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.send(worker, command(Reply(reply)))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            match answer.recv_timeout(Duration::from_millis(50)) {
                Ok(value) => return Ok(value),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(RuntimeError::WorkerDead(worker)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if !self.workers[worker].shared.is_alive() {
                        return Err(RuntimeError::WorkerDead(worker));
                    }
                    if Instant::now() >= deadline {
                        return Err(RuntimeError::Timeout(worker));
                    }
                }
            }
        }
    }

    pub fn add_participant(&self, worker: usize, ice: IceCredentials) -> Result<ParticipantId, RuntimeError> {
        let ufrag: Box<str> = ice.ufrag.as_str().into();
        let id = self.call(worker, |reply| Command::AddParticipant { ice, reply })??;
        if let Some(directory) = &self.directory {
            directory.insert(&ufrag, worker);
        }
        self.ufrags.lock().expect("ufrags").insert((worker, id), ufrag);
        Ok(id)
    }

    /// The participant's DTLS certificate must have `fingerprint` (from its SDP).
    pub fn expect_dtls(
        &self,
        worker: usize,
        participant: ParticipantId,
        fingerprint: Fingerprint,
    ) -> Result<(), RuntimeError> {
        Ok(self.call(worker, |reply| Command::ExpectDtls { participant, fingerprint, reply })??)
    }

    /// Installs SRTP keys directly, without DTLS (load generators and tests whose subject is not the handshake).
    pub fn set_srtp_keys(
        &self,
        worker: usize,
        participant: ParticipantId,
        profile: Profile,
        local: (&[u8], &[u8]),
        remote: (&[u8], &[u8]),
    ) -> Result<(), RuntimeError> {
        let keys = command::Keys {
            profile,
            local_key: local.0.to_vec(),
            local_salt: local.1.to_vec(),
            remote_key: remote.0.to_vec(),
            remote_salt: remote.1.to_vec(),
        };
        Ok(self.call(worker, |reply| Command::SetSrtpKeys { participant, keys, reply })??)
    }

    pub fn remove_participant(&self, worker: usize, participant: ParticipantId) -> Result<(), RuntimeError> {
        let ufrag = self.ufrags.lock().expect("ufrags").remove(&(worker, participant));
        if let (Some(directory), Some(ufrag)) = (&self.directory, &ufrag) {
            directory.remove(ufrag);
        }
        Ok(self.call(worker, |reply| Command::RemoveParticipant { participant, reply })??)
    }

    /// Whether all workers share one UDP port.
    pub fn single_port(&self) -> bool {
        self.directory.is_some()
    }

    pub fn add_track(&self, worker: usize, publisher: ParticipantId, spec: TrackSpec) -> Result<TrackId, RuntimeError> {
        Ok(self.call(worker, |reply| Command::AddTrack { publisher, spec, reply })??)
    }

    /// Stops or resumes forwarding a track published on `worker` (its mirrors on other workers are fed from
    /// there, so they stop too).
    pub fn block_track(&self, worker: usize, track: TrackId, blocked: bool) -> Result<(), RuntimeError> {
        Ok(self.call(worker, |reply| Command::BlockTrack { track, blocked, reply })??)
    }

    /// Removes a track and its mirrors on other workers.
    pub fn remove_track(&self, worker: usize, track: TrackId) -> Result<(), RuntimeError> {
        let mirrors: Vec<RelayKey> = {
            let relays = self.relays.lock().expect("relay table");
            relays.iter().filter(|(_, r)| r.worker == worker && r.track == track).map(|(k, _)| *k).collect()
        };
        self.call(worker, |reply| Command::RemoveTrack { track, reply })??;
        for key in mirrors {
            self.relays.lock().expect("relay table").remove(&key);
            for w in (0..self.workers.len()).filter(|w| *w != worker) {
                // A worker that never mirrored the track answers UnknownTrack; a dead one is gone anyway.
                let _ = self.call(w, |reply| Command::RemoveMirror { key, reply });
            }
        }
        Ok(())
    }

    /// Makes `track` (published on `origin`) available on worker `on`: the same track id when `on` is the
    /// origin, else a mirror fed by the origin's relay ring. Idempotent.
    pub fn track_on(&self, origin: usize, track: TrackId, spec: TrackSpec, on: usize) -> Result<TrackId, RuntimeError> {
        if on == origin {
            return Ok(track);
        }
        self.handle(on)?;
        let existing = self
            .relays
            .lock()
            .expect("relay table")
            .iter()
            .find(|(_, r)| r.worker == origin && r.track == track)
            .map(|(k, _)| *k);
        let key = match existing {
            Some(key) => key,
            None => {
                let key = self.next_relay_key.fetch_add(1, Ordering::Relaxed);
                self.relays.lock().expect("relay table").insert(key, RelayRoute { worker: origin, track });
                key
            }
        };
        let mirror = match self.call(on, |reply| Command::MirrorOf { key, reply })? {
            Some(mirror) => mirror,
            None => self.call(on, |reply| Command::AddMirror { key, spec, reply })??,
        };
        self.call(origin, |reply| Command::RelayTrack { track, key, worker: on, reply })??;
        Ok(mirror)
    }

    pub fn subscribe(
        &self,
        worker: usize,
        subscriber: ParticipantId,
        track: TrackId,
        spec: SubscriptionSpec,
    ) -> Result<SubscriptionId, RuntimeError> {
        Ok(self.call(worker, |reply| Command::Subscribe { subscriber, track, spec, reply })??)
    }

    pub fn unsubscribe(&self, worker: usize, subscription: SubscriptionId) -> Result<(), RuntimeError> {
        Ok(self.call(worker, |reply| Command::Unsubscribe { subscription, reply })??)
    }

    pub fn set_layer(&self, worker: usize, subscription: SubscriptionId, layer: u8) -> Result<(), RuntimeError> {
        Ok(self.call(worker, |reply| Command::SetLayer { subscription, layer, reply })??)
    }

    /// Moves `subscription` (on `worker`) to `track`, a track of that worker: see `Core::retarget`.
    pub fn retarget(
        &self,
        worker: usize,
        subscription: SubscriptionId,
        track: TrackId,
        payload_type: Option<u8>,
    ) -> Result<(), RuntimeError> {
        Ok(self.call(worker, |reply| Command::Retarget { subscription, track, payload_type, reply })??)
    }

    /// The audio activity of `tracks` (published on `worker`) since the last call, reset as read.
    pub fn audio_levels(
        &self,
        worker: usize,
        tracks: Vec<TrackId>,
    ) -> Result<Vec<Option<crate::core::AudioActivity>>, RuntimeError> {
        self.call(worker, |reply| Command::AudioLevels { tracks, reply })
    }

    /// A worker's core counters now (asked of the worker; `snapshot` is the cheaper, up to 50 ms old view).
    pub fn counters(&self, worker: usize) -> Result<crate::core::Counters, RuntimeError> {
        self.call(worker, |reply| Command::Stats { reply })
    }

    /// One participant's media figures, for analytics.
    pub fn participant_stats(
        &self,
        worker: usize,
        participant: ParticipantId,
    ) -> Result<crate::core::ParticipantStats, RuntimeError> {
        Ok(self.call(worker, |reply| Command::ParticipantStats { participant, reply })??)
    }

    /// A worker's statistics as it last published them (every few milliseconds).
    pub fn snapshot(&self, worker: usize) -> Result<WorkerSnapshot, RuntimeError> {
        Ok(self.handle(worker)?.shared.snapshot())
    }

    /// Fault injection for tests of failure handling: makes a worker stall or panic.
    #[doc(hidden)]
    pub fn inject_fault(&self, worker: usize, fault: Fault) -> Result<(), RuntimeError> {
        self.send(worker, Command::Fault(fault))
    }

    /// The next event of any worker, routing keyframe requests of mirrors to the publisher's worker on the way.
    pub fn poll_event(&self) -> Option<RuntimeEvent> {
        for (i, w) in self.workers.iter().enumerate() {
            if let Some(failure) = w.shared.take_failure() {
                return Some(RuntimeEvent::WorkerFailed { worker: i, reason: failure });
            }
            while let Some(event) = w.shared.events.pop() {
                if let Event::KeyframeNeeded { key, layer } = event {
                    let route = self.relays.lock().expect("relay table").get(&key).copied();
                    if let Some(route) = route {
                        // Best effort: a full queue loses one request, and the subscriber asks again.
                        let _ = self.send(route.worker, Command::RequestKeyframe { key, layer });
                    }
                    continue;
                }
                return Some(RuntimeEvent::Core { worker: i, event });
            }
        }
        None
    }

    /// Waits until a worker may have queued an event, or `timeout`.
    pub fn wait_events(&self, timeout: Duration) {
        self.events_waker.wait(timeout);
    }

    /// Stops every worker: each finishes its loop turn, publishes its last statistics and exits. Waits up to
    /// `timeout` in all; returns the workers that did not stop in time.
    pub fn stop(&self, timeout: Duration) -> Vec<usize> {
        let deadline = Instant::now() + timeout;
        for w in &self.workers {
            w.shared.stop.store(true, Ordering::SeqCst);
            w.shared.waker.wake();
        }
        let mut late = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            let Some(thread) = w.thread.lock().expect("thread handle").take() else { continue };
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                late.push(i);
            }
        }
        late
    }

    /// Prometheus text for every worker's counters and time-in-SFU histogram.
    pub fn render_metrics(&self, out: &mut String) {
        let snapshots: Vec<WorkerSnapshot> = self.workers.iter().map(|w| w.shared.snapshot()).collect();
        stats::render(&snapshots, out);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Relayed packets travel between workers as shared, read-only pool entries.
type RelayRef = Arc<RelayPacket>;
type EventQueue = ArrayQueue<Event>;
