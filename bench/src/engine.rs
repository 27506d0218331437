//! The generator's media engine: a few threads (one per core by default), each driving the media of many
//! synthetic participants once their ICE and DTLS are done. A thread paces every participant's sends from one
//! timer (a simulcast frame's equal-sized packets go out as GSO runs), receives on every socket it owns through
//! one io_uring (`uring_rx`: armed multishot receives, one `io_uring_enter` a tick) or, where the kernel lacks it
//! or `BENCH_GENERATOR_IO=mmsg` asks, with `recvmmsg` and GRO through quinn-udp when mio says a socket is
//! readable; it decrypts in place, and keeps ICE consent:
//! no allocation and no task wake-up per packet. While traffic flows a thread wakes once per [`TICK`], so at any
//! packet rate one wake-up serves every datagram and send of a tick (idle, it waits for readiness); one-way delay is taken from the kernel's receive
//! timestamps (see `clock`), so reading late adds nothing to it. Signaling stays with each participant's tokio
//! task.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use sluice_dataplane::testpeer::{Incoming, TestPeer};

use crate::clock::RxClock;
use crate::meeting::{FRAME_BYTES_MAX, LAYERS, PAYLOAD_LEN};
use crate::uring_rx::{Completion, RxRing};

/// ICE consent checks once connected (RFC 7675 asks for about every 5 s; the server removes a participant after
/// `dataplane.consent_timeout_secs`, 10 s by default, without one).
const CONSENT_INTERVAL: Duration = Duration::from_secs(3);
/// A thread with nothing due sleeps at most this long, so new participants are taken up promptly.
const IDLE_MAX: Duration = Duration::from_millis(5);
/// The time between two wake-ups of a thread while traffic flows. Sends are paced to it: a publisher whose interval
/// is shorter sends the packets due in a tick together, as a browser's pacer does every 5 ms.
const TICK: Duration = Duration::from_millis(5);
/// A publisher this late (a thread that stalled) skips what it missed rather than bursting to catch up.
const CATCH_UP_MAX: Duration = Duration::from_millis(12);
/// Receive slots per `recvmmsg`, each a datagram or a GRO run of them.
const SLOTS: usize = 8;
const SLOT_LEN: usize = 64 * 1024;
/// Receives per socket per turn at most, so one busy socket does not starve the others or the sender; a socket
/// not drained is read again next turn (mio's readiness is edge-triggered: no new event comes for it).
const RECVS_PER_TURN_MAX: usize = 16;

/// One connected participant's media, handed over by its task.
pub(crate) struct MediaJob {
    pub(crate) index: u32,
    pub(crate) peer: TestPeer,
    pub(crate) socket: std::net::UdpSocket,
    pub(crate) server: SocketAddr,
    pub(crate) publish: bool,
    /// The simulcast publish section's MID: the participant sends [`LAYERS`] instead of single packets.
    pub(crate) simulcast_mid: Option<String>,
    pub(crate) pps: u32,
    pub(crate) epoch: Instant,
    pub(crate) media_start: Instant,
    pub(crate) media_end: Instant,
    /// Media is read until this moment (the last packets are still on their way at `media_end`).
    pub(crate) until: Instant,
    pub(crate) done: tokio::sync::oneshot::Sender<MediaResult>,
}

/// What one participant sent and saw.
#[derive(Debug, Default)]
pub(crate) struct MediaResult {
    pub(crate) sent: u64,
    /// Simulcast: the top layer's tag id and its packets (what subscribers should receive).
    pub(crate) forwarded: Option<(u32, u64)>,
    pub(crate) received: Vec<(u32, u64)>,
    pub(crate) delays_us: Vec<u64>,
    pub(crate) first_media: Option<Instant>,
}

/// The engine's threads; dropping it waits for them once every job has ended.
pub(crate) struct Engines {
    queues: Vec<mpsc::Sender<MediaJob>>,
    threads: Vec<JoinHandle<()>>,
}

impl Engines {
    pub(crate) fn start(threads: usize) -> io::Result<Engines> {
        let mut queues = Vec::new();
        let mut handles = Vec::new();
        for n in 0..threads.max(1) {
            let (tx, rx) = mpsc::channel();
            let poll = Poll::new()?;
            let handle = std::thread::Builder::new()
                .name(format!("bench-media-{n}"))
                .spawn(move || Thread::new(poll).run(&rx))?;
            queues.push(tx);
            handles.push(handle);
        }
        Ok(Engines { queues, threads: handles })
    }

