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

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use serde::Serialize;

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
    services: &[k8s_openapi::api::core::v1::Service],
    slices: &[k8s_openapi::api::discovery::v1::EndpointSlice],
    nodes: &[Node],
) -> Vec<ClaimRoute> {
    let mut out = vec![];
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        if spec.type_.as_deref() != Some("LoadBalancer")
            || spec.external_traffic_policy.as_deref() != Some("Local")
        {
            continue;
        }
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let mut endpoint_nodes: Vec<&str> = slices
            .iter()
            .filter(|sl| {
                sl.metadata.namespace.as_deref() == Some(ns.as_str())
                    && sl
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("kubernetes.io/service-name"))
                        == Some(&name)
            })
            .flat_map(|sl| sl.endpoints.iter())
            // An absent `ready` means ready (the API's own rule).
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            .filter_map(|e| e.node_name.as_deref())
            .collect();
        endpoint_nodes.sort_unstable();
        endpoint_nodes.dedup();
        let ips = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref()?.parse::<IpAddr>().ok());
        for ip in ips {
            let Some((claim, purpose, _)) = claims
                .iter()
                .find(|(_, purpose, p)| purpose == "LoadBalancer" && p.contains(&ip))
            else {
                continue;
            };
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
            out.push(ClaimRoute {
                claim: claim.clone(),
                purpose: purpose.clone(),
                service: Some(format!("{ns}/{name}")),
                prefix: IpNet::from(ip),
                next_hops,
                conflicts_with: vec![],
            });
        }
    }
    out.sort_by_key(|r| r.prefix);
    out
}

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

/// Renders routes; routes without a next hop become comments (or `null` in
/// JSON). In JSON, claim routes follow the node routes in the same array,
/// told apart by their `claim` key.
pub fn render(routes: &[Route], claims: &[ClaimRoute], format: Format) -> String {
    match format {
        Format::Ip => render_ip(routes) + &render_claims_ip(claims),
        Format::Bird => render_bird(routes, claims),
        Format::Frr => render_frr(routes) + &render_claims_frr(claims),
        Format::Json => {
            let mut all: Vec<serde_json::Value> = routes
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect();
            all.extend(claims.iter().filter_map(|c| serde_json::to_value(c).ok()));
            let mut s = serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into());
            s.push('\n');
            s
        }
    }
}

/// The comment line for a claim route that is not routed.
fn claim_not_routed(c: &ClaimRoute, comment: &str) -> String {
    if !c.conflicts_with.is_empty() {
        return format!(
            "{comment} not routed: PrefixClaim {} holds {}, which overlaps a prefix of Node(s) {}\n",
            c.claim,
            c.prefix,
            c.conflicts_with.join(", ")
        );
    }
    let family = if c.prefix.addr().is_ipv6() {
        "IPv6"
    } else {
        "IPv4"
    };
    if let Some(svc) = &c.service {
        return format!(
            "{comment} Service {svc} (externalTrafficPolicy: Local) holds {} but no Node with an {family} InternalIP has a ready endpoint of it\n",
            c.prefix
        );
    }
    format!(
        "{comment} PrefixClaim {} holds {} but no Node has an {family} InternalIP to route to\n",
        c.claim, c.prefix
    )
}

/// What a claim route is for, as its comment says it.
fn owner(c: &ClaimRoute) -> String {
    match &c.service {
        Some(svc) => format!(
            "Service {svc} (externalTrafficPolicy: Local), address of PrefixClaim {}",
            c.claim
        ),
        None => format!("PrefixClaim {} ({})", c.claim, c.purpose),
    }
}

fn render_claims_ip(claims: &[ClaimRoute]) -> String {
    let mut s = String::new();
    for c in claims {
        if !c.routed() {
            s.push_str(&claim_not_routed(c, "#"));
            continue;
        }
        let fam = if c.prefix.addr().is_ipv6() {
            "-6"
        } else {
            "-4"
        };
        s.push_str(&format!("# {}\n", owner(c)));
        if let [one] = c.next_hops.as_slice() {
            s.push_str(&format!(
                "ip {fam} route replace {} via {}\n",
                c.prefix, one.address
            ));
        } else {
            let hops: Vec<String> = c
                .next_hops
                .iter()
                .map(|h| format!("nexthop via {}", h.address))
                .collect();
            s.push_str(&format!(
                "ip {fam} route replace {} {}\n",
                c.prefix,
                hops.join(" ")
            ));
        }
    }
    s
}

