//! Route hints end to end: Node prefixes from the operator, the `ip route`
//! lines from `prefix-operator routes` applied in a "router" network
//! namespace, and a TCP connection between pod addresses of two "node"
//! namespaces through it — global pod addresses, no NAT.

use prefix_operator_testsupport as support;

use std::process::Command;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use prefix_operator::api::PrefixPoolSpec;
use support::netns::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_pod_prefixes_reach_each_other_without_nat() {
    let tag = std::process::id() % 100_000;
    let (router, n1, n2) = (
        format!("por{tag}"),
        format!("po1n{tag}"),
        format!("po2n{tag}"),
    );
    if let Err(e) = ip(&["netns", "add", &router]) {
        eprintln!(
            "SKIPPED routed_pod_prefixes_reach_each_other_without_nat: this machine forbids network namespaces ({e})"
        );
        return;
    }
    let _ns = Namespaces(vec![router.clone(), n1.clone(), n2.clone()]);
    ip(&["netns", "add", &n1]).expect("netns n1");
    ip(&["netns", "add", &n2]).expect("netns n2");
    // No duplicate address detection: addresses are usable at once.
    for ns in [&router, &n1, &n2] {
        for key in [
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ] {
            let ok = Command::new("ip")
                .args(["netns", "exec", ns, "sysctl", "-qw", key])
                .status()
                .expect("sysctl");
            assert!(ok.success(), "sysctl {key} in {ns}");
        }
    }

    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(
        &client,
        "gua",
        PrefixPoolSpec {
            reserved: vec!["2001:db8:42::/64".into()],
            ..pool_spec(&["2001:db8:42::/48"])
        },
    )
    .await;
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, addr) in [("node-1", "fd00:100:1::2"), ("node-2", "fd00:100:2::2")] {
        create_node(&client, name, labels(&[]), &[]).await;
        nodes
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"status": {"addresses": [{"type": "InternalIP", "address": addr}]}})),
            )
            .await
            .expect("node address");
    }
    let op = Operator::default(&client).await;
    let p1: ipnet::IpNet = wait_pod_cidrs(&client, "node-1").await[0]
        .parse()
        .expect("cidr");
    let p2: ipnet::IpNet = wait_pod_cidrs(&client, "node-2").await[0]
        .parse()
        .expect("cidr");
    // A claimed range (as for Services): one ECMP route to both Nodes.
    let claims: Api<prefix_operator::api::PrefixClaim> = Api::all(client.clone());
    let spec = claim_spec("gua", 112, prefix_operator::api::Purpose::Static);
    claims
        .create(
            &Default::default(),
            &prefix_operator::api::PrefixClaim::new("range", spec),
        )
        .await
        .expect("create claim");
    let claimed: ipnet::IpNet = wait_for(
        "the claim bound",
        std::time::Duration::from_secs(30),
        || async {
            let c = claims.get_opt("range").await.ok().flatten()?;
            c.status?.prefix?.parse().ok()
        },
    )
    .await;
    op.stop().await;

    let kubeconfig = cp.dir().join("routes.kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_prefix-operator"))
        .args(["routes", "--format", "ip", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .expect("prefix-operator routes");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        lines.contains(&format!("ip -6 route replace {p1} via fd00:100:1::2")),
        "{lines}"
    );

    // Wire router <-> node-1 and router <-> node-2.
    for (ns, i) in [(&n1, 1), (&n2, 2)] {
        let (rv, nv) = (format!("r{i}x{tag}"), format!("n{i}x{tag}"));
        ip(&[
            "link", "add", &rv, "netns", &router, "type", "veth", "peer", "name", &nv, "netns", ns,
        ])
        .expect("veth");
        nsip(
            &router,
            &[
                "addr",
                "add",
                &format!("fd00:100:{i}::1/64"),
                "dev",
                &rv,
                "nodad",
            ],
        );
        nsip(&router, &["link", "set", &rv, "up"]);
        nsip(
            ns,
            &[
                "addr",
                "add",
                &format!("fd00:100:{i}::2/64"),
                "dev",
                &nv,
                "nodad",
            ],
        );
        nsip(ns, &["link", "set", &nv, "up"]);
        nsip(ns, &["link", "set", "lo", "up"]);
        nsip(
            ns,
            &[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &format!("fd00:100:{i}::1"),
            ],
        );
    }
    let pod1 = format!("{}1", p1.addr());
    let pod2 = format!("{}1", p2.addr());
    nsip(&n1, &["addr", "add", &format!("{pod1}/128"), "dev", "lo"]);
    nsip(&n2, &["addr", "add", &format!("{pod2}/128"), "dev", "lo"]);
    let fwd = Command::new("ip")
        .args([
            "netns",
            "exec",
            &router,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.forwarding=1",
        ])
        .status()
        .expect("sysctl");
    assert!(fwd.success());
    // Apply exactly what `prefix-operator routes` printed.
    for line in lines.lines().filter(|l| l.starts_with("ip ")) {
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        nsip(&router, &args);
    }

    // The claim's route, as the router holds it: both Nodes as next hops.
    let shown = Command::new("ip")
        .args([
            "netns",
            "exec",
            &router,
            "ip",
            "-6",
            "route",
            "show",
            &claimed.to_string(),
        ])
        .output()
        .expect("ip route show");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("nexthop via fd00:100:1::2") && shown.contains("nexthop via fd00:100:2::2"),
        "the claimed {claimed} is one route to both Nodes: {shown}\n{lines}"
    );

    let peer = tcp_exchange(
        &n1,
        Some(pod1.parse().expect("pod1")),
        &n2,
        pod2.parse().expect("pod2"),
    );
    assert_eq!(
        peer.to_string(),
        pod1,
        "the server saw the pod address itself: no NAT"
    );
}
