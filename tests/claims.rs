//! PrefixClaims against the real API server: bound from the pool's free
//! space beside Nodes, a ServiceCIDR the API server hands ClusterIPs from,
//! exhaustion and release, admission, and the deletion rule (the prefix
//! stays claimed while a Service holds an address from it), with and
//! without kube-controller-manager's service-cidr controller. Every check
//! reads what the API server holds.

use prefix_operator_testsupport as support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{PrefixClaim, Purpose};
use prefix_operator::k8s::claims::SERVICE_CIDR_FINALIZER;
use support::claims::*;
use support::*;

/// Every Node prefix and every claimed prefix the API server holds, none
/// overlapping another.
async fn assert_nothing_overlaps(client: &Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    let mut held: Vec<(String, ipnet::IpNet)> = vec![];
    for n in nodes
        .list(&Default::default())
        .await
        .expect("list Nodes")
        .items
    {
        for c in node_cidrs(&n) {
            held.push((
                format!("Node {}", n.metadata.name.clone().unwrap_or_default()),
                net(&c),
            ));
        }
    }
    for c in claims
        .list(&Default::default())
        .await
        .expect("list claims")
        .items
    {
        if let Some(p) = c.status.as_ref().and_then(|s| s.prefix.as_deref()) {
            held.push((
                format!(
                    "PrefixClaim {}",
                    c.metadata.name.clone().unwrap_or_default()
                ),
                net(p),
            ));
        }
    }
    for (i, (a, pa)) in held.iter().enumerate() {
        for (b, pb) in &held[i + 1..] {
            assert!(
                !(pa.contains(&pb.network()) || pb.contains(&pa.network())),
                "{a} {pa} overlaps {b} {pb}"
            );
        }
    }
}

/// A ServiceCIDR claim: bound beside Nodes, its ServiceCIDR created and
/// owned, the API server accepts a ClusterIP from it, the pool counts it,
/// and Nodes created afterwards stay clear of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_cidr_claim_gets_space_no_node_has_and_serves_cluster_ips() {
    let (cp, client) = control_plane_with_services(DUAL_STACK_SERVICES).await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "gua", pool_spec(&["2001:db8:c1::/48"])).await;
    let op = Operator::default(&client).await;
    for n in ["c-1", "c-2"] {
        create_node(&client, n, labels(&[]), &[]).await;
        wait_pod_cidrs(&client, n).await;
    }
    create_claim(
        &client,
        "svc-gua",
        claim_spec("gua", 112, Purpose::ServiceCIDR),
    )
    .await;
    let c = wait_claim(&client, "svc-gua", "Ready", |c| is(c, "True", "Serving")).await;
    let p = prefix_of(&c);
    assert_eq!(p.prefix_len(), 112);
    assert!(net("2001:db8:c1::/48").contains(&p), "{p}");
    let st = c.status.clone().expect("status");
    assert_eq!(st.pool.as_deref(), Some("gua"));
    assert_eq!(st.service_cidr.as_deref(), Some("svc-gua"));
    assert_eq!(
        claim_condition(&c, "Bound").map(|b| b.status.as_str()),
        Some("True")
    );
    assert!(
        c.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == prefix_operator::api::CLAIM_FINALIZER)
    );

    let scs: Api<ServiceCIDR> = Api::all(client.clone());
    let sc = scs.get("svc-gua").await.expect("the ServiceCIDR exists");
    assert_eq!(
        sc.spec.as_ref().and_then(|s| s.cidrs.clone()),
        Some(vec![p.to_string()])
    );
    let owner = &sc.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(
        (owner.kind.as_str(), Some(owner.uid.as_str())),
        ("PrefixClaim", c.metadata.uid.as_deref())
    );

    // The API server hands out ClusterIPs from the claimed prefix.
    let ip = nth_address(&p, 10);
    let svc = create_service(&client, "web", &ip)
        .await
        .expect("a ClusterIP from the claim");
    assert_eq!(
        svc.spec.and_then(|s| s.cluster_ip).as_deref(),
        Some(ip.as_str())
    );

    let pool = wait_pool(&client, "gua", "the claim counted", |p| {
        p.status.as_ref().and_then(|s| s.claimed) == Some(1)
    })
    .await;
    let listed = &pool.status.expect("status").claims;
    assert_eq!(
        (listed[0].claim.as_str(), listed[0].prefix.as_str()),
        ("svc-gua", p.to_string().as_str())
    );
    wait_event(&client, "svc-gua", "PrefixClaimed").await;

    for n in ["c-3", "c-4"] {
        create_node(&client, n, labels(&[]), &[]).await;
        let got = net(&wait_pod_cidrs(&client, n).await[0]);
        assert!(
            !got.contains(&p.network()),
            "{n} got {got}, which holds the claim's {p}"
        );
    }
    assert_nothing_overlaps(&client).await;
    op.stop().await;
}

