//! `lb-bench`: how fast LoadBalancer Services get their addresses, against
//! what the API server itself takes in Service status writes, on this
//! machine, in one run:
//!
//! 1. the bare-client limit: N Services of another class, and a client of
//!    this benchmark writing each one's `status.loadBalancer.ingress` as
//!    fast as it can (32 writes in flight, as the operator);
//! 2. backlog: N Services of the operator's class created with no operator
//!    running, then the operator started: time from its start until every
//!    Service holds an address;
//! 3. trickle: Services created one by one at a fixed rate with the
//!    operator running; latency from each create's answer to the address
//!    seen by a watch.
//!
//! Writes target/bench/lb.md and lb.json.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use prefix_operator::api::{IpFamily, PrefixClaim, PrefixClaimSpec, Purpose};
use prefix_operator_bench::cluster::{Cluster, create_pool, poll};
use prefix_operator_bench::operator;
use prefix_operator_bench::stats::summarize;

#[derive(Parser, Debug)]
struct Args {
    /// Services in the backlog and in the bare-client run.
    #[arg(long, default_value_t = 2000)]
    services: usize,
    /// Services created in the trickle, and how many per second.
    #[arg(long, default_value_t = 200)]
    trickle: usize,
    #[arg(long, default_value_t = 20.0)]
    trickle_rate: f64,
    /// The operator binary (default: target/release/prefix-operator).
    #[arg(long)]
    operator_bin: Option<PathBuf>,
}

const NS: &str = "default";

