//! Following the active speaker in the core: audio levels (RFC 6464, extension id 1) add up per track until
//! read, and a subscription moved to another publisher's track keeps its SSRC while its sequence numbers and
//! timestamps run on; video moves at the new track's keyframe, which the core asks for at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_dataplane::core::{Core, CoreConfig, CoreError, MediaKind, SubscriptionSpec, Tag, TrackSpec, Transmits};
use sluice_dataplane::packet::codec::Codec;
use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{self, Connected, Incoming, Received};

const RIDS: [&str; 3] = ["q", "h", "f"];

fn simulcast() -> TrackSpec {
    let rids: Vec<Tag> = RIDS.iter().map(|r| Tag::new(r).unwrap()).collect();
    TrackSpec::simulcast(Tag::new("0").unwrap(), &rids, Codec::Vp8)
}

#[test]
fn levels_add_up_per_track_until_read() {
    let mut core = Core::new(CoreConfig { participants_max: 4, ..CoreConfig::default() });
    let now = Instant::now();
    let mut peers = testpeer::connect(&mut core, Profile::AeadAes128Gcm, 2, 31_000, now);
    let mut out = Transmits::with_capacity(32);
    let loud = core.add_track(peers[0].id, TrackSpec::single(peers[0].peer.ssrc, MediaKind::Audio)).unwrap();
    let quiet = core.add_track(peers[1].id, TrackSpec::single(peers[1].peer.ssrc, MediaKind::Audio)).unwrap();
    for i in 0..10u64 {
        let mut p = peers[0].peer.media_with_audio_level(40, i * 20_000, 0x80 | 20);
        core.handle_receive(now, peers[0].addr, &mut p, &mut out);
        let mut p = peers[1].peer.media_with_audio_level(40, i * 20_000, 127);
        core.handle_receive(now, peers[1].addr, &mut p, &mut out);
    }
    // A packet without the extension counts for nothing.
    let mut p = peers[1].peer.media(40, 0);
    core.handle_receive(now, peers[1].addr, &mut p, &mut out);
    let levels = core.take_audio_levels(&[loud, quiet]);
    let (l, q) = (levels[0].unwrap(), levels[1].unwrap());
    assert_eq!((l.packets, l.loudness, l.peak, l.voiced), (10, 1070, 107, 10));
    assert_eq!((q.packets, q.loudness, q.peak, q.voiced), (10, 0, 0, 0));
    let again = core.take_audio_levels(&[loud]);
    assert_eq!(again[0].unwrap().packets, 0, "reset as read");
}

struct World {
    core: Core,
    out: Transmits,
    peers: Vec<Connected>,
    /// Per publisher and layer: a keyframe is due (at the start, and when the core asks).
    keyframe: [[bool; 3]; 2],
    frame: u64,
    now: Instant,
    video: Vec<Received>,
    audio: Vec<Received>,
}

impl World {
    /// `frames` frames from both publishers (every layer, and an audio packet each), delivered.
    fn step(&mut self, frames: u64) {
        for _ in 0..frames {
            for p in 0..2 {
                for layer in 0..3u8 {
                    let key = std::mem::take(&mut self.keyframe[p][usize::from(layer)]);
                    let mut packet =
                        self.peers[p].peer.simulcast_media("0", RIDS[usize::from(layer)], layer, key, self.frame);
                    self.core.handle_receive(self.now, self.peers[p].addr, &mut packet, &mut self.out);
                }
                let mut packet = self.peers[p].peer.media_with_audio_level(40, self.frame, 30);
                self.core.handle_receive(self.now, self.peers[p].addr, &mut packet, &mut self.out);
            }
            self.frame += 1;
            self.now += Duration::from_millis(33);
            if self.core.poll_timeout().is_some_and(|t| t <= self.now) {
                self.core.handle_timeout(self.now, &mut self.out);
            }
            self.deliver();
        }
    }

