//! What host and port a request is for. One rule wherever a host is written: the
//! `/proxy/{host[:port]}/...` segment of the explicit ingress, a `CONNECT host:port`, an
//! absolute-form URL and the `Host` (or `:authority`) of a request inside a tunnel on the
//! transparent one, and a service's host, so that a service matches exactly the requests
//! that name its host, whichever way they came in.
//!
//! A host compares in its canonical form: lower case, without the trailing dot of a fully
//! qualified name (`api.example.com.` is `api.example.com`), an IPv6 address without its
//! brackets. A name is labels of letters, digits and `-`, none empty, at most 63 bytes each
//! and 253 in all. A name whose last label is a number is an IPv4 address in shorthand
//! (`127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1`), as resolvers and browsers read it, and
//! becomes that address in dotted decimal, so the network guard judges the address the
//! resolver would have dialled; one that stands for no address is refused. IPv6 is written
//! in brackets where a port may follow. Anything else (`@`, `%`, `_`, spaces) is refused, never passed on for
//! an upstream or a resolver to read its own way. A port is 1 to 65535 in decimal digits
//! only (no sign, which Rust's integer parsing would take).
//!
//! Policy (which hosts a service may name, wildcards) stays with `services`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a host or `host:port` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("not a host name or IP address")]
    Host,
    #[error("the port must be 1 to 65535")]
    Port,
}

/// A host in its canonical form (see the module's documentation).
pub fn canonical_host(text: &str) -> Result<String, AuthorityError> {
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(AuthorityError::Host)?;
        let address: Ipv6Addr = inner.parse().map_err(|_| AuthorityError::Host)?;
        return Ok(address.to_string());
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(address.to_string());
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(AuthorityError::Host);
    }
    let name = name.to_ascii_lowercase();
    let last = name.rsplit('.').next().unwrap_or(&name);
    if ipv4_number(last).is_some() || last.bytes().all(|byte| byte.is_ascii_digit()) {
        // `127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1`: an address to a resolver (and to a
        // browser), so the address it is, or nothing.
        return ipv4_shorthand(&name)
            .map(|address| address.to_string())
            .ok_or(AuthorityError::Host);
    }
    Ok(name)
}

/// The IPv4 address a name ending in a number stands for, read as the WHATWG URL standard
/// and `inet_aton` read it: one to four parts, each decimal, octal (a leading `0`) or
/// hexadecimal (`0x`), the last filling the bytes the others leave. `None` if it stands for
/// none (a part that is not a number, too many parts, a part too large).
fn ipv4_shorthand(name: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let numbers = parts
        .iter()
        .map(|part| ipv4_number(part))
        .collect::<Option<Vec<u64>>>()?;
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|number| *number > 255) || *last >= 256u64.pow(5 - parts.len() as u32) {
        return None;
    }
    let mut address = *last;
    for (index, number) in leading.iter().enumerate() {
        address += number << (8 * (3 - index));
    }
    u32::try_from(address).ok().map(Ipv4Addr::from)
}

/// One part of an IPv4 shorthand: `0x` hexadecimal, `0` octal, else decimal.
fn ipv4_number(part: &str) -> Option<u64> {
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x") {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        // `0x` alone is zero; an empty part is not a number.
        return (radix == 16).then_some(0);
    }
    if digits.len() > 16 || !digits.bytes().all(|byte| (byte as char).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// `host[:port]`, IPv6 in brackets: the canonical host and the port, if one is given.
pub fn parse_authority(text: &str) -> Result<(String, Option<u16>), AuthorityError> {
    let (host, port) = split_authority(text)?;
    let host = canonical_host(host)?;
    let port = port.map(parse_port).transpose()?;
    Ok((host, port))
}

/// `host[:port]` cut at the colon before the port (after the `]` of an IPv6 address),
/// neither part checked.
pub fn split_authority(text: &str) -> Result<(&str, Option<&str>), AuthorityError> {
    if text.contains('@') {
        // `user:password@host` names a host after credentials the proxy does not take.
        return Err(AuthorityError::Host);
    }
    if !text.starts_with('[') {
        return Ok(match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        });
    }
    let end = text.find(']').ok_or(AuthorityError::Host)?;
    match &text[end + 1..] {
        "" => Ok((text, None)),
        rest => {
            let port = rest.strip_prefix(':').ok_or(AuthorityError::Host)?;
            Ok((&text[..=end], Some(port)))
        }
    }
}

/// A port: 1 to 65535, decimal digits only.
pub fn parse_port(text: &str) -> Result<u16, AuthorityError> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(AuthorityError::Port);
    }
    text.parse::<u16>()
        .ok()
        .filter(|port| *port > 0)
        .ok_or(AuthorityError::Port)
}

