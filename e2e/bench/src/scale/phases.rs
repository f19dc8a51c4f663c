//! The phases with the operator (release binary, a child process): a burst,
//! a steady trickle, the end state and cold starts on one control plane;
//! the backlog on another.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use prefix_operator_testenv::OperatorProcess;
use prefix_operator_testenv::promtext::{Histogram, Scrape};

use super::{Args, LATENCY, NODE_LEN, POOL, POOL_PREFIX};
use crate::cluster::{
    Cluster, OnError, Tracker, create_burst, create_pool, create_trickle, latencies, loadavg,
    pool_json_size, verify_allocations, wait_pool_allocated,
};
use crate::operator;
use crate::stats::{Summary, summarize};

#[derive(Default)]
pub struct OpRun {
    pub events: bool,
    pub backlog: Backlog,
    pub load: (String, String, String),
    pub ready: Duration,
    pub burst_total: Duration,
    pub burst_create: Duration,
    pub burst_lat: Summary,
    pub burst_hist: Histogram,
    pub trickle_nodes: usize,
    pub trickle_lat: Summary,
    pub trickle_hist: Histogram,
    pub peak_rss_burst: u64,
    pub peak_rss: u64,
    pub rss_end: u64,
    pub cpu_burst: f64,
    pub cpu_total: f64,
    pub status_writes_burst: f64,
    pub status_writes: f64,
    pub node_writes: f64,
    pub errors: Vec<(String, f64)>,
    pub events_dropped: f64,
    pub status_lag: Duration,
    pub pool_size_burst: usize,
    pub pool_size: usize,
    pub end_nodes: usize,
    pub pairs_checked: u64,
    pub cold: Vec<Duration>,
    pub cold_rss: u64,
    pub cold_node_writes: f64,
    /// (what, requests, mean server-side seconds) during the burst.
    pub api_costs: Vec<(String, f64, f64)>,
}

fn log_path(args: &Args, what: &str) -> Result<PathBuf> {
    let dir = args.out_dir().join("logs");
    std::fs::create_dir_all(&dir)?;
    let p = dir.join(format!("{what}-{}.log", args.nodes));
    let _ = std::fs::remove_file(&p);
    Ok(p)
}

