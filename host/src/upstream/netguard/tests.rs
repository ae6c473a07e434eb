//! Tests of the egress rule: which IP addresses the proxy may connect to (netguard.rs).

use super::*;
use Embedding as E;
use Range as R;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|net| net.parse().unwrap()).collect()
}

fn refused(range: Range) -> Result<(), Blocked> {
    Err(Blocked {
        range,
        embedded: None,
    })
}

fn refused_inside(range: Range, embedding: Embedding, inner: &str) -> Result<(), Blocked> {
    Err(Blocked {
        range,
        embedded: Some((embedding, inner.parse().unwrap())),
    })
}

fn assert_table(allowlist: &[&str], table: &[(&str, Result<(), Blocked>)]) {
    let allowlist = nets(allowlist);
    for (addr, expected) in table {
        assert_eq!(check(ip(addr), &allowlist), *expected, "{addr}");
    }
}

#[test]
fn public_addresses_are_allowed() {
    assert_table(
        &[],
        &[
            ("1.1.1.1", Ok(())),
            ("8.8.8.8", Ok(())),
            ("93.184.215.14", Ok(())),
            ("223.255.255.255", Ok(())),
            ("2606:4700:4700::1111", Ok(())),
            ("2a00:1450:4001:82b::200e", Ok(())),
            ("::ffff:8.8.8.8", Ok(())),
        ],
    );
}

#[test]
fn every_special_ipv4_range_is_refused() {
    assert_table(
        &[],
        &[
            ("0.0.0.0", refused(R::Unspecified)),
            ("0.0.0.1", refused(R::ThisNetwork)),
            ("0.255.255.255", refused(R::ThisNetwork)),
            ("10.0.0.0", refused(R::Private)),
            ("10.255.255.255", refused(R::Private)),
            ("100.64.0.0", refused(R::Shared)),
            ("100.127.255.255", refused(R::Shared)),
            ("127.0.0.1", refused(R::Loopback)),
            ("127.255.255.254", refused(R::Loopback)),
            ("169.254.0.1", refused(R::LinkLocal)),
            ("169.254.255.255", refused(R::LinkLocal)),
            ("172.16.0.0", refused(R::Private)),
            ("172.31.255.255", refused(R::Private)),
            ("192.0.0.0", refused(R::ProtocolAssignments)),
            ("192.0.0.255", refused(R::ProtocolAssignments)),
            ("192.0.2.1", refused(R::Documentation)),
            ("192.88.99.1", refused(R::Relay6to4)),
            ("192.168.0.0", refused(R::Private)),
            ("192.168.255.255", refused(R::Private)),
            ("198.18.0.0", refused(R::Benchmarking)),
            ("198.19.255.255", refused(R::Benchmarking)),
            ("198.51.100.7", refused(R::Documentation)),
            ("203.0.113.255", refused(R::Documentation)),
            ("224.0.0.1", refused(R::Multicast)),
            ("239.255.255.255", refused(R::Multicast)),
            ("240.0.0.0", refused(R::Reserved)),
            ("254.255.255.255", refused(R::Reserved)),
            ("255.255.255.255", refused(R::Broadcast)),
        ],
    );
}

#[test]
fn the_neighbours_of_special_ipv4_ranges_are_allowed() {
    assert_table(
        &[],
        &[
            ("1.0.0.0", Ok(())),
            ("9.255.255.255", Ok(())),
            ("11.0.0.0", Ok(())),
            ("100.63.255.255", Ok(())),
            ("100.128.0.0", Ok(())),
            ("126.255.255.255", Ok(())),
            ("128.0.0.0", Ok(())),
            ("169.253.255.255", Ok(())),
            ("169.255.0.0", Ok(())),
            ("172.15.255.255", Ok(())),
            ("172.32.0.0", Ok(())),
            ("192.0.1.0", Ok(())),
            ("192.0.3.0", Ok(())),
            ("192.167.255.255", Ok(())),
            ("192.169.0.0", Ok(())),
            ("198.17.255.255", Ok(())),
            ("198.20.0.0", Ok(())),
            ("203.0.112.255", Ok(())),
        ],
    );
}