/// Claims and Nodes compete for a small pool: the claim that does not fit
/// waits and says why; deleting a claim frees its space for the next
/// comer; nothing ever overlaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhaustion_waits_and_deletion_frees_the_space() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    // Four /64s.
    create_pool(&client, "small", pool_spec(&["2001:db8:c2::/62"])).await;
    let op = Operator::default(&client).await;
    create_claim(&client, "half", claim_spec("small", 63, Purpose::Static)).await;
    let half = wait_claim(&client, "half", "claimed", |c| is(c, "True", "Claimed")).await;
    assert_eq!(prefix_of(&half), net("2001:db8:c2::/63"));
    for n in ["x-1", "x-2", "x-3"] {
        create_node(&client, n, labels(&[]), &[]).await;
    }
    wait_for("two Nodes served, one waiting", WAIT, || async {
        let mut served = 0;
        for n in ["x-1", "x-2", "x-3"] {
            served += usize::from(!pod_cidrs(&client, n).await.is_empty());
        }
        (served == 2).then_some(())
    })
    .await;
    create_claim(&client, "late", claim_spec("small", 64, Purpose::Static)).await;
    let late = wait_claim(&client, "late", "waiting", |c| {
        is(c, "False", "PoolExhausted")
    })
    .await;
    assert!(
        late.status
            .as_ref()
            .and_then(|s| s.prefix.as_ref())
            .is_none()
    );
    wait_event(&client, "late", "PoolExhausted").await;
    assert_nothing_overlaps(&client).await;

    // The /63 freed: the waiting Node and the waiting claim both fit.
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    claims
        .delete("half", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&claims, "half").await;
    wait_claim(&client, "late", "bound", |c| is(c, "True", "Claimed")).await;
    wait_allocated(&client, None, None, WAIT).await;
    assert_nothing_overlaps(&client).await;
    wait_pool(&client, "small", "a full pool", |p| {
        p.status.as_ref().and_then(|s| s.available.as_deref()) == Some("0")
            && p.status.as_ref().and_then(|s| s.claimed) == Some(1)
    })
    .await;
    op.stop().await;
}

/// What the API server refuses at admission, with the rule's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_claims_are_refused_at_admission() {
    let cp = shared();
    let client = admin(cp).await;
    install_crd(&client).await;
    let api: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::erase::<PrefixClaim>(&()),
    );
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    let refused = |spec: serde_json::Value| {
        let api = api.clone();
        async move {
            let obj = serde_json::json!({
                "apiVersion": "ipam.prefix-operator.io/v1alpha1",
                "kind": "PrefixClaim",
                "metadata": {"name": unique("bad-claim")},
                "spec": spec,
            });
            // Sent as JSON: some of these do not even decode as a claim.
            let claim: kube::api::DynamicObject = serde_json::from_value(obj).expect("an object");
            match api.create(&PostParams::default(), &claim).await {
                Err(kube::Error::Api(s)) if s.code == 422 => s.message,
                other => panic!("not refused: {other:?}"),
            }
        }
    };
    let m = refused(serde_json::json!({"pool": "p", "prefixLength": 56})).await;
    assert!(m.contains("must be /64 or longer"), "{m}");
    let m = refused(serde_json::json!({"pool": "p", "prefixLength": 127})).await;
    assert!(m.contains("at least 4 addresses"), "{m}");
    let m =
        refused(serde_json::json!({"pool": "p", "poolSelector": {}, "prefixLength": 112})).await;
    assert!(m.contains("exactly one of pool"), "{m}");
    let m = refused(serde_json::json!({"prefixLength": 112})).await;
    assert!(m.contains("exactly one of pool"), "{m}");
    let m = refused(serde_json::json!({"pool": "p", "ipFamily": "IPv4", "prefixLength": 40, "purpose": "Static"})).await;
    assert!(m.contains("at most 32 for IPv4"), "{m}");
    let m =
        refused(serde_json::json!({"pool": "p", "prefixLength": 112, "purpose": "Anycast"})).await;
    assert!(m.contains("purpose"), "{m}");

    // A valid claim: spec immutable, status.prefix written once.
    let name = unique("claim");
    claims
        .create(
            &PostParams::default(),
            &PrefixClaim::new(&name, claim_spec("p", 112, Purpose::Static)),
        )
        .await
        .expect("a valid claim");
    let e = claims
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"prefixLength": 120}})),
        )
        .await
        .expect_err("spec is immutable");
    assert!(e.to_string().contains("spec is immutable"), "{e}");
    let set = |p: &str| serde_json::json!({"status": {"prefix": p, "pool": "p"}});
    claims
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(set("2001:db8::/112")),
        )
        .await
        .expect("the first status.prefix");
    let e = claims
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(set("2001:db8::1:0/112")),
        )
        .await
        .expect_err("status.prefix is write-once");
    assert!(e.to_string().contains("write-once"), "{e}");
    let e = claims
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"prefix": null}})),
        )
        .await
        .expect_err("status.prefix cannot be dropped");
    assert!(e.to_string().contains("write-once"), "{e}");
    claims
        .delete(&name, &DeleteParams::default())
        .await
        .expect("clean up");
}

