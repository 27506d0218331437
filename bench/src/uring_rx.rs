//! The media engine's io_uring receive path: a multishot `recvmsg` stays armed on every participant socket a
//! thread owns, all drawing from one ring of provided buffers, so a tick's datagrams, spread over hundreds of
//! subscriber sockets, are collected by one `io_uring_enter` instead of a `recvmmsg` per socket (the server sends
//! a packet's copies in one `sendmmsg`; without this the generator paid a system call per copy received). Each
//! datagram comes with its kernel receive timestamp (`SO_TIMESTAMPNS`).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::types::{RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, types};
use sluice_dataplane::runtime::BufRing;

/// Provided buffers per thread (a power of two): a tick's datagrams for every socket, with room to spare.
const BUFFERS: u16 = 4096;
const GROUP: u16 = 0;
/// Room for the control messages: an `SCM_TIMESTAMPNS` (a cmsghdr and a timespec), with slack.
const CONTROL_LEN: usize = 64;
/// Datagram bytes a buffer holds: above any packet the generator receives (GRO is off on this path).
const DATA_LEN: usize = 2048;
const TAG_CANCEL: u64 = u64::MAX;

/// Whether this kernel has what the path needs, and the run has not asked for the `recvmmsg` path
/// (`BENCH_GENERATOR_IO=mmsg`).
pub(crate) fn wanted() -> bool {
    std::env::var("BENCH_GENERATOR_IO").map_or(true, |v| v != "mmsg")
        && sluice_dataplane::runtime::uring_probe().is_ok()
}

/// One engine thread's ring. Made on that thread (single issuer).
pub(crate) struct RxRing {
    // Dropped first: the kernel stops using the buffers before they go.
    ring: IoUring,
    bufs: BufRing,
    hdr: Box<libc::msghdr>,
}

/// One receive completion, copied out of the queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completion {
    /// The socket's tag (its slot), or `None` for a cancellation's own completion.
    pub(crate) tag: Option<usize>,
    pub(crate) result: i32,
    pub(crate) flags: u32,
}

impl Completion {
    /// Whether the socket's receive is still armed.
    pub(crate) fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
}

impl RxRing {
    pub(crate) fn new() -> io::Result<RxRing> {
        let ring = IoUring::builder()
            .setup_cqsize(u32::from(BUFFERS) * 2)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(1024)?;
        let fill = 16 + CONTROL_LEN + DATA_LEN;
        let bufs = BufRing::new(&ring, BUFFERS, fill, GROUP, fill)?;
        // SAFETY: an all-zero msghdr; only the name and control lengths matter for multishot recvmsg (no name).
        let mut hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        hdr.msg_controllen = CONTROL_LEN as _;
        Ok(RxRing { ring, bufs, hdr })
    }

