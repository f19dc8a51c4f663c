//! The operator binary's /healthz, /readyz, /metrics and JSON logs.

use prefix_operator_testsupport as support;

use std::sync::Arc;
use std::time::Duration;

use prefix_operator_testenv::OperatorProcess;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_json_logs() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "obs", pool_spec(&["2001:db8:c::/48"])).await;
    let kubeconfig = cp.dir().join("obs.kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let log = cp.dir().join("obs-operator.log");
    let mut op = OperatorProcess::builder(env!("CARGO_BIN_EXE_prefix-operator"), &kubeconfig, log)
        .args(["--log-format", "json", "--status-interval", "200ms"])
        .env("RUST_LOG", "info")
        .spawn()
        .expect("start operator");
    op.wait_ready(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("/readyz 200: {e:#}"));
    assert_eq!(op.get("/healthz").await.ok().map(|r| r.0), Some(200));

    create_node(&client, "obs-node", labels(&[]), &[]).await;
    let cidr = wait_pod_cidrs(&client, "obs-node").await;
    let metrics = wait_for(
        "pool gauges in /metrics",
        Duration::from_secs(20),
        || async {
            let (code, body) = op.get("/metrics").await.ok()?;
            (code == 200 && body.contains("prefix_operator_pool_allocated{pool=\"obs\"} 1"))
                .then_some(body)
        },
    )
    .await;
    for name in [
        "prefix_operator_allocations_total{pool=\"obs\"} 1",
        "prefix_operator_allocation_latency_seconds_count 1",
        "prefix_operator_pool_capacity{pool=\"obs\"} 65536",
        "prefix_operator_pool_available{pool=\"obs\"} 65535",
        "prefix_operator_pool_exhausted{pool=\"obs\"} 0",
        "prefix_operator_leader 1",
        "prefix_operator_node_writes_total 1",
        "prefix_operator_node_writes_in_flight 0",
        "prefix_operator_queued_nodes 0",
        "# TYPE prefix_operator_status_writes counter",
        "prefix_operator_build_info{",
        "# TYPE process_cpu_seconds counter",
        "process_cpu_seconds_total ",
        "# TYPE process_resident_memory_bytes gauge",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    // One JSON log line per allocation, with node, pool and prefix.
    let line = op
        .wait_log_line(&["\"allocated\""], Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("allocation log line: {e:#}"));
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["node"], "obs-node");
    assert_eq!(v["pool"], "obs");
    assert_eq!(v["prefix"], cidr[0]);
    assert_eq!(v["level"], "INFO");

    // A deleted pool's gauges go with it (no stale series).
    let pools: kube::Api<prefix_operator::api::PrefixPool> = kube::Api::all(client.clone());
    pools
        .delete("obs", &Default::default())
        .await
        .expect("delete pool");
    let after = wait_for(
        "the deleted pool's gauges gone from /metrics",
        Duration::from_secs(20),
        || async {
            let (code, body) = op.get("/metrics").await.ok()?;
            (code == 200 && !body.contains("prefix_operator_pool_capacity{pool=\"obs\"}"))
                .then_some(body)
        },
    )
    .await;
    let stale: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("prefix_operator_pool_") && l.contains("pool=\"obs\""))
        .collect();
    assert!(stale.is_empty(), "stale pool series: {stale:?}");
}

/// Allocation Events (Normal) wait while the reconciler has Node writes
/// queued or in flight, so they never compete with podCIDRs writes; Warnings
/// go out at once. Runs the Event publisher against the real API server with
/// the idle signal in the test's hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_events_wait_until_the_reconciler_is_idle() {
    use k8s_openapi::api::core::v1::ObjectReference;
    use prefix_operator::controller::events::{EventSink, Note};

    let client = admin(shared()).await;
    let (idle, idle_rx) = tokio::sync::watch::channel(false);
    let sink = EventSink::start(
        client.clone(),
        "events-test",
        Arc::new(prefix_operator::metrics::Metrics::new()),
        idle_rx,
    );
    let node = unique("busy-node");
    let about = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.clone()),
        ..Default::default()
    };
    sink.send(Note::normal(
        about.clone(),
        "PrefixAllocated",
        "Allocate",
        "podCIDRs set to 2001:db8::/64 from test".into(),
    ));
    // Busy: a Warning sent after the Normal Event overtakes it.
    for reason in ["PoolExhausted", "PrefixConflict"] {
        sink.send(Note::warning(
            about.clone(),
            reason,
            "Allocate",
            "a warning".into(),
        ));
        wait_event(&client, &node, reason).await;
    }
    let reasons: Vec<String> = events_for(&client, &node)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        !reasons.iter().any(|r| r == "PrefixAllocated"),
        "an allocation Event went out while Node writes were pending: {reasons:?}"
    );
    // Idle: it goes out.
    idle.send(true).expect("publisher alive");
    wait_event(&client, &node, "PrefixAllocated").await;
}
