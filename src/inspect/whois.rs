//! `prefix-operator whois`, without I/O: which Node holds an address or a
//! prefix (since when, from which pool), which PrefixClaim and ServiceCIDR,
//! which Service's ClusterIP or LoadBalancer address; else which pool's
//! space it lies in.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;

use super::cluster::{Cluster, Query, pools_containing, reserved_in};
use super::holders;
use super::report::{Holder, NodeHold, WhoisReport};
use crate::k8s::nodes::{ALLOCATED_AT_ANNOTATION, POOLS_ANNOTATION};

/// Everything in `c` holding `q` or a prefix overlapping it: Nodes, then
/// PrefixClaims, ServiceCIDRs that are no claim's, and Services; and the
/// pools whose space holds `q`.
pub fn whois(q: &Query, c: &Cluster) -> WhoisReport {
    let mut holders: Vec<Holder> = node_holders(q, c).collect();
    holders.extend(holders::claim_holders(q, c));
    holders.extend(holders::service_cidr_holders(q, c));
    holders.extend(holders::service_holders(q, c));
    let net = q.net();
    WhoisReport {
        query: q.to_string(),
        found: !holders.is_empty(),
        holders,
        pools: pools_containing(&net, &c.pools),
        reserved: reserved_in(&net, &c.pools),
    }
}

fn node_holders<'a>(q: &'a Query, c: &'a Cluster) -> impl Iterator<Item = Holder> + 'a {
    c.nodes.iter().flat_map(move |n| {
        crate::k8s::nodes::pod_cidr_nets(n)
            .into_iter()
            .filter(move |held| q.hits(held))
            .map(move |held| {
                Holder::Node(NodeHold {
                    node: n.metadata.name.clone().unwrap_or_default(),
                    uid: n.metadata.uid.clone(),
                    prefix: held.to_string(),
                    allocated_at: allocated_at(n, &c.events),
                    pools: pools_containing(&held, &c.pools),
                    pools_annotation: annotation(n, POOLS_ANNOTATION).map(str::to_string),
                })
            })
    })
}

/// When the operator allocated the Node's prefixes: the time annotation the
/// write left on the Node, or else (Nodes written before it existed) the time
/// of its `PrefixAllocated` Event about this very object.
fn allocated_at(n: &Node, events: &[Event]) -> Option<String> {
    if let Some(t) = annotation(n, ALLOCATED_AT_ANNOTATION) {
        return Some(t.to_string());
    }
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("PrefixAllocated"))
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("Node")
                    && r.name == n.metadata.name
                    && (r.uid.is_none() || r.uid == n.metadata.uid)
            })
        })
        .filter_map(|e| {
            e.event_time
                .as_ref()
                .map(|t| t.0.to_string())
                .or_else(|| {
                    e.deprecated_first_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                })
                .or_else(|| {
                    e.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                })
        })
        .min()
}

fn annotation<'a>(n: &'a Node, key: &str) -> Option<&'a str> {
    n.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}