    /// Participants are spread over the threads by index.
    pub(crate) fn submit(&self, job: MediaJob) -> Result<(), String> {
        let queue = &self.queues[job.index as usize % self.queues.len()];
        queue.send(job).map_err(|_| "the media engine has stopped".to_string())
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        self.queues.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Live {
    job: MediaJob,
    socket: mio::net::UdpSocket,
    state: UdpSocketState,
    gso_segments: usize,
    interval: Duration,
    next_send: Instant,
    next_consent: Instant,
    keyframe_due: [bool; LAYERS.len()],
    clock: RxClock,
    result: MediaResult,
}

struct Thread {
    poll: Poll,
    /// Slot `i` holds the participant registered with token `i`.
    live: Vec<Option<Live>>,
    slots: Vec<u8>,
    out: Vec<u8>,
    /// Sockets with datagrams left after their turn's reads.
    undrained: Vec<usize>,
    /// The io_uring receive path, when in use.
    ring: Option<RxRing>,
    /// Ended participants' sockets whose armed receive has not ended yet, by slot (not reused until then).
    closing: Vec<(usize, mio::net::UdpSocket)>,
}

impl Thread {
    fn new(poll: Poll) -> Thread {
        Thread {
            poll,
            live: Vec::new(),
            slots: vec![0; SLOTS * SLOT_LEN],
            out: vec![0; FRAME_BYTES_MAX],
            undrained: Vec::new(),
            ring: None,
            closing: Vec::new(),
        }
    }

    fn run(mut self, jobs: &mpsc::Receiver<MediaJob>) {
        if crate::uring_rx::wanted() {
            match RxRing::new() {
                Ok(ring) => self.ring = Some(ring),
                Err(e) => eprintln!("media engine: io_uring unavailable ({e}); receiving with recvmmsg"),
            }
        }
        let mut events = Events::with_capacity(1024);
        let mut completions = [Completion { tag: None, result: 0, flags: 0 }; 256];
        let mut open = true;
        let mut last_wake = Instant::now();
        let mut busy = false;
        loop {
            while open {
                match jobs.try_recv() {
                    Ok(job) => self.add(job),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => open = false,
                }
            }
            if !open && self.live.iter().all(Option::is_none) {
                // Ended participants' receives finish cancelling, for a second at most.
                let deadline = Instant::now() + Duration::from_secs(1);
                while self.ring.is_some() && !self.closing.is_empty() && Instant::now() < deadline {
                    self.receive_ring(Duration::from_millis(50), false, &mut completions);
                }
                return;
            }
            let now = Instant::now();
            let mut wake = now + IDLE_MAX;
            for slot in 0..self.live.len() {
                if let Some(next) = self.turn(slot, now) {
                    wake = wake.min(next);
                }
            }
            let now = Instant::now();
            if self.ring.is_some() {
                let until = if busy { (last_wake + TICK).max(now) } else { wake };
                busy = self.receive_ring(until.saturating_duration_since(now), busy, &mut completions);
                last_wake = Instant::now();
                continue;
            }
            let timeout = if self.undrained.is_empty() { wake.saturating_duration_since(now) } else { Duration::ZERO };
            if busy && self.undrained.is_empty() {
                // Traffic is flowing: sleep to the next tick and take what arrived meanwhile in one go, rather
                // than waking for each datagram or each publisher's send (sends are paced to ticks).
                let until = last_wake + TICK;
                if until > now {
                    std::thread::sleep(until - now);
                }
                let _ = self.poll.poll(&mut events, Some(Duration::ZERO));
            } else {
                let _ = self.poll.poll(&mut events, Some(timeout));
            }
            last_wake = Instant::now();
            busy = !events.is_empty();
            let mut ready: Vec<usize> = std::mem::take(&mut self.undrained);
            ready.extend(events.iter().map(|e| e.token().0));
            for slot in ready.drain(..) {
                if self.receive(slot) {
                    self.undrained.push(slot);
                }
            }
            // The list's allocation is kept for the next turn.
            if self.undrained.is_empty() {
                self.undrained = ready;
            }
        }
    }

    /// Waits up to `timeout` (while `busy`, to the tick's end whatever arrives) and handles every datagram that
    /// arrived on any socket; true if some did.
    fn receive_ring(&mut self, timeout: Duration, busy: bool, completions: &mut [Completion]) -> bool {
        let ring = self.ring.as_mut().expect("ring mode");
        let want = if busy { ring.tick_want() } else { 1 };
        if let Err(e) = ring.enter(want, timeout) {
            eprintln!("media engine: io_uring wait failed: {e}");
        }
        let mut received = false;
        loop {
            let ring = self.ring.as_mut().expect("ring mode");
            let n = ring.completions(completions);
            if n == 0 {
                break;
            }
            for c in &completions[..n] {
                let Some(slot) = c.tag else { continue };
                let ring = self.ring.as_mut().expect("ring mode");
                match self.live.get_mut(slot).and_then(Option::as_mut) {
                    Some(live) => ring.take(c, |datagram, stamp| {
                        received = true;
                        on_datagram(live, datagram, stamp);
                    }),
                    None => ring.take(c, |_, _| {}),
                }
                if !c.more() {
                    self.receive_ended(slot);
                }
            }
        }
        if let Some(ring) = &self.ring {
            ring.publish();
        }
        received
    }

    /// A socket's armed receive ended: the socket closes if its participant has ended, else it is armed again
    /// (the kernel ends a multishot receive when the buffers run out).
    fn receive_ended(&mut self, slot: usize) {
        if let Some(at) = self.closing.iter().position(|(s, _)| *s == slot) {
            self.closing.swap_remove(at);
            return;
        }
        let (Some(ring), Some(Some(live))) = (self.ring.as_mut(), self.live.get(slot)) else { return };
        if let Err(e) = ring.arm(live.socket.as_raw_fd(), slot) {
            eprintln!("media engine: cannot receive on participant {}: {e}", live.job.index);
        }
    }

    fn add(&mut self, job: MediaJob) {
        let slot = (0..=self.live.len())
            .find(|&s| self.live.get(s).is_none_or(Option::is_none) && !self.closing.iter().any(|(c, _)| *c == s))
            .expect("a slot past the end is free");
        let mut socket = mio::net::UdpSocket::from_std(job.socket.try_clone().expect("a socket handle"));
        let state = UdpSocketState::new(UdpSockRef::from(&socket));
        let watched = match self.ring.as_mut() {
            // quinn-udp turned GRO on; this path's buffers hold one datagram each.
            Some(ring) => {
                crate::uring_rx::gro_off(socket.as_raw_fd()).and_then(|()| ring.arm(socket.as_raw_fd(), slot))
            }
            None => self.poll.registry().register(&mut socket, Token(slot), Interest::READABLE),
        };
        let (Ok(state), Ok(())) = (state, watched) else {
            let _ = job.done.send(MediaResult::default());
            return;
        };
        let rate = if job.simulcast_mid.is_some() { crate::meeting::FRAME_RATE } else { job.pps.max(1) };
        let live = Live {
            gso_segments: state.max_gso_segments().max(1),
            interval: Duration::from_secs_f64(1.0 / f64::from(rate)),
            next_send: job.media_start,
            next_consent: Instant::now(),
            keyframe_due: [true; LAYERS.len()],
            clock: RxClock::new(job.epoch),
            result: MediaResult::default(),
            job,
            socket,
            state,
        };
        if slot == self.live.len() {
            self.live.push(Some(live));
        } else {
            self.live[slot] = Some(live);
        }
    }

    /// Sends what is due for the participant in `slot` and returns when it next needs a turn; ends it when its
    /// time is up.
    fn turn(&mut self, slot: usize, now: Instant) -> Option<Instant> {
        let live = self.live[slot].as_mut()?;
        if now >= live.job.until {
            let mut live = self.live[slot].take().expect("checked above");
            match self.ring.as_mut().map(|ring| ring.cancel(slot)) {
                // The socket stays open until its receive's last completion.
                Some(cancelled) => {
                    if let Err(e) = cancelled {
                        eprintln!("media engine: cannot cancel a receive: {e}");
                    }
                    self.closing.push((slot, live.socket));
                }
                None => {
                    let _ = self.poll.registry().deregister(&mut live.socket);
                }
            }
            let _ = live.job.done.send(live.result);
            return None;
        }
        if now >= live.next_consent {
            live.next_consent = now + CONSENT_INTERVAL;
            let check = live.job.peer.binding_request(true);
            let _ = live.socket.send_to(&check, live.job.server);
        }
        let sending = live.job.publish && now < live.job.media_end;
        if now.saturating_duration_since(live.next_send) > CATCH_UP_MAX {
            // Never bursting to catch up after a stall: a thread that fell behind skips the packets it missed.
            live.next_send = now;
        }
        while sending && now >= live.next_send {
            send_media(live, &mut self.out);
            live.next_send += live.interval;
        }
        let next = if sending { live.next_send.min(live.next_consent) } else { live.next_consent };
        Some(next.min(live.job.until))
    }

    /// Reads what the participant in `slot` received, a few batches at most; true if datagrams may be left.
    fn receive(&mut self, slot: usize) -> bool {
        let Some(Some(live)) = self.live.get_mut(slot) else { return false };
        let mut metas = [RecvMeta::default(); SLOTS];
        for _ in 0..RECVS_PER_TURN_MAX {
            let mut chunks = self.slots.chunks_mut(SLOT_LEN);
            let mut slices: [IoSliceMut<'_>; SLOTS] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().expect("SLOTS slots")));
            let Ok(n) = live.state.recv(UdpSockRef::from(&live.socket), &mut slices, &mut metas) else { return false };
            for (i, meta) in metas[..n].iter().enumerate() {
                let stride = if meta.stride == 0 { meta.len } else { meta.stride }.max(1);
                let data = &mut self.slots[i * SLOT_LEN..i * SLOT_LEN + meta.len];
                for datagram in data.chunks_mut(stride) {
                    on_datagram(live, datagram, meta.timestamp);
                }
            }
            // A non-blocking recvmmsg returns fewer than asked only when the queue ran dry: the socket is
            // drained without the extra call that would return EAGAIN (a datagram arriving after this makes a
            // new readiness edge).
            if n < SLOTS {
                return false;
            }
        }
        true
    }
}

/// `stamp`: the kernel's receive timestamp.
fn on_datagram(live: &mut Live, datagram: &mut [u8], stamp: Option<Duration>) {
    match live.job.peer.receive_in_place(datagram) {
        Incoming::Media(r) => {
            let received_us = live.clock.received_us(stamp);
            let result = &mut live.result;
            result.delays_us.push(received_us.saturating_sub(r.tag.sent_us));
            result.first_media.get_or_insert_with(Instant::now);
            match result.received.iter_mut().find(|(p, _)| *p == r.tag.publisher) {
                Some((_, n)) => *n += 1,
                None => result.received.push((r.tag.publisher, 1)),
            }
        }
        Incoming::KeyframeRequest { media_ssrc } => {
            if let Some(layer) = (0..LAYERS.len()).find(|l| live.job.peer.layer_ssrc(*l as u8) == media_ssrc) {
                live.keyframe_due[layer] = true;
            }
        }
        _ => {}
    }
}

/// One tick of a publisher: a frame on every simulcast layer, or one packet.
fn send_media(live: &mut Live, out: &mut [u8]) {
    let now_us = live.job.epoch.elapsed().as_micros() as u64;
    let Some(mid) = live.job.simulcast_mid.as_deref() else {
        let n = live.job.peer.media_into(PAYLOAD_LEN, now_us, out);
        let _ = live.socket.send_to(&out[..n], live.job.server);
        live.result.sent += 1;
        return;
    };
    for (layer, spec) in LAYERS.iter().enumerate() {
        let keyframe = std::mem::take(&mut live.keyframe_due[layer]);
        let (size, count) = spec.packets(keyframe);
        // The frame's packets are equal in size: written back to back, sent as GSO runs.
        let mut stride = 0;
        for i in 0..count {
            let start = (i == 0).then_some(keyframe);
            let slot = &mut out[i * stride..];
            stride = live.job.peer.simulcast_packet_into(mid, spec.rid, layer as u8, start, size, now_us, slot);
        }
        for run in out[..count * stride].chunks(stride * live.gso_segments) {
            let transmit = Transmit {
                destination: live.job.server,
                ecn: None,
                contents: run,
                segment_size: (run.len() > stride).then_some(stride),
                src_ip: None,
            };
            let _ = live.state.try_send(UdpSockRef::from(&live.socket), &transmit);
        }
        live.result.sent += count as u64;
        if layer == LAYERS.len() - 1 {
            let top = live.result.forwarded.get_or_insert((live.job.index + 0x100 * layer as u32, 0));
            top.1 += count as u64;
        }
    }
}
