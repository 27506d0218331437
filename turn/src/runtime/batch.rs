//! Batched UDP I/O with `recvmmsg`/`sendmmsg`: one system call moves a whole batch. The arrays the kernel
//! reads and writes are allocated once, at start-up, and reused for every call.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 32;
/// Bytes per datagram slot: above any MTU, so a datagram is never truncated on a normal link.
pub const SLOT_BYTES: usize = 2048;

/// Receive slots, each with `headroom` bytes kept free before the datagram (for the header `handle_peer`
/// writes in front of the data) and `tailroom` after it.
pub struct RecvBatch {
    bufs: Box<[[u8; SLOT_BYTES]]>,
    iovecs: Box<[libc::iovec]>,
    names: Box<[libc::sockaddr_storage]>,
    headers: Box<[libc::mmsghdr]>,
    headroom: usize,
    /// Datagrams in the last receive.
    filled: usize,
}

// SAFETY: the raw pointers inside the headers point into this struct's own boxes, which move with it.
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch").field("filled", &self.filled).finish_non_exhaustive()
    }
}

impl RecvBatch {
    pub fn new(headroom: usize, tailroom: usize) -> RecvBatch {
        let mut bufs = vec![[0u8; SLOT_BYTES]; BATCH].into_boxed_slice();
        let mut names: Box<[libc::sockaddr_storage]> =
            (0..BATCH).map(|_| unsafe { MaybeUninit::zeroed().assume_init() }).collect();
        let mut iovecs: Box<[libc::iovec]> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b[headroom..].as_mut_ptr().cast(),
                iov_len: SLOT_BYTES - headroom - tailroom,
            })
            .collect();
        let headers: Box<[libc::mmsghdr]> = (0..BATCH)
            .map(|i| {
                // SAFETY: an all-zero msghdr is valid; the pointers are set right after.
                let mut h: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
                h.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
                h.msg_hdr.msg_iov = &mut iovecs[i];
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        RecvBatch { bufs, iovecs, names, headers, headroom, filled: 0 }
    }

    /// Receives up to `BATCH` datagrams without blocking; `Ok(0)` when none is waiting.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for h in self.headers.iter_mut() {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            h.msg_len = 0;
        }
        let _ = &self.iovecs;
        // SAFETY: the headers point at this batch's buffers, names and iovecs, which outlive the call.
        let n = unsafe {
            libc::recvmmsg(fd, self.headers.as_mut_ptr(), BATCH as u32, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            self.filled = 0;
            return if e.kind() == io::ErrorKind::WouldBlock { Ok(0) } else { Err(e) };
        }
        self.filled = n as usize;
        Ok(self.filled)
    }

    /// Datagram `i` of the last receive: its source, its whole slot, and where its bytes are in the slot.
    pub fn datagram(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8; SLOT_BYTES], std::ops::Range<usize>)> {
        let h = &self.headers[i];
        let len = h.msg_len as usize;
        let addr = socket_addr(&self.names[i])?;
        Some((addr, &mut self.bufs[i], self.headroom..self.headroom + len))
    }
}

/// The address the kernel wrote into a `sockaddr_storage`.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and aligned enough for.
            let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((u32::from_be(a.sin_addr.s_addr).to_be_bytes(), u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Outgoing datagrams for one socket, flushed with `sendmmsg`.
pub struct SendBatch {
    bufs: Box<[[u8; SLOT_BYTES]]>,
    lens: [usize; BATCH],
    dests: Box<[SockAddr]>,
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
    queued: usize,
}

// SAFETY: the pointers are rebuilt from this struct's own boxes right before each call.
unsafe impl Send for SendBatch {}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch").field("queued", &self.queued).finish_non_exhaustive()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            bufs: vec![[0u8; SLOT_BYTES]; BATCH].into_boxed_slice(),
            lens: [0; BATCH],
            dests: (0..BATCH).map(|_| SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0)))).collect(),
            iovecs: (0..BATCH).map(|_| libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }).collect(),
            // SAFETY: an all-zero mmsghdr is valid.
            headers: (0..BATCH).map(|_| unsafe { MaybeUninit::zeroed().assume_init() }).collect(),
            queued: 0,
        }
    }
}

impl SendBatch {
    pub fn is_full(&self) -> bool {
        self.queued == BATCH
    }

    /// The next free slot's buffer, to write a datagram into; `commit` queues it.
    pub fn slot(&mut self) -> &mut [u8; SLOT_BYTES] {
        &mut self.bufs[self.queued]
    }

    pub fn commit(&mut self, len: usize, dest: SocketAddr) {
        self.lens[self.queued] = len;
        self.dests[self.queued] = SockAddr::from(dest);
        self.queued += 1;
    }

    /// Queues a copy of `bytes`.
    pub fn push(&mut self, bytes: &[u8], dest: SocketAddr) {
        let len = bytes.len().min(SLOT_BYTES);
        self.slot()[..len].copy_from_slice(&bytes[..len]);
        self.commit(len, dest);
    }

    /// Sends everything queued; returns how many datagrams the socket would not take (dropped).
    pub fn flush(&mut self, fd: RawFd) -> usize {
        let (mut sent, mut failed) = (0, 0);
        let total = self.queued;
        for i in 0..total {
            self.iovecs[i] = libc::iovec { iov_base: self.bufs[i].as_mut_ptr().cast(), iov_len: self.lens[i] };
            let h = &mut self.headers[i];
            h.msg_hdr.msg_name = self.dests[i].as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = self.dests[i].len();
            h.msg_hdr.msg_iov = &mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
        }
        while sent < total {
            // SAFETY: headers[sent..total] point at live buffers, iovecs and addresses of this batch.
            let n = unsafe {
                libc::sendmmsg(fd, self.headers[sent..].as_mut_ptr(), (total - sent) as u32, libc::MSG_DONTWAIT)
            };
            if n <= 0 {
                let e = io::Error::last_os_error();
                if n < 0 && e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // A full buffer or an unreachable destination: the rest are dropped, but one bad destination
                // must not cost the others, so skip it and go on.
                if n < 0 && e.kind() != io::ErrorKind::WouldBlock {
                    sent += 1;
                    failed += 1;
                    continue;
                }
                break;
            }
            sent += n as usize;
        }
        self.queued = 0;
        failed + (total - sent.min(total))
    }
}
