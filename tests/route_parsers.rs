//! `prefix-operator routes --format frr|bird` output, checked by the real
//! parsers: FRR's `vtysh -C` (a dry run of the configuration) and BIRD's
//! `bird -p` (parse only), from the pinned Debian packages that
//! `e2e/debs/fetch.sh` unpacks into the cache. Routes, comments for Nodes
//! without an address of the family, and conflicts, both families.

use prefix_operator_testsupport as support;

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus};
use prefix_operator::routes::{ClaimRoute, Format, claim_routes, render, routes};

/// Runs a binary of the unpacked packages with their libraries.
fn run(root: &Path, bin: &str, args: &[&str]) -> (bool, String) {
    let lib = support::debs::lib_dir(root);
    let libs = format!("{}:{}", lib.display(), lib.join("frr").display());
    let out = Command::new(root.join(bin))
        .args(args)
        .env("LD_LIBRARY_PATH", libs)
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

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

/// Dual-stack Nodes, one without an IPv6 address, two in conflict.
fn cluster() -> Vec<Node> {
    vec![
        node(
            "worker-1",
            &["2001:db8:42:1::/64", "10.244.1.0/24"],
            &["2001:db8::11", "192.0.2.11"],
        ),
        node(
            "worker-2",
            &["2001:db8:42:2::/64", "10.244.2.0/24"],
            &["192.0.2.12"],
        ),
        node("edge-1", &["fd5e:93a1:7c2b::/64"], &["fd00::21"]),
        node("edge-2", &["fd5e:93a1:7c2b::/64"], &["fd00::22"]),
    ]
}

/// A ServiceCIDR claim routed to every Node (an ECMP route).
fn claims() -> Vec<ClaimRoute> {
    let claims = vec![(
        "svc".to_string(),
        "ServiceCIDR".to_string(),
        "2001:db8:99::/112".parse().expect("net"),
    )];
    let r = claim_routes(&claims, &cluster());
    assert!(r[0].next_hops.len() >= 2, "an ECMP route: {r:?}");
    r
}

fn check_file(dir: &Path, name: &str, text: &str, check: impl Fn(&Path) -> (bool, String)) {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the configuration");
    let (ok, out) = check(&path);
    assert!(ok, "refused {name}:\n{text}\n--- parser said:\n{out}");
}

#[test]
fn frr_and_bird_accept_what_routes_prints() {
    let root = support::debs::debs();
    let dir = tempfile::tempdir().expect("tempdir");
    let r = routes(&cluster());
    let vtysh = |p: &Path| {
        let (ok, out) = run(
            &root,
            "usr/bin/vtysh",
            &["-C", "-f", &p.display().to_string()],
        );
        // vtysh -C exits 0 with "Unknown command" lines for some errors.
        (ok && !out.contains("Unknown command"), out)
    };
    let bird = |p: &Path| {
        run(
            &root,
            "usr/sbin/bird",
            &["-p", "-c", &p.display().to_string()],
        )
    };

    let frr_nodes = render(&r, &[], Format::Frr);
    assert!(frr_nodes.contains("ipv6 route 2001:db8:42:1::/64 2001:db8::11 tag 4193"));
    assert!(frr_nodes.contains("ip route 10.244.2.0/24 192.0.2.12 tag 4193"));
    assert!(
        !frr_nodes.contains("fd00::21") && !frr_nodes.contains("fd00::22"),
        "{frr_nodes}"
    );
    // With a claim: one ECMP route, a line per next hop.
    let frr = render(&r, &claims(), Format::Frr);
    assert!(
        frr.contains("ipv6 route 2001:db8:99::/112 2001:db8::11 tag 4193"),
        "{frr}"
    );
    check_file(dir.path(), "frr.conf", &frr, vtysh);

    let bird_conf = render(&r, &claims(), Format::Bird);
    assert!(bird_conf.contains("route 2001:db8:42:1::/64 via 2001:db8::11;"));
    assert!(
        bird_conf.contains("route 2001:db8:99::/112 via fd00::21 via fd00::22 via 2001:db8::11;"),
        "{bird_conf}"
    );
    check_file(dir.path(), "bird.conf", &bird_conf, bird);

    // The parsers do refuse what is wrong: the FRR form routes printed
    // before (a trailing `! node` is not a comment in FRR) and a BIRD
    // route without `via`.
    let (ok, out) = vtysh(&write(
        dir.path(),
        "old.conf",
        "ipv6 route 2001:db8:42:1::/64 2001:db8::11 tag 4193 ! worker-1\n",
    ));
    assert!(!ok, "vtysh accepted a trailing comment: {out}");
    let (ok, out) = bird(&write(
        dir.path(),
        "bad-bird.conf",
        "protocol static s {\n  ipv6;\n  route 2001:db8:42:1::/64 2001:db8::11;\n}\n",
    ));
    assert!(!ok, "bird accepted a route without via: {out}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}
