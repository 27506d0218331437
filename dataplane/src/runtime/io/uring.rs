//! The io_uring path (our own loop on the `io-uring` crate): one multishot `recvmsg` into a ring of provided
//! buffers stays armed, so receiving costs no system call per datagram; a read on the worker's eventfd stays
//! armed, so a command wakes the loop; each turn's sends are submitted together, one `sendmsg` per GSO run, with
//! one `enter` that also collects what arrived.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, types};

use super::gso::{Msgs, Plan};
use super::mmsg::{count_run, drain_eventfd};
use super::{DatagramIo, RecvBatch};
use crate::core::Transmits;
use crate::runtime::stats::IoCounters;

/// Submission queue entries: room for a full chunk of sends plus the armed receive and wake-up.
const SQ_ENTRIES: u32 = 2048;
/// Sends per submission (one per GSO run).
const SEND_CHUNK: usize = 1024;
/// Completion queue entries: every provided buffer's completion plus a chunk of sends, with room to spare.
const CQ_ENTRIES: u32 = 8192;
/// Provided receive buffers (a power of two). Each holds one datagram, or one GRO buffer, plus the recvmsg
/// header, the source address and the control messages.
const RECV_BUFFERS: u16 = 256;
const RECV_BUFFER_GROUP: u16 = 0;
/// Room for control messages: a UDP_GRO int, with slack for others the kernel may add.
const CONTROL_LEN: usize = 64;

const TAG_RECV: u64 = 1;
const TAG_WAKE: u64 = 2;
const TAG_CANCEL: u64 = 3;
/// A flow's multishot receive carries `TAG_FLOW + its id` (single-port mode).
const TAG_FLOW: u64 = 1 << 16;
/// Sends carry `TAG_SEND + index of the run in the chunk`.
const TAG_SEND: u64 = 1 << 32;

/// Whether io_uring with multishot `recvmsg` and provided-buffer rings works here.
pub fn probe() -> io::Result<()> {
    let mut ring = IoUring::new(8)?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    if !probe.is_supported(opcode::RecvMsg::CODE) || !probe.is_supported(opcode::SendMsg::CODE) {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "the kernel's io_uring lacks recvmsg or sendmsg"));
    }
    // Provided-buffer rings came with 5.19, multishot recvmsg with 6.0: one receive armed and cancelled tells.
    let bufs = BufRing::new(&ring, 8, 256, RECV_BUFFER_GROUP, 256)?;
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    // SAFETY: an all-zero msghdr; only the name and control lengths matter for multishot recvmsg.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let recv = opcode::RecvMsgMulti::new(types::Fd(socket.as_raw_fd()), &hdr, RECV_BUFFER_GROUP).build().user_data(1);
    let cancel = opcode::AsyncCancel::new(1).build().user_data(2);
    // SAFETY: `hdr` and the buffers outlive the ring, which is dropped below once both entries have completed.
    unsafe {
        ring.submission().push(&recv).map_err(|_| io::Error::other("probe queue full"))?;
        ring.submission().push(&cancel).map_err(|_| io::Error::other("probe queue full"))?;
    }
    ring.submit_and_wait(2)?;
    let refused = ring.completion().any(|c| c.user_data() == 1 && c.result() == -libc::EINVAL);
    drop(ring);
    drop(bufs);
    if refused {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "the kernel's io_uring lacks multishot recvmsg"));
    }
    Ok(())
}

pub(crate) fn set_gro(socket: &UdpSocket, on: bool) -> io::Result<()> {
    let value: libc::c_int = on.into();
    // SAFETY: setsockopt reads one c_int from a live local.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// A provided-buffer ring: page-aligned entries the kernel takes buffers from, and the buffers themselves. Also
/// used by the TURN relay's io_uring path.
pub struct BufRing {
    entries: *mut BufRingEntry,
    map_len: usize,
    count: u16,
    tail: u16,
    /// Distance between buffers.
    buf_len: usize,
    /// Bytes of each buffer the kernel may fill (the rest is the owner's tailroom).
    fill_len: usize,
    data: Box<[u8]>,
}

// SAFETY: the mapping and the buffers belong to this value alone; the ring that reads them is owned by the same
// thread as this value.
unsafe impl Send for BufRing {}

impl std::fmt::Debug for BufRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufRing").field("count", &self.count).field("buf_len", &self.buf_len).finish_non_exhaustive()
    }
}

