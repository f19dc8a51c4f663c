//! The routes of Nodes and claims, and how each format prints them.

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
    assert!(
        ip.contains(
            "# Service web/empty (externalTrafficPolicy: Local) holds 2001:db8:9::7/128 but no Node"
        ),
        "{ip}"
    );
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
            out.contains(
                "not routed: Node a holds 2001:db8:1::/64, which overlaps a prefix of Node(s) b, c"
            ),
            "{f:?}: {out}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&render(&r, &[], Format::Json)).expect("json");
    assert_eq!(json[1]["conflictsWith"], serde_json::json!(["b", "c"]));
}
