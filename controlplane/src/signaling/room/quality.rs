//! Analytics in a meeting's room (`docs/analytics.md`): join, connect, first-frame and leave events, and a
//! quality sample per participant joining the browser's summary with the dataplane's figures. Written with
//! bounded volume: at most one quality row per `QUALITY_INTERVAL_MIN` per participant.

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_dataplane::core::ParticipantStats;

use super::super::control::ControlError;
use super::super::protocol::{ErrorCode, LeaveReason, ServerMessage};
use super::{Member, Room, RoomCommand, media};
use crate::analytics::stats::BrowserStats;

/// Quality rows are written at most this often per participant (the browser sends a summary every 10 s).
const QUALITY_INTERVAL_MIN: Duration = Duration::from_secs(8);
/// Stats summaries: a burst of this many, then one per `STATS_PERIOD`.
const STATS_BURST: f64 = 2.0;
const STATS_PERIOD: Duration = Duration::from_secs(5);
/// `get_transport`: at most one per this long per participant.
const TRANSPORT_INTERVAL_MIN: Duration = Duration::from_millis(250);

/// One participant's analytics state.
#[derive(Debug)]
pub(super) struct MemberAnalytics {
    /// When `welcome` went out.
    welcomed: Instant,
    connected: bool,
    ice_failure_written: bool,
    first_frame_written: bool,
    candidate_written: bool,
    last_quality: Option<Instant>,
    /// Stats summaries: a token bucket (tokens, last refill).
    stats_bucket: (f64, Instant),
    last_transport: Option<Instant>,
    /// The previous sample's figures, for the CPU share: the worker's CPU time and datagrams, this
    /// participant's packets.
    previous: Option<(Duration, u64, u64)>,
}

impl MemberAnalytics {
    /// Whether its media connected (ICE and DTLS).
    pub(super) fn connected(&self) -> bool {
        self.connected
    }

    pub(super) fn new() -> MemberAnalytics {
        let now = Instant::now();
        MemberAnalytics {
            welcomed: now,
            connected: false,
            ice_failure_written: false,
            first_frame_written: false,
            candidate_written: false,
            last_quality: None,
            stats_bucket: (STATS_BURST, now),
            last_transport: None,
            previous: None,
        }
    }
}

fn leave_reason(reason: LeaveReason) -> &'static str {
    match reason {
        LeaveReason::Left => "left",
        LeaveReason::ConnectionLost => "connection_lost",
        LeaveReason::Replaced => "replaced",
        LeaveReason::MeetingEnded => "meeting_ended",
        LeaveReason::Removed => "removed",
        LeaveReason::WaitingRoom => "waiting_room",
        LeaveReason::Moved => "moved",
    }
}

