//! PrefixClaims in the ledger: carved from the same free space as Nodes,
//! never overlapping anything, write-once, freed only when the object goes.

use super::*;
use crate::api::{IpFamily, PrefixClaimSpec, Purpose};

pub(super) fn claim(name: &str, len: i32, pool: &str, prefix: Option<&str>) -> ClaimSnapshot {
    let spec = PrefixClaimSpec {
        pool: Some(pool.into()),
        pool_selector: None,
        ip_family: IpFamily::IPv6,
        prefix_length: len,
        purpose: Purpose::Static,
    };
    ClaimSnapshot {
        name: name.into(),
        uid: format!("cuid-{name}"),
        resource_version: next_rv(),
        generation: 1,
        def: crate::api::validate_claim(&spec),
        prefix: prefix.map(str::to_string),
        pool: prefix.map(|_| pool.to_string()),
        deleting: false,
        finalized: true,
    }
}

/// Plans claim `name` and commits the bind as the API server would answer.
fn bind(l: &mut Ledger, c: &ClaimSnapshot) -> Option<IpNet> {
    l.upsert_claim(c);
    match l.plan_claim(&c.name) {
        ClaimPlan::Bind { pool, prefix } => {
            let written = ClaimSnapshot {
                resource_version: next_rv(),
                prefix: Some(prefix.to_string()),
                pool: Some(pool),
                ..c.clone()
            };
            l.commit_claim(&written);
            Some(prefix)
        }
        _ => None,
    }
}

#[test]
fn claims_and_nodes_share_free_space_without_overlap() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/60"]).snap());
    l.upsert_node(&node("n0", &[]));
    assert_eq!(allocate(&mut l, "n0"), vec![net("2001:db8::/64")]);
    // A /62 needs four aligned free /64s: the first block holds n0.
    let a = bind(&mut l, &claim("a", 62, "p", None)).expect("room");
    assert_eq!(a, net("2001:db8:0:4::/62"));
    // A /112 takes a whole /64 of its own.
    let b = bind(&mut l, &claim("b", 112, "p", None)).expect("room");
    assert_eq!(b, net("2001:db8:0:1::/112"));
    for n in ["n1", "n2"] {
        l.upsert_node(&node(n, &[]));
    }
    let n1 = allocate(&mut l, "n1");
    let n2 = allocate(&mut l, "n2");
    assert_eq!(
        (n1[0], n2[0]),
        (net("2001:db8:0:2::/64"), net("2001:db8:0:3::/64"))
    );
    let v = l.pool_view("p").expect("view");
    assert_eq!(v.claims.len(), 2);
    assert_eq!(v.allocations.len(), 3);
    // 16 slots: 3 Nodes, 4 for a, 1 for b.
    assert_eq!(v.available, 16 - 3 - 4 - 1);
    assert!(!l.is_free(&net("2001:db8:0:1:ffff::/80")));
}

#[test]
fn a_stale_state_without_the_prefix_keeps_it_and_deletion_frees_it() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/62"]).snap());
    let unbound = claim("c", 63, "p", None);
    let p = bind(&mut l, &unbound).expect("room");
    // The watch's event of the unbound state arrives late: ignored, and
    // a later state that lost the prefix (a wiped status) keeps it.
    assert!(!l.upsert_claim(&unbound));
    let wiped = ClaimSnapshot {
        resource_version: next_rv(),
        ..unbound.clone()
    };
    l.upsert_claim(&wiped);
    assert_eq!(l.claim_state("c").and_then(|s| s.prefix), Some(p));
    // Deleting (finalizer still on) keeps it; the object gone frees it.
    let deleting = ClaimSnapshot {
        resource_version: next_rv(),
        deleting: true,
        ..wiped
    };
    l.upsert_claim(&deleting);
    assert!(!l.is_free(&p));
    assert!(l.remove_claim("c", "cuid-c", next_rv()));
    assert!(l.is_free(&p));
    // A late event of the deleted object does not bring it back.
    l.upsert_claim(&deleting);
    assert!(l.claim_state("c").is_none());
}

#[test]
fn exhaustion_waits_and_a_reservation_blocks_nodes() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/63"]).snap());
    l.upsert_node(&node("n0", &[]));
    allocate(&mut l, "n0");
    let c = claim("big", 63, "p", None);
    l.upsert_claim(&c);
    assert_eq!(
        l.plan_claim("big"),
        ClaimPlan::Wait(ClaimWait::Exhausted {
            pools: vec!["p".into()]
        })
    );
    let small = claim("small", 64, "p", None);
    l.upsert_claim(&small);
    let ClaimPlan::Bind { prefix, .. } = l.plan_claim("small") else {
        panic!("room for a /64")
    };
    // Reserved while the status write is in flight: no Node gets it.
    l.upsert_node(&node("n1", &[]));
    assert!(matches!(l.plan("n1", Family::V6), Plan::Wait(_)));
    // The write failed: released, and the Node fits.
    assert!(l.release_claim("small"));
    assert_eq!(allocate(&mut l, "n1"), vec![prefix]);
    // A named pool that does not exist, or of the other family, says so.
    l.upsert_claim(&claim("lost", 64, "nope", None));
    assert!(
        matches!(l.plan_claim("lost"), ClaimPlan::Wait(ClaimWait::NoPool(m)) if m.contains("does not exist"))
    );
}

#[test]
fn a_node_written_into_a_claim_is_in_conflict_and_the_claim_says_so() {
    let mut l = Ledger::new();
    l.upsert_pool(&pool("p", &["2001:db8::/60"]).snap());
    let p = bind(&mut l, &claim("c", 64, "p", None)).expect("room");
    l.upsert_node(&node("hand", &[&p.to_string()]));
    assert!(l.conflicted_nodes().contains(&"hand".to_string()));
    let why = l.claim_conflicts("c");
    assert!(why.iter().any(|w| w.contains("Node hand")), "{why:?}");
}

#[test]
fn claims_select_pools_by_label_and_priority() {
    let mut l = Ledger::new();
    let mut low = pool("low", &["2001:db8:1::/48"]).snap();
    low.labels = [("tier".to_string(), "svc".to_string())].into();
    let mut high = pool("high", &["2001:db8:2::/48"]);
    high.spec.priority = 10;
    let mut high = high.snap();
    high.labels = low.labels.clone();
    l.upsert_pool(&low);
    l.upsert_pool(&high);
    l.upsert_pool(&pool("other", &["2001:db8:3::/48"]).snap());
    let spec = PrefixClaimSpec {
        pool: None,
        pool_selector: Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some([("tier".to_string(), "svc".to_string())].into()),
                ..Default::default()
            },
        ),
        ip_family: IpFamily::IPv6,
        prefix_length: 112,
        purpose: Purpose::ServiceCIDR,
    };
    let c = ClaimSnapshot {
        def: crate::api::validate_claim(&spec),
        ..claim("sel", 112, "x", None)
    };
    l.upsert_claim(&c);
    assert_eq!(
        l.plan_claim("sel"),
        ClaimPlan::Bind {
            pool: "high".into(),
            prefix: net("2001:db8:2::/112")
        }
    );
}
