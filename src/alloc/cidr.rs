//! Prefix arithmetic shared by the allocator: parsing, address ranges as
//! integers, overlap and scope classification.
//!
//! Addresses are handled as `u128` so one code path serves both families; an
//! IPv4 address is its 32-bit value widened, never an IPv4-mapped IPv6 value.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Address family of a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The other family (dual-stack pairs one of each).
    pub fn other(self) -> Family {
        match self {
            Family::V6 => Family::V4,
            Family::V4 => Family::V6,
        }
    }

    /// Width of an address in this family.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// Why a text was rejected as a CIDR. Each message quotes the input so it can
/// be surfaced to users verbatim (e.g. in a resource's status condition).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    #[error("{input:?} is not a CIDR")]
    NotCidr { input: String },
    #[error("{input:?} has host bits set; did you mean {canonical:?}?")]
    HostBitsSet { input: String, canonical: String },
    #[error("{input:?} is not in canonical form; write {canonical:?}")]
    NotCanonical { input: String, canonical: String },
}

/// Parse text that must be a canonical CIDR: valid, host bits clear, and equal
/// to its canonical rendering (lower-case, compressed IPv6, no leading zeros).
///
/// Requiring the canonical form keeps the text a user wrote identical to the
/// text the operator writes back, so spec and status compare as strings.
pub fn parse_canonical(text: &str) -> Result<IpNet, CidrError> {
    let net = parse_any(text)?;
    let trunc = net.trunc();
    if trunc != net {
        return Err(CidrError::HostBitsSet {
            input: text.to_owned(),
            canonical: trunc.to_string(),
        });
    }
    let canonical = net.to_string();
    if canonical != text {
        return Err(CidrError::NotCanonical {
            input: text.to_owned(),
            canonical,
        });
    }
    Ok(net)
}

/// Parse any valid CIDR and clear its host bits.
///
/// For data written by other components (Node `podCIDRs`), where rejecting a
/// sloppy but unambiguous value would only leave the prefix unaccounted for.
pub fn parse_lenient(text: &str) -> Result<IpNet, CidrError> {
    parse_any(text).map(|net| net.trunc())
}

fn parse_any(text: &str) -> Result<IpNet, CidrError> {
    text.parse::<IpNet>().map_err(|_| CidrError::NotCidr {
        input: text.to_owned(),
    })
}

/// The inclusive address range `[first, last]` of a net, host bits ignored.
pub fn range(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Build the net of length `len` containing address `addr` in `family`.
///
/// Host bits of `addr` are cleared so the result is always canonical. The
/// inputs are clamped rather than rejected, because every caller derives them
/// from an existing net: `len` is capped at the family's width, and for IPv4
/// only the low 32 bits of `addr` are used.
pub fn net_from(family: Family, addr: u128, len: u8) -> IpNet {
    let len = len.min(family.bits());
    // Construction cannot fail once `len` is capped; the default only keeps
    // this function total.
    match family {
        // Truncating to 32 bits is the documented behaviour.
        Family::V4 => IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from(addr as u32), len)
                .unwrap_or_default()
                .trunc(),
        ),
        Family::V6 => IpNet::V6(
            Ipv6Net::new(Ipv6Addr::from(addr), len)
                .unwrap_or_default()
                .trunc(),
        ),
    }
}

/// Whether two nets share at least one address. Nets of different families
/// never overlap, even an IPv4 net and its IPv4-mapped IPv6 counterpart.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    if Family::of(a) != Family::of(b) {
        return false;
    }
    let (a0, a1) = range(a);
    let (b0, b1) = range(b);
    a0 <= b1 && b0 <= a1
}

/// Coarse routing scope of a prefix, used to warn about pools that would hand
/// out addresses unsuitable for pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// IPv6 2000::/3.
    GlobalUnicast,
    /// IPv6 fc00::/7.
    UniqueLocal,
    /// IPv4 RFC 1918 space.
    Private,
    /// IPv4 100.64.0.0/10, carrier-grade NAT (RFC 6598).
    Shared,
    /// IPv4 unicast outside every special-purpose block.
    Public,
    /// Anything else, including nets that straddle two scopes.
    Other,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::GlobalUnicast => "GlobalUnicast",
            Scope::UniqueLocal => "UniqueLocal",
            Scope::Private => "Private",
            Scope::Shared => "Shared",
            Scope::Public => "Public",
            Scope::Other => "Other",
        })
    }
}

