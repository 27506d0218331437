//! The generator's batched UDP I/O on a tokio socket, through quinn-udp (the dataplane's portable path):
//! `recvmmsg` with GRO into buffers allocated once per participant, and GSO sends of a frame's equal-sized
//! packets in one call.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{BATCH_SIZE, RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// One receive slot: a datagram, or a GRO run of them (64 KiB, the most the kernel coalesces).
const SLOT_LEN: usize = 64 * 1024;
/// Receive slots per call: GRO packs many datagrams into each, so a few slots hold a burst.
const SLOTS: usize = 4;

pub(crate) struct BatchSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    /// Datagrams per GSO call at most (1 where the kernel has no GSO).
    gso_segments: usize,
    slots: Vec<u8>,
    metas: [RecvMeta; SLOTS],
    /// The datagrams of the last receive: slot offset and length of each.
    received: Vec<(usize, usize, SocketAddr)>,
}

impl BatchSocket {
    pub(crate) fn new(socket: UdpSocket) -> io::Result<BatchSocket> {
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        Ok(BatchSocket {
            gso_segments: state.max_gso_segments().max(1),
            socket,
            state,
            slots: vec![0; SLOT_LEN * SLOTS],
            metas: [RecvMeta::default(); SLOTS],
            received: Vec::with_capacity(BATCH_SIZE * SLOTS),
        })
    }

    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Waits until datagrams arrive and takes what one `recvmmsg` gives; [`BatchSocket::datagram`] reads them.
    pub(crate) async fn recv(&mut self) -> io::Result<usize> {
        let BatchSocket { socket, state, slots, metas, received, .. } = self;
        loop {
            socket.readable().await?;
            let got = socket.try_io(Interest::READABLE, || {
                let mut chunks = slots.chunks_mut(SLOT_LEN);
                let mut slices: [IoSliceMut<'_>; SLOTS] =
                    std::array::from_fn(|_| IoSliceMut::new(chunks.next().expect("SLOTS slots")));
                state.recv(UdpSockRef::from(&*socket), &mut slices, metas)
            });
            match got {
                Ok(n) => {
                    received.clear();
                    for (slot, meta) in metas[..n].iter().enumerate() {
                        let stride = if meta.stride == 0 { meta.len } else { meta.stride }.max(1);
                        let mut at = 0;
                        while at < meta.len {
                            let len = stride.min(meta.len - at);
                            received.push((slot * SLOT_LEN + at, len, meta.addr));
                            at += len;
                        }
                    }
                    return Ok(received.len());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The `i`th datagram of the last receive, and its source.
    pub(crate) fn datagram(&mut self, i: usize) -> (&mut [u8], SocketAddr) {
        let (at, len, source) = self.received[i];
        (&mut self.slots[at..at + len], source)
    }

    /// Sends `contents`, datagrams of `segment` bytes each (the last may be shorter), to `to` in as few calls as
    /// GSO allows.
    pub(crate) async fn send_segments(&self, to: SocketAddr, contents: &[u8], segment: usize) -> io::Result<()> {
        for run in contents.chunks(segment * self.gso_segments) {
            let transmit = Transmit {
                destination: to,
                ecn: None,
                contents: run,
                segment_size: (run.len() > segment).then_some(segment),
                src_ip: None,
            };
            loop {
                self.socket.writable().await?;
                match self
                    .socket
                    .try_io(Interest::WRITABLE, || self.state.try_send(UdpSockRef::from(&self.socket), &transmit))
                {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}