/// The API server's own rule: a deleted claim's ServiceCIDR stays while a
/// Service holds an address from it, and so does the claim and its prefix;
/// once the Service is gone, both go and the prefix is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_claim_keeps_its_prefix_while_a_service_holds_an_address() {
    let (cp, client) = control_plane_with_services(DUAL_STACK_SERVICES).await;
    let _d = DumpOnPanic(&cp);
    let _kcm = support::components::start_kcm(&cp, "service-cidr-controller");
    create_pool(&client, "gua", pool_spec(&["2001:db8:c3::/48"])).await;
    let op = Operator::default(&client).await;
    create_claim(&client, "svc", claim_spec("gua", 112, Purpose::ServiceCIDR)).await;
    let c = wait_claim(&client, "svc", "Ready", |c| is(c, "True", "Serving")).await;
    let p = prefix_of(&c);
    let scs: Api<ServiceCIDR> = Api::all(client.clone());
    wait_for(
        "kube-controller-manager's finalizer on the ServiceCIDR",
        WAIT,
        || async {
            let sc = scs.get_opt("svc").await.ok().flatten()?;
            sc.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == "networking.k8s.io/service-cidr-finalizer")
                .then_some(())
        },
    )
    .await;
    create_service(&client, "held", &nth_address(&p, 7))
        .await
        .expect("a ClusterIP from the claim");

    let claims: Api<PrefixClaim> = Api::all(client.clone());
    claims
        .delete("svc", &DeleteParams::default())
        .await
        .expect("delete the claim");
    let draining = wait_claim(&client, "svc", "waiting for the Service", |c| {
        is(c, "False", "WaitingForServices")
    })
    .await;
    assert!(draining.metadata.deletion_timestamp.is_some());
    let sc = scs.get("svc").await.expect("the ServiceCIDR is kept");
    assert!(
        sc.metadata.deletion_timestamp.is_some(),
        "deleted, kept by its finalizer"
    );
    wait_pool(&client, "gua", "the prefix still claimed", |p| {
        p.status.as_ref().and_then(|s| s.claimed) == Some(1)
    })
    .await;

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete the Service");
    // kube-controller-manager waits 10 s after the deletion before it lets
    // the ServiceCIDR go.
    wait_for("the claim gone", Duration::from_secs(60), || async {
        matches!(claims.get_opt("svc").await, Ok(None)).then_some(())
    })
    .await;
    assert!(scs.get_opt("svc").await.expect("get").is_none());
    wait_pool(&client, "gua", "nothing claimed", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.claimed.is_none() && s.claims.is_empty())
    })
    .await;
    op.stop().await;
}