/// FRR's staticd makes one ECMP route of several next hops of one prefix.
fn render_claims_frr(claims: &[ClaimRoute]) -> String {
    let mut s = String::new();
    for c in claims {
        if !c.routed() {
            s.push_str(&claim_not_routed(c, "!"));
            continue;
        }
        let kw = if c.prefix.addr().is_ipv6() {
            "ipv6"
        } else {
            "ip"
        };
        s.push_str(&format!("! {}\n", owner(c)));
        for h in &c.next_hops {
            s.push_str(&format!("{kw} route {} {} tag 4193\n", c.prefix, h.address));
        }
    }
    s
}

fn is_v6(r: &Route) -> bool {
    r.prefix.addr().is_ipv6()
}

/// The comment line for a route that is not routed: in conflict, or with
/// no next hop.
fn not_routed(r: &Route, comment: &str) -> String {
    if !r.conflicts_with.is_empty() {
        return format!(
            "{comment} not routed: Node {} holds {}, which overlaps a prefix of Node(s) {}\n",
            r.node,
            r.prefix,
            r.conflicts_with.join(", ")
        );
    }
    let family = if is_v6(r) { "IPv6" } else { "IPv4" };
    format!(
        "{comment} Node {} holds {} but has no {family} InternalIP to route to\n",
        r.node, r.prefix
    )
}

fn render_ip(routes: &[Route]) -> String {
    let mut s = String::new();
    for r in routes {
        match r.next_hop.filter(|_| r.routed()) {
            Some(h) => {
                let fam = if is_v6(r) { "-6" } else { "-4" };
                s.push_str(&format!("ip {fam} route replace {} via {h}\n", r.prefix));
            }
            None => s.push_str(&not_routed(r, "#")),
        }
    }
    s
}

/// One `protocol static` block per family that has routes; a claim route
/// is one multipath route (`via` repeated).
fn render_bird(routes: &[Route], claims: &[ClaimRoute]) -> String {
    let mut s = String::new();
    for (v6, proto) in [(true, "ipv6"), (false, "ipv4")] {
        let rs: Vec<&Route> = routes.iter().filter(|r| is_v6(r) == v6).collect();
        let cs: Vec<&ClaimRoute> = claims
            .iter()
            .filter(|c| c.prefix.addr().is_ipv6() == v6)
            .collect();
        if rs.is_empty() && cs.is_empty() {
            continue;
        }
        s.push_str(&format!(
            "protocol static prefix_operator_{proto} {{\n  {proto};\n"
        ));
        for r in rs {
            match r.next_hop.filter(|_| r.routed()) {
                Some(h) => s.push_str(&format!("  route {} via {h}; # {}\n", r.prefix, r.node)),
                None => s.push_str(&format!("  {}", not_routed(r, "#"))),
            }
        }
        for c in cs {
            if !c.routed() {
                s.push_str(&format!("  {}", claim_not_routed(c, "#")));
                continue;
            }
            let hops: Vec<String> = c
                .next_hops
                .iter()
                .map(|h| format!("via {}", h.address))
                .collect();
            s.push_str(&format!(
                "  route {} {}; # {}\n",
                c.prefix,
                hops.join(" "),
                owner(c)
            ));
        }
        s.push_str("}\n");
    }
    s
}

