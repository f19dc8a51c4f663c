//! The operator's core job against a real API server: each test starts its
//! own control plane (an operator sees every Node, so two must not share one).

use prefix_operator_testsupport as support;

#[path = "operator/admin_view.rs"]
mod admin_view;

use std::collections::HashSet;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use prefix_operator::api::{PrefixPool, PrefixPoolSpec};
use support::*;

fn net(s: &str) -> IpNet {
    s.parse().expect("cidr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocates_distinct_prefixes_with_selection_priority_and_reservations() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(
        &client,
        "gua",
        PrefixPoolSpec {
            reserved: vec!["2001:db8:1::/64".into()],
            ..pool_spec(&["2001:db8:1::/48"])
        },
    )
    .await;
    create_pool(
        &client,
        "ula-edge",
        PrefixPoolSpec {
            node_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("tier", "edge")])),
                ..Default::default()
            }),
            priority: 10,
            node_prefix_length: Some(56),
            ..pool_spec(&["fd12:3456:789a::/48"])
        },
    )
    .await;
    let op = Operator::default(&client).await;
    for i in 0..6 {
        create_node(&client, &format!("worker-{i}"), labels(&[]), &[]).await;
    }
    create_node(&client, "edge-0", labels(&[("tier", "edge")]), &[]).await;

    let mut seen = HashSet::new();
    for i in 0..6 {
        let c = wait_pod_cidrs(&client, &format!("worker-{i}")).await;
        assert_eq!(c.len(), 1);
        let n = net(&c[0]);
        assert_eq!(n.prefix_len(), 64);
        assert!(net("2001:db8:1::/48").contains(&n));
        assert_ne!(n, net("2001:db8:1::/64"), "reserved range handed out");
        assert!(seen.insert(n), "duplicate {n}");
        // podCIDR mirrors podCIDRs[0] in canonical text.
        let node = Api::<Node>::all(client.clone())
            .get(&format!("worker-{i}"))
            .await
            .expect("get");
        assert_eq!(
            node.spec.and_then(|s| s.pod_cidr).as_deref(),
            Some(c[0].as_str())
        );
        assert_eq!(c[0], n.to_string());
    }
    // Lowest free first, skipping the reserved /64.
    assert!(seen.contains(&net("2001:db8:1:1::/64")));
    assert!(seen.contains(&net("2001:db8:1:6::/64")));

    // The edge node matches both pools; the higher priority wins.
    let edge = wait_pod_cidrs(&client, "edge-0").await;
    assert_eq!(edge, vec!["fd12:3456:789a::/56".to_string()]);

    let p = wait_pool(&client, "gua", "6 allocated", |p| {
        p.status.as_ref().and_then(|s| s.allocated) == Some(6)
    })
    .await;
    let st = p.status.expect("status");
    assert_eq!(st.family.as_deref(), Some("IPv6"));
    assert_eq!(st.scope.as_deref(), Some("GlobalUnicast"));
    assert_eq!(st.capacity.as_deref(), Some("65536"));
    assert_eq!(
        st.available.as_deref(),
        Some("65529"),
        "65536 - 6 allocated - 1 reserved"
    );
    assert_eq!(st.used.as_deref(), Some("<0.1%"), "7 of 65536 not free");
    assert_eq!(st.allocations.len(), 6);
    let mut sorted = st.allocations.clone();
    sorted.sort_by_key(|a| net(&a.prefix));
    assert_eq!(st.allocations, sorted, "allocations sorted by prefix");
    assert_eq!(condition_status(&client, "gua", "Ready").await, "True");
    let ula = wait_pool(&client, "ula-edge", "1 allocated", |p| {
        p.status.as_ref().and_then(|s| s.allocated) == Some(1)
    })
    .await;
    assert_eq!(
        ula.status.and_then(|s| s.scope).as_deref(),
        Some("UniqueLocal")
    );

    // A Normal Event on each allocated Node.
    wait_event(&client, "worker-0", "PrefixAllocated").await;

    admin_view::as_an_admin_sees_it(&cp, &client).await;
    op.stop().await;
}

