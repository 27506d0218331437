//! Which protocol a datagram on the shared media port carries, by its first byte (RFC 7983 section 7) and, for
//! RTP versus RTCP, its second (RFC 5761 section 4).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
    /// ZRTP, TURN channel data or anything else: not ours on this port.
    Other,
}

pub fn classify(datagram: &[u8]) -> Kind {
    match datagram.first() {
        Some(0..=3) => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) => match datagram.get(1) {
            // RTCP packet types 192..=223 (SR 200, RR 201, ..., PSFB 206, XR 207) collide with RTP payload types
            // 64..=95 with the marker bit set, which RFC 5761 forbids RTP from using when multiplexed.
            Some(192..=223) => Kind::Rtcp,
            Some(_) => Kind::Rtp,
            None => Kind::Other,
        },
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_ranges() {
        assert_eq!(classify(&[0x00, 0x01]), Kind::Stun);
        assert_eq!(classify(&[22, 0xfe, 0xfd]), Kind::Dtls);
        assert_eq!(classify(&[0x80, 96]), Kind::Rtp);
        assert_eq!(classify(&[0x80, 96 | 0x80]), Kind::Rtp);
        assert_eq!(classify(&[0x81, 200]), Kind::Rtcp);
        assert_eq!(classify(&[0x8f, 206]), Kind::Rtcp);
        assert_eq!(classify(&[0x40, 0]), Kind::Other, "TURN channel data");
        assert_eq!(classify(&[0x80]), Kind::Other);
        assert_eq!(classify(&[]), Kind::Other);
    }
}