/// IPv4 blocks that are not public unicast, with the scope a net inside them
/// gets. Reserved blocks follow the IANA special-purpose registry.
const V4_SPECIAL: &[([u8; 4], u8, Scope)] = &[
    ([10, 0, 0, 0], 8, Scope::Private),
    ([172, 16, 0, 0], 12, Scope::Private),
    ([192, 168, 0, 0], 16, Scope::Private),
    ([100, 64, 0, 0], 10, Scope::Shared),
    ([0, 0, 0, 0], 8, Scope::Other),       // "this network"
    ([127, 0, 0, 0], 8, Scope::Other),     // loopback
    ([169, 254, 0, 0], 16, Scope::Other),  // link-local
    ([192, 0, 0, 0], 24, Scope::Other),    // IETF protocol assignments
    ([192, 0, 2, 0], 24, Scope::Other),    // TEST-NET-1
    ([198, 18, 0, 0], 15, Scope::Other),   // benchmarking
    ([198, 51, 100, 0], 24, Scope::Other), // TEST-NET-2
    ([203, 0, 113, 0], 24, Scope::Other),  // TEST-NET-3
    ([224, 0, 0, 0], 4, Scope::Other),     // multicast
    ([240, 0, 0, 0], 4, Scope::Other),     // reserved, including broadcast
];

/// The scope of a whole net. A net that is only partly inside a block (say
/// 8.0.0.0/6, which holds both public space and 10.0.0.0/8) has no single
/// scope and is reported as [`Scope::Other`].
pub fn scope(net: &IpNet) -> Scope {
    let (first, last) = range(net);
    match net {
        IpNet::V6(_) => {
            let blocks = [
                (0x2000u128 << 112, 3u8, Scope::GlobalUnicast),
                (0xfc00u128 << 112, 7u8, Scope::UniqueLocal),
            ];
            blocks
                .iter()
                .find(|&&(base, len, _)| within(first, last, base, 128 - u32::from(len)))
                .map_or(Scope::Other, |&(_, _, s)| s)
        }
        IpNet::V4(_) => {
            for &(octets, len, s) in V4_SPECIAL {
                let base = u128::from(u32::from_be_bytes(octets));
                let host_bits = 32 - u32::from(len);
                if within(first, last, base, host_bits) {
                    return s;
                }
                let block_last = base | ((1u128 << host_bits) - 1);
                if first <= block_last && base <= last {
                    return Scope::Other;
                }
            }
            Scope::Public
        }
    }
}