    fn push(&mut self, sqe: &io_uring::squeue::Entry) -> io::Result<()> {
        // SAFETY: the entries pushed here point at the boxed msghdr, which lives as long as the ring, or at none.
        if unsafe { self.ring.submission().push(sqe) }.is_ok() {
            return Ok(());
        }
        self.ring.submit()?;
        // SAFETY: as above.
        unsafe { self.ring.submission().push(sqe) }.map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    /// Arms the receive of socket `fd`, whose completions carry `tag`. GRO must be off on it.
    pub(crate) fn arm(&mut self, fd: RawFd, tag: usize) -> io::Result<()> {
        let sqe = opcode::RecvMsgMulti::new(types::Fd(fd), &*self.hdr, GROUP).build().user_data(tag as u64);
        self.push(&sqe)
    }

    /// Cancels the receive tagged `tag`; its socket must stay open until its last completion (`more()` false).
    pub(crate) fn cancel(&mut self, tag: usize) -> io::Result<()> {
        self.push(&opcode::AsyncCancel::new(tag as u64).build().user_data(TAG_CANCEL))
    }

    /// Submits what is queued, runs the receives the kernel deferred, and waits up to `timeout` until `want`
    /// completions are ready.
    pub(crate) fn enter(&mut self, want: usize, timeout: Duration) -> io::Result<()> {
        // With DEFER_TASKRUN the kernel copies arrived datagrams into buffers only inside this call and wakes
        // the thread only once `want` of them are ready: a tick's datagrams cost one wake-up, not one each.
        let ts = Timespec::new().sec(timeout.as_secs()).nsec(timeout.subsec_nanos());
        match self.ring.submitter().submit_with_args(want.max(1), &SubmitArgs::new().timespec(&ts)) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ETIME) || e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Enough completions that waiting for them is waiting for a busy tick's end, not for traffic.
    pub(crate) fn tick_want(&self) -> usize {
        usize::from(BUFFERS) / 2
    }

    /// Copies up to `out.len()` completions out of the queue.
    pub(crate) fn completions(&mut self, out: &mut [Completion]) -> usize {
        let mut n = 0;
        for cqe in self.ring.completion().take(out.len()) {
            let tag = (cqe.user_data() != TAG_CANCEL).then_some(cqe.user_data() as usize);
            out[n] = Completion { tag, result: cqe.result(), flags: cqe.flags() };
            n += 1;
        }
        n
    }

    /// The datagram of a receive completion with its kernel timestamp, handed to `f`; its buffer goes back to
    /// the kernel after.
    pub(crate) fn take(&mut self, c: &Completion, f: impl FnOnce(&mut [u8], Option<Duration>)) {
        let Some(bid) = cqueue::buffer_select(c.flags) else { return };
        if c.result > 0 {
            let located = {
                let buffer = &self.bufs.buffer(bid)[..c.result as usize];
                RecvMsgOut::parse(buffer, &self.hdr).ok().filter(|m| !m.is_payload_truncated()).map(|m| {
                    let payload = m.payload_data();
                    let start = payload.as_ptr() as usize - buffer.as_ptr() as usize;
                    (start..start + payload.len(), timestamp(m.control_data()))
                })
            };
            if let Some((data, stamp)) = located {
                f(&mut self.bufs.buffer_mut(bid)[data], stamp);
            }
        }
        self.bufs.give(bid);
    }

    /// Makes the buffers given back visible to the kernel.
    pub(crate) fn publish(&self) {
        self.bufs.publish();
    }
}

/// The `SCM_TIMESTAMPNS` of a received datagram's control messages.
fn timestamp(control: &[u8]) -> Option<Duration> {
    let ts = sluice_dataplane::runtime::control_message(control, libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS)?;
    let secs = i64::from_ne_bytes(ts.get(..8)?.try_into().ok()?);
    let nanos = i64::from_ne_bytes(ts.get(8..16)?.try_into().ok()?);
    Some(Duration::new(u64::try_from(secs).ok()?, u32::try_from(nanos).ok()?))
}

/// Turns GRO off on `fd`: this path's buffers hold one datagram each.
pub(crate) fn gro_off(fd: RawFd) -> io::Result<()> {
    let off: libc::c_int = 0;
    // SAFETY: setsockopt reads one c_int from a live local.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&off as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn datagrams_on_many_sockets_arrive_with_their_tags_and_timestamps() {
        let mut ring = RxRing::new().unwrap();
        let sockets: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        for (tag, s) in sockets.iter().enumerate() {
            crate::clock::enable_timestamps(s).unwrap();
            ring.arm(s.as_raw_fd(), tag).unwrap();
        }
        ring.enter(0, Duration::ZERO).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        for (tag, s) in sockets.iter().enumerate() {
            sender.send_to(&[tag as u8; 100], s.local_addr().unwrap()).unwrap();
        }
        let mut seen = Vec::new();
        let mut out = [Completion { tag: None, result: 0, flags: 0 }; 16];
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.len() < 3 && std::time::Instant::now() < deadline {
            ring.enter(1, Duration::from_millis(100)).unwrap();
            let n = ring.completions(&mut out);
            for c in &out[..n] {
                assert!(c.more(), "the receive stays armed");
                ring.take(c, |data, stamp| seen.push((c.tag, data.to_vec(), stamp.is_some())));
            }
            ring.publish();
        }
        seen.sort_by_key(|s| s.0);
        let expected: Vec<_> = (0..3).map(|t| (Some(t), vec![t as u8; 100], true)).collect();
        assert_eq!(seen, expected);
        // A cancelled receive ends (its last completion without `more`), after which its socket may close.
        ring.cancel(1).unwrap();
        ring.enter(1, Duration::from_millis(500)).unwrap();
        let n = ring.completions(&mut out);
        assert!(out[..n].iter().any(|c| c.tag == Some(1) && !c.more()), "{:?}", &out[..n]);
    }
}