/// Without kube-controller-manager nothing but the operator's own finalizer
/// holds a deleted ServiceCIDR: it stays (and the API server hands out
/// nothing more from it) while a Service holds an address inside, and the
/// ServiceCIDR and the claim go only after the last address and a grace.
/// Because the ServiceCIDR is still there when the Service goes, the API
/// server releases the Service's address (no IPAddress is orphaned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_service_cidr_controller_the_operators_finalizer_drains_the_service_cidr() {
    let (cp, client) = control_plane_with_services(DUAL_STACK_SERVICES).await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "gua", pool_spec(&["2001:db8:c4::/48"])).await;
    let op = Operator::default(&client).await;
    create_claim(&client, "svc", claim_spec("gua", 112, Purpose::ServiceCIDR)).await;
    let c = wait_claim(&client, "svc", "Ready", |c| is(c, "True", "Serving")).await;
    let p = prefix_of(&c);
    let scs: Api<ServiceCIDR> = Api::all(client.clone());
    let sc = scs.get("svc").await.expect("the ServiceCIDR");
    assert!(
        sc.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == SERVICE_CIDR_FINALIZER),
        "created with the operator's finalizer: {:?}",
        sc.metadata.finalizers
    );
    create_service(&client, "held", &nth_address(&p, 7))
        .await
        .expect("a ClusterIP from the claim");
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    claims
        .delete("svc", &DeleteParams::default())
        .await
        .expect("delete the claim");
    wait_claim(&client, "svc", "waiting for the Service", |c| {
        is(c, "False", "WaitingForServices")
    })
    .await;
    let sc = scs.get("svc").await.expect("the ServiceCIDR is kept");
    assert!(sc.metadata.deletion_timestamp.is_some(), "being deleted");
    // Being deleted, it is not allocated from (once the API server's
    // informer shows it): a new Service asking for an address inside is
    // refused.
    wait_for(
        "a new address in the draining ServiceCIDR refused",
        WAIT,
        || async {
            let name = unique("late");
            match create_service(&client, &name, &nth_address(&p, 9)).await {
                Err(_) => Some(()),
                Ok(_) => {
                    let services: Api<Service> = Api::namespaced(client.clone(), "default");
                    let _ = services.delete(&name, &DeleteParams::default()).await;
                    None
                }
            }
        },
    )
    .await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete the Service");
    let ips: Api<k8s_openapi::api::networking::v1::IPAddress> = Api::all(client.clone());
    let ip = nth_address(&p, 7);
    wait_gone(&ips, &ip).await;
    let released = std::time::Instant::now();
    wait_gone(&scs, "svc").await;
    wait_gone(&claims, "svc").await;
    let took = released.elapsed();
    assert!(
        took >= prefix_operator::controller::SERVICE_CIDR_GRACE - Duration::from_millis(500),
        "let go {took:?} after the last address: before the grace"
    );
    op.stop().await;
}

/// Deleting a pool is not blocked by its claims, but it is reported on the
/// pool and on each claim; the claims keep their prefixes, and a pool made
/// again with the same prefixes counts them and keeps Nodes clear of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_deleted_under_its_claims_is_reported_and_the_claims_keep_their_prefixes() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "gone", pool_spec(&["2001:db8:c5::/62"])).await;
    let op = Operator::default(&client).await;
    create_claim(&client, "kept", claim_spec("gone", 64, Purpose::Static)).await;
    let c = wait_claim(&client, "kept", "claimed", |c| is(c, "True", "Claimed")).await;
    let p = prefix_of(&c);
    let pools: Api<prefix_operator::api::PrefixPool> = Api::all(client.clone());
    pools
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete the pool");
    wait_event(&client, "gone", "DeletedWithClaims").await;
    wait_event(&client, "kept", "PoolDeleted").await;
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    let after = claims.get("kept").await.expect("the claim stays");
    assert_eq!(prefix_of(&after), p);

    create_pool(&client, "gone", pool_spec(&["2001:db8:c5::/62"])).await;
    wait_pool(&client, "gone", "the claim counted again", |p| {
        p.status.as_ref().and_then(|s| s.claimed) == Some(1)
    })
    .await;
    for n in ["g-1", "g-2", "g-3"] {
        create_node(&client, n, labels(&[]), &[]).await;
    }
    wait_allocated(&client, None, None, WAIT).await;
    assert_nothing_overlaps(&client).await;
    op.stop().await;
}
