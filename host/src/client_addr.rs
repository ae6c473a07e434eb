//! The client's address when agent-vault runs behind reverse proxies: the TCP peer, unless
//! the peer is a proxy the operator trusts (`--trusted-proxies`, env
//! `AGENT_VAULT_TRUSTED_PROXIES`), in which case `X-Forwarded-For` says who the proxy
//! talked to. The attempt limits of the routes that take no session count per client, so
//! behind a reverse proxy without this every client would share the proxy's address.
//!
//! `X-Forwarded-For` is read from the right, the end the trusted proxies appended to:
//! trusted addresses are skipped, and the first untrusted one is the client. Whatever a
//! client writes into the header itself sits to the left of that and is never read. An
//! entry that is not an address stops the walk at the last trusted hop, which is then taken
//! as the client: a garbled header can make clients share an address, never pick one.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// The reverse proxies whose `X-Forwarded-For` is believed; empty by default (none is).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies { networks }
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.networks
            .iter()
            .any(|network| network.contains(&address))
    }

    /// The address of the client behind `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer;
        if !self.trusts(client) {
            return client;
        }
        // Several headers are one list, in order.
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|value| value.to_str().unwrap_or(""))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev().flat_map(|value| value.rsplit(',')) {
            let Some(address) = parse_hop(hop) else {
                return client;
            };
            client = address;
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|address| address.ip()))
        .map(|address| address.to_canonical())
}

/// `--trusted-proxies`: comma-separated CIDRs or addresses.
pub fn parse(text: &str) -> Result<TrustedProxies, String> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{entry:?} is not a CIDR or an IP address"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(TrustedProxies::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        let trusted = TrustedProxies::default();
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &headers(&["203.0.113.7"])),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client_it_talked_to() {
        let trusted = parse("10.0.0.0/8").unwrap();
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &headers(&["203.0.113.7"])),
            ip("203.0.113.7")
        );
        // An untrusted peer's header is ignored.
        assert_eq!(
            trusted.client(ip("198.51.100.1"), &headers(&["203.0.113.7"])),
            ip("198.51.100.1")
        );
        // No header: the proxy itself.
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn what_the_client_wrote_into_the_header_is_never_read() {
        let trusted = parse("10.0.0.0/8, 192.0.2.10").unwrap();
        // The client sent "X-Forwarded-For: 1.1.1.1, 10.9.9.9"; a load balancer (192.0.2.10)
        // appended the client's address, and the inner proxy (10.0.0.5) the balancer's.
        let chain = headers(&["1.1.1.1, 10.9.9.9, 203.0.113.7, 192.0.2.10"]);
        assert_eq!(trusted.client(ip("10.0.0.5"), &chain), ip("203.0.113.7"));
        // The same list split over several headers.
        let split = headers(&["1.1.1.1, 10.9.9.9", "203.0.113.7", "192.0.2.10"]);
        assert_eq!(trusted.client(ip("10.0.0.5"), &split), ip("203.0.113.7"));
    }

    #[test]
    fn a_garbled_entry_stops_at_the_last_trusted_hop() {
        let trusted = parse("10.0.0.0/8").unwrap();
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &headers(&["203.0.113.7, unknown"])),
            ip("10.0.0.5")
        );
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &headers(&["203.0.113.7, 10.0.0.9, "])),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        let trusted = parse("10.0.0.0/8").unwrap();
        assert_eq!(
            trusted.client(ip("::ffff:10.0.0.5"), &headers(&["203.0.113.7:51234"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &headers(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &headers(&["2001:db8::2"])),
            ip("2001:db8::2")
        );
    }

    #[test]
    fn a_bad_list_is_refused_with_the_entry_named() {
        assert_eq!(
            parse("10.0.0.0/8, proxy.internal").unwrap_err(),
            "\"proxy.internal\" is not a CIDR or an IP address"
        );
        assert!(parse("").unwrap().networks.is_empty());
    }
}
