//! Invariants of claims and Services, always against what the API server
//! holds (the snapshot's lists) and the history, never the operator:
//!
//! - (g) no Node the operator wrote and no bound claim holds a live
//!   ClusterIP (an IPAddress object) or a LoadBalancer ingress address —
//!   except a ServiceCIDR claim its own ClusterIPs (an address created no
//!   earlier than the claim) and a LoadBalancer claim the addresses it
//!   hands out. Nodes the run wrote by hand are its own doing (they are
//!   conflicts, reported by (i)).
//! - (j) no two bound claims overlap; no Node the operator wrote overlaps a
//!   bound claim; no claim is bound over a hand-written Node prefix or
//!   inside a reserved range that the operator had time to see.
//! - (k) no LoadBalancer address is held by two Services.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use prefix_operator::api::{PrefixClaim, Purpose};

use super::check::{Snapshot, operator_written, reserved_runs};
use super::history::Record;
use super::model::{nets, overlap};

/// A claim with a prefix, as the checks need it.
pub struct ClaimView<'a> {
    pub name: &'a str,
    pub uid: &'a str,
    pub purpose: Purpose,
    pub prefix: IpNet,
    pub deleting: bool,
    pub claim: &'a PrefixClaim,
}

/// Every claim the API server shows bound (`status.prefix`), deleting or not.
pub fn bound(s: &Snapshot) -> Vec<ClaimView<'_>> {
    s.claims
        .iter()
        .filter_map(|c| {
            let prefix = c.status.as_ref()?.prefix.as_deref()?.parse().ok()?;
            Some(ClaimView {
                name: c.metadata.name.as_deref().unwrap_or(""),
                uid: c.metadata.uid.as_deref().unwrap_or(""),
                purpose: c.spec.purpose,
                prefix,
                deleting: c.metadata.deletion_timestamp.is_some(),
                claim: c,
            })
        })
        .collect()
}

/// The addresses in a Service's `status.loadBalancer.ingress`.
pub use prefix_operator::k8s::services::ingress_ips as lb_addresses;

fn svc_name(s: &Service) -> String {
    format!(
        "{}/{}",
        s.metadata.namespace.as_deref().unwrap_or(""),
        s.metadata.name.as_deref().unwrap_or("")
    )
}

pub fn continuous(s: &Snapshot, rec: &Record) -> Vec<String> {
    let claims = bound(s);
    let mut out = addresses(s, rec, &claims);
    out.extend(claim_overlaps(s, rec, &claims));
    out
}

/// (g) and (k).
fn addresses(s: &Snapshot, rec: &Record, claims: &[ClaimView]) -> Vec<String> {
    let mut out = vec![];
    let nodes = operator_written(s, rec);
    let mut lb: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    for svc in &s.services {
        for ip in lb_addresses(svc) {
            lb.entry(ip).or_default().push(svc_name(svc));
        }
    }
    for (ip, holders) in &lb {
        if holders.len() > 1 {
            out.push(format!("(k) LoadBalancer address {ip} held by {holders:?}"));
        }
        for (v, _) in &nodes {
            if let Some(c) = nets(&v.cidrs).iter().find(|c| c.contains(ip)) {
                out.push(format!(
                    "(g) Node {} holds {c} with LoadBalancer address {ip} of {holders:?}",
                    v.name
                ));
            }
        }
        for c in claims.iter().filter(|c| c.prefix.contains(ip)) {
            if c.purpose != Purpose::LoadBalancer {
                out.push(format!(
                    "(g) {:?} claim {} holds {} with LoadBalancer address {ip} of {holders:?}",
                    c.purpose, c.name, c.prefix
                ));
            }
        }
    }
    for a in &s.addresses {
        let Some(ip) = a
            .metadata
            .name
            .as_deref()
            .and_then(|n| n.parse::<IpAddr>().ok())
        else {
            continue;
        };
        let parent = a
            .spec
            .as_ref()
            .map(|p| {
                let r = &p.parent_ref;
                format!(
                    "{} {}/{}",
                    r.resource,
                    r.namespace.as_deref().unwrap_or(""),
                    r.name
                )
            })
            .unwrap_or_default();
        for (v, _) in &nodes {
            if let Some(c) = nets(&v.cidrs).iter().find(|c| c.contains(&ip)) {
                out.push(format!(
                    "(g) Node {} holds {c} with live ClusterIP {ip} ({parent})",
                    v.name
                ));
            }
        }
        let created = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
        for c in claims.iter().filter(|c| c.prefix.contains(&ip)) {
            let since = c.claim.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let own = c.purpose == Purpose::ServiceCIDR
                && matches!((created, since), (Some(a), Some(b)) if a >= b);
            if !own {
                out.push(format!(
                    "(g) {:?} claim {} holds {} with live ClusterIP {ip} ({parent}{})",
                    c.purpose,
                    c.name,
                    c.prefix,
                    if c.purpose == Purpose::ServiceCIDR {
                        ", created before the claim"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    out
}

/// (j).
fn claim_overlaps(s: &Snapshot, rec: &Record, claims: &[ClaimView]) -> Vec<String> {
    let mut out = vec![];
    for (i, a) in claims.iter().enumerate() {
        for b in &claims[i + 1..] {
            if overlap(&a.prefix, &b.prefix) {
                out.push(format!(
                    "(j) claims {} {} and {} {} overlap",
                    a.name, a.prefix, b.name, b.prefix
                ));
            }
        }
    }
    let bound_at = |c: &ClaimView| {
        rec.claims
            .get(c.uid)
            .and_then(|r| r.bound.as_ref())
            .map(|b| b.1)
    };
    for v in s.nodes.iter().map(super::check::view) {
        let Some(r) = rec.nodes.get(v.uid) else {
            continue;
        };
        for x in nets(&v.cidrs) {
            for c in claims.iter().filter(|c| overlap(&c.prefix, &x)) {
                if !r.is_hand() {
                    out.push(format!(
                        "(j) Node {} (written by the operator) holds {x}, which overlaps claim {} {}",
                        v.name, c.name, c.prefix
                    ));
                    continue;
                }
                // A hand write the operator had seen before it bound the claim.
                let written = r.cidrs.as_ref().map(|w| w.1);
                if let (Some(w), Some(b)) = (written, bound_at(c))
                    && rec.saw_by(w, b)
                {
                    out.push(format!(
                        "(j) claim {} was bound to {} over {x}, hand-written into Node {} well before",
                        c.name, c.prefix, v.name
                    ));
                }
            }
        }
    }
    for c in claims {
        let Some(b) = bound_at(c) else { continue };
        for (pool, (start, end)) in reserved_runs(rec, &c.prefix) {
            if start <= b && end.is_none_or(|e| e >= b) && rec.saw_by(start, b) {
                out.push(format!(
                    "(j) claim {} was bound to {} inside a reserved range of pool {pool} in effect well before",
                    c.name, c.prefix
                ));
            }
        }
    }
    out
}
