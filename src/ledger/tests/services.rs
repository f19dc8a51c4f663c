//! LoadBalancer addresses in the ledger: from LoadBalancer claims, one per
//! family, never to two Services, requested ones honoured or refused.

use std::net::IpAddr;

use super::*;
use crate::api::{IpFamily, PrefixClaimSpec, Purpose};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// A bound LoadBalancer claim of `prefix`.
fn lb_claim(l: &mut Ledger, name: &str, prefix: &str) {
    let fam = if prefix.contains(':') {
        IpFamily::IPv6
    } else {
        IpFamily::IPv4
    };
    let spec = PrefixClaimSpec {
        pool: Some("p".into()),
        pool_selector: None,
        ip_family: fam,
        prefix_length: net(prefix).prefix_len().into(),
        purpose: Purpose::LoadBalancer,
    };
    l.upsert_claim(&ClaimSnapshot {
        name: name.into(),
        uid: format!("cuid-{name}"),
        resource_version: next_rv(),
        generation: 1,
        def: crate::api::validate_claim(&spec),
        prefix: Some(prefix.into()),
        pool: Some("p".into()),
        deleting: false,
        finalized: true,
    });
}

fn svc(key: &str, families: &[Family], requested: &[&str]) -> ServiceSnapshot {
    ServiceSnapshot {
        key: key.into(),
        uid: format!("suid-{key}"),
        resource_version: next_rv(),
        load_balancer: true,
        wants: Some(Wants {
            families: families.to_vec(),
            requested: requested.iter().map(|r| ip(r)).collect(),
        }),
        ingress: vec![],
    }
}

/// Plans and commits as the API server would answer.
fn assign(l: &mut Ledger, s: &ServiceSnapshot) -> Result<Vec<IpAddr>, AddressWait> {
    l.upsert_service(s);
    match l.plan_service(&s.key) {
        AddressPlan::Assign(picks) => {
            let ips: Vec<IpAddr> = picks.iter().map(|(_, a)| *a).collect();
            l.commit_service(&ServiceSnapshot {
                resource_version: next_rv(),
                ingress: ips.clone(),
                ..s.clone()
            });
            Ok(ips)
        }
        AddressPlan::Wait(w) => Err(w),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lowest_free_address_per_family_and_never_twice() {
    let mut l = Ledger::new();
    lb_claim(&mut l, "v6", "2001:db8:0:1::/126");
    lb_claim(&mut l, "v4", "192.0.2.0/30");
    // The network address (and IPv4 broadcast) are never handed out.
    let a = assign(&mut l, &svc("ns/a", &[Family::V6, Family::V4], &[])).expect("room");
    assert_eq!(a, vec![ip("2001:db8:0:1::1"), ip("192.0.2.1")]);
    let b = assign(&mut l, &svc("ns/b", &[Family::V4], &[])).expect("room");
    assert_eq!(b, vec![ip("192.0.2.2")]);
    assert_eq!(
        assign(&mut l, &svc("ns/c", &[Family::V4], &[])),
        Err(AddressWait::Exhausted {
            family: Family::V4,
            claims: vec!["v4".into()]
        })
    );
    // A stale event of b without addresses does not free them.
    let stale = svc("ns/b", &[Family::V4], &[]);
    assert!(!l.upsert_service(&ServiceSnapshot {
        resource_version: Some(1),
        ..stale
    }));
    assert!(matches!(l.plan_service("ns/c"), AddressPlan::Wait(_)));
    // b deleted: c gets its address.
    assert!(l.remove_service("ns/b", "suid-ns/b", next_rv()));
    assert_eq!(
        assign(&mut l, &svc("ns/c", &[Family::V4], &[])),
        Ok(vec![ip("192.0.2.2")])
    );
    assert_eq!(l.claim_address_counts().get("v4"), Some(&(2, 2)));
}

#[test]
fn requested_addresses_are_honoured_or_refused_with_a_reason() {
    let mut l = Ledger::new();
    lb_claim(&mut l, "v6", "2001:db8:0:1::/120");
    assert_eq!(
        assign(&mut l, &svc("ns/a", &[Family::V6], &["2001:db8:0:1::42"])),
        Ok(vec![ip("2001:db8:0:1::42")])
    );
    assert_eq!(
        assign(&mut l, &svc("ns/b", &[Family::V6], &["2001:db8:0:1::42"])),
        Err(AddressWait::Taken {
            address: ip("2001:db8:0:1::42"),
            by: "ns/a".into()
        })
    );
    for outside in ["2001:db8:0:2::1", "2001:db8:0:1::"] {
        assert_eq!(
            assign(&mut l, &svc("ns/c", &[Family::V6], &[outside])),
            Err(AddressWait::Outside(ip(outside)))
        );
    }
    // A requested address of a family the Service does not ask for.
    assert_eq!(
        assign(&mut l, &svc("ns/d", &[Family::V6], &["192.0.2.9"])),
        Err(AddressWait::Outside(ip("192.0.2.9")))
    );
    // No claim of the family at all.
    assert_eq!(
        assign(&mut l, &svc("ns/e", &[Family::V4], &[])),
        Err(AddressWait::NoClaim(Family::V4))
    );
    // A reservation in flight blocks the address for everyone else.
    l.upsert_service(&svc("ns/f", &[Family::V6], &[]));
    let AddressPlan::Assign(picks) = l.plan_service("ns/f") else {
        panic!("room")
    };
    let reserved = picks[0].1;
    l.upsert_service(&svc("ns/g", &[Family::V6], &[]));
    let AddressPlan::Assign(other) = l.plan_service("ns/g") else {
        panic!("room")
    };
    assert_ne!(other[0].1, reserved);
}

#[test]
fn a_service_that_stops_being_a_load_balancer_is_released() {
    let mut l = Ledger::new();
    lb_claim(&mut l, "v6", "2001:db8:0:1::/120");
    let s = svc("ns/a", &[Family::V6], &[]);
    let got = assign(&mut l, &s).expect("room");
    let now_cluster_ip = ServiceSnapshot {
        resource_version: next_rv(),
        load_balancer: false,
        wants: None,
        ingress: got.clone(),
        ..s.clone()
    };
    l.upsert_service(&now_cluster_ip);
    assert_eq!(l.plan_service("ns/a"), AddressPlan::Release);
    assert_eq!(l.services_inside(&net("2001:db8:0:1::/120")), vec!["ns/a"]);
    l.commit_service(&ServiceSnapshot {
        resource_version: next_rv(),
        ingress: vec![],
        ..now_cluster_ip
    });
    assert!(l.services_inside(&net("2001:db8:0:1::/120")).is_empty());
    // Another controller's LoadBalancer (not ours) is left alone.
    let foreign = ServiceSnapshot {
        wants: None,
        ingress: vec![ip("2001:db8:0:1::9")],
        ..svc("ns/metallb", &[Family::V6], &[])
    };
    l.upsert_service(&foreign);
    assert_eq!(l.plan_service("ns/metallb"), AddressPlan::Nothing);
    // ... but its address is not handed out again.
    let next = assign(&mut l, &svc("ns/b", &[Family::V6], &["2001:db8:0:1::9"]));
    assert!(matches!(next, Err(AddressWait::Taken { .. })), "{next:?}");
}
