//! RTP headers (RFC 3550 section 5.1) and header extensions (RFC 8285), parsed in place.

use super::{u16_at, u32_at};

pub const FIXED_HEADER_LEN: usize = 12;
/// RFC 8285 one-byte extension header profile.
const ONE_BYTE_PROFILE: u16 = 0xbede;
/// RFC 8285 two-byte extension header profile: 0x100 followed by 4 "appbits".
const TWO_BYTE_PROFILE_MASK: u16 = 0xfff0;
const TWO_BYTE_PROFILE: u16 = 0x1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("shorter than an RTP header")]
    TooShort,
    #[error("RTP version is not 2")]
    BadVersion,
    #[error("CSRC list or header extension runs past the packet")]
    BadLength,
    #[error("padding is longer than the payload")]
    BadPadding,
}

/// Where the header extension block's elements live in the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionBlock {
    pub profile: u16,
    /// Offset of the first element (after the 4-byte block header).
    pub start: usize,
    /// Bytes of elements (a multiple of 4).
    pub len: usize,
}

/// A parsed RTP header. Offsets refer to the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc_count: u8,
    pub extensions: Option<ExtensionBlock>,
    /// Fixed header, CSRCs and extension block: where the payload starts.
    pub header_len: usize,
    /// The P bit: the last byte of the *decrypted* payload counts padding bytes (see [`RtpHeader::padding_len`]).
    pub padding: bool,
}

impl RtpHeader {
    pub fn parse(packet: &[u8]) -> Result<RtpHeader, RtpError> {
        if packet.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort);
        }
        let b0 = packet[0];
        if b0 >> 6 != 2 {
            return Err(RtpError::BadVersion);
        }
        let csrc_count = b0 & 0x0f;
        let mut header_len = FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
        let mut extensions = None;
        if b0 & 0x10 != 0 {
            if packet.len() < header_len + 4 {
                return Err(RtpError::BadLength);
            }
            let profile = u16_at(packet, header_len);
            let len = 4 * usize::from(u16_at(packet, header_len + 2));
            extensions = Some(ExtensionBlock { profile, start: header_len + 4, len });
            header_len += 4 + len;
        }
        if packet.len() < header_len {
            return Err(RtpError::BadLength);
        }
        Ok(RtpHeader {
            marker: packet[1] & 0x80 != 0,
            payload_type: packet[1] & 0x7f,
            seq: u16_at(packet, 2),
            timestamp: u32_at(packet, 4),
            ssrc: u32_at(packet, 8),
            csrc_count,
            extensions,
            header_len,
            padding: b0 & 0x20 != 0,
        })
    }

    /// Padding bytes at the end of a decrypted packet (0 without the P bit). SRTP hides the padding count, so
    /// this is only meaningful after decryption.
    pub fn padding_len(&self, packet: &[u8]) -> Result<usize, RtpError> {
        if !self.padding {
            return Ok(0);
        }
        let n = usize::from(*packet.last().ok_or(RtpError::BadPadding)?);
        if n == 0 || n > packet.len().saturating_sub(self.header_len) {
            return Err(RtpError::BadPadding);
        }
        Ok(n)
    }

    /// The extension elements (RFC 8285), both one-byte and two-byte forms.
    pub fn extensions<'a>(&self, packet: &'a [u8]) -> Extensions<'a> {
        match self.extensions {
            Some(block) => Extensions {
                data: &packet[block.start..block.start + block.len],
                base: block.start,
                pos: 0,
                two_byte: block.profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE,
                known: block.profile == ONE_BYTE_PROFILE || block.profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE,
            },
            None => Extensions { data: &[], base: 0, pos: 0, two_byte: false, known: false },
        }
    }

    /// The value of extension `id` and its offset in the packet, for reading or rewriting in place.
    pub fn extension(&self, packet: &[u8], id: u8) -> Option<(usize, usize)> {
        self.extensions(packet).find(|e| e.id == id).map(|e| (e.offset, e.len))
    }
}

/// One header extension element: its id and where its value is in the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension {
    pub id: u8,
    pub offset: usize,
    pub len: usize,
}

#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    data: &'a [u8],
    base: usize,
    pos: usize,
    two_byte: bool,
    known: bool,
}

impl Iterator for Extensions<'_> {
    type Item = Extension;

    fn next(&mut self) -> Option<Extension> {
        if !self.known {
            return None;
        }
        loop {
            let b = *self.data.get(self.pos)?;
            if b == 0 {
                // Padding between elements.
                self.pos += 1;
                continue;
            }
            let (id, len, head) = if self.two_byte {
                (b, usize::from(*self.data.get(self.pos + 1)?), 2)
            } else {
                let id = b >> 4;
                if id == 15 {
                    // Reserved: stop processing the block (RFC 8285 section 4.2).
                    return None;
                }
                (id, usize::from(b & 0x0f) + 1, 1)
            };
            let offset = self.pos + head;
            if offset + len > self.data.len() {
                return None;
            }
            self.pos = offset + len;
            return Some(Extension { id, offset: self.base + offset, len });
        }
    }
}

/// Most extension elements one packet blanks at once (MID, RID, repaired RID).
const BLANK_MAX: usize = 4;

