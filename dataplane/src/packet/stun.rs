//! STUN messages (RFC 8489): parsing with MESSAGE-INTEGRITY and FINGERPRINT checks, and a writer into the
//! caller's buffer. Shared by ICE-lite in the dataplane and by the TURN server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::{u16_at, u32_at};

pub const HEADER_LEN: usize = 20;
pub const MAGIC_COOKIE: u32 = 0x2112_a442;
const FINGERPRINT_XOR: u32 = 0x5354_554e;
const INTEGRITY_LEN: usize = 20;

pub const BINDING_REQUEST: u16 = 0x0001;
pub const BINDING_INDICATION: u16 = 0x0011;
pub const BINDING_SUCCESS: u16 = 0x0101;
pub const BINDING_ERROR: u16 = 0x0111;

pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000a;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001c;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const ICE_CONTROLLED: u16 = 0x8029;
    pub const ICE_CONTROLLING: u16 = 0x802a;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("not a STUN message")]
    NotStun,
    #[error("length field does not match the datagram")]
    BadLength,
    #[error("attribute runs past the message")]
    BadAttribute,
    #[error("no MESSAGE-INTEGRITY attribute")]
    NoIntegrity,
    #[error("MESSAGE-INTEGRITY does not match")]
    BadIntegrity,
    #[error("FINGERPRINT does not match")]
    BadFingerprint,
    #[error("output buffer too small")]
    NoRoom,
}

/// A parsed STUN message over the datagram's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub msg_type: u16,
    pub transaction_id: [u8; 12],
    bytes: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub attr_type: u16,
    pub value: &'a [u8],
    /// Offset of the attribute's 4-byte header in the message.
    pub offset: usize,
}

impl<'a> Message<'a> {
    /// Parses a whole datagram as one STUN message: header, magic cookie, length, attribute bounds.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, StunError> {
        if bytes.len() < HEADER_LEN || bytes[0] & 0xc0 != 0 || u32_at(bytes, 4) != MAGIC_COOKIE {
            return Err(StunError::NotStun);
        }
        let len = usize::from(u16_at(bytes, 2));
        if len % 4 != 0 || HEADER_LEN + len != bytes.len() {
            return Err(StunError::BadLength);
        }
        let message =
            Message { msg_type: u16_at(bytes, 0), transaction_id: bytes[8..20].try_into().expect("12 bytes"), bytes };
        for a in message.attributes() {
            a?;
        }
        Ok(message)
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn attributes(&self) -> Attributes<'a> {
        Attributes { bytes: self.bytes, pos: HEADER_LEN }
    }

    /// The first attribute of a type. Attributes after MESSAGE-INTEGRITY (other than FINGERPRINT) are ignored,
    /// as RFC 8489 section 14.5 requires.
    pub fn get(&self, attr_type: u16) -> Option<&'a [u8]> {
        let mut after_integrity = false;
        for a in self.attributes().flatten() {
            if a.attr_type == attr_type && (!after_integrity || attr_type == attr::FINGERPRINT) {
                return Some(a.value);
            }
            after_integrity |= a.attr_type == attr::MESSAGE_INTEGRITY;
        }
        None
    }

    pub fn has(&self, attr_type: u16) -> bool {
        self.get(attr_type).is_some()
    }

    /// Checks MESSAGE-INTEGRITY (HMAC-SHA1) with `key`: the password for ICE short-term credentials, or
    /// MD5(username:realm:password) for TURN long-term credentials.
    pub fn check_integrity(&self, key: &[u8]) -> Result<(), StunError> {
        let mi = self
            .attributes()
            .flatten()
            .find(|a| a.attr_type == attr::MESSAGE_INTEGRITY)
            .ok_or(StunError::NoIntegrity)?;
        if mi.value.len() != INTEGRITY_LEN {
            return Err(StunError::BadIntegrity);
        }
        let expected = integrity(key, self.bytes, mi.offset);
        if constant_time_eq(&expected, mi.value) { Ok(()) } else { Err(StunError::BadIntegrity) }
    }

    /// Checks FINGERPRINT if present; a message without one passes.
    pub fn check_fingerprint(&self) -> Result<(), StunError> {
        match self.attributes().flatten().find(|a| a.attr_type == attr::FINGERPRINT) {
            None => Ok(()),
            Some(fp) if fp.value.len() == 4 && u32_at(fp.value, 0) == fingerprint(self.bytes, fp.offset) => Ok(()),
            Some(_) => Err(StunError::BadFingerprint),
        }
    }

    /// XOR-MAPPED-ADDRESS (or any XOR-encoded address attribute) decoded.
    pub fn xor_address(&self, attr_type: u16) -> Option<SocketAddr> {
        decode_xor_address(self.get(attr_type)?, &self.transaction_id)
    }
}

