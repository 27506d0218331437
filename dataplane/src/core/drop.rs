//! Why a packet was not forwarded. Every drop has exactly one reason and feeds one counter.

/// Each variant is a counter in [`Counters::drops`](super::Counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Not STUN, DTLS, RTP or RTCP by its first byte (RFC 7983).
    UnknownProtocol,
    MalformedStun,
    /// A STUN message that is not a Binding request or indication.
    UnexpectedStun,
    /// A Binding indication: a keepalive, nothing to answer or forward (it refreshes its participant's liveness).
    StunIndication,
    /// A Binding request whose USERNAME names no participant of this worker.
    StunUnknownUser,
    /// MESSAGE-INTEGRITY or FINGERPRINT did not verify.
    StunAuthFailed,
    MalformedRtp,
    MalformedRtcp,
    /// RTP or RTCP from an address no participant has nominated.
    UnknownSource,
    /// Media from a participant whose SRTP keys are not set yet (DTLS not finished).
    NotConnected,
    /// An SSRC the publisher did not announce and no MID/RID maps.
    UnknownSsrc,
    /// Already received, or older than the replay window.
    Replay,
    /// SRTP or SRTCP authentication failed.
    AuthFailed,
    /// Decrypted fine but nobody subscribes to the track.
    NoSubscribers,
    /// The transmit batch was full; the runtime sizes it from the fan-out limit.
    TransmitFull,
    /// Bigger than the largest datagram we send once SRTP's tag is added.
    TooLarge,
    /// Too many DTLS records waiting for the next handshake step (a flood, not a handshake).
    DtlsBacklog,
    /// A DTLS record from a participant whose handshake already failed.
    DtlsFailed,
    /// A cross-core ring was full (the runtime's counterpart of `TransmitFull`).
    QueueFull,
    /// Every relay packet the pool probed was still held by other workers (they fall behind).
    RelayPoolEmpty,
    /// A relayed packet for a track this worker does not mirror (removed while the packet was in flight).
    UnknownRelay,
    /// Media of a track the control plane blocked: a host stopped it, or its publisher's grant for it was revoked
    /// (until the renegotiation that closes it). Decrypted (so the replay window and rollover counter stay true)
    /// and not forwarded.
    Blocked,
    /// A subscriber's pacer queue was full (its link is far slower than what it is sent).
    PacerFull,
    /// A paced packet left its track's retransmission buffer, or its subscription ended, before its turn.
    PacerExpired,
}

impl DropReason {
    pub const COUNT: usize = DropReason::PacerExpired as usize + 1;

    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::UnknownProtocol,
        DropReason::MalformedStun,
        DropReason::UnexpectedStun,
        DropReason::StunIndication,
        DropReason::StunUnknownUser,
        DropReason::StunAuthFailed,
        DropReason::MalformedRtp,
        DropReason::MalformedRtcp,
        DropReason::UnknownSource,
        DropReason::NotConnected,
        DropReason::UnknownSsrc,
        DropReason::Replay,
        DropReason::AuthFailed,
        DropReason::NoSubscribers,
        DropReason::TransmitFull,
        DropReason::TooLarge,
        DropReason::DtlsBacklog,
        DropReason::DtlsFailed,
        DropReason::QueueFull,
        DropReason::RelayPoolEmpty,
        DropReason::UnknownRelay,
        DropReason::Blocked,
        DropReason::PacerFull,
        DropReason::PacerExpired,
    ];

    /// The label used in metrics (`sluice_dataplane_drops_total{reason="..."}`).
    pub fn label(self) -> &'static str {
        match self {
            DropReason::UnknownProtocol => "unknown_protocol",
            DropReason::MalformedStun => "malformed_stun",
            DropReason::UnexpectedStun => "unexpected_stun",
            DropReason::StunIndication => "stun_indication",
            DropReason::StunUnknownUser => "stun_unknown_user",
            DropReason::StunAuthFailed => "stun_auth_failed",
            DropReason::MalformedRtp => "malformed_rtp",
            DropReason::MalformedRtcp => "malformed_rtcp",
            DropReason::UnknownSource => "unknown_source",
            DropReason::NotConnected => "not_connected",
            DropReason::UnknownSsrc => "unknown_ssrc",
            DropReason::Replay => "replay",
            DropReason::AuthFailed => "auth_failed",
            DropReason::NoSubscribers => "no_subscribers",
            DropReason::TransmitFull => "transmit_full",
            DropReason::TooLarge => "too_large",
            DropReason::DtlsBacklog => "dtls_backlog",
            DropReason::DtlsFailed => "dtls_failed",
            DropReason::QueueFull => "queue_full",
            DropReason::RelayPoolEmpty => "relay_pool_empty",
            DropReason::UnknownRelay => "unknown_relay",
            DropReason::Blocked => "blocked",
            DropReason::PacerFull => "pacer_full",
            DropReason::PacerExpired => "pacer_expired",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_in_order_with_unique_labels() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
        let labels: std::collections::HashSet<_> = DropReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), DropReason::COUNT);
    }
}
