//! The portable path: `recvmmsg` with GRO through quinn-udp, and our own `sendmmsg` (quinn-udp sends one
//! `sendmsg` per transmit; a fan-out batch to many destinations wants one call for all of them).

use std::io::{self, IoSliceMut};
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use quinn_udp::{BATCH_SIZE, UdpSockRef, UdpSocketState};

use super::gso::{Msgs, Plan};
use super::{DatagramIo, RecvBatch, RecvMeta};
use crate::core::Transmits;
use crate::runtime::stats::IoCounters;

/// Messages per `sendmmsg` call (the kernel's `UIO_MAXIOV`).
const SENDMMSG_MAX: usize = 1024;
/// How long a send waits for room in a full socket buffer before the rest of the batch is dropped and counted.
const SEND_WAIT_MAX: Duration = Duration::from_millis(2);
const SEND_WAITS_MAX: usize = 4;

#[derive(Debug)]
pub(crate) struct MmsgIo {
    socket: UdpSocket,
    state: UdpSocketState,
    waker: RawFd,
    gso_segments: usize,
    plan: Plan,
    msgs: Msgs,
    /// Single-port mode: sockets connected to one browser each.
    flows: Vec<(u32, UdpSocket, UdpSocketState)>,
    /// Reused for every wait: the main socket, the flows, the waker.
    pollfds: Vec<libc::pollfd>,
}

impl MmsgIo {
    pub(crate) fn new(socket: UdpSocket, waker: RawFd, gso: bool, gro: bool, capacity: usize) -> io::Result<MmsgIo> {
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        if !gro {
            super::uring::set_gro(&socket, false)?;
        }
        let gso_segments = if gso { state.max_gso_segments() } else { 1 };
        Ok(MmsgIo {
            socket,
            state,
            waker,
            gso_segments,
            plan: Plan::with_capacity(capacity),
            msgs: Msgs::with_capacity(capacity),
            flows: Vec::new(),
            pollfds: Vec::new(),
        })
    }

    /// Receives from the main socket, then from each flow, while the batch has room.
    fn try_recv(&mut self, batch: &mut RecvBatch, stats: &mut IoCounters) -> io::Result<usize> {
        let mut n = match recv_from(&self.socket, &self.state, batch, stats) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.flows.is_empty() => 0,
            Err(e) => return Err(e),
        };
        for (_, socket, state) in &self.flows {
            match recv_from(socket, state, batch, stats) {
                Ok(got) => n += got,
                // A connected socket reports an ICMP error from its browser once; the flow stays.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
        }
        if n == 0 && !self.flows.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }
}

fn recv_from(
    socket: &UdpSocket,
    state: &UdpSocketState,
    batch: &mut RecvBatch,
    stats: &mut IoCounters,
) -> io::Result<usize> {
    let room = (batch.capacity() - batch.len()).min(BATCH_SIZE);
    if room == 0 {
        return Ok(0);
    }
    let first = batch.len();
    let slot_len = batch.slot_len;
    let mut chunks = batch.data[first * slot_len..].chunks_mut(slot_len);
    let mut slices: [IoSliceMut<'_>; BATCH_SIZE] =
        std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
    let mut metas = [quinn_udp::RecvMeta::default(); BATCH_SIZE];
    let n = state.recv(UdpSockRef::from(socket), &mut slices[..room], &mut metas[..room])?;
    for m in &metas[..n] {
        let stride = if m.stride == 0 { m.len } else { m.stride };
        let segments = m.len.div_ceil(stride.max(1));
        if segments > 1 {
            stats.gro_segments += segments as u64;
        }
        stats.datagrams_received += segments as u64;
        batch.meta.push(RecvMeta { source: m.addr, len: m.len, stride });
    }
    if n > 0 {
        stats.recv_batches += 1;
    }
    Ok(n)
}

impl DatagramIo for MmsgIo {
    fn recv(&mut self, batch: &mut RecvBatch, timeout: Duration, stats: &mut IoCounters) -> io::Result<()> {
        match self.try_recv(batch, stats) {
            Ok(n) if n > 0 || timeout.is_zero() => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if timeout.is_zero() {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
        let poll = |fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        self.pollfds.clear();
        self.pollfds.push(poll(self.waker));
        self.pollfds.push(poll(self.socket.as_raw_fd()));
        self.pollfds.extend(self.flows.iter().map(|(_, s, _)| poll(s.as_raw_fd())));
        let ts = libc::timespec { tv_sec: timeout.as_secs() as _, tv_nsec: timeout.subsec_nanos() as _ };
        // SAFETY: `pollfds.len()` valid pollfds and a live timespec; no signal mask.
        let ready = unsafe {
            libc::ppoll(self.pollfds.as_mut_ptr(), self.pollfds.len() as libc::nfds_t, &ts, std::ptr::null())
        };
        if ready < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
        }
        if self.pollfds[0].revents != 0 {
            drain_eventfd(self.waker);
        }
        if self.pollfds[1..].iter().any(|p| p.revents != 0) {
            match self.try_recv(batch, stats) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn add_flow(&mut self, id: u32, socket: UdpSocket) -> io::Result<()> {
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        self.flows.push((id, socket, state));
        Ok(())
    }

    fn remove_flow(&mut self, id: u32) {
        self.flows.retain(|(i, _, _)| *i != id);
    }

    fn send(&mut self, out: &Transmits, stats: &mut IoCounters) -> io::Result<()> {
        self.plan.plan(out, self.gso_segments);
        let mut run = 0;
        // Waits for a full socket buffer per flush, so a receiver that never drains cannot hold the loop.
        let mut waits = SEND_WAITS_MAX;
        while run < self.plan.runs.len() {
            let end = (run + SENDMMSG_MAX).min(self.plan.runs.len());
            self.msgs.build(out, &self.plan, run..end);
            let mut sent = 0;
            while sent < end - run {
                let hdrs = &mut self.msgs.hdrs[sent..];
                // SAFETY: the headers point into `self.msgs` and `out`, both alive and unchanged during the call.
                let r = unsafe {
                    libc::sendmmsg(self.socket.as_raw_fd(), hdrs.as_mut_ptr(), hdrs.len() as u32, libc::MSG_DONTWAIT)
                };
                stats.send_batches += 1;
                if r > 0 {
                    for k in run + sent..run + sent + r as usize {
                        count_run(&self.plan, k, stats);
                    }
                    sent += r as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock if waits > 0 && wait_writable(self.socket.as_raw_fd()) => waits -= 1,
                    _ => {
                        // This message cannot go (no room in time, or an error for its destination): count it and
                        // go on with the rest.
                        stats.send_failed += self.plan.runs[run + sent].count as u64;
                        sent += 1;
                    }
                }
            }
            run = end;
        }
        Ok(())
    }
}

pub(super) fn count_run(plan: &Plan, run: usize, stats: &mut IoCounters) {
    let count = plan.runs[run].count as u64;
    stats.datagrams_sent += count;
    if count > 1 {
        stats.gso_sends += 1;
        stats.gso_datagrams += count;
    }
}

fn wait_writable(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, SEND_WAIT_MAX.as_millis() as i32) > 0 }
}

pub(super) fn drain_eventfd(fd: RawFd) {
    let mut value: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64.
    unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) };
}
