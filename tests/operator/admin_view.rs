//! What a cluster admin reads after the allocation test of `operator.rs`:
//! `kubectl get prefixpools` (and `-o wide`), `prefix-operator whois` and
//! `prefix-operator status`, all against the same real API server.

use ipnet::IpNet;
use support::*;

use super::{net, support};

pub async fn as_an_admin_sees_it(cp: &ControlPlane, client: &kube::Client) {
    // Printer columns, as kubectl reads them (Table output).
    let kubeconfig = cp.dir().join("admin.kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let out = std::process::Command::new(cp.bin("kubectl"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "prefixpools"])
        .output()
        .expect("kubectl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = text.lines().next().unwrap_or_default();
    // What an admin reads first, in this order; the rest under -o wide.
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "PREFIXES",
            "FAMILY",
            "ALLOCATED",
            "AVAILABLE",
            "USED",
            "READY",
            "AGE"
        ],
        "default columns"
    );
    let wide = std::process::Command::new(cp.bin("kubectl"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "prefixpools", "-o", "wide"])
        .output()
        .expect("kubectl");
    let wide = String::from_utf8_lossy(&wide.stdout);
    let wide_header = wide.lines().next().unwrap_or_default();
    assert_eq!(
        wide_header.split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "PREFIXES",
            "DELEGATED",
            "FAMILY",
            "SCOPE",
            "NODE-LEN",
            "ALLOCATED",
            "AVAILABLE",
            "CLAIMED",
            "USED",
            "CAPACITY",
            "WAITING",
            "READY",
            "AGE"
        ],
        "-o wide columns"
    );
    let gua_wide = wide
        .lines()
        .find(|l| l.starts_with("gua "))
        .expect("gua row");
    for cell in ["GlobalUnicast", " 64 ", "65536"] {
        assert!(gua_wide.contains(cell), "{cell} missing in {gua_wide}");
    }

    // `prefix-operator whois` and `status`, as an admin runs them.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_prefix-operator"))
            .args(args)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .output()
            .expect("prefix-operator");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let w0 = net(&wait_pod_cidrs(client, "worker-0").await[0]);
    let addr = match w0 {
        IpNet::V6(n) => std::net::Ipv6Addr::from(u128::from(n.network()) + 5).to_string(),
        IpNet::V4(_) => unreachable!("an IPv6 pool"),
    };
    let (code, out) = cli(&["whois", &addr]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("{w0}: Node worker-0"))
            && out.contains(", allocated at ")
            && out.contains("PrefixPool gua (2001:db8:1::/48)"),
        "{out}"
    );
    let (code, out) = cli(&["whois", "2001:db8:1::1"]);
    assert_eq!(code, Some(1), "nobody holds the reserved /64: {out}");
    assert!(out.contains("(a reserved range)"), "{out}");
    let (code, out) = cli(&["status"]);
    assert_eq!(code, Some(0), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("gua "))
        .expect("gua row");
    assert!(row.contains("65529") && row.contains("True"), "{out}");
    let gua_line = text
        .lines()
        .find(|l| l.starts_with("gua "))
        .expect("gua row");
    for cell in ["2001:db8:1::/48", "IPv6", "6", "65529", "<0.1%", "True"] {
        assert!(gua_line.contains(cell), "{cell} missing in {gua_line}");
    }
}
