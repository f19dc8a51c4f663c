//! Dual-stack pairing: one write with both families, in the primary family's
//! order, or nothing at all.

use prefix_operator_testsupport as support;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use prefix_operator::alloc::Family;
use prefix_operator::api::PrefixPoolSpec;
use prefix_operator::controller::Settings;
use support::*;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use prefix_operator::k8s::nodes::{
    ALLOCATED_AT_ANNOTATION, POOLS_ANNOTATION, PodCidrsWrite, pod_cidrs_params, pod_cidrs_patch,
};
use std::collections::BTreeMap;

async fn annotations(client: &kube::Client, name: &str) -> BTreeMap<String, String> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get Node {name}: {e}"))
        .metadata
        .annotations
        .unwrap_or_default()
}

fn selected(key: &str) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some(labels(&[(key, "true")])),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_nodes_get_both_families_in_one_write_or_nothing() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "v6", pool_spec(&["2001:db8:8::/48"])).await;
    create_pool(
        &client,
        "v4",
        PrefixPoolSpec {
            node_selector: selected("dual"),
            ..pool_spec(&["10.8.0.0/23"])
        },
    )
    .await;
    let op = Operator::default(&client).await;
    create_node(&client, "dual-a", labels(&[("dual", "true")]), &[]).await;
    create_node(&client, "dual-b", labels(&[("dual", "true")]), &[]).await;
    create_node(&client, "v6-only", labels(&[]), &[]).await;
    assert_eq!(wait_pod_cidrs(&client, "dual-a").await.len(), 2);
    let b = wait_pod_cidrs(&client, "dual-b").await;
    let a = pod_cidrs(&client, "dual-a").await;
    let mut v4s = vec![a[1].clone(), b[1].clone()];
    v4s.sort();
    assert_eq!(
        v4s,
        vec!["10.8.0.0/24".to_string(), "10.8.1.0/24".to_string()]
    );
    assert!(
        a[0].starts_with("2001:db8:8:") && b[0].starts_with("2001:db8:8:"),
        "IPv6 first: {a:?} {b:?}"
    );
    assert_eq!(
        wait_pod_cidrs(&client, "v6-only").await.len(),
        1,
        "single-family pools work alone"
    );
    // The pool of each entry is on the Node, written in the same patch.
    for (node, pools) in [("dual-a", "v6,v4"), ("dual-b", "v6,v4"), ("v6-only", "v6")] {
        let a = annotations(&client, node).await;
        assert_eq!(
            a.get(POOLS_ANNOTATION).map(String::as_str),
            Some(pools),
            "{node}: {a:?}"
        );
        let at = a.get(ALLOCATED_AT_ANNOTATION).expect("allocated-at");
        at.parse::<k8s_openapi::jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("{node}: allocated-at {at:?} is not RFC 3339: {e}"));
    }

    // The IPv4 pool is now full: a dual-stack Node gets nothing, not even IPv6.
    create_node(&client, "dual-c", labels(&[("dual", "true")]), &[]).await;
    wait_pool(&client, "v4", "Exhausted with a waiting Node", |p| {
        condition(p, "Exhausted").is_some_and(|c| c.status == "True")
            && p.status.as_ref().and_then(|s| s.waiting) == Some(1)
    })
    .await;
    assert!(
        pod_cidrs(&client, "dual-c").await.is_empty(),
        "one family written alone"
    );
    // Meanwhile IPv6-only Nodes are still served.
    create_node(&client, "v6-later", labels(&[]), &[]).await;
    assert_eq!(wait_pod_cidrs(&client, "v6-later").await.len(), 1);
    assert!(pod_cidrs(&client, "dual-c").await.is_empty());
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_family_flag_orders_ipv4_first() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "v6", pool_spec(&["fd00:9::/48"])).await;
    create_pool(&client, "v4", pool_spec(&["10.9.0.0/16"])).await;
    let op = Operator::start(
        client.clone(),
        Settings {
            primary_family: Family::V4,
            status_interval: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await;
    create_node(&client, "n", labels(&[]), &[]).await;
    assert_eq!(
        wait_pod_cidrs(&client, "n").await,
        vec!["10.9.0.0/24".to_string(), "fd00:9::/64".to_string()]
    );
    op.stop().await;
}

/// Another writer's annotations survive the podCIDRs patch, and the real
/// API server refuses the patch (422, nothing written) both for another
/// object under the Node's name and over podCIDRs someone else wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_annotations_keep_other_writers_annotations() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    let nodes: Api<Node> = Api::all(client.clone());
    let node = |name: &str, annotated: bool| Node {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            annotations: annotated.then(|| {
                labels(&[
                    ("node.alpha.kubernetes.io/ttl", "0"),
                    ("other.example/k", "v"),
                ])
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let create = async |name: &str| {
        nodes
            .create(&PostParams::default(), &node(name, true))
            .await
            .expect("create Node")
            .metadata
            .uid
            .expect("uid")
    };
    let ours = async |name: &str, uid: &str, cidr: &str| {
        let cidrs = [cidr.to_string()];
        let pools = ["p".to_string()];
        let w = PodCidrsWrite {
            uid,
            cidrs: &cidrs,
            pools: &pools,
            at: "2026-12-03T08:00:00Z",
        };
        nodes
            .patch(
                name,
                &pod_cidrs_params(),
                &Patch::Strategic(pod_cidrs_patch(&w)),
            )
            .await
    };
    // No operator runs yet: the patches are sent by hand.
    // 1. The Node was re-created under its name since it was seen.
    let old_uid = create("recreated").await;
    nodes
        .delete("recreated", &Default::default())
        .await
        .expect("delete Node");
    create("recreated").await;
    match ours("recreated", &old_uid, "2001:db8:99::/64").await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{e:?}"),
        other => panic!("the patch for the old object landed: {other:?}"),
    }
    assert!(pod_cidrs(&client, "recreated").await.is_empty());
    assert!(
        !annotations(&client, "recreated")
            .await
            .contains_key(POOLS_ANNOTATION)
    );
    // 2. Someone else wrote podCIDRs since it was seen.
    let uid = create("taken").await;
    nodes
        .patch(
            "taken",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"podCIDR": "2001:db8:98::/64", "podCIDRs": ["2001:db8:98::/64"]}})),
        )
        .await
        .expect("another writer's podCIDRs");
    match ours("taken", &uid, "2001:db8:99::/64").await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{e:?}"),
        other => panic!("the patch over another writer's podCIDRs landed: {other:?}"),
    }
    assert_eq!(
        pod_cidrs(&client, "taken").await,
        vec!["2001:db8:98::/64".to_string()]
    );
    let a = annotations(&client, "taken").await;
    assert!(!a.contains_key(POOLS_ANNOTATION), "{a:?}");
    assert_eq!(a.get("other.example/k").map(String::as_str), Some("v"));
    // 3. The control case: the right object, nothing written yet.
    let uid = create("free").await;
    ours("free", &uid, "2001:db8:99::/64").await.expect("lands");
    assert_eq!(
        pod_cidrs(&client, "free").await,
        vec!["2001:db8:99::/64".to_string()]
    );
    for n in ["recreated", "taken", "free"] {
        nodes
            .delete(n, &Default::default())
            .await
            .expect("delete Node");
    }

    create_pool(&client, "p", pool_spec(&["2001:db8:9a::/48"])).await;
    let op = Operator::default(&client).await;
    nodes
        .create(&PostParams::default(), &node("annotated", true))
        .await
        .expect("create Node");
    create_node(&client, "bare", labels(&[]), &[]).await;
    wait_pod_cidrs(&client, "annotated").await;
    wait_pod_cidrs(&client, "bare").await;
    let a = annotations(&client, "annotated").await;
    assert_eq!(
        a.get("other.example/k").map(String::as_str),
        Some("v"),
        "{a:?}"
    );
    assert_eq!(
        a.get("node.alpha.kubernetes.io/ttl").map(String::as_str),
        Some("0")
    );
    assert_eq!(a.get(POOLS_ANNOTATION).map(String::as_str), Some("p"));
    assert!(a.contains_key(ALLOCATED_AT_ANNOTATION), "{a:?}");
    let b = annotations(&client, "bare").await;
    assert_eq!(
        b.get(POOLS_ANNOTATION).map(String::as_str),
        Some("p"),
        "{b:?}"
    );
    op.stop().await;
}