#[test]
fn every_special_ipv6_range_is_refused() {
    assert_table(
        &[],
        &[
            ("::", refused(R::Unspecified)),
            ("::1", refused(R::Loopback)),
            ("100::1", refused(R::Discard)),
            ("2001:2::1", refused(R::Benchmarking)),
            ("2001:10::1", refused(R::ProtocolAssignments)),
            ("2001:1ff:ffff::1", refused(R::ProtocolAssignments)),
            ("2001:db8::1", refused(R::Documentation)),
            ("3fff:fff::1", refused(R::Documentation)),
            ("fc00::1", refused(R::UniqueLocal)),
            ("fdff:ffff::1", refused(R::UniqueLocal)),
            ("fe80::1", refused(R::LinkLocal)),
            ("febf:ffff::1", refused(R::LinkLocal)),
            ("fec0::1", refused(R::SiteLocal)),
            ("ff02::1", refused(R::Multicast)),
            ("ff0e::1", refused(R::Multicast)),
            // Outside 2000::/3: unassigned, SRv6 SIDs, the SIIT-translated form.
            ("1fff:ffff::1", refused(R::NotGlobalUnicast)),
            ("4000::1", refused(R::NotGlobalUnicast)),
            ("5f00::1", refused(R::NotGlobalUnicast)),
            ("::ffff:0:7f00:1", refused(R::NotGlobalUnicast)),
        ],
    );
}

#[test]
fn ipv4_mapped_addresses_are_judged_as_ipv4() {
    assert_table(
        &[],
        &[
            ("::ffff:127.0.0.1", refused(R::Loopback)),
            ("::ffff:10.1.2.3", refused(R::Private)),
            ("::ffff:0.0.0.0", refused(R::Unspecified)),
            ("::ffff:169.254.169.254", refused(R::Metadata)),
        ],
    );
}

#[test]
fn ipv4_embedded_in_ipv6_is_decoded_and_judged() {
    assert_table(
        &[],
        &[
            // NAT64: the well-known prefix reaches whatever IPv4 address it carries.
            (
                "64:ff9b::a9fe:a9fe",
                refused_inside(R::Metadata, E::Nat64, "169.254.169.254"),
            ),
            (
                "64:ff9b::127.0.0.1",
                refused_inside(R::Loopback, E::Nat64, "127.0.0.1"),
            ),
            (
                "64:ff9b::10.0.0.1",
                refused_inside(R::Private, E::Nat64, "10.0.0.1"),
            ),
            ("64:ff9b::8.8.8.8", Ok(())),
            // Local-use NAT64 is not global itself; metadata inside is named as such.
            ("64:ff9b:1::8.8.8.8", refused(R::LocalNat64)),
            (
                "64:ff9b:1::a9fe:a9fe",
                refused_inside(R::Metadata, E::LocalNat64, "169.254.169.254"),
            ),
            // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
            (
                "2002:7f00:1::1",
                refused_inside(R::Loopback, E::SixToFour, "127.0.0.1"),
            ),
            (
                "2002:a9fe:a9fe::",
                refused_inside(R::Metadata, E::SixToFour, "169.254.169.254"),
            ),
            (
                "2002:c0a8:101::1",
                refused_inside(R::Private, E::SixToFour, "192.168.1.1"),
            ),
            ("2002:808:808::1", Ok(())),
            // Teredo: the client address is the last 32 bits, inverted.
            (
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                refused_inside(R::Loopback, E::Teredo, "127.0.0.1"),
            ),
            (
                "2001:0:4136:e378:8000:63bf:5601:5601",
                refused_inside(R::Metadata, E::Teredo, "169.254.169.254"),
            ),
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", Ok(())),
            // IPv4-compatible: deprecated and never global; metadata inside is named.
            ("::8.8.8.8", refused(R::Ipv4Compatible)),
            ("::127.0.0.1", refused(R::Ipv4Compatible)),
            (
                "::169.254.169.254",
                refused_inside(R::Metadata, E::Ipv4Compatible, "169.254.169.254"),
            ),
        ],
    );
}

#[test]
fn cloud_metadata_is_refused_even_when_allowlisted() {
    assert_table(
        &["0.0.0.0/0", "::/0"],
        &[
            ("169.254.169.254", refused(R::Metadata)),
            ("169.254.170.2", refused(R::Metadata)),
            ("169.254.170.23", refused(R::Metadata)),
            ("100.100.100.200", refused(R::Metadata)),
            ("fd00:ec2::254", refused(R::Metadata)),
            ("fd00:ec2::23", refused(R::Metadata)),
            ("::ffff:169.254.169.254", refused(R::Metadata)),
            (
                "64:ff9b::a9fe:a9fe",
                refused_inside(R::Metadata, E::Nat64, "169.254.169.254"),
            ),
            (
                "2002:6464:64c8::",
                refused_inside(R::Metadata, E::SixToFour, "100.100.100.200"),
            ),
            // Everything else is open under a catch-all allowlist.
            ("169.254.169.253", Ok(())),
            ("127.0.0.1", Ok(())),
            ("fd00:ec2::253", Ok(())),
        ],
    );
}

