//! Sluice's TURN/STUN relay (RFC 8489, RFC 8656).
