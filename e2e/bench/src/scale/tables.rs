//! The Markdown tables of the report: the limit and the baselines, then per
//! `--allocation-events` mode the medians of every round and round 1 in
//! detail.

use std::fmt::Write as _;
use std::time::Duration;

use prefix_operator_testenv::promtext::Histogram;

use super::phases::OpRun;
use super::report::{Baselines, Context, OperatorRates, each, each2, median};
use super::{POOL_PREFIX, Rounds, mib, ms, rate};
use crate::stats::Summary;

pub(super) fn markdown(ctx: &Context, rounds: &Rounds, base: &Baselines) -> String {
    let (n, c, rounds_n) = (ctx.args.nodes, ctx.args.concurrency, ctx.args.rounds.max(1));
    let mut md = String::new();
    let _ = writeln!(md, "# prefix-operator scale benchmark, N = {n}\n");
    let _ = writeln!(
        md,
        "{} cores, C = {c} requests in flight, kube-apiserver v1.36.3 + etcd v3.6.16 on loopback (etcd --unsafe-no-fsync), operator `{}`; {rounds_n} round(s), medians reported; total run {:.0} s. Every phase runs on a fresh control plane with one Node watch (the benchmark's own, which times the phases).\n",
        ctx.cores,
        ctx.bin.display(),
        ctx.started.elapsed().as_secs_f64()
    );
    limit_table(&mut md, rounds, base);
    for all in &rounds.runs {
        operator_table(&mut md, ctx, all, base);
        round1_table(&mut md, ctx, &all[0]);
    }
    if !rounds.compared.is_empty() {
        super::compare::table(&mut md, ctx, &rounds.runs[0], &rounds.compared);
    }
    md
}

fn limit_table(md: &mut String, rounds: &Rounds, base: &Baselines) {
    let _ = writeln!(md, "## Limit (no operator)\n");
    let _ = writeln!(
        md,
        "| what | nodes/s (median) | each round | load avg before → after (round 1) |\n|---|---:|---|---|"
    );
    let _ = writeln!(
        md,
        "| create N Nodes, C at a time | {:.0} | {} | {} → {} |",
        median(base.create_rates.clone()),
        each(&base.create_rates),
        rounds.limits[0].load.0,
        rounds.limits[0].load.1
    );
    let _ = writeln!(
        md,
        "| **podCIDRs patch of N existing Nodes, C at a time (the limit)** | **{:.0}** | {} | |",
        base.limit_rate,
        each(&base.limit_rates)
    );
    let _ = writeln!(
        md,
        "| create + patch, one after the other: N / (create time + patch time) (the combined limit) | {:.0} | {} | |",
        base.combined_rate,
        each(&base.combined_rates)
    );
    if let Some(b) = base.bare_rate {
        let _ = writeln!(
            md,
            "| bare watch-and-patch controller, burst: N created C at a time while it runs; first create → last podCIDRs seen | {b:.0} | {} | {} → {} |",
            each(&base.bare_rates),
            rounds.bare_bursts[0].load.0,
            rounds.bare_bursts[0].load.1
        );
    }
    if let Some(b) = base.bare_backlog_rate {
        let _ = writeln!(
            md,
            "| bare watch-and-patch controller, backlog: N Nodes waiting; its start → last podCIDRs seen | {b:.0} | {} | |",
            each(&base.bare_backlog_rates)
        );
    }
}

/// A ratio with its ≥ 0.9 target and every round's value.
fn target_row(md: &mut String, what: &str, ratios: &[f64]) {
    let ratio = median(ratios.to_vec());
    let _ = writeln!(
        md,
        "| **{what}** | **{ratio:.2}** | ≥ 0.9 {}; rounds: {} |",
        if ratio >= 0.9 { "✔" } else { "✘" },
        each2(ratios)
    );
}

/// One mode's throughput: medians of every round, and the ratios to the
/// baselines.
fn operator_table(md: &mut String, ctx: &Context, all: &[OpRun], base: &Baselines) {
    let (n, rounds) = (ctx.args.nodes, ctx.args.rounds.max(1));
    let r = &all[0];
    let o = OperatorRates::new(n, all, base);
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
        "| **backlog throughput**: {n} Nodes waiting when the operator starts; ready → last podCIDRs seen (the limit's work: same N patches, same C) | **{:.0} nodes/s** | rounds: {} |",
        o.bth,
        each(&o.backlogs)
    );
    target_row(
        md,
        "backlog: ratio to the patch limit of the same round",
        &o.backlog_ratios,
    );
    let _ = writeln!(
        md,
        "| backlog from process start (start-up and list included) | {:.0} nodes/s | rounds: {} |",
        o.bth_start,
        each(&o.backlogs_start)
    );
    if !o.start_ratios.is_empty() {
        let _ = writeln!(
            md,
            "| backlog from process start: ratio to the bare controller's backlog of the same round (both list, then patch) | {:.2} | rounds: {} |",
            median(o.start_ratios.clone()),
            each2(&o.start_ratios)
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
        "| **burst throughput**: N Nodes created C at a time; first create → last podCIDRs seen | **{:.0} nodes/s** | rounds: {} |",
        o.th,
        each(&o.bursts)
    );
    if !o.burst_ratios.is_empty() {
        target_row(
            md,
            "burst: ratio to the bare watch-and-patch controller of the same round (same creates, same patches)",
            &o.burst_ratios,
        );
    }
    let _ = writeln!(
        md,
        "| burst: ratio to the patch limit (the burst also carries N creates, which no client can skip) | {:.2} | |",
        o.th / base.limit_rate
    );
    let _ = writeln!(
        md,
        "| burst: ratio to the combined create+patch limit | {:.2} | |",
        o.th / base.combined_rate
    );
}

/// Client-side latencies, then the operator's own histogram, of a phase.
fn latency_rows(md: &mut String, what: &str, s: &Summary, h: &Histogram, target: &str) {
    let q = |h: &Histogram, x: f64| h.quantile(x).map(ms).unwrap_or_else(|| "-".into());
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
}

/// Round 1 in detail: timings and latencies, then what the run cost.
fn round1_table(md: &mut String, ctx: &Context, r: &OpRun) {
    let n = ctx.args.nodes;
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
    latency_rows(md, "burst", &r.burst_lat, &r.burst_hist, "");
    latency_rows(
        md,
        &format!(
            "trickle of {} Nodes at {}/s:",
            r.trickle_nodes, ctx.args.trickle_rate
        ),
        &r.trickle_lat,
        &r.trickle_hist,
        if r.trickle_lat.p99 < 0.1 {
            "p99 < 100 ms ✔"
        } else {
            "p99 < 100 ms ✘"
        },
    );
    cost_rows(md, n, r);
    restart_rows(md, r);
}

/// Memory, CPU, writes, errors, API calls and object size of round 1.
fn cost_rows(md: &mut String, n: usize, r: &OpRun) {
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
}

/// Cold starts, the first start and the end state of round 1.
fn restart_rows(md: &mut String, r: &OpRun) {
    let cold_mean =
        r.cold.iter().map(Duration::as_secs_f64).sum::<f64>() / r.cold.len().max(1) as f64;
    let cold_max = r.cold.iter().map(Duration::as_secs_f64).fold(0.0, f64::max);
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
