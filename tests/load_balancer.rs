//! LoadBalancer Services against the real API server: addresses from
//! LoadBalancer PrefixClaims, one per family in one status write, requested
//! addresses, release, other classes left alone, and no address ever held
//! by two Services across an operator killed in the middle of a burst.
//! Every check reads what the API server holds.

use prefix_operator_testsupport as support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{IpFamily, PrefixClaim, PrefixClaimSpec, Purpose};
use prefix_operator::controller::LOAD_BALANCER_CLASS;
use support::*;

const WAIT: Duration = Duration::from_secs(30);
const DUAL_STACK_SERVICES: &str = "fd00:10:96::/108,10.96.0.0/16";
const NS: &str = "default";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A LoadBalancer claim of `len` from `pool`, waited for until Ready.
async fn lb_claim(
    client: &Client,
    name: &str,
    pool: &str,
    fam: IpFamily,
    len: i32,
) -> ipnet::IpNet {
    let api: Api<PrefixClaim> = Api::all(client.clone());
    let spec = PrefixClaimSpec {
        ip_family: fam,
        ..claim_spec(pool, len, Purpose::LoadBalancer)
    };
    api.create(&PostParams::default(), &PrefixClaim::new(name, spec))
        .await
        .expect("create claim");
    wait_for(&format!("claim {name} Ready"), WAIT, || async {
        let c = api.get_opt(name).await.ok().flatten()?;
        let st = c.status?;
        let ready = st
            .conditions
            .iter()
            .any(|x| x.type_ == "Ready" && x.status == "True");
        if ready { st.prefix?.parse().ok() } else { None }
    })
    .await
}

struct Lb<'a> {
    name: &'a str,
    class: Option<&'a str>,
    families: &'a [&'a str],
    policy: &'a str,
    requested: Option<&'a str>,
    /// MetalLB's sharing key (`metallb.io/allow-shared-ip`), which the
    /// operator does not read.
    shared_key: Option<&'a str>,
    port: i32,
}

impl<'a> Lb<'a> {
    fn v6(name: &'a str) -> Self {
        Lb {
            name,
            class: Some(LOAD_BALANCER_CLASS),
            families: &["IPv6"],
            policy: "SingleStack",
            requested: None,
            shared_key: None,
            port: 80,
        }
    }
}

