//! Space the API server handed to Services, and claims covered by
//! something else, against the real API server: a live ClusterIP inside
//! pool space keeps Node prefixes off it; a ServiceCIDR claim deleted while
//! Services ask for addresses in it never lets a Node prefix land over a
//! live ClusterIP; a claim under a reserved range or a hand-written Node
//! prefix is reported (Ready=False `Conflict`, an Event, the pool's
//! `status.conflicts`) and keeps its prefix. Every check reads what the
//! API server holds.

use prefix_operator_testsupport as support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::networking::v1::{IPAddress, IPAddressSpec, ParentReference};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{PrefixClaim, PrefixPool, Purpose};
use prefix_operator::controller::Settings;
use support::claims::*;
use support::*;

/// An IPAddress as kube-apiserver's allocator leaves one behind for a
/// Service, made by hand (no allocator label: its repair loop leaves it).
async fn create_ip_address(client: &Client, ip: &str, service: &str) {
    let api: Api<IPAddress> = Api::all(client.clone());
    let a = IPAddress {
        metadata: ObjectMeta {
            name: Some(ip.into()),
            ..Default::default()
        },
        spec: Some(IPAddressSpec {
            parent_ref: ParentReference {
                group: Some(String::new()),
                resource: "services".into(),
                namespace: Some("default".into()),
                name: service.into(),
            },
        }),
    };
    api.create(&PostParams::default(), &a)
        .await
        .unwrap_or_else(|e| panic!("create IPAddress {ip}: {e}"));
}

/// Every live IPAddress, as the API server holds them.
async fn live_addresses(client: &Client) -> Vec<std::net::IpAddr> {
    let api: Api<IPAddress> = Api::all(client.clone());
    api.list(&Default::default())
        .await
        .expect("list IPAddresses")
        .items
        .iter()
        .filter_map(|a| a.metadata.name.as_deref()?.parse().ok())
        .collect()
}

/// Waits until `n` Nodes hold prefixes; their prefixes, sorted.
async fn allocated(client: &Client, n: usize) -> Vec<String> {
    let nodes = wait_allocated(client, None, Some(n), WAIT).await;
    let mut got: Vec<String> = nodes.iter().flat_map(node_cidrs).collect();
    got.sort();
    got
}

