//! The README's bridge + host-local CNI recipe, run as printed, with the
//! reference CNI plugins and `cnitool` (built from Go modules by
//! `e2e/cni/build.sh`): the operator writes the Nodes' podCIDRs, the recipe
//! turns them into each node's CNI config, `cnitool` gives pods addresses in
//! network namespaces, `prefix-operator routes` is applied in a router
//! namespace, and pods on different nodes talk TCP, each server seeing the
//! client pod's own address (no NAT).

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::{Patch, PatchParams};
use prefix_operator::alloc::Family;
use prefix_operator::api::PrefixPoolSpec;
use prefix_operator::controller::Settings;
use support::netns::*;
use support::*;

/// The shell block after `<!-- cni-recipe:bridge -->` in README.md, with the
/// list item's indentation removed.
fn readme_recipe() -> String {
    let readme = include_str!("../README.md");
    let at = readme
        .find("<!-- cni-recipe:bridge -->")
        .expect("README.md has the bridge recipe marker");
    let mut lines = readme[at..].lines().skip(1);
    let fence = lines.next().expect("line after the marker");
    assert_eq!(
        fence.trim(),
        "```sh",
        "the marker is followed by a sh block"
    );
    let indent = fence.len() - fence.trim_start().len();
    let body: Vec<&str> = lines.take_while(|l| l.trim() != "```").collect();
    let mut out = String::new();
    for l in body {
        out.push_str(l.get(indent..).unwrap_or(l.trim_start()));
        out.push('\n');
    }
    out
}

