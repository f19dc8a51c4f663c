//! The report's comparison of the operator with `--compare-bin` (another
//! build run in the same rounds).

use std::fmt::Write as _;

use super::phases::OpRun;
use super::report::{Context, each2, median};
use super::{mib, ms, rate};

/// The operator against `--compare-bin`, ratio within each round (> 1: the
/// operator is faster).
pub(super) fn table(md: &mut String, ctx: &Context, ours: &[OpRun], theirs: &[OpRun]) {
    let n = ctx.args.nodes;
    let cmp = ctx
        .args
        .compare_bin
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "## The operator against `{cmp}` (same rounds, run right after it)\n\nRatios are operator ÷ compared within a round (throughput: > 1 means the operator is faster); medians, then every round.\n"
    );
    let _ = writeln!(
        md,
        "| what | operator | compared | ratio (median) | ratio each round |\n|---|---:|---:|---:|---|"
    );
    let ratio_row = |md: &mut String, what: &str, a: Vec<f64>, b: Vec<f64>| {
        let r: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x / y.max(1e-9)).collect();
        let _ = writeln!(
            md,
            "| {what} | {:.0} | {:.0} | {:.2} | {} |",
            median(a.clone()),
            median(b.clone()),
            median(r.clone()),
            each2(&r)
        );
    };
    ratio_row(
        md,
        "burst, nodes/s",
        ours.iter().map(|r| rate(n, r.burst_total)).collect(),
        theirs.iter().map(|r| rate(n, r.burst_total)).collect(),
    );
    ratio_row(
        md,
        "backlog once ready, nodes/s",
        ours.iter().map(|r| rate(n, r.backlog.writes)).collect(),
        theirs.iter().map(|r| rate(n, r.backlog.writes)).collect(),
    );
    let (a, b) = (&ours[0], &theirs[0]);
    for (what, x, y) in [
        (
            "burst latency p50, ms (round 1)",
            a.burst_lat.p50,
            b.burst_lat.p50,
        ),
        (
            "burst latency p99, ms (round 1)",
            a.burst_lat.p99,
            b.burst_lat.p99,
        ),
        (
            "trickle latency p50, ms (round 1)",
            a.trickle_lat.p50,
            b.trickle_lat.p50,
        ),
        (
            "trickle latency p99, ms (round 1)",
            a.trickle_lat.p99,
            b.trickle_lat.p99,
        ),
    ] {
        let _ = writeln!(
            md,
            "| {what} | {} | {} | {:.2} (lower is better) | |",
            ms(x),
            ms(y),
            x / y.max(1e-9)
        );
    }
    let _ = writeln!(
        md,
        "| peak RSS, MiB (round 1) | {:.1} | {:.1} | {:.2} | |\n",
        mib(a.peak_rss),
        mib(b.peak_rss),
        a.peak_rss as f64 / (b.peak_rss as f64).max(1.0)
    );
}
