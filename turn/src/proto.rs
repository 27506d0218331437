//! TURN's wire vocabulary on top of the dataplane's STUN codec (`sluice_dataplane::packet::stun`): methods,
//! attributes (RFC 8656 section 18, RFC 6156), ChannelData (RFC 8656 section 12.4) and stream framing.

pub use sluice_dataplane::packet::stun::{HEADER_LEN, MAGIC_COOKIE, Message, StunError, Writer, attr as stun_attr};

/// STUN message types: method and class folded together (RFC 8489 section 5).
pub mod msg {
    pub const BINDING_REQUEST: u16 = 0x0001;
    pub const BINDING_SUCCESS: u16 = 0x0101;
    pub const ALLOCATE_REQUEST: u16 = 0x0003;
    pub const REFRESH_REQUEST: u16 = 0x0004;
    pub const SEND_INDICATION: u16 = 0x0016;
    pub const DATA_INDICATION: u16 = 0x0017;
    pub const CREATE_PERMISSION_REQUEST: u16 = 0x0008;
    pub const CHANNEL_BIND_REQUEST: u16 = 0x0009;

    /// The success response type of a request type.
    pub const fn success(request: u16) -> u16 {
        request | 0x0100
    }

    /// The error response type of a request type.
    pub const fn error(request: u16) -> u16 {
        request | 0x0110
    }

    pub const fn is_request(msg_type: u16) -> bool {
        msg_type & 0x0110 == 0
    }

    pub const fn is_indication(msg_type: u16) -> bool {
        msg_type & 0x0110 == 0x0010
    }
}

/// Attribute types TURN adds to STUN's.
pub mod attr {
    pub use super::stun_attr::*;
    pub const CHANNEL_NUMBER: u16 = 0x000c;
    pub const LIFETIME: u16 = 0x000d;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001a;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
    pub const ADDRESS_ERROR_CODE: u16 = 0x8001;
    pub const ICMP: u16 = 0x8004;

    /// Comprehension-required attributes (below 0x8000) this server understands; any other one in a request
    /// is answered 420 with UNKNOWN-ATTRIBUTES (RFC 8489 section 14.13).
    pub const UNDERSTOOD: &[u16] = &[
        MAPPED_ADDRESS,
        USERNAME,
        MESSAGE_INTEGRITY,
        ERROR_CODE,
        REALM,
        NONCE,
        MESSAGE_INTEGRITY_SHA256,
        XOR_MAPPED_ADDRESS,
        PRIORITY,
        USE_CANDIDATE,
        CHANNEL_NUMBER,
        LIFETIME,
        XOR_PEER_ADDRESS,
        DATA,
        XOR_RELAYED_ADDRESS,
        REQUESTED_ADDRESS_FAMILY,
        EVEN_PORT,
        REQUESTED_TRANSPORT,
        DONT_FRAGMENT,
        RESERVATION_TOKEN,
    ];
}

/// IANA protocol number of UDP, the only REQUESTED-TRANSPORT this server relays.
pub const PROTOCOL_UDP: u8 = 17;

/// Channel numbers a client may bind. RFC 8656 section 12 narrowed the range to 0x4000-0x4fff, leaving the rest
/// for DTLS-SRTP demultiplexing (RFC 7983) on the client's side; RFC 5766 clients (coturn's among them) still
/// pick from 0x4000-0x7fff. The server's port carries only TURN, so it accepts the older range.
pub const CHANNEL_MIN: u16 = 0x4000;
pub const CHANNEL_MAX: u16 = 0x7fff;

/// ChannelData header: channel number and length.
pub const CHANNEL_HEADER_LEN: usize = 4;

/// What the first byte of a datagram from a client says it is (RFC 8656 section 12.4: 0b00 STUN, 0b01
/// ChannelData).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stun,
    ChannelData,
    Other,
}

pub fn classify(bytes: &[u8]) -> Kind {
    match bytes.first().map(|b| b >> 6) {
        Some(0) => Kind::Stun,
        Some(1) => Kind::ChannelData,
        _ => Kind::Other,
    }
}

