//! Typed commands from the control plane to one worker, each applied to the worker's core between two packet
//! batches. Commands that answer carry a [`Reply`].

use std::time::{Duration, Instant};

use crate::core::{
    AudioActivity, Core, CoreError, Counters, Fingerprint, IceCredentials, ParticipantId, ParticipantStats, RelayKey,
    SubscriptionId, SubscriptionSpec, TrackId, TrackSpec, Transmits,
};
use crate::srtp::Profile;

/// Where a command's answer goes. If the worker dies first, the caller sees the channel close.
#[derive(Debug)]
pub struct Reply<T>(pub(super) std::sync::mpsc::SyncSender<T>);

impl<T> Reply<T> {
    fn send(self, value: T) {
        // The caller may have given up waiting (timeout); nobody else wants the answer.
        let _ = self.0.try_send(value);
    }
}

/// SRTP keys handed over directly (no DTLS).
#[derive(Debug)]
pub struct Keys {
    pub profile: Profile,
    pub local_key: Vec<u8>,
    pub local_salt: Vec<u8>,
    pub remote_key: Vec<u8>,
    pub remote_salt: Vec<u8>,
}

/// Failures the tests of failure handling inject.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// The worker sleeps this long inside its loop, as if a slice of work took that long.
    Stall(Duration),
    /// The worker panics.
    Panic,
}

#[derive(Debug)]
pub enum Command {
    /// Answers once the worker's loop runs.
    Ready {
        reply: Reply<()>,
    },
    AddParticipant {
        ice: IceCredentials,
        reply: Reply<Result<ParticipantId, CoreError>>,
    },
    ExpectDtls {
        participant: ParticipantId,
        fingerprint: Fingerprint,
        reply: Reply<Result<(), CoreError>>,
    },
    SetSrtpKeys {
        participant: ParticipantId,
        keys: Keys,
        reply: Reply<Result<(), CoreError>>,
    },
    RemoveParticipant {
        participant: ParticipantId,
        reply: Reply<Result<(), CoreError>>,
    },
    AddTrack {
        publisher: ParticipantId,
        spec: TrackSpec,
        reply: Reply<Result<TrackId, CoreError>>,
    },
    RemoveTrack {
        track: TrackId,
        reply: Reply<Result<(), CoreError>>,
    },
    BlockTrack {
        track: TrackId,
        blocked: bool,
        reply: Reply<Result<(), CoreError>>,
    },
    /// Relay `track` to worker `worker`, which mirrors it under `key`.
    RelayTrack {
        track: TrackId,
        key: RelayKey,
        worker: usize,
        reply: Reply<Result<(), CoreError>>,
    },
    AddMirror {
        key: RelayKey,
        spec: TrackSpec,
        reply: Reply<Result<TrackId, CoreError>>,
    },
    MirrorOf {
        key: RelayKey,
        reply: Reply<Option<TrackId>>,
    },
    RemoveMirror {
        key: RelayKey,
        reply: Reply<Result<(), CoreError>>,
    },
    Subscribe {
        subscriber: ParticipantId,
        track: TrackId,
        spec: SubscriptionSpec,
        reply: Reply<Result<SubscriptionId, CoreError>>,
    },
    Unsubscribe {
        subscription: SubscriptionId,
        reply: Reply<Result<(), CoreError>>,
    },
    SetLayer {
        subscription: SubscriptionId,
        layer: u8,
        reply: Reply<Result<(), CoreError>>,
    },
    /// Moves a subscription to another track of this worker (`Core::retarget`).
    Retarget {
        subscription: SubscriptionId,
        track: TrackId,
        payload_type: Option<u8>,
        reply: Reply<Result<(), CoreError>>,
    },
    /// The audio levels of these published audio tracks since the last time, reset as read.
    AudioLevels {
        tracks: Vec<TrackId>,
        reply: Reply<Vec<Option<AudioActivity>>>,
    },
    /// A mirror on another worker needs a keyframe of the track relayed as `key`.
    RequestKeyframe {
        key: RelayKey,
        layer: u8,
    },
    Stats {
        reply: Reply<Counters>,
    },
    ParticipantStats {
        participant: ParticipantId,
        reply: Reply<Result<ParticipantStats, CoreError>>,
    },
    Fault(Fault),
    /// Single-port mode: another worker received this first ICE check of a flow whose ufrag is ours. The worker
    /// (which owns the I/O path) takes the flow over; `apply` does nothing with it.
    AdoptFlow {
        source: std::net::SocketAddr,
        ufrag: Box<str>,
        datagram: Vec<u8>,
    },
}

impl Command {
    /// Applies the command to the worker's core.
    pub(super) fn apply(self, core: &mut Core, now: Instant, out: &mut Transmits) {
        match self {
            Command::Ready { reply } => reply.send(()),
            Command::AddParticipant { ice, reply } => reply.send(core.add_participant(ice)),
            Command::ExpectDtls { participant, fingerprint, reply } => {
                reply.send(core.expect_dtls(participant, fingerprint, now))
            }
            Command::SetSrtpKeys { participant, keys, reply } => reply.send(core.set_srtp_keys(
                participant,
                keys.profile,
                (&keys.local_key, &keys.local_salt),
                (&keys.remote_key, &keys.remote_salt),
            )),
            Command::RemoveParticipant { participant, reply } => reply.send(core.remove_participant(participant)),
            Command::AddTrack { publisher, spec, reply } => reply.send(core.add_track(publisher, spec)),
            Command::RemoveTrack { track, reply } => reply.send(core.remove_track(track)),
            Command::BlockTrack { track, blocked, reply } => reply.send(core.block_track(track, blocked)),
            Command::RelayTrack { track, key, worker, reply } => reply.send(core.relay_track(track, key, worker)),
            Command::AddMirror { key, spec, reply } => reply.send(core.add_mirror_track(key, spec)),
            Command::MirrorOf { key, reply } => reply.send(core.relayed_track(key)),
            Command::RemoveMirror { key, reply } => {
                reply.send(core.relayed_track(key).ok_or(CoreError::UnknownTrack).and_then(|t| core.remove_track(t)))
            }
            Command::Subscribe { subscriber, track, spec, reply } => {
                reply.send(core.subscribe(subscriber, track, spec))
            }
            Command::Unsubscribe { subscription, reply } => reply.send(core.unsubscribe(subscription)),
            Command::SetLayer { subscription, layer, reply } => {
                reply.send(core.set_layer(now, subscription, layer, out))
            }
            Command::Retarget { subscription, track, payload_type, reply } => {
                reply.send(core.retarget(now, subscription, track, payload_type, out))
            }
            Command::AudioLevels { tracks, reply } => reply.send(core.take_audio_levels(&tracks)),
            Command::RequestKeyframe { key, layer } => core.request_relayed_keyframe(now, key, layer, out),
            Command::Stats { reply } => reply.send(core.counters().clone()),
            Command::ParticipantStats { participant, reply } => reply.send(core.participant_stats(participant)),
            Command::Fault(Fault::Stall(d)) => std::thread::sleep(d),
            Command::Fault(Fault::Panic) => panic!("fault injected: worker panics"),
            Command::AdoptFlow { .. } => {}
        }
    }
}