async fn create_lb(client: &Client, lb: &Lb<'_>) {
    let api: Api<Service> = Api::namespaced(client.clone(), NS);
    let annotations: BTreeMap<String, String> = lb
        .requested
        .map(|r| ("ipam.prefix-operator.io/load-balancer-ips", r))
        .into_iter()
        .chain(lb.shared_key.map(|k| ("metallb.io/allow-shared-ip", k)))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let annotations = (!annotations.is_empty()).then_some(annotations);
    let svc = Service {
        metadata: ObjectMeta {
            name: Some(lb.name.into()),
            annotations,
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            load_balancer_class: lb.class.map(str::to_string),
            ip_families: Some(lb.families.iter().map(|f| f.to_string()).collect()),
            ip_family_policy: Some(lb.policy.into()),
            ports: Some(vec![ServicePort {
                port: lb.port,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    api.create(&PostParams::default(), &svc)
        .await
        .unwrap_or_else(|e| panic!("create Service {}: {e}", lb.name));
}

fn ingress(s: &Service) -> Vec<(IpAddr, Option<String>)> {
    s.status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| {
            i.iter()
                .filter_map(|x| Some((x.ip.as_deref()?.parse().ok()?, x.ip_mode.clone())))
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_ingress(client: &Client, name: &str, n: usize) -> Vec<IpAddr> {
    let api: Api<Service> = Api::namespaced(client.clone(), NS);
    wait_for(
        &format!("{name}: {n} LoadBalancer address(es)"),
        WAIT,
        || async {
            let s = api.get_opt(name).await.ok().flatten()?;
            let i = ingress(&s);
            (i.len() == n).then(|| {
                assert!(i.iter().all(|(_, m)| m.as_deref() == Some("VIP")), "{i:?}");
                i.into_iter().map(|(a, _)| a).collect()
            })
        },
    )
    .await
}

/// Every address in the API server's Service statuses, by holder: none
/// may be held twice.
async fn assert_no_address_twice(client: &Client) -> BTreeMap<IpAddr, String> {
    let api: Api<Service> = Api::all(client.clone());
    let mut seen: BTreeMap<IpAddr, String> = BTreeMap::new();
    for s in api
        .list(&Default::default())
        .await
        .expect("list Services")
        .items
    {
        let name = s.metadata.name.clone().unwrap_or_default();
        for (a, _) in ingress(&s) {
            if let Some(other) = seen.insert(a, name.clone()) {
                panic!("{a} is held by both {other} and {name}");
            }
        }
    }
    seen
}

/// Pool "gua" of `gua` and pool "v4" of 198.51.100.0/24 in /28s.
async fn gua_and_v4_pools(client: &Client, gua: &str) {
    create_pool(client, "gua", pool_spec(&[gua])).await;
    create_pool(
        client,
        "v4",
        prefix_operator::api::PrefixPoolSpec {
            node_prefix_length: Some(28),
            ..pool_spec(&["198.51.100.0/24"])
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_get_addresses_from_claims_per_family_and_by_request() {
    let (cp, client) = control_plane_with_services(DUAL_STACK_SERVICES).await;
    let _d = DumpOnPanic(&cp);
    gua_and_v4_pools(&client, "2001:db8:1b::/48").await;
    let op = Operator::default(&client).await;
    let v6 = lb_claim(&client, "lb-v6", "gua", IpFamily::IPv6, 120).await;
    let v4 = lb_claim(&client, "lb-v4", "v4", IpFamily::IPv4, 29).await;

    create_lb(&client, &Lb::v6("web")).await;
    let web = wait_ingress(&client, "web", 1).await;
    assert_eq!(web, vec![ip(&nth_address(&v6, 1))]);
    wait_event(&client, "web", "LoadBalancerAddressAssigned").await;

    // Dual-stack: one address per family, in the Service's family order.
    create_lb(
        &client,
        &Lb {
            families: &["IPv6", "IPv4"],
            policy: "RequireDualStack",
            ..Lb::v6("dual")
        },
    )
    .await;
    let dual = wait_ingress(&client, "dual", 2).await;
    assert!(v6.contains(&dual[0]) && v4.contains(&dual[1]), "{dual:?}");
    assert_ne!(dual[0], web[0]);

    // A requested address, then the same one again: refused, not shared.
    let wanted = nth_address(&v6, 77);
    create_lb(
        &client,
        &Lb {
            requested: Some(&wanted),
            ..Lb::v6("pinned")
        },
    )
    .await;
    assert_eq!(wait_ingress(&client, "pinned", 1).await, vec![ip(&wanted)]);
    create_lb(
        &client,
        &Lb {
            requested: Some(&wanted),
            ..Lb::v6("copycat")
        },
    )
    .await;
    wait_event(&client, "copycat", "RequestedAddressTaken").await;
    create_lb(
        &client,
        &Lb {
            requested: Some("2001:db8:ffff::1"),
            ..Lb::v6("astray")
        },
    )
    .await;
    wait_event(&client, "astray", "RequestedAddressOutsideClaims").await;

    // Another class is left alone.
    create_lb(
        &client,
        &Lb {
            class: Some("example.com/other"),
            ..Lb::v6("foreign")
        },
    )
    .await;

    // The pinned Service goes: the copycat gets the address.
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    services
        .delete("pinned", &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(wait_ingress(&client, "copycat", 1).await, vec![ip(&wanted)]);

    // web stops being a LoadBalancer: its address is free again.
    services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"type": "ClusterIP", "loadBalancerClass": null}}),
            ),
        )
        .await
        .expect("to ClusterIP");
    wait_ingress(&client, "web", 0).await;
    create_lb(
        &client,
        &Lb {
            requested: Some(&web[0].to_string()),
            ..Lb::v6("reuse")
        },
    )
    .await;
    assert_eq!(wait_ingress(&client, "reuse", 1).await, web);

    assert!(ingress(&services.get("foreign").await.expect("get")).is_empty());
    assert!(ingress(&services.get("astray").await.expect("get")).is_empty());
    assert_no_address_twice(&client).await;
    op.stop().await;
}

/// Where MetalLB (v0.16.2) behaves otherwise, what the operator does
/// (docs/services.md, "Beside MetalLB"): an IPv4 claim's network and
/// broadcast addresses are never handed out, nor taken when asked for
/// (MetalLB hands out .0 and .255 unless `avoidBuggyIPs`); MetalLB's sharing
/// key is not read, so an address held by one Service is refused to another
/// even on other ports; a dual-stack Service with one family exhausted waits
/// with nothing written, and gets both once the family has room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_metallb_edges_sharing_and_one_family_exhausted() {
    let (cp, client) = control_plane_with_services(DUAL_STACK_SERVICES).await;
    let _d = DumpOnPanic(&cp);
    gua_and_v4_pools(&client, "2001:db8:1d::/48").await;
    let op = Operator::default(&client).await;
    let v6 = lb_claim(&client, "lb-v6", "gua", IpFamily::IPv6, 120).await;
    // Four addresses: the network (.0) and broadcast (.3) ones excepted, two.
    let v4 = lb_claim(&client, "lb-v4", "v4", IpFamily::IPv4, 30).await;
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let v4_lb = |name| Lb {
        families: &["IPv4"],
        ..Lb::v6(name)
    };

    create_lb(&client, &v4_lb("a")).await;
    assert_eq!(
        wait_ingress(&client, "a", 1).await,
        vec![ip(&nth_address(&v4, 1))]
    );
    create_lb(&client, &v4_lb("b")).await;
    assert_eq!(
        wait_ingress(&client, "b", 1).await,
        vec![ip(&nth_address(&v4, 2))]
    );
    create_lb(&client, &v4_lb("c")).await;
    wait_event(&client, "c", "LoadBalancerAddressesExhausted").await;
    // Asked for: the network and the broadcast address are refused too.
    for (name, n) in [("net", 0), ("bcast", 3)] {
        let wanted = nth_address(&v4, n);
        create_lb(
            &client,
            &Lb {
                requested: Some(&wanted),
                ..v4_lb(name)
            },
        )
        .await;
        wait_event(&client, name, "RequestedAddressOutsideClaims").await;
    }

    // MetalLB's sharing key and disjoint ports: still one Service an address.
    let shared = nth_address(&v6, 5);
    create_lb(
        &client,
        &Lb {
            requested: Some(&shared),
            shared_key: Some("web"),
            ..Lb::v6("share-http")
        },
    )
    .await;
    assert_eq!(
        wait_ingress(&client, "share-http", 1).await,
        vec![ip(&shared)]
    );
    create_lb(
        &client,
        &Lb {
            requested: Some(&shared),
            shared_key: Some("web"),
            port: 443,
            ..Lb::v6("share-https")
        },
    )
    .await;
    wait_event(&client, "share-https", "RequestedAddressTaken").await;

    // Dual-stack with IPv4 exhausted: nothing written, not even IPv6.
    create_lb(
        &client,
        &Lb {
            families: &["IPv4", "IPv6"],
            policy: "RequireDualStack",
            ..Lb::v6("dual")
        },
    )
    .await;
    wait_event(&client, "dual", "LoadBalancerAddressesExhausted").await;
    for n in ["c", "net", "bcast", "share-https", "dual"] {
        let s = services.get(n).await.expect("get");
        assert!(ingress(&s).is_empty(), "{n}: {:?}", ingress(&s));
    }
    // Room in IPv4 again (c, which also waits for IPv4, gone first): both.
    for n in ["c", "a"] {
        services
            .delete(n, &DeleteParams::default())
            .await
            .expect("delete");
    }
    let dual = wait_ingress(&client, "dual", 2).await;
    assert_eq!(dual[0], ip(&nth_address(&v4, 1)), "{dual:?}");
    assert!(v6.contains(&dual[1]), "{dual:?} outside {v6}");
    assert_no_address_twice(&client).await;
    op.stop().await;
}

/// A pool shrunk under live addresses (MetalLB moves a Service whose
/// address its pool no longer holds to a new one): the claim keeps its
/// prefix and goes on handing out addresses, and every Service keeps its
/// own; a pool deleted under its claim likewise, with Warning Events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_metallb_a_shrunk_pool_takes_no_address_away() {
    let (cp, client) = control_plane_with_services(DUAL_STACK_SERVICES).await;
    let _d = DumpOnPanic(&cp);
    create_pool(
        &client,
        "gua",
        pool_spec(&["2001:db8:1e::/48", "2001:db8:1f::/48"]),
    )
    .await;
    let op = Operator::default(&client).await;
    let claim = lb_claim(&client, "lb", "gua", IpFamily::IPv6, 120).await;
    assert!(claim.to_string().starts_with("2001:db8:1e:"), "{claim}");
    create_lb(&client, &Lb::v6("kept")).await;
    let kept = wait_ingress(&client, "kept", 1).await;

    // The pool loses the prefix the claim lies in.
    let pools: Api<prefix_operator::api::PrefixPool> = Api::all(client.clone());
    let p = pools
        .patch(
            "gua",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"prefixes": ["2001:db8:1f::/48"]}})),
        )
        .await
        .expect("shrink the pool");
    let generation = p.metadata.generation;
    wait_for("the pool's status of its new spec", WAIT, || async {
        let p = pools.get("gua").await.ok()?;
        (p.status?.observed_generation == generation).then_some(())
    })
    .await;
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    // A claim's prefix and a Service's addresses, on the API server.
    let held = |claim: &'static str, service: &'static str| {
        let (claims, client) = (claims.clone(), client.clone());
        async move {
            let c = claims.get(claim).await.expect("get claim");
            let s = Api::<Service>::namespaced(client, NS)
                .get(service)
                .await
                .expect("get Service");
            let ips: Vec<IpAddr> = ingress(&s).into_iter().map(|(a, _)| a).collect();
            (c.status.and_then(|s| s.prefix), ips)
        }
    };
    let (prefix, addr) = held("lb", "kept").await;
    assert_eq!(prefix, Some(claim.to_string()));
    assert_eq!(addr, kept);
    // The claim still hands out addresses; the first Service keeps its own.
    create_lb(&client, &Lb::v6("after")).await;
    let after = wait_ingress(&client, "after", 1).await;
    assert!(claim.contains(&after[0]) && after != kept, "{after:?}");
    assert_eq!(held("lb", "kept").await, (Some(claim.to_string()), kept));

    // Another pool deleted under its claim: Warning Events, and still
    // nothing taken away.
    create_pool(&client, "doomed", pool_spec(&["2001:db8:20::/48"])).await;
    let claim2 = lb_claim(&client, "lb2", "doomed", IpFamily::IPv6, 120).await;
    let wanted = nth_address(&claim2, 9);
    create_lb(
        &client,
        &Lb {
            requested: Some(&wanted),
            ..Lb::v6("kept2")
        },
    )
    .await;
    let kept2 = wait_ingress(&client, "kept2", 1).await;
    pools
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete pool");
    wait_event(&client, "doomed", "DeletedWithClaims").await;
    wait_event(&client, "lb2", "PoolDeleted").await;
    assert_eq!(
        held("lb2", "kept2").await,
        (Some(claim2.to_string()), kept2)
    );
    assert_no_address_twice(&client).await;
    op.stop().await;
}

