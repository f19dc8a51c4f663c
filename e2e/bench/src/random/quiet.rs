//! Invariant (e) (and (i), `quiet_claims`), checked once the run is quiet (no faults, every replica
//! up): the Nodes are served where there is space, and every pool's status
//! agrees with the Nodes the API server holds.

use std::collections::BTreeMap;

use ipnet::IpNet;
use prefix_operator::api::PrefixPool;

use super::check::{NodeView, Snapshot, node_len, view};
use super::history::Record;
use super::model::{capacity, family, free_slots, nets, overlap, selects};

/// One pool as the quiet checks need it.
struct PoolView<'a> {
    name: &'a str,
    uid: &'a str,
    pool: &'a PrefixPool,
    family: u8,
    len: u8,
    prefixes: Vec<IpNet>,
    reserved: Vec<IpNet>,
    free: u128,
}

/// Everything (e) finds wrong; empty when the status and the Nodes agree.
pub fn quiet(s: &Snapshot, rec: &Record) -> Vec<String> {
    let nodes: Vec<NodeView> = s.nodes.iter().map(view).collect();
    let mut taken: Vec<IpNet> = nodes.iter().flat_map(|n| nets(&n.cidrs)).collect();
    // Claims take node slots as Nodes do.
    taken.extend(super::check_svc::bound(s).iter().map(|c| c.prefix));
    let pools: Vec<PoolView> = s.pools.iter().map(|p| pool_view(p, &taken)).collect();
    let mut out = vec![];
    for n in nodes.iter().filter(|n| n.cidrs.is_empty() && !n.deleting) {
        let fams = families_for(n, &pools);
        if !fams.is_empty() && fams.values().all(|space| *space) {
            out.push(format!(
                "(e) Node {} waits without podCIDRs although every family that selects it has space ({:?})",
                n.name,
                fams.keys().collect::<Vec<_>>()
            ));
        }
    }
    for p in &pools {
        out.extend(pool_status(p, &nodes, &pools, rec));
    }
    out
}

fn pool_view<'a>(p: &'a PrefixPool, taken: &[IpNet]) -> PoolView<'a> {
    let prefixes = nets(&p.spec.prefixes);
    let reserved = nets(&p.spec.reserved);
    let len = node_len(&p.spec);
    let mut blocked = taken.to_vec();
    blocked.extend(reserved.iter().copied());
    PoolView {
        name: p.metadata.name.as_deref().unwrap_or(""),
        uid: p.metadata.uid.as_deref().unwrap_or(""),
        pool: p,
        family: prefixes.first().map(family).unwrap_or(6),
        len,
        free: free_slots(&prefixes, len, &blocked),
        prefixes,
        reserved,
    }
}

/// For each family with a pool selecting `n`: whether one of them has space.
fn families_for(n: &NodeView, pools: &[PoolView]) -> BTreeMap<u8, bool> {
    let mut fams = BTreeMap::new();
    for p in pools
        .iter()
        .filter(|p| selects(p.pool.spec.node_selector.as_ref(), &n.labels))
    {
        *fams.entry(p.family).or_insert(false) |= p.free > 0;
    }
    fams
}

fn pool_status(p: &PoolView, nodes: &[NodeView], pools: &[PoolView], rec: &Record) -> Vec<String> {
    let mut out = vec![];
    let Some(st) = p.pool.status.as_ref() else {
        return vec![format!("(e) pool {}: no status", p.name)];
    };
    if st.observed_generation != p.pool.metadata.generation {
        out.push(format!(
            "(e) pool {}: status.observedGeneration {:?} but generation {:?}",
            p.name, st.observed_generation, p.pool.metadata.generation
        ));
    }
    let cap: u128 = p.prefixes.iter().map(|q| capacity(q, p.len)).sum();
    if st.capacity.as_deref() != Some(cap.to_string().as_str()) {
        out.push(format!(
            "(e) pool {}: status.capacity {:?}, spec {:?} holds {cap}",
            p.name, st.capacity, p.pool.spec.prefixes
        ));
    }
    let mut active: Vec<&str> = st
        .prefixes
        .iter()
        .filter(|u| !u.retired)
        .map(|u| u.prefix.as_str())
        .collect();
    active.sort_unstable();
    let mut spec: Vec<&str> = p.pool.spec.prefixes.iter().map(|s| s.as_str()).collect();
    spec.sort_unstable();
    if active != spec {
        out.push(format!(
            "(e) pool {}: status.prefixes {active:?} (not retired) but spec.prefixes {spec:?}",
            p.name
        ));
    }
    let retired: Vec<IpNet> = st
        .prefixes
        .iter()
        .filter(|u| u.retired)
        .filter_map(|u| u.prefix.parse().ok())
        .collect();
    out.extend(allocated(p, nodes, &retired, st.allocated));
    out.extend(waiting(p, nodes, pools, st.waiting));
    out.extend(retired_listed(p, nodes, rec, st));
    out
}

