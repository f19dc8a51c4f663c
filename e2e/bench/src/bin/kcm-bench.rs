//! `kcm-bench`: the operator and kube-controller-manager's node IPAM given
//! the same work on the same kind of fresh local control plane, in
//! interleaved rounds (the order flips every round), with ratios taken
//! within a round. Phases are in `prefix_operator_bench::kcm`; the report
//! goes to stdout and to `target/bench/kcm.{md,json}`. Nothing is asserted.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use prefix_operator_bench::cluster::loadavg;
use prefix_operator_bench::kcm::{self, Allocator, BacklogRun, Bins, Hog, TrickleRun};
use prefix_operator_bench::operator::{operator_bin, target_dir};
use prefix_operator_bench::stats::summarize;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "kcm-bench",
    about = "prefix-operator beside kube-controller-manager's node IPAM, same work, same API server"
)]
struct Args {
    /// Backlog sizes (Nodes without podCIDRs before the allocator starts).
    #[arg(long, value_delimiter = ',', default_value = "2000,5000")]
    nodes: Vec<usize>,
    /// Rounds; the order of the two allocators flips each round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// kube-controller-manager's --kube-api-qps and --kube-api-burst when tuned.
    #[arg(long, default_value_t = 5000)]
    kcm_qps: u32,
    /// Also run kube-controller-manager at its client defaults (QPS 20,
    /// burst 30) once, at the smallest backlog and in the trickle.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    kcm_defaults: bool,
    /// Nodes per second in the trickle.
    #[arg(long, default_value_t = 20.0)]
    trickle_rate: f64,
    /// Nodes created (and allocated) before the trickle starts: the trickle
    /// then runs in a cluster of this size (0: a fresh one, after one probe
    /// Node).
    #[arg(long, default_value_t = 0)]
    trickle_after: usize,
    /// Skip the backlog phases (trickles only).
    #[arg(long)]
    no_backlog: bool,
    /// Seconds of trickle per phase (0 skips the trickle).
    #[arg(long, default_value_t = 20.0)]
    trickle_secs: f64,
    /// Outside load: share of every 100 ms that `--hog-procs` busy loops run
    /// (0 = none).
    #[arg(long, default_value_t = 0.0)]
    hog_duty: f64,
    #[arg(long, default_value_t = 2)]
    hog_procs: usize,
    /// Also run the operator with these flags in every round (e.g.
    /// `--variant=--http2=true`), reported beside the operator at its defaults.
    #[arg(long, allow_hyphen_values = true, value_delimiter = ' ')]
    variant: Vec<String>,
    /// Run the variant with this binary instead (e.g. a build of an earlier
    /// commit); with no `--variant` flags, at its defaults.
    #[arg(long)]
    variant_bin: Option<PathBuf>,
    /// What the chart's admission policies cost: the operator runs
    /// leader-elected as a Pod of the chart's ServiceAccount, without the
    /// policies (reported as the operator) and under them (reported as the
    /// variant); `--variant`/`--variant-bin` are then ignored.
    #[arg(long)]
    as_pod: bool,
    /// Creators in flight when the backlog is made.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// kube-controller-manager binary [default: $KCM_BIN].
    #[arg(long, env = "KCM_BIN")]
    kcm_bin: PathBuf,
    /// Operator binary [default: target/release/prefix-operator or $PREFIX_OPERATOR_BIN].
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    /// Longest wait for one phase, seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Where kcm.{md,json} go [default: target/bench].
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// One round: every allocator once per phase, in `order`.
#[derive(Default)]
struct Round {
    /// Indices into the allocators, in the order they ran.
    order: Vec<usize>,
    load: (String, String),
    /// Per backlog size, per allocator (in the allocators' order).
    backlogs: Vec<Vec<BacklogRun>>,
    /// Per allocator; empty without a trickle.
    trickle: Vec<TrickleRun>,
}

/// Index of KCM tuned, the operator and the variant in the allocators.
const KCM: usize = 0;
const OP: usize = 1;
const VARIANT: usize = 2;

fn ratio(a: f64, b: f64) -> f64 {
    a / b.max(1e-9)
}

fn median(v: &[f64]) -> f64 {
    summarize(v).p50
}

fn each(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let out = args
        .out_dir
        .clone()
        .unwrap_or_else(|| target_dir().join("bench"));
    let bins = Bins {
        kcm: args.kcm_bin.canonicalize()?,
        operator: operator_bin(args.operator_bin.clone())?,
        logs: out.join("logs"),
    };
    let timeout = Duration::from_secs(args.timeout);
    let mut allocs = vec![
        Allocator::Kcm {
            qps: Some(args.kcm_qps),
        },
        Allocator::Operator,
    ];
    if args.as_pod {
        allocs[OP] = Allocator::AsPod { policies: false };
        allocs.push(Allocator::AsPod { policies: true });
    } else if !args.variant.is_empty() || args.variant_bin.is_some() {
        let bin = args
            .variant_bin
            .as_ref()
            .map(|b| b.canonicalize())
            .transpose()?;
        allocs.push(Allocator::OperatorWith(bin, args.variant.clone()));
    }
    let count = (args.trickle_rate * args.trickle_secs).round() as usize;
    let _hog = Hog::start(args.hog_duty, args.hog_procs, &bins.logs.join("hog.log"))?;
    eprintln!(
        "kcm-bench: backlogs {:?}, {} rounds, KCM QPS/burst {}, trickle {count} at {}/s, outside load {}×{:.0}%, load {}",
        args.nodes,
        args.rounds,
        args.kcm_qps,
        args.trickle_rate,
        args.hog_procs,
        args.hog_duty * 100.0,
        loadavg()
    );
    let mut rounds: Vec<Round> = vec![];
    for r in 0..args.rounds.max(1) {
        // Rotate who goes first, so that drift in the machine's speed
        // favours nobody.
        let order: Vec<usize> = (0..allocs.len()).map(|i| (i + r) % allocs.len()).collect();
        let mut round = Round {
            order: order.clone(),
            load: (loadavg(), String::new()),
            ..Default::default()
        };
        eprintln!(
            "round {}/{} ({} first)",
            r + 1,
            args.rounds,
            allocs[order[0]].label()
        );
        for &n in args.nodes.iter().filter(|_| !args.no_backlog) {
            let mut got = vec![BacklogRun::default(); allocs.len()];
            for &i in &order {
                let a = &allocs[i];
                let what = format!("backlog-{n}-{}-r{r}", short(i));
                let b = kcm::backlog(&bins, a, n, args.concurrency, timeout, &what).await?;
                eprintln!(
                    "  backlog {n}: {}: {:.0} Nodes/s from process start, peak RSS {:.0} MiB, {} connection(s), {:.2} CPU s, control plane {:.2} CPU s; requests: {}",
                    a.label(),
                    b.rate(),
                    b.peak_rss as f64 / 1048576.0,
                    b.connections,
                    b.cpu,
                    b.server_cpu,
                    b.requests
                        .iter()
                        .map(|(k, v)| format!("{k} {v:.0}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                got[i] = b;
            }
            round.backlogs.push(got);
        }
        if count > 0 {
            let mut got = vec![TrickleRun::default(); allocs.len()];
            for &i in &order {
                let a = &allocs[i];
                let what = format!("trickle-{}-r{r}", short(i));
                let t = kcm::trickle(
                    &bins,
                    a,
                    (args.trickle_after, count, args.trickle_rate),
                    timeout,
                    &what,
                )
                .await?;
                eprintln!(
                    "  trickle: {}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; API server time per request: {}",
                    a.label(),
                    t.lat.p50 * 1e3,
                    t.lat.p99 * 1e3,
                    t.lat.max * 1e3,
                    t.server
                        .iter()
                        .map(|(k, n, mean)| format!("{k} {n:.0}× {:.2} ms", mean * 1e3))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                got[i] = t;
            }
            round.trickle = got;
        }
        round.load.1 = loadavg();
        rounds.push(round);
    }
    let mut defaults: Option<(BacklogRun, Option<TrickleRun>)> = None;
    if args.kcm_defaults && !args.no_backlog {
        let d = Allocator::Kcm { qps: None };
        let n = args.nodes.iter().copied().min().unwrap_or(2000);
        eprintln!("once: {} (backlog {n}, at ~20 Nodes/s)", d.label());
        let b = kcm::backlog(
            &bins,
            &d,
            n,
            args.concurrency,
            timeout,
            &format!("backlog-{n}-kcm-defaults"),
        )
        .await?;
        eprintln!("  backlog {n}: {:.0} Nodes/s", b.rate());
        let t = if count > 0 {
            Some(
                kcm::trickle(
                    &bins,
                    &d,
                    (args.trickle_after, count, args.trickle_rate),
                    timeout,
                    "trickle-kcm-defaults",
                )
                .await?,
            )
        } else {
            None
        };
        defaults = Some((b, t));
    }
    let md = report(&args, &allocs, &rounds, defaults.as_ref());
    println!("{md}");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("kcm.md"), &md)?;
    std::fs::write(
        out.join("kcm.json"),
        serde_json::to_string_pretty(&report_json(&args, &allocs, &rounds, defaults.as_ref()))?
            + "\n",
    )?;
    eprintln!("wrote {}/kcm.md and kcm.json", out.display());
    Ok(())
}

fn short(i: usize) -> &'static str {
    match i {
        KCM => "kcm",
        OP => "operator",
        _ => "variant",
    }
}

/// `a ÷ b` of a figure within each round: the medians of both, the median
/// ratio and every round's ratio.
fn row(md: &mut String, what: &str, a: &[f64], b: &[f64], scale: f64, digits: usize) {
    let q: Vec<f64> = a.iter().zip(b).map(|(a, b)| ratio(*a, *b)).collect();
    let _ = writeln!(
        md,
        "| {what} | {:.digits$} | {:.digits$} | **{:.2}** | {} |",
        median(b) * scale,
        median(a) * scale,
        median(&q),
        each(&q)
    );
}

fn report(
    args: &Args,
    allocs: &[Allocator],
    rounds: &[Round],
    defaults: Option<&(BacklogRun, Option<TrickleRun>)>,
) -> String {
    let mut md = String::new();
    let nodes: &[usize] = if args.no_backlog { &[] } else { &args.nodes };
    let _ = writeln!(
        md,
        "# prefix-operator beside kube-controller-manager's node IPAM\n\n\
         Same work on the same kind of fresh local control plane (kube-apiserver + etcd, loopback), one phase at a time: \
         kube-controller-manager v1.36.3 (`--controllers=node-ipam-controller`, range allocator, `{}` into /{}) with \
         `--kube-api-qps`/`--kube-api-burst` {} (\"KCM tuned\"), and prefix-operator at its defaults with a pool of the same /48. \
         Backlog: N Nodes without podCIDRs exist before the allocator starts; Nodes/s = N ÷ (process start → last podCIDRs seen on a watch). \
         Trickle: {:.0} Nodes/s for {:.0} s after {}; latency = create answered → podCIDRs seen. \
         Every Node is checked afterwards against the API server (one prefix each, inside the range, none shared). \
         The order of the allocators rotates each round; **ratios are taken within one round** \
         (throughput: > 1 means the first-named is faster; latency and memory: < 1 means it is lower). \
         Outside load: {}.\n",
        kcm::CLUSTER_CIDR,
        kcm::NODE_LEN,
        args.kcm_qps,
        args.trickle_rate,
        args.trickle_secs,
        if args.trickle_after > 0 {
            format!(
                "{} Nodes created before the allocator started were all allocated (a cluster of that size)",
                args.trickle_after
            )
        } else {
            "a first Node proved the allocator running".into()
        },
        if args.hog_duty > 0.0 {
            format!(
                "{} busy loops each running {:.0}% of every 100 ms",
                args.hog_procs,
                args.hog_duty * 100.0
            )
        } else {
            "none beyond the benchmark itself".into()
        }
    );
    let _ = writeln!(md, "| round (order) | load before → after |\n|---|---|");
    for (i, r) in rounds.iter().enumerate() {
        let order: Vec<&str> = r.order.iter().map(|&j| short(j)).collect();
        let _ = writeln!(
            md,
            "| {} ({}) | {} → {} |",
            i + 1,
            order.join(", "),
            r.load.0,
            r.load.1
        );
    }
    let mut pairs = vec![(OP, KCM, "operator ÷ KCM tuned")];
    if allocs.len() > VARIANT {
        pairs.push((VARIANT, OP, "variant ÷ operator"));
        pairs.push((VARIANT, KCM, "variant ÷ KCM tuned"));
    }
    for (x, y, title) in pairs {
        let _ = writeln!(
            md,
            "\n### {title}: {} ÷ {}\n\n| what | {} (median) | {} (median) | ratio (median) | ratio each round |\n|---|---:|---:|---:|---|",
            allocs[x].label(),
            allocs[y].label(),
            short(y),
            short(x)
        );
        let pick = |f: &dyn Fn(&Round) -> f64| -> Vec<f64> { rounds.iter().map(f).collect() };
        for (i, n) in nodes.iter().enumerate() {
            row(
                &mut md,
                &format!("backlog {n} Nodes, Nodes/s"),
                &pick(&|r| r.backlogs[i][x].rate()),
                &pick(&|r| r.backlogs[i][y].rate()),
                1.0,
                0,
            );
        }
        if let Some(last) = nodes.len().checked_sub(1) {
            let n = nodes[last];
            row(
                &mut md,
                &format!("peak RSS after the {n} backlog, MiB"),
                &pick(&|r| r.backlogs[last][x].peak_rss as f64),
                &pick(&|r| r.backlogs[last][y].peak_rss as f64),
                1.0 / 1048576.0,
                0,
            );
            row(
                &mut md,
                &format!("CPU seconds for the {n} backlog"),
                &pick(&|r| r.backlogs[last][x].cpu),
                &pick(&|r| r.backlogs[last][y].cpu),
                1.0,
                2,
            );
            row(
                &mut md,
                &format!("control-plane CPU seconds (kube-apiserver + etcd) for the {n} backlog"),
                &pick(&|r| r.backlogs[last][x].server_cpu),
                &pick(&|r| r.backlogs[last][y].server_cpu),
                1.0,
                2,
            );
            row(
                &mut md,
                &format!("connections to the API server after the {n} backlog"),
                &pick(&|r| r.backlogs[last][x].connections as f64),
                &pick(&|r| r.backlogs[last][y].connections as f64),
                1.0,
                0,
            );
        }
        if rounds.iter().all(|r| r.trickle.len() == allocs.len()) {
            for (what, f) in [
                (
                    "trickle p50, ms",
                    (|t: &TrickleRun| t.lat.p50) as fn(&TrickleRun) -> f64,
                ),
                ("trickle p99, ms", |t: &TrickleRun| t.lat.p99),
                ("trickle max, ms", |t: &TrickleRun| t.lat.max),
            ] {
                row(
                    &mut md,
                    what,
                    &pick(&|r| f(&r.trickle[x])),
                    &pick(&|r| f(&r.trickle[y])),
                    1e3,
                    1,
                );
            }
        }
    }
    for (i, a) in allocs.iter().enumerate().skip(OP) {
        if !rounds.iter().all(|r| r.trickle.len() == allocs.len()) {
            break;
        }
        let _ = writeln!(
            md,
            "\n### {}: its event loop during the trickles (all rounds summed)\n\n\
             `prefix_operator_loop_turn_seconds{{kind}}`: one turn is one input handled plus the planning after it, without yielding; \
             rows \"(waited) …\" are `prefix_operator_input_wait_seconds{{kind}}`, watch event decoded → taken by the loop. \
             The operator's own p99 (Node first seen → podCIDRs written) per round: {}; measured p99 (create answered → seen on the benchmark's watch): {}.\n\n\
             | woken by | turns | total ms | mean ms | > 10 ms | > 50 ms | > 100 ms |\n|---|---:|---:|---:|---:|---:|---:|",
            a.label(),
            rounds
                .iter()
                .map(|r| r.trickle[i]
                    .own_p99
                    .map(|p| format!("{:.1} ms", p * 1e3))
                    .unwrap_or("-".into()))
                .collect::<Vec<_>>()
                .join(", "),
            rounds
                .iter()
                .map(|r| format!("{:.1} ms", r.trickle[i].lat.p99 * 1e3))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut by_kind: std::collections::BTreeMap<String, kcm::Turns> = Default::default();
        for r in rounds {
            for t in &r.trickle[i].turns {
                let e = by_kind.entry(t.kind.clone()).or_insert_with(|| kcm::Turns {
                    kind: t.kind.clone(),
                    ..Default::default()
                });
                e.count += t.count;
                e.sum += t.sum;
                for k in 0..3 {
                    e.over[k] += t.over[k];
                }
            }
        }
        let mut kinds: Vec<kcm::Turns> = by_kind.into_values().collect();
        kinds.sort_by(|a, b| b.sum.total_cmp(&a.sum));
        for t in kinds {
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.1} | {:.3} | {:.0} | {:.0} | {:.0} |",
                t.kind,
                t.count,
                t.sum * 1e3,
                t.sum * 1e3 / t.count.max(1.0),
                t.over[0],
                t.over[1],
                t.over[2]
            );
        }
    }
    if let Some((b, t)) = defaults {
        let o: Vec<f64> = rounds
            .iter()
            .filter_map(|r| {
                let i = nodes.iter().position(|n| *n == b.nodes)?;
                Some(r.backlogs[i][OP].rate())
            })
            .collect();
        let _ = writeln!(
            md,
            "\nkube-controller-manager at its client defaults (QPS 20, burst 30; in a real cluster every KCM controller shares that budget), once: \
             backlog {} Nodes at **{:.0} Nodes/s** (the operator's median above: {:.0}, {:.1}×){}.",
            b.nodes,
            b.rate(),
            median(&o),
            ratio(median(&o), b.rate()),
            t.as_ref()
                .map(|t| format!(
                    "; trickle p50 {:.1} ms, p99 {:.1} ms",
                    t.lat.p50 * 1e3,
                    t.lat.p99 * 1e3
                ))
                .unwrap_or_default()
        );
    }
    md
}

fn report_json(
    args: &Args,
    allocs: &[Allocator],
    rounds: &[Round],
    defaults: Option<&(BacklogRun, Option<TrickleRun>)>,
) -> serde_json::Value {
    let b = |r: &BacklogRun| json!({"nodes": r.nodes, "seconds": r.total.as_secs_f64(), "nodes_per_s": r.rate(), "peak_rss_bytes": r.peak_rss, "connections": r.connections, "cpu_seconds": r.cpu, "server_cpu_seconds": r.server_cpu, "requests": r.requests.iter().map(|(k, v)| json!({"request": k, "count": v})).collect::<Vec<_>>()});
    let t = |r: &TrickleRun| json!({"p50_ms": r.lat.p50 * 1e3, "p90_ms": r.lat.p90 * 1e3, "p99_ms": r.lat.p99 * 1e3, "max_ms": r.lat.max * 1e3, "n": r.lat.n, "peak_rss_bytes": r.peak_rss});
    json!({
        "allocators": allocs.iter().map(Allocator::label).collect::<Vec<_>>(),
        "kcm_qps": args.kcm_qps,
        "trickle_rate": args.trickle_rate,
        "trickle_secs": args.trickle_secs,
        "hog_duty": args.hog_duty,
        "hog_procs": args.hog_procs,
        "rounds": rounds.iter().map(|r| json!({
            "order": r.order.iter().map(|&i| short(i)).collect::<Vec<_>>(),
            "load_before": r.load.0, "load_after": r.load.1,
            "backlogs": r.backlogs.iter().map(|v| v.iter().map(b).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "trickle": r.trickle.iter().map(t).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "kcm_defaults": defaults.map(|(bk, tr)| json!({"backlog": b(bk), "trickle": tr.as_ref().map(t)})),
    })
}
