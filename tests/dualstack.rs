//! Dual-stack pairing: one write with both families, in the primary family's
//! order, or nothing at all.

mod support;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use prefix_operator::alloc::Family;
use prefix_operator::api::PrefixPoolSpec;
use prefix_operator::controller::Settings;
use support::*;

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
