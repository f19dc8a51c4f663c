//! The operator binary's /healthz, /readyz, /metrics and JSON logs.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

/// Kills the operator when the test ends, however it ends.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_json_logs() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "obs", pool_spec(&["2001:db8:c::/48"])).await;
    let kubeconfig = cp.dir().join("obs.kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prefix-operator"));
    cmd.args([
        "run",
        "--log-format",
        "json",
        "--status-interval",
        "200ms",
        "--http-addr",
    ])
    .arg(format!("127.0.0.1:{port}"))
    .arg("--kubeconfig")
    .arg(&kubeconfig)
    .env("RUST_LOG", "info")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = prefix_operator_testenv::spawn_tied(cmd).expect("start operator");
    let stderr = child.stderr.take().expect("stderr");
    let _p = Proc(child);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().expect("lock").push(l);
            }
        });
    }
    wait_for("/readyz 200", Duration::from_secs(30), || async {
        (get(port, "/readyz")?.0 == 200).then_some(())
    })
    .await;
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));

    create_node(&client, "obs-node", labels(&[]), &[]).await;
    let cidr = wait_pod_cidrs(&client, "obs-node").await;
    let metrics = wait_for(
        "pool gauges in /metrics",
        Duration::from_secs(20),
        || async {
            let (code, body) = get(port, "/metrics")?;
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
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    // One JSON log line per allocation, with node, pool and prefix.
    let line = wait_for("allocation log line", Duration::from_secs(10), || {
        let found = lines
            .lock()
            .expect("lock")
            .iter()
            .find(|l| l.contains("\"allocated\""))
            .cloned();
        async move { found }
    })
    .await;
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["node"], "obs-node");
    assert_eq!(v["pool"], "obs");
    assert_eq!(v["prefix"], cidr[0]);
    assert_eq!(v["level"], "INFO");
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
