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
#[path = "cidr_tests.rs"]
mod tests;
