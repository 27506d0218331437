//! RTCP (RFC 3550 section 6) compound packets and the feedback messages an SFU acts on (RFC 4585: NACK, PLI;
//! RFC 5104: FIR; REMB), parsed in place; writers fill the caller's buffer.

use super::{u16_at, u32_at};

pub const SR: u8 = 200;
pub const RR: u8 = 201;
pub const SDES: u8 = 202;
pub const BYE: u8 = 203;
/// Transport-layer feedback: FMT 1 generic NACK, FMT 15 transport-wide congestion control.
pub const RTPFB: u8 = 205;
/// Payload-specific feedback: FMT 1 PLI, FMT 4 FIR, FMT 15 application layer (REMB).
pub const PSFB: u8 = 206;

pub const FMT_NACK: u8 = 1;
pub const FMT_TWCC: u8 = 15;
pub const FMT_PLI: u8 = 1;
pub const FMT_FIR: u8 = 4;
pub const FMT_AFB: u8 = 15;

pub const REPORT_BLOCK_LEN: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("shorter than an RTCP header")]
    TooShort,
    #[error("RTCP version is not 2")]
    BadVersion,
    #[error("length field runs past the datagram")]
    BadLength,
    #[error("packet body is too short for its type")]
    Truncated,
    #[error("output buffer too small")]
    NoRoom,
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpPacket<'a> {
    /// Reception report count, source count or feedback message type, by packet type.
    pub count: u8,
    pub packet_type: u8,
    /// The whole packet, header included, padding excluded.
    pub bytes: &'a [u8],
}

impl<'a> RtcpPacket<'a> {
    /// The SSRC in bytes 4..8 (sender of an SR/RR, packet sender of feedback).
    pub fn sender_ssrc(&self) -> Option<u32> {
        (self.bytes.len() >= 8).then(|| u32_at(self.bytes, 4))
    }

    fn need(&self, len: usize) -> Result<(), RtcpError> {
        if self.bytes.len() < len { Err(RtcpError::Truncated) } else { Ok(()) }
    }
}

/// Iterates the packets of a compound datagram; yields an error once and stops if a packet is malformed.
pub fn compound(datagram: &[u8]) -> Compound<'_> {
    Compound { rest: datagram, failed: false }
}

#[derive(Debug, Clone)]
pub struct Compound<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Compound<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let result = parse_one(self.rest);
        match result {
            Ok((packet, total)) => {
                self.rest = &self.rest[total..];
                Some(Ok(packet))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn parse_one(buf: &[u8]) -> Result<(RtcpPacket<'_>, usize), RtcpError> {
    if buf.len() < 4 {
        return Err(RtcpError::TooShort);
    }
    if buf[0] >> 6 != 2 {
        return Err(RtcpError::BadVersion);
    }
    let total = 4 * (usize::from(u16_at(buf, 2)) + 1);
    if total > buf.len() {
        return Err(RtcpError::BadLength);
    }
    let mut len = total;
    if buf[0] & 0x20 != 0 {
        let pad = usize::from(buf[total - 1]);
        if pad == 0 || pad > total - 4 {
            return Err(RtcpError::BadLength);
        }
        len -= pad;
    }
    Ok((RtcpPacket { count: buf[0] & 0x1f, packet_type: buf[1], bytes: &buf[..len] }, total))
}

/// A reception report block (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed on the wire (duplicates can make it negative).
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> ReportBlock {
        let lost = u32_at(b, 4) & 0x00ff_ffff;
        ReportBlock {
            ssrc: u32_at(b, 0),
            fraction_lost: b[4],
            cumulative_lost: ((lost << 8) as i32) >> 8,
            highest_seq: u32_at(b, 8),
            jitter: u32_at(b, 12),
            last_sr: u32_at(b, 16),
            delay_since_last_sr: u32_at(b, 20),
        }
    }

    fn write(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        let lost = (self.cumulative_lost as u32) & 0x00ff_ffff;
        b[4..8].copy_from_slice(&(lost | u32::from(self.fraction_lost) << 24).to_be_bytes());
        b[8..12].copy_from_slice(&self.highest_seq.to_be_bytes());
        b[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        b[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        b[20..24].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ssrc: u32,
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// The sender info of an SR and its report blocks.
pub fn sender_report<'a>(p: &RtcpPacket<'a>) -> Result<(SenderInfo, ReportBlocks<'a>), RtcpError> {
    p.need(28 + REPORT_BLOCK_LEN * usize::from(p.count))?;
    let b = p.bytes;
    let info = SenderInfo {
        ssrc: u32_at(b, 4),
        ntp: u64::from(u32_at(b, 8)) << 32 | u64::from(u32_at(b, 12)),
        rtp_timestamp: u32_at(b, 16),
        packet_count: u32_at(b, 20),
        octet_count: u32_at(b, 24),
    };
    Ok((info, ReportBlocks { data: &b[28..28 + REPORT_BLOCK_LEN * usize::from(p.count)] }))
}

/// The report blocks of an RR.
pub fn receiver_report<'a>(p: &RtcpPacket<'a>) -> Result<ReportBlocks<'a>, RtcpError> {
    p.need(8 + REPORT_BLOCK_LEN * usize::from(p.count))?;
    Ok(ReportBlocks { data: &p.bytes[8..8 + REPORT_BLOCK_LEN * usize::from(p.count)] })
}

#[derive(Debug, Clone)]
pub struct ReportBlocks<'a> {
    data: &'a [u8],
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        if self.data.len() < REPORT_BLOCK_LEN {
            return None;
        }
        let block = ReportBlock::parse(self.data);
        self.data = &self.data[REPORT_BLOCK_LEN..];
        Some(block)
    }
}

