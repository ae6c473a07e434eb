//! Which IP addresses the proxy may connect to: the egress rule against SSRF.
//!
//! [`check`] decides for one resolved address. The rule is positive: an address is allowed
//! only if it is globally reachable unicast (no loopback, private, link-local, shared, reserved,
//! documentation, multicast ... space, after the IANA special-purpose registries), or if the
//! operator opened its range with `AGENT_VAULT_NETWORK_ALLOWLIST`. Cloud metadata services are
//! refused even when allowlisted: they hand out the host's own cloud credentials.
//!
//! Two traps are handled here, not by callers. Rust's `Ipv6Addr` methods do not apply IPv4
//! meaning to `::ffff:127.0.0.1`, so the address is canonicalised first. And IPv6 has forms
//! that carry an IPv4 address (NAT64, 6to4, Teredo, IPv4-compatible): the embedded address is
//! decoded and must pass too, or `64:ff9b::a9fe:a9fe` would reach 169.254.169.254 through a
//! NAT64 gateway.
//!
//! This module decides; it does not resolve or connect. The connector in `upstream/connect.rs`
//! checks every resolved address and connects only to checked ones.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// Why an address may not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// The range the refused address is in.
    pub range: Range,
    /// Set when the refused address is the IPv4 one embedded in the IPv6 address checked.
    pub embedded: Option<(Embedding, Ipv4Addr)>,
}

impl std::error::Error for Blocked {}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            None => write!(f, "{}", self.range),
            Some((embedding, inner)) => {
                write!(f, "{embedding} address for {inner}, {}", self.range)
            }
        }
    }
}

/// The special-purpose ranges, by what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// A cloud metadata service (169.254.169.254, 100.100.100.200, fd00:ec2::254, ...).
    Metadata,
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// 0.0.0.0/8: many stacks send it to the local host.
    ThisNetwork,
    /// 127.0.0.0/8, `::1`.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16.
    Private,
    /// 100.64.0.0/10, carrier-grade NAT.
    Shared,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// 192.0.0.0/24, 2001::/23.
    ProtocolAssignments,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 198.18.0.0/15, 2001:2::/48.
    Benchmarking,
    /// 192.88.99.0/24, the deprecated 6to4 relay anycast.
    Relay6to4,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 240.0.0.0/4.
    Reserved,
    /// fc00::/7.
    UniqueLocal,
    /// fec0::/10 (deprecated).
    SiteLocal,
    /// 100::/64.
    Discard,
    /// `::a.b.c.d` (deprecated).
    Ipv4Compatible,
    /// 64:ff9b:1::/48, NAT64 for one network only.
    LocalNat64,
    /// Any IPv6 address outside 2000::/3, the space the global unicast addresses come from.
    NotGlobalUnicast,
    /// One of agent-vault's own listeners: the proxy would call itself, and reach its own
    /// management API from inside.
    OwnListener,
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Range::Metadata => "a cloud metadata address (never allowed)",
            Range::Unspecified => "the unspecified address",
            Range::ThisNetwork => "a \"this network\" address (0.0.0.0/8)",
            Range::Loopback => "a loopback address",
            Range::Private => "a private address",
            Range::Shared => "a shared (carrier-grade NAT) address",
            Range::LinkLocal => "a link-local address",
            Range::ProtocolAssignments => "an IETF protocol assignment address",
            Range::Documentation => "a documentation address",
            Range::Benchmarking => "a benchmarking address",
            Range::Relay6to4 => "a 6to4 relay anycast address",
            Range::Multicast => "a multicast address",
            Range::Broadcast => "the broadcast address",
            Range::Reserved => "a reserved address",
            Range::UniqueLocal => "a unique local address",
            Range::SiteLocal => "a site-local address",
            Range::Discard => "a discard-only address",
            Range::Ipv4Compatible => "a deprecated IPv4-compatible address",
            Range::LocalNat64 => "a local-use NAT64 address",
            Range::NotGlobalUnicast => "an address outside global unicast space",
            Range::OwnListener => "one of agent-vault's own listeners (never allowed)",
        })
    }
}

/// How an IPv6 address carries an IPv4 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// 64:ff9b::/96, the last 32 bits.
    Nat64,
    /// 64:ff9b:1::/48, taken in its /96 layout (the last 32 bits).
    LocalNat64,
    /// 2002::/16, bits 16 to 48.
    SixToFour,
    /// 2001::/32, the client address: the last 32 bits inverted.
    Teredo,
    /// `::a.b.c.d`.
    Ipv4Compatible,
}

