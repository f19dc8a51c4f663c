//! The end-state check: every expected Node holds one prefix of the pool,
//! and no two Nodes' prefixes overlap.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client};

use super::{poll, pool_allocated};

/// What the end-state check found.
#[derive(Clone, Debug)]
pub struct EndState {
    pub nodes: usize,
    pub pairs_checked: u64,
}

/// Reads every Node (a consistent list) and checks that each of `expect`
/// exists and holds exactly one canonical /`node_len` inside `pool`, with
/// `podCIDR == podCIDRs[0]`, and that no two Nodes' prefixes overlap
/// (pairwise, as address ranges). Every Node in the cluster takes part in
/// the overlap check, not only `expect`.
pub async fn verify_allocations(
    client: &Client,
    pool: IpNet,
    node_len: u8,
    expect: &[String],
) -> Result<EndState> {
    let api: Api<Node> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .context("listing Nodes")?;
    let mut problems: Vec<String> = vec![];
    let mut held: Vec<(IpNet, String)> = vec![];
    for n in &list.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let spec = n.spec.clone().unwrap_or_default();
        let cidrs = spec.pod_cidrs.clone().unwrap_or_default();
        if cidrs.len() != 1 {
            problems.push(format!(
                "Node {name} has {} podCIDRs: {cidrs:?}",
                cidrs.len()
            ));
        }
        if spec.pod_cidr.as_ref() != cidrs.first() {
            problems.push(format!(
                "Node {name}: podCIDR {:?} is not podCIDRs[0] {:?}",
                spec.pod_cidr,
                cidrs.first()
            ));
        }
        for c in &cidrs {
            match c.parse::<IpNet>() {
                Ok(net) => {
                    if net.trunc().to_string() != *c {
                        problems.push(format!("Node {name}: {c} is not canonical"));
                    }
                    if net.prefix_len() != node_len || !pool.contains(&net) {
                        problems.push(format!(
                            "Node {name}: {c} is not a /{node_len} inside {pool}"
                        ));
                    }
                    held.push((net, name.clone()));
                }
                Err(e) => problems.push(format!("Node {name}: {c} is not a CIDR: {e}")),
            }
        }
    }
    let present: HashSet<&str> = list
        .items
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    let missing: Vec<&String> = expect
        .iter()
        .filter(|n| !present.contains(n.as_str()))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} expected Nodes missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    let (overlaps, pairs_checked) = find_overlaps(&held, 10);
    for ((a, an), (b, bn)) in overlaps {
        problems.push(format!("overlap: {a} of Node {an} and {b} of Node {bn}"));
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(20);
        bail!(
            "{n} problem(s) in the end state:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(EndState {
        nodes: list.items.len(),
        pairs_checked,
    })
}

/// A prefix and the Node that holds it.
pub type Held = (IpNet, String);

/// Two prefixes overlap when either contains the other's first address
/// (CIDRs are nested or disjoint).
pub fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Up to `max` overlapping pairs among `held`, and how many pairs were
/// compared. Every pair is compared up to 5,000 prefixes; above that the
/// list is sorted by (first address, length) and neighbours are compared,
/// which finds an overlap whenever there is one, because in that order a
/// prefix that contains another also contains everything sorted between them.
pub fn find_overlaps(held: &[(IpNet, String)], max: usize) -> (Vec<(Held, Held)>, u64) {
    let mut out = vec![];
    let mut pairs = 0u64;
    if held.len() <= 5000 {
        for i in 0..held.len() {
            for j in i + 1..held.len() {
                pairs += 1;
                if overlap(&held[i].0, &held[j].0) && out.len() < max {
                    out.push((held[i].clone(), held[j].clone()));
                }
            }
        }
    } else {
        let mut sorted: Vec<&(IpNet, String)> = held.iter().collect();
        sorted.sort_by(|a, b| {
            (a.0.network(), a.0.prefix_len()).cmp(&(b.0.network(), b.0.prefix_len()))
        });
        for w in sorted.windows(2) {
            pairs += 1;
            if overlap(&w[0].0, &w[1].0) && out.len() < max {
                out.push((w[0].clone(), w[1].clone()));
            }
        }
    }
    (out, pairs)
}

/// Waits until the pool's status says `expected` allocated; returns how long
/// that took.
pub async fn wait_pool_allocated(
    client: &Client,
    pool: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    let last = Mutex::new(None);
    let r = poll(
        &format!("PrefixPool {pool} status.allocated = {expected}"),
        timeout,
        || async {
            let a = pool_allocated(client, pool).await;
            *last.lock().unwrap_or_else(|e| e.into_inner()) = a;
            (a == Some(expected as i64)).then_some(())
        },
    )
    .await;
    let last = *last.lock().unwrap_or_else(|e| e.into_inner());
    r.with_context(|| format!("status.allocated is {last:?}"))?;
    Ok(start.elapsed())
}
