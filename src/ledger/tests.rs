use super::*;
use crate::api::PrefixPoolSpec;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

/// resourceVersions in the order the tests make states, as the API server
/// hands them out.
fn next_rv() -> Option<u64> {
    static RV: AtomicU64 = AtomicU64::new(1);
    Some(RV.fetch_add(1, AtomicOrdering::SeqCst))
}

/// The watch's Delete event of the object the ledger holds as `name`.
fn gone(l: &mut Ledger, name: &str) -> Vec<String> {
    let uid = l.node_uid(name).unwrap_or_else(|| format!("uid-{name}"));
    l.remove_node(name, &uid, next_rv())
}

/// Node `name` registered again: a new object (UID) under the same name.
fn recreated(name: &str, incarnation: u32) -> NodeSnapshot {
    NodeSnapshot {
        uid: format!("uid-{name}-{incarnation}"),
        ..node(name, &[])
    }
}

/// A pool as the API server holds it; `snap` validates it as the
/// reconciler does before handing it to the ledger.
#[derive(Clone)]
struct TestPool {
    name: String,
    uid: String,
    resource_version: Option<u64>,
    generation: i64,
    spec: PrefixPoolSpec,
    retired: Vec<String>,
    held_back: Vec<HeldBackRecord>,
}

impl TestPool {
    fn snap(&self) -> PoolSnapshot {
        PoolSnapshot {
            name: self.name.clone(),
            uid: self.uid.clone(),
            resource_version: self.resource_version,
            generation: self.generation,
            def: crate::api::validate_spec(&self.spec),
            retired: self.retired.clone(),
            held_back: self.held_back.clone(),
        }
    }
}

fn pool(name: &str, prefixes: &[&str]) -> TestPool {
    TestPool {
        name: name.into(),
        uid: format!("puid-{name}"),
        resource_version: next_rv(),
        generation: 1,
        spec: PrefixPoolSpec {
            prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        retired: vec![],
        held_back: vec![],
    }
}

fn node(name: &str, cidrs: &[&str]) -> NodeSnapshot {
    NodeSnapshot {
        name: name.into(),
        uid: format!("uid-{name}"),
        resource_version: next_rv(),
        pod_cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn net(s: &str) -> IpNet {
    s.parse().expect("cidr")
}

/// plan + commit as the reconciler does after a successful write.
fn allocate(l: &mut Ledger, name: &str) -> Vec<IpNet> {
    match l.plan(name, Family::V6) {
        Plan::Allocate(picks) => {
            let nets: Vec<IpNet> = picks.iter().map(|(_, n)| *n).collect();
            let mut n = node(name, &[]);
            n.uid = l.node_uid(name).expect("known Node");
            n.pod_cidrs = nets.iter().map(|n| n.to_string()).collect();
            l.commit(&n);
            nets
        }
        other => panic!("expected an allocation for {name}, got {other:?}"),
    }
}

#[test]
fn lowest_free_first_and_no_duplicates() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/62"]).snap());
    for i in 0..4 {
        l.upsert_node(&node(&format!("n{i}"), &[]));
    }
    let got: Vec<IpNet> = (0..4)
        .flat_map(|i| allocate(&mut l, &format!("n{i}")))
        .collect();
    assert_eq!(
        got,
        vec![
            net("2001:db8::/64"),
            net("2001:db8:0:1::/64"),
            net("2001:db8:0:2::/64"),
            net("2001:db8:0:3::/64")
        ]
    );
    l.upsert_node(&node("n4", &[]));
    assert!(matches!(
        l.plan("n4", Family::V6),
        Plan::Wait(Wait::Exhausted { .. })
    ));
    let v = l.pool_view("p").expect("view");
    assert_eq!(
        (v.capacity, v.available, v.allocations.len(), v.waiting),
        (4, 0, 4, 1)
    );
}

#[test]
fn a_reservation_in_flight_blocks_its_prefix() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/63"]).snap());
    l.upsert_node(&node("a", &[]));
    l.upsert_node(&node("b", &[]));
    let Plan::Allocate(a) = l.plan("a", Family::V6) else {
        panic!("a")
    };
    let Plan::Allocate(b) = l.plan("b", Family::V6) else {
        panic!("b")
    };
    assert_ne!(a[0].1, b[0].1);
    // A second plan for a Node with a write in flight does nothing.
    assert_eq!(l.plan("a", Family::V6), Plan::Nothing);
    // A failed write frees the prefix again.
    l.release("a");
    l.upsert_node(&node("c", &[]));
    let Plan::Allocate(c) = l.plan("c", Family::V6) else {
        panic!("c")
    };
    assert_eq!(c[0].1, a[0].1);
}

#[test]
fn rebuild_from_nodes_adopts_and_blocks_foreign_prefixes() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/48"]).snap());
    l.replace_nodes(
        &[
            node("old", &["2001:db8::/64"]),
            node("foreign", &["2001:db8:0:100::/56"]),
            node("new", &[]),
        ],
        None,
    );
    let got = allocate(&mut l, "new");
    assert_eq!(got, vec![net("2001:db8:0:1::/64")]);
    let v = l.pool_view("p").expect("view");
    // 65536 - 1 (old) - 256 (the /56) - 1 (new)
    assert_eq!(v.available, 65536 - 258);
    assert_eq!(
        v.allocations.len(),
        3,
        "a foreign /56 inside the pool counts as its allocation too"
    );
}

