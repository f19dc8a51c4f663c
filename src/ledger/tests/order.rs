//! States applied in the API server's order: stale events, late answers,
//! lists, deletions and re-creations.

use super::*;

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
    l.replace_nodes(vec![node("a", &[]), node("b", &[])], None);
    let listed_a = node("a", &[]); // the list snapshot, taken now
    let listed_b = node("b", &[]);
    let x = allocate(&mut l, "a"); // our write lands after the snapshot
    let to_verify = l.replace_nodes(vec![listed_a, listed_b], None);
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
    let to_verify = l.replace_nodes(vec![listed], None);
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

/// A ledger at `t0` where w's write of its first pick had an unknown outcome
/// and a read found it not landed: the pick is held back until `t0 + 120 s`.
fn unknown_write_not_landed(t0: SystemTime) -> (Ledger, IpNet) {
    let mut l = Ledger::new();
    l.set_time(t0);
    l.upsert_pool(&pool("p", &["2001:db8::/63"]).snap());
    l.upsert_node(&node("w", &[]));
    let Plan::Allocate(picks) = l.plan("w", Family::V6) else {
        panic!("w")
    };
    // The read shows w still empty (a later state of it).
    l.upsert_node(&node("w", &[]));
    assert!(
        l.settle_unknown("w", "uid-w", &picks, t0 + Duration::from_secs(120)),
        "plan w again"
    );
    (l, picks[0].1)
}

#[test]
fn an_unknown_write_found_not_landed_keeps_its_prefix_back_for_a_while() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(7_000_000);
    let (mut l, x) = unknown_write_not_landed(t0);
    let until = t0 + Duration::from_secs(120);
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
fn a_pending_write_hold_back_ends_once_its_node_holds_other_prefixes() {
    let (mut l, x) =
        unknown_write_not_landed(SystemTime::UNIX_EPOCH + Duration::from_secs(7_000_000));
    assert!(!l.is_free(&x));
    assert!(!l.take_freed());
    // w is planned again and its second write lands with the other prefix:
    // the first write can no longer land (podCIDRs are write-once).
    let Plan::Allocate(again) = l.plan("w", Family::V6) else {
        panic!("w again")
    };
    assert_ne!(again[0].1, x);
    let y = again[0].1.to_string();
    l.commit(&node("w", &[y.as_str()]));
    assert!(l.is_free(&x), "long before the grace ends");
    assert!(l.take_freed(), "and the waiting Nodes are told");
    assert!(l.hold_backs().is_empty());
}

#[test]
fn a_pending_write_hold_back_ends_when_its_node_is_gone() {
    let (mut l, x) = unknown_write_not_landed(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
    assert!(!l.is_free(&x));
    gone(&mut l, "w");
    assert!(l.is_free(&x), "the write tests w's UID");
}

#[test]
fn a_restored_pending_write_hold_back_is_dropped_when_its_node_holds_prefixes() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(5_000);
    let mut l = Ledger::new();
    l.set_time(t0);
    l.upsert_node(&node("w", &["2001:db8:0:1::/64"]));
    let mut p = pool("p", &["2001:db8::/63"]);
    p.held_back = vec![HeldBackRecord {
        prefix: "2001:db8::/64".into(),
        node: "w".into(),
        pending_write: true,
        retained_until: None,
        reusable_at: t0 + Duration::from_secs(100),
    }];
    l.upsert_pool(&p.snap());
    assert!(l.hold_backs().is_empty());
    assert!(l.is_free(&net("2001:db8::/64")));
    // A deleted Node's hold-back of the same shape stays.
    let mut q = pool("q", &["2001:db8:1::/63"]);
    q.held_back = vec![HeldBackRecord {
        prefix: "2001:db8:1::/64".into(),
        node: "w".into(),
        pending_write: false,
        retained_until: None,
        reusable_at: t0 + Duration::from_secs(100),
    }];
    l.upsert_pool(&q.snap());
    assert!(!l.is_free(&net("2001:db8:1::/64")));
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
    l.replace_nodes(vec![node("a", &[])], list_rv);
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
    l.replace_nodes(newer, newer_rv);
    l.replace_nodes(old, old_rv);
    assert!(
        l.node_uid("b").is_none(),
        "b was deleted before the newer list"
    );
    assert_eq!(l.node_prefixes("a"), vec![net("2001:db8::/64")]);
}