impl fmt::Display for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Embedding::Nat64 => "a NAT64",
            Embedding::LocalNat64 => "a local-use NAT64",
            Embedding::SixToFour => "a 6to4",
            Embedding::Teredo => "a Teredo",
            Embedding::Ipv4Compatible => "an IPv4-compatible",
        })
    }
}

/// The ranges `AGENT_VAULT_ALLOW_PRIVATE_RANGES` opens, as Agent Vault defines it: private
/// networks, loopback, link-local and shared (CGNAT) space. Cloud metadata addresses inside
/// them stay refused; multicast, reserved and documentation space stay closed.
pub fn private_ranges() -> Vec<IpNet> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
    ]
    .iter()
    .map(|range| range.parse().expect("a valid range"))
    .collect()
}

/// Cloud metadata services: they answer with the machine's own cloud credentials, so no
/// allowlist opens them.
const METADATA: [IpAddr; 6] = [
    // AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack instance metadata.
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    // AWS ECS task metadata and credentials.
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    // AWS EKS Pod Identity agent.
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 23)),
    // Alibaba Cloud instance metadata.
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    // AWS instance metadata over IPv6.
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    // AWS EKS Pod Identity agent over IPv6.
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)),
];

/// IPv4 space that is not globally reachable unicast; first match wins.
const IPV4_SPECIAL: [(Ipv4Addr, u8, Range); 17] = [
    (Ipv4Addr::new(0, 0, 0, 0), 32, Range::Unspecified),
    (Ipv4Addr::new(0, 0, 0, 0), 8, Range::ThisNetwork),
    (Ipv4Addr::new(10, 0, 0, 0), 8, Range::Private),
    (Ipv4Addr::new(100, 64, 0, 0), 10, Range::Shared),
    (Ipv4Addr::new(127, 0, 0, 0), 8, Range::Loopback),
    (Ipv4Addr::new(169, 254, 0, 0), 16, Range::LinkLocal),
    (Ipv4Addr::new(172, 16, 0, 0), 12, Range::Private),
    (Ipv4Addr::new(192, 0, 0, 0), 24, Range::ProtocolAssignments),
    (Ipv4Addr::new(192, 0, 2, 0), 24, Range::Documentation),
    (Ipv4Addr::new(192, 88, 99, 0), 24, Range::Relay6to4),
    (Ipv4Addr::new(192, 168, 0, 0), 16, Range::Private),
    (Ipv4Addr::new(198, 18, 0, 0), 15, Range::Benchmarking),
    (Ipv4Addr::new(198, 51, 100, 0), 24, Range::Documentation),
    (Ipv4Addr::new(203, 0, 113, 0), 24, Range::Documentation),
    (Ipv4Addr::new(224, 0, 0, 0), 4, Range::Multicast),
    (Ipv4Addr::new(255, 255, 255, 255), 32, Range::Broadcast),
    (Ipv4Addr::new(240, 0, 0, 0), 4, Range::Reserved),
];

/// Special IPv6 space; first match wins. `None` marks a transition prefix whose verdict is
/// the embedded IPv4 address's. Everything else outside 2000::/3 is refused after this table.
const IPV6_SPECIAL: [(Ipv6Addr, u8, Option<Range>); 16] = [
    (Ipv6Addr::UNSPECIFIED, 128, Some(Range::Unspecified)),
    (Ipv6Addr::LOCALHOST, 128, Some(Range::Loopback)),
    (Ipv6Addr::UNSPECIFIED, 96, Some(Range::Ipv4Compatible)),
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96, None),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        Some(Range::LocalNat64),
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        Some(Range::Discard),
    ),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32, None),
    (
        Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),
        48,
        Some(Range::Benchmarking),
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        Some(Range::ProtocolAssignments),
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        Some(Range::Documentation),
    ),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, None),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        Some(Range::Documentation),
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        Some(Range::UniqueLocal),
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        Some(Range::LinkLocal),
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        Some(Range::SiteLocal),
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        Some(Range::Multicast),
    ),
];

