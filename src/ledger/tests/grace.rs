//! The family grace: a dual-stack Node is not written with one family the
//! instant the last pool of the other family that selected it goes.

use super::*;

fn dual(l: &mut Ledger) -> TestPool {
    l.upsert_pool(&pool("v6", &["2001:db8::/48"]).snap());
    let mut v4 = pool("v4", &["10.0.0.0/24"]);
    v4.spec.node_prefix_length = Some(26);
    l.upsert_pool(&v4.snap());
    v4
}

fn families(plan: &Plan) -> Vec<Family> {
    match plan {
        Plan::Allocate(p) => p.iter().map(|(_, n)| Family::of(n)).collect(),
        other => panic!("expected an allocation, got {other:?}"),
    }
}

#[test]
fn a_node_waits_out_the_grace_after_its_other_family_pool_is_deleted() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000);
    let mut l = Ledger::new();
    l.set_time(t0);
    let v4 = dual(&mut l);
    l.upsert_node(&node("a", &[]));
    assert!(l.remove_pool("v4", &v4.uid, next_rv()));
    match l.plan("a", Family::V6) {
        Plan::Wait(Wait::FamilyGone {
            family,
            pools,
            until,
        }) => {
            assert_eq!(family, Family::V4);
            assert_eq!(pools, vec!["v4".to_string()]);
            assert_eq!(until, t0 + FAMILY_GRACE);
        }
        other => panic!("expected to wait for IPv4, got {other:?}"),
    }
    assert_eq!(
        l.waiting_nodes(),
        vec!["a".to_string()],
        "woken when it ends"
    );
    assert_eq!(l.next_release(), Some(t0 + FAMILY_GRACE));
    assert!(!l.set_time(t0 + FAMILY_GRACE - Duration::from_millis(1)));
    assert!(l.set_time(t0 + FAMILY_GRACE), "the grace's end wakes Nodes");
    assert_eq!(families(&l.plan("a", Family::V6)), vec![Family::V6]);
}

#[test]
fn a_pool_recreated_within_the_grace_serves_both_families_in_one_write() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(3_000_000);
    let mut l = Ledger::new();
    l.set_time(t0);
    let v4 = dual(&mut l);
    l.upsert_node(&node("a", &[]));
    assert!(l.remove_pool("v4", &v4.uid, next_rv()));
    assert!(matches!(
        l.plan("a", Family::V6),
        Plan::Wait(Wait::FamilyGone { .. })
    ));
    // Re-created with another node prefix length (immutable: this is how
    // an admin changes it).
    let mut again = pool("v4", &["10.0.0.0/24"]);
    again.uid = "puid-v4-2".into();
    again.spec.node_prefix_length = Some(28);
    l.set_time(t0 + Duration::from_secs(1));
    l.upsert_pool(&again.snap());
    let plan = l.plan("a", Family::V6);
    assert_eq!(families(&plan), vec![Family::V6, Family::V4]);
    if let Plan::Allocate(p) = plan {
        assert_eq!(p[1].1, net("10.0.0.0/28"));
    }
}

#[test]
fn a_selector_edited_away_starts_the_grace_and_other_nodes_are_untouched() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000);
    let mut l = Ledger::new();
    l.set_time(t0);
    let mut v4 = dual(&mut l);
    let mut a = node("a", &[]);
    a.labels = [("rack".to_string(), "r1".to_string())].into();
    l.upsert_node(&a);
    v4.spec.node_selector = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some([("rack".to_string(), "r2".to_string())].into()),
            ..Default::default()
        },
    );
    v4.generation += 1;
    v4.resource_version = next_rv();
    l.upsert_pool(&v4.snap());
    assert!(
        matches!(l.plan("a", Family::V6), Plan::Wait(Wait::FamilyGone { .. })),
        "the old selector chose a; the new one does not"
    );
    // A Node of rack r2 is served by the edited pool at once.
    let mut b = node("b", &[]);
    b.labels = [("rack".to_string(), "r2".to_string())].into();
    l.upsert_node(&b);
    assert_eq!(
        families(&l.plan("b", Family::V6)),
        vec![Family::V6, Family::V4]
    );
}

#[test]
fn a_node_never_selected_by_the_family_is_written_at_once() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(5_000_000);
    let mut l = Ledger::new();
    l.set_time(t0);
    l.upsert_pool(&pool("v6", &["2001:db8::/48"]).snap());
    let mut v4 = pool("v4", &["10.0.0.0/24"]);
    v4.spec.node_prefix_length = Some(26);
    v4.spec.node_selector = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some([("v4".to_string(), "yes".to_string())].into()),
            ..Default::default()
        },
    );
    l.upsert_pool(&v4.snap());
    assert!(l.remove_pool("v4", &v4.uid, next_rv()));
    l.upsert_node(&node("a", &[]));
    assert_eq!(families(&l.plan("a", Family::V6)), vec![Family::V6]);
}

/// A replica that starts leading does not know what vanished just before:
/// where a family is in use, a Node no pool of it selects waits out the
/// grace; a cluster of one family is not held up.
#[test]
fn a_new_leader_waits_the_grace_only_where_the_other_family_is_in_use() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(6_000_000);
    let mut single = Ledger::new();
    single.set_time(t0);
    single.start_leading(t0);
    single.upsert_pool(&pool("v6", &["2001:db8::/48"]).snap());
    single.upsert_node(&node("a", &[]));
    assert_eq!(families(&single.plan("a", Family::V6)), vec![Family::V6]);

    let mut l = Ledger::new();
    l.set_time(t0);
    l.start_leading(t0);
    l.upsert_pool(&pool("v6", &["2001:db8::/48"]).snap());
    // A dual-stack Node written before: IPv4 is in use, its pool gone.
    l.upsert_node(&node("old", &["2001:db8:0:ff::/64", "10.0.0.0/26"]));
    l.upsert_node(&node("a", &[]));
    match l.plan("a", Family::V6) {
        Plan::Wait(Wait::FamilyGone {
            family,
            pools,
            until,
        }) => {
            assert_eq!(family, Family::V4);
            assert!(pools.is_empty(), "no pool known to have gone");
            assert_eq!(until, t0 + FAMILY_GRACE);
        }
        other => panic!("expected to wait, got {other:?}"),
    }
    assert_eq!(l.next_release(), Some(t0 + FAMILY_GRACE));
    assert!(l.set_time(t0 + FAMILY_GRACE), "its end wakes the Nodes");
    assert_eq!(families(&l.plan("a", Family::V6)), vec![Family::V6]);
}
