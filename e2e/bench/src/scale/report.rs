//! The rounds' figures: medians and paired ratios, written as `scale-N.json`
//! and, through [`super::tables`], as the Markdown printed on stdout and
//! written to `scale-N.md`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use prefix_operator_testenv::promtext::Histogram;
use serde_json::{Value, json};

use super::phases::OpRun;
use super::{Args, Rounds, rate, tables};
use crate::stats::{Summary, summarize};

/// What the report says about the run besides the rounds.
pub struct Context<'a> {
    pub args: &'a Args,
    pub bin: &'a Path,
    pub cores: usize,
    /// When the run started (after the operator binary was found).
    pub started: Instant,
}

pub(super) fn median(v: Vec<f64>) -> f64 {
    summarize(&v).p50
}

pub(super) fn each(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn each2(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ratios within each round (phases run back to back): the machine's slow
/// and fast spells cancel out of each pair.
fn paired(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y.max(1e-9)).collect()
}

fn summary_json(s: &Summary) -> Value {
    json!({"n": s.n, "p50_ms": s.p50 * 1e3, "p90_ms": s.p90 * 1e3, "p99_ms": s.p99 * 1e3, "max_ms": s.max * 1e3, "mean_ms": s.mean * 1e3})
}

fn hist_json(h: &Histogram) -> Value {
    let q = |x| h.quantile(x).map(|v| v * 1e3);
    json!({"count": h.count, "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "mean_ms": if h.count > 0.0 { Some(h.sum / h.count * 1e3) } else { None }})
}

/// The phases without the operator, per round and their medians.
pub(super) struct Baselines {
    pub(super) create_rates: Vec<f64>,
    pub(super) limit_rates: Vec<f64>,
    pub(super) combined_rates: Vec<f64>,
    pub(super) bare_rates: Vec<f64>,
    pub(super) bare_backlog_rates: Vec<f64>,
    pub(super) limit_rate: f64,
    pub(super) combined_rate: f64,
    pub(super) bare_rate: Option<f64>,
    pub(super) bare_backlog_rate: Option<f64>,
}

impl Baselines {
    fn new(n: usize, r: &Rounds) -> Baselines {
        let create_rates: Vec<f64> = r.limits.iter().map(|l| rate(n, l.create)).collect();
        let limit_rates: Vec<f64> = r.limits.iter().map(|l| rate(n, l.patch)).collect();
        let combined_rates: Vec<f64> = r
            .limits
            .iter()
            .map(|l| rate(n, l.create + l.patch))
            .collect();
        let bare_rates: Vec<f64> = r.bare_bursts.iter().map(|p| rate(n, p.total)).collect();
        let bare_backlog_rates: Vec<f64> =
            r.bare_backlogs.iter().map(|p| rate(n, p.total)).collect();
        Baselines {
            limit_rate: median(limit_rates.clone()),
            combined_rate: median(combined_rates.clone()),
            bare_rate: (!bare_rates.is_empty()).then(|| median(bare_rates.clone())),
            bare_backlog_rate: (!bare_backlog_rates.is_empty())
                .then(|| median(bare_backlog_rates.clone())),
            create_rates,
            limit_rates,
            combined_rates,
            bare_rates,
            bare_backlog_rates,
        }
    }
}

/// One `--allocation-events` mode's throughput over the rounds.
pub(super) struct OperatorRates {
    pub(super) bursts: Vec<f64>,
    pub(super) backlogs: Vec<f64>,
    pub(super) backlogs_start: Vec<f64>,
    pub(super) th: f64,
    pub(super) bth: f64,
    pub(super) bth_start: f64,
    pub(super) backlog_ratios: Vec<f64>,
    pub(super) burst_ratios: Vec<f64>,
    pub(super) start_ratios: Vec<f64>,
}

impl OperatorRates {
    pub(super) fn new(n: usize, all: &[OpRun], base: &Baselines) -> OperatorRates {
        let bursts: Vec<f64> = all.iter().map(|r| rate(n, r.burst_total)).collect();
        let backlogs: Vec<f64> = all.iter().map(|r| rate(n, r.backlog.writes)).collect();
        let backlogs_start: Vec<f64> = all.iter().map(|r| rate(n, r.backlog.total)).collect();
        OperatorRates {
            th: median(bursts.clone()),
            bth: median(backlogs.clone()),
            bth_start: median(backlogs_start.clone()),
            backlog_ratios: paired(&backlogs, &base.limit_rates),
            burst_ratios: paired(&bursts, &base.bare_rates),
            start_ratios: paired(&backlogs_start, &base.bare_backlog_rates),
            bursts,
            backlogs,
            backlogs_start,
        }
    }
}

/// Prints the tables, then writes `scale-N.json` and `scale-N.md`.
pub fn write(ctx: &Context, rounds: &Rounds) -> Result<()> {
    let n = ctx.args.nodes;
    let base = Baselines::new(n, rounds);
    let md = tables::markdown(ctx, rounds, &base);
    println!("{md}");
    let out = report_json(ctx, rounds, &base);
    let dir = ctx.args.out_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join(format!("scale-{n}.json")),
        serde_json::to_string_pretty(&out)? + "\n",
    )?;
    std::fs::write(dir.join(format!("scale-{n}.md")), &md)?;
    eprintln!("wrote {}/scale-{n}.json and .md", dir.display());
    Ok(())
}

fn report_json(ctx: &Context, rounds: &Rounds, base: &Baselines) -> Value {
    let lims = &rounds.limits;
    json!({
        "nodes": ctx.args.nodes,
        "concurrency": ctx.args.concurrency,
        "cores": ctx.cores,
        "operator_bin": ctx.bin.display().to_string(),
        "total_seconds": ctx.started.elapsed().as_secs_f64(),
        "rounds": ctx.args.rounds.max(1),
        "limit": {
            "create_nodes_per_s": median(base.create_rates.clone()), "create_nodes_per_s_each": base.create_rates,
            "patch_nodes_per_s": base.limit_rate, "patch_nodes_per_s_each": base.limit_rates,
            "combined_nodes_per_s": base.combined_rate, "combined_nodes_per_s_each": base.combined_rates,
            "load_before": lims[0].load.0, "load_after": lims[0].load.1,
        },
        "bare_controller": base.bare_rate.map(|b| json!({
            "burst_nodes_per_s": b, "burst_nodes_per_s_each": base.bare_rates,
            "backlog_nodes_per_s": base.bare_backlog_rate, "backlog_nodes_per_s_each": base.bare_backlog_rates,
            "burst_latency": summary_json(&rounds.bare_bursts[0].lat),
        })),
        "operator": rounds.runs.iter().map(|all| operator_json(ctx.args, all, base)).collect::<Vec<_>>(),
        "compared": (!rounds.compared.is_empty()).then(|| json!({
            "bin": ctx.args.compare_bin.as_ref().map(|p| p.display().to_string()),
            "runs": operator_json(ctx.args, &rounds.compared, base),
        })),
    })
}

fn operator_json(args: &Args, all: &[OpRun], base: &Baselines) -> Value {
    let r = &all[0];
    let o = OperatorRates::new(args.nodes, all, base);
    json!({
        "allocation_events": r.events,
        "burst_nodes_per_s": o.th, "burst_nodes_per_s_each": o.bursts,
        "burst_ratio_to_bare_controller": base.bare_rate.map(|_| median(o.burst_ratios.clone())), "burst_ratio_to_bare_controller_each": o.burst_ratios,
        "burst_ratio_to_limit": o.th / base.limit_rate,
        "burst_ratio_to_combined_limit": o.th / base.combined_rate,
        "backlog_nodes_per_s": o.bth, "backlog_nodes_per_s_each": o.backlogs,
        "backlog_ratio_to_limit": median(o.backlog_ratios.clone()), "backlog_ratio_to_limit_each": o.backlog_ratios,
        "backlog_nodes_per_s_from_start": o.bth_start, "backlog_nodes_per_s_from_start_each": o.backlogs_start,
        "backlog_from_start_ratio_to_bare_backlog_each": o.start_ratios,
        "round1": round1_json(args, r),
    })
}

fn round1_json(args: &Args, r: &OpRun) -> Value {
    json!({
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
    })
}
