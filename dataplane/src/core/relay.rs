//! Cross-worker fan-out. A meeting spans workers; a packet is still decrypted once, on its publisher's worker,
//! which hands the plaintext to the workers that hold the track's other subscribers as a read-only,
//! reference-counted packet from a pool. Each of those workers holds a *mirror* of the track and encrypts for its
//! own subscribers (house style: shared-nothing; the only thing two workers share is an immutable packet).
//!
//! The core stays sans-IO: it writes `(packet, workers)` pairs into the [`Transmits`] batch, and the runtime
//! pushes them onto the bounded rings between workers, dropping and counting (`DropReason::QueueFull`) when a
//! ring is full.

use std::sync::Arc;

use super::*;

/// Names one relayed track on every worker: chosen by the control plane, unique in the process.
pub type RelayKey = u64;

/// Workers one track can be relayed to: a bit each in a `u64`.
pub const RELAY_WORKERS_MAX: usize = 64;

/// How many pool slots one relay looks at for a free one before giving up (bounds the packet path's work
/// when every slot is still held by a slow worker).
const POOL_PROBES: usize = 8;

/// A decrypted RTP packet on its way to other workers. Written once by the publisher's worker, then only read.
#[derive(Debug)]
pub struct RelayPacket {
    key: RelayKey,
    layer: u8,
    /// The extended RTP index at the publisher (for the mirror's retransmission buffer).
    index: u64,
    /// When the publisher's worker received it: time-in-SFU counts from here.
    received: Instant,
    len: u16,
    data: [u8; DATAGRAM_MAX],
}

impl RelayPacket {
    fn empty(now: Instant) -> RelayPacket {
        RelayPacket { key: 0, layer: 0, index: 0, received: now, len: 0, data: [0; DATAGRAM_MAX] }
    }

    pub fn key(&self) -> RelayKey {
        self.key
    }

    pub fn received(&self) -> Instant {
        self.received
    }

    pub fn plaintext(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }
}

/// A relayed packet and the workers it goes to (bit `w` set: worker `w`).
#[derive(Debug)]
pub struct Relay {
    pub packet: Arc<RelayPacket>,
    pub workers: u64,
}

/// Relay packets allocated once and reused: a slot is free again when no other worker holds it (its `Arc` is
/// unique), so a packet crosses cores with one reference-count increment per worker and no allocation.
#[derive(Debug)]
pub(super) struct RelayPool {
    slots: Vec<Arc<RelayPacket>>,
    next: usize,
}

impl RelayPool {
    pub(super) fn new(packets: usize, now: Instant) -> RelayPool {
        RelayPool { slots: (0..packets.max(1)).map(|_| Arc::new(RelayPacket::empty(now))).collect(), next: 0 }
    }

    /// A free slot, filled by `fill`, and shared; `None` when the probed slots are all held elsewhere.
    fn take(&mut self, fill: impl FnOnce(&mut RelayPacket)) -> Option<Arc<RelayPacket>> {
        let n = self.slots.len();
        for probe in 0..POOL_PROBES.min(n) {
            let at = (self.next + probe) % n;
            if let Some(packet) = Arc::get_mut(&mut self.slots[at]) {
                fill(packet);
                self.next = (at + 1) % n;
                return Some(Arc::clone(&self.slots[at]));
            }
        }
        None
    }
}

/// The relay state of a track: its key, the workers it goes to (on the publisher's worker), and, on a mirror,
/// the highest index seen per layer (the mirror has no inbound stream to ask).
#[derive(Debug, Default)]
pub(super) struct TrackRelay {
    pub(super) key: Option<RelayKey>,
    pub(super) workers: u64,
    pub(super) highest: [u64; LAYERS_MAX],
}

impl Core {
    /// Sends the packets of `track` (published on this worker) to worker `worker` too, under `key`; that worker
    /// must hold a mirror added with [`Core::add_mirror_track`] under the same key.
    pub fn relay_track(&mut self, track: TrackId, key: RelayKey, worker: usize) -> Result<(), CoreError> {
        if worker >= RELAY_WORKERS_MAX {
            return Err(CoreError::Full("relay workers"));
        }
        let t = self.tracks.get_mut(track).ok_or(CoreError::UnknownTrack)?;
        if t.publisher.is_none() || t.relay.key.is_some_and(|k| k != key) {
            return Err(CoreError::UnknownTrack);
        }
        t.relay.key = Some(key);
        t.relay.workers |= 1 << worker;
        self.by_relay_key.insert(key, track);
        if self.relay_pool.is_none() {
            let now = self.origin.unwrap_or_else(Instant::now);
            self.relay_pool = Some(RelayPool::new(self.config.relay_pool_packets, now));
        }
        Ok(())
    }

