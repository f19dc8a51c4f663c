//! Invariants (a)-(d), checked against what the API server holds (a fresh
//! list of Nodes and PrefixPools) and against the watch history: the
//! operator's own picture is never consulted.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::networking::v1::IPAddress;
use kube::api::ListParams;
use kube::{Api, Client};
use prefix_operator::api::{PrefixClaim, PrefixPool, PrefixPoolSpec};

use super::history::{History, NodeRec, PoolRec, Record};
use super::model::{Labels, family, nets, overlap, selects};
use crate::cluster::find_overlaps;

/// A read of the cluster (each kind one consistent list).
pub struct Snapshot {
    pub nodes: Vec<Node>,
    pub pools: Vec<PrefixPool>,
    pub claims: Vec<PrefixClaim>,
    pub services: Vec<Service>,
    /// `networking.k8s.io/v1` IPAddress objects: the live ClusterIPs.
    pub addresses: Vec<IPAddress>,
    pub at: Instant,
}

/// One Node as the checks need it.
pub struct NodeView<'a> {
    pub name: &'a str,
    pub uid: &'a str,
    pub labels: Labels,
    pub pod_cidr: Option<&'a String>,
    pub cidrs: Vec<String>,
    pub deleting: bool,
}

pub fn view(n: &Node) -> NodeView<'_> {
    let spec = n.spec.as_ref();
    NodeView {
        name: n.metadata.name.as_deref().unwrap_or(""),
        uid: n.metadata.uid.as_deref().unwrap_or(""),
        labels: n.metadata.labels.clone().unwrap_or_default(),
        pod_cidr: spec.and_then(|s| s.pod_cidr.as_ref()),
        cidrs: spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default(),
        deleting: n.metadata.deletion_timestamp.is_some(),
    }
}

