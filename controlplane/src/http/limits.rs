//! Request limits: a token bucket per source address and per API key (GCRA, `governor`), and a cap on signaling
//! WebSockets open at once, in all and per source. A refused request gets `429 Too Many Requests` (or `503` when
//! the whole server is full) with `Retry-After`, at once: nothing waits for room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::LimitsConfig;

/// How often buckets that refilled completely are forgotten, so the maps hold only recent sources.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The limits of one HTTP server.
#[derive(Debug)]
pub struct Limits {
    per_source: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_key: Option<DefaultKeyedRateLimiter<String>>,
    /// Requests presenting an API key, per source, at the per-key rate: bounds the store look-ups a source can
    /// cause with keys that turn out wrong (checked before the look-up).
    key_attempts: Option<DefaultKeyedRateLimiter<IpAddr>>,
    sessions: Arc<Sessions>,
    clock: DefaultClock,
}

/// A refusal: the status, what to say, and when to come back.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Duration,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let secs = self.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let code = if self.status == StatusCode::TOO_MANY_REQUESTS { "rate_limited" } else { "unavailable" };
        let error = super::error::ApiError { status: self.status, code, message: self.message };
        let mut response = error.into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        response
    }
}

fn quota(per_sec: u32, burst: u32) -> Option<Quota> {
    let per_sec = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst.max(per_sec.get())).unwrap_or(per_sec);
    Some(Quota::per_second(per_sec).allow_burst(burst))
}

