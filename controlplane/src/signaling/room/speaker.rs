//! The active speaker: who talks, from the audio levels publishers' packets carry (RFC 6464, added up per
//! track by the dataplane), and the WHEP players that follow them (`?source=speaker`). A player following the
//! speaker keeps one audio and one video stream; when the speaker changes, both are moved to the new speaker's
//! tracks in the dataplane (same SSRCs, the picture changes at the new camera's keyframe), with no new offer.
//!
//! Deciding: every `TICK` each unmuted microphone's loudest packet since the last tick (0 silence, 127 the
//! loudest) becomes its score, or its previous score faded by `DECAY` if that is higher (speech has pauses). The
//! speaker changes when another person leads by `MARGIN` and has been loud (at least `TALKING_MIN` and `MARGIN`
//! above the speaker on the tick itself) on `TICKS_TO_SWITCH` ticks while leading, so one cough does not switch; the speaker stays while nobody else talks, and someone always becomes
//! the speaker when nobody is. The room polls the dataplane only while a player follows the speaker.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

/// How often levels are read and the speaker decided.
pub(super) const TICK: Duration = Duration::from_millis(300);
/// A score (loudness, 127 minus -dBov) that counts as talking: louder than -63 dBov.
const TALKING_MIN: f64 = 64.0;
/// How much louder than the speaker a challenger must be.
const MARGIN: f64 = 6.0;
/// For how many ticks in a row (a challenger must talk for about half a second).
const TICKS_TO_SWITCH: u8 = 2;
/// The share of its score a silent participant keeps per tick: a peak fades below `TALKING_MIN` in a second
/// or two, and the pauses of speech do not make a speaker lose its place.
const DECAY: f64 = 0.85;

/// The room's speaker detector: pure state, fed with peaks, so its rules are tested without a room.
#[derive(Debug, Default)]
pub(super) struct Speakers {
    scores: HashMap<String, f64>,
    current: Option<String>,
    challenger: Option<(String, u8)>,
    /// Whether a tick is scheduled.
    ticking: bool,
}

impl Speakers {
    pub(super) fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// One tick: each publishing participant's peak loudness since the last one (`None`: no packet carried a
    /// level). Returns the new speaker if it changed.
    pub(super) fn update(&mut self, peaks: &[(String, Option<u8>)]) -> Option<String> {
        self.scores.retain(|id, _| peaks.iter().any(|(p, _)| p == id));
        for (id, peak) in peaks {
            let previous = self.scores.get(id).copied().unwrap_or(0.0);
            let score = f64::from(peak.unwrap_or(0)).max(previous * DECAY);
            self.scores.insert(id.clone(), score);
        }
        let loudest = self
            .scores
            .iter()
            .filter(|(_, s)| **s >= TALKING_MIN)
            .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(id, s)| (id.clone(), *s));
        let current_score = self.current.as_ref().and_then(|c| self.scores.get(c)).copied();
        let Some((loudest, score)) = loudest else {
            self.challenger = None;
            if current_score.is_none() {
                // The speaker left and nobody talks: nobody is the speaker.
                self.current = None;
            }
            return None;
        };
        let Some(current_score) = current_score else {
            self.challenger = None;
            self.current = Some(loudest.clone());
            return Some(loudest);
        };
        if Some(&loudest) == self.current.as_ref() || score < current_score + MARGIN {
            self.challenger = None;
            return None;
        }
        // A tick counts for a challenger only if it is loud on that tick itself (its score alone would let one
        // cough, still fading, count twice); a quieter tick in between keeps the count while its score leads.
        let fresh = peaks.iter().find(|(id, _)| *id == loudest).and_then(|(_, p)| *p).map_or(0.0, f64::from);
        let loud_now = fresh >= TALKING_MIN && fresh >= current_score + MARGIN;
        let ticks = match &self.challenger {
            Some((id, n)) if *id == loudest => n + u8::from(loud_now),
            _ => u8::from(loud_now),
        };
        if ticks == 0 {
            self.challenger = None;
            return None;
        }
        if ticks < TICKS_TO_SWITCH {
            self.challenger = Some((loudest, ticks));
            return None;
        }
        self.challenger = None;
        self.current = Some(loudest.clone());
        Some(loudest)
    }

    /// The speaker to follow now that `leaving` goes: the current one if it is someone else, else whoever
    /// scores highest among the others.
    pub(super) fn instead_of(&mut self, leaving: &str) -> Option<String> {
        self.scores.remove(leaving);
        if self.current.as_deref() == Some(leaving) {
            self.current = None;
        }
        self.current.clone().or_else(|| {
            self.scores.iter().max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0))).map(|(id, _)| id.clone())
        })
    }
}

