//! The caller-owned batch of datagrams the core writes into: buffers allocated once, filled in place, handed to
//! the I/O layer (one `sendmmsg` or io_uring submission per batch), then cleared.

use std::net::SocketAddr;

use super::relay::Relay;

/// The largest datagram we send. Inbound packets that would exceed it after SRTP's tag are dropped
/// (`DropReason::TooLarge`); browsers keep RTP under about 1200 bytes.
pub const DATAGRAM_MAX: usize = 1500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub len: usize,
}

#[derive(Debug)]
pub struct Transmits {
    data: Box<[u8]>,
    meta: Vec<Transmit>,
    capacity: usize,
    /// Decrypted packets for other workers (see `relay`), at most `capacity`.
    relays: Vec<Relay>,
}

impl Transmits {
    pub fn with_capacity(capacity: usize) -> Transmits {
        Transmits {
            data: vec![0u8; capacity * DATAGRAM_MAX].into_boxed_slice(),
            meta: Vec::with_capacity(capacity),
            capacity,
            relays: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.meta.len() == self.capacity
    }

    /// Clears the datagrams and the relays.
    pub fn clear(&mut self) {
        self.meta.clear();
        self.relays.clear();
    }

    /// Packets for other workers, for the runtime to push onto its rings.
    pub fn relays(&self) -> &[Relay] {
        &self.relays
    }

    pub(crate) fn relays_full(&self) -> bool {
        self.relays.len() == self.capacity
    }

    pub(crate) fn relay(&mut self, relay: Relay) {
        debug_assert!(!self.relays_full());
        self.relays.push(relay);
    }

    /// The buffer for the next datagram, or `None` when the batch is full. Nothing is sent until `commit`.
    pub(crate) fn slot(&mut self) -> Option<&mut [u8]> {
        if self.is_full() {
            return None;
        }
        let at = self.meta.len() * DATAGRAM_MAX;
        Some(&mut self.data[at..at + DATAGRAM_MAX])
    }

    pub(crate) fn commit(&mut self, destination: SocketAddr, len: usize) {
        debug_assert!(len <= DATAGRAM_MAX && !self.is_full());
        self.meta.push(Transmit { destination, len });
    }

    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let t = self.meta.get(i)?;
        let at = i * DATAGRAM_MAX;
        Some((t.destination, &self.data[at..at + t.len]))
    }

    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}
