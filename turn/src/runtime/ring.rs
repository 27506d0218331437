//! The relay's io_uring path. Multishot `recvmsg` stays armed on the UDP listener and on every relay socket, all
//! drawing from one ring of provided buffers, so a datagram costs no system call to receive, whichever of a
//! worker's thousands of sockets it arrives on. Sends from relay sockets to peers (one socket each, so `sendmmsg`
//! cannot batch them) are queued in fixed slots and submitted together with the next wait: one `io_uring_enter`
//! per loop turn instead of a `sendto` per packet and a `recvmmsg` per ready socket. The epoll set (TCP, TLS and
//! the waker) is watched by a multishot poll on its descriptor, so one wait covers everything.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::types::{RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, types};
use sluice_dataplane::runtime::{BufRing, parse_sockaddr};
use socket2::SockAddr;

use super::batch::SLOT_BYTES;
use crate::server::{PEER_HEADROOM, PEER_TAILROOM, RelayId};

pub(super) const TAG_CLIENT: u64 = 1;
pub(super) const TAG_EPOLL: u64 = 2;
pub(super) const TAG_CANCEL: u64 = 3;
/// A relay socket's receive carries `TAG_RELAY + its id`.
pub(super) const TAG_RELAY: u64 = 1 << 32;
/// A queued send carries `TAG_SEND + its slot`.
pub(super) const TAG_SEND: u64 = 1 << 48;

const SQ_ENTRIES: u32 = 1024;
/// Every provided buffer's completion, a full set of sends and the armed receives' ends, with room to spare.
const CQ_ENTRIES: u32 = 8192;
/// Provided receive buffers (a power of two), shared by the listener and every relay socket.
const RECV_BUFFERS: u16 = 512;
const RECV_BUFFER_GROUP: u16 = 0;
/// `io_uring_recvmsg_out` and a `sockaddr_storage` come before the datagram in each buffer: more than the
/// `PEER_HEADROOM` the ChannelData or Data indication header is written into.
const RECV_PREFIX: usize = 16 + size_of::<libc::sockaddr_storage>();
/// Datagram bytes a receive buffer holds: above any MTU.
const RECV_DATA: usize = 2048;
/// The largest peer datagram relayed: with the header and padding written around it, it must fit the client's
/// send slot (as on the epoll path, whose receive slots leave the same room).
pub(super) const PEER_DATA_MAX: usize = SLOT_BYTES - PEER_HEADROOM - PEER_TAILROOM;
/// Kept free after the kernel's part of a buffer, for the padding `handle_peer` adds (`PEER_TAILROOM`).
const RECV_TAILROOM: usize = 8;
/// Send slots in flight at once, and the bytes each holds.
const SEND_SLOTS: usize = 512;
const SEND_SLOT_BYTES: usize = 2048;

/// One worker's ring. Made on the worker's own thread (it is single-issuer).
pub(super) struct Ring {
    // Dropped first: the kernel stops using the buffers before they go.
    ring: IoUring,
    pub(super) bufs: BufRing,
    /// Tells the kernel the room each buffer gives the source address (and no control messages).
    recv_hdr: Box<libc::msghdr>,
    epoll: RawFd,
    epoll_armed: bool,
    listener: Option<RawFd>,
    listener_armed: bool,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("listener", &self.listener).finish_non_exhaustive()
    }
}

/// Where a received datagram is in its buffer, and where it came from.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub bid: u16,
    pub source: SocketAddr,
    pub data: std::ops::Range<usize>,
}

/// What one receive completion held.
#[derive(Debug)]
pub(super) enum Datagram {
    /// Nothing to look at (an error, or the end of an armed receive); `Some(bid)` is a buffer to give back.
    Nothing(Option<u16>),
    /// Too large for a buffer: dropped, its buffer to give back.
    Oversized(u16),
    Received(Received),
}

