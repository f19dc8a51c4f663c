//! The product as it ships (issue 31): its own image, installed by Helm into
//! kube-system from the README's own install lines, running as pods on real
//! kubelets with a real container runtime, and doing its whole job there.
//!
//! The lab cluster ([`support::lab`]): the test control plane,
//! kube-controller-manager and kube-scheduler v1.36.3, and Nodes in network
//! namespaces behind a router namespace, each with containerd 2.4 + runc
//! 1.5, a kubelet and kube-proxy (all built from Go modules by the project's
//! scripts). The test then does what an admin does:
//!
//! - imports the image (`make image`) into each Node's containerd and runs
//!   `helm install` — the lines after `<!-- lab-install -->` in README.md;
//! - checks the two replicas Running and Ready, the Lease held by a pod's
//!   name, `/metrics` served by the pod;
//! - the kubelet-registered Nodes get podCIDRs (a GUA pool; a dual-stack
//!   pair on one Node), docs/cni.md's CNI recipe configures them, they turn
//!   Ready; web server pods get addresses inside their Node's prefix; one
//!   pod asks another and is seen by its own address; a client outside,
//!   behind the router that applies `prefix-operator routes`, reaches a pod
//!   directly, then an IPv6 ClusterIP of a PrefixClaim's ServiceCIDR and a
//!   Local LoadBalancer address (which sees the client's own address);
//! - deletes the leader pod: the other replica takes the Lease within the
//!   lease duration and a Node registered after that gets its prefix;
//! - `helm upgrade` with a changed value rolls the pods and changes no
//!   allocation; `helm uninstall` leaves pools, claims and podCIDRs.
//!
//! Every check is against what the API server holds or what a packet did.
//! Needs root, network namespaces and cgroups; where network namespaces are
//! forbidden it prints SKIPPED and passes, as the CNI tests do.

#[path = "lab/install.rs"]
mod install;
use prefix_operator_testsupport as support;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use install::*;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{PrefixClaim, PrefixPool};
use support::claims::{service_and_lb_claims, web_and_edge_services};
use support::cni::{ip_routes, run_recipe};
use support::helm::Helm;
use support::lab::ONE_AT_A_TIME;
use support::lab::cluster::{Cluster, ask_http, parse_whoami};
use support::*;

/// The GUA pool of examples/pools.yaml, and its IPv4 pool for the Nodes
/// labelled dual-stack: kube-proxy's cluster CIDRs.
const GUA: &str = "2001:db8:42::/48";
const V4: &str = "10.244.0.0/16";
const DUAL: (&str, &str) = ("node-role.example.com/dual-stack", "true");

fn step(t0: Instant, what: &str) {
    eprintln!("lab: {:>6.1}s {what}", t0.elapsed().as_secs_f64());
}

/// Prints `kubectl ARGS` and what it answers, for whoever watches the run
/// (`make demo` runs this test with --nocapture).
fn show(c: &Cluster, args: &[&str]) {
    let mut cmd = c.kubectl();
    cmd.args(args);
    let out = tokio::task::block_in_place(|| run("kubectl", cmd));
    eprintln!("\n$ kubectl {}\n{out}", args.join(" "));
}

/// Every Node's podCIDRs, by name.
async fn allocations(client: &Client) -> BTreeMap<String, Vec<String>> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .list(&ListParams::default())
        .await
        .expect("list Nodes")
        .items
        .iter()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), node_cidrs(n)))
        .collect()
}

/// A whoami pod (`e2e/node/whoami`) on `node`, placed by the scheduler.
fn web_pod(name: &str, node: &str, image: &str, labels: &[(&str, &str)]) -> Pod {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "enableServiceLinks": false,
            "containers": [{
                "name": "web",
                "image": image,
                "imagePullPolicy": "Never",
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "ports": [{"containerPort": 8080}],
                // The kubelet probes from the Node: the pod's address works.
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
            }],
        },
    }))
    .expect("pod")
}

