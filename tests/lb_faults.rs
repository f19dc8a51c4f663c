//! LoadBalancer addresses under faults, with the operator binary as a child
//! process: SIGKILLed three times during a burst of 2,000 Services. The end
//! state, read from the API server, must be as without faults: every
//! Service holds exactly one address of the claim, and no address is held
//! by two Services.

use prefix_operator_testsupport as support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::{Api, Client};
use prefix_operator::api::{IpFamily, PrefixClaim, PrefixClaimSpec, PrefixPoolSpec, Purpose};
use prefix_operator_testenv::OperatorProcess;
use rand::Rng;
use support::*;

const SERVICES: usize = 2000;

/// Counts the Services holding an address, every 100 ms.
fn count_served(client: &Client) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let task = tokio::spawn(async move {
        loop {
            if let Ok(l) = api.list(&Default::default()).await {
                let n = l
                    .items
                    .iter()
                    .filter(|x| !lb_addresses(x).is_empty())
                    .count();
                s.store(n, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (served, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_three_times_during_2000_services_no_address_is_shared_or_lost() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(
        &client,
        "v4",
        PrefixPoolSpec {
            node_prefix_length: Some(24),
            ..pool_spec(&["10.200.0.0/16"])
        },
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let log = dir.path().join("operator.log");
    let spawn = || {
        OperatorProcess::builder(env!("CARGO_BIN_EXE_prefix-operator"), &kubeconfig, &log)
            .args(["--status-interval", "200ms"])
            .spawn()
            .expect("start the operator")
    };
    let mut op = spawn();
    op.wait_ready(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    // 4,094 usable addresses for 2,000 Services.
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    let spec = PrefixClaimSpec {
        ip_family: IpFamily::IPv4,
        ..claim_spec("v4", 20, Purpose::LoadBalancer)
    };
    claims
        .create(&PostParams::default(), &PrefixClaim::new("lb", spec))
        .await
        .expect("create claim");
    let claim: ipnet::IpNet = wait_for("the claim bound", Duration::from_secs(30), || async {
        claims
            .get_opt("lb")
            .await
            .ok()
            .flatten()?
            .status?
            .prefix?
            .parse()
            .ok()
    })
    .await;

    let (served, counter) = count_served(&client);
    let burst = {
        let client = client.clone();
        tokio::spawn(async move {
            let api: Api<Service> = Api::namespaced(client, "default");
            futures::stream::iter(0..SERVICES)
                .map(|i| {
                    let api = api.clone();
                    async move {
                        let name = format!("lb-{i:04}");
                        api.create(&PostParams::default(), &lb_service(&name))
                            .await
                            .unwrap_or_else(|e| panic!("create {name}: {e}"));
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<()>>()
                .await;
        })
    };
    let mut rng = rand::rng();
    let mut points: Vec<usize> = (0..3)
        .map(|_| rng.random_range(50..SERVICES - 200))
        .collect();
    points.sort_unstable();
    let mut killed_at = vec![];
    for p in points {
        wait_for(
            &format!("{p} Services served"),
            Duration::from_secs(120),
            || async { (served.load(Ordering::SeqCst) >= p).then_some(()) },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..60))).await;
        op.kill();
        killed_at.push(served.load(Ordering::SeqCst));
        op = spawn();
    }
    burst.await.expect("burst");
    wait_for("every Service served", Duration::from_secs(180), || async {
        (served.load(Ordering::SeqCst) == SERVICES).then_some(())
    })
    .await;
    counter.abort();
    eprintln!("operator SIGKILLed with {killed_at:?} of {SERVICES} Services served");

    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let list = api.list(&Default::default()).await.expect("list");
    let mut holders: BTreeMap<IpAddr, String> = BTreeMap::new();
    for s in &list.items {
        let name = s.metadata.name.clone().unwrap_or_default();
        if !name.starts_with("lb-") {
            continue;
        }
        let a = lb_addresses(s);
        assert_eq!(a.len(), 1, "{name}: {a:?}");
        assert!(claim.contains(&a[0]), "{name}: {} outside {claim}", a[0]);
        if let Some(other) = holders.insert(a[0], name.clone()) {
            panic!("{} is held by both {other} and {name}", a[0]);
        }
    }
    assert_eq!(holders.len(), SERVICES);
    assert!(op.alive(), "the last operator exited\n{}", op.log_tail(30));
}
