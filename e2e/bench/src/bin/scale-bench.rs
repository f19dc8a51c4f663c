//! `scale-bench`: how fast the operator carves prefixes for N Nodes, against
//! what the API server itself can take, on this machine.
//!
//! 1. The limit: a bare client creates N Nodes (not timed as the limit), then
//!    writes the operator's own podCIDRs patch into each, C at a time (timed).
//!    The creates alone are timed too: in a burst the API server must take
//!    both, so N / (create time + patch time) is the combined limit.
//!    Also, unless `--skip-bare-controller`: a bare watch-and-patch
//!    controller (no ledger, status or Events) during the same burst.
//! 2. The operator (release binary, a child process), for each
//!    `--allocation-events` value: N Nodes created in a burst against a
//!    /32 pool split into /64s; time from the first create sent to the last
//!    podCIDRs seen on the watch; per-node latency; then a steady trickle;
//!    RSS, CPU, status writes and status size; then cold starts. Then, on
//!    another fresh control plane, the backlog: N Nodes without podCIDRs
//!    exist before the operator starts, so it does the limit's exact work
//!    (N patches, C at a time); its write phase is compared with the limit.
//!
//! Every phase runs on a fresh control plane. Figures go to stdout and to
//! `target/bench/scale-N.{json,md}`. Targets are reported, not asserted.

#![recursion_limit = "256"]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use prefix_operator_bench::cluster::{
    Cluster, Created, OnError, Tracker, create_burst, create_pool, create_trickle, latencies,
    loadavg, nth_prefix, patch_pod_cidrs, pool_json_size, verify_allocations, wait_pool_allocated,
};
use prefix_operator_bench::operator::{self, operator_bin, target_dir};
use prefix_operator_bench::stats::{Summary, summarize};
use prefix_operator_testenv::Identity;
use prefix_operator_testenv::promtext::{Histogram, Scrape};
use serde_json::{Value, json};

const POOL: &str = "bench";
const POOL_PREFIX: &str = "2001:db8::/32";
const NODE_LEN: u8 = 64;
const LATENCY: &str = "prefix_operator_allocation_latency_seconds";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Events {
    True,
    False,
    Both,
}

