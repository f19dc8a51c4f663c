//! Unit tests of the claim and Service invariants on hand-made snapshots.

use std::time::Instant;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service, ServiceStatus};
use k8s_openapi::api::networking::v1::{IPAddress, IPAddressSpec, ParentReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use prefix_operator::api::{
    PrefixClaim, PrefixClaimSpec, PrefixClaimStatus, PrefixPool, PrefixPoolSpec, Purpose,
};

use super::check::Snapshot;
use super::history::Record;

fn claim(name: &str, prefix: &str, purpose: Purpose, ready: (&str, &str)) -> PrefixClaim {
    let mut c = PrefixClaim::new(
        name,
        PrefixClaimSpec {
            pool: Some("p0".into()),
            pool_selector: None,
            ip_family: Default::default(),
            prefix_length: 120,
            purpose,
        },
    );
    c.metadata.uid = Some(format!("uid-{name}"));
    c.status = Some(PrefixClaimStatus {
        prefix: Some(prefix.into()),
        pool: Some("p0".into()),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: ready.0.into(),
            reason: ready.1.into(),
            message: String::new(),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }],
        ..Default::default()
    });
    c
}

fn lb(name: &str, ip: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: None,
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some(ip.into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        }),
    }
}

fn address(ip: &str) -> IPAddress {
    IPAddress {
        metadata: ObjectMeta {
            name: Some(ip.into()),
            ..Default::default()
        },
        spec: Some(IPAddressSpec {
            parent_ref: ParentReference {
                resource: "services".into(),
                name: "web".into(),
                namespace: Some("default".into()),
                ..Default::default()
            },
        }),
    }
}

fn snapshot(
    claims: Vec<PrefixClaim>,
    services: Vec<Service>,
    addresses: Vec<IPAddress>,
) -> Snapshot {
    Snapshot {
        nodes: vec![],
        pools: vec![],
        claims,
        services,
        addresses,
        at: Instant::now(),
    }
}

fn tags(v: &[String]) -> Vec<&str> {
    v.iter().map(|l| &l[..3]).collect()
}

#[test]
fn addresses_belong_to_their_own_claims_only() {
    let lb6 = claim(
        "lb6",
        "2001:db8::/120",
        Purpose::LoadBalancer,
        ("True", "Serving"),
    );
    let st = claim(
        "st",
        "2001:db8:0:1::/120",
        Purpose::Static,
        ("True", "Claimed"),
    );
    let rec = Record::default();
    // An LB address in the LB claim, held once: fine.
    let s = snapshot(
        vec![lb6.clone(), st.clone()],
        vec![lb("a", "2001:db8::5")],
        vec![],
    );
    assert!(super::check_svc::continuous(&s, &rec).is_empty());
    // Held twice (k); a ClusterIP inside a Static claim (g).
    let s = snapshot(
        vec![lb6, st],
        vec![lb("a", "2001:db8::5"), lb("b", "2001:db8::5")],
        vec![address("2001:db8:0:1::9")],
    );
    assert_eq!(
        tags(&super::check_svc::continuous(&s, &rec)),
        ["(k)", "(g)"]
    );
}

#[test]
fn overlapping_claims_are_found_and_must_report_the_conflict() {
    let a = claim("a", "2001:db8::/120", Purpose::Static, ("True", "Claimed"));
    let b = claim(
        "b",
        "2001:db8::/124",
        Purpose::Static,
        ("False", "Conflict"),
    );
    let s = snapshot(vec![a, b], vec![], vec![]);
    assert_eq!(
        tags(&super::check_svc::continuous(&s, &Record::default())),
        ["(j)"]
    );
    // a does not show the conflict, b does.
    let q = super::quiet_claims::conflicts_reported(&s);
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(q[0].starts_with("(i) claim a "), "{q:?}");
}

#[test]
fn a_reserved_range_over_a_claim_is_a_conflict() {
    let a = claim("a", "2001:db8::/120", Purpose::Static, ("True", "Claimed"));
    let mut s = snapshot(vec![a], vec![], vec![]);
    s.pools.push(PrefixPool::new(
        "p0",
        PrefixPoolSpec {
            prefixes: vec!["2001:db8::/48".into()],
            reserved: vec!["2001:db8::/64".into()],
            ..Default::default()
        },
    ));
    assert_eq!(tags(&super::quiet_claims::conflicts_reported(&s)), ["(i)"]);
}
