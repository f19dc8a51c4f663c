//! Issue 10, quickly: Nodes whose status a kubelet-like writer patches all
//! the time. A status patch that lands just before the operator's podCIDRs
//! write produces a watch event with empty podCIDRs that can arrive after
//! the write's answer; an operator that applies it believes the Node empty
//! again, frees its prefix and gives the same prefix to the next Node.
//!
//! The run: a backlog of Nodes registered (three status patches each, as
//! kubelet, cloud-controller-manager and node-problem-detector send) before
//! the operator starts, with a hot stream of status patches at the Nodes the
//! operator is about to write; then a burst of Nodes registered while it
//! runs. Checked against what the API server holds and what a watch saw:
//! no two Nodes share an address, no Node's podCIDRs ever changed, and the
//! operator never wrote a Node twice (its log: a second `allocated`, or a
//! write refused as a write-once violation). The long
//! version is `make chaos CHAOS_ARGS="--scenarios kubelet-backlog,kubelet-burst"`.

use prefix_operator_testsupport as support;

#[allow(dead_code)]
#[path = "../e2e/bench/src/history.rs"]
mod history;
#[allow(dead_code)]
#[path = "../e2e/bench/src/kubelet.rs"]
mod kubelet;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use prefix_operator_testenv::OperatorProcess;
use support::*;

use history::{CidrHistory, duplicates, second_writes};
use kubelet::{KubeletConfig, KubeletSim};

/// Nodes waiting when the operator starts.
const BACKLOG: usize = 800;
/// Nodes created while it runs.
const BURST: usize = 400;

/// Creates `names`, 16 at a time, starting each one's registration patches
/// the moment its create returns.
async fn create_registered(client: &Client, sim: &KubeletSim, names: &[String]) {
    let api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(names)
        .map(|name| {
            let api = api.clone();
            async move {
                let node = Node {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                api.create(&PostParams::default(), &node).await?;
                sim.appeared(name);
                Ok::<_, kube::Error>(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("create Nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_patches_racing_the_operator_never_give_a_prefix_twice() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "p", pool_spec(&["2001:db8:73::/48"])).await;
    let history = CidrHistory::start(&client).await;
    // Hot patches at the 32 lowest names still without podCIDRs: the Nodes
    // the operator writes next (a backlog in name order, a burst in
    // creation order), at a rate that patches each of them every ~100 ms.
    let sim = KubeletSim::start(
        &client,
        KubeletConfig {
            name_prefix: "kl-".into(),
            hot_rate: 500.0,
            max_in_flight: 128,
            hot_frontier: 32,
            deadline: Duration::from_secs(120),
            ..Default::default()
        },
    );
    let backlog: Vec<String> = (0..BACKLOG).map(|i| format!("kl-a-{i:04}")).collect();
    let burst: Vec<String> = (0..BURST).map(|i| format!("kl-b-{i:04}")).collect();
    let t = std::time::Instant::now();
    create_registered(&client, &sim, &backlog).await;
    eprintln!("backlog registered in {:.1} s", t.elapsed().as_secs_f64());

    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let log = dir.path().join("operator.log");
    let mut op = OperatorProcess::builder(env!("CARGO_BIN_EXE_prefix-operator"), &kubeconfig, log)
        .args(["--status-interval", "200ms", "--log-format", "text"])
        .spawn()
        .expect("start the operator");
    op.wait_ready(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("operator ready at {:.1} s", t.elapsed().as_secs_f64());
    create_registered(&client, &sim, &burst).await;
    eprintln!("burst registered at {:.1} s", t.elapsed().as_secs_f64());
    // Waited for on the watch: listing 1,200 Nodes every few ms would load
    // the API server and make the race less likely.
    wait_for("every Node allocated", Duration::from_secs(60), || async {
        (history.with_cidrs() >= BACKLOG + BURST).then_some(())
    })
    .await;
    eprintln!("all allocated at {:.1} s", t.elapsed().as_secs_f64());
    let sent = sim.stop().await;
    eprintln!("status writer: {sent}");
    assert!(sent.hot > 0, "no hot status patch was sent: {sent}");

    // What the API server holds now, after every write has settled.
    let api: Api<Node> = Api::all(client.clone());
    let held = api.list(&ListParams::default()).await.expect("list Nodes");
    assert_eq!(held.items.len(), BACKLOG + BURST);
    let (dups, pairs) = duplicates(&held.items);
    let rewritten = history.rewritten();
    // Second podCIDRs writes to a Node (see `history::second_writes`).
    let twice = second_writes(&op.log_text());
    eprintln!(
        "{} Nodes, {pairs} prefix pairs compared: {} duplicate(s); {} Node(s) seen with changed podCIDRs; {} second write(s) to a written Node",
        held.items.len(),
        dups.len(),
        rewritten.len(),
        twice.len()
    );
    let show = |v: Vec<String>| v.into_iter().take(20).collect::<Vec<_>>().join("\n  ");
    assert!(
        dups.is_empty(),
        "{} pair(s) of Nodes share a prefix:\n  {}",
        dups.len(),
        show(dups.iter().map(|d| d.to_string()).collect())
    );
    assert!(
        rewritten.is_empty(),
        "podCIDRs changed after being set:\n  {}",
        show(rewritten.iter().map(|r| r.to_string()).collect())
    );
    assert!(
        twice.is_empty(),
        "the operator wrote {} already written Node(s) a second time: {twice:?}",
        twice.len()
    );
    assert_disjoint(&held.items);
}
