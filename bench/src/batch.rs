//! A synthetic participant's socket while its task runs ICE and DTLS: `recvmmsg` with GRO through quinn-udp
//! (the dataplane's portable path) into buffers allocated once. The media engine takes the socket after.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{BATCH_SIZE, RecvMeta, UdpSockRef, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// One receive slot: a datagram, or a GRO run of them (64 KiB, the most the kernel coalesces).
const SLOT_LEN: usize = 64 * 1024;
/// Receive slots per call: GRO packs many datagrams into each, so a few slots hold a burst.
const SLOTS: usize = 4;

pub(crate) struct BatchSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    slots: Vec<u8>,
    metas: [RecvMeta; SLOTS],
    /// The datagrams of the last receive: slot offset and length of each.
    received: Vec<(usize, usize, SocketAddr)>,
}

impl BatchSocket {
    pub(crate) fn new(socket: UdpSocket) -> io::Result<BatchSocket> {
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        Ok(BatchSocket {
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

    /// The socket back, for the media engine.
    pub(crate) fn into_std(self) -> io::Result<std::net::UdpSocket> {
        self.socket.into_std()
    }
}