/// A burst of Services with the operator killed twice in the middle: every
/// Service ends with one address, none held twice (checked on the API
/// server), and a deleted claim keeps its prefix while they hold addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_address_is_held_twice_across_operator_kills() {
    if let Ok(f) = std::env::var("TEST_LOG") {
        prefix_operator::telemetry::init(prefix_operator::telemetry::LogFormat::Text, &f);
    }
    let (cp, client) = control_plane_with_services(DUAL_STACK_SERVICES).await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "gua", pool_spec(&["2001:db8:1c::/48"])).await;
    let op = Operator::default(&client).await;
    let claim = lb_claim(&client, "burst", "gua", IpFamily::IPv6, 122).await;
    // 63 usable addresses, 40 Services.
    let names: Vec<String> = (0..40).map(|i| format!("s-{i:02}")).collect();
    let mut op = Some(op);
    for (i, n) in names.iter().enumerate() {
        create_lb(&client, &Lb::v6(n)).await;
        if i == 12 || i == 27 {
            op.take().expect("running").kill();
            op = Some(Operator::default(&client).await);
        }
    }
    for n in &names {
        let got = wait_ingress(&client, n, 1).await;
        assert!(claim.contains(&got[0]), "{n}: {got:?} outside {claim}");
    }
    let held = assert_no_address_twice(&client).await;
    assert_eq!(held.len(), names.len());

    // The claim deleted while Services hold its addresses: it stays.
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    claims
        .delete("burst", &DeleteParams::default())
        .await
        .expect("delete claim");
    wait_for("the claim waiting for its Services", WAIT, || async {
        let c = claims.get_opt("burst").await.ok().flatten()?;
        c.status?
            .conditions
            .iter()
            .any(|x| x.type_ == "Ready" && x.reason == "WaitingForServices")
            .then_some(())
    })
    .await;
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    for n in &names {
        services
            .delete(n, &DeleteParams::default())
            .await
            .expect("delete Service");
    }
    wait_gone(&claims, "burst").await;
    op.take().expect("running").stop().await;
}