impl BufRing {
    /// Registers `count` buffers (a power of two) of `buf_len` bytes as buffer group `group` of `ring`; the kernel
    /// fills at most `fill_len` bytes of each.
    pub fn new(ring: &IoUring, count: u16, buf_len: usize, group: u16, fill_len: usize) -> io::Result<BufRing> {
        assert!(count.is_power_of_two() && fill_len <= buf_len, "a power-of-two count of buffers, filled within");
        let map_len = usize::from(count) * size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked for failure below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut bufs = BufRing {
            entries: base.cast(),
            map_len,
            count,
            tail: 0,
            buf_len,
            fill_len,
            data: vec![0u8; usize::from(count) * buf_len].into_boxed_slice(),
        };
        // SAFETY: the mapping lives as long as `bufs`, which the owner drops after the ring (field order).
        unsafe { ring.submitter().register_buf_ring_with_flags(base as u64, count, group, 0)? };
        for bid in 0..count {
            bufs.give(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    /// Hands buffer `bid` back to the kernel (visible at the next `publish`).
    pub fn give(&mut self, bid: u16) {
        let at = usize::from(self.tail & (self.count - 1));
        // SAFETY: `at` < count entries of the mapping; the kernel only reads entries before the published tail.
        let entry = unsafe { &mut *self.entries.add(at) };
        entry.set_addr(self.data[usize::from(bid) * self.buf_len..].as_ptr() as u64);
        entry.set_len(self.fill_len as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    pub fn publish(&self) {
        // SAFETY: the tail field overlays entry 0's reserved field, inside the mapping; the kernel reads it
        // atomically.
        let tail = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.entries).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }

    pub fn buffer(&self, bid: u16) -> &[u8] {
        let at = usize::from(bid) * self.buf_len;
        &self.data[at..at + self.buf_len]
    }

    /// Buffer `bid`, whole (tailroom included), while the owner holds it.
    pub fn buffer_mut(&mut self, bid: u16) -> &mut [u8] {
        let at = usize::from(bid) * self.buf_len;
        &mut self.data[at..at + self.buf_len]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `new`; the ring that used it is gone (or unregistered with it).
        unsafe { libc::munmap(self.entries.cast(), self.map_len) };
    }
}

pub(crate) struct UringIo {
    // Dropped first: the kernel stops using the buffers before they go.
    ring: IoUring,
    bufs: BufRing,
    socket: UdpSocket,
    waker: RawFd,
    waker_value: Box<u64>,
    /// Tells the kernel how much room the source address and control messages get in each buffer.
    recv_msghdr: Box<libc::msghdr>,
    recv_armed: bool,
    waker_armed: bool,
    /// Receive completions seen while waiting for sends, or when the batch was full: (result, flags).
    stash: VecDeque<(i32, u32)>,
    gso_segments: usize,
    plan: Plan,
    msgs: Msgs,
    /// Single-port mode: sockets connected to one browser each, and whether their receive is armed.
    flows: Vec<(u32, UdpSocket, bool)>,
    /// Removed flows whose receive is being cancelled: the socket lives until its last completion.
    closing: Vec<(u32, UdpSocket)>,
}

impl std::fmt::Debug for UringIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringIo").field("socket", &self.socket).finish_non_exhaustive()
    }
}

impl UringIo {
    /// Must be called on the worker's own thread (the ring is single-issuer).
    pub(crate) fn new(socket: UdpSocket, waker: RawFd, gso: bool, gro: bool, capacity: usize) -> io::Result<UringIo> {
        let ring =
            IoUring::builder().setup_cqsize(CQ_ENTRIES).setup_single_issuer().setup_coop_taskrun().build(SQ_ENTRIES)?;
        let gro = gro && set_gro(&socket, true).is_ok();
        let buf_len = super::slot_len(gro) + 512;
        let bufs = BufRing::new(&ring, RECV_BUFFERS, buf_len, RECV_BUFFER_GROUP, buf_len)?;
        let gso_segments = if gso { quinn_udp::UdpSocketState::new((&socket).into())?.max_gso_segments() } else { 1 };
        if !gro {
            // quinn-udp's probe above turns GRO on; this path asked for it off.
            let _ = set_gro(&socket, false);
        }
        // SAFETY: an all-zero msghdr; only the name and control lengths matter for multishot recvmsg.
        let mut recv_msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_msghdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        recv_msghdr.msg_controllen = CONTROL_LEN as _;
        Ok(UringIo {
            ring,
            bufs,
            socket,
            waker,
            waker_value: Box::new(0),
            recv_msghdr,
            recv_armed: false,
            waker_armed: false,
            stash: VecDeque::with_capacity(usize::from(RECV_BUFFERS) * 2),
            gso_segments,
            plan: Plan::with_capacity(capacity),
            msgs: Msgs::with_capacity(capacity),
            flows: Vec::new(),
            closing: Vec::new(),
        })
    }

    /// Keeps the multishot receive and the wake-up read armed.
    fn arm(&mut self) {
        if !self.recv_armed {
            let sqe =
                opcode::RecvMsgMulti::new(types::Fd(self.socket.as_raw_fd()), &*self.recv_msghdr, RECV_BUFFER_GROUP)
                    .build()
                    .user_data(TAG_RECV);
            // SAFETY: the msghdr is boxed and lives as long as the ring; buffers come from the registered group.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                self.recv_armed = true;
            }
        }
        for (id, socket, armed) in self.flows.iter_mut().filter(|f| !f.2) {
            let sqe = opcode::RecvMsgMulti::new(types::Fd(socket.as_raw_fd()), &*self.recv_msghdr, RECV_BUFFER_GROUP)
                .build()
                .user_data(TAG_FLOW + u64::from(*id));
            // SAFETY: as for the main socket; the socket stays open until this receive's last completion.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                *armed = true;
            }
        }
        if !self.waker_armed {
            let sqe = opcode::Read::new(types::Fd(self.waker), (&mut *self.waker_value as *mut u64).cast(), 8)
                .build()
                .user_data(TAG_WAKE);
            // SAFETY: the boxed u64 lives as long as the ring.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                self.waker_armed = true;
            }
        }
    }

    /// Takes one receive completion: its datagram into `batch` (false if the batch had no room, so the completion
    /// must wait), its buffer back to the kernel.
    fn take_recv(&mut self, result: i32, flags: u32, batch: &mut RecvBatch, stats: &mut IoCounters) -> bool {
        let Some(bid) = cqueue::buffer_select(flags) else {
            // An error without a buffer (ENOBUFS when all buffers are in use): re-armed next turn.
            return true;
        };
        if batch.len() == batch.capacity() {
            return false;
        }
        if result > 0 {
            let buffer = &self.bufs.buffer(bid)[..result as usize];
            if let Ok(msg) = RecvMsgOut::parse(buffer, &self.recv_msghdr)
                && !msg.is_payload_truncated()
                && let Some(source) = parse_sockaddr(msg.name_data())
            {
                let payload = msg.payload_data();
                let stride = gro_segment(msg.control_data()).unwrap_or(payload.len());
                let segments = payload.len().div_ceil(stride.max(1));
                if batch.push(source, payload, stride) {
                    stats.datagrams_received += segments as u64;
                    if segments > 1 {
                        stats.gro_segments += segments as u64;
                    }
                }
            }
        }
        self.bufs.give(bid);
        true
    }

    /// Drains the completion queue: receives into `batch` (or the stash), wake-ups, and sends, whose count is
    /// returned with failures counted.
    fn reap(&mut self, batch: Option<&mut RecvBatch>, stats: &mut IoCounters) -> usize {
        let mut sends_done = 0;
        let mut batch = batch;
        let mut completions: [(u64, i32, u32); 64] = [(0, 0, 0); 64];
        loop {
            let mut n = 0;
            for cqe in self.ring.completion().take(completions.len()) {
                completions[n] = (cqe.user_data(), cqe.result(), cqe.flags());
                n += 1;
            }
            if n == 0 {
                break;
            }
            for &(tag, result, flags) in &completions[..n] {
                match tag {
                    TAG_RECV | TAG_FLOW..TAG_SEND => {
                        if !cqueue::more(flags) {
                            self.receive_ended(tag);
                        }
                        let taken = match batch.as_deref_mut() {
                            Some(b) => self.stash.is_empty() && self.take_recv(result, flags, b, stats),
                            None => false,
                        };
                        if !taken {
                            self.stash.push_back((result, flags));
                        }
                    }
                    TAG_WAKE => {
                        self.waker_armed = false;
                        drain_eventfd(self.waker);
                    }
                    TAG_CANCEL => {}
                    tag => {
                        let run = (tag - TAG_SEND) as usize;
                        if result < 0 {
                            stats.send_failed += self.plan.runs.get(run).map_or(1, |r| r.count) as u64;
                        } else {
                            count_run(&self.plan, run, stats);
                        }
                        sends_done += 1;
                    }
                }
            }
        }
        self.bufs.publish();
        sends_done
    }

    /// A multishot receive finished (buffers ran out, or it was cancelled): re-armed next turn, unless its flow
    /// was removed, whose socket can now close.
    fn receive_ended(&mut self, tag: u64) {
        if tag == TAG_RECV {
            self.recv_armed = false;
            return;
        }
        let id = (tag - TAG_FLOW) as u32;
        match self.flows.iter_mut().find(|f| f.0 == id) {
            Some(flow) => flow.2 = false,
            None => self.closing.retain(|(i, _)| *i != id),
        }
    }

    fn drain_stash(&mut self, batch: &mut RecvBatch, stats: &mut IoCounters) {
        while let Some(&(result, flags)) = self.stash.front() {
            if !self.take_recv(result, flags, batch, stats) {
                break;
            }
            self.stash.pop_front();
        }
        self.bufs.publish();
    }
}

