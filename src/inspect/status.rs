//! `prefix-operator status`, without I/O: every pool's usage (a delegated
//! pool's delegated prefixes among them), the claims of each pool, and the
//! leader named by the Lease.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;

use super::cluster::Cluster;
use super::holders::{ready_of, service_cidr_of};
use super::report::{ClaimReport, DelegationReport, LeaderReport, PoolReport, StatusReport};
use crate::api::{PrefixClaim, PrefixPool};

/// The report of `c`: pools by name with their claims, claims no listed
/// pool holds, and the leader of Lease `lease` (`namespace/name`), judged
/// expired against `now`.
pub fn status(c: &Cluster, lease: &str, now: Timestamp) -> StatusReport {
    let mut claims: Vec<ClaimReport> = c.claims.iter().map(|x| claim_report(x, c)).collect();
    claims.sort_by(|a, b| (&a.pool, &a.name).cmp(&(&b.pool, &b.name)));
    let mut pools: Vec<PoolReport> = c.pools.iter().map(pool_report).collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    let mut unbound_claims = vec![];
    for claim in claims {
        match pools
            .iter_mut()
            .find(|p| claim.pool.as_deref() == Some(p.name.as_str()))
        {
            Some(p) => p.claims.push(claim),
            None => unbound_claims.push(claim),
        }
    }
    StatusReport {
        pools,
        unbound_claims,
        leader: leader_report(c.lease.as_ref(), lease, now),
    }
}

fn pool_report(p: &PrefixPool) -> PoolReport {
    let st = p.status.clone().unwrap_or_default();
    let delegation = p.spec.delegation.as_ref().map(|spec| {
        let d = st.delegation.clone().unwrap_or_default();
        DelegationReport {
            interface: spec.interface.clone(),
            phase: Some(d.phase).filter(|ph| !ph.is_empty()),
            prefixes: d.prefixes,
            renew_at: d.renew_at.map(|t| t.0.to_string()),
            message: d.message,
        }
    });
    let prefixes = match &delegation {
        Some(d) => d.prefixes.iter().map(|x| x.prefix.clone()).collect(),
        None => p.spec.prefixes.clone(),
    };
    PoolReport {
        name: p.metadata.name.clone().unwrap_or_default(),
        family: st.family,
        scope: st.scope,
        node_prefix_length: st.node_prefix_length,
        prefixes,
        delegation,
        capacity: st.capacity,
        allocated: st.allocated,
        available: st.available,
        used: st.used,
        waiting: st.waiting.unwrap_or(0),
        waiting_nodes: st.waiting_nodes,
        conflicts: st.conflicts,
        ready: ready_of(&st.conditions),
        claims: vec![],
    }
}

fn claim_report(claim: &PrefixClaim, c: &Cluster) -> ClaimReport {
    let st = claim.status.clone().unwrap_or_default();
    ClaimReport {
        name: claim.metadata.name.clone().unwrap_or_default(),
        purpose: claim.spec.purpose.as_str().to_string(),
        pool: st.pool,
        prefix: st.prefix,
        service_cidr: service_cidr_of(claim, &c.service_cidrs),
        ready: ready_of(&st.conditions),
        deleting: claim.metadata.deletion_timestamp.is_some(),
    }
}

fn leader_report(lease: Option<&Lease>, name: &str, now: Timestamp) -> LeaderReport {
    let Some(spec) = lease.map(|l| l.spec.clone().unwrap_or_default()) else {
        return LeaderReport {
            lease: name.to_string(),
            ..Default::default()
        };
    };
    let renewed = spec.renew_time.as_ref().map(|t| t.0);
    let expired = match (renewed, spec.lease_duration_seconds) {
        (Some(t), Some(d)) => {
            let secs = now.as_second() - t.as_second();
            secs > i64::from(d)
        }
        _ => false,
    };
    LeaderReport {
        lease: name.to_string(),
        lease_found: true,
        holder: spec.holder_identity.filter(|h| !h.is_empty()),
        renew_time: renewed.map(|t| t.to_string()),
        lease_duration_seconds: spec.lease_duration_seconds,
        expired,
    }
}
