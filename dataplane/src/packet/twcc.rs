//! Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1):
//! which transport-wide sequence numbers arrived and when. We send it to publishers so their bandwidth estimator
//! can ramp up; the decoder is for reading subscribers' feedback.

use super::rtcp::{FMT_TWCC, RTPFB, RtcpError, RtcpPacket};
use super::{u16_at, u32_at};

/// Receive deltas are in units of 250 µs; the reference time in units of 64 ms.
pub const DELTA_UNIT_US: i64 = 250;
pub const REFERENCE_UNIT_US: i64 = 64_000;
/// Status symbols (2 bits).
const NOT_RECEIVED: u8 = 0;
const SMALL_DELTA: u8 = 1;
const LARGE_DELTA: u8 = 2;
/// A two-bit status vector chunk carries 7 symbols.
const SYMBOLS_PER_CHUNK: usize = 7;

/// One packet's fate in a feedback message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketResult {
    pub seq: u16,
    /// Arrival time in µs on the receiver's clock (reference time plus deltas), if it arrived.
    pub arrival_us: Option<i64>,
}

/// Writes a feedback message for packets `base_seq..base_seq + arrivals.len()`: `arrivals[i]` is the arrival time
/// in µs (on any clock) of packet `base_seq + i`, or `None` if it did not arrive. At least one must have arrived.
/// Returns the length.
pub fn write(
    buf: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    base_seq: u16,
    feedback_count: u8,
    arrivals: &[Option<i64>],
) -> Result<usize, RtcpError> {
    let first = arrivals.iter().flatten().next().copied().ok_or(RtcpError::Truncated)?;
    let reference = first.div_euclid(REFERENCE_UNIT_US);
    let chunks = arrivals.len().div_ceil(SYMBOLS_PER_CHUNK);
    let mut len = 20 + 2 * chunks;
    // Worst case: every delta large.
    if buf.len() < len + 2 * arrivals.len() + 3 || arrivals.len() > usize::from(u16::MAX) {
        return Err(RtcpError::NoRoom);
    }
    buf[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    buf[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
    buf[12..14].copy_from_slice(&base_seq.to_be_bytes());
    buf[14..16].copy_from_slice(&(arrivals.len() as u16).to_be_bytes());
    let reference_bytes = ((reference as u32) & 0x00ff_ffff).to_be_bytes();
    buf[16..19].copy_from_slice(&reference_bytes[1..]);
    buf[19] = feedback_count;
    let mut previous = reference * REFERENCE_UNIT_US;
    for (chunk, packets) in arrivals.chunks(SYMBOLS_PER_CHUNK).enumerate() {
        let mut word: u16 = 0b11 << 14;
        for (i, arrival) in packets.iter().enumerate() {
            let symbol = match arrival {
                None => NOT_RECEIVED,
                Some(at) => {
                    let delta = (at - previous).div_euclid(DELTA_UNIT_US);
                    previous += delta * DELTA_UNIT_US;
                    if (0..=255).contains(&delta) {
                        buf[len] = delta as u8;
                        len += 1;
                        SMALL_DELTA
                    } else {
                        let delta = delta.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
                        buf[len..len + 2].copy_from_slice(&delta.to_be_bytes());
                        len += 2;
                        LARGE_DELTA
                    }
                }
            };
            word |= u16::from(symbol) << (12 - 2 * i);
        }
        buf[20 + 2 * chunk..22 + 2 * chunk].copy_from_slice(&word.to_be_bytes());
    }
    while !len.is_multiple_of(4) {
        buf[len] = 0;
        len += 1;
    }
    buf[0] = 0x80 | FMT_TWCC;
    buf[1] = RTPFB;
    buf[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
    Ok(len)
}

/// The most packets one feedback message may report here (Chrome's cover a few hundred at most); a reader's
/// buffer of this capacity never grows.
pub const REPORTED_MAX: usize = 4096;

/// Decodes a feedback message: the packets it covers in order, with arrival times, appended to `out`. Allocates
/// nothing if `out` has room for `REPORTED_MAX` more.
pub fn read(p: &RtcpPacket<'_>, out: &mut Vec<PacketResult>) -> Result<(), RtcpError> {
    let b = p.bytes;
    if b.len() < 20 || (p.packet_type, p.count) != (RTPFB, FMT_TWCC) {
        return Err(RtcpError::Truncated);
    }
    let base = u16_at(b, 12);
    let count = usize::from(u16_at(b, 14));
    if count > REPORTED_MAX {
        return Err(RtcpError::NoRoom);
    }
    let reference = i64::from(((u32_at(b, 16) >> 8) << 8) as i32 >> 8);
    // First pass: where the status chunks end and the deltas begin.
    let mut at = symbols(b, count, |_| Ok(()))?;
    // Second pass: each symbol with its delta.
    let mut time = reference * REFERENCE_UNIT_US;
    let mut i = 0usize;
    symbols(b, count, |symbol| {
        let seq = base.wrapping_add(i as u16);
        i += 1;
        let arrival_us = match symbol {
            SMALL_DELTA => {
                let d = *b.get(at).ok_or(RtcpError::Truncated)?;
                at += 1;
                time += i64::from(d) * DELTA_UNIT_US;
                Some(time)
            }
            LARGE_DELTA => {
                let d = b.get(at..at + 2).ok_or(RtcpError::Truncated)?;
                at += 2;
                time += i64::from(i16::from_be_bytes([d[0], d[1]])) * DELTA_UNIT_US;
                Some(time)
            }
            _ => None,
        };
        out.push(PacketResult { seq, arrival_us });
        Ok(())
    })?;
    Ok(())
}

/// Walks the packet status chunks from offset 20, calling `f` with each of the `count` symbols in order; returns
/// the offset just past the chunks.
fn symbols(b: &[u8], count: usize, mut f: impl FnMut(u8) -> Result<(), RtcpError>) -> Result<usize, RtcpError> {
    let (mut at, mut seen) = (20, 0usize);
    while seen < count {
        let chunk = b.get(at..at + 2).ok_or(RtcpError::Truncated)?;
        let word = u16::from_be_bytes([chunk[0], chunk[1]]);
        at += 2;
        if word & 0x8000 == 0 {
            let (symbol, run) = (((word >> 13) & 0b11) as u8, usize::from(word & 0x1fff));
            for _ in 0..run.min(count - seen) {
                f(symbol)?;
                seen += 1;
            }
        } else if word & 0x4000 == 0 {
            for i in 0..14 {
                if seen < count {
                    f(((word >> (13 - i)) & 1) as u8)?;
                    seen += 1;
                }
            }
        } else {
            for i in 0..7 {
                if seen < count {
                    f(((word >> (12 - 2 * i)) & 0b11) as u8)?;
                    seen += 1;
                }
            }
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::packet::rtcp::compound;

    /// A message assembled by hand from the draft's layout: base 100, 8 packets, a run-length chunk (3 received,
    /// small deltas) and a one-bit status vector chunk (T=1, S=0, then symbols 1 0 1 1 0 for packets 103-107),
    /// reference time 2 (128 ms); deltas in 250 µs units: 4 8 0 12 20 0.
    #[test]
    fn decodes_run_length_and_one_bit_vector_chunks() {
        let mut b = vec![0x8f, 205, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 100, 0, 8, 0, 0, 2, 7];
        b.extend_from_slice(&[0b0010_0000, 0b0000_0011]); // run length: symbol 01 x 3
        b.extend_from_slice(&[0b1010_1100, 0b0000_0000]); // 1-bit vector: 1 0 1 1 0 0 ... (14 symbols)
        b.extend_from_slice(&[4, 8, 0, 12, 20, 0, 0, 0]); // deltas for the 6 received, then padding
        let len = b.len();
        b[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
        let p = compound(&b).next().unwrap().unwrap();
        let mut out = vec![];
        read(&p, &mut out).unwrap();
        let got: Vec<_> = out.iter().map(|r| (r.seq, r.arrival_us)).collect();
        assert_eq!(
            got,
            vec![
                (100, Some(128_000 + 1_000)),
                (101, Some(129_000 + 2_000)),
                (102, Some(131_000)),
                (103, Some(131_000 + 3_000)),
                (104, None),
                (105, Some(134_000 + 5_000)),
                (106, Some(139_000)),
                (107, None),
            ]
        );
    }

    proptest! {
        /// Whatever arrived, in any order of times (late packets need negative deltas), the written message
        /// decodes to the same packets with arrival times within one delta unit.
        #[test]
        fn write_read_round_trip(
            base in any::<u16>(),
            arrivals in proptest::collection::vec(proptest::option::of(0i64..5_000_000), 1..300),
        ) {
            prop_assume!(arrivals.iter().any(Option::is_some));
            let mut buf = vec![0u8; 2_000];
            let n = write(&mut buf, 1, 2, base, 9, &arrivals).unwrap();
            let p = compound(&buf[..n]).next().unwrap().unwrap();
            let mut out = vec![];
            read(&p, &mut out).unwrap();
            prop_assert_eq!(out.len(), arrivals.len());
            for (i, (r, a)) in out.iter().zip(&arrivals).enumerate() {
                prop_assert_eq!(r.seq, base.wrapping_add(i as u16));
                match (r.arrival_us, a) {
                    (None, None) => {}
                    (Some(got), Some(want)) => prop_assert!((got - want).abs() < DELTA_UNIT_US, "{} vs {}", got, want),
                    other => prop_assert!(false, "status mismatch {:?}", other),
                }
            }
        }
    }
}
