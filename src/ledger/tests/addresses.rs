//! Service addresses in the picture: every live ClusterIP (IPAddress) and
//! LoadBalancer address inside pool space is held; one that lands in a
//! Node's prefix or a claim not meant for it is a conflict of both; claims'
//! conflicts are reported once per change.

use super::claims::claim;
use super::*;
use crate::api::Purpose;

fn address(ip: &str, uid: &str) -> AddressSnapshot {
    AddressSnapshot {
        name: ip.into(),
        uid: uid.into(),
        resource_version: next_rv(),
        service: Some("default/late".into()),
    }
}

#[test]
fn a_live_cluster_ip_keeps_its_slot_until_released() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/63"]).snap());
    assert!(l.upsert_address(&address("2001:db8::5e", "a1")));
    for n in ["n0", "n1"] {
        l.upsert_node(&node(n, &[]));
    }
    assert_eq!(allocate(&mut l, "n0"), vec![net("2001:db8:0:1::/64")]);
    assert!(matches!(
        l.plan("n1", Family::V6),
        Plan::Wait(Wait::Exhausted { .. })
    ));
    // A claim is not carved over it either.
    l.upsert_claim(&claim("c", 120, "p", None));
    assert!(matches!(l.plan_claim("c"), ClaimPlan::Wait(_)));
    assert!(l.remove_address("2001:db8::5e", "a1", next_rv()));
    assert!(l.take_freed(), "waiting Nodes are woken");
    assert_eq!(allocate(&mut l, "n1"), vec![net("2001:db8::/64")]);
}

#[test]
fn a_late_state_of_a_deleted_address_does_not_come_back() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/64"]).snap());
    let old = address("2001:db8::7", "a1");
    assert!(l.upsert_address(&old));
    assert!(l.remove_address("2001:db8::7", "a1", next_rv()));
    assert!(!l.upsert_address(&old), "a stale state of a deleted object");
    // Released and handed out again: a new object, held.
    assert!(l.upsert_address(&address("2001:db8::7", "a2")));
    assert!(
        !l.remove_address("2001:db8::7", "a1", next_rv()),
        "not the held object"
    );
    assert_eq!(l.cluster_ips_inside(&net("2001:db8::/64")).len(), 1);
    // A list that no longer shows it removes it.
    l.replace_addresses(&[], next_rv());
    assert!(l.cluster_ips_inside(&net("2001:db8::/64")).is_empty());
}

#[test]
fn an_address_inside_a_node_prefix_or_a_static_claim_is_a_conflict_of_both() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/60"]).snap());
    l.upsert_node(&node("by-hand", &["2001:db8::/64"]));
    assert!(l.conflict_of("by-hand").is_none());
    l.upsert_address(&address("2001:db8::5e", "a1"));
    let why = l.conflict_of("by-hand").expect("in conflict").join("; ");
    assert!(
        why.contains("ClusterIP") && why.contains("2001:db8::5e"),
        "{why}"
    );
    assert!(why.contains("default/late"), "{why}");
    // A ServiceCIDR claim holding ClusterIPs is what it is for.
    let mut sc = claim("sc", 112, "p", Some("2001:db8:0:1::/112"));
    sc.def = sc.def.map(|mut d| {
        d.purpose = Purpose::ServiceCIDR;
        d
    });
    l.upsert_claim(&sc);
    l.upsert_claim(&claim("st", 112, "p", Some("2001:db8:0:2::/112")));
    l.upsert_address(&address("2001:db8:0:1::5", "a2"));
    l.upsert_address(&address("2001:db8:0:2::5", "a3"));
    assert!(l.claim_conflicts("sc").is_empty());
    let st = l.claim_conflicts("st").join("; ");
    assert!(st.contains("2001:db8:0:2::5"), "{st}");
    l.remove_address("2001:db8::5e", "a1", next_rv());
    assert!(
        l.conflict_of("by-hand").is_none(),
        "the conflict ends with it"
    );
}

#[test]
fn claim_conflicts_are_reported_once_per_change() {
    let mut l = Ledger::new();
    let mut p = pool("p", &["2001:db8::/56"]);
    l.upsert_pool(&p.snap());
    l.upsert_claim(&claim("st", 65, "p", Some("2001:db8::/65")));
    assert!(
        l.take_claim_conflict_changes().is_empty(),
        "no conflict yet"
    );
    p.spec.reserved = vec!["2001:db8::/64".into()];
    p.generation = 2;
    p.resource_version = next_rv();
    l.upsert_pool(&p.snap());
    let changes = l.take_claim_conflict_changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0].1[0].contains("reserved range 2001:db8::/64"),
        "{changes:?}"
    );
    assert!(l.take_claim_conflict_changes().is_empty(), "told once");
    let v = l.pool_view("p").expect("view");
    assert!(
        v.conflicts.iter().any(|c| c.claim.as_deref() == Some("st")),
        "{v:?}"
    );
    // A Node over it adds a reason; it going takes it away again.
    l.upsert_node(&node("by-hand", &["2001:db8::/56"]));
    let changes = l.take_claim_conflict_changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].1.len(), 2, "{changes:?}");
    gone(&mut l, "by-hand");
    p.spec.reserved = vec![];
    p.generation = 3;
    p.resource_version = next_rv();
    l.upsert_pool(&p.snap());
    let changes = l.take_claim_conflict_changes();
    assert_eq!(
        changes,
        vec![("st".to_string(), vec![])],
        "the conflict ended"
    );
}