    /// Stops relaying `track` to `worker`.
    pub fn unrelay_track(&mut self, track: TrackId, worker: usize) -> Result<(), CoreError> {
        let t = self.tracks.get_mut(track).ok_or(CoreError::UnknownTrack)?;
        if worker < RELAY_WORKERS_MAX {
            t.relay.workers &= !(1 << worker);
        }
        Ok(())
    }

    /// A track published on another worker, fed by [`Core::handle_relay`]; local participants subscribe to it
    /// like to any track. Its keyframe requests come out as [`Event::KeyframeNeeded`].
    pub fn add_mirror_track(&mut self, key: RelayKey, spec: TrackSpec) -> Result<TrackId, CoreError> {
        if spec.layer_count() == 0 {
            return Err(CoreError::BadLayers);
        }
        if self.by_relay_key.contains_key(&key) {
            return Err(CoreError::DuplicateRelayKey(key));
        }
        let mut track = self.new_track(None, spec);
        track.relay.key = Some(key);
        let id = self.tracks.insert(track).ok_or(CoreError::Full("tracks"))?;
        self.by_relay_key.insert(key, id);
        Ok(id)
    }

    /// The track this worker knows under `key`: the published original or a mirror.
    pub fn relayed_track(&self, key: RelayKey) -> Option<TrackId> {
        self.by_relay_key.get(&key).copied()
    }

    /// A mirror on another worker needs a keyframe of `layer` of the track relayed as `key`: asks its publisher
    /// (rate-limited like every keyframe request).
    pub fn request_relayed_keyframe(&mut self, now: Instant, key: RelayKey, layer: u8, out: &mut Transmits) {
        if let Some(&track) = self.by_relay_key.get(&key) {
            self.send_pli(now, track, layer, out);
        }
    }

    /// Step 4 on the publisher's worker, for other workers: copies the decrypted packet into a pooled relay
    /// packet, once, for every worker that mirrors the track.
    pub(super) fn relay_out(
        &mut self,
        now: Instant,
        track: TrackId,
        layer: u8,
        index: u64,
        plain: &[u8],
        out: &mut Transmits,
    ) {
        let Some(t) = self.tracks.get(track) else { return };
        let (Some(key), workers) = (t.relay.key, t.relay.workers) else { return };
        if workers == 0 {
            return;
        }
        if plain.len() + Profile::RTP_OVERHEAD_MAX > DATAGRAM_MAX {
            return self.drop(DropReason::TooLarge);
        }
        if out.relays_full() {
            return self.drop(DropReason::TransmitFull);
        }
        let Some(pool) = self.relay_pool.as_mut() else { return };
        let packet = pool.take(|p| {
            p.key = key;
            p.layer = layer;
            p.index = index;
            p.received = now;
            p.len = plain.len() as u16;
            p.data[..plain.len()].copy_from_slice(plain);
        });
        match packet {
            Some(packet) => out.relay(Relay { packet, workers }),
            None => self.drop(DropReason::RelayPoolEmpty),
        }
    }

    /// Step 4 on a mirror's worker: a packet another worker decrypted, to this worker's subscribers of the track.
    pub fn handle_relay(&mut self, now: Instant, packet: &RelayPacket, out: &mut Transmits) {
        self.origin.get_or_insert(now);
        self.counters.relays_in += 1;
        let Some(&track) = self.by_relay_key.get(&packet.key) else { return self.drop(DropReason::UnknownRelay) };
        let plain = packet.plaintext();
        let Ok(header) = RtpHeader::parse(plain) else { return self.drop(DropReason::MalformedRtp) };
        let layer = packet.layer;
        let Some(t) = self.tracks.get_mut(track) else { return };
        let highest = &mut t.relay.highest[usize::from(layer).min(LAYERS_MAX - 1)];
        *highest = (*highest).max(packet.index);
        if let Some(buffer) = t.retransmission.get_mut(usize::from(layer)).and_then(Option::as_mut) {
            buffer.store(packet.index, plain);
        }
        t.on_media(now, layer, &plain[header.header_len..], plain.len());
        let owned = self.owned_extensions(now, &header, plain);
        if self.fan_out(now, track, layer, packet.index, plain, &header, owned, out) {
            self.send_pli(now, track, layer, out);
        }
    }
}
