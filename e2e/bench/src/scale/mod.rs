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
//!
//! [`baseline`] holds the phases without the operator, [`phases`] those
//! with it, [`report`] turns the rounds into the JSON and (with `tables`)
//! the Markdown.

pub mod baseline;
mod compare;
pub mod phases;
pub mod report;
mod tables;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, ValueEnum};

use crate::cluster::loadavg;
use crate::operator::{operator_bin, target_dir};
use baseline::{BareRun, Limit};
use phases::OpRun;

pub const POOL: &str = "bench";
pub const POOL_PREFIX: &str = "2001:db8::/32";
pub const NODE_LEN: u8 = 64;
pub const LATENCY: &str = "prefix_operator_allocation_latency_seconds";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Events {
    True,
    False,
    Both,
}

#[derive(Parser, Debug)]
#[command(
    name = "scale-bench",
    about = "Operator throughput, latency, memory and cold start at N Nodes"
)]
pub struct Args {
    /// Nodes in the burst.
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Requests in flight: the bare client's patches, the creators, and the
    /// operator's --max-concurrent-writes.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// The operator's --allocation-events; `both` runs the operator phases twice.
    #[arg(long, value_enum, default_value = "both")]
    pub allocation_events: Events,
    /// Rounds of the throughput phases (limit, bare controller, operator
    /// burst and backlog); medians are reported. The trickle and the cold
    /// starts run in the first round only.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Nodes per second in the steady trickle.
    #[arg(long, default_value_t = 20.0)]
    pub trickle_rate: f64,
    /// Seconds of trickle (0 skips it).
    #[arg(long, default_value_t = 30.0)]
    pub trickle_secs: f64,
    /// Cold starts to time (each a fresh process against the allocated cluster).
    #[arg(long, default_value_t = 3)]
    pub cold_starts: usize,
    /// Skip the bare watch-and-patch controller baseline.
    #[arg(long)]
    pub skip_bare_controller: bool,
    /// Operator binary [default: target/release/prefix-operator or $PREFIX_OPERATOR_BIN].
    #[arg(long)]
    pub operator_bin: Option<PathBuf>,
    /// Another operator build (e.g. of an earlier commit), run in every
    /// round right after the operator, with the first `--allocation-events`
    /// mode: the report adds the ratios of the two within each round.
    #[arg(long)]
    pub compare_bin: Option<PathBuf>,
    /// Longest wait for any one condition, seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Where to write scale-N.json and scale-N.md [default: target/bench].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

impl Args {
    /// The burst's Node names.
    pub fn names(&self) -> Vec<String> {
        (0..self.nodes).map(|i| format!("node-{i:06}")).collect()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// The `--allocation-events` values to run the operator with.
    pub fn modes(&self) -> Vec<bool> {
        match self.allocation_events {
            Events::True => vec![true],
            Events::False => vec![false],
            Events::Both => vec![true, false],
        }
    }

    /// Where the figures go: `--out-dir`, else `target/bench`.
    pub fn out_dir(&self) -> PathBuf {
        self.out_dir
            .clone()
            .unwrap_or_else(|| target_dir().join("bench"))
    }
}

pub fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

pub fn ms(s: f64) -> String {
    format!("{:.1}", s * 1000.0)
}

pub fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

/// Every round's figures, phase by phase.
#[derive(Default)]
pub struct Rounds {
    pub limits: Vec<Limit>,
    pub bare_bursts: Vec<BareRun>,
    pub bare_backlogs: Vec<BareRun>,
    /// Per `--allocation-events` mode (in [`Args::modes`] order), per round.
    pub runs: Vec<Vec<OpRun>>,
    /// `--compare-bin`'s runs, per round (first mode only).
    pub compared: Vec<OpRun>,
}

/// The whole benchmark: every round, then the report on stdout and in
/// `scale-N.{json,md}`.
pub async fn run(args: Args) -> Result<()> {
    let bin = operator_bin(args.operator_bin.clone())?;
    let started = Instant::now();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    eprintln!(
        "scale-bench: N={}, C={}, operator {}, {cores} cores, load {}",
        args.nodes,
        args.concurrency,
        bin.display(),
        loadavg()
    );
    let rounds = run_rounds(&args, &bin).await?;
    let ctx = report::Context {
        args: &args,
        bin: &bin,
        cores,
        started,
    };
    report::write(&ctx, &rounds)
}

/// Each phase on a fresh control plane; the phases of a round run back to
/// back so that a slow spell of the machine hits all of them alike.
async fn run_rounds(args: &Args, bin: &Path) -> Result<Rounds> {
    let n = args.nodes;
    let modes = args.modes();
    let rounds = args.rounds.max(1);
    let mut all = Rounds {
        runs: modes.iter().map(|_| vec![]).collect(),
        ..Default::default()
    };
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        eprintln!("  limit: bare client creates, then patches");
        let lim = baseline::limit(args).await?;
        eprintln!(
            "    create {:.0}/s, patch {:.0}/s",
            rate(n, lim.create),
            rate(n, lim.patch)
        );
        all.limits.push(lim);
        if !args.skip_bare_controller {
            for backlog in [false, true] {
                let p = baseline::bare_controller(args, backlog).await?;
                eprintln!(
                    "  bare watch-and-patch controller, {}: {:.0} nodes/s",
                    if backlog { "backlog" } else { "burst" },
                    rate(n, p.total)
                );
                if backlog {
                    all.bare_backlogs.push(p);
                } else {
                    all.bare_bursts.push(p);
                }
            }
        }
        for (i, ev) in modes.iter().enumerate() {
            let mut r = phases::operator_run(args, bin, *ev, round == 0).await?;
            r.backlog = phases::backlog_run(args, bin, *ev).await?;
            eprintln!(
                "  operator --allocation-events={ev}: burst {:.0} nodes/s (p99 {} ms); backlog {:.0} nodes/s once ready, {:.0} from process start",
                rate(n, r.burst_total),
                ms(r.burst_lat.p99),
                rate(n, r.backlog.writes),
                rate(n, r.backlog.total)
            );
            all.runs[i].push(r);
        }
        if let Some(cmp) = &args.compare_bin {
            let ev = modes[0];
            let mut r = phases::operator_run(args, cmp, ev, round == 0).await?;
            r.backlog = phases::backlog_run(args, cmp, ev).await?;
            eprintln!(
                "  compared {}: burst {:.0} nodes/s (p99 {} ms); backlog {:.0} nodes/s once ready",
                cmp.display(),
                rate(n, r.burst_total),
                ms(r.burst_lat.p99),
                rate(n, r.backlog.writes)
            );
            all.compared.push(r);
        }
    }
    Ok(all)
}