/// Whether the proxy may connect to `addr`.
///
/// Cloud metadata addresses are refused first, also when embedded and also when allowlisted.
/// An address inside `allowlist` is then allowed. Otherwise it must be global unicast, and
/// so must the IPv4 address it embeds (unless that one is allowlisted).
pub fn check(addr: IpAddr, allowlist: &[IpNet]) -> Result<(), Blocked> {
    let addr = addr.to_canonical();
    let embedded = match addr {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => embedded_ipv4(v6),
    };
    if METADATA.contains(&addr) {
        return Err(Blocked {
            range: Range::Metadata,
            embedded: None,
        });
    }
    if let Some((embedding, inner)) = embedded
        && METADATA.contains(&IpAddr::V4(inner))
    {
        return Err(Blocked {
            range: Range::Metadata,
            embedded: Some((embedding, inner)),
        });
    }
    if allowlisted(addr, allowlist) {
        return Ok(());
    }
    let own = match addr {
        IpAddr::V4(v4) => ipv4_range(v4),
        IpAddr::V6(v6) => ipv6_range(v6),
    };
    if let Some(range) = own {
        return Err(Blocked {
            range,
            embedded: None,
        });
    }
    if let Some((embedding, inner)) = embedded
        && !allowlisted(IpAddr::V4(inner), allowlist)
        && let Some(range) = ipv4_range(inner)
    {
        return Err(Blocked {
            range,
            embedded: Some((embedding, inner)),
        });
    }
    Ok(())
}

/// Whether the proxy may connect to `addr:port`, given the addresses agent-vault itself
/// listens on (`own`): never to one of them, whatever the allowlist says. A listener on
/// `0.0.0.0` or `::` is reached through any address of this host, so for its port every
/// loopback, unspecified or local-interface address is refused.
pub fn check_not_own_listener(addr: IpAddr, port: u16, own: &[SocketAddr]) -> Result<(), Blocked> {
    let addr = addr.to_canonical();
    let mut listeners = own.iter().filter(|listener| listener.port() == port);
    let reaches = |listener: &SocketAddr| {
        let bound = listener.ip().to_canonical();
        bound == addr
            || addr.is_unspecified()
            || (bound.is_unspecified() && (addr.is_loopback() || is_local_address(addr)))
            || (bound.is_loopback() && addr.is_loopback())
    };
    if listeners.any(reaches) {
        Err(Blocked {
            range: Range::OwnListener,
            embedded: None,
        })
    } else {
        Ok(())
    }
}

/// Whether `addr` belongs to this host: only then can a socket be bound to it.
fn is_local_address(addr: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(addr, 0)).is_ok()
}

/// Whether an allowlist entry holds `addr` (canonical). An IPv4 address also matches an
/// entry written in its `::ffff:a.b.c.d` form.
fn allowlisted(addr: IpAddr, allowlist: &[IpNet]) -> bool {
    allowlist.iter().any(|net| {
        net.contains(&addr)
            || matches!(addr, IpAddr::V4(v4) if net.contains(&IpAddr::V6(v4.to_ipv6_mapped())))
    })
}

/// The special range `addr` is in, if it is not global unicast.
fn ipv4_range(addr: Ipv4Addr) -> Option<Range> {
    let bits = u32::from(addr);
    IPV4_SPECIAL
        .iter()
        .find(|(net, len, _)| bits & ipv4_mask(*len) == u32::from(*net))
        .map(|(_, _, range)| *range)
}

/// The special range `addr` is in, if it is not global unicast; transition prefixes are left
/// to their embedded address.
fn ipv6_range(addr: Ipv6Addr) -> Option<Range> {
    let bits = u128::from(addr);
    let listed = IPV6_SPECIAL
        .iter()
        .find(|(net, len, _)| bits & ipv6_mask(*len) == u128::from(*net));
    match listed {
        Some((_, _, verdict)) => *verdict,
        None if bits >> 125 != 0b001 => Some(Range::NotGlobalUnicast),
        None => None,
    }
}

/// The IPv4 address an IPv6 address carries, and how.
fn embedded_ipv4(addr: Ipv6Addr) -> Option<(Embedding, Ipv4Addr)> {
    let s = addr.segments();
    let low32 = Ipv4Addr::from(u128::from(addr) as u32);
    match s {
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some((Embedding::Nat64, low32)),
        [0x64, 0xff9b, 1, ..] => Some((Embedding::LocalNat64, low32)),
        [0x2002, high, low, ..] => Some((
            Embedding::SixToFour,
            Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)),
        )),
        [0x2001, 0, ..] => Some((Embedding::Teredo, Ipv4Addr::from(!u32::from(low32)))),
        // `::` and `::1` are not IPv4 addresses in disguise.
        [0, 0, 0, 0, 0, 0, _, _] if u32::from(low32) > 1 => {
            Some((Embedding::Ipv4Compatible, low32))
        }
        _ => None,
    }
}

fn ipv4_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn ipv6_mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

#[cfg(test)]
mod tests;