#[derive(Parser, Debug)]
#[command(
    name = "scale-bench",
    about = "Operator throughput, latency, memory and cold start at N Nodes"
)]
struct Args {
    /// Nodes in the burst.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Requests in flight: the bare client's patches, the creators, and the
    /// operator's --max-concurrent-writes.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The operator's --allocation-events; `both` runs the operator phases twice.
    #[arg(long, value_enum, default_value = "both")]
    allocation_events: Events,
    /// Rounds of the throughput phases (limit, bare controller, operator
    /// burst and backlog); medians are reported. The trickle and the cold
    /// starts run in the first round only.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Nodes per second in the steady trickle.
    #[arg(long, default_value_t = 20.0)]
    trickle_rate: f64,
    /// Seconds of trickle (0 skips it).
    #[arg(long, default_value_t = 30.0)]
    trickle_secs: f64,
    /// Cold starts to time (each a fresh process against the allocated cluster).
    #[arg(long, default_value_t = 3)]
    cold_starts: usize,
    /// Skip the bare watch-and-patch controller baseline.
    #[arg(long)]
    skip_bare_controller: bool,
    /// Operator binary [default: target/release/prefix-operator or $PREFIX_OPERATOR_BIN].
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    /// Longest wait for any one condition, seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Where to write scale-N.json and scale-N.md [default: target/bench].
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn ms(s: f64) -> String {
    format!("{:.1}", s * 1000.0)
}

fn summary_json(s: &Summary) -> Value {
    json!({"n": s.n, "p50_ms": s.p50 * 1e3, "p90_ms": s.p90 * 1e3, "p99_ms": s.p99 * 1e3, "max_ms": s.max * 1e3, "mean_ms": s.mean * 1e3})
}

fn hist_json(h: &Histogram) -> Value {
    let q = |x| h.quantile(x).map(|v| v * 1e3);
    json!({"count": h.count, "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "mean_ms": if h.count > 0.0 { Some(h.sum / h.count * 1e3) } else { None }})
}

struct Limit {
    load: (String, String),
    create: Duration,
    patch: Duration,
}

/// A bare client, no operator: create N Nodes, then time the patches.
async fn limit(args: &Args) -> Result<Limit> {
    let load0 = loadavg();
    let cl = Cluster::start().await?;
    // The same Node watch that times every other phase, so the API server
    // carries one watcher here too (every real cluster has several).
    let _tracker = Tracker::start(&cl.client).await?;
    let names: Vec<String> = (0..args.nodes).map(|i| format!("node-{i:06}")).collect();
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

struct BareRun {
    load: (String, String),
    total: Duration,
    lat: Summary,
}

/// A bare controller, no operator: a watch on Nodes feeds the podCIDRs patch
/// of every Node seen without podCIDRs, C patches at a time (its own client,
/// as its own process would have). No ledger, no status, no Events: what any
/// watch-driven allocator pays. In a burst the Nodes are created C at a time
/// while it runs (timed from the first create); with `backlog` they exist
/// before it starts (timed from its start).
async fn bare_controller(args: &Args, backlog: bool) -> Result<BareRun> {
    let load0 = loadavg();
    let cl = Cluster::start().await?;
    let names: Vec<String> = (0..args.nodes).map(|i| format!("node-{i:06}")).collect();
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
    let concurrency = args.concurrency;
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
    let (t0, created) = if backlog {
        (started, waiting)
    } else {
        create_burst(&cl.client, &names, args.concurrency, OnError::Fail).await?
    };
    let last = tracker
        .wait_all(&names, Duration::from_secs(args.timeout))
        .await;
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

#[derive(Default)]
struct OpRun {
    events: bool,
    backlog: Backlog,
    load: (String, String, String),
    ready: Duration,
    burst_total: Duration,
    burst_create: Duration,
    burst_lat: Summary,
    burst_hist: Histogram,
    trickle_nodes: usize,
    trickle_lat: Summary,
    trickle_hist: Histogram,
    peak_rss_burst: u64,
    peak_rss: u64,
    rss_end: u64,
    cpu_burst: f64,
    cpu_total: f64,
    status_writes_burst: f64,
    status_writes: f64,
    node_writes: f64,
    errors: Vec<(String, f64)>,
    events_dropped: f64,
    status_lag: Duration,
    pool_size_burst: usize,
    pool_size: usize,
    end_nodes: usize,
    pairs_checked: u64,
    cold: Vec<Duration>,
    cold_rss: u64,
    cold_node_writes: f64,
    /// (what, requests, mean server-side seconds) during the burst.
    api_costs: Vec<(String, f64, f64)>,
}

fn log_path(args: &Args, what: &str) -> Result<PathBuf> {
    let dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| target_dir().join("bench"))
        .join("logs");
    std::fs::create_dir_all(&dir)?;
    let p = dir.join(format!("{what}-{}.log", args.nodes));
    let _ = std::fs::remove_file(&p);
    Ok(p)
}

/// The operator against a backlog: N Nodes without podCIDRs already exist
/// when it starts, so it does exactly the bare client's work — the same N
/// patches, C at a time — plus its list, ledger, status and Events.
#[derive(Default)]
struct Backlog {
    /// Process start → /readyz 200 (N Nodes listed, picture rebuilt).
    ready: Duration,
    /// Process start → last podCIDRs seen.
    total: Duration,
    /// /readyz 200 → last podCIDRs seen: the write phase.
    writes: Duration,
    status_writes: f64,
    events_dropped: f64,
    peak_rss: u64,
}

/// The operator's flags in every phase.
fn operator_flags(args: &Args, events: bool) -> Vec<String> {
    vec![
        "--max-concurrent-writes".to_string(),
        args.concurrency.to_string(),
        format!("--allocation-events={events}"),
        "--status-interval=1s".to_string(),
    ]
}

async fn backlog_run(args: &Args, bin: &Path, events: bool) -> Result<Backlog> {
    let timeout = Duration::from_secs(args.timeout);
    let cl = Cluster::start().await?;
    create_pool(&cl.client, POOL, POOL_PREFIX, NODE_LEN).await?;
    let names: Vec<String> = (0..args.nodes).map(|i| format!("node-{i:06}")).collect();
    create_burst(&cl.client, &names, args.concurrency, OnError::Fail).await?;
    let tracker = Tracker::start(&cl.client).await?;
    let flags = operator_flags(args, events);
    let log = log_path(args, &format!("operator-backlog-events-{events}"))?;
    let mut op = operator::spawn(bin, &cl.kubeconfig, "backlog", &flags, &log)?;
    let ready = op.wait_ready(timeout).await?;
    let last = tracker
        .wait_all(&names, timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", op.log_tail(20)))?;
    let total = last.duration_since(op.started());
    let m = op.scrape().await?;
    let r = Backlog {
        ready,
        total,
        writes: total.saturating_sub(ready),
        status_writes: m
            .value("prefix_operator_status_writes_total")
            .unwrap_or(0.0),
        events_dropped: m
            .value("prefix_operator_events_dropped_total")
            .unwrap_or(0.0),
        peak_rss: op.peak_rss().unwrap_or(0),
    };
    verify_allocations(&cl.client, POOL_PREFIX.parse()?, NODE_LEN, &names).await?;
    Ok(r)
}

/// `full`: also the trickle and the cold starts (first round only).
async fn operator_run(args: &Args, bin: &Path, events: bool, full: bool) -> Result<OpRun> {
    let mut r = OpRun {
        events,
        ..Default::default()
    };
    let load0 = loadavg();
    let timeout = Duration::from_secs(args.timeout);
    let cl = Cluster::start().await?;
    create_pool(&cl.client, POOL, POOL_PREFIX, NODE_LEN).await?;
    let flags = operator_flags(args, events);
    let log = log_path(args, &format!("operator-events-{events}"))?;
    let mut op = operator::spawn(bin, &cl.kubeconfig, "bench", &flags, &log)?;
    r.ready = op.wait_ready(Duration::from_secs(60)).await?;
    let tracker = Tracker::start(&cl.client).await?;
    let m0 = op.scrape().await?;
    let api0 = apiserver_metrics(&cl.client).await?;
    let cpu0 = op.cpu_seconds().unwrap_or(0.0);

    // The burst.
    let names: Vec<String> = (0..args.nodes).map(|i| format!("node-{i:06}")).collect();
    eprintln!(
        "  burst: creating {} Nodes, {} at a time",
        args.nodes, args.concurrency
    );
    let (t0, created) = create_burst(&cl.client, &names, args.concurrency, OnError::Fail).await?;
    r.burst_create = created
        .iter()
        .map(|c| c.at)
        .max()
        .context("no Nodes")?
        .duration_since(t0);
    let last = tracker
        .wait_all(&names, timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", op.log_tail(20)))?;
    r.burst_total = last.duration_since(t0);
    r.burst_lat = summarize(&latencies(&tracker, &created));
    let m1 = op.scrape().await?;
    r.burst_hist = m1.histogram(LATENCY).minus(&m0.histogram(LATENCY));
    r.api_costs = api_costs(&api0, &apiserver_metrics(&cl.client).await?);
    r.cpu_burst = op.cpu_seconds().unwrap_or(0.0) - cpu0;
    r.peak_rss_burst = op.peak_rss().unwrap_or(0);
    wait_pool_allocated(&cl.client, POOL, args.nodes, timeout).await?;
    r.status_lag = last.elapsed();
    r.status_writes_burst = m1
        .value("prefix_operator_status_writes_total")
        .unwrap_or(0.0)
        - m0.value("prefix_operator_status_writes_total")
            .unwrap_or(0.0);
    r.pool_size_burst = pool_json_size(&cl.client, POOL).await?;

    // The trickle.
    let mut all = names.clone();
    r.trickle_nodes = if full {
        (args.trickle_rate * args.trickle_secs).round() as usize
    } else {
        0
    };
    if r.trickle_nodes > 0 {
        eprintln!(
            "  trickle: {} Nodes at {}/s",
            r.trickle_nodes, args.trickle_rate
        );
        let m2 = op.scrape().await?;
        let created =
            create_trickle(&cl.client, "trickle", r.trickle_nodes, args.trickle_rate).await?;
        let tnames: Vec<String> = created.iter().map(|c| c.name.clone()).collect();
        tracker.wait_all(&tnames, timeout).await?;
        r.trickle_lat = summarize(&latencies(&tracker, &created));
        let m3 = op.scrape().await?;
        r.trickle_hist = m3.histogram(LATENCY).minus(&m2.histogram(LATENCY));
        all.extend(tnames);
        wait_pool_allocated(&cl.client, POOL, all.len(), timeout).await?;
    }
    let m4 = op.scrape().await?;
    r.status_writes = m4
        .value("prefix_operator_status_writes_total")
        .unwrap_or(0.0);
    r.node_writes = m4.value("prefix_operator_node_writes_total").unwrap_or(0.0);
    r.errors = m4.series("prefix_operator_reconcile_errors_total");
    r.events_dropped = m4
        .value("prefix_operator_events_dropped_total")
        .unwrap_or(0.0);
    r.pool_size = pool_json_size(&cl.client, POOL).await?;
    r.cpu_total = op.cpu_seconds().unwrap_or(0.0);
    r.peak_rss = op.peak_rss().unwrap_or(0);
    r.rss_end = op.rss().unwrap_or(0);
    let end = verify_allocations(&cl.client, POOL_PREFIX.parse()?, NODE_LEN, &all).await?;
    r.end_nodes = end.nodes;
    r.pairs_checked = end.pairs_checked;
    r.load.1 = loadavg();

    // Cold starts against the allocated cluster.
    op.kill();
    drop(op);
    for i in 0..if full { args.cold_starts } else { 0 } {
        let log = log_path(args, &format!("operator-events-{events}-cold-{i}"))?;
        let mut op = operator::spawn(bin, &cl.kubeconfig, "cold", &flags, &log)?;
        let t = op.wait_ready(timeout).await?;
        r.cold.push(t);
        r.cold_rss = r.cold_rss.max(op.peak_rss().unwrap_or(0));
        r.cold_node_writes += op
            .scrape()
            .await?
            .value("prefix_operator_node_writes_total")
            .unwrap_or(0.0);
    }
    r.load.0 = load0;
    r.load.2 = loadavg();
    Ok(r)
}

/// kube-apiserver's own `/metrics`.
async fn apiserver_metrics(client: &kube::Client) -> Result<Scrape> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    Ok(Scrape::parse(&client.request_text(req).await?))
}

/// Requests and mean server-side time of the calls a burst is made of,
/// between two scrapes of kube-apiserver's `apiserver_request_duration_seconds`.
fn api_costs(before: &Scrape, after: &Scrape) -> Vec<(String, f64, f64)> {
    let calls = [
        ("create Node", "nodes", "POST", ""),
        ("patch Node (podCIDRs)", "nodes", "PATCH", ""),
        ("create Event", "events", "POST", ""),
        ("apply PrefixPool status", "prefixpools", "APPLY", "status"),
    ];
    let pick = |s: &Scrape, metric: &str, resource: &str, verb: &str, sub: &str| -> f64 {
        s.series(metric)
            .iter()
            .filter(|(l, _)| {
                l.contains(&format!("resource=\"{resource}\""))
                    && l.contains(&format!("verb=\"{verb}\""))
                    && l.contains(&format!("subresource=\"{sub}\""))
            })
            .map(|(_, v)| v)
            .sum()
    };
    calls
        .iter()
        .map(|(what, res, verb, sub)| {
            let count = pick(
                after,
                "apiserver_request_duration_seconds_count",
                res,
                verb,
                sub,
            ) - pick(
                before,
                "apiserver_request_duration_seconds_count",
                res,
                verb,
                sub,
            );
            let sum = pick(
                after,
                "apiserver_request_duration_seconds_sum",
                res,
                verb,
                sub,
            ) - pick(
                before,
                "apiserver_request_duration_seconds_sum",
                res,
                verb,
                sub,
            );
            (
                what.to_string(),
                count,
                if count > 0.0 { sum / count } else { 0.0 },
            )
        })
        .collect()
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = operator_bin(args.operator_bin.clone())?;
    let started = Instant::now();
    let n = args.nodes;
    let c = args.concurrency;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    eprintln!(
        "scale-bench: N={n}, C={c}, operator {}, {cores} cores, load {}",
        bin.display(),
        loadavg()
    );

    let modes: Vec<bool> = match args.allocation_events {
        Events::True => vec![true],
        Events::False => vec![false],
        Events::Both => vec![true, false],
    };
    let rounds = args.rounds.max(1);
    let mut lims: Vec<Limit> = vec![];
    let mut bare_bursts: Vec<BareRun> = vec![];
    let mut bare_backlogs: Vec<BareRun> = vec![];
    let mut runs: Vec<Vec<OpRun>> = modes.iter().map(|_| vec![]).collect();
    // Each phase on a fresh control plane; the phases of a round run back to
    // back so that a slow spell of the machine hits all of them alike.
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        eprintln!("  limit: bare client creates, then patches");
        let lim = limit(&args).await?;
        eprintln!(
            "    create {:.0}/s, patch {:.0}/s",
            rate(n, lim.create),
            rate(n, lim.patch)
        );
        lims.push(lim);
        if !args.skip_bare_controller {
            for backlog in [false, true] {
                let p = bare_controller(&args, backlog).await?;
                eprintln!(
                    "  bare watch-and-patch controller, {}: {:.0} nodes/s",
                    if backlog { "backlog" } else { "burst" },
                    rate(n, p.total)
                );
                if backlog {
                    bare_backlogs.push(p);
                } else {
                    bare_bursts.push(p);
                }
            }
        }
        for (i, ev) in modes.iter().enumerate() {
            let mut r = operator_run(&args, &bin, *ev, round == 0).await?;
            r.backlog = backlog_run(&args, &bin, *ev).await?;
            eprintln!(
                "  operator --allocation-events={ev}: burst {:.0} nodes/s (p99 {} ms); backlog {:.0} nodes/s once ready, {:.0} from process start",
                rate(n, r.burst_total),
                ms(r.burst_lat.p99),
                rate(n, r.backlog.writes),
                rate(n, r.backlog.total)
            );
            runs[i].push(r);
        }
    }
    let median = |v: Vec<f64>| summarize(&v).p50;
    let each = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let create_rates: Vec<f64> = lims.iter().map(|l| rate(n, l.create)).collect();
    let limit_rates: Vec<f64> = lims.iter().map(|l| rate(n, l.patch)).collect();
    let combined_rates: Vec<f64> = lims.iter().map(|l| rate(n, l.create + l.patch)).collect();
    let bare_rates: Vec<f64> = bare_bursts.iter().map(|p| rate(n, p.total)).collect();
    let bare_backlog_rates: Vec<f64> = bare_backlogs.iter().map(|p| rate(n, p.total)).collect();
    let limit_rate = median(limit_rates.clone());
    let combined_rate = median(combined_rates.clone());
    let bare_rate = (!bare_rates.is_empty()).then(|| median(bare_rates.clone()));
    let bare_backlog_rate =
        (!bare_backlog_rates.is_empty()).then(|| median(bare_backlog_rates.clone()));

    // Report.
    let mut md = String::new();
    let _ = writeln!(md, "# prefix-operator scale benchmark, N = {n}\n");
    let _ = writeln!(
        md,
        "{cores} cores, C = {c} requests in flight, kube-apiserver v1.36.3 + etcd v3.6.16 on loopback (etcd --unsafe-no-fsync), operator `{}`; {rounds} round(s), medians reported; total run {:.0} s. Every phase runs on a fresh control plane with one Node watch (the benchmark's own, which times the phases).\n",
        bin.display(),
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(md, "## Limit (no operator)\n");
    let _ = writeln!(
        md,
        "| what | nodes/s (median) | each round | load avg before → after (round 1) |\n|---|---:|---|---|"
    );
    let _ = writeln!(
        md,
        "| create N Nodes, C at a time | {:.0} | {} | {} → {} |",
        median(create_rates.clone()),
        each(&create_rates),
        lims[0].load.0,
        lims[0].load.1
    );
    let _ = writeln!(
        md,
        "| **podCIDRs patch of N existing Nodes, C at a time (the limit)** | **{limit_rate:.0}** | {} | |",
        each(&limit_rates)
    );
    let _ = writeln!(
        md,
        "| create + patch, one after the other: N / (create time + patch time) (the combined limit) | {combined_rate:.0} | {} | |",
        each(&combined_rates)
    );
    if let Some(b) = bare_rate {
        let _ = writeln!(
            md,
            "| bare watch-and-patch controller, burst: N created C at a time while it runs; first create → last podCIDRs seen | {b:.0} | {} | {} → {} |",
            each(&bare_rates),
            bare_bursts[0].load.0,
            bare_bursts[0].load.1
        );
    }
    if let Some(b) = bare_backlog_rate {
        let _ = writeln!(
            md,
            "| bare watch-and-patch controller, backlog: N Nodes waiting; its start → last podCIDRs seen | {b:.0} | {} | |",
            each(&bare_backlog_rates)
        );
    }
    for all in &runs {
        let r = &all[0];
        let bursts: Vec<f64> = all.iter().map(|r| rate(n, r.burst_total)).collect();
        let backlogs: Vec<f64> = all.iter().map(|r| rate(n, r.backlog.writes)).collect();
        let backlogs_start: Vec<f64> = all.iter().map(|r| rate(n, r.backlog.total)).collect();
        let th = median(bursts.clone());
        let bth = median(backlogs.clone());
        let bth_start = median(backlogs_start.clone());
        // Ratios within each round (phases run back to back), then their median:
        // the machine's slow and fast spells cancel out of each pair.
        let paired = |a: &[f64], b: &[f64]| -> Vec<f64> {
            a.iter().zip(b).map(|(x, y)| x / y.max(1e-9)).collect()
        };
        let each2 = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let backlog_ratios = paired(&backlogs, &limit_rates);
        let burst_ratios = paired(&bursts, &bare_rates);
        let start_ratios = paired(&backlogs_start, &bare_backlog_rates);
        let q = |h: &Histogram, x: f64| h.quantile(x).map(ms).unwrap_or_else(|| "-".into());
        let cold_mean =
            r.cold.iter().map(Duration::as_secs_f64).sum::<f64>() / r.cold.len().max(1) as f64;
        let cold_max = r.cold.iter().map(Duration::as_secs_f64).fold(0.0, f64::max);
        let _ = writeln!(md, "\n## Operator, `--allocation-events={}`\n", r.events);
        let _ = writeln!(
            md,
            "Load average: before {}, after trickle {}, after cold starts {}.\n",
            r.load.0, r.load.1, r.load.2
        );
        let _ = writeln!(
            md,
            "| figure (median of {rounds}) | value | target / each round |\n|---|---:|---|"
        );
        let b = &r.backlog;
        let _ = writeln!(
            md,
            "| **backlog throughput**: {n} Nodes waiting when the operator starts; ready → last podCIDRs seen (the limit's work: same N patches, same C) | **{bth:.0} nodes/s** | rounds: {} |",
            each(&backlogs)
        );
        // A ratio with its ≥ 0.9 target and every round's value.
        let target_row = |md: &mut String, what: &str, ratios: &[f64]| {
            let ratio = median(ratios.to_vec());
            let _ = writeln!(
                md,
                "| **{what}** | **{ratio:.2}** | ≥ 0.9 {}; rounds: {} |",
                if ratio >= 0.9 { "✔" } else { "✘" },
                each2(ratios)
            );
        };
        target_row(
            &mut md,
            "backlog: ratio to the patch limit of the same round",
            &backlog_ratios,
        );
        let _ = writeln!(
            md,
            "| backlog from process start (start-up and list included) | {bth_start:.0} nodes/s | rounds: {} |",
            each(&backlogs_start)
        );
        if !start_ratios.is_empty() {
            let _ = writeln!(
                md,
                "| backlog from process start: ratio to the bare controller's backlog of the same round (both list, then patch) | {:.2} | rounds: {} |",
                median(start_ratios.clone()),
                each2(&start_ratios)
            );
        }
        let _ = writeln!(
            md,
            "| backlog (round 1): process start → ready / → last podCIDRs seen; status writes; Events dropped; peak RSS | {:.2} / {:.2} s; {:.0}; {:.0}; {:.1} MiB | |",
            b.ready.as_secs_f64(),
            b.total.as_secs_f64(),
            b.status_writes,
            b.events_dropped,
            mib(b.peak_rss)
        );
        let _ = writeln!(
            md,
            "| **burst throughput**: N Nodes created C at a time; first create → last podCIDRs seen | **{th:.0} nodes/s** | rounds: {} |",
            each(&bursts)
        );
        if !burst_ratios.is_empty() {
            target_row(
                &mut md,
                "burst: ratio to the bare watch-and-patch controller of the same round (same creates, same patches)",
                &burst_ratios,
            );
        }
        let _ = writeln!(
            md,
            "| burst: ratio to the patch limit (the burst also carries N creates, which no client can skip) | {:.2} | |",
            th / limit_rate
        );
        let _ = writeln!(
            md,
            "| burst: ratio to the combined create+patch limit | {:.2} | |",
            th / combined_rate
        );
        let _ = writeln!(
            md,
            "\nRound 1 in detail:\n\n| figure | value | target |\n|---|---:|---|"
        );
        let _ = writeln!(
            md,
            "| burst: first create → last podCIDRs seen | {:.2} s | |",
            r.burst_total.as_secs_f64()
        );
        let _ = writeln!(
            md,
            "| burst: creates alone (first sent → last answered) | {:.2} s ({:.0}/s) | |",
            r.burst_create.as_secs_f64(),
            rate(n, r.burst_create)
        );
        let _ = writeln!(
            md,
            "| lag: last create answered → last podCIDRs seen | {:.2} s | |",
            (r.burst_total.saturating_sub(r.burst_create)).as_secs_f64()
        );
        // Client-side latencies, then the operator's own histogram, per phase.
        let latency_rows = |md: &mut String,
                            what: &str,
                            s: &Summary,
                            h: &Histogram,
                            target: &str| {
            let _ = writeln!(
                md,
                "| {what} latency create → podCIDRs seen (client) p50 / p90 / p99 / max | {} / {} / {} / {} ms | {target} |",
                ms(s.p50),
                ms(s.p90),
                ms(s.p99),
                ms(s.max)
            );
            let _ = writeln!(
                md,
                "| {what} latency (operator histogram, interpolated) p50 / p90 / p99 | {} / {} / {} ms | |",
                q(h, 0.5),
                q(h, 0.9),
                q(h, 0.99)
            );
        };
        latency_rows(&mut md, "burst", &r.burst_lat, &r.burst_hist, "");
        latency_rows(
            &mut md,
            &format!(
                "trickle of {} Nodes at {}/s:",
                r.trickle_nodes, args.trickle_rate
            ),
            &r.trickle_lat,
            &r.trickle_hist,
            if r.trickle_lat.p99 < 0.1 {
                "p99 < 100 ms ✔"
            } else {
                "p99 < 100 ms ✘"
            },
        );
        let _ = writeln!(
            md,
            "| peak RSS (VmHWM) after burst / at end | {:.1} / {:.1} MiB | < 64 MiB at 5,000 {} |",
            mib(r.peak_rss_burst),
            mib(r.peak_rss),
            if mib(r.peak_rss) < 64.0 { "✔" } else { "✘" }
        );
        let _ = writeln!(md, "| RSS at end | {:.1} MiB | |", mib(r.rss_end));
        let _ = writeln!(
            md,
            "| CPU seconds: burst / whole run | {:.2} / {:.2} s | |",
            r.cpu_burst, r.cpu_total
        );
        let _ = writeln!(
            md,
            "| status writes: burst / whole run | {:.0} / {:.0} | |",
            r.status_writes_burst, r.status_writes
        );
        let _ = writeln!(
            md,
            "| status caught up after last allocation | {:.2} s | |",
            r.status_lag.as_secs_f64()
        );
        let _ = writeln!(
            md,
            "| Node writes attempted (for {} Nodes) | {:.0} | |",
            n + r.trickle_nodes,
            r.node_writes
        );
        let _ = writeln!(
            md,
            "| reconcile errors | {} | |",
            if r.errors.is_empty() {
                "none".to_string()
            } else {
                r.errors
                    .iter()
                    .map(|(l, v)| format!("{l}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        for (what, count, mean) in &r.api_costs {
            let _ = writeln!(
                md,
                "| kube-apiserver during the burst: {what} | {count:.0} requests, mean {} ms server-side | |",
                ms(*mean)
            );
        }
        let _ = writeln!(
            md,
            "| Events dropped (queue full) | {:.0} | |",
            r.events_dropped
        );
        let _ = writeln!(
            md,
            "| PrefixPool object size after burst / at end (GET, JSON) | {} / {} bytes | < 1 MiB {} |",
            r.pool_size_burst,
            r.pool_size,
            if r.pool_size < 1 << 20 { "✔" } else { "✘" }
        );
        let _ = writeln!(
            md,
            "| cold start, process start → /readyz 200 ({} runs, {} Nodes): mean / max | {:.3} / {:.3} s | < 3 s {} |",
            r.cold.len(),
            r.end_nodes,
            cold_mean,
            cold_max,
            if cold_max < 3.0 { "✔" } else { "✘" }
        );
        let _ = writeln!(
            md,
            "| cold start: peak RSS at ready / Node writes by the new process | {:.1} MiB / {:.0} | |",
            mib(r.cold_rss),
            r.cold_node_writes
        );
        let _ = writeln!(
            md,
            "| first start → ready (empty cluster) | {:.3} s | |",
            r.ready.as_secs_f64()
        );
        let _ = writeln!(
            md,
            "| end state: {} Nodes, one /64 each in {POOL_PREFIX}, no overlap ({} pairs compared) | ok | |",
            r.end_nodes, r.pairs_checked
        );
    }
    println!("{md}");

    let out = json!({
        "nodes": n,
        "concurrency": c,
        "cores": cores,
        "operator_bin": bin.display().to_string(),
        "total_seconds": started.elapsed().as_secs_f64(),
        "rounds": rounds,
        "limit": {
            "create_nodes_per_s": median(create_rates.clone()), "create_nodes_per_s_each": create_rates,
            "patch_nodes_per_s": limit_rate, "patch_nodes_per_s_each": limit_rates,
            "combined_nodes_per_s": combined_rate, "combined_nodes_per_s_each": combined_rates,
            "load_before": lims[0].load.0, "load_after": lims[0].load.1,
        },
        "bare_controller": bare_rate.map(|b| json!({
            "burst_nodes_per_s": b, "burst_nodes_per_s_each": bare_rates,
            "backlog_nodes_per_s": bare_backlog_rate, "backlog_nodes_per_s_each": bare_backlog_rates,
            "burst_latency": summary_json(&bare_bursts[0].lat),
        })),
        "operator": runs.iter().map(|all| {
            let r = &all[0];
            let bursts: Vec<f64> = all.iter().map(|r| rate(n, r.burst_total)).collect();
            let backlogs: Vec<f64> = all.iter().map(|r| rate(n, r.backlog.writes)).collect();
            let backlogs_start: Vec<f64> = all.iter().map(|r| rate(n, r.backlog.total)).collect();
            let (th, bth, bth_start) = (median(bursts.clone()), median(backlogs.clone()), median(backlogs_start.clone()));
            let ratios = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x / y.max(1e-9)).collect() };
            let backlog_ratios = ratios(&backlogs, &limit_rates);
            let burst_ratios = ratios(&bursts, &bare_rates);
            json!({
            "allocation_events": r.events,
            "burst_nodes_per_s": th, "burst_nodes_per_s_each": bursts,
            "burst_ratio_to_bare_controller": bare_rate.map(|_| median(burst_ratios.clone())), "burst_ratio_to_bare_controller_each": burst_ratios,
            "burst_ratio_to_limit": th / limit_rate,
            "burst_ratio_to_combined_limit": th / combined_rate,
            "backlog_nodes_per_s": bth, "backlog_nodes_per_s_each": backlogs,
            "backlog_ratio_to_limit": median(backlog_ratios.clone()), "backlog_ratio_to_limit_each": backlog_ratios,
            "backlog_nodes_per_s_from_start": bth_start, "backlog_nodes_per_s_from_start_each": backlogs_start,
            "backlog_from_start_ratio_to_bare_backlog_each": ratios(&backlogs_start, &bare_backlog_rates),
            "round1": {
            "load_before": r.load.0, "load_after_trickle": r.load.1, "load_after_cold_starts": r.load.2,
            "first_ready_seconds": r.ready.as_secs_f64(),
            "burst_seconds": r.burst_total.as_secs_f64(),
            "burst_create_seconds": r.burst_create.as_secs_f64(),
            "backlog": {
                "ready_seconds": r.backlog.ready.as_secs_f64(),
                "total_seconds": r.backlog.total.as_secs_f64(),
                "write_seconds": r.backlog.writes.as_secs_f64(),
                "status_writes": r.backlog.status_writes,
                "events_dropped": r.backlog.events_dropped,
                "peak_rss_bytes": r.backlog.peak_rss,
            },
            "lag_after_last_create_seconds": r.burst_total.saturating_sub(r.burst_create).as_secs_f64(),
            "burst_latency": summary_json(&r.burst_lat),
            "burst_latency_histogram": hist_json(&r.burst_hist),
            "trickle_nodes": r.trickle_nodes, "trickle_rate": args.trickle_rate,
            "trickle_latency": summary_json(&r.trickle_lat),
            "trickle_latency_histogram": hist_json(&r.trickle_hist),
            "peak_rss_bytes_after_burst": r.peak_rss_burst, "peak_rss_bytes": r.peak_rss, "rss_bytes_end": r.rss_end,
            "cpu_seconds_burst": r.cpu_burst, "cpu_seconds_total": r.cpu_total,
            "status_writes_burst": r.status_writes_burst, "status_writes_total": r.status_writes,
            "status_lag_seconds": r.status_lag.as_secs_f64(),
            "node_writes_total": r.node_writes,
            "reconcile_errors": r.errors.iter().map(|(l, v)| json!({"labels": l, "value": v})).collect::<Vec<_>>(),
            "events_dropped": r.events_dropped,
            "apiserver_burst": r.api_costs.iter().map(|(w, c, m)| json!({"call": w, "requests": c, "mean_ms": m * 1e3})).collect::<Vec<_>>(),
            "pool_bytes_after_burst": r.pool_size_burst, "pool_bytes_end": r.pool_size,
            "end_nodes": r.end_nodes, "pairs_checked": r.pairs_checked,
            "cold_start_seconds": r.cold.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "cold_start_peak_rss_bytes": r.cold_rss,
            "cold_start_node_writes": r.cold_node_writes,
            },
            })
        }).collect::<Vec<_>>(),
    });
    let dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| target_dir().join("bench"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join(format!("scale-{n}.json")),
        serde_json::to_string_pretty(&out)? + "\n",
    )?;
    std::fs::write(dir.join(format!("scale-{n}.md")), &md)?;
    eprintln!("wrote {}/scale-{n}.json and .md", dir.display());
    Ok(())
}
