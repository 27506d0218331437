//! Long-term credentials (RFC 8489 section 9.2) with the TURN REST API scheme: the username is
//! `<expiry unix secs>:<user>` and the password is base64(HMAC-SHA1(secret, username)), so the server needs no
//! user table, only the shared secret(s). Several secrets are accepted at once so one can be rotated out.
//! Nonces are stateless: an expiry and a MAC over it and the client's IP, so they go stale (438) on their own.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use md5::Digest;
use sha1::Sha1;

/// The MD5 key of MESSAGE-INTEGRITY for long-term credentials: MD5(username ":" realm ":" password).
pub type LongTermKey = [u8; 16];

pub fn long_term_key(username: &str, realm: &str, password: &str) -> LongTermKey {
    let mut md5 = md5::Md5::new();
    md5.update(username.as_bytes());
    md5.update(b":");
    md5.update(realm.as_bytes());
    md5.update(b":");
    md5.update(password.as_bytes());
    md5.finalize().into()
}

/// The REST API password of `username` under `secret`.
pub fn rest_password(secret: &str, username: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A short-lived credential for one user, valid until `expires_unix`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RestCredential {
    pub username: String,
    pub password: String,
    pub expires_unix: u64,
}

/// Mints a credential for `user` valid for `ttl` from `now`, under the first (newest) secret.
pub fn mint(secret: &str, user: &str, ttl: Duration, now: SystemTime) -> RestCredential {
    let expires_unix = unix_secs(now) + ttl.as_secs();
    let username = if user.is_empty() { expires_unix.to_string() } else { format!("{expires_unix}:{user}") };
    let password = rest_password(secret, &username);
    RestCredential { username, password, expires_unix }
}

/// An `RTCIceServer` as browsers take it: TURN URLs with a short-lived REST credential.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// What the control plane needs to hand joining participants TURN credentials: the minting secret, the URLs
/// and the lifetime. It works for an embedded relay and for `sluice turn` elsewhere sharing the secret.
#[derive(Clone)]
pub struct IceServerIssuer {
    secret: String,
    urls: Vec<String>,
    ttl: Duration,
}

impl std::fmt::Debug for IceServerIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServerIssuer").field("urls", &self.urls).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl IceServerIssuer {
    pub fn new(secret: String, urls: Vec<String>, ttl: Duration) -> IceServerIssuer {
        IceServerIssuer { secret, urls, ttl }
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// A credential for `user`, valid for the configured lifetime from now.
    pub fn issue(&self, user: &str) -> IceServer {
        let c = mint(&self.secret, user, self.ttl, SystemTime::now());
        IceServer { urls: self.urls.clone(), username: c.username, credential: c.password }
    }
}

/// The expiry a REST username carries: `<expiry>` or `<expiry>:<user>` (coturn also accepts `<user>:<expiry>`,
/// and so do we, so credentials minted by other tools work).
pub fn username_expiry(username: &str) -> Option<u64> {
    let mut parts = username.splitn(2, ':');
    let first = parts.next()?;
    if let Ok(t) = first.parse() {
        return Some(t);
    }
    username.rsplit(':').next()?.parse().ok()
}

pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No username or the username is not a REST username (401).
    UnknownUser,
    /// The username's expiry has passed (401).
    Expired,
    /// MESSAGE-INTEGRITY matches no configured secret (401).
    BadIntegrity,
    /// The nonce is not ours, or is too old (438).
    StaleNonce,
}

/// Characters of a nonce: 8 hex digits of expiry, 16 of MAC.
pub const NONCE_LEN: usize = 24;

/// Issues and checks stateless nonces bound to the client's IP address.
#[derive(Clone)]
pub struct Nonces {
    key: [u8; 32],
    lifetime: Duration,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces").field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

impl Nonces {
    pub fn new(key: [u8; 32], lifetime: Duration) -> Nonces {
        Nonces { key, lifetime }
    }

    /// A nonce for `ip`, valid for the configured lifetime from `now_unix`.
    pub fn issue(&self, ip: IpAddr, now_unix: u64) -> [u8; NONCE_LEN] {
        let expiry = (now_unix + self.lifetime.as_secs()) as u32;
        let mut out = [0u8; NONCE_LEN];
        hex_into(&expiry.to_be_bytes(), &mut out[..8]);
        hex_into(&self.mac(expiry, ip), &mut out[8..]);
        out
    }

    /// Whether `nonce` was issued by us for `ip` and has not expired.
    pub fn check(&self, nonce: &[u8], ip: IpAddr, now_unix: u64) -> bool {
        if nonce.len() != NONCE_LEN {
            return false;
        }
        let Some(expiry) = parse_hex_u32(&nonce[..8]) else { return false };
        let mut expected = [0u8; 16];
        hex_into(&self.mac(expiry, ip), &mut expected);
        constant_time_eq(&expected, &nonce[8..]) && u64::from(expiry) >= now_unix
    }

    fn mac(&self, expiry: u32, ip: IpAddr) -> [u8; 8] {
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&expiry.to_be_bytes());
        match ip {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        mac.finalize().into_bytes()[..8].try_into().expect("SHA-1 is 20 bytes")
    }
}

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
}

fn parse_hex_u32(s: &[u8]) -> Option<u32> {
    u32::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

/// Compares without an early exit, so the time taken says nothing about where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5769_long_term_key() {
        // RFC 5769 section 2.4: username "<U+30DE><U+30C8><U+30EA><U+30C3><U+30AF><U+30B9>", realm
        // "example.org", password "TheMatrIX" (after SASLprep).
        let key = long_term_key("\u{30de}\u{30c8}\u{30ea}\u{30c3}\u{30af}\u{30b9}", "example.org", "TheMatrIX");
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        // MD5 of the UTF-8 string above, computed independently (Python's hashlib).
        assert_eq!(hex, "e8ca7ad59d5eb0518e312911d2dab2a9");
        assert_eq!(long_term_key("user", "realm", "pass"), long_term_key("user", "realm", "pass"));
        assert_ne!(long_term_key("user", "realm", "pass"), long_term_key("user", "realm", "pasS"));
    }

    #[test]
    fn rest_password_matches_the_coturn_scheme() {
        // Computed independently: base64(HMAC-SHA1(b"secret", b"1700000000:alice")) in Python.
        assert_eq!(rest_password("secret", "1700000000:alice"), "d8soP47RbdIKLDUOpnJPVQyq5Ts=");
    }

    #[test]
    fn minted_usernames_carry_their_expiry() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let c = mint("s", "bob", Duration::from_secs(60), now);
        assert_eq!(c.username, "1060:bob");
        assert_eq!(username_expiry(&c.username), Some(1060));
        assert_eq!(username_expiry("1060"), Some(1060));
        assert_eq!(username_expiry("bob:1060"), Some(1060));
        assert_eq!(username_expiry("bob"), None);
        assert_eq!(c.password, rest_password("s", "1060:bob"));
    }

    #[test]
    fn nonces_bind_ip_and_expire() {
        let nonces = Nonces::new([7; 32], Duration::from_secs(600));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let n = nonces.issue(ip, 1_000);
        assert!(nonces.check(&n, ip, 1_000));
        assert!(nonces.check(&n, ip, 1_600));
        assert!(!nonces.check(&n, ip, 1_601), "stale");
        assert!(!nonces.check(&n, "192.0.2.2".parse().unwrap(), 1_000), "other IP");
        let mut forged = n;
        forged[0] = b'f';
        assert!(!nonces.check(&forged, ip, 1_000), "a longer expiry needs a new MAC");
        assert!(!nonces.check(b"short", ip, 1_000));
    }
}