/// What a WHEP player watches.
#[derive(Debug, Clone)]
pub(super) struct Watch {
    /// The participant whose tracks it receives now.
    pub(super) publisher: String,
    /// It follows the active speaker.
    pub(super) follows_speaker: bool,
    /// The payload type the player's offer gave each kind (the publisher's may differ: rewritten to it).
    pub(super) payload_types: Vec<(MediaKind, u8)>,
}

impl Room {
    /// Starts the speaker ticks if a player follows the speaker and they are not running.
    pub(super) fn start_speaker_ticks(&mut self) {
        if std::mem::replace(&mut self.speakers.ticking, true) {
            return;
        }
        self.schedule_speaker_tick();
    }

    fn schedule_speaker_tick(&self) {
        let commands = self.ctx.commands.clone();
        tokio::spawn(async move {
            tokio::time::sleep(TICK).await;
            if let Some(room) = commands.upgrade() {
                let _ = room.send(RoomCommand::SpeakerTick).await;
            }
        });
    }

    /// Reads the levels, decides the speaker, moves the players that follow it; runs while any player does.
    pub(super) async fn speaker_tick(&mut self) {
        if !self.members.iter().any(|m| m.watch.as_ref().is_some_and(|w| w.follows_speaker)) {
            self.speakers.ticking = false;
            return;
        }
        // Unmuted microphones in the main room, by worker.
        let mut asked: Vec<(usize, Vec<Mic>)> = Vec::new();
        for m in self.members.iter().filter(|m| m.room == MAIN && !m.player && m.role != Role::Recorder) {
            // Muted microphones are read too, and their levels dropped: what piled up while muted must not count
            // once they unmute.
            for t in m.published.iter().filter(|t| t.source == Source::Microphone) {
                let entry = (m.id.clone(), t.core, t.muted);
                match asked.iter_mut().find(|(w, _)| *w == m.worker) {
                    Some((_, list)) => list.push(entry),
                    None => asked.push((m.worker, vec![entry])),
                }
            }
        }
        let query: Vec<(usize, Vec<TrackId>)> =
            asked.iter().map(|(w, list)| (*w, list.iter().map(|(_, t, _)| *t).collect())).collect();
        let levels = media(&self.ctx.runtime, move |rt| {
            query.into_iter().map(|(w, tracks)| rt.audio_levels(w, tracks)).collect::<Result<Vec<_>, _>>()
        })
        .await;
        match levels {
            Ok(levels) => {
                let mut peaks = Vec::new();
                for ((_, list), levels) in asked.iter().zip(levels) {
                    for ((id, _, muted), level) in list.iter().zip(levels) {
                        if !muted {
                            peaks.push((id.clone(), level.filter(|l| l.packets > 0).map(|l| l.peak)));
                        }
                    }
                }
                if let Some(speaker) = self.speakers.update(&peaks) {
                    tracing::debug!(meeting = %self.ctx.meeting_id, %speaker, "active speaker");
                    metrics::counter!("sluice_active_speaker_changes_total").increment(1);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read audio levels"),
        }
        if let Some(speaker) = self.speakers.current().map(str::to_string) {
            self.follow_speaker(&speaker, None).await;
        }
        self.schedule_speaker_tick();
    }

    /// Moves the streams of every player that follows the speaker to `speaker` (see `watch`); `leaving` is about
    /// to go, so nothing may stay bound to it.
    pub(super) async fn follow_speaker(&mut self, speaker: &str, leaving: Option<&str>) {
        let players: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.watch.as_ref().is_some_and(|w| w.follows_speaker))
            .filter(|m| m.sections.iter().any(|s| bound_to(s).is_some_and(|p| p != speaker)))
            .map(|m| m.id.clone())
            .collect();
        for player in players {
            self.watch(&player, speaker, leaving).await;
        }
    }

    /// Before `leaving`'s tracks go: players following the speaker move to the speaker (or whoever talked last),
    /// so their streams continue. (Players of a named participant or a screen stop, as documented.)
    pub(super) async fn speaker_leaving(&mut self, leaving: &str) {
        let next = self.speakers.instead_of(leaving);
        let watched = self.members.iter().any(|m| {
            m.watch.as_ref().is_some_and(|w| w.follows_speaker)
                && m.sections.iter().any(|s| bound_to(s).is_some_and(|p| p == leaving))
        });
        if !watched {
            return;
        }
        let next = next.or_else(|| {
            self.members
                .iter()
                .find(|m| m.id != leaving && m.room == MAIN && !m.player && !m.published.is_empty())
                .map(|m| m.id.clone())
        });
        if let Some(next) = next {
            self.follow_speaker(&next, Some(leaving)).await;
        }
    }

    /// Moves each of `player`'s streams to `speaker`'s microphone or camera. A stream of a kind the speaker does
    /// not send (or sends in another codec) stays where it is, unless it is bound to `leaving`: then it moves to
    /// anyone else who sends that kind, so a player never keeps a stream that is about to end.
    async fn watch(&mut self, player: &str, speaker: &str, leaving: Option<&str>) {
        let candidates: Vec<Candidate> = self
            .members
            .iter()
            .filter(|m| m.room == MAIN && !m.player && m.role != Role::Recorder && Some(m.id.as_str()) != leaving)
            .flat_map(|m| {
                m.published.iter().filter(|t| matches!(t.source, Source::Microphone | Source::Camera)).map(|t| {
                    Candidate {
                        publisher: m.id.clone(),
                        worker: m.worker,
                        kind: t.spec.kind,
                        source: t.source,
                        track_id: t.track_id.clone(),
                        codec: t.codec,
                        core: t.core,
                        spec: t.spec,
                        payload_type: t.payload_type,
                    }
                })
            })
            .collect();
        let Some(m) = self.members.iter().find(|m| m.id == player) else { return };
        let Some(watch) = m.watch.clone() else { return };
        let worker = m.worker;
        let mut moves = Vec::new();
        for (index, s) in m.sections.iter().enumerate() {
            let (Binding::Downlink { publisher: bound, subscription: Some(sub), .. }, SectionRole::Downlink(d)) =
                (&s.binding, &s.section.role)
            else {
                continue;
            };
            let fits = |c: &&Candidate| c.kind == s.section.kind && c.codec == d.codec;
            let target = candidates.iter().filter(fits).find(|c| c.publisher == speaker).or_else(|| {
                // Its publisher is leaving: anyone else who sends this kind (a camera before a screen).
                (Some(bound.as_str()) == leaving).then(|| candidates.iter().find(fits)).flatten()
            });
            let Some(target) = target.filter(|t| t.publisher != *bound) else { continue };
            let wanted = watch.payload_types.iter().find(|(k, _)| *k == s.section.kind).map(|(_, pt)| *pt);
            moves.push((index, *sub, target.clone(), wanted.filter(|pt| *pt != target.payload_type)));
        }
        for (index, sub, target, rewrite) in moves {
            let Candidate { publisher, worker: origin_worker, source, track_id, core: core_track, spec, .. } = target;
            let result = media(&self.ctx.runtime, move |rt| {
                let local = rt.track_on(origin_worker, core_track, spec, worker)?;
                rt.retarget(worker, sub, local, rewrite)
            })
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, %player, %publisher, "cannot move a player to the speaker");
                continue;
            }
            let Some(m) = self.member(player) else { return };
            let s = &mut m.sections[index];
            if let Binding::Downlink { publisher: p, track_id: t, .. } = &mut s.binding {
                *p = publisher.clone();
                *t = track_id.clone();
            }
            s.info.participant_id = Some(publisher.clone());
            s.info.track_id = Some(track_id);
            s.info.source = Some(source);
            tracing::info!(meeting = %self.ctx.meeting_id, %player, %publisher, "WHEP player follows the speaker");
        }
        // Whom it watches: the publisher of its video (of its audio if it has no video).
        let Some(m) = self.member(player) else { return };
        let watching = m
            .sections
            .iter()
            .filter(|s| bound_to(s).is_some())
            .max_by_key(|s| s.section.kind == MediaKind::Video)
            .and_then(bound_to)
            .map(str::to_string);
        if let (Some(w), Some(watching)) = (m.watch.as_mut(), watching) {
            w.publisher = watching;
        }
    }
}

