//! `status` and `whois` from made-up pools, claims, ServiceCIDRs, Services,
//! Nodes, Events and Leases: the reports, their text, and their JSON/YAML.

use super::report::Holder;
use super::*;
use crate::api::{
    DelegatedPrefix, DelegationSpec, DelegationStatus, PrefixClaim, PrefixClaimSpec,
    PrefixClaimStatus, PrefixPool, PrefixPoolSpec, PrefixPoolStatus, Purpose,
};
use crate::k8s::nodes::{ALLOCATED_AT_ANNOTATION, POOLS_ANNOTATION};
use k8s_openapi::api::core::v1::{Node, NodeSpec, ObjectReference, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{ServiceCIDR, ServiceCIDRSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime};
use k8s_openapi::jiff::Timestamp;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).expect("time")
}

fn pool(name: &str, prefixes: &[&str], reserved: &[&str]) -> PrefixPool {
    let mut p = PrefixPool::new(
        name,
        PrefixPoolSpec {
            prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
            reserved: reserved.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    );
    p.status = Some(PrefixPoolStatus {
        family: Some("IPv6".into()),
        capacity: Some("65536".into()),
        allocated: Some(1),
        available: Some("65534".into()),
        used: Some("<0.1%".into()),
        waiting: Some(3),
        waiting_nodes: vec!["w1".into(), "w2".into()],
        ..Default::default()
    });
    p
}

/// A pool fed by DHCPv6-PD: no spec.prefixes, its prefix in status.
fn delegated_pool(name: &str, prefix: Option<&str>) -> PrefixPool {
    let mut p = PrefixPool::new(
        name,
        PrefixPoolSpec {
            delegation: Some(DelegationSpec {
                interface: "eth1".into(),
                prefix_length: None,
            }),
            ..Default::default()
        },
    );
    p.status = Some(PrefixPoolStatus {
        delegation: Some(DelegationStatus {
            phase: if prefix.is_some() {
                "Bound"
            } else {
                "Soliciting"
            }
            .into(),
            prefixes: prefix
                .map(|x| DelegatedPrefix {
                    prefix: x.into(),
                    state: "Preferred".into(),
                    preferred_until: None,
                    valid_until: None,
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    });
    p
}

fn node(name: &str, cidr: &str) -> Node {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.metadata.uid = Some(format!("uid-{name}"));
    n.spec = Some(NodeSpec {
        pod_cidrs: Some(vec![cidr.into()]),
        ..Default::default()
    });
    n
}

fn allocated(node: &str, uid: &str, second: i64) -> Event {
    Event {
        reason: Some("PrefixAllocated".into()),
        regarding: Some(ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.into()),
            uid: Some(uid.into()),
            ..Default::default()
        }),
        event_time: Some(MicroTime(at(second))),
        ..Default::default()
    }
}

fn ready(status: &str, reason: &str) -> Condition {
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: String::new(),
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(0)),
        observed_generation: None,
    }
}

fn claim(name: &str, purpose: Purpose, bound: Option<(&str, &str)>) -> PrefixClaim {
    let mut c = PrefixClaim::new(
        name,
        PrefixClaimSpec {
            pool: Some("gua".into()),
            pool_selector: None,
            ip_family: Default::default(),
            prefix_length: 112,
            purpose,
        },
    );
    c.status = Some(PrefixClaimStatus {
        prefix: bound.map(|b| b.1.to_string()),
        pool: bound.map(|b| b.0.to_string()),
        service_cidr: (bound.is_some() && purpose == Purpose::ServiceCIDR).then(|| name.into()),
        conditions: vec![match bound {
            Some(_) => ready("True", "Serving"),
            None => ready("False", "PoolExhausted"),
        }],
        ..Default::default()
    });
    c
}

fn service_cidr(name: &str, cidr: &str, claim: Option<&str>) -> ServiceCIDR {
    let mut sc = ServiceCIDR {
        spec: Some(ServiceCIDRSpec {
            cidrs: Some(vec![cidr.into()]),
        }),
        ..Default::default()
    };
    sc.metadata.name = Some(name.into());
    sc.metadata.labels =
        claim.map(|c| [(crate::api::CLAIM_LABEL.to_string(), c.to_string())].into());
    sc
}

fn service(ns: &str, name: &str, cluster_ip: &str, ingress: Option<&str>) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "type": if ingress.is_some() { "LoadBalancer" } else { "ClusterIP" },
            "loadBalancerClass": ingress.map(|_| crate::controller::LOAD_BALANCER_CLASS),
            "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
        },
        "status": {"loadBalancer": {"ingress": ingress.map(|ip| vec![serde_json::json!({"ip": ip})]).unwrap_or_default()}},
    }))
    .expect("a Service")
}