impl DatagramIo for UringIo {
    fn recv(&mut self, batch: &mut RecvBatch, timeout: Duration, stats: &mut IoCounters) -> io::Result<()> {
        // Counted before the stash drains: packets a send's wait collected are this turn's too, and waiting
        // with them in the batch would hold them until the next datagram or the timeout.
        let before = batch.len();
        self.drain_stash(batch, stats);
        self.arm();
        self.reap(Some(batch), stats);
        let waited = batch.len() == before && self.stash.is_empty() && !timeout.is_zero();
        let submitted = if waited {
            let ts = Timespec::new().sec(timeout.as_secs()).nsec(timeout.subsec_nanos());
            let args = SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args)
        } else {
            self.ring.submit()
        };
        stats.uring_submits += 1;
        match submitted {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        self.reap(Some(batch), stats);
        if batch.len() > before {
            stats.recv_batches += 1;
        }
        Ok(())
    }

    fn add_flow(&mut self, id: u32, socket: UdpSocket) -> io::Result<()> {
        if u64::from(id) >= TAG_SEND - TAG_FLOW {
            return Err(io::Error::other("flow ids ran out"));
        }
        self.flows.push((id, socket, false));
        Ok(())
    }

    fn remove_flow(&mut self, id: u32) {
        let Some(at) = self.flows.iter().position(|f| f.0 == id) else { return };
        let (id, socket, armed) = self.flows.swap_remove(at);
        if !armed {
            return;
        }
        let sqe = opcode::AsyncCancel::new(TAG_FLOW + u64::from(id)).build().user_data(TAG_CANCEL);
        // SAFETY: a cancel refers to no memory. If the queue is full the receive runs on until the socket's
        // buffers are exhausted; the socket is kept until its last completion either way.
        let _ = unsafe { self.ring.submission().push(&sqe) };
        self.closing.push((id, socket));
    }