#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<Attribute<'a>, StunError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        if self.pos + 4 > self.bytes.len() {
            self.pos = self.bytes.len();
            return Some(Err(StunError::BadAttribute));
        }
        let attr_type = u16_at(self.bytes, self.pos);
        let len = usize::from(u16_at(self.bytes, self.pos + 2));
        let start = self.pos + 4;
        if start + len > self.bytes.len() {
            self.pos = self.bytes.len();
            return Some(Err(StunError::BadAttribute));
        }
        let offset = self.pos;
        self.pos = start + len.div_ceil(4) * 4;
        Some(Ok(Attribute { attr_type, value: &self.bytes[start..start + len], offset }))
    }
}

/// HMAC-SHA1 over the message up to `mi_offset`, with the header's length as if MESSAGE-INTEGRITY ended it.
fn integrity(key: &[u8], bytes: &[u8], mi_offset: usize) -> [u8; INTEGRITY_LEN] {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    let len = (mi_offset + 4 + INTEGRITY_LEN - HEADER_LEN) as u16;
    mac.update(&bytes[..2]);
    mac.update(&len.to_be_bytes());
    mac.update(&bytes[4..mi_offset]);
    mac.finalize().into_bytes().into()
}

/// CRC-32 of the message up to `fp_offset`, with the length covering the FINGERPRINT attribute, XOR 0x5354554e.
fn fingerprint(bytes: &[u8], fp_offset: usize) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    let len = (fp_offset + 8 - HEADER_LEN) as u16;
    crc.update(&bytes[..2]);
    crc.update(&len.to_be_bytes());
    crc.update(&bytes[4..fp_offset]);
    crc.finalize() ^ FINGERPRINT_XOR
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn decode_xor_address(v: &[u8], txid: &[u8; 12]) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let port = u16_at(v, 2) ^ (MAGIC_COOKIE >> 16) as u16;
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(txid);
    let ip = match (v[1], v.len()) {
        (0x01, 8) => IpAddr::V4(Ipv4Addr::from(u32_at(v, 4) ^ MAGIC_COOKIE)),
        (0x02, 20) => {
            let mut octets = [0u8; 16];
            for (i, o) in octets.iter_mut().enumerate() {
                *o = v[4 + i] ^ mask[i];
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Builds a STUN message in the caller's buffer. Attributes are appended in call order; `integrity` and
/// `fingerprint` go last, in that order.
#[derive(Debug)]
pub struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
    transaction_id: [u8; 12],
}

impl<'b> Writer<'b> {
    pub fn new(buf: &'b mut [u8], msg_type: u16, transaction_id: [u8; 12]) -> Result<Writer<'b>, StunError> {
        if buf.len() < HEADER_LEN {
            return Err(StunError::NoRoom);
        }
        buf[0..2].copy_from_slice(&msg_type.to_be_bytes());
        buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf[8..20].copy_from_slice(&transaction_id);
        let mut w = Writer { buf, len: HEADER_LEN, transaction_id };
        w.set_length();
        Ok(w)
    }

    fn set_length(&mut self) {
        let len = (self.len - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Appends an attribute, zero-padded to 4 bytes.
    pub fn attr(&mut self, attr_type: u16, value: &[u8]) -> Result<&mut Self, StunError> {
        let padded = value.len().div_ceil(4) * 4;
        if value.len() > usize::from(u16::MAX) || self.len + 4 + padded > self.buf.len() {
            return Err(StunError::NoRoom);
        }
        let at = self.len;
        self.buf[at..at + 2].copy_from_slice(&attr_type.to_be_bytes());
        self.buf[at + 2..at + 4].copy_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf[at + 4..at + 4 + value.len()].copy_from_slice(value);
        self.buf[at + 4 + value.len()..at + 4 + padded].fill(0);
        self.len += 4 + padded;
        self.set_length();
        Ok(self)
    }

    pub fn xor_address(&mut self, attr_type: u16, addr: SocketAddr) -> Result<&mut Self, StunError> {
        let mut value = [0u8; 20];
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        value[2..4].copy_from_slice(&port.to_be_bytes());
        let len = match addr.ip() {
            IpAddr::V4(ip) => {
                value[1] = 0x01;
                value[4..8].copy_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
                8
            }
            IpAddr::V6(ip) => {
                value[1] = 0x02;
                let mut mask = [0u8; 16];
                mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                mask[4..].copy_from_slice(&self.transaction_id);
                for (i, o) in ip.octets().iter().enumerate() {
                    value[4 + i] = o ^ mask[i];
                }
                20
            }
        };
        self.attr(attr_type, &value[..len])
    }

    /// ERROR-CODE (RFC 8489 section 14.8) with its reason phrase.
    pub fn error_code(&mut self, code: u16, reason: &str) -> Result<&mut Self, StunError> {
        let mut value = [0u8; 4 + 128];
        let reason = &reason.as_bytes()[..reason.len().min(128)];
        value[2] = (code / 100) as u8;
        value[3] = (code % 100) as u8;
        value[4..4 + reason.len()].copy_from_slice(reason);
        self.attr(attr::ERROR_CODE, &value[..4 + reason.len()])
    }

    pub fn integrity(&mut self, key: &[u8]) -> Result<&mut Self, StunError> {
        if self.len + 4 + INTEGRITY_LEN > self.buf.len() {
            return Err(StunError::NoRoom);
        }
        let at = self.len;
        let mac = integrity(key, self.buf, at);
        self.attr(attr::MESSAGE_INTEGRITY, &mac)
    }

    pub fn fingerprint(&mut self) -> Result<&mut Self, StunError> {
        if self.len + 8 > self.buf.len() {
            return Err(StunError::NoRoom);
        }
        let at = self.len;
        let crc = fingerprint(self.buf, at);
        self.attr(attr::FINGERPRINT, &crc.to_be_bytes())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == HEADER_LEN
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

    /// RFC 5769 section 2.1.
    fn sample_request() -> Vec<u8> {
        hex("00010058 2112a442 b7e7a701 bc34d686 fa87dfae 80220010 5354554e 20746573 7420636c 69656e74
             00240004 6e0001ff 80290008 932ff9b1 51263b36 00060009 6576746a 3a683676 59202020 00080014
             9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2 80280004 e57a3bcf")
    }

    /// RFC 5769 section 2.2.
    fn sample_response() -> Vec<u8> {
        hex("0101003c 2112a442 b7e7a701 bc34d686 fa87dfae 8022000b 74657374 20766563 746f7220 00200008
             0001a147 e112a643 00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7 80280004 c07d4c96")
    }

    #[test]
    fn rfc5769_sample_request_verifies() {
        let bytes = sample_request();
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.msg_type, BINDING_REQUEST);
        assert_eq!(m.get(attr::USERNAME), Some(&b"evtj:h6vY"[..]));
        assert_eq!(m.get(attr::PRIORITY), Some(&[0x6e, 0x00, 0x01, 0xff][..]));
        assert!(m.has(attr::ICE_CONTROLLED));
        assert_eq!(m.check_integrity(PASSWORD), Ok(()));
        assert_eq!(m.check_integrity(b"wrong"), Err(StunError::BadIntegrity));
        assert_eq!(m.check_fingerprint(), Ok(()));
    }

    #[test]
    fn rfc5769_sample_response_verifies_and_decodes() {
        let bytes = sample_response();
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.msg_type, BINDING_SUCCESS);
        assert_eq!(m.xor_address(attr::XOR_MAPPED_ADDRESS), Some("192.0.2.1:32853".parse().unwrap()));
        assert_eq!(m.check_integrity(PASSWORD), Ok(()));
        assert_eq!(m.check_fingerprint(), Ok(()));
        let mut corrupt = bytes.clone();
        corrupt[30] ^= 1;
        let m = Message::parse(&corrupt).unwrap();
        assert_eq!(m.check_integrity(PASSWORD), Err(StunError::BadIntegrity));
        assert_eq!(m.check_fingerprint(), Err(StunError::BadFingerprint));
    }

    #[test]
    fn written_responses_verify_for_both_families() {
        for addr in ["203.0.113.9:4444", "[2001:db8::1]:5555"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut buf = [0u8; 128];
            let mut w = Writer::new(&mut buf, BINDING_SUCCESS, [7; 12]).unwrap();
            w.xor_address(attr::XOR_MAPPED_ADDRESS, addr).unwrap().integrity(b"pwd").unwrap().fingerprint().unwrap();
            let n = w.len();
            let m = Message::parse(&buf[..n]).unwrap();
            assert_eq!(m.xor_address(attr::XOR_MAPPED_ADDRESS), Some(addr));
            assert_eq!(m.check_integrity(b"pwd"), Ok(()));
            assert_eq!(m.check_fingerprint(), Ok(()));
        }
        let mut tiny = [0u8; 24];
        let mut w = Writer::new(&mut tiny, BINDING_SUCCESS, [0; 12]).unwrap();
        assert_eq!(w.integrity(b"k").err(), Some(StunError::NoRoom));
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        let mut buf = [0u8; 128];
        let mut w = Writer::new(&mut buf, BINDING_REQUEST, [1; 12]).unwrap();
        w.integrity(b"k").unwrap().attr(attr::USERNAME, b"sneaky").unwrap();
        let n = w.len();
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.get(attr::USERNAME), None);
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(Message::parse(&[0; 10]), Err(StunError::NotStun));
        let mut bytes = sample_request();
        bytes[4] = 0;
        assert_eq!(Message::parse(&bytes), Err(StunError::NotStun), "bad cookie");
        let mut bytes = sample_request();
        bytes.push(0);
        assert_eq!(Message::parse(&bytes), Err(StunError::BadLength));
        let mut bytes = sample_request();
        bytes[22..24].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(Message::parse(&bytes), Err(StunError::BadAttribute));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if bytes.len() >= 20 {
                // Often make it look like STUN so the attribute code runs.
                bytes[0] &= 0x3f;
                bytes[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                let len = ((bytes.len() - 20) / 4 * 4) as u16;
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
                bytes.truncate(20 + usize::from(len));
            }
            if let Ok(m) = Message::parse(&bytes) {
                let _ = m.check_integrity(b"k");
                let _ = m.check_fingerprint();
                let _ = m.xor_address(attr::XOR_MAPPED_ADDRESS);
            }
        }
    }
}