#[test]
fn conflicts_are_found_and_cleared() {
    let mut l = Ledger::new();
    let mut p = pool("p", &["2001:db8::/48"]);
    p.spec.reserved = vec!["2001:db8:0:ff::/64".into()];
    l.upsert_pool(&p.snap());
    l.replace_nodes(
        &[
            node("a", &["2001:db8::/64"]),
            node("b", &["2001:db8::/56"]),
            node("r", &["2001:db8:0:ff::/64"]),
        ],
        None,
    );
    assert!(l.conflict_of("a").is_some());
    assert!(l.conflict_of("b").is_some());
    assert!(
        l.conflict_of("r")
            .expect("r")
            .iter()
            .any(|m| m.contains("reserved"))
    );
    gone(&mut l, "b");
    assert!(l.conflict_of("a").is_none(), "a no longer collides");
    assert_eq!(l.conflicted_nodes(), vec!["r".to_string()]);
}

#[test]
fn deletion_timestamp_keeps_the_prefix() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/63"]).snap());
    l.upsert_node(&node("a", &[]));
    let a = allocate(&mut l, "a");
    let mut dying = node("a", &[&a[0].to_string()]);
    dying.deleting = true;
    l.upsert_node(&dying);
    l.upsert_node(&node("b", &[]));
    assert_ne!(allocate(&mut l, "b"), a);
    l.upsert_node(&node("c", &[]));
    assert!(
        matches!(l.plan("c", Family::V6), Plan::Wait(_)),
        "a's prefix is still taken"
    );
    gone(&mut l, "a");
    assert_eq!(allocate(&mut l, "c"), a);
}

#[test]
fn priority_then_name_and_overflow_to_the_next_pool() {
    let mut l = Ledger::new();
    let mut hi = pool("zz-high", &["2001:db8:1::/64"]);
    hi.spec.node_prefix_length = Some(64);
    hi.spec.priority = 5;
    l.upsert_pool(&hi.snap());
    l.upsert_pool(&pool("b", &["2001:db8:3::/48"]).snap());
    l.upsert_pool(&pool("a", &["2001:db8:2::/48"]).snap());
    l.upsert_node(&node("n1", &[]));
    l.upsert_node(&node("n2", &[]));
    assert_eq!(allocate(&mut l, "n1"), vec![net("2001:db8:1::/64")]);
    assert_eq!(
        allocate(&mut l, "n2"),
        vec![net("2001:db8:2::/64")],
        "full high-priority pool passes to 'a' before 'b'"
    );
}

#[test]
fn dual_stack_is_all_or_nothing() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("v6", &["2001:db8::/48"]).snap());
    let mut v4 = pool("v4", &["10.0.0.0/24"]);
    v4.spec.node_prefix_length = Some(24);
    l.upsert_pool(&v4.snap());
    l.upsert_node(&node("a", &[]));
    l.upsert_node(&node("b", &[]));
    match l.plan("a", Family::V4) {
        Plan::Allocate(p) => assert_eq!(
            p.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![net("10.0.0.0/24"), net("2001:db8::/64")]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        l.plan("b", Family::V6),
        Plan::Wait(Wait::Exhausted {
            family: Family::V4,
            pools: vec!["v4".into()]
        })
    );
    let v = l.pool_view("v6").expect("view");
    assert_eq!(v.available, 65535, "nothing reserved for b");
}