    fn send(&mut self, out: &Transmits, stats: &mut IoCounters) -> io::Result<()> {
        self.plan.plan(out, self.gso_segments);
        let mut run = 0;
        while run < self.plan.runs.len() {
            let end = (run + SEND_CHUNK).min(self.plan.runs.len());
            self.msgs.build(out, &self.plan, run..end);
            let fd = types::Fd(self.socket.as_raw_fd());
            for (k, hdr) in self.msgs.hdrs.iter().enumerate() {
                let sqe = opcode::SendMsg::new(fd, &hdr.msg_hdr).build().user_data(TAG_SEND + (run + k) as u64);
                // SAFETY: the message and the datagrams it points at stay alive until its completion, which this
                // function waits for.
                if unsafe { self.ring.submission().push(&sqe) }.is_err() {
                    self.ring.submit()?;
                    stats.uring_submits += 1;
                    // SAFETY: as above; the queue has room after the submit.
                    unsafe { self.ring.submission().push(&sqe) }
                        .map_err(|_| io::Error::other("io_uring submission queue stays full"))?;
                }
            }
            let mut pending = end - run;
            stats.send_batches += 1;
            while pending > 0 {
                match self.ring.submit_and_wait(1) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted || e.raw_os_error() == Some(libc::EBUSY) => {}
                    Err(e) => return Err(e),
                }
                stats.uring_submits += 1;
                pending -= self.reap(None, stats).min(pending);
            }
            run = end;
        }
        Ok(())
    }
}