/// `host` as it is written before a `:port`: an IPv6 address in brackets.
pub fn display_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `host:port` as the log, errors and proposal hints write it (IPv6 in brackets).
pub fn display_authority(host: &str, port: u16) -> String {
    format!("{}:{port}", display_host(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a spelling means: the canonical host and the port, or why it is refused.
    type Meaning = Result<(&'static str, Option<u16>), AuthorityError>;

    /// Every spelling the ingresses and services meet, and what it means.
    const TABLE: &[(&str, Meaning)] = &[
        ("api.example.com", Ok(("api.example.com", None))),
        ("API.Example.COM", Ok(("api.example.com", None))),
        ("api.example.com.", Ok(("api.example.com", None))),
        ("api.example.com:8443", Ok(("api.example.com", Some(8443)))),
        ("api.example.com.:443", Ok(("api.example.com", Some(443)))),
        ("localhost", Ok(("localhost", None))),
        ("xn--bcher-kva.example", Ok(("xn--bcher-kva.example", None))),
        ("127.0.0.1", Ok(("127.0.0.1", None))),
        ("127.0.0.1:8080", Ok(("127.0.0.1", Some(8080)))),
        ("[::1]", Ok(("::1", None))),
        ("[::1]:8443", Ok(("::1", Some(8443)))),
        ("[2001:DB8::1]", Ok(("2001:db8::1", None))),
        ("[::ffff:127.0.0.1]:1", Ok(("::ffff:127.0.0.1", Some(1)))),
        ("", Err(AuthorityError::Host)),
        (".", Err(AuthorityError::Host)),
        (".x.com", Err(AuthorityError::Host)),
        ("x.com..", Err(AuthorityError::Host)),
        ("a..b.com", Err(AuthorityError::Host)),
        ("a@b.com", Err(AuthorityError::Host)),
        ("user:pw@b.com", Err(AuthorityError::Host)),
        ("x%2e.com", Err(AuthorityError::Host)),
        ("under_score.com", Err(AuthorityError::Host)),
        ("sp ace.com", Err(AuthorityError::Host)),
        ("::1", Err(AuthorityError::Host)),
        ("[::1", Err(AuthorityError::Host)),
        ("[::1]x", Err(AuthorityError::Host)),
        ("[not-v6]", Err(AuthorityError::Host)),
        ("[127.0.0.1]", Err(AuthorityError::Host)),
        ("x.com:0", Err(AuthorityError::Port)),
        ("x.com:65536", Err(AuthorityError::Port)),
        ("x.com:99999", Err(AuthorityError::Port)),
        ("x.com:+443", Err(AuthorityError::Port)),
        ("x.com:", Err(AuthorityError::Port)),
        ("x.com: 443", Err(AuthorityError::Port)),
        ("[::1]:", Err(AuthorityError::Port)),
        ("127.1", Ok(("127.0.0.1", None))),
        ("2130706433", Ok(("127.0.0.1", None))),
        ("0x7f.1", Ok(("127.0.0.1", None))),
        ("0x7F000001:8080", Ok(("127.0.0.1", Some(8080)))),
        ("0177.0.0.1", Ok(("127.0.0.1", None))),
        ("017.0.0.1", Ok(("15.0.0.1", None))),
        ("127.0.0.1.", Ok(("127.0.0.1", None))),
        ("10.0x.0.1", Ok(("10.0.0.1", None))),
        ("a.0x7f000001", Err(AuthorityError::Host)),
        ("example.123", Err(AuthorityError::Host)),
        ("1.2.3.4.5", Err(AuthorityError::Host)),
        ("256.0.0.1", Err(AuthorityError::Host)),
        ("1.16777216", Err(AuthorityError::Host)),
        ("4294967296", Err(AuthorityError::Host)),
        ("09.0.0.1", Err(AuthorityError::Host)),
        ("99999999999999999999", Err(AuthorityError::Host)),
        ("1.example", Ok(("1.example", None))),
        ("0xcafe.example", Ok(("0xcafe.example", None))),
    ];

    #[test]
    fn every_spelling_in_the_table_means_what_it_says() {
        for (text, want) in TABLE {
            let got = parse_authority(text);
            let got = got
                .as_ref()
                .map(|(host, port)| (host.as_str(), *port))
                .map_err(|error| *error);
            assert_eq!(got, *want, "{text:?}");
        }
    }

    #[test]
    fn names_are_bounded_by_label_and_in_all() {
        let label = "a".repeat(63);
        assert!(canonical_host(&format!("{label}.com")).is_ok());
        assert_eq!(
            canonical_host(&format!("a{label}.com")),
            Err(AuthorityError::Host)
        );
        let long = vec!["abcdefghi"; 25].join(".");
        assert_eq!(long.len(), 249);
        assert!(canonical_host(&long).is_ok());
        assert!(
            canonical_host(&format!("{long}.")).is_ok(),
            "the dot is free"
        );
        assert_eq!(
            canonical_host(&format!("{long}.abcde")),
            Err(AuthorityError::Host)
        );
    }

    #[test]
    fn a_canonical_host_is_written_back_so_that_it_reads_the_same() {
        for (text, want) in TABLE {
            if let Ok((host, port)) = want {
                let written = match port {
                    Some(port) => display_authority(host, *port),
                    None => display_host(host),
                };
                let read = parse_authority(&written).unwrap();
                assert_eq!((read.0.as_str(), read.1), (*host, *port), "{text:?}");
            }
        }
    }
}