fn cni_path() -> PathBuf {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/cni/build.sh"))
        .output()
        .expect("run e2e/cni/build.sh");
    assert!(
        out.status.success(),
        "e2e/cni/build.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A node: its namespace, its underlay addresses (router side is `.1`/`::1`),
/// and where its CNI config and host-local state live.
struct TestNode {
    name: String,
    ns: String,
    conf: PathBuf,
    state: PathBuf,
}

struct Lab {
    namespaces: Namespaces,
    router: String,
    tag: String,
    dir: PathBuf,
    cni: PathBuf,
}

impl Lab {
    /// `None` (after printing why) when this machine forbids namespaces.
    fn new(case: &str, dir: &Path) -> Option<Lab> {
        let tag = format!("{case}{}", std::process::id() % 10_000);
        let router = format!("r{tag}");
        let mut namespaces = Namespaces(Vec::new());
        if let Err(e) = namespaces.add(&router) {
            eprintln!(
                "SKIPPED CNI end-to-end case {case}: this machine forbids network namespaces ({e})"
            );
            return None;
        }
        for key in [
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.ip_forward=1",
        ] {
            nssysctl(&router, key);
        }
        Some(Lab {
            namespaces,
            router,
            tag,
            dir: dir.to_path_buf(),
            cni: cni_path(),
        })
    }

    /// Node `i` wired to the router: fd00:100:i::2/64 and 192.168.i.2/24.
    fn node(&mut self, i: u8, name: &str) -> TestNode {
        let ns = format!("n{i}{}", self.tag);
        self.namespaces.add(&ns).expect("node netns");
        for key in [
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ] {
            nssysctl(&ns, key);
        }
        let (rv, nv) = (format!("r{i}{}", self.tag), format!("u{i}{}", self.tag));
        ip(&[
            "link",
            "add",
            &rv,
            "netns",
            &self.router,
            "type",
            "veth",
            "peer",
            "name",
            &nv,
            "netns",
            &ns,
        ])
        .expect("veth");
        for (side, dev, host) in [(&self.router, &rv, 1), (&ns, &nv, 2)] {
            nsip(
                side,
                &[
                    "addr",
                    "add",
                    &format!("fd00:100:{i}::{host}/64"),
                    "dev",
                    dev,
                    "nodad",
                ],
            );
            nsip(
                side,
                &["addr", "add", &format!("192.168.{i}.{host}/24"), "dev", dev],
            );
            nsip(side, &["link", "set", dev, "up"]);
            nsip(side, &["link", "set", "lo", "up"]);
        }
        nsip(
            &ns,
            &[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &format!("fd00:100:{i}::1"),
            ],
        );
        nsip(
            &ns,
            &[
                "-4",
                "route",
                "add",
                "default",
                "via",
                &format!("192.168.{i}.1"),
            ],
        );
        let conf = self.dir.join(format!("{name}-net.d"));
        let state = self.dir.join(format!("{name}-var-lib"));
        std::fs::create_dir_all(&conf).expect("conf dir");
        std::fs::create_dir_all(&state).expect("state dir");
        TestNode {
            name: name.into(),
            ns,
            conf,
            state,
        }
    }

    /// Adds a pod on `node` with `cnitool add`, as a container runtime would;
    /// returns the pod's namespace and its addresses in result order.
    fn pod(&mut self, node: &TestNode, pod: &str) -> (String, Vec<IpAddr>) {
        let ns = format!("{pod}{}", self.tag);
        self.namespaces.add(&ns).expect("pod netns");
        nssysctl(&ns, "net.ipv6.conf.default.accept_dad=0");
        // host-local keeps its leases in /var/lib/cni: give each node its own
        // (a private mount namespace with the node's state directory on
        // /var/lib), so the config stays exactly as the recipe wrote it.
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" /var/lib && exec ip netns exec "$2" "$3" add pods "/var/run/netns/$4""#)
            .arg("sh")
            .arg(&node.state)
            .arg(&node.ns)
            .arg(self.cni.join("cnitool"))
            .arg(&ns)
            .env("CNI_PATH", &self.cni)
            .env("NETCONFPATH", &node.conf)
            .output()
            .expect("cnitool");
        assert!(
            out.status.success(),
            "cnitool add on {}: {}{}",
            node.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("cnitool prints the CNI result");
        let ips = result["ips"]
            .as_array()
            .expect("result has ips")
            .iter()
            .map(|ip| {
                let a = ip["address"].as_str().expect("address");
                a.parse::<ipnet::IpNet>().expect("address/len").addr()
            })
            .collect();
        (ns, ips)
    }
}

/// Runs the README recipe for `node` with the cluster's kubectl.
fn run_recipe(kubectl_dir: &Path, kubeconfig: &Path, node: &TestNode) -> serde_json::Value {
    let path = format!(
        "{}:{}",
        kubectl_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-euc", &readme_recipe()])
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .env("NODE", &node.name)
        .env("CNI_CONF_DIR", &node.conf)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "README recipe for {}: {}",
        node.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(node.conf.join("10-pods.conflist")).expect("conflist");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("recipe wrote bad JSON ({e}):\n{text}"))
}

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
    let api: Api<Node> = Api::all(client.clone());
    let mut wired = Vec::new();
    for (i, (name, pool)) in nodes.iter().enumerate() {
        let i = i as u8 + 1;
        create_node(&client, name, labels(&[("pool", pool)]), &[]).await;
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"addresses": [
                {"type": "InternalIP", "address": format!("fd00:100:{i}::2")},
                {"type": "InternalIP", "address": format!("192.168.{i}.2")},
            ]}})),
        )
        .await
        .expect("node addresses");
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

    let routes = Command::new(env!("CARGO_BIN_EXE_prefix-operator"))
        .args(["routes", "--format", "ip", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .expect("prefix-operator routes");
    assert!(
        routes.status.success(),
        "{}",
        String::from_utf8_lossy(&routes.stderr)
    );
    let text = String::from_utf8_lossy(&routes.stdout).to_string();
    let applied: Vec<&str> = text.lines().filter(|l| l.starts_with("ip ")).collect();
    let wanted: usize = out.iter().map(|(c, _, _)| c.len()).sum();
    assert_eq!(applied.len(), wanted, "one route per Node prefix:\n{text}");
    for line in applied {
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        nsip(&lab.router, &args);
    }
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