fn service(name: &str, class: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            load_balancer_class: Some(class.into()),
            allocate_load_balancer_node_ports: Some(false),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

async fn create_all(api: &Api<Service>, names: &[String], class: &str) -> Result<()> {
    let results: Vec<Result<()>> = futures::stream::iter(names.iter().cloned())
        .map(|n| {
            let api = api.clone();
            let class = class.to_string();
            async move {
                api.create(&PostParams::default(), &service(&n, &class))
                    .await
                    .with_context(|| format!("create {n}"))?;
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Names of Services seen holding an address, with when they were first
/// seen so, from a watch.
fn watch_served(
    client: &Client,
) -> (
    Arc<Mutex<HashMap<String, Instant>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let s = seen.clone();
    let api: Api<Service> = Api::namespaced(client.clone(), NS);
    let task = tokio::spawn(async move {
        let stream = watcher::watcher(api, watcher::Config::default());
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let objs = match ev {
                Ok(Event::Apply(o)) | Ok(Event::InitApply(o)) => vec![o],
                _ => continue,
            };
            for o in objs {
                let has = o
                    .status
                    .as_ref()
                    .and_then(|st| st.load_balancer.as_ref())
                    .and_then(|lb| lb.ingress.as_ref())
                    .is_some_and(|i| !i.is_empty());
                if has && let Some(n) = o.metadata.name {
                    s.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(n)
                        .or_insert_with(Instant::now);
                }
            }
        }
    });
    (seen, task)
}

async fn wait_all(
    seen: &Arc<Mutex<HashMap<String, Instant>>>,
    names: &[String],
    what: &str,
) -> Result<()> {
    poll(what, Duration::from_secs(600), || async {
        let s = seen.lock().unwrap_or_else(|e| e.into_inner());
        names.iter().all(|n| s.contains_key(n)).then_some(())
    })
    .await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = operator::operator_bin(args.operator_bin.clone())?;
    let cl = Cluster::start().await?;
    let client = cl.client.clone();
    create_pool(&client, "v4", "10.200.0.0/16", 24).await?;
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    // 16,382 usable addresses.
    let spec = PrefixClaimSpec {
        pool: Some("v4".into()),
        pool_selector: None,
        ip_family: IpFamily::IPv4,
        prefix_length: 18,
        purpose: Purpose::LoadBalancer,
    };
    claims
        .create(&PostParams::default(), &PrefixClaim::new("lb", spec))
        .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let (seen, watch) = watch_served(&client);

    // 1. The bare-client limit of Service status writes.
    let bare: Vec<String> = (0..args.services).map(|i| format!("bare-{i:05}")).collect();
    create_all(&services, &bare, "example.com/bench-bare").await?;
    let started = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(bare.iter().enumerate())
        .map(|(i, n)| {
            let api = services.clone();
            async move {
                let ip = format!("198.18.{}.{}", i / 250, 1 + i % 250);
                let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}});
                api.patch_status(n, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .with_context(|| format!("status of {n}"))?;
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    let bare_secs = started.elapsed().as_secs_f64();
    let bare_rate = args.services as f64 / bare_secs;
    eprintln!(
        "[lb] bare client: {} status writes in {bare_secs:.2}s ({bare_rate:.0}/s)",
        args.services
    );

    // 2. Backlog: the Services first, then the operator.
    let names: Vec<String> = (0..args.services).map(|i| format!("lb-{i:05}")).collect();
    create_all(
        &services,
        &names,
        prefix_operator::controller::LOAD_BALANCER_CLASS,
    )
    .await?;
    let logs = cl.cp.dir().join("lb-bench-operator.log");
    let started = Instant::now();
    let mut op = operator::spawn(&bin, &cl.kubeconfig, "lb", &[], &logs)?;
    wait_all(&seen, &names, "every backlog Service served").await?;
    let backlog_secs = started.elapsed().as_secs_f64();
    let backlog_rate = args.services as f64 / backlog_secs;
    // From the first address written to the last: the rate once synced
    // (the backlog time above also holds the start and the first lists).
    let steady_rate = {
        let s = seen.lock().unwrap_or_else(|e| e.into_inner());
        let times: Vec<Instant> = names.iter().filter_map(|n| s.get(n).copied()).collect();
        match (times.iter().min(), times.iter().max()) {
            (Some(a), Some(b)) if b > a => {
                args.services as f64 / b.duration_since(*a).as_secs_f64()
            }
            _ => backlog_rate,
        }
    };
    eprintln!(
        "[lb] operator backlog: {} Services in {backlog_secs:.2}s ({backlog_rate:.0}/s)",
        args.services
    );

    // 3. Trickle.
    let gap = Duration::from_secs_f64(1.0 / args.trickle_rate);
    let mut created: Vec<(String, Instant)> = vec![];
    let mut next = Instant::now();
    for i in 0..args.trickle {
        tokio::time::sleep_until(next.into()).await;
        next += gap;
        let n = format!("t-{i:05}");
        services
            .create(
                &PostParams::default(),
                &service(&n, prefix_operator::controller::LOAD_BALANCER_CLASS),
            )
            .await?;
        created.push((n, Instant::now()));
    }
    let trickle_names: Vec<String> = created.iter().map(|(n, _)| n.clone()).collect();
    wait_all(&seen, &trickle_names, "every trickle Service served").await?;
    let lat: Vec<f64> = {
        let s = seen.lock().unwrap_or_else(|e| e.into_inner());
        created
            .iter()
            .filter_map(|(n, t)| {
                s.get(n)
                    .map(|x| x.saturating_duration_since(*t).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    let t = summarize(&lat);
    op.terminate();
    watch.abort();

    // Every address once.
    let list = services.list(&Default::default()).await?;
    let mut all: Vec<String> = list
        .items
        .iter()
        .filter(|s| {
            !s.metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .starts_with("bare-")
        })
        .filter_map(|s| {
            s.status
                .clone()?
                .load_balancer?
                .ingress?
                .first()?
                .ip
                .clone()
        })
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    if all.len() != n {
        bail!("{} addresses held twice", n - all.len());
    }

    let ratio = backlog_rate / bare_rate;
    let steady_ratio = steady_rate / bare_rate;
    let md = format!(
        "# LoadBalancer Services: the operator beside the API server's own limit\n\n\
         Same run, same API server (loopback, 2 cores). Reproduce: `make bench-lb`.\n\n\
         | phase | Services | seconds | per second |\n|---|---|---|---|\n\
         | bare client: status writes, 32 in flight | {s} | {bare_secs:.2} | {bare_rate:.0} |\n\
         | operator backlog: start to every address | {s} | {backlog_secs:.2} | {backlog_rate:.0} |\n\n\
         Backlog ÷ bare-client limit: **{ratio:.2}** from the operator's start; \
         {steady_rate:.0}/s, **{steady_ratio:.2}**, from its first address to its last.\n\n\
         Trickle: {tn} Services at {rate}/s, create answered → address seen by a watch: \
         p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms.\n\n\
         No address held twice ({n} checked).\n",
        s = args.services,
        tn = args.trickle,
        rate = args.trickle_rate,
        p50 = t.p50,
        p90 = t.p90,
        p99 = t.p99,
        max = t.max,
    );
    let out = operator::target_dir().join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("lb.md"), &md)?;
    let json = serde_json::json!({
        "services": args.services,
        "bare": {"seconds": bare_secs, "perSecond": bare_rate},
        "backlog": {"seconds": backlog_secs, "perSecond": backlog_rate},
        "ratio": ratio,
        "steadyPerSecond": steady_rate,
        "steadyRatio": steady_ratio,
        "trickle": {"n": t.n, "rate": args.trickle_rate, "p50Ms": t.p50, "p90Ms": t.p90, "p99Ms": t.p99, "maxMs": t.max},
    });
    std::fs::write(out.join("lb.json"), serde_json::to_string_pretty(&json)?)?;
    print!("{md}");
    Ok(())
}