impl Ring {
    pub(super) fn new(epoll: RawFd, listener: Option<RawFd>) -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_single_issuer()
            .setup_coop_taskrun()
            // One bad entry must not leave the rest unsubmitted: `release_unarmed` closes sockets right after
            // the enter, trusting that every send naming them has gone in.
            .setup_submit_all()
            .build(SQ_ENTRIES)?;
        let fill = RECV_PREFIX + RECV_DATA;
        let bufs = BufRing::new(&ring, RECV_BUFFERS, fill + RECV_TAILROOM, RECV_BUFFER_GROUP, fill)?;
        // SAFETY: an all-zero msghdr; only the name and control lengths matter for multishot recvmsg.
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        Ok(Ring { ring, bufs, recv_hdr, epoll, epoll_armed: false, listener, listener_armed: false })
    }

    fn push(&mut self, sqe: &io_uring::squeue::Entry) -> io::Result<()> {
        // SAFETY: every entry pushed here points only at memory that outlives its completion (the boxed msghdr,
        // the send slots, which are freed on completion) or at none.
        if unsafe { self.ring.submission().push(sqe) }.is_ok() {
            return Ok(());
        }
        self.ring.submit()?;
        // SAFETY: as above.
        unsafe { self.ring.submission().push(sqe) }.map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    fn recv_entry(&self, fd: RawFd, tag: u64) -> io_uring::squeue::Entry {
        opcode::RecvMsgMulti::new(types::Fd(fd), &*self.recv_hdr, RECV_BUFFER_GROUP).build().user_data(tag)
    }

    /// Arms what is not armed: the listener's and the epoll set's watches, the relay sockets opened (or whose
    /// receive ended) since the last turn, and cancels the receives of closed ones.
    pub(super) fn arm(&mut self, relays: &mut RingRelays, fds: impl Fn(RelayId) -> Option<RawFd>) -> io::Result<()> {
        if !self.epoll_armed {
            let sqe = opcode::PollAdd::new(types::Fd(self.epoll), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(TAG_EPOLL);
            self.push(&sqe)?;
            self.epoll_armed = true;
        }
        if let Some(fd) = self.listener
            && !self.listener_armed
        {
            self.push(&self.recv_entry(fd, TAG_CLIENT))?;
            self.listener_armed = true;
        }
        while let Some(id) = relays.to_arm.pop() {
            let Some(fd) = fds(id) else { continue };
            if relays.armed[id as usize] {
                continue;
            }
            if let Err(e) = self.push(&self.recv_entry(fd, TAG_RELAY + u64::from(id))) {
                relays.to_arm.push(id);
                return Err(e);
            }
            relays.armed[id as usize] = true;
        }
        for closing in relays.closing.iter_mut().filter(|c| c.armed && !c.cancelled) {
            let sqe = opcode::AsyncCancel::new(TAG_RELAY + u64::from(closing.id)).build().user_data(TAG_CANCEL);
            self.push(&sqe)?;
            closing.cancelled = true;
        }
        Ok(())
    }

    /// Queues the waiting sends' entries.
    /// Queues the waiting sends' entries, in the order they were queued; what could not be pushed waits.
    pub(super) fn push_sends(&mut self, sends: &mut PeerSends) -> io::Result<()> {
        let mut pushed = 0;
        let mut result = Ok(());
        for &slot in &sends.queued {
            let s = &sends.slots[usize::from(slot)];
            let sqe = opcode::SendMsg::new(types::Fd(s.fd), &s.hdr).build().user_data(TAG_SEND + u64::from(slot));
            result = self.push(&sqe);
            if result.is_err() {
                break;
            }
            pushed += 1;
        }
        sends.queued.drain(..pushed);
        result
    }

    /// Submits what is queued and waits up to `wait` for a completion (not at all when `wait` is zero).
    pub(super) fn enter(&mut self, wait: Duration) -> io::Result<()> {
        let result = if wait.is_zero() {
            self.ring.submit()
        } else {
            let ts = Timespec::new().sec(wait.as_secs()).nsec(wait.subsec_nanos());
            self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts))
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ETIME) || e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Copies up to `out.len()` completions out of the queue: (tag, result, flags).
    pub(super) fn completions(&mut self, out: &mut [(u64, i32, u32)]) -> usize {
        let mut n = 0;
        for cqe in self.ring.completion().take(out.len()) {
            out[n] = (cqe.user_data(), cqe.result(), cqe.flags());
            n += 1;
        }
        n
    }

    /// The epoll watch or the listener's receive ended (the kernel ends a multishot request on errors and when
    /// buffers run out): armed again next turn.
    pub(super) fn ended(&mut self, tag: u64) {
        match tag {
            TAG_EPOLL => self.epoll_armed = false,
            TAG_CLIENT => self.listener_armed = false,
            _ => {}
        }
    }

    /// Reads a receive completion's buffer: the datagram's source and where its bytes are.
    pub(super) fn datagram(&self, result: i32, flags: u32) -> Datagram {
        let Some(bid) = cqueue::buffer_select(flags) else { return Datagram::Nothing(None) };
        if result <= 0 {
            return Datagram::Nothing(Some(bid));
        }
        let buffer = &self.bufs.buffer(bid)[..result as usize];
        let Ok(msg) = RecvMsgOut::parse(buffer, &self.recv_hdr) else { return Datagram::Nothing(Some(bid)) };
        if msg.is_payload_truncated() {
            return Datagram::Oversized(bid);
        }
        let Some(source) = parse_sockaddr(msg.name_data()) else { return Datagram::Nothing(Some(bid)) };
        let payload = msg.payload_data();
        let start = payload.as_ptr() as usize - buffer.as_ptr() as usize;
        Datagram::Received(Received { bid, source, data: start..start + payload.len() })
    }
}