#[test]
fn sticky_prefix_returns_to_the_same_name_and_reuse_waits() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut l = Ledger::new();
    l.set_time(t0);
    let mut p = pool("p", &["2001:db8::/63"]);
    p.spec.retain_for = Some("60s".into());
    p.spec.reuse_after = Some("120s".into());
    l.upsert_pool(&p.snap());
    l.upsert_node(&node("a", &[]));
    let a = allocate(&mut l, "a");
    gone(&mut l, "a");
    let hb = l.hold_backs().get(&a[0]).expect("held back");
    assert_eq!(hb.retained_until, Some(t0 + Duration::from_secs(60)));
    assert_eq!(hb.reusable_at, t0 + Duration::from_secs(120));
    // Another Node does not get it.
    l.upsert_node(&node("b", &[]));
    assert_ne!(allocate(&mut l, "b"), a);
    l.upsert_node(&node("c", &[]));
    assert!(matches!(l.plan("c", Family::V6), Plan::Wait(_)));
    // The same name within the window gets it back.
    l.set_time(t0 + Duration::from_secs(30));
    l.upsert_node(&recreated("a", 2));
    assert_eq!(allocate(&mut l, "a"), a);
    assert!(l.hold_backs().is_empty());
    // Deleted again; past retention but before reuse, the name no longer sticks.
    gone(&mut l, "a");
    l.set_time(t0 + Duration::from_secs(100));
    l.upsert_node(&recreated("a", 3));
    assert!(matches!(l.plan("a", Family::V6), Plan::Wait(_)));
    // Once reusable, anyone gets it.
    assert!(l.set_time(t0 + Duration::from_secs(30 + 121)));
    assert_eq!(allocate(&mut l, "c"), a);
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
        retained_until: None,
        reusable_at: t0 + Duration::from_secs(600),
    }];
    l.upsert_pool(&p.snap());
    l.replace_nodes(&[node("n", &[])], None);
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

/// A kubelet status patch lands just before our podCIDRs write; its watch
/// event (empty podCIDRs) arrives after our write's answer. It must not
/// take the prefix back from the Node.
#[test]
fn a_stale_event_after_the_write_answer_keeps_the_prefix_held() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/63"]).snap());
    l.upsert_node(&node("a", &[]));
    let status_patched = node("a", &[]); // rv n: kubelet's status patch
    let x = allocate(&mut l, "a"); // our write answers with rv n+1
    let change = l.upsert_node(&status_patched);
    assert!(change.stale, "the older event is recognised as stale");
    assert_eq!(l.node_prefixes("a"), x, "a still holds its prefix");
    l.upsert_node(&node("c", &[]));
    match l.plan("c", Family::V6) {
        Plan::Allocate(picks) => assert_ne!(picks[0].1, x[0], "c must not get a's prefix"),
        other => panic!("c should get the other prefix, got {other:?}"),
    }
}

/// A newer watch event (labels, InternalIP) arrives before the answer of
/// our write; the older answer must not overwrite them.
#[test]
fn an_older_write_answer_does_not_overwrite_newer_labels_and_addresses() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/48"]).snap());
    l.upsert_node(&node("a", &[]));
    let Plan::Allocate(picks) = l.plan("a", Family::V6) else {
        panic!("a gets a prefix")
    };
    let cidrs: Vec<String> = picks.iter().map(|(_, n)| n.to_string()).collect();
    let texts: Vec<&str> = cidrs.iter().map(String::as_str).collect();
    let answer = node("a", &texts); // the write's answer, rv n
    let mut later = node("a", &texts); // then kubelet adds labels and an address, rv n+1
    later.labels.insert("zone".into(), "b".into());
    later.address_families = vec![Family::V6];
    l.upsert_node(&later);
    assert!(l.commit(&answer).stale);
    let v = l.pool_view("p").expect("view");
    assert_eq!(v.unroutable, 0, "the InternalIP from the later event stays");
    assert_eq!(v.allocations.len(), 1);
    assert!(l.conflict_of("a").is_none());
    assert_eq!(l.unallocated_nodes(), Vec::<String>::new());
}

