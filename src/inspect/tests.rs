//! The status table and whois, from made-up pools, Nodes and Events.

use super::*;
use crate::api::{PrefixPoolSpec, PrefixPoolStatus};
use crate::k8s::nodes::{ALLOCATED_AT_ANNOTATION, POOLS_ANNOTATION};
use k8s_openapi::api::core::v1::{Node, NodeSpec, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

fn pool(name: &str, prefixes: &[&str], reserved: &[&str]) -> PrefixPool {
    let mut p = PrefixPool::new(
        name,
        PrefixPoolSpec {
            prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
            reserved: reserved.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    );
    p.status = Some(PrefixPoolStatus {
        family: Some("IPv6".into()),
        capacity: Some("65536".into()),
        allocated: Some(1),
        available: Some("65534".into()),
        used: Some("<0.1%".into()),
        waiting: Some(3),
        waiting_nodes: vec!["w1".into(), "w2".into()],
        ..Default::default()
    });
    p
}

fn node(name: &str, cidr: &str) -> Node {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.metadata.uid = Some(format!("uid-{name}"));
    n.spec = Some(NodeSpec {
        pod_cidrs: Some(vec![cidr.into()]),
        ..Default::default()
    });
    n
}

fn allocated(node: &str, uid: &str, second: i64) -> Event {
    Event {
        reason: Some("PrefixAllocated".into()),
        regarding: Some(ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.into()),
            uid: Some(uid.into()),
            ..Default::default()
        }),
        event_time: Some(MicroTime(
            k8s_openapi::jiff::Timestamp::from_second(second).expect("time"),
        )),
        ..Default::default()
    }
}

#[test]
fn status_shows_usage_and_names_the_waiting_nodes() {
    let t = status_table(&[pool("gua", &["2001:db8:42::/48"], &[])]);
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
}

#[test]
fn whois_finds_the_node_the_time_and_the_pool() {
    let pools = [pool("gua", &["2001:db8:42::/48"], &["2001:db8:42::/64"])];
    let nodes = [
        node("worker-1", "2001:db8:42:1::/64"),
        node("hand", "2001:db8:42:2::/64"),
    ];
    let events = [
        allocated("worker-1", "uid-worker-1", 1_800_000_000),
        // An earlier object of the same name: not this Node's.
        allocated("hand", "uid-old", 1_700_000_000),
    ];
    let q: Query = "2001:db8:42:1::5".parse().expect("query");
    let (t, found) = whois(&q, &nodes, &pools, &events);
    assert!(found);
    assert!(
        t.contains("2001:db8:42:1::/64: Node worker-1 (uid uid-worker-1), allocated at 2027-01-15T08:00:00Z, PrefixPool gua (2001:db8:42::/48)"),
        "{t}"
    );
    let (t, _) = whois(
        &"2001:db8:42::/56".parse().expect("q"),
        &nodes,
        &pools,
        &events,
    );
    assert!(
        t.contains("Node worker-1") && t.contains("Node hand"),
        "a prefix finds every Node inside it: {t}"
    );
    assert!(t.contains("allocation time unknown"), "{t}");
    let (t, found) = whois(
        &"2001:db8:42::1".parse().expect("q"),
        &nodes,
        &pools,
        &events,
    );
    assert!(!found);
    assert!(
        t.contains("held by no Node; in PrefixPool gua (2001:db8:42::/48) (a reserved range)"),
        "{t}"
    );
    let (t, _) = whois(
        &"2001:db8:99::1".parse().expect("q"),
        &nodes,
        &pools,
        &events,
    );
    assert!(t.contains("in no PrefixPool"), "{t}");
    assert!("nonsense".parse::<Query>().is_err());

    // The annotations the write leaves on the Node outlive the Event.
    let mut annotated = node("worker-3", "2001:db8:42:3::/64");
    annotated.metadata.annotations = Some(
        [
            (POOLS_ANNOTATION.to_string(), "gua".to_string()),
            (
                ALLOCATED_AT_ANNOTATION.to_string(),
                "2026-12-03T07:00:00Z".to_string(),
            ),
        ]
        .into(),
    );
    let (t, found) = whois(
        &"2001:db8:42:3::/64".parse().expect("q"),
        &[annotated],
        &pools,
        &[],
    );
    assert!(found);
    assert!(
        t.contains("Node worker-3 (uid uid-worker-3), allocated at 2026-12-03T07:00:00Z, PrefixPool gua (2001:db8:42::/48) (the Node's ipam.prefix-operator.io/pools: gua)"),
        "{t}"
    );
}