/// The operator against a backlog: N Nodes without podCIDRs already exist
/// when it starts, so it does exactly the bare client's work — the same N
/// patches, C at a time — plus its list, ledger, status and Events.
#[derive(Default)]
pub struct Backlog {
    /// Process start → /readyz 200 (N Nodes listed, picture rebuilt).
    pub ready: Duration,
    /// Process start → last podCIDRs seen.
    pub total: Duration,
    /// /readyz 200 → last podCIDRs seen: the write phase.
    pub writes: Duration,
    pub status_writes: f64,
    pub events_dropped: f64,
    pub peak_rss: u64,
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

/// The error first, then the operator's last log lines.
fn with_log(e: anyhow::Error, op: &OperatorProcess) -> anyhow::Error {
    anyhow::anyhow!("{e:#}\n{}", op.log_tail(20))
}

pub async fn backlog_run(args: &Args, bin: &Path, events: bool) -> Result<Backlog> {
    let timeout = args.timeout();
    let cl = Cluster::start().await?;
    create_pool(&cl.client, POOL, POOL_PREFIX, NODE_LEN).await?;
    let names = args.names();
    create_burst(&cl.client, &names, args.concurrency, OnError::Fail).await?;
    let tracker = Tracker::start(&cl.client).await?;
    let flags = operator_flags(args, events);
    let log = log_path(args, &format!("operator-backlog-events-{events}"))?;
    let mut op = operator::spawn(bin, &cl.kubeconfig, "backlog", &flags, &log)?;
    let ready = op.wait_ready(timeout).await?;
    let last = tracker
        .wait_all(&names, timeout)
        .await
        .map_err(|e| with_log(e, &op))?;
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

/// One control plane with the pool, the operator on it, and the watch that
/// times the phases.
struct Bench<'a> {
    args: &'a Args,
    cl: Cluster,
    op: OperatorProcess,
    tracker: Tracker,
}

/// `full`: also the trickle and the cold starts (first round only).
pub async fn operator_run(args: &Args, bin: &Path, events: bool, full: bool) -> Result<OpRun> {
    let mut r = OpRun {
        events,
        ..Default::default()
    };
    let load0 = loadavg();
    let cl = Cluster::start().await?;
    create_pool(&cl.client, POOL, POOL_PREFIX, NODE_LEN).await?;
    let flags = operator_flags(args, events);
    let log = log_path(args, &format!("operator-events-{events}"))?;
    let mut op = operator::spawn(bin, &cl.kubeconfig, "bench", &flags, &log)?;
    r.ready = op.wait_ready(Duration::from_secs(60)).await?;
    let tracker = Tracker::start(&cl.client).await?;
    let b = Bench {
        args,
        cl,
        op,
        tracker,
    };
    let mut all = b.burst(&mut r).await?;
    if full {
        all.extend(b.trickle(&mut r).await?);
    }
    b.end_figures(&mut r, &all).await?;
    r.load.1 = loadavg();
    // Cold starts against the allocated cluster (the watch still runs, as
    // in every other phase).
    let Bench {
        cl,
        mut op,
        tracker: _tracker,
        ..
    } = b;
    op.kill();
    drop(op);
    for i in 0..if full { args.cold_starts } else { 0 } {
        let log = log_path(args, &format!("operator-events-{events}-cold-{i}"))?;
        let mut op = operator::spawn(bin, &cl.kubeconfig, "cold", &flags, &log)?;
        let t = op.wait_ready(args.timeout()).await?;
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

impl Bench<'_> {
    /// N Nodes created C at a time; returns their names.
    async fn burst(&self, r: &mut OpRun) -> Result<Vec<String>> {
        let (args, cl, op, timeout) = (self.args, &self.cl, &self.op, self.args.timeout());
        let m0 = op.scrape().await?;
        let api0 = apiserver_metrics(&cl.client).await?;
        let cpu0 = op.cpu_seconds().unwrap_or(0.0);
        let names = args.names();
        eprintln!(
            "  burst: creating {} Nodes, {} at a time",
            args.nodes, args.concurrency
        );
        let (t0, created) =
            create_burst(&cl.client, &names, args.concurrency, OnError::Fail).await?;
        r.burst_create = created
            .iter()
            .map(|c| c.at)
            .max()
            .context("no Nodes")?
            .duration_since(t0);
        let last = self
            .tracker
            .wait_all(&names, timeout)
            .await
            .map_err(|e| with_log(e, op))?;
        r.burst_total = last.duration_since(t0);
        r.burst_lat = summarize(&latencies(&self.tracker, &created));
        let m1 = op.scrape().await?;
        r.burst_hist = m1.histogram(LATENCY).minus(&m0.histogram(LATENCY));
        r.api_costs = api_costs(&api0, &apiserver_metrics(&cl.client).await?);
        r.cpu_burst = op.cpu_seconds().unwrap_or(0.0) - cpu0;
        r.peak_rss_burst = op.peak_rss().unwrap_or(0);
        wait_pool_allocated(&cl.client, POOL, args.nodes, timeout).await?;
        r.status_lag = last.elapsed();
        let writes = |m: &Scrape| m.value("prefix_operator_status_writes_total");
        r.status_writes_burst = writes(&m1).unwrap_or(0.0) - writes(&m0).unwrap_or(0.0);
        r.pool_size_burst = pool_json_size(&cl.client, POOL).await?;
        Ok(names)
    }

    /// The steady trickle after the burst; returns the Nodes it created.
    async fn trickle(&self, r: &mut OpRun) -> Result<Vec<String>> {
        let (args, cl, op, timeout) = (self.args, &self.cl, &self.op, self.args.timeout());
        r.trickle_nodes = (args.trickle_rate * args.trickle_secs).round() as usize;
        if r.trickle_nodes == 0 {
            return Ok(vec![]);
        }
        eprintln!(
            "  trickle: {} Nodes at {}/s",
            r.trickle_nodes, args.trickle_rate
        );
        let m2 = op.scrape().await?;
        let created =
            create_trickle(&cl.client, "trickle", r.trickle_nodes, args.trickle_rate).await?;
        let tnames: Vec<String> = created.iter().map(|c| c.name.clone()).collect();
        self.tracker.wait_all(&tnames, timeout).await?;
        r.trickle_lat = summarize(&latencies(&self.tracker, &created));
        let m3 = op.scrape().await?;
        r.trickle_hist = m3.histogram(LATENCY).minus(&m2.histogram(LATENCY));
        let total = args.nodes + tnames.len();
        wait_pool_allocated(&cl.client, POOL, total, timeout).await?;
        Ok(tnames)
    }

    /// Counters, memory and CPU of the whole run, and the end-state check
    /// of the Nodes `all`.
    async fn end_figures(&self, r: &mut OpRun, all: &[String]) -> Result<()> {
        let (cl, op) = (&self.cl, &self.op);
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
        let end = verify_allocations(&cl.client, POOL_PREFIX.parse()?, NODE_LEN, all).await?;
        r.end_nodes = end.nodes;
        r.pairs_checked = end.pairs_checked;
        Ok(())
    }
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
    // `metric` between the two scrapes.
    let delta = |metric: &str, res: &str, verb: &str, sub: &str| {
        pick(after, metric, res, verb, sub) - pick(before, metric, res, verb, sub)
    };
    calls
        .iter()
        .map(|(what, res, verb, sub)| {
            let count = delta("apiserver_request_duration_seconds_count", res, verb, sub);
            let sum = delta("apiserver_request_duration_seconds_sum", res, verb, sub);
            (
                what.to_string(),
                count,
                if count > 0.0 { sum / count } else { 0.0 },
            )
        })
        .collect()
}
