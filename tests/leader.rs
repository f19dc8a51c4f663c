//! Leader election: two replicas against one API server, only the Lease
//! holder writes, and a crashed leader is replaced within the lease duration.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use prefix_operator::controller::{self, Health, Settings};
use prefix_operator::leader::{self, LeaseSettings};
use prefix_operator::metrics::Metrics;
use support::*;
use tokio::sync::watch;

struct Replica {
    identity: String,
    leader_task: tokio::task::JoinHandle<()>,
    op_task: tokio::task::JoinHandle<anyhow::Result<()>>,
    metrics: Arc<Metrics>,
    is_leader: watch::Receiver<bool>,
    _stop: watch::Sender<bool>,
}

impl Replica {
    fn start(client: &Client, identity: &str, lease: Duration) -> Replica {
        let (stop, stop_rx) = watch::channel(false);
        let (is_leader, deadline, leader_task) = leader::spawn_with_deadline(
            client.clone(),
            LeaseSettings {
                name: "prefix-operator".into(),
                namespace: "default".into(),
                identity: identity.into(),
                lease_duration: lease,
                renew_deadline: lease * 2 / 3,
                retry_period: lease / 6,
            },
            stop_rx,
        );
        let metrics = Arc::new(Metrics::new());
        let op_task = tokio::spawn(controller::run(
            client.clone(),
            Settings {
                status_interval: Duration::from_millis(200),
                instance: identity.into(),
                lease_deadline: Some(deadline),
                ..Default::default()
            },
            metrics.clone(),
            Arc::new(Health::default()),
            is_leader.clone(),
            std::future::pending(),
        ));
        Replica {
            identity: identity.into(),
            leader_task,
            op_task,
            metrics,
            is_leader,
            _stop: stop,
        }
    }

    /// Dies like a crashed process: no Lease release, writes abandoned.
    fn crash(&self) {
        self.leader_task.abort();
        self.op_task.abort();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.crash();
    }
}

async fn holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    leases
        .get_opt("prefix-operator")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_crashed_leader_is_replaced() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "p", pool_spec(&["2001:db8:7::/48"])).await;
    let lease = Duration::from_secs(3);
    let a = Replica::start(&client, "replica-a", lease);
    let b = Replica::start(&client, "replica-b", lease);
    let first = wait_for("a leader", Duration::from_secs(20), || async {
        holder(&client).await
    })
    .await;
    let (leader, follower) = if first == a.identity { (a, b) } else { (b, a) };
    wait_for("leader knows it leads", Duration::from_secs(10), || async {
        (*leader.is_leader.borrow()).then_some(())
    })
    .await;
    assert!(!*follower.is_leader.borrow(), "two leaders at once");

    for i in 0..40 {
        create_node(&client, &format!("n-{i:03}"), labels(&[]), &[]).await;
    }
    wait_allocated(&client, None, None, Duration::from_secs(30)).await;
    assert_eq!(follower.metrics.node_writes.get(), 0, "the follower wrote");
    assert!(leader.metrics.node_writes.get() >= 40);

    // Crash the leader in the middle of a second burst.
    let creator = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 40..160 {
                create_node(&client, &format!("n-{i:03}"), labels(&[]), &[]).await;
            }
        })
    };
    let crashed_at = Instant::now();
    leader.crash();
    let new = wait_for(
        "the follower takes over",
        Duration::from_secs(30),
        || async { holder(&client).await.filter(|h| *h == follower.identity) },
    )
    .await;
    let handover = crashed_at.elapsed();
    assert_eq!(new, follower.identity);
    assert!(
        handover <= lease + lease / 2,
        "hand-over took {handover:?}, lease is {lease:?}"
    );
    creator.await.expect("creator");
    let list = wait_allocated(&client, None, None, Duration::from_secs(60)).await;
    assert_eq!(list.len(), 160);
    assert!(list.iter().all(|n| node_cidrs(n).len() == 1));
    assert_disjoint(&list);
    assert!(
        follower.metrics.node_writes.get() > 0,
        "the new leader wrote nothing"
    );
    eprintln!("leader hand-over took {handover:?} (lease {lease:?})");
}
