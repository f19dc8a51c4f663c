//! Services with global addresses, end to end with the real components:
//! the operator carves a ServiceCIDR claim and a LoadBalancer claim from a
//! GUA pool beside the Nodes' prefixes; the API server hands a ClusterIP
//! from the claim's ServiceCIDR; kube-controller-manager's EndpointSlice
//! controller (v1.36.3) builds the slices from Pods whose status the test
//! sets (there is no kubelet); kube-proxy v1.36.3 (iptables mode, legacy
//! backend from Debian's iptables) runs in each node's network namespace;
//! pods are wired by the reference CNI plugins with docs/cni.md's recipe; a
//! router namespace applies exactly the `ip` lines `prefix-operator routes`
//! prints; a client in an "outside" namespace reaches both Services over
//! TCP, and the pod behind the `externalTrafficPolicy: Local` LoadBalancer
//! address sees the client's own address (no SNAT).

use prefix_operator_testsupport as support;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prefix_operator_testenv::Supervised;
use support::claims::{service_and_lb_claims, web_and_edge_services};
use support::cni::*;
use support::components::{kube_proxy_bin, start_kcm};
use support::netns::*;
use support::*;

const WAIT: Duration = Duration::from_secs(60);
const NS: &str = "default";
/// IPv6 first: Services asking for IPv6 get it; the claim's ServiceCIDR is
/// a second IPv6 range beside the API server's own.
const SERVICES: &str = "fd00:10:96::/108,10.96.0.0/16";
const POOL: &str = "2001:db8:50::/48";

/// `ip6tables-save -t nat` inside namespace `ns`.
fn nat_rules(ns: &str, env: &[(String, String)]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ip6tables-save", "-t", "nat"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("ip6tables-save");
    assert!(
        out.status.success(),
        "ip6tables-save in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// kube-proxy for Node `node` inside its namespace `ns`, talking to the API
/// server through a forwarder on the namespace's loopback.
fn start_kube_proxy(
    cp: &ControlPlane,
    node: &TestNode,
    env: &[(String, String)],
) -> (Supervised, PathBuf) {
    let kubeconfig = cp.dir().join(format!("{}-proxy.kubeconfig", node.name));
    kubeconfig_in_netns(cp, &node.ns, &kubeconfig);
    let log = cp.dir().join(format!("{}-kube-proxy.log", node.name));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &node.ns])
        .arg(kube_proxy_bin())
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args([
            &format!("--hostname-override={}", node.name),
            "--proxy-mode=iptables",
            // Traffic from this Node's own podCIDRs (the operator's) is
            // local; everything else to a ClusterIP is masqueraded.
            "--detect-local-mode=NodeCIDR",
            // Leave the namespace's conntrack sysctls alone.
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
            "--v=2",
        ])
        .envs(env.iter().map(|(k, v)| (k, v)));
    let proc = Supervised::start(cmd, &log).expect("start kube-proxy");
    (proc, log)
}

/// A Pod bound to `node` with `labels`, its status set as a kubelet would
/// once the container runs: Running, Ready, with the CNI's addresses.
async fn running_pod(
    client: &Client,
    name: &str,
    node: &str,
    host_ip: &str,
    labels: &[(&str, &str)],
    ips: &[IpAddr],
) {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "prefix-operator.local/whoami",
                            "ports": [{"containerPort": 8080}]}],
        },
    }))
    .expect("pod");
    api.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create pod {name}: {e}"));
    let ips: Vec<serde_json::Value> = ips
        .iter()
        .map(|ip| serde_json::json!({"ip": ip.to_string()}))
        .collect();
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {
            "phase": "Running",
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": ips[0]["ip"],
            "podIPs": ips,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
                {"type": "Ready", "status": "True"},
            ],
        }})),
    )
    .await
    .unwrap_or_else(|e| panic!("status of pod {name}: {e}"));
}