/// A relay socket closed while its receive was armed: kept open, and its id unused, until that receive's last
/// completion, so no completion can reach a new allocation that took the id.
#[derive(Debug)]
pub(super) struct Closing {
    pub id: RelayId,
    /// Held, not used: closing it is what waits.
    pub _socket: mio::net::UdpSocket,
    pub armed: bool,
    pub cancelled: bool,
}

/// The relay sockets' side of the ring: which are armed, which wait to be, which are closing, and the sends.
#[derive(Debug, Default)]
pub(super) struct RingRelays {
    /// By relay id: whether a multishot receive is live on it.
    pub armed: Vec<bool>,
    pub to_arm: Vec<RelayId>,
    pub closing: Vec<Closing>,
    pub sends: PeerSends,
}

impl RingRelays {
    pub(super) fn opened(&mut self, id: RelayId) {
        let at = id as usize;
        if self.armed.len() <= at {
            self.armed.resize(at + 1, false);
        }
        self.armed[at] = false;
        self.to_arm.push(id);
    }

    pub(super) fn closed(&mut self, id: RelayId, socket: mio::net::UdpSocket) {
        let armed = std::mem::replace(&mut self.armed[id as usize], false);
        self.closing.push(Closing { id, _socket: socket, armed, cancelled: false });
    }

    /// A relay's receive ended. A closed relay's socket and id are let go after the next submission
    /// (`release_unarmed`: a send queued before the close still names its descriptor); an open relay's receive
    /// is armed again.
    pub(super) fn ended(&mut self, id: RelayId) {
        if let Some(closing) = self.closing.iter_mut().find(|c| c.id == id) {
            closing.armed = false;
            return;
        }
        if let Some(armed) = self.armed.get_mut(id as usize) {
            *armed = false;
            self.to_arm.push(id);
        }
    }

    /// Closed relays with no armed receive: free once a submission has passed, since sends queued before the
    /// close named their descriptor. Their ids go into `free`.
    pub(super) fn release_unarmed(&mut self, free: &mut Vec<RelayId>) {
        self.closing.retain(|c| {
            if c.armed {
                return true;
            }
            free.push(c.id);
            false
        });
    }
}

/// Sends from relay sockets, each in a slot that stays put until its completion.
pub(super) struct PeerSends {
    slots: Box<[SendSlot]>,
    free: Vec<u16>,
    queued: Vec<u16>,
}

struct SendSlot {
    data: [u8; SEND_SLOT_BYTES],
    name: SockAddr,
    iov: libc::iovec,
    hdr: libc::msghdr,
    fd: RawFd,
}

// SAFETY: the raw pointers inside a slot point into the same slot, which never moves (boxed slice), and the
// sends are only touched by the worker thread that owns them.
unsafe impl Send for PeerSends {}

impl std::fmt::Debug for PeerSends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSends").field("free", &self.free.len()).field("queued", &self.queued.len()).finish()
    }
}

