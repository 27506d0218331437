//! Planning a batch's sends: datagrams to one destination are grouped (keeping their order) so that a run of
//! equal-sized ones goes out as one GSO buffer, the kernel splitting it. Fan-out writes one datagram per
//! subscriber per packet, so a batch of k packets holds runs of k per subscriber.

use std::net::SocketAddr;

use crate::core::Transmits;

/// The kernel's limits on one GSO buffer: 64 segments (`UDP_MAX_SEGMENTS`) and a 64 KB datagram.
const GSO_SEGMENTS_MAX: usize = 64;
const GSO_BYTES_MAX: usize = 65_000;

/// Datagrams `order[start..start + count]` of the batch, to `destination`, each `segment` bytes but the last.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    pub(super) destination: SocketAddr,
    pub(super) start: usize,
    pub(super) count: usize,
    pub(super) segment: usize,
}

/// Reused between batches: the send order and its runs.
#[derive(Debug, Default)]
pub(super) struct Plan {
    keys: Vec<(u128, u16, u32)>,
    pub(super) order: Vec<u32>,
    pub(super) runs: Vec<Run>,
}

impl Plan {
    pub(super) fn with_capacity(n: usize) -> Plan {
        Plan { keys: Vec::with_capacity(n), order: Vec::with_capacity(n), runs: Vec::with_capacity(n) }
    }

    /// Plans `out`; `segments_max` of 1 means no GSO (every datagram its own send, in batch order).
    pub(super) fn plan(&mut self, out: &Transmits, segments_max: usize) {
        self.order.clear();
        self.runs.clear();
        let segments_max = segments_max.clamp(1, GSO_SEGMENTS_MAX);
        if segments_max == 1 || out.len() < 2 {
            self.order.extend(0..out.len() as u32);
        } else {
            self.keys.clear();
            self.keys.extend(out.iter().enumerate().map(|(i, (to, _))| (ip_bits(to), to.port(), i as u32)));
            // Unique keys (the index is part of them), so an unstable sort keeps each destination's order.
            self.keys.sort_unstable();
            self.order.extend(self.keys.iter().map(|k| k.2));
        }
        let mut i = 0;
        while i < self.order.len() {
            let (destination, first) = out.get(self.order[i] as usize).expect("planned from the batch");
            let segment = first.len();
            let (mut count, mut bytes) = (1, segment);
            while count < segments_max && i + count < self.order.len() {
                let (to, next) = out.get(self.order[i + count] as usize).expect("planned from the batch");
                if to != destination || next.len() > segment || bytes + next.len() > GSO_BYTES_MAX {
                    break;
                }
                count += 1;
                bytes += next.len();
                if next.len() < segment {
                    // A shorter segment can only be the last.
                    break;
                }
            }
            self.runs.push(Run { destination, start: i, count, segment });
            i += count;
        }
    }
}

fn ip_bits(addr: SocketAddr) -> u128 {
    match addr {
        SocketAddr::V4(a) => u128::from(a.ip().to_bits()),
        SocketAddr::V6(a) => a.ip().to_bits(),
    }
}

/// Room for one `UDP_SEGMENT` control message (a `u16`), aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct SegmentCmsg([u8; 32]);

/// The kernel's view of planned runs: one `msghdr` per run, with an iovec per datagram (the kernel joins them
/// into one GSO buffer) and, for runs of several, a `UDP_SEGMENT` control message. Vectors are sized once and
/// refilled in place, so the pointers between them stay valid while a batch is in flight.
pub(super) struct Msgs {
    pub(super) hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<SegmentCmsg>,
}

impl std::fmt::Debug for Msgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Msgs").field("messages", &self.hdrs.len()).finish_non_exhaustive()
    }
}

impl Msgs {
    pub(super) fn with_capacity(n: usize) -> Msgs {
        Msgs {
            hdrs: Vec::with_capacity(n),
            iovs: Vec::with_capacity(n),
            names: Vec::with_capacity(n),
            cmsgs: Vec::with_capacity(n),
        }
    }