/// Whether `[first, last]` lies inside the block at `base` with `host_bits`
/// host bits (at most 127 here, so the shift cannot overflow).
fn within(first: u128, last: u128, base: u128, host_bits: u32) -> bool {
    first >> host_bits == base >> host_bits && last >> host_bits == base >> host_bits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test literal is a CIDR")
    }

    #[test]
    fn canonical_accepts_canonical_text() {
        for s in [
            "10.0.0.0/8",
            "0.0.0.0/0",
            "255.255.255.255/32",
            "fd00::/64",
            "2001:db8::/32",
            "::/0",
            "::1/128",
            "::ffff:10.0.0.0/104",
        ] {
            assert_eq!(parse_canonical(s), Ok(net(s)), "{s}");
        }
        assert_eq!(
            Family::of(&parse_canonical("::ffff:10.0.0.0/104").expect("mapped")),
            Family::V6
        );
    }

    #[test]
    fn canonical_rejects_host_bits_with_suggestion() {
        let err = parse_canonical("10.0.0.1/8").expect_err("host bits");
        assert_eq!(
            err.to_string(),
            r#""10.0.0.1/8" has host bits set; did you mean "10.0.0.0/8"?"#
        );
        let err = parse_canonical("fd00::1/64").expect_err("host bits");
        assert_eq!(
            err,
            CidrError::HostBitsSet {
                input: "fd00::1/64".into(),
                canonical: "fd00::/64".into()
            }
        );
    }

    #[test]
    fn canonical_rejects_non_cidrs() {
        for s in [
            "fd00::/129",
            "10.0.0.0/33",
            "10.0.0.0",
            "",
            "banana",
            " 10.0.0.0/8",
            "10.0.0.0/8 ",
            "fe80::1%eth0/64",
            "10.0.0.0/-1",
        ] {
            assert_eq!(
                parse_canonical(s),
                Err(CidrError::NotCidr { input: s.into() }),
                "{s:?}"
            );
        }
        assert_eq!(
            parse_canonical("fd00::/129").expect_err("bad").to_string(),
            r#""fd00::/129" is not a CIDR"#
        );
    }

    #[test]
    fn canonical_rejects_non_canonical_spelling() {
        let err = parse_canonical("FD00::/64").expect_err("upper case");
        assert_eq!(
            err.to_string(),
            r#""FD00::/64" is not in canonical form; write "fd00::/64""#
        );
        for (s, want) in [
            ("fd00:0:0:0::/64", "fd00::/64"),
            ("fd00:0000::/64", "fd00::/64"),
            ("10.0.0.0/08", "10.0.0.0/8"),
        ] {
            assert_eq!(
                parse_canonical(s),
                Err(CidrError::NotCanonical {
                    input: s.into(),
                    canonical: want.into()
                }),
                "{s}"
            );
        }
    }

    #[test]
    fn lenient_truncates_host_bits() {
        assert_eq!(parse_lenient("10.1.2.3/16"), Ok(net("10.1.0.0/16")));
        assert_eq!(parse_lenient("FD00::1/64"), Ok(net("fd00::/64")));
        assert_eq!(parse_lenient("10.0.0.0/24"), Ok(net("10.0.0.0/24")));
        assert!(matches!(
            parse_lenient("10.0.0.0"),
            Err(CidrError::NotCidr { .. })
        ));
    }

    #[test]
    fn ranges_and_net_from_round_trip() {
        assert_eq!(range(&net("10.0.0.0/8")), (0x0a00_0000, 0x0aff_ffff));
        assert_eq!(range(&net("0.0.0.0/0")), (0, u128::from(u32::MAX)));
        assert_eq!(range(&net("::/0")), (0, u128::MAX));
        assert_eq!(
            range(&net("fd00::/64")),
            (
                0xfd00u128 << 112,
                (0xfd00u128 << 112) | u128::from(u64::MAX)
            )
        );
        // Host bits are ignored on input and cleared on output.
        assert_eq!(range(&net("10.0.0.7/24")).0, 0x0a00_0000);
        assert_eq!(net_from(Family::V4, 0x0a00_0007, 24), net("10.0.0.0/24"));
        assert_eq!(
            net_from(Family::V6, 0xfd00u128 << 112, 64),
            net("fd00::/64")
        );
        assert_eq!(
            net_from(Family::V6, u128::MAX, 128),
            net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")
        );
        assert_eq!(net_from(Family::V4, 0, 40), net("0.0.0.0/32"));
    }

    #[test]
    fn overlap_requires_same_family_and_shared_addresses() {
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.1.0.0/16")));
        assert!(overlaps(&net("10.1.0.0/16"), &net("10.0.0.0/8")));
        assert!(!overlaps(&net("10.0.0.0/24"), &net("10.0.1.0/24")));
        assert!(overlaps(&net("::/0"), &net("fd00::/64")));
        assert!(!overlaps(&net("::ffff:10.0.0.0/104"), &net("10.0.0.0/8")));
        assert!(!overlaps(&net("0.0.0.0/0"), &net("::/0")));
    }

    #[test]
    fn scopes() {
        let cases = [
            ("2001:db8::/32", Scope::GlobalUnicast),
            ("2a00::/12", Scope::GlobalUnicast),
            ("fd12:3456::/48", Scope::UniqueLocal),
            ("fc00::/7", Scope::UniqueLocal),
            ("fe80::/64", Scope::Other),
            ("::/0", Scope::Other),
            ("::1/128", Scope::Other),
            ("ff02::/16", Scope::Other),
            ("10.0.0.0/8", Scope::Private),
            ("172.20.0.0/16", Scope::Private),
            ("192.168.1.0/24", Scope::Private),
            ("100.64.0.0/10", Scope::Shared),
            ("100.127.255.0/24", Scope::Shared),
            ("8.8.8.0/24", Scope::Public),
            ("172.32.0.0/16", Scope::Public),
            ("127.0.0.0/8", Scope::Other),
            ("169.254.0.0/16", Scope::Other),
            ("224.0.0.0/4", Scope::Other),
            ("240.0.0.0/4", Scope::Other),
            ("192.0.2.0/24", Scope::Other),
            ("8.0.0.0/6", Scope::Other),
            ("0.0.0.0/0", Scope::Other),
        ];
        for (s, want) in cases {
            assert_eq!(scope(&net(s)), want, "{s}");
        }
        assert_eq!(Scope::GlobalUnicast.to_string(), "GlobalUnicast");
        assert_eq!(Family::V4.to_string(), "IPv4");
        assert_eq!(Family::V6.to_string(), "IPv6");
        assert_eq!(Family::V4.bits(), 32);
        assert_eq!(Family::V6.bits(), 128);
    }
}