impl Default for PeerSends {
    fn default() -> Self {
        let slots = (0..SEND_SLOTS)
            .map(|_| SendSlot {
                data: [0; SEND_SLOT_BYTES],
                name: SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))),
                iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
                // SAFETY: an all-zero msghdr is valid; filled before each send.
                hdr: unsafe { std::mem::zeroed() },
                fd: -1,
            })
            .collect();
        PeerSends { slots, free: (0..SEND_SLOTS as u16).rev().collect(), queued: Vec::with_capacity(SEND_SLOTS) }
    }
}

/// Whether a send was queued.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Queued {
    Yes,
    /// Every slot is in flight.
    Full,
    /// Larger than a slot: the caller sends it itself.
    TooLarge,
}

impl PeerSends {
    pub(super) fn queue(&mut self, fd: RawFd, bytes: &[u8], peer: SocketAddr) -> Queued {
        if bytes.len() > SEND_SLOT_BYTES {
            return Queued::TooLarge;
        }
        let Some(index) = self.free.pop() else { return Queued::Full };
        let slot = &mut self.slots[usize::from(index)];
        slot.data[..bytes.len()].copy_from_slice(bytes);
        slot.name = SockAddr::from(peer);
        slot.iov = libc::iovec { iov_base: slot.data.as_mut_ptr().cast(), iov_len: bytes.len() };
        slot.hdr.msg_name = slot.name.as_ptr() as *mut libc::c_void;
        slot.hdr.msg_namelen = slot.name.len();
        slot.hdr.msg_iov = &mut slot.iov;
        slot.hdr.msg_iovlen = 1;
        slot.fd = fd;
        self.queued.push(index);
        Queued::Yes
    }

    /// A send's completion: its slot is free again. False if the send failed.
    pub(super) fn done(&mut self, tag: u64, result: i32) -> bool {
        let index = (tag - TAG_SEND) as u16;
        if usize::from(index) < self.slots.len() {
            self.free.push(index);
        }
        result >= 0
    }

    /// Slots neither queued nor in flight.
    pub(super) fn room(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_slot_is_reused_only_after_its_completion() {
        let mut sends = PeerSends::default();
        let peer = SocketAddr::from(([192, 0, 2, 1], 9));
        for _ in 0..SEND_SLOTS {
            assert_eq!(sends.queue(3, b"x", peer), Queued::Yes);
        }
        assert_eq!(sends.queue(3, b"x", peer), Queued::Full);
        assert_eq!(sends.room(), 0);
        let first = sends.queued[0];
        assert!(sends.done(TAG_SEND + u64::from(first), 1));
        assert_eq!(sends.queue(3, b"y", peer), Queued::Yes);
        assert_eq!(sends.queue(3, &[0; SEND_SLOT_BYTES + 1], peer), Queued::TooLarge);
        assert!(!sends.done(TAG_SEND, -libc::EAGAIN), "a failed send is reported");
    }

    #[test]
    fn sends_are_submitted_in_the_order_they_were_queued() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut sends = PeerSends::default();
        for byte in [1u8, 2, 3] {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&sender);
            assert_eq!(sends.queue(fd, &[byte], receiver.local_addr().unwrap()), Queued::Yes);
        }
        let mut ring = Ring::new(-1, None).unwrap();
        ring.push_sends(&mut sends).unwrap();
        assert!(sends.queued.is_empty());
        ring.enter(Duration::ZERO).unwrap();
        let mut buf = [0u8; 8];
        let order: Vec<u8> = (0..3).map(|_| receiver.recv(&mut buf).map(|_| buf[0]).unwrap()).collect();
        assert_eq!(order, vec![1, 2, 3]);
    }

    #[test]
    fn a_closed_relays_id_waits_for_its_receives_end() {
        let mut relays = RingRelays::default();
        let socket = || mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        relays.opened(0);
        relays.opened(1);
        relays.armed[0] = true;
        relays.to_arm.clear();
        relays.closed(0, socket());
        relays.closed(1, socket());
        let mut free = Vec::new();
        relays.release_unarmed(&mut free);
        assert_eq!(free, vec![1], "never armed: free after a submission");
        relays.ended(0);
        assert_eq!(free, vec![1], "armed: kept until a submission after its receive's end");
        relays.release_unarmed(&mut free);
        assert_eq!(free, vec![1, 0]);
        relays.opened(2);
        relays.armed[2] = true;
        relays.to_arm.clear();
        relays.ended(2);
        assert_eq!(relays.to_arm, vec![2], "an open relay's receive is armed again");
    }
}
