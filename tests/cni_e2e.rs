//! The bridge + host-local CNI recipe of docs/cni.md, run as printed, with the
//! reference CNI plugins and `cnitool` (built from Go modules by
//! `e2e/cni/build.sh`): the operator writes the Nodes' podCIDRs, the recipe
//! turns them into each node's CNI config, `cnitool` gives pods addresses in
//! network namespaces, `prefix-operator routes` is applied in a router
//! namespace, and pods on different nodes talk TCP, each server seeing the
//! client pod's own address (no NAT).

use prefix_operator_testsupport as support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use prefix_operator::alloc::Family;
use prefix_operator::api::PrefixPoolSpec;
use prefix_operator::controller::Settings;
use support::cni::*;
use support::netns::*;
use support::*;

fn selector(pool: &str) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some(BTreeMap::from([("pool".to_string(), pool.to_string())])),
        ..Default::default()
    })
}

/// Creates the Nodes with their underlay addresses as InternalIPs, runs the
/// operator until each has podCIDRs, then builds pods with the recipe and
/// routes with `prefix-operator routes`. Returns, per Node: its podCIDRs and
/// its pod (namespace, addresses).
async fn cluster(
    case: &str,
    pools: Vec<(&str, PrefixPoolSpec)>,
    nodes: &[(&str, &str)],
    primary: Family,
) -> Option<(
    Lab,
    Vec<(Vec<String>, String, Vec<IpAddr>)>,
    ControlPlaneGuard,
)> {
    let (cp, client) = own_control_plane().await;
    let mut lab = Lab::new(case, cp.dir())?;
    let _d = DumpOnPanic(&cp);
    for (name, spec) in pools {
        create_pool(&client, name, spec).await;
    }
    let mut wired = Vec::new();
    for (i, (name, pool)) in nodes.iter().enumerate() {
        let i = i as u8 + 1;
        create_node(&client, name, labels(&[("pool", pool)]), &[]).await;
        set_lab_addresses(&client, name, i).await;
        wired.push(lab.node(i, name));
    }
    let op = Operator::start(
        client.clone(),
        Settings {
            primary_family: primary,
            status_interval: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await;
    let mut cidrs = Vec::new();
    for (name, _) in nodes {
        cidrs.push(wait_pod_cidrs(&client, name).await);
    }
    op.stop().await;

    let kubeconfig = cp.dir().join("cni.kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let kubectl_dir = prefix_operator_testenv::bin_dir().expect("control-plane binaries");
    let mut out = Vec::new();
    for (node, cidrs) in wired.iter().zip(cidrs) {
        let conf = run_recipe(&kubectl_dir, &kubeconfig, node);
        let ranges = conf["plugins"][0]["ipam"]["ranges"].clone();
        let subnets: Vec<String> = ranges
            .as_array()
            .expect("ranges")
            .iter()
            .map(|r| r[0]["subnet"].as_str().expect("subnet").to_string())
            .collect();
        assert_eq!(
            subnets, cidrs,
            "the recipe wrote {}'s podCIDRs, in order",
            node.name
        );
        let (pod_ns, ips) = lab.pod(node, &format!("p{}", &node.name[node.name.len() - 1..]));
        out.push((cidrs, pod_ns, ips));
    }

    let (text, applied) = ip_routes(&kubeconfig);
    let wanted: usize = out.iter().map(|(c, _, _)| c.len()).sum();
    assert_eq!(applied.len(), wanted, "one route per Node prefix:\n{text}");
    lab.apply_routes(&applied);
    drop(_d);
    Some((lab, out, ControlPlaneGuard(cp)))
}

/// Keeps the control plane (and its directory, which holds the node state)
/// until the case ends.
struct ControlPlaneGuard(#[allow(dead_code)] prefix_operator_testenv::ControlPlane);

fn assert_no_nat(pods: &[(Vec<String>, String, Vec<IpAddr>)], v6: bool) {
    let pick = |ips: &[IpAddr]| {
        *ips.iter()
            .find(|a| a.is_ipv6() == v6)
            .expect("address of the family")
    };
    let (a_ns, a) = (&pods[0].1, pick(&pods[0].2));
    let (b_ns, b) = (&pods[1].1, pick(&pods[1].2));
    assert_eq!(
        tcp_exchange(a_ns, None, b_ns, b),
        a,
        "server on {b} saw the client pod's own address"
    );
    assert_eq!(
        tcp_exchange(b_ns, None, a_ns, a),
        b,
        "server on {a} saw the client pod's own address"
    );
}

fn assert_pod_in_cidrs(pods: &[(Vec<String>, String, Vec<IpAddr>)]) {
    for (cidrs, ns, ips) in pods {
        assert_eq!(ips.len(), cidrs.len(), "{ns}: one address per podCIDR");
        for (ip, cidr) in ips.iter().zip(cidrs) {
            let net: ipnet::IpNet = cidr.parse().expect("podCIDR");
            assert!(net.contains(ip), "{ns}: {ip} in {cidr}, in podCIDRs order");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_only_pods_on_gua_and_ula_pools_talk_without_nat() {
    let Some((_lab, pods, _cp)) = cluster(
        "s",
        vec![
            (
                "gua",
                PrefixPoolSpec {
                    node_selector: selector("gua"),
                    ..pool_spec(&["2001:db8:42::/48"])
                },
            ),
            (
                "ula",
                PrefixPoolSpec {
                    node_selector: selector("ula"),
                    ..pool_spec(&["fd12:3456:789a::/48"])
                },
            ),
        ],
        &[("node-1", "gua"), ("node-2", "ula")],
        Family::V6,
    )
    .await
    else {
        return;
    };
    assert_pod_in_cidrs(&pods);
    assert!(pods[0].0[0].starts_with("2001:db8:42:"), "{:?}", pods[0].0);
    assert!(
        pods[1].0[0].starts_with("fd12:3456:789a:"),
        "{:?}",
        pods[1].0
    );
    assert_no_nat(&pods, true);
}

async fn dual_stack(case: &str, primary: Family) {
    let Some((_lab, pods, _cp)) = cluster(
        case,
        vec![
            ("v6", pool_spec(&["2001:db8:43::/48"])),
            ("v4", pool_spec(&["10.43.0.0/16"])),
        ],
        &[("node-1", "any"), ("node-2", "any")],
        primary,
    )
    .await
    else {
        return;
    };
    assert_pod_in_cidrs(&pods);
    for (_, ns, ips) in &pods {
        assert_eq!(
            ips[0].is_ipv6(),
            primary == Family::V6,
            "{ns}: primary family first: {ips:?}"
        );
    }
    assert_no_nat(&pods, true);
    assert_no_nat(&pods, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_ipv6_primary_pods_talk_over_both_families_without_nat() {
    dual_stack("d6", Family::V6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_ipv4_primary_pods_talk_over_both_families_without_nat() {
    dual_stack("d4", Family::V4).await;
}
