//! Route hints: for every Node with podCIDRs, its prefix and the next hop an
//! upstream router should use (the Node's InternalIP of the same family), as
//! `ip route` lines, BIRD or FRR static routes, or JSON. A prefix that
//! overlaps another Node's is not routed: either route would send one
//! Node's traffic to the other, so it is printed as a comment naming both.
//!
//! Claimed prefixes (a PrefixClaim's ServiceCIDR, or a Static claim) are
//! served by every Node (kube-proxy answers for a ClusterIP on each), so
//! each is routed to every Node with an InternalIP of its family at once:
//! one ECMP route.
//!
//! Here the routes themselves and the Nodes' routes; [`claims`] makes the
//! claims' routes (and the host routes of `externalTrafficPolicy: Local`
//! addresses), and [`render`](mod@render) prints them.

mod claims;
mod render;

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use serde::Serialize;

pub use claims::{claim_routes, local_routes};
pub use render::render;

/// Output formats of `prefix-operator routes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Ip,
    Bird,
    Frr,
    Json,
}

/// One node prefix and where to send it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub node: String,
    pub prefix: IpNet,
    /// `None` when the Node has no InternalIP of the prefix's family.
    pub next_hop: Option<IpAddr>,
    /// Other Nodes holding a prefix that overlaps this one (a conflict):
    /// when not empty, the prefix is not routed.
    pub conflicts_with: Vec<String>,
}

impl Route {
    /// True when this route is printed as a route, not as a comment.
    pub fn routed(&self) -> bool {
        self.next_hop.is_some() && self.conflicts_with.is_empty()
    }
}

/// One claimed prefix, routed to every Node of its family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRoute {
    pub claim: String,
    pub purpose: String,
    /// For a host route of a LoadBalancer address with
    /// `externalTrafficPolicy: Local`: the Service (`namespace/name`); the
    /// next hops are then only the Nodes with a ready endpoint of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub prefix: IpNet,
    /// (Node, its InternalIP of the prefix's family), by Node name.
    pub next_hops: Vec<NextHop>,
    /// Nodes holding a prefix that overlaps the claim's: when not empty, it
    /// is not routed.
    pub conflicts_with: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NextHop {
    pub node: String,
    pub address: IpAddr,
}

impl ClaimRoute {
    pub fn routed(&self) -> bool {
        !self.next_hops.is_empty() && self.conflicts_with.is_empty()
    }
}

/// The routes of bound claims (`(name, purpose, prefix)`), each to every
/// The routes of all Nodes, sorted by prefix.
pub fn routes(nodes: &[Node]) -> Vec<Route> {
    let mut out = vec![];
    for n in nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        let addrs: Vec<IpAddr> = crate::k8s::nodes::internal_ips(n).collect();
        for prefix in crate::k8s::nodes::pod_cidr_nets(n) {
            let next_hop = addrs
                .iter()
                .find(|a| a.is_ipv6() == matches!(prefix, IpNet::V6(_)))
                .copied();
            out.push(Route {
                node: name.clone(),
                prefix,
                next_hop,
                conflicts_with: vec![],
            });
        }
    }
    out.sort_by(|a, b| a.prefix.cmp(&b.prefix).then(a.node.cmp(&b.node)));
    mark_conflicts(&mut out);
    out
}

/// Fills `conflicts_with`. Two prefixes overlap only when one contains the
/// other, and sorted by address a prefix's contained ones follow it, so
/// each is compared only with those that start inside it.
fn mark_conflicts(routes: &mut [Route]) {
    let mut pairs = vec![];
    for i in 0..routes.len() {
        let outer = routes[i].prefix;
        for j in i + 1..routes.len() {
            if !outer.contains(&routes[j].prefix.network()) {
                break;
            }
            if routes[i].node != routes[j].node {
                pairs.push((i, j));
            }
        }
    }
    for (i, j) in pairs {
        let (a, b) = (routes[i].node.clone(), routes[j].node.clone());
        if !routes[i].conflicts_with.contains(&b) {
            routes[i].conflicts_with.push(b);
        }
        if !routes[j].conflicts_with.contains(&a) {
            routes[j].conflicts_with.push(a);
        }
    }
}

#[cfg(test)]
mod tests;