/// Waits until the Service's EndpointSlices list a ready endpoint on each
/// of `nodes` (and on no other Node).
async fn wait_endpoints(client: &Client, service: &str, nodes: &[&str]) {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let mut want: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    want.sort();
    wait_for(
        &format!("EndpointSlices of {service} with ready endpoints on {nodes:?}"),
        WAIT,
        || async {
            let slices = api.list(&lp).await.ok()?;
            let mut on: Vec<String> = slices
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .filter_map(|e| e.node_name.clone())
                .collect();
            on.sort();
            (on == want).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_client_reaches_cluster_ip_and_load_balancer_on_global_addresses() {
    let (cp, client) = control_plane_with_services(SERVICES).await;
    let Some(mut lab) = Lab::new("kp", cp.dir()) else {
        return;
    };
    let _d = DumpOnPanic(&cp);
    let debs = support::debs::debs();
    let env = support::debs::iptables_env(&debs);
    create_pool(&client, "gua", pool_spec(&[POOL])).await;
    let mut wired = Vec::new();
    for i in 1..=2u8 {
        let name = format!("node-{i}");
        create_node(&client, &name, labels(&[]), &[]).await;
        set_lab_addresses(&client, &name, i).await;
        let node = lab.node(i, &name);
        for key in ["net.ipv6.conf.all.forwarding=1", "net.ipv4.ip_forward=1"] {
            nssysctl(&node.ns, key);
        }
        wired.push(node);
    }
    let op = Operator::default(&client).await;
    for n in &wired {
        wait_pod_cidrs(&client, &n.name).await;
    }
    let (svc_range, lb_range) = service_and_lb_claims(&client, "gua", WAIT).await;
    let pool: ipnet::IpNet = POOL.parse().expect("pool");
    assert!(pool.contains(&svc_range) && pool.contains(&lb_range));

    let kcm = start_kcm(&cp, "endpointslice-controller");
    // Pod admission needs the namespace's ServiceAccount (its controller is
    // not what this test is about).
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).expect("sa");
    match sas.create(&PostParams::default(), &sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("service account: {e}"),
    }

    // Pods wired by docs/cni.md's recipe and the reference plugins, each with a
    // server on 8080 that names itself and the peer it saw.
    let kubeconfig = cp.dir().join("kp.kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let kubectl_dir = prefix_operator_testenv::bin_dir().expect("control-plane binaries");
    let mut pods = Vec::new();
    for (i, node) in wired.iter().enumerate() {
        run_recipe(&kubectl_dir, &kubeconfig, node);
        let pod_name = format!("web-{}", i + 1);
        let (pod_ns, ips) = lab.pod(node, &format!("p{}", i + 1));
        serve_whoami(&pod_ns, &pod_name, 8080);
        let mut labels = vec![("app", "web")];
        if i == 1 {
            labels.push(("edge", "yes"));
        }
        running_pod(
            &client,
            &pod_name,
            &node.name,
            &format!("fd00:100:{}::2", i + 1),
            &labels,
            &ips,
        )
        .await;
        pods.push((pod_name, ips));
    }

    // A ClusterIP from the claim's ServiceCIDR (asked for: which range a
    // dynamic ClusterIP comes from is the API server's choice), and a
    // LoadBalancer of the operator's class, Local, backed on node-2 only.
    let cluster_ip = nth_address(&svc_range, 10);
    let lb_ip = web_and_edge_services(&client, NS, &cluster_ip, WAIT).await;
    assert!(
        lb_range.contains(&lb_ip),
        "{lb_ip} comes from the claim {lb_range}"
    );
    wait_endpoints(&client, "web", &["node-1", "node-2"]).await;
    wait_endpoints(&client, "edge", &["node-2"]).await;

    // kube-proxy on each node, until its rules hold both addresses.
    let mut proxies = Vec::new();
    for node in &wired {
        proxies.push(start_kube_proxy(&cp, node, &env));
    }
    for (node, (proc, log)) in wired.iter().zip(proxies.iter_mut()) {
        let ns = node.ns.clone();
        let env = env.clone();
        let (cip, lip) = (cluster_ip.clone(), lb_ip.to_string());
        let what = format!("kube-proxy on {} programs {cip} and {lip}", node.name);
        let ready = wait_for(&what, WAIT, || {
            let (ns, env, cip, lip) = (ns.clone(), env.clone(), cip.clone(), lip.clone());
            let exited = proc.exited();
            async move {
                if let Some(status) = exited {
                    return Some(Err(status));
                }
                let rules = tokio::task::spawn_blocking(move || nat_rules(&ns, &env))
                    .await
                    .ok()?;
                (rules.contains(&format!("{cip}/128")) && rules.contains(&format!("{lip}/128")))
                    .then_some(Ok(()))
            }
        })
        .await;
        if let Err(status) = ready {
            panic!(
                "kube-proxy on {} exited ({status}):\n{}",
                node.name,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }

    // The router applies exactly the `ip` lines `routes` prints.
    let (text, lines) = ip_routes(&kubeconfig);
    let route_of = |dst: String| {
        lines
            .iter()
            .find(|l| l.split_whitespace().nth(4) == Some(dst.as_str()))
            .unwrap_or_else(|| panic!("a route to {dst}:\n{text}"))
            .to_string()
    };
    for dst in [svc_range.to_string(), lb_range.to_string()] {
        let r = route_of(dst);
        assert!(
            r.contains("via fd00:100:1::2") && r.contains("via fd00:100:2::2"),
            "claimed prefixes go to every Node: {r}"
        );
    }
    let local = route_of(format!("{lb_ip}/128"));
    assert!(
        local.contains("via fd00:100:2::2") && !local.contains("fd00:100:1::2"),
        "the Local address goes only to the Node with its endpoint: {local}"
    );
    lab.apply_routes(&lines);

    // The outside client, by global address, no NAT on the way in.
    let client_ns = lab.outside();
    let client_ip: IpAddr = "fd00:200::2".parse().expect("ip");
    let cip: IpAddr = cluster_ip.parse().expect("ClusterIP");
    let (cns, lns) = (client_ns.clone(), client_ns.clone());
    let (served, peer) = tokio::task::spawn_blocking(move || {
        ask_whoami(&cns, SocketAddr::new(cip, 80), Duration::from_secs(30))
    })
    .await
    .expect("join");
    assert!(
        pods.iter().any(|(p, _)| *p == served),
        "the ClusterIP {cip} reached a pod of the Service: {served}"
    );
    eprintln!("ClusterIP {cip}: served by {served}, which saw {peer}");
    // The contrast that makes the last check mean something: kube-proxy
    // masquerades outside traffic to a ClusterIP (its source is in no
    // Node's podCIDRs, --detect-local-mode=NodeCIDR), so that pod saw a
    // Node's address, not the client's.
    assert_ne!(
        peer, client_ip,
        "kube-proxy masquerades outside traffic to a ClusterIP"
    );
    let (served, peer) = tokio::task::spawn_blocking(move || {
        ask_whoami(&lns, SocketAddr::new(lb_ip, 80), Duration::from_secs(30))
    })
    .await
    .expect("join");
    eprintln!("LoadBalancer {lb_ip}: served by {served}, which saw {peer}");
    assert_eq!(
        served, "web-2",
        "the Local LoadBalancer address reached node-2's pod"
    );
    assert_eq!(
        peer, client_ip,
        "the pod behind the Local LoadBalancer address saw the client's own address"
    );

    drop(proxies);
    drop(kcm);
    op.stop().await;
    drop(_d);
}
