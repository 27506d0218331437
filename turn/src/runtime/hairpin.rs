//! Hairpinning: a datagram one allocation sends to another allocation's relayed address on the same worker goes
//! from the one to the other in memory, not through the kernel's UDP stack and back. This is the path between two
//! relayed clients of one server (both ends of a call behind symmetric NATs, relaying through the same TURN
//! server). The permission and filter checks of the sending side have passed before a datagram gets here; the
//! receiving allocation's own checks (permission, bandwidth) run when it is delivered, exactly as for a datagram
//! that arrived on its socket from that source. Delivery is deferred to the end of the loop turn, in the order
//! queued; a full queue (or a datagram too large for a slot) goes through the kernel instead, so nothing is
//! dropped here, though such a datagram may arrive after hairpinned ones sent later.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::server::{PEER_HEADROOM, PEER_TAILROOM};

/// Datagrams waiting at once.
const SLOTS: usize = 256;
/// Data bytes a slot holds (larger datagrams go through the kernel): what fits the client's send slot with the
/// header and padding.
const DATA_MAX: usize = super::ring::PEER_DATA_MAX;
const SLOT_LEN: usize = PEER_HEADROOM + DATA_MAX + PEER_TAILROOM;

/// One datagram waiting: the relayed address it is for (looked up again at delivery, since the relay may have
/// closed meanwhile), the relayed address it came from, its slot and length.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waiting {
    pub to: SocketAddr,
    pub from: SocketAddr,
    slot: usize,
    len: usize,
}

pub(super) struct Hairpin {
    slots: Box<[[u8; SLOT_LEN]]>,
    waiting: VecDeque<Waiting>,
    free: Vec<usize>,
}

impl std::fmt::Debug for Hairpin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hairpin").field("waiting", &self.waiting.len()).finish_non_exhaustive()
    }
}

impl Default for Hairpin {
    fn default() -> Self {
        Hairpin {
            slots: vec![[0; SLOT_LEN]; SLOTS].into_boxed_slice(),
            waiting: VecDeque::with_capacity(SLOTS),
            free: (0..SLOTS).rev().collect(),
        }
    }
}

impl Hairpin {
    /// Queues `data` from relayed address `from` for relayed address `to`; false when full or too large.
    pub(super) fn push(&mut self, to: SocketAddr, from: SocketAddr, data: &[u8]) -> bool {
        if data.len() > DATA_MAX {
            return false;
        }
        let Some(slot) = self.free.pop() else { return false };
        self.slots[slot][PEER_HEADROOM..PEER_HEADROOM + data.len()].copy_from_slice(data);
        self.waiting.push_back(Waiting { to, from, slot, len: data.len() });
        true
    }

    /// The oldest waiting datagram, without taking it.
    pub(super) fn front(&self) -> Option<Waiting> {
        self.waiting.front().copied()
    }

    /// The slot of a waiting datagram and where its data is, with `PEER_HEADROOM` before it and `PEER_TAILROOM`
    /// after (what `Server::handle_peer` writes the client's header into).
    pub(super) fn slot(&mut self, waiting: &Waiting) -> (&mut [u8], std::ops::Range<usize>) {
        (&mut self.slots[waiting.slot][..], PEER_HEADROOM..PEER_HEADROOM + waiting.len)
    }

    /// Done with the oldest waiting datagram.
    pub(super) fn pop(&mut self) {
        if let Some(w) = self.waiting.pop_front() {
            self.free.push(w.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_come_out_in_order_with_room_for_the_header() {
        let mut hairpin = Hairpin::default();
        let from = SocketAddr::from(([192, 0, 2, 1], 50_000));
        let (one, two) = (SocketAddr::from(([192, 0, 2, 1], 50_002)), SocketAddr::from(([192, 0, 2, 1], 50_004)));
        assert!(hairpin.push(one, from, b"first"));
        assert!(hairpin.push(two, from, b"second"));
        let w = hairpin.front().unwrap();
        assert_eq!((w.to, w.from), (one, from));
        let (buf, range) = hairpin.slot(&w);
        assert_eq!(&buf[range.clone()], b"first");
        assert!(range.start >= PEER_HEADROOM && range.end + PEER_TAILROOM <= buf.len());
        hairpin.pop();
        assert_eq!(hairpin.front().unwrap().to, two);
        hairpin.pop();
        assert!(hairpin.front().is_none());
    }

    #[test]
    fn a_full_queue_or_a_large_datagram_is_refused() {
        let mut hairpin = Hairpin::default();
        let from = SocketAddr::from(([192, 0, 2, 1], 50_000));
        let to = SocketAddr::from(([192, 0, 2, 1], 50_002));
        assert!(!hairpin.push(to, from, &[0; DATA_MAX + 1]));
        for _ in 0..SLOTS {
            assert!(hairpin.push(to, from, b"x"));
        }
        assert!(!hairpin.push(to, from, b"x"), "the caller sends through the kernel instead");
        hairpin.pop();
        assert!(hairpin.push(to, from, b"y"), "a slot is free again");
    }
}