/// The media SSRC of a feedback message (bytes 8..12).
pub fn media_ssrc(p: &RtcpPacket<'_>) -> Result<u32, RtcpError> {
    p.need(12)?;
    Ok(u32_at(p.bytes, 8))
}

/// The sequence numbers a generic NACK reports lost (RFC 4585 section 6.2.1).
pub fn nack_lost<'a>(p: &RtcpPacket<'a>) -> Result<NackLost<'a>, RtcpError> {
    p.need(12)?;
    Ok(NackLost { fci: &p.bytes[12..], bit: 0 })
}

#[derive(Debug, Clone)]
pub struct NackLost<'a> {
    fci: &'a [u8],
    /// 0 is the PID itself, 1..=16 the BLP bits.
    bit: u8,
}

impl Iterator for NackLost<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        while self.fci.len() >= 4 {
            let pid = u16_at(self.fci, 0);
            let blp = u16_at(self.fci, 2);
            while self.bit <= 16 {
                let bit = self.bit;
                self.bit += 1;
                if bit == 0 {
                    return Some(pid);
                }
                if blp & (1 << (bit - 1)) != 0 {
                    return Some(pid.wrapping_add(u16::from(bit)));
                }
            }
            self.fci = &self.fci[4..];
            self.bit = 0;
        }
        None
    }
}

/// FIR entries: (SSRC asked to send a keyframe, command sequence number) (RFC 5104 section 4.3.1).
pub fn fir_entries<'a>(p: &RtcpPacket<'a>) -> Result<impl Iterator<Item = (u32, u8)> + 'a, RtcpError> {
    p.need(12)?;
    Ok(p.bytes[12..].chunks_exact(8).map(|e| (u32_at(e, 0), e[4])))
}

/// REMB's bitrate in bits per second and the SSRCs it applies to (draft-alvestrand-rmcat-remb).
pub fn remb<'a>(p: &RtcpPacket<'a>) -> Option<(u64, impl Iterator<Item = u32> + 'a)> {
    let b = p.bytes;
    if b.len() < 20 || &b[12..16] != b"REMB" {
        return None;
    }
    let ssrcs = usize::from(b[16]);
    let exp = b[17] >> 2;
    let mantissa = u64::from(b[17] & 0x03) << 16 | u64::from(u16_at(b, 18));
    let list = b.get(20..20 + 4 * ssrcs)?;
    // An exponent that would overflow 64 bits reads as the largest rate.
    let bitrate = u64::try_from(u128::from(mantissa) << exp).unwrap_or(u64::MAX);
    Some((bitrate, list.chunks_exact(4).map(|s| u32_at(s, 0))))
}

