//! Which peers an allocation may talk to. By default every IANA special-purpose range (RFC 6890 and its
//! registries) is denied: loopback, unspecified, private, CGNAT, link-local (where the cloud metadata service
//! lives), multicast, documentation, benchmarking, reserved, ULA, and the rest. Addresses that embed an IPv4
//! address (IPv4-mapped, IPv4-compatible, NAT64) are checked as that IPv4 address, so `::ffff:127.0.0.1` is
//! loopback (CVE-2026-27624) and `::` is unspecified (CVE-2020-26262). An operator's allow list (the SFU's own
//! media addresses, a lab network) wins over the defaults; an extra deny list wins over everything.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An address block: `192.0.2.0/24`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
        Cidr { addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)), prefix }
    }

    pub const fn v6(segments: [u16; 8], prefix: u8) -> Cidr {
        let [a, b, c, d, e, f, g, h] = segments;
        Cidr { addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)), prefix }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u128::from(u32::from(net)), u128::from(u32::from(ip)), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(u128::from(net), u128::from(ip), 128, self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(net: u128, ip: u128, bits: u8, prefix: u8) -> bool {
    let shift = u32::from(bits - prefix.min(bits));
    if shift >= 128 {
        return true;
    }
    (net >> shift) == (ip >> shift)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip.trim().parse().map_err(|_| format!("{s:?} is not an address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?
            }
        };
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A denied range and the name it is counted under.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub cidr: Cidr,
    pub name: &'static str,
}

const fn r(cidr: Cidr, name: &'static str) -> Range {
    Range { cidr, name }
}

/// IANA IPv4 special-purpose address registry, plus multicast and the limited broadcast.
pub const DENIED_V4: &[Range] = &[
    r(Cidr::v4(0, 0, 0, 0, 8), "this_network"),
    r(Cidr::v4(10, 0, 0, 0, 8), "private"),
    r(Cidr::v4(100, 64, 0, 0, 10), "cgnat"),
    r(Cidr::v4(127, 0, 0, 0, 8), "loopback"),
    r(Cidr::v4(169, 254, 0, 0, 16), "link_local"),
    r(Cidr::v4(172, 16, 0, 0, 12), "private"),
    r(Cidr::v4(192, 0, 0, 0, 24), "ietf_protocol"),
    r(Cidr::v4(192, 0, 2, 0, 24), "documentation"),
    r(Cidr::v4(192, 31, 196, 0, 24), "as112"),
    r(Cidr::v4(192, 52, 193, 0, 24), "amt"),
    r(Cidr::v4(192, 88, 99, 0, 24), "6to4_relay"),
    r(Cidr::v4(192, 168, 0, 0, 16), "private"),
    r(Cidr::v4(192, 175, 48, 0, 24), "as112"),
    r(Cidr::v4(198, 18, 0, 0, 15), "benchmarking"),
    r(Cidr::v4(198, 51, 100, 0, 24), "documentation"),
    r(Cidr::v4(203, 0, 113, 0, 24), "documentation"),
    r(Cidr::v4(224, 0, 0, 0, 4), "multicast"),
    r(Cidr::v4(240, 0, 0, 0, 4), "reserved"),
];

/// IANA IPv6 special-purpose address registry, plus multicast and the deprecated site-local block. Anything
/// outside global unicast (2000::/3) is denied as well.
pub const DENIED_V6: &[Range] = &[
    r(Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    r(Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    r(Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96), "ipv4_compatible"),
    r(Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), "nat64_local"),
    r(Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), "discard"),
    r(Cidr::v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64), "dummy"),
    r(Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
    r(Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), "ietf_protocol"),
    r(Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), "6to4"),
    r(Cidr::v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48), "as112"),
    r(Cidr::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
    r(Cidr::v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16), "srv6_sid"),
    r(Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "unique_local"),
    r(Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link_local"),
    r(Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), "site_local"),
    r(Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

/// IPv6 global unicast (RFC 4291): everything else is unallocated or special, and never a peer.
const GLOBAL_UNICAST: Cidr = Cidr::v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// NAT64's well-known prefix (RFC 6052): globally reachable, but the IPv4 address inside is what is reached.
const NAT64_WKP: Cidr = Cidr::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);

/// The address a peer address really reaches: the IPv4 address inside IPv4-mapped, IPv4-compatible and NAT64
/// addresses, else itself.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u128::from(v6);
            let low = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
            // IPv4-compatible (::a.b.c.d, deprecated by RFC 4291); `::` and `::1` stay IPv6.
            if bits >> 32 == 0 && bits > 1 {
                return IpAddr::V4(low);
            }
            if NAT64_WKP.contains(ip) {
                return IpAddr::V4(low);
            }
            ip
        }
    }
}

/// The verdict on a peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Denied, with the name of the range (`loopback`, `private`, ... or `configured` for the deny list).
    Denied(&'static str),
}

#[derive(Debug, Clone, Default)]
pub struct PeerFilter {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    /// Exact transport addresses allowed (the SFU's own media ports): a whole address such as loopback is not
    /// opened for them, only these ports on it.
    endpoints: Vec<SocketAddr>,
}

