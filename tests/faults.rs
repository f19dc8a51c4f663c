//! Quick fault runs: the operator binary, run as a child process, is killed
//! over and over during a burst of Nodes, or loses its API server (twice)
//! mid-burst.
//! The end state must be the same as without faults: every Node holds exactly
//! one prefix of the pool and no two prefixes overlap. The long versions are
//! `make chaos` (e2e/bench).

use prefix_operator_testsupport as support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use prefix_operator_testenv::OperatorProcess;
use rand::Rng;
use support::*;

const BURST: usize = 300;

/// `prefix-operator run` with its log appended to `log` (a restart appends
/// to the log of the process before it), ready.
async fn start_operator(kubeconfig: &Path, log: &Path) -> OperatorProcess {
    let mut op = spawn_operator(kubeconfig, log);
    op.wait_ready(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    op
}

/// `prefix-operator run`, not waited for.
fn spawn_operator(kubeconfig: &Path, log: &Path) -> OperatorProcess {
    OperatorProcess::builder(env!("CARGO_BIN_EXE_prefix-operator"), kubeconfig, log)
        .args(["--status-interval", "200ms"])
        .spawn()
        .expect("start the operator")
}

/// Watches Nodes and keeps the set of those seen with podCIDRs.
struct Allocated {
    seen: Arc<Mutex<HashSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Allocated {
    fn watch(client: &Client) -> Allocated {
        let api: Api<Node> = Api::all(client.clone());
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                if let Ok(Event::Apply(n) | Event::InitApply(n)) = ev
                    && n.spec
                        .and_then(|s| s.pod_cidrs)
                        .is_some_and(|c| !c.is_empty())
                    && let Some(name) = n.metadata.name
                {
                    s.lock().unwrap_or_else(|e| e.into_inner()).insert(name);
                }
            }
        });
        Allocated { seen, task }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    async fn wait_at_least(&self, n: usize, timeout: Duration) {
        wait_for(&format!("{n} Nodes with podCIDRs"), timeout, || async {
            (self.count() >= n).then_some(())
        })
        .await
    }
}

impl Drop for Allocated {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates `names`, 8 at a time. Creates that fail (the API server may be
/// down) are retried for up to a minute; an AlreadyExists on a retry means
/// the first attempt landed.
fn spawn_burst(client: &Client, names: Vec<String>) -> tokio::task::JoinHandle<()> {
    let api: Api<Node> = Api::all(client.clone());
    tokio::spawn(async move {
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
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let mut tried = false;
                    loop {
                        match api.create(&PostParams::default(), &node).await {
                            Ok(_) => return Ok(()),
                            Err(kube::Error::Api(s)) if s.code == 409 && tried => return Ok(()),
                            Err(e) if Instant::now() > deadline => {
                                return Err(format!("create {name}: {e}"));
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                        tried = true;
                    }
                }
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await
            .expect("burst");
    })
}

/// Every Node in `names` (and no other) holds exactly one /64 of `pool`,
/// `podCIDR == podCIDRs[0]`, and no two prefixes share an address (compared
/// pairwise as ranges, not as strings).
/// Waits for the burst and every allocation, then checks the end state and
/// that pool "p" counts every Node.
async fn finish_burst(
    client: &Client,
    burst: tokio::task::JoinHandle<()>,
    allocated: &Allocated,
    pool: &str,
    names: &[String],
) {
    burst.await.expect("burst");
    allocated
        .wait_at_least(BURST, Duration::from_secs(60))
        .await;
    assert_end_state(client, pool, names).await;
    wait_pool(client, "p", "status.allocated = 300", |p| {
        p.status.as_ref().and_then(|s| s.allocated) == Some(BURST as i64)
    })
    .await;
}

async fn assert_end_state(client: &Client, pool: &str, names: &[String]) {
    let pool: IpNet = pool.parse().expect("pool");
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .expect("list Nodes");
    let mut held: Vec<(IpNet, String)> = vec![];
    for n in &list.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let spec = n.spec.clone().unwrap_or_default();
        let cidrs = spec.pod_cidrs.clone().unwrap_or_default();
        assert_eq!(cidrs.len(), 1, "Node {name} holds {cidrs:?}");
        assert_eq!(
            spec.pod_cidr.as_ref(),
            cidrs.first(),
            "Node {name}: podCIDR is not podCIDRs[0]"
        );
        let net: IpNet = cidrs[0]
            .parse()
            .unwrap_or_else(|e| panic!("Node {name}: {:?} {e}", cidrs[0]));
        assert!(
            net.prefix_len() == 64 && pool.contains(&net),
            "Node {name}: {net} is not a /64 of {pool}"
        );
        held.push((net, name));
    }
    let listed: HashSet<&str> = held.iter().map(|(_, n)| n.as_str()).collect();
    let expected: HashSet<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(listed, expected, "the Nodes are not the ones created");
    for (i, (a, an)) in held.iter().enumerate() {
        for (b, bn) in &held[i + 1..] {
            assert!(
                !(a.contains(&b.network()) || b.contains(&a.network())),
                "{a} of Node {an} overlaps {b} of Node {bn}"
            );
        }
    }
}

fn names(prefix: &str) -> Vec<String> {
    (0..BURST).map(|i| format!("{prefix}-{i:03}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_five_times_during_a_burst_no_prefix_is_lost_or_shared() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    let pool = "2001:db8:70::/48";
    create_pool(&client, "p", pool_spec(&[pool])).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let log = dir.path().join("operator.log");
    let mut op = start_operator(&kubeconfig, &log).await;
    let allocated = Allocated::watch(&client);
    let names = names("kill");
    let burst = spawn_burst(&client, names.clone());

    // Five kills at random points of the burst (by Nodes allocated so far),
    // each a random few milliseconds after the point, with writes in flight.
    let mut rng = rand::rng();
    let mut points: Vec<usize> = (0..5).map(|_| rng.random_range(10..BURST - 20)).collect();
    points.sort_unstable();
    let mut killed_at = vec![];
    for p in points {
        allocated.wait_at_least(p, Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..60))).await;
        op.kill();
        killed_at.push(allocated.count());
        op = spawn_operator(&kubeconfig, &log);
    }
    eprintln!("operator SIGKILLed with {killed_at:?} Nodes allocated");
    finish_burst(&client, burst, &allocated, pool, &names).await;
    assert!(op.alive(), "the last operator exited\n{}", op.log_tail(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_by_itself_from_apiserver_restarts_mid_burst() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    let pool = "2001:db8:71::/48";
    create_pool(&client, "p", pool_spec(&[pool])).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let mut op = start_operator(&kubeconfig, &dir.path().join("operator.log")).await;
    let allocated = Allocated::watch(&client);
    let names = names("restart");
    let burst = spawn_burst(&client, names.clone());

    // Twice, at a quarter and at half of the burst: each time with
    // Node writes in flight, some of which land while their answer is lost.
    for k in 1..=2 {
        allocated
            .wait_at_least(BURST * k / 4, Duration::from_secs(30))
            .await;
        let at = allocated.count();
        tokio::task::block_in_place(|| {
            cp.stop_apiserver();
            cp.start_apiserver().expect("restart kube-apiserver");
        });
        eprintln!("kube-apiserver restarted with {at} of {BURST} Nodes allocated");
    }
    finish_burst(&client, burst, &allocated, pool, &names).await;
    // The same process, never restarted.
    assert!(op.alive(), "the operator exited\n{}", op.log_tail(30));
}
