//! A bare UDP forwarder on the workers' own I/O paths: it copies every datagram it receives to each of a fixed
//! list of destinations and sends them, with the same batching and GSO planning as a worker but no parsing, no
//! crypto and no state. Benchmarks run it beside the workers to show what the SFU's logic costs above the floor.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::io::{self, DatagramIo, IoMode, MmsgIo, RecvBatch, UringIo};
use super::stats::{IoCounters, LatencyHistogram, WorkerSnapshot, thread_cpu_time};
use super::wake::Waker;
use super::{IoKind, RuntimeConfig, RuntimeError};
use crate::core::Transmits;

const WAIT: Duration = Duration::from_millis(50);
const PUBLISH_INTERVAL: Duration = Duration::from_millis(50);

struct Shared {
    stop: AtomicBool,
    waker: Waker,
    snapshot: Mutex<WorkerSnapshot>,
}

/// A running bare forwarder (one thread).
pub struct BareForwarder {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    local_addr: SocketAddr,
    io: IoKind,
}

impl std::fmt::Debug for BareForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BareForwarder").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl BareForwarder {
    /// Binds `bind` and forwards everything it receives to every one of `destinations`.
    pub fn start(
        mode: IoMode,
        gso: bool,
        bind: SocketAddr,
        cpu: Option<usize>,
        destinations: Vec<SocketAddr>,
    ) -> Result<BareForwarder, RuntimeError> {
        let kind = io::choose(mode)?;
        let config = RuntimeConfig::default();
        let socket =
            io::bind(bind, &config, false).map_err(|source| RuntimeError::Bind { worker: 0, addr: bind, source })?;
        let local_addr = socket.local_addr().map_err(|source| RuntimeError::Start { worker: 0, source })?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            waker: Waker::new().map_err(|source| RuntimeError::Start { worker: 0, source })?,
            snapshot: Mutex::new(WorkerSnapshot { alive: true, ..WorkerSnapshot::default() }),
        });
        let thread_shared = Arc::clone(&shared);
        // Sized and flushed as a worker's batch is (see `worker::run_loop`), so that both form the same GSO runs.
        let capacity = destinations.len().max(256) * 2;
        let thread = std::thread::Builder::new()
            .name("sluice-bare-forwarder".into())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                }
                let waker = thread_shared.waker.fd();
                match kind {
                    IoKind::Mmsg => {
                        let io = MmsgIo::new(socket, waker, gso, true, capacity)?;
                        forward(io, &thread_shared, &destinations, capacity)
                    }
                    IoKind::Uring => {
                        let io = UringIo::new(socket, waker, gso, true, capacity)?;
                        forward(io, &thread_shared, &destinations, capacity)
                    }
                }
            })
            .map_err(|source| RuntimeError::Start { worker: 0, source })?;
        Ok(BareForwarder { shared, thread: Some(thread), local_addr, io: kind })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn io(&self) -> IoKind {
        self.io
    }

    /// Counters as last published (every 50 ms).
    pub fn snapshot(&self) -> WorkerSnapshot {
        self.shared.snapshot.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn stop(mut self) -> std::io::Result<()> {
        self.shut()
    }

    fn shut(&mut self) -> std::io::Result<()> {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.waker.wake();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("the bare forwarder panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for BareForwarder {
    fn drop(&mut self) {
        let _ = self.shut();
    }
}

fn forward(
    mut io: impl DatagramIo,
    shared: &Shared,
    destinations: &[SocketAddr],
    capacity: usize,
) -> std::io::Result<()> {
    let mut batch = RecvBatch::new(32, io::slot_len(true));
    let mut out = Transmits::with_capacity(capacity);
    let mut stats = IoCounters::default();
    let mut latency = LatencyHistogram::default();
    let mut next_publish = Instant::now();
    while !shared.stop.load(Ordering::Acquire) {
        stats.loop_turns += 1;
        batch.clear();
        io.recv(&mut batch, WAIT, &mut stats)?;
        let received = Instant::now();
        for i in 0..batch.len() {
            let (meta, bytes) = batch.slot_mut(i);
            for datagram in bytes.chunks(meta.stride.max(1)) {
                if out.len() >= capacity / 2 {
                    io.send(&out, &mut stats)?;
                    out.clear();
                }
                for to in destinations {
                    let slot = out.slot().expect("half the batch holds one fan-out");
                    slot[..datagram.len()].copy_from_slice(datagram);
                    out.commit(*to, datagram.len());
                }
            }
        }
        if !out.is_empty() {
            io.send(&out, &mut stats)?;
            out.clear();
            latency.record(received.elapsed());
        }
        let now = Instant::now();
        if now >= next_publish {
            next_publish = now + PUBLISH_INTERVAL;
            if let Ok(mut s) = shared.snapshot.try_lock() {
                s.io.clone_from(&stats);
                s.time_in_sfu.clone_from(&latency);
                s.cpu_time = thread_cpu_time();
            }
        }
    }
    if let Ok(mut s) = shared.snapshot.lock() {
        s.io.clone_from(&stats);
        s.time_in_sfu.clone_from(&latency);
        s.cpu_time = thread_cpu_time();
        s.alive = false;
    }
    Ok(())
}
