//! Leader election: two replicas against one API server, only the Lease
//! holder writes, and a crashed leader is replaced within the lease duration.

use prefix_operator_testsupport as support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use prefix_operator::app::{App, Config, Leadership};
use prefix_operator::controller::Settings;
use prefix_operator::leader::LeaseSettings;
use prefix_operator::metrics::Metrics;
use support::*;
use tokio::sync::watch;

struct Replica {
    identity: String,
    /// The operator, started through the same composition root as the
    /// binary; aborting it aborts its leader election too.
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    metrics: Arc<Metrics>,
    is_leader: watch::Receiver<bool>,
}

impl Replica {
    async fn start(client: &Client, identity: &str, lease: Duration) -> Replica {
        let config = Config {
            settings: Settings {
                status_interval: Duration::from_millis(200),
                instance: identity.into(),
                ..Default::default()
            },
            leadership: Leadership::Elect {
                client: client.clone(),
                lease: LeaseSettings {
                    name: "prefix-operator".into(),
                    namespace: "default".into(),
                    identity: identity.into(),
                    lease_duration: lease,
                    renew_deadline: lease * 2 / 3,
                    retry_period: lease / 6,
                },
            },
            http: None,
            secure_metrics: None,
        };
        let app = App::start(client.clone(), config).await.expect("start");
        let (metrics, is_leader) = (app.metrics.clone(), app.leader());
        Replica {
            identity: identity.into(),
            task: tokio::spawn(app.run(std::future::pending())),
            metrics,
            is_leader,
        }
    }

    /// Dies like a crashed process: no Lease release, writes abandoned.
    fn crash(&self) {
        self.task.abort();
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
    let a = Replica::start(&client, "replica-a", lease).await;
    let b = Replica::start(&client, "replica-b", lease).await;
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

/// LoadBalancer addresses across a leader change: only the leader writes
/// Service statuses, the leader crashes mid-burst, the follower (which
/// re-reads every Service first) finishes, and no address is held twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_addresses_survive_a_leader_change_without_duplicates() {
    use k8s_openapi::api::core::v1::Service;
    use prefix_operator::api::{IpFamily, PrefixClaim, PrefixClaimSpec, Purpose};
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(
        &client,
        "v4",
        prefix_operator::api::PrefixPoolSpec {
            node_prefix_length: Some(24),
            ..pool_spec(&["10.201.0.0/16"])
        },
    )
    .await;
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    let spec = PrefixClaimSpec {
        ip_family: IpFamily::IPv4,
        ..claim_spec("v4", 23, Purpose::LoadBalancer)
    };
    claims
        .create(&Default::default(), &PrefixClaim::new("lb", spec))
        .await
        .expect("create claim");
    let lease = Duration::from_secs(3);
    let a = Replica::start(&client, "replica-a", lease).await;
    let b = Replica::start(&client, "replica-b", lease).await;
    let first = wait_for("a leader", Duration::from_secs(20), || async {
        holder(&client).await
    })
    .await;
    let (leader, follower) = if first == a.identity { (a, b) } else { (b, a) };
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let make = |name: String| lb_service(&name);
    let served = |want: usize| {
        let services = services.clone();
        async move {
            let l = services.list(&Default::default()).await.ok()?;
            let addrs: Vec<String> = l
                .items
                .iter()
                .filter_map(|s| {
                    s.status
                        .clone()?
                        .load_balancer?
                        .ingress?
                        .first()?
                        .ip
                        .clone()
                })
                .collect();
            (addrs.len() >= want).then_some(addrs)
        }
    };
    for i in 0..60 {
        services
            .create(&Default::default(), &make(format!("s-{i:03}")))
            .await
            .expect("create Service");
    }
    wait_for("60 Services served", Duration::from_secs(30), || served(60)).await;
    assert_eq!(
        follower.metrics.service_writes.get(),
        0,
        "the follower wrote"
    );

    let creator = {
        let services = services.clone();
        tokio::spawn(async move {
            for i in 60..300 {
                services
                    .create(&Default::default(), &make(format!("s-{i:03}")))
                    .await
                    .expect("create Service");
            }
        })
    };
    leader.crash();
    wait_for(
        "the follower takes over",
        Duration::from_secs(30),
        || async { holder(&client).await.filter(|h| *h == follower.identity) },
    )
    .await;
    creator.await.expect("creator");
    let addrs = wait_for("300 Services served", Duration::from_secs(60), || {
        served(300)
    })
    .await;
    let mut unique = addrs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        addrs.len(),
        "an address held twice: {addrs:?}"
    );
    assert!(
        follower.metrics.service_writes.get() > 0,
        "the new leader wrote nothing"
    );
}
