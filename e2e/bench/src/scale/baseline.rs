//! The phases without the operator, which its figures are measured against:
//! the limit (a bare client's creates, then its podCIDRs patches) and a bare
//! watch-and-patch controller.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use prefix_operator_testenv::Identity;
use tokio::task::JoinHandle;

use super::{Args, NODE_LEN, POOL_PREFIX};
use crate::cluster::{
    Cluster, Created, OnError, Tracker, create_burst, latencies, loadavg, nth_prefix,
    patch_pod_cidrs, verify_allocations,
};
use crate::stats::{Summary, summarize};

pub struct Limit {
    pub load: (String, String),
    pub create: Duration,
    pub patch: Duration,
}

/// A bare client, no operator: create N Nodes, then time the patches.
pub async fn limit(args: &Args) -> Result<Limit> {
    let load0 = loadavg();
    let cl = Cluster::start().await?;
    // The same Node watch that times every other phase, so the API server
    // carries one watcher here too (every real cluster has several).
    let _tracker = Tracker::start(&cl.client).await?;
    let names = args.names();
    let t = Instant::now();
    let (_, created) = create_burst(&cl.client, &names, args.concurrency, OnError::Fail).await?;
    let create = t.elapsed();
    let pool: IpNet = POOL_PREFIX.parse()?;
    let api: Api<Node> = Api::all(cl.client.clone());
    let jobs: Vec<(Created, IpNet)> = created
        .into_iter()
        .enumerate()
        .map(|(i, c)| Ok((c, nth_prefix(pool, NODE_LEN, i as u128)?)))
        .collect::<Result<_>>()?;
    let t = Instant::now();
    futures::stream::iter(jobs.iter())
        .map(|(c, net)| patch_pod_cidrs(&api, &c.name, &c.uid, net))
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    let patch = t.elapsed();
    verify_allocations(&cl.client, pool, NODE_LEN, &names).await?;
    Ok(Limit {
        load: (load0, loadavg()),
        create,
        patch,
    })
}

pub struct BareRun {
    pub load: (String, String),
    pub total: Duration,
    pub lat: Summary,
}

/// A bare controller, no operator: a watch on Nodes feeds the podCIDRs patch
/// of every Node seen without podCIDRs, C patches at a time (its own client,
/// as its own process would have). No ledger, no status, no Events: what any
/// watch-driven allocator pays. In a burst the Nodes are created C at a time
/// while it runs (timed from the first create); with `backlog` they exist
/// before it starts (timed from its start).
pub async fn bare_controller(args: &Args, backlog: bool) -> Result<BareRun> {
    let load0 = loadavg();
    let cl = Cluster::start().await?;
    let names = args.names();
    let waiting = if backlog {
        create_burst(&cl.client, &names, args.concurrency, OnError::Fail)
            .await?
            .1
    } else {
        vec![]
    };
    let tracker = Tracker::start(&cl.client).await?;
    let pool: IpNet = POOL_PREFIX.parse()?;
    let started = Instant::now();
    let api: Api<Node> = Api::all(cl.cp.client(&Identity::Admin).await?);
    let (watch, patch) = spawn_bare_controller(api, pool, args.concurrency);
    let (t0, created) = if backlog {
        (started, waiting)
    } else {
        create_burst(&cl.client, &names, args.concurrency, OnError::Fail).await?
    };
    let last = tracker.wait_all(&names, args.timeout()).await;
    watch.abort();
    if patch.is_finished() {
        patch.await??;
    } else {
        patch.abort();
    }
    let last = last?;
    verify_allocations(&cl.client, pool, NODE_LEN, &names).await?;
    Ok(BareRun {
        load: (load0, loadavg()),
        total: last.duration_since(t0),
        lat: summarize(&latencies(&tracker, &created)),
    })
}

/// The bare controller's two tasks: the watch that sends each Node seen
/// without podCIDRs once, and the patches, `concurrency` at a time, of the
/// pool's /64s in the order the Nodes were seen.
fn spawn_bare_controller(
    api: Api<Node>,
    pool: IpNet,
    concurrency: usize,
) -> (JoinHandle<()>, JoinHandle<Result<Vec<()>>>) {
    let (tx, rx) = futures::channel::mpsc::unbounded::<(String, String)>();
    let watch = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut sent = HashSet::new();
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) = ev
                    && n.spec
                        .as_ref()
                        .and_then(|s| s.pod_cidrs.as_ref())
                        .is_none_or(Vec::is_empty)
                    && let (Some(name), Some(uid)) = (n.metadata.name, n.metadata.uid)
                    && sent.insert(name.clone())
                {
                    let _ = tx.unbounded_send((name, uid));
                }
            }
        })
    };
    let patch = tokio::spawn(async move {
        rx.enumerate()
            .map(|(i, (name, uid))| {
                let api = api.clone();
                async move {
                    patch_pod_cidrs(&api, &name, &uid, &nth_prefix(pool, NODE_LEN, i as u128)?)
                        .await
                }
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await
    });
    (watch, patch)
}