fn families_of(cidrs: &[String]) -> (usize, usize) {
    let v4 = cidrs.iter().filter(|c| !c.contains(':')).count();
    (cidrs.len() - v4, v4)
}

/// Issue 30: dual-stack Nodes waiting for IPv4 space are not written IPv6
/// only when their exhausted IPv4 pool is deleted and re-created (how an
/// admin changes the immutable nodePrefixLength): the re-created pool
/// serves them both families in one write. Deleted for good, the Nodes
/// wait out the family grace, then get IPv6 alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_deleted_and_re_created_serves_its_waiting_nodes_both_families() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "v6", pool_spec(&["2001:db8:9::/48"])).await;
    let v4_spec = |prefix: &str, len: i32| PrefixPoolSpec {
        node_prefix_length: Some(len),
        ..pool_spec(&[prefix])
    };
    create_pool(&client, "v4", v4_spec("10.9.0.0/24", 24)).await;
    let op = Operator::default(&client).await;
    create_node(&client, "first", labels(&[]), &[]).await;
    assert_eq!(families_of(&wait_pod_cidrs(&client, "first").await), (1, 1));
    let waiting = ["w1", "w2", "w3", "w4"];
    for n in waiting {
        create_node(&client, n, labels(&[]), &[]).await;
    }
    wait_pool(&client, "v4", "the Nodes wait for IPv4", |p| {
        p.status.as_ref().and_then(|s| s.waiting) == Some(waiting.len() as i64)
    })
    .await;
    let pools: Api<prefix_operator::api::PrefixPool> = Api::all(client.clone());
    pools
        .delete("v4", &kube::api::DeleteParams::default())
        .await
        .expect("delete v4");
    // Re-created on a new block with another node prefix length (the
    // first Node still holds all of the old one).
    create_pool(&client, "v4", v4_spec("10.9.1.0/24", 26)).await;
    for n in waiting {
        let got = wait_pod_cidrs(&client, n).await;
        assert_eq!(families_of(&got), (1, 1), "{n} got {got:?}");
    }

    // Deleted for good: a new Node waits the grace, then gets IPv6 alone.
    pools
        .delete("v4", &kube::api::DeleteParams::default())
        .await
        .expect("delete v4 again");
    let deleted = std::time::Instant::now();
    create_node(&client, "late", labels(&[]), &[]).await;
    let got = wait_for(
        "late written IPv6 only",
        Duration::from_secs(30),
        || async {
            let c = pod_cidrs(&client, "late").await;
            (!c.is_empty()).then_some(c)
        },
    )
    .await;
    assert_eq!(families_of(&got), (1, 0));
    let waited = deleted.elapsed();
    assert!(
        waited >= prefix_operator::ledger::FAMILY_GRACE - Duration::from_millis(500),
        "written {waited:?} after the pool went"
    );
    wait_event(&client, "late", "WaitingForFamily").await;
    op.stop().await;
}
