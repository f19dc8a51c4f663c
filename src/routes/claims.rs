//! The routes of claimed prefixes: a bound claim's prefix to every Node of
//! its family, and a LoadBalancer address of an `externalTrafficPolicy:
//! Local` Service to only the Nodes with a ready endpoint of it.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{ClaimRoute, NextHop};

/// The routes of bound claims (`(name, purpose, prefix)`), each to every
/// Node with an InternalIP of its family (Nodes being deleted or reported
/// not Ready left out), sorted by prefix.
pub fn claim_routes(claims: &[(String, String, IpNet)], nodes: &[Node]) -> Vec<ClaimRoute> {
    let mut out: Vec<ClaimRoute> = claims
        .iter()
        .map(|(claim, purpose, prefix)| {
            let mut next_hops: Vec<NextHop> = nodes
                .iter()
                .filter(|n| n.metadata.deletion_timestamp.is_none() && !not_ready(n))
                .filter_map(|n| {
                    let address = crate::k8s::nodes::internal_ips(n)
                        .find(|a| a.is_ipv6() == matches!(prefix, IpNet::V6(_)))?;
                    Some(NextHop {
                        node: n.metadata.name.clone().unwrap_or_default(),
                        address,
                    })
                })
                .collect();
            next_hops.sort_by(|a, b| a.node.cmp(&b.node));
            let mut conflicts_with: Vec<String> = nodes
                .iter()
                .filter(|n| {
                    crate::k8s::nodes::pod_cidr_nets(n)
                        .iter()
                        .any(|c| c.contains(&prefix.network()) || prefix.contains(&c.network()))
                })
                .map(|n| n.metadata.name.clone().unwrap_or_default())
                .collect();
            conflicts_with.sort();
            ClaimRoute {
                claim: claim.clone(),
                purpose: purpose.clone(),
                service: None,
                prefix: *prefix,
                next_hops,
                conflicts_with,
            }
        })
        .collect();
    out.sort_by(|a, b| a.prefix.cmp(&b.prefix).then(a.claim.cmp(&b.claim)));
    out
}

/// A Node whose kubelet reports it not Ready (`Ready` False or Unknown):
/// kube-proxy there may be gone, so it is no next hop for a claim. A Node
/// with no Ready condition at all (no kubelet has reported) is kept.
fn not_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status != "True")
}

/// Host routes (/128, /32) of the LoadBalancer addresses of Services with
/// `externalTrafficPolicy: Local`, each to only the Nodes that run a ready
/// endpoint of the Service (from its EndpointSlices): kube-proxy on any
/// other Node drops such traffic, and the longest match wins over the
/// claim's route to every Node. A Service with no ready endpoint gets a
/// comment instead of a route. Sorted by address.
pub fn local_routes(
    claims: &[(String, String, IpNet)],
    services: &[Service],
    slices: &[EndpointSlice],
    nodes: &[Node],
) -> Vec<ClaimRoute> {
    let mut out = vec![];
    for svc in services.iter().filter(|s| is_local_load_balancer(s)) {
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let endpoint_nodes = ready_endpoint_nodes(slices, &ns, &name);
        for ip in ingress_ips(svc) {
            let Some((claim, purpose, _)) = claims
                .iter()
                .find(|(_, purpose, p)| purpose == "LoadBalancer" && p.contains(&ip))
            else {
                continue;
            };
            out.push(ClaimRoute {
                claim: claim.clone(),
                purpose: purpose.clone(),
                service: Some(format!("{ns}/{name}")),
                prefix: IpNet::from(ip),
                next_hops: endpoint_next_hops(nodes, &endpoint_nodes, ip),
                conflicts_with: vec![],
            });
        }
    }
    out.sort_by_key(|r| r.prefix);
    out
}

/// A LoadBalancer Service with `externalTrafficPolicy: Local`.
fn is_local_load_balancer(svc: &Service) -> bool {
    let Some(spec) = svc.spec.as_ref() else {
        return false;
    };
    spec.type_.as_deref() == Some("LoadBalancer")
        && spec.external_traffic_policy.as_deref() == Some("Local")
}

/// The Nodes with a ready endpoint of Service `ns/name` (from its
/// EndpointSlices), sorted, each once.
fn ready_endpoint_nodes<'a>(slices: &'a [EndpointSlice], ns: &str, name: &str) -> Vec<&'a str> {
    let mut endpoint_nodes: Vec<&str> = slices
        .iter()
        .filter(|sl| {
            sl.metadata.namespace.as_deref() == Some(ns)
                && sl
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    .is_some_and(|n| n == name)
        })
        .flat_map(|sl| sl.endpoints.iter())
        // An absent `ready` means ready (the API's own rule).
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .filter_map(|e| e.node_name.as_deref())
        .collect();
    endpoint_nodes.sort_unstable();
    endpoint_nodes.dedup();
    endpoint_nodes
}

/// The addresses in the Service's `status.loadBalancer.ingress`.
fn ingress_ips(svc: &Service) -> impl Iterator<Item = IpAddr> + '_ {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse::<IpAddr>().ok())
}

/// The Nodes of `endpoint_nodes` with an InternalIP of `ip`'s family, by
/// Node name.
fn endpoint_next_hops(nodes: &[Node], endpoint_nodes: &[&str], ip: IpAddr) -> Vec<NextHop> {
    let mut next_hops: Vec<NextHop> = nodes
        .iter()
        .filter(|n| {
            n.metadata
                .name
                .as_deref()
                .is_some_and(|x| endpoint_nodes.contains(&x))
        })
        .filter_map(|n| {
            let address =
                crate::k8s::nodes::internal_ips(n).find(|a| a.is_ipv6() == ip.is_ipv6())?;
            Some(NextHop {
                node: n.metadata.name.clone().unwrap_or_default(),
                address,
            })
        })
        .collect();
    next_hops.sort_by(|a, b| a.node.cmp(&b.node));
    next_hops
}