/// Overwrites the elements with the given ids, header included, with zero bytes, which RFC 8285 reads as padding
/// in both forms; the block keeps its length, so nothing moves. Returns how many elements were blanked.
pub fn blank_extensions(header: &RtpHeader, packet: &mut [u8], ids: &[u8]) -> usize {
    let head = match header.extensions {
        Some(block) if block.profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE => 2,
        Some(_) => 1,
        None => return 0,
    };
    let mut found = [(0usize, 0usize); BLANK_MAX];
    let mut count = 0;
    for e in header.extensions(packet).filter(|e| ids.contains(&e.id)).take(BLANK_MAX) {
        found[count] = (e.offset - head, e.offset + e.len);
        count += 1;
    }
    for &(start, end) in &found[..count] {
        packet[start..end].fill(0);
    }
    count
}

/// In-place rewrites of the fields an SFU owns.
pub fn set_seq(packet: &mut [u8], seq: u16) {
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
}

pub fn set_timestamp(packet: &mut [u8], timestamp: u32) {
    packet[4..8].copy_from_slice(&timestamp.to_be_bytes());
}

pub fn set_ssrc(packet: &mut [u8], ssrc: u32) {
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

pub fn set_payload_type(packet: &mut [u8], payload_type: u8) {
    packet[1] = (packet[1] & 0x80) | (payload_type & 0x7f);
}

pub fn set_marker(packet: &mut [u8], marker: bool) {
    packet[1] = (packet[1] & 0x7f) | if marker { 0x80 } else { 0 };
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn blanked_extensions_become_padding_and_the_others_stay() {
        let mut p = packet_with_extensions();
        let header = RtpHeader::parse(&p).unwrap();
        assert_eq!(blank_extensions(&header, &mut p, &[1, 5]), 2);
        let header = RtpHeader::parse(&p).unwrap();
        let left: Vec<(u8, usize)> = header.extensions(&p).map(|e| (e.id, e.len)).collect();
        assert_eq!(left, vec![(3, 3)]);
        assert_eq!(&p[p.len() - 7..], b"payload");
    }

    fn packet_with_extensions() -> Vec<u8> {
        let mut p = vec![0x90 | 0x01, 0x80 | 111, 0x12, 0x34, 0, 0, 0x03, 0xe8, 0xde, 0xad, 0xbe, 0xef];
        p.extend_from_slice(&[1, 2, 3, 4]); // one CSRC
        // One-byte extensions: id 1 (1 byte: audio level), padding, id 3 (3 bytes: abs-send-time), id 5 (2 bytes).
        p.extend_from_slice(&[0xbe, 0xde, 0, 3, 0x10, 0x85, 0x00, 0x32, 0xaa, 0xbb, 0xcc, 0x51, 0x01, 0x02, 0, 0]);
        p.extend_from_slice(b"payload");
        p
    }

    #[test]
    fn parses_header_csrcs_and_one_byte_extensions() {
        let p = packet_with_extensions();
        let h = RtpHeader::parse(&p).unwrap();
        assert!(h.marker);
        assert_eq!((h.payload_type, h.seq, h.timestamp, h.ssrc, h.csrc_count), (111, 0x1234, 1000, 0xdeadbeef, 1));
        assert_eq!(h.header_len, 12 + 4 + 4 + 12);
        assert_eq!(&p[h.header_len..], b"payload");
        let ids: Vec<_> = h.extensions(&p).map(|e| (e.id, &p[e.offset..e.offset + e.len])).collect();
        assert_eq!(ids, [(1, &[0x85][..]), (3, &[0xaa, 0xbb, 0xcc][..]), (5, &[0x01, 0x02][..])]);
    }

    #[test]
    fn parses_two_byte_extensions() {
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];
        p.extend_from_slice(&[0x10, 0x00, 0, 2, 7, 3, 9, 9, 9, 0, 0, 0]);
        let h = RtpHeader::parse(&p).unwrap();
        let e: Vec<_> = h.extensions(&p).collect();
        assert_eq!(e, [Extension { id: 7, offset: 18, len: 3 }]);
    }

    #[test]
    fn rewrites_in_place() {
        let mut p = packet_with_extensions();
        set_seq(&mut p, 7);
        set_timestamp(&mut p, 9000);
        set_ssrc(&mut p, 42);
        set_payload_type(&mut p, 96);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!((h.seq, h.timestamp, h.ssrc, h.payload_type, h.marker), (7, 9000, 42, 96, true));
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert_eq!(RtpHeader::parse(&[0x80; 11]), Err(RtpError::TooShort));
        assert_eq!(RtpHeader::parse(&[0x40; 12]), Err(RtpError::BadVersion));
        let mut many_csrcs = vec![0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        many_csrcs.extend_from_slice(&[0; 20]);
        assert_eq!(RtpHeader::parse(&many_csrcs), Err(RtpError::BadLength));
        let ext_too_long = [0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0xff, 0xff];
        assert_eq!(RtpHeader::parse(&ext_too_long), Err(RtpError::BadLength));
        let mut bad_padding = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2];
        bad_padding.push(200);
        let h = RtpHeader::parse(&bad_padding).unwrap();
        assert_eq!(h.padding_len(&bad_padding), Err(RtpError::BadPadding));
        *bad_padding.last_mut().unwrap() = 2;
        assert_eq!(h.padding_len(&bad_padding), Ok(2));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(h) = RtpHeader::parse(&bytes) {
                prop_assert!(h.header_len <= bytes.len());
                for e in h.extensions(&bytes) {
                    prop_assert!(e.offset + e.len <= bytes.len());
                }
            }
        }
    }
}
