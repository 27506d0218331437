//! One browser's WebSocket: the `join` handshake (token, meeting, version), then messages both ways until the
//! socket closes, with size, rate and liveness limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};

use super::Outbound;
use super::protocol::{
    ClientMessage, ErrorCode, LeaveReason, MESSAGE_LEN_MAX, PROTOCOL_VERSION, ServerMessage, close,
    parse_client_message,
};
use super::room::{JoinRequest, RoomCommand};
use crate::http::AppState;
use crate::http::access::Caller;

/// The first message must arrive within this.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The server pings this often; a browser answers pings by itself.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// Nothing at all from the browser for this long (no message, no pong) closes the session.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(15);
/// Messages queued for a browser; a browser this far behind is closed.
const OUTBOUND_QUEUE: usize = 256;
/// A write that cannot complete in this long (the client stopped reading) ends the session.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a close waits for the client's Close frame.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// Token bucket for incoming messages: a burst of this many, refilled at `RATE_PER_SEC`.
const RATE_BURST: f64 = 50.0;
const RATE_PER_SEC: f64 = 20.0;

/// The WebSocket's read buffer. tungstenite zeroes the free part of it before every read (128 KiB by default:
/// the largest cost of the control plane's threads in `perf`, for messages that are mostly under 1 KiB); a
/// larger message still arrives whole, over several reads.
const READ_BUFFER_LEN: usize = 16 * 1024;

/// The WebSocket upgrade, refused (429 or 503 with `Retry-After`) when the source or the server holds its
/// maximum of open sessions; the session keeps its place until it ends.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let place = match state.policy.limits.open_session(caller.source) {
        Ok(place) => place,
        Err(refused) => return refused.into_response(),
    };
    ws.read_buffer_size(READ_BUFFER_LEN).max_message_size(MESSAGE_LEN_MAX).max_frame_size(MESSAGE_LEN_MAX).on_upgrade(
        move |socket| async move {
            run(socket, state, caller.source).await;
            drop(place);
        },
    )
}

async fn run(mut socket: WebSocket, state: Arc<AppState>, source: std::net::IpAddr) {
    metrics::counter!("sluice_signaling_sessions_total").increment(1);
    let (participant, room, mut outbound) = match join(&mut socket, &state, source).await {
        Ok(joined) => joined,
        Err((code, reason)) => {
            metrics::counter!("sluice_signaling_refused_total", "code" => code.to_string()).increment(1);
            tracing::info!(code, %reason, "signaling session refused");
            return close_with(&mut socket, code, &reason).await;
        }
    };
    let reason = serve(&mut socket, &participant, &room, &mut outbound).await;
    let _ = room.send(RoomCommand::Leave { participant, reason }).await;
}

type Joined = (String, mpsc::Sender<RoomCommand>, mpsc::Receiver<Outbound>);