#[test]
fn podcidrs_of_an_object_never_shrink_even_unordered() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/48"]).snap());
    l.upsert_node(&node("a", &["2001:db8::/64"]));
    let mut unordered = node("a", &[]);
    unordered.resource_version = None;
    unordered.labels.insert("k".into(), "v".into());
    let change = l.upsert_node(&unordered);
    assert!(change.changed, "the labels are taken");
    assert_eq!(l.node_prefixes("a"), vec![net("2001:db8::/64")]);
    assert!(!l.is_free(&net("2001:db8::/64")));
}

#[test]
fn heartbeats_change_nothing_the_status_reads() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/48"]).snap());
    assert!(l.upsert_node(&node("a", &["2001:db8::/64"])).changed);
    let beat = l.upsert_node(&node("a", &["2001:db8::/64"]));
    assert_eq!(
        beat,
        NodeChange {
            stale: false,
            changed: false
        }
    );
}

/// A re-list taken before our writes landed must not undo them (the Node
/// watch re-lists after "too old resource version" while writes go on).
#[test]
fn a_relist_older_than_our_writes_keeps_them() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/62"]).snap());
    l.replace_nodes(&[node("a", &[]), node("b", &[])], None);
    let listed_a = node("a", &[]); // the list snapshot, taken now
    let listed_b = node("b", &[]);
    let x = allocate(&mut l, "a"); // our write lands after the snapshot
    let to_verify = l.replace_nodes(&[listed_a, listed_b], None);
    assert!(to_verify.is_empty());
    assert_eq!(l.node_prefixes("a"), x, "the later write answer wins");
    let got = allocate(&mut l, "b");
    assert_ne!(got, x);
}

#[test]
fn a_node_missing_from_the_list_is_gone_unless_it_may_be_newer() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/62"]).snap());
    l.upsert_node(&node("old", &["2001:db8::/64"]));
    let listed = node("kept", &[]);
    // Learned after the list was taken (a read answer): may be newer.
    l.upsert_node(&node("late", &["2001:db8:0:1::/64"]));
    let to_verify = l.replace_nodes(&[listed], None);
    assert_eq!(to_verify, vec!["late".to_string()]);
    assert!(
        l.node_uid("old").is_none(),
        "deleted while the watch was down"
    );
    assert!(l.is_free(&net("2001:db8::/64")));
    assert!(
        !l.is_free(&net("2001:db8:0:1::/64")),
        "kept until read back"
    );
    // A late answer about the deleted Node does not bring it back.
    l.upsert_node(&node("old", &["2001:db8::/64"]));
    assert!(l.node_uid("old").is_none());
    // The read back finds no object.
    l.remove_node_if_uid("late", "uid-late");
    assert!(l.is_free(&net("2001:db8:0:1::/64")));
}

#[test]
fn a_deleted_node_stays_deleted_and_a_new_object_of_its_name_is_new() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/63"]).snap());
    l.upsert_node(&node("a", &[]));
    let stale_read = node("a", &["2001:db8::/64"]);
    gone(&mut l, "a");
    assert!(
        l.upsert_node(&stale_read).stale,
        "a read from before the delete"
    );
    assert!(l.node_uid("a").is_none());
    l.upsert_node(&recreated("a", 2));
    assert_eq!(l.node_uid("a").as_deref(), Some("uid-a-2"));
    // The Delete of the old object arriving late leaves the new one alone.
    assert!(l.remove_node("a", "uid-a", next_rv()).is_empty());
    assert_eq!(l.node_uid("a").as_deref(), Some("uid-a-2"));
}