/// A parsed ChannelData message: channel number and the application data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: u16,
    pub data: &'a [u8],
    /// Where `data` starts in the message.
    pub offset: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelDataError {
    #[error("ChannelData shorter than its header")]
    Short,
    #[error("channel number outside 0x4000-0x7fff")]
    BadChannel,
    #[error("ChannelData length runs past the datagram")]
    BadLength,
}

impl<'a> ChannelData<'a> {
    /// Parses one ChannelData message. Over UDP the datagram may carry padding after the data; the length field
    /// is what counts (RFC 8656 section 12.5).
    pub fn parse(bytes: &'a [u8]) -> Result<ChannelData<'a>, ChannelDataError> {
        if bytes.len() < CHANNEL_HEADER_LEN {
            return Err(ChannelDataError::Short);
        }
        let channel = u16::from_be_bytes([bytes[0], bytes[1]]);
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&channel) {
            return Err(ChannelDataError::BadChannel);
        }
        let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if CHANNEL_HEADER_LEN + len > bytes.len() {
            return Err(ChannelDataError::BadLength);
        }
        Ok(ChannelData {
            channel,
            data: &bytes[CHANNEL_HEADER_LEN..CHANNEL_HEADER_LEN + len],
            offset: CHANNEL_HEADER_LEN,
        })
    }
}

/// The length of the first whole message at the start of a TCP/TLS stream, if it is all there: STUN messages
/// by their header's length, ChannelData padded to 4 bytes (RFC 8656 section 12.5). `Err` means the stream
/// does not carry TURN framing and must be closed.
pub fn stream_frame_len(bytes: &[u8]) -> Result<Option<usize>, ChannelDataError> {
    if bytes.len() < 4 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let total = match classify(bytes) {
        Kind::Stun => HEADER_LEN + len,
        Kind::ChannelData => {
            let channel = u16::from_be_bytes([bytes[0], bytes[1]]);
            if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&channel) {
                return Err(ChannelDataError::BadChannel);
            }
            CHANNEL_HEADER_LEN + len.div_ceil(4) * 4
        }
        Kind::Other => return Err(ChannelDataError::BadChannel),
    };
    Ok((bytes.len() >= total).then_some(total))
}

/// Reads a 4-byte big-endian attribute value (LIFETIME).
pub fn u32_value(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_fold_class_bits() {
        assert_eq!(msg::success(msg::ALLOCATE_REQUEST), 0x0103);
        assert_eq!(msg::error(msg::ALLOCATE_REQUEST), 0x0113);
        assert_eq!(msg::error(msg::CHANNEL_BIND_REQUEST), 0x0119);
        assert!(msg::is_request(msg::REFRESH_REQUEST));
        assert!(msg::is_indication(msg::SEND_INDICATION));
        assert!(!msg::is_request(msg::DATA_INDICATION));
    }

    #[test]
    fn channel_data_parses_and_rejects() {
        let bytes = [0x40, 0x01, 0x00, 0x03, 1, 2, 3, 0];
        let cd = ChannelData::parse(&bytes).unwrap();
        assert_eq!((cd.channel, cd.data), (0x4001, &[1u8, 2, 3][..]));
        assert_eq!(ChannelData::parse(&bytes[..3]), Err(ChannelDataError::Short));
        assert_eq!(ChannelData::parse(&[0x80, 0, 0, 0]), Err(ChannelDataError::BadChannel));
        assert_eq!(ChannelData::parse(&[0x40, 0, 0, 9, 1]), Err(ChannelDataError::BadLength));
    }

    #[test]
    fn stream_framing_waits_for_whole_messages() {
        assert_eq!(stream_frame_len(&[0x40, 0x00, 0x00]), Ok(None));
        assert_eq!(stream_frame_len(&[0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5]), Ok(None), "padded to 12");
        assert_eq!(stream_frame_len(&[0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0, 9]), Ok(Some(12)));
        let mut stun = vec![0u8; 28];
        stun[3] = 8;
        assert_eq!(stream_frame_len(&stun), Ok(Some(28)));
        assert_eq!(stream_frame_len(&stun[..27]), Ok(None));
        assert!(stream_frame_len(&[0xc0, 0, 0, 0]).is_err());
    }
}