/// Pool gua with Node worker-1, a ServiceCIDR claim `services`, a
/// LoadBalancer claim `lb`, the cluster's own ServiceCIDR, a ClusterIP
/// Service `default/web` and a LoadBalancer Service `shop/edge`.
fn cluster() -> Cluster {
    Cluster {
        nodes: vec![node("worker-1", "2001:db8:42:1::/64")],
        pools: vec![pool("gua", &["2001:db8:42::/48"], &["2001:db8:42::/64"])],
        claims: vec![
            claim(
                "services",
                Purpose::ServiceCIDR,
                Some(("gua", "2001:db8:42:ff::/112")),
            ),
            claim(
                "lb",
                Purpose::LoadBalancer,
                Some(("gua", "2001:db8:42:fe::/120")),
            ),
            claim("later", Purpose::Static, None),
        ],
        service_cidrs: vec![
            service_cidr("services", "2001:db8:42:ff::/112", Some("services")),
            service_cidr("kubernetes", "fd00:10:96::/108", None),
        ],
        services: vec![
            service("default", "web", "2001:db8:42:ff::10", None),
            service("shop", "edge", "fd00:10:96::20", Some("2001:db8:42:fe::1")),
        ],
        ..Default::default()
    }
}

mod status;

fn ask(c: &Cluster, q: &str) -> (String, WhoisReport) {
    let r = whois(&q.parse().expect("query"), c);
    (whois_text(&r), r)
}

#[test]
fn whois_finds_the_node_the_time_and_the_pool() {
    let mut c = cluster();
    c.nodes.push(node("hand", "2001:db8:42:2::/64"));
    c.events = vec![
        allocated("worker-1", "uid-worker-1", 1_800_000_000),
        // An earlier object of the same name: not this Node's.
        allocated("hand", "uid-old", 1_700_000_000),
    ];
    let (t, r) = ask(&c, "2001:db8:42:1::5");
    assert!(r.found);
    assert_eq!(
        t,
        "2001:db8:42:1::/64: Node worker-1 (uid uid-worker-1), allocated at 2027-01-15T08:00:00Z, PrefixPool gua (2001:db8:42::/48)\n"
    );
    let (t, _) = ask(&c, "2001:db8:42::/56");
    assert!(
        t.contains("Node worker-1") && t.contains("Node hand"),
        "a prefix finds every Node inside it: {t}"
    );
    assert!(t.contains("allocation time unknown"), "{t}");
    assert!("nonsense".parse::<Query>().is_err());

    // The annotations the write leaves on the Node outlive the Event.
    let mut annotated = node("worker-3", "2001:db8:42:3::/64");
    annotated.metadata.annotations = Some(
        [
            (POOLS_ANNOTATION.to_string(), "gua".to_string()),
            (
                ALLOCATED_AT_ANNOTATION.to_string(),
                "2026-12-03T07:00:00Z".to_string(),
            ),
        ]
        .into(),
    );
    c.nodes = vec![annotated];
    c.events.clear();
    let (t, r) = ask(&c, "2001:db8:42:3::/64");
    assert!(r.found);
    assert!(
        t.contains("Node worker-3 (uid uid-worker-3), allocated at 2026-12-03T07:00:00Z, PrefixPool gua (2001:db8:42::/48) (the Node's ipam.prefix-operator.io/pools: gua)"),
        "{t}"
    );
}

#[test]
fn whois_names_the_claim_its_service_cidr_and_the_cluster_ip() {
    let (t, r) = ask(&cluster(), "2001:db8:42:ff::10");
    assert!(r.found);
    assert_eq!(
        t,
        "2001:db8:42:ff::/112: PrefixClaim services (ServiceCIDR, Ready True Serving), PrefixPool gua (2001:db8:42::/48), ServiceCIDR services\n\
         2001:db8:42:ff::10: Service default/web, ClusterIP, from PrefixClaim services (2001:db8:42:ff::/112), ServiceCIDR services\n"
    );
    // A free address of the claim: the claim and its ServiceCIDR hold it.
    let (t, r) = ask(&cluster(), "2001:db8:42:ff::99");
    assert!(r.found && r.holders.len() == 1, "{t}");
    assert!(
        matches!(&r.holders[0], Holder::PrefixClaim(h) if h.service_cidr.as_deref() == Some("services"))
    );
    // The cluster's own range: no claim made it.
    let (t, _) = ask(&cluster(), "fd00:10:96::20");
    assert!(
        t.starts_with("fd00:10:96::/108: ServiceCIDR kubernetes (made by no PrefixClaim)\n"),
        "{t}"
    );
    assert!(t.contains("fd00:10:96::20: Service shop/edge, ClusterIP, in no PrefixClaim's prefix, ServiceCIDR kubernetes"), "{t}");
}