#[test]
fn a_later_object_of_the_same_name_replaces_the_held_one() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/63"]).snap());
    l.upsert_node(&node("a", &["2001:db8::/64"]));
    // The Delete was missed; the new object's state arrives.
    let change = l.upsert_node(&recreated("a", 2));
    assert!(change.changed);
    assert!(
        l.is_free(&net("2001:db8::/64")),
        "the old object's prefix is freed"
    );
    assert!(l.upsert_node(&node("a", &["2001:db8::/64"])).stale);
}

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
fn waiting_counts_come_from_state() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/64"]).snap());
    let mut v4 = pool("v4", &["10.0.0.0/24"]);
    v4.spec.node_prefix_length = Some(24);
    l.upsert_pool(&v4.snap());
    for n in ["a", "b", "c"] {
        l.upsert_node(&node(n, &[]));
    }
    // Nothing planned yet: the pools have space, nobody waits.
    assert_eq!(l.pool_view("p").expect("view").waiting, 0);
    allocate(&mut l, "a");
    // Both pools are full now: b and c wait on both, whether planned or not.
    let views: BTreeMap<String, PoolView> = l.pool_views().into_iter().collect();
    assert_eq!((views["p"].waiting, views["v4"].waiting), (2, 2));
    gone(&mut l, "b");
    let mut c = node("c", &[]);
    c.uid = l.node_uid("c").expect("c");
    c.labels.insert("x".into(), "y".into());
    l.upsert_node(&c);
    assert_eq!(l.pool_view("p").expect("view").waiting, 1);
    gone(&mut l, "a");
    assert_eq!(l.pool_view("p").expect("view").waiting, 0, "space again");
}

#[test]
fn an_unknown_write_found_not_landed_keeps_its_prefix_back_for_a_while() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(7_000_000);
    let mut l = Ledger::new();
    l.set_time(t0);
    l.upsert_pool(&pool("p", &["2001:db8::/63"]).snap());
    l.upsert_node(&node("w", &[]));
    let Plan::Allocate(picks) = l.plan("w", Family::V6) else {
        panic!("w")
    };
    let x = picks[0].1;
    // The read shows w still empty (a later state of it).
    l.upsert_node(&node("w", &[]));
    let until = t0 + Duration::from_secs(120);
    assert!(
        l.settle_unknown("w", "uid-w", &picks, until),
        "plan w again"
    );
    assert!(!l.is_free(&x), "a request still in the server may land");
    l.upsert_node(&node("x", &[]));
    match l.plan("x", Family::V6) {
        Plan::Allocate(p) => assert_ne!(p[0].1, x),
        other => panic!("{other:?}"),
    }
    assert!(l.set_time(until));
    assert!(l.is_free(&x));
}

#[test]
fn an_unknown_write_found_landed_or_gone_just_drops_the_reservation() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/63"]).snap());
    l.upsert_node(&node("w", &[]));
    let Plan::Allocate(picks) = l.plan("w", Family::V6) else {
        panic!("w")
    };
    let texts: Vec<String> = picks.iter().map(|(_, n)| n.to_string()).collect();
    l.upsert_node(&node("w", &[texts[0].as_str()])); // the read: it landed
    assert!(!l.settle_unknown("w", "uid-w", &picks, SystemTime::UNIX_EPOCH));
    assert!(l.hold_backs().is_empty());
    assert!(!l.is_free(&picks[0].1), "w holds it");
    // Unlabelled meanwhile does not matter: what landed is held.
    l.upsert_node(&node("v", &[]));
    let Plan::Allocate(vp) = l.plan("v", Family::V6) else {
        panic!("v")
    };
    gone(&mut l, "v");
    assert!(!l.settle_unknown("v", "uid-v", &vp, SystemTime::UNIX_EPOCH));
    assert!(l.is_free(&vp[0].1));
}

/// A list with its resourceVersion: what no list held is older than it.
#[test]
fn after_a_list_a_state_older_than_it_of_an_unlisted_name_is_stale() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/62"]).snap());
    let read_before = node("ghost", &["2001:db8::/64"]); // an old read
    let list_rv = next_rv();
    l.replace_nodes(&[node("a", &[])], list_rv);
    assert!(
        l.upsert_node(&read_before).stale,
        "ghost had no object at the list"
    );
    assert!(l.is_free(&net("2001:db8::/64")));
    assert!(
        !l.upsert_node(&node("new", &[])).stale,
        "created after the list"
    );
}

#[test]
fn a_list_older_than_one_merged_is_ignored() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/62"]).snap());
    let old = vec![node("a", &[]), node("b", &[])];
    let old_rv = next_rv();
    let newer = vec![node("a", &["2001:db8::/64"])];
    let newer_rv = next_rv();
    l.replace_nodes(&newer, newer_rv);
    l.replace_nodes(&old, old_rv);
    assert!(
        l.node_uid("b").is_none(),
        "b was deleted before the newer list"
    );
    assert_eq!(l.node_prefixes("a"), vec![net("2001:db8::/64")]);
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
