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
        })
    }

    fn try_recv(&mut self, batch: &mut RecvBatch, stats: &mut IoCounters) -> io::Result<usize> {
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
        let n = self.state.recv(UdpSockRef::from(&self.socket), &mut slices[..room], &mut metas[..room])?;
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
        let mut fds = [
            libc::pollfd { fd: self.socket.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.waker, events: libc::POLLIN, revents: 0 },
        ];
        let ts = libc::timespec { tv_sec: timeout.as_secs() as _, tv_nsec: timeout.subsec_nanos() as _ };
        // SAFETY: two valid pollfds and a live timespec; no signal mask.
        let ready = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
        }
        if fds[1].revents != 0 {
            drain_eventfd(self.waker);
        }
        if fds[0].revents != 0 {
            match self.try_recv(batch, stats) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
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