/// Reads `join`, checks it, and places the participant in the meeting's room.
async fn join(socket: &mut WebSocket, state: &AppState, source: std::net::IpAddr) -> Result<Joined, (u16, String)> {
    let text = match tokio::time::timeout(JOIN_TIMEOUT, next_text(socket)).await {
        Ok(Some(text)) => text,
        Ok(None) => return Err((1000, "closed before joining".into())),
        Err(_) => return Err((close::TIMEOUT, format!("no join message within {} s", JOIN_TIMEOUT.as_secs()))),
    };
    let message = parse_client_message(&text).map_err(|e| (close::PROTOCOL, e))?;
    let ClientMessage::Join { v, meeting_id, token, publish, video_codec } = message else {
        return Err((close::PROTOCOL, "the first message must be join".into()));
    };
    if v != PROTOCOL_VERSION {
        return Err((
            close::PROTOCOL,
            format!("protocol version {v} is not supported; this server speaks {PROTOCOL_VERSION}"),
        ));
    }
    let analytics = state.signaling.analytics();
    let claims = match state.tokens.verify(&token, &meeting_id) {
        Ok(claims) => claims,
        Err(e) => {
            // Written under the meeting only if it exists: a made-up id must not create rows.
            let known = matches!(state.store.meeting(&meeting_id).await, Ok(Some(_)));
            analytics.join_failed(known.then_some(meeting_id.as_str()), "", failure(close::BAD_TOKEN)).await;
            return Err((close::BAD_TOKEN, e.to_string()));
        }
    };
    let refused = |code: u16| {
        let (analytics, meeting_id, user) = (analytics.clone(), meeting_id.clone(), claims.sub.clone());
        async move { analytics.join_failed(Some(&meeting_id), &user, failure(code)).await }
    };
    let meeting = match state.store.meeting(&meeting_id).await {
        Ok(Some(meeting)) => meeting,
        Ok(None) => {
            analytics.join_failed(None, &claims.sub, failure(close::NO_MEETING)).await;
            return Err((close::NO_MEETING, format!("meeting {meeting_id:?} does not exist")));
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read a meeting");
            return Err((close::UNAVAILABLE, "the server cannot read the meeting now".into()));
        }
    };
    analytics.join_attempted(&meeting_id, &claims.sub).await;
    if meeting.ended_at.is_some() {
        refused(close::ENDED).await;
        return Err((close::ENDED, "the meeting has ended".into()));
    }
    match state.store.is_removed(&meeting_id, &claims.sub).await {
        Ok(false) => {}
        Ok(true) => {
            refused(close::REMOVED).await;
            return Err((close::REMOVED, "a host removed you from this meeting".into()));
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot check removals");
            return Err((close::UNAVAILABLE, "the server cannot check the meeting now".into()));
        }
    }
    let signaling = &state.signaling;
    let Some(runtime) = signaling.runtime.as_ref() else {
        return Err((close::UNAVAILABLE, "this server runs no media workers".into()));
    };
    let (out, outbound) = mpsc::channel(OUTBOUND_QUEUE);
    let source = crate::http::limits::bucket_of(source);
    let mut request = JoinRequest {
        claims: claims.clone(),
        publish,
        video_codec: video_codec.map(|c| c.codec()),
        out,
        source,
        requested_at: Instant::now(),
        ingest: false,
    };
    // A room that is closing as we arrive refuses the command; the second try starts a new one.
    for _ in 0..2 {
        let room = signaling.room(&meeting_id, &meeting.settings, runtime);
        let (reply, answer) = oneshot::channel();
        match room.send(RoomCommand::Join { request, reply }).await {
            Ok(()) => {
                let answered = answer.await.map_err(|_| (close::UNAVAILABLE, "the room stopped".to_string()))?;
                return match answered {
                    Ok(participant) => Ok((participant, room, outbound)),
                    Err((code, reason)) => {
                        refused(code).await;
                        Err((code, reason))
                    }
                };
            }
            Err(mpsc::error::SendError(RoomCommand::Join { request: back, .. })) => request = back,
            Err(_) => unreachable!("we sent a Join"),
        }
    }
    Err((close::UNAVAILABLE, "the meeting's room is restarting; try again".into()))
}

