//! Single addresses out of a prefix — LoadBalancer addresses out of a
//! PrefixClaim's prefix: which addresses are usable, how many there are,
//! and the lowest free one. Pure, like the rest of `alloc`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::cidr::range;

/// Whether `ip` of prefix `p` may be handed out: every address but the
/// network address (and, for IPv4, the broadcast address), except in a
/// /127, /128, /31 or /32, where every address is one.
pub fn usable(p: &IpNet, ip: IpAddr) -> bool {
    let (first, last) = range(p);
    let v = to_u128(&ip);
    if p.prefix_len() >= p.max_prefix_len() - 1 {
        return true;
    }
    v != first && !(matches!(p, IpNet::V4(_)) && v == last)
}

/// How many addresses of `p` are [`usable`] (an IPv6 /0 has 2^128 - 1,
/// which is `u128::MAX`).
pub fn usable_count(p: &IpNet) -> u128 {
    let bits = u32::from(p.max_prefix_len() - p.prefix_len());
    let excluded = if p.prefix_len() >= p.max_prefix_len() - 1 {
        0
    } else if matches!(p, IpNet::V4(_)) {
        2
    } else {
        1
    };
    match 1u128.checked_shl(bits) {
        Some(all) => all - excluded,
        // 2^128 itself does not fit; 2^128 - 1 does.
        None => u128::MAX - (excluded - 1),
    }
}

/// The lowest [`usable`] address of `p` that is neither in `held` (in
/// ascending order; addresses outside `p` are skipped) nor `taken`: one
/// walk over `held`, no copy of it.
pub fn first_free(
    p: &IpNet,
    held: impl IntoIterator<Item = IpAddr>,
    taken: impl Fn(&IpAddr) -> bool,
) -> Option<IpAddr> {
    let (first, last) = range(p);
    let mut candidate = if usable(p, from_u128(p, first)) {
        first
    } else {
        first + 1
    };
    let mut held = held
        .into_iter()
        .map(|a| to_u128(&a))
        .filter(|v| (first..=last).contains(v))
        .peekable();
    loop {
        if candidate > last {
            return None;
        }
        while held.next_if(|v| *v < candidate).is_some() {}
        let ip = from_u128(p, candidate);
        if held.peek() == Some(&candidate) || taken(&ip) {
            candidate = candidate.checked_add(1)?;
            continue;
        }
        return usable(p, ip).then_some(ip);
    }
}

/// An address as a number (IPv4 in the low 32 bits).
pub fn to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(*a)),
        IpAddr::V6(a) => u128::from(*a),
    }
}

/// Number `v` as an address of `p`'s family.
pub fn from_u128(p: &IpNet, v: u128) -> IpAddr {
    match p {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("prefix")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_network_and_ipv4_broadcast_addresses_are_never_handed_out() {
        let p = net("10.0.0.0/30");
        assert_eq!(first_free(&p, [], |_| false), Some(ip("10.0.0.1")));
        assert_eq!(usable_count(&p), 2);
        assert_eq!(
            first_free(&p, [ip("10.0.0.1"), ip("10.0.0.2")], |_| false),
            None,
            "10.0.0.3 is the broadcast address"
        );
        let p = net("2001:db8::/126");
        assert_eq!(usable_count(&p), 3);
        assert_eq!(
            first_free(&p, [ip("2001:db8::1"), ip("2001:db8::2")], |_| false),
            Some(ip("2001:db8::3")),
            "IPv6 has no broadcast address"
        );
    }

    #[test]
    fn point_to_point_and_host_prefixes_use_every_address() {
        for (p, n) in [
            ("10.0.0.0/31", 2),
            ("10.0.0.7/32", 1),
            ("2001:db8::/127", 2),
            ("2001:db8::9/128", 1),
        ] {
            let p = net(p);
            assert_eq!(usable_count(&p), n, "{p}");
            assert_eq!(first_free(&p, [], |_| false), Some(p.network()), "{p}");
        }
        assert_eq!(usable_count(&net("::/0")), u128::MAX);
    }

    #[test]
    fn held_addresses_outside_the_prefix_are_skipped() {
        let p = net("2001:db8:1::/120");
        let held = [ip("2001:db8::5"), ip("2001:db8:1::1"), ip("2001:db8:2::1")];
        assert_eq!(first_free(&p, held, |_| false), Some(ip("2001:db8:1::2")));
    }

    fn case() -> impl Strategy<Value = (IpNet, BTreeSet<u8>, BTreeSet<u8>)> {
        let prefix = prop_oneof![
            (24u8..=32).prop_map(|l| IpNet::new(ip("192.0.2.0"), l).expect("v4")),
            (120u8..=128).prop_map(|l| IpNet::new(ip("2001:db8::"), l).expect("v6")),
        ];
        (
            prefix,
            proptest::collection::btree_set(any::<u8>(), 0..200),
            proptest::collection::btree_set(any::<u8>(), 0..50),
        )
    }

    proptest! {
        /// Against a brute-force oracle: the lowest usable address of the
        /// prefix that is neither held nor taken, or none when there is none.
        #[test]
        fn first_free_is_the_lowest_usable_address_neither_held_nor_taken(
            (p, held, taken) in case()
        ) {
            let base = to_u128(&p.network());
            let at = |o: &u8| from_u128(&p, base + u128::from(*o));
            let held: Vec<IpAddr> = held.iter().map(at).collect();
            let taken: BTreeSet<IpAddr> = taken.iter().map(at).collect();
            let got = first_free(&p, held.iter().copied(), |a| taken.contains(a));
            let (first, last) = range(&p);
            let want = (first..=last)
                .map(|v| from_u128(&p, v))
                .find(|a| usable(&p, *a) && !held.contains(a) && !taken.contains(a));
            prop_assert_eq!(got, want);
            if let Some(a) = got {
                prop_assert!(p.contains(&a));
            }
            let all_usable = (first..=last).filter(|v| usable(&p, from_u128(&p, *v))).count();
            prop_assert_eq!(all_usable as u128, usable_count(&p));
        }
    }
}
