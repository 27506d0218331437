//! The relay's limits: token buckets for bandwidth and for unauthenticated requests, the response budget that
//! keeps the server from amplifying spoofed traffic, and the allocation quotas shared by all workers.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// A token bucket: `rate` tokens per second, at most `burst` saved. A rate of 0 means unlimited.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u64, burst: u64, now: Instant) -> TokenBucket {
        TokenBucket { rate, burst, tokens: burst, last: now }
    }

    pub fn unlimited(&self) -> bool {
        self.rate == 0
    }

    /// Takes `n` tokens if there are that many.
    pub fn take(&mut self, n: u64, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed_us = now.saturating_duration_since(self.last).as_micros() as u64;
        let earned = elapsed_us.saturating_mul(self.rate) / 1_000_000;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(self.burst);
            // Keep the remainder of the microseconds that earned nothing yet.
            let used_us = earned.saturating_mul(1_000_000) / self.rate;
            self.last += std::time::Duration::from_micros(used_us);
            if self.tokens == self.burst {
                self.last = now;
            }
        }
    }
}

/// Slots in the per-source tables; sources whose hashes collide share a slot, which only makes the limit
/// stricter for them. Fixed, so a flood of spoofed sources cannot grow memory.
pub const SOURCE_SLOTS: usize = 4096;

/// Answers to sources that have not authenticated are paid for by those sources' own requests: each request
/// adds its size to the source's credit, each answer spends its size. On top, a source gets `allowance` bytes
/// that refill at `allowance` per second, so a normal client's first exchange is answered at once. Over a
/// flood, a spoofed victim receives at most what the attacker sent plus the allowance: no amplification. The
/// allowances of all sources together are capped too (`GLOBAL_ALLOWANCE_FACTOR` allowances per second), so
/// spreading a flood over many spoofed victims cannot add their allowances up. An allowance of 0 makes every
/// answer paid for by its requests: never more bytes out than in, at the cost of a retransmission before a new
/// client's first answer.
#[derive(Debug)]
pub struct ResponseBudget {
    slots: Box<[Slot]>,
    allowance: u64,
    global: TokenBucket,
}

/// How many sources' allowances may be spent per second, in total.
pub const GLOBAL_ALLOWANCE_FACTOR: u64 = 16;

#[derive(Debug, Clone, Copy)]
struct Slot {
    credit: u64,
    bonus: u64,
    last: Option<Instant>,
}

impl ResponseBudget {
    pub fn new(allowance_bytes: u64, now: Instant) -> ResponseBudget {
        let slot = Slot { credit: 0, bonus: allowance_bytes, last: None };
        let global_rate = allowance_bytes * GLOBAL_ALLOWANCE_FACTOR;
        ResponseBudget {
            slots: vec![slot; SOURCE_SLOTS].into_boxed_slice(),
            allowance: allowance_bytes,
            // A rate of 0 would mean "unlimited" to the bucket; with no allowance there is nothing to spend.
            global: TokenBucket::new(global_rate.max(1), global_rate, now),
        }
    }

    /// Credits a request of `request_len` bytes from `ip`, then spends `response_len` if the credit allows.
    pub fn admit(&mut self, ip: IpAddr, request_len: usize, response_len: usize, now: Instant) -> bool {
        let index = slot_of(ip);
        let allowance = self.allowance;
        let slot = &mut self.slots[index];
        if let Some(last) = slot.last {
            let earned = now.saturating_duration_since(last).as_micros() as u64 * allowance / 1_000_000;
            slot.bonus = (slot.bonus + earned).min(allowance);
        }
        slot.last = Some(now);
        // Credit is capped so a client cannot bank a large burst for later.
        slot.credit = (slot.credit + request_len as u64).min(64 * 1024);
        let need = response_len as u64;
        let from_credit = need.min(slot.credit);
        let from_bonus = need - from_credit;
        if from_bonus > slot.bonus || (from_bonus > 0 && !self.global.take(from_bonus, now)) {
            return false;
        }
        slot.credit -= from_credit;
        slot.bonus -= from_bonus;
        true
    }
}

fn slot_of<T: Hash>(key: T) -> usize {
    (rustc_hash::FxBuildHasher.hash_one(key) as usize) % SOURCE_SLOTS
}

