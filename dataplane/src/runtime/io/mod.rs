//! The two I/O paths a worker runs on, behind one small trait: io_uring (multishot receive into a provided-buffer
//! ring, batched sends submitted once per turn) and the portable fallback (`recvmmsg` through quinn-udp,
//! `sendmmsg`). Both send runs of datagrams to one destination as one GSO buffer when the kernel offers it.

mod gso;
mod mmsg;
mod uring;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::stats::IoCounters;
use super::{RuntimeConfig, RuntimeError};
use crate::core::Transmits;

pub(super) use mmsg::MmsgIo;
pub(super) use uring::UringIo;
pub use uring::{BufRing, control_message, parse_sockaddr, probe as uring_probe};

/// The I/O path asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// io_uring where the kernel allows it (containers often forbid it), else `recvmmsg`/`sendmmsg`.
    #[default]
    Auto,
    Uring,
    Mmsg,
}

impl std::str::FromStr for IoMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(IoMode::Auto),
            "uring" | "io_uring" => Ok(IoMode::Uring),
            "mmsg" => Ok(IoMode::Mmsg),
            other => Err(format!("unknown I/O path {other:?}: expected auto, uring or mmsg")),
        }
    }
}

/// The I/O path in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    Uring,
    Mmsg,
}

impl IoKind {
    pub fn label(self) -> &'static str {
        match self {
            IoKind::Uring => "uring",
            IoKind::Mmsg => "mmsg",
        }
    }
}

pub(super) fn choose(mode: IoMode) -> Result<IoKind, RuntimeError> {
    match mode {
        IoMode::Mmsg => Ok(IoKind::Mmsg),
        IoMode::Uring => uring::probe().map(|()| IoKind::Uring).map_err(RuntimeError::UringUnavailable),
        IoMode::Auto => Ok(if uring::probe().is_ok() { IoKind::Uring } else { IoKind::Mmsg }),
    }
}

/// A worker's UDP socket: non-blocking, with big buffers; `reuse_port` for single-port mode.
pub(crate) fn bind(addr: SocketAddr, config: &RuntimeConfig, reuse_port: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Also IPv4 when bound to `[::]`.
        socket.set_only_v6(false)?;
    }
    if reuse_port {
        set_int(&socket, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    socket.set_nonblocking(true)?;
    set_buffer(&socket, libc::SO_RCVBUFFORCE, config.socket_buffer_bytes, |s, n| s.set_recv_buffer_size(n));
    set_buffer(&socket, libc::SO_SNDBUFFORCE, config.socket_buffer_bytes, |s, n| s.set_send_buffer_size(n));
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn set_int(socket: &Socket, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads one c_int from a live local.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// A socket on the workers' shared address, connected to one browser: the kernel delivers that browser's
/// datagrams to it rather than to any of the shared sockets (single-port mode).
pub(crate) fn bind_flow(local: SocketAddr, peer: SocketAddr, config: &RuntimeConfig) -> io::Result<UdpSocket> {
    let socket = bind(local, config, true)?;
    socket.connect(peer)?;
    Ok(socket)
}

/// Asks for `bytes` of socket buffer: forced past `net.core.*mem_max` where we may (root), else as much as the
/// limit allows.
fn set_buffer(socket: &Socket, force: libc::c_int, bytes: usize, plain: impl Fn(&Socket, usize) -> io::Result<()>) {
    use std::os::fd::AsRawFd;
    let value = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt reads one c_int from a live local.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            force,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced != 0 {
        let _ = plain(socket, bytes);
    }
}

/// Received datagrams, in buffers the worker owns. With GRO one slot may hold several datagrams of `stride`
/// bytes each (the last may be shorter).
#[derive(Debug)]
pub(super) struct RecvBatch {
    data: Box<[u8]>,
    slot_len: usize,
    meta: Vec<RecvMeta>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct RecvMeta {
    pub(super) source: SocketAddr,
    pub(super) len: usize,
    pub(super) stride: usize,
}

impl RecvBatch {
    pub(super) fn new(slots: usize, slot_len: usize) -> RecvBatch {
        RecvBatch { data: vec![0u8; slots * slot_len].into_boxed_slice(), slot_len, meta: Vec::with_capacity(slots) }
    }

    pub(super) fn capacity(&self) -> usize {
        self.meta.capacity()
    }

    pub(super) fn len(&self) -> usize {
        self.meta.len()
    }

    pub(super) fn clear(&mut self) {
        self.meta.clear();
    }

    /// Slot `i`'s meta and bytes.
    pub(super) fn slot_mut(&mut self, i: usize) -> (RecvMeta, &mut [u8]) {
        let meta = self.meta[i];
        let at = i * self.slot_len;
        (meta, &mut self.data[at..at + meta.len])
    }

    /// Copies one received datagram (or GRO buffer) into the next slot; false when the batch is full or the
    /// datagram does not fit.
    pub(super) fn push(&mut self, source: SocketAddr, bytes: &[u8], stride: usize) -> bool {
        if self.meta.len() == self.capacity() || bytes.len() > self.slot_len {
            return false;
        }
        let at = self.meta.len() * self.slot_len;
        self.data[at..at + bytes.len()].copy_from_slice(bytes);
        self.meta.push(RecvMeta { source, len: bytes.len(), stride: if stride == 0 { bytes.len() } else { stride } });
        true
    }
}

/// One I/O path. The worker calls `recv` once per loop turn and `send` whenever its transmit batch should go.
pub(super) trait DatagramIo {
    /// Fills `batch` with what has arrived, first waiting up to `timeout` when nothing has (woken early by the
    /// worker's waker).
    fn recv(&mut self, batch: &mut RecvBatch, timeout: Duration, stats: &mut IoCounters) -> io::Result<()>;

    /// Sends every datagram of `out`; what the socket refuses is counted in `stats.send_failed`.
    fn send(&mut self, out: &Transmits, stats: &mut IoCounters) -> io::Result<()>;

    /// Single-port mode: also receive from `socket` (connected to one browser's address); `recv` returns its
    /// datagrams like the main socket's. Sends still go out of the main socket (same local port).
    fn add_flow(&mut self, id: u32, socket: UdpSocket) -> io::Result<()>;

    fn remove_flow(&mut self, id: u32);
}

/// Bytes of one receive slot: one datagram, or a GRO buffer of up to 64 KB.
pub(super) fn slot_len(gro: bool) -> usize {
    if gro { 65_536 } else { 2_048 }
}
