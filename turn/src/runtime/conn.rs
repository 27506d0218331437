//! One TCP or TLS client connection: a bounded read buffer cut into TURN frames, and a bounded write buffer.
//! TLS is rustls driven by hand over the non-blocking socket.

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;

use crate::proto;
use crate::server::Client;

/// Largest frame: a STUN message or ChannelData of 64 KiB plus header.
const READ_BYTES: usize = 65_536 + 8;
/// Output a slow reader may leave queued before its datagrams are dropped.
pub const WRITE_LIMIT: usize = 256 * 1024;

#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    tls: Option<Box<rustls::ServerConnection>>,
    pub client: Client,
    rbuf: Box<[u8]>,
    rlen: usize,
    wbuf: Vec<u8>,
}

/// What reading found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Frames may be waiting in the buffer; the socket is drained.
    Open,
    /// The buffer filled up before the socket was drained: handle its frames, then read again.
    Full,
    /// The peer closed, or sent something that is not TURN: close the connection.
    Closed,
}

impl Conn {
    pub fn new(stream: TcpStream, client: Client, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<Conn> {
        let tls = match tls {
            Some(config) => Some(Box::new(rustls::ServerConnection::new(config).map_err(io::Error::other)?)),
            None => None,
        };
        Ok(Conn { stream, tls, client, rbuf: vec![0; READ_BYTES].into_boxed_slice(), rlen: 0, wbuf: Vec::new() })
    }

    /// Reads what the socket has (until it would block, or the buffer is full).
    pub fn read(&mut self) -> ReadOutcome {
        loop {
            if self.rlen == self.rbuf.len() {
                return ReadOutcome::Full;
            }
            let n = match &mut self.tls {
                None => match self.stream.read(&mut self.rbuf[self.rlen..]) {
                    Ok(0) => return ReadOutcome::Closed,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Open,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return ReadOutcome::Closed,
                },
                Some(tls) => {
                    // Plaintext already decrypted comes first.
                    match tls.reader().read(&mut self.rbuf[self.rlen..]) {
                        Ok(0) => return ReadOutcome::Closed,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            match tls.read_tls(&mut self.stream) {
                                Ok(0) => return ReadOutcome::Closed,
                                Ok(_) => {}
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Open,
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                                Err(_) => return ReadOutcome::Closed,
                            }
                            if tls.process_new_packets().is_err() {
                                let _ = tls.write_tls(&mut self.stream);
                                return ReadOutcome::Closed;
                            }
                            // The handshake may have something to say.
                            let _ = self.flush();
                            continue;
                        }
                        Err(_) => return ReadOutcome::Closed,
                    }
                }
            };
            self.rlen += n;
        }
    }

    /// The next whole frame in the read buffer, as a range; `Err` if the stream is not TURN.
    pub fn next_frame(&self, from: usize) -> Result<Option<std::ops::Range<usize>>, ()> {
        match proto::stream_frame_len(&self.rbuf[from..self.rlen]) {
            Ok(Some(len)) => Ok(Some(from..from + len)),
            Ok(None) if self.rlen - from == self.rbuf.len() => Err(()),
            Ok(None) => Ok(None),
            Err(_) => Err(()),
        }
    }

    pub fn frame(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.rbuf[range]
    }

    /// Drops the first `used` bytes (whole frames already handled).
    pub fn consume(&mut self, used: usize) {
        self.rbuf.copy_within(used..self.rlen, 0);
        self.rlen -= used;
    }

    pub fn has_output(&self) -> bool {
        !self.wbuf.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Queues a frame (already padded where TURN wants it); false if the connection's buffer is full.
    pub fn queue(&mut self, frame: &[u8]) -> bool {
        if self.wbuf.len() + frame.len() > WRITE_LIMIT {
            return false;
        }
        self.wbuf.extend_from_slice(frame);
        true
    }

    /// Writes what the socket takes; `Err` if the connection broke. Over TLS, plaintext moves into rustls only
    /// once its previous records are on the socket, so the bound on `wbuf` bounds the whole connection.
    pub fn flush(&mut self) -> io::Result<()> {
        loop {
            if let Some(tls) = &mut self.tls {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.stream) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if self.wbuf.is_empty() || tls.is_handshaking() {
                    return Ok(());
                }
                // One TLS record per TURN frame, as coturn writes them: some clients (coturn's own) read one
                // frame per record and lose the rest of a record that carries several.
                let mut moved = 0;
                while moved < self.wbuf.len() && moved < TLS_CHUNK {
                    let Ok(Some(len)) = proto::stream_frame_len(&self.wbuf[moved..]) else {
                        moved = self.wbuf.len();
                        break;
                    };
                    tls.writer().write_all(&self.wbuf[moved..moved + len])?;
                    moved += len;
                }
                self.wbuf.drain(..moved);
                continue;
            }
            if self.wbuf.is_empty() {
                return Ok(());
            }
            match self.stream.write(&self.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Plaintext handed to rustls before its records go to the socket.
const TLS_CHUNK: usize = 4 * 16 * 1024;