#[test]
fn allowing_private_ranges_opens_internal_networks_but_not_metadata_or_multicast() {
    let allowlist = private_ranges();
    let check = |addr: &str| check(ip(addr), &allowlist);
    for open in [
        "10.1.2.3",
        "172.31.255.1",
        "192.168.1.10",
        "127.0.0.1",
        "169.254.10.1",
        "100.64.0.1",
        "::1",
        "fe80::1",
        "fd12:3456::1",
        "::ffff:10.0.0.1",
    ] {
        assert_eq!(check(open), Ok(()), "{open}");
    }
    assert_eq!(check("169.254.169.254"), refused(R::Metadata));
    assert_eq!(check("fd00:ec2::254"), refused(R::Metadata));
    assert_eq!(check("224.0.0.1"), refused(R::Multicast));
    assert_eq!(check("0.0.0.0"), refused(R::Unspecified));
    assert_eq!(check("192.0.2.1"), refused(R::Documentation));
}

#[test]
fn an_allowlisted_range_opens_only_that_range() {
    assert_table(
        &["127.0.0.1/32", "10.20.0.0/16"],
        &[
            ("127.0.0.1", Ok(())),
            ("::ffff:127.0.0.1", Ok(())),
            ("10.20.255.1", Ok(())),
            // Through NAT64 the allowlisted IPv4 address is what is reached.
            ("64:ff9b::10.20.0.5", Ok(())),
            ("127.0.0.2", refused(R::Loopback)),
            ("10.21.0.1", refused(R::Private)),
            ("::1", refused(R::Loopback)),
            (
                "64:ff9b::10.21.0.5",
                refused_inside(R::Private, E::Nat64, "10.21.0.5"),
            ),
        ],
    );
}

#[test]
fn allowlists_written_in_ipv6_forms_match() {
    assert_table(
        &[
            "::ffff:127.0.0.1/128",
            "::1/128",
            "fd12::/16",
            "64:ff9b:1::/48",
        ],
        &[
            ("127.0.0.1", Ok(())),
            ("::1", Ok(())),
            ("fd12:3456::1", Ok(())),
            ("64:ff9b:1::10.0.0.1", Ok(())),
            ("fd13::1", refused(Range::UniqueLocal)),
        ],
    );
}

#[test]
fn the_servers_own_listeners_are_never_reached() {
    let own: Vec<SocketAddr> = vec![
        "127.0.0.1:14321".parse().unwrap(),
        "0.0.0.0:14322".parse().unwrap(),
    ];
    let check = |addr: &str, port| check_not_own_listener(ip(addr), port, &own);
    let refused = Err(Blocked {
        range: Range::OwnListener,
        embedded: None,
    });
    for (addr, port) in [
        ("127.0.0.1", 14321),
        ("127.0.0.2", 14321),
        ("::ffff:127.0.0.1", 14321),
        ("0.0.0.0", 14321),
        ("127.0.0.1", 14322),
        ("::1", 14322),
        ("0.0.0.0", 14322),
    ] {
        assert_eq!(check(addr, port), refused, "{addr}:{port}");
    }
    assert_eq!(check("127.0.0.1", 8443), Ok(()));
    assert_eq!(check("93.184.216.34", 14321), Ok(()));
    assert_eq!(
        check("93.184.216.34", 14322),
        Ok(()),
        "not an address of this host"
    );
}

#[test]
fn refusals_say_what_the_address_is() {
    let blocked = |addr: &str| check(ip(addr), &[]).unwrap_err().to_string();
    assert_eq!(blocked("127.0.0.1"), "a loopback address");
    assert_eq!(
        blocked("169.254.169.254"),
        "a cloud metadata address (never allowed)"
    );
    assert_eq!(
        blocked("64:ff9b::a9fe:a9fe"),
        "a NAT64 address for 169.254.169.254, a cloud metadata address (never allowed)"
    );
    assert_eq!(
        blocked("2002:c0a8:101::1"),
        "a 6to4 address for 192.168.1.1, a private address"
    );
}
