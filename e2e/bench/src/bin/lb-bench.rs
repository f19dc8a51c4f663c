//! `lb-bench`: the operator's LoadBalancer addresses and MetalLB's
//! controller v0.16.2 given the same work on the same kind of fresh local
//! control plane, in interleaved rounds (the order flips every round), with
//! ratios taken within a round, for IPv4, IPv6 and dual-stack Services:
//!
//! 1. backlog: N LoadBalancer Services of the allocator's class created
//!    before it starts; Services/s = N ÷ (process start → last Service seen
//!    on a watch holding an address of each family it asks for); peak RSS,
//!    the allocator's CPU and the control plane's (kube-apiserver + etcd);
//! 2. trickle: Services created one by one at a fixed rate once a first one
//!    is served; latency from each create's answer to the addresses seen by
//!    a watch;
//! 3. once per family, the API server's own limit: a bare client writing
//!    the same statuses, 32 in flight.
//!
//! Every phase ends by checking on the API server that each Service holds
//! one address per family, inside the range given, none held twice.
//! Phases are in `prefix_operator_bench::lb`; the report goes to stdout and
//! to `target/bench/lb.{md,json}`. Nothing is asserted about the figures.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use prefix_operator_bench::cluster::loadavg;
use prefix_operator_bench::lb::{self, Family, LbAllocator, LbBacklog, LbBins, LbTrickle};
use prefix_operator_bench::operator::{operator_bin, target_dir};
use prefix_operator_bench::stats::summarize;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "lb-bench",
    about = "prefix-operator's LoadBalancer addresses beside MetalLB's controller, same work, same API server"
)]
struct Args {
    /// Backlog sizes (LoadBalancer Services before the allocator starts).
    #[arg(long, value_delimiter = ',', default_value = "1000,3000")]
    services: Vec<usize>,
    /// Families the Services ask for: ipv4, ipv6, dual.
    #[arg(long, value_delimiter = ',', default_value = "ipv4,ipv6,dual")]
    families: Vec<String>,
    /// Rounds; the order of the two allocators flips each round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Services per second in the trickle.
    #[arg(long, default_value_t = 20.0)]
    trickle_rate: f64,
    /// Seconds of trickle per phase (0 skips the trickle).
    #[arg(long, default_value_t = 10.0)]
    trickle_secs: f64,
    /// Creators in flight when the backlog is made.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Also measure the bare-client limit once per family (largest size).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    bare: bool,
    /// MetalLB's controller [default: $METALLB_BIN, from e2e/metallb/build.sh].
    #[arg(long, env = "METALLB_BIN")]
    metallb_bin: PathBuf,
    /// Operator binary [default: target/release/prefix-operator or $PREFIX_OPERATOR_BIN].
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    /// Longest wait for one phase, seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Where lb.{md,json} go [default: target/bench].
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

const ALLOCS: [LbAllocator; 2] = [LbAllocator::MetalLb, LbAllocator::Operator];
const METALLB: usize = 0;
const OP: usize = 1;

/// One round of one family: both allocators once per phase, in `order`.
#[derive(Default)]
struct Round {
    round: usize,
    family: &'static str,
    order: Vec<usize>,
    load: (String, String),
    /// Per backlog size, per allocator (in ALLOCS' order).
    backlogs: Vec<Vec<LbBacklog>>,
    /// Per allocator; empty without a trickle.
    trickle: Vec<LbTrickle>,
}

fn ratio(a: f64, b: f64) -> f64 {
    a / b.max(1e-9)
}

fn median(v: &[f64]) -> f64 {
    summarize(v).p50
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let out = args
        .out_dir
        .clone()
        .unwrap_or_else(|| target_dir().join("bench"));
    let bins = LbBins {
        metallb: args.metallb_bin.canonicalize()?,
        operator: operator_bin(args.operator_bin.clone())?,
        logs: out.join("logs"),
    };
    let families: Vec<Family> = args
        .families
        .iter()
        .map(|f| Family::parse(f))
        .collect::<Result<_>>()?;
    let timeout = Duration::from_secs(args.timeout);
    let count = (args.trickle_rate * args.trickle_secs).round() as usize;
    eprintln!(
        "lb-bench: backlogs {:?}, families {:?}, {} rounds, trickle {count} at {}/s, load {}",
        args.services,
        families.iter().map(|f| f.label()).collect::<Vec<_>>(),
        args.rounds,
        args.trickle_rate,
        loadavg()
    );
    let mut rounds: Vec<Round> = vec![];
    for r in 0..args.rounds.max(1) {
        for &family in &families {
            rounds.push(round(&args, &bins, r, family, count, timeout).await?);
        }
    }
    let mut bare: Vec<(&'static str, usize, f64)> = vec![];
    if let (true, Some(&n)) = (args.bare, args.services.iter().max()) {
        for &family in &families {
            let rate = lb::bare_client(family, n).await?;
            eprintln!(
                "  bare client, {}: {n} status writes at {rate:.0}/s",
                family.label()
            );
            bare.push((family.label(), n, rate));
        }
    }
    let md = report(&args, &families, &rounds, &bare);
    println!("{md}");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("lb.md"), &md)?;
    std::fs::write(
        out.join("lb.json"),
        serde_json::to_string_pretty(&report_json(&args, &rounds, &bare))? + "\n",
    )?;
    eprintln!("wrote {}/lb.md and lb.json", out.display());
    Ok(())
}

async fn round(
    args: &Args,
    bins: &LbBins,
    r: usize,
    family: Family,
    count: usize,
    timeout: Duration,
) -> Result<Round> {
    // Rotate who goes first, so that drift in the machine's speed favours
    // nobody.
    let order: Vec<usize> = (0..ALLOCS.len()).map(|i| (i + r) % ALLOCS.len()).collect();
    let mut round = Round {
        round: r + 1,
        family: family.label(),
        order: order.clone(),
        load: (loadavg(), String::new()),
        ..Default::default()
    };
    eprintln!(
        "round {}/{}, {} ({} first)",
        r + 1,
        args.rounds,
        family.label(),
        ALLOCS[order[0]].label()
    );
    let fam = family.label().to_ascii_lowercase();
    for &n in &args.services {
        let mut got = vec![LbBacklog::default(); ALLOCS.len()];
        for &i in &order {
            let a = ALLOCS[i];
            let what = format!("backlog-{fam}-{n}-{}-r{r}", a.short());
            let b = lb::backlog(bins, a, family, (n, args.concurrency), timeout, &what).await?;
            eprintln!(
                "  backlog {n}: {}: {:.0} Services/s from process start, peak RSS {:.0} MiB, {:.2} CPU s, control plane {:.2} CPU s; requests: {}",
                a.label(),
                b.rate(),
                b.peak_rss as f64 / 1048576.0,
                b.cpu,
                b.server_cpu,
                b.requests
                    .iter()
                    .take(8)
                    .map(|(k, v)| format!("{k} {v:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            got[i] = b;
        }
        round.backlogs.push(got);
    }
    if count > 0 {
        let mut got = vec![LbTrickle::default(); ALLOCS.len()];
        for &i in &order {
            let a = ALLOCS[i];
            let what = format!("trickle-{fam}-{}-r{r}", a.short());
            let t =
                lb::trickle(bins, a, family, (count, args.trickle_rate), timeout, &what).await?;
            eprintln!(
                "  trickle: {}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {:.2} CPU s, control plane {:.2} CPU s",
                a.label(),
                t.lat.p50 * 1e3,
                t.lat.p99 * 1e3,
                t.lat.max * 1e3,
                t.cpu,
                t.server_cpu
            );
            got[i] = t;
        }
        round.trickle = got;
    }
    round.load.1 = loadavg();
    Ok(round)
}

/// One row: the operator's and MetalLB's medians, the median of the
/// within-round ratios, every round's ratio, and the target.
fn row(md: &mut String, what: &str, op: &[f64], ml: &[f64], scale: f64, target: &str) {
    let q: Vec<f64> = op.iter().zip(ml).map(|(a, b)| ratio(*a, *b)).collect();
    let each: Vec<String> = q.iter().map(|x| format!("{x:.2}")).collect();
    let _ = writeln!(
        md,
        "| {what} | {:.1} | {:.1} | **{:.2}** | {} | {target} |",
        median(ml) * scale,
        median(op) * scale,
        median(&q),
        each.join(", ")
    );
}

fn report(
    args: &Args,
    families: &[Family],
    rounds: &[Round],
    bare: &[(&'static str, usize, f64)],
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# prefix-operator's LoadBalancer addresses beside MetalLB\n\n\
         Same work on the same kind of fresh local control plane (kube-apiserver + etcd, loopback, dual-stack Service range), one phase at a time: \
         MetalLB's controller v0.16.2 (built from Go modules by `e2e/metallb/build.sh`; `--lb-class`, `--webhook-mode=disabled`, \
         one IPAddressPool of the same ranges, log level info) and prefix-operator at its defaults with one LoadBalancer claim per family \
         (IPv4 /18, IPv6 /112). Backlog: N Services exist before the allocator starts; Services/s = N ÷ (process start → last Service \
         seen on a watch with an address of each family). Trickle: {:.0} Services/s for {:.0} s after a first one was served; \
         latency = create answered → addresses seen. Every Service is checked afterwards against the API server (one address per \
         family, inside the range, none shared). The order rotates each round; **ratios are operator ÷ MetalLB within one round** \
         (throughput: > 1 means the operator is faster; latency, memory, CPU: < 1 means it is lower). Reproduce: `make bench-lb LB_ARGS=\"{}\"`.\n",
        args.trickle_rate,
        args.trickle_secs,
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let _ = writeln!(
        md,
        "| round | family | order | load before → after |\n|---|---|---|---|"
    );
    for r in rounds {
        let order: Vec<&str> = r.order.iter().map(|&j| ALLOCS[j].short()).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} → {} |",
            r.round,
            r.family,
            order.join(", "),
            r.load.0,
            r.load.1
        );
    }
    for f in families {
        let rs: Vec<&Round> = rounds.iter().filter(|r| r.family == f.label()).collect();
        let _ = writeln!(
            md,
            "\n## {} Services\n\n| what | MetalLB (median) | operator (median) | ratio (median) | ratio each round | target |\n|---|---:|---:|---:|---|---|",
            f.label()
        );
        let pick = |f: &dyn Fn(&Round) -> f64| -> Vec<f64> { rs.iter().map(|r| f(r)).collect() };
        for (s, n) in args.services.iter().enumerate() {
            let get =
                |x: usize, g: fn(&LbBacklog) -> f64| pick(&move |r: &Round| g(&r.backlogs[s][x]));
            row(
                &mut md,
                &format!("backlog {n}, Services/s"),
                &get(OP, LbBacklog::rate),
                &get(METALLB, LbBacklog::rate),
                1.0,
                "≥ 3",
            );
            row(
                &mut md,
                &format!("backlog {n}, peak RSS MiB"),
                &get(OP, |b| b.peak_rss as f64),
                &get(METALLB, |b| b.peak_rss as f64),
                1.0 / 1048576.0,
                "≤ 0.33",
            );
            row(
                &mut md,
                &format!("backlog {n}, allocator CPU s"),
                &get(OP, |b| b.cpu),
                &get(METALLB, |b| b.cpu),
                1.0,
                "",
            );
            row(
                &mut md,
                &format!("backlog {n}, API server + etcd CPU s"),
                &get(OP, |b| b.server_cpu),
                &get(METALLB, |b| b.server_cpu),
                1.0,
                "≤ 0.5",
            );
        }
        if rs.iter().all(|r| r.trickle.len() == ALLOCS.len()) {
            let get = |x: usize, g: fn(&LbTrickle) -> f64| pick(&move |r: &Round| g(&r.trickle[x]));
            row(
                &mut md,
                "trickle p50, ms",
                &get(OP, |t| t.lat.p50),
                &get(METALLB, |t| t.lat.p50),
                1e3,
                "",
            );
            row(
                &mut md,
                "trickle p99, ms",
                &get(OP, |t| t.lat.p99),
                &get(METALLB, |t| t.lat.p99),
                1e3,
                "≤ 0.8",
            );
            row(
                &mut md,
                "trickle, allocator CPU s",
                &get(OP, |t| t.cpu),
                &get(METALLB, |t| t.cpu),
                1.0,
                "",
            );
            row(
                &mut md,
                "trickle, API server + etcd CPU s",
                &get(OP, |t| t.server_cpu),
                &get(METALLB, |t| t.server_cpu),
                1.0,
                "",
            );
        }
    }
    if !bare.is_empty() {
        let _ = writeln!(
            md,
            "\nThe API server's own limit (a bare client writing the statuses, 32 in flight, once):"
        );
        for (f, n, rate) in bare {
            let _ = writeln!(md, "- {f}: {n} Services at {rate:.0}/s");
        }
    }
    md
}

fn report_json(
    args: &Args,
    rounds: &[Round],
    bare: &[(&'static str, usize, f64)],
) -> serde_json::Value {
    let b = |r: &LbBacklog| json!({"services": r.services, "seconds": r.total.as_secs_f64(), "services_per_s": r.rate(), "peak_rss_bytes": r.peak_rss, "cpu_seconds": r.cpu, "server_cpu_seconds": r.server_cpu, "requests": r.requests.iter().map(|(k, v)| json!({"request": k, "count": v})).collect::<Vec<_>>()});
    let t = |r: &LbTrickle| json!({"p50_ms": r.lat.p50 * 1e3, "p90_ms": r.lat.p90 * 1e3, "p99_ms": r.lat.p99 * 1e3, "max_ms": r.lat.max * 1e3, "n": r.lat.n, "peak_rss_bytes": r.peak_rss, "cpu_seconds": r.cpu, "server_cpu_seconds": r.server_cpu});
    json!({
        "allocators": ALLOCS.iter().map(|a| a.label()).collect::<Vec<_>>(),
        "sizes": args.services,
        "trickle_rate": args.trickle_rate,
        "trickle_secs": args.trickle_secs,
        "rounds": rounds.iter().map(|r| json!({
            "round": r.round,
            "family": r.family,
            "order": r.order.iter().map(|&i| ALLOCS[i].short()).collect::<Vec<_>>(),
            "load_before": r.load.0, "load_after": r.load.1,
            "backlogs": r.backlogs.iter().map(|v| v.iter().map(b).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "trickle": r.trickle.iter().map(t).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "bare_client": bare.iter().map(|(f, n, rate)| json!({"family": f, "services": n, "services_per_s": rate})).collect::<Vec<_>>(),
    })
}