#[test]
fn whois_names_the_load_balancer_service_and_its_claim() {
    let (t, r) = ask(&cluster(), "2001:db8:42:fe::1");
    assert!(r.found);
    assert_eq!(
        t,
        format!(
            "2001:db8:42:fe::/120: PrefixClaim lb (LoadBalancer, Ready True Serving), PrefixPool gua (2001:db8:42::/48)\n\
             2001:db8:42:fe::1: Service shop/edge, LoadBalancer address (class {}), from PrefixClaim lb (2001:db8:42:fe::/120)\n",
            crate::controller::LOAD_BALANCER_CLASS
        )
    );
    let Some(Holder::Service(s)) = r.holders.get(1) else {
        panic!("{r:?}")
    };
    assert_eq!(
        (s.service.as_str(), s.role.as_str(), s.claim.as_deref()),
        ("shop/edge", "LoadBalancer", Some("lb"))
    );
}

#[test]
fn whois_of_a_free_address_says_whose_space_it_is() {
    let (t, r) = ask(&cluster(), "2001:db8:42::1");
    assert!(!r.found && r.reserved);
    assert_eq!(
        t,
        "2001:db8:42::1: held by nobody (no Node, PrefixClaim, ServiceCIDR or Service); in PrefixPool gua (2001:db8:42::/48) (a reserved range)\n"
    );
    let (t, r) = ask(&cluster(), "2001:db8:99::1");
    assert!(!r.found && r.pools.is_empty());
    assert!(t.ends_with(", in no PrefixPool's prefixes\n"), "{t}");
    // A delegated pool's space is its delegated prefix.
    let c = Cluster {
        pools: vec![delegated_pool("pd", Some("2001:db8:77::/56"))],
        ..Default::default()
    };
    let (t, _) = ask(&c, "2001:db8:77:5::1");
    assert!(t.contains("in PrefixPool pd (2001:db8:77::/56)"), "{t}");
}

#[test]
fn json_and_yaml_carry_the_report_field_for_field() {
    let c = cluster();
    let r = whois(&"2001:db8:42:fe::1".parse().expect("q"), &c);
    let json = render(Output::Json, &r, whois_text).expect("json");
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["query"], "2001:db8:42:fe::1");
    assert_eq!(v["found"], true);
    assert_eq!(v["holders"][0]["kind"], "PrefixClaim");
    assert_eq!(v["holders"][1]["kind"], "Service");
    assert_eq!(v["holders"][1]["service"], "shop/edge");
    assert_eq!(v["holders"][1]["claimPrefix"], "2001:db8:42:fe::/120");
    assert_eq!(serde_json::from_str::<WhoisReport>(&json).expect("back"), r);
    let yaml = render(Output::Yaml, &r, whois_text).expect("yaml");
    assert_eq!(serde_yaml::from_str::<WhoisReport>(&yaml).expect("back"), r);

    let s = status(&c, "kube-system/prefix-operator", at(0));
    let json = render(Output::Json, &s, status_text).expect("json");
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["pools"][0]["name"], "gua");
    assert_eq!(v["pools"][0]["claims"][1]["serviceCidr"], "services");
    assert_eq!(v["pools"][0]["ready"], serde_json::Value::Null);
    assert_eq!(v["unboundClaims"][0]["name"], "later");
    assert_eq!(v["leader"]["leaseFound"], false);
    assert_eq!(
        serde_json::from_str::<StatusReport>(&json).expect("back"),
        s
    );
    let yaml = render(Output::Yaml, &s, status_text).expect("yaml");
    assert_eq!(
        serde_yaml::from_str::<StatusReport>(&yaml).expect("back"),
        s
    );
    assert_eq!(
        render(Output::Text, &s, status_text).expect("text"),
        status_text(&s)
    );
}