/// No Node prefix holds a live ClusterIP.
async fn assert_no_node_over_an_address(client: &Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let addresses = live_addresses(client).await;
    for n in nodes.list(&Default::default()).await.expect("list").items {
        for c in node_cidrs(&n) {
            let p = net(&c);
            for a in &addresses {
                assert!(
                    !p.contains(a),
                    "Node {:?} got {p}, which holds live ClusterIP {a}",
                    n.metadata.name
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_cluster_ip_in_pool_space_is_never_carved_over() {
    let (cp, client) = control_plane_with_services(DUAL_STACK_SERVICES).await;
    let _d = DumpOnPanic(&cp);
    // Two /64s. The first holds an address the API server handed out from
    // a ServiceCIDR since deleted (as its allocator can, until its informer
    // catches up).
    create_pool(&client, "p", pool_spec(&["2001:db8:ad00::/63"])).await;
    create_ip_address(&client, "2001:db8:ad00::5e", "late").await;
    let op = Operator::default(&client).await;
    for n in ["a", "b"] {
        create_node(&client, n, labels(&[]), &[]).await;
    }
    assert_eq!(allocated(&client, 1).await, vec!["2001:db8:ad00:1::/64"]);
    wait_pool(&client, "p", "one Node waits", |p| {
        p.status.as_ref().and_then(|s| s.waiting) == Some(1)
    })
    .await;
    assert_no_node_over_an_address(&client).await;
    // A Node written by hand over the address is a conflict, reported.
    create_node(&client, "by-hand", labels(&[]), &["2001:db8:ad00::/64"]).await;
    wait_event(&client, "by-hand", "PrefixConflict").await;
    let pool = wait_pool(&client, "p", "the conflict listed", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.conflicts.iter().any(|c| c.node == "by-hand"))
    })
    .await;
    let reason = &pool.status.expect("status").conflicts[0].reason;
    assert!(reason.contains("2001:db8:ad00::5e"), "{reason}");
    delete_node(&client, "by-hand").await;
    // The address released: the space is free again.
    let ips: Api<IPAddress> = Api::all(client.clone());
    ips.delete("2001:db8:ad00::5e", &DeleteParams::default())
        .await
        .expect("delete the IPAddress");
    assert_eq!(
        allocated(&client, 2).await,
        vec!["2001:db8:ad00:1::/64", "2001:db8:ad00::/64"]
    );
    op.stop().await;
}

/// The race of issue 30, many rounds, without kube-controller-manager: a
/// ServiceCIDR claim is deleted while Services keep asking for addresses
/// inside it and Nodes wait for /64s of the same pool. Whatever the API
/// server's allocator still hands out, no Node prefix lands over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_cidr_claims_deleted_under_service_churn_never_give_a_node_a_live_cluster_ip() {
    if let Ok(f) = std::env::var("TEST_LOG") {
        prefix_operator::telemetry::init(prefix_operator::telemetry::LogFormat::Text, &f);
    }
    let (cp, client) = control_plane_with_services(DUAL_STACK_SERVICES).await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "p", pool_spec(&["2001:db8:ad00::/60"])).await;
    let op = Operator::start(
        client.clone(),
        Settings {
            status_interval: Duration::from_millis(200),
            // Short, so that rounds are quick: the picture holding every
            // live address is what keeps Nodes off them.
            service_cidr_grace: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let rounds = 8;
    let mut served = 0;
    for round in 0..rounds {
        let name = format!("c{round}");
        create_claim(&client, &name, claim_spec("p", 112, Purpose::ServiceCIDR)).await;
        let c = wait_claim(&client, &name, "Serving", |c| is(c, "True", "Serving")).await;
        let p = prefix_of(&c);
        let asker = {
            let client = client.clone();
            tokio::spawn(async move {
                let mut made = vec![];
                for i in 1..=40u128 {
                    let svc = format!("r{round}-s{i}");
                    if create_service(&client, &svc, &nth_address(&p, i))
                        .await
                        .is_ok()
                    {
                        made.push(svc);
                    }
                }
                made
            })
        };
        claims
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete the claim");
        create_node(&client, &format!("n{round}"), labels(&[]), &[]).await;
        let made = asker.await.expect("join");
        served += made.len();
        assert_no_node_over_an_address(&client).await;
        for svc in &made {
            services
                .delete(svc, &DeleteParams::default())
                .await
                .expect("delete Service");
        }
        wait_for(&format!("claim {name} gone"), WAIT, || async {
            matches!(claims.get_opt(&name).await, Ok(None)).then_some(())
        })
        .await;
        assert_no_node_over_an_address(&client).await;
    }
    eprintln!(
        "[conflicts] {rounds} rounds, {served} ClusterIPs handed out from claims being deleted"
    );
    assert!(
        served > 0,
        "no Service ever got an address: the race was not run"
    );
    allocated(&client, rounds).await;
    assert_no_node_over_an_address(&client).await;
    op.stop().await;
}

fn claim_conflict_listed(p: &PrefixPool, claim: &str) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.conflicts
            .iter()
            .any(|c| c.claim.as_deref() == Some(claim))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_under_a_reserved_range_or_a_hand_written_node_is_reported_and_keeps_its_prefix() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "p", pool_spec(&["2001:db8:ae00::/56"])).await;
    let op = Operator::default(&client).await;
    create_claim(&client, "st", claim_spec("p", 65, Purpose::Static)).await;
    let c = wait_claim(&client, "st", "Claimed", |c| is(c, "True", "Claimed")).await;
    let p = prefix_of(&c);
    let covering = ipnet::IpNet::new(p.network(), 64).expect("/64").trunc();

    // The pool reserves the /64 around it.
    let pools: Api<PrefixPool> = Api::all(client.clone());
    let reserve = |r: Vec<String>| serde_json::json!({"spec": {"reserved": r}});
    pools
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(&reserve(vec![covering.to_string()])),
        )
        .await
        .expect("reserve");
    let c = wait_claim(&client, "st", "Conflict", |c| is(c, "False", "Conflict")).await;
    let msg = claim_condition(&c, "Ready").expect("Ready").message.clone();
    assert!(msg.contains(&format!("reserved range {covering}")), "{msg}");
    assert_eq!(prefix_of(&c), p, "nothing taken away");
    wait_event(&client, "st", "PrefixConflict").await;
    wait_pool(&client, "p", "the claim in status.conflicts", |p| {
        claim_conflict_listed(p, "st")
    })
    .await;
    // Taken back: Ready again, and off the pool's list.
    pools
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(&reserve(vec![])),
        )
        .await
        .expect("unreserve");
    wait_claim(&client, "st", "Claimed again", |c| is(c, "True", "Claimed")).await;
    wait_pool(&client, "p", "no claim conflict", |p| {
        !claim_conflict_listed(p, "st")
    })
    .await;

    // A Node written by hand over three bound claims.
    for n in ["lb", "sc"] {
        let purpose = if n == "lb" {
            Purpose::LoadBalancer
        } else {
            Purpose::ServiceCIDR
        };
        create_claim(&client, n, claim_spec("p", 120, purpose)).await;
    }
    for n in ["lb", "sc"] {
        wait_claim(&client, n, "bound", |c| {
            c.status.as_ref().is_some_and(|s| s.prefix.is_some())
        })
        .await;
    }
    create_node(&client, "by-hand", labels(&[]), &["2001:db8:ae00::/56"]).await;
    for n in ["st", "lb", "sc"] {
        let c = wait_claim(&client, n, "Conflict", |c| is(c, "False", "Conflict")).await;
        let msg = claim_condition(&c, "Ready").expect("Ready").message.clone();
        assert!(msg.contains("of Node by-hand"), "{n}: {msg}");
        wait_event(&client, n, "PrefixConflict").await;
    }
    wait_pool(&client, "p", "every claim listed", |p| {
        ["st", "lb", "sc"]
            .iter()
            .all(|n| claim_conflict_listed(p, n))
    })
    .await;
    delete_node(&client, "by-hand").await;
    wait_claim(&client, "st", "Claimed again", |c| is(c, "True", "Claimed")).await;
    wait_claim(&client, "lb", "Serving again", |c| is(c, "True", "Serving")).await;
    op.stop().await;
}