/// A microphone whose levels are read: (participant, its track, muted).
type Mic = (String, TrackId, bool);

/// A track a player's stream could move to.
#[derive(Clone)]
struct Candidate {
    publisher: String,
    worker: usize,
    kind: MediaKind,
    source: Source,
    track_id: String,
    codec: Codec,
    core: TrackId,
    spec: TrackSpec,
    payload_type: u8,
}

/// The publisher a subscribed downlink section receives from.
fn bound_to(s: &SectionState) -> Option<&str> {
    match &s.binding {
        Binding::Downlink { publisher, subscription: Some(_), .. } => Some(publisher.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(s: &mut Speakers, peaks: &[(&str, Option<u8>)]) -> Option<String> {
        let peaks: Vec<(String, Option<u8>)> = peaks.iter().map(|(id, p)| (id.to_string(), *p)).collect();
        s.update(&peaks)
    }

    #[test]
    fn the_first_talker_becomes_the_speaker_at_once() {
        let mut s = Speakers::default();
        assert_eq!(tick(&mut s, &[("a", Some(10)), ("b", None)]), None, "nobody talks");
        assert_eq!(tick(&mut s, &[("a", Some(10)), ("b", Some(100))]), Some("b".into()));
        assert_eq!(s.current(), Some("b"));
    }

    #[test]
    fn a_challenger_must_be_louder_for_two_ticks_and_pauses_keep_the_speaker() {
        let mut s = Speakers::default();
        tick(&mut s, &[("a", Some(100)), ("b", Some(0))]);
        // A beep every other tick: b's pauses fade its score, they do not end its turn.
        assert_eq!(tick(&mut s, &[("a", Some(0)), ("b", Some(0))]), None);
        assert_eq!(s.current(), Some("a"));
        // b as loud as a: not enough.
        assert_eq!(tick(&mut s, &[("a", Some(100)), ("b", Some(102))]), None);
        // b louder by the margin once, then twice.
        assert_eq!(tick(&mut s, &[("a", Some(80)), ("b", Some(110))]), None);
        assert_eq!(tick(&mut s, &[("a", Some(80)), ("b", Some(110))]), Some("b".into()));
        // a stops: b stays, however long the silence.
        for _ in 0..20 {
            assert_eq!(tick(&mut s, &[("a", Some(0)), ("b", Some(0))]), None);
        }
        assert_eq!(s.current(), Some("b"));
        // Anyone talking takes over from a silent speaker within two ticks.
        assert_eq!(tick(&mut s, &[("a", Some(90)), ("b", Some(0))]), None);
        assert_eq!(tick(&mut s, &[("a", Some(90)), ("b", Some(0))]), Some("a".into()));
    }

    #[test]
    fn one_cough_does_not_take_the_speaker() {
        let mut s = Speakers::default();
        tick(&mut s, &[("a", Some(90)), ("b", Some(0))]);
        assert_eq!(tick(&mut s, &[("a", Some(90)), ("b", Some(120))]), None, "a cough: one loud tick");
        for _ in 0..5 {
            assert_eq!(tick(&mut s, &[("a", Some(90)), ("b", Some(0))]), None, "its fading score does not count");
        }
        assert_eq!(s.current(), Some("a"));
    }

    #[test]
    fn a_leaving_speaker_hands_over_to_the_loudest_other() {
        let mut s = Speakers::default();
        tick(&mut s, &[("a", Some(100)), ("b", Some(50)), ("c", Some(80))]);
        assert_eq!(s.current(), Some("a"));
        assert_eq!(s.instead_of("a"), Some("c".into()));
        assert_eq!(s.instead_of("b"), Some("c".into()), "the loudest of who remains");
    }
}
