//! What the inspection commands read (one list of each kind) and the
//! question `whois` answers; the space of pools, as both commands see it.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::ServiceCIDR;

use super::report::PoolSpace;
use crate::api::{PrefixClaim, PrefixPool};

/// The objects the commands look at, each kind from one list.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub pools: Vec<PrefixPool>,
    pub claims: Vec<PrefixClaim>,
    pub service_cidrs: Vec<ServiceCIDR>,
    pub services: Vec<Service>,
    /// `PrefixAllocated` Events (the allocation time of Nodes written
    /// before the annotation existed).
    pub events: Vec<Event>,
    /// The leader election Lease, if it exists.
    pub lease: Option<Lease>,
}

/// What `whois` looks up: an address, or a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    Address(IpAddr),
    Prefix(IpNet),
}

impl std::str::FromStr for Query {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse::<IpAddr>() {
            return Ok(Query::Address(a));
        }
        s.parse::<IpNet>()
            .map(|n| Query::Prefix(n.trunc()))
            .map_err(|_| {
                format!("{s:?} is neither an address (2001:db8::1) nor a prefix (2001:db8::/64)")
            })
    }
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Query::Address(a) => write!(f, "{a}"),
            Query::Prefix(p) => write!(f, "{p}"),
        }
    }
}

impl Query {
    /// Whether something holding `held` holds (part of) the query.
    pub fn hits(&self, held: &IpNet) -> bool {
        match self {
            Query::Address(a) => held.contains(a),
            Query::Prefix(p) => held.contains(p) || p.contains(held),
        }
    }

    /// The query as a prefix (an address is its own /32 or /128).
    pub fn net(&self) -> IpNet {
        match self {
            Query::Address(a) => IpNet::from(*a),
            Query::Prefix(p) => *p,
        }
    }
}

/// Every prefix of a pool's space: `spec.prefixes`, prefixes removed from
/// spec that Nodes still hold (`status.prefixes`), and for a delegated pool
/// the prefixes delegated to it (`status.delegation.prefixes`).
pub fn pool_prefixes(p: &PrefixPool) -> Vec<String> {
    let mut out: Vec<String> = p.spec.prefixes.clone();
    if let Some(st) = &p.status {
        let usage = st.prefixes.iter().map(|u| u.prefix.clone());
        let delegated = st
            .delegation
            .iter()
            .flat_map(|d| d.prefixes.iter().map(|x| x.prefix.clone()));
        for px in usage.chain(delegated) {
            if !out.contains(&px) {
                out.push(px);
            }
        }
    }
    out
}

/// Every pool prefix that contains `net`, with its pool.
pub fn pools_containing(net: &IpNet, pools: &[PrefixPool]) -> Vec<PoolSpace> {
    let mut out = vec![];
    for p in pools {
        for px in pool_prefixes(p) {
            if px.parse::<IpNet>().is_ok_and(|x| x.contains(net)) {
                out.push(PoolSpace {
                    pool: p.metadata.name.clone().unwrap_or_default(),
                    prefix: px,
                });
            }
        }
    }
    out
}

/// Whether `net` overlaps a reserved range of any pool.
pub fn reserved_in(net: &IpNet, pools: &[PrefixPool]) -> bool {
    pools.iter().any(|p| {
        p.spec.reserved.iter().any(|r| {
            r.parse::<IpNet>()
                .is_ok_and(|x| x.contains(net) || net.contains(&x))
        })
    })
}

/// `gua (2001:db8::/48), ula (fd00::/48)`.
pub fn spaces_text(spaces: &[PoolSpace]) -> String {
    spaces
        .iter()
        .map(|s| format!("{} ({})", s.pool, s.prefix))
        .collect::<Vec<_>>()
        .join(", ")
}