/// `prefix-operator routes` against the API server: a LoadBalancer claim is
/// one route to every Node, and an address of an `externalTrafficPolicy:
/// Local` Service a host route to only the Nodes with a ready endpoint (the
/// EndpointSlice is written here as its controller would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_send_local_policy_addresses_only_to_nodes_with_ready_endpoints() {
    use k8s_openapi::api::core::v1::Node;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let (cp, client) = control_plane_with_services(DUAL_STACK_SERVICES).await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "gua", pool_spec(&["2001:db8:1d::/48"])).await;
    let nodes: Api<Node> = Api::all(client.clone());
    for (n, addr) in [
        ("n-a", "fd00:1d::a"),
        ("n-b", "fd00:1d::b"),
        ("n-c", "fd00:1d::c"),
    ] {
        create_node(&client, n, labels(&[]), &[]).await;
        nodes
            .patch_status(
                n,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"status": {"addresses": [{"type": "InternalIP", "address": addr}]}})),
            )
            .await
            .expect("node address");
    }
    let op = Operator::default(&client).await;
    let claim = lb_claim(&client, "lb", "gua", IpFamily::IPv6, 120).await;
    create_lb(&client, &Lb::v6("local")).await;
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    services
        .patch(
            "local",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"externalTrafficPolicy": "Local"}})),
        )
        .await
        .expect("Local policy");
    let addr = wait_ingress(&client, "local", 1).await[0];
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "local-abc", "labels": {"kubernetes.io/service-name": "local"}},
        "addressType": "IPv6",
        "endpoints": [
            {"addresses": ["2001:db8:1d:1::10"], "nodeName": "n-b", "conditions": {"ready": true}},
            {"addresses": ["2001:db8:1d:2::10"], "nodeName": "n-c", "conditions": {"ready": false}},
        ],
    }))
    .expect("slice");
    slices
        .create(&PostParams::default(), &slice)
        .await
        .expect("create slice");
    op.stop().await;

    let kubeconfig = cp.dir().join("routes.kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prefix-operator"))
        .args(["routes", "--format", "ip", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .expect("prefix-operator routes");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "ip -6 route replace {claim} nexthop via fd00:1d::a nexthop via fd00:1d::b nexthop via fd00:1d::c"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("ip -6 route replace {addr}/128 via fd00:1d::b\n")),
        "{text}"
    );
}
