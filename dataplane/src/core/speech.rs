//! Who is talking, from the audio level each publisher's packets carry (RFC 6464 `ssrc-audio-level`), and
//! subscriptions that follow the talker: a subscription moved to another track keeps its SSRC and continues its
//! sequence numbers, timestamps and picture IDs, so a receiver (a WHEP player watching "the active speaker") sees
//! one stream that changes picture at a keyframe, not a new stream.
//!
//! The worker only adds up levels per track; deciding who talks (smoothing, hysteresis) is the control plane's,
//! which reads and resets the sums a few times a second.

use super::*;

/// The levels one audio track's packets carried since they were last read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioActivity {
    /// Packets that carried a level.
    pub packets: u32,
    /// The sum of their loudness, `127 - level` (the level is -dBov: 0 loudest, 127 silence): an average of 0
    /// is silence, 127 the loudest possible.
    pub loudness: u32,
    /// The loudest packet's loudness.
    pub peak: u8,
    /// Packets whose voice-activity bit was set (when the sender sets it at all).
    pub voiced: u32,
}

impl AudioActivity {
    /// One packet's extension byte: the V bit and the 7-bit level.
    pub(super) fn on_level(&mut self, byte: u8) {
        let loudness = 127 - (byte & 0x7f);
        self.packets = self.packets.saturating_add(1);
        self.loudness = self.loudness.saturating_add(u32::from(loudness));
        self.peak = self.peak.max(loudness);
        if byte & 0x80 != 0 {
            self.voiced = self.voiced.saturating_add(1);
        }
    }
}

impl Core {
    /// The audio activity of each of `tracks` (audio tracks published on this worker) since the last call,
    /// reset as read; `None` for a track that is not one. Control-plane path: it allocates the answer.
    pub fn take_audio_levels(&mut self, tracks: &[TrackId]) -> Vec<Option<AudioActivity>> {
        tracks
            .iter()
            .map(|id| {
                let track = self.tracks.get_mut(*id)?;
                (track.publisher.is_some() && track.spec.kind == MediaKind::Audio)
                    .then(|| std::mem::take(&mut track.speech))
            })
            .collect()
    }

    /// Moves `subscription` to `track` (of the same kind and codec, on this worker: a local track or a mirror),
    /// rewriting its payload type to `payload_type` if the new publisher's differs from the receiver's.
    /// Audio continues with the new track's next packet; video at its next keyframe, asked for now, and the old
    /// track's packets stop at once (the receiver holds its last picture until then).
    pub fn retarget(
        &mut self,
        now: Instant,
        subscription: SubscriptionId,
        track: TrackId,
        payload_type: Option<u8>,
        out: &mut Transmits,
    ) -> Result<(), CoreError> {
        let sub = self.subscriptions.get(subscription).ok_or(CoreError::UnknownSubscription)?;
        let old = sub.track;
        if old == track {
            self.subscriptions.get_mut(subscription).expect("checked above").spec.payload_type = payload_type;
            return Ok(());
        }
        let new = self.tracks.get(track).ok_or(CoreError::UnknownTrack)?;
        let old_spec = self.tracks.get(old).map(|t| t.spec);
        if old_spec.is_some_and(|s| s.kind != new.spec.kind || s.codec != new.spec.codec) {
            return Err(CoreError::Mismatch("a subscription moves only to a track of the same kind and codec"));
        }
        if new.subscribers.len() == self.config.subscribers_per_track_max {
            return Err(CoreError::Full("subscribers per track"));
        }
        let top = (new.spec.qualities() - 1) as u8;
        if let Some(t) = self.tracks.get_mut(old) {
            t.subscribers.retain(|s| *s != subscription);
        }
        self.tracks.get_mut(track).expect("checked above").subscribers.push(subscription);
        let sub = self.subscriptions.get_mut(subscription).expect("checked above");
        sub.track = track;
        sub.spec.payload_type = payload_type;
        sub.target_layer = top;
        // Whatever was sent before, the next packet forwarded starts a new source for the rewriters.
        sub.source_switch |= sub.layer.is_some();
        sub.layer = None;
        let layer = self.tracks.get(track).map_or(top, |t| t.layers.best(top));
        self.send_pli(now, track, layer, out);
        self.counters.retargets += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_add_up_as_loudness() {
        let mut a = AudioActivity::default();
        a.on_level(0x80 | 30); // voiced, -30 dBov
        a.on_level(127); // silence
        assert_eq!((a.packets, a.loudness, a.peak, a.voiced), (2, 97, 97, 1));
    }
}
