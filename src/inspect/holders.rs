//! The holders `whois` finds besides Nodes: PrefixClaims (and the
//! ServiceCIDR of each), ServiceCIDRs made by no claim, and Services (a
//! ClusterIP, or a LoadBalancer address in `status.loadBalancer.ingress`)
//! with the claim whose prefix the address lies in. No I/O.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::ServiceCIDR;

use super::cluster::{Cluster, Query, pools_containing};
use super::report::{ClaimHold, Condition, Holder, ServiceCidrHold, ServiceHold};
use crate::api::{CLAIM_LABEL, PrefixClaim};

/// The claims whose prefix holds (or overlaps) the query.
pub fn claim_holders<'a>(q: &'a Query, c: &'a Cluster) -> impl Iterator<Item = Holder> + 'a {
    c.claims.iter().filter_map(move |claim| {
        let prefix = claimed(claim)?;
        if !q.hits(&prefix) {
            return None;
        }
        let st = claim.status.clone().unwrap_or_default();
        Some(Holder::PrefixClaim(ClaimHold {
            claim: name(claim),
            prefix: prefix.to_string(),
            purpose: claim.spec.purpose.as_str().to_string(),
            pool: st.pool.clone(),
            pools: pools_containing(&prefix, &c.pools),
            service_cidr: service_cidr_of(claim, &c.service_cidrs),
            ready: ready_of(&st.conditions),
        }))
    })
}

/// ServiceCIDRs holding the query that no listed claim made (the
/// cluster's own `kubernetes`, or one written by hand).
pub fn service_cidr_holders<'a>(q: &'a Query, c: &'a Cluster) -> impl Iterator<Item = Holder> + 'a {
    c.service_cidrs
        .iter()
        .filter(move |sc| !c.claims.iter().any(|claim| made_for(sc, &name(claim))))
        .flat_map(move |sc| {
            cidrs(sc)
                .into_iter()
                .filter(move |net| q.hits(net))
                .map(move |net| {
                    Holder::ServiceCIDR(ServiceCidrHold {
                        service_cidr: sc.metadata.name.clone().unwrap_or_default(),
                        prefix: net.to_string(),
                    })
                })
        })
}

/// Services with a ClusterIP or a LoadBalancer address the query holds.
pub fn service_holders<'a>(q: &'a Query, c: &'a Cluster) -> impl Iterator<Item = Holder> + 'a {
    c.services.iter().flat_map(move |s| {
        let key = format!(
            "{}/{}",
            s.metadata.namespace.as_deref().unwrap_or_default(),
            s.metadata.name.as_deref().unwrap_or_default()
        );
        let class = s
            .spec
            .as_ref()
            .and_then(|sp| sp.load_balancer_class.clone());
        let cluster = cluster_ips(s).into_iter().map(|ip| (ip, "ClusterIP"));
        let lb = crate::k8s::services::ingress_ips(s)
            .into_iter()
            .map(|ip| (ip, "LoadBalancer"));
        cluster
            .chain(lb)
            .filter(|(ip, _)| q.hits(&IpNet::from(*ip)))
            .map(move |(ip, role)| {
                let claim = claim_containing(&ip, &c.claims);
                let load_balancer = role == "LoadBalancer";
                Holder::Service(ServiceHold {
                    service: key.clone(),
                    address: ip.to_string(),
                    role: role.to_string(),
                    load_balancer_class: class.clone().filter(|_| load_balancer),
                    claim: claim.as_ref().map(|(n, _)| n.clone()),
                    claim_prefix: claim.map(|(_, p)| p.to_string()),
                    service_cidr: (!load_balancer)
                        .then(|| service_cidr_containing(&ip, &c.service_cidrs))
                        .flatten(),
                })
            })
            .collect::<Vec<_>>()
    })
}

fn name(claim: &PrefixClaim) -> String {
    claim.metadata.name.clone().unwrap_or_default()
}

/// The claim's bound prefix.
fn claimed(claim: &PrefixClaim) -> Option<IpNet> {
    claim
        .status
        .as_ref()?
        .prefix
        .as_deref()?
        .parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
}

pub(super) fn ready_of(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Option<Condition> {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| Condition {
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
}

/// Whether the operator made ServiceCIDR `sc` for the claim named `claim`:
/// it carries the claim label or a PrefixClaim owner of that name.
fn made_for(sc: &ServiceCIDR, claim: &str) -> bool {
    let labelled = sc
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CLAIM_LABEL))
        .is_some_and(|v| v == claim);
    let owned = sc
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "PrefixClaim" && o.name == claim);
    labelled || owned
}

/// The claim's ServiceCIDR: the one made for it, else the name its status
/// records.
pub(super) fn service_cidr_of(claim: &PrefixClaim, scs: &[ServiceCIDR]) -> Option<String> {
    let n = name(claim);
    scs.iter()
        .find(|sc| made_for(sc, &n))
        .and_then(|sc| sc.metadata.name.clone())
        .or_else(|| claim.status.as_ref()?.service_cidr.clone())
}

fn cidrs(sc: &ServiceCIDR) -> Vec<IpNet> {
    sc.spec
        .as_ref()
        .and_then(|s| s.cidrs.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.parse::<IpNet>().ok())
        .map(|n| n.trunc())
        .collect()
}

fn cluster_ips(s: &Service) -> Vec<IpAddr> {
    let Some(spec) = s.spec.as_ref() else {
        return vec![];
    };
    let mut ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|t| t.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// The claim (name, prefix) whose prefix holds `ip`.
fn claim_containing(ip: &IpAddr, claims: &[PrefixClaim]) -> Option<(String, IpNet)> {
    claims.iter().find_map(|c| {
        let p = claimed(c)?;
        p.contains(ip).then(|| (name(c), p))
    })
}

fn service_cidr_containing(ip: &IpAddr, scs: &[ServiceCIDR]) -> Option<String> {
    scs.iter()
        .find(|sc| cidrs(sc).iter().any(|n| n.contains(ip)))
        .and_then(|sc| sc.metadata.name.clone())
}