async fn condition_status(client: &kube::Client, pool: &str, type_: &str) -> String {
    let p: PrefixPool = Api::all(client.clone()).get(pool).await.expect("pool");
    condition(&p, type_)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_preset_prefixes_and_reports_conflicts() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    // Written by someone else before the operator starts.
    create_node(&client, "preset", labels(&[]), &["2001:db8:2::/64"]).await;
    create_node(&client, "clash-a", labels(&[]), &["2001:db8:2:5::/64"]).await;
    create_node(&client, "clash-b", labels(&[]), &["2001:db8:2::/56"]).await;
    create_node(&client, "on-reserved", labels(&[]), &["2001:db8:2:ff::/64"]).await;
    create_pool(
        &client,
        "pool",
        PrefixPoolSpec {
            reserved: vec!["2001:db8:2:ff::/64".into()],
            ..pool_spec(&["2001:db8:2::/48"])
        },
    )
    .await;
    let op = Operator::default(&client).await;
    create_node(&client, "fresh", labels(&[]), &[]).await;
    let fresh = wait_pod_cidrs(&client, "fresh").await;
    // The /56 of clash-b blocks 2001:db8:2::/64 .. 2001:db8:2:ff::/64: the first free is :100::.
    assert_eq!(fresh, vec!["2001:db8:2:100::/64".to_string()]);
    let p = wait_pool(&client, "pool", "conflict shown", |p| {
        condition(p, "Conflict").is_some_and(|c| c.status == "True")
    })
    .await;
    let st = p.status.expect("status");
    let conflicted: HashSet<&str> = st.conflicts.iter().map(|c| c.node.as_str()).collect();
    for n in ["preset", "clash-a", "clash-b", "on-reserved"] {
        assert!(
            conflicted.contains(n),
            "{n} not reported in {:?}",
            st.conflicts
        );
    }
    assert!(
        st.conflicts
            .iter()
            .any(|c| c.node == "on-reserved" && c.reason.contains("reserved")),
        "{:?}",
        st.conflicts
    );
    // Adopted as they are: nothing rewritten.
    assert_eq!(pod_cidrs(&client, "preset").await, vec!["2001:db8:2::/64"]);
    assert_eq!(pod_cidrs(&client, "clash-b").await, vec!["2001:db8:2::/56"]);
    wait_event(&client, "clash-a", "PrefixConflict").await;
    // A second pool over part of the first: a Warning on each, and the
    // Conflict condition names the other.
    create_pool(&client, "inner", pool_spec(&["2001:db8:2:8000::/49"])).await;
    wait_event(&client, "inner", "PoolOverlap").await;
    wait_event(&client, "pool", "PoolOverlap").await;
    wait_pool(&client, "inner", "overlap shown", |p| {
        condition(p, "Conflict")
            .is_some_and(|c| c.status == "True" && c.message.contains("PrefixPool(s) pool"))
    })
    .await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhaustion_growth_retirement_and_pool_recreation() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    // Two /64s in a /63.
    create_pool(
        &client,
        "small",
        PrefixPoolSpec {
            ..pool_spec(&["2001:db8:3::/63"])
        },
    )
    .await;
    let op = Operator::default(&client).await;
    for n in ["a", "b", "c"] {
        create_node(&client, n, labels(&[]), &[]).await;
    }
    wait_pod_cidrs(&client, "a").await;
    wait_pod_cidrs(&client, "b").await;
    let p = wait_pool(&client, "small", "Exhausted", |p| {
        condition(p, "Exhausted").is_some_and(|c| c.status == "True")
            && p.status.as_ref().and_then(|s| s.waiting) == Some(1)
    })
    .await;
    assert_eq!(
        p.status.as_ref().and_then(|s| s.available.as_deref()),
        Some("0")
    );
    assert_eq!(
        p.status.as_ref().and_then(|s| s.used.as_deref()),
        Some("100%")
    );
    assert_eq!(
        p.status.as_ref().map(|s| s.waiting_nodes.clone()),
        Some(vec!["c".to_string()]),
        "the waiting Node is named"
    );
    assert!(pod_cidrs(&client, "c").await.is_empty(), "c must wait");
    wait_event(&client, "c", "PoolExhausted").await;

    // Growth: a new prefix serves the waiting Node without a restart.
    let pools: Api<PrefixPool> = Api::all(client.clone());
    pools
        .patch(
            "small",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"prefixes": ["2001:db8:3::/63", "2001:db8:4::/64"]}}),
            ),
        )
        .await
        .expect("grow");
    assert_eq!(
        wait_pod_cidrs(&client, "c").await,
        vec!["2001:db8:4::/64".to_string()]
    );
    wait_pool(&client, "small", "c served, nobody waits", |p| {
        condition(p, "Exhausted").is_some_and(|c| c.status == "True")
            && p.status.as_ref().and_then(|s| s.waiting).is_none()
            && p.status.as_ref().and_then(|s| s.allocated) == Some(3)
    })
    .await;

    // Removing a prefix keeps its allocations, gives no new ones, and says so.
    pools
        .patch(
            "small",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"prefixes": ["2001:db8:4::/64", "2001:db8:5::/64"]}}),
            ),
        )
        .await
        .expect("shrink");
    let p = wait_pool(&client, "small", "retired prefix shown", |p| {
        p.status.as_ref().is_some_and(|s| {
            s.prefixes
                .iter()
                .any(|x| x.prefix == "2001:db8:3::/63" && x.retired && x.allocated == 2)
        })
    })
    .await;
    let ready = condition(&p, "Ready").expect("Ready");
    assert!(
        ready.message.contains("2001:db8:3::/63"),
        "{}",
        ready.message
    );
    create_node(&client, "d", labels(&[]), &[]).await;
    assert_eq!(
        wait_pod_cidrs(&client, "d").await,
        vec!["2001:db8:5::/64".to_string()]
    );
    assert_eq!(pod_cidrs(&client, "a").await.len(), 1);

    // Deleting the pool leaves the Nodes' prefixes; re-creating adopts them.
    pools
        .delete("small", &DeleteParams::default())
        .await
        .expect("delete pool");
    wait_gone(&pools, "small").await;
    assert_eq!(pod_cidrs(&client, "c").await, vec!["2001:db8:4::/64"]);
    create_pool(
        &client,
        "small",
        pool_spec(&["2001:db8:3::/63", "2001:db8:4::/64", "2001:db8:5::/64"]),
    )
    .await;
    let p = wait_pool(&client, "small", "adopted 4", |p| {
        p.status.as_ref().and_then(|s| s.allocated) == Some(4)
    })
    .await;
    assert_eq!(p.status.and_then(|s| s.available).as_deref(), Some("0"));
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frees_only_when_the_node_is_gone_and_survives_restarts() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "p", pool_spec(&["2001:db8:6::/48"])).await;
    let op = Operator::default(&client).await;
    let nodes: Api<Node> = Api::all(client.clone());
    create_node(&client, "held", labels(&[]), &[]).await;
    nodes
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": ["example.com/hold"]}})),
        )
        .await
        .expect("add finalizer");
    let held = wait_pod_cidrs(&client, "held").await;
    assert_eq!(held, vec!["2001:db8:6::/64".to_string()]);
    nodes
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    // The Node lingers with a deletion timestamp: its prefix stays taken.
    create_node(&client, "next", labels(&[]), &[]).await;
    assert_eq!(
        wait_pod_cidrs(&client, "next").await,
        vec!["2001:db8:6:1::/64".to_string()]
    );
    // Once it is gone, the lowest prefix is free again.
    nodes
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("drop finalizer");
    wait_gone(&nodes, "held").await;
    create_node(&client, "after", labels(&[]), &[]).await;
    assert_eq!(
        wait_pod_cidrs(&client, "after").await,
        vec!["2001:db8:6::/64".to_string()]
    );

    // A burst, with the operator killed mid-way and restarted: no duplicates,
    // every allocation kept, and far fewer status writes than allocations.
    let burst: Vec<String> = (0..300).map(|i| format!("burst-{i:03}")).collect();
    let creator = {
        let client = client.clone();
        let burst = burst.clone();
        tokio::spawn(async move {
            for n in &burst {
                create_node(&client, n, labels(&[]), &[]).await;
            }
        })
    };
    wait_allocated(&client, None, Some(50), Duration::from_secs(30)).await;
    let status_writes_before_kill = op.metrics.status_writes.get();
    op.kill();
    let op = Operator::default(&client).await;
    creator.await.expect("creator");
    let list = wait_allocated(&client, None, None, Duration::from_secs(60)).await;
    assert_eq!(list.len(), 302, "300 burst + next + after");
    assert!(list.iter().all(|n| node_cidrs(n).len() == 1));
    assert_disjoint(&list);
    wait_pool(&client, "p", "302 allocated", |p| {
        p.status.as_ref().and_then(|s| s.allocated) == Some(302)
    })
    .await;
    let writes = status_writes_before_kill + op.metrics.status_writes.get();
    assert!(writes < 100, "{writes} status writes for 302 allocations");
    op.stop().await;
}
