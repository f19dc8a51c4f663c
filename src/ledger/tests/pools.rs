//! Pools: spec changes, re-creation, ordering, lists, status records.

use super::*;

#[test]
fn a_status_only_update_does_not_rebuild() {
    let mut l = Ledger::new();
    assert!(l.upsert_pool(&pool("p", &["2001:db8::/48"]).snap()));
    assert!(
        !l.upsert_pool(&pool("p", &["2001:db8::/48"]).snap()),
        "same generation"
    );
    let mut next = pool("p", &["2001:db8::/48", "2001:db9::/48"]);
    next.resource_version = next_rv();
    next.generation = 2;
    assert!(l.upsert_pool(&next.snap()));
    assert_eq!(l.pool_view("p").expect("view").capacity, 2 * 65536);
}

#[test]
fn invalid_pool_serves_nothing_and_says_why() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("bad", &["2001:db8::1/64"]).snap());
    l.upsert_node(&node("a", &[]));
    assert_eq!(l.plan("a", Family::V6), Plan::Wait(Wait::NoPool));
    assert!(
        l.pool_view("bad")
            .expect("view")
            .error
            .expect("error")
            .contains("host bits")
    );
}

// ----- The API server's order (issue: stale events freed live prefixes) -----

#[test]
fn a_pool_recreated_under_its_name_takes_the_new_spec() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8:1::/64"]).snap());
    let mut again = pool("p", &["2001:db8:2::/62"]);
    again.uid = "puid-p-2".into(); // generation 1 again
    assert!(l.upsert_pool(&again.snap()));
    l.upsert_node(&node("a", &[]));
    assert_eq!(allocate(&mut l, "a"), vec![net("2001:db8:2::/64")]);
    let v = l.pool_view("p").expect("view");
    assert_eq!(v.capacity, 4);
    assert!(v.prefixes.iter().all(|p| !p.retired));
    // The old object's Delete event, late, does not remove the new pool.
    assert!(!l.remove_pool("p", "puid-p", None));
    assert!(l.remove_pool("p", "puid-p-2", None));
}

#[test]
fn a_stale_pool_state_is_ignored() {
    let mut l = Ledger::new();
    let old = pool("p", &["2001:db8:1::/64"]);
    let mut newer = pool("p", &["2001:db8:2::/64"]);
    newer.generation = 2;
    l.upsert_pool(&newer.snap());
    assert!(!l.upsert_pool(&old.snap()));
    assert_eq!(l.pool_view("p").expect("view").capacity, 1);
    l.upsert_node(&node("a", &[]));
    assert_eq!(allocate(&mut l, "a"), vec![net("2001:db8:2::/64")]);
}

/// A replica that first saw the pool after its spec changed learns the
/// retired prefix from the leader's status write (same generation).
#[test]
fn retired_prefixes_recorded_in_status_are_taken_in_at_the_same_generation() {
    let mut l = Ledger::new();
    let mut p = pool("p", &["2001:db8:2::/64"]);
    p.generation = 2;
    l.upsert_pool(&p.snap());
    l.upsert_node(&node("a", &["2001:db8:1::/64"]));
    let mut with_status = p.clone();
    with_status.resource_version = next_rv();
    with_status.retired = vec!["2001:db8:1::/64".into()];
    assert!(l.upsert_pool(&with_status.snap()), "the record is new");
    let v = l.pool_view("p").expect("view");
    assert!(v.prefixes.iter().any(|x| x.retired && x.allocated == 1));
    assert_eq!(v.allocations.len(), 1);
    let mut again = with_status.clone();
    again.resource_version = next_rv();
    assert!(!l.upsert_pool(&again.snap()), "nothing new the second time");
}

#[test]
fn a_late_state_of_a_deleted_pool_does_not_bring_its_spec_back() {
    let mut l = Ledger::new();
    let old = pool("p", &["2001:db8:1::/64"]);
    let mut old_later = old.clone();
    old_later.resource_version = next_rv();
    let mut again = pool("p", &["2001:db8:2::/64"]);
    again.uid = "puid-p-2".into();
    // The re-created pool is seen first (a pool check), then the old
    // object's events arrive late from the watch.
    assert!(l.upsert_pool(&again.snap()));
    assert!(!l.upsert_pool(&old.snap()), "an earlier object of the name");
    assert!(!l.upsert_pool(&old_later.snap()));
    assert!(!l.remove_pool("p", "puid-p", old_later.resource_version));
    l.upsert_node(&node("a", &[]));
    assert_eq!(allocate(&mut l, "a"), vec![net("2001:db8:2::/64")]);
    // Once deleted, a late state of that very object stays out too.
    assert!(l.remove_pool("p", "puid-p-2", next_rv()));
    assert!(!l.upsert_pool(&again.snap()));
}

