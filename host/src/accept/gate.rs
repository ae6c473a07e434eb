//! The caps on open connections of one listener: in total, and per client address. A
//! connection is admitted with a [`Slot`], which it holds until its socket is closed (the
//! slot travels inside the connection's IO, into an upgraded WebSocket or tunnel too); a
//! connection over a cap is refused with a [`Refusal`].
//!
//! The address is the TCP peer's. IPv6 peers are counted per /64, the block one host usually
//! has, as the attempt limits count them (`ratelimit.rs`). Reverse proxies named in
//! `--trusted-proxies` are not capped per address: every client behind them shares their
//! address. Loopback is capped like any address: agents on the server's own machine all share
//! it, which the default per-address cap leaves room for (`ConnectionLimits`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::client_addr::TrustedProxies;

/// The open connections of one listener, counted.
#[derive(Debug)]
pub struct Gate {
    max_open: usize,
    max_per_address: Option<usize>,
    /// Peers the per-address cap does not apply to.
    uncapped: TrustedProxies,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    /// Only addresses with a connection open are kept.
    by_address: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the listener is at its cap of {limit} open connections (--max-connections)")]
    ListenerFull { limit: usize },
    #[error(
        "the client's address is at its cap of {limit} open connections \
         (--max-connections-per-address)"
    )]
    AddressFull { limit: usize },
}

/// An admitted connection's place under the caps, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    gate: Arc<Gate>,
    /// The key counted per address (`None`: not counted per address).
    address: Option<IpAddr>,
}

impl Gate {
    /// A gate admitting up to `max_open` connections, and `max_per_address` from one client
    /// address (`None`: no per-address cap) except from `uncapped` peers.
    pub fn new(
        max_open: usize,
        max_per_address: Option<usize>,
        uncapped: TrustedProxies,
    ) -> Arc<Gate> {
        Arc::new(Gate {
            max_open,
            max_per_address,
            uncapped,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Admit a connection from `peer`, or say which cap it is over.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refusal> {
        let address = self
            .max_per_address
            .filter(|_| !self.uncapped.trusts(peer))
            .map(|limit| (address_key(peer), limit));
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.open >= self.max_open {
            return Err(Refusal::ListenerFull {
                limit: self.max_open,
            });
        }
        if let Some((key, limit)) = address {
            let open = counts.by_address.entry(key).or_default();
            if *open >= limit {
                return Err(Refusal::AddressFull { limit });
            }
            *open += 1;
        }
        counts.open += 1;
        Ok(Slot {
            gate: self.clone(),
            address: address.map(|(key, _)| key),
        })
    }

    /// How many connections are open now.
    pub fn open(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .gate
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts.open -= 1;
        if let Some(key) = self.address
            && let Some(open) = counts.by_address.get_mut(&key)
        {
            *open -= 1;
            if *open == 0 {
                counts.by_address.remove(&key);
            }
        }
    }
}

/// The address a connection counts against: IPv4 as is, IPv6 by its /64 (an IPv4-mapped
/// address as the IPv4 address it is).
fn address_key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_listener_cap_counts_every_connection_and_frees_a_place_on_close() {
        let gate = Gate::new(2, None, TrustedProxies::default());
        let first = gate.admit(ip("10.0.0.1")).unwrap();
        let _second = gate.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(
            gate.admit(ip("10.0.0.3")).unwrap_err(),
            Refusal::ListenerFull { limit: 2 }
        );
        drop(first);
        assert_eq!(gate.open(), 1);
        assert!(gate.admit(ip("10.0.0.3")).is_ok());
    }

    #[test]
    fn the_address_cap_counts_per_address_and_per_ipv6_block() {
        let gate = Gate::new(100, Some(2), TrustedProxies::default());
        let held: Vec<Slot> = ["2001:db8::1", "2001:db8::2"]
            .iter()
            .map(|peer| gate.admit(ip(peer)).unwrap())
            .collect();
        // The same /64.
        assert_eq!(
            gate.admit(ip("2001:db8::ffff")).unwrap_err(),
            Refusal::AddressFull { limit: 2 }
        );
        // Another /64, and another address, are not affected.
        let _other_block = gate.admit(ip("2001:db8:0:1::1")).unwrap();
        let _v4 = gate.admit(ip("127.0.0.1")).unwrap();
        let _mapped = gate.admit(ip("::ffff:127.0.0.1")).unwrap();
        assert_eq!(
            gate.admit(ip("127.0.0.1")).unwrap_err(),
            Refusal::AddressFull { limit: 2 },
            "an IPv4-mapped peer counts as its IPv4 address"
        );
        drop(held);
        let again = gate.admit(ip("2001:db8::3")).unwrap();
        drop(again);
        // Addresses with nothing open are forgotten.
        assert_eq!(gate.counts.lock().unwrap().by_address.len(), 2);
    }

    #[test]
    fn trusted_proxies_are_not_capped_per_address_but_count_towards_the_listener() {
        let trusted = crate::client_addr::parse("10.1.0.0/16").unwrap();
        let gate = Gate::new(3, Some(1), trusted);
        let _a = gate.admit(ip("10.1.2.3")).unwrap();
        let _b = gate.admit(ip("10.1.2.3")).unwrap();
        let _c = gate.admit(ip("10.1.2.3")).unwrap();
        assert_eq!(
            gate.admit(ip("10.1.2.3")).unwrap_err(),
            Refusal::ListenerFull { limit: 3 }
        );
    }
}