/// Per-source request rate limit for requests that carry no valid credentials yet.
#[derive(Debug)]
pub struct SourceRateLimit {
    buckets: Box<[Option<TokenBucket>]>,
    rate: u64,
    burst: u64,
}

impl SourceRateLimit {
    pub fn new(rate: u64, burst: u64) -> SourceRateLimit {
        SourceRateLimit { buckets: vec![None; SOURCE_SLOTS].into_boxed_slice(), rate, burst }
    }

    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let (rate, burst) = (self.rate, self.burst);
        let index = slot_of(ip);
        self.buckets[index].get_or_insert_with(|| TokenBucket::new(rate, burst, now)).take(1, now)
    }
}

/// Allocation counts shared by every worker: per user and in total. Touched on Allocate and on an allocation's
/// end only, never per packet.
#[derive(Debug, Default)]
pub struct Quotas {
    per_user: usize,
    total: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_user: HashMap<String, usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaError {
    User,
    Total,
}

impl Quotas {
    /// `0` means no limit.
    pub fn new(per_user: usize, total: usize) -> Quotas {
        Quotas { per_user, total, counts: Mutex::default() }
    }

    pub fn acquire(&self, user: &str) -> Result<(), QuotaError> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if self.total > 0 && counts.total >= self.total {
            return Err(QuotaError::Total);
        }
        let mine = counts.by_user.get(user).copied().unwrap_or(0);
        if self.per_user > 0 && mine >= self.per_user {
            return Err(QuotaError::User);
        }
        counts.total += 1;
        *counts.by_user.entry(user.to_string()).or_default() += 1;
        Ok(())
    }

    pub fn release(&self, user: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                counts.by_user.remove(user);
            }
        }
    }

    pub fn total(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_refills_at_its_rate_up_to_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 100, t0);
        assert!(b.take(100, t0));
        assert!(!b.take(1, t0));
        assert!(b.take(50, t0 + Duration::from_millis(50)));
        assert!(!b.take(1, t0 + Duration::from_millis(50)));
        assert!(b.take(100, t0 + Duration::from_secs(10)));
        assert!(!b.take(1, t0 + Duration::from_secs(10)), "burst caps the saving");
        assert!(TokenBucket::new(0, 0, t0).take(u64::MAX, t0));
    }

    #[test]
    fn response_budget_never_amplifies_over_a_flood() {
        let t0 = Instant::now();
        let mut budget = ResponseBudget::new(200, t0);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let (mut sent, mut received) = (0usize, 0usize);
        for i in 0..1000 {
            received += 20;
            if budget.admit(ip, 20, 60, t0 + Duration::from_micros(i)) {
                sent += 60;
            }
        }
        assert!(sent <= received + 200, "{sent} > {received} + 200");
        assert!(sent > 0);
        assert!(budget.admit("198.51.100.8".parse().unwrap(), 20, 60, t0), "another source has its own allowance");
    }

    #[test]
    fn allowances_of_many_sources_are_capped_together() {
        let t0 = Instant::now();
        let mut budget = ResponseBudget::new(200, t0);
        let mut spent = 0;
        for i in 0..4000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            if budget.admit(ip, 20, 60, t0) {
                spent += 60 - 20;
            }
        }
        assert!(spent <= 200 * GLOBAL_ALLOWANCE_FACTOR as usize, "{spent} bytes beyond the requests");
    }

    #[test]
    fn without_an_allowance_answers_never_exceed_requests() {
        let t0 = Instant::now();
        let mut budget = ResponseBudget::new(0, t0);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(!budget.admit(ip, 20, 32, t0), "the first request alone does not pay for its answer");
        assert!(budget.admit(ip, 20, 32, t0), "the retransmission does");
    }

    #[test]
    fn quotas_count_per_user_and_in_total() {
        let q = Quotas::new(2, 3);
        assert_eq!(q.acquire("a"), Ok(()));
        assert_eq!(q.acquire("a"), Ok(()));
        assert_eq!(q.acquire("a"), Err(QuotaError::User));
        assert_eq!(q.acquire("b"), Ok(()));
        assert_eq!(q.acquire("c"), Err(QuotaError::Total));
        q.release("a");
        assert_eq!(q.acquire("c"), Ok(()));
        assert_eq!(q.total(), 3);
    }
}