/// Lists Nodes, pools, claims, Services and IPAddresses (retrying while
/// the control plane recovers) and feeds them to the history, marking UIDs
/// no longer listed as gone (a watch re-list never reports those deletes).
pub async fn snapshot(client: &Client, hist: &History) -> Result<Snapshot> {
    let nodes: Api<Node> = Api::all(client.clone());
    let pools: Api<PrefixPool> = Api::all(client.clone());
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    let services: Api<Service> = Api::all(client.clone());
    let addresses: Api<IPAddress> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    let (n, p, c, svc, ips) = loop {
        let r = async {
            let lp = ListParams::default();
            let n = nodes.list(&lp).await?;
            let p = pools.list(&lp).await?;
            let c = claims.list(&lp).await?;
            let s = services.list(&lp).await?;
            let a = addresses.list(&lp).await?;
            anyhow::Ok((n.items, p.items, c.items, s.items, a.items))
        }
        .await;
        match r {
            Ok(v) => break v,
            Err(e) if Instant::now() > deadline => return Err(e).context("listing for a check"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let at = Instant::now();
    let mut rec = hist.lock();
    for x in &n {
        rec.observe_node(x, at);
    }
    for x in &p {
        rec.observe_pool(x, at);
    }
    for x in &c {
        rec.observe_claim(x, at);
    }
    let live_claims: std::collections::HashSet<&str> =
        c.iter().filter_map(|x| x.metadata.uid.as_deref()).collect();
    for (uid, r) in rec.claims.iter_mut() {
        if !live_claims.contains(uid.as_str()) {
            r.gone.get_or_insert(at);
        }
    }
    let live_nodes: std::collections::HashSet<&str> =
        n.iter().filter_map(|x| x.metadata.uid.as_deref()).collect();
    let live_pools: std::collections::HashSet<&str> =
        p.iter().filter_map(|x| x.metadata.uid.as_deref()).collect();
    for (uid, r) in rec.nodes.iter_mut() {
        if !live_nodes.contains(uid.as_str()) {
            r.gone.get_or_insert(at);
        }
    }
    for (uid, r) in rec.pools.iter_mut() {
        if !live_pools.contains(uid.as_str()) {
            r.gone.get_or_insert(at);
        }
    }
    Ok(Snapshot {
        nodes: n,
        pools: p,
        claims: c,
        services: svc,
        addresses: ips,
        at,
    })
}

/// The node prefix length a spec carves (the default when unset).
pub fn node_len(spec: &PrefixPoolSpec) -> u8 {
    let fam = nets(&spec.prefixes).first().map(family).unwrap_or(6);
    match spec.node_prefix_length {
        Some(l) => u8::try_from(l).unwrap_or(0),
        None if fam == 4 => 24,
        None => 64,
    }
}

/// (a)-(d), (g), (h), (j), (k) and the watch-recorded (b) breaches.
pub fn continuous(s: &Snapshot, rec: &Record) -> Vec<String> {
    let mut out = rec.violations.clone();
    out.extend(super::check_svc::continuous(s, rec));
    out.extend(super::dual::first_writes(rec));
    let operator_held = operator_written(s, rec);
    let held: Vec<(IpNet, String)> = operator_held
        .iter()
        .flat_map(|(v, _)| nets(&v.cidrs).into_iter().map(|c| (c, v.name.to_string())))
        .collect();
    for ((a, an), (b, bn)) in find_overlaps(&held, 1000).0 {
        out.push(format!(
            "(a) overlap: {a} of Node {an} and {b} of Node {bn}"
        ));
    }
    for (v, r) in &operator_held {
        out.extend(form(v));
        out.extend(provenance(v, r, rec, s.at));
        out.extend(dual_stack(v, r, rec, s.at));
    }
    out
}

/// Live Nodes with podCIDRs that the run did not write, with their history.
pub(crate) fn operator_written<'a>(
    s: &'a Snapshot,
    rec: &'a Record,
) -> Vec<(NodeView<'a>, &'a NodeRec)> {
    s.nodes
        .iter()
        .map(view)
        .filter(|v| !v.cidrs.is_empty())
        .filter_map(|v| {
            let r = rec.nodes.get(v.uid)?;
            (!r.is_hand()).then_some((v, r))
        })
        .collect()
}

/// The shape the operator always writes: canonical, one per family,
/// podCIDR = podCIDRs[0].
fn form(v: &NodeView) -> Vec<String> {
    let mut out = vec![];
    if v.pod_cidr != v.cidrs.first() {
        out.push(format!(
            "(c) Node {}: podCIDR {:?} is not podCIDRs[0] {:?}",
            v.name,
            v.pod_cidr,
            v.cidrs.first()
        ));
    }
    let ns = nets(&v.cidrs);
    if ns.len() != v.cidrs.len()
        || ns
            .iter()
            .zip(&v.cidrs)
            .any(|(n, s)| n.trunc().to_string() != *s)
    {
        out.push(format!(
            "(c) Node {}: podCIDRs {:?} not canonical",
            v.name, v.cidrs
        ));
    }
    if ns.len() > 2 || (ns.len() == 2 && family(&ns[0]) == family(&ns[1])) {
        out.push(format!(
            "(c) Node {}: podCIDRs {:?} not one per family",
            v.name, v.cidrs
        ));
    }
    out
}

/// Version `i` of `p` is one the operator may still have believed at `at`.
fn believable(rec: &Record, p: &PoolRec, i: usize, at: Instant) -> bool {
    p.versions[i].from <= at && p.until(i).is_none_or(|u| u >= at || !rec.saw_by(u, at))
}

/// (c): each prefix lies in a pool version the operator could have been
/// acting on when it wrote, whose selector matched the Node at some point,
/// and in no reserved range the operator had time to see.
fn provenance(v: &NodeView, r: &NodeRec, rec: &Record, now: Instant) -> Vec<String> {
    let Some((_, at)) = &r.cidrs else {
        return vec![];
    };
    let at = (*at).min(now);
    let mut out = vec![];
    for x in nets(&v.cidrs) {
        let inside = rec.pools.values().any(|p| {
            (0..p.versions.len()).any(|i| {
                let spec = &p.versions[i].spec;
                believable(rec, p, i, at)
                    && node_len(spec) == x.prefix_len()
                    && nets(&spec.prefixes).iter().any(|q| q.contains(&x))
                    && r.labels
                        .iter()
                        .any(|(_, l)| selects(spec.node_selector.as_ref(), l))
            })
        });
        if !inside {
            out.push(format!(
                "(c) Node {} uid {}: {x} is in no prefix of a pool that selected it when it was written",
                v.name, v.uid
            ));
        }
        for (pool, res) in reserved_runs(rec, &x) {
            if res.0 <= at && res.1.is_none_or(|e| e >= at) && rec.saw_by(res.0, at) {
                out.push(format!(
                    "(c) Node {} uid {}: {x} lies in a reserved range of pool {pool}",
                    v.name, v.uid
                ));
            }
        }
    }
    out
}

/// For every pool and reserved range overlapping `x`: the spans in which
/// the range stayed in the spec without a break.
pub(crate) fn reserved_runs(rec: &Record, x: &IpNet) -> Vec<(String, (Instant, Option<Instant>))> {
    let mut out = vec![];
    for p in rec.pools.values() {
        let mut ranges: Vec<IpNet> = p
            .versions
            .iter()
            .flat_map(|v| nets(&v.spec.reserved))
            .filter(|r| overlap(r, x))
            .collect();
        ranges.sort();
        ranges.dedup();
        for r in ranges {
            let mut start: Option<Instant> = None;
            for (i, v) in p.versions.iter().enumerate() {
                let has = nets(&v.spec.reserved).contains(&r);
                match (has, start) {
                    (true, None) => start = Some(v.from),
                    (false, Some(s)) => {
                        out.push((p.name.clone(), (s, Some(v.from))));
                        start = None;
                    }
                    _ => {}
                }
                if i + 1 == p.versions.len()
                    && let Some(s) = start
                {
                    out.push((p.name.clone(), (s, p.gone)));
                }
            }
        }
    }
    out
}

/// (d): a Node written with one family although, when it was written, its
/// labels (steady long enough to be seen) matched pools of both families
/// that the operator had time to see.
fn dual_stack(v: &NodeView, r: &NodeRec, rec: &Record, now: Instant) -> Vec<String> {
    let Some((_, at)) = &r.cidrs else {
        return vec![];
    };
    let at = (*at).min(now);
    let fams: Vec<u8> = nets(&v.cidrs).iter().map(family).collect();
    if fams.len() != 1 {
        return vec![];
    }
    let Some((since, labels)) = r.labels_at(at) else {
        return vec![];
    };
    if !rec.saw_by(*since, at) {
        return vec![];
    }
    let other = rec.pools.values().find(|p| {
        (0..p.versions.len()).any(|i| {
            let ver = &p.versions[i];
            ver.from <= at
                && p.until(i).is_none_or(|u| u > at)
                && rec.saw_by(ver.from, at)
                && nets(&ver.spec.prefixes).first().map(family) != Some(fams[0])
                && selects(ver.spec.node_selector.as_ref(), labels)
        })
    });
    match other {
        Some(p) => vec![format!(
            "(d) Node {} uid {}: written {:?} (one family) although pool {} of the other family selected it",
            v.name, v.uid, v.cidrs, p.name
        )],
        None => vec![],
    }
}
