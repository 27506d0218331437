//! Packet index estimation and replay protection (RFC 3711 section 3.3.1 and Appendix A).

/// How far behind the highest index a packet may arrive and still be accepted. RFC 3711 asks for at least 64;
/// browsers reorder far less than this, but retransmissions of old packets arrive late.
pub const WINDOW_LEN: u64 = 128;

/// Guesses the 48-bit index of a packet with sequence number `seq`, given the highest index seen so far: the
/// rollover counter is the one that puts `seq` nearest to the highest (RFC 3711 Appendix A).
pub fn estimate_index(highest: u64, seq: u16) -> u64 {
    let roc = highest >> 16;
    let s_l = highest & 0xffff;
    let seq64 = u64::from(seq);
    let v = if s_l < 0x8000 {
        if seq64 > s_l && seq64 - s_l > 0x8000 { roc.saturating_sub(1) } else { roc }
    } else if s_l - 0x8000 > seq64 {
        roc + 1
    } else {
        roc
    };
    (v << 16) | seq64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("packet was seen before")]
    Duplicate,
    #[error("packet is older than the replay window")]
    TooOld,
}

/// The last [`WINDOW_LEN`] indices received on one stream. Check before decrypting, record after the packet
/// authenticated, so a forged packet cannot move the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u64,
    /// Bit n set: index `highest - n` was received.
    seen: u128,
    started: bool,
}

impl ReplayWindow {
    /// The highest index recorded, for [`estimate_index`]; 0 before the first packet.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    pub fn started(&self) -> bool {
        self.started
    }

    /// The index for `seq`: estimated against the highest so far, or taken as is for the first packet.
    pub fn index_for(&self, seq: u16) -> u64 {
        if self.started { estimate_index(self.highest, seq) } else { u64::from(seq) }
    }

    pub fn check(&self, index: u64) -> Result<(), ReplayError> {
        if !self.started || index > self.highest {
            return Ok(());
        }
        let behind = self.highest - index;
        if behind >= WINDOW_LEN {
            Err(ReplayError::TooOld)
        } else if self.seen & (1u128 << behind) != 0 {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    pub fn record(&mut self, index: u64) {
        if !self.started {
            *self = ReplayWindow { highest: index, seen: 1, started: true };
        } else if index > self.highest {
            let ahead = index - self.highest;
            self.seen = if ahead >= WINDOW_LEN { 1 } else { (self.seen << ahead) | 1 };
            self.highest = index;
        } else {
            self.seen |= 1u128 << (self.highest - index);
        }
    }
}