    fn deliver(&mut self) {
        let sent: Vec<(SocketAddr, Vec<u8>)> = self.out.iter().map(|(a, b)| (a, b.to_vec())).collect();
        self.out.clear();
        for (addr, bytes) in sent {
            let Some(i) = self.peers.iter().position(|p| p.addr == addr) else { continue };
            match self.peers[i].peer.receive(&bytes) {
                Incoming::Media(r) if i == 2 => self.video.push(r),
                Incoming::Media(r) if i == 3 => self.audio.push(r),
                Incoming::KeyframeRequest { media_ssrc } => {
                    if let Some(layer) = (0..3u8).find(|l| self.peers[i].peer.layer_ssrc(*l) == media_ssrc) {
                        self.keyframe[i][usize::from(layer)] = true;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Sequence numbers without a gap, timestamps never going back.
fn continuous(received: &[Received]) {
    let seqs: Vec<u16> = received.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "gap-free: {seqs:?}");
    let stamps: Vec<u32> = received.iter().map(|r| r.timestamp).collect();
    assert!(stamps.windows(2).all(|w| w[1] != w[0] && w[1].wrapping_sub(w[0]) < 0x8000_0000), "{stamps:?}");
}

#[test]
fn a_subscription_follows_another_publisher_as_one_continuous_stream() {
    let mut core = Core::new(CoreConfig { participants_max: 4, ..CoreConfig::default() });
    let now = Instant::now();
    let mut peers = testpeer::connect(&mut core, Profile::AeadAes128Gcm, 4, 31_100, now);
    let (a, b, viewer, listener) = (peers[0].id, peers[1].id, peers[2].id, peers[3].id);
    let video_a = core.add_track(a, simulcast()).unwrap();
    let video_b = core.add_track(b, simulcast()).unwrap();
    let audio_a = core.add_track(a, TrackSpec::single(peers[0].peer.ssrc, MediaKind::Audio)).unwrap();
    let audio_b = core.add_track(b, TrackSpec::single(peers[1].peer.ssrc, MediaKind::Audio)).unwrap();
    let spec = |ssrc| SubscriptionSpec { ssrc, payload_type: None, rtx: None };
    let watch = core.subscribe(viewer, video_a, spec(0x5000)).unwrap();
    let hear = core.subscribe(listener, audio_a, spec(0x6000)).unwrap();
    peers[2].peer.expect_vp8();
    let mut w = World {
        core,
        out: Transmits::with_capacity(64),
        peers,
        keyframe: [[true; 3]; 2],
        frame: 0,
        now,
        video: Vec::new(),
        audio: Vec::new(),
    };
    w.step(30);
    let from = |r: &Received| r.tag.publisher & 0xff;
    assert!(w.video.len() > 20 && w.video.iter().all(|r| r.ssrc == 0x5000 && from(r) == 0), "{:?}", w.video);
    assert!(w.audio.len() > 20 && w.audio.iter().all(|r| r.ssrc == 0x6000 && from(r) == 0), "{:?}", w.audio);

    // A move to a track of another kind is refused; then both subscriptions move to B.
    let (now, out) = (w.now, &mut w.out);
    assert!(matches!(w.core.retarget(now, watch, audio_b, None, out), Err(CoreError::Mismatch(_))));
    w.core.retarget(now, watch, video_b, None, out).unwrap();
    w.core.retarget(now, hear, audio_b, None, out).unwrap();
    assert_eq!(w.core.counters().retargets, 2);
    w.deliver();
    assert!(w.keyframe[1][2], "B was asked for a keyframe of its top layer at once");
    let (video_before, audio_before) = (w.video.len(), w.audio.len());
    w.step(30);
    let after = &w.video[video_before..];
    let first_b = after.iter().position(|r| from(r) != 0).expect("B's video arrives");
    assert_eq!(after[first_b].keyframe, Some(true), "the picture changes at B's keyframe");
    assert!(after[first_b..].iter().all(|r| from(r) == 1 && r.ssrc == 0x5000), "only B after the move, same SSRC");
    assert!(first_b <= 1, "A's packets stop at once: {first_b} more came");
    let heard = &w.audio[audio_before..];
    assert!(!heard.is_empty() && heard.iter().all(|r| from(r) == 1 && r.ssrc == 0x6000), "{heard:?}");
    continuous(&w.video);
    continuous(&w.audio);
}