impl Room {
    /// Seated: the join succeeded. Starts the clock for the media connection.
    pub(super) async fn joined(&mut self, id: &str, requested_at: Instant) {
        let Some(m) = self.members.iter().find(|m| m.id == id) else { return };
        let join = requested_at.elapsed();
        metrics::counter!("sluice_joins_total", "result" => "succeeded", "reason" => "ok").increment(1);
        metrics::histogram!("sluice_join_duration_seconds").record(join.as_secs_f64());
        let metrics = json!({"participant_id": id, "name": m.name, "role": m.role, "join_ms": join.as_millis() as u64});
        let user = m.user_id.clone();
        self.ctx.analytics.event(&self.ctx.meeting_id, &user, "join_succeeded", metrics).await;
        let (commands, participant, delay) = (self.ctx.commands.clone(), id.to_string(), self.ctx.ice_timeout);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(room) = commands.upgrade() {
                let _ = room.send(RoomCommand::ConnectTimeout { participant }).await;
            }
        });
    }

    /// DTLS-SRTP is up for `id`.
    pub(super) async fn media_connected(&mut self, id: &str) {
        let Some(m) = self.member(id) else { return };
        if std::mem::replace(&mut m.analytics.connected, true) {
            return;
        }
        let took = m.analytics.welcomed.elapsed();
        let user = m.user_id.clone();
        metrics::histogram!("sluice_ice_connect_seconds").record(took.as_secs_f64());
        let metrics = json!({"participant_id": id, "ms": took.as_millis() as u64});
        self.ctx.analytics.event(&self.ctx.meeting_id, &user, "ice_connected", metrics).await;
    }

    /// The media connection failed (`dtls_failed`) or never came up in time (`ice_timeout`): one event.
    pub(super) async fn media_failed(&mut self, id: &str, reason: &'static str) {
        let Some(m) = self.member(id) else { return };
        if m.analytics.connected || std::mem::replace(&mut m.analytics.ice_failure_written, true) {
            return;
        }
        let user = m.user_id.clone();
        metrics::counter!("sluice_ice_failures_total", "reason" => reason).increment(1);
        let metrics = json!({"participant_id": id, "reason": reason});
        self.ctx.analytics.event(&self.ctx.meeting_id, &user, "ice_failed", metrics).await;
    }

    pub(super) async fn left_event(&self, m: &Member, reason: LeaveReason) {
        let metrics = json!({
            "participant_id": m.id,
            "reason": leave_reason(reason),
            "duration_s": m.analytics.welcomed.elapsed().as_secs(),
        });
        self.ctx.analytics.event(&self.ctx.meeting_id, &m.user_id, "left", metrics).await;
    }

    /// A browser's stats summary: refused when too frequent or malformed; else first frame, candidate and a
    /// quality sample (at most one per `QUALITY_INTERVAL_MIN`).
    pub(super) async fn stats(&mut self, id: &str, stats: BrowserStats) -> Result<(), ControlError> {
        let stats = stats.checked().map_err(|e| {
            metrics::counter!("sluice_stats_refused_total", "reason" => "malformed").increment(1);
            ControlError::new(ErrorCode::BadMessage, e)
        })?;
        let (meeting, analytics) = (self.ctx.meeting_id.clone(), std::sync::Arc::clone(&self.ctx.analytics));
        let Some(m) = self.member(id) else { return Ok(()) };
        let (tokens, at) = m.analytics.stats_bucket;
        let now = Instant::now();
        let tokens = (tokens + now.duration_since(at).as_secs_f64() / STATS_PERIOD.as_secs_f64()).min(STATS_BURST);
        if tokens < 1.0 {
            m.analytics.stats_bucket = (tokens, now);
            metrics::counter!("sluice_stats_refused_total", "reason" => "rate").increment(1);
            return Err(ControlError::new(
                ErrorCode::RateLimited,
                format!("at most one stats summary per {} s", STATS_PERIOD.as_secs()),
            ));
        }
        m.analytics.stats_bucket = (tokens - 1.0, now);
        let user = m.user_id.clone();
        if let Some(ttff) = stats.ttff_ms.filter(|_| !m.analytics.first_frame_written) {
            m.analytics.first_frame_written = true;
            metrics::histogram!("sluice_time_to_first_frame_seconds").record(ttff / 1000.0);
            analytics.event(&meeting, &user, "first_frame", json!({"participant_id": id, "ttff_ms": ttff})).await;
        }
        let m = self.member(id).expect("found above");
        if let Some(c) = stats.candidate.as_ref().filter(|_| !m.analytics.candidate_written) {
            m.analytics.candidate_written = true;
            metrics::counter!("sluice_ice_connected_total", "candidate" => c.kind.as_str()).increment(1);
            let metrics = json!({"participant_id": id, "type": c.kind.as_str(), "protocol": c.protocol.as_str()});
            analytics.event(&meeting, &user, "candidate", metrics).await;
        }
        let m = self.member(id).expect("found above");
        if m.analytics.last_quality.is_some_and(|t| t.elapsed() < QUALITY_INTERVAL_MIN) {
            return Ok(());
        }
        m.analytics.last_quality = Some(Instant::now());
        self.quality_sample(id, &stats).await;
        Ok(())
    }

    /// `get_transport`: the dataplane's estimate for this participant's downlink, answered as `transport`.
    pub(super) async fn transport(&mut self, id: &str) -> Result<(), ControlError> {
        let Some(m) = self.member(id) else { return Ok(()) };
        if m.analytics.last_transport.is_some_and(|t| t.elapsed() < TRANSPORT_INTERVAL_MIN) {
            return Err(ControlError::new(
                ErrorCode::RateLimited,
                format!("at most one get_transport per {} ms", TRANSPORT_INTERVAL_MIN.as_millis()),
            ));
        }
        m.analytics.last_transport = Some(Instant::now());
        let (worker, core) = (m.worker, m.core);
        let runtime = std::sync::Arc::clone(&self.ctx.runtime);
        let stats: Option<ParticipantStats> = media(&runtime, move |rt| rt.participant_stats(worker, core)).await.ok();
        let (estimate_bps, acked_bps, limited) =
            stats.map_or((None, None, false), |s| (s.estimate_bps, s.acked_bps, s.bandwidth_limited));
        if let Some(m) = self.members.iter().find(|m| m.id == id) {
            m.send(ServerMessage::Transport { estimate_bps, acked_bps, limited });
        }
        Ok(())
    }

    async fn quality_sample(&mut self, id: &str, stats: &BrowserStats) {
        let runtime = std::sync::Arc::clone(&self.ctx.runtime);
        let Some(m) = self.members.iter().find(|m| m.id == id) else { return };
        let (worker, core) = (m.worker, m.core);
        let server: Option<ParticipantStats> = media(&runtime, move |rt| rt.participant_stats(worker, core)).await.ok();
        let worker_now = runtime.snapshot(worker).ok();
        let Some(m) = self.member(id) else { return };
        // The worker's CPU since the previous sample, shared in proportion to this participant's datagrams.
        let mut cpu_ms = None;
        if let (Some(s), Some(w)) = (&server, &worker_now) {
            let mine = s.packets_in + s.packets_out;
            let datagrams = w.io.datagrams_received + w.io.datagrams_sent;
            if let Some((cpu_before, datagrams_before, mine_before)) = m.analytics.previous {
                let cpu = w.cpu_time.saturating_sub(cpu_before).as_secs_f64() * 1000.0;
                let all = datagrams.saturating_sub(datagrams_before).max(1) as f64;
                let share = (mine.saturating_sub(mine_before) as f64 / all).min(1.0);
                cpu_ms = Some(cpu * share);
            }
            m.analytics.previous = Some((w.cpu_time, datagrams, mine));
        }
        let browser = stats.summary();
        if let Some(loss) = stats.loss_in() {
            metrics::histogram!("sluice_packet_loss_ratio", "direction" => "in").record(loss);
        }
        if let Some(s) = stats.jitter_s() {
            metrics::histogram!("sluice_jitter_seconds").record(s);
        }
        if let Some(s) = stats.rtt_s() {
            metrics::histogram!("sluice_rtt_seconds").record(s);
        }
        let server = server.map(|s| {
            let expected = s.packets_in as f64 + s.packets_lost_in.max(0) as f64;
            let loss = (expected > 0.0).then(|| s.packets_lost_in.max(0) as f64 / expected);
            json!({
                "packets_in": s.packets_in, "packets_out": s.packets_out, "bytes_in": s.bytes_in,
                "bytes_out": s.bytes_out, "loss_in": loss, "jitter_in_ms": s.jitter_in_ms, "nacks": s.nacks_in,
                "plis": s.plis_in, "retransmissions": s.retransmissions_out, "layers": s.layers,
                "estimate_bps": s.estimate_bps, "acked_bps": s.acked_bps,
            })
        });
        let user = m.user_id.clone();
        let metrics = json!({"participant_id": id, "browser": browser, "server": server, "cpu_ms": cpu_ms});
        self.ctx.analytics.event(&self.ctx.meeting_id, &user, "quality", metrics).await;
    }
}