#[test]
fn a_pool_list_removes_what_it_does_not_show_unless_known_later() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("a", &["2001:db8:1::/64"]).snap());
    let b = pool("b", &["2001:db8:2::/64"]).snap();
    let list_rv = next_rv();
    // Created after the list was taken.
    l.upsert_pool(&pool("c", &["2001:db8:3::/64"]).snap());
    let removed = l.replace_pools(std::slice::from_ref(&b), list_rv);
    assert_eq!(removed, vec!["a".to_string()]);
    assert_eq!(l.pool_names(), vec!["b".to_string(), "c".to_string()]);
    // A state of a from before the list is of an object deleted since.
    let mut late_a = pool("a", &["2001:db8:1::/64"]);
    late_a.resource_version = list_rv.map(|r| r - 1);
    assert!(!l.upsert_pool(&late_a.snap()));
}

#[test]
fn pools_are_current_only_when_every_listed_revision_is_held() {
    let mut l = Ledger::new();
    let a = pool("a", &["2001:db8:1::/64"]).snap();
    l.upsert_pool(&a);
    let rev = |uid: &str, rv: Option<u64>| Revision {
        uid: uid.into(),
        rv,
    };
    let list_rv = next_rv();
    let same = vec![("a".to_string(), rev(&a.uid, a.resource_version))];
    assert!(l.pools_current(&same, list_rv));
    let newer = vec![("a".to_string(), rev(&a.uid, list_rv))];
    assert!(!l.pools_current(&newer, list_rv), "a later state of a");
    let recreated = vec![("a".to_string(), rev("other", a.resource_version))];
    assert!(!l.pools_current(&recreated, list_rv), "another object");
    assert!(!l.pools_current(&[], list_rv), "a was deleted");
    let with_b = vec![same[0].clone(), ("b".to_string(), rev("ub", list_rv))];
    assert!(!l.pools_current(&with_b, list_rv), "b is not known");
    // Held but created after the list: not a sign of being behind.
    l.upsert_pool(&pool("c", &["2001:db8:3::/64"]).snap());
    assert!(l.pools_current(&same, list_rv));
}

#[test]
fn hold_backs_survive_a_restart_through_the_status_record() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(5_000_000);
    let mut l = Ledger::new();
    l.set_time(t0);
    let mut p = pool("p", &["2001:db8::/63"]);
    p.spec.reuse_after = Some("10m".into());
    p.held_back = vec![HeldBackRecord {
        prefix: "2001:db8::/64".into(),
        node: "gone".into(),
        pending_write: false,
        retained_until: None,
        reusable_at: t0 + Duration::from_secs(600),
    }];
    l.upsert_pool(&p.snap());
    l.replace_nodes(vec![node("n", &[])], None);
    assert_eq!(allocate(&mut l, "n"), vec![net("2001:db8:0:1::/64")]);
    assert_eq!(l.pool_view("p").expect("view").held_back.len(), 1);
}

#[test]
fn retired_prefix_keeps_its_allocations() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8:1::/64"]).snap());
    l.upsert_node(&node("a", &[]));
    allocate(&mut l, "a");
    // A spec change comes with a new generation.
    let mut shrunk = pool("p", &["2001:db8:2::/64"]);
    shrunk.generation = 2;
    l.upsert_pool(&shrunk.snap());
    let v = l.pool_view("p").expect("view");
    assert!(
        v.prefixes
            .iter()
            .any(|p| p.prefix == net("2001:db8:1::/64") && p.retired && p.allocated == 1)
    );
    assert_eq!(v.allocations.len(), 1);
    gone(&mut l, "a");
    let v = l.pool_view("p").expect("view");
    assert!(
        v.prefixes.iter().all(|p| !p.retired),
        "retired prefix dropped once empty"
    );
}

/// Issue 30, seen once: a prefix added to a pool and taken out again while
/// a Node whose podCIDRs were written by hand holds space in it is retired
/// like space the operator handed out, and shown with that Node.
#[test]
fn a_prefix_taken_out_under_an_adopted_node_is_retired() {
    let mut l = Ledger::new();
    let mut p = pool("p06", &["10.66.0.0/22"]);
    p.spec.node_prefix_length = Some(24);
    l.upsert_pool(&p.snap());
    l.upsert_node(&node("n133", &["10.66.9.0/24"]));
    let mut grown = p.clone();
    grown.spec.prefixes.push("10.66.8.0/22".into());
    grown.generation = 2;
    grown.resource_version = next_rv();
    l.upsert_pool(&grown.snap());
    let mut shrunk = p.clone();
    shrunk.generation = 3;
    shrunk.resource_version = next_rv();
    l.upsert_pool(&shrunk.snap());
    let v = l.pool_view("p06").expect("view");
    assert!(
        v.prefixes
            .iter()
            .any(|x| x.prefix == net("10.66.8.0/22") && x.retired && x.allocated == 1),
        "{:?}",
        v.prefixes
    );
    assert!(
        v.allocations
            .contains(&(net("10.66.9.0/24"), "n133".into()))
    );
}