/// FRR takes `!` as a comment only at the start of a line, so the Node's
/// name goes on a line of its own before its route.
fn render_frr(routes: &[Route]) -> String {
    let mut s = String::new();
    for r in routes {
        match r.next_hop.filter(|_| r.routed()) {
            Some(h) => {
                let kw = if is_v6(r) { "ipv6" } else { "ip" };
                s.push_str(&format!(
                    "! {}\n{kw} route {} {h} tag 4193\n",
                    r.node, r.prefix
                ));
            }
            None => s.push_str(&not_routed(r, "!")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    fn node(name: &str, cidrs: &[&str], addrs: &[&str]) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.spec = Some(NodeSpec {
            pod_cidrs: Some(cidrs.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        });
        n.status = Some(NodeStatus {
            addresses: Some(
                addrs
                    .iter()
                    .map(|a| NodeAddress {
                        type_: "InternalIP".into(),
                        address: a.to_string(),
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        n
    }

    #[test]
    fn pairs_prefixes_with_addresses_of_the_same_family() {
        let nodes = vec![
            node(
                "b",
                &["2001:db8:1:2::/64", "10.0.2.0/24"],
                &["10.1.0.2", "fd00::2"],
            ),
            node("a", &["2001:db8:1:1::/64"], &["10.1.0.1"]),
        ];
        let r = routes(&nodes);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].node, "b");
        assert_eq!(r[0].next_hop, Some("10.1.0.2".parse().expect("ip")));
        assert_eq!(r[1].node, "a");
        assert_eq!(r[1].next_hop, None);
        assert_eq!(r[2].next_hop, Some("fd00::2".parse().expect("ip")));
        let ip = render(&r, &[], Format::Ip);
        assert!(
            ip.contains("ip -6 route replace 2001:db8:1:2::/64 via fd00::2"),
            "{ip}"
        );
        assert!(
            ip.contains("ip -4 route replace 10.0.2.0/24 via 10.1.0.2"),
            "{ip}"
        );
        assert!(
            ip.contains("# Node a holds 2001:db8:1:1::/64 but has no IPv6 InternalIP"),
            "{ip}"
        );
        let bird = render(&r, &[], Format::Bird);
        assert!(
            bird.contains("protocol static prefix_operator_ipv6 {\n  ipv6;\n"),
            "{bird}"
        );
        assert!(
            bird.contains("  route 2001:db8:1:2::/64 via fd00::2; # b\n"),
            "{bird}"
        );
        assert!(bird.contains("protocol static prefix_operator_ipv4 {\n  ipv4;\n  route 10.0.2.0/24 via 10.1.0.2; # b\n}"), "{bird}");
        let frr = render(&r, &[], Format::Frr);
        assert!(
            frr.contains("! b\nipv6 route 2001:db8:1:2::/64 fd00::2 tag 4193\n"),
            "{frr}"
        );
        assert!(
            frr.lines().all(|l| l.starts_with('!') || !l.contains('!')),
            "a comment only at the start of a line: {frr}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&r, &[], Format::Json)).expect("json");
        assert_eq!(json[1]["nextHop"], serde_json::Value::Null);
        assert_eq!(json[0]["prefix"], "10.0.2.0/24");
    }

    #[test]
    fn a_claimed_prefix_is_one_ecmp_route_to_every_node_of_its_family() {
        let nodes = vec![
            node("b", &["2001:db8:1:2::/64"], &["fd00::2", "10.1.0.2"]),
            node("a", &["2001:db8:1:1::/64"], &["fd00::1"]),
            node("v4only", &["10.0.3.0/24"], &["10.1.0.3"]),
        ];
        let claims = vec![
            (
                "svc".to_string(),
                "ServiceCIDR".to_string(),
                "2001:db8:1:3::/112".parse().expect("net"),
            ),
            (
                "bad".to_string(),
                "Static".to_string(),
                "2001:db8:1:1::/80".parse().expect("net"),
            ),
        ];
        let c = claim_routes(&claims, &nodes);
        assert_eq!(c[0].claim, "bad");
        assert_eq!(c[0].conflicts_with, vec!["a"]);
        let svc = &c[1];
        let hops: Vec<&str> = svc.next_hops.iter().map(|h| h.node.as_str()).collect();
        assert_eq!(hops, ["a", "b"]);
        let ip = render(&[], &c, Format::Ip);
        assert!(
            ip.contains(
                "ip -6 route replace 2001:db8:1:3::/112 nexthop via fd00::1 nexthop via fd00::2\n"
            ),
            "{ip}"
        );
        assert!(
            ip.contains("# not routed: PrefixClaim bad holds 2001:db8:1:1::/80"),
            "{ip}"
        );
        let frr = render(&[], &c, Format::Frr);
        assert!(frr.contains("ipv6 route 2001:db8:1:3::/112 fd00::1 tag 4193\nipv6 route 2001:db8:1:3::/112 fd00::2 tag 4193\n"), "{frr}");
        let bird = render(&[], &c, Format::Bird);
        assert!(
            bird.contains(
                "  route 2001:db8:1:3::/112 via fd00::1 via fd00::2; # PrefixClaim svc (ServiceCIDR)\n"
            ),
            "{bird}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&[], &c, Format::Json)).expect("json");
        assert_eq!(json[1]["claim"], "svc");
        assert_eq!(json[1]["nextHops"][1]["address"], "fd00::2");
        // A Node reported not Ready is no next hop.
        let mut down = nodes.clone();
        let st = down[1].status.get_or_insert_with(Default::default);
        st.conditions = Some(vec![k8s_openapi::api::core::v1::NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            ..Default::default()
        }]);
        let c2 = claim_routes(&claims[..1], &down);
        let hops: Vec<&str> = c2[0].next_hops.iter().map(|h| h.node.as_str()).collect();
        assert_eq!(hops, ["b"]);
        // One Node only: a plain route.
        let one = claim_routes(&claims[..1], &nodes[1..2]);
        assert!(
            render(&[], &one, Format::Ip)
                .contains("ip -6 route replace 2001:db8:1:3::/112 via fd00::1\n")
        );
    }

    #[test]
    fn local_traffic_policy_addresses_go_only_to_nodes_with_ready_endpoints() {
        let nodes = vec![
            node("a", &[], &["fd00::1"]),
            node("b", &[], &["fd00::2"]),
            node("c", &[], &["fd00::3"]),
        ];
        let svc = |name: &str, policy: &str, ip: &str| -> k8s_openapi::api::core::v1::Service {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "web"},
                "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy},
                "status": {"loadBalancer": {"ingress": [{"ip": ip}]}},
            }))
            .expect("service")
        };
        let slice =
            |svc: &str, eps: serde_json::Value| -> k8s_openapi::api::discovery::v1::EndpointSlice {
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("{svc}-x"), "namespace": "web",
                                 "labels": {"kubernetes.io/service-name": svc}},
                    "addressType": "IPv6", "endpoints": eps,
                }))
                .expect("slice")
            };
        let claims = vec![(
            "lb".to_string(),
            "LoadBalancer".to_string(),
            "2001:db8:9::/120".parse().expect("net"),
        )];
        let services = vec![
            svc("local", "Local", "2001:db8:9::5"),
            svc("cluster", "Cluster", "2001:db8:9::6"),
            svc("empty", "Local", "2001:db8:9::7"),
        ];
        let slices = vec![
            slice(
                "local",
                serde_json::json!([
                    {"addresses": ["2001:db8:1::a"], "nodeName": "a", "conditions": {"ready": true}},
                    {"addresses": ["2001:db8:1::b"], "nodeName": "b", "conditions": {"ready": false}},
                    {"addresses": ["2001:db8:1::c"], "nodeName": "c"},
                ]),
            ),
            slice(
                "empty",
                serde_json::json!([
                    {"addresses": ["2001:db8:1::d"], "nodeName": "a", "conditions": {"ready": false}},
                ]),
            ),
        ];
        let r = local_routes(&claims, &services, &slices, &nodes);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(
            r[0].prefix,
            "2001:db8:9::5/128".parse::<IpNet>().expect("net")
        );
        let hops: Vec<&str> = r[0].next_hops.iter().map(|h| h.node.as_str()).collect();
        assert_eq!(hops, ["a", "c"]);
        let ip = render(&[], &r, Format::Ip);
        assert!(
            ip.contains(
                "ip -6 route replace 2001:db8:9::5/128 nexthop via fd00::1 nexthop via fd00::3\n"
            ),
            "{ip}"
        );
        assert!(ip.contains("# Service web/empty (externalTrafficPolicy: Local) holds 2001:db8:9::7/128 but no Node"), "{ip}");
        let json: serde_json::Value =
            serde_json::from_str(&render(&[], &r, Format::Json)).expect("json");
        assert_eq!(json[0]["service"], "web/local");
    }

    #[test]
    fn overlapping_prefixes_of_two_nodes_are_not_routed() {
        let nodes = vec![
            node("a", &["2001:db8:1::/64"], &["fd00::1"]),
            node("b", &["2001:db8:1::/64"], &["fd00::2"]),
            // Inside a's /64, and sorted after an unrelated prefix of the
            // same /48.
            node("c", &["2001:db8:1::/80"], &["fd00::3"]),
            node("d", &["2001:db8:1:1::/64"], &["fd00::4"]),
            node("e", &["10.0.0.0/24"], &["10.1.0.5"]),
        ];
        let r = routes(&nodes);
        let by = |n: &str| r.iter().find(|x| x.node == n).expect("route");
        assert_eq!(by("a").conflicts_with, vec!["b", "c"]);
        assert_eq!(by("b").conflicts_with, vec!["a", "c"]);
        assert_eq!(by("c").conflicts_with, vec!["a", "b"]);
        assert!(by("d").routed() && by("e").routed());
        for f in [Format::Ip, Format::Bird, Format::Frr] {
            let out = render(&r, &[], f);
            for n in ["fd00::1", "fd00::2", "fd00::3"] {
                let routed = out
                    .lines()
                    .any(|l| l.contains(n) && !l.trim_start().starts_with(['#', '!']));
                assert!(!routed, "{f:?} routes a conflicted prefix via {n}: {out}");
            }
            assert!(out.contains("fd00::4"), "{f:?}: {out}");
            assert!(
                out.contains("not routed: Node a holds 2001:db8:1::/64, which overlaps a prefix of Node(s) b, c"),
                "{f:?}: {out}"
            );
        }
        let json: serde_json::Value =
            serde_json::from_str(&render(&r, &[], Format::Json)).expect("json");
        assert_eq!(json[1]["conflictsWith"], serde_json::json!(["b", "c"]));
    }
}