/// Relays messages both ways until the socket closes; returns why the participant is leaving.
async fn serve(
    socket: &mut WebSocket,
    participant: &str,
    room: &mpsc::Sender<RoomCommand>,
    outbound: &mut mpsc::Receiver<Outbound>,
) -> LeaveReason {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    let mut last_heard = Instant::now();
    let mut bucket = RATE_BURST;
    let mut refilled = Instant::now();
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        let refusal = ServerMessage::error(ErrorCode::BadMessage, "messages are JSON text, not binary");
                        if !send(socket, &refusal).await {
                            return LeaveReason::ConnectionLost;
                        }
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        last_heard = Instant::now();
                        continue;
                    }
                    // A normal close is a leave; anything else (an error code, no close frame at all) is a lost
                    // connection, logged with what the client said, so an abnormal end does not pass for a leave.
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.as_ref().map_or(1005, |f| f.code);
                        if matches!(code, 1000 | 1001 | 1005) {
                            return LeaveReason::Left;
                        }
                        let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        tracing::warn!(participant, code, %reason, "the client closed signaling abnormally");
                        return LeaveReason::ConnectionLost;
                    }
                    None => {
                        tracing::warn!(participant, "signaling connection ended without a close frame");
                        return LeaveReason::ConnectionLost;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(participant, error = %e, "signaling connection failed");
                        return LeaveReason::ConnectionLost;
                    }
                };
                last_heard = Instant::now();
                bucket = (bucket + refilled.elapsed().as_secs_f64() * RATE_PER_SEC).min(RATE_BURST);
                refilled = Instant::now();
                bucket -= 1.0;
                if bucket < 0.0 {
                    let reason = format!("more than {RATE_PER_SEC} messages a second");
                    close_with(socket, close::RATE_LIMITED, &reason).await;
                    return LeaveReason::ConnectionLost;
                }
                let reply = match parse_client_message(text.as_str()) {
                    Ok(ClientMessage::Ping { nonce }) => Some(ServerMessage::Pong { nonce }),
                    Ok(ClientMessage::Join { .. }) => Some(ServerMessage::error(ErrorCode::BadState, "already joined")),
                    Ok(ClientMessage::Stats { .. }) if text.len() > crate::analytics::stats::STATS_LEN_MAX => {
                        metrics::counter!("sluice_stats_refused_total", "reason" => "too_large").increment(1);
                        let limit = crate::analytics::stats::STATS_LEN_MAX;
                        Some(ServerMessage::error(ErrorCode::Limit, format!("a stats summary is at most {limit} bytes")))
                    }
                    Ok(ClientMessage::Leave {}) => {
                        // Nothing more is read from the room; it learns at once, then from the queued leave.
                        outbound.close();
                        let leave = RoomCommand::Leave { participant: participant.to_string(), reason: LeaveReason::Left };
                        let _ = room.send(leave).await;
                        close_with(socket, 1000, "left").await;
                        return LeaveReason::Left;
                    }
                    Ok(message) => {
                        let command = RoomCommand::Message { participant: participant.to_string(), message };
                        if room.send(command).await.is_err() {
                            return LeaveReason::ConnectionLost;
                        }
                        None
                    }
                    Err(e) => Some(ServerMessage::error(ErrorCode::BadMessage, e)),
                };
                if let Some(reply) = reply && !send(socket, &reply).await {
                    return LeaveReason::ConnectionLost;
                }
            }
            out = outbound.recv() => match out {
                Some(Outbound::Message(message)) => {
                    if !send(socket, &message).await {
                        return LeaveReason::ConnectionLost;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    close_with(socket, code, &reason).await;
                    return LeaveReason::Left;
                }
                // The room dropped us (we fell too far behind, or it removed us).
                None => {
                    close_with(socket, close::RATE_LIMITED, "too slow reading messages").await;
                    return LeaveReason::ConnectionLost;
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_TIMEOUT {
                    close_with(socket, close::TIMEOUT, "no answer to pings").await;
                    return LeaveReason::ConnectionLost;
                }
                let _ = socket.send(Message::Ping(Vec::new().into())).await;
            }
        }
    }
}

async fn next_text(socket: &mut WebSocket) -> Option<String> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(text)) => return Some(text.to_string()),
            Ok(Message::Binary(_)) => return Some(String::from("(binary)")),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// False when the message could not be written in time: the client stopped reading, or the connection is gone.
async fn send(socket: &mut WebSocket, message: &ServerMessage) -> bool {
    let write = socket.send(Message::Text(message.to_json().into()));
    matches!(tokio::time::timeout(SEND_TIMEOUT, write).await, Ok(Ok(())))
}

async fn close_with(socket: &mut WebSocket, code: u16, reason: &str) {
    // A close reason is at most 123 bytes (RFC 6455 section 5.5).
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame { code, reason: reason[..end].into() };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    // The closing handshake (RFC 6455 section 7.1.1): read, and discard, until the client's Close, so a client
    // still sending does not get a TCP reset that could destroy our Close frame before it reads it.
    let deadline = tokio::time::Instant::now() + CLOSE_HANDSHAKE_TIMEOUT;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.recv()).await {
        if matches!(message, Message::Close(_)) {
            break;
        }
    }
}

/// The `join_failed` reason for a signaling close code (a fixed set: it is a Prometheus label).
fn failure(code: u16) -> &'static str {
    match code {
        close::BAD_TOKEN => "bad_token",
        close::NO_MEETING => "no_meeting",
        close::ENDED => "ended",
        close::FULL => "full",
        close::LOCKED => "locked",
        close::REMOVED => "removed",
        close::DENIED => "denied",
        close::FORBIDDEN => "forbidden",
        close::PROTOCOL => "protocol",
        close::TIMEOUT => "timeout",
        close::RATE_LIMITED => "rate_limited",
        _ => "unavailable",
    }
}