/// An HTTP GET from inside `node`'s namespace; the body.
fn http_get_in(ns: &str, to: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let path = path.to_string();
    support::netns::in_netns(ns, move || {
        let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {to}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: lab\r\n\r\n").as_bytes())
            .expect("write");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        text
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn helm_installed_operator_image_serves_kubelet_nodes_and_pods() {
    let _one = ONE_AT_A_TIME.lock().await;
    let t0 = Instant::now();
    let Some(mut c) = Cluster::start("lc", &format!("{GUA},{V4}")).await else {
        return;
    };
    step(
        t0,
        "control plane, kube-controller-manager, kube-scheduler up",
    );
    let client = c.client.clone();
    let whoami_tar = c.components.join("images/whoami.tar");
    let whoami_ref = std::fs::read_to_string(c.components.join("images/whoami.ref"))
        .expect("whoami.ref")
        .trim()
        .to_string();
    c.add_node(1, &[], std::slice::from_ref(&whoami_tar));
    c.add_node(2, &[DUAL], std::slice::from_ref(&whoami_tar));
    step(t0, "two Nodes' containerd, kubelet and kube-proxy started");

    wait_kube_proxy(&c).await;
    step(
        t0,
        "kube-proxy forwards the kubernetes Service on both Nodes",
    );

    // The README's install lines, as written.
    let helm = Helm::new();
    for line in readme_install() {
        tokio::task::block_in_place(|| run_install_line(&c, &helm, &line, 0..c.nodes.len()));
        step(t0, &format!("ran: {line}"));
    }
    // 1. Two replicas Running and Ready, one per Node (hostNetwork, same
    //    port), the Lease held by one of them.
    let replicas = wait_rolled_out(&client, 2).await;
    step(t0, &format!("operator pods Ready: {replicas:?}"));
    let pods = operator_pods(&client).await;
    let mut on: Vec<String> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    on.sort();
    assert_eq!(on, ["lab-node-1", "lab-node-2"], "one replica per Node");
    for p in &pods {
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.host_network, Some(true), "the chart's hostNetwork");
        let st = p.status.as_ref().expect("status");
        let cs = &st.container_statuses.as_ref().expect("container statuses")[0];
        assert_eq!(cs.restart_count, 0, "{:?} never restarted", p.metadata.name);
        assert!(
            cs.image
                .contains("ghcr.io/prefix-operator/prefix-operator:"),
            "the image the README loads: {}",
            cs.image
        );
    }
    let holder = wait_for("the Lease held by an operator pod", WAIT, || async {
        lease_holder(&client).await.filter(|h| replicas.contains(h))
    })
    .await;
    step(t0, &format!("Lease held by {holder}"));

    // The pod on its Node's address (hostNetwork), as anyone on the node
    // network reaches it: the probes' port 10262 answers /healthz but not
    // /metrics, which is HTTPS on 10263 (tests/metrics_auth.rs: only for
    // callers the API server allows).
    let holder_pod = pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(holder.as_str()))
        .expect("holder pod");
    let holder_node = holder_pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .expect("node");
    let hn = c
        .nodes
        .iter()
        .find(|n| n.name() == holder_node)
        .expect("holder's node");
    let ip: std::net::IpAddr = hn.ip6.parse().expect("ip");
    let get = |port: u16, path: &str| {
        tokio::task::block_in_place(|| http_get_in(&hn.tn.ns, SocketAddr::new(ip, port), path))
    };
    let health = get(10262, "/healthz");
    assert!(
        health.starts_with("HTTP/1.0 200"),
        "the pod's /healthz: {health}"
    );
    let metrics = get(10262, "/metrics");
    assert!(
        metrics.starts_with("HTTP/1.0 404") && !metrics.contains("prefix_operator_"),
        "plain /metrics on the node network: {}",
        &metrics[..metrics.len().min(400)]
    );

    // 2. The kubelet-registered Nodes get their prefixes: node 1 a GUA /64,
    //    node 2 a dual-stack pair, IPv6 first.
    let gua: ipnet::IpNet = GUA.parse().expect("pool");
    let v4net: ipnet::IpNet = V4.parse().expect("pool");
    let mut prefixes = Vec::new();
    for n in &c.nodes {
        let cidrs = wait_pod_cidrs(&client, n.name()).await;
        let p: ipnet::IpNet = cidrs[0].parse().expect("podCIDR");
        assert!(gua.contains(&p) && p.prefix_len() == 64, "{cidrs:?}");
        prefixes.push(p);
    }
    let dual = node_cidrs(
        &Api::<Node>::all(client.clone())
            .get("lab-node-2")
            .await
            .expect("node"),
    );
    assert_eq!(dual.len(), 2, "lab-node-2 is dual-stack: {dual:?}");
    let p4: ipnet::IpNet = dual[1].parse().expect("podCIDR");
    assert!(v4net.contains(&p4) && p4.prefix_len() == 24, "{dual:?}");
    step(t0, &format!("Nodes' podCIDRs: {prefixes:?} and {p4}"));

    // docs/cni.md's CNI recipe on each Node; then each turns Ready.
    let kubectl_dir = prefix_operator_testenv::bin_dir().expect("control-plane binaries");
    for n in &c.nodes {
        run_recipe(&kubectl_dir, &c.kubeconfig, &n.tn);
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for n in &c.nodes {
        wait_for(&format!("{} Ready", n.name()), WAIT, || async {
            nodes.get_opt(n.name()).await.ok()?.filter(node_ready)
        })
        .await;
    }
    step(t0, "both Nodes Ready");

    // 3. Web pods get addresses inside their Node's prefix.
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (i, n) in c.nodes.iter().enumerate() {
        let name = format!("web-{}", i + 1);
        let labels: &[(&str, &str)] = if i == 1 {
            &[("app", "web"), ("edge", "yes")]
        } else {
            &[("app", "web")]
        };
        pods_api
            .create(
                &PostParams::default(),
                &web_pod(&name, n.name(), &whoami_ref, labels),
            )
            .await
            .expect("create web pod");
    }
    let mut web = Vec::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let name = format!("web-{}", i + 1);
        let p = wait_for(&format!("{name} Ready"), WAIT, || async {
            pods_api.get_opt(&name).await.ok()?.filter(pod_ready)
        })
        .await;
        let st = p.status.as_ref().expect("status");
        let ips: Vec<IpAddr> = st
            .pod_ips
            .iter()
            .flatten()
            .map(|a| a.ip.parse().expect("pod IP"))
            .collect();
        assert!(
            prefixes[i].contains(&ips[0]),
            "{name} {ips:?} in {}",
            prefixes[i]
        );
        if i == 1 {
            assert_eq!(ips.len(), 2, "{name} is dual-stack: {ips:?}");
            assert!(p4.contains(&ips[1]), "{name} {ips:?} in {p4}");
        }
        assert_eq!(st.host_ip.as_deref(), Some(n.ip6.as_str()));
        let container = st.container_statuses.as_ref().expect("statuses")[0]
            .container_id
            .clone()
            .expect("container id");
        web.push((
            name,
            ips,
            container.trim_start_matches("containerd://").to_string(),
        ));
    }
    step(
        t0,
        &format!(
            "web pods Ready: {:?}",
            web.iter().map(|w| (&w.0, &w.1)).collect::<Vec<_>>()
        ),
    );

    // 4. The router applies `prefix-operator routes`: a pod asks a pod on
    //    the other Node, and is seen by its own address; a client outside
    //    reaches a pod directly, no NAT.
    let (_, lines) = ip_routes(&c.kubeconfig);
    c.lab.apply_routes(&lines);
    // A pod asks the other, across Nodes, and is seen by its own address.
    let (to, from) = (&web[1], &web[0]);
    let url = format!("http://[{}]:8080/", to.1[0]);
    let answer = c.nodes[0]
        .kn
        .ctr(&[
            "tasks",
            "exec",
            "--exec-id",
            "ask",
            &from.2,
            "/whoami",
            "get",
            &url,
        ])
        .unwrap_or_else(|e| panic!("{} asks {url}: {e}", from.0));
    let (served, peer) = parse_whoami(&answer).unwrap_or_else(|| panic!("answer {answer:?}"));
    assert_eq!(served, to.0);
    assert_eq!(
        peer, from.1[0],
        "{} saw {} by its own address",
        to.0, from.0
    );
    step(
        t0,
        &format!("{} reached {} and was seen as {peer}", from.0, to.0),
    );

    let outside = c.lab.outside();
    let client_ip: IpAddr = "fd00:200::2".parse().expect("ip");
    let target = SocketAddr::new(web[0].1[0], 8080);
    let (served, peer) = tokio::task::block_in_place(|| ask_http(&outside, target, WAIT));
    assert_eq!((served.as_str(), peer), (web[0].0.as_str(), client_ip));
    step(
        t0,
        &format!("outside client reached {served} at {target} and was seen as {peer}"),
    );

    // 5. Services with global addresses on these Nodes: an IPv6 ClusterIP
    //    from a claim's ServiceCIDR, a Local LoadBalancer address.
    let (svc_range, lb_range) = service_and_lb_claims(&client, "gua", WAIT).await;
    let cluster_ip = nth_address(&svc_range, 10);
    let lb_ip = web_and_edge_services(&client, "default", &cluster_ip, WAIT).await;
    assert!(lb_range.contains(&lb_ip), "{lb_ip} from {lb_range}");
    // kube-proxy on node 2 programs the Local address once its endpoint
    // is there; the router then gets the /128 to node 2 only.
    wait_for(
        "kube-proxy programs the LoadBalancer address",
        WAIT,
        || async {
            c.nat_rules(1, true)
                .contains(&format!("{lb_ip}/128"))
                .then_some(())
        },
    )
    .await;
    let lines = wait_for("a route to the Local address", WAIT, || async {
        let kc = c.kubeconfig.clone();
        let (_, lines) = tokio::task::spawn_blocking(move || ip_routes(&kc))
            .await
            .ok()?;
        lines
            .iter()
            .any(|l| l.contains(&format!("{lb_ip}/128")))
            .then_some(lines)
    })
    .await;
    c.lab.apply_routes(&lines);
    let cip: IpAddr = cluster_ip.parse().expect("ClusterIP");
    let (served, _) =
        tokio::task::block_in_place(|| ask_http(&outside, SocketAddr::new(cip, 80), WAIT));
    assert!(
        served.starts_with("web-"),
        "the ClusterIP {cip} served by {served}"
    );
    let (served, peer) =
        tokio::task::block_in_place(|| ask_http(&outside, SocketAddr::new(lb_ip, 80), WAIT));
    assert_eq!(served, "web-2", "the Local address is served on lab-node-2");
    assert_eq!(peer, client_ip, "the pod saw the client's own address");
    step(
        t0,
        &format!("outside reached ClusterIP {cip} and LoadBalancer {lb_ip} (seen as {peer})"),
    );
    show(&c, &["get", "nodes,pods", "-A", "-o", "wide"]);
    show(&c, &["get", "prefixpools,prefixclaims"]);
    show(&c, &["get", "services", "-o", "wide"]);
    eprintln!(
        "\nGET http://[{lb_ip}]/ from the outside client {client_ip}, through the router (no NAT),\nanswered by the pod: {served} {peer}\n"
    );

    // 6. The leader pod deleted: the other replica takes the Lease within
    //    its duration (15 s), and a Node registered after that gets a prefix.
    let before = allocations(&client).await;
    let deleted_at = Instant::now();
    let mut cmd = c.kubectl();
    cmd.args(["delete", "pod", "-n", NS, &holder, "--wait=false"]);
    tokio::task::block_in_place(|| run("kubectl delete pod", cmd));
    // Whichever live replica gets it: the one that stayed, or the
    // Deployment's replacement if it asks first.
    let other = wait_for(
        "another replica holds the Lease",
        Duration::from_secs(20),
        || async {
            let h = lease_holder(&client).await.filter(|h| *h != holder)?;
            let live = operator_pods(&client).await;
            live.iter()
                .any(|p| p.metadata.name.as_deref() == Some(h.as_str()))
                .then_some(h)
        },
    )
    .await;
    let failover = deleted_at.elapsed();
    let stayed = if replicas.contains(&other) {
        "the replica that stayed"
    } else {
        "the replacement"
    };
    step(
        t0,
        &format!(
            "Lease moved {holder} -> {other} ({stayed}) in {:.1}s",
            failover.as_secs_f64()
        ),
    );
    let third = c.add_node(3, &[], &[]);
    // A new Node needs the image too (README: "on each node").
    for line in readme_install().iter().filter(|l| l.starts_with("ctr ")) {
        tokio::task::block_in_place(|| run_install_line(&c, &helm, line, third..third + 1));
    }
    let cidrs3 = wait_pod_cidrs(&client, "lab-node-3").await;
    step(
        t0,
        &format!("lab-node-3 registered after the failover: {cidrs3:?}"),
    );
    let after = allocations(&client).await;
    for (name, cidrs) in &before {
        assert_eq!(
            after.get(name),
            Some(cidrs),
            "{name}'s podCIDRs unchanged by the failover"
        );
    }
    wait_rolled_out(&client, 2).await;

    // 7. helm upgrade with a changed value rolls the pods, changes no
    //    allocation.
    let before = allocations(&client).await;
    let old: Vec<String> = wait_rolled_out(&client, 2).await;
    let mut cmd = helm.cmd();
    cmd.current_dir(manifest_dir())
        .args([
            "upgrade",
            "prefix-operator",
            "charts/prefix-operator",
            "-n",
            NS,
            "--reset-then-reuse-values",
            "--set",
            "operator.logLevel=debug",
            "--kubeconfig",
        ])
        .arg(&c.kubeconfig);
    tokio::task::block_in_place(|| run("helm upgrade", cmd));
    let new = wait_for("the upgrade rolled the pods", WAIT, || async {
        let now = wait_rolled_out(&client, 2).await;
        now.iter().all(|p| !old.contains(p)).then_some(now)
    })
    .await;
    step(t0, &format!("helm upgrade rolled {old:?} -> {new:?}"));
    wait_for("a new pod holds the Lease", WAIT, || async {
        lease_holder(&client).await.filter(|h| new.contains(h))
    })
    .await;
    assert_eq!(
        allocations(&client).await,
        before,
        "no allocation changed by the upgrade"
    );

    // 8. helm uninstall leaves pools, claims and podCIDRs.
    let mut cmd = helm.cmd();
    cmd.args(["uninstall", "prefix-operator", "-n", NS, "--kubeconfig"])
        .arg(&c.kubeconfig);
    tokio::task::block_in_place(|| run("helm uninstall", cmd));
    wait_for("the operator's pods gone", WAIT, || async {
        operator_pods(&client).await.is_empty().then_some(())
    })
    .await;
    let pools: Api<PrefixPool> = Api::all(client.clone());
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    assert!(
        pools.get_opt("gua").await.expect("get").is_some(),
        "the GUA pool kept"
    );
    assert!(
        claims.get_opt("services").await.expect("get").is_some(),
        "the claim kept"
    );
    let all = allocations(&client).await;
    assert_eq!(all.len(), 3);
    for (name, cidrs) in &all {
        assert!(!cidrs.is_empty(), "{name} keeps its podCIDRs: {all:?}");
    }
    step(t0, "helm uninstall left pools, claims and podCIDRs");
    drop(c);
    step(t0, "lab torn down");
}

/// The chart's DHCPv6 mode on a kubelet Node: Kea (kea-dhcp6 2.2) in the
/// router namespace delegates on lab-node-1's link; the operator's pod, put
/// there by `dhcpv6.nodeSelector`, runs as the chart says (root, every
/// capability dropped but NET_BIND_SERVICE, no privilege escalation, the
/// runtime's seccomp filter), binds the DHCPv6 client port 546 on the
/// Node's network, obtains a /56 for the chart's delegated pool and gives
/// the Node a /64 of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dhcpv6_mode_pod_binds_546_and_feeds_its_pool_from_kea() {
    const PD_POOL: &str = "2001:db8:5000::/48";
    const LINK: (&str, &str) = ("lab.prefix-operator.io/delegating-link", "true");
    let _one = ONE_AT_A_TIME.lock().await;
    let t0 = Instant::now();
    let Some(mut c) = Cluster::start("ld", PD_POOL).await else {
        return;
    };
    let client = c.client.clone();
    c.add_node(1, &[LINK], &[]);
    let helm = Helm::new();
    for line in readme_install().iter().filter(|l| l.starts_with("ctr ")) {
        tokio::task::block_in_place(|| run_install_line(&c, &helm, line, 0..1));
    }
    wait_kube_proxy(&c).await;
    // Lab::node's veth pair: r1<tag> on the router, u1<tag> on the Node.
    let (router_if, node_if) = (format!("r1{}", c.lab.tag), format!("u1{}", c.lab.tag));
    let kea = support::kea::start(
        &c.lab.router,
        &router_if,
        &c.dir,
        PD_POOL,
        "kea",
        support::kea::Lifetimes {
            t1: 1800,
            t2: 2880,
            preferred: 3600,
            valid: 7200,
        },
    );
    let values = c.dir.join("dhcpv6-values.yaml");
    std::fs::write(
        &values,
        format!(
            "replicas: 1\ndhcpv6:\n  enabled: true\n  nodeSelector:\n    {}: \"{}\"\n  pool:\n    create: true\n    interface: {node_if}\n",
            LINK.0, LINK.1
        ),
    )
    .expect("values");
    // The values create a PrefixPool: its CRD must be in before the
    // install (Helm cannot create a CRD and objects of it in one release),
    // applied as crds/ is, and taken over by the release.
    install_crd(&client).await;
    let mut cmd = helm.cmd();
    cmd.current_dir(manifest_dir())
        .args([
            "install",
            "prefix-operator",
            "charts/prefix-operator",
            "-n",
            NS,
            "--take-ownership",
            "-f",
        ])
        .arg(&values)
        .arg("--kubeconfig")
        .arg(&c.kubeconfig);
    tokio::task::block_in_place(|| run("helm install (dhcpv6)", cmd));
    step(t0, "helm install with dhcpv6.enabled");

    let pods = wait_rolled_out(&client, 1).await;
    let pod = Api::<Pod>::namespaced(client.clone(), NS)
        .get(&pods[0])
        .await
        .expect("pod");
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("lab-node-1")
    );
    let container = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .expect("statuses")[0]
        .container_id
        .clone()
        .expect("container id");
    let id = container.trim_start_matches("containerd://");
    let tasks = c.nodes[0].kn.ctr(&["tasks", "ls"]).expect("ctr tasks ls");
    let pid: u32 = tasks
        .lines()
        .find(|l| l.starts_with(id))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("the operator's task in {tasks}"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{k}:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    assert_eq!(
        field("Uid").split_whitespace().next(),
        Some("0"),
        "runs as root: {status}"
    );
    // NET_BIND_SERVICE is capability 10: 0x400, and nothing else.
    assert_eq!(field("CapEff"), "0000000000000400", "only NET_BIND_SERVICE");
    assert_eq!(field("CapBnd"), "0000000000000400", "only NET_BIND_SERVICE");
    assert_eq!(field("NoNewPrivs"), "1", "allowPrivilegeEscalation: false");
    assert_eq!(field("Seccomp"), "2", "the runtime's seccomp filter");
    step(
        t0,
        &format!(
            "operator pod {} (pid {pid}) runs as root with NET_BIND_SERVICE only",
            pods[0]
        ),
    );

    // Port 546 (0x0222) bound in the Node's network namespace (hostNetwork).
    let udp6 = std::fs::read_to_string(format!("/proc/{pid}/net/udp6")).expect("udp6");
    assert!(
        udp6.lines().skip(1).any(|l| l
            .split_whitespace()
            .nth(1)
            .is_some_and(|local| local.ends_with(":0222"))),
        "the DHCPv6 client port 546 is bound:\n{udp6}"
    );

    // Kea delegates a /56; the Node gets a /64 of it.
    let pools: Api<PrefixPool> = Api::all(client.clone());
    // Polled by hand, to fail with Kea's log and the pool's status.
    let deadline = Instant::now() + WAIT;
    let delegated: ipnet::IpNet = loop {
        let pool = pools.get_opt("delegated").await.ok().flatten();
        let status = pool.as_ref().and_then(|p| p.status.as_ref());
        if let Some(p) = status
            .and_then(|s| s.delegation.as_ref())
            .and_then(|d| d.prefixes.first())
            .and_then(|p| p.prefix.parse().ok())
        {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "no delegated prefix in time; the pool's status: {status:?}\nKea's log:\n{}",
            kea.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pd: ipnet::IpNet = PD_POOL.parse().expect("pool");
    assert!(
        pd.contains(&delegated) && delegated.prefix_len() == 56,
        "{delegated}"
    );
    assert!(
        kea.leases().contains(&delegated.addr().to_string()),
        "Kea's lease file holds {delegated}:\n{}\n{}",
        kea.leases(),
        kea.log()
    );
    let cidrs = wait_pod_cidrs(&client, "lab-node-1").await;
    let p: ipnet::IpNet = cidrs[0].parse().expect("podCIDR");
    assert!(
        delegated.contains(&p) && p.prefix_len() == 64,
        "{cidrs:?} from {delegated}"
    );
    step(
        t0,
        &format!("Kea delegated {delegated}; lab-node-1 has {p}"),
    );
    drop(kea);
    drop(c);
}
