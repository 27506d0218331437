//! Receive times for one-way delay. Each datagram's time is the kernel's receive timestamp (`SO_TIMESTAMPNS`,
//! Unix time), not the moment the generator read it: the media engine reads once per tick, and a receiver that
//! reads late must not add its own lateness to the server's delay. Every target (Sluice, Janus, bare-udp) is
//! measured this way.

use std::io;
use std::mem::{size_of, size_of_val};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Converts kernel receive timestamps to microseconds since the run's epoch, the time base of the send
/// timestamps carried in every payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RxClock {
    epoch: Instant,
    /// Unix time at `epoch`. The monotonic and real-time clocks are slewed alike, so this offset only moves if
    /// the real-time clock is stepped during the run.
    unix_at_epoch: Duration,
}

impl RxClock {
    pub(crate) fn new(epoch: Instant) -> RxClock {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        RxClock { epoch, unix_at_epoch: unix.saturating_sub(epoch.elapsed()) }
    }

    /// When a datagram stamped `stamp` arrived, in microseconds since the epoch; now, without a stamp.
    pub(crate) fn received_us(&self, stamp: Option<Duration>) -> u64 {
        match stamp {
            Some(at) => at.saturating_sub(self.unix_at_epoch).as_micros() as u64,
            None => self.epoch.elapsed().as_micros() as u64,
        }
    }
}

/// Asks the kernel to stamp every datagram `socket` receives. The first socket on the machine to ask turns
/// arrival stamping on a moment later (from a work queue); datagrams before that are stamped when read. The
/// bench's sockets ask when they are made, seconds before media starts.
pub(crate) fn enable_timestamps(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from a live local.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Waits for one datagram: its length, source and kernel receive timestamp (if the socket has them on).
pub(crate) async fn recv_stamped(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<Duration>)> {
    loop {
        socket.readable().await?;
        match socket.try_io(Interest::READABLE, || recvmsg_stamped(socket.as_raw_fd(), buf)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

fn recvmsg_stamped(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<Duration>)> {
    let mut name = socket2::SockAddrStorage::zeroed();
    let mut control = [0u64; 8];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_name = (&mut name as *mut socket2::SockAddrStorage).cast();
    hdr.msg_namelen = name.size_of();
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = size_of_val(&control) as _;
    // SAFETY: `hdr` points at live buffers of the lengths it states.
    let n = unsafe { libc::recvmsg(fd, &mut hdr, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel wrote `msg_namelen` bytes of a socket address into `name`.
    let source = unsafe { socket2::SockAddr::new(name, hdr.msg_namelen) }
        .as_socket()
        .ok_or_else(|| io::Error::other("a datagram from a non-IP address"))?;
    Ok((n as usize, source, timestamp(&hdr)))
}

/// The `SCM_TIMESTAMPNS` control message of a received message, if any.
fn timestamp(hdr: &libc::msghdr) -> Option<Duration> {
    // SAFETY: walks the control messages the kernel wrote, within `msg_controllen`, with libc's own macros.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                return Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_datagram_read_late_keeps_the_time_it_arrived() {
        let epoch = Instant::now();
        let clock = RxClock::new(epoch);
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        enable_timestamps(&receiver).unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // The kernel turns arrival stamping on from a work queue, a moment after the first socket asks; until
        // then a datagram is stamped when it is read. So: a few tries, the last of which must show it.
        let mut seen = Vec::new();
        for _ in 0..20 {
            sender.send_to(b"stamped", receiver.local_addr().unwrap()).unwrap();
            let sent_us = epoch.elapsed().as_micros() as u64;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut buf = [0u8; 64];
            let (n, source, stamp) = recv_stamped(&receiver, &mut buf).await.unwrap();
            let read_us = epoch.elapsed().as_micros() as u64;
            assert_eq!((&buf[..n], source), (&b"stamped"[..], sender.local_addr().unwrap()));
            let arrived_us = clock.received_us(Some(stamp.expect("the kernel stamps the datagram")));
            // It arrived about when it was sent, well before it was read 50 ms later.
            if arrived_us + 40_000 < read_us && arrived_us.abs_diff(sent_us) < 10_000 {
                return;
            }
            seen.push((sent_us, arrived_us, read_us));
        }
        panic!("no datagram kept its arrival time (sent, arrived, read in us): {seen:?}");
    }
}