    /// Builds the messages of `plan.runs[runs]`, pointing into `out` (which must outlive the send).
    pub(super) fn build(&mut self, out: &Transmits, plan: &Plan, runs: std::ops::Range<usize>) {
        self.hdrs.clear();
        self.iovs.clear();
        self.names.clear();
        self.cmsgs.clear();
        for run in &plan.runs[runs.clone()] {
            for &i in &plan.order[run.start..run.start + run.count] {
                let (_, bytes) = out.get(i as usize).expect("planned from the batch");
                self.iovs.push(libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() });
            }
            let name = socket2::SockAddr::from(run.destination);
            // SAFETY: a sockaddr_storage is plain data that every socket address fits in.
            let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            // SAFETY: copies `name.len()` bytes of a valid address into storage big enough for any address.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    name.as_ptr().cast::<u8>(),
                    (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                    name.len() as usize,
                )
            };
            self.names.push(storage);
            let mut cmsg = SegmentCmsg([0; 32]);
            if run.count > 1 {
                write_segment_cmsg(&mut cmsg, run.segment as u16);
            }
            self.cmsgs.push(cmsg);
        }
        let mut iov_at = 0;
        for (k, run) in plan.runs[runs].iter().enumerate() {
            // SAFETY: an all-zero msghdr is the empty message.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = (&mut self.names[k] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = socklen(run.destination);
            hdr.msg_iov = self.iovs[iov_at..].as_mut_ptr();
            hdr.msg_iovlen = run.count as _;
            if run.count > 1 {
                hdr.msg_control = self.cmsgs[k].0.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is arithmetic.
                hdr.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
            }
            iov_at += run.count;
            self.hdrs.push(libc::mmsghdr { msg_hdr: hdr, msg_len: 0 });
        }
    }
}

fn socklen(addr: SocketAddr) -> libc::socklen_t {
    (match addr {
        SocketAddr::V4(_) => size_of::<libc::sockaddr_in>(),
        SocketAddr::V6(_) => size_of::<libc::sockaddr_in6>(),
    }) as libc::socklen_t
}

fn write_segment_cmsg(buf: &mut SegmentCmsg, segment: u16) {
    // SAFETY: a zeroed msghdr whose control buffer is `buf` (32 bytes, aligned), so CMSG_FIRSTHDR returns a
    // header inside it with room for CMSG_LEN(2) bytes.
    unsafe {
        let mut hdr: libc::msghdr = std::mem::zeroed();
        hdr.msg_control = buf.0.as_mut_ptr().cast();
        hdr.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(items: &[(u16, usize)]) -> Transmits {
        let mut out = Transmits::with_capacity(items.len());
        for (port, len) in items {
            out.slot().expect("room");
            out.commit(SocketAddr::from(([127, 0, 0, 1], *port)), *len);
        }
        out
    }

    #[test]
    fn runs_group_a_destination_in_order_and_end_at_a_shorter_segment() {
        let out = batch(&[(1, 100), (2, 100), (1, 100), (2, 100), (1, 80), (2, 100), (1, 100)]);
        let mut plan = Plan::with_capacity(8);
        plan.plan(&out, 64);
        let runs: Vec<(u16, Vec<u32>, usize)> = plan
            .runs
            .iter()
            .map(|r| (r.destination.port(), plan.order[r.start..r.start + r.count].to_vec(), r.segment))
            .collect();
        assert_eq!(runs, vec![(1, vec![0, 2, 4], 100), (1, vec![6], 100), (2, vec![1, 3, 5], 100)]);
    }

    #[test]
    fn without_gso_every_datagram_is_its_own_send_in_batch_order() {
        let out = batch(&[(2, 100), (1, 100), (2, 100)]);
        let mut plan = Plan::with_capacity(4);
        plan.plan(&out, 1);
        assert_eq!(plan.order, vec![0, 1, 2]);
        assert!(plan.runs.iter().all(|r| r.count == 1));
    }

    #[test]
    fn runs_respect_the_segment_limit() {
        let out = batch(&[(1, 100); 5]);
        let mut plan = Plan::with_capacity(8);
        plan.plan(&out, 2);
        assert_eq!(plan.runs.iter().map(|r| r.count).collect::<Vec<_>>(), vec![2, 2, 1]);
    }
}