impl Limits {
    pub fn new(config: &LimitsConfig) -> Limits {
        Limits {
            per_source: quota(config.per_source_per_sec, config.per_source_burst).map(RateLimiter::keyed),
            per_key: quota(config.per_key_per_sec, config.per_key_burst).map(RateLimiter::keyed),
            key_attempts: quota(config.per_key_per_sec, config.per_key_burst).map(RateLimiter::keyed),
            sessions: Arc::new(Sessions {
                open: Mutex::new(SessionCounts::default()),
                max: config.signaling_sessions_max,
                per_source_max: config.signaling_sessions_per_source_max,
            }),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `source`'s bucket.
    pub fn source(&self, source: IpAddr) -> Result<(), Refused> {
        let Some(limiter) = &self.per_source else { return Ok(()) };
        let source = bucket_of(source);
        limiter.check_key(&source).map_err(|not_until| {
            metrics::counter!("sluice_http_rate_limited_total", "by" => "source").increment(1);
            Refused {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!("too many requests from {source}; slow down"),
                retry_after: not_until.wait_time_from(self.clock.now()),
            }
        })
    }

    /// Takes one key-bearing request from `source`'s key-attempt bucket, before the key is looked up.
    pub fn key_attempt(&self, source: IpAddr) -> Result<(), Refused> {
        let Some(limiter) = &self.key_attempts else { return Ok(()) };
        let source = bucket_of(source);
        limiter.check_key(&source).map_err(|not_until| {
            metrics::counter!("sluice_http_rate_limited_total", "by" => "key_attempts").increment(1);
            Refused {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!("too many requests with API keys from {source}; slow down"),
                retry_after: not_until.wait_time_from(self.clock.now()),
            }
        })
    }

    /// Takes one request from the API key's bucket.
    pub fn key(&self, id: &str) -> Result<(), Refused> {
        let Some(limiter) = &self.per_key else { return Ok(()) };
        limiter.check_key(&id.to_string()).map_err(|not_until| {
            metrics::counter!("sluice_http_rate_limited_total", "by" => "key").increment(1);
            Refused {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!("too many requests with the API key {id}; slow down"),
                retry_after: not_until.wait_time_from(self.clock.now()),
            }
        })
    }

    /// A signaling WebSocket for `source`, held until the returned guard drops.
    pub fn open_session(&self, source: IpAddr) -> Result<SessionGuard, Refused> {
        Sessions::open(&self.sessions, bucket_of(source))
    }

    /// Forgets buckets that refilled; run now and then.
    pub fn sweep(&self) {
        if let Some(l) = &self.per_source {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_key {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.key_attempts {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Sweeps every minute for as long as `limits` lives elsewhere.
    pub fn spawn_sweeper(limits: &Arc<Limits>) {
        let weak = Arc::downgrade(limits);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_INTERVAL).await;
                let Some(limits) = weak.upgrade() else { return };
                limits.sweep();
            }
        });
    }
}

#[derive(Debug, Default)]
struct SessionCounts {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Sessions {
    open: Mutex<SessionCounts>,
    max: usize,
    per_source_max: usize,
}

impl Sessions {
    fn open(this: &Arc<Sessions>, source: IpAddr) -> Result<SessionGuard, Refused> {
        let mut open = this.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= this.max {
            metrics::counter!("sluice_signaling_sessions_refused_total", "by" => "total").increment(1);
            return Err(Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!("this server holds its maximum of {} signaling sessions", this.max),
                retry_after: Duration::from_secs(5),
            });
        }
        let mine = open.by_source.get(&source).copied().unwrap_or(0);
        if mine >= this.per_source_max {
            metrics::counter!("sluice_signaling_sessions_refused_total", "by" => "source").increment(1);
            return Err(Refused {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!("{source} has {mine} signaling sessions open, the most one address may hold"),
                retry_after: Duration::from_secs(5),
            });
        }
        open.total += 1;
        *open.by_source.entry(source).or_default() += 1;
        Ok(SessionGuard { sessions: Arc::clone(this), source })
    }
}

/// One open signaling session; dropping it frees its place.
#[derive(Debug)]
pub struct SessionGuard {
    sessions: Arc<Sessions>,
    source: IpAddr,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut open = self.sessions.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

/// What a source is counted as: an IPv4 address, or an IPv6 /64 (one subscriber's usual allocation: a client
/// cannot dodge its limits by moving through its own prefix).
pub fn bucket_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest address in
/// `X-Forwarded-For` that is not one of the trusted proxies (the one the proxies saw).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
    let peer = peer.to_canonical();
    let trusted = |ip: &IpAddr| trusted.iter().any(|t| t.to_canonical() == ip.to_canonical());
    if !trusted(&peer) {
        return peer;
    }
    let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    let hops = forwarded.iter().flat_map(|v| v.split(',')).map(str::trim).collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted(&ip) => continue,
            Ok(ip) => return ip.to_canonical(),
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(per_sec: u32, burst: u32) -> LimitsConfig {
        LimitsConfig {
            per_source_per_sec: per_sec,
            per_source_burst: burst,
            per_key_per_sec: per_sec,
            per_key_burst: burst,
            signaling_sessions_max: 3,
            signaling_sessions_per_source_max: 2,
        }
    }

    #[test]
    fn a_source_past_its_burst_is_refused_and_others_are_not() {
        let limits = Limits::new(&config(1, 3));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            limits.source(a).unwrap();
        }
        let refused = limits.source(a).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(1));
        limits.source(b).unwrap();
        limits.key("k1").unwrap();
        let off = Limits::new(&config(0, 0));
        for _ in 0..1000 {
            off.source(a).unwrap();
        }
    }

    #[test]
    fn sessions_are_capped_per_source_and_in_all_and_freed_on_drop() {
        let limits = Limits::new(&config(1, 1));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = limits.open_session(a).unwrap();
        let _second = limits.open_session(a).unwrap();
        assert_eq!(limits.open_session(a).unwrap_err().status, StatusCode::TOO_MANY_REQUESTS);
        let _third = limits.open_session(b).unwrap();
        assert_eq!(limits.open_session(b).unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        limits.open_session(a).unwrap();
    }

    #[test]
    fn ipv6_sources_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let limits = Limits::new(&config(1, 2));
        for last in 1..=2u16 {
            limits.source(IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last))).unwrap();
        }
        let same_prefix = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9));
        assert!(limits.source(same_prefix).is_err(), "a new address in the same /64 is the same source");
        let other_prefix = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        assert!(limits.source(other_prefix).is_ok());
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(bucket_of(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        assert_eq!(client_address(mapped, &headers, &[proxy]), "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.0.0.1".parse().unwrap());
        assert_eq!(client_address(proxy, &headers, &[proxy]), "203.0.113.9".parse::<IpAddr>().unwrap());
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(client_address(stranger, &headers, &[proxy]), stranger, "an untrusted peer cannot claim another");
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_address(proxy, &headers, &[proxy]), proxy);
    }
}