/// The segment size of a GRO buffer, from its `UDP_GRO` control message.
fn gro_segment(control: &[u8]) -> Option<usize> {
    let data = control_message(control, libc::SOL_UDP, libc::UDP_GRO)?;
    let size = i32::from_ne_bytes(data.get(..4)?.try_into().ok()?);
    usize::try_from(size).ok().filter(|s| *s > 0)
}

/// The data of the first control message of `level` and `kind` in the control bytes the kernel wrote after a
/// received message (as `recvmsg`'s `msg_control`, or a multishot receive's buffer).
pub fn control_message(control: &[u8], level: i32, kind: i32) -> Option<&[u8]> {
    /// `struct cmsghdr`: a `size_t` length, then level and type.
    const HDR: usize = size_of::<usize>() + 8;
    let mut at = 0;
    while at + HDR <= control.len() {
        let len = usize::from_ne_bytes(control[at..at + size_of::<usize>()].try_into().ok()?);
        let (l, k) = (
            i32::from_ne_bytes(control[at + 8..at + 12].try_into().ok()?),
            i32::from_ne_bytes(control[at + 12..at + 16].try_into().ok()?),
        );
        if len < HDR || at + len > control.len() {
            return None;
        }
        if (l, k) == (level, kind) {
            return Some(&control[at + HDR..at + len]);
        }
        at += len.next_multiple_of(size_of::<usize>());
    }
    None
}

/// The source address of a received datagram, from the `sockaddr` the kernel wrote.
pub fn parse_sockaddr(name: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes(name.get(0..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(name.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = name.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flow = u32::from_be_bytes(name.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = name.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(name.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_parse_from_the_kernels_layout() {
        let v4 = socket2::SockAddr::from(SocketAddr::from(([10, 1, 2, 3], 4567)));
        // SAFETY: reads the bytes of a valid address.
        let bytes = unsafe { std::slice::from_raw_parts(v4.as_ptr().cast::<u8>(), v4.len() as usize) };
        assert_eq!(parse_sockaddr(bytes), Some(SocketAddr::from(([10, 1, 2, 3], 4567))));
        let addr: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let v6 = socket2::SockAddr::from(addr);
        // SAFETY: as above.
        let bytes = unsafe { std::slice::from_raw_parts(v6.as_ptr().cast::<u8>(), v6.len() as usize) };
        assert_eq!(parse_sockaddr(bytes), Some(addr));
        assert_eq!(parse_sockaddr(&[0; 3]), None);
    }

    #[test]
    fn a_datagram_collected_while_sends_complete_is_returned_without_waiting() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        // SAFETY: creates a new eventfd; closed at the end.
        let waker = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        assert!(waker >= 0);
        let mut io = UringIo::new(socket, waker, false, false, 8).unwrap();
        let mut stats = IoCounters::default();
        let mut batch = RecvBatch::new(8, super::super::slot_len(false));
        io.recv(&mut batch, Duration::ZERO, &mut stats).unwrap();
        assert_eq!(batch.len(), 0);

        peer.send_to(b"early", addr).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // The send waits for its completion and so also collects the receive's, which it must keep for `recv`.
        let mut out = Transmits::with_capacity(1);
        out.slot().unwrap()[..4].copy_from_slice(b"pong");
        out.commit(peer.local_addr().unwrap(), 4);
        io.send(&out, &mut stats).unwrap();

        let started = std::time::Instant::now();
        io.recv(&mut batch, Duration::from_secs(5), &mut stats).unwrap();
        let waited = started.elapsed();
        assert_eq!(batch.len(), 1, "the datagram is returned");
        assert!(waited < Duration::from_secs(2), "recv held a received datagram for {waited:?}");
        drop(io);
        // SAFETY: closes the eventfd made above, after the ring that read it.
        unsafe { libc::close(waker) };
    }

    #[test]
    fn the_gro_segment_size_is_read_from_its_control_message() {
        let mut control = vec![0u8; 24];
        control[..8].copy_from_slice(&20usize.to_ne_bytes());
        control[8..12].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        control[12..16].copy_from_slice(&libc::UDP_GRO.to_ne_bytes());
        control[16..20].copy_from_slice(&1200i32.to_ne_bytes());
        assert_eq!(gro_segment(&control), Some(1200));
        assert_eq!(gro_segment(&control[..10]), None);
    }
}
