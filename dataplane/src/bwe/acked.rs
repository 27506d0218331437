//! The rate the subscriber acknowledged: bytes reported received over the last half second of its arrivals,
//! in fixed 50 ms buckets (no allocation).

const BUCKET_US: i64 = 50_000;
const BUCKETS: usize = 10;
/// Arrivals this many buckets (2 s) after the latest are a jump of the receiver's clock, not a gap.
const JUMP_BUCKETS: i64 = 40;

#[derive(Debug, Default)]
pub(super) struct AckedRate {
    /// (bucket number, bytes), by bucket number modulo `BUCKETS`.
    buckets: [(i64, u64); BUCKETS],
    latest: Option<i64>,
    first: Option<i64>,
}

impl AckedRate {
    pub(super) fn on_acked(&mut self, arrival_us: i64, size: u32) {
        let bucket = arrival_us.div_euclid(BUCKET_US);
        // The receiver's clock jumped (its 24-bit reference wrapped, or a report lied): start over, or the window
        // would never see a new packet again.
        if self.latest.is_some_and(|l| bucket < l - BUCKETS as i64 || bucket > l + JUMP_BUCKETS) {
            *self = AckedRate::default();
        }
        let slot = &mut self.buckets[bucket.rem_euclid(BUCKETS as i64) as usize];
        if slot.0 != bucket {
            *slot = (bucket, 0);
        }
        slot.1 += u64::from(size);
        self.latest = Some(self.latest.map_or(bucket, |l| l.max(bucket)));
        self.first.get_or_insert(bucket);
    }

    /// Bit/s over the last `BUCKETS` buckets up to the latest arrival, once that much time has been seen.
    pub(super) fn rate_bps(&self) -> Option<u64> {
        let (latest, first) = (self.latest?, self.first?);
        if latest - first < BUCKETS as i64 - 1 {
            return None;
        }
        let bytes: u64 = self.buckets.iter().filter(|(b, _)| latest - b < BUCKETS as i64).map(|(_, n)| n).sum();
        Some(bytes * 8 * 1_000_000 / (BUCKETS as u64 * BUCKET_US as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_stream_is_measured_at_its_rate() {
        let mut a = AckedRate::default();
        // 1000-byte packets every 8 ms: 1 Mbit/s.
        for i in 0..200 {
            a.on_acked(i * 8_000, 1000);
            if i < 50 {
                assert_eq!(a.rate_bps(), None, "not half a second yet at packet {i}");
            }
        }
        let rate = a.rate_bps().unwrap();
        assert!((950_000..=1_050_000).contains(&rate), "{rate}");
        // The receiver's clock jumps back a long way: measured afresh, not stuck at nothing.
        for i in 0..200 {
            a.on_acked(-1_000_000_000 + i * 8_000, 1000);
        }
        let rate = a.rate_bps().unwrap();
        assert!((950_000..=1_050_000).contains(&rate), "after the jump: {rate}");
    }
}