impl PeerFilter {
    pub fn new(allow: Vec<Cidr>, deny: Vec<Cidr>) -> PeerFilter {
        PeerFilter { allow, deny, endpoints: Vec::new() }
    }

    /// Also allows these exact addresses (IP and port).
    pub fn with_endpoints(mut self, endpoints: impl IntoIterator<Item = SocketAddr>) -> PeerFilter {
        self.endpoints.extend(endpoints.into_iter().map(|e| SocketAddr::new(normalize(e.ip()), e.port())));
        self
    }

    /// The verdict on a peer's transport address: for ChannelBind and Send, which name a port.
    pub fn check(&self, peer: SocketAddr) -> Verdict {
        let ip = normalize(peer.ip());
        match self.check_ip(ip) {
            Verdict::Denied("configured") => Verdict::Denied("configured"),
            Verdict::Denied(_) if self.endpoints.contains(&SocketAddr::new(ip, peer.port())) => Verdict::Allowed,
            verdict => verdict,
        }
    }

    /// The verdict on a peer's IP address alone: for CreatePermission, whose port means nothing (RFC 8656
    /// section 9). An address with allowed endpoints passes here; its other ports are refused at ChannelBind and
    /// Send.
    pub fn check_permission(&self, ip: IpAddr) -> Verdict {
        let ip = normalize(ip);
        match self.check_ip(ip) {
            Verdict::Denied(name) if name != "configured" && self.endpoints.iter().any(|e| e.ip() == ip) => {
                Verdict::Allowed
            }
            verdict => verdict,
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Verdict {
        let ip = normalize(ip);
        if self.deny.iter().any(|c| c.contains(ip)) {
            return Verdict::Denied("configured");
        }
        if self.allow.iter().any(|c| c.contains(ip)) {
            return Verdict::Allowed;
        }
        let table = if ip.is_ipv4() { DENIED_V4 } else { DENIED_V6 };
        match table.iter().find(|range| range.cidr.contains(ip)) {
            Some(range) => Verdict::Denied(range.name),
            None if ip.is_ipv6() && !GLOBAL_UNICAST.contains(ip) => Verdict::Denied("not_global_unicast"),
            None => Verdict::Allowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 9)
    }

    #[test]
    fn special_purpose_addresses_are_denied_in_every_form() {
        let f = PeerFilter::default();
        for (addr, name) in [
            ("127.0.0.1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::7f00:1", "loopback"),
            ("0.0.0.0", "this_network"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.31.0.1", "private"),
            ("192.168.1.1", "private"),
            ("::ffff:192.168.1.1", "private"),
            ("100.64.0.1", "cgnat"),
            ("169.254.169.254", "link_local"),
            ("::ffff:169.254.169.254", "link_local"),
            ("224.0.0.251", "multicast"),
            ("255.255.255.255", "reserved"),
            ("198.18.0.1", "benchmarking"),
            ("fe80::1", "link_local"),
            ("fd00:ec2::254", "unique_local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("2002:7f00:1::", "6to4"),
            ("2001::1", "ietf_protocol"),
            ("::1:0:1", "not_global_unicast"),
            ("4000::1", "not_global_unicast"),
        ] {
            assert_eq!(f.check(ip(addr)), Verdict::Denied(name), "{addr}");
        }
        for addr in ["8.8.8.8", "2a00:1450::1", "64:ff9b::808:808", "::ffff:8.8.8.8", "172.32.0.1"] {
            assert_eq!(f.check(ip(addr)), Verdict::Allowed, "{addr}");
        }
    }

    #[test]
    fn allow_list_opens_a_range_and_deny_list_wins() {
        let f = PeerFilter::new(
            vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()],
            vec!["10.9.0.0/16".parse().unwrap()],
        );
        assert_eq!(f.check(ip("127.0.0.1")), Verdict::Allowed);
        assert_eq!(f.check(ip("::ffff:127.0.0.1")), Verdict::Allowed, "normalised before the allow list too");
        assert_eq!(f.check(ip("127.0.0.2")), Verdict::Denied("loopback"));
        assert_eq!(f.check(ip("10.1.0.1")), Verdict::Allowed);
        assert_eq!(f.check(ip("10.9.0.1")), Verdict::Denied("configured"));
        assert_eq!(f.check(ip("8.8.8.8")), Verdict::Allowed);
    }

    #[test]
    fn endpoints_open_one_port_not_the_address() {
        let sfu: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let f = PeerFilter::default().with_endpoints([sfu]);
        assert_eq!(f.check(sfu), Verdict::Allowed);
        assert_eq!(f.check("[::ffff:127.0.0.1]:40000".parse().unwrap()), Verdict::Allowed);
        assert_eq!(f.check("127.0.0.1:6379".parse().unwrap()), Verdict::Denied("loopback"), "Redis stays closed");
        assert_eq!(f.check_permission(sfu.ip()), Verdict::Allowed, "the permission is by address");
        assert_eq!(f.check_permission("127.0.0.2".parse().unwrap()), Verdict::Denied("loopback"));
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let c: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(c.contains(ip("2001:db8:ffff::1").ip()));
        assert!(!c.contains(ip("2001:db9::1").ip()));
        assert!(!c.contains(ip("192.0.2.1").ip()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.7").ip()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }
}
