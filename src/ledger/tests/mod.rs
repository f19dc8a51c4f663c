use super::*;
use crate::api::PrefixPoolSpec;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

/// resourceVersions in the order the tests make states, as the API server
/// hands them out.
pub(super) fn next_rv() -> Option<u64> {
    static RV: AtomicU64 = AtomicU64::new(1);
    Some(RV.fetch_add(1, AtomicOrdering::SeqCst))
}

/// The watch's Delete event of the object the ledger holds as `name`.
pub(super) fn gone(l: &mut Ledger, name: &str) -> Vec<String> {
    let uid = l.node_uid(name).unwrap_or_else(|| format!("uid-{name}"));
    l.remove_node(name, &uid, next_rv())
}

/// Node `name` registered again: a new object (UID) under the same name.
pub(super) fn recreated(name: &str, incarnation: u32) -> NodeSnapshot {
    NodeSnapshot {
        uid: format!("uid-{name}-{incarnation}"),
        ..node(name, &[])
    }
}

/// A pool as the API server holds it; `snap` validates it as the
/// reconciler does before handing it to the ledger.
#[derive(Clone)]
pub(super) struct TestPool {
    pub(super) name: String,
    pub(super) uid: String,
    pub(super) resource_version: Option<u64>,
    pub(super) generation: i64,
    pub(super) spec: PrefixPoolSpec,
    pub(super) retired: Vec<String>,
    pub(super) held_back: Vec<HeldBackRecord>,
}

impl TestPool {
    pub(super) fn snap(&self) -> PoolSnapshot {
        PoolSnapshot {
            name: self.name.clone(),
            uid: self.uid.clone(),
            resource_version: self.resource_version,
            generation: self.generation,
            def: crate::api::validate_spec(&self.spec),
            retired: self.retired.clone(),
            held_back: self.held_back.clone(),
            labels: Default::default(),
            delegation: None,
        }
    }
}

pub(super) fn pool(name: &str, prefixes: &[&str]) -> TestPool {
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

pub(super) fn node(name: &str, cidrs: &[&str]) -> NodeSnapshot {
    NodeSnapshot {
        name: name.into(),
        uid: format!("uid-{name}"),
        resource_version: next_rv(),
        pod_cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub(super) fn net(s: &str) -> IpNet {
    s.parse().expect("cidr")
}

/// plan + commit as the reconciler does after a successful write.
pub(super) fn allocate(l: &mut Ledger, name: &str) -> Vec<IpNet> {
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

mod addresses;
mod claims;
mod grace;
mod order;
mod pools;
mod records;
mod services;

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
        vec![
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
        vec![
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
    assert_eq!(views["p"].waiting_nodes, vec!["b", "c"]);
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
fn waiting_nodes_are_the_first_names_and_bounded() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/64"]).snap());
    l.upsert_node(&node("first", &[]));
    allocate(&mut l, "first");
    let n = crate::ledger::MAX_WAITING_NAMES + 20;
    // Inserted in reverse name order: the bound keeps the lowest names.
    for i in (0..n).rev() {
        l.upsert_node(&node(&format!("w{i:03}"), &[]));
    }
    let v = l.pool_view("p").expect("view");
    assert_eq!(v.waiting, n as u64);
    let expected: Vec<String> = (0..crate::ledger::MAX_WAITING_NAMES)
        .map(|i| format!("w{i:03}"))
        .collect();
    assert_eq!(v.waiting_nodes, expected);
}