/// status.allocated counts the Nodes holding a node prefix of the pool
/// (spec or retired prefixes); Nodes in conflict may or may not count.
fn allocated(p: &PoolView, nodes: &[NodeView], retired: &[IpNet], got: Option<i64>) -> Vec<String> {
    let all: Vec<(usize, IpNet)> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| nets(&n.cidrs).into_iter().map(move |c| (i, c)))
        .collect();
    let (mut lo, mut hi) = (0i64, 0i64);
    for (i, c) in &all {
        let ours =
            c.prefix_len() == p.len && p.prefixes.iter().chain(retired).any(|q| q.contains(c));
        if !ours {
            continue;
        }
        hi += 1;
        let clash = p.reserved.iter().any(|r| overlap(r, c))
            || all.iter().any(|(j, d)| j != i && overlap(c, d));
        if !clash {
            lo += 1;
        }
    }
    let got_n = got.unwrap_or(0);
    if got_n < lo || got_n > hi {
        vec![format!(
            "(e) pool {}: status.allocated {got:?}, the Nodes hold {lo} of its prefixes ({} more in conflict)",
            p.name,
            hi - lo
        )]
    } else {
        vec![]
    }
}

/// status.waiting counts the selected Nodes without podCIDRs (not being
/// deleted) for which no pool of this family has space. A dual-stack Node
/// with both families full may be counted by either family's pools.
fn waiting(p: &PoolView, nodes: &[NodeView], pools: &[PoolView], got: Option<i64>) -> Vec<String> {
    let (mut lo, mut hi) = (0i64, 0i64);
    for n in nodes.iter().filter(|n| n.cidrs.is_empty() && !n.deleting) {
        if !selects(p.pool.spec.node_selector.as_ref(), &n.labels) {
            continue;
        }
        let fams = families_for(n, pools);
        if fams.get(&p.family) == Some(&true) {
            continue;
        }
        hi += 1;
        if fams.values().filter(|space| !**space).count() == 1 {
            lo += 1;
        }
    }
    let got_n = got.unwrap_or(0);
    if got_n < lo || got_n > hi {
        vec![format!(
            "(e) pool {}: status.waiting {got:?}, but {lo} selected Node(s) wait for its family{}",
            p.name,
            if hi > lo {
                format!(" ({} more dual-stack may)", hi - lo)
            } else {
                String::new()
            }
        )]
    } else {
        vec![]
    }
}

/// A prefix this pool (same UID) had in a spec the operator had time to
/// see, no longer in the spec but still holding Nodes, is listed
/// `retired: true` with its allocations counted.
fn retired_listed(
    p: &PoolView,
    nodes: &[NodeView],
    rec: &Record,
    st: &prefix_operator::api::PrefixPoolStatus,
) -> Vec<String> {
    let Some(r) = rec.pools.get(p.uid) else {
        return vec![];
    };
    let mut past: Vec<IpNet> = (0..r.versions.len())
        .filter(|i| {
            let until = r.until(*i).unwrap_or_else(std::time::Instant::now);
            rec.saw_by(r.versions[*i].from, until)
        })
        .flat_map(|i| nets(&r.versions[i].spec.prefixes))
        .filter(|q| !p.prefixes.iter().any(|c| overlap(c, q)))
        .collect();
    past.sort();
    past.dedup();
    let mut out = vec![];
    for q in past {
        let held = nodes
            .iter()
            .flat_map(|n| nets(&n.cidrs))
            .filter(|c| c.prefix_len() == p.len && q.contains(c))
            .count() as i64;
        if held == 0 {
            continue;
        }
        let entry = st.prefixes.iter().find(|u| u.prefix == q.to_string());
        match entry {
            Some(u) if u.retired && u.allocated == held => {}
            other => out.push(format!(
                "(e) pool {}: removed prefix {q} still holds {held} Node(s) but status lists {:?}",
                p.name,
                other.map(|u| (u.retired, u.allocated))
            )),
        }
    }
    out
}