fn header(buf: &mut [u8], count: u8, packet_type: u8, len: usize) {
    buf[0] = 0x80 | (count & 0x1f);
    buf[1] = packet_type;
    buf[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
}

fn room(buf: &[u8], len: usize) -> Result<(), RtcpError> {
    if buf.len() < len { Err(RtcpError::NoRoom) } else { Ok(()) }
}

/// Writes an SR; at most 31 report blocks. Returns the length.
pub fn write_sender_report(buf: &mut [u8], info: &SenderInfo, blocks: &[ReportBlock]) -> Result<usize, RtcpError> {
    let blocks = &blocks[..blocks.len().min(31)];
    let len = 28 + REPORT_BLOCK_LEN * blocks.len();
    room(buf, len)?;
    header(buf, blocks.len() as u8, SR, len);
    buf[4..8].copy_from_slice(&info.ssrc.to_be_bytes());
    buf[8..16].copy_from_slice(&info.ntp.to_be_bytes());
    buf[16..20].copy_from_slice(&info.rtp_timestamp.to_be_bytes());
    buf[20..24].copy_from_slice(&info.packet_count.to_be_bytes());
    buf[24..28].copy_from_slice(&info.octet_count.to_be_bytes());
    for (i, block) in blocks.iter().enumerate() {
        block.write(&mut buf[28 + i * REPORT_BLOCK_LEN..]);
    }
    Ok(len)
}

/// Writes an RR; at most 31 report blocks. Returns the length.
pub fn write_receiver_report(buf: &mut [u8], ssrc: u32, blocks: &[ReportBlock]) -> Result<usize, RtcpError> {
    let blocks = &blocks[..blocks.len().min(31)];
    let len = 8 + REPORT_BLOCK_LEN * blocks.len();
    room(buf, len)?;
    header(buf, blocks.len() as u8, RR, len);
    buf[4..8].copy_from_slice(&ssrc.to_be_bytes());
    for (i, block) in blocks.iter().enumerate() {
        block.write(&mut buf[8 + i * REPORT_BLOCK_LEN..]);
    }
    Ok(len)
}

pub fn write_pli(buf: &mut [u8], sender: u32, media: u32) -> Result<usize, RtcpError> {
    room(buf, 12)?;
    header(buf, FMT_PLI, PSFB, 12);
    buf[4..8].copy_from_slice(&sender.to_be_bytes());
    buf[8..12].copy_from_slice(&media.to_be_bytes());
    Ok(12)
}

/// REMB (draft-alvestrand-rmcat-remb): `bitrate_bps` for the streams `ssrcs` (at most 255). The mantissa has 18
/// bits: a rate that does not fit is rounded down.
pub fn write_remb(buf: &mut [u8], sender: u32, bitrate_bps: u64, ssrcs: &[u32]) -> Result<usize, RtcpError> {
    let ssrcs = &ssrcs[..ssrcs.len().min(255)];
    let len = 20 + 4 * ssrcs.len();
    room(buf, len)?;
    header(buf, FMT_AFB, PSFB, len);
    buf[4..8].copy_from_slice(&sender.to_be_bytes());
    buf[8..12].fill(0);
    buf[12..16].copy_from_slice(b"REMB");
    let exp = (64 - bitrate_bps.leading_zeros()).saturating_sub(18) as u8;
    let mantissa = (bitrate_bps >> exp) as u32;
    buf[16] = ssrcs.len() as u8;
    buf[17] = (exp << 2) | ((mantissa >> 16) as u8 & 0x03);
    buf[18..20].copy_from_slice(&(mantissa as u16).to_be_bytes());
    for (i, ssrc) in ssrcs.iter().enumerate() {
        buf[20 + 4 * i..24 + 4 * i].copy_from_slice(&ssrc.to_be_bytes());
    }
    Ok(len)
}

pub fn write_fir(buf: &mut [u8], sender: u32, media: u32, command_seq: u8) -> Result<usize, RtcpError> {
    room(buf, 20)?;
    header(buf, FMT_FIR, PSFB, 20);
    buf[4..8].copy_from_slice(&sender.to_be_bytes());
    buf[8..12].fill(0);
    buf[12..16].copy_from_slice(&media.to_be_bytes());
    buf[16..20].copy_from_slice(&[command_seq, 0, 0, 0]);
    Ok(20)
}

/// Writes a generic NACK for `lost` (ascending, in sequence-number order modulo 2^16), packing each run of 17
/// into one PID/BLP pair. Writes as many pairs as fit; returns the length.
pub fn write_nack(
    buf: &mut [u8],
    sender: u32,
    media: u32,
    lost: impl IntoIterator<Item = u16>,
) -> Result<usize, RtcpError> {
    room(buf, 16)?;
    buf[4..8].copy_from_slice(&sender.to_be_bytes());
    buf[8..12].copy_from_slice(&media.to_be_bytes());
    let mut len = 12;
    let mut current: Option<(u16, u16)> = None;
    for seq in lost {
        match &mut current {
            Some((pid, blp)) if seq.wrapping_sub(*pid) >= 1 && seq.wrapping_sub(*pid) <= 16 => {
                *blp |= 1 << (seq.wrapping_sub(*pid) - 1);
            }
            _ => {
                if let Some((pid, blp)) = current.take() {
                    if buf.len() < len + 4 {
                        break;
                    }
                    buf[len..len + 2].copy_from_slice(&pid.to_be_bytes());
                    buf[len + 2..len + 4].copy_from_slice(&blp.to_be_bytes());
                    len += 4;
                }
                current = Some((seq, 0));
            }
        }
    }
    if let Some((pid, blp)) = current
        && buf.len() >= len + 4
    {
        buf[len..len + 2].copy_from_slice(&pid.to_be_bytes());
        buf[len + 2..len + 4].copy_from_slice(&blp.to_be_bytes());
        len += 4;
    }
    header(buf, FMT_NACK, RTPFB, len);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn compound_sr_sdes_round_trip() {
        let mut buf = [0u8; 200];
        let info =
            SenderInfo { ssrc: 7, ntp: 0x0102_0304_0506_0708, rtp_timestamp: 9, packet_count: 10, octet_count: 11 };
        let block = ReportBlock {
            ssrc: 99,
            fraction_lost: 25,
            cumulative_lost: -3,
            highest_seq: 70000,
            jitter: 5,
            last_sr: 6,
            delay_since_last_sr: 7,
        };
        let n = write_sender_report(&mut buf, &info, &[block]).unwrap();
        let m = write_pli(&mut buf[n..], 7, 99).unwrap();
        let packets: Vec<_> = compound(&buf[..n + m]).collect::<Result<_, _>>().unwrap();
        assert_eq!(packets.len(), 2);
        let (got, mut blocks) = sender_report(&packets[0]).unwrap();
        assert_eq!(got, info);
        assert_eq!(blocks.next(), Some(block));
        assert_eq!(blocks.next(), None);
        assert_eq!((packets[1].packet_type, packets[1].count), (PSFB, FMT_PLI));
        assert_eq!(media_ssrc(&packets[1]), Ok(99));
    }

    #[test]
    fn remb_written_reads_back() {
        for rate in [0u64, 30_000, 262_143, 262_144, 1_500_000, 123_456_789] {
            let mut buf = [0u8; 64];
            let n = write_remb(&mut buf, 7, rate, &[0x1234, 0x5678]).unwrap();
            let packets: Vec<_> = compound(&buf[..n]).collect::<Result<_, _>>().unwrap();
            assert_eq!((packets[0].packet_type, packets[0].count), (PSFB, FMT_AFB));
            let (read, ssrcs) = remb(&packets[0]).unwrap();
            assert!(read <= rate && rate - read <= rate >> 17, "{rate} read as {read}");
            assert_eq!(ssrcs.collect::<Vec<_>>(), [0x1234, 0x5678]);
        }
    }

    #[test]
    fn receiver_report_fir_and_remb() {
        let mut buf = [0u8; 64];
        let n = write_receiver_report(&mut buf, 1, &[ReportBlock { ssrc: 2, ..Default::default() }]).unwrap();
        let p = compound(&buf[..n]).next().unwrap().unwrap();
        assert_eq!(receiver_report(&p).unwrap().map(|b| b.ssrc).collect::<Vec<_>>(), [2]);

        let n = write_fir(&mut buf, 1, 2, 5).unwrap();
        let p = compound(&buf[..n]).next().unwrap().unwrap();
        assert_eq!(fir_entries(&p).unwrap().collect::<Vec<_>>(), [(2, 5)]);

        // REMB of 1.5 Mbit/s for two SSRCs: exponent 3, mantissa 187500.
        let mut remb_pkt = vec![0x8f, PSFB, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0];
        remb_pkt.extend_from_slice(b"REMB");
        remb_pkt.extend_from_slice(&[2, (3 << 2) | (187500u32 >> 16) as u8, (187500u32 >> 8) as u8, 187500u32 as u8]);
        remb_pkt.extend_from_slice(&[0, 0, 0, 10, 0, 0, 0, 11]);
        let p = compound(&remb_pkt).next().unwrap().unwrap();
        let (bps, ssrcs) = remb(&p).unwrap();
        assert_eq!((bps, ssrcs.collect::<Vec<_>>()), (1_500_000, vec![10, 11]));
    }

    #[test]
    fn malformed_compound_packets_are_errors() {
        assert_eq!(compound(&[0x80, 200]).next(), Some(Err(RtcpError::TooShort)));
        assert_eq!(compound(&[0x40, 200, 0, 0]).next(), Some(Err(RtcpError::BadVersion)));
        assert_eq!(compound(&[0x80, 200, 0, 9, 0, 0, 0, 0]).next(), Some(Err(RtcpError::BadLength)));
        let p = compound(&[0x81, 201, 0, 1, 0, 0, 0, 1]).next().unwrap().unwrap();
        assert_eq!(receiver_report(&p).err(), Some(RtcpError::Truncated), "claims a block it lacks");
        let mut it = compound(&[0x80, 201, 0, 1, 0, 0, 0, 1, 0xff, 0xff]);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert_eq!(it.next(), None, "stops after an error");
    }

    fn report_block() -> impl Strategy<Value = ReportBlock> {
        (any::<u32>(), any::<u8>(), -0x80_0000i32..0x80_0000, any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(ssrc, fraction_lost, cumulative_lost, highest_seq, jitter, last_sr, delay_since_last_sr)| {
                ReportBlock { ssrc, fraction_lost, cumulative_lost, highest_seq, jitter, last_sr, delay_since_last_sr }
            })
    }

    proptest! {
        /// A compound of an SR, an RR, a PLI and a FIR, with any values, parses back to what was written.
        #[test]
        fn compound_round_trip(
            info in (any::<u32>(), any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>()),
            sr_blocks in proptest::collection::vec(report_block(), 0..31),
            rr_blocks in proptest::collection::vec(report_block(), 0..31),
            (sender, media, fir_seq) in (any::<u32>(), any::<u32>(), any::<u8>()),
        ) {
            let info = SenderInfo { ssrc: info.0, ntp: info.1, rtp_timestamp: info.2, packet_count: info.3, octet_count: info.4 };
            let mut buf = vec![0u8; 2000];
            let mut len = write_sender_report(&mut buf, &info, &sr_blocks).unwrap();
            len += write_receiver_report(&mut buf[len..], sender, &rr_blocks).unwrap();
            len += write_pli(&mut buf[len..], sender, media).unwrap();
            len += write_fir(&mut buf[len..], sender, media, fir_seq).unwrap();
            let packets: Vec<_> = compound(&buf[..len]).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(packets.len(), 4);
            let (got, blocks) = sender_report(&packets[0]).unwrap();
            prop_assert_eq!(got, info);
            prop_assert_eq!(blocks.collect::<Vec<_>>(), sr_blocks);
            prop_assert_eq!(receiver_report(&packets[1]).unwrap().collect::<Vec<_>>(), rr_blocks);
            prop_assert_eq!(packets[1].sender_ssrc(), Some(sender));
            prop_assert_eq!((packets[2].packet_type, packets[2].count, media_ssrc(&packets[2]).unwrap()), (PSFB, FMT_PLI, media));
            prop_assert_eq!(fir_entries(&packets[3]).unwrap().collect::<Vec<_>>(), vec![(media, fir_seq)]);
        }

        /// Any set of lost packets within a window, across the wrap, survives a NACK round trip.
        #[test]
        fn nack_round_trip(start in any::<u16>(), offsets in proptest::collection::btree_set(0u16..500, 1..60)) {
            let lost: Vec<u16> = offsets.iter().map(|o| start.wrapping_add(*o)).collect();
            let mut buf = [0u8; 1500];
            let n = write_nack(&mut buf, 1, 2, lost.iter().copied()).unwrap();
            let p = compound(&buf[..n]).next().unwrap().unwrap();
            prop_assert_eq!((p.packet_type, p.count), (RTPFB, FMT_NACK));
            let back: Vec<u16> = nack_lost(&p).unwrap().collect();
            prop_assert_eq!(back, lost);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            for p in compound(&bytes).flatten() {
                let _ = sender_report(&p).map(|(_, b)| b.count());
                let _ = receiver_report(&p).map(|b| b.count());
                let _ = nack_lost(&p).map(|n| n.count());
                let _ = fir_entries(&p).map(|f| f.count());
                let _ = remb(&p).map(|(_, s)| s.count());
            }
        }
    }
}
