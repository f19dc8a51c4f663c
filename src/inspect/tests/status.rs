//! `status` from made-up pools (static and delegated), claims and Leases:
//! the report and its text.

use super::*;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};

#[test]
fn status_shows_usage_and_names_the_waiting_nodes() {
    let c = Cluster {
        pools: vec![pool("gua", &["2001:db8:42::/48"], &[])],
        ..Default::default()
    };
    let t = status_text(&status(&c, "kube-system/prefix-operator", at(0)));
    let mut lines = t.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with("POOL") && header.contains("USED"), "{t}");
    let row = lines.next().expect("row");
    for cell in [
        "gua",
        "IPv6",
        "2001:db8:42::/48",
        "65536",
        "65534",
        "<0.1%",
        "3",
    ] {
        assert!(row.contains(cell), "{cell} in {row}");
    }
    assert!(
        t.contains("gua: waiting for space: w1, w2 and 1 more"),
        "{t}"
    );
    assert!(t.contains("No PrefixClaims."), "{t}");
}

#[test]
fn status_shows_delegated_prefixes_not_a_blank() {
    let c = Cluster {
        pools: vec![
            delegated_pool("pd", Some("2001:db8:77::/56")),
            delegated_pool("waiting-pd", None),
        ],
        ..Default::default()
    };
    let r = status(&c, "kube-system/prefix-operator", at(0));
    assert_eq!(r.pools[0].prefixes, vec!["2001:db8:77::/56"]);
    let d = r.pools[0].delegation.as_ref().expect("a delegation");
    assert_eq!(
        (d.interface.as_str(), d.phase.as_deref()),
        ("eth1", Some("Bound"))
    );
    let t = status_text(&r);
    let row = t.lines().find(|l| l.starts_with("pd ")).expect("pd row");
    assert!(row.contains("2001:db8:77::/56"), "{t}");
    assert!(
        t.contains("pd: delegated by DHCPv6 on eth1: Bound; 2001:db8:77::/56 Preferred"),
        "{t}"
    );
    assert!(
        t.contains("waiting-pd: delegated by DHCPv6 on eth1: Soliciting, no prefix delegated yet"),
        "{t}"
    );
}

#[test]
fn status_lists_the_claims_of_each_pool_and_the_unbound_ones() {
    let r = status(&cluster(), "kube-system/prefix-operator", at(0));
    let names: Vec<&str> = r.pools[0].claims.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["lb", "services"]);
    assert_eq!(
        r.pools[0].claims[1].service_cidr.as_deref(),
        Some("services")
    );
    assert_eq!(r.unbound_claims.len(), 1);
    assert_eq!(r.unbound_claims[0].name, "later");
    let t = status_text(&r);
    let header = t
        .lines()
        .find(|l| l.starts_with("CLAIM"))
        .expect("claims header");
    for col in ["POOL", "PREFIX", "PURPOSE", "READY", "REASON"] {
        assert!(header.contains(col), "{col} in {header}");
    }
    let row = |name: &str| {
        t.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} row in {t}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("services"),
        [
            "services",
            "gua",
            "2001:db8:42:ff::/112",
            "ServiceCIDR",
            "True",
            "Serving",
            "ServiceCIDR/services"
        ]
    );
    assert_eq!(
        row("lb"),
        [
            "lb",
            "gua",
            "2001:db8:42:fe::/120",
            "LoadBalancer",
            "True",
            "Serving",
            "Services"
        ]
    );
    assert_eq!(
        row("later"),
        ["later", "-", "-", "Static", "False", "PoolExhausted", "-"]
    );
}

#[test]
fn status_names_the_leader_and_an_expired_lease() {
    let lease = |holder: &str, renewed: i64| Lease {
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut c = Cluster {
        lease: Some(lease("prefix-operator-abc", 1_800_000_000)),
        ..Default::default()
    };
    let r = status(&c, "kube-system/prefix-operator", at(1_800_000_010));
    assert_eq!(r.leader.holder.as_deref(), Some("prefix-operator-abc"));
    assert!(!r.leader.expired);
    assert!(
        status_text(&r).ends_with(
            "Leader: prefix-operator-abc (Lease kube-system/prefix-operator, renewed at 2027-01-15T08:00:00Z)\n"
        ),
        "{}",
        status_text(&r)
    );
    let r = status(&c, "kube-system/prefix-operator", at(1_800_000_016));
    assert!(r.leader.expired);
    assert!(status_text(&r).contains("expired: not renewed within its 15s"));
    c.lease = Some(lease("", 1_800_000_000));
    let r = status(&c, "kube-system/prefix-operator", at(0));
    assert!(r.leader.lease_found && r.leader.holder.is_none());
    assert!(
        status_text(&r).contains("Leader: none (Lease kube-system/prefix-operator is not held)")
    );
    c.lease = None;
    let r = status(&c, "ops/po", at(0));
    assert!(!r.leader.lease_found);
    assert!(status_text(&r).contains("Leader: none known (no Lease ops/po:"));
}
